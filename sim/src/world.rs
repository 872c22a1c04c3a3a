//! The world: real `iov-ledger` and `iov-gateway` processes on loopback, one in-process
//! fault proxy per vehicle and ledger between them, and the loop that carries out the plan,
//! samples every gateway's metrics and every process's `/proc`, heals every link at the end of
//! the drive and waits for the ledgers to catch up.
//!
//! Each vehicle is re-identified (its own Ed25519 gateway key, origin `iov.sim/gw/<id>`, unit
//! id) and time-shifted (its trace source's `time_shift` moves the recording to the moment the
//! vehicle starts in this run), so one recording stands for many vehicles.
//!
//! Nothing here waits on a fixed sleep for an outcome: the loop ticks, and every wait is a
//! condition with a deadline.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Proc, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use faultproxy::Command;
use ledger::cosignature::Cosigner;
use ledger::keys::X25519Key;
use ledger::note::Ed25519Signer;
use tokio_util::sync::CancellationToken;

use crate::plan::{Action, Plan};
use crate::proc::{self, Usage};
use crate::scenario::{LaneKind, LedgerSpec, Pace, Scenario, VehicleSpec};
use crate::tracefile::{self, TraceInfo};

/// How long a gracefully stopped process may take before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// The main loop's tick.
const TICK: Duration = Duration::from_millis(50);

/// One organisation's ledger node.
pub struct Org {
    pub spec: LedgerSpec,
    pub dir: PathBuf,
    pub cosigner: Cosigner,
    /// The X25519 key its lane is sealed to (`lane.key`, 0600): what a fleet tool opens it with.
    pub lane_key: X25519Key,
    pub lane_key_file: PathBuf,
    /// A query token's secret (`token`, 0600); the config holds its SHA-256.
    pub token_file: PathBuf,
    pub addr: SocketAddr,
    pub metrics: Option<SocketAddr>,
    child: Option<Child>,
    pub usage: UsageAcc,
    pub restarts: u32,
    pub last_metrics: BTreeMap<String, f64>,
}

impl Org {
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }
}

/// CPU and peak memory over a process's lifetimes (restarts add up; the peak is the max).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UsageAcc {
    pub cpu_s_done: f64,
    pub current: Usage,
    pub peak_rss_kib: u64,
}

impl UsageAcc {
    fn sample(&mut self, pid: u32) {
        if let Some(u) = proc::usage(pid) {
            self.current = u;
            self.peak_rss_kib = self.peak_rss_kib.max(u.peak_rss_kib);
        }
    }
    fn end_lifetime(&mut self) {
        self.cpu_s_done += self.current.cpu_s;
        self.current = Usage::default();
    }
    pub fn cpu_s(&self) -> f64 {
        self.cpu_s_done + self.current.cpu_s
    }
}

/// One vehicle: its gateway process, links and what was measured about it.
pub struct Car {
    pub id: String,
    pub origin: String,
    pub spec: VehicleSpec,
    pub dir: PathBuf,
    pub signer: Ed25519Signer,
    pub start: Duration,
    /// The file of its first lifetime and what it holds.
    pub trace: PathBuf,
    pub info: TraceInfo,
    /// Replay speed (recorded seconds per drive second); `None` = as fast as possible.
    pub speed: Option<f64>,
    pub shift_ns: i64,
    /// (proxy, its listen address), one per ledger, in ledger order.
    pub proxies: Vec<(faultproxy::Handle, SocketAddr)>,
    pub metrics_addr: SocketAddr,
    child: Option<Child>,
    pub quota: Option<u64>,
    /// The current lifetime's trace file and frame count.
    life_trace: PathBuf,
    pub life_frames: u64,
    /// Frames still to come in the recording when the gateway went down (drive time, count).
    down_at: Option<(Duration, u64)>,
    pub restarts: u32,
    pub ever_started: bool,
    pub failed: Option<String>,
    pub usage: UsageAcc,
    /// Counters of finished lifetimes, plus the last sample of the current one.
    pub done: Counters,
    pub last: Counters,
    /// Frames of the recording that fell in a gateway's downtime (never offered).
    pub skipped_down: u64,
    /// Drive time at which each height was first seen durable.
    pub durable_t: Vec<f64>,
    /// Per ledger: highest acked height seen, (drive time it became durable, lag s) per block
    /// acked, and the backlog (durable minus acked blocks) over time.
    pub acked: Vec<u64>,
    pub lag: Vec<Vec<(f64, f64)>>,
    pub backlog: Vec<Vec<(f64, f64)>>,
    pub height: u64,
    pub height_changed: f64,
}

