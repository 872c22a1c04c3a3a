//! Inputs of the gateway: each source is one task that reads one outside input and sends
//! [`SourceFrame`]s into the pipeline's bounded channel.
//!
//! # Backpressure policy (CAN sources)
//!
//! A CAN bus cannot be slowed down, and a reader that waits for the pipeline only moves the loss
//! into the kernel's socket queue, where it is harder to see. So a CAN source never waits for
//! the pipeline: it hands each frame over with `try_send`, and when the channel is full it
//! **drops the new frame** (the frames already queued are older and keep their order), counts it
//! in [`SourceStats::dropped_full`], and logs a warning at most once per
//! [`DROP_LOG_INTERVAL`] with the number dropped since the last warning ([`LogLimiter`]).
//! Frames the kernel itself dropped because the socket queue overflowed are counted apart
//! ([`SourceStats::kernel_drops`]), so `received + kernel_drops` is what the bus carried to us and
//! `received == delivered + dropped_full` at every quiescent point.
//!
//! # Clocks
//!
//! Every frame carries the clock that stamped it ([`Clock`]): the CAN adapter's own clock
//! (anchored to the wall clock, see [`HwAnchor`]), the kernel's receive timestamp
//! (`SO_TIMESTAMPNS`, wall clock taken when the frame entered the socket layer), or the host's
//! wall clock read by the task after the read (the fallback; it includes scheduling delay).

pub mod channels;
pub mod mqtt;
pub mod socketcan;
pub mod trace;

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

use can_decoders::TimedFrame;

/// How often at most a source logs that it is dropping frames.
pub const DROP_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// Which clock produced a frame's `t_ns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Clock {
    /// The adapter's hardware receive timestamp, shifted onto the wall clock by [`HwAnchor`].
    Hardware = 1,
    /// The kernel's software receive timestamp (`SO_TIMESTAMPNS`, `CLOCK_REALTIME`).
    Kernel = 2,
    /// The host's wall clock read after `recvmsg` returned: no kernel timestamp was delivered.
    Host = 3,
    /// The timestamp recorded in a trace file (replay), whatever clock the recorder used.
    Recorded = 4,
}

impl Clock {
    pub fn name(self) -> &'static str {
        match self {
            Clock::Hardware => "hardware",
            Clock::Kernel => "kernel",
            Clock::Host => "host",
            Clock::Recorded => "recorded",
        }
    }

    fn from_u8(v: u8) -> Option<Clock> {
        match v {
            1 => Some(Clock::Hardware),
            2 => Some(Clock::Kernel),
            3 => Some(Clock::Host),
            4 => Some(Clock::Recorded),
            _ => None,
        }
    }
}

/// One frame from a source: the frame with its time and interface, and the clock behind the time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceFrame {
    pub frame: TimedFrame,
    pub clock: Clock,
}

/// Counters of one source, updated by its task and read by anyone (metrics, tests, the capture
/// tool). Relaxed atomics: each counter is exact on its own; a snapshot taken while frames flow
/// may see one counter a frame ahead of another.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Frames read from the socket (data, remote, CAN FD and error frames).
    pub received: AtomicU64,
    /// Frames handed to the pipeline.
    pub delivered: AtomicU64,
    /// Frames dropped because the pipeline channel was full (the backpressure policy).
    pub dropped_full: AtomicU64,
    /// Frames the kernel dropped because the socket's receive queue was full (`SO_MEMINFO`
    /// `SK_MEMINFO_DROPS`, summed over every socket this source opened).
    pub kernel_drops: AtomicU64,
    /// Error frames among `received` (kept as records, `FrameKind::Error`).
    pub error_frames: AtomicU64,
    /// Reads the kernel answered with something that is not a CAN or CAN FD frame.
    pub malformed: AtomicU64,
    /// Times the interface went down or away while open.
    pub link_down: AtomicU64,
    /// Times the socket was reopened after the interface went down or away.
    pub reconnects: AtomicU64,
    /// Times the source woke up and read frames (one batch each; trace sources count bursts).
    /// `received / wakeups` is the batch size that receive coalescing achieves.
    pub wakeups: AtomicU64,
    /// The clock of the latest frame (0 before the first frame).
    last_clock: AtomicU8,
}

/// A plain copy of [`SourceStats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    pub received: u64,
    pub delivered: u64,
    pub dropped_full: u64,
    pub kernel_drops: u64,
    pub error_frames: u64,
    pub malformed: u64,
    pub link_down: u64,
    pub reconnects: u64,
    pub wakeups: u64,
    pub last_clock: Option<Clock>,
}

