//! Scenario files: TOML parsed into raw structs that refuse unknown keys, then validated into
//! typed values ([`Scenario`]). Every error names the key path (`vehicles[2].pace`) and what is
//! wrong with it. Pure apart from [`Scenario::load`] (reads the file, checks that traces exist).
//!
//! ```toml
//! [scenario]
//! name = "demo"
//! seed = 7
//! duration = "20s"        # the drive: traces are fitted into it, windows and faults fall in it
//! heal_timeout = "90s"    # after the drive every link is healed; the ledgers must catch up by then
//!
//! [ledgers.factory]
//! lane = "raw"            # "raw": every frame; "coarse": thinned, coarsened GPS signals
//!
//! [[vehicles]]
//! id = "van"              # unit id; with count = N: van-001 .. van-N
//! trace = "../../fixtures/traces/canmod_gps_3BA199E2.log.gz"   # relative to this file
//! dbc = "../../fixtures/dbc/css-electronics/canmod-gps.dbc"
//! pace = "fit"            # "fit" (the recording spans the drive), "fast", "recorded", "xN"
//!
//! [[links]]               # a connectivity window for some vehicles
//! from = "6s"
//! to = "12s"
//! state = "down"          # or "degraded" with latency / rate / loss / resets
//!
//! [[faults]]
//! at = "8s"
//! kind = "kill_gateway"   # restart_gateway, restart_ledger, kill_ledger, fill_disk
//! vehicle = "van-001"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// A scenario file error: the key it is about, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    #[error("{path}: {message}")]
    Syntax { path: String, message: String },
    #[error("{key}: {problem}")]
    Invalid { key: String, problem: String },
    #[error("reading {path}: {reason}")]
    Read { path: String, reason: String },
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ScenarioError {
    ScenarioError::Invalid { key: key.into(), problem: problem.into() }
}

// ---------------------------------------------------------------------------------------------
// Raw: exactly the file's shape.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    scenario: RawHead,
    ledgers: BTreeMap<String, RawLedger>,
    vehicles: Vec<RawVehicle>,
    #[serde(default)]
    links: Vec<RawLink>,
    #[serde(default)]
    faults: Vec<RawFault>,
    chaos: Option<RawChaos>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHead {
    name: String,
    #[serde(default)]
    seed: u64,
    duration: String,
    #[serde(default = "default_heal_timeout")]
    heal_timeout: String,
    #[serde(default = "default_block_age")]
    block_age: String,
    #[serde(default = "default_sample")]
    sample: String,
}

