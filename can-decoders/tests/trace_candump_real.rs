//! The real candump logs in `fixtures/traces/` read completely and write back byte for byte.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::time::Instant;

use can_decoders::trace::{self, CandumpReader, CandumpWriter, ErrorPolicy, Format};
use can_decoders::TimedFrame;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/traces").join(name)
}

fn gunzip(name: &str) -> Vec<u8> {
    let file = std::fs::File::open(fixture(name)).expect("fixture exists");
    let mut text = Vec::new();
    flate2::read::MultiGzDecoder::new(BufReader::new(file))
        .read_to_end(&mut text)
        .expect("fixture is valid gzip");
    text
}

/// Reads every frame of `text`, asserting none is malformed, and writes them back.
fn read_and_rewrite(text: &[u8]) -> (Vec<TimedFrame>, Vec<String>, Vec<u8>) {
    let mut reader = CandumpReader::new(text, ErrorPolicy::Strict);
    let frames: Vec<TimedFrame> = reader.by_ref().map(|r| r.expect("no malformed line")).collect();
    let stats = reader.stats();
    assert_eq!(stats.malformed, 0);
    assert_eq!(stats.ignored, 0);
    assert_eq!(stats.frames, frames.len() as u64);
    let channels = reader.channels().to_vec();
    let mut writer = CandumpWriter::new(Vec::new());
    for f in &frames {
        let name = channels.get(usize::from(f.channel.0)).expect("channel is interned");
        writer.write(f, name).expect("write to memory");
    }
    (frames, channels, writer.into_inner().expect("flush to memory"))
}

#[test]
fn gps_log_reads_all_640067_frames_and_writes_back_byte_for_byte() {
    let text = gunzip("canmod_gps_3BA199E2.log.gz");
    let (frames, channels, written) = read_and_rewrite(&text);
    assert_eq!(frames.len(), 640_067);
    assert_eq!(channels, ["can1", "can2"]);
    assert_eq!(frames.first().map(|f| f.t_ns), Some(1_627_274_455_012_500_000));
    assert!(frames.iter().any(|f| f.frame.id.is_extended()));
    assert!(written == text, "rewritten GPS log differs from the original");
}

#[test]
fn j1939_log_reads_all_150411_frames_and_writes_back_byte_for_byte() {
    let text = gunzip("j1939_asammdf_basics.log.gz");
    let (frames, channels, written) = read_and_rewrite(&text);
    assert_eq!(frames.len(), 150_411);
    assert_eq!(channels, ["can1", "can9"]);
    // can1 is the J1939 bus (extended ids), can9 carries 11-bit ids.
    for f in &frames {
        assert_eq!(f.frame.id.is_extended(), f.channel.0 == 0, "{f:?}");
    }
    assert!(written == text, "rewritten J1939 log differs from the original");
}

#[test]
fn open_gunzips_and_picks_the_candump_reader_by_extension() {
    let path = fixture("j1939_asammdf_basics.log.gz");
    assert_eq!(Format::from_path(&path), Some(Format::Candump));
    let mut reader = trace::open(&path, ErrorPolicy::Strict).expect("opens");
    let count = reader.by_ref().inspect(|r| assert!(r.is_ok(), "{r:?}")).count();
    assert_eq!(count, 150_411);
    assert_eq!(reader.stats().frames, 150_411);
    assert_eq!(reader.channels(), ["can1", "can9"]);
}

/// CPU time this thread has run, from `/proc/thread-self/schedstat` (Linux), so the figure does
/// not depend on how busy the machine is; falls back to wall time elsewhere.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Ad-hoc throughput figure: `cargo test --release --test trace_candump_real -- --ignored --nocapture`.
#[test]
#[ignore = "measurement, not a check"]
fn candump_reader_throughput_on_the_uncompressed_gps_log() {
    let text = gunzip("canmod_gps_3BA199E2.log.gz");
    let lines = text.lines().count();
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        let cpu0 = thread_cpu_ns();
        let mut n = 0u64;
        let mut sum = 0u64;
        for f in CandumpReader::new(&text[..], ErrorPolicy::Strict) {
            let f = f.expect("valid");
            n += 1;
            sum = sum.wrapping_add(f.t_ns ^ u64::from(f.frame.id.raw()));
        }
        let wall = start.elapsed().as_secs_f64();
        let secs = match (cpu0, thread_cpu_ns()) {
            (Some(a), Some(b)) => (b - a) as f64 / 1e9,
            _ => wall,
        };
        assert_eq!(n as usize, lines);
        std::hint::black_box(sum);
        best = best.min(secs);
    }
    println!(
        "candump read (thread CPU time): {lines} lines in {:.1} ms = {:.2} M lines/s, {:.0} MB/s",
        best * 1e3,
        lines as f64 / best / 1e6,
        text.len() as f64 / best / 1e6
    );
    let cpu0 = thread_cpu_ns();
    let start = Instant::now();
    let n = trace::open(&fixture("canmod_gps_3BA199E2.log.gz"), ErrorPolicy::Strict)
        .expect("opens")
        .inspect(|r| assert!(r.is_ok()))
        .count();
    let secs = match (cpu0, thread_cpu_ns()) {
        (Some(a), Some(b)) => (b - a) as f64 / 1e9,
        _ => start.elapsed().as_secs_f64(),
    };
    println!("open() on the .gz (gunzip + read): {:.2} M lines/s", n as f64 / secs / 1e6);
    let mut w = CandumpWriter::new(Vec::with_capacity(text.len()));
    let frames: Vec<_> =
        CandumpReader::new(&text[..], ErrorPolicy::Strict).map(|f| f.expect("valid")).collect();
    let start = Instant::now();
    let cpu0 = thread_cpu_ns();
    for f in &frames {
        w.write(f, "can1").expect("write");
    }
    let secs = match (cpu0, thread_cpu_ns()) {
        (Some(a), Some(b)) => (b - a) as f64 / 1e9,
        _ => start.elapsed().as_secs_f64(),
    };
    println!("candump write: {:.2} M lines/s", frames.len() as f64 / secs / 1e6);
}
