//! `iovctl history --local`: the gateway's own history over a time range, decoded, from its
//! local API (`GET /v1/history`), following `next` cursors until the range is done.

use std::io::{self, BufRead as _, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use serde_json::Value;

use crate::local_api::{self, ClientError};

pub const EXAMPLES: &str = "\
Examples:
  iovctl history --local --from -2h --to now
  iovctl history --local --from 2021-07-26T04:40:55Z --to 2021-07-26T04:41:00Z \\
      --signals gnss_pos.Latitude,gnss_pos.Longitude --format csv > fix.csv
  iovctl history --local --from -15m --to now --lane local --format jsonl | jq .value
  iovctl history --ledger https://factory.example:7480 --vehicle VIN123 --from -2h --to now \
      --key keys/factory/x25519.key --token-file analyst.token --dbc canmod-gps.dbc
  iovctl history --ledger http://127.0.0.1:7480 --vehicle VIN123 --from 2021-07-26T04:40:55Z \
      --to 2021-07-26T04:41:00Z --key org.key --token-file t --ledger-key ledger.vkey \
      --signals gnss_speed.Speed --format jsonl

With --ledger: the vehicle's gateways are looked up (GET /v1/units/{id}/gateways), their blocks
over the range fetched page by page, and each page checked before any of its rows is printed:
the gateway's signature on the checkpoint, the ledger's cosignature (--ledger-key pins the
ledger's cosigner vkey, else it is taken from /v1/link with a warning), the range proof that
the blocks are all the blocks at those heights, the chain between pages, the boundary blocks
on both sides of the range, every lane's digest; then this organisation's lanes are opened
with --key and raw frames decoded with --dbc. Rows are in time order within each page.

Times: RFC 3339 in UTC (2021-07-26T04:40:55Z, fractions allowed), `now`, relative to now
(-2h, -15m, -30s, -1d), or nanoseconds since the Unix epoch. Both ends are inclusive, and are
the gateway's own clock (record timestamps as sealed).

Output: one row per decoded signal value (ts, source, message, signal, value, unit); frames no
DBC describes show their id and data. jsonl prints the rows as the API sends them. With
--ledger, --format parquet writes an Apache Parquet file to stdout (redirect it:
`... --format parquet > speed.parquet`).

Exit status:
  --ledger: 0 everything printed was verified and the range is complete; 1 a
verification failure (named on stderr: what, which height, expected vs got; rows of pages
verified before it may have been printed, nothing after it); 2 usage error, the ledger cannot
be reached or refused the request (401 no/unknown token, 403 scope, unknown vehicle).

  --local: 0 ok; 1 the gateway refused the request or the answer broke off (lane not sealed
for the gateway's key, store damage); 2 usage error (bad time, unknown option) or the gateway
cannot be reached.";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Jsonl,
    /// Apache Parquet on stdout (--ledger only; stdout must not be a terminal).
    Parquet,
}

#[derive(clap::Args)]
pub struct Args {
    /// Ask the gateway this runs on, through its local API.
    #[arg(long, conflicts_with = "ledger")]
    local: bool,
    /// Ask a ledger instead (--ledger URL --vehicle ID --key FILE --token-file FILE): every
    /// answer is verified (see `iovctl history --help` below and iovctl/README.md).
    #[command(flatten)]
    pub(crate) remote: crate::fleet_cli::LedgerOpts,
    /// The gateway's API socket (`[api] socket` in its config).
    #[arg(long, value_name = "PATH", default_value = local_api::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Start of the range (inclusive).
    #[arg(long, value_name = "TIME", value_parser = parse_time_arg, allow_hyphen_values = true)]
    pub(crate) from: u64,
    /// End of the range (inclusive).
    #[arg(long, value_name = "TIME", value_parser = parse_time_arg, allow_hyphen_values = true)]
    pub(crate) to: u64,
    /// Only these signals (comma separated; Message.Signal or Signal).
    #[arg(long, value_name = "NAMES")]
    pub(crate) signals: Option<String>,
    /// The lane to read (default: the one lane sealed for the gateway's key; with --ledger:
    /// every lane sealed for --key).
    #[arg(long, value_name = "NAME")]
    pub(crate) lane: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
    /// Stop after this many rows.
    #[arg(long, value_name = "N")]
    pub(crate) limit: Option<u64>,
    /// Rows per request (the gateway caps it with api.max_rows).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    page: u64,
}

pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

pub(crate) fn parse_time_arg(s: &str) -> Result<u64, String> {
    parse_time(s, now_ns())
}

/// `now`, `-2h` (relative to `now`), RFC 3339 in UTC, or ns since the Unix epoch.
pub fn parse_time(s: &str, now: u64) -> Result<u64, String> {
    let t = s.trim();
    if t == "now" {
        return Ok(now);
    }
    if let Some(rel) = t.strip_prefix('-') {
        let d = humantime::parse_duration(rel)
            .map_err(|e| format!("{s:?}: not a relative time like -2h, -15m, -30s ({e})"))?;
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        return now.checked_sub(ns).ok_or_else(|| format!("{s:?} is before 1970"));
    }
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse::<u64>().map_err(|e| format!("{s:?}: {e}"));
    }
    let st = humantime::parse_rfc3339(t).map_err(|_| {
        format!(
            "{s:?} is not a time: use RFC 3339 in UTC (2021-07-26T04:40:55Z), now, -2h / -15m, or ns since the epoch"
        )
    })?;
    let d = st.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    u64::try_from(d.as_nanos()).map_err(|e| format!("{s:?}: {e}"))
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    if args.remote.ledger.is_some() {
        return crate::ledger_history::run(args);
    }
    if !args.local {
        eprintln!("iovctl: error: history needs --local or --ledger URL");
        return Ok(ExitCode::from(2));
    }
    if args.format == Format::Parquet {
        eprintln!("iovctl: error: --format parquet is available with --ledger only");
        return Ok(ExitCode::from(2));
    }
    if args.from > args.to {
        eprintln!("iovctl: error: --from is after --to");
        return Ok(ExitCode::from(2));
    }
    if args.page == 0 {
        eprintln!("iovctl: error: --page must be at least 1");
        return Ok(ExitCode::from(2));
    }
    let stdout = io::stdout();
    let mut out = Printer::new(args.format, BufWriter::with_capacity(1 << 16, stdout.lock()));
    let mut after: Option<String> = None;
    let mut total: u64 = 0;
    let mut skipped: u64 = 0;
    loop {
        let page = match args.limit {
            Some(l) => args.page.min(l - total),
            None => args.page,
        };
        let mut target = format!("/v1/history?from={}&to={}&limit={page}", args.from, args.to);
        if let Some(l) = &args.lane {
            target.push_str(&format!("&lane={}", local_api::encode(l)));
        }
        if let Some(s) = &args.signals {
            target.push_str(&format!("&signals={}", local_api::encode(s)));
        }
        if let Some(a) = &after {
            target.push_str(&format!("&after={}", local_api::encode(a)));
        }
        let resp = match local_api::get(&args.socket, &target) {
            Ok(r) => r,
            Err(e @ ClientError::Connect { .. }) => {
                eprintln!("iovctl: error: {e}");
                return Ok(ExitCode::from(2));
            }
            Err(e) => return Err(e.into()),
        };
        if resp.status != 200 {
            let status = resp.status;
            let body = resp.text()?;
            eprintln!("iovctl: error: {}", local_api::error_text(status, &body));
            return Ok(ExitCode::from(if status == 400 { 2 } else { 1 }));
        }
        let mut end: Option<Value> = None;
        for line in resp.body.lines() {
            let line = line.context("reading the gateway's answer")?;
            let v: Value = serde_json::from_str(&line).with_context(|| {
                format!("the gateway sent a line that is not JSON: {line:.200}")
            })?;
            match v.get("kind").and_then(Value::as_str) {
                Some("row") => {
                    out.row(&v, &line).context("writing output")?;
                    total += 1;
                }
                Some("head") => {}
                Some("end") => {
                    end = Some(v);
                    break;
                }
                Some("error") => {
                    out.flush()?;
                    eprintln!(
                        "iovctl: error: the answer broke off: {}: {}",
                        v.get("code").and_then(Value::as_str).unwrap_or("error"),
                        v.get("message").and_then(Value::as_str).unwrap_or("")
                    );
                    return Ok(ExitCode::from(1));
                }
                _ => {}
            }
        }
        let Some(end) = end else {
            out.flush()?;
            eprintln!("iovctl: error: the answer ended without its end line (cut off)");
            return Ok(ExitCode::from(1));
        };
        skipped += end.get("skipped_blocks").and_then(Value::as_u64).unwrap_or(0);
        match end.get("next").and_then(Value::as_str) {
            Some(n) if args.limit.is_none_or(|l| total < l) => after = Some(n.to_owned()),
            _ => break,
        }
    }
    out.flush()?;
    if skipped > 0 {
        eprintln!(
            "iovctl: note: {skipped} blocks in the range were not sealed for the gateway's key and were skipped"
        );
    }
    if args.format == Format::Table {
        eprintln!("iovctl: {total} rows; times are the gateway's own clock");
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes rows in the chosen format.
pub(crate) struct Printer<W: Write> {
    format: Format,
    w: W,
    started: bool,
}

const CSV_COLUMNS: [&str; 10] =
    ["ts", "t_ns", "source", "message", "signal", "value", "unit", "label", "id", "data"];

fn field(v: &Value, k: &str) -> String {
    match v.get(k) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(x) => x.to_string(),
    }
}

fn csv_escape(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

impl<W: Write> Printer<W> {
    pub(crate) fn new(format: Format, w: W) -> Printer<W> {
        Printer { format, w, started: false }
    }

    pub(crate) fn row(&mut self, v: &Value, line: &str) -> io::Result<()> {
        match self.format {
            // Parquet rows go to `parquet_out::ParquetSink`, never through here.
            Format::Parquet => Ok(()),
            Format::Jsonl => writeln!(self.w, "{line}"),
            Format::Csv => {
                if !self.started {
                    writeln!(self.w, "{}", CSV_COLUMNS.join(","))?;
                    self.started = true;
                }
                let mut cols: Vec<String> =
                    CSV_COLUMNS.iter().map(|c| csv_escape(&field(v, c))).collect();
                // MQTT text payloads go in the data column.
                if cols[9].is_empty() {
                    cols[9] = csv_escape(&field(v, "payload"));
                }
                writeln!(self.w, "{}", cols.join(","))
            }
            Format::Table => {
                if !self.started {
                    writeln!(
                        self.w,
                        "{:<30} {:<10} {:<32} {:>16} {:<8}",
                        "TIME (gateway clock)", "SOURCE", "SIGNAL", "VALUE", "UNIT"
                    )?;
                    self.started = true;
                }
                let (m, s) = (field(v, "message"), field(v, "signal"));
                let name = if !m.is_empty() && !s.is_empty() {
                    format!("{m}.{s}")
                } else if !s.is_empty() {
                    s
                } else if !m.is_empty() {
                    m
                } else {
                    format!("id {}", field(v, "id"))
                };
                let value = match v.get("label").and_then(Value::as_str) {
                    Some(l) => format!("{} ({l})", field(v, "value")),
                    None => {
                        let x = field(v, "value");
                        if x.is_empty() {
                            let d = field(v, "data");
                            if d.is_empty() {
                                field(v, "payload")
                            } else {
                                d
                            }
                        } else {
                            x
                        }
                    }
                };
                writeln!(
                    self.w,
                    "{:<30} {:<10} {:<32} {:>16} {:<8}",
                    field(v, "ts"),
                    field(v, "source"),
                    name,
                    value,
                    field(v, "unit")
                )
            }
        }
    }

    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_take_rfc3339_relative_now_and_nanoseconds() {
        let now = 1_700_000_000_000_000_000;
        assert_eq!(parse_time("now", now), Ok(now));
        assert_eq!(parse_time("-2h", now), Ok(now - 7_200_000_000_000));
        assert_eq!(parse_time("-15m", now), Ok(now - 900_000_000_000));
        assert_eq!(parse_time("2021-07-26T04:40:55.5Z", now), Ok(1_627_274_455_500_000_000));
        assert_eq!(parse_time("1627274455000000000", now), Ok(1_627_274_455_000_000_000));
        assert!(parse_time("yesterday", now).expect_err("not a time").contains("RFC 3339"));
        assert!(parse_time("-2 parsecs", now).expect_err("not a duration").contains("relative"));
    }

    #[test]
    fn csv_fields_with_commas_or_quotes_are_quoted() {
        assert_eq!(csv_escape("a,b"), "\"a,b\"");
        assert_eq!(csv_escape("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_escape("plain"), "plain");
    }
}
