//! What the daemon shows the outside while it runs: readiness, the pipeline's heartbeat, and
//! the live counters the metrics endpoint and systemd's `STATUS=` line read.
//!
//! [`run::run_with`](crate::run::run_with) fills a [`Health`]: it registers each source's
//! [`SourceStats`] and the writer's `watch` of what is durable, marks the daemon ready once every
//! task is spawned and the store is open, and the pipeline task bumps the heartbeat on every loop
//! iteration and on an idle tick ([`Health::tick`]). A pipeline stuck (e.g. awaiting a writer
//! that never returns) stops bumping it, so the systemd watchdog pings stop too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use crate::source::SourceStats;
use crate::writer::Durable;

/// What kind of input a source is (for the metric it feeds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKindLabel {
    /// A CAN interface or a trace replay: frames.
    Frames,
    /// An MQTT broker: messages.
    Mqtt,
}

/// One registered source: its config name, the label it is reported under (the interface for
/// SocketCAN, the source name otherwise), and its counters.
#[derive(Debug, Clone)]
pub struct SourceEntry {
    pub name: String,
    pub label: String,
    pub kind: SourceKindLabel,
    pub stats: Arc<SourceStats>,
}

/// Shared between the task graph, the metrics server and the systemd notifier.
#[derive(Debug)]
pub struct Health {
    heartbeat: AtomicU64,
    tick: Duration,
    ready: watch::Sender<bool>,
    sources: Mutex<Vec<SourceEntry>>,
    durable: Mutex<Option<(u64, watch::Receiver<Durable>)>>,
    retention: Mutex<Option<Arc<crate::retention::Stats>>>,
    /// TEST ONLY: [`STALL_ENV`].
    stall_file: Option<std::path::PathBuf>,
}

/// TEST ONLY: an environment variable naming a file; once that file exists the pipeline task
/// deletes it and stops (it never beats or reads input again), so a test can prove that the
/// systemd watchdog kills and restarts a stalled gateway. Never set it in production.
pub const STALL_ENV: &str = "IOV_GATEWAY_TEST_STALL_FILE";

impl Health {
    /// `tick`: how often the idle pipeline bumps the heartbeat (well under the watchdog's ping
    /// interval).
    pub fn new(tick: Duration) -> Health {
        Health {
            heartbeat: AtomicU64::new(0),
            tick,
            ready: watch::channel(false).0,
            sources: Mutex::new(Vec::new()),
            durable: Mutex::new(None),
            retention: Mutex::new(None),
            stall_file: std::env::var_os(STALL_ENV).map(Into::into),
        }
    }

    /// TEST ONLY ([`STALL_ENV`]): whether the stall trigger file appeared; it is consumed.
    pub fn stall_requested(&self) -> bool {
        match &self.stall_file {
            Some(f) => std::fs::remove_file(f).is_ok(),
            None => false,
        }
    }

    pub fn tick(&self) -> Duration {
        self.tick
    }

    /// Called by the pipeline task on every iteration.
    pub fn beat(&self) {
        self.heartbeat.fetch_add(1, Ordering::Relaxed);
    }

    pub fn heartbeat(&self) -> u64 {
        self.heartbeat.load(Ordering::Relaxed)
    }

    pub(crate) fn set_ready(&self) {
        self.ready.send_replace(true);
    }

    /// Resolves once every task is up; never if the run fails before that.
    pub async fn wait_ready(&self) {
        let mut rx = self.ready.subscribe();
        // The sender lives in `self`, so `wait_for` only ends with the value turning true.
        let _ = rx.wait_for(|r| *r).await;
    }

    pub(crate) fn add_source(&self, entry: SourceEntry) {
        self.sources.lock().unwrap_or_else(PoisonError::into_inner).push(entry);
    }

    pub(crate) fn set_durable(&self, rx: watch::Receiver<Durable>) {
        let start = rx.borrow().size;
        *self.durable.lock().unwrap_or_else(PoisonError::into_inner) = Some((start, rx));
    }

    pub(crate) fn set_retention(&self, stats: Arc<crate::retention::Stats>) {
        *self.retention.lock().unwrap_or_else(PoisonError::into_inner) = Some(stats);
    }

    /// Retention's live state (store size, pruning, alarm), once the writer is open.
    pub fn retention(&self) -> Option<Arc<crate::retention::Stats>> {
        self.retention.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub fn sources(&self) -> Vec<SourceEntry> {
        self.sources.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// `(log size at start, what is durable now)`, once the writer is open.
    pub fn durable(&self) -> Option<(u64, Durable)> {
        let d = self.durable.lock().unwrap_or_else(PoisonError::into_inner);
        d.as_ref().map(|(start, rx)| (*start, rx.borrow().clone()))
    }

    /// A short human summary for systemd's `STATUS=`.
    pub fn status_line(&self) -> String {
        let frames: u64 =
            self.sources().iter().map(|s| s.stats.received.load(Ordering::Relaxed)).sum();
        match self.durable() {
            Some((start, d)) => format!(
                "{} blocks sealed, log size {}, {} records, {} inputs received",
                d.size.saturating_sub(start),
                d.size,
                d.records,
                frames
            ),
            None => "starting".into(),
        }
    }
}
