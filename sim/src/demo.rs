//! `iov-sim demo`: the shipped demo scenario (three vehicles replaying the real GPS and truck
//! recordings, a factory and a city ledger on loopback, a dead zone in the middle of the drive),
//! then a verified history query of one vehicle from each ledger and a cross-witness audit, and
//! a summary written for someone who has never seen the project.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::report::{Report, StepReport};
use crate::scenario::{LaneKind, Scenario};
use crate::world::{Options, World};

/// The demo scenario shipped in the repository.
pub fn scenario_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/demo.toml")
}

/// The fleet steps: the first vehicle's whole drive from each ledger, then the audit.
pub fn steps(w: &World) -> Vec<StepReport> {
    let mut out = Vec::new();
    let Some(car) = w.cars.first() else { return out };
    let from = (car.info.first_ns as i128 + car.shift_ns as i128).max(0) as u64;
    let to = (car.info.last_ns as i128 + car.shift_ns as i128).max(0) as u64;
    for o in &w.orgs {
        let dbc = (o.spec.lane == LaneKind::Raw).then_some(car.spec.dbc.as_path());
        out.push(crate::fleet_tools::history(
            &format!("history of {} from the {} ledger", car.id, o.spec.name),
            &o.url(),
            &car.id,
            from,
            to,
            &o.lane_key_file,
            &o.token_file,
            dbc,
        ));
    }
    if let [a, b, ..] = w.orgs.as_slice() {
        out.push(crate::fleet_tools::audit(
            &format!("cross-witness audit {} <-> {}", a.spec.name, b.spec.name),
            &a.url(),
            &b.url(),
            Some(&crate::world::auditor_token_file(&w.out)),
        ));
    }
    out
}

/// What the demo shows, in words, before the figures.
pub fn intro(s: &Scenario) -> String {
    let zone = s
        .links
        .first()
        .map(|l| format!("from {:.0} s to {:.0} s", l.from.as_secs_f64(), l.to.as_secs_f64()))
        .unwrap_or_default();
    format!(
        "iov-sim demo: {n} vehicles drive for {d:.0} s, each an iov-gateway process replaying a real CAN \
         recording (a GPS/IMU logger and a J1939 truck; one recording can stand for several vehicles: \
         each gets its own identity and time). Their gateways decode the frames, seal them into signed, \
         encrypted, hash-chained blocks and sync them to two ledger processes: the factory (every raw \
         frame) and the city (only coarse speed and position). A dead zone {zone} cuts every vehicle \
         off; the gateways keep everything on their disk and catch up afterwards. At the end the \
         ledgers' stores are checked block by block, one vehicle's history is queried and verified \
         from each ledger, and the two ledgers audit each other.\n",
        n = s.vehicles.iter().map(|v| v.count).sum::<usize>(),
        d = s.duration.as_secs_f64(),
    )
}

/// Runs the demo; the caller prints the summary.
pub fn run(out: PathBuf, progress: bool) -> Result<(Scenario, Report)> {
    let s = Scenario::load(&scenario_path())?;
    let report = crate::run::execute(s.clone(), &Options { out, progress }, steps)?;
    Ok((s, report))
}
