//! A fleet of in-process gateways syncing to two real `iov-ledger` processes (factory: the raw
//! lane, city: the coarsened signal lane) through a fault proxy each, over real HTTP(S) on
//! loopback. Shared by the load test (`tests/sync_load.rs`), the TLS test (`tests/sync_tls.rs`)
//! and the figures (`examples/sync_load.rs`, `examples/sync_catchup.rs`).
//!
//! Each gateway is what the daemon runs minus its sources: its own Ed25519 key and RocksDB
//! store, blocks made by the gateway's own pipeline and writer from real trace frames, and one
//! [`gateway::sync::Agent`] per ledger (the daemon's sync agent, built from a config parsed by
//! [`gateway::config::Config`]). Hundreds of daemon processes would not fit on a 2-core builder;
//! the agents are the same code the daemon spawns (D180).
//!
//! After the run [`Ledger::check_query`] checks what a fleet tool would see (every block over
//! the query API, completeness proof, gateway signature and ledger cosignature, lanes against
//! headers) and [`Ledger::check_store`] what the ledger stored (header bytes equal to the
//! gateway's, only its organisation's lanes).

#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use can_decoders::TimedFrame;
use gateway::config::Config;
use gateway::pipeline::Pipeline;
use gateway::sync::core::FailKind;
use gateway::sync::{Agent, AgentStats};
use gateway::writer::{Durable, Writer};
use ledger::block::BlockHeader;
use ledger::cosignature::Cosigner;
use ledger::note::{Ed25519Signer, Note};
use ledger::seal::SealOptions;
use ledger::store::rocks::{Mode, Rocks};
use ledger::store::Store as _;
use ledger::sync_wire::{self, QueryBlocks};
use ledger_node::store::LedgerStore as _;
use tokio_util::sync::CancellationToken;

/// The query token's secret (the ledgers' configs hold its BLAKE3 hash).
pub const QUERY_SECRET: &str = "load-test-query-secret";
/// The lane every frame goes to (raw CAN frames), received by the factory.
pub const RAW_LANE: &str = "factory";

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// The real GPS trace (CSS Electronics CANmod.gps, `fixtures/traces/README.md`).
pub fn gps_trace() -> PathBuf {
    fixtures().join("traces/canmod_gps_3BA199E2.log.gz")
}

/// Reads up to `limit` frames of a trace: its first channel's name and the frames.
pub fn read_trace(path: &Path, limit: usize) -> Result<(Arc<str>, Vec<TimedFrame>)> {
    let mut r = can_decoders::trace::open(path, can_decoders::trace::ErrorPolicy::Strict)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut frames = Vec::new();
    for f in r.by_ref().take(limit) {
        frames.push(f.with_context(|| format!("reading {}", path.display()))?);
    }
    let iface = r.channels().first().cloned().unwrap_or_else(|| "can0".into());
    Ok((Arc::from(iface.as_str()), frames))
}

/// The `iov-ledger` binary beside this test's (or example's) target dir; built when missing.
pub fn iov_ledger() -> Result<PathBuf> {
    sibling_bin("iov-ledger", "ledger-node")
}

/// The `iov-faultproxy` binary, built when missing.
pub fn iov_faultproxy() -> Result<PathBuf> {
    sibling_bin("iov-faultproxy", "iov-faultproxy")
}

fn sibling_bin(bin: &str, package: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().and_then(Path::parent).context("target dir")?;
    let path = dir.join(bin);
    if !path.exists() {
        let target = dir.parent().context("target root")?;
        let st = Command::new(env!("CARGO"))
            .args(["build", "--release", "-p", package, "--bin", bin])
            .env("CARGO_TARGET_DIR", target)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .with_context(|| format!("cargo build -p {package}"))?;
        ensure!(st.success(), "building {bin} failed");
    }
    Ok(path)
}

/// CPU seconds (user + system) a process has used so far, from `/proc/PID/stat`.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces: fields count from after its closing parenthesis.
    let rest = stat.rsplit_once(')').context("/proc stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        f.get(11).context("utime")?.parse::<u64>()? + f.get(12).context("stime")?.parse::<u64>()?;
    Ok(ticks as f64 / clock_ticks()?)
}

/// Clock ticks per second of `/proc` CPU times (`getconf CLK_TCK`, asked once).
fn clock_ticks() -> Result<f64> {
    static HZ: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    if let Some(hz) = HZ.get() {
        return Ok(*hz);
    }
    let out = Command::new("getconf").arg("CLK_TCK").output().context("getconf CLK_TCK")?;
    let hz: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().context("CLK_TCK")?;
    ensure!(hz > 0.0, "CLK_TCK {hz}");
    Ok(*HZ.get_or_init(|| hz))
}

