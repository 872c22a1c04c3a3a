//! Retry delays and the upload budget: pure, the clock and the random draw are parameters.

use std::time::Duration;

/// Exponential backoff with full jitter (delay drawn uniformly from `0..=min(max, min*2^n)`),
/// so many gateways that lost the same ledger do not come back in step.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff { min, max: max.max(min), failures: 0 }
    }

    /// The ceiling of the next delay.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max)
    }

    /// Records a failure; returns the delay before the next try, given a uniform draw
    /// `unit` in `[0, 1)`. Never below a millisecond (a retry storm is never intended).
    pub fn failed(&mut self, unit: f64) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        ceiling.mul_f64(unit.clamp(0.0, 1.0)).max(Duration::from_millis(1))
    }

    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// A per-ledger upload budget in bytes per second (GCRA: the virtual-scheduling token
/// bucket). A request is sent once what was booked before it lies at most a second ahead, so
/// a request larger than the budget is never refused or split (it is paid for afterwards) and
/// the average rate holds.
#[derive(Debug, Clone)]
pub struct Budget {
    rate: u64,
    /// When the bytes booked so far have been paid for, as time since the budget's epoch.
    paid_until: Duration,
}

impl Budget {
    pub fn new(bytes_per_s: u64) -> Budget {
        Budget { rate: bytes_per_s.max(1), paid_until: Duration::ZERO }
    }

    /// Books `bytes` at `now` (time since any fixed epoch); returns how long to wait before
    /// sending them. Up to one second of budget may be spent at once after an idle spell.
    pub fn reserve(&mut self, now: Duration, bytes: u64) -> Duration {
        let burst = Duration::from_secs(1);
        let tat = self.paid_until.max(now);
        let wait = tat.saturating_sub(now).saturating_sub(burst);
        self.paid_until = tat + Duration::from_secs_f64(bytes as f64 / self.rate as f64);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_ceiling_and_jitters_below_it() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(b.failed(0.5), Duration::from_millis(50));
        assert_eq!(b.ceiling(), Duration::from_millis(200));
        b.failed(0.5);
        b.failed(0.5);
        assert_eq!(b.ceiling(), Duration::from_millis(800));
        b.failed(0.5);
        assert_eq!(b.ceiling(), Duration::from_secs(1), "capped");
        for _ in 0..100 {
            b.failed(0.5);
        }
        assert_eq!(b.ceiling(), Duration::from_secs(1), "no overflow after many failures");
        assert_eq!(b.failed(0.0), Duration::from_millis(1), "never zero");
        b.succeeded();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
    }

    #[test]
    fn the_budget_holds_the_average_rate_with_a_one_second_burst() {
        let mut b = Budget::new(1000);
        let t = Duration::from_secs(100);
        // A second's worth goes at once, then each 500 bytes waits half a second more.
        assert_eq!(b.reserve(t, 1000), Duration::ZERO);
        assert_eq!(b.reserve(t, 500), Duration::ZERO);
        assert_eq!(b.reserve(t, 500), Duration::from_millis(500));
        assert_eq!(b.reserve(t, 500), Duration::from_millis(1000));
        // A large request waits only for what was booked before it.
        let mut b = Budget::new(1000);
        assert_eq!(b.reserve(t, 5000), Duration::ZERO);
        assert_eq!(b.reserve(t, 1), Duration::from_secs(4));
        // After an idle spell, no more than a second is banked.
        let later = t + Duration::from_secs(60);
        assert_eq!(b.reserve(later, 1000), Duration::ZERO);
        assert_eq!(b.reserve(later, 1000), Duration::ZERO);
        assert_eq!(b.reserve(later, 1000), Duration::from_secs(1));
    }

    #[test]
    fn the_budget_over_a_long_run_is_the_rate() {
        let mut b = Budget::new(64 * 1024);
        let mut now = Duration::ZERO;
        let mut sent = 0u64;
        while now < Duration::from_secs(100) {
            now += b.reserve(now, 10_000);
            sent += 10_000;
        }
        // 100 s at 64 KiB/s, plus at most the one-second burst, the request that may exceed
        // it, and the loop's last request.
        let max = 101 * 64 * 1024 + 2 * 10_000;
        assert!(sent <= max && sent >= 99 * 64 * 1024, "sent {sent}");
    }
}
