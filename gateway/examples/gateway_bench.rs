//! Gateway benchmarks on the real daemon (`iov-gateway run` as a child process), measured from
//! `/proc`; figures go to docs/BENCHMARKS.md by hand.
//!
//! - **ingest on one core**: the real GPS trace at `pace = "fast"` through decode, a raw lane
//!   and a signal lane, sealing (zstd, HPKE) and synced RocksDB appends, the daemon pinned to
//!   CPU 0 (`taskset -c 0`; all its threads share that core). Frames per second of the
//!   process's CPU time (user + system of every thread, `/proc/PID/stat` read while it is a
//!   zombie, so nothing is missed) and per wall second; peak RSS (`VmHWM`).
//! - **CPU share at a realistic bus load**: the same trace at `pace = "x200"` (about 25,000
//!   frames/s in its dense stretches), CPU seconds over wall seconds of the process across a
//!   window, the frame rate over that window from the metrics endpoint, and `VmHWM`.
//!
//! ```text
//! cargo build --release -p gateway --bin iov-gateway
//! cargo run --release -p gateway --example gateway_bench -- [--runs 3] [--window 10] [--pace x200] [--soak 120] [--max-records N]
//! ```

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use process_metrics::ProcessSample;

#[derive(Parser)]
struct Args {
    /// The daemon; default: `iov-gateway` next to this example's target directory.
    #[arg(long)]
    gateway: Option<PathBuf>,
    /// Ingest runs (the best and the median are printed).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seconds of the CPU-share window.
    #[arg(long, default_value_t = 10.0)]
    window: f64,
    /// Pace of the CPU-share run.
    #[arg(long, default_value = "x200")]
    pace: String,
    /// Skip the ingest runs.
    #[arg(long)]
    no_ingest: bool,
    /// Skip the CPU-share run.
    #[arg(long)]
    no_cpu: bool,
    /// Also run a soak of this many seconds at the CPU-share pace: the GPS trace looped with
    /// its long recorded gaps shortened, so the load stays at the bus rate for the whole run
    /// and peak RSS covers many sealed blocks and memtable flushes (0: no soak).
    #[arg(long, default_value_t = 0.0)]
    soak: f64,
    /// `block.max_records` of every run (default: the gateway's default).
    #[arg(long)]
    max_records: Option<usize>,
    /// Keep keys, configs and stores in this (new) directory, e.g. to rerun a config under
    /// `perf record`; default: a temporary directory, removed at the end.
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Setup {
    _tmp: Option<tempfile::TempDir>,
    dir: PathBuf,
    /// Extra config sections every run gets (the block policy override).
    extra: String,
}

fn setup(keep: Option<PathBuf>, max_records: Option<usize>) -> Result<Setup> {
    let (tmp, dir) = match keep {
        Some(d) => {
            std::fs::create_dir(&d).with_context(|| format!("creating {}", d.display()))?;
            (None, d)
        }
        None => {
            let t = tempfile::tempdir()?;
            let d = t.path().to_path_buf();
            (Some(t), d)
        }
    };
    let signer = ledger::keys::generate_signer("iov.example/gw/bench")?;
    ledger::keys::save_signer(&dir.join("signing.key"), &signer)?;
    for name in ["factory", "city"] {
        let k = ledger::keys::X25519Key::generate(name)?;
        std::fs::write(dir.join(format!("{name}.pub")), k.public_text())?;
    }
    let extra = max_records.map(|n| format!("[block]\nmax_records = {n}\n")).unwrap_or_default();
    Ok(Setup { _tmp: tmp, dir, extra })
}

/// The e2e test's lanes: raw `factory`, 1 Hz coarsened `city` signals; default block policy.
fn config(
    s: &Setup,
    store: &str,
    pace: &str,
    at_end: &str,
    metrics: Option<SocketAddr>,
) -> Result<PathBuf> {
    let trace = repo().join("fixtures/traces/canmod_gps_3BA199E2.log.gz");
    config_with_trace(s, store, pace, at_end, metrics, &trace)
}

fn config_with_trace(
    s: &Setup,
    store: &str,
    pace: &str,
    at_end: &str,
    metrics: Option<SocketAddr>,
    trace: &Path,
) -> Result<PathBuf> {
    let path = s.dir.join(format!("{store}.toml"));
    let extra = &s.extra;
    let metrics = metrics.map(|a| format!("[metrics]\nlisten = \"{a}\"\n")).unwrap_or_default();
    std::fs::write(
        &path,
        format!(
            r#"
[gateway]
signing_key = "signing.key"
store = "{store}"
[[dbc]]
file = "{dbc}"
[recipients]
factory = "factory.pub"
city = "city.pub"
{metrics}
{extra}
[sources.replay]
kind = "trace"
file = "{trace}"
pace = "{pace}"
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
  {{ name = "gnss_pos.Longitude", min_interval = "1s", grid = 0.001 }},
]
"#,
            dbc = repo().join("fixtures/dbc/css-electronics/canmod-gps.dbc").display(),
            trace = trace.display(),
        ),
    )?;
    Ok(path)
}

