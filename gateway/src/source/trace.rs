//! The trace-file source: replays a candump `.log`, Vector `.asc` or `.blf` (optionally `.gz`)
//! through the same pipeline as live CAN, at the recorded pace or as fast as possible.
//!
//! It runs on a blocking thread (reading and gunzipping is CPU work) and sends [`SourceFrame`]s
//! with [`Clock::Recorded`] and the recorded timestamps into the same channel as the SocketCAN
//! sources. Channel names from the file are registered in [`Channels`] (the records carry them
//! as their interface name, and DBCs are applied per that name).
//!
//! # Backpressure
//! Unlike a bus, a file can wait: the source **waits** for room in the pipeline channel
//! (`blocking_send`), so a replay never drops a frame; `fast` runs exactly as fast as the
//! pipeline and the store take frames.
//!
//! # Bad records
//! A malformed line (or BLF object) is logged with its line or offset, counted in
//! [`SourceStats::malformed`], and skipped ([`ErrorPolicy::Skip`]), or ends the replay with an
//! error ([`ErrorPolicy::Strict`], `on_error = "strict"`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use can_decoders::trace::{self, ErrorPolicy, ReadError};
use can_decoders::ChannelId;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::channels::Channels;
use super::{Clock, SourceFrame, SourceStats};
use crate::config::{AtEnd, Pace, TraceConfig};

/// Longest single sleep while pacing, so cancellation is noticed promptly.
const PACE_SLICE: Duration = Duration::from_millis(100);

/// Why a replay stopped early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    #[error("trace source {source_name}: {error}")]
    Open { source_name: String, error: trace::OpenError },
    #[error("trace source {source_name}: {error} (on_error = \"strict\")")]
    Malformed { source_name: String, error: ReadError },
    #[error("trace source {source_name}: {error}")]
    Read { source_name: String, error: ReadError },
    #[error("trace source {source_name}: more than 65536 channels")]
    TooManyChannels { source_name: String },
}

/// What a finished replay did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceSummary {
    pub frames: u64,
    pub malformed: u64,
    /// The pipeline closed before the end (shutdown).
    pub cancelled: bool,
    pub elapsed: Duration,
}

/// One trace file as a source.
pub struct TraceSource {
    pub name: String,
    pub index: usize,
    pub config: TraceConfig,
    pub channels: Channels,
    pub tx: mpsc::Sender<SourceFrame>,
    pub stats: Arc<SourceStats>,
}

impl TraceSource {
    /// Replays the file; blocking (run it on `spawn_blocking`). At the end, with
    /// `at_end = "shutdown"`, cancels `shutdown` so the gateway stops gracefully.
    pub fn run_blocking(self, shutdown: &CancellationToken) -> Result<TraceSummary, TraceError> {
        let r = self.replay(shutdown);
        if self.config.at_end == AtEnd::Shutdown {
            tracing::info!(source = %self.name, "trace finished: shutting the gateway down");
            shutdown.cancel();
        }
        r
    }

    fn replay(&self, shutdown: &CancellationToken) -> Result<TraceSummary, TraceError> {
        let started = Instant::now();
        let name = || self.name.clone();
        let mut reader = trace::open(&self.config.file, self.config.policy)
            .map_err(|error| TraceError::Open { source_name: name(), error })?;
        // Reader channel id -> our channel id.
        let mut map: Vec<Option<ChannelId>> = Vec::new();
        let mut t0: Option<u64> = None;
        let mut summary =
            TraceSummary { frames: 0, malformed: 0, cancelled: false, elapsed: Duration::ZERO };
        loop {
            if shutdown.is_cancelled() {
                summary.cancelled = true;
                break;
            }
            let Some(item) = reader.next() else { break };
            let mut tf = match item {
                Ok(f) => f,
                Err(error @ (ReadError::Malformed { .. } | ReadError::MalformedBinary { .. })) => {
                    summary.malformed += 1;
                    self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                    if self.config.policy == ErrorPolicy::Strict {
                        return Err(TraceError::Malformed { source_name: name(), error });
                    }
                    tracing::warn!(source = %self.name, file = %self.config.file.display(), %error, "malformed trace record skipped");
                    continue;
                }
                Err(error) => return Err(TraceError::Read { source_name: name(), error }),
            };
            let local = usize::from(tf.channel.0);
            if map.len() <= local {
                map.resize(local + 1, None);
            }
            let id = match map[local] {
                Some(id) => id,
                None => {
                    let ch =
                        reader.channels().get(local).cloned().unwrap_or_else(|| format!("{local}"));
                    let id = self
                        .channels
                        .register(self.index, &ch)
                        .ok_or_else(|| TraceError::TooManyChannels { source_name: name() })?;
                    map[local] = Some(id);
                    id
                }
            };
            tf.channel = id;
            self.stats.received.fetch_add(1, Ordering::Relaxed);
            if self.config.pace == Pace::Recorded {
                let base = *t0.get_or_insert(tf.t_ns);
                let due = started + Duration::from_nanos(tf.t_ns.saturating_sub(base));
                if !pace_until(due, shutdown) {
                    summary.cancelled = true;
                    break;
                }
            }
            self.stats.set_clock(Clock::Recorded);
            if self.tx.blocking_send(SourceFrame { frame: tf, clock: Clock::Recorded }).is_err() {
                summary.cancelled = true;
                break;
            }
            self.stats.delivered.fetch_add(1, Ordering::Relaxed);
            summary.frames += 1;
        }
        summary.elapsed = started.elapsed();
        tracing::info!(
            source = %self.name,
            frames = summary.frames,
            malformed = summary.malformed,
            cancelled = summary.cancelled,
            elapsed_ms = summary.elapsed.as_millis() as u64,
            "trace replay ended"
        );
        Ok(summary)
    }
}

/// Sleeps until `due` in short slices; `false` when cancelled first.
fn pace_until(due: Instant, shutdown: &CancellationToken) -> bool {
    loop {
        if shutdown.is_cancelled() {
            return false;
        }
        let now = Instant::now();
        if now >= due {
            return true;
        }
        std::thread::sleep((due - now).min(PACE_SLICE));
    }
}
