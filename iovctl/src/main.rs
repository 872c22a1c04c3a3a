//! `iovctl`: the fleet and operator tool: decode CAN traces with DBC files, make keys, verify
//! transparency logs. A thin dispatcher: one module per command.

mod audit;
mod decode;
mod history;
mod keygen;
mod local_api;
mod output;
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
    /// The gateway's own history over a time range, decoded (--local: from its API socket).
    #[command(after_help = history::EXAMPLES)]
    History(history::Args),
    /// Audit a ledger's aggregate log end to end and against its peer's view (exit 1 on failure or evidence).
    #[command(after_help = audit::EXAMPLES)]
    Audit(audit::Args),
}

/// Exit codes: 0 success; 1 the command failed (bad input, I/O; for `tlog verify`: verification
/// failed); 2 usage error (from clap; `tlog verify` also for fetch errors); 3 the trace had
/// malformed records (decode still printed every good frame). `status` and `history`: 1 a data
/// problem (stalled pipeline, refused or cut-off answer), 2 usage or the gateway cannot be reached.
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
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("iovctl: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
