//! Per-ledger counters and gauges, updated by the agent and read by the metrics endpoint.

use std::sync::atomic::{AtomicU64, Ordering};

use super::core::FailKind;

/// One agent's live numbers. Plain atomics: the agent writes, a scrape reads.
#[derive(Debug)]
pub struct AgentStats {
    pub ledger: String,
    /// Blocks `0..acked` the ledger holds in full.
    pub acked: AtomicU64,
    /// Size of the latest checkpoint the ledger cosigned (verified receipt).
    pub witnessed: AtomicU64,
    /// Request bytes sent (bodies of add-checkpoint and uploads).
    pub bytes_sent: AtomicU64,
    /// Blocks uploaded (counted once the ledger confirmed them).
    pub blocks_sent: AtomicU64,
    /// 1 when the last link check or request reached the ledger, 0 otherwise.
    pub link_up: AtomicU64,
    /// Blocks durable here that the ledger does not hold yet.
    pub lag: AtomicU64,
    errors: [AtomicU64; FailKind::ALL.len()],
}

impl AgentStats {
    pub fn new(ledger: &str) -> AgentStats {
        AgentStats {
            ledger: ledger.to_owned(),
            acked: AtomicU64::new(0),
            witnessed: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            blocks_sent: AtomicU64::new(0),
            link_up: AtomicU64::new(0),
            lag: AtomicU64::new(0),
            errors: Default::default(),
        }
    }

    pub fn error(&self, kind: FailKind) {
        if let Some(i) = FailKind::ALL.iter().position(|k| *k == kind) {
            self.errors[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `(kind, count)` for every kind.
    pub fn errors(&self) -> Vec<(FailKind, u64)> {
        FailKind::ALL
            .iter()
            .zip(&self.errors)
            .map(|(k, c)| (*k, c.load(Ordering::Relaxed)))
            .collect()
    }
}
