//! `iov-sim replay`: one recorded trace through one real `iov-gateway` process (trace source,
//! decode, lanes, sealing, the RocksDB store), at the recorded pace, a multiple of it or as fast
//! as the pipeline takes it, optionally several times over. Live progress (frames, blocks,
//! drops) on stderr when it is a terminal; at the end the gateway's store is opened read-only
//! and checked (every frame of every pass is durable in the raw lane), and the decoded signals
//! are summarised (count, min, mean, max per signal, with the same decoder the gateway runs).
//!
//! `--into vcan` sends the frames through real SocketCAN in the test VM instead ([`crate::vcan`]):
//! `canplayer` onto vcan0/vcan1, the gateway reading them with socketcan sources.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::{Command as Proc, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use can_decoders::decode::{Decoded, Decoder};
use can_decoders::trace::{self, ErrorPolicy};
use ledger::block::BlockHeader;
use ledger::store::Store as _;

use crate::proc;

/// `--speed`: `1` (recorded), `10` (ten times), any positive N, or `max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    Times(f64),
    Max,
}

impl std::str::FromStr for Speed {
    type Err = String;
    fn from_str(s: &str) -> Result<Speed, String> {
        match s {
            "max" => Ok(Speed::Max),
            n => n
                .parse::<f64>()
                .ok()
                .filter(|f| (0.001..=1_000_000.0).contains(f))
                .map(Speed::Times)
                .ok_or_else(|| {
                    format!("{n:?}: use 1, 10 (times the recorded speed, 0.001 to 1000000) or max")
                }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Process,
    Vcan,
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Target, String> {
        match s {
            "process" => Ok(Target::Process),
            "vcan" => Ok(Target::Vcan),
            o => Err(format!("{o:?}: use process or vcan")),
        }
    }
}

pub struct Args {
    pub trace: PathBuf,
    pub dbc: Vec<PathBuf>,
    pub j1939: bool,
    pub speed: Speed,
    pub loops: u32,
    pub into: Target,
    pub out: PathBuf,
}

/// Statistics of one decoded signal.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct SignalStats {
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ReplaySummary {
    pub trace: String,
    /// `process` or `vcan`.
    pub into: String,
    pub frames_per_pass: u64,
    pub loops: u32,
    pub frames_received: u64,
    pub frames_durable: u64,
    pub dropped: BTreeMap<String, u64>,
    pub blocks: u64,
    pub store_bytes: u64,
    pub elapsed_s: f64,
    pub frames_per_s: f64,
    pub decoded_frames: u64,
    pub unmatched_frames: u64,
    pub signals: BTreeMap<String, SignalStats>,
    pub gateway_cpu_s: f64,
    pub gateway_peak_rss_kib: u64,
    pub ok: bool,
    pub problems: Vec<String>,
}

/// Decodes `trace` with `dbc` (the gateway's decoder, not its output: the output is checked
/// frame for frame by count) into per-signal statistics.
pub fn signal_stats(
    trace_path: &Path,
    dbc: &[PathBuf],
    j1939: bool,
) -> Result<(u64, u64, BTreeMap<String, SignalStats>)> {
    let mut dbs = Vec::new();
    for d in dbc {
        dbs.push(
            can_decoders::dbc::load_file(d).with_context(|| format!("loading {}", d.display()))?,
        );
    }
    let mut b = Decoder::builder();
    for db in &dbs {
        b.add_database(db, &[]);
    }
    b.j1939_by_pgn(j1939);
    let (decoder, _) = b.build().context("preparing the decoder")?;
    let mut reader = trace::open(trace_path, ErrorPolicy::Skip)
        .with_context(|| format!("opening {}", trace_path.display()))?;
    let mut decoded = Decoded::default();
    let mut buses = Vec::new();
    let mut acc: BTreeMap<(can_decoders::decode::MessageKey, usize), (u64, f64, f64, f64)> =
        BTreeMap::new();
    let (mut matched, mut unmatched) = (0u64, 0u64);
    while let Some(item) = reader.next() {
        let Ok(f) = item else { continue };
        let ch = usize::from(f.channel.0);
        while buses.len() <= ch {
            let name = reader.channels().get(buses.len()).cloned().unwrap_or_default();
            buses.push(decoder.bus(&name));
        }
        match decoder.decode(buses[ch], &f.frame, &mut decoded) {
            None => unmatched += 1,
            Some(k) => {
                matched += 1;
                for v in &decoded.values {
                    if !v.value.is_finite() {
                        continue;
                    }
                    let e = acc.entry((k, v.signal)).or_insert((
                        0,
                        f64::INFINITY,
                        f64::NEG_INFINITY,
                        0.0,
                    ));
                    e.0 += 1;
                    e.1 = e.1.min(v.value);
                    e.2 = e.2.max(v.value);
                    e.3 += v.value;
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    for ((m, s), (n, lo, hi, sum)) in acc {
        let msg = decoder.message(m);
        let name =
            format!("{}.{}", msg.name(), msg.signals().get(s).map(|x| x.name()).unwrap_or("?"));
        out.insert(name, SignalStats { count: n, min: lo, max: hi, mean: sum / n as f64 });
    }
    Ok((matched, unmatched, out))
}

/// Runs the replay; the caller prints [`text`].
pub fn run(a: &Args) -> Result<ReplaySummary> {
    if a.loops == 0 {
        bail!("--loop: at least 1");
    }
    let info = crate::tracefile::cut(&a.trace, None, None, 0)?;
    if a.out.exists() {
        std::fs::remove_dir_all(&a.out).with_context(|| format!("clearing {}", a.out.display()))?;
    }
    std::fs::create_dir_all(&a.out)?;
    let dir = &a.out;
    let signer = ledger::keys::generate_signer("iov.sim/gw/replay")?;
    ledger::keys::save_signer(&dir.join("signing.key"), &signer)?;
    let key = ledger::keys::X25519Key::generate("replay")?;
    std::fs::write(dir.join("replay.pub"), key.public_text())?;
    let metrics: std::net::SocketAddr =
        format!("127.0.0.1:{}", crate::world::free_port()?).parse()?;
    let started = Instant::now();
    let mut problems = Vec::new();
    let (last, usage) = match a.into {
        Target::Vcan => {
            let text = crate::vcan::run(a, dir, metrics.port())?;
            (proc::parse_metrics(&text), proc::Usage::default())
        }
        Target::Process => in_process(a, dir, metrics, info.frames, &mut problems)?,
    };
    let elapsed = started.elapsed().as_secs_f64();
    let store = ledger::store::rocks::Rocks::open(
        &dir.join("store"),
        &signer.verifier(),
        ledger::store::rocks::Mode::Verify,
    )
    .context("opening the gateway's store to check it")?;
    let blocks = store.size();
    let mut durable = 0;
    for h in 0..blocks {
        let hb = store.header(h)?.context("header")?;
        let hdr = BlockHeader::from_bytes(&hb).map_err(|e| anyhow::anyhow!("header {h}: {e}"))?;
        durable += hdr.lanes.iter().map(|l| l.record_count).sum::<u64>();
    }
    let want = info.frames * u64::from(a.loops);
    let kernel = proc::metric_sum(&last, "iov_frames_dropped_total", &["reason=\"kernel\""]) as u64;
    if durable + kernel != want || (a.into == Target::Process && kernel > 0) {
        problems.push(format!(
            "{durable} frames durable and {kernel} dropped by the kernel, the trace holds {want} (over {} passes)",
            a.loops
        ));
    }
    let mut dropped = BTreeMap::new();
    for (k, v) in &last {
        if let (true, Some(r)) = (
            k.starts_with("iov_frames_dropped_total{"),
            k.split("reason=\"").nth(1).and_then(|r| r.split('"').next()),
        ) {
            if *v > 0.0 {
                *dropped.entry(r.to_owned()).or_insert(0) += *v as u64;
            }
        }
    }
    let (decoded_frames, unmatched_frames, signals) = signal_stats(&a.trace, &a.dbc, a.j1939)?;
    Ok(ReplaySummary {
        into: if a.into == Target::Vcan { "vcan".into() } else { "process".into() },
        trace: a.trace.display().to_string(),
        frames_per_pass: info.frames,
        loops: a.loops,
        frames_received: durable
            .max(proc::metric_sum(&last, "iov_frames_received_total", &[]) as u64),
        frames_durable: durable,
        dropped,
        blocks,
        store_bytes: dir_size(&dir.join("store")),
        elapsed_s: elapsed,
        frames_per_s: durable as f64 / elapsed.max(1e-9),
        decoded_frames,
        unmatched_frames,
        signals,
        gateway_cpu_s: usage.cpu_s,
        gateway_peak_rss_kib: usage.peak_rss_kib,
        ok: problems.is_empty(),
        problems,
    })
}

/// The gateway as a host process with a trace source; returns its last metrics and usage.
fn in_process(
    a: &Args,
    dir: &Path,
    metrics: std::net::SocketAddr,
    frames: u64,
    problems: &mut Vec<String>,
) -> Result<(BTreeMap<String, f64>, proc::Usage)> {
    let pace = match a.speed {
        Speed::Max => "fast".to_owned(),
        Speed::Times(f) if (f - 1.0).abs() < 1e-12 => "recorded".to_owned(),
        Speed::Times(f) => format!("x{f}"),
    };
    let trace_abs =
        std::fs::canonicalize(&a.trace).with_context(|| format!("{}", a.trace.display()))?;
    let mut cfg = format!(
        "[gateway]\nsigning_key = \"signing.key\"\nstore = \"store\"\n\
         [block]\nmax_age = \"1s\"\n\
         [sources.replay]\nkind = \"trace\"\nfile = \"{}\"\npace = \"{pace}\"\nat_end = \"shutdown\"\nloops = {}\n\
         [recipients]\nreplay = \"replay.pub\"\n\
         [lanes.raw]\ncarries = \"raw\"\nrecipients = [\"replay\"]\n\
         [metrics]\nlisten = \"{metrics}\"\n",
        trace_abs.display(),
        a.loops
    );
    for d in &a.dbc {
        let d = std::fs::canonicalize(d).with_context(|| format!("{}", d.display()))?;
        cfg.push_str(&format!("[[dbc]]\nfile = \"{}\"\nj1939_by_pgn = {}\n", d.display(), a.j1939));
    }
    std::fs::write(dir.join("gateway.toml"), cfg)?;
    let log = std::fs::File::create(dir.join("gateway.log"))?;
    let started = Instant::now();
    let mut child = Proc::new(proc::binary("iov-gateway")?)
        .args(["run", "--config"])
        .arg(dir.join("gateway.toml"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .context("starting iov-gateway")?;
    let tty = std::io::stderr().is_terminal();
    let mut usage = proc::Usage::default();
    let mut last = BTreeMap::new();
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if let Some(u) = proc::usage(child.id()) {
            usage = u;
        }
        if let Ok((200, body)) = proc::http_get(metrics, "/metrics", Duration::from_secs(2)) {
            last = proc::parse_metrics(&String::from_utf8_lossy(&body));
            if tty {
                eprint!(
                    "\rreplay {:5.1}s  frames {:>9} / {}  blocks {:>6}  drops {:>6}   ",
                    started.elapsed().as_secs_f64(),
                    proc::metric_sum(&last, "iov_frames_received_total", &[]) as u64,
                    frames * u64::from(a.loops),
                    proc::metric_sum(&last, "iov_store_height", &[]) as u64,
                    proc::metric_sum(&last, "iov_frames_dropped_total", &[]) as u64,
                );
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if tty {
        eprintln!();
    }
    if !status.success() {
        let log = std::fs::read_to_string(dir.join("gateway.log")).unwrap_or_default();
        problems.push(format!(
            "the gateway exited with {status}: {}",
            log.lines().last().unwrap_or("")
        ));
    }
    Ok((last, usage))
}

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// The readable summary.
pub fn text(s: &ReplaySummary, out: &Path) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "replayed {} ({} frames x {} passes) through {} in {:.1} s: {:.0} frames/s",
        s.trace,
        s.frames_per_pass,
        s.loops,
        if s.into == "vcan" {
            "SocketCAN (canplayer onto vcan in the test VM, boot included) into iov-gateway"
        } else {
            "iov-gateway"
        },
        s.elapsed_s,
        s.frames_per_s
    );
    let _ = writeln!(
        o,
        "  {} frames durable in {} sealed blocks ({:.1} MiB store on disk); dropped: {}",
        s.frames_durable,
        s.blocks,
        s.store_bytes as f64 / 1048576.0,
        if s.dropped.is_empty() { "none".to_owned() } else { format!("{:?}", s.dropped) }
    );
    if s.into == "process" {
        let _ = writeln!(
            o,
            "  gateway cpu {:.1} s, peak memory {} MiB",
            s.gateway_cpu_s,
            s.gateway_peak_rss_kib / 1024
        );
    }
    let _ = writeln!(
        o,
        "  decoded (one pass): {} frames matched a DBC message, {} did not",
        s.decoded_frames, s.unmatched_frames
    );
    let _ = writeln!(
        o,
        "\n  {:<48} {:>9} {:>14} {:>14} {:>14}",
        "signal", "samples", "min", "mean", "max"
    );
    for (name, st) in &s.signals {
        let _ = writeln!(
            o,
            "  {:<48} {:>9} {:>14.4} {:>14.4} {:>14.4}",
            name, st.count, st.min, st.mean, st.max
        );
    }
    if s.ok {
        let _ = writeln!(o, "\nOK: every frame of every pass is durable; the store verifies.");
    } else {
        for p in &s.problems {
            let _ = writeln!(o, "PROBLEM: {p}");
        }
    }
    let _ = writeln!(o, "store, config and log: {}", out.display());
    o
}
