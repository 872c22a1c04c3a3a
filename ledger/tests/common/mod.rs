//! Shared test helpers: deterministic keys and rng, trace frames converted to ledger records.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use can_decoders::{Direction, FrameKind, TimedFrame};
use chacha20::rand_core::SeedableRng;
use chacha20::ChaCha20Rng;
use ledger::keys::X25519Key;
use ledger::record::{CanFlags, CanRecord, MqttRecord, Record, SignalRecord};
use x25519_dalek::StaticSecret;

pub fn rng(seed: u8) -> ChaCha20Rng {
    ChaCha20Rng::from_seed([seed; 32])
}

/// An X25519 key whose secret is 32 copies of `byte`.
pub fn x25519(name: &str, byte: u8) -> X25519Key {
    X25519Key::new(name, StaticSecret::from([byte; 32])).expect("valid key name")
}

pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// The edge conversion the gateway does: a trace frame becomes a ledger record.
pub fn to_record(f: &TimedFrame, names: &[Arc<str>]) -> anyhow::Result<Record> {
    let mut flags = CanFlags::default();
    if f.frame.id.is_extended() {
        flags = flags.with(CanFlags::EXTENDED);
    }
    match f.frame.kind {
        FrameKind::Data => {}
        FrameKind::Remote => flags = flags.with(CanFlags::REMOTE),
        FrameKind::Fd { brs, esi } => {
            flags = flags.with(CanFlags::FD);
            if brs {
                flags = flags.with(CanFlags::BRS);
            }
            if esi {
                flags = flags.with(CanFlags::ESI);
            }
        }
        FrameKind::Error => flags = flags.with(CanFlags::ERROR),
    }
    if f.direction == Direction::Tx {
        flags = flags.with(CanFlags::TX);
    }
    let iface = names.get(f.channel.0 as usize).context("channel id")?.clone();
    let len = u8::try_from(f.frame.len()).context("frame length")?;
    Ok(Record::Can(CanRecord::new(f.t_ns, iface, f.frame.id.raw(), flags, f.frame.data(), len)?))
}

pub fn can(t: u64, iface: &str, id: u32, flags: u8, data: &[u8]) -> Record {
    let flags = CanFlags::from_bits(flags).expect("valid flags");
    Record::Can(CanRecord::new(t, iface.into(), id, flags, data, data.len() as u8).expect("valid"))
}

/// A mixed lane: classic, extended, FD 64-byte, remote, error frames, MQTT and signals, out of
/// time order in places.
pub fn mixed_records() -> Vec<Record> {
    let mut v = vec![
        can(1_000, "can0", 0x123, 0, &[1, 2, 3, 4, 5, 6, 7, 8]),
        can(2_000, "can0", 0x1ABC_DEF0, CanFlags::EXTENDED, &[9, 9]),
        can(
            3_000,
            "can1",
            0x7FF,
            CanFlags::FD | CanFlags::BRS | CanFlags::ESI | CanFlags::TX,
            &(0..64).collect::<Vec<u8>>(),
        ),
        Record::Can(
            CanRecord::new(
                2_500,
                "can0".into(),
                0x321,
                CanFlags::default().with(CanFlags::REMOTE),
                &[],
                4,
            )
            .expect("remote"),
        ),
        can(4_000, "can0", 0x0000_0004, CanFlags::ERROR, &[0, 0, 0x80, 0, 0, 0, 0, 0]),
        Record::Mqtt(
            MqttRecord::new(1_500, "veh/1/gps".into(), b"{\"lat\":1}".to_vec(), 1, true)
                .expect("mqtt"),
        ),
        Record::Mqtt(MqttRecord::new(900, "veh/1/gps".into(), Vec::new(), 0, false).expect("mqtt")),
        Record::Signal(SignalRecord { t_ns: 5_000, name: "speed".into(), value: 13.5 }),
        Record::Signal(SignalRecord { t_ns: 5_000, name: "speed".into(), value: f64::NAN }),
        Record::Signal(SignalRecord { t_ns: 4_999, name: "lat".into(), value: -0.0 }),
        can(1_000, "can0", 0x123, 0, &[1, 2, 3, 4, 5, 6, 7, 9]),
    ];
    v.push(can(u64::MAX, "can0", 0x123, 0, &[]));
    v
}
