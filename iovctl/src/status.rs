//! `iovctl status`: what a running gateway reports on its local API (`GET /v1/status`), as a
//! table for people or the JSON as served.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::Value;

use crate::local_api::{self, ClientError};

pub const EXAMPLES: &str = "\
Examples:
  iovctl status
  iovctl status --socket /run/iov-gateway/api.sock --format json | jq .store

Exit status: 0 the gateway answered and its pipeline is healthy; 1 it answered but its
pipeline heartbeat is stalled, or the answer was not understood; 2 usage error or the gateway
cannot be reached (no socket, permission denied: the socket is 0660, owner and group).";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(clap::Args)]
pub struct Args {
    /// The gateway's API socket (`[api] socket` in its config).
    #[arg(long, value_name = "PATH", default_value = local_api::DEFAULT_SOCKET)]
    socket: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let resp = match local_api::get(&args.socket, "/v1/status") {
        Ok(r) => r,
        Err(e @ ClientError::Connect { .. }) => {
            eprintln!("iovctl: error: {e}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e.into()),
    };
    let status = resp.status;
    let body = resp.text()?;
    if status != 200 {
        eprintln!("iovctl: error: {}", local_api::error_text(status, &body));
        return Ok(ExitCode::from(1));
    }
    let v: Value =
        serde_json::from_str(&body).map_err(|e| anyhow::anyhow!("the status is not JSON: {e}"))?;
    match args.format {
        Format::Json => println!("{body}"),
        Format::Table => print!("{}", table(&v)),
    }
    let stalled = v.pointer("/pipeline/state").and_then(Value::as_str) == Some("stalled");
    Ok(if stalled { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or("-")
}

fn n(v: &Value, p: &str) -> String {
    match v.pointer(p) {
        Some(Value::Number(x)) => x.to_string(),
        _ => "-".into(),
    }
}

fn duration(secs: f64) -> String {
    let t = secs as u64;
    match t {
        0..=59 => format!("{secs:.1}s"),
        60..=3599 => format!("{}m {}s", t / 60, t % 60),
        3600..=86_399 => format!("{}h {}m", t / 3600, (t % 3600) / 60),
        _ => format!("{}d {}h", t / 86_400, (t % 86_400) / 3600),
    }
}

/// The status for people.
pub fn table(v: &Value) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let up = v.pointer("/uptime_s").and_then(Value::as_f64).unwrap_or(0.0);
    let _ = writeln!(
        o,
        "gateway   {} (key {}), version {}, up {}",
        s(v, "/origin"),
        s(v, "/key_id"),
        s(v, "/version"),
        duration(up)
    );
    let _ = writeln!(o, "clock     {} (times below are the gateway's own clock)", s(v, "/now"));
    let mut store = format!("{} blocks", n(v, "/store/size"));
    if v.pointer("/store/checkpoint/size").is_some() {
        let _ = write!(
            store,
            "; checkpoint size {} root {}",
            n(v, "/store/checkpoint/size"),
            s(v, "/store/checkpoint/root")
        );
    }
    if v.pointer("/store/last_block/height").is_some() {
        let _ = write!(
            store,
            "; last block {}: {} .. {}",
            n(v, "/store/last_block/height"),
            s(v, "/store/last_block/first"),
            s(v, "/store/last_block/last")
        );
    }
    let _ = writeln!(o, "store     {store}");
    let _ = writeln!(
        o,
        "pipeline  {} (heartbeat {}, last moved {} ms ago)",
        s(v, "/pipeline/state"),
        n(v, "/pipeline/heartbeat"),
        n(v, "/pipeline/heartbeat_age_ms")
    );
    let _ = writeln!(
        o,
        "sealed    {} blocks, {} records by this process",
        n(v, "/blocks_sealed"),
        n(v, "/records_sealed")
    );
    match v.get("history") {
        Some(h) if !h.is_null() => {
            let lanes: Vec<&str> = h
                .get("lanes")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "history   key {}, lanes sealed for it: {}",
                s(h, "/key"),
                if lanes.is_empty() { "none".into() } else { lanes.join(", ") }
            );
        }
        _ => {
            let _ = writeln!(o, "history   no history key (gateway.history_key)");
        }
    }
    let rows = |key: &str| v.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
    let sources = rows("sources");
    if !sources.is_empty() {
        let _ = writeln!(
            o,
            "\n{:<16} {:<7} {:>12} {:>12} {:>10} {:>10} {:>8} {:>10}",
            "SOURCE", "KIND", "RECEIVED", "DELIVERED", "DROPPED", "KERNEL", "ERRORS", "RECONNECTS"
        );
        for x in &sources {
            let _ = writeln!(
                o,
                "{:<16} {:<7} {:>12} {:>12} {:>10} {:>10} {:>8} {:>10}",
                s(x, "/name"),
                s(x, "/kind"),
                n(x, "/received"),
                n(x, "/delivered"),
                n(x, "/dropped_full"),
                n(x, "/kernel_drops"),
                n(x, "/error_frames"),
                n(x, "/reconnects")
            );
        }
    }
    let lanes = rows("lanes");
    if !lanes.is_empty() {
        let _ = writeln!(o, "\n{:<16} {:>12}", "LANE", "RECORDS");
        for x in &lanes {
            let _ = writeln!(o, "{:<16} {:>12}", s(x, "/name"), n(x, "/records"));
        }
    }
    let ledgers = rows("ledgers");
    if !ledgers.is_empty() {
        let _ = writeln!(o, "\n{:<16} {:>12} {:>12}", "LEDGER", "WITNESSED", "ACKED");
        for x in &ledgers {
            let _ = writeln!(
                o,
                "{:<16} {:>12} {:>12}",
                s(x, "/name"),
                n(x, "/witnessed"),
                n(x, "/acked")
            );
        }
    }
    o
}
