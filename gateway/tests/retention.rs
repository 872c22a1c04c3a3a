//! Retention with real parts: a RocksDB store on disk, the gateway's task graph fed by a trace of
//! random (incompressible) CAN frames, sync cursors written with `write_cursor` as a sync agent
//! would, `iovctl store verify` as a process, and the `iov-gateway` binary on a small tmpfs that
//! fills up.
//!
//! - `stop`: over the quota with nothing acknowledged, new blocks are refused (the log stops
//!   growing) and frames are dropped and counted with reason `quota`; once a ledger
//!   acknowledges, acknowledged lanes are pruned and input resumes. Every frame is either in a
//!   durable block or counted.
//! - `drop-oldest`: unsynced lanes are pruned, and the next block carries a `$iov/gap` record in
//!   every lane naming exactly the heights whose lanes are gone.
//! - `stop` with a real Mosquitto: MQTT messages refused while over the quota are not
//!   acknowledged, so the broker redelivers the first refused one to the gateway's session.
//! - `drop-oldest` through the real daemon on a 4 MiB tmpfs with 9 MB of input: it keeps running.
//! - disk full (no quota): the daemon exits non-zero, the store opens and verifies with every
//!   acknowledged block, and after the tmpfs grows a restart continues from the durable head.
//!
//! The tmpfs test mounts a filesystem, which needs root (the test harness runs as root); it
//! skips with a message only when mounting is impossible.
#![cfg(feature = "rocks")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use gateway::config::Config;
use gateway::health::Health;
use gateway::retention::{Gap, GAP_TOPIC};
use ledger::block::BlockHeader;
use ledger::lane::Limits;
use ledger::record::Record;
use ledger::seal::open_lane_bytes;
use ledger::store::cursor::{write_cursor, LedgerCursor};
use ledger::store::rocks::{Mode, Rocks};
use ledger::store::Store;
use tokio_util::sync::CancellationToken;

/// A candump log of `n` classic frames with random 8-byte payloads, 1 ms apart.
fn random_trace(path: &Path, n: usize, seed: u64) -> Result<()> {
    use std::io::Write as _;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut x = seed | 1;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let t = 1_700_000_000_000_000u64 + i as u64 * 1000;
        writeln!(w, "({}.{:06}) can0 123#{:016X}", t / 1_000_000, t % 1_000_000, x)?;
    }
    w.flush()?;
    Ok(())
}

/// The config text: two raw lanes (factory, city), one trace source, `[retention]` as given.
fn config_text(trace: &Path, at_end: &str, store: &Path, retention: &str) -> String {
    format!(
        r#"
[gateway]
signing_key = "signing.key"
store = "{store}"
[block]
max_records = 2000
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
carries = "raw"
recipients = ["city"]
{retention}
"#,
        store = store.display(),
        trace = trace.display(),
    )
}

