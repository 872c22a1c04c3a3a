//! A byte-rate limiter (GCRA, the virtual-scheduling form of a token bucket), pure: the caller
//! passes the clock. One per direction, shared by every connection, so a cap models a link.

use std::time::Duration;

use tokio::time::Instant;

/// How much may go out at once after an idle spell, as time at the current rate.
pub const BURST: Duration = Duration::from_millis(50);

#[derive(Debug)]
pub struct Bucket {
    /// Theoretical arrival time: when the link is free again at the current rate.
    tat: Option<Instant>,
}

impl Bucket {
    pub const fn new() -> Bucket {
        Bucket { tat: None }
    }

    /// Books `bytes` at `rate` bytes/s; returns when they may be sent (`now` or later).
    pub fn reserve(&mut self, now: Instant, bytes: u64, rate: u64) -> Instant {
        let cost = Duration::from_secs_f64(bytes as f64 / rate.max(1) as f64);
        let start = self.tat.map_or(now, |t| t.max(now));
        let tat = start + cost;
        self.tat = Some(tat);
        // Allowed once the booking lies no more than BURST ahead of now.
        let at = tat.checked_sub(BURST).unwrap_or(now);
        at.max(now)
    }

    /// The largest piece worth booking at once at `rate` (about a tenth of the burst).
    pub fn quantum(rate: u64) -> usize {
        usize::try_from((rate / 200).clamp(512, 16 * 1024)).unwrap_or(16 * 1024)
    }
}

impl Default for Bucket {
    fn default() -> Self {
        Bucket::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_stream_is_spaced_at_the_rate_after_one_burst() {
        let t0 = Instant::now();
        let mut b = Bucket::new();
        // 1,000 bytes/s, 100-byte pieces: each books 100 ms; the first 50 ms are free.
        let mut last = t0;
        for _ in 0..10 {
            last = b.reserve(t0, 100, 1000);
        }
        // 10 pieces = 1 s of link time, minus the burst.
        assert_eq!(last, t0 + Duration::from_millis(950));
    }

    #[test]
    fn an_idle_link_does_not_bank_more_than_the_burst() {
        let t0 = Instant::now();
        let mut b = Bucket::new();
        b.reserve(t0, 1000, 1000);
        let later = t0 + Duration::from_secs(60);
        assert_eq!(b.reserve(later, 10, 1000), later);
        assert_eq!(b.reserve(later, 100, 1000), later + Duration::from_millis(60));
    }
}
