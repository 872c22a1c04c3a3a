//! The real `iov-gateway` under load, killed: a trace source at `pace = "fast"` replays the real
//! GPS trace into a RocksDB store in small blocks (an append every few milliseconds), and the
//! test kills the daemon with SIGKILL at random moments (seeded), N times on the same store.
//! After every kill:
//!
//! - `iovctl store verify` (the real binary) exits 0;
//! - every block the log reported durable before the kill is in the store, and at most the one
//!   append in flight beyond it;
//! - the blocks this run appended hold, in their raw lane, exactly a prefix of the trace (every
//!   run replays the trace from its start): in order, no duplicates, no holes;
//! - the next start continues the same log (its blocks start at the height the kill left).
//!
//! And a SIGTERM under load: exit 0, the partial block is sealed, and the store holds exactly
//! the frames the source had read (the summary line's count), in order.
//!
//! `IOV_CRASH_SEED` replays a run's kill schedule (the seed is printed); `IOV_CRASH_TRIALS` sets
//! the number of kills (default 72, about a minute on the project's 2-core machine).

#![cfg(feature = "rocks")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use can_decoders::trace::{self, ErrorPolicy};
use ledger::block::BlockHeader;
use ledger::lane::Limits;
use ledger::record::Record;
use ledger::seal::open_lane_bytes;
use ledger::store::rocks::{Mode, Rocks};
use ledger::store::Store as _;

/// Frames per block: small, so a fast replay appends every few milliseconds and kills land
/// before, during and after appends.
const BLOCK: u64 = 4_000;
/// Blocks a full replay of the GPS trace makes (640,067 frames).
const FULL_RUN_BLOCKS: u64 = 160;
const TRIALS_DEFAULT: u64 = 72;
/// Generous bounds for one start-to-condition wait on a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(120);

fn gps_trace() -> PathBuf {
    common::fixtures().join("traces/canmod_gps_3BA199E2.log.gz")
}

/// The trace as the gateway's raw lane records it.
fn trace_records() -> Result<Vec<Record>> {
    let mut r = trace::open(&gps_trace(), ErrorPolicy::Strict)?;
    let mut want = Vec::new();
    while let Some(f) = r.next() {
        let f = f?;
        let name: Arc<str> = Arc::from(
            r.channels().get(usize::from(f.channel.0)).context("trace channel name")?.as_str(),
        );
        want.push(Record::Can(gateway::pipeline::can_record(&name, &f)?));
    }
    Ok(want)
}

fn write_config(dir: &Path, at_end: &str) -> Result<PathBuf> {
    let config = dir.join(format!("gateway-{at_end}.toml"));
    std::fs::write(
        &config,
        format!(
            r#"
[gateway]
signing_key = "signing.key"
store = "store"
[block]
max_records = {BLOCK}
max_age = "60s"
[[dbc]]
file = "{dbc}"
[recipients]
factory = "factory.pub"
city = "city.pub"
[sources.replay]
kind = "trace"
file = "{trace}"
pace = "fast"
at_end = "{at_end}"
[lanes.factory]
carries = "raw"
recipients = ["factory"]
[lanes.city]
carries = "signals"
recipients = ["city"]
signals = [
  {{ name = "gnss_speed.Speed", min_interval = "1s" }},
  {{ name = "gnss_pos.Latitude", min_interval = "1s", grid = 0.001 }},
]
"#,
            dbc = common::fixtures().join("dbc/css-electronics/canmod-gps.dbc").display(),
            trace = gps_trace().display()
        ),
    )?;
    Ok(config)
}

/// splitmix64: a seeded schedule of kill moments, reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn env_u64(name: &str) -> Result<Option<u64>> {
    match std::env::var(name) {
        Ok(v) => Ok(Some(v.trim().parse().with_context(|| format!("{name}={v:?}"))?)),
        Err(_) => Ok(None),
    }
}

/// `height=N` of a "block durable" log line.
fn durable_height(line: &str) -> Option<u64> {
    if !line.contains("block durable") {
        return None;
    }
    line.split_whitespace().find_map(|w| w.strip_prefix("height=")).and_then(|n| n.parse().ok())
}

/// Runs `iovctl store verify`; the log size it reports.
fn iovctl_verify(dir: &Path) -> Result<std::result::Result<u64, String>> {
    let out = Command::new(common::iovctl()?)
        .args(["store", "verify", "--store"])
        .arg(dir.join("store"))
        .arg("--key")
        .arg(dir.join("signing.vkey"))
        .output()?;
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Ok(Err(format!("exit {}: {text}", out.status)));
    }
    let size = text
        .lines()
        .find_map(|l| l.strip_prefix("size"))
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("no size in iovctl's output:\n{text}"))?;
    Ok(Ok(size))
}

