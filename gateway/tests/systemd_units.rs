//! The packaged systemd units (`systemd/iov-gateway.service`, `systemd/iov-ledger.service`):
//! `systemd-analyze verify` must be clean (exit 0 and not one warning) and
//! `systemd-analyze security --offline=true` must rate each 2.0 or lower; the settings the
//! daemons rely on (readiness protocol, watchdog, restart policy, stop timeout above the
//! shutdown grace, state directory, own user, AF_CAN for the gateway) must be there.
//!
//! The units are checked inside a scratch root (`--root`) holding the systemd targets of this
//! machine and executable placeholders at `/usr/bin/iov-gateway` and `/usr/bin/iov-ledger`, the
//! paths the packages install to. Skips (with a message) only when `systemd-analyze` is absent;
//! `scripts/deps.sh system` installs it.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};

/// The most `systemd-analyze security` may rate a unit (lower is better; 10 = unprotected).
const MAX_EXPOSURE: f64 = 2.0;

fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd")
}

fn analyzer() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p).map(|d| d.join("systemd-analyze")).find(|f| f.is_file())
    })
}

/// A root with the system's targets, the unit under test and placeholder binaries.
fn scratch_root(unit: &str) -> Result<tempfile::TempDir> {
    let root = tempfile::tempdir()?;
    let units = root.path().join("usr/lib/systemd/system");
    fs::create_dir_all(&units)?;
    fs::create_dir_all(root.path().join("usr/bin"))?;
    for sys in ["/usr/lib/systemd/system", "/lib/systemd/system"] {
        let Ok(entries) = fs::read_dir(sys) else { continue };
        for e in entries.flatten() {
            let name = e.file_name();
            if name.to_string_lossy().ends_with(".target") && !units.join(&name).exists() {
                fs::copy(e.path(), units.join(&name))?;
            }
        }
    }
    fs::copy(units_dir().join(unit), units.join(unit))?;
    for bin in ["iov-gateway", "iov-ledger"] {
        let p = root.path().join("usr/bin").join(bin);
        fs::write(&p, "#!/bin/sh\nexit 0\n")?;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755))?;
    }
    Ok(root)
}

/// `(exit ok, stdout, stderr)` of `systemd-analyze ARGS --root=ROOT UNIT`.
fn analyze(tool: &Path, args: &[&str], root: &Path, unit: &str) -> Result<(bool, String, String)> {
    let out = Command::new(tool)
        .args(args)
        .arg(format!("--root={}", root.display()))
        .arg(unit)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .with_context(|| format!("running systemd-analyze {args:?}"))?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The value of `Key=` in the unit (the last one, as systemd reads it).
fn setting<'a>(unit: &'a str, key: &str) -> Option<&'a str> {
    unit.lines().rev().find_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
}

fn seconds(v: &str) -> Result<Duration> {
    humantime::parse_duration(v.trim()).with_context(|| format!("{v:?} is not a duration"))
}

fn check(unit: &str) -> Result<f64> {
    let Some(tool) = analyzer() else {
        eprintln!(
            "SKIPPED: systemd-analyze is not installed (scripts/deps.sh system installs systemd)"
        );
        return Ok(0.0);
    };
    let root = scratch_root(unit)?;
    let (ok, out, err) = analyze(&tool, &["verify"], root.path(), unit)?;
    ensure!(ok && err.trim().is_empty() && out.trim().is_empty(), "verify {unit}:\n{out}{err}");

    let (_, out, err) = analyze(&tool, &["security", "--offline=true"], root.path(), unit)?;
    let level = out
        .lines()
        .find_map(|l| l.split("Overall exposure level for").nth(1))
        .and_then(|rest| rest.split(':').nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .with_context(|| format!("no overall exposure level for {unit}:\n{out}{err}"))?;
    ensure!(level <= MAX_EXPOSURE, "{unit} rates {level} (more than {MAX_EXPOSURE}):\n{out}");

    let text = fs::read_to_string(units_dir().join(unit))?;
    for (key, want) in [
        ("Type", "notify"),
        ("Restart", "on-failure"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("CapabilityBoundingSet", ""),
    ] {
        ensure!(setting(&text, key) == Some(want), "{unit}: {key}={want} missing");
    }
    ensure!(
        text.lines().any(|l| l.trim() == "SystemCallFilter=@system-service"),
        "{unit}: SystemCallFilter=@system-service missing"
    );
    for key in ["StartLimitBurst", "StartLimitIntervalSec", "StateDirectory", "User"] {
        ensure!(setting(&text, key).is_some_and(|v| !v.is_empty()), "{unit}: {key}= missing");
    }
    ensure!(setting(&text, "User") != Some("root"), "{unit} runs as root");
    let watchdog = seconds(setting(&text, "WatchdogSec").context("WatchdogSec")?)?;
    ensure!(watchdog >= Duration::from_secs(10), "{unit}: WatchdogSec {watchdog:?} is too tight");
    // Both daemons give shutdown 10 s by default (gateway shutdown_grace, the ledger's open
    // requests); systemd must wait longer before SIGKILL.
    let stop = seconds(setting(&text, "TimeoutStopSec").context("TimeoutStopSec")?)?;
    ensure!(stop > Duration::from_secs(10), "{unit}: TimeoutStopSec {stop:?} <= the 10 s grace");
    Ok(level)
}

#[test]
fn the_gateway_unit_verifies_and_rates_at_most_2() -> Result<()> {
    let level = check("iov-gateway.service")?;
    let text = fs::read_to_string(units_dir().join("iov-gateway.service"))?;
    let families = setting(&text, "RestrictAddressFamilies").context("RestrictAddressFamilies")?;
    ensure!(families.split_whitespace().any(|f| f == "AF_CAN"), "AF_CAN not allowed: {families}");
    eprintln!("iov-gateway.service: systemd-analyze security --offline=true: {level}");
    Ok(())
}

#[test]
fn the_ledger_unit_verifies_and_rates_at_most_2() -> Result<()> {
    let level = check("iov-ledger.service")?;
    let text = fs::read_to_string(units_dir().join("iov-ledger.service"))?;
    let families = setting(&text, "RestrictAddressFamilies").context("RestrictAddressFamilies")?;
    ensure!(!families.contains("AF_CAN"), "the ledger does not use CAN: {families}");
    eprintln!("iov-ledger.service: systemd-analyze security --offline=true: {level}");
    Ok(())
}

#[test]
fn a_unit_with_an_unknown_setting_fails_verification() -> Result<()> {
    // The check above can fail: systemd-analyze reports an unknown key on stderr.
    let Some(tool) = analyzer() else {
        eprintln!("SKIPPED: systemd-analyze is not installed");
        return Ok(());
    };
    let root = scratch_root("iov-gateway.service")?;
    let p = root.path().join("usr/lib/systemd/system/iov-gateway.service");
    let text =
        fs::read_to_string(&p)?.replace("Restart=on-failure", "Restart=on-failure\nRestrat=always");
    fs::write(&p, text)?;
    let (_, _, err) = analyze(&tool, &["verify"], root.path(), "iov-gateway.service")?;
    ensure!(err.contains("Restrat"), "verify did not report the unknown key: {err}");
    Ok(())
}
