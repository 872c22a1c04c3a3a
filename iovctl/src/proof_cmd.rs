//! `iovctl proof export` / `iovctl proof verify`: the offline proof bundle
//! (`iovctl::fleet::bundle`, byte layout in docs/formats.md section 10).

use std::io::{self, BufWriter};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use iovctl::fleet::bundle::{self, BundleError};
use iovctl::fleet::range::{self, Role};
use iovctl::fleet::rows::{Rows, Where};
use iovctl::fleet::verify::VerifiedPage;
use ledger::cosignature::CosignatureVerifier;
use ledger::note::{Ed25519Verifier, Verifier as _};

use crate::fleet_cli::{self, note_report, vkey_text, LedgerOpts, Session, Usage};
use crate::history::{now_ns, parse_time_arg, Format, Printer};

pub const EXPORT_EXAMPLES: &str = "\
Examples:
  iovctl proof export --ledger http://127.0.0.1:7480 --vehicle VIN123 \\
      --from 2021-07-26T04:40:55Z --to 2021-07-26T04:41:00Z --token-file analyst.token \\
      --ledger-key ledger.vkey --out VIN123-crash.iovproof

The bundle holds the blocks' headers, this organisation's (still encrypted) lanes of the
blocks in the range, the boundary headers on both sides, one range proof and the checkpoint
the gateway signed and the ledger cosigned. Everything is verified before it is written.

Exit status: 0 written; 1 a verification failure (nothing written); 2 usage error, the ledger
cannot be reached or refused.";

pub const VERIFY_EXAMPLES: &str = "\
Examples:
  iovctl proof verify VIN123-crash.iovproof --ledger-key 'factory.example/ledger+8c1d...+BA...'
  iovctl proof verify VIN123-crash.iovproof --ledger-key ledger.vkey --gateway-key gw.vkey
  iovctl proof verify VIN123-crash.iovproof --ledger-key ledger.vkey \\
      --key insurer/x25519.key --dbc canmod-gps.dbc --format csv > crash.csv

Needs nothing but the file and public keys (no ledger, no network). Checks: canonical form
(one changed byte anywhere fails), the gateway's signature and the ledger's cosignature on the
checkpoint (every signature line must be one of the two), that the headers are every block at
their heights of the checkpointed log (range proof), each lane's size and digest. With --key
the lanes sealed for that key are opened and their rows printed.

Exit status: 0 verified; 1 verification failed (the reason is printed); 2 usage error.";

