//! Every public RFC 6962 vector (transparency-dev/merkle testdata, copied under
//! `fixtures/testvectors/rfc6962-merkle/`): accept all `wantErr: false`, reject all
//! `wantErr: true`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ledger::merkle::{verify_consistency_bytes, verify_inclusion_bytes};
use serde_json::Value;

fn vector_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/testvectors/rfc6962-merkle")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        if p.is_dir() {
            files(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "json") {
            out.push(p);
        }
    }
    Ok(())
}

fn b64(v: &Value, key: &str) -> Result<Vec<u8>> {
    let s = v[key].as_str().with_context(|| format!("{key} is not a string"))?;
    STANDARD.decode(s).with_context(|| format!("{key} is not base64"))
}

fn proof(v: &Value) -> Result<Vec<Vec<u8>>> {
    match &v["proof"] {
        Value::Null => Ok(Vec::new()),
        Value::Array(a) => a
            .iter()
            .map(|p| STANDARD.decode(p.as_str().context("proof entry")?).context("proof b64"))
            .collect(),
        other => bail!("proof is {other}"),
    }
}

fn u64_of(v: &Value, key: &str) -> Result<u64> {
    v[key].as_u64().with_context(|| format!("{key} is not a u64"))
}

/// Runs one vector; Ok(true) when our verifier accepted it.
fn run(path: &Path) -> Result<(bool, bool)> {
    let text = std::fs::read_to_string(path)?;
    let v: Value = serde_json::from_str(&text)?;
    let want_err = v["wantErr"].as_bool().context("wantErr")?;
    let proof = proof(&v)?;
    let proof: Vec<&[u8]> = proof.iter().map(Vec::as_slice).collect();
    let accepted = if v.get("leafIdx").is_some() {
        verify_inclusion_bytes(
            &b64(&v, "leafHash")?,
            u64_of(&v, "leafIdx")?,
            u64_of(&v, "treeSize")?,
            &proof,
            &b64(&v, "root")?,
        )
        .is_ok()
    } else {
        verify_consistency_bytes(
            u64_of(&v, "size1")?,
            u64_of(&v, "size2")?,
            &proof,
            &b64(&v, "root1")?,
            &b64(&v, "root2")?,
        )
        .is_ok()
    };
    Ok((want_err, accepted))
}

#[test]
fn all_public_rfc6962_vectors_are_accepted_or_rejected_as_expected() -> Result<()> {
    let mut paths = Vec::new();
    files(&vector_dir(), &mut paths)?;
    paths.sort();
    let (mut accepted_ok, mut rejected_ok, mut wrong) = (0, 0, Vec::new());
    for p in &paths {
        let (want_err, accepted) = run(p).with_context(|| format!("{}", p.display()))?;
        match (want_err, accepted) {
            (false, true) => accepted_ok += 1,
            (true, false) => rejected_ok += 1,
            _ => wrong.push(format!("{} (wantErr {want_err}, accepted {accepted})", p.display())),
        }
    }
    eprintln!(
        "rfc6962 vectors: {} files, {accepted_ok} valid accepted, {rejected_ok} invalid rejected, {} wrong",
        paths.len(),
        wrong.len()
    );
    assert!(paths.len() >= 190, "expected the full vector set, found {}", paths.len());
    assert!(wrong.is_empty(), "verdicts differ from the vectors:\n{}", wrong.join("\n"));
    Ok(())
}
