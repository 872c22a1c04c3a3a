//! Key provisioning on first start, with the real binary: a gateway whose config names keys that
//! do not exist generates them (0600 in a 0700 directory, public halves beside them), logs the
//! fingerprint and never the private key, signs its log with the generated key, and keeps the
//! key on the next start; with `key_provisioning = "provisioned"` it refuses to start (exit 2,
//! naming the key) and creates nothing.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};

fn config(d: &Path, provisioning: &str) -> String {
    format!(
        r#"
[gateway]
signing_key = "state/keys/signing.key"
history_key = "state/keys/x25519.key"
key_provisioning = "{provisioning}"
key_name = "gw-provision.example/log"
store = "state/store"
[[dbc]]
file = "{dbc}"
[recipients]
factory = "factory.pub"
[sources.replay]
kind = "trace"
file = "{trace}"
pace = "fast"
at_end = "shutdown"
[lanes.factory]
carries = "raw"
recipients = ["factory", "self"]
"#,
        dbc = common::fixtures().join("dbc/css-electronics/canmod-gps.dbc").display(),
        trace = common::fixtures().join("traces/j1939_asammdf_basics.log.gz").display(),
    )
    .replace("state/", &format!("{}/", d.join("state").display()))
}

fn mode(p: &Path) -> Result<u32> {
    Ok(fs::metadata(p).with_context(|| p.display().to_string())?.permissions().mode() & 0o7777)
}

#[test]
fn a_gateway_without_keys_generates_them_once_and_logs_only_public_halves() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    common::keys(d)?;
    fs::create_dir(d.join("state"))?;
    let cfg = d.join("gateway.toml");
    fs::write(&cfg, config(d, "generate"))?;

    let check = Command::new(env!("CARGO_BIN_EXE_iov-gateway"))
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()?;
    let said = String::from_utf8_lossy(&check.stdout);
    ensure!(check.status.success(), "check-config: {}", String::from_utf8_lossy(&check.stderr));
    ensure!(
        said.contains("signing.key: generated on first start (key name gw-provision.example/log)")
            && said.contains("x25519.key: generated on first start"),
        "check-config said: {said}"
    );
    ensure!(!d.join("state/keys").exists(), "check-config must not create keys");

    let mut gw = common::Gateway::start(&cfg)?;
    let (status, _) = gw.wait_exit(Duration::from_secs(300))?;
    let log = gw.seen.join("\n");
    ensure!(status.success(), "first start exited {status}:\n{log}");

    let keys = d.join("state/keys");
    ensure!(mode(&keys)? == 0o700, "keys dir mode {:o}", mode(&keys)?);
    ensure!(mode(&keys.join("signing.key"))? == 0o600);
    ensure!(mode(&keys.join("x25519.key"))? == 0o600);
    let signer = ledger::keys::load_signer(&keys.join("signing.key"))?;
    ensure!(signer.name() == "gw-provision.example/log");
    let vkey = fs::read_to_string(keys.join("signing.vkey"))?;
    ensure!(vkey.trim_end() == signer.verifier().to_vkey(), "signing.vkey does not match");
    let fp = format!("{:08x}", signer.key_id());
    let generated: Vec<&str> = log.lines().filter(|l| l.contains("generated a new key")).collect();
    ensure!(generated.len() == 2, "two keys generated, logged:\n{log}");
    ensure!(generated[0].contains(&fp) && generated[0].contains(vkey.trim_end()), "{log}");
    // No private key material in the log: not the key lines, not their base64 parts.
    for f in ["signing.key", "x25519.key"] {
        let secret = fs::read_to_string(keys.join(f))?;
        let b64 = secret.trim_end().rsplit('+').next().context("key line")?;
        ensure!(!log.contains(b64) && !log.contains("PRIVATE+"), "{f} leaked into the log");
    }

    // The log is signed by the generated key.
    let v = Command::new(common::iovctl()?)
        .args(["store", "verify", "--store"])
        .arg(d.join("state/store"))
        .arg("--key")
        .arg(keys.join("signing.vkey"))
        .output()?;
    ensure!(v.status.success(), "verify: {}", String::from_utf8_lossy(&v.stdout));

    // The second start keeps the keys.
    let before = fs::read(keys.join("signing.key"))?;
    let mut gw = common::Gateway::start(&cfg)?;
    let (status, _) = gw.wait_exit(Duration::from_secs(300))?;
    ensure!(status.success(), "second start exited {status}");
    ensure!(fs::read(keys.join("signing.key"))? == before, "the key changed");
    ensure!(!gw.seen.iter().any(|l| l.contains("generated a new key")), "generated again");
    Ok(())
}

#[test]
fn a_provisioned_gateway_without_its_key_refuses_to_start() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    common::keys(d)?;
    fs::create_dir(d.join("state"))?;
    let cfg = d.join("gateway.toml");
    fs::write(&cfg, config(d, "provisioned"))?;
    let out = Command::new(env!("CARGO_BIN_EXE_iov-gateway"))
        .args(["run", "--config"])
        .arg(&cfg)
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(2), "exit {:?}: {err}", out.status.code());
    ensure!(
        err.contains("error: gateway.signing_key: ") && err.contains("\"provisioned\""),
        "stderr: {err}"
    );
    ensure!(!d.join("state/keys").exists(), "nothing may be created");
    Ok(())
}