fn spawn(cmd: &mut Command) -> Result<Child> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::null()).env("RUST_LOG", "warn");
    cmd.spawn().context("starting iov-gateway")
}

struct Ingest {
    frames: u64,
    wall: f64,
    cpu: f64,
    hwm_kib: u64,
    blocks: u64,
}

fn ingest_once(gw: &Path, s: &Setup, run: usize) -> Result<Ingest> {
    let cfg = config(s, &format!("ingest{run}"), "fast", "shutdown", None)?;
    let pinned = Path::new("/usr/bin/taskset").is_file();
    let mut cmd = if pinned {
        let mut c = Command::new("/usr/bin/taskset");
        c.args(["-c", "0"]).arg(gw);
        c
    } else {
        Command::new(gw)
    };
    cmd.args(["run", "--config"]).arg(&cfg);
    let t0 = Instant::now();
    let mut child = spawn(&mut cmd)?;
    let pid = child.id();
    let mut stdout = child.stdout.take().context("stdout")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    // Poll until it is a zombie: its CPU times are final then, and not yet reaped.
    let mut hwm = 0u64;
    let cpu = loop {
        let sample = ProcessSample::of_pid(pid)?;
        hwm = hwm.max(sample.peak_resident_bytes.unwrap_or(0) / 1024);
        if sample.is_zombie() {
            break sample.cpu_seconds;
        }
        ensure!(t0.elapsed() < Duration::from_secs(600), "ingest run took over 10 minutes");
        std::thread::sleep(Duration::from_millis(5));
    };
    let wall = t0.elapsed().as_secs_f64();
    let status = child.wait()?;
    let out = reader.join().unwrap_or_default();
    ensure!(status.success(), "iov-gateway exited {status}: {out}");
    let field = |k: &str| -> Result<u64> {
        out.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{k} in {out:?}"))
    };
    Ok(Ingest {
        frames: field("frames_in=")?,
        wall,
        cpu,
        hwm_kib: hwm,
        blocks: field("log_size=")?,
    })
}

fn http_metric(addr: SocketAddr, line_prefix: &str) -> Result<Option<u64>> {
    let mut s = match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Ok(s) => s,
        Err(_) => return Ok(None),
    };
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body
        .lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64))
}

