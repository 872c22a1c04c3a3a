//! `iovctl`: the fleet and operator tool. Today it decodes CAN traces with DBC files; ledger
//! queries, proofs and audits join it as the ledger lands.

mod decode;
mod output;
mod store_cmd;

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
}

/// Exit codes: 0 success; 1 the command failed (bad input, I/O); 2 usage error (from clap);
/// 3 the trace had malformed records (decode still printed every good frame).
fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Decode(args) => decode::run(&args),
        Command::Store(args) => store_cmd::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("iovctl: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