/// Waits (bounded) for `f` to hold.
fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Result<()> {
    let end = Instant::now() + timeout;
    while !f() {
        if Instant::now() >= end {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// `iovctl store verify`: its exit status and stdout.
fn iovctl_verify(store: &Path, vkey: &Path) -> Result<(bool, String)> {
    let out = Command::new(common::iovctl()?)
        .args(["store", "verify", "--store"])
        .arg(store)
        .arg("--key")
        .arg(vkey)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Ok((out.status.success(), text))
}

const FRAMES: usize = 150_000;

#[test]
fn stop_refuses_new_blocks_counts_the_drops_and_resumes_once_a_ledger_acknowledges() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    let k = common::keys(d)?;
    let trace = d.join("random.log");
    random_trace(&trace, FRAMES, 0x5eed)?;
    let text = config_text(
        &trace,
        "continue",
        &d.join("store"),
        "[retention]\nquota = \"1 MiB\"\nlow_watermark = \"512 KiB\"\nwhen_full = \"stop\"\nrecheck = \"20ms\"\n",
    );
    let mut cfg = Config::from_toml(&text, &d.join("gateway.toml"))?;
    cfg.retention.ledger_names = vec!["factory-ledger".into()];
    // A short block age and a one-block writer queue: a pipeline that waited on a writer holding
    // its blocks would stop reading, and the trace below would never be read to its end (found
    // this way: the writer now takes the blocks in flight off the channel while it holds).
    cfg.writer_capacity = std::num::NonZeroUsize::MIN;
    cfg.block.max_age = Duration::from_millis(50);

    let store = Rocks::open(&d.join("store"), &k.signer.verifier(), Mode::CreateOrOpen)?;
    let mut agent = store.reader();
    let health = Arc::new(Health::new(Duration::from_millis(10)));
    let token = CancellationToken::new();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    // Whatever fails below, the run is told to stop before the runtime drops (declared after
    // it, so dropped first; else the drop would wait for a writer holding blocks forever).
    let _stop = token.clone().drop_guard();
    let run = rt.spawn(gateway::run::run_with(cfg, Box::new(store), token.clone(), health.clone()));
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), health.wait_ready()).await })
        .context("ready")?;
    let ret = health.retention().context("retention registered")?;
    let src = health.sources().into_iter().next().context("the trace source")?;

    wait_until(
        "the store to go over its quota and refuse input",
        Duration::from_secs(120),
        || ret.refusing(),
    )?;
    ensure!(ret.alarm(), "refusing raises the alarm");
    let frozen = agent.size();
    wait_until("the whole trace to be read", Duration::from_secs(120), || {
        src.stats.delivered.load(std::sync::atomic::Ordering::Relaxed) == FRAMES as u64
    })?;
    wait_until("frames dropped with reason quota", Duration::from_secs(60), || {
        ret.dropped_quota("replay") > 0
    })?;
    ensure!(agent.size() == frozen, "no block was appended while refusing");
    ensure!(agent.pruned_below()? == 0, "nothing acknowledged, nothing pruned");
    let text = gateway::metrics::render(&health);
    ensure!(text.contains("iov_retention_alarm 1"), "{text}");
    ensure!(text.contains("iov_frames_dropped_total{iface=\"replay\",reason=\"quota\"}"), "{text}");
    println!(
        "refusing at log size {frozen}, {} bytes on disk (quota 1 MiB), {} frames dropped",
        ret.store_bytes().unwrap_or(0),
        ret.dropped_quota("replay")
    );

    // A sync agent reports that the ledger holds every block so far.
    write_cursor(&mut agent, "factory-ledger", LedgerCursor { witnessed: frozen, acked: frozen })?;
    wait_until("input to resume", Duration::from_secs(60), || !ret.refusing() && !ret.alarm())?;
    let (acked, unsynced) = ret.pruned_blocks();
    ensure!(acked > 0 && unsynced == 0, "pruned acked {acked}, unsynced {unsynced}");
    let pruned = agent.pruned_below()?;
    ensure!(pruned <= frozen, "only acknowledged blocks were pruned");
    let text = gateway::metrics::render(&health);
    for want in [
        format!("iov_store_pruned_below {pruned}\n"),
        format!("iov_retention_pruned_blocks_total{{kind=\"acked\"}} {acked}\n"),
        "iov_retention_pruned_blocks_total{kind=\"unsynced\"} 0\n".to_string(),
        "iov_retention_alarm 0\n".to_string(),
        "iov_retention_quota_bytes 1048576\n".to_string(),
        "iov_store_bytes ".to_string(),
    ] {
        ensure!(text.contains(&want), "metrics lack {want:?}:\n{text}");
    }

    token.cancel();
    let s = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(60), run).await })
        .context("run ends")???;
    let dropped = ret.dropped_quota("replay");
    let factory = s.durable.lane_records.get("factory").copied().unwrap_or(0);
    println!(
        "sealed {factory} frames, dropped {dropped} (quota), pruned {acked} acknowledged blocks, log size {}",
        s.durable.size
    );
    ensure!(factory == s.counters.frames_in, "every accepted frame is durable");
    ensure!(
        factory + dropped == FRAMES as u64,
        "{factory} sealed + {dropped} dropped != {FRAMES} read: something was lost silently"
    );
    drop(agent);
    drop(rt);

    let (ok, out) = iovctl_verify(&d.join("store"), &d.join("signing.vkey"))?;
    println!("{out}");
    ensure!(ok, "iovctl store verify failed:\n{out}");
    ensure!(out.contains("pruned      heights 0.."), "the pruned prefix is reported:\n{out}");
    Ok(())
}

