//! Prometheus text metrics (exposition format 0.0.4) over a deliberately tiny HTTP/1.1 server:
//! one connection at a time, at most [`MAX_REQUEST`] bytes of request read within
//! [`IO_TIMEOUT`], one response, then the connection is closed. `GET /metrics` answers 200 with
//! the text, anything else 404. It is meant for a local scraper on loopback (config refuses
//! other addresses unless `allow_remote`).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::health::{Health, SourceKindLabel};
use crate::source::SourceStats;
use crate::sync::AgentStats;

/// The most request bytes read before answering.
pub const MAX_REQUEST: usize = 8 * 1024;
/// How long one connection may take to send its request and take the response.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Escapes a label value (`\`, `"`, newline) as the text format requires.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders every metric from `health` (no sync agents).
pub fn render(health: &Health) -> String {
    render_with(health, &[])
}

/// Renders every metric from `health` and the sync agents' `sync` stats.
pub fn render_with(health: &Health, sync: &[Arc<AgentStats>]) -> String {
    let mut o = String::new();
    let sources = health.sources();
    let frames: Vec<_> = sources.iter().filter(|s| s.kind == SourceKindLabel::Frames).collect();
    let r = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let retention = health.retention();

    // A counter with one series per CAN or trace source.
    let per_iface = |o: &mut String, name: &str, help: &str, value: fn(&SourceStats) -> u64| {
        header(o, name, "counter", help);
        for s in &frames {
            let _ = writeln!(o, "{name}{{iface=\"{}\"}} {}", esc(&s.label), value(&s.stats));
        }
    };
    per_iface(&mut o, "iov_frames_received_total", "CAN frames read, per interface.", |s| {
        s.received.load(Ordering::Relaxed)
    });
    header(
        &mut o,
        "iov_frames_dropped_total",
        "counter",
        "CAN frames lost, per interface and reason (pipeline_full: dropped by the gateway; kernel: socket queue overflow; quota: refused while the store is over its quota).",
    );
    for s in &frames {
        let l = esc(&s.label);
        let _ = writeln!(
            o,
            "iov_frames_dropped_total{{iface=\"{l}\",reason=\"pipeline_full\"}} {}",
            r(&s.stats.dropped_full)
        );
        let _ = writeln!(
            o,
            "iov_frames_dropped_total{{iface=\"{l}\",reason=\"kernel\"}} {}",
            r(&s.stats.kernel_drops)
        );
        if let Some(ret) = &retention {
            let _ = writeln!(
                o,
                "iov_frames_dropped_total{{iface=\"{l}\",reason=\"quota\"}} {}",
                ret.dropped_quota(&s.name)
            );
        }
    }
    per_iface(&mut o, "iov_error_frames_total", "CAN error frames, per interface.", |s| {
        s.error_frames.load(Ordering::Relaxed)
    });
    per_iface(
        &mut o,
        "iov_can_reconnects_total",
        "CAN sockets reopened after the interface went down, per interface.",
        |s| s.reconnects.load(Ordering::Relaxed),
    );
    per_iface(
        &mut o,
        "iov_source_wakeups_total",
        "Times a CAN or trace source woke up to read a batch of frames, per interface.",
        |s| s.wakeups.load(Ordering::Relaxed),
    );
    header(&mut o, "iov_mqtt_messages_total", "counter", "MQTT messages received, per source.");
    for s in sources.iter().filter(|s| s.kind == SourceKindLabel::Mqtt) {
        let _ = writeln!(
            o,
            "iov_mqtt_messages_total{{source=\"{}\"}} {}",
            esc(&s.name),
            r(&s.stats.received)
        );
    }
    if let Some((start, d)) = health.durable() {
        header(
            &mut o,
            "iov_records_sealed_total",
            "counter",
            "Records (every lane) in blocks made durable by this process.",
        );
        let _ = writeln!(o, "iov_records_sealed_total {}", d.records);
        header(
            &mut o,
            "iov_records_total",
            "counter",
            "Records in durable blocks sealed by this process, per lane.",
        );
        for (lane, n) in &d.lane_records {
            let _ = writeln!(o, "iov_records_total{{lane=\"{}\"}} {n}", esc(lane));
        }
        header(
            &mut o,
            "iov_blocks_sealed_total",
            "counter",
            "Blocks sealed and made durable by this process.",
        );
        let _ = writeln!(o, "iov_blocks_sealed_total {}", d.size.saturating_sub(start));
        header(&mut o, "iov_store_height", "gauge", "Blocks in the gateway's log (log size).");
        let _ = writeln!(o, "iov_store_height {}", d.size);
    }
    if let Some(ret) = &retention {
        if let Some(bytes) = ret.store_bytes() {
            header(
                &mut o,
                "iov_store_bytes",
                "gauge",
                "Bytes the store occupies on disk (every file in its directory), measured after each append.",
            );
            let _ = writeln!(o, "iov_store_bytes {bytes}");
        }
        header(
            &mut o,
            "iov_store_pruned_below",
            "gauge",
            "Lanes of every lower height were pruned by retention (headers and proofs kept).",
        );
        let _ = writeln!(o, "iov_store_pruned_below {}", ret.pruned_below());
        if let Some(q) = ret.quota {
            header(&mut o, "iov_retention_quota_bytes", "gauge", "The configured store quota.");
            let _ = writeln!(o, "iov_retention_quota_bytes {q}");
        }
        header(
            &mut o,
            "iov_retention_pruned_blocks_total",
            "counter",
            "Blocks whose lanes retention pruned: kind=acked (every ledger held them), kind=unsynced (dropped by when_full = drop-oldest).",
        );
        let (acked, unsynced) = ret.pruned_blocks();
        let _ = writeln!(o, "iov_retention_pruned_blocks_total{{kind=\"acked\"}} {acked}");
        let _ = writeln!(o, "iov_retention_pruned_blocks_total{{kind=\"unsynced\"}} {unsynced}");
        header(
            &mut o,
            "iov_retention_alarm",
            "gauge",
            "1 while retention had to go past acknowledged blocks (refusing input, or dropping unsynced lanes).",
        );
        let _ = writeln!(o, "iov_retention_alarm {}", u8::from(ret.alarm()));
    }
    render_sync(&mut o, sync);
    header(&mut o, "iov_build_info", "gauge", "Always 1; the version of the running binary.");
    let _ = writeln!(o, "iov_build_info{{version=\"{}\"}} 1", esc(env!("CARGO_PKG_VERSION")));
    // CPU time, memory and descriptors, as every Prometheus client exports them (D261).
    process_metrics::render_self(&mut o);
    o
}

