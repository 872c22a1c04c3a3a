//! Sync agents: one tokio task per `[ledgers.NAME]`, pushing this gateway's log to that
//! ledger over HTTP (`docs/sync-protocol.md`): the newest checkpoint first (the ledger verifies
//! a consistency proof and cosigns; the receipt is stored), then the missing blocks with that
//! ledger's lanes only, in bounded batches, each with an inclusion proof in the cosigned tree.
//!
//! # Layout
//! - [`core`]: the pure decision core (what to do next, given what the ledger reported).
//! - [`pace`]: backoff with full jitter and the per-ledger upload budget (pure).
//! - [`wire`]: request bodies and response parsing.
//! - [`client`]: the HTTP shell (reqwest, rustls with ring), failures classified.
//! - [`agent`]: the task: waits on the writer's durable head, reads the store through a read
//!   handle, drives the core, writes the ledger's cursor and receipt.
//! - [`stats`]: per-ledger metrics.
//!
//! Backpressure (writer -> sync): a `watch` of the durable head. The agent never blocks the
//! writer and reads only what is durable; a slow ledger only grows `iov_ledger_sync_lag_blocks`.

pub mod agent;
pub mod client;
pub mod core;
pub mod pace;
pub mod stats;
pub mod wire;

use std::sync::{Arc, Mutex};

pub use agent::{Agent, ReadHandle};
pub use stats::AgentStats;

use crate::config::LedgerConfig;
use crate::writer::Durable;

/// Makes read handles on the gateway's store, one per agent (`Rocks::reader` in the daemon).
pub type Readers = Arc<dyn Fn() -> ReadHandle + Send + Sync>;

/// Builds one agent per configured ledger (no I/O: clients are built, nothing is sent).
pub fn agents(
    ledgers: &[LedgerConfig],
    readers: &Readers,
    durable: &tokio::sync::watch::Receiver<Durable>,
) -> Result<Vec<Agent>, client::ClientError> {
    let mut out = Vec::new();
    for cfg in ledgers {
        let mut seed = [0u8; 8];
        // Jitter only needs to differ between gateways; a failed OS draw falls back to time.
        if getrandom::fill(&mut seed).is_err() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            seed = t.to_le_bytes();
        }
        out.push(Agent {
            client: client::Client::new(cfg)?,
            cfg: cfg.clone(),
            store: Arc::new(Mutex::new(readers())),
            durable: durable.clone(),
            stats: Arc::new(AgentStats::new(&cfg.name)),
            seed: u64::from_le_bytes(seed),
        });
    }
    Ok(out)
}
