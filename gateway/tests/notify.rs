//! The daemon as systemd and Prometheus see it: the real `iov-gateway run` binary replaying the
//! GPS trace at its recorded pace (so it keeps running), with
//! - `NOTIFY_SOCKET` on a Unix datagram socket of the test and `WATCHDOG_USEC=200000`:
//!   `READY=1` arrives, then `WATCHDOG=1` more than once, then after SIGTERM `STOPPING=1`, and
//!   the process exits 0;
//! - `[metrics] listen` on a free loopback port: `GET /metrics` over real TCP gives Prometheus
//!   text whose counters match what the run did.

// They need the RocksDB store (the default feature `rocks`).
#![cfg(feature = "rocks")]

mod common;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

/// A config replaying the GPS trace with its recorded gaps, blocks sealed every second.
fn write_config(d: &Path, extra: &str) -> Result<std::path::PathBuf> {
    common::keys(d)?;
    let config = d.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[gateway]
signing_key = "signing.key"
store = "store"
shutdown_grace = "10s"
[block]
max_records = 100000
max_age = "1s"
[[dbc]]
file = "{dbc}"
[recipients]
factory = "factory.pub"
[sources.replay]
kind = "trace"
file = "{trace}"
pace = "recorded"
at_end = "continue"
[lanes.factory]
carries = "raw"
recipients = ["factory"]
{extra}
"#,
            dbc = common::fixtures().join("dbc/css-electronics/canmod-gps.dbc").display(),
            trace = common::fixtures().join("traces/canmod_gps_3BA199E2.log.gz").display(),
        ),
    )?;
    Ok(config)
}

/// Receives datagrams until one for which `f` is true, or fails after `timeout`.
fn recv_until(
    sock: &UnixDatagram,
    seen: &mut Vec<String>,
    timeout: Duration,
    mut f: impl FnMut(&str) -> bool,
) -> Result<String> {
    let end = Instant::now() + timeout;
    let mut buf = vec![0u8; 4096];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("no matching notification within {timeout:?}; got {seen:?}");
        }
        sock.set_read_timeout(Some(left))?;
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                seen.push(msg.clone());
                if f(&msg) {
                    return Ok(msg);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e).context("receiving a notification"),
        }
    }
}

fn has_line(msg: &str, line: &str) -> bool {
    msg.lines().any(|l| l == line)
}

#[test]
fn ready_then_watchdog_pings_then_stopping_on_sigterm_and_exit_zero() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    let config = write_config(d, "")?;
    let sock_path = d.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).context("binding the notify socket")?;
    let mut gw = common::Gateway::start_env(
        &config,
        &[("NOTIFY_SOCKET", sock_path.as_os_str()), ("WATCHDOG_USEC", "200000".as_ref())],
    )?;
    let mut seen = Vec::new();
    let ready = recv_until(&sock, &mut seen, Duration::from_secs(60), |m| has_line(m, "READY=1"))?;
    ensure!(
        !seen.iter().any(|m| has_line(m, "WATCHDOG=1") || has_line(m, "STOPPING=1")),
        "READY=1 came first: {seen:?}"
    );
    ensure!(ready.lines().any(|l| l.starts_with("STATUS=")), "READY carries a STATUS: {ready:?}");
    // Pings every 100 ms while the pipeline runs: more than one within a few seconds.
    let mut pings = 0;
    recv_until(&sock, &mut seen, Duration::from_secs(10), |m| {
        pings += usize::from(has_line(m, "WATCHDOG=1"));
        pings >= 3
    })?;
    gw.signal("-TERM")?;
    recv_until(&sock, &mut seen, Duration::from_secs(30), |m| has_line(m, "STOPPING=1"))?;
    let (status, stdout) = gw.wait_exit(Duration::from_secs(60))?;
    ensure!(status.success(), "gateway exited {status}; log:\n{}", gw.seen.join("\n"));
    ensure!(stdout.contains("stopped:"), "summary printed: {stdout}");
    Ok(())
}

/// One `GET path` over a fresh TCP connection: status line and body.
fn get(port: u16, path: &str) -> Result<(String, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).context("connecting")?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).context("reading the response")?;
    let (head, body) = resp.split_once("\r\n\r\n").context("no header end")?;
    Ok((head.lines().next().unwrap_or_default().to_string(), body.to_string()))
}

/// Parses the text format: every sample line is `name{labels} value`; returns
/// `name{labels}` -> value, and checks every sample's metric has HELP and TYPE lines.
fn parse(text: &str) -> Result<BTreeMap<String, f64>> {
    let mut typed = std::collections::BTreeSet::new();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').context("TYPE line")?;
            ensure!(kind == "counter" || kind == "gauge", "type {kind:?}");
            typed.insert(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').with_context(|| format!("line {line:?}"))?;
        let name = series.split('{').next().unwrap_or_default();
        ensure!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "metric name in {line:?}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            ensure!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "labels in {line:?}"
            );
        }
        ensure!(typed.contains(name), "{name} has no TYPE line before its samples");
        let v: f64 = value.parse().with_context(|| format!("value in {line:?}"))?;
        out.insert(series.to_string(), v);
    }
    Ok(out)
}

