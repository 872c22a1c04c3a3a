//! The shipped scenarios at CI size, with real processes: real `iov-gateway` and `iov-ledger`
//! binaries on loopback, the fault proxies in this process, the stores checked on disk
//! afterwards. Each test asserts outcomes the run must produce (every durable frame at every
//! ledger, the dead zone visible as backlog, restarts and drops accounted for), and one test
//! breaks a ledger's store on purpose to show the invariant check fails when it should.
//!
//! The tests run one at a time (a lock): each starts up to a dozen processes, and the machine
//! they run on may have two cores.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use sim::scenario::{Overrides, Scenario};
use sim::world::{Options, World};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Builds the binaries the simulator starts when they are missing (as the gateway's end-to-end
/// tests do: `cargo test --workspace` builds them anyway, and building them here with another
/// package set would re-resolve features and recompile shared dependencies every time).
fn build_binaries() -> Result<()> {
    static BUILT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *BUILT.get_or_init(|| {
        let exe = std::env::current_exe().expect("test exe");
        let bin_dir = exe.parent().and_then(Path::parent).expect("target/release");
        if ["iov-gateway", "iov-ledger", "iovctl"].iter().all(|b| bin_dir.join(b).is_file()) {
            return true;
        }
        let target = bin_dir.parent().expect("target dir");
        Command::new(env!("CARGO"))
            .args([
                "build",
                "--release",
                "-p",
                "gateway",
                "-p",
                "ledger-node",
                "-p",
                "iovctl",
                "--bins",
            ])
            .env("CARGO_TARGET_DIR", target)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    });
    ensure!(ok, "building iov-gateway, iov-ledger and iovctl failed");
    Ok(())
}

fn scenario(name: &str, o: Overrides) -> Result<Scenario> {
    let mut s =
        Scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(name))?;
    s.apply(&o);
    Ok(s)
}

fn out(name: &str) -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().expect("tempdir");
    let p = t.path().join(name);
    (t, p)
}

#[test]
fn the_demo_scenario_holds_every_frame_at_both_ledgers_and_shows_the_dead_zone() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    build_binaries()?;
    let s = scenario("demo.toml", Overrides::default())?;
    let (_t, dir) = out("demo");
    let started = std::time::Instant::now();
    // The world and its invariants, then the demo's fleet steps against the running ledgers:
    // a verified history of one vehicle from each ledger and the cross-witness audit.
    let mut backlog_in_zone = Vec::new();
    let report =
        sim::run::execute(s, &Options { out: dir.clone(), progress: false }, |w: &World| {
            for c in &w.cars {
                let peak = c.backlog[0].iter().map(|x| x.1).fold(0.0, f64::max);
                backlog_in_zone.push((c.id.clone(), peak));
            }
            sim::demo::steps(w)
        })?;
    println!("{}", report.text());
    println!("demo world in {:?}", started.elapsed());
    ensure!(report.ok, "invariants broke: {:?}", report.failures);
    ensure!(report.vehicles.len() == 3);
    ensure!(report.frames_in == 200_000 + 2 * 60_000, "frames in {}", report.frames_in);
    ensure!(
        report.frames_durable == report.frames_in,
        "durable {} of {}",
        report.frames_durable,
        report.frames_in
    );
    let factory = report.ledgers.iter().find(|l| l.name == "factory").context("factory")?;
    let city = report.ledgers.iter().find(|l| l.name == "city").context("city")?;
    ensure!(
        factory.frames_provable == report.frames_durable,
        "factory provable {}",
        factory.frames_provable
    );
    ensure!(factory.lane_records == report.frames_durable);
    // The city gets a thinned, coarsened view: far fewer records than frames, but some.
    ensure!(
        city.lane_records > 0 && city.lane_records * 20 < city.frames_provable,
        "city records {}",
        city.lane_records
    );
    ensure!(
        factory.bytes_per_frame > 0.5 && factory.bytes_per_frame < 50.0,
        "bytes/frame {}",
        factory.bytes_per_frame
    );
    // Six seconds without a link: every vehicle built up a backlog and caught up afterwards.
    for (id, peak) in &backlog_in_zone {
        ensure!(*peak >= 3.0, "{id}: the dead zone left no backlog (peak {peak})");
    }
    ensure!(factory.sync_lag_s.max >= 3.0, "max lag {}", factory.sync_lag_s.max);
    for f in ["report.json", "summary.txt", "chart.png"] {
        let p = dir.join(f);
        ensure!(
            std::fs::metadata(&p).map(|m| m.len() > 1000).unwrap_or(false),
            "{} missing or empty",
            p.display()
        );
    }
    let png = std::fs::read(dir.join("chart.png"))?;
    ensure!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "chart.png is not a PNG");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("report.json"))?)?;
    ensure!(json["ok"] == true && json["vehicles"].as_array().map(Vec::len) == Some(3));
    // Fleet steps: two verified histories (the city's holds its coarse lane only) and an audit.
    ensure!(report.steps.len() == 3, "steps: {:?}", report.steps);
    for st in &report.steps {
        ensure!(st.ok, "{}: {}", st.name, st.detail);
    }
    ensure!(
        report.steps[0].detail.contains("verified rows")
            && report.steps[0].detail.contains("\"lane\":\"factory\"")
    );
    ensure!(
        report.steps[1].detail.contains("verified rows")
            && report.steps[1].detail.contains("\"lane\":\"city\"")
    );
    ensure!(report.steps[2].detail.starts_with("result: OK"), "audit: {}", report.steps[2].detail);
    Ok(())
}