fn cpu_share(gw: &Path, s: &Setup, pace: &str, window: f64) -> Result<()> {
    let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let cfg = config(s, "cpu", pace, "continue", Some(addr))?;
    let mut child = spawn(Command::new(gw).args(["run", "--config"]).arg(&cfg))?;
    let pid = child.id();
    let frames = || http_metric(addr, "iov_frames_received_total{iface=\"replay\"}");
    let r = (|| -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        // Warm up: one second of frames at the target rate.
        while frames()?.unwrap_or(0) < 25_000 {
            ensure!(Instant::now() < deadline, "no frames after 60 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        let c0 = ProcessSample::of_pid(pid)?.cpu_seconds;
        let (f0, t0) = (frames()?.context("metrics")?, Instant::now());
        // The measurement window itself (a benchmark, not a test: waiting is the point).
        std::thread::sleep(Duration::from_secs_f64(window));
        let end = ProcessSample::of_pid(pid)?;
        let (f1, wall) = (frames()?.context("metrics")?, t0.elapsed().as_secs_f64());
        let c1 = end.cpu_seconds;
        let hwm = end.peak_resident_bytes.context("VmHWM")? / 1024;
        let rate = (f1 - f0) as f64 / wall;
        println!(
            "cpu share, pace {pace}: {:.0} frames/s over {wall:.1} s; CPU {:.2} s = {:.2} % of one core \
             ({:.1} µs of CPU per frame); peak RSS (VmHWM) {:.1} MiB",
            rate,
            c1 - c0,
            100.0 * (c1 - c0) / wall,
            1e6 * (c1 - c0) / (f1 - f0).max(1) as f64,
            hwm as f64 / 1024.0
        );
        Ok(())
    })();
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let status = child.wait()?;
    r?;
    ensure!(status.success(), "iov-gateway exited {status} after SIGTERM");
    Ok(())
}

/// Longest recorded gap the soak trace keeps; longer ones (the recording's hours-long pauses)
/// are cut to this, so the paced replay stays at bus load.
const SOAK_MAX_GAP_NS: u64 = 100_000_000;

/// Writes the GPS trace `loops` times over, back to back in time with long gaps shortened, as a
/// candump log; returns its path and the frames in one loop.
fn soak_trace(dir: &Path, loops: usize) -> Result<(PathBuf, usize)> {
    use can_decoders::trace::{CandumpReader, CandumpWriter, ErrorPolicy};
    let src = repo().join("fixtures/traces/canmod_gps_3BA199E2.log.gz");
    let file = std::fs::File::open(&src).with_context(|| format!("{}", src.display()))?;
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(file));
    let frames = CandumpReader::new(reader, ErrorPolicy::Strict)
        .collect::<Result<Vec<_>, _>>()
        .context("reading the GPS trace")?;
    let first = frames.first().context("empty trace")?.t_ns;
    // Offsets from the first frame with every gap capped.
    let mut offsets = Vec::with_capacity(frames.len());
    let (mut prev, mut at) = (first, 0u64);
    for f in &frames {
        at += f.t_ns.saturating_sub(prev).min(SOAK_MAX_GAP_NS);
        prev = f.t_ns;
        offsets.push(at);
    }
    let span = at + SOAK_MAX_GAP_NS;
    // Gzipped like the real trace, so the source's gunzip is counted in the soak too.
    let path = dir.join("soak.log.gz");
    let out = flate2::write::GzEncoder::new(
        std::io::BufWriter::new(std::fs::File::create(&path)?),
        flate2::Compression::fast(),
    );
    let mut w = CandumpWriter::new(out);
    for lap in 0..loops as u64 {
        for (f, off) in frames.iter().zip(&offsets) {
            let mut g = *f;
            g.t_ns = first + lap * span + off;
            w.write(&g, "can0")?;
        }
    }
    w.into_inner()?.finish()?.flush()?;
    Ok((path, frames.len()))
}

