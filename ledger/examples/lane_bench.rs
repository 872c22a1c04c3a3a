//! Lane encoding, compression, sealing and opening on the real GPS trace, one core.
//!
//! `cargo run -p ledger --release --example lane_bench [trace] [--quick]`
//! Prints bytes/frame (vs the candump text, raw and under zstd -3), encode/compress/encrypt
//! throughput, and open throughput, for several zstd levels and both payload deltas.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use can_decoders::trace::{self, ErrorPolicy};
use can_decoders::{Direction, FrameKind, TimedFrame};
use ledger::lane::{self, Limits, PayloadDelta};
use ledger::record::{CanFlags, CanRecord, Record};

fn to_record(f: &TimedFrame, names: &[Arc<str>]) -> anyhow::Result<Record> {
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
    Ok(Record::Can(CanRecord::new(
        f.t_ns,
        iface,
        f.frame.id.raw(),
        flags,
        f.frame.data(),
        f.frame.len() as u8,
    )?))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.iter().find(|a| !a.starts_with("--")).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/traces/canmod_gps_3BA199E2.log.gz")
    });
    let mut reader = trace::open(&path, ErrorPolicy::Strict)?;
    let mut frames = Vec::new();
    for f in reader.by_ref() {
        frames.push(f?);
    }
    let names: Vec<Arc<str>> = reader.channels().iter().map(|s| Arc::from(s.as_str())).collect();
    let records = frames.iter().map(|f| to_record(f, &names)).collect::<anyhow::Result<Vec<_>>>()?;
    let n = records.len() as f64;
    println!("{}: {} frames", path.display(), records.len());
    for block in if args.iter().any(|a| a == "--breakdown") { vec![] } else { vec![records.len(), 65_536, 16_384] } {
        for delta in [PayloadDelta::Auto, PayloadDelta::Xor, PayloadDelta::Sub] {
            for level in [3, 5, 7, 9] {
                let t0 = Instant::now();
                let mut plain_total = 0;
                let mut packed_total = 0;
                for chunk in records.chunks(block) {
                    let p = lane::encode(chunk, delta);
                    plain_total += p.len();
                    packed_total += lane::compress(&p, level)?.len();
                }
                let dt = t0.elapsed().as_secs_f64();
                println!(
                    "block {block:>7} {delta:?} zstd {level}: plain {:.2} B/frame, packed {:.3} B/frame, {:.2} M frames/s",
                    plain_total as f64 / n,
                    packed_total as f64 / n,
                    n / dt / 1e6
                );
            }
        }
    }
    if args.iter().any(|a| a == "--breakdown") { return breakdown(&records); }
    let packed = lane::pack(&records, 3, PayloadDelta::Xor)?;
    let back = lane::unpack(&packed, &Limits::DEFAULT)?;
    anyhow::ensure!(back == records, "round trip differs");
    Ok(())
}

#[allow(dead_code)]
fn breakdown(records: &[Record]) -> anyhow::Result<()> {
    let n = records.len() as f64;
    let size = |rs: &[Record]| -> anyhow::Result<f64> { Ok(lane::pack(rs, 3, PayloadDelta::Auto)?.len() as f64 / n) };
    let no_ts: Vec<Record> = records.iter().map(|r| match r { Record::Can(c) => { let mut c = c.clone(); c.t_ns = 0; Record::Can(c) } o => o.clone() }).collect();
    let no_data: Vec<Record> = records.iter().map(|r| match r { Record::Can(c) => Record::Can(CanRecord::new(c.t_ns, c.interface.clone(), c.id, c.flags, &[0u8; 8][..c.data().len()], 0).unwrap()), o => o.clone() }).collect();
    println!("all {:.3} no_ts {:.3} no_data {:.3}", size(records)?, size(&no_ts)?, size(&no_data)?);
    Ok(())
}
