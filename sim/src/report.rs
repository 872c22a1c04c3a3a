//! The report: one [`Report`] value built from the world and the store checks, written as
//! JSON (for scripts), as a readable summary (for people) and as a chart ([`crate::chart`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::check::VehicleCheck;
use crate::world::World;

/// Percentiles of a sample (nearest rank); all zero when empty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub n: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(values: &[f64]) -> Percentiles {
        if values.is_empty() {
            return Percentiles::default();
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Percentiles {
            n: v.len(),
            p50: rank(0.5),
            p90: rank(0.9),
            p99: rank(0.99),
            max: v[v.len() - 1],
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LedgerReport {
    pub name: String,
    pub lane: crate::scenario::LaneKind,
    pub url: String,
    pub blocks: u64,
    pub frames_provable: u64,
    pub lane_records: u64,
    pub lane_bytes: u64,
    /// Bytes the vehicles' links carried towards it (HTTP included), and per provable frame.
    pub bytes_sent: u64,
    pub bytes_per_frame: f64,
    /// Request bodies the gateways' sync agents sent (their metric).
    pub body_bytes_sent: u64,
    /// Seconds from a block being durable at its gateway to this ledger acknowledging it.
    pub sync_lag_s: Percentiles,
    pub sync_errors: u64,
    pub restarts: u32,
    pub cpu_s: f64,
    pub peak_rss_kib: u64,
    pub forks: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct VehicleReport {
    pub id: String,
    pub origin: String,
    pub trace: String,
    pub pace: String,
    pub start_s: f64,
    /// Frames of its recording the drive replayed (the bus).
    pub frames_in: u64,
    pub frames_durable: u64,
    /// Frames not stored, by reason: `gateway_down` (the bus went on while the gateway was
    /// stopped), the gateway's own reasons (`quota`, `pipeline_full`, `kernel`), and
    /// `lost_in_crash` (received but not yet durable when the gateway was killed).
    pub dropped: BTreeMap<String, u64>,
    pub blocks: u64,
    /// Per ledger, in ledger order.
    pub provable: Vec<u64>,
    pub sync_lag_s: Vec<Percentiles>,
    pub restarts: u32,
    pub cpu_s: f64,
    pub peak_rss_kib: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProcessReport {
    pub name: String,
    pub cpu_s: f64,
    pub peak_rss_kib: u64,
}

/// One fleet tool step (the demo's history queries and audit).
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub name: String,
    pub command: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub seed: u64,
    pub ok: bool,
    pub failures: Vec<String>,
    pub notes: Vec<String>,
    pub drive_s: f64,
    pub heal_s: Option<f64>,
    pub frames_in: u64,
    pub frames_durable: u64,
    pub dropped: BTreeMap<String, u64>,
    pub ledgers: Vec<LedgerReport>,
    pub vehicles: Vec<VehicleReport>,
    pub processes: Vec<ProcessReport>,
    pub steps: Vec<StepReport>,
    pub out_dir: String,
    pub files: BTreeMap<String, String>,
}

impl Report {
    pub fn build(w: &World, checks: &[VehicleCheck]) -> Report {
        let mut vehicles = Vec::new();
        let mut dropped_all: BTreeMap<String, u64> = BTreeMap::new();
        for (c, vc) in w.cars.iter().zip(checks) {
            let mut counters = c.done.clone();
            counters.received += c.last.received;
            for (k, v) in &c.last.dropped {
                *counters.dropped.entry(k.clone()).or_default() += v;
            }
            let mut dropped: BTreeMap<String, u64> = BTreeMap::new();
            if c.skipped_down > 0 {
                dropped.insert("gateway_down".into(), c.skipped_down);
            }
            for (k, v) in &counters.dropped {
                if *v > 0.0 {
                    dropped.insert(k.clone(), *v as u64);
                }
            }
            let accounted: u64 = vc.frames_durable + dropped.values().sum::<u64>();
            if c.info.frames > accounted {
                // A gateway that failed on its own lost what it had not made durable.
                let why = if c.failed.is_some() { "gateway_failed" } else { "lost_in_crash" };
                dropped.insert(why.into(), c.info.frames - accounted);
            }
            for (k, v) in &dropped {
                *dropped_all.entry(k.clone()).or_default() += v;
            }
            vehicles.push(VehicleReport {
                id: c.id.clone(),
                origin: c.origin.clone(),
                trace: c
                    .spec
                    .trace
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                pace: match c.speed {
                    None => "fast".into(),
                    Some(s) => format!("x{s:.1}"),
                },
                start_s: c.start.as_secs_f64(),
                frames_in: c.info.frames,
                frames_durable: vc.frames_durable,
                dropped,
                blocks: vc.head,
                provable: vc.ledgers.iter().map(|l| l.frames_provable).collect(),
                sync_lag_s: c
                    .lag
                    .iter()
                    .map(|l| Percentiles::of(&l.iter().map(|x| x.1).collect::<Vec<_>>()))
                    .collect(),
                restarts: c.restarts,
                cpu_s: c.usage.cpu_s(),
                peak_rss_kib: c.usage.peak_rss_kib,
            });
        }
        let mut ledgers = Vec::new();
        for (l, o) in w.orgs.iter().enumerate() {
            let lags: Vec<f64> = w.cars.iter().flat_map(|c| c.lag[l].iter().map(|x| x.1)).collect();
            let bytes_sent: u64 = w.cars.iter().map(|c| c.proxies[l].0.stats().bytes_up).sum();
            let frames_provable: u64 = checks.iter().map(|v| v.ledgers[l].frames_provable).sum();
            let body: f64 = w
                .cars
                .iter()
                .map(|c| {
                    c.done.bytes_sent.get(l).copied().unwrap_or(0.0)
                        + c.last.bytes_sent.get(l).copied().unwrap_or(0.0)
                })
                .sum();
            let errors: f64 = w
                .cars
                .iter()
                .map(|c| {
                    c.done.sync_errors.get(l).copied().unwrap_or(0.0)
                        + c.last.sync_errors.get(l).copied().unwrap_or(0.0)
                })
                .sum();
            ledgers.push(LedgerReport {
                name: o.spec.name.clone(),
                lane: o.spec.lane,
                url: o.url(),
                blocks: checks.iter().map(|v| v.ledgers[l].blocks).sum(),
                frames_provable,
                lane_records: checks.iter().map(|v| v.ledgers[l].lane_records).sum(),
                lane_bytes: checks.iter().map(|v| v.ledgers[l].lane_bytes).sum(),
                bytes_sent,
                bytes_per_frame: if frames_provable > 0 {
                    bytes_sent as f64 / frames_provable as f64
                } else {
                    0.0
                },
                body_bytes_sent: body as u64,
                sync_lag_s: Percentiles::of(&lags),
                sync_errors: errors as u64,
                restarts: o.restarts,
                cpu_s: o.usage.cpu_s(),
                peak_rss_kib: o.usage.peak_rss_kib,
                forks: crate::proc::metric_sum(&o.last_metrics, "iov_ledger_forks", &[]) as u64,
            });
        }
        let mut processes = vec![ProcessReport {
            name: "iov-sim (with the fault proxies)".into(),
            cpu_s: w.sim_usage.cpu_s(),
            peak_rss_kib: w.sim_usage.peak_rss_kib,
        }];
        for o in &w.orgs {
            processes.push(ProcessReport {
                name: format!("iov-ledger {}", o.spec.name),
                cpu_s: o.usage.cpu_s(),
                peak_rss_kib: o.usage.peak_rss_kib,
            });
        }
        for c in &w.cars {
            processes.push(ProcessReport {
                name: format!("iov-gateway {}", c.id),
                cpu_s: c.usage.cpu_s(),
                peak_rss_kib: c.usage.peak_rss_kib,
            });
        }
        Report {
            scenario: w.scenario.name.clone(),
            seed: w.scenario.seed,
            ok: w.failures.is_empty(),
            failures: w.failures.clone(),
            notes: w.notes.clone(),
            drive_s: w.drive_time.as_secs_f64(),
            heal_s: w.heal_time.map(|d| d.as_secs_f64()),
            frames_in: vehicles.iter().map(|v| v.frames_in).sum(),
            frames_durable: vehicles.iter().map(|v| v.frames_durable).sum(),
            dropped: dropped_all,
            ledgers,
            vehicles,
            processes,
            steps: Vec::new(),
            out_dir: w.out.display().to_string(),
            files: BTreeMap::new(),
        }
    }

    /// Adds fleet tool steps; a failed step fails the run.
    pub fn add_steps(&mut self, steps: Vec<StepReport>) {
        for s in &steps {
            if !s.ok {
                self.failures.push(format!("{} failed: {}", s.name, s.detail));
            }
        }
        self.ok = self.failures.is_empty();
        self.steps.extend(steps);
    }

    /// The readable summary.
    pub fn text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "scenario {} (seed {}): {} vehicles, drive {:.1} s, heal {}",
            self.scenario,
            self.seed,
            self.vehicles.len(),
            self.drive_s,
            self.heal_s.map(|h| format!("{h:.1} s")).unwrap_or_else(|| "did not finish".into())
        );
        let dropped: u64 = self.dropped.values().sum();
        let _ = writeln!(o, "\nframes: {} replayed from the recordings, {} stored durably by the gateways, {} not stored", self.frames_in, self.frames_durable, dropped);
        for (k, v) in &self.dropped {
            let why = match k.as_str() {
                "gateway_down" => "the gateway was stopped while the vehicle drove on",
                "lost_in_crash" => "received but not yet durable when the gateway was killed (expected after kill -9)",
                "gateway_failed" => "the gateway exited on its own (see the failures)",
                "quota" => "refused while the gateway's disk quota was full",
                "pipeline_full" => "the gateway's pipeline was full",
                "kernel" => "the kernel's socket queue overflowed",
                _ => "",
            };
            let _ = writeln!(o, "  {v:>9} {k}: {why}");
        }
        let _ = writeln!(
            o,
            "\nledgers (after the final heal; sync lag = from durable at the gateway to acknowledged by the ledger, \
             measured by sampling, so 0 means less than one sample interval):"
        );
        for l in &self.ledgers {
            let _ = writeln!(
                o,
                "  {:<8} lane {:<6} {:>7} blocks, {:>9} frames provable, {:>8} lane records; {:.2} bytes sent per frame ({} B); sync lag p50 {:.2} s, p90 {:.2} s, p99 {:.2} s, max {:.2} s; {} forks",
                l.name, format!("{:?}", l.lane).to_lowercase(), l.blocks, l.frames_provable, l.lane_records, l.bytes_per_frame, l.bytes_sent, l.sync_lag_s.p50, l.sync_lag_s.p90, l.sync_lag_s.p99, l.sync_lag_s.max, l.forks
            );
        }
        let _ = writeln!(o, "\nvehicles:");
        let shown = self.vehicles.len().min(12);
        for v in &self.vehicles[..shown] {
            let provable: Vec<String> = self
                .ledgers
                .iter()
                .zip(&v.provable)
                .map(|(l, p)| format!("{} {p}", l.name))
                .collect();
            let drop: u64 = v.dropped.values().sum();
            let _ = writeln!(
                o,
                "  {:<12} {:<32} {:>8} frames in, {:>8} durable, {:>6} not stored; provable: {}; restarts {}; cpu {:.1} s, peak {} MiB",
                v.id, format!("{} {}", v.trace, v.pace), v.frames_in, v.frames_durable, drop, provable.join(", "), v.restarts, v.cpu_s, v.peak_rss_kib / 1024
            );
        }
        if self.vehicles.len() > shown {
            let _ =
                writeln!(o, "  ... and {} more (see the JSON report)", self.vehicles.len() - shown);
        }
        let _ = writeln!(o, "\nprocesses:");
        for p in self.processes.iter().take(3 + self.ledgers.len()) {
            let _ = writeln!(
                o,
                "  {:<40} cpu {:>6.1} s, peak memory {:>5} MiB",
                p.name,
                p.cpu_s,
                p.peak_rss_kib / 1024
            );
        }
        let gw: Vec<&ProcessReport> =
            self.processes.iter().filter(|p| p.name.starts_with("iov-gateway")).collect();
        if !gw.is_empty() {
            let cpu: f64 = gw.iter().map(|p| p.cpu_s).sum();
            let peak = gw.iter().map(|p| p.peak_rss_kib).max().unwrap_or(0);
            let _ = writeln!(
                o,
                "  {} gateways together: cpu {:.1} s; the largest peak memory {} MiB",
                gw.len(),
                cpu,
                peak / 1024
            );
        }
        if !self.steps.is_empty() {
            let _ = writeln!(o, "\nfleet tools:");
            for s in &self.steps {
                let _ = writeln!(
                    o,
                    "  [{}] {}: {}",
                    if s.ok { "ok" } else { "FAILED" },
                    s.name,
                    s.detail
                );
            }
        }
        for n in &self.notes {
            let _ = writeln!(o, "note: {n}");
        }
        if self.ok {
            let _ = writeln!(o, "\nOK: every durable frame is at every ledger, no fork, every store and receipt verifies.");
        } else {
            let _ = writeln!(o, "\nFAILED ({} problems):", self.failures.len());
            for f in self.failures.iter().take(20) {
                let _ = writeln!(o, "  {f}");
            }
        }
        if !self.files.is_empty() {
            let _ = writeln!(o, "\nwritten:");
            for (k, v) in &self.files {
                let _ = writeln!(o, "  {k:<8} {v}");
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&v);
        assert_eq!((p.n, p.p50, p.p90, p.p99, p.max), (100, 50.0, 90.0, 99.0, 100.0));
        let p = Percentiles::of(&[3.0, 1.0, 2.0]);
        assert_eq!((p.p50, p.p90, p.max), (2.0, 3.0, 3.0));
        assert_eq!(Percentiles::of(&[]), Percentiles::default());
    }
}
