//! Child processes and what the simulator reads about them: the binaries beside `iov-sim`,
//! signals, CPU time and peak memory from `/proc`, a minimal HTTP/1.0 GET for metrics and
//! ledger state on loopback, and the Prometheus text format.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

/// Where `iov-gateway`, `iov-ledger` and `iovctl` are looked for: `IOV_SIM_BIN_DIR`, else the
/// folder of the running executable and its parent (a test binary lives in `deps/`).
pub fn binary(name: &str) -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("IOV_SIM_BIN_DIR") {
        let p = Path::new(&dir).join(name);
        if p.is_file() {
            return Ok(p);
        }
        bail!("{name} is not in IOV_SIM_BIN_DIR={}", p.display());
    }
    let exe = std::env::current_exe().context("locating iov-sim")?;
    let mut dir = exe.parent();
    for _ in 0..2 {
        let Some(d) = dir else { break };
        let p = d.join(name);
        if p.is_file() {
            return Ok(p);
        }
        dir = d.parent();
    }
    bail!(
        "{name} not found beside {} (build it: cargo build --release -p gateway -p ledger-node \
         -p iovctl, or set IOV_SIM_BIN_DIR)",
        exe.display()
    )
}

/// Sends a signal by name (`TERM`, `KILL`) with the `kill` command (no unsafe code here).
pub fn signal(child: &Child, sig: &str) -> Result<()> {
    let st = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .context("running kill")?;
    if !st.success() {
        bail!("kill -{sig} {} failed", child.id());
    }
    Ok(())
}

/// Waits for `child` to exit, SIGKILLing it after `timeout`.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Result<std::process::ExitStatus> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(st);
        }
        if Instant::now() > end {
            let _ = child.kill();
            return Ok(child.wait()?);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// CPU time and peak memory of one process, from `/proc/PID/stat` and `/proc/PID/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub cpu_s: f64,
    pub peak_rss_kib: u64,
}

/// Clock ticks per second of `/proc/PID/stat` times: 100 on every Linux architecture this
/// runs on (the kernel's USER_HZ is fixed at 100 for user space).
const USER_HZ: f64 = 100.0;

pub fn usage(pid: u32) -> Option<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some(Usage { cpu_s: ticks as f64 / USER_HZ, peak_rss_kib: hwm })
}

/// `GET path` over HTTP/1.0 (no chunked answers, the server closes): status and body.
pub fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let head_end =
        buf.windows(4).position(|w| w == b"\r\n\r\n").context("no end of the HTTP head")?;
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let status =
        head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).context("no HTTP status")?;
    Ok((status, buf[head_end + 4..].to_vec()))
}

/// Prometheus text: `name{labels}` -> value (comments skipped, labels kept verbatim).
pub fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// Sum of every sample of `name` whose labels contain all of `labels`.
pub fn metric_sum(m: &BTreeMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    m.iter()
        .filter(|(k, _)| k.split('{').next() == Some(name) && labels.iter().all(|l| k.contains(l)))
        .map(|(_, v)| v)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_parse_and_sum_by_label() {
        let m = parse_metrics(
            "# HELP x\n# TYPE x counter\n\
             iov_frames_dropped_total{iface=\"can1\",reason=\"quota\"} 3\n\
             iov_frames_dropped_total{iface=\"can2\",reason=\"quota\"} 4\n\
             iov_frames_dropped_total{iface=\"can2\",reason=\"kernel\"} 1\n\
             iov_store_height 17\n",
        );
        assert_eq!(metric_sum(&m, "iov_frames_dropped_total", &["reason=\"quota\""]), 7.0);
        assert_eq!(metric_sum(&m, "iov_frames_dropped_total", &[]), 8.0);
        assert_eq!(metric_sum(&m, "iov_store_height", &[]), 17.0);
        assert_eq!(metric_sum(&m, "iov_store", &[]), 0.0);
    }

    #[test]
    fn usage_of_this_process_is_read_from_proc() {
        let u = usage(std::process::id()).expect("own /proc");
        assert!(u.peak_rss_kib > 0, "{u:?}");
    }
}
