//! The offline proof bundle: exported from a real ledger fed by a real gateway replaying the
//! real trace, verified after the ledger has stopped (nothing but the file and public keys),
//! refused when any one byte changes; and the documented test vector (docs/formats.md §10).

mod fleet_common;

use anyhow::{ensure, Context as _, Result};
use fleet_common::*;
use iovctl::fleet::bundle::{self, Bundle};
use ledger::block::{BlockHash, BlockHeader, LaneInfo, BLOCK_VERSION};
use ledger::checkpoint::{Checkpoint, SignedCheckpoint};
use ledger::cosignature::{CosignatureVerifier, Cosigner};
use ledger::merkle::MemoryTree;
use ledger::note::Ed25519Signer;

fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[test]
fn exported_bundle_verifies_offline_and_any_changed_byte_fails() -> Result<()> {
    let mut w = World::new(8)?;
    let text = std::fs::read_to_string(&w.trace)?;
    let first = text.lines().next().context("trace")?;
    let t0: u64 = first[1..11].parse::<u64>()? * 1_000_000_000;
    let (a, b) = (t0 + 20_000_000_000, t0 + 70_000_000_000);
    let out = w.dir.join("range.iovproof");
    let mut args: Vec<String> = vec!["proof".into(), "export".into()];
    args.extend(w.query_args(&w.ledger.url()));
    args.extend(["--from".into(), a.to_string(), "--to".into(), b.to_string()]);
    args.extend(["--out".into(), out.display().to_string()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = iovctl(&refs)?;
    ensure!(code(&o) == 0, "export: {}", stderr(&o));

    // No ledger from here on.
    w.ledger.stop()?;
    ensure!(http_get(w.ledger.addr, "/v1/link").is_err(), "the ledger still answers");

    let bytes = std::fs::read(&out)?;
    let parsed = Bundle::parse(&bytes)?;
    ensure!(
        parsed.headers.len() > 8,
        "{} headers: the export did not span pages",
        parsed.headers.len()
    );
    ensure!(!parsed.lanes.is_empty(), "no lanes exported");
    let ledger_key = CosignatureVerifier::from_vkey(&w.ledger_vkey)?;
    let gw = w.signer.verifier();
    let proven = bundle::verify(&bytes, &ledger_key, Some(&gw), now_s())?;
    // Block 0 ends before the range here, so the export starts at height 0: complete from
    // the log's start; otherwise the first header is the left boundary block.
    ensure!(
        proven.complete_after_ns.map_or(proven.start == 0, |t| t < a),
        "left boundary: start {} after {:?}",
        proven.start,
        proven.complete_after_ns
    );
    ensure!(
        proven.complete_before_ns.is_some_and(|t| t > b),
        "right boundary {:?}",
        proven.complete_before_ns
    );
    ensure!(
        proven.headers.first().is_some_and(|h| h.last_ns < a)
            && proven.headers.last().is_some_and(|h| h.first_ns > b),
        "the bundle lacks a boundary block"
    );

    // The CLI: verified with keys only, and the rows of the range come out with --key.
    let f = out.display().to_string();
    let o = iovctl(&[
        "proof",
        "verify",
        &f,
        "--ledger-key",
        &w.ledger_vkey,
        "--gateway-key",
        &w.gateway_vkey(),
    ])?;
    ensure!(
        code(&o) == 0 && stdout(&o).starts_with("verified:"),
        "verify: {} {}",
        stdout(&o),
        stderr(&o)
    );
    let o = iovctl(&[
        "proof",
        "verify",
        &f,
        "--ledger-key",
        &w.ledger_vkey,
        "--key",
        &w.path("org.key"),
        "--dbc",
        &dbc().display().to_string(),
        "--format",
        "jsonl",
    ])?;
    ensure!(code(&o) == 0, "verify --key: {}", stderr(&o));
    let rows = jsonl_rows(&stdout(&o))?;
    let expected: Vec<_> =
        expected_rows(&w.trace)?.into_iter().filter(|r| r.0 >= a && r.0 <= b).collect();
    ensure!(
        expected.iter().all(|r| rows
            .binary_search_by(|x| x.partial_cmp(r).unwrap_or(std::cmp::Ordering::Less))
            .is_ok()),
        "the bundle's rows lack some of the range's {} rows",
        expected.len()
    );

    // Wrong keys.
    let other = ledger::keys::generate_cosigner("factory.example/ledger")?;
    let o = iovctl(&["proof", "verify", &f, "--ledger-key", &other.verifier().to_vkey()])?;
    ensure!(
        code(&o) == 1 && stderr(&o).contains("VERIFICATION FAILED"),
        "other ledger key: {}",
        stderr(&o)
    );
    let other_gw = ledger::keys::generate_signer("iov.example/gw/fleet-test")?;
    let o = iovctl(&[
        "proof",
        "verify",
        &f,
        "--ledger-key",
        &w.ledger_vkey,
        "--gateway-key",
        &other_gw.verifier().to_vkey(),
    ])?;
    ensure!(code(&o) == 1, "other gateway key accepted");

    // Any one byte changed: many positions across every part of the file (the library, for
    // speed), and a few through the CLI for the exit status.
    let n = bytes.len();
    let mut positions: Vec<usize> = (0..n).step_by((n / 1500).max(1)).collect();
    positions.extend(0..200.min(n));
    positions.extend(n.saturating_sub(300)..n);
    for &pos in &positions {
        for flip in [0x01u8, 0x20, 0x80] {
            let mut m = bytes.clone();
            m[pos] ^= flip;
            ensure!(
                bundle::verify(&m, &ledger_key, None, now_s()).is_err(),
                "byte {pos} ^ {flip:#x} still verifies"
            );
        }
    }
    for pos in [0, n / 3, n / 2, n - 20] {
        let mut m = bytes.clone();
        m[pos] ^= 0x01;
        let p = w.dir.join("changed.iovproof");
        std::fs::write(&p, &m)?;
        let o =
            iovctl(&["proof", "verify", &p.display().to_string(), "--ledger-key", &w.ledger_vkey])?;
        ensure!(code(&o) == 1, "changed byte {pos}: exit {}", code(&o));
    }
    // Truncated and extended.
    ensure!(bundle::verify(&bytes[..n - 1], &ledger_key, None, now_s()).is_err(), "truncated");
    let mut longer = bytes.clone();
    longer.push(b'\n');
    ensure!(bundle::verify(&longer, &ledger_key, None, now_s()).is_err(), "extended");
    Ok(())
}

/// The deterministic bundle of docs/formats.md §10: fixed keys, five blocks, heights 1..4
/// bundled with one lane.
fn test_vector() -> Result<(Vec<u8>, String, String)> {
    let signer = Ed25519Signer::new(
        "example.com/gw/vector",
        ed25519_dalek::SigningKey::from_bytes(&[7; 32]),
    )?;
    let cosigner =
        Cosigner::new("example.com/ledger", ed25519_dalek::SigningKey::from_bytes(&[9; 32]))?;
    let gateway: [u8; 32] = signer.verifier().public_key().to_bytes();
    let mut headers = Vec::new();
    let mut lanes = Vec::new();
    let mut prev = BlockHash::ZERO;
    let mut tree = MemoryTree::new();
    for h in 0..5u64 {
        let ct = vec![h as u8 + 0xA0; 16];
        let header = BlockHeader {
            version: BLOCK_VERSION,
            gateway,
            height: h,
            prev,
            first_ns: 1_000_000_000 * (h + 1),
            last_ns: 1_000_000_000 * (h + 1) + 500_000_000,
            lanes: vec![LaneInfo {
                name: "factory".into(),
                record_count: 1,
                recipients: vec![[0x11; 32]],
                digest: *blake3::hash(&ct).as_bytes(),
                size: ct.len() as u64,
            }],
        };
        prev = header.hash();
        tree.push_leaf_hash(ledger::verify::header_leaf_hash(&header));
        headers.push(header);
        lanes.push(ct);
    }
    let cp = Checkpoint::new("example.com/gw/vector", 5, tree.root())?;
    let mut signed = SignedCheckpoint::sign(cp.clone(), &signer)?;
    signed.add_signature(cosigner.cosign(&cp, 1_700_000_000)?);
    let proof = ledger::verify::range_proof(&tree, 5, 1, 4)?;
    let b = Bundle {
        gateway_vkey: signer.verifier().to_vkey(),
        start: 1,
        headers: headers[1..4].iter().map(BlockHeader::to_bytes).collect(),
        lanes: vec![(2, 0, lanes[2].clone())],
        proof,
        note: signed.to_bytes(),
    };
    Ok((b.to_bytes(), cosigner.verifier().to_vkey(), signer.verifier().to_vkey()))
}

#[test]
fn documented_test_vector_matches_and_verifies() -> Result<()> {
    let (bytes, ledger_vkey, gw_vkey) = test_vector()?;
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/formats.md"))?;
    let text = String::from_utf8(bytes.clone())?;
    ensure!(
        docs.contains(&text),
        "docs/formats.md §10 does not hold the test vector; it is:\n{text}\nledger vkey {ledger_vkey}\ngateway vkey {gw_vkey}"
    );
    ensure!(docs.contains(&ledger_vkey) && docs.contains(&gw_vkey), "docs lack the vector's keys");
    let lk = CosignatureVerifier::from_vkey(&ledger_vkey)?;
    let p = bundle::verify(&bytes, &lk, None, 1_700_000_000)?;
    ensure!(p.start == 1 && p.end == 4 && p.checkpoint.size() == 5, "{p:?}");
    ensure!(p.complete_after_ns == Some(2_500_000_000), "left boundary {:?}", p.complete_after_ns);
    ensure!(
        p.complete_before_ns == Some(4_000_000_000),
        "right boundary {:?}",
        p.complete_before_ns
    );
    for pos in 0..bytes.len() {
        let mut m = bytes.clone();
        m[pos] ^= 0x01;
        ensure!(
            bundle::verify(&m, &lk, None, 1_700_000_000).is_err(),
            "vector byte {pos} changed still verifies"
        );
    }
    Ok(())
}
