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
//!
//! # Layout
//! - here: the trace, the binaries, CPU time (`process_metrics`), waiting, runtimes, the proxy.
//! - [`node`]: one organisation's `iov-ledger` process and the checks of what it holds.
//! - [`gw`]: the gateways' config, one in-process gateway (store and agents), agent totals.
//! - [`fleet`]: the whole load run.

#![allow(dead_code)]

pub mod fleet;
pub mod gw;
pub mod node;

// Each user (test or example) takes a subset.
#[allow(unused_imports)]
pub use fleet::{fleet, FleetParams, FleetReport};
#[allow(unused_imports)]
pub use gw::{
    error_line, gateway_config, lane_key, spawn_agents, totals, Gateway, Route, Totals, LOAD_TUNING,
};
#[allow(unused_imports)]
pub use node::{Enrollment, Ledger, TlsFiles};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use can_decoders::TimedFrame;
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
