//! End to end with real processes: the `iov-gateway` binary replays the real GPS trace (as
//! fast as possible) and syncs it to two real `iov-ledger` processes (factory: the raw lane,
//! city: the coarsened signal lane), each behind an in-process `faultproxy`. At the end each
//! ledger must hold exactly the gateway's log: every header equal, its own lanes equal byte
//! for byte, the other organisation's lanes absent; and the gateway's cursors must equal the
//! head, with receipts that verify with both keys.
//!
//! Every wait is on a condition with a deadline (the ledgers' `/state`, the gateway's
//! metrics), never a fixed sleep.

#![cfg(feature = "rocks")]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use ledger::block::BlockHeader;
use ledger::cosignature::Cosigner;
use ledger::note::Note;
use ledger::store::cursor::{read_cursor, LedgerCursor};
use ledger::store::Store as _;
use ledger::sync_wire::{self, GatewayState};
use ledger_node::store::LedgerStore as _;

const FRAMES: u64 = 640_067;
/// Generous: a loaded 2-core builder replays, seals and syncs the trace in well under this.
const DEADLINE: Duration = Duration::from_secs(600);

/// The `iov-ledger` binary next to the test's target dir; built when missing.
fn iov_ledger() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().and_then(Path::parent).context("target dir")?;
    let bin = dir.join("iov-ledger");
    if !bin.exists() {
        let target = dir.parent().context("target root")?;
        let st = Command::new(env!("CARGO"))
            .args(["build", "--release", "-p", "ledger-node", "--bin", "iov-ledger"])
            .env("CARGO_TARGET_DIR", target)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .context("cargo build -p ledger-node")?;
        ensure!(st.success(), "building iov-ledger failed");
    }
    Ok(bin)
}

/// One organisation's ledger node: keys, config, store, the running process.
struct Org {
    name: &'static str,
    lanes: Vec<String>,
    cosigner: Cosigner,
    dir: PathBuf,
    addr: SocketAddr,
    child: Option<Child>,
}

impl Org {
    fn new(root: &Path, name: &'static str, lane: &str, gateway_vkey: &str) -> Result<Org> {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir)?;
        let cosigner = ledger::keys::generate_cosigner(&format!("{name}.example/ledger"))?;
        ledger::keys::save_cosigner(&dir.join("witness.key"), &cosigner)?;
        let org = Org {
            name,
            lanes: vec![lane.to_owned()],
            cosigner,
            dir,
            addr: "127.0.0.1:0".parse()?,
            child: None,
        };
        org.write_config(gateway_vkey)?;
        Ok(org)
    }

    fn write_config(&self, gateway_vkey: &str) -> Result<()> {
        std::fs::write(
            self.dir.join("ledger.toml"),
            format!(
                "[ledger]\nname = \"{n}.example\"\ncosigner_key = \"witness.key\"\nstore = \"store\"\n\
                 [listen]\naddress = \"{addr}\"\n\
                 [limits]\nmax_blocks_per_batch = 256\n\
                 [[gateways]]\nvkey = \"{gateway_vkey}\"\nunit = \"e2e\"\nlanes = [\"{lane}\"]\n",
                n = self.name,
                addr = self.addr,
                lane = self.lanes[0],
            ),
        )?;
        Ok(())
    }

    /// Starts the node (on its previous address after the first start) and waits for its
    /// `listening ADDR` line.
    fn start(&mut self, gateway_vkey: &str) -> Result<()> {
        self.write_config(gateway_vkey)?;
        let mut child = Command::new(iov_ledger()?)
            .args(["run", "--config"])
            .arg(self.dir.join("ledger.toml"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting iov-ledger")?;
        let up = ledger_node::launch::wait_child_listening(&mut child, Duration::from_secs(60))
            .context(self.name)?;
        self.addr = up.addr;
        self.child = Some(child);
        Ok(())
    }

    fn signal(&mut self, sig: &str) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            let st = Command::new("kill").args([sig, &c.id().to_string()]).status()?;
            ensure!(st.success(), "kill {sig}");
            wait_exit(&mut c, Duration::from_secs(60))?;
        }
        Ok(())
    }

    fn vkey(&self) -> String {
        self.cosigner.verifier().to_vkey()
    }
}