fn default_heal_timeout() -> String {
    "120s".into()
}
fn default_block_age() -> String {
    "1s".into()
}
fn default_sample() -> String {
    "250ms".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLedger {
    lane: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVehicle {
    id: String,
    trace: PathBuf,
    dbc: PathBuf,
    #[serde(default)]
    j1939: bool,
    #[serde(default = "default_pace")]
    pace: String,
    #[serde(default = "one")]
    count: usize,
    #[serde(default)]
    start: Option<String>,
    #[serde(default)]
    stagger: Option<String>,
    #[serde(default)]
    max_frames: Option<u64>,
    #[serde(default)]
    quota: Option<String>,
    #[serde(default)]
    bandwidth: Option<String>,
    #[serde(default)]
    coarse: Vec<String>,
}

fn default_pace() -> String {
    "fit".into()
}
fn one() -> usize {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    from: String,
    to: String,
    #[serde(default = "default_state")]
    state: String,
    #[serde(default)]
    vehicles: Option<Vec<String>>,
    #[serde(default)]
    share: Option<f64>,
    #[serde(default)]
    jitter: Option<String>,
    #[serde(default)]
    ledgers: Option<Vec<String>>,
    latency: Option<String>,
    rate: Option<String>,
    loss: Option<f64>,
    resets: Option<u64>,
}

fn default_state() -> String {
    "down".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    at: String,
    kind: String,
    vehicle: Option<String>,
    ledger: Option<String>,
    down_for: Option<String>,
    quota: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChaos {
    events: usize,
    #[serde(default = "default_chaos_kinds")]
    kinds: Vec<String>,
    #[serde(default = "default_chaos_len")]
    max_length: String,
}

fn default_chaos_kinds() -> Vec<String> {
    ["cut", "down", "degraded", "kill_gateway", "restart_gateway", "restart_ledger"]
        .map(String::from)
        .to_vec()
}
fn default_chaos_len() -> String {
    "4s".into()
}

// ---------------------------------------------------------------------------------------------
// Typed.

/// A validated scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub seed: u64,
    /// The drive: vehicles replay within it; windows and faults are placed in it.
    pub duration: Duration,
    /// How long, after the drive and with every link healed, the ledgers may take to catch up.
    pub heal_timeout: Duration,
    /// Each gateway's `block.max_age`: the granularity of sync (and of the lag measured).
    pub block_age: Duration,
    /// How often gateway metrics and `/proc` are sampled.
    pub sample: Duration,
    pub ledgers: Vec<LedgerSpec>,
    pub vehicles: Vec<VehicleSpec>,
    pub links: Vec<LinkRule>,
    pub faults: Vec<FaultSpec>,
    pub chaos: Option<Chaos>,
}

/// Which lane a ledger receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LaneKind {
    /// Every CAN frame.
    Raw,
    /// GPS speed and position once a second, the position on a 0.001 degree grid (the city).
    Coarse,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerSpec {
    /// Also the lane's name in every gateway.
    pub name: String,
    pub lane: LaneKind,
}

/// How a trace is replayed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Scaled so the recording spans the vehicle's part of the drive.
    Fit,
    Fast,
    /// The recorded speed times N (1.0 = recorded).
    Scaled(f64),
}

/// One `[[vehicles]]` entry (expanded into `count` vehicles by the plan).
#[derive(Debug, Clone, PartialEq)]
pub struct VehicleSpec {
    pub id: String,
    pub trace: PathBuf,
    pub dbc: PathBuf,
    pub j1939: bool,
    pub pace: Pace,
    pub count: usize,
    /// When the first of them starts, into the drive.
    pub start: Duration,
    /// Vehicle k of the entry starts k * stagger later (the seed jitters it by up to half).
    pub stagger: Duration,
    /// Only the first N frames of the trace.
    pub max_frames: Option<u64>,
    /// The gateway's retention quota in bytes (a small disk).
    pub quota: Option<u64>,
    /// The gateway's upload budget per ledger, bytes per second.
    pub bandwidth: Option<u64>,
    /// `Message.Signal` names of the coarse lane: once a second each, a name containing
    /// `Latitude` or `Longitude` on a 0.001 degree grid (about 100 m).
    pub coarse: Vec<String>,
}

/// Which vehicles a link rule applies to.
#[derive(Debug, Clone, PartialEq)]
pub enum Who {
    All,
    /// Vehicle ids (after expansion) or entry ids (every vehicle of the entry).
    Ids(Vec<String>),
    /// This fraction of all vehicles, chosen by the seed.
    Share(f64),
}

/// The link's condition inside a window.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkState {
    /// No connectivity: live connections cut, new ones refused.
    Down,
    /// Up, but slow or lossy.
    Degraded {
        latency: Option<Duration>,
        rate: Option<u64>,
        /// Probability that a new connection is dropped on arrival.
        loss: Option<f64>,
        /// Reset each connection after this many bytes each way.
        resets: Option<u64>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct LinkRule {
    pub from: Duration,
    pub to: Duration,
    pub state: LinkState,
    pub who: Who,
    /// Each vehicle enters and leaves up to this much later (seeded): a dead zone is crossed
    /// by vehicles one after the other, not all at once.
    pub jitter: Duration,
    /// `None`: the links to every ledger.
    pub ledgers: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// SIGKILL the vehicle's gateway, restart it after `down_for`.
    KillGateway,
    /// SIGTERM (graceful), restart after `down_for`.
    RestartGateway,
    /// SIGKILL the ledger, restart it on the same address after `down_for`.
    KillLedger,
    /// SIGTERM the ledger, restart after `down_for`.
    RestartLedger,
    /// Restart the vehicle's gateway with this retention quota (bytes): its disk fills.
    FillDisk(u64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct FaultSpec {
    pub at: Duration,
    pub kind: FaultKind,
    pub vehicle: Option<String>,
    pub ledger: Option<String>,
    pub down_for: Duration,
}

/// Random failures, placed by the seed.
#[derive(Debug, Clone, PartialEq)]
pub struct Chaos {
    pub events: usize,
    pub kinds: Vec<ChaosKind>,
    pub max_length: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChaosKind {
    Cut,
    Down,
    Degraded,
    KillGateway,
    RestartGateway,
    RestartLedger,
    KillLedger,
}

/// Size overrides for CI (`--vehicles`, `--duration`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Overrides {
    /// Keep only the first N vehicles (after expansion), counts cut to fit.
    pub vehicles: Option<usize>,
    /// A new drive length: every time in the scenario is scaled by new / old.
    pub duration: Option<Duration>,
}

/// A duration in the project's one grammar (`ledger::units`, D255: the gateway's and the ledger
/// node's configs take the same), errors naming `key`.
pub fn parse_duration(key: &str, text: &str) -> Result<Duration, ScenarioError> {
    ledger::units::parse_duration(text).map_err(|m| invalid(key, m))
}

/// A size in the project's one grammar (`ledger::units`, D255), errors naming `key`.
pub fn parse_size(key: &str, text: &str) -> Result<u64, ScenarioError> {
    let bytes = ledger::units::parse_size(text).map_err(|m| invalid(key, m))?;
    u64::try_from(bytes).map_err(|_| invalid(key, format!("{text:?} is too large")))
}

/// A gateway retention quota: the gateway refuses less than 1 MiB.
fn parse_quota(key: &str, text: &str) -> Result<u64, ScenarioError> {
    let q = parse_size(key, text)?;
    if q < 1 << 20 {
        return Err(invalid(key, format!("{text:?}: at least 1 MiB (the gateway's floor)")));
    }
    Ok(q)
}

fn parse_pace(key: &str, text: &str) -> Result<Pace, ScenarioError> {
    match text {
        "fit" => Ok(Pace::Fit),
        "fast" => Ok(Pace::Fast),
        "recorded" => Ok(Pace::Scaled(1.0)),
        t => t
            .strip_prefix('x')
            .and_then(|n| n.parse::<f64>().ok())
            .filter(|f| (0.001..=1_000_000.0).contains(f))
            .map(Pace::Scaled)
            .ok_or_else(|| {
                invalid(key, format!("{t:?}: use \"fit\", \"fast\", \"recorded\" or \"xN\""))
            }),
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 48
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Scenario {
    /// Reads and validates a scenario file; relative paths are relative to its folder.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut s = Scenario::from_toml(&text, &path.display().to_string(), base)?;
        // Absolute, so the generated gateway configs (in other folders) find them.
        for (i, v) in s.vehicles.iter_mut().enumerate() {
            for (k, p) in [("trace", &mut v.trace), ("dbc", &mut v.dbc)] {
                *p = std::fs::canonicalize(&*p).map_err(|e| {
                    invalid(format!("vehicles[{i}].{k}"), format!("{}: {e}", p.display()))
                })?;
            }
        }
        Ok(s)
    }

    /// Validates scenario text (no I/O); `name` is used in syntax errors.
    pub fn from_toml(text: &str, name: &str, base: &Path) -> Result<Scenario, ScenarioError> {
        let raw: Raw = toml::from_str(text)
            .map_err(|e| ScenarioError::Syntax { path: name.into(), message: e.to_string() })?;
        let h = &raw.scenario;
        if !valid_id(&h.name) {
            return Err(invalid("scenario.name", "1 to 48 of A-Z a-z 0-9 - _"));
        }
        let duration = parse_duration("scenario.duration", &h.duration)?;
        if duration.is_zero() {
            return Err(invalid("scenario.duration", "must be more than 0"));
        }
        let heal_timeout = parse_duration("scenario.heal_timeout", &h.heal_timeout)?;
        let block_age = parse_duration("scenario.block_age", &h.block_age)?;
        let sample = parse_duration("scenario.sample", &h.sample)?;
        if sample < Duration::from_millis(50) {
            return Err(invalid("scenario.sample", "at least 50ms"));
        }
        let mut ledgers = Vec::new();
        for (name, l) in &raw.ledgers {
            if !valid_id(name) {
                return Err(invalid(format!("ledgers.{name}"), "1 to 48 of A-Z a-z 0-9 - _"));
            }
            let lane = match l.lane.as_str() {
                "raw" => LaneKind::Raw,
                "coarse" => LaneKind::Coarse,
                o => {
                    return Err(invalid(
                        format!("ledgers.{name}.lane"),
                        format!("{o:?}: use \"raw\" or \"coarse\""),
                    ))
                }
            };
            ledgers.push(LedgerSpec { name: name.clone(), lane });
        }
        // Raw ledgers (the factory) first, then by name: the order of reports and audits.
        ledgers.sort_by_key(|l| (l.lane != LaneKind::Raw, l.name.clone()));
        if !ledgers.iter().any(|l| l.lane == LaneKind::Raw) {
            return Err(invalid(
                "ledgers",
                "at least one ledger with lane = \"raw\" (the frames are counted in its lane)",
            ));
        }
        let ledger_known = |key: &str, n: &str| {
            if ledgers.iter().any(|l| l.name == n) {
                Ok(())
            } else {
                Err(invalid(key, format!("{n:?} is not a ledger under [ledgers]")))
            }
        };
        let mut vehicles = Vec::new();
        for (i, v) in raw.vehicles.iter().enumerate() {
            let key = |k: &str| format!("vehicles[{i}].{k}");
            if !valid_id(&v.id) {
                return Err(invalid(key("id"), "1 to 48 of A-Z a-z 0-9 - _"));
            }
            if vehicles.iter().any(|o: &VehicleSpec| o.id == v.id) {
                return Err(invalid(key("id"), format!("{:?} is used twice", v.id)));
            }
            if v.count == 0 || v.count > 10_000 {
                return Err(invalid(key("count"), "1 to 10000"));
            }
            let opt_dur = |k: &str, t: &Option<String>| {
                t.as_deref().map(|t| parse_duration(&key(k), t)).transpose()
            };
            let start = opt_dur("start", &v.start)?.unwrap_or_default();
            if start >= duration {
                return Err(invalid(key("start"), "must be within scenario.duration"));
            }
            let quota = v.quota.as_deref().map(|q| parse_quota(&key("quota"), q)).transpose()?;
            let bandwidth =
                v.bandwidth.as_deref().map(|q| parse_size(&key("bandwidth"), q)).transpose()?;
            if v.max_frames == Some(0) {
                return Err(invalid(key("max_frames"), "at least 1"));
            }
            if v.coarse.is_empty() {
                if let Some(l) = ledgers.iter().find(|l| l.lane == LaneKind::Coarse) {
                    return Err(invalid(
                        key("coarse"),
                        format!("ledger {:?} receives the coarse lane: name its signals", l.name),
                    ));
                }
            }
            vehicles.push(VehicleSpec {
                coarse: v.coarse.clone(),
                id: v.id.clone(),
                trace: base.join(&v.trace),
                dbc: base.join(&v.dbc),
                j1939: v.j1939,
                pace: parse_pace(&key("pace"), &v.pace)?,
                count: v.count,
                start,
                stagger: opt_dur("stagger", &v.stagger)?.unwrap_or_default(),
                max_frames: v.max_frames,
                quota,
                bandwidth,
            });
        }
        if vehicles.is_empty() {
            return Err(invalid("vehicles", "at least one vehicle"));
        }
        let mut links = Vec::new();
        for (i, l) in raw.links.iter().enumerate() {
            let key = |k: &str| format!("links[{i}].{k}");
            let from = parse_duration(&key("from"), &l.from)?;
            let to = parse_duration(&key("to"), &l.to)?;
            if to <= from {
                return Err(invalid(key("to"), "must be after `from`"));
            }
            let who = match (&l.vehicles, l.share) {
                (Some(_), Some(_)) => {
                    return Err(invalid(key("share"), "give `vehicles` or `share`, not both"))
                }
                (Some(ids), None) => Who::Ids(ids.clone()),
                (None, Some(s)) if (0.0..=1.0).contains(&s) => Who::Share(s),
                (None, Some(_)) => return Err(invalid(key("share"), "a fraction from 0 to 1")),
                (None, None) => Who::All,
            };
            let state = match l.state.as_str() {
                "down" => {
                    for (k, set) in [
                        ("latency", l.latency.is_some()),
                        ("rate", l.rate.is_some()),
                        ("loss", l.loss.is_some()),
                        ("resets", l.resets.is_some()),
                    ] {
                        if set {
                            return Err(invalid(key(k), "only with state = \"degraded\""));
                        }
                    }
                    LinkState::Down
                }
                "degraded" => {
                    let loss = l.loss;
                    if loss.is_some_and(|p| !(0.0..=1.0).contains(&p)) {
                        return Err(invalid(key("loss"), "a probability from 0 to 1"));
                    }
                    if l.resets == Some(0) {
                        return Err(invalid(key("resets"), "at least 1 byte"));
                    }
                    LinkState::Degraded {
                        latency: l
                            .latency
                            .as_deref()
                            .map(|t| parse_duration(&key("latency"), t))
                            .transpose()?,
                        rate: l.rate.as_deref().map(|t| parse_size(&key("rate"), t)).transpose()?,
                        loss,
                        resets: l.resets,
                    }
                }
                o => {
                    return Err(invalid(
                        key("state"),
                        format!("{o:?}: use \"down\" or \"degraded\""),
                    ))
                }
            };
            if let Some(ls) = &l.ledgers {
                for (j, n) in ls.iter().enumerate() {
                    ledger_known(&key(&format!("ledgers[{j}]")), n)?;
                }
            }
            let jitter =
                l.jitter.as_deref().map(|t| parse_duration(&key("jitter"), t)).transpose()?;
            links.push(LinkRule {
                from,
                to,
                state,
                who,
                jitter: jitter.unwrap_or_default(),
                ledgers: l.ledgers.clone(),
            });
        }
        let mut faults = Vec::new();
        for (i, f) in raw.faults.iter().enumerate() {
            let key = |k: &str| format!("faults[{i}].{k}");
            let at = parse_duration(&key("at"), &f.at)?;
            let down_for = f
                .down_for
                .as_deref()
                .map(|t| parse_duration(&key("down_for"), t))
                .transpose()?
                .unwrap_or(Duration::from_secs(1));
            let kind = match f.kind.as_str() {
                "kill_gateway" => FaultKind::KillGateway,
                "restart_gateway" => FaultKind::RestartGateway,
                "kill_ledger" => FaultKind::KillLedger,
                "restart_ledger" => FaultKind::RestartLedger,
                "fill_disk" => {
                    let q = f.quota.as_deref().ok_or_else(|| {
                        invalid(key("quota"), "fill_disk needs a quota (e.g. \"2 MiB\")")
                    })?;
                    FaultKind::FillDisk(parse_quota(&key("quota"), q)?)
                }
                o => {
                    return Err(invalid(
                        key("kind"),
                        format!(
                            "{o:?}: use kill_gateway, restart_gateway, kill_ledger, \
                             restart_ledger or fill_disk"
                        ),
                    ))
                }
            };
            let on_vehicle = matches!(
                kind,
                FaultKind::KillGateway | FaultKind::RestartGateway | FaultKind::FillDisk(_)
            );
            match (on_vehicle, &f.vehicle, &f.ledger) {
                (true, Some(_), None) => {}
                (true, _, _) => {
                    return Err(invalid(
                        key("vehicle"),
                        "this fault needs `vehicle` (and no `ledger`)",
                    ))
                }
                (false, None, Some(n)) => ledger_known(&key("ledger"), n)?,
                (false, _, _) => {
                    return Err(invalid(
                        key("ledger"),
                        "this fault needs `ledger` (and no `vehicle`)",
                    ))
                }
            }
            if f.quota.is_some() && !matches!(kind, FaultKind::FillDisk(_)) {
                return Err(invalid(key("quota"), "only with kind = \"fill_disk\""));
            }
            faults.push(FaultSpec {
                at,
                kind,
                vehicle: f.vehicle.clone(),
                ledger: f.ledger.clone(),
                down_for,
            });
        }
        let chaos = match &raw.chaos {
            None => None,
            Some(c) => {
                let mut kinds = Vec::new();
                for (j, k) in c.kinds.iter().enumerate() {
                    kinds.push(match k.as_str() {
                        "cut" => ChaosKind::Cut,
                        "down" => ChaosKind::Down,
                        "degraded" => ChaosKind::Degraded,
                        "kill_gateway" => ChaosKind::KillGateway,
                        "restart_gateway" => ChaosKind::RestartGateway,
                        "restart_ledger" => ChaosKind::RestartLedger,
                        "kill_ledger" => ChaosKind::KillLedger,
                        o => {
                            return Err(invalid(
                                format!("chaos.kinds[{j}]"),
                                format!(
                                    "{o:?}: use cut, down, degraded, kill_gateway, \
                                     restart_gateway, restart_ledger or kill_ledger"
                                ),
                            ))
                        }
                    });
                }
                if kinds.is_empty() {
                    return Err(invalid("chaos.kinds", "at least one kind"));
                }
                Some(Chaos {
                    events: c.events,
                    kinds,
                    max_length: parse_duration("chaos.max_length", &c.max_length)?,
                })
            }
        };
        Ok(Scenario {
            name: h.name.clone(),
            seed: h.seed,
            duration,
            heal_timeout,
            block_age,
            sample,
            ledgers,
            vehicles,
            links,
            faults,
            chaos,
        })
    }

    /// Applies CI size overrides: fewer vehicles, a shorter drive (every time scaled).
    pub fn apply(&mut self, o: &Overrides) {
        if let Some(d) = o.duration.filter(|d| !d.is_zero()) {
            let f = d.as_secs_f64() / self.duration.as_secs_f64();
            let s = |t: &mut Duration| *t = t.mul_f64(f);
            self.duration = d;
            for v in &mut self.vehicles {
                s(&mut v.start);
                s(&mut v.stagger);
            }
            for l in &mut self.links {
                s(&mut l.from);
                s(&mut l.to);
                s(&mut l.jitter);
            }
            for x in &mut self.faults {
                s(&mut x.at);
                s(&mut x.down_for);
            }
            if let Some(c) = &mut self.chaos {
                s(&mut c.max_length);
            }
        }
        if let Some(n) = o.vehicles {
            let mut left = n.max(1);
            self.vehicles.retain_mut(|v| {
                if left == 0 {
                    return false;
                }
                v.count = v.count.min(left);
                left -= v.count;
                true
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"
[scenario]
name = "t"
seed = 3
duration = "20s"
[ledgers.factory]
lane = "raw"
[ledgers.city]
lane = "coarse"
[[vehicles]]
id = "van"
trace = "t.log"
dbc = "d.dbc"
coarse = ["gnss_speed.Speed"]
count = 4
stagger = "1s"
[[links]]
from = "5s"
to = "10s"
share = 0.5
jitter = "1s"
[[links]]
from = "12s"
to = "14s"
state = "degraded"
latency = "100ms"
rate = "64 KiB"
ledgers = ["city"]
[[faults]]
at = "8s"
kind = "kill_gateway"
vehicle = "van-001"
[[faults]]
at = "9s"
kind = "restart_ledger"
ledger = "city"
down_for = "2s"
"#;

    fn err(text: &str) -> String {
        Scenario::from_toml(text, "s.toml", Path::new("/x")).expect_err("refused").to_string()
    }

    #[test]
    fn a_full_scenario_validates_into_typed_values() {
        let s = Scenario::from_toml(OK, "s.toml", Path::new("/x")).expect("valid");
        assert_eq!(s.duration, Duration::from_secs(20));
        assert_eq!(s.ledgers[0], LedgerSpec { name: "factory".into(), lane: LaneKind::Raw });
        assert_eq!(s.vehicles[0].trace, Path::new("/x/t.log"));
        assert_eq!(s.vehicles[0].pace, Pace::Fit);
        assert_eq!(s.links[0].who, Who::Share(0.5));
        assert_eq!(
            s.links[1].state,
            LinkState::Degraded {
                latency: Some(Duration::from_millis(100)),
                rate: Some(65536),
                loss: None,
                resets: None
            }
        );
        assert_eq!(s.faults[1].kind, FaultKind::RestartLedger);
        assert_eq!(s.faults[1].down_for, Duration::from_secs(2));
    }

    #[test]
    fn unknown_keys_are_refused_and_named() {
        let e = err(&OK.replace("jitter = \"1s\"", "jiter = \"1s\""));
        assert!(e.contains("jiter"), "{e}");
        let e = err(&OK.replace("seed = 3", "seed = 3\ncolour = 1"));
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (OK.replace("stagger = \"1s\"", "stagger = \"1 fortnight\""), "vehicles[0].stagger: "),
            (
                OK.replace("pace", "x").replace("count = 4", "count = 4\npace = \"x0\""),
                "vehicles[0].pace: ",
            ),
            (OK.replace("to = \"10s\"", "to = \"4s\""), "links[0].to: "),
            (OK.replace("ledgers = [\"city\"]", "ledgers = [\"town\"]"), "links[1].ledgers[0]: "),
            (OK.replace("kind = \"kill_gateway\"", "kind = \"explode\""), "faults[0].kind: "),
            (OK.replace("ledger = \"city\"\n", "vehicle = \"van\"\n"), "faults[1].ledger: "),
            (OK.replace("lane = \"coarse\"", "lane = \"fine\""), "ledgers.city.lane: "),
            (OK.replace("share = 0.5", "share = 1.5"), "links[0].share: "),
            (
                OK.replace("latency = \"100ms\"", "latency = \"100ms\"\nloss = 2.0"),
                "links[1].loss: ",
            ),
            (OK.replace("count = 4", "count = 0"), "vehicles[0].count: "),
            (OK.replace("count = 4", "count = 4\nquota = \"400 KiB\""), "vehicles[0].quota: "),
        ];
        for (text, want) in cases {
            let e = err(&text);
            assert!(e.starts_with(want), "want {want:?}, got {e:?}");
        }
    }

    #[test]
    fn overrides_scale_every_time_and_cut_the_fleet() {
        let mut s = Scenario::from_toml(OK, "s.toml", Path::new("/x")).expect("valid");
        s.apply(&Overrides { vehicles: Some(2), duration: Some(Duration::from_secs(10)) });
        assert_eq!(s.vehicles[0].count, 2);
        assert_eq!(s.links[0].from, Duration::from_millis(2500));
        assert_eq!(s.faults[0].at, Duration::from_secs(4));
        assert_eq!(s.vehicles[0].stagger, Duration::from_millis(500));
    }

    #[test]
    fn sizes_and_durations_parse_with_units() {
        assert_eq!(parse_size("k", "4 MiB"), Ok(4 << 20));
        assert_eq!(parse_size("k", "512"), Ok(512));
        // The gateway's grammar (D255): decimal units too, and a bare zero duration.
        assert_eq!(parse_size("k", "4 MB"), Ok(4_000_000));
        assert!(parse_size("k", "4 XB").is_err_and(|e| e.to_string().starts_with("k: ")));
        assert_eq!(parse_duration("k", "1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("k", "0"), Ok(Duration::ZERO));
        assert!(parse_duration("k", "s").is_err());
    }
}
