//! Single-threaded decode throughput: `cargo run --release -p can-decoders --example decode_speed`.
//!
//! Two messages: a typical 8-byte GNSS message with 4 Intel signals, and an 8-byte message with
//! 8 Motorola signals (mixed signed, scaled). Frames are pre-built with varying payloads.

use std::hint::black_box;
use std::time::Instant;

use can_decoders::dbc::{
    ByteOrder, Database, FrameFormat, Message, Multiplexing, Signal, ValueType,
};
use can_decoders::decode::{Decoded, Decoder};
use can_decoders::{CanFrame, CanId, FrameKind};

fn sig(
    name: &str,
    start: u16,
    len: u16,
    order: ByteOrder,
    vt: ValueType,
    f: f64,
    o: f64,
) -> Signal {
    Signal {
        name: name.into(),
        start_bit: start,
        length: len,
        byte_order: order,
        value_type: vt,
        factor: f,
        offset: o,
        minimum: 0.0,
        maximum: 0.0,
        unit: String::new(),
        receivers: Vec::new(),
        multiplexing: Multiplexing::default(),
        value_table: Vec::new(),
        comment: None,
        initial_raw: None,
        attributes: Default::default(),
        line: 0,
    }
}

fn msg(id: u32, name: &str, signals: Vec<Signal>) -> Message {
    Message {
        id: CanId::standard(id).expect("11-bit"),
        name: name.into(),
        length: 8,
        senders: Vec::new(),
        signals,
        frame_format: FrameFormat::Standard,
        cycle_time_ms: None,
        comment: None,
        attributes: Default::default(),
        line: 0,
    }
}

/// CPU time of this thread in ns (`/proc/thread-self/schedstat`), when available: the machine
/// may be shared, and wall time then overstates the cost.
fn cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn run(decoder: &Decoder, frames: &[CanFrame], label: &str) {
    let bus = decoder.bus("can0");
    let mut out = Decoded::default();
    let rounds = 500;
    let mut sum = 0.0;
    // Warm up.
    for f in frames {
        decoder.decode(bus, f, &mut out);
    }
    let t = Instant::now();
    let c0 = cpu_ns();
    for _ in 0..rounds {
        for f in frames {
            if decoder.decode(bus, black_box(f), &mut out).is_some() {
                sum += out.values.first().map_or(0.0, |v| v.value);
            }
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_ns().zip(c0).map(|(a, b)| (a - b) as f64 / 1e9);
    let n = (rounds * frames.len()) as f64;
    print!("{label}: wall {:.1} M frames/s ({:.1} ns/frame)", n / secs / 1e6, secs / n * 1e9);
    if let Some(cpu) = cpu {
        print!(", cpu {:.1} M frames/s ({:.1} ns/frame)", n / cpu / 1e6, cpu / n * 1e9);
    }
    println!(" [{}]", black_box(sum) != 0.0);
}

fn main() {
    use ByteOrder::{BigEndian as BE, LittleEndian as LE};
    use ValueType::{Signed as S, Unsigned as U};
    let gnss = msg(
        0x100,
        "Gnss",
        vec![
            sig("Valid", 0, 1, LE, U, 1.0, 0.0),
            sig("Lat", 1, 28, LE, U, 1e-6, -90.0),
            sig("Lon", 29, 29, LE, U, 1e-6, -180.0),
            sig("Sats", 58, 6, LE, U, 1.0, 0.0),
        ],
    );
    let moto = msg(
        0x200,
        "Motorola8",
        vec![
            sig("A", 7, 8, BE, U, 1.0, 0.0),
            sig("B", 15, 12, BE, S, 0.1, 0.0),
            sig("C", 19, 4, BE, U, 1.0, 0.0),
            sig("D", 31, 16, BE, S, 0.01, -40.0),
            sig("E", 47, 3, BE, U, 1.0, 0.0),
            sig("F", 44, 5, BE, U, 2.0, 1.0),
            sig("G", 55, 10, BE, U, 0.5, 0.0),
            sig("H", 61, 6, BE, S, 1.0, 0.0),
        ],
    );
    let when = |mut s: Signal, v: u64| {
        s.multiplexing.multiplexed_by =
            Some(can_decoders::dbc::MuxCondition { switch: "Sel".into(), values: vec![(v, v)] });
        s
    };
    let mut sel = sig("Sel", 0, 1, LE, U, 1.0, 0.0);
    sel.multiplexing.is_multiplexor = true;
    let mux = msg(
        0x300,
        "Mux",
        vec![
            sel,
            sig("Counter", 60, 4, LE, U, 1.0, 0.0),
            when(sig("A0", 8, 16, LE, S, 0.1, 0.0), 0),
            when(sig("B0", 24, 16, LE, U, 0.01, -100.0), 0),
            when(sig("C0", 40, 16, LE, U, 1.0, 0.0), 0),
            when(sig("A1", 15, 16, BE, S, 0.1, 0.0), 1),
            when(sig("B1", 31, 16, BE, U, 0.01, -100.0), 1),
            when(sig("C1", 47, 16, BE, U, 1.0, 0.0), 1),
        ],
    );
    let db = Database { messages: vec![gnss, moto, mux], ..Database::default() };
    let mut b = Decoder::builder();
    b.add_database(&db, &[]);
    let (decoder, warnings) = b.build().expect("builds");
    assert!(warnings.is_empty(), "{warnings:?}");

    let mut seed = 0x1234_5678_9ABC_DEF0u64;
    let mut frames = |id: u32| -> Vec<CanFrame> {
        (0..4096)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let id = CanId::standard(id).expect("11-bit");
                CanFrame::new(id, FrameKind::Data, &seed.to_le_bytes()).expect("8 bytes")
            })
            .collect()
    };
    let gnss_frames = frames(0x100);
    let moto_frames = frames(0x200);
    let mux_frames = frames(0x300);
    let mut mixed: Vec<CanFrame> =
        gnss_frames.iter().zip(&moto_frames).flat_map(|(a, b)| [*a, *b]).collect();
    mixed.extend(frames(0x300)); // unknown id
    for _ in 0..3 {
        run(&decoder, &gnss_frames, "GNSS 8 bytes, 4 Intel signals");
        run(&decoder, &moto_frames, "8 bytes, 8 Motorola signals  ");
        run(&decoder, &mux_frames, "multiplexed, 1+1+3 signals   ");
        run(&decoder, &mixed, "mixed incl. 1/3 unknown ids  ");
    }
}