#[test]
fn the_fleet_scenario_at_ci_size_delivers_every_frame_through_dead_zones_and_a_tunnel() -> Result<()>
{
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    build_binaries()?;
    let s = scenario(
        "fleet.toml",
        Overrides { vehicles: Some(10), duration: Some(Duration::from_secs(20)) },
    )?;
    ensure!(s.vehicles[0].count == 10);
    let (_t, dir) = out("fleet");
    let report = sim::run::execute(s, &Options { out: dir, progress: false }, |_| Vec::new())?;
    println!("{}", report.text());
    ensure!(report.ok, "invariants broke: {:?}", report.failures);
    ensure!(report.vehicles.len() == 10);
    ensure!(report.frames_in == 10 * 8000, "frames in {}", report.frames_in);
    ensure!(report.frames_durable == report.frames_in, "durable {}", report.frames_durable);
    for l in &report.ledgers {
        ensure!(l.frames_provable == report.frames_durable, "{}: {}", l.name, l.frames_provable);
        ensure!(l.sync_lag_s.n > 0);
    }
    Ok(())
}

#[test]
fn the_chaos_scenario_keeps_its_invariants_through_kills_restarts_and_a_full_disk() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    build_binaries()?;
    let s = scenario(
        "chaos.toml",
        Overrides { vehicles: None, duration: Some(Duration::from_secs(24)) },
    )?;
    let (_t, dir) = out("chaos");
    let report = sim::run::execute(s, &Options { out: dir, progress: false }, |_| Vec::new())?;
    println!("{}", report.text());
    ensure!(report.ok, "invariants broke: {:?}", report.failures);
    let restarts: u32 = report.vehicles.iter().map(|v| v.restarts).sum::<u32>()
        + report.ledgers.iter().map(|l| l.restarts).sum::<u32>();
    ensure!(restarts >= 2, "chaos restarted only {restarts} processes");
    // The hauler's disk filled during its dead zone: frames were refused for the quota.
    let hauler = report.vehicles.iter().find(|v| v.id == "hauler").context("hauler")?;
    ensure!(
        hauler.dropped.get("quota").copied().unwrap_or(0) > 0,
        "no quota drops: {:?}",
        hauler.dropped
    );
    // No frame is stored twice (a restarted gateway replays only the rest of the drive), and a
    // vehicle whose gateway never stopped lost nothing, whatever happened to its links and the
    // ledgers.
    for v in &report.vehicles {
        ensure!(
            v.frames_durable <= v.frames_in,
            "{}: {} durable of {}",
            v.id,
            v.frames_durable,
            v.frames_in
        );
        if v.restarts == 0 {
            ensure!(
                v.frames_durable == v.frames_in && v.dropped.is_empty(),
                "{}: {:?}",
                v.id,
                v.dropped
            );
        }
        for (l, p) in report.ledgers.iter().zip(&v.provable) {
            ensure!(
                *p == v.frames_durable,
                "{}: {} provable at {}, {} durable",
                v.id,
                p,
                l.name,
                v.frames_durable
            );
        }
    }
    Ok(())
}