/// Counters read from a gateway's metrics (one lifetime).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    pub received: f64,
    pub dropped: BTreeMap<String, f64>,
    pub bytes_sent: Vec<f64>,
    pub sync_errors: Vec<f64>,
}

impl Counters {
    fn add(&mut self, o: &Counters) {
        self.received += o.received;
        for (k, v) in &o.dropped {
            *self.dropped.entry(k.clone()).or_default() += v;
        }
        for (v, o) in
            [(&mut self.bytes_sent, &o.bytes_sent), (&mut self.sync_errors, &o.sync_errors)]
        {
            v.resize(v.len().max(o.len()), 0.0);
            for (a, b) in v.iter_mut().zip(o) {
                *a += b;
            }
        }
    }
}

/// What the caller sees while the world runs.
pub struct Options {
    pub out: PathBuf,
    /// Live progress on stderr (only when it is a terminal).
    pub progress: bool,
}

pub struct World {
    pub scenario: Scenario,
    pub plan: Plan,
    pub out: PathBuf,
    pub orgs: Vec<Org>,
    pub cars: Vec<Car>,
    rt: tokio::runtime::Runtime,
    stop: CancellationToken,
    /// Unix time (ns) of the drive's start: vehicle k's recording is moved to start + its start.
    pub start_unix_ns: u64,
    t0: Instant,
    pub drive_time: Duration,
    pub heal_time: Option<Duration>,
    pub failures: Vec<String>,
    pub notes: Vec<String>,
    pub sim_usage: UsageAcc,
    progress: bool,
}

fn unix_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// The auditor's token file (admin scope at every ledger of the run).
pub fn auditor_token_file(out: &Path) -> PathBuf {
    out.join("ledgers").join("auditor.token")
}

/// A free loopback port for a gateway's metrics listener, chosen below the kernel's ephemeral
/// range: a port the kernel hands out (`bind 0`, or the source port of any of the hundreds of
/// sync connections) could be taken again before the gateway binds it, which happened with 200
/// vehicles. Ports are handed out in turn from a per-process starting point, never twice.
pub(crate) fn free_port() -> Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 10_000;
    let eph_low: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(32_768)
        .max(LOW + 1_000);
    let span = eph_low - LOW;
    let base = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let i = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = LOW + (base + i) % span;
        if std::net::TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return Ok(port as u16);
        }
    }
    bail!("no free loopback port between {LOW} and {eph_low}")
}

fn hex_sha256(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(data))
}