/// What blocks `from..` of the store hold: the raw lane's records in order, the records per
/// block (raw lane), and how many city samples.
struct Segment {
    raw: Vec<Record>,
    per_block: Vec<usize>,
    city: usize,
    size: u64,
}

fn read_segment(dir: &Path, k: &common::Keys, from: u64) -> Result<Segment> {
    let store = Rocks::open(&dir.join("store"), &k.signer.verifier(), Mode::Verify)?;
    let size = store.size();
    let mut seg = Segment { raw: Vec::new(), per_block: Vec::new(), city: 0, size };
    for h in from..size {
        let header = BlockHeader::from_bytes(&store.header(h)?.context("header")?)?;
        let lanes = store.lanes(h)?;
        for (i, l) in header.lanes.iter().enumerate() {
            let key = if l.name == "factory" { &k.factory } else { &k.city };
            let bytes = lanes.get(i).with_context(|| format!("block {h} lane {i} missing"))?;
            let recs = open_lane_bytes(&header, i, bytes, key, &Limits::default())
                .with_context(|| format!("opening block {h} lane {}", l.name))?;
            if l.name == "factory" {
                seg.per_block.push(recs.len());
                seg.raw.extend(recs);
            } else {
                seg.city += recs.len();
            }
        }
    }
    Ok(seg)
}

/// The segment's raw records are exactly `want[..n]`.
fn check_prefix(what: &str, got: &[Record], want: &[Record]) -> Result<()> {
    ensure!(
        got.len() <= want.len(),
        "{what}: {} records, more than the trace's {}",
        got.len(),
        want.len()
    );
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        bail!(
            "{what}: record {i} is not trace frame {i}: stored {:?}, trace {:?}",
            got[i],
            want[i]
        );
    }
    Ok(())
}