/// A paced replay for `seconds`, RSS sampled every 100 ms: does peak memory stay flat over
/// many blocks (memtable flushes, the writer queue, allocator fragmentation)?
fn soak(gw: &Path, s: &Setup, pace: &str, seconds: f64) -> Result<()> {
    let speed: f64 =
        pace.strip_prefix('x').and_then(|v| v.parse().ok()).context("soak pace must be xN")?;
    // One loop lasts about 640,067 / 24,600 s at x200; write enough for the run and a margin.
    let loops = ((seconds * speed / 5_000.0).ceil() as usize).max(2);
    let (trace, per_loop) = soak_trace(&s.dir, loops)?;
    let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let cfg = config_with_trace(s, "soak", pace, "continue", Some(addr), &trace)?;
    let mut child = spawn(Command::new(gw).args(["run", "--config"]).arg(&cfg))?;
    let pid = child.id();
    let metric = |name: &str| http_metric(addr, name);
    let r = (|| -> Result<()> {
        let t0 = Instant::now();
        let mut samples: Vec<(f64, u64)> = Vec::new();
        // Steady-state CPU share: from the end of the warm-up (the first blocks' fresh layout
        // searches, the first page faults of every buffer) to the end of the run.
        let warmup = (seconds / 6.0).clamp(2.0, SOAK_WARMUP_MAX_S);
        let mut steady_from: Option<(f64, Instant, u64)> = None;
        // The measurement itself is the waiting (a benchmark, not a test).
        while t0.elapsed().as_secs_f64() < seconds {
            std::thread::sleep(Duration::from_millis(100));
            if steady_from.is_none() && t0.elapsed().as_secs_f64() >= warmup {
                let frames = metric("iov_frames_received_total{iface=\"replay\"}")?.unwrap_or(0);
                steady_from =
                    Some((ProcessSample::of_pid(pid)?.cpu_seconds, Instant::now(), frames));
            }
            let rss_kib = ProcessSample::of_pid(pid)?.resident_bytes / 1024;
            samples.push((t0.elapsed().as_secs_f64(), rss_kib));
        }
        let frames = metric("iov_frames_received_total{iface=\"replay\"}")?.context("metrics")?;
        let (end, t1) = (ProcessSample::of_pid(pid)?, Instant::now());
        let c1 = end.cpu_seconds;
        let blocks = metric("iov_blocks_sealed_total")?.unwrap_or(0);
        let wakeups = metric("iov_source_wakeups_total{iface=\"replay\"}")?.unwrap_or(0);
        let hwm = end.peak_resident_bytes.context("VmHWM")? / 1024;
        let at = |q: f64| {
            let i = ((samples.len() as f64 * q) as usize).min(samples.len().saturating_sub(1));
            samples.get(i).map(|&(_, k)| k as f64 / 1024.0).unwrap_or(0.0)
        };
        println!(
            "soak, pace {pace}, {seconds:.0} s: {frames} frames ({:.1} loops of the trace, {:.0} frames/s), \
             {blocks} blocks; RSS at 25/50/75/100 % of the run {:.1} / {:.1} / {:.1} / {:.1} MiB; \
             peak RSS (VmHWM) {:.1} MiB",
            frames as f64 / per_loop as f64,
            frames as f64 / seconds,
            at(0.25),
            at(0.5),
            at(0.75),
            at(1.0),
            hwm as f64 / 1024.0
        );
        let (c0, at0, f0) = steady_from.context("the soak ended before its warm-up")?;
        let (wall, cpu, n) = ((t1 - at0).as_secs_f64(), c1 - c0, frames.saturating_sub(f0));
        println!(
            "soak CPU share, steady state ({warmup:.0} s to {seconds:.0} s): {:.0} frames/s; CPU {cpu:.2} s \
             over {wall:.1} s = {:.2} % of one core ({:.2} µs of CPU per frame); {:.0} frames per \
             source wake-up",
            n as f64 / wall,
            100.0 * cpu / wall,
            1e6 * cpu / n.max(1) as f64,
            frames as f64 / wakeups.max(1) as f64,
        );
        Ok(())
    })();
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let status = child.wait()?;
    r?;
    ensure!(status.success(), "iov-gateway exited {status} after SIGTERM");
    Ok(())
}

/// Longest warm-up a soak leaves out of its steady-state CPU share.
const SOAK_WARMUP_MAX_S: f64 = 10.0;

fn main() -> Result<()> {
    let a = Args::parse();
    let gw = match a.gateway {
        Some(p) => p,
        None => {
            let exe = std::env::current_exe()?;
            // target/release/examples/gateway_bench -> target/release/iov-gateway
            let dir = exe.parent().and_then(Path::parent).context("target dir")?;
            dir.join("iov-gateway")
        }
    };
    if !gw.is_file() {
        bail!("{} not found: cargo build --release -p gateway --bin iov-gateway", gw.display());
    }
    let s = setup(a.dir, a.max_records)?;
    if !a.no_ingest {
        let mut runs = Vec::new();
        for run in 0..a.runs {
            let r = ingest_once(&gw, &s, run)?;
            println!(
                "ingest run {run}: {} frames, {} blocks; wall {:.2} s ({:.0} frames/s), CPU {:.2} s \
                 ({:.0} frames per CPU s); peak RSS {:.1} MiB",
                r.frames,
                r.blocks,
                r.wall,
                r.frames as f64 / r.wall,
                r.cpu,
                r.frames as f64 / r.cpu,
                r.hwm_kib as f64 / 1024.0
            );
            runs.push(r);
        }
        let mut per_cpu: Vec<f64> = runs.iter().map(|r| r.frames as f64 / r.cpu).collect();
        let mut per_wall: Vec<f64> = runs.iter().map(|r| r.frames as f64 / r.wall).collect();
        per_cpu.sort_by(f64::total_cmp);
        per_wall.sort_by(f64::total_cmp);
        if let (Some(bc), Some(bw)) = (per_cpu.last(), per_wall.last()) {
            println!(
                "ingest on one core (taskset -c 0), {} runs: best {bc:.0} / median {:.0} frames per CPU s; \
                 best {bw:.0} / median {:.0} frames per wall s",
                runs.len(),
                per_cpu[per_cpu.len() / 2],
                per_wall[per_wall.len() / 2]
            );
        }
    }
    if !a.no_cpu {
        cpu_share(&gw, &s, &a.pace, a.window)?;
    }
    if a.soak > 0.0 {
        soak(&gw, &s, &a.pace, a.soak)?;
    }
    Ok(())
}