impl World {
    /// Creates keys, configs, trace files and the proxies; starts the ledgers. Gateways start
    /// when the plan says.
    pub fn new(scenario: Scenario, opts: &Options) -> Result<World> {
        let plan = Plan::new(&scenario);
        let out = opts.out.clone();
        if out.exists() {
            std::fs::remove_dir_all(&out).with_context(|| format!("clearing {}", out.display()))?;
        }
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("proxy runtime")?;
        let stop = CancellationToken::new();
        let mut orgs = Vec::new();
        for (i, spec) in scenario.ledgers.iter().enumerate() {
            let dir = out.join("ledgers").join(&spec.name);
            std::fs::create_dir_all(&dir)?;
            let cosigner = ledger::keys::generate_cosigner(&format!("{}.sim/ledger", spec.name))?;
            ledger::keys::save_cosigner(&dir.join("witness.key"), &cosigner)?;
            let log = ledger::keys::generate_signer(&format!("{}.sim/log", spec.name))?;
            ledger::keys::save_signer(&dir.join("log.key"), &log)?;
            std::fs::write(dir.join("log.vkey"), log.verifier().to_vkey())?;
            let lane_key = X25519Key::generate(&spec.name)?;
            let lane_key_file = dir.join("lane.key");
            ledger::keys::save_x25519(&lane_key_file, &lane_key)?;
            let token_file = dir.join("token");
            // The token secret: derived from the seed, so a run is reproducible; loopback only.
            let mut rng = crate::plan::Rng::new(scenario.seed ^ (0x70_6B_65_6E + i as u64));
            let secret = format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
            ledger::keys::write_secret_file(&token_file, secret.as_bytes())?;
            orgs.push(Org {
                spec: spec.clone(),
                dir,
                cosigner,
                lane_key,
                lane_key_file,
                token_file,
                // Fixed before any ledger starts: each is the other's peer (cross-witnessing)
                // and its config names the peer's URL.
                addr: format!("127.0.0.1:{}", free_port()?).parse()?,
                metrics: None,
                child: None,
                usage: UsageAcc::default(),
                restarts: 0,
                last_metrics: BTreeMap::new(),
            });
        }
        // An auditor's token every ledger accepts (admin scope): `iovctl audit` reads both
        // ledgers with one token file.
        {
            let mut rng = crate::plan::Rng::new(scenario.seed ^ 0x61_75_64_69_74);
            let secret = format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
            ledger::keys::write_secret_file(&auditor_token_file(&out), secret.as_bytes())?;
        }
        let start_unix_ns = unix_ns();
        let traces_dir = out.join("traces");
        std::fs::create_dir_all(&traces_dir)?;
        let mut prepared: BTreeMap<usize, (PathBuf, TraceInfo)> = BTreeMap::new();
        let mut cars = Vec::new();
        for (k, v) in plan.vehicles.iter().enumerate() {
            let spec = scenario.vehicles[v.entry].clone();
            if let std::collections::btree_map::Entry::Vacant(slot) = prepared.entry(v.entry) {
                let p = tracefile::prepare(&spec.trace, spec.max_frames, &traces_dir, &spec.id)
                    .with_context(|| format!("vehicles[{}].trace", v.entry))?;
                if p.1.frames == 0 {
                    bail!("vehicles[{}].trace: {} holds no frame", v.entry, spec.trace.display());
                }
                slot.insert(p);
            }
            let (trace, info) = prepared[&v.entry].clone();
            let dir = out.join("vehicles").join(&v.id);
            std::fs::create_dir_all(&dir)?;
            let origin = format!("iov.sim/gw/{}", v.id);
            let signer = ledger::keys::generate_signer(&origin)?;
            ledger::keys::save_signer(&dir.join("signing.key"), &signer)?;
            std::fs::write(dir.join("signing.vkey"), signer.verifier().to_vkey())?;
            for o in &orgs {
                std::fs::write(dir.join(format!("{}.pub", o.spec.name)), o.lane_key.public_text())?;
            }
            let drive_left = scenario.duration.saturating_sub(v.start).as_secs_f64().max(0.1);
            let speed = match spec.pace {
                Pace::Fast => None,
                Pace::Scaled(f) => Some(f),
                Pace::Fit if info.span_ns() == 0 => None,
                Pace::Fit => Some((info.span_ns() as f64 / 1e9 / drive_left).clamp(0.001, 1e6)),
            };
            let shift_ns =
                (start_unix_ns + v.start.as_nanos() as u64) as i128 - info.first_ns as i128;
            let shift_ns = i64::try_from(shift_ns).context("time shift out of range")?;
            let mut proxies = Vec::new();
            for l in 0..orgs.len() {
                let seed = scenario.seed ^ ((k as u64) << 8 | l as u64).wrapping_mul(0x9E37_79B9);
                let stop = stop.clone();
                // Upstream filled in when the ledger has its address (see start_ledger): the
                // proxy is created now, bound, and pointed at the ledger's fixed address.
                let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
                let addr = listener.local_addr()?;
                proxies.push((listener, addr, seed, stop));
            }
            let _ = &proxies;
            cars.push(PendingCar {
                k,
                spec,
                dir,
                origin,
                signer,
                start: v.start,
                trace,
                info,
                speed,
                shift_ns,
                proxies,
            });
        }
        // Ledgers first (their addresses are the proxies' upstreams).
        let mut world = World {
            scenario,
            plan,
            out,
            orgs,
            cars: Vec::new(),
            rt,
            stop,
            start_unix_ns,
            t0: Instant::now(),
            drive_time: Duration::ZERO,
            heal_time: None,
            failures: Vec::new(),
            notes: Vec::new(),
            sim_usage: UsageAcc::default(),
            progress: opts.progress && std::io::stderr().is_terminal(),
        };
        for l in 0..world.orgs.len() {
            world.write_ledger_config(l, &cars)?;
            world.start_ledger(l)?;
        }
        for pc in cars {
            let mut handles = Vec::new();
            for (l, (listener, addr, seed, stop)) in pc.proxies.into_iter().enumerate() {
                let upstream = world.orgs[l].addr;
                let (h, _task) = {
                    let _g = world.rt.enter();
                    faultproxy::spawn(listener, upstream, seed, stop)
                };
                handles.push((h, addr));
            }
            let n = world.orgs.len();
            world.cars.push(Car {
                id: world.plan.vehicles[pc.k].id.clone(),
                origin: pc.origin,
                spec: pc.spec,
                dir: pc.dir,
                signer: pc.signer,
                start: pc.start,
                life_trace: pc.trace.clone(),
                trace: pc.trace,
                life_frames: pc.info.frames,
                info: pc.info,
                speed: pc.speed,
                shift_ns: pc.shift_ns,
                proxies: handles,
                metrics_addr: format!("127.0.0.1:{}", free_port()?).parse()?,
                child: None,
                quota: None,
                down_at: None,
                restarts: 0,
                ever_started: false,
                failed: None,
                usage: UsageAcc::default(),
                done: Counters::default(),
                last: Counters::default(),
                skipped_down: 0,
                durable_t: Vec::new(),
                acked: vec![0; n],
                lag: vec![Vec::new(); n],
                backlog: vec![Vec::new(); n],
                height: 0,
                height_changed: 0.0,
            });
        }
        for c in &mut world.cars {
            c.quota = c.spec.quota;
        }
        Ok(world)
    }

