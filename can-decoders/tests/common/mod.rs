//! Shared by the integration tests: where the fixtures and the reference oracle are.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (the fixtures and scripts live there).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn fixture(rel: &str) -> PathBuf {
    workspace().join("fixtures").join(rel)
}

/// The Python with cantools and python-can: `IOV_ORACLE_PYTHON`, else `.venv` in the workspace.
/// Fails (never skips) when neither exists: a differential test that silently does not run
/// proves nothing.
pub fn oracle_python() -> PathBuf {
    if let Some(p) = std::env::var_os("IOV_ORACLE_PYTHON") {
        let p = PathBuf::from(p);
        assert!(p.exists(), "IOV_ORACLE_PYTHON={} does not exist; run `make deps`", p.display());
        return p;
    }
    let local = workspace().join(".venv/bin/python");
    assert!(
        local.exists(),
        "no reference oracle: set IOV_ORACLE_PYTHON or run `make deps` (creates the cantools virtualenv)"
    );
    local
}

pub fn oracle_command(script: &str) -> Command {
    let mut cmd = Command::new(oracle_python());
    cmd.arg(workspace().join("scripts").join(script));
    cmd
}

/// Equal to the last bit, with every NaN equal to every NaN (float signals can carry NaN).
pub fn same_f64(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()) || (a == 0.0 && b == 0.0)
}