impl Drop for Org {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_exit(c: &mut Child, timeout: Duration) -> Result<std::process::ExitStatus> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(st) = c.try_wait()? {
            return Ok(st);
        }
        if Instant::now() > end {
            let _ = c.kill();
            bail!("process {} did not exit within {timeout:?}", c.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A free loopback port (bound then released; the gateway binds it right after).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The test's world: gateway keys and config, two ledgers, a proxy in front of each.
struct World {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    keys: common::Keys,
    orgs: Vec<Org>,
    proxies: Vec<faultproxy::Handle>,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    metrics: SocketAddr,
    stop: tokio_util::sync::CancellationToken,
}

impl World {
    fn new() -> Result<World> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().to_path_buf();
        let keys = common::keys(&dir)?;
        let gw_vkey = keys.signer.verifier().to_vkey();
        let rt =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let mut orgs = vec![
            Org::new(&dir, "factory", "factory", &gw_vkey)?,
            Org::new(&dir, "city", "city", &gw_vkey)?,
        ];
        for o in &mut orgs {
            o.start(&gw_vkey)?;
        }
        let stop = tokio_util::sync::CancellationToken::new();
        let mut proxies = Vec::new();
        let mut proxy_addrs = Vec::new();
        for (i, o) in orgs.iter().enumerate() {
            let upstream = o.addr;
            let stop = stop.clone();
            let (h, addr) = rt.block_on(async move {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let addr = l.local_addr()?;
                let (h, _) = faultproxy::spawn(l, upstream, 7 + i as u64, stop);
                anyhow::Ok((h, addr))
            })?;
            proxies.push(h);
            proxy_addrs.push(addr);
        }
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        // A private copy of the trace, so a restarted gateway can be given an empty one.
        std::fs::copy(
            common::fixtures().join("traces/canmod_gps_3BA199E2.log.gz"),
            dir.join("trace.log.gz"),
        )?;
        let ledger = |o: &Org, addr: SocketAddr| {
            format!(
                "[ledgers.{n}]\nurl = \"http://{addr}/\"\nlanes = [\"{lane}\"]\ncosigner = \"{vkey}\"\n\
                 batch_blocks = 4\nbackoff_min = \"50ms\"\nbackoff_max = \"400ms\"\ntimeout = \"5s\"\n",
                n = o.name,
                lane = o.lanes[0],
                vkey = o.vkey()
            )
        };
        let config = format!(
            r#"
[gateway]
signing_key = "signing.key"
store = "store"
shutdown_grace = "5s"
[block]
max_records = 20000
max_age = "1s"
[[dbc]]
file = "{dbc}"
[recipients]
factory = "factory.pub"
city = "city.pub"
[sources.replay]
kind = "trace"
file = "trace.log.gz"
pace = "fast"
at_end = "continue"
# A CAN interface that never appears: the source waits for it, which keeps the daemon running
# after the trace (as a vehicle's CAN source would), so the agents sync on their own time.
[sources.idle]
kind = "socketcan"
interface = "vcan-e2e"
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
[metrics]
listen = "{metrics}"
{factory}
{city}
"#,
            dbc = common::fixtures().join("dbc/css-electronics/canmod-gps.dbc").display(),
            factory = ledger(&orgs[0], proxy_addrs[0]),
            city = ledger(&orgs[1], proxy_addrs[1]),
        );
        std::fs::write(dir.join("gateway.toml"), config)?;
        // The test's own client (plain HTTP straight to the ledgers) needs a rustls provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
        Ok(World { _tmp: tmp, dir, keys, orgs, proxies, rt, http, metrics, stop })
    }

    fn gateway(&self) -> Result<common::Gateway> {
        common::Gateway::start(&self.dir.join("gateway.toml"))
    }

    fn origin(&self) -> String {
        self.keys.signer.name().to_owned()
    }

    /// The ledger's `/state` for our gateway, asked directly (not through the proxy).
    fn state(&self, org: usize) -> Result<GatewayState> {
        let url =
            format!("http://{}{}", self.orgs[org].addr, sync_wire::path::state(&self.origin()));
        let http = self.http.clone();
        let body = self.rt.block_on(async move {
            let r = http.get(url).send().await?.error_for_status()?;
            anyhow::Ok(r.bytes().await?.to_vec())
        })?;
        Ok(GatewayState::from_cbor(&body)?)
    }

    /// One gateway metric's value (the first sample of `name`, with `label` in its labels).
    fn metric(&self, name: &str, label: &str) -> Result<Option<f64>> {
        let url = format!("http://{}/metrics", self.metrics);
        let http = self.http.clone();
        let text = match self.rt.block_on(async move { http.get(url).send().await?.text().await }) {
            Ok(t) => t,
            Err(_) => return Ok(None),
        };
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.split(['{', ' ']).next() == Some(name) && l.contains(label))
            .find_map(|l| l.rsplit(' ').next().and_then(|v| v.parse().ok())))
    }