#[derive(clap::Subcommand)]
pub enum Command {
    /// Export an offline proof bundle for a vehicle's time range.
    #[command(after_help = EXPORT_EXAMPLES)]
    Export(ExportArgs),
    /// Verify a proof bundle offline with the ledger's (and optionally the gateway's) vkey.
    #[command(after_help = VERIFY_EXAMPLES)]
    Verify(VerifyArgs),
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// Start of the range (inclusive).
    #[arg(long, value_name = "TIME", value_parser = parse_time_arg, allow_hyphen_values = true)]
    from: u64,
    /// End of the range (inclusive).
    #[arg(long, value_name = "TIME", value_parser = parse_time_arg, allow_hyphen_values = true)]
    to: u64,
    #[command(flatten)]
    remote: LedgerOpts,
    /// The bundle file to write.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The bundle file.
    file: PathBuf,
    /// The ledger's cosigner vkey (text or a file holding it).
    #[arg(long, value_name = "VKEY")]
    ledger_key: String,
    /// Pin the gateway's log vkey (text or file).
    #[arg(long, value_name = "VKEY")]
    gateway_key: Option<String>,
    /// Open the lanes sealed for this X25519 key and print their rows.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// DBC files to decode raw frames with (with --key).
    #[arg(long = "dbc", value_name = "FILE")]
    dbc: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

pub fn run(cmd: &Command) -> anyhow::Result<ExitCode> {
    let r = match cmd {
        Command::Export(a) => export(a),
        Command::Verify(a) => verify(a),
    };
    match r {
        Ok(c) => Ok(c),
        Err(e) => Ok(ExitCode::from(fleet_cli::report_error(&e))),
    }
}

/// Attempts when the ledger's checkpoint moves during an export.
const EXPORT_ATTEMPTS: usize = 3;

fn export(a: &ExportArgs) -> anyhow::Result<ExitCode> {
    if a.from > a.to {
        return Err(Usage("--from is after --to".into()).into());
    }
    let s = Session::open(&a.remote, false)?;
    let [(trust, vkey)] = s.gateways.as_slice() else {
        return Err(Usage(format!(
            "vehicle has {} gateways at this ledger; choose one with --gateway-key",
            s.gateways.len()
        ))
        .into());
    };
    for attempt in 1..=EXPORT_ATTEMPTS {
        let mut pages: Vec<(Role, VerifiedPage)> = Vec::new();
        let q = range::Query {
            ledger: &s.ledger,
            trust,
            from_ns: a.from,
            to_ns: a.to,
            now_s: now_ns() / 1_000_000_000,
        };
        let report = range::fetch(&q, |role, p| {
            pages.push((role, p.clone()));
            Ok(())
        })?;
        let Some((lo, hi)) = report.heights else {
            note_report(trust.gateway.name(), &report);
            eprintln!("iovctl: error: nothing to export");
            return Ok(ExitCode::from(1));
        };
        let refs: Vec<&VerifiedPage> = pages.iter().map(|(_, p)| p).collect();
        let b = match bundle::build(&refs, vkey, |h| (lo..hi).contains(&h)) {
            Ok(b) => b,
            Err(BundleError::MixedCheckpoints { .. }) if attempt < EXPORT_ATTEMPTS => continue,
            Err(e) => return Err(e.into()),
        };
        let bytes = b.to_bytes();
        let proven =
            bundle::verify(&bytes, &s.cosigner, Some(&trust.gateway), now_ns() / 1_000_000_000)
                .context("the bundle built does not verify (a bug: please report)")?;
        std::fs::write(&a.out, &bytes).with_context(|| format!("writing {}", a.out.display()))?;
        note_report(trust.gateway.name(), &report);
        eprintln!(
            "iovctl: wrote {} ({} bytes): heights [{}, {}) of {} (checkpoint size {}), {} lanes",
            a.out.display(),
            bytes.len(),
            proven.start,
            proven.end,
            proven.origin,
            proven.checkpoint.size(),
            proven.lanes.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    Err(anyhow::anyhow!("the ledger's checkpoint kept moving during the export; try again"))
}

fn verify(a: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let lk = vkey_text(&a.ledger_key)?;
    let ledger = CosignatureVerifier::from_vkey(&lk)
        .map_err(|e| Usage(format!("--ledger-key {lk:?}: {e}")))?;
    let pin = match &a.gateway_key {
        Some(g) => {
            let t = vkey_text(g)?;
            Some(
                Ed25519Verifier::from_vkey(&t)
                    .map_err(|e| Usage(format!("--gateway-key {t:?}: {e}")))?,
            )
        }
        None => None,
    };
    let key = match &a.key {
        Some(p) => Some(
            ledger::keys::load_x25519(p)
                .map_err(|e| Usage(format!("--key {}: {e}", p.display())))?,
        ),
        None => None,
    };
    let decoder = fleet_cli::decoder(&a.dbc)?;
    let bytes =
        std::fs::read(&a.file).map_err(|e| Usage(format!("reading {}: {e}", a.file.display())))?;
    let p = match bundle::verify(&bytes, &ledger, pin.as_ref(), now_ns() / 1_000_000_000) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("iovctl: VERIFICATION FAILED: {}: {e}", a.file.display());
            return Ok(ExitCode::from(1));
        }
    };
    let t = |ns: Option<u64>, open: &str| ns.map_or(open.to_owned(), iovctl::fleet::rows::rfc3339);
    let summary = format!(
        "verified: {} heights [{}, {}) are every block at those heights of the log with checkpoint size {} root {}\n\
         signed by the gateway and cosigned by {} at {}\n\
         complete for records after {} and before {} (first and last headers are the boundaries)\n\
         {} lane ciphertexts match their headers",
        p.origin,
        p.start,
        p.end,
        p.checkpoint.size(),
        p.checkpoint.root().to_base64(),
        lk.split('+').next().unwrap_or(""),
        iovctl::fleet::rows::rfc3339(p.cosigned_at.saturating_mul(1_000_000_000)),
        t(p.complete_after_ns, "the start of the log"),
        t(p.complete_before_ns, "the end of the checkpointed log"),
        p.lanes.len()
    );
    let Some(key) = key else {
        println!("{summary}");
        return Ok(ExitCode::SUCCESS);
    };
    eprintln!("{summary}");
    let me = *key.public().as_bytes();
    let limits = ledger::lane::Limits::DEFAULT;
    let mut rows = Rows::new(decoder.as_ref(), None);
    let origin: Arc<str> = p.origin.as_str().into();
    let stdout = io::stdout();
    let mut out = Printer::new(a.format, BufWriter::new(stdout.lock()));
    for (height, index, ct) in &p.lanes {
        let h = &p.headers[usize::try_from(height - p.start).unwrap_or(0)];
        let Some(info) = h.lanes.get(usize::from(*index)) else { continue };
        if !info.recipients.contains(&me) {
            continue;
        }
        let recs = match ledger::seal::open_lane_bytes(h, usize::from(*index), ct, &key, &limits) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("iovctl: VERIFICATION FAILED: lane {index} at height {height}: {e}");
                return Ok(ExitCode::from(1));
            }
        };
        let at = Where { origin: origin.clone(), height: *height, lane: info.name.as_str().into() };
        let mut v = Vec::new();
        for r in &recs {
            rows.record(&at, r, &mut v);
        }
        v.sort_by_key(|r| r.t_ns);
        for r in v {
            let j = r.to_json();
            out.row(&j, &j.to_string())?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
