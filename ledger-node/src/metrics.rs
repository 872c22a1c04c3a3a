//! Prometheus text metrics, served at `/metrics` on a separate listener (loopback by default:
//! the endpoint has no authentication). Counters are atomics or small maps behind a mutex that
//! is never held across an await; the text is rendered per scrape.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The node's counters.
#[derive(Default, Debug)]
pub struct Metrics {
    /// (endpoint, status) -> requests.
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// refusal code -> count.
    refusals: Mutex<BTreeMap<String, u64>>,
    pub gateways_enrolled: AtomicU64,
    pub blocks_mirrored: AtomicU64,
    pub lane_bytes_mirrored: AtomicU64,
    pub checkpoints_cosigned: AtomicU64,
    /// Fork evidence records held (the alert: anything above 0 needs a human).
    pub forks: AtomicU64,
    /// Evidence records of every kind held.
    pub evidence: AtomicU64,
    pub time_backwards: AtomicU64,
    pub time_future: AtomicU64,
    /// Cross-witnessing gauges (rendered only when peers are configured).
    pub peers: crate::peers::PeerMetrics,
}

impl Metrics {
    pub fn request(&self, endpoint: &'static str, status: u16) {
        let mut m = self.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *m.entry((endpoint, status)).or_default() += 1;
    }

    pub fn refusal(&self, code: &str) {
        let mut m = self.refusals.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *m.entry(code.to_owned()).or_default() += 1;
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let g = |v: &AtomicU64| v.load(Ordering::Relaxed);
        s.push_str("# HELP iov_ledger_requests_total HTTP requests by endpoint and status.\n");
        s.push_str("# TYPE iov_ledger_requests_total counter\n");
        for ((e, st), n) in
            self.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter()
        {
            let _ =
                writeln!(s, "iov_ledger_requests_total{{endpoint=\"{e}\",status=\"{st}\"}} {n}");
        }
        s.push_str("# HELP iov_ledger_refusals_total Refused requests by reason code.\n");
        s.push_str("# TYPE iov_ledger_refusals_total counter\n");
        for (c, n) in self.refusals.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter()
        {
            let _ = writeln!(s, "iov_ledger_refusals_total{{reason=\"{c}\"}} {n}");
        }
        let one = |s: &mut String, name: &str, kind: &str, help: &str, v: u64| {
            let _ = write!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n");
        };
        one(
            &mut s,
            "iov_ledger_gateways_enrolled",
            "gauge",
            "Enrolled gateways.",
            g(&self.gateways_enrolled),
        );
        one(
            &mut s,
            "iov_ledger_blocks_mirrored_total",
            "counter",
            "Blocks added to the mirror since start.",
            g(&self.blocks_mirrored),
        );
        one(
            &mut s,
            "iov_ledger_lane_bytes_mirrored_total",
            "counter",
            "Lane ciphertext bytes added since start.",
            g(&self.lane_bytes_mirrored),
        );
        one(
            &mut s,
            "iov_ledger_checkpoints_cosigned_total",
            "counter",
            "Checkpoints cosigned since start.",
            g(&self.checkpoints_cosigned),
        );
        one(
            &mut s,
            "iov_ledger_forks",
            "gauge",
            "Fork evidence records held (alert when > 0).",
            g(&self.forks),
        );
        one(
            &mut s,
            "iov_ledger_evidence",
            "gauge",
            "Evidence records held, all kinds.",
            g(&self.evidence),
        );
        one(&mut s, "iov_ledger_blocks_time_backwards_total", "counter", "Mirrored blocks whose first record time is before the previous block's last (since start).", g(&self.time_backwards));
        one(&mut s, "iov_ledger_blocks_time_future_total", "counter", "Mirrored blocks whose last record time is beyond receipt time plus tolerance (since start).", g(&self.time_future));
        self.peers.render(&mut s);
        // CPU time, memory and descriptors, as every Prometheus client exports them (D261).
        process_metrics::render_self(&mut s);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_lists_labelled_counters() {
        let m = Metrics::default();
        m.request("add-checkpoint", 200);
        m.request("add-checkpoint", 200);
        m.refusal("bad_lane");
        m.forks.store(1, Ordering::Relaxed);
        let t = m.render();
        assert!(
            t.contains("iov_ledger_requests_total{endpoint=\"add-checkpoint\",status=\"200\"} 2\n"),
            "{t}"
        );
        assert!(t.contains("iov_ledger_refusals_total{reason=\"bad_lane\"} 1\n"));
        assert!(t.contains("\niov_ledger_forks 1\n"));
    }
}
