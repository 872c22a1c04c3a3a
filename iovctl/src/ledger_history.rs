//! `iovctl history --ledger URL --vehicle ID ...`: a vehicle's verified history from a ledger
//! (the checks: `iovctl::fleet::range` and `iovctl::fleet::verify`).

use std::io::{self, BufWriter, IsTerminal as _, Stdout, Write as _};
use std::process::ExitCode;

use crate::fleet_cli::{self, note_report, Progress, Session};
use crate::history::{Args, Format, Printer};
use crate::parquet_out::ParquetSink;
use ledger::note::Verifier as _;

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    match run_inner(args) {
        Ok(c) => Ok(c),
        Err(e) => Ok(ExitCode::from(fleet_cli::report_error(&e))),
    }
}

fn run_inner(args: &Args) -> anyhow::Result<ExitCode> {
    if args.from > args.to {
        return Err(fleet_cli::Usage("--from is after --to".into()).into());
    }
    if args.format == Format::Parquet && io::stdout().is_terminal() {
        return Err(fleet_cli::Usage(
            "--format parquet writes binary: redirect stdout to a file (> history.parquet)".into(),
        )
        .into());
    }
    let s = Session::open(&args.remote, true)?;
    let signals = args
        .signals
        .as_deref()
        .map(|x| x.split(',').map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()).collect());
    let mut out = if args.format == Format::Parquet {
        Out::Parquet(Box::new(ParquetSink::new(BufWriter::with_capacity(1 << 16, io::stdout()))?))
    } else {
        Out::Print(Printer::new(args.format, BufWriter::with_capacity(1 << 16, io::stdout())))
    };
    let mut progress = Progress::new();
    let mut total: u64 = 0;
    let limit = args.limit.unwrap_or(u64::MAX);
    for (trust, _) in &s.gateways {
        let report = fleet_cli::rows_of_gateway(
            &s,
            trust,
            args.from,
            args.to,
            signals.clone(),
            args.lane.as_deref(),
            &mut progress,
            |rows| {
                for r in rows {
                    if total >= limit {
                        break;
                    }
                    match &mut out {
                        Out::Print(p) => {
                            let v = r.to_json();
                            p.row(&v, &v.to_string())?;
                        }
                        Out::Parquet(p) => p.row(r)?,
                    }
                    total += 1;
                }
                Ok(())
            },
        );
        if let Out::Print(p) = &mut out {
            p.flush()?;
        }
        let report = report?;
        note_report(trust.gateway.name(), &report);
    }
    match out {
        Out::Print(mut p) => p.flush()?,
        Out::Parquet(p) => p.finish()?,
    }
    if args.format == Format::Table {
        eprintln!(
            "iovctl: {total} rows, verified against {} (times are the gateway's own clock)",
            s.ledger.base()
        );
    }
    io::stdout().flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Where rows go.
enum Out {
    Print(Printer<BufWriter<Stdout>>),
    Parquet(Box<ParquetSink<BufWriter<Stdout>>>),
}