    /// Waits until `f` holds, or fails after `timeout` with `what`.
    fn wait(
        &self,
        timeout: Duration,
        what: &str,
        mut f: impl FnMut(&World) -> Result<bool>,
    ) -> Result<()> {
        let end = Instant::now() + timeout;
        loop {
            if f(self).unwrap_or(false) {
                return Ok(());
            }
            if Instant::now() > end {
                bail!("timed out after {timeout:?} waiting for {what}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until every frame of the trace is durable; returns the log size then.
    fn wait_ingested(&self, gw: &mut common::Gateway) -> Result<u64> {
        let mut exited = None;
        let r = self.wait(DEADLINE, "every frame durable", |w| {
            if let Some(st) = gw.child.try_wait()? {
                exited = Some(st);
                return Ok(true);
            }
            Ok(w.metric("iov_records_total", "lane=\"factory\"")? == Some(FRAMES as f64))
        });
        if let Some(st) = exited {
            let _ = gw.wait_exit(Duration::from_secs(10));
            bail!("the gateway exited ({st}); log:\n{}", gw.seen.join("\n"));
        }
        if let Err(e) = r {
            let _ = gw.wait_for(Duration::from_millis(10), |_| false);
            bail!("{e}; gateway log:\n{}", gw.seen.join("\n"));
        }
        let h = self.metric("iov_store_height", "")?.context("store height")?;
        Ok(h as u64)
    }

    /// Waits until both ledgers hold (witnessed and mirrored) `head` blocks and the gateway's
    /// cursors (its metrics) say so too.
    fn wait_synced(&self, head: u64) -> Result<()> {
        for i in 0..self.orgs.len() {
            let name = self.orgs[i].name;
            self.wait(DEADLINE, &format!("{name} at head {head}"), |w| {
                let s = w.state(i)?;
                Ok(s.mirrored == head && s.witnessed.map(|x| x.size) == Some(head))
            })?;
            let label = format!("ledger=\"{name}\"");
            self.wait(DEADLINE, &format!("the gateway's {name} cursor at {head}"), |w| {
                Ok(w.metric("iov_ledger_acked_height", &label)? == Some(head as f64)
                    && w.metric("iov_ledger_witnessed_height", &label)? == Some(head as f64))
            })?;
        }
        Ok(())
    }

    /// Stops the gateway gracefully.
    fn stop_gateway(&self, gw: &mut common::Gateway) -> Result<()> {
        gw.signal("-TERM")?;
        let (st, _) = gw.wait_exit(Duration::from_secs(120))?;
        ensure!(st.success(), "gateway exit {st}; log:\n{}", gw.seen.join("\n"));
        Ok(())
    }

    /// Stops everything and checks the end state against the gateway's store.
    fn check_end_state(&mut self, gw: &mut common::Gateway, head: u64) -> Result<()> {
        self.stop_gateway(gw)?;
        self.check_stopped(head)
    }

    /// [`World::check_end_state`] once the gateway has stopped.
    fn check_stopped(&mut self, head: u64) -> Result<()> {
        for o in &mut self.orgs {
            o.signal("-TERM")?;
        }
        self.stop.cancel();
        let store = ledger::store::rocks::Rocks::open(
            &self.dir.join("store"),
            &self.keys.signer.verifier(),
            ledger::store::rocks::Mode::Verify,
        )?;
        ensure!(store.size() == head, "gateway log size {} != {head}", store.size());
        let origin = self.origin();
        for o in &self.orgs {
            let ls = ledger_node::store::rocks::Rocks::open(&o.dir.join("store"))?;
            ensure!(
                ls.mirrored(&origin)? == head,
                "{}: mirrored {}",
                o.name,
                ls.mirrored(&origin)?
            );
            let mut lane_bytes = 0usize;
            for h in 0..head {
                let header = store.header(h)?.context("gateway header")?;
                ensure!(
                    ls.header(&origin, h)?.as_ref() == Some(&header),
                    "{}: header {h} differs",
                    o.name
                );
                let parsed = BlockHeader::from_bytes(&header)?;
                let want: Vec<(u16, Vec<u8>)> = parsed
                    .lanes
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| o.lanes.contains(&l.name))
                    .map(|(i, _)| Ok((i as u16, store.lane(h, i as u16)?.context("gateway lane")?)))
                    .collect::<Result<_>>()?;
                let got = ls.lanes(&origin, h)?;
                ensure!(
                    got == want,
                    "{}: lanes of block {h} differ (or carry another org's lane)",
                    o.name
                );
                lane_bytes += got.iter().map(|l| l.1.len()).sum::<usize>();
            }
            ensure!(ls.header(&origin, head)?.is_none(), "{}: a header past the head", o.name);
            // The gateway's cursor and receipt for this ledger.
            let c = read_cursor(&store, o.name)?;
            ensure!(c == LedgerCursor { witnessed: head, acked: head }, "{}: cursor {c:?}", o.name);
            let receipt = store.receipt(o.name)?.context("receipt")?;
            let note = Note::parse(&receipt)?;
            let gv = self.keys.signer.verifier();
            let cv = o.cosigner.verifier();
            let ok = note.verify(&[&gv, &cv])?;
            ensure!(ok.len() == 2, "{}: receipt verifies with {} keys, want 2", o.name, ok.len());
            println!("{}: {head} blocks, {lane_bytes} lane bytes, cursor {c:?}", o.name);
        }
        Ok(())
    }
}

#[test]
fn clean_link_both_ledgers_hold_exactly_the_gateways_log() -> Result<()> {
    let mut w = World::new()?;
    let t0 = Instant::now();
    let mut gw = w.gateway()?;
    let head = w.wait_ingested(&mut gw)?;
    w.wait_synced(head)?;
    println!("clean link: {head} blocks ingested and synced to both ledgers in {:?}", t0.elapsed());
    let acked = w.metric("iov_ledger_acked_height", "ledger=\"factory\"")?;
    ensure!(acked == Some(head as f64), "acked metric {acked:?}");
    let sent = w.metric("iov_ledger_bytes_sent_total", "ledger=\"factory\"")?.unwrap_or(0.0);
    println!("bytes sent to factory: {sent}");
    w.check_end_state(&mut gw, head)
}

#[test]
fn a_flaky_link_a_ledger_restart_and_a_gateway_kill_end_in_the_same_state() -> Result<()> {
    let mut w = World::new()?;
    let gw_vkey = w.keys.signer.verifier().to_vkey();
    // Slow links (256 KiB/s each way), so the upload spans many cuts and both restarts.
    for p in &w.proxies {
        p.apply(&faultproxy::Command::Rate(Some(256 * 1024)));
    }
    // The link to both ledgers drops every 300 ms for the whole test.
    let cutter = {
        let proxies = w.proxies.clone();
        let stop = w.stop.clone();
        w.rt.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(300));
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                for p in &proxies {
                    p.apply(&faultproxy::Command::Cut);
                }
            }
        })
    };
    let mut gw = w.gateway()?;
    // The factory ledger restarts mid-upload.
    w.wait(DEADLINE, "factory mid-upload", |w| Ok(w.state(0)?.mirrored >= 4))?;
    let before = w.state(0)?.mirrored;
    w.orgs[0].signal("-KILL")?;
    w.orgs[0].start(&gw_vkey)?;
    println!("factory ledger killed and restarted at mirrored {before}");
    // The gateway is SIGKILLed mid-upload to the city ledger, then restarted with nothing
    // new to ingest (an empty trace): it must resume from the ledgers' state.
    w.wait(DEADLINE, "city mid-upload", |w| Ok(w.state(1)?.mirrored >= 8))?;
    gw.signal("-KILL")?;
    let _ = gw.wait_exit(Duration::from_secs(60))?;
    println!(
        "gateway killed with factory at mirrored {}, city at {}",
        w.state(0)?.mirrored,
        w.state(1)?.mirrored
    );
    std::fs::write(w.dir.join("trace.log.gz"), [])?;
    std::fs::rename(w.dir.join("trace.log.gz"), w.dir.join("trace.log"))?;
    let cfg =
        std::fs::read_to_string(w.dir.join("gateway.toml"))?.replace("trace.log.gz", "trace.log");
    std::fs::write(w.dir.join("gateway.toml"), cfg)?;
    let mut gw = w.gateway()?;
    w.wait(DEADLINE, "the restarted gateway's metrics", |w| {
        Ok(w.metric("iov_store_height", "")?.is_some())
    })?;
    let head = w.metric("iov_store_height", "")?.context("height")? as u64;
    ensure!(head > 0, "nothing was durable before the kill");
    w.wait_synced(head)?;
    let errors = w.metric("iov_ledger_sync_errors_total", "ledger=\"factory\",kind=\"link\"")?;
    println!("synced {head} blocks through the faults; factory link errors since the restart: {errors:?}");
    let stats: Vec<_> = w.proxies.iter().map(faultproxy::Handle::stats).collect();
    println!("proxies: {stats:?}");
    ensure!(stats.iter().all(|s| s.resets > 0), "the proxies never cut a live connection");
    w.stop.cancel();
    let _ = w.rt.block_on(cutter);
    w.check_end_state(&mut gw, head)
}