/// One gateway as the ledgers enroll it.
#[derive(Clone)]
pub struct Enrollment {
    pub vkey: String,
    pub unit: String,
}

/// TLS files for a ledger's listener.
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// One organisation's `iov-ledger` process.
pub struct Ledger {
    pub name: String,
    pub lane: String,
    pub cosigner: Cosigner,
    pub dir: PathBuf,
    /// The main listener (sync, query), asked directly (not through the proxy).
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    pub tls: bool,
    child: Option<Child>,
}

impl Ledger {
    /// Writes keys and config (`gateways` enrolled for `lane`, a query token) and starts it.
    pub fn start(
        root: &Path,
        name: &str,
        lane: &str,
        gateways: &[Enrollment],
        tls: Option<TlsFiles>,
    ) -> Result<Ledger> {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir)?;
        let cosigner = ledger::keys::generate_cosigner(&format!("{name}.example/ledger"))?;
        ledger::keys::save_cosigner(&dir.join("witness.key"), &cosigner)?;
        let mut cfg = format!(
            "[ledger]\nname = \"{name}.example\"\ncosigner_key = \"witness.key\"\nstore = \"store\"\n\
             [listen]\naddress = \"127.0.0.1:0\"\n"
        );
        if let Some(t) = &tls {
            cfg.push_str(&format!(
                "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
                t.cert.display(),
                t.key.display()
            ));
        }
        cfg.push_str(&format!(
            "[metrics]\nlisten = \"127.0.0.1:0\"\n[limits]\nmax_blocks_per_batch = 256\n\
             max_connections = 1024\n\
             [[tokens]]\nname = \"fleet\"\nblake3 = \"{}\"\nscopes = [\"query\"]\n",
            blake3::hash(QUERY_SECRET.as_bytes()).to_hex()
        ));
        for g in gateways {
            cfg.push_str(&format!(
                "[[gateways]]\nvkey = \"{}\"\nunit = \"{}\"\nlanes = [\"{lane}\"]\n",
                g.vkey, g.unit
            ));
        }
        std::fs::write(dir.join("ledger.toml"), cfg)?;
        let mut child = Command::new(iov_ledger()?)
            .args(["run", "--config"])
            .arg(dir.join("ledger.toml"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting iov-ledger")?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .with_context(|| format!("{name}: no `listening` line"))?;
        // `listening ADDR metrics ADDR`
        let words: Vec<&str> = line.split_whitespace().collect();
        ensure!(
            words.len() == 4 && words[0] == "listening" && words[2] == "metrics",
            "{name}: unexpected first line {line:?}"
        );
        Ok(Ledger {
            name: name.to_owned(),
            lane: lane.to_owned(),
            cosigner,
            dir,
            addr: words[1].parse()?,
            metrics: words[3].parse()?,
            tls: tls.is_some(),
            child: Some(child),
        })
    }

    pub fn vkey(&self) -> String {
        self.cosigner.verifier().to_vkey()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn cpu_seconds(&self) -> Result<f64> {
        cpu_seconds(self.pid().context("not running")?)
    }

    /// Stops it with SIGTERM and waits (bounded) for a clean exit.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            let st = Command::new("kill").args(["-TERM", &c.id().to_string()]).status()?;
            ensure!(st.success(), "kill -TERM {}", c.id());
            let end = Instant::now() + Duration::from_secs(60);
            loop {
                if let Some(st) = c.try_wait()? {
                    ensure!(st.success(), "{}: exit {st}", self.name);
                    return Ok(());
                }
                if Instant::now() > end {
                    let _ = c.kill();
                    bail!("{} did not stop within 60 s", self.name);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// Its Prometheus text.
    pub fn metrics_text(&self) -> Result<String> {
        let mut r = ureq::get(&format!("http://{}/metrics", self.metrics)).call()?;
        Ok(r.body_mut().read_to_string()?)
    }

    /// Sum of every sample of metric `name` (all label sets).
    pub fn metric_sum(&self, name: &str) -> Result<f64> {
        Ok(self
            .metrics_text()?
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.split(['{', ' ']).next() == Some(name))
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .fold(0.0, |a, b| a + b))
    }

    /// The ledger's own base URL (not through the proxy): `https://localhost:PORT` with TLS.
    pub fn base(&self) -> String {
        if self.tls {
            format!("https://localhost:{}", self.addr.port())
        } else {
            format!("http://{}", self.addr)
        }
    }

    /// Its refusals by reason, `gap=3 not_witnessed=1` (`none` when there were none).
    pub fn refusals(&self) -> Result<String> {
        let text = self.metrics_text()?;
        let parts: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("iov_ledger_refusals_total{"))
            .filter_map(|l| {
                let reason = l.split("reason=\"").nth(1)?.split('"').next()?;
                let n: f64 = l.rsplit(' ').next()?.parse().ok()?;
                (n > 0.0).then(|| format!("{reason}={n}"))
            })
            .collect();
        Ok(if parts.is_empty() { "none".into() } else { parts.join(" ") })
    }

    /// What a fleet tool gets for `gw`'s blocks `0..size` over the query API (straight to the
    /// ledger; `http` must trust its certificate when it has one): every page's completeness proof, the gateway's signature and
    /// this ledger's cosignature on its checkpoint, every lane against its header, no lane of
    /// another organisation, header bytes equal to the gateway's own. Returns the frames
    /// provable here (the raw lane's record counts) and the lane bytes.
    pub fn check_query(&self, http: &ureq::Agent, gw: &Gateway) -> Result<(u64, u64)> {
        let origin = gw.signer.name().to_owned();
        let gv = gw.signer.verifier();
        let cv = self.cosigner.verifier();
        let store = gw.reader();
        let mut from = 0;
        let (mut frames, mut lane_bytes) = (0u64, 0u64);
        while from < gw.size {
            let url =
                format!("{}{}", self.base(), sync_wire::path::query_blocks(&origin, from, gw.size));
            let mut r = http
                .get(&url)
                .header("authorization", &format!("Bearer {QUERY_SECRET}"))
                .call()
                .with_context(|| format!("{}: query {origin} from {from}", self.name))?;
            ensure!(r.status() == 200, "{}: query {origin} from {from}: {}", self.name, r.status());
            let q = QueryBlocks::from_cbor(&r.body_mut().read_to_vec()?, 1 << 30)?;
            ensure!(q.start == from && q.end > from, "{}: page {}..{}", self.name, q.start, q.end);
            let headers: Vec<BlockHeader> = q
                .blocks
                .iter()
                .map(|b| BlockHeader::from_bytes(&b.header))
                .collect::<Result<_, _>>()?;
            ledger::verify::complete_range_signed(&headers, &q.checkpoint, &gv, &q.range_proof)
                .with_context(|| format!("{}: {origin} {from}..{}", self.name, q.end))?;
            let note = Note::parse(&q.checkpoint)?;
            let ok = note.verify(&[&gv, &cv])?;
            ensure!(ok.len() == 2, "{}: checkpoint verifies with {} keys", self.name, ok.len());
            for (b, h) in q.blocks.iter().zip(&headers) {
                ensure!(
                    store.header(b.height)?.as_deref() == Some(&b.header[..]),
                    "{}: {origin} header {} differs from the gateway's",
                    self.name,
                    b.height
                );
                for (i, lane) in &b.lanes {
                    let name = h.lanes.get(usize::from(*i)).map(|l| l.name.as_str());
                    ensure!(
                        name == Some(&self.lane),
                        "{}: {origin} block {} carries lane {name:?}",
                        self.name,
                        b.height
                    );
                    ledger::verify::lane_against_header(h, usize::from(*i), lane)?;
                    lane_bytes += lane.len() as u64;
                }
                frames += h
                    .lanes
                    .iter()
                    .filter(|l| l.name == RAW_LANE)
                    .map(|l| l.record_count)
                    .sum::<u64>();
            }
            from = q.end;
        }
        Ok((frames, lane_bytes))
    }

    /// After [`Ledger::stop`]: the ledger's store holds exactly `gw`'s log: every header byte
    /// for byte, this organisation's lanes equal to the gateway's, no other lane, nothing past
    /// the head.
    pub fn check_store(&self, gws: &[Gateway]) -> Result<()> {
        ensure!(self.child.is_none(), "stop the ledger first");
        let ls = ledger_node::store::rocks::Rocks::open(&self.dir.join("store"))?;
        for gw in gws {
            let origin = gw.signer.name();
            let store = gw.reader();
            ensure!(ls.mirrored(origin)? == gw.size, "{}: {origin} mirrored", self.name);
            for h in 0..gw.size {
                let header = store.header(h)?.context("gateway header")?;
                ensure!(
                    ls.header(origin, h)?.as_ref() == Some(&header),
                    "{}: {origin} header {h}",
                    self.name
                );
                let parsed = BlockHeader::from_bytes(&header)?;
                let want: Vec<(u16, Vec<u8>)> = parsed
                    .lanes
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| l.name == self.lane)
                    .map(|(i, _)| Ok((i as u16, store.lane(h, i as u16)?.context("lane")?)))
                    .collect::<Result<_>>()?;
                ensure!(
                    ls.lanes(origin, h)? == want,
                    "{}: {origin} lanes of block {h} differ (or carry another org's lane)",
                    self.name
                );
            }
            ensure!(ls.header(origin, gw.size)?.is_none(), "{}: {origin} past the head", self.name);
        }
        Ok(())
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Where a gateway's agent reaches one ledger.
pub struct Route {
    pub name: String,
    pub lane: String,
    /// `http://127.0.0.1:PORT/` (the proxy) or `https://localhost:PORT/`.
    pub url: String,
    pub cosigner_vkey: String,
    pub ca_file: Option<PathBuf>,
}

/// Agent settings for the load test: small batches, fast retries.
pub const LOAD_TUNING: &str =
    "batch_blocks = 8\nbackoff_min = \"50ms\"\nbackoff_max = \"1s\"\ntimeout = \"20s\"\n";

/// The gateways' shared config (lanes, DBC, block policy, one `[ledgers.NAME]` per route with
/// `tuning` appended), parsed by the gateway's own config loader. The signing key in it is a
/// placeholder: every gateway has its own.
pub fn gateway_config(
    dir: &Path,
    routes: &[Route],
    max_records: usize,
    tuning: &str,
) -> Result<Config> {
    let placeholder = ledger::keys::generate_signer("iov.example/gw/template")?;
    ledger::keys::save_signer(&dir.join("signing.key"), &placeholder)?;
    // The organisations' lane keys: the public half for the gateway, the secret half (0600)
    // for whoever opens lanes ([`lane_key`]).
    for r in ["factory", "city"] {
        let k = ledger::keys::X25519Key::generate(r)?;
        std::fs::write(dir.join(format!("{r}.pub")), k.public_text())?;
        ledger::keys::save_x25519(&dir.join(format!("{r}.key")), &k)?;
    }
    let mut ledgers = String::new();
    for r in routes {
        ledgers.push_str(&format!(
            "[ledgers.{n}]\nurl = \"{url}\"\nlanes = [\"{lane}\"]\ncosigner = \"{vkey}\"\n{tuning}",
            n = r.name,
            url = r.url,
            lane = r.lane,
            vkey = r.cosigner_vkey,
        ));
        if let Some(ca) = &r.ca_file {
            ledgers.push_str(&format!("ca_file = \"{}\"\n", ca.display()));
        }
    }
    let text = format!(
        r#"
[gateway]
signing_key = "signing.key"
store = "store"
[block]
max_records = {max_records}
max_age = "1h"
[[dbc]]
file = "{dbc}"
[recipients]
factory = "factory.pub"
city = "city.pub"
[sources.replay]
kind = "trace"
file = "{trace}"
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
{ledgers}
"#,
        dbc = fixtures().join("dbc/css-electronics/canmod-gps.dbc").display(),
        trace = gps_trace().display(),
    );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, &text)?;
    Config::from_toml(&text, &path).context("gateway config")
}

/// The secret lane key of organisation `org` that [`gateway_config`] made in `dir`.
pub fn lane_key(dir: &Path, org: &str) -> Result<ledger::keys::X25519Key> {
    Ok(ledger::keys::load_x25519(&dir.join(format!("{org}.key")))?)
}

/// One in-process gateway: its key, its store (blocks already written) and what went in.
pub struct Gateway {
    pub signer: Ed25519Signer,
    pub store: Rocks,
    /// Log size (blocks).
    pub size: u64,
    /// Frames that went into the raw lane.
    pub frames: u64,
    /// Keeps the agents' `durable` channel open.
    durable: tokio::sync::watch::Sender<Durable>,
    durable_rx: tokio::sync::watch::Receiver<Durable>,
}

impl Gateway {
    /// A fresh key named `iov.example/gw/NAME`.
    pub fn key(name: &str) -> Result<Ed25519Signer> {
        Ok(ledger::keys::generate_signer(&format!("iov.example/gw/{name}"))?)
    }

    /// Runs `frames` through the gateway's pipeline (lanes and block policy of `cfg`; the
    /// pipeline's clock is the frames' own time) and its store writer (sealed, appended, one
    /// signed checkpoint per block, synced) into a new store at `dir`.
    pub fn build(
        cfg: &Config,
        signer: Ed25519Signer,
        dir: &Path,
        iface: &Arc<str>,
        frames: impl IntoIterator<Item = TimedFrame>,
    ) -> Result<Gateway> {
        let store = Rocks::open(dir, &signer.verifier(), Mode::CreateOrOpen)?;
        let opts = SealOptions { zstd_level: cfg.block.zstd_level, ..SealOptions::default() };
        let (mut writer, _) = Writer::new(Box::new(store), signer.clone(), opts, 1)?;
        let mut pipe = Pipeline::new(cfg);
        let mut t0 = None;
        for f in frames {
            let now = Duration::from_nanos(f.t_ns - *t0.get_or_insert(f.t_ns));
            if let Some(p) = pipe.poll(now) {
                writer.write(&p)?;
            }
            if let Some(p) = pipe.push_can(0, iface, &f, now) {
                writer.write(&p)?;
            }
        }
        if let Some(p) = pipe.flush() {
            writer.write(&p)?;
        }
        let c = pipe.counters();
        ensure!(c.rejected == 0, "{} frames rejected", c.rejected);
        let store = writer.store().reader();
        let size = store.size();
        let frames = (0..size)
            .map(|h| {
                let hd = BlockHeader::from_bytes(&store.header(h)?.context("header")?)?;
                Ok(hd
                    .lanes
                    .iter()
                    .filter(|l| l.name == RAW_LANE)
                    .map(|l| l.record_count)
                    .sum::<u64>())
            })
            .sum::<Result<u64>>()?;
        ensure!(frames == c.frames_in, "raw lane holds {frames} of {} frames", c.frames_in);
        let (durable, durable_rx) =
            tokio::sync::watch::channel(Durable { size, ..Durable::default() });
        Ok(Gateway { signer, store, size, frames, durable, durable_rx })
    }

    pub fn reader(&self) -> Rocks {
        self.store.reader()
    }

    /// The gateway's sync agent for `route` (its config taken from `cfg`).
    pub fn agent(&self, cfg: &Config, route: &str, seed: u64) -> Result<Agent> {
        let lc = cfg.ledgers.iter().find(|l| l.name == route).context("no such ledger")?;
        let handle: gateway::sync::ReadHandle = Box::new(self.reader());
        Ok(Agent {
            client: gateway::sync::client::Client::new(lc)?,
            cfg: lc.clone(),
            store: Arc::new(Mutex::new(handle)),
            durable: self.durable_rx.clone(),
            stats: Arc::new(AgentStats::new(&lc.name)),
            seed,
        })
    }
}

/// Sum over agents: blocks acked, bytes sent, errors per kind.
#[derive(Debug, Default, Clone)]
pub struct Totals {
    pub acked: u64,
    pub witnessed: u64,
    pub bytes_sent: u64,
    pub blocks_sent: u64,
    pub errors: Vec<(FailKind, u64)>,
}

pub fn totals(stats: &[Arc<AgentStats>]) -> Totals {
    let mut t =
        Totals { errors: FailKind::ALL.iter().map(|k| (*k, 0)).collect(), ..Totals::default() };
    for s in stats {
        t.acked += s.acked.load(Ordering::Relaxed);
        t.witnessed += s.witnessed.load(Ordering::Relaxed);
        t.bytes_sent += s.bytes_sent.load(Ordering::Relaxed);
        t.blocks_sent += s.blocks_sent.load(Ordering::Relaxed);
        for (i, (_, n)) in s.errors().into_iter().enumerate() {
            t.errors[i].1 += n;
        }
    }
    t
}

/// Errors by kind as `link=3 timeout=0 ...` (kinds with a count only).
pub fn error_line(t: &Totals) -> String {
    let parts: Vec<String> = t
        .errors
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{}={n}", k.label()))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(" ")
    }
}

/// Runs every agent on `rt` until `stop`; returns their stats and join handles.
pub fn spawn_agents(
    rt: &tokio::runtime::Runtime,
    agents: Vec<Agent>,
    stop: &CancellationToken,
) -> (Vec<Arc<AgentStats>>, Vec<tokio::task::JoinHandle<()>>) {
    let mut stats = Vec::new();
    let mut tasks = Vec::new();
    for a in agents {
        stats.push(a.stats.clone());
        tasks.push(rt.spawn(a.run(stop.clone(), Duration::from_secs(1))));
    }
    (stats, tasks)
}

/// Polls `f` every 50 ms until it holds; fails after `timeout` with `what`.
pub fn wait_until(
    timeout: Duration,
    what: &str,
    mut f: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let end = Instant::now() + timeout;
    loop {
        if f()? {
            return Ok(());
        }
        if Instant::now() > end {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A proxy in front of `upstream`, run in-process on `rt`.
pub fn proxy(
    rt: &tokio::runtime::Runtime,
    upstream: SocketAddr,
    seed: u64,
    stop: &CancellationToken,
) -> Result<(faultproxy::Handle, SocketAddr)> {
    let stop = stop.clone();
    rt.block_on(async move {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = l.local_addr()?;
        let (h, _) = faultproxy::spawn(l, upstream, seed, stop);
        anyhow::Ok((h, addr))
    })
}

/// CPU seconds used so far by this process's threads whose name starts with `prefix` (tokio
/// runtimes name their workers and blocking threads; keep blocking threads alive for the run,
/// an exited thread's time is no longer listed).
pub fn threads_cpu_seconds(prefix: &str) -> Result<f64> {
    let mut total = 0.0;
    for e in std::fs::read_dir("/proc/self/task")? {
        let path = e?.path();
        let Ok(comm) = std::fs::read_to_string(path.join("comm")) else { continue };
        if !comm.starts_with(prefix) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else { continue };
        let rest = stat.rsplit_once(')').context("/proc task stat")?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = f.get(11).context("utime")?.parse::<u64>()?
            + f.get(12).context("stime")?.parse::<u64>()?;
        total += ticks as f64 / clock_ticks()?;
    }
    Ok(total)
}

/// Free bytes on the filesystem holding `dir` (`df -Pk`).
pub fn free_bytes(dir: &Path) -> Result<u64> {
    let out = Command::new("df").arg("-Pk").arg(dir).output().context("df")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let kib: u64 = text
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(3))
        .context("df output")?
        .parse()?;
    Ok(kib * 1024)
}

/// A multi-thread runtime whose threads are named `name` (workers and blocking threads, the
/// latter kept alive an hour so their CPU time stays countable).
pub fn runtime(name: &str, workers: usize) -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(name)
        .thread_keep_alive(Duration::from_secs(3600))
        .enable_all()
        .build()?)
}

/// A fleet run's shape.
pub struct FleetParams {
    pub gateways: usize,
    pub frames_per_gateway: usize,
    /// Frames per block.
    pub max_records: usize,
    /// Cut every connection every this often until half is acknowledged (`None`: no faults).
    pub cut_every: Option<Duration>,
    /// For every wait.
    pub deadline: Duration,
}

/// What a fleet run measured (everything checked already).
#[derive(Debug)]
pub struct FleetReport {
    pub blocks: u64,
    pub frames: u64,
    pub build: Duration,
    /// From the agents' start until every ledger acknowledged every log.
    pub sync: Duration,
    /// Until the faults were lifted (`None`: a clean link).
    pub faults: Option<Duration>,
    pub totals: Totals,
    /// Per ledger: name, CPU seconds during the sync, proxy counters, refusals by reason.
    pub ledgers: Vec<(String, f64, faultproxy::StatsSnapshot, String)>,
    /// CPU seconds of the agents' runtime (all gateways) and of the proxies' during the sync.
    pub agents_cpu: f64,
    pub proxies_cpu: f64,
}

impl std::fmt::Display for FleetReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.sync.as_secs_f64();
        writeln!(
            f,
            "stores built: {} blocks, {} frames in {:.1} s",
            self.blocks,
            self.frames,
            self.build.as_secs_f64()
        )?;
        writeln!(
            f,
            "synced to 2 ledgers in {s:.2} s ({}): {:.0} blocks/s, {:.0} frames/s into each \
             ledger ({:.0} blocks/s, {:.0} frames/s both together); {} request bytes ({:.2} \
             MB/s); agent errors: {}",
            self.faults.map_or("clean links".into(), |d| format!(
                "faults for the first {:.2} s",
                d.as_secs_f64()
            )),
            self.blocks as f64 / s,
            self.frames as f64 / s,
            2.0 * self.blocks as f64 / s,
            2.0 * self.frames as f64 / s,
            self.totals.bytes_sent,
            self.totals.bytes_sent as f64 / s / 1e6,
            error_line(&self.totals)
        )?;
        for (name, cpu, p, refusals) in &self.ledgers {
            writeln!(
                f,
                "{name}: {cpu:.2} CPU s ({:.0} blocks, {:.0} frames per CPU second); proxy: {} \
                 connections, {} resets, {} bytes up, {} down; refusals: {refusals}",
                self.blocks as f64 / cpu.max(1e-9),
                self.frames as f64 / cpu.max(1e-9),
                p.accepted,
                p.resets,
                p.bytes_up,
                p.bytes_down
            )?;
        }
        write!(
            f,
            "CPU during the sync: agents {:.2} s, proxies {:.2} s (wall {s:.2} s, 2 cores)",
            self.agents_cpu, self.proxies_cpu
        )
    }
}