/// Per-ledger sync metrics (D150).
fn render_sync(o: &mut String, sync: &[Arc<AgentStats>]) {
    if sync.is_empty() {
        return;
    }
    let r = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    type Get = fn(&AgentStats) -> &std::sync::atomic::AtomicU64;
    let gauges: [(&str, &str, &str, Get); 6] = [
        (
            "iov_ledger_acked_height",
            "gauge",
            "Blocks 0..N the ledger holds in full (its acked cursor).",
            |s| &s.acked,
        ),
        (
            "iov_ledger_witnessed_height",
            "gauge",
            "Size of the latest checkpoint the ledger cosigned (verified receipt).",
            |s| &s.witnessed,
        ),
        (
            "iov_ledger_sync_lag_blocks",
            "gauge",
            "Durable blocks the ledger does not hold yet.",
            |s| &s.lag,
        ),
        (
            "iov_ledger_link_up",
            "gauge",
            "1 when the last request reached the ledger, else 0.",
            |s| &s.link_up,
        ),
        ("iov_ledger_bytes_sent_total", "counter", "Request body bytes sent to the ledger.", |s| {
            &s.bytes_sent
        }),
        (
            "iov_ledger_blocks_sent_total",
            "counter",
            "Blocks the ledger confirmed receiving from this process.",
            |s| &s.blocks_sent,
        ),
    ];
    for (name, kind, help, get) in gauges {
        header(o, name, kind, help);
        for s in sync {
            let _ = writeln!(o, "{name}{{ledger=\"{}\"}} {}", esc(&s.ledger), r(get(s)));
        }
    }
    header(o, "iov_ledger_sync_errors_total", "counter", "Failed sync steps, per ledger and kind.");
    for s in sync {
        for (kind, n) in s.errors() {
            let _ = writeln!(
                o,
                "iov_ledger_sync_errors_total{{ledger=\"{}\",kind=\"{}\"}} {n}",
                esc(&s.ledger),
                kind.label()
            );
        }
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` (no sync agents).
pub async fn serve(listener: TcpListener, health: Arc<Health>, shutdown: CancellationToken) {
    serve_with(listener, health, Arc::from(Vec::new()), shutdown).await
}

/// Serves `GET /metrics` on `listener` until `shutdown`, with the sync agents' stats.
pub async fn serve_with(
    listener: TcpListener,
    health: Arc<Health>,
    sync: Arc<[Arc<AgentStats>]>,
    shutdown: CancellationToken,
) {
    loop {
        let conn = tokio::select! {
            () = shutdown.cancelled() => return,
            c = listener.accept() => c,
        };
        match conn {
            Ok((stream, peer)) => {
                let r = tokio::time::timeout(IO_TIMEOUT, answer(stream, &health, &sync)).await;
                match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "metrics request failed"),
                    Err(_) => tracing::debug!(%peer, "metrics request timed out"),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics: accept failed");
                // Out of file descriptors and the like: don't spin.
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
    }
}

async fn answer(
    mut s: TcpStream,
    health: &Health,
    sync: &[Arc<AgentStats>],
) -> std::io::Result<()> {
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut n = 0;
    while n < buf.len() {
        let got = s.read(&mut buf[n..]).await?;
        if got == 0 {
            break;
        }
        n += got;
        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let line = buf[..n].split(|&b| b == b'\r' || b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, target) = (parts.next(), parts.next());
    let (status, ctype, body) = if method == Some(b"GET") && target == Some(b"/metrics") {
        ("200 OK", "text/plain; version=0.0.4; charset=utf-8", render_with(health, sync))
    } else {
        ("404 Not Found", "text/plain; charset=utf-8", "try GET /metrics\n".to_string())
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(body.as_bytes()).await?;
    s.shutdown().await
}
