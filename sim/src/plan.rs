//! The plan: a validated [`Scenario`] expanded, with its seed, into concrete vehicles and one
//! time-ordered list of actions (link changes per vehicle and ledger, process faults). Pure and
//! deterministic: the same scenario and seed give the same plan, byte for byte (a test checks
//! it); the world then carries the plan out against real processes.
//!
//! Randomness comes from [`Rng`], SplitMix64 (Steele, Lea, Flood 2014): tiny, fixed, and the
//! same on every platform, so a seed means the same plan everywhere.

use std::time::Duration;

use faultproxy::{Command, Direction};

use crate::scenario::{ChaosKind, FaultKind, LinkState, Scenario, Who};

/// SplitMix64: the generator the plan draws from.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[0, n)`; 0 when `n` is 0.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.unit() * n as f64) as usize % n
        }
    }

    pub fn duration_upto(&mut self, d: Duration) -> Duration {
        d.mul_f64(self.unit())
    }
}

/// One vehicle of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Vehicle {
    /// Unit id, unique in the scenario; the gateway's origin is `iov.sim/gw/<id>`.
    pub id: String,
    /// Index of its `[[vehicles]]` entry.
    pub entry: usize,
    /// When its gateway starts, into the drive.
    pub start: Duration,
}

/// What happens at one moment.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Faultproxy commands on the link of `vehicle` to `ledger`.
    Link {
        vehicle: usize,
        ledger: usize,
        commands: Vec<Command>,
        why: String,
    },
    StartGateway {
        vehicle: usize,
        quota: Option<u64>,
    },
    KillGateway {
        vehicle: usize,
    },
    StopGateway {
        vehicle: usize,
    },
    StartLedger {
        ledger: usize,
    },
    KillLedger {
        ledger: usize,
    },
    StopLedger {
        ledger: usize,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub at: Duration,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub vehicles: Vec<Vehicle>,
    /// Sorted by time (stable: same-time events keep the order they were planned in).
    pub events: Vec<Event>,
}

/// The commands that put a link into `state`.
fn enter(state: &LinkState) -> Vec<Command> {
    match state {
        LinkState::Down => vec![Command::Down],
        LinkState::Degraded { latency, rate, loss, resets } => {
            let mut c = Vec::new();
            if let Some(l) = latency {
                c.push(Command::Latency(Some(*l)));
            }
            if let Some(r) = rate {
                c.push(Command::Rate(Some(*r)));
            }
            if let Some(p) = loss {
                c.push(Command::Drop(*p));
            }
            if let Some(n) = resets {
                c.push(Command::ResetAfter(Direction::Up, Some(*n)));
                c.push(Command::ResetAfter(Direction::Down, Some(*n)));
            }
            c
        }
    }
}

/// Leaving a window clears every fault of the link (windows of one link should not overlap;
/// where they do, the first to end heals the link).
fn leave() -> Vec<Command> {
    vec![Command::Clear, Command::Up]
}

