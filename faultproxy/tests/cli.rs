//! The `iov-faultproxy` binary: proxies, takes commands on its control socket (`ctl`), refuses
//! bad commands with a non-zero exit, and applies them.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port")
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ctl(control: SocketAddr, words: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_iov-faultproxy"))
        .arg("ctl")
        .arg(control.to_string())
        .args(words)
        .output()
        .expect("run ctl");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[test]
fn the_binary_proxies_and_obeys_its_control_socket() {
    // An echo upstream.
    let up = TcpListener::bind("127.0.0.1:0").expect("bind");
    let up_addr = up.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in up.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let (listen, control) = (free(), free());
    let _p = Kill(
        Command::new(env!("CARGO_BIN_EXE_iov-faultproxy"))
            .args(["--listen", &listen.to_string(), "--upstream", &up_addr.to_string()])
            .args(["--control", &control.to_string()])
            .stdin(Stdio::piped())
            .spawn()
            .expect("start iov-faultproxy"),
    );
    // Wait (bounded) for the control socket to answer.
    let end = Instant::now() + Duration::from_secs(30);
    while ctl(control, &["clear"]) != (true, "ok".into()) {
        assert!(Instant::now() < end, "the control socket never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut c = TcpStream::connect(listen).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    c.write_all(b"hi").expect("write");
    let mut two = [0u8; 2];
    c.read_exact(&mut two).expect("echo through the proxy");
    assert_eq!(&two, b"hi");

    let (ok, reply) = ctl(control, &["explode"]);
    assert!(!ok && reply.starts_with("error: unknown command"), "{reply}");
    assert_eq!(ctl(control, &["down"]), (true, "ok".into()));
    // The live connection is cut.
    let mut buf = [0u8; 1];
    match c.read(&mut buf) {
        Ok(0) | Err(_) => {}
        Ok(_) => panic!("data after down"),
    }
    // New ones are reset at connect or before any byte.
    if let Ok(mut c2) = TcpStream::connect(listen) {
        c2.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        assert!(matches!(c2.read(&mut buf), Ok(0) | Err(_)));
    }
}
