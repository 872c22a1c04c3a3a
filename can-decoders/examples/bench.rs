//! Decode benchmark, side by side with cantools on the same frames (run by `make bench`).
//!
//! Measures, single-threaded: candump lines parsed per second (uncompressed text in memory),
//! frames decoded per second on the real GPS trace with its DBC, and frames decoded per second on
//! a Motorola-heavy opendbc DBC with random payloads; then runs `scripts/bench_cantools.py` on the
//! same frames and prints the ratio. Figures are printed, never asserted.

use std::io::{BufRead, Cursor, Read};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use can_decoders::dbc;
use can_decoders::decode::{Decoded, Decoder};
use can_decoders::trace::{CandumpReader, CandumpWriter, ErrorPolicy};
use can_decoders::{CanFrame, ChannelId, Direction, FrameKind, TimedFrame};

const MIN_RUN: Duration = Duration::from_secs(2);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read_text(path: &Path) -> anyhow::Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..]).read_to_end(&mut out)?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// CPU time of this thread (Linux `/proc/thread-self/schedstat`, nanoseconds on the CPU): a
/// rate per CPU second stays meaningful when other processes share the machine.
fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok().map(Duration::from_nanos)
}

/// Items per second of CPU time (wall time where schedstat is missing).
#[derive(Clone, Copy)]
struct Rate {
    per_cpu_s: f64,
    per_wall_s: f64,
}

