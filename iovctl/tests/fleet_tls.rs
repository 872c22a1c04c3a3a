//! The fleet commands over HTTPS: a real `iov-ledger` with a self-signed certificate, trusted
//! through `--ca-file`; without it the connection is refused (exit 2), never downgraded.

mod fleet_common;

use std::os::unix::fs::PermissionsExt as _;

use anyhow::{ensure, Result};
use fleet_common::*;

#[test]
fn gateways_over_https_with_a_ca_file_and_refused_without() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    std::fs::write(d.join("cert.pem"), ck.cert.pem())?;
    std::fs::write(d.join("key.pem"), ck.signing_key.serialize_pem())?;
    std::fs::set_permissions(d.join("key.pem"), std::fs::Permissions::from_mode(0o600))?;
    let cosigner = ledger::keys::generate_cosigner("tls.example/ledger")?;
    ledger::keys::save_cosigner(&d.join("witness.key"), &cosigner)?;
    let gw = ledger::keys::generate_signer("iov.example/gw/tls")?;
    ledger::keys::write_secret_file(
        &d.join("admin.token"),
        format!("{ADMIN_SECRET}\n").as_bytes(),
    )?;
    std::fs::write(
        d.join("ledger.toml"),
        format!(
            "[ledger]\nname = \"tls.example\"\ncosigner_key = \"witness.key\"\nstore = \"store\"\n\
             [listen]\naddress = \"127.0.0.1:0\"\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n\
             [[tokens]]\nname = \"ops\"\nblake3 = \"{}\"\nscopes = [\"admin\"]\n\
             [[gateways]]\nvkey = \"{}\"\nunit = \"VIN-TLS\"\nlanes = [\"factory\"]\n",
            blake3::hash(ADMIN_SECRET.as_bytes()).to_hex(),
            gw.verifier().to_vkey()
        ),
    )?;
    let ledger = start_ledger(d)?;
    let url = format!("https://localhost:{}", ledger.addr.port());
    let token = d.join("admin.token").display().to_string();
    let ca = d.join("cert.pem").display().to_string();
    let o = iovctl(&[
        "gateways",
        "--ledger",
        &url,
        "--token-file",
        &token,
        "--ca-file",
        &ca,
        "--format",
        "json",
    ])?;
    ensure!(code(&o) == 0, "https with --ca-file: {}", stderr(&o));
    let list: Vec<serde_json::Value> = serde_json::from_str(stdout(&o).trim())?;
    ensure!(list.len() == 1 && list[0]["unit"] == "VIN-TLS", "{list:?}");
    let o = iovctl(&["gateways", "--ledger", &url, "--token-file", &token])?;
    ensure!(
        code(&o) == 2 && stdout(&o).is_empty(),
        "https without the CA: exit {}: {}",
        code(&o),
        stderr(&o)
    );
    ensure!(stderr(&o).contains("cannot reach"), "{}", stderr(&o));
    Ok(())
}
