//! `iovctl`: the fleet and operator tool: decode CAN traces with DBC files, make keys, verify
//! transparency logs. A thin dispatcher: one module per command.

mod audit;
mod decode;
mod enroll;
mod fleet_cli;
mod history;
mod keygen;
mod ledger_history;
mod local_api;
mod output;
mod parquet_out;
mod plot;
mod proof_cmd;
mod status;
mod store_cmd;
mod tlog;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "iovctl",
    version,
    about = "Fleet and operator tool for the IoV gateway and ledgers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decode a CAN trace (candump -L, Vector ASC or BLF; .gz accepted) with DBC files.
    #[command(after_help = decode::EXAMPLES)]
    Decode(decode::Args),
    /// Verify a gateway store or export it as static tiles.
    Store(store_cmd::Args),
    /// Make a new key set (log signing key, X25519 key; org: also a witness key).
    #[command(after_help = keygen::EXAMPLES)]
    Keygen(keygen::Args),
    /// Transparency logs (C2SP tlog-tiles): verify a log from a directory or URL.
    #[command(subcommand)]
    Tlog(tlog::Command),
    /// Status of the gateway running here (its local API socket).
    #[command(after_help = status::EXAMPLES)]
    Status(status::Args),
    /// A vehicle's history over a time range, decoded: verified from a ledger (--ledger) or
    /// from the gateway on this machine (--local).
    #[command(after_help = history::EXAMPLES)]
    History(history::Args),
    /// Audit a ledger's aggregate log end to end and against its peer's view (exit 1 on failure or evidence).
    #[command(after_help = audit::EXAMPLES)]
    Audit(audit::Args),

    /// Register a gateway's key with a ledger for a vehicle and lanes (admin token).
    #[command(after_help = enroll::ENROLL_EXAMPLES)]
    Enroll(enroll::EnrollArgs),
    /// List the gateways enrolled with a ledger (admin token).
    #[command(after_help = enroll::GATEWAYS_EXAMPLES)]
    Gateways(enroll::GatewaysArgs),
    /// Draw a vehicle's verified history as a chart (PNG or SVG), one panel per signal.
    #[command(after_help = plot::EXAMPLES)]
    Plot(plot::Args),
    /// Offline proof bundles: export a vehicle's range from a ledger, verify one with keys only.
    #[command(subcommand)]
    Proof(proof_cmd::Command),
}

/// Exit codes: 0 success; 1 the command failed (bad input, I/O; for `tlog verify`: verification
/// failed); 2 usage error (from clap; `tlog verify` also for fetch errors); 3 the trace had
/// malformed records (decode still printed every good frame). `status` and `history`: 1 a data
/// problem (stalled pipeline, refused or cut-off answer), 2 usage or the gateway cannot be reached.
/// Ledger commands (`history --ledger`, `plot`, `proof`, `enroll`, `gateways`): 0 ok and
/// verified, 1 a verification failure (named on stderr), 2 usage, connection or refusal.
fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Decode(args) => decode::run(&args),
        Command::Store(args) => store_cmd::run(&args),
        Command::Keygen(args) => keygen::run(&args),
        Command::Tlog(cmd) => tlog::run(&cmd),
        Command::Status(args) => status::run(&args),
        Command::History(args) => history::run(&args),
        Command::Audit(args) => audit::run(&args),

        Command::Enroll(args) => enroll::enroll(&args),
        Command::Gateways(args) => enroll::gateways(&args),
        Command::Plot(args) => plot::run(&args),
        Command::Proof(cmd) => proof_cmd::run(&cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("iovctl: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