/// Runs `f` (which processes `per_run` items) until `MIN_RUN` has passed.
fn rate(per_run: usize, mut f: impl FnMut() -> usize) -> (Rate, usize) {
    let start = Instant::now();
    let cpu0 = thread_cpu();
    let (mut items, mut check) = (0usize, 0usize);
    while start.elapsed() < MIN_RUN {
        check = check.wrapping_add(f());
        items += per_run;
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = match (cpu0, thread_cpu()) {
        (Some(a), Some(b)) if b > a => (b - a).as_secs_f64(),
        _ => wall,
    };
    (Rate { per_cpu_s: items as f64 / cpu, per_wall_s: items as f64 / wall }, check)
}

fn decode_rate(decoder: &Decoder, frames: &[CanFrame]) -> Rate {
    let bus = decoder.bus("can1");
    let mut out = Decoded::default();
    let (r, check) = rate(frames.len(), || {
        let mut n = 0;
        for f in frames {
            if decoder.decode(bus, std::hint::black_box(f), &mut out).is_some() {
                n += out.values.len();
            }
        }
        n
    });
    std::hint::black_box(check);
    r
}

/// cantools' frames per CPU second (Python's `time.thread_time`).
fn cantools_rate(dbc: &Path, trace: &Path) -> anyhow::Result<f64> {
    let python = std::env::var_os("IOV_ORACLE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".venv/bin/python"));
    let out = Command::new(&python)
        .arg(workspace().join("scripts/bench_cantools.py"))
        .arg("--dbc")
        .arg(dbc)
        .arg("--trace")
        .arg(trace)
        .output()
        .with_context(|| format!("running cantools with {} (run `make deps`)", python.display()))?;
    if !out.status.success() {
        bail!("bench_cantools.py failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("unexpected output {text:?}"))
}

/// Random payloads for every message of `db`, deterministic.
fn random_frames(db: &dbc::Database, per_message: usize) -> Vec<CanFrame> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut frames = Vec::new();
    for _ in 0..per_message {
        for m in &db.messages {
            let mut data = vec![0u8; usize::from(m.length)];
            for b in &mut data {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = state as u8;
            }
            let kind = if m.length > 8 {
                FrameKind::Fd { brs: true, esi: false }
            } else {
                FrameKind::Data
            };
            if let Ok(f) = CanFrame::new(m.id, kind, &data) {
                frames.push(f);
            }
        }
    }
    frames
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut dbc_path, mut trace_path) = (
        workspace().join("fixtures/dbc/css-electronics/canmod-gps.dbc"),
        workspace().join("fixtures/traces/canmod_gps_3BA199E2.log.gz"),
    );
    let mut motorola_path = workspace().join("fixtures/dbc/opendbc/ford_lincoln_base_pt.dbc");
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dbc" => dbc_path = args.next().context("--dbc FILE")?.into(),
            "--trace" => trace_path = args.next().context("--trace FILE")?.into(),
            "--motorola-dbc" => motorola_path = args.next().context("--motorola-dbc FILE")?.into(),
            "--bench" => {} // passed by `cargo bench`
            other => bail!("unknown argument {other}"),
        }
    }

    // 1. candump parsing.
    let text = read_text(&trace_path)?;
    let lines = text.lines().count();
    let (parse_rate, _) = rate(lines, || {
        let reader = CandumpReader::new(Cursor::new(&text[..]), ErrorPolicy::Strict);
        reader.filter(Result::is_ok).count()
    });
    let frames: Vec<CanFrame> = CandumpReader::new(Cursor::new(&text[..]), ErrorPolicy::Strict)
        .map(|r| r.map(|t| t.frame))
        .collect::<Result<_, _>>()?;

    // 2. GPS trace decode.
    let db = dbc::load_file(&dbc_path)?;
    let mut b = Decoder::builder();
    b.add_database(&db, &[]);
    let (decoder, _) = b.build()?;
    let gps_rate = decode_rate(&decoder, &frames);

    // 3. Motorola-heavy DBC, random payloads, written to a temporary candump file for cantools.
    let mdb = dbc::load_file(&motorola_path)?;
    let mframes = random_frames(&mdb, 200);
    let mut b = Decoder::builder();
    b.add_database(&mdb, &[]);
    let (mdecoder, _) = b.build()?;
    let moto_rate = decode_rate(&mdecoder, &mframes);
    let moto_signals: usize = mdb.messages.iter().map(|m| m.signals.len()).sum();
    let tmp = std::env::temp_dir().join(format!("iov-bench-{}.log", std::process::id()));
    {
        let mut w = CandumpWriter::new(std::io::BufWriter::new(std::fs::File::create(&tmp)?));
        for (i, f) in mframes.iter().enumerate() {
            let t = TimedFrame {
                t_ns: i as u64 * 1000,
                channel: ChannelId(0),
                direction: Direction::Rx,
                frame: *f,
            };
            w.write(&t, "can1")?;
        }
        w.flush()?;
    }

    println!("can-decoders benchmark (one core, release build)");
    println!(
        "  candump parse   {:>12.0} lines/s   per CPU s ({:.0} per wall s; {} lines of {})",
        parse_rate.per_cpu_s,
        parse_rate.per_wall_s,
        lines,
        trace_path.display()
    );
    println!(
        "  decode GPS      {:>12.0} frames/s  per CPU s ({:.0} per wall s; {} frames, {} messages)",
        gps_rate.per_cpu_s,
        gps_rate.per_wall_s,
        frames.len(),
        db.messages.len()
    );
    println!("  decode Motorola {:>12.0} frames/s  per CPU s ({:.0} per wall s; {} random frames over {} messages, {} signals of {})", moto_rate.per_cpu_s, moto_rate.per_wall_s, mframes.len(), mdb.messages.len(), moto_signals, motorola_path.display());

    let gps_ct = cantools_rate(&dbc_path, &trace_path);
    let moto_ct = cantools_rate(&motorola_path, &tmp);
    let _ = std::fs::remove_file(&tmp);
    match (gps_ct, moto_ct) {
        (Ok(g), Ok(m)) => {
            println!(
                "  cantools GPS    {:>12.0} frames/s  -> ours is {:.0}x",
                g,
                gps_rate.per_cpu_s / g
            );
            println!(
                "  cantools Motorola {:>10.0} frames/s  -> ours is {:.0}x",
                m,
                moto_rate.per_cpu_s / m
            );
        }
        (g, m) => {
            for e in [g.err(), m.err()].into_iter().flatten() {
                println!("  cantools: not measured: {e:#}");
            }
        }
    }
    Ok(())
}