/// Every `$iov/gap` record in lane `i` of block `h`, decoded.
fn gaps_in(records: &[Record]) -> Result<Vec<Gap>> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Mqtt(m) if &*m.topic == GAP_TOPIC => Some(Gap::from_cbor(&m.payload)),
            _ => None,
        })
        .map(|g| g.map_err(anyhow::Error::msg))
        .collect()
}

#[test]
fn drop_oldest_prunes_unsynced_lanes_and_the_next_block_records_the_gap() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    let k = common::keys(d)?;
    let trace = d.join("random.log");
    random_trace(&trace, FRAMES, 0xd20b)?;
    let text = config_text(
        &trace,
        "shutdown",
        &d.join("store"),
        "[retention]\nquota = \"1 MiB\"\nlow_watermark = \"512 KiB\"\nwhen_full = \"drop-oldest\"\n",
    );
    let cfg = Config::from_toml(&text, &d.join("gateway.toml"))?;
    let store = Rocks::open(&d.join("store"), &k.signer.verifier(), Mode::CreateOrOpen)?;
    let health = Arc::new(Health::new(Duration::from_millis(10)));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let s = rt
        .block_on(async {
            tokio::time::timeout(
                Duration::from_secs(300),
                gateway::run::run_with(
                    cfg,
                    Box::new(store),
                    CancellationToken::new(),
                    health.clone(),
                ),
            )
            .await
        })
        .context("run ends")??;
    drop(rt);
    let ret = health.retention().context("retention")?;
    let (acked, unsynced) = ret.pruned_blocks();
    let factory = s.durable.lane_records.get("factory").copied().unwrap_or(0);
    println!(
        "log size {}, pruned unsynced {unsynced}, acked {acked}, pruned below {}, {} bytes on disk",
        s.durable.size,
        ret.pruned_below(),
        ret.store_bytes().unwrap_or(0)
    );
    ensure!(factory == FRAMES as u64, "drop-oldest never refuses input: {factory} sealed");
    ensure!(acked == 0 && unsynced > 0, "pruned acked {acked}, unsynced {unsynced}");
    ensure!(ret.alarm(), "dropping unsynced lanes raises the alarm");
    ensure!(ret.dropped_quota_total() == 0);

    let store = Rocks::open(&d.join("store"), &k.signer.verifier(), Mode::Verify)?;
    let pruned = store.pruned_below()?;
    ensure!(pruned == ret.pruned_below() && pruned > 0);
    // Every gap record still in the log: in every lane of its block, identical.
    let mut carried: Vec<(u64, Gap)> = Vec::new();
    for h in pruned..store.size() {
        let header = BlockHeader::from_bytes(&store.header(h)?.context("header")?)?;
        let lanes = store.lanes(h)?;
        let mut in_block: Vec<Vec<Gap>> = Vec::new();
        for (i, l) in header.lanes.iter().enumerate() {
            let key = if l.name == "factory" { &k.factory } else { &k.city };
            let recs = open_lane_bytes(&header, i, &lanes[i], key, &Limits::default())?;
            in_block.push(gaps_in(&recs)?);
        }
        ensure!(in_block.len() == 2, "two lanes");
        ensure!(in_block[0] == in_block[1], "height {h}: the lanes carry different gaps");
        match in_block[0].as_slice() {
            [] => {}
            [g] => carried.push((h, g.clone())),
            more => bail!("height {h} carries {} gap records", more.len()),
        }
    }
    // A prune after the last append leaves its gap pending (carried by the next block after a
    // restart): then it is in meta prune_note, naming that next height.
    let pending = match store.prune_note()? {
        Some(n) if n.len() > 8 && n[..8] == store.size().to_be_bytes() => {
            Some(Gap::from_cbor(&n[8..]).map_err(anyhow::Error::msg)?)
        }
        _ => None,
    };
    println!("gap records in the log: {carried:?}; pending: {pending:?}");
    let last = pending.clone().or_else(|| carried.last().map(|(_, g)| g.clone()));
    let last = last.context("no gap record in the log")?;
    ensure!(last.to == pruned, "the last gap ends at pruned_below {pruned}: {last:?}");
    ensure!(last.reason == "quota" && last.from < last.to && last.bytes > 0, "{last:?}");
    // The gaps are contiguous, each carried by a block at or after its end, and name exactly
    // the heights whose lanes are gone.
    let mut all: Vec<Gap> = carried.iter().map(|(_, g)| g.clone()).collect();
    all.extend(pending);
    for w in all.windows(2) {
        ensure!(w[0].to == w[1].from, "gaps not contiguous: {w:?}");
    }
    for (h, g) in &carried {
        ensure!(*h >= g.to, "gap {g:?} carried at height {h}, inside itself");
    }
    ensure!(store.lanes(pruned - 1)?.is_empty() && store.lanes(pruned)?.len() == 2);
    let first = all.first().context("a gap")?;
    if first.from > 0 {
        ensure!(store.lanes(first.from)?.is_empty(), "lanes from {} are gone", first.from);
    }
    drop(store);

    let (ok, out) = iovctl_verify(&d.join("store"), &d.join("signing.vkey"))?;
    println!("{out}");
    ensure!(ok, "iovctl store verify failed:\n{out}");
    ensure!(out.contains(&format!("pruned      heights 0..{pruned} ")), "{out}");
    Ok(())
}

