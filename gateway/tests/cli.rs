//! The binary's config commands: the printed example passes `check-config` once its paths point
//! at real files, and a broken config exits 2 naming the key.

mod common;

use std::process::Command;

use anyhow::{ensure, Result};

fn gateway(args: &[&str]) -> Result<std::process::Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_iov-gateway")).args(args).output()?)
}

#[test]
fn the_printed_default_config_passes_check_config() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    common::keys(d)?;
    let out = gateway(&["print-default-config"])?;
    ensure!(out.status.success());
    let text = String::from_utf8(out.stdout)?;
    ensure!(text.lines().filter(|l| l.trim_start().starts_with('#')).count() > 20, "not commented");
    let dbc = common::fixtures().join("dbc/css-electronics/canmod-gps.dbc");
    let text = text
        .replace(
            "/var/lib/iov-gateway/keys/signing.key",
            &d.join("signing.key").display().to_string(),
        )
        .replace("/var/lib/iov-gateway/store", &d.join("store").display().to_string())
        .replace("/etc/iov/dbc/canmod-gps.dbc", &dbc.display().to_string())
        .replace("/etc/iov/keys/factory.x25519.pub", &d.join("factory.pub").display().to_string())
        .replace("/etc/iov/keys/city.x25519.pub", &d.join("city.pub").display().to_string());
    let config = d.join("gateway.toml");
    std::fs::write(&config, &text)?;
    let out = gateway(&["check-config", "--config", &config.display().to_string()])?;
    ensure!(out.status.success(), "check-config: {}", String::from_utf8_lossy(&out.stderr));
    ensure!(String::from_utf8(out.stdout)?.contains(": ok (1 sources, 2 lanes"));

    // The same file with a typo in a key and with a bad value: exit 2, the key named.
    std::fs::write(&config, text.replace("max_records =", "max_record ="))?;
    let out = gateway(&["check-config", "--config", &config.display().to_string()])?;
    let err = String::from_utf8(out.stderr)?;
    ensure!(out.status.code() == Some(2) && err.contains("unknown field `max_record`"), "{err}");
    std::fs::write(&config, text.replace("min_interval = \"1s\" }", "min_interval = \"1 sec\" }"))?;
    let out = gateway(&["check-config", "--config", &config.display().to_string()])?;
    let err = String::from_utf8(out.stderr)?;
    ensure!(
        out.status.code() == Some(2)
            && err.contains("lanes.city.signals[0].min_interval: \"1 sec\""),
        "{err}"
    );
    let out = gateway(&["check-config", "--config", "/nonexistent/gateway.toml"])?;
    ensure!(out.status.code() == Some(2));
    Ok(())
}
