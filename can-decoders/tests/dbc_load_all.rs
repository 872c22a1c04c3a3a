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