    fn write_ledger_config(&self, l: usize, cars: &[PendingCar]) -> Result<()> {
        let o = &self.orgs[l];
        let secret = ledger::keys::read_secret_file(&o.token_file)?;
        let mut text = format!(
            "[ledger]\nname = \"{n}.sim\"\ncosigner_key = \"witness.key\"\nlog_key = \"log.key\"\n\
             store = \"store\"\n[listen]\naddress = \"{addr}\"\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n[limits]\nmax_blocks_per_batch = 256\n\
             [[tokens]]\nname = \"sim\"\nsha256 = \"{h}\"\nscopes = [\"admin\", \"query\"]\n",
            n = o.spec.name,
            h = hex_sha256(secret.as_bytes()),
            addr = o.addr,
        );
        let auditor = ledger::keys::read_secret_file(&auditor_token_file(&self.out))?;
        text.push_str(&format!(
            "[[tokens]]\nname = \"auditor\"\nsha256 = \"{}\"\nscopes = [\"admin\"]\n",
            hex_sha256(auditor.as_bytes())
        ));
        // Every other ledger is a peer: each witnesses the others' aggregate logs, and
        // `/checkpoint` publishes only what they cosigned (what `iovctl audit` checks).
        for (p, peer) in self.orgs.iter().enumerate() {
            if p == l {
                continue;
            }
            let log_vkey = std::fs::read_to_string(peer.dir.join("log.vkey"))
                .with_context(|| format!("{}/log.vkey", peer.dir.display()))?;
            text.push_str(&format!(
                "[[peers]]\nname = \"{}\"\nurl = \"http://{}/\"\nlog_vkey = \"{}\"\n\
                 cosigner_vkey = \"{}\"\n",
                peer.spec.name,
                peer.addr,
                log_vkey.trim(),
                peer.cosigner.verifier().to_vkey()
            ));
        }
        for c in cars {
            text.push_str(&format!(
                "[[gateways]]\nvkey = \"{}\"\nunit = \"{}\"\nlanes = [\"{}\"]\n",
                c.signer.verifier().to_vkey(),
                self.plan.vehicles[c.k].id,
                o.spec.name
            ));
        }
        std::fs::write(o.dir.join("ledger.toml"), text)?;
        Ok(())
    }

