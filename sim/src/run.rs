//! One scenario end to end: build the world, drive, heal, run the caller's steps while the
//! ledgers still serve, stop everything, check the stores, write the report.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::report::{Report, StepReport};
use crate::scenario::Scenario;
use crate::world::{Options, World};

/// Where a scenario's output goes unless `--out` says otherwise.
pub fn default_out(name: &str) -> PathBuf {
    std::env::temp_dir().join("iov-sim").join(name)
}

/// Runs `scenario`; `steps` runs after the final heal, before anything stops (the demo's
/// fleet queries). The report is written to `opts.out` (`report.json`, `summary.txt`,
/// `chart.png`) and returned; `report.ok` is false when an invariant broke.
pub fn execute(
    scenario: Scenario,
    opts: &Options,
    steps: impl FnOnce(&World) -> Vec<StepReport>,
) -> Result<Report> {
    let mut world = World::new(scenario, opts)?;
    let ran = world.run();
    let extra = if ran.is_ok() { steps(&world) } else { Vec::new() };
    let stopped = world.shutdown();
    ran?;
    stopped?;
    let checks = crate::check::check(&mut world)?;
    let mut report = Report::build(&world, &checks);
    report.add_steps(extra);
    write(&world, &mut report, &opts.out)?;
    Ok(report)
}

fn write(world: &World, report: &mut Report, out: &Path) -> Result<()> {
    let json = out.join("report.json");
    let summary = out.join("summary.txt");
    let chart = out.join("chart.png");
    match crate::chart::draw(world, &chart) {
        Ok(()) => {
            report.files.insert("chart".into(), chart.display().to_string());
        }
        Err(e) => report.notes.push(format!("no chart: {e}")),
    }
    report.files.insert("report".into(), json.display().to_string());
    report.files.insert("summary".into(), summary.display().to_string());
    std::fs::write(&json, serde_json::to_vec_pretty(report)?)
        .with_context(|| format!("writing {}", json.display()))?;
    std::fs::write(&summary, report.text())
        .with_context(|| format!("writing {}", summary.display()))?;
    Ok(())
}