/// A tmpfs mounted for the test's lifetime, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Result<Option<Tmpfs>> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "iov-retention-test"])
            .arg(at)
            .output()
            .context("running mount")?;
        if !out.status.success() {
            println!(
                "SKIPPED: mounting a tmpfs at {} is impossible here (needs root): {}",
                at.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return Ok(None);
        }
        Ok(Some(Tmpfs(at.to_path_buf())))
    }

    fn resize(&self, size: &str) -> Result<()> {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()?;
        ensure!(st.success(), "remount {} size={size}", self.0.display());
        Ok(())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Heights of the "block durable" lines.
fn durable_heights(lines: &[String]) -> Vec<u64> {
    lines
        .iter()
        .filter(|l| l.contains("block durable"))
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("height=")))
        .filter_map(|n| n.parse().ok())
        .collect()
}

#[test]
fn a_full_disk_stops_the_daemon_and_a_restart_after_space_frees_continues() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    let k = common::keys(d)?;
    let small = d.join("small");
    std::fs::create_dir(&small)?;
    let Some(fs) = Tmpfs::mount(&small, "4m")? else { return Ok(()) };
    let store = small.join("store");
    // About 9 MB of lane ciphertext: more than the 4 MiB tmpfs holds.
    let trace = d.join("big.log");
    random_trace(&trace, 500_000, 0xf011)?;
    let config = d.join("gateway.toml");
    std::fs::write(&config, config_text(&trace, "shutdown", &store, ""))?;

    let mut gw = common::Gateway::start(&config)?;
    let (status, _) = gw.wait_exit(Duration::from_secs(300))?;
    let acked = durable_heights(&gw.seen);
    let last_error =
        gw.seen.iter().rev().find(|l| l.contains("error")).cloned().unwrap_or_default();
    println!("exit {status} after {} durable blocks; {last_error}", acked.len());
    ensure!(
        !status.success(),
        "the daemon must exit non-zero on a full disk; log:\n{}",
        gw.seen.join("\n")
    );
    ensure!(status.code() == Some(1), "exit code 1 (fatal), got {status}");
    ensure!(!acked.is_empty(), "some blocks fit before the disk filled");
    let top = *acked.iter().max().context("acked")?;
    drop(gw);

    // `iovctl store verify` on the full disk, before any read-write open recovered the store.
    let (ok, out) = iovctl_verify(&store, &d.join("signing.vkey"))?;
    println!("iovctl store verify on the full disk: ok={ok}\n{out}");
    // The store as the full disk left it: copied off (a read-write open needs room for a new
    // log file), it opens, verifies fully and holds every acknowledged block.
    let copy = d.join("copy");
    ensure!(Command::new("cp").arg("-a").arg(&store).arg(&copy).status()?.success(), "cp");
    let st = Rocks::open(&copy, &k.signer.verifier(), Mode::Open)?;
    let sum = ledger::verify_store::verify(&st, &k.signer.verifier()).map_err(|e| {
        anyhow::anyhow!(
            "verify: {}",
            e.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
        )
    })?;
    ensure!(st.size() > top, "acknowledged block {top} lost: the store holds {}", st.size());
    for h in &acked {
        ensure!(st.lanes(*h)?.len() == 2, "lanes of acknowledged block {h}");
    }
    println!("after the disk filled: {} blocks verify ({} lane bytes)", sum.blocks, sum.lane_bytes);
    drop(st);

    // Space frees; the daemon restarts, opens the store where it stood and continues.
    fs.resize("64m")?;
    let more = d.join("more.log");
    random_trace(&more, 20_000, 0xbeef)?;
    std::fs::write(&config, config_text(&more, "shutdown", &store, ""))?;
    let mut gw = common::Gateway::start(&config)?;
    let open_line = gw.wait_for(Duration::from_secs(60), |l| l.contains("store open"))?;
    let (status, _) = gw.wait_exit(Duration::from_secs(120))?;
    ensure!(status.success(), "restart failed: {status}; log:\n{}", gw.seen.join("\n"));
    let reopened: u64 = open_line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("size="))
        .and_then(|n| n.parse().ok())
        .context("size in the store open line")?;
    let new = durable_heights(&gw.seen);
    println!("restart: {open_line}; appended heights {:?}..={:?}", new.first(), new.last());
    ensure!(reopened > top, "reopened at {reopened}, acknowledged up to {top}");
    ensure!(new.first() == Some(&reopened), "continues at the durable head {reopened}: {new:?}");
    let (ok, out) = iovctl_verify(&store, &d.join("signing.vkey"))?;
    println!("{out}");
    ensure!(ok, "iovctl store verify after the restart:\n{out}");
    Ok(())
}

