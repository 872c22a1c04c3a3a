//! `iovctl status` and `iovctl history --local` at the edges a gateway cannot show: bad
//! arguments, no gateway, and a peer that breaks off or refuses (a scripted Unix-socket peer
//! injecting those faults). The happy paths against the real gateway are in
//! `gateway/tests/api.rs`.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Output};

fn iovctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_iovctl")).args(args).output().expect("run iovctl")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Answers one connection on `path` with `response` after reading the request head.
fn one_answer(path: &Path, response: &'static str) -> std::thread::JoinHandle<String> {
    let l = UnixListener::bind(path).expect("bind");
    std::thread::spawn(move || {
        let (s, _) = l.accept().expect("accept");
        let mut r = BufReader::new(s);
        let mut request = String::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            request.push_str(&line);
        }
        let mut s = r.into_inner();
        let _ = s.write_all(response.as_bytes());
        request
    })
}

#[test]
fn bad_times_are_usage_errors_with_exit_2() {
    let o = iovctl(&["history", "--local", "--from", "yesterday", "--to", "now"]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("--from") && e.contains("RFC 3339"), "{e}");
    let o = iovctl(&["history", "--local", "--from", "-2 fortnights", "--to", "now"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = iovctl(&["history", "--local", "--from", "now", "--to", "-1h"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--from is after --to"), "{}", stderr(&o));
    let o = iovctl(&["history", "--from", "-1h", "--to", "now"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--local"), "{}", stderr(&o));
}

#[test]
fn an_absent_gateway_is_exit_2_naming_the_socket() {
    let d = tempfile::tempdir().expect("tempdir");
    let sock = d.path().join("api.sock").display().to_string();
    for args in [
        vec!["status", "--socket", &sock],
        vec!["history", "--local", "--socket", &sock, "--from", "-1h", "--to", "now"],
    ] {
        let o = iovctl(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let e = stderr(&o);
        assert!(e.contains("cannot reach the gateway") && e.contains(&sock), "{e}");
    }
}

#[test]
fn help_shows_examples_and_exit_codes() {
    for cmd in ["status", "history"] {
        let o = iovctl(&[cmd, "--help"]);
        assert!(o.status.success());
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("Examples:") && out.contains("Exit status:"), "{out}");
    }
}

#[test]
fn a_refusal_and_a_cut_off_answer_are_exit_1() {
    let d = tempfile::tempdir().expect("tempdir");
    let sock = d.path().join("api.sock");
    let s = sock.display().to_string();
    let body = r#"{"error":{"code":"lane_not_sealed_for_gateway","message":"lane \"factory\" is not sealed"}}"#;
    let refusal: &'static str = Box::leak(
        format!(
            "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_boxed_str(),
    );
    let peer = one_answer(&sock, refusal);
    let o = iovctl(&[
        "history", "--local", "--socket", &s, "--from", "0", "--to", "10", "--lane", "factory",
    ]);
    let request = peer.join().expect("peer");
    assert!(
        request.starts_with("GET /v1/history?from=0&to=10&limit=10000&lane=factory "),
        "{request}"
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("lane_not_sealed_for_gateway: lane \"factory\""), "{}", stderr(&o));

    // A head and one row, then the stream stops without its end line.
    std::fs::remove_file(&sock).expect("rm");
    let cut = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
               2a\r\n{\"kind\":\"head\",\"clock\":\"gateway\"}\n{\"k\":1}\n\r\n0\r\n\r\n";
    let peer = one_answer(&sock, cut);
    let o = iovctl(&["history", "--local", "--socket", &s, "--from", "0", "--to", "10"]);
    peer.join().expect("peer");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("cut off"), "{}", stderr(&o));
}