    /// Starts ledger `l` (on its previous address after the first start) and waits for its
    /// `listening ADDR metrics ADDR` line.
    fn start_ledger(&mut self, l: usize) -> Result<()> {
        let o = &mut self.orgs[l];
        if o.child.is_some() {
            return Ok(());
        }
        let cfg_path = o.dir.join("ledger.toml");
        if o.addr.port() != 0 {
            let cfg = std::fs::read_to_string(&cfg_path)?;
            let cfg =
                cfg.replace("address = \"127.0.0.1:0\"", &format!("address = \"{}\"", o.addr));
            std::fs::write(&cfg_path, cfg)?;
        }
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(o.dir.join("ledger.log"))?;
        let mut child = Proc::new(proc::binary("iov-ledger")?)
            .args(["run", "--config"])
            .arg(&cfg_path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting iov-ledger")?;
        let up =
            match ledger_node::launch::wait_child_listening(&mut child, Duration::from_secs(60)) {
                Ok(up) => up,
                Err(e) => {
                    let log = std::fs::read_to_string(o.dir.join("ledger.log")).unwrap_or_default();
                    bail!("ledger {} did not start ({e}); its log:\n{log}", o.spec.name);
                }
            };
        o.addr = up.addr;
        o.metrics = up.metrics;
        o.child = Some(child);
        Ok(())
    }

    fn stop_ledger(&mut self, l: usize, kill: bool) -> Result<()> {
        let o = &mut self.orgs[l];
        if let Some(mut c) = o.child.take() {
            o.usage.sample(c.id());
            if kill {
                let _ = c.kill();
            } else {
                proc::signal(&c, "TERM")?;
            }
            proc::wait_exit(&mut c, STOP_TIMEOUT)?;
            o.usage.end_lifetime();
            o.restarts += 1;
        }
        Ok(())
    }

    fn gateway_config(&self, v: usize) -> String {
        let c = &self.cars[v];
        let pace = match c.speed {
            None => "fast".to_owned(),
            Some(s) if (s - 1.0).abs() < 1e-9 => "recorded".to_owned(),
            Some(s) => format!("x{s:.6}"),
        };
        let mut t = format!(
            "[gateway]\nsigning_key = \"signing.key\"\nstore = \"store\"\nshutdown_grace = \"5s\"\n\
             [block]\nmax_records = 20000\nmax_age = \"{age}ms\"\n\
             [[dbc]]\nfile = \"{dbc}\"\nj1939_by_pgn = {j}\n\
             [sources.drive]\nkind = \"trace\"\nfile = \"{trace}\"\npace = \"{pace}\"\n\
             at_end = \"continue\"\ntime_shift = \"{shift:+}ns\"\n\
             [metrics]\nlisten = \"{metrics}\"\n",
            age = self.scenario.block_age.as_millis().max(1),
            dbc = c.spec.dbc.display(),
            j = c.spec.j1939,
            trace = c.life_trace.display(),
            shift = c.shift_ns,
            metrics = c.metrics_addr,
        );
        t.push_str("[recipients]\n");
        for o in &self.orgs {
            t.push_str(&format!("{n} = \"{n}.pub\"\n", n = o.spec.name));
        }
        for o in &self.orgs {
            match o.spec.lane {
                LaneKind::Raw => t.push_str(&format!(
                    "[lanes.{n}]\ncarries = \"raw\"\nrecipients = [\"{n}\"]\n",
                    n = o.spec.name
                )),
                LaneKind::Coarse => {
                    t.push_str(&format!(
                        "[lanes.{n}]\ncarries = \"signals\"\nrecipients = [\"{n}\"]\nsignals = [\n",
                        n = o.spec.name
                    ));
                    for s in &c.spec.coarse {
                        let grid = if s.contains("Latitude") || s.contains("Longitude") {
                            ", grid = 0.001"
                        } else {
                            ""
                        };
                        t.push_str(&format!(
                            "  {{ name = \"{s}\", min_interval = \"1s\"{grid} }},\n"
                        ));
                    }
                    t.push_str("]\n");
                }
            }
        }
        if let Some(q) = c.quota {
            t.push_str(&format!(
                "[retention]\nquota = \"{q}\"\nwhen_full = \"stop\"\nrecheck = \"200ms\"\n"
            ));
        }
        for (l, o) in self.orgs.iter().enumerate() {
            t.push_str(&format!(
                "[ledgers.{n}]\nurl = \"http://{addr}/\"\nlanes = [\"{n}\"]\ncosigner = \"{vkey}\"\n\
                 batch_blocks = 32\nbackoff_min = \"100ms\"\nbackoff_max = \"1s\"\ntimeout = \"5s\"\n",
                n = o.spec.name,
                addr = c.proxies[l].1,
                vkey = o.cosigner.verifier().to_vkey(),
            ));
            if let Some(b) = c.spec.bandwidth {
                t.push_str(&format!("bandwidth = \"{b}\"\n"));
            }
        }
        t
    }

    /// Where vehicle `v` is in its recording at drive time `now` (recorded ns from its start).
    fn offset_at(&self, v: usize, now: Duration) -> Option<u64> {
        let c = &self.cars[v];
        c.speed.map(|s| (now.saturating_sub(c.start).as_secs_f64() * s * 1e9) as u64)
    }

    fn start_gateway(&mut self, v: usize, quota: Option<u64>, now: Duration) -> Result<()> {
        if self.cars[v].child.is_some() || self.cars[v].failed.is_some() {
            return Ok(());
        }
        if quota.is_some() {
            self.cars[v].quota = quota;
        }
        if self.cars[v].ever_started {
            // The bus went on while the gateway was down: the new lifetime replays the rest.
            let life = self.cars[v].dir.join(format!("rest-{}.log", self.cars[v].restarts));
            let (frames, skipped) = match self.offset_at(v, now) {
                Some(off) => {
                    let info = tracefile::cut(&self.cars[v].trace, Some(&life), None, off)?;
                    let before = self.cars[v].down_at.map(|d| d.1).unwrap_or(info.frames);
                    (info.frames, before.saturating_sub(info.frames))
                }
                None => {
                    std::fs::write(&life, "")?;
                    (0, self.cars[v].down_at.map(|d| d.1).unwrap_or(0))
                }
            };
            let c = &mut self.cars[v];
            c.skipped_down += skipped;
            c.life_trace = life;
            c.life_frames = frames;
            // Past the end of the recording: nothing is replayed, and the shift must not matter.
        }
        let cfg = self.gateway_config(v);
        let c = &mut self.cars[v];
        std::fs::write(c.dir.join("gateway.toml"), cfg)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(c.dir.join("gateway.log"))?;
        let child = Proc::new(proc::binary("iov-gateway")?)
            .args(["run", "--config"])
            .arg(c.dir.join("gateway.toml"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting iov-gateway")?;
        c.child = Some(child);
        c.ever_started = true;
        c.down_at = None;
        Ok(())
    }

    /// Stops vehicle `v`'s gateway; `mid_drive`: the bus goes on (frames from now until its
    /// restart are never offered).
    fn stop_gateway(&mut self, v: usize, kill: bool, now: Duration, mid_drive: bool) -> Result<()> {
        if self.cars[v].child.is_none() {
            return Ok(());
        }
        let rest = match self.offset_at(v, now).filter(|_| mid_drive) {
            Some(off) => tracefile::cut(&self.cars[v].trace, None, None, off)?.frames,
            None => 0,
        };
        let c = &mut self.cars[v];
        let Some(mut child) = c.child.take() else { return Ok(()) };
        c.usage.sample(child.id());
        if kill {
            let _ = child.kill();
        } else {
            proc::signal(&child, "TERM")?;
        }
        let st = proc::wait_exit(&mut child, STOP_TIMEOUT)?;
        if !kill && !st.success() {
            self.failures.push(format!(
                "gateway {} exited with {st} on SIGTERM (see {})",
                c.id,
                c.dir.join("gateway.log").display()
            ));
        }
        c.usage.end_lifetime();
        let last = std::mem::take(&mut c.last);
        c.done.add(&last);
        c.restarts += 1;
        c.down_at = Some((now, rest));
        Ok(())
    }

    fn apply(&mut self, action: &Action, now: Duration) -> Result<()> {
        match action {
            Action::Link { vehicle, ledger, commands, .. } => {
                for cmd in commands {
                    self.cars[*vehicle].proxies[*ledger].0.apply(cmd);
                }
            }
            Action::StartGateway { vehicle, quota } => self.start_gateway(*vehicle, *quota, now)?,
            Action::KillGateway { vehicle } => self.stop_gateway(*vehicle, true, now, true)?,
            Action::StopGateway { vehicle } => self.stop_gateway(*vehicle, false, now, true)?,
            Action::StartLedger { ledger } => self.start_ledger(*ledger)?,
            Action::KillLedger { ledger } => self.stop_ledger(*ledger, true)?,
            Action::StopLedger { ledger } => self.stop_ledger(*ledger, false)?,
        }
        Ok(())
    }

    /// Reads every running gateway's metrics and every process's `/proc`.
    fn sample(&mut self, now: Duration) {
        let t = now.as_secs_f64();
        let names: Vec<String> = self.orgs.iter().map(|o| o.spec.name.clone()).collect();
        for c in &mut self.cars {
            let Some(child) = &mut c.child else { continue };
            if let Ok(Some(st)) = child.try_wait() {
                let msg = format!(
                    "gateway {} exited by itself ({st}) at {t:.1}s; log: {}",
                    c.id,
                    c.dir.join("gateway.log").display()
                );
                c.failed = Some(msg.clone());
                self.failures.push(msg);
                c.child = None;
                c.usage.end_lifetime();
                continue;
            }
            c.usage.sample(child.id());
            let Ok((200, body)) =
                proc::http_get(c.metrics_addr, "/metrics", Duration::from_secs(2))
            else {
                continue;
            };
            let m = proc::parse_metrics(&String::from_utf8_lossy(&body));
            let mut dropped = BTreeMap::new();
            for (k, v) in &m {
                if k.starts_with("iov_frames_dropped_total{") {
                    if let Some(r) = k.split("reason=\"").nth(1).and_then(|r| r.split('"').next()) {
                        *dropped.entry(r.to_owned()).or_insert(0.0) += v;
                    }
                }
            }
            c.last = Counters {
                received: proc::metric_sum(&m, "iov_frames_received_total", &[]),
                dropped,
                bytes_sent: names
                    .iter()
                    .map(|n| {
                        proc::metric_sum(
                            &m,
                            "iov_ledger_bytes_sent_total",
                            &[&format!("ledger=\"{n}\"")],
                        )
                    })
                    .collect(),
                sync_errors: names
                    .iter()
                    .map(|n| {
                        proc::metric_sum(
                            &m,
                            "iov_ledger_sync_errors_total",
                            &[&format!("ledger=\"{n}\"")],
                        )
                    })
                    .collect(),
            };
            let height = proc::metric_sum(&m, "iov_store_height", &[]) as u64;
            if height != c.height {
                c.height_changed = t;
            }
            while (c.durable_t.len() as u64) < height {
                c.durable_t.push(t);
            }
            c.height = c.height.max(height);
            for (l, n) in names.iter().enumerate() {
                let a =
                    proc::metric_sum(&m, "iov_ledger_acked_height", &[&format!("ledger=\"{n}\"")])
                        as u64;
                let a = a.min(c.height);
                if a > c.acked[l] {
                    for h in c.acked[l]..a {
                        let d = c.durable_t.get(h as usize).copied().unwrap_or(t);
                        // Plotted at the time the block became durable.
                        c.lag[l].push((d, (t - d).max(0.0)));
                    }
                    c.acked[l] = a;
                }
                c.backlog[l].push((t, c.height.saturating_sub(c.acked[l]) as f64));
            }
        }
        for o in &mut self.orgs {
            if let Some(child) = &o.child {
                o.usage.sample(child.id());
            }
        }
        self.sim_usage.sample(std::process::id());
    }

    fn progress_line(&self, phase: &str, now: Duration) {
        if !self.progress {
            return;
        }
        let frames: f64 = self.cars.iter().map(|c| c.done.received + c.last.received).sum();
        let blocks: u64 = self.cars.iter().map(|c| c.height).sum();
        let drops: f64 = self
            .cars
            .iter()
            .map(|c| c.done.dropped.values().sum::<f64>() + c.last.dropped.values().sum::<f64>())
            .sum();
        let mut s = format!(
            "\r{phase} {:5.1}s  frames {:>9}  blocks {:>6}  drops {:>6}",
            now.as_secs_f64(),
            frames as u64,
            blocks,
            drops as u64
        );
        for (l, o) in self.orgs.iter().enumerate() {
            let backlog: u64 = self.cars.iter().map(|c| c.height.saturating_sub(c.acked[l])).sum();
            s.push_str(&format!("  {} backlog {:>5}", o.spec.name, backlog));
        }
        eprint!("{s}   ");
    }

    /// Carries out the plan over the drive, then heals every link and waits (bounded by
    /// `heal_timeout`) until every ledger holds every durable block of every vehicle.
    pub fn run(&mut self) -> Result<()> {
        self.t0 = Instant::now();
        let events = self.plan.events.clone();
        let mut next = 0;
        let mut last_sample = Duration::ZERO;
        let sample = self.scenario.sample;
        // The drive.
        loop {
            let now = self.t0.elapsed();
            while next < events.len() && events[next].at <= now {
                let e = &events[next];
                self.apply(&e.action, now)
                    .with_context(|| format!("at {:?}: {:?}", e.at, e.action))?;
                next += 1;
            }
            if now >= last_sample + sample {
                self.sample(now);
                self.progress_line("drive", now);
                last_sample = now;
            }
            if now >= self.scenario.duration {
                break;
            }
            std::thread::sleep(TICK);
        }
        // What the plan put after the drive (restarts after a late fault) happens now.
        let now = self.t0.elapsed();
        while next < events.len() {
            self.apply(&events[next].action, now)?;
            next += 1;
        }
        self.drive_time = now;
        // The final heal: every link clear and up, every process running.
        for c in &self.cars {
            for (h, _) in &c.proxies {
                h.apply(&Command::Clear);
                h.apply(&Command::Up);
            }
        }
        for l in 0..self.orgs.len() {
            self.start_ledger(l)?;
        }
        for v in 0..self.cars.len() {
            self.start_gateway(v, None, now)?;
        }
        let deadline = now + self.scenario.heal_timeout;
        let settle = (self.scenario.block_age * 2 + Duration::from_millis(500)).as_secs_f64();
        loop {
            let now = self.t0.elapsed();
            self.sample(now);
            self.progress_line("heal ", now);
            let t = now.as_secs_f64();
            let caught_up = self.cars.iter().all(|c| {
                c.failed.is_some()
                    || (c.last.received >= c.life_frames as f64
                        && t - c.height_changed >= settle
                        && c.acked.iter().all(|&a| a == c.height))
            });
            if caught_up {
                self.heal_time = Some(now.saturating_sub(self.drive_time));
                break;
            }
            if now > deadline {
                for c in &self.cars {
                    for (l, o) in self.orgs.iter().enumerate() {
                        if c.acked[l] < c.height {
                            self.failures.push(format!(
                                "not caught up {:?} after the heal: {} holds {} of {}'s {} blocks",
                                self.scenario.heal_timeout, o.spec.name, c.acked[l], c.id, c.height
                            ));
                        }
                    }
                    if c.last.received < c.life_frames as f64 {
                        self.notes.push(format!(
                            "{}: its trace was still replaying at the heal deadline ({} of {} frames)",
                            c.id, c.last.received, c.life_frames
                        ));
                    }
                }
                break;
            }
            std::thread::sleep(self.scenario.sample.min(Duration::from_millis(250)));
        }
        if self.progress {
            eprintln!();
        }
        for o in &mut self.orgs {
            if let Some(m) = o.metrics {
                if let Ok((200, body)) = proc::http_get(m, "/metrics", Duration::from_secs(2)) {
                    o.last_metrics = proc::parse_metrics(&String::from_utf8_lossy(&body));
                }
            }
        }
        Ok(())
    }

    /// Stops every gateway (gracefully) and every ledger, and the proxies.
    pub fn shutdown(&mut self) -> Result<()> {
        let now = self.t0.elapsed();
        for v in 0..self.cars.len() {
            // Not a downtime: no frames are skipped after the drive.
            self.stop_gateway(v, false, now, false)?;
        }
        for l in 0..self.orgs.len() {
            self.stop_ledger(l, false)?;
            self.orgs[l].restarts = self.orgs[l].restarts.saturating_sub(1);
        }
        for c in &mut self.cars {
            c.restarts = c.restarts.saturating_sub(1);
        }
        self.stop.cancel();
        self.sim_usage.sample(std::process::id());
        Ok(())
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for c in &mut self.cars {
            if let Some(mut ch) = c.child.take() {
                let _ = ch.kill();
                let _ = ch.wait();
            }
        }
        for o in &mut self.orgs {
            if let Some(mut ch) = o.child.take() {
                let _ = ch.kill();
                let _ = ch.wait();
            }
        }
        self.stop.cancel();
    }
}

/// A vehicle before its proxies are pointed at the ledgers.
struct PendingCar {
    k: usize,
    spec: VehicleSpec,
    dir: PathBuf,
    origin: String,
    signer: Ed25519Signer,
    start: Duration,
    trace: PathBuf,
    info: TraceInfo,
    speed: Option<f64>,
    shift_ns: i64,
    proxies: Vec<(tokio::net::TcpListener, SocketAddr, u64, CancellationToken)>,
}

/// Paths beside a world's output: used by the report.
pub fn rel(out: &Path, p: &Path) -> String {
    p.strip_prefix(out).unwrap_or(p).display().to_string()
}
