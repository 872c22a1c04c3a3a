//! `iovctl decode`: a trace file through the same decoder the gateway runs, printed for people
//! (`table`, `summary`) or for scripts (`jsonl`, `csv`).

use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use can_decoders::dbc::{self, LoadOptions};
use can_decoders::decode::{BusId, Decoded, Decoder};
use can_decoders::trace::{self, ErrorPolicy};

use crate::output::{self, OutputFormat, RunStats};

pub const EXAMPLES: &str = "\
Examples:
  iovctl decode --dbc canmod-gps.dbc --trace drive.log.gz --format table
  iovctl decode --dbc j1939.dbc --j1939 --trace truck.log --format jsonl > truck.jsonl
  iovctl decode --bus-dbc can1=powertrain.dbc --bus-dbc can2=body.dbc --trace car.asc --format csv
  iovctl decode --dbc gps.dbc --trace drive.blf --signals Latitude,Longitude --format summary

Output (jsonl): one object per input frame, in trace order:
  {\"t_ns\":1627274455012500000,\"iface\":\"can1\",\"id\":2024,\"ext\":false,\"msg\":\"NAME\",
   \"sig\":{\"Signal\":1.5},\"label\":{\"Signal\":\"value-table label\"}}
  msg is null when no DBC describes the frame; sig holds numbers only (labels go in label).

Exit status: 0 ok; 1 error (unreadable DBC or trace, strict-mode rejection); 3 the trace had
malformed records, which were reported on stderr and skipped.";

#[derive(clap::Args)]
pub struct Args {
    /// DBC file applied to every interface (repeatable).
    #[arg(long = "dbc", value_name = "FILE")]
    dbc: Vec<PathBuf>,
    /// DBC file for one interface only, as IFACE=FILE (repeatable), e.g. can1=powertrain.dbc.
    #[arg(long = "bus-dbc", value_name = "IFACE=FILE", value_parser = parse_bus_dbc)]
    bus_dbc: Vec<(String, PathBuf)>,
    /// Trace file: candump -L (.log), Vector ASC (.asc) or BLF (.blf); a .gz suffix is unpacked.
    #[arg(long, value_name = "FILE")]
    trace: PathBuf,
    /// Match J1939 messages by PGN when the exact id is unknown (priority, source address and
    /// PDU1 destination ignored); the source address is reported.
    #[arg(long)]
    j1939: bool,
    /// Decode only these signals (comma separated).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    signals: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
    /// Refuse a DBC with errors and stop at the first malformed trace record, instead of
    /// reporting and skipping it.
    #[arg(long)]
    strict: bool,
    /// Stop after this many frames.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
}

fn parse_bus_dbc(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((iface, file)) if !iface.is_empty() && !file.is_empty() => {
            Ok((iface.to_string(), PathBuf::from(file)))
        }
        _ => Err(format!("expected IFACE=FILE, got {s:?}")),
    }
}

/// At most this many malformed-record messages are printed; the rest are only counted.
const MAX_REPORTED_BAD_RECORDS: u64 = 20;

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    if args.dbc.is_empty() && args.bus_dbc.is_empty() {
        bail!("no DBC given: pass --dbc FILE or --bus-dbc IFACE=FILE");
    }
    let options = LoadOptions { strict: args.strict };
    let mut databases = Vec::new();
    for path in &args.dbc {
        databases.push((load_dbc(path, &options)?, Vec::new()));
    }
    for (iface, path) in &args.bus_dbc {
        databases.push((load_dbc(path, &options)?, vec![iface.as_str()]));
    }

    let mut builder = Decoder::builder();
    for (db, ifaces) in &databases {
        builder.add_database(db, ifaces);
    }
    builder.j1939_by_pgn(args.j1939);
    if !args.signals.is_empty() {
        builder.select_signals(&args.signals);
    }
    let (decoder, warnings) = builder.build().context("preparing the decoder")?;
    for w in &warnings {
        eprintln!("iovctl: warning: {w}");
    }

    let policy = if args.strict { ErrorPolicy::Strict } else { ErrorPolicy::Skip };
    let mut reader = trace::open(&args.trace, policy)
        .with_context(|| format!("opening trace {}", args.trace.display()))?;

    let stdout = io::stdout();
    let mut sink = output::sink(args.format, BufWriter::with_capacity(1 << 16, stdout.lock()));
    let mut decoded = Decoded::default();
    // Bus of each channel, resolved once when the channel first appears.
    let mut buses: Vec<BusId> = Vec::new();
    let mut stats = RunStats::default();
    let started = Instant::now();

    while let Some(item) = reader.next() {
        let record = match item {
            Ok(record) => record,
            Err(e) => {
                stats.bad_records += 1;
                if args.strict {
                    return Err(e).with_context(|| format!("reading {}", args.trace.display()));
                }
                if stats.bad_records <= MAX_REPORTED_BAD_RECORDS {
                    eprintln!("iovctl: {}: skipped: {e}", args.trace.display());
                }
                continue;
            }
        };
        let channels = reader.channels();
        let channel = usize::from(record.channel.0);
        while buses.len() <= channel {
            let name = channels.get(buses.len()).map(String::as_str).unwrap_or("");
            buses.push(decoder.bus(name));
        }
        let iface = channels.get(channel).map(String::as_str).unwrap_or("");
        let message = decoder.decode(buses[channel], &record.frame, &mut decoded);
        stats.frames += 1;
        match message {
            Some(_) => stats.matched += 1,
            None => stats.unmatched += 1,
        }
        if decoded.truncated {
            stats.truncated += 1;
        }
        sink.frame(&record, iface, message.map(|k| decoder.message(k)), &decoded)
            .context("writing output")?;
        if args.limit.is_some_and(|limit| stats.frames >= limit) {
            break;
        }
    }
    stats.elapsed = started.elapsed();
    stats.trace = args.trace.display().to_string();
    sink.finish(&stats).context("writing output")?;

    if stats.bad_records > MAX_REPORTED_BAD_RECORDS {
        eprintln!(
            "iovctl: {}: {} malformed records skipped in all (first {} shown)",
            args.trace.display(),
            stats.bad_records,
            MAX_REPORTED_BAD_RECORDS
        );
    }
    Ok(if stats.bad_records > 0 { ExitCode::from(3) } else { ExitCode::SUCCESS })
}

fn load_dbc(path: &Path, options: &LoadOptions) -> anyhow::Result<dbc::Database> {
    let db = dbc::load_file_with(path, options)?;
    for w in &db.warnings {
        eprintln!("iovctl: {}:{w}", path.display());
    }
    Ok(db)
}