/// The fleet run: `gateways` stores built from consecutive slices of the GPS trace, two real
/// ledgers (each enrolls every gateway), a proxy each (faults: cuts every `cut_every` on both,
/// random resets after 4..64 KiB upstream on the factory link, 512 KiB/s and 20 ms latency on
/// the city link) until half is acknowledged, then healed. Checks, before it returns: every
/// agent's cursor at its log's size, at each ledger every log complete (query API: proofs,
/// signatures, lanes, frames provable = frames sent; store: headers byte-equal, own lanes
/// only), no fork evidence.
pub fn fleet(dir: &Path, p: &FleetParams) -> Result<FleetReport> {
    let n = p.gateways;
    // Each open store holds up to 64 MiB of preallocated WAL blocks (ledger's
    // `MAX_TOTAL_WAL_BYTES`; apparent sizes stay small): say so plainly instead of failing
    // half-way with ENOSPC.
    let need = (n as u64 + 2) * (70 << 20);
    let free = free_bytes(dir)?;
    ensure!(
        free > need + (2 << 30),
        "{n} gateway stores need about {} GB of free disk in {} (64 MiB of preallocated WAL \
         each while open), {} GB free",
        need >> 30,
        dir.display(),
        free >> 30
    );
    let (iface, frames) = read_trace(&gps_trace(), n * p.frames_per_gateway)?;
    ensure!(frames.len() == n * p.frames_per_gateway, "the trace has {} frames", frames.len());
    let keys: Vec<_> =
        (0..n).map(|i| Gateway::key(&format!("load-{i:04}"))).collect::<Result<_>>()?;
    let enrolled: Vec<Enrollment> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| Enrollment { vkey: k.verifier().to_vkey(), unit: format!("VIN{i:04}") })
        .collect();
    let mut ledgers = vec![
        Ledger::start(dir, "factory", "factory", &enrolled, None)?,
        Ledger::start(dir, "city", "city", &enrolled, None)?,
    ];
    let agents_rt = runtime("agents", 2)?;
    let proxy_rt = runtime("proxies", 1)?;
    let stop = CancellationToken::new();
    let mut proxies = Vec::new();
    let mut routes = Vec::new();
    for (i, l) in ledgers.iter().enumerate() {
        let (h, addr) = proxy(&proxy_rt, l.addr, 11 + i as u64, &stop)?;
        proxies.push(h);
        routes.push(Route {
            name: l.name.clone(),
            lane: l.lane.clone(),
            url: format!("http://{addr}/"),
            cosigner_vkey: l.vkey(),
            ca_file: None,
        });
    }
    let cfg = gateway_config(dir, &routes, p.max_records, LOAD_TUNING)?;

    // Each gateway's store from its own slice of the trace, on two builder threads.
    let t = Instant::now();
    let half = n.div_ceil(2);
    let mut gws: Vec<Option<Gateway>> = (0..n).map(|_| None).collect();
    std::thread::scope(|s| -> Result<()> {
        let mut handles = Vec::new();
        for (part, slots) in gws.chunks_mut(half).enumerate() {
            let (cfg, iface, frames, keys) = (&cfg, &iface, &frames, &keys);
            let per = p.frames_per_gateway;
            handles.push(s.spawn(move || -> Result<()> {
                for (j, slot) in slots.iter_mut().enumerate() {
                    let i = part * half + j;
                    *slot = Some(Gateway::build(
                        cfg,
                        keys[i].clone(),
                        &dir.join(format!("gw-{i:04}")),
                        iface,
                        frames[i * per..(i + 1) * per].iter().cloned(),
                    )?);
                }
                Ok(())
            }));
        }
        for h in handles {
            h.join().map_err(|_| anyhow::anyhow!("a store builder panicked"))??;
        }
        Ok(())
    })?;
    let gws: Vec<Gateway> = gws.into_iter().flatten().collect();
    let build = t.elapsed();
    eprintln!("{n} stores built in {build:?}");
    let blocks: u64 = gws.iter().map(|g| g.size).sum();
    let sent: u64 = gws.iter().map(|g| g.frames).sum();
    ensure!(sent == frames.len() as u64, "{sent} of {} frames in the stores", frames.len());
    drop(frames);

    let cuts = stop.child_token();
    let mut cutter = None;
    if let Some(every) = p.cut_every {
        proxies[0].apply(&faultproxy::Command::ResetRandom(Some((4096, 65536))));
        proxies[1].apply(&faultproxy::Command::Rate(Some(512 * 1024)));
        proxies[1].apply(&faultproxy::Command::Latency(Some(Duration::from_millis(20))));
        let (proxies, cuts) = (proxies.clone(), cuts.clone());
        cutter = Some(proxy_rt.spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    () = cuts.cancelled() => return,
                    _ = tick.tick() => {}
                }
                for p in &proxies {
                    p.apply(&faultproxy::Command::Cut);
                }
            }
        }));
    }
    let mut agents = Vec::new();
    for (i, g) in gws.iter().enumerate() {
        for r in &routes {
            agents.push(g.agent(&cfg, &r.name, 1000 + i as u64)?);
        }
    }
    let cpu0: Vec<f64> = ledgers.iter().map(Ledger::cpu_seconds).collect::<Result<_>>()?;
    let (a0, p0) = (threads_cpu_seconds("agents")?, threads_cpu_seconds("proxies")?);
    let t = Instant::now();
    let (stats, tasks) = spawn_agents(&agents_rt, agents, &stop);
    // Faults until half of everything (2 x blocks) is acknowledged, then the links heal.
    wait_until(p.deadline, "half the blocks acknowledged through the faults", || {
        Ok(totals(&stats).acked >= blocks)
    })?;
    eprintln!("half acknowledged after {:?}: {:?}", t.elapsed(), totals(&stats));
    cuts.cancel();
    if let Some(c) = cutter {
        proxy_rt.block_on(c)?;
    }
    for px in &proxies {
        px.apply(&faultproxy::Command::Clear);
    }
    let faults = p.cut_every.map(|_| t.elapsed());
    // Agents are pushed per gateway, one per ledger, in route order.
    let sizes: Vec<u64> = gws.iter().flat_map(|g| [g.size, g.size]).collect();
    let behind = || {
        stats
            .iter()
            .zip(&sizes)
            .filter(|(s, size)| {
                s.acked.load(Ordering::Relaxed) != **size
                    || s.witnessed.load(Ordering::Relaxed) != **size
            })
            .map(|(s, size)| {
                format!(
                    "{} acked {} witnessed {} of {size}, link {}, errors {}",
                    s.ledger,
                    s.acked.load(Ordering::Relaxed),
                    s.witnessed.load(Ordering::Relaxed),
                    s.link_up.load(Ordering::Relaxed),
                    error_line(&totals(std::slice::from_ref(s)))
                )
            })
            .collect::<Vec<_>>()
    };
    if let Err(e) =
        wait_until(p.deadline, "every log acknowledged by both ledgers", || Ok(behind().is_empty()))
    {
        let b = behind();
        bail!(
            "{e}: {} agents behind, e.g.\n{}\nall agents: {}",
            b.len(),
            b.iter().take(10).cloned().collect::<Vec<_>>().join("\n"),
            error_line(&totals(&stats))
        );
    }
    let sync = t.elapsed();
    let cpu: Vec<f64> =
        ledgers.iter().zip(&cpu0).map(|(l, c)| Ok(l.cpu_seconds()? - c)).collect::<Result<_>>()?;
    let agents_cpu = threads_cpu_seconds("agents")? - a0;
    let proxies_cpu = threads_cpu_seconds("proxies")? - p0;
    stop.cancel();
    for task in tasks {
        agents_rt.block_on(task)?;
    }
    let tot = totals(&stats);
    ensure!(tot.acked == 2 * blocks && tot.witnessed == 2 * blocks, "cursors {tot:?}");

    // What each ledger proves and holds.
    let http: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let mut rows = Vec::new();
    for (l, (c, px)) in ledgers.iter().zip(cpu.iter().zip(&proxies)) {
        ensure!(l.metric_sum("iov_ledger_forks")? == 0.0, "{}: fork evidence", l.name);
        let mut provable = 0;
        for g in &gws {
            let (f, _) = l.check_query(&http, g)?;
            ensure!(
                f == g.frames,
                "{}: {} proves {f} of {} frames",
                l.name,
                g.signer.name(),
                g.frames
            );
            provable += f;
        }
        ensure!(provable == sent, "{}: {provable} frames provable, {sent} sent", l.name);
        rows.push((l.name.clone(), *c, px.stats(), l.refusals()?));
    }
    for l in &mut ledgers {
        l.stop()?;
        l.check_store(&gws)?;
    }
    Ok(FleetReport {
        blocks,
        frames: sent,
        build,
        sync,
        faults,
        totals: tot,
        ledgers: rows,
        agents_cpu,
        proxies_cpu,
    })
}