#[test]
fn metrics_over_tcp_count_what_the_run_did() -> Result<()> {
    let mut attempt = 0;
    let (tmp, mut gw, port) = loop {
        attempt += 1;
        // A port that was free a moment ago; another process may take it first: then retry.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let tmp = tempfile::tempdir()?;
        let config =
            write_config(tmp.path(), &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"))?;
        let mut gw = common::Gateway::start(&config)?;
        match gw.wait_for(Duration::from_secs(60), |l| l.contains("metrics listening")) {
            Ok(_) => break (tmp, gw, port),
            Err(e) if attempt < 5 && gw.seen.iter().any(|l| l.contains("metrics: binding")) => {
                eprintln!("port {port} was taken, retrying: {e}");
            }
            Err(e) => return Err(e),
        }
    };
    let _keep = tmp;
    // Wait for a sealed block (bounded), then scrape twice.
    gw.wait_for(Duration::from_secs(60), |l| l.contains("block durable"))?;
    let (status, body) = get(port, "/metrics")?;
    ensure!(status.starts_with("HTTP/1.1 200"), "{status}");
    let first = parse(&body)?;
    let (status, _) = get(port, "/nope")?;
    ensure!(status.starts_with("HTTP/1.1 404"), "{status}");
    gw.wait_for(Duration::from_secs(60), |l| l.contains("block durable"))?;
    let second = parse(&get(port, "/metrics")?.1)?;

    let v = |m: &BTreeMap<String, f64>, k: &str| -> Result<f64> {
        m.get(k).copied().with_context(|| format!("{k} missing in {m:?}"))
    };
    let rx = "iov_frames_received_total{iface=\"replay\"}";
    ensure!(v(&first, rx)? > 0.0, "frames were received");
    ensure!(v(&second, rx)? >= v(&first, rx)?, "frames received is monotonic");
    ensure!(v(&second, "iov_blocks_sealed_total")? >= 1.0, "a block was sealed");
    ensure!(
        v(&second, "iov_store_height")? >= v(&second, "iov_blocks_sealed_total")?,
        "the log holds at least the blocks this run sealed"
    );
    // A trace replay waits for the pipeline: it never drops.
    ensure!(
        v(&second, "iov_frames_dropped_total{iface=\"replay\",reason=\"pipeline_full\"}")? == 0.0
    );
    ensure!(v(&second, "iov_records_sealed_total")? <= v(&second, rx)?, "sealed <= received");
    // One raw lane: every sealed input record is one record of it.
    ensure!(
        v(&second, "iov_records_total{lane=\"factory\"}")?
            == v(&second, "iov_records_sealed_total")?,
        "the raw lane holds every sealed record"
    );
    ensure!(v(&second, "iov_records_total{lane=\"factory\"}")? > 0.0, "records were sealed");
    ensure!(
        v(&second, &format!("iov_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION")))? == 1.0
    );

    // The process metrics every Prometheus client exports (D261), from the daemon's own /proc.
    let cpu = "process_cpu_seconds_total";
    ensure!(v(&second, cpu)? > 0.0 && v(&second, cpu)? >= v(&first, cpu)?, "CPU time counts up");
    let rss = v(&second, "process_resident_memory_bytes")?;
    ensure!(rss > f64::from(1 << 20) && rss < f64::from(1 << 30), "resident {rss} bytes");
    ensure!(v(&second, "iov_process_resident_memory_peak_bytes")? >= rss, "peak >= current");
    let fds = v(&second, "process_open_fds")?;
    ensure!(fds >= 5.0 && fds <= v(&second, "process_max_fds")?, "{fds} descriptors open");
    ensure!(v(&second, "process_threads")? >= 3.0, "runtime workers and the writer thread");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs_f64();
    let started = v(&second, "process_start_time_seconds")?;
    ensure!(started <= now + 1.0 && started > now - 600.0, "started {started}, now {now}");

    gw.signal("-TERM")?;
    let (status, stdout) = gw.wait_exit(Duration::from_secs(60))?;
    ensure!(status.success(), "gateway exited {status}; log:\n{}", gw.seen.join("\n"));
    let line = stdout.lines().find(|l| l.contains("source replay:")).context("source line")?;
    let received: f64 = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("received="))
        .context("received=")?
        .parse()?;
    ensure!(received >= v(&second, rx)?, "the final count is at least the scraped one");
    let blocks: f64 = stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix("blocks="))
        .context("blocks=")?
        .parse()?;
    ensure!(blocks >= v(&second, "iov_blocks_sealed_total")?, "{blocks} blocks in the summary");
    Ok(())
}