#[test]
fn sigkill_at_random_moments_under_load_leaves_a_verified_prefix_and_restarts_append() -> Result<()>
{
    let seed = match env_u64("IOV_CRASH_SEED")? {
        Some(s) => s,
        None => {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos() as u64
        }
    };
    let trials = env_u64("IOV_CRASH_TRIALS")?.unwrap_or(TRIALS_DEFAULT);
    eprintln!("crash: seed {seed} (IOV_CRASH_SEED={seed} replays the schedule), {trials} kills");
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    let k = common::keys(d)?;
    let want = trace_records()?;
    let config = write_config(d, "continue")?;
    let started = Instant::now();
    let (mut size, mut torn_tails, mut early_kills) = (0u64, 0u32, 0u32);
    for trial in 0..trials {
        let ctx = || format!("trial {trial} (seed {seed})");
        let mut gw = common::Gateway::start(&config).with_context(ctx)?;
        // About one kill in five (never the first: the store must exist) lands during start-up (store open and recovery, the first frames);
        // the others after a random number of this run's blocks are durable, plus up to 3 ms
        // so they fall anywhere in the append cycle. These waits pick the moment on purpose.
        let early = trial > 0 && rng.range(0, 4) == 0;
        if early {
            early_kills += 1;
            std::thread::sleep(Duration::from_millis(rng.range(0, 300)));
        } else {
            let target = size + rng.range(1, FULL_RUN_BLOCKS / 2);
            gw.wait_for(WAIT, |l| durable_height(l).is_some_and(|h| h >= target))
                .with_context(ctx)?;
            std::thread::sleep(Duration::from_micros(rng.range(0, 3_000)));
        }
        gw.signal("-KILL").with_context(ctx)?;
        let (status, _) = gw.wait_exit(WAIT).with_context(ctx)?;
        ensure!(!status.success(), "{}: the gateway exited {status} before the kill", ctx());
        // Every append the log reported before it died.
        let logged = gw.seen.iter().filter_map(|l| durable_height(l)).max();
        // A SIGKILL inside the WAL write can leave a torn, never-acknowledged last record;
        // `iovctl store verify` reports it (strict WAL checks), and opening the store for
        // writing drops it, as the daemon does on restart (`ledger` D21/D22).
        let verified = match iovctl_verify(d)? {
            Ok(s) => s,
            Err(e) if e.contains("Corruption") => {
                torn_tails += 1;
                eprintln!("crash: {}: torn WAL tail, recovered by a read-write open: {e}", ctx());
                drop(Rocks::open(&d.join("store"), &k.signer.verifier(), Mode::Open)?);
                iovctl_verify(d)?
                    .map_err(|e| anyhow::anyhow!("{}: still damaged after recovery: {e}", ctx()))?
            }
            Err(e) => bail!("{}: iovctl store verify failed: {e}", ctx()),
        };
        let seg = read_segment(d, &k, size).with_context(ctx)?;
        ensure!(seg.size == verified, "{}: store size {} != verified {verified}", ctx(), seg.size);
        if let Some(h) = logged {
            ensure!(h >= size, "{}: run logged height {h} below its start {size}", ctx());
            ensure!(
                seg.size == h + 1 || seg.size == h + 2,
                "{}: the log reported block {h} durable, the store has size {}",
                ctx(),
                seg.size
            );
        } else {
            ensure!(
                seg.size <= size + 1,
                "{}: {} blocks appeared unlogged",
                ctx(),
                seg.size - size
            );
        }
        ensure!(
            seg.per_block.iter().all(|&n| n as u64 == BLOCK),
            "{}: a block that is not full after a kill: {:?}",
            ctx(),
            seg.per_block
        );
        check_prefix(&ctx(), &seg.raw, &want)?;
        eprintln!(
            "crash: trial {trial}: {} at size {}, +{} blocks, {} frames (a trace prefix), {} city samples",
            if early { "killed during start" } else { "killed under load" },
            seg.size,
            seg.size - size,
            seg.raw.len(),
            seg.city
        );
        size = seg.size;
    }
    // A last start on the same store replays the whole trace and stops at its end: the log
    // continues from where the kills left it and holds the complete trace once more.
    let mut gw = common::Gateway::start(&write_config(d, "shutdown")?)?;
    let (status, _) = gw.wait_exit(Duration::from_secs(600))?;
    ensure!(status.success(), "final run exited {status}; log:\n{}", gw.seen.join("\n"));
    let verified = iovctl_verify(d)?.map_err(|e| anyhow::anyhow!("after the final run: {e}"))?;
    let seg = read_segment(d, &k, size)?;
    ensure!(seg.size == verified);
    ensure!(seg.raw == want, "the final run stored {} of {} frames", seg.raw.len(), want.len());
    ensure!(seg.city > 0, "the city lane is empty");
    eprintln!(
        "crash: {trials} kills ({early_kills} during start-up, {torn_tails} torn WAL tails), then a full \
         replay: log size {}, verified; {:.1} s",
        seg.size,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[test]
fn sigterm_under_load_seals_the_partial_block_with_everything_read() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    let k = common::keys(d)?;
    let want = trace_records()?;
    let mut gw = common::Gateway::start(&write_config(d, "continue")?)?;
    // Well inside the replay (160 blocks in all).
    gw.wait_for(WAIT, |l| durable_height(l).is_some_and(|h| h >= 30))?;
    gw.signal("-TERM")?;
    let (status, stdout) = gw.wait_exit(WAIT)?;
    ensure!(status.success(), "SIGTERM exit {status}; log:\n{}", gw.seen.join("\n"));
    ensure!(
        gw.seen.iter().any(|l| l.contains("sealing the partial block")),
        "no partial block sealed; log:\n{}",
        gw.seen.join("\n")
    );
    let field = |line: &str, key: &str| -> Result<u64> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("{key} in {line:?}"))
    };
    let summary = stdout.lines().find(|l| l.contains("stopped:")).context("summary line")?;
    let frames_in = field(summary, "frames_in=")?;
    let src = stdout.lines().find(|l| l.contains("source replay:")).context("source line")?;
    let (received, delivered) = (field(src, "received=")?, field(src, "delivered=")?);
    ensure!(received == delivered && delivered == frames_in, "{src} / {summary}");
    ensure!(frames_in < want.len() as u64, "the replay had ended before SIGTERM: {summary}");

    iovctl_verify(d)?.map_err(|e| anyhow::anyhow!("after SIGTERM: {e}"))?;
    let seg = read_segment(d, &k, 0)?;
    ensure!(
        seg.raw.len() as u64 == frames_in,
        "the store holds {} frames, the source read {frames_in}",
        seg.raw.len()
    );
    check_prefix("after SIGTERM", &seg.raw, &want)?;
    let (last, full) = seg.per_block.split_last().context("no blocks")?;
    ensure!(full.iter().all(|&n| n as u64 == BLOCK), "{:?}", seg.per_block);
    // The rest after the full blocks (a full block only if the count happened to be a multiple).
    ensure!(
        *last as u64 == frames_in - BLOCK * full.len() as u64 && *last as u64 <= BLOCK,
        "the last block holds {last}, not the rest of {frames_in}"
    );
    eprintln!(
        "sigterm: {frames_in} frames read, all stored in {} blocks (last partial: {last})",
        seg.size
    );
    Ok(())
}
