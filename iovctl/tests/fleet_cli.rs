//! Conventions of the fleet commands that need no ledger: help with examples and exit codes,
//! usage errors and an unreachable ledger are exit 2, an unreadable bundle is exit 1.

use std::process::{Command, Output};

fn iovctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_iovctl")).args(args).output().expect("run iovctl")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn every_fleet_command_has_examples_and_exit_codes_in_its_help() {
    for cmd in [
        &["history", "--help"][..],
        &["enroll", "--help"],
        &["gateways", "--help"],
        &["plot", "--help"],
        &["proof", "export", "--help"],
        &["proof", "verify", "--help"],
    ] {
        let o = iovctl(cmd);
        assert!(o.status.success(), "{cmd:?}");
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("Examples:") && out.contains("Exit status:"), "{cmd:?}: {out}");
    }
}

#[test]
fn usage_errors_and_an_unreachable_ledger_are_exit_2() {
    // A port nobody listens on: bind, note it, release.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let url = format!("http://127.0.0.1:{port}");
    let d = tempfile::tempdir().expect("tempdir");
    let key = d.path().join("org.key");
    let k = ledger::keys::X25519Key::generate("org").expect("key");
    ledger::keys::save_x25519(&key, &k).expect("save");
    let key = key.display().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["history", "--ledger", &url, "--from", "-1h", "--to", "now", "--key", &key],
            "--vehicle",
        ),
        (
            vec!["history", "--ledger", &url, "--vehicle", "V", "--from", "-1h", "--to", "now"],
            "--key",
        ),
        (
            vec![
                "history",
                "--ledger",
                &url,
                "--vehicle",
                "V",
                "--from",
                "now",
                "--to",
                "-1h",
                "--key",
                &key,
            ],
            "after --to",
        ),
        (
            vec![
                "history",
                "--ledger",
                &url,
                "--vehicle",
                "V",
                "--from",
                "-1h",
                "--to",
                "now",
                "--key",
                &key,
            ],
            "cannot reach",
        ),
        (
            vec![
                "plot",
                "--ledger",
                &url,
                "--vehicle",
                "V",
                "--from",
                "-1h",
                "--to",
                "now",
                "--key",
                &key,
                "--out",
                "x.jpg",
            ],
            ".png or .svg",
        ),
        (vec!["proof", "verify", "/nonexistent/b.iovproof", "--ledger-key", "x"], "--ledger-key"),
    ];
    for (args, says) in cases {
        let o = iovctl(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "{args:?} printed to stdout");
    }
}

#[test]
fn a_file_that_is_not_a_bundle_fails_verification_with_exit_1() {
    let d = tempfile::tempdir().expect("tempdir");
    let f = d.path().join("x.iovproof");
    std::fs::write(&f, "iov.example/range-proof@v1\ngateway nope\n").expect("write");
    let c = ledger::keys::generate_cosigner("example.com/ledger").expect("cosigner");
    let o = iovctl(&[
        "proof",
        "verify",
        &f.display().to_string(),
        "--ledger-key",
        &c.verifier().to_vkey(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("VERIFICATION FAILED"), "{}", stderr(&o));
}
