//! `iovctl enroll` and `iovctl gateways`: a ledger operator registers gateway keys and lists
//! them (the ledger's admin API, token with scope `admin`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use iovctl::fleet::client::{read_ca_file, read_token_file, Ledger};

use crate::fleet_cli::vkey_text;

pub const ENROLL_EXAMPLES: &str = "\
Examples:
  iovctl enroll --ledger http://127.0.0.1:7480 --token-file admin.token \\
      --gateway-key gw-keys/signing.vkey --vehicle VIN123 --lanes factory
  iovctl enroll --ledger https://factory.example:7480 --token-file admin.token \\
      --gateway-key 'gw.example/VIN123+1a2b3c4d+AQ...' --vehicle VIN123 --lanes factory,diag

Enrolling again with the same key updates the unit and lanes; a different key for an origin
that already has witnessed or mirrored state is refused (403).

Exit status: 0 enrolled (the stored enrollment is printed as JSON); 2 usage error, the ledger
cannot be reached or refused (401 no/unknown token, 403 no admin scope, 400 bad key).";

pub const GATEWAYS_EXAMPLES: &str = "\
Examples:
  iovctl gateways --ledger http://127.0.0.1:7480 --token-file admin.token
  iovctl gateways --ledger http://127.0.0.1:7480 --token-file admin.token --format json | jq .
  iovctl gateways --ledger https://ledger.factory.example:7480 --ca-file factory-ca.pem \
      --token-file admin.token

Columns: origin (the gateway's log key name), unit, lanes this organisation receives,
witnessed (latest cosigned size), mirrored (blocks held), evidence (refusals kept).

Exit status: 0 ok; 2 usage error, the ledger cannot be reached or refused.";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(clap::Args)]
pub struct EnrollArgs {
    /// The ledger's base URL.
    #[arg(long, value_name = "URL")]
    ledger: String,
    /// File holding an admin token (0600).
    #[arg(long, value_name = "FILE")]
    token_file: PathBuf,
    /// The gateway's log vkey (the text or a file holding it, e.g. signing.vkey).
    #[arg(long, value_name = "VKEY")]
    gateway_key: String,
    /// The vehicle (unit) id.
    #[arg(long, value_name = "ID")]
    vehicle: String,
    /// Lanes this organisation receives (comma separated).
    #[arg(long, value_name = "NAMES", value_delimiter = ',', required = true)]
    lanes: Vec<String>,
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    timeout: u64,
    /// PEM file of the CA an https ledger's certificate must chain to.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct GatewaysArgs {
    /// The ledger's base URL.
    #[arg(long, value_name = "URL")]
    ledger: String,
    /// File holding an admin token (0600).
    #[arg(long, value_name = "FILE")]
    token_file: PathBuf,
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    format: ListFormat,
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    timeout: u64,
    /// PEM file of the CA an https ledger's certificate must chain to.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
}

fn fail(e: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("iovctl: error: {e}");
    Ok(ExitCode::from(2))
}

pub fn enroll(a: &EnrollArgs) -> anyhow::Result<ExitCode> {
    let token = match read_token_file(&a.token_file) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let vkey = vkey_text(&a.gateway_key)?;
    let roots = match a.ca_file.as_deref().map(read_ca_file).transpose() {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let l =
        Ledger::with_roots(&a.ledger, Some(token), Duration::from_secs(a.timeout.max(1)), roots);
    match l.enroll(&vkey, &a.vehicle, &a.lanes) {
        Ok(v) => {
            println!("{v}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => fail(e),
    }
}

pub fn gateways(a: &GatewaysArgs) -> anyhow::Result<ExitCode> {
    let token = match read_token_file(&a.token_file) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let roots = match a.ca_file.as_deref().map(read_ca_file).transpose() {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let l =
        Ledger::with_roots(&a.ledger, Some(token), Duration::from_secs(a.timeout.max(1)), roots);
    let rows = match l.admin_gateways() {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    match a.format {
        ListFormat::Json => println!("{}", serde_json::Value::Array(rows)),
        ListFormat::Table => {
            println!(
                "{:<40} {:<16} {:<20} {:>10} {:>10} {:>8}",
                "ORIGIN", "UNIT", "LANES", "WITNESSED", "MIRRORED", "EVIDENCE"
            );
            let s = |v: &serde_json::Value, k: &str| {
                v.get(k).map_or(String::new(), |x| match x {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Array(a) => {
                        a.iter().filter_map(|e| e.as_str()).collect::<Vec<_>>().join(",")
                    }
                    other => other.to_string(),
                })
            };
            for r in &rows {
                println!(
                    "{:<40} {:<16} {:<20} {:>10} {:>10} {:>8}",
                    s(r, "origin"),
                    s(r, "unit"),
                    s(r, "lanes"),
                    s(r, "witnessed"),
                    s(r, "mirrored"),
                    s(r, "evidence")
                );
            }
            eprintln!("iovctl: {} gateways enrolled at {}", rows.len(), l.base());
        }
    }
    Ok(ExitCode::SUCCESS)
}
