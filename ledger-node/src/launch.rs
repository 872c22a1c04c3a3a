//! The line `iov-ledger run` prints on stdout once it serves, and waiting for it.
//!
//! `listening ADDR` or `listening ADDR metrics ADDR`: one machine-readable line for supervisors,
//! the simulator and the tests, which bind port 0 and learn the ports from it. The daemon prints
//! it with [`Listening`]'s `Display`, and every reader parses it with [`wait_listening`], so the
//! format has one owner.

use std::fmt;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout};
use std::str::FromStr;
use std::time::Duration;

/// The bound addresses a starting ledger reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listening {
    /// The main listener (protocol, query and admin API).
    pub addr: SocketAddr,
    /// The metrics listener, when one is configured.
    pub metrics: Option<SocketAddr>,
}

impl fmt::Display for Listening {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.metrics {
            Some(m) => write!(f, "listening {} metrics {m}", self.addr),
            None => write!(f, "listening {}", self.addr),
        }
    }
}

impl FromStr for Listening {
    type Err = LaunchError;

    fn from_str(line: &str) -> Result<Listening, LaunchError> {
        let bad = || LaunchError::BadLine { line: line.trim_end().to_owned() };
        let words: Vec<&str> = line.split_whitespace().collect();
        let (addr, metrics) = match words.as_slice() {
            ["listening", addr] => (addr, None),
            ["listening", addr, "metrics", m] => (addr, Some(m.parse().map_err(|_| bad())?)),
            _ => return Err(bad()),
        };
        Ok(Listening { addr: addr.parse().map_err(|_| bad())?, metrics })
    }
}

/// Why a starting ledger's addresses could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    #[error("iov-ledger printed no `listening` line within {} s (see its log)", timeout.as_secs())]
    NoLine { timeout: Duration },
    #[error("iov-ledger's first line is not `listening ADDR [metrics ADDR]`: {line:?}")]
    BadLine { line: String },
    #[error("iov-ledger was started without a piped stdout")]
    NoStdout,
}

/// Waits at most `timeout` for the first line of a starting ledger's stdout and parses it; the
/// rest of stdout is read and dropped in the background, so the ledger never blocks on a full
/// pipe. The caller kills the child on an error.
pub fn wait_listening(stdout: ChildStdout, timeout: Duration) -> Result<Listening, LaunchError> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(first)) = lines.next() {
            let _ = tx.send(first);
        }
        for _ in lines {}
    });
    rx.recv_timeout(timeout).map_err(|_| LaunchError::NoLine { timeout })?.parse()
}

/// [`wait_listening`] on a child spawned with `stdout(Stdio::piped())`; on an error the child
/// is killed and reaped, so the caller only reports it.
pub fn wait_child_listening(
    child: &mut Child,
    timeout: Duration,
) -> Result<Listening, LaunchError> {
    let result = match child.stdout.take() {
        Some(stdout) => wait_listening(stdout, timeout),
        None => Err(LaunchError::NoStdout),
    };
    if result.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_prints_and_parses_both_ways() {
        let both = Listening {
            addr: "127.0.0.1:4000".parse().expect("addr"),
            metrics: Some("127.0.0.1:4001".parse().expect("addr")),
        };
        assert_eq!(both.to_string(), "listening 127.0.0.1:4000 metrics 127.0.0.1:4001");
        assert_eq!(both.to_string().parse::<Listening>().expect("parses"), both);
        let main_only = Listening { metrics: None, ..both };
        assert_eq!(main_only.to_string(), "listening 127.0.0.1:4000");
        assert_eq!("listening 127.0.0.1:4000\n".parse::<Listening>().expect("parses"), main_only);
        for bad in [
            "",
            "listening",
            "listening nowhere",
            "ready 127.0.0.1:1",
            "listening 127.0.0.1:1 metrics",
        ] {
            let e = bad.parse::<Listening>().expect_err(bad);
            assert!(matches!(e, LaunchError::BadLine { .. }), "{bad}: {e}");
        }
    }
}
