//! The trace-file source: replays a candump `.log`, Vector `.asc` or `.blf` (optionally `.gz`)
//! through the same pipeline as live CAN, at the recorded pace, at a multiple of it (`"x10"`), or
//! as fast as possible.
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
//! # Pacing
//! `recorded` and `"xN"` send each frame at its recorded offset from the first (divided by N),
//! never early. Frames due within [`PACE_QUANTUM`] of the last wake-up go out together, so a
//! dense trace costs one sleep per quantum, not one per frame.
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
/// Paced replays wake at most this often: frames due closer together than this are sent
/// together, at most this late (never early). At 25,000 frames/s a wake-up per frame cost
/// more CPU than the frames themselves; 4, 10 and 20 ms measured 5.5, 3.3–4.2 and 2.8–3.0 %
/// of a core (D161, docs/BENCHMARKS.md). The records keep their recorded timestamps, so only
/// the moment of arrival shifts.
const PACE_QUANTUM: Duration = Duration::from_millis(20);
/// Records read between two looks at the shutdown token (well under a millisecond of work).
const CANCEL_CHECK_EVERY: u32 = 256;
/// At most this many frames are read ahead of sending them in a paced burst.
const BURST_MAX: usize = 1024;

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
    #[error("trace source {source_name}: time_shift {shift} ns moves the frame recorded at {t_ns} ns outside 1970..2554")]
    TimeShift { source_name: String, t_ns: u64, shift: i128 },
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
        let mut t0: Option<u64> = None;
        let mut burst: Vec<SourceFrame> = Vec::with_capacity(BURST_MAX);
        let mut woke = started;
        let mut summary =
            TraceSummary { frames: 0, malformed: 0, cancelled: false, elapsed: Duration::ZERO };
        // Each pass is shifted past the previous one: by the recorded span (first to last frame
        // of the file, before any shift) plus 1 ms.
        let mut shift = i128::from(self.config.time_shift_ns);
        for _pass in 0..self.config.loops.get() {
            let span = self.replay_pass(
                shutdown,
                shift,
                &mut t0,
                &mut burst,
                &mut woke,
                &mut summary,
                started,
            )?;
            match span {
                Some((first, last)) if !summary.cancelled => {
                    shift += i128::from(last - first) + 1_000_000;
                }
                _ => break,
            }
        }
        // Everything read goes out, also when stopping (the pipeline drains until we close).
        self.send_burst(&mut burst, &mut summary);
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

    /// One pass over the file with `shift` added to every timestamp; returns the recorded
    /// (unshifted) first and last timestamps, `None` for an empty file or a stop.
    #[allow(clippy::too_many_arguments)]
    fn replay_pass(
        &self,
        shutdown: &CancellationToken,
        shift: i128,
        t0: &mut Option<u64>,
        burst: &mut Vec<SourceFrame>,
        woke: &mut Instant,
        summary: &mut TraceSummary,
        started: Instant,
    ) -> Result<Option<(u64, u64)>, TraceError> {
        let name = || self.name.clone();
        let mut reader = trace::open(&self.config.file, self.config.policy)
            .map_err(|error| TraceError::Open { source_name: name(), error })?;
        // Reader channel id -> our channel id.
        let mut map: Vec<Option<ChannelId>> = Vec::new();
        let mut span: Option<(u64, u64)> = None;
        let mut read = 0u32;
        loop {
            // The token takes a lock: look every CANCEL_CHECK_EVERY records (and in every sleep).
            read = read.wrapping_add(1);
            if read.is_multiple_of(CANCEL_CHECK_EVERY) && shutdown.is_cancelled() {
                summary.cancelled = true;
                return Ok(None);
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
            span = Some(match span {
                None => (tf.t_ns, tf.t_ns),
                Some((a, b)) => (a.min(tf.t_ns), b.max(tf.t_ns)),
            });
            if shift != 0 {
                tf.t_ns = u64::try_from(i128::from(tf.t_ns) + shift).map_err(|_| {
                    TraceError::TimeShift { source_name: name(), t_ns: tf.t_ns, shift }
                })?;
            }
            if let Some(speed) = speed(self.config.pace) {
                let base = *t0.get_or_insert(tf.t_ns);
                let due = started + due_after(tf.t_ns.saturating_sub(base), speed);
                // Frames of a burst are due before the last wake-up: no clock read for them.
                if due > *woke && Instant::now() < due {
                    // Not due yet: hand over what is, then sleep until this one is due, but at
                    // least PACE_QUANTUM after the last wake-up, so thick traffic goes out in
                    // bursts (one wake-up per quantum on each side, not one per frame).
                    if !self.send_burst(burst, summary) {
                        return Ok(None);
                    }
                    if !pace_until(due.max(*woke + PACE_QUANTUM), shutdown) {
                        // Not sent and not counted: it had not "happened" yet.
                        summary.cancelled = true;
                        return Ok(None);
                    }
                    *woke = Instant::now();
                }
            }
            self.stats.received.fetch_add(1, Ordering::Relaxed);
            burst.push(SourceFrame { frame: tf, clock: Clock::Recorded });
            if (burst.len() >= BURST_MAX || self.config.pace == Pace::Fast)
                && !self.send_burst(burst, summary)
            {
                return Ok(None);
            }
        }
        Ok(span)
    }

    /// Sends the frames in `burst` (blocking while the pipeline is full); `false` when the
    /// pipeline has closed (shutdown), which also marks the summary cancelled.
    fn send_burst(&self, burst: &mut Vec<SourceFrame>, summary: &mut TraceSummary) -> bool {
        if burst.is_empty() {
            return true;
        }
        self.stats.set_clock(Clock::Recorded);
        self.stats.wakeups.fetch_add(1, Ordering::Relaxed);
        for f in burst.drain(..) {
            // `try_send` first: `blocking_send` parks on a runtime-less `block_on` per call,
            // which cost more than the frame when the channel has room (D256).
            let sent = match self.tx.try_send(f) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(f)) => self.tx.blocking_send(f).is_ok(),
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            };
            if !sent {
                summary.cancelled = true;
                return false;
            }
            self.stats.delivered.fetch_add(1, Ordering::Relaxed);
            summary.frames += 1;
        }
        true
    }
}

