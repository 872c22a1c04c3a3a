//! Every fixture DBC loads leniently; the findings per file are pinned in a golden report.

use std::path::{Path, PathBuf};

use can_decoders::dbc::{self, LoadOptions};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn dbc_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x.eq_ignore_ascii_case("dbc")) {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&fixtures().join("dbc"), &mut out);
    out.sort();
    out
}

fn relative(p: &Path) -> String {
    p.strip_prefix(fixtures()).unwrap_or(p).display().to_string()
}

/// One line per file (path, messages, signals, warnings), then its findings indented.
fn report() -> String {
    let mut out = String::new();
    for path in dbc_files() {
        let rel = relative(&path);
        match dbc::load_file(&path) {
            Ok(db) => {
                let signals: usize = db.messages.iter().map(|m| m.signals.len()).sum();
                out.push_str(&format!(
                    "{rel}: {} messages, {signals} signals, {} warnings\n",
                    db.messages.len(),
                    db.warnings.len()
                ));
                for w in &db.warnings {
                    out.push_str(&format!("    {w}\n"));
                }
            }
            Err(e) => out.push_str(&format!("{rel}: FAILED {e}\n")),
        }
    }
    out
}

#[test]
fn every_fixture_dbc_loads_leniently_and_matches_the_golden_report() {
    let files = dbc_files();
    assert!(files.len() >= 190, "expected the fixture DBCs, found {}", files.len());
    let got = report();
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/dbc/load_report.txt");
    if std::env::var_os("IOV_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&golden, &got).expect("write golden report");
    }
    let want = std::fs::read_to_string(&golden).expect("golden report (run with IOV_BLESS=1)");
    assert!(!got.contains("FAILED"), "some files failed to load:\n{got}");
    assert_eq!(got, want, "load report changed; review and rerun with IOV_BLESS=1");
}

/// Files broken on purpose (or by accident upstream): the loader reports exactly this.
#[test]
fn broken_fixtures_report_the_exact_problem() {
    let cases: &[(&str, &[&str])] = &[
        (
            "strym/nissan_rogue_experimental.dbc",
            &["39:1: error: expected a statement keyword (BO_, SG_, CM_, BA_, VAL_, ...), found 'B0_'"],
        ),
        (
            "cantools/issue_199_extended.dbc",
            &["45:1: error: message 'DriverDoorStatus' has id 4294967295, which is not a CAN id; message dropped"],
        ),
        (
            "cantools/bad_message_length.dbc",
            &["40:1: warning: signal 'Signal1' (start bit 8, 1 bits) does not fit in the 1-byte message 'Message1'"],
        ),
        (
            "cantools/incorrect-sig_valtype.dbc",
            &["45:1: warning: SIG_VALTYPE_ for unknown message id 345; ignored"],
        ),
        ("cantools/incorrect-val.dbc", &["45:1: warning: VAL_ for unknown message id 99; ignored"]),
    ];
    for (rel, want) in cases {
        let path = fixtures().join("dbc").join(rel);
        let db = dbc::load_file(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let got: Vec<String> = db.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(&got, want, "{rel}");
        let strict = dbc::load_file_with(&path, &LoadOptions { strict: true });
        let has_error = want.iter().any(|w| w.contains(": error: "));
        assert_eq!(strict.is_err(), has_error, "{rel}: strict loading fails only on errors");
    }
}

#[test]
fn strict_error_names_the_file_line_and_column() {
    let path = fixtures().join("dbc/strym/nissan_rogue_experimental.dbc");
    let err =
        dbc::load_file_with(&path, &LoadOptions { strict: true }).err().map(|e| e.to_string());
    let want = format!(
        "{}:39:1: expected a statement keyword (BO_, SG_, CM_, BA_, VAL_, ...), found 'B0_'",
        path.display()
    );
    assert_eq!(err, Some(want));
}