#[test]
fn a_ledger_that_lost_blocks_breaks_the_run() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    build_binaries()?;
    let mut s = scenario(
        "fleet.toml",
        Overrides { vehicles: Some(1), duration: Some(Duration::from_secs(4)) },
    )?;
    s.links.clear();
    s.vehicles[0].max_frames = Some(2000);
    let (_t, dir) = out("broken");
    let mut w = World::new(s, &Options { out: dir, progress: false })?;
    w.run()?;
    w.shutdown()?;
    ensure!(w.failures.is_empty(), "{:?}", w.failures);
    // The city ledger forgets everything: a fresh, empty store in place of its own.
    let store = w.orgs[1].dir.join("store");
    std::fs::remove_dir_all(&store)?;
    drop(ledger_node::store::rocks::Rocks::open(&store)?);
    sim::check::check(&mut w)?;
    ensure!(
        w.failures.iter().any(|f| f.contains("missing at a ledger") && f.contains("city")),
        "the check did not notice: {:?}",
        w.failures
    );
    Ok(())
}

#[test]
fn replay_loops_a_real_trace_through_the_gateway_and_every_frame_is_durable() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    build_binaries()?;
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
    let (_t, dir) = out("replay");
    let out = Command::new(env!("CARGO_BIN_EXE_iov-sim"))
        .args(["replay", "--speed", "max", "--loop", "2", "--json"])
        .arg("--trace")
        .arg(fx.join("traces/canmod_gps_3BA199E2.log.gz"))
        .arg("--dbc")
        .arg(fx.join("dbc/css-electronics/canmod-gps.dbc"))
        .arg("--out")
        .arg(&dir)
        .output()?;
    ensure!(out.status.success(), "exit {}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    println!("{}", serde_json::to_string_pretty(&j["signals"]["gnss_pos.Latitude"])?);
    ensure!(j["frames_per_pass"] == 640_067 && j["frames_durable"] == 2 * 640_067, "{j}");
    ensure!(j["ok"] == true && j["blocks"].as_u64().unwrap_or(0) >= 2);
    // The recording drove somewhere: positions on Earth that change.
    let lat = &j["signals"]["gnss_pos.Latitude"];
    let (lo, hi) =
        (lat["min"].as_f64().unwrap_or(f64::NAN), lat["max"].as_f64().unwrap_or(f64::NAN));
    ensure!(lat["count"].as_u64().unwrap_or(0) > 1000, "{lat}");
    ensure!((-90.0..=90.0).contains(&lo) && (-90.0..=90.0).contains(&hi) && hi > lo, "{lat}");
    Ok(())
}

#[test]
fn a_bad_scenario_exits_2_naming_the_key() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let p = dir.path().join("bad.toml");
    std::fs::write(
        &p,
        "[scenario]\nname = \"x\"\nduration = \"10s\"\nwobble = 1\n[ledgers.f]\nlane = \"raw\"\n",
    )?;
    let out = Command::new(env!("CARGO_BIN_EXE_iov-sim")).arg("run").arg(&p).output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(2), "exit {:?}: {err}", out.status.code());
    ensure!(err.contains("wobble"), "{err}");
    Ok(())
}

#[test]
fn replay_into_vcan_sends_a_real_trace_through_socketcan_in_the_vm() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    build_binaries()?;
    sim::vcan::check_prepared()?;
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
    // Not under /tmp: the guest mounts its own /tmp (the share is mounted explicitly, but the
    // trace slice is read on the host, so either works; the share must be a host path).
    let (_t, dir) = out("vcan");
    let slice_dir = tempfile::tempdir()?;
    let slice = slice_dir.path().join("truck.log");
    sim::tracefile::cut(
        &fx.join("traces/j1939_asammdf_basics.log.gz"),
        Some(&slice),
        Some(20_000),
        0,
    )?;
    let out = Command::new(env!("CARGO_BIN_EXE_iov-sim"))
        .args(["replay", "--into", "vcan", "--speed", "max", "--json", "--j1939"])
        .arg("--trace")
        .arg(&slice)
        .arg("--dbc")
        .arg(fx.join("dbc/canmatrix/j1939.dbc"))
        .arg("--out")
        .arg(&dir)
        .output()?;
    ensure!(out.status.success(), "exit {}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    println!("vcan replay: {} durable, dropped {}", j["frames_durable"], j["dropped"]);
    let kernel = j["dropped"]["kernel"].as_u64().unwrap_or(0);
    ensure!(j["frames_per_pass"] == 20_000, "{j}");
    ensure!(j["frames_durable"].as_u64().unwrap_or(0) + kernel == 20_000, "{j}");
    ensure!(j["frames_durable"].as_u64().unwrap_or(0) > 0 && j["ok"] == true, "{j}");
    Ok(())
}
