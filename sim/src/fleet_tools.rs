//! The demo's fleet steps, through `iovctl` as a subprocess, with exactly this contract:
//!
//! - `iovctl history --ledger URL --vehicle ID --from T --to T --key KEYFILE --token-file F
//!   [--dbc FILE] --format jsonl`: exit 0 only when everything verified; JSON lines of
//!   decoded rows on stdout.
//! - `iovctl audit --ledger URL --peer URL [--token-file F]`: exit 0 when both ledgers are
//!   consistent and cross-cosigned.
//!
//! Both are `iovctl`'s own (issue 6, `iovctl/README.md`); this module is the one place to adapt
//! if their arguments change. The audit needs the ledgers configured as each other's peers and a
//! token both accept (`World::write_ledger_config`, `world::auditor_token_file`).

use std::path::Path;
use std::process::Command;

use crate::report::StepReport;

/// Times as RFC 3339 UTC with nanoseconds (what `iovctl` reads for `--from`/`--to`).
pub fn rfc3339(ns: u64) -> String {
    humantime::format_rfc3339_nanos(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns))
        .to_string()
}

fn run(name: &str, args: &[String]) -> StepReport {
    let command = format!("iovctl {}", args.join(" "));
    let bin = match crate::proc::binary("iovctl") {
        Ok(b) => b,
        Err(e) => {
            return StepReport { name: name.into(), command, ok: false, detail: e.to_string() }
        }
    };
    match Command::new(bin).args(args).output() {
        Err(e) => StepReport {
            name: name.into(),
            command,
            ok: false,
            detail: format!("could not run: {e}"),
        },
        Ok(out) => {
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            // The first error line says most (clap: "error: unrecognized subcommand ...").
            let last_err = stderr
                .lines()
                .find(|l| l.contains("error"))
                .or_else(|| stderr.lines().rev().find(|l| !l.trim().is_empty()))
                .unwrap_or("")
                .trim()
                .to_owned();
            if !out.status.success() {
                return StepReport {
                    name: name.into(),
                    command,
                    ok: false,
                    detail: format!("exit {}: {last_err}", out.status.code().unwrap_or(-1)),
                };
            }
            let rows = stdout.lines().filter(|l| l.trim_start().starts_with('{')).count();
            let first = stdout
                .lines()
                .find(|l| l.trim_start().starts_with('{'))
                .unwrap_or("")
                .chars()
                .take(160)
                .collect::<String>();
            StepReport {
                name: name.into(),
                command,
                ok: true,
                detail: if rows > 0 {
                    format!("{rows} verified rows, e.g. {first}")
                } else {
                    // `iovctl audit` ends its table with `result: ...`.
                    stdout
                        .lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .map(|l| l.trim().to_owned())
                        .unwrap_or(last_err)
                },
            }
        }
    }
}

/// A verified history query of one vehicle from one ledger.
#[allow(clippy::too_many_arguments)]
pub fn history(
    name: &str,
    ledger_url: &str,
    vehicle: &str,
    from_ns: u64,
    to_ns: u64,
    key: &Path,
    token_file: &Path,
    dbc: Option<&Path>,
) -> StepReport {
    let mut args: Vec<String> = vec![
        "history".into(),
        "--ledger".into(),
        ledger_url.into(),
        "--vehicle".into(),
        vehicle.into(),
        "--from".into(),
        rfc3339(from_ns),
        "--to".into(),
        rfc3339(to_ns),
        "--key".into(),
        key.display().to_string(),
        "--token-file".into(),
        token_file.display().to_string(),
    ];
    if let Some(d) = dbc {
        args.push("--dbc".into());
        args.push(d.display().to_string());
    }
    args.push("--format".into());
    args.push("jsonl".into());
    run(name, &args)
}

/// The cross-witness audit of two ledgers.
pub fn audit(
    name: &str,
    ledger_url: &str,
    peer_url: &str,
    token_file: Option<&Path>,
) -> StepReport {
    let mut args: Vec<String> = vec![
        "audit".into(),
        "--ledger".into(),
        ledger_url.into(),
        "--peer".into(),
        peer_url.into(),
    ];
    if let Some(t) = token_file {
        args.push("--token-file".into());
        args.push(t.display().to_string());
    }
    run(name, &args)
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_rfc3339_with_nanoseconds() {
        assert_eq!(super::rfc3339(1_627_274_455_012_500_000), "2021-07-26T04:40:55.012500000Z");
    }
}
