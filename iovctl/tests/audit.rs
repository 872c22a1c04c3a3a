//! `iovctl audit` against two real `iov-ledger` processes (factory and city, each the other's
//! peer) on loopback. The ledger binary is taken from the same target directory (a workspace
//! build builds it; `cargo build --release -p ledger-node` otherwise).

#[path = "../../ledger-node/tests/support/pair.rs"]
mod pair;

use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use pair::*;

fn audit(args: &[&str]) -> Result<(i32, String, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_iovctl")).arg("audit").args(args).output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// A healthy pair with a few accepted gateway checkpoints on each side, published cosigned.
fn healthy() -> Result<(Pair, Node, Node)> {
    let mut p = Pair::new(FAST)?;
    let f = p.factory.start()?;
    let c = p.city.start()?;
    for _ in 0..3 {
        let old = p.gf.size();
        p.gf.grow(2);
        assert_eq!(f.add_checkpoint(&p.gf.add_checkpoint(old))?.0, 200);
    }
    p.gc.grow(1);
    assert_eq!(c.add_checkpoint(&p.gc.add_checkpoint(0))?.0, 200);
    let t = Duration::from_secs(30);
    wait_for("factory publishes 3", t, || Ok((size_of(&f.checkpoint()?) == 3).then_some(())))?;
    wait_for("city publishes 1", t, || Ok((size_of(&c.checkpoint()?) == 1).then_some(())))?;
    // And each has witnessed the other's newest (the view checks compare against it).
    wait_for("views", t, || {
        Ok((f.peers()?["peers"][0]["witnessed_size"] == 1
            && c.peers()?["peers"][0]["witnessed_size"] == 3)
            .then_some(()))
    })?;
    Ok((p, f, c))
}

#[test]
fn a_healthy_pair_audits_clean_in_both_formats() -> Result<()> {
    let (p, f, c) = healthy()?;
    // The simulator's exact call.
    let (code, out, err) = audit(&["--ledger", &f.base, "--peer", &c.base])?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("result: OK"), "{out}");
    for check in ["checkpoint", "tiles", "tree", "leaves", "peer cosignature", "peer's view"] {
        assert!(
            out.lines().any(|l| l.contains(check) && l.contains(" ok ")),
            "{check} not ok in\n{out}"
        );
    }
    // Both directions: the city's log is audited against the factory's view too.
    assert!(out.contains("city.example/ledger") && out.contains("factory.example/ledger"));

    let token = p.factory.dir.path().join("admin.token");
    std::fs::write(&token, format!("{ADMIN_SECRET}\n"))?;
    let tf = token.to_str().unwrap_or_default();
    let (code, out, err) =
        audit(&["--ledger", &f.base, "--peer", &c.base, "--token-file", tf, "--format", "json"])?;
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(v["ok"], true);
    let checks = v["checks"].as_array().cloned().unwrap_or_default();
    let leaves = checks
        .iter()
        .find(|c| c["subject"] == "factory.example/ledger" && c["check"] == "leaves")
        .cloned()
        .unwrap_or_default();
    assert!(
        leaves["detail"].as_str().unwrap_or("").contains("signed by its enrolled key"),
        "with a token the gateway keys are checked: {leaves}"
    );
    assert!(checks.iter().any(|c| c["check"] == "evidence" && c["status"] == "ok"));

    // Only the ledger, no peer: its log still verifies.
    let (code, out, err) = audit(&["--ledger", &f.base])?;
    assert_eq!(code, 0, "{out}{err}");
    Ok(())
}

#[test]
fn wrong_pinned_keys_fail_and_an_unreachable_ledger_is_a_usage_error() -> Result<()> {
    let (p, f, c) = healthy()?;
    // A --log-key that is not the ledger's: the checkpoint does not verify, exit 1.
    let (code, out, err) =
        audit(&["--ledger", &f.base, "--peer", &c.base, "--log-key", &p.city.log_vkey()])?;
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("result: FAILED"), "{out}");
    // A --peer-key that is not the peer's cosigner: named.
    let (code, out, err) = audit(&[
        "--ledger",
        &f.base,
        "--peer",
        &c.base,
        "--peer-key",
        &p.factory.cosigner_vkey(),
        "--format",
        "json",
    ])?;
    assert_eq!(code, 1, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(v["ok"], false);
    // Nothing listening: exit 2.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        format!("http://{}", l.local_addr()?)
    };
    let (code, out, err) = audit(&["--ledger", &dead, "--peer", &c.base])?;
    assert_eq!(code, 2, "{out}{err}");
    // A token the ledger refuses: exit 2, named.
    let bad = p.factory.dir.path().join("bad.token");
    std::fs::write(&bad, "not-the-secret")?;
    let (code, out, err) = audit(&[
        "--ledger",
        &f.base,
        "--peer",
        &c.base,
        "--token-file",
        bad.to_str().unwrap_or_default(),
    ])?;
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("token refused"), "{err}");
    Ok(())
}