#[test]
fn lost_responses_are_recovered_and_a_resend_is_a_no_op() -> Result<()> {
    let mut w = World::new()?;
    // Each connection to the factory ledger is cut once 1,000 answer bytes went back: a few
    // answers pass, then one is cut mid-way after its request took effect at the ledger.
    w.proxies[0].apply(&faultproxy::Command::ResetAfter(faultproxy::Direction::Down, Some(1000)));
    let mut gw = w.gateway()?;
    let head = w.wait_ingested(&mut gw)?;
    w.wait_synced(head)?;
    let cut = w.proxies[0].stats();
    println!("factory proxy with answers cut: {cut:?}");
    ensure!(cut.resets > 0, "no answer was cut");
    w.proxies[0].apply(&faultproxy::Command::Clear);
    w.stop_gateway(&mut gw)?;

    // Resend, by hand, what the agent sent last: the newest checkpoint and the last batch.
    let before = w.state(0)?;
    let origin = w.origin();
    let base = format!("http://{}", w.orgs[0].addr);
    let (checkpoint, upload) = {
        let mut store = ledger::store::rocks::Rocks::open(
            &w.dir.join("store"),
            &w.keys.signer.verifier(),
            ledger::store::rocks::Mode::Verify,
        )?;
        let note = store.checkpoint_at(head)?.context("checkpoint")?;
        let body = gateway::sync::wire::add_checkpoint_body(head, &[], &note);
        let from = head.saturating_sub(3);
        let batch = gateway::sync::agent::read_batch(
            &mut store,
            from,
            head,
            head,
            &w.orgs[0].lanes,
            1 << 30,
        )?;
        (body, batch.to_cbor())
    };
    let http = w.http.clone();
    let (a, b) = w.rt.block_on(async move {
        let a = http
            .post(format!("{base}{}", sync_wire::path::ADD_CHECKPOINT))
            .body(checkpoint)
            .send()
            .await?;
        let a = (a.status().as_u16(), a.bytes().await?.to_vec());
        let b = http
            .post(format!("{base}{}", sync_wire::path::blocks(&origin)))
            .header("content-type", sync_wire::CBOR_TYPE)
            .body(upload)
            .send()
            .await?;
        let b = (b.status().as_u16(), b.bytes().await?.to_vec());
        anyhow::Ok((a, b))
    })?;
    ensure!(a.0 == 200, "checkpoint resend: HTTP {} {}", a.0, String::from_utf8_lossy(&a.1));
    ensure!(b.0 == 200, "upload resend: HTTP {} {}", b.0, String::from_utf8_lossy(&b.1));
    ensure!(sync_wire::UploadAck::from_cbor(&b.1)?.mirrored == head, "resend moved the mirror");
    let after = w.state(0)?;
    ensure!(
        after.mirrored == before.mirrored && after.witnessed.as_ref().map(|x| x.size) == Some(head)
    );
    w.check_stopped(head)
}
