//! `iov-sim`: parse arguments, run, print, exit. Exit status: 0 all invariants held; 1 an
//! invariant broke (or a fleet step failed); 2 bad arguments or a scenario file error; 3 the
//! simulator itself failed (a process would not start, a file could not be written).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use sim::scenario::{Overrides, Scenario};
use sim::world::Options;

#[derive(Parser)]
#[command(name = "iov-sim", version, about = "Replay recorded CAN traces through real gateways and ledgers, with dead zones and faults", long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// One trace through one real iov-gateway: progress, a check of its store, signal statistics.
    Replay {
        /// candump .log, Vector .asc or .blf, optionally .gz
        #[arg(long)]
        trace: PathBuf,
        /// DBC file (repeat for several)
        #[arg(long, required = true)]
        dbc: Vec<PathBuf>,
        /// Match J1939 messages by PGN
        #[arg(long)]
        j1939: bool,
        /// 1 (recorded pace), 10 (ten times), any N, or max
        #[arg(long, default_value = "max")]
        speed: sim::replay::Speed,
        /// Replay the trace N times (timestamps continue after each pass)
        #[arg(long = "loop", default_value_t = 1)]
        loops: u32,
        /// process (a real gateway process) or vcan (not built yet)
        #[arg(long, default_value = "process")]
        into: sim::replay::Target,
        /// Where the gateway's store, config and log go (default: $TMPDIR/iov-sim/replay)
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the summary as JSON
        #[arg(long)]
        json: bool,
    },
    /// Run a scenario file: vehicles, ledgers, link windows and faults.
    Run {
        scenario: PathBuf,
        /// Keep only the first N vehicles (CI size)
        #[arg(long)]
        vehicles: Option<usize>,
        /// A shorter drive, e.g. 20s; every time in the scenario scales with it
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
        /// Override the scenario's seed
        #[arg(long)]
        seed: Option<u64>,
        /// Output folder (default: $TMPDIR/iov-sim/<scenario name>)
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the JSON report instead of the summary
        #[arg(long)]
        json: bool,
    },
    /// The newcomer's demo: three vehicles, two ledgers, a dead zone, verified queries, an audit.
    Demo {
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    sim::scenario::parse_duration("--duration", s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("iov-sim: {e:#}");
            if e.downcast_ref::<sim::scenario::ScenarioError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(3)
            }
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Cmd::Replay { trace, dbc, j1939, speed, loops, into, out, json } => {
            let out = out.unwrap_or_else(|| sim::run::default_out("replay"));
            let args =
                sim::replay::Args { trace, dbc, j1939, speed, loops, into, out: out.clone() };
            let s = sim::replay::run(&args)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print!("{}", sim::replay::text(&s, &out));
            }
            Ok(if s.ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Cmd::Run { scenario, vehicles, duration, seed, out, json } => {
            let mut s = Scenario::load(&scenario)?;
            s.apply(&Overrides { vehicles, duration });
            if let Some(seed) = seed {
                s.seed = seed;
            }
            let out = out.unwrap_or_else(|| sim::run::default_out(&s.name));
            let report = sim::run::execute(s, &Options { out, progress: true }, |_| Vec::new())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.text());
            }
            Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Cmd::Demo { out } => {
            let out = out.unwrap_or_else(|| sim::run::default_out("demo"));
            let s = Scenario::load(&sim::demo::scenario_path())?;
            println!("{}", sim::demo::intro(&s));
            let (_, report) = sim::demo::run(out, true)?;
            print!("{}", report.text());
            Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
    }
}