impl SourceStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            received: r(&self.received),
            delivered: r(&self.delivered),
            dropped_full: r(&self.dropped_full),
            kernel_drops: r(&self.kernel_drops),
            error_frames: r(&self.error_frames),
            malformed: r(&self.malformed),
            link_down: r(&self.link_down),
            reconnects: r(&self.reconnects),
            wakeups: r(&self.wakeups),
            last_clock: Clock::from_u8(self.last_clock.load(Ordering::Relaxed)),
        }
    }

    pub(crate) fn set_clock(&self, clock: Clock) {
        self.last_clock.store(clock as u8, Ordering::Relaxed);
    }
}

/// Rate limit for a repeated warning: at most one log line per interval, reporting how many
/// events it stands for. Pure: the caller supplies `now`.
#[derive(Debug)]
pub struct LogLimiter<I> {
    interval: Duration,
    last: Option<I>,
    pending: u64,
}

impl<I: Copy + std::ops::Sub<I, Output = Duration>> LogLimiter<I> {
    pub fn new(interval: Duration) -> Self {
        LogLimiter { interval, last: None, pending: 0 }
    }

    /// Records one event at `now`; returns `Some(n)` when a line is due, `n` being the events it
    /// stands for (this one included).
    pub fn event(&mut self, now: I) -> Option<u64> {
        self.pending += 1;
        let due = match self.last {
            None => true,
            Some(last) => now - last >= self.interval,
        };
        if due {
            self.last = Some(now);
            Some(std::mem::take(&mut self.pending))
        } else {
            None
        }
    }
}

/// Capped exponential backoff for reopening an interface: `initial`, doubled on every failure,
/// never above `max`; back to `initial` after [`Backoff::reset`]. No jitter: one process retries
/// one local interface, there is no herd to spread.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.min(max);
        Backoff { initial, max, next: initial }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        d
    }

    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// Maps an adapter's hardware timestamps onto the wall clock: the first frame fixes the offset
/// between the hardware clock and the kernel's wall-clock timestamp of the same frame; later
/// frames keep the hardware clock's spacing (`hw + offset`). When the mapped time strays from
/// the kernel's by more than `max_skew` (the adapter clock drifted or restarted, or the wall clock
/// was stepped), it re-anchors on that frame. Pure: the caller supplies both timestamps.
#[derive(Debug, Clone)]
pub struct HwAnchor {
    offset_ns: Option<i128>,
    max_skew_ns: i128,
}

impl HwAnchor {
    pub fn new(max_skew: Duration) -> Self {
        HwAnchor { offset_ns: None, max_skew_ns: max_skew.as_nanos() as i128 }
    }

    /// Wall-clock nanoseconds for a frame stamped `hw_ns` by the adapter and `wall_ns` by the
    /// kernel.
    pub fn map(&mut self, hw_ns: u64, wall_ns: u64) -> u64 {
        let (hw, wall) = (i128::from(hw_ns), i128::from(wall_ns));
        let offset = match self.offset_ns {
            Some(off) if (hw + off - wall).abs() <= self.max_skew_ns => off,
            _ => {
                let off = wall - hw;
                self.offset_ns = Some(off);
                off
            }
        };
        u64::try_from(hw + offset).unwrap_or(wall_ns)
    }

    /// Forget the offset (a new socket may see a restarted adapter clock).
    pub fn reset(&mut self) {
        self.offset_ns = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_limiter_logs_the_first_event_then_once_per_interval_with_the_count() {
        let mut l = LogLimiter::new(Duration::from_secs(5));
        let t0 = Duration::from_secs(100);
        assert_eq!(l.event(t0), Some(1));
        assert_eq!(l.event(t0 + Duration::from_secs(1)), None);
        assert_eq!(l.event(t0 + Duration::from_secs(4)), None);
        assert_eq!(l.event(t0 + Duration::from_secs(5)), Some(3));
        assert_eq!(l.event(t0 + Duration::from_secs(6)), None);
        assert_eq!(l.event(t0 + Duration::from_secs(60)), Some(2));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let got: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 500, 500]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn hw_anchor_keeps_hardware_spacing_and_reanchors_on_skew() {
        let mut a = HwAnchor::new(Duration::from_millis(10));
        // Adapter clock counts from its power-on; kernel stamps lag by a few microseconds.
        assert_eq!(a.map(5_000, 1_700_000_000_000_000_000), 1_700_000_000_000_000_000);
        // 1 ms later on the adapter; the kernel saw it 30 us late: hardware spacing wins.
        assert_eq!(a.map(1_005_000, 1_700_000_000_001_030_000), 1_700_000_000_001_000_000);
        // The adapter restarted (its clock went back): re-anchor on the kernel time.
        assert_eq!(a.map(7_000, 1_700_000_001_000_000_000), 1_700_000_001_000_000_000);
        assert_eq!(a.map(8_000, 1_700_000_001_000_009_000), 1_700_000_001_000_001_000);
        a.reset();
        assert_eq!(a.map(1, 42), 42);
    }
}