#[test]
fn drop_oldest_keeps_the_daemon_running_on_a_disk_smaller_than_its_input() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    common::keys(d)?;
    let small = d.join("small");
    std::fs::create_dir(&small)?;
    let Some(_fs) = Tmpfs::mount(&small, "4m")? else { return Ok(()) };
    let store = small.join("store");
    // About 9 MB of lane ciphertext through a 4 MiB filesystem, with a 2 MiB quota.
    let trace = d.join("big.log");
    random_trace(&trace, 500_000, 0x0d1d)?;
    let config = d.join("gateway.toml");
    let retention =
        "[retention]\nquota = \"2 MiB\"\nlow_watermark = \"1 MiB\"\nwhen_full = \"drop-oldest\"\n";
    std::fs::write(&config, config_text(&trace, "shutdown", &store, retention))?;

    let mut gw = common::Gateway::start(&config)?;
    let (status, stdout) = gw.wait_exit(Duration::from_secs(300))?;
    ensure!(status.success(), "the daemon stopped: {status}; log:\n{}", gw.seen.join("\n"));
    let records = common::durable_records(&gw.seen);
    let prunes = gw.seen.iter().filter(|l| l.contains("retention: pruned lanes")).count();
    let alarms = gw.seen.iter().filter(|l| l.contains("retention alarm")).count();
    let gaps = gw.seen.iter().filter(|l| l.contains("gap record carried")).count();
    println!("{}", stdout.trim());
    println!("{prunes} prunes, {gaps} gap records carried, {alarms} alarm lines");
    // Two raw lanes: every frame is sealed twice.
    ensure!(records == 2 * 500_000, "{records} records sealed");
    ensure!(prunes > 1 && gaps >= prunes - 1, "{prunes} prunes, {gaps} gaps");
    ensure!(alarms < prunes, "the alarm is logged at a bounded rate: {alarms} lines");
    let (ok, out) = iovctl_verify(&store, &d.join("signing.vkey"))?;
    println!("{out}");
    ensure!(ok && out.contains("pruned      heights 0.."), "iovctl store verify:\n{out}");
    Ok(())
}

/// A Mosquitto broker on a free loopback port (a trimmed copy of `tests/mqtt.rs`'s harness).
struct Broker {
    child: std::process::Child,
    port: u16,
}