impl Plan {
    /// Expands `s` with its seed.
    pub fn new(s: &Scenario) -> Plan {
        let mut rng = Rng::new(s.seed);
        let mut vehicles = Vec::new();
        let last_start = s.duration.mul_f64(0.9);
        for (e, spec) in s.vehicles.iter().enumerate() {
            for k in 0..spec.count {
                let id = if spec.count == 1 {
                    spec.id.clone()
                } else {
                    format!("{}-{:03}", spec.id, k + 1)
                };
                let jitter = rng.duration_upto(spec.stagger / 2);
                let start = (spec.start + spec.stagger * k as u32 + jitter).min(last_start);
                vehicles.push(Vehicle { id, entry: e, start });
            }
        }
        let n_ledgers = s.ledgers.len();
        let mut events = Vec::new();
        for (v, car) in vehicles.iter().enumerate() {
            events.push(Event {
                at: car.start,
                action: Action::StartGateway { vehicle: v, quota: None },
            });
        }
        let matches = |who: &[String], v: &Vehicle| {
            who.iter().any(|w| *w == v.id || *w == s.vehicles[v.entry].id)
        };
        let ledger_index =
            |name: &str| s.ledgers.iter().position(|l| l.name == name).unwrap_or(usize::MAX);
        for (r, rule) in s.links.iter().enumerate() {
            let chosen: Vec<usize> = match &rule.who {
                Who::All => (0..vehicles.len()).collect(),
                Who::Ids(ids) => {
                    (0..vehicles.len()).filter(|&v| matches(ids, &vehicles[v])).collect()
                }
                Who::Share(p) => (0..vehicles.len()).filter(|_| rng.unit() < *p).collect(),
            };
            let ledgers: Vec<usize> = match &rule.ledgers {
                None => (0..n_ledgers).collect(),
                Some(names) => {
                    names.iter().map(|n| ledger_index(n)).filter(|&i| i < n_ledgers).collect()
                }
            };
            let why = match rule.state {
                LinkState::Down => format!("links[{r}] down"),
                LinkState::Degraded { .. } => format!("links[{r}] degraded"),
            };
            for v in chosen {
                let j = rng.duration_upto(rule.jitter);
                for &l in &ledgers {
                    events.push(Event {
                        at: rule.from + j,
                        action: Action::Link {
                            vehicle: v,
                            ledger: l,
                            commands: enter(&rule.state),
                            why: why.clone(),
                        },
                    });
                    events.push(Event {
                        at: rule.to + j,
                        action: Action::Link {
                            vehicle: v,
                            ledger: l,
                            commands: leave(),
                            why: format!("links[{r}] ends"),
                        },
                    });
                }
            }
        }
        for f in &s.faults {
            let back = f.at + f.down_for;
            let targets: Vec<usize> = match &f.vehicle {
                Some(id) => (0..vehicles.len())
                    .filter(|&v| matches(std::slice::from_ref(id), &vehicles[v]))
                    .collect(),
                None => vec![],
            };
            match f.kind {
                FaultKind::KillGateway | FaultKind::RestartGateway | FaultKind::FillDisk(_) => {
                    for v in targets {
                        let (stop, quota) = match f.kind {
                            FaultKind::KillGateway => (Action::KillGateway { vehicle: v }, None),
                            FaultKind::FillDisk(q) => (Action::StopGateway { vehicle: v }, Some(q)),
                            _ => (Action::StopGateway { vehicle: v }, None),
                        };
                        events.push(Event { at: f.at, action: stop });
                        let at = if quota.is_some() { f.at } else { back };
                        events
                            .push(Event { at, action: Action::StartGateway { vehicle: v, quota } });
                    }
                }
                FaultKind::KillLedger | FaultKind::RestartLedger => {
                    let l = f.ledger.as_deref().map(ledger_index).unwrap_or(usize::MAX);
                    if l < n_ledgers {
                        let stop = if f.kind == FaultKind::KillLedger {
                            Action::KillLedger { ledger: l }
                        } else {
                            Action::StopLedger { ledger: l }
                        };
                        events.push(Event { at: f.at, action: stop });
                        events.push(Event { at: back, action: Action::StartLedger { ledger: l } });
                    }
                }
            }
        }
        if let Some(c) = &s.chaos {
            for _ in 0..c.events {
                let at = s.duration.mul_f64(0.1 + 0.7 * rng.unit());
                let len = c.max_length.mul_f64(0.25 + 0.75 * rng.unit());
                let kind = c.kinds[rng.below(c.kinds.len())];
                let v = rng.below(vehicles.len());
                let l = rng.below(n_ledgers);
                let link = |commands, why: &str| Action::Link {
                    vehicle: v,
                    ledger: l,
                    commands,
                    why: why.into(),
                };
                match kind {
                    ChaosKind::Cut => {
                        events.push(Event { at, action: link(vec![Command::Cut], "chaos cut") })
                    }
                    ChaosKind::Down => {
                        events.push(Event { at, action: link(vec![Command::Down], "chaos down") });
                        events
                            .push(Event { at: at + len, action: link(leave(), "chaos down ends") });
                    }
                    ChaosKind::Degraded => {
                        let lo = 4096 + rng.below(60_000) as u64;
                        let cmds = vec![
                            Command::Latency(Some(Duration::from_millis(
                                50 + rng.below(400) as u64,
                            ))),
                            Command::Rate(Some(16 * 1024 + rng.below(240 * 1024) as u64)),
                            Command::Drop(0.3 * rng.unit()),
                            Command::ResetRandom(Some((lo, lo * 4))),
                        ];
                        events.push(Event { at, action: link(cmds, "chaos degraded") });
                        events.push(Event {
                            at: at + len,
                            action: link(leave(), "chaos degraded ends"),
                        });
                    }
                    ChaosKind::KillGateway | ChaosKind::RestartGateway => {
                        let stop = if kind == ChaosKind::KillGateway {
                            Action::KillGateway { vehicle: v }
                        } else {
                            Action::StopGateway { vehicle: v }
                        };
                        events.push(Event { at, action: stop });
                        events.push(Event {
                            at: at + len,
                            action: Action::StartGateway { vehicle: v, quota: None },
                        });
                    }
                    ChaosKind::RestartLedger | ChaosKind::KillLedger => {
                        let stop = if kind == ChaosKind::KillLedger {
                            Action::KillLedger { ledger: l }
                        } else {
                            Action::StopLedger { ledger: l }
                        };
                        events.push(Event { at, action: stop });
                        events.push(Event {
                            at: at + len,
                            action: Action::StartLedger { ledger: l },
                        });
                    }
                }
            }
        }
        events.sort_by_key(|e| e.at);
        Plan { vehicles, events }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const S: &str = r#"
[scenario]
name = "t"
seed = 11
duration = "60s"
[ledgers.factory]
lane = "raw"
[ledgers.city]
lane = "coarse"
[[vehicles]]
id = "car"
trace = "t.log"
dbc = "d.dbc"
coarse = ["gnss_speed.Speed"]
count = 20
stagger = "1s"
[[links]]
from = "10s"
to = "20s"
share = 0.5
jitter = "4s"
[[faults]]
at = "30s"
kind = "kill_gateway"
vehicle = "car-003"
down_for = "2s"
[chaos]
events = 10
"#;

    fn plan(seed: u64) -> Plan {
        let mut s = crate::scenario::Scenario::from_toml(S, "s", Path::new("/")).expect("valid");
        s.seed = seed;
        Plan::new(&s)
    }

    #[test]
    fn the_same_seed_gives_the_same_plan_and_another_seed_another() {
        assert_eq!(format!("{:?}", plan(11)), format!("{:?}", plan(11)));
        assert_ne!(format!("{:?}", plan(11)), format!("{:?}", plan(12)));
    }

    #[test]
    fn vehicles_are_expanded_with_ids_and_staggered_starts_inside_the_drive() {
        let p = plan(11);
        assert_eq!(p.vehicles.len(), 20);
        assert_eq!(p.vehicles[0].id, "car-001");
        assert_eq!(p.vehicles[19].id, "car-020");
        for (k, v) in p.vehicles.iter().enumerate() {
            let lo = Duration::from_secs(k as u64);
            assert!(v.start >= lo && v.start <= lo + Duration::from_millis(500), "{v:?}");
        }
    }

    #[test]
    fn a_dead_zone_takes_down_and_heals_both_links_of_each_chosen_vehicle() {
        let p = plan(11);
        let downs: Vec<&Event> = p
            .events
            .iter()
            .filter(|e| matches!(&e.action, Action::Link { why, .. } if why == "links[0] down"))
            .collect();
        let ups = p
            .events
            .iter()
            .filter(|e| matches!(&e.action, Action::Link { why, .. } if why == "links[0] ends"))
            .count();
        // About half of 20 vehicles, two ledgers each.
        assert!(
            downs.len() >= 8 && downs.len() <= 32 && downs.len().is_multiple_of(2),
            "{}",
            downs.len()
        );
        assert_eq!(downs.len(), ups);
        for e in downs {
            assert!(e.at >= Duration::from_secs(10) && e.at <= Duration::from_secs(14));
        }
        assert!(p.events.windows(2).all(|w| w[0].at <= w[1].at));
    }

    #[test]
    fn a_gateway_kill_is_followed_by_its_restart() {
        let p = plan(11);
        let kill = p.events.iter().position(|e| {
            e.at == Duration::from_secs(30) && e.action == Action::KillGateway { vehicle: 2 }
        });
        let start = p.events.iter().position(|e| {
            e.at == Duration::from_secs(32)
                && e.action == Action::StartGateway { vehicle: 2, quota: None }
        });
        assert!(kill.is_some() && start > kill, "{kill:?} {start:?}");
    }

    #[test]
    fn splitmix_matches_its_reference_sequence() {
        // First outputs of SplitMix64 seeded with 0 (the reference implementation's values).
        let mut r = Rng::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }
}