/// The replay speed relative to the recording, `None` for as fast as possible.
fn speed(pace: Pace) -> Option<f64> {
    match pace {
        Pace::Recorded => Some(1.0),
        Pace::Scaled(f) => Some(f),
        Pace::Fast => None,
    }
}

/// When a frame recorded `offset_ns` after the first is due, at `speed` times the recording.
/// Computed from the first frame (not the previous one), so rounding never accumulates.
fn due_after(offset_ns: u64, speed: f64) -> Duration {
    if speed == 1.0 {
        return Duration::from_nanos(offset_ns);
    }
    // Cannot overflow for u64 offsets and speed >= 0.001; saturate rather than panic anyway.
    Duration::try_from_secs_f64(offset_ns as f64 / 1e9 / speed).unwrap_or(Duration::MAX)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AtEnd, Pace, TraceConfig};

    fn source(
        dir: &std::path::Path,
        text: &str,
        pace: Pace,
        policy: ErrorPolicy,
    ) -> (TraceSource, mpsc::Receiver<SourceFrame>) {
        let file = dir.join("t.log");
        std::fs::write(&file, text).expect("write");
        let (tx, rx) = mpsc::channel(64);
        let s = TraceSource {
            name: "replay".into(),
            index: 1,
            config: TraceConfig {
                file,
                pace,
                policy,
                at_end: AtEnd::Continue,
                time_shift_ns: 0,
                loops: std::num::NonZeroU32::MIN,
            },
            channels: Channels::new(&["can0".into(), "replay".into()]),
            tx,
            stats: Arc::default(),
        };
        (s, rx)
    }

    const TRACE: &str = "(1.000000) can1 003#0102030405060708\n\
                         (1.100000) can1 007#AABB\n\
                         (1.150000) can1 zzz#nothex\n\
                         (1.200000) vcan2 123#\n";

    #[test]
    fn malformed_lines_are_skipped_and_counted_and_channels_registered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (s, mut rx) = source(dir.path(), TRACE, Pace::Fast, ErrorPolicy::Skip);
        let (channels, stats) = (s.channels.clone(), s.stats.clone());
        let sum = s.run_blocking(&CancellationToken::new()).expect("replay");
        assert_eq!((sum.frames, sum.malformed, sum.cancelled), (3, 1, false));
        let got: Vec<SourceFrame> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|f| f.clock == Clock::Recorded));
        assert_eq!(got[0].frame.t_ns, 1_000_000_000);
        let names: Vec<String> = got
            .iter()
            .map(|f| channels.get(f.frame.channel).map(|c| c.name.to_string()).unwrap_or_default())
            .collect();
        assert_eq!(names, ["can1", "can1", "vcan2"]);
        assert_eq!(channels.get(got[2].frame.channel).map(|c| c.source), Some(1));
        let st = stats.snapshot();
        assert_eq!((st.received, st.delivered, st.malformed), (3, 3, 1));
    }

    #[test]
    fn strict_replay_stops_at_the_first_malformed_line_and_names_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (s, mut rx) = source(dir.path(), TRACE, Pace::Fast, ErrorPolicy::Strict);
        let e = s.run_blocking(&CancellationToken::new()).expect_err("strict");
        assert!(e.to_string().contains("line 3"), "{e}");
        assert_eq!(std::iter::from_fn(|| rx.try_recv().ok()).count(), 2);
    }

    #[test]
    fn recorded_pace_keeps_the_recorded_gaps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (s, _rx) = source(dir.path(), TRACE, Pace::Recorded, ErrorPolicy::Skip);
        let sum = s.run_blocking(&CancellationToken::new()).expect("replay");
        // The last frame is 200 ms after the first: the replay cannot be faster.
        assert!(sum.elapsed >= Duration::from_millis(200), "{:?}", sum.elapsed);
        assert_eq!(sum.frames, 3);
    }

    #[test]
    fn a_pace_multiplier_divides_the_recorded_gaps() {
        let dir = tempfile::tempdir().expect("tempdir");
        // 2 s between the first and the last frame: at x10 that is 200 ms, not less.
        let text = "(1.0) can1 003#01\n(2.0) can1 003#02\n(3.0) can1 003#03\n";
        let (s, _rx) = source(dir.path(), text, Pace::Scaled(10.0), ErrorPolicy::Skip);
        let sum = s.run_blocking(&CancellationToken::new()).expect("replay");
        assert_eq!(sum.frames, 3);
        assert!(sum.elapsed >= Duration::from_millis(200), "{:?}", sum.elapsed);
        assert_eq!(due_after(2_000_000_000, 10.0), Duration::from_millis(200));
        assert_eq!(due_after(3_000_000_000, 0.5), Duration::from_secs(6));
        // The longest offset at the slowest pace: no overflow, no panic.
        assert!(due_after(u64::MAX, 0.001) > Duration::from_secs(1 << 43));
    }

    #[test]
    fn paced_bursts_never_send_a_frame_before_it_is_due() {
        let dir = tempfile::tempdir().expect("tempdir");
        // 40 frames 1 ms apart (several per pacing quantum), then one 150 ms after the first.
        let mut text: String =
            (0..40).map(|i| format!("(1.{:03}000) can1 003#{i:02X}\n", i)).collect();
        text.push_str("(1.150000) can1 003#FF\n");
        let (s, mut rx) = source(dir.path(), &text, Pace::Recorded, ErrorPolicy::Skip);
        let t0 = Instant::now();
        let arrivals = std::thread::spawn(move || {
            let mut got = Vec::new();
            while let Some(f) = rx.blocking_recv() {
                got.push((f.frame.t_ns, t0.elapsed()));
            }
            got
        });
        let sum = s.run_blocking(&CancellationToken::new()).expect("replay");
        let got = arrivals.join().expect("receiver");
        assert_eq!((sum.frames, got.len()), (41, 41));
        for (t_ns, at) in got {
            let due = Duration::from_nanos(t_ns - 1_000_000_000);
            assert!(at >= due, "frame recorded at +{due:?} arrived at {at:?}");
        }
    }

    #[test]
    fn pace_parses_recorded_fast_and_multipliers_and_names_what_it_accepts() {
        assert_eq!(Pace::parse("recorded"), Ok(Pace::Recorded));
        assert_eq!(Pace::parse("x1"), Ok(Pace::Recorded));
        assert_eq!(Pace::parse("x1.0"), Ok(Pace::Recorded));
        assert_eq!(Pace::parse("fast"), Ok(Pace::Fast));
        assert_eq!(Pace::parse("x10"), Ok(Pace::Scaled(10.0)));
        assert_eq!(Pace::parse("x0.5"), Ok(Pace::Scaled(0.5)));
        for bad in ["x0", "x-2", "xNaN", "xinf", "x", "10", "10x", "x1e9", "slow", ""] {
            let e = Pace::parse(bad).expect_err(bad);
            assert!(e.contains("\"xN\"") && e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
    }

    #[test]
    fn a_bad_pace_in_the_config_names_its_key() {
        let k = crate::pipeline::tests::keys();
        let trace = crate::pipeline::tests::fixtures().join("traces/canmod_gps_3BA199E2.log.gz");
        let text = |pace: &str| {
            format!(
                "[gateway]\nsigning_key = \"signing.key\"\nstore = \"store\"\n\
                 [recipients]\nfactory = \"factory.pub\"\n\
                 [sources.replay]\nkind = \"trace\"\nfile = \"{}\"\npace = \"{pace}\"\n\
                 [lanes.factory]\ncarries = \"raw\"\nrecipients = [\"factory\"]\n",
                trace.display()
            )
        };
        let path = k.dir.path().join("g.toml");
        let c = crate::config::Config::from_toml(&text("x200"), &path).expect("x200 validates");
        let crate::config::SourceKind::Trace(t) = &c.sources[0].kind else { panic!("trace") };
        assert_eq!(t.pace, Pace::Scaled(200.0));
        let e = crate::config::Config::from_toml(&text("x0"), &path).expect_err("x0").to_string();
        assert!(e.starts_with("sources.replay.pace: \"x0\": use "), "{e}");
    }

    #[test]
    fn a_time_shift_moves_every_timestamp_and_loops_continue_past_the_last_frame() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = "(1.0) can1 003#01\n(1.5) can1 003#02\n(3.0) can1 003#03\n";
        let (mut s, mut rx) = source(dir.path(), text, Pace::Fast, ErrorPolicy::Skip);
        s.config.time_shift_ns = -500_000_000;
        s.config.loops = std::num::NonZeroU32::new(2).expect("2");
        let sum = s.run_blocking(&CancellationToken::new()).expect("replay");
        assert_eq!(sum.frames, 6);
        let got: Vec<u64> =
            std::iter::from_fn(|| rx.try_recv().ok()).map(|f| f.frame.t_ns).collect();
        // Pass 2 starts 2 s (the span) + 1 ms after pass 1's shifted start.
        assert_eq!(
            got,
            [
                500_000_000,
                1_000_000_000,
                2_500_000_000,
                2_501_000_000,
                3_001_000_000,
                4_501_000_000
            ]
        );
    }

    #[test]
    fn a_time_shift_before_1970_is_an_error_naming_the_source() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut s, _rx) = source(dir.path(), TRACE, Pace::Fast, ErrorPolicy::Skip);
        s.config.time_shift_ns = -2_000_000_000;
        let e = s.run_blocking(&CancellationToken::new()).expect_err("before 1970");
        assert!(e.to_string().contains("replay") && e.to_string().contains("time_shift"), "{e}");
    }

    #[test]
    fn time_shift_parses_signed_durations_and_exact_nanoseconds() {
        use crate::config::parse_time_shift;
        assert_eq!(parse_time_shift("k", "+90s"), Ok(90_000_000_000));
        assert_eq!(parse_time_shift("k", "-2h"), Ok(-7_200_000_000_000));
        assert_eq!(parse_time_shift("k", "1627274455012500001ns"), Ok(1_627_274_455_012_500_001));
        assert_eq!(parse_time_shift("k", "-1627274455012500001ns"), Ok(-1_627_274_455_012_500_001));
        let e = parse_time_shift("sources.r.time_shift", "soon").expect_err("soon").to_string();
        assert!(e.starts_with("sources.r.time_shift: \"soon\""), "{e}");
    }

    #[test]
    fn at_end_shutdown_cancels_the_gateway() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut s, _rx) = source(dir.path(), TRACE, Pace::Fast, ErrorPolicy::Skip);
        s.config.at_end = AtEnd::Shutdown;
        let token = CancellationToken::new();
        s.run_blocking(&token).expect("replay");
        assert!(token.is_cancelled());
    }
}