impl Broker {
    fn start(dir: &Path) -> Result<Broker> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nuser root\nallow_anonymous true\npersistence false\nmax_inflight_messages 20\nmax_queued_messages 0\n"
            ),
        )?;
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting mosquitto (scripts/deps.sh system installs it)")?;
        let b = Broker { child, port };
        wait_until("mosquitto to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })?;
        Ok(b)
    }

    fn publish(&self, topic: &str, payloads: &[String]) -> Result<()> {
        use std::io::Write as _;
        let mut p = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q", "1", "-t", topic, "-l"])
            .stdin(std::process::Stdio::piped())
            .spawn()?;
        {
            let mut stdin = p.stdin.take().context("stdin")?;
            for m in payloads {
                writeln!(stdin, "{m}")?;
            }
        }
        ensure!(p.wait()?.success(), "mosquitto_pub failed");
        Ok(())
    }

    /// The first message the broker delivers to `client_id`'s persistent session.
    fn first_for_session(&self, client_id: &str) -> Result<String> {
        let out = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q", "1", "-c", "-i"])
            .arg(client_id)
            .args(["-t", "v/#", "-C", "1", "-W", "20"])
            .output()?;
        ensure!(out.status.success(), "mosquitto_sub: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn stop_leaves_mqtt_unacknowledged_so_the_broker_keeps_what_was_refused() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    let k = common::keys(d)?;
    let broker = Broker::start(d)?;
    let config = d.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[gateway]
signing_key = "signing.key"
store = "store"
pipeline_capacity = 16
writer_capacity = 1
shutdown_grace = "5s"
[block]
max_records = 20
max_age = "200ms"
[recipients]
factory = "factory.pub"
[sources.broker]
kind = "mqtt"
host = "127.0.0.1"
port = {port}
client_id = "gw-retention"
reconnect_min = "50ms"
reconnect_max = "1s"
topics = [{{ filter = "v/+/t", qos = 1 }}]
[lanes.factory]
carries = "raw"
recipients = ["factory"]
[retention]
quota = "1 MiB"
low_watermark = "512 KiB"
when_full = "stop"
"#,
            port = broker.port
        ),
    )?;
    let mut gw = common::Gateway::start(&config)?;
    gw.wait_for(Duration::from_secs(20), |l| l.contains("MQTT subscribed"))?;
    // 1,000 messages of 4 KiB of hex (random bytes: about 2 KiB each after zstd), about twice
    // the quota; numbered so the stored ones can be told apart.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let sent: Vec<String> = (0..1000)
        .map(|i| {
            let mut m = format!("{i:04}:");
            for _ in 0..256 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                m.push_str(&format!("{x:016x}"));
            }
            m
        })
        .collect();
    broker.publish("v/1/t", &sent)?;
    gw.wait_for(Duration::from_secs(120), |l| l.contains("refusing new input"))?;
    gw.signal("-TERM")?;
    let (status, _) = gw.wait_exit(Duration::from_secs(60))?;
    ensure!(status.success(), "gateway exited {status}:\n{}", gw.seen.join("\n"));

    // What was stored, and what the broker still holds for the session.
    let store = Rocks::open(&d.join("store"), &k.signer.verifier(), Mode::Verify)?;
    let mut stored = Vec::new();
    for h in 0..store.size() {
        let header = BlockHeader::from_bytes(&store.header(h)?.context("header")?)?;
        for r in open_lane_bytes(&header, 0, &store.lanes(h)?[0], &k.factory, &Limits::default())? {
            if let Record::Mqtt(m) = r {
                stored.push(String::from_utf8(m.payload)?);
            }
        }
    }
    drop(store);
    println!("{} of {} messages stored before and at shutdown", stored.len(), sent.len());
    ensure!(stored.len() < sent.len(), "nothing was refused");
    ensure!(stored[..] == sent[..stored.len()], "stored messages are the first ones, in order");
    let first = broker.first_for_session("gw-retention")?;
    ensure!(
        first == sent[stored.len()],
        "the broker must redeliver the first refused message (#{}), got {:?}",
        stored.len(),
        first.get(..5)
    );
    Ok(())
}
