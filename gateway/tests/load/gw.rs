//! The gateways: their shared config, one in-process gateway (its store built by the
//! gateway's own pipeline and writer, its sync agents), and totals over agents.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use can_decoders::TimedFrame;
use gateway::config::Config;
use gateway::pipeline::Pipeline;
use gateway::sync::core::FailKind;
use gateway::sync::{Agent, AgentStats};
use gateway::writer::{Durable, Writer};
use ledger::block::BlockHeader;
use ledger::note::Ed25519Signer;
use ledger::seal::SealOptions;
use ledger::store::rocks::{Mode, Rocks};
use ledger::store::Store as _;
use tokio_util::sync::CancellationToken;

use super::{fixtures, gps_trace, RAW_LANE};

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
