//! Thinning and coarsening of one signal in one lane: pure, keyed on record time.

use crate::config::SignalRule;

/// What one rule remembers between samples.
#[derive(Debug, Clone, Default)]
pub struct SignalState {
    seen: u64,
    last_t_ns: Option<u64>,
    last_value: Option<u64>,
}

/// `value` rounded to the nearest multiple of `grid`.
pub fn coarsen(value: f64, grid: f64) -> f64 {
    (value / grid).round() * grid
}

impl SignalState {
    /// The value to keep for a sample at `t_ns`, or `None` when the rule drops it. Order:
    /// coarsen to the grid, every n-th sample (counted over all samples), at least
    /// `min_interval` (record time) after the last kept sample, and only on change of the
    /// coarsened value.
    pub fn keep(&mut self, rule: &SignalRule, t_ns: u64, value: f64) -> Option<f64> {
        let v = match rule.grid {
            Some(g) => coarsen(value, g),
            None => value,
        };
        let n = self.seen;
        self.seen += 1;
        if let Some(every) = rule.every {
            if !n.is_multiple_of(every.get()) {
                return None;
            }
        }
        if let (Some(min), Some(last)) = (rule.min_interval, self.last_t_ns) {
            let min_ns = u64::try_from(min.as_nanos()).unwrap_or(u64::MAX);
            if t_ns.saturating_sub(last) < min_ns {
                return None;
            }
        }
        if rule.on_change && self.last_value == Some(v.to_bits()) {
            return None;
        }
        self.last_t_ns = Some(t_ns);
        self.last_value = Some(v.to_bits());
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU64;
    use std::time::Duration;

    fn rule() -> SignalRule {
        SignalRule {
            name: "m.s".into(),
            every: None,
            min_interval: None,
            on_change: false,
            grid: None,
        }
    }

    #[test]
    fn every_n_keeps_the_first_and_each_nth_after_it() {
        let r = SignalRule { every: NonZeroU64::new(3), ..rule() };
        let mut s = SignalState::default();
        let kept: Vec<u64> = (0..10).filter(|&i| s.keep(&r, i, i as f64).is_some()).collect();
        assert_eq!(kept, [0, 3, 6, 9]);
    }

    #[test]
    fn min_interval_is_measured_in_record_time_from_the_last_kept_sample() {
        let r = SignalRule { min_interval: Some(Duration::from_millis(1000)), ..rule() };
        let mut s = SignalState::default();
        let ts = [0u64, 400, 999, 1000, 1500, 2100, 2999, 3100];
        let kept: Vec<u64> =
            ts.iter().copied().filter(|&t| s.keep(&r, t * 1_000_000, 1.0).is_some()).collect();
        assert_eq!(kept, [0, 1000, 2100, 3100]);
    }

    #[test]
    fn on_change_compares_the_coarsened_value() {
        let r = SignalRule { on_change: true, grid: Some(0.5), ..rule() };
        let mut s = SignalState::default();
        let vals = [1.0, 1.1, 1.2, 1.3, 1.9, 2.1, 0.9];
        let kept: Vec<f64> =
            vals.iter().enumerate().filter_map(|(i, &v)| s.keep(&r, i as u64, v)).collect();
        assert_eq!(kept, [1.0, 1.5, 2.0, 1.0]);
    }

    #[test]
    fn grid_rounds_to_the_nearest_multiple() {
        assert!((coarsen(48.123_456, 0.001) - 48.123).abs() < 1e-9);
        assert!((coarsen(11.58_66, 0.001) - 11.587).abs() < 1e-9);
        assert!((coarsen(-0.26, 0.5) + 0.5).abs() < 1e-12);
    }
}
