//! End to end: the real `iov-ledger` binary on a loopback port with a RocksDB directory, driven
//! over real HTTP(S) with gateway logs built by the `ledger` crate (real headers, Merkle tree,
//! signed checkpoints; lane ciphertexts are random bytes, which is all a ledger sees of them).
//! The gateway logs, the node process and the repeated sync steps are in `common/`.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use common::*;
use ledger::block::{hash_header_bytes, BlockHash};
use ledger::checkpoint::{Checkpoint, SignedCheckpoint};
use ledger::merkle::{self, Hash};
use ledger::sync_wire::{self, AddCheckpoint, ErrorCode, Link, UploadAck};
use sha2::Digest as _;

#[test]
fn add_checkpoint_answers_every_witness_status_code() -> Result<()> {
    let gw = Gateway::grown("iov.example/gw/VIN-A", 12);
    let stranger = {
        let mut s = Gateway::new("iov.example/gw/STRANGER");
        s.grow(3);
        s
    };
    let (_dir, node) = setup(&[&gw])?;
    let cosigner = node.cosigner()?;

    // 404: origin not enrolled.
    let r = node.add_checkpoint(&stranger.add_checkpoint(0, 3))?;
    assert_eq!((r.status, r.error().code), (404, ErrorCode::UnknownOrigin));
    // 403: the enrolled origin, signed by another key.
    let impostor =
        Gateway { signer: ledger::keys::generate_signer(gw.origin())?, ..Gateway::new("x/y") };
    let forged = AddCheckpoint {
        old_size: 0,
        proof: vec![],
        checkpoint: {
            let cp = Checkpoint::new(gw.origin(), 5, gw.root_at(5))?;
            SignedCheckpoint::sign(cp, &impostor.signer)?.to_bytes()
        },
    };
    let r = node.add_checkpoint(&forged.to_bytes())?;
    assert_eq!((r.status, r.error().code), (403, ErrorCode::BadSignature));
    // 400: not an add-checkpoint body; old > new.
    assert_eq!(node.add_checkpoint(b"hello\n")?.status, 400);
    let r = node.add_checkpoint(
        &AddCheckpoint { old_size: 9, proof: vec![], checkpoint: gw.checkpoint(5) }.to_bytes(),
    )?;
    assert_eq!((r.status, r.error().code), (400, ErrorCode::OldSizeTooLarge));
    // 422: a proof with old 0; an empty tree with a non-empty root.
    let r = node.add_checkpoint(
        &AddCheckpoint { old_size: 0, proof: vec![Hash([1; 32])], checkpoint: gw.checkpoint(5) }
            .to_bytes(),
    )?;
    assert_eq!((r.status, r.error().code), (422, ErrorCode::BadProof));
    let empty_bad =
        SignedCheckpoint::sign(Checkpoint::new(gw.origin(), 0, Hash([3; 32]))?, &gw.signer)?;
    let r = node.add_checkpoint(
        &AddCheckpoint { old_size: 0, proof: vec![], checkpoint: empty_bad.to_bytes() }.to_bytes(),
    )?;
    assert_eq!((r.status, r.error().code), (422, ErrorCode::EmptyTreeRoot));

    // 200: first contact; the cosignature verifies with the key /v1/link names.
    let cp5 = Checkpoint::new(gw.origin(), 5, gw.root_at(5))?;
    let r = node.add_checkpoint(&gw.add_checkpoint(0, 5))?;
    assert_eq!(r.status, 200, "{}", r.error());
    let sigs = sync_wire::parse_cosignature_lines(&r.body)?;
    assert_eq!(sigs.len(), 1);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    cosigner.verify(&cp5, &sigs[0], now, 60)?;

    // 409: old is not the latest cosigned size; body is the size, as the spec says.
    let r = node.add_checkpoint(&gw.add_checkpoint(3, 8))?;
    assert_eq!(r.status, 409);
    assert_eq!(r.content_type, sync_wire::SIZE_TYPE);
    assert_eq!(sync_wire::parse_size_body(&r.body)?, 5);
    // 422: a consistency proof that does not verify (kept as evidence, not a fork).
    let mut bad = AddCheckpoint::parse(&gw.add_checkpoint(5, 8))?;
    bad.proof[0] = Hash([9; 32]);
    let r = node.add_checkpoint(&bad.to_bytes())?;
    assert_eq!((r.status, r.error().code), (422, ErrorCode::BadProof));
    // 422 + fork evidence: same size, another root, correctly signed.
    assert_eq!(node.metric("iov_ledger_forks ")?, 0);
    let mut other = gw.same_key();
    other.grow(5);
    let r = node.add_checkpoint(
        &AddCheckpoint { old_size: 5, proof: vec![], checkpoint: other.checkpoint(5) }.to_bytes(),
    )?;
    assert_eq!((r.status, r.error().code), (422, ErrorCode::Fork));
    assert_eq!(node.metric("iov_ledger_forks ")?, 1);
    assert_eq!(node.metric("iov_ledger_evidence ")?, 2);
    // The process metrics every Prometheus client exports (D261), read from the node's /proc.
    assert!(node.metric("process_resident_memory_bytes ")? > 1 << 20);
    assert!(node.metric("process_open_fds ")? >= 5, "stdio, two listeners, the store");
    assert!(node.metric("process_threads ")? >= 2);

    // 200 again from the cosigned size, and a resend of the same checkpoint is answered again.
    node.witness(&gw, 5, 12)?;
    node.witness(&gw, 12, 12)?;
    let st = node.state(gw.origin())?;
    let w = st.witnessed.ok_or_else(|| anyhow!("no witnessed checkpoint"))?;
    assert_eq!((w.size, w.root), (12, gw.root_at(12)));
    // The stored note carries the gateway's signature and ours.
    let note = ledger::note::Note::parse(&w.checkpoint)?;
    assert_eq!(note.verify(&[&gw.signer.verifier(), &cosigner])?.len(), 2);
    assert_eq!(
        node.metric("iov_ledger_requests_total{endpoint=\"add-checkpoint\",status=\"200\"}")?,
        3
    );
    // C2SP monitor retrieval: the same note at /<hex SHA-256 of the origin>/checkpoint.
    let hash: String =
        sha2::Sha256::digest(gw.origin().as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    let r = node.get(&format!("/{hash}/checkpoint"))?;
    assert_eq!((r.status, r.body), (200, w.checkpoint.clone()));
    assert_eq!(node.get(&format!("/{}/checkpoint", "0".repeat(64)))?.status, 404);
    assert!(node.stop()?.success());
    Ok(())
}

#[test]
fn concurrent_add_checkpoints_from_one_size_cosign_exactly_one() -> Result<()> {
    let gw = Gateway::grown("iov.example/gw/VIN-G", 16);
    let (_dir, node) = setup(&[&gw])?;
    let bodies: Vec<Vec<u8>> = (1..=16).map(|n| gw.add_checkpoint(0, n)).collect();
    let url = node.url(sync_wire::path::ADD_CHECKPOINT);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = bodies
            .iter()
            .map(|b| {
                let url = url.clone();
                s.spawn(move || reply(agent().post(&url).send(&b[..])).map(|r| r.status))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow!("thread panicked"))?)
            .collect::<Result<_>>()
    })?;
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|&&s| s == 409).count(), 15, "{statuses:?}");
    let winner = statuses.iter().position(|&s| s == 200).map_or(0, |i| i as u64 + 1);
    assert_eq!(node.state(gw.origin())?.witnessed.map(|w| w.size), Some(winner));
    Ok(())
}

#[test]
fn a_body_cut_short_is_malformed_not_too_large() -> Result<()> {
    use std::io::{Read as _, Write as _};
    let gw = Gateway::grown("iov.example/gw/VIN-CUT", 4);
    let (_dir, node) = setup(&[&gw])?;
    node.witness(&gw, 0, 4)?;
    let o = gw.origin().to_owned();
    // 40 of the 1,000 declared bytes, then the client stops sending (a link cut mid-upload).
    let mut s = std::net::TcpStream::connect(&node.base)?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    write!(
        s,
        "POST {} HTTP/1.1\r\nHost: ledger\r\nContent-Type: application/cbor\r\n\
         Content-Length: 1000\r\n\r\n",
        sync_wire::path::blocks(&o)
    )?;
    s.write_all(&[0xA5; 40])?;
    s.shutdown(std::net::Shutdown::Write)?;
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let answer = String::from_utf8_lossy(&raw);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("malformed"), "{answer}");
    assert_eq!(node.metric("iov_ledger_refusals_total{reason=\"malformed\"}")?, 1);
    assert!(node.metric("iov_ledger_refusals_total{reason=\"too_large\"}").is_err());
    // The upload itself still works afterwards.
    let r = node.upload(&o, &gw.upload(0, 4, 4))?;
    assert_eq!(r.status, 200, "{}", r.error());
    Ok(())
}

#[test]
fn uploads_in_batches_are_idempotent_and_resume_after_a_restart() -> Result<()> {
    let mut gw = Gateway::grown("iov.example/gw/VIN-B", 40);
    let (dir, node) = setup(&[&gw])?;
    let o = gw.origin().to_owned();

    // Before any checkpoint: not witnessed.
    let r = node.upload(&o, &gw.upload(0, 5, 40))?;
    assert_eq!((r.status, r.error().code), (409, ErrorCode::NotWitnessed));
    node.witness(&gw, 0, 40)?;

    // A gap: starting above the mirrored size.
    let r = node.upload(&o, &gw.upload(3, 6, 40))?;
    assert_eq!((r.status, r.error().code), (409, ErrorCode::Gap));
    // Too many blocks for the configured batch limit (16).
    let r = node.upload(&o, &gw.upload(0, 17, 40))?;
    assert_eq!((r.status, r.error().code), (413, ErrorCode::TooLarge));

    let mut mirrored = 0;
    for (from, to) in [(0, 10), (10, 16)] {
        let r = node.upload(&o, &gw.upload(from, to, 40))?;
        assert_eq!(r.status, 200, "{}", r.error());
        mirrored = UploadAck::from_cbor(&r.body)?.mirrored;
        assert_eq!(mirrored, to);
    }
    // A resend after a lost answer: no-op, same size.
    let r = node.upload(&o, &gw.upload(10, 16, 40))?;
    assert_eq!(UploadAck::from_cbor(&r.body)?.mirrored, 16);
    // A batch straddling the mirrored size adds only what is new.
    let r = node.upload(&o, &gw.upload(12, 20, 40))?;
    assert_eq!(UploadAck::from_cbor(&r.body)?.mirrored, 20);
    assert_eq!(node.metric("iov_ledger_blocks_mirrored_total ")?, 20);
    assert!(mirrored > 0);

    // Kill the ledger mid-upload (SIGKILL: nothing flushed on the way out), restart, resume.
    drop(node);
    let node = start(dir.path())?;
    let st = node.state(&o)?;
    assert_eq!((st.mirrored, st.witnessed.map(|w| w.size)), (20, Some(40)));
    assert_eq!(st.lanes, vec!["factory".to_owned()]);
    assert_eq!(node.mirror_rest(&gw, st.mirrored, 40, 16)?, 40);
    assert_eq!(node.state(&o)?.mirrored, 40);

    // The gateway grows; checkpoint, then upload the rest against the new checkpoint.
    gw.grow(5);
    node.witness(&gw, 40, 45)?;
    let r = node.upload(&o, &gw.upload(40, 45, 45))?;
    assert_eq!(UploadAck::from_cbor(&r.body)?.mirrored, 45);
    // Past the cosigned checkpoint: refused.
    gw.grow(1);
    let r = node.upload(&o, &gw.upload(45, 46, 46))?;
    assert_eq!((r.status, r.error().code), (409, ErrorCode::NotWitnessed));
    assert!(node.stop()?.success());
    Ok(())
}

#[test]
fn every_acknowledged_upload_survives_a_sigkill_during_uploads() -> Result<()> {
    let gw = Gateway::grown("iov.example/gw/VIN-L", 400);
    let (dir, mut node) = setup(&[&gw])?;
    let o = gw.origin().to_owned();
    node.witness(&gw, 0, 400)?;
    let url = node.url(&sync_wire::path::blocks(&o));
    let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let uploader = {
        let acked = acked.clone();
        let batches: Vec<Vec<u8>> =
            (0..100).map(|i| gw.upload(i * 4, i * 4 + 4, 400).to_cbor()).collect();
        std::thread::spawn(move || {
            for b in batches {
                let Ok(r) = reply(agent().post(&url).send(&b[..])) else { return };
                let Ok(ack) = UploadAck::from_cbor(&r.body) else { return };
                acked.store(ack.mirrored, std::sync::atomic::Ordering::SeqCst);
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.load(std::sync::atomic::Ordering::SeqCst) < 40 {
        if Instant::now() > deadline {
            bail!("uploads did not get going");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    node.child.kill()?; // SIGKILL, uploads in flight
    node.child.wait()?;
    uploader.join().map_err(|_| anyhow!("uploader panicked"))?;
    let last_ack = acked.load(std::sync::atomic::Ordering::SeqCst);
    drop(node);
    let node = start(dir.path())?;
    let st = node.state(&o)?;
    assert!(st.mirrored >= last_ack, "acknowledged {last_ack}, held {}", st.mirrored);
    assert_eq!(st.mirrored % 4, 0, "a batch is all or nothing");
    node.mirror_rest(&gw, st.mirrored, 400, 16)?;
    // Reaching 400 means the mirror's tiles hashed to the cosigned root on the last append
    // (the node checks it whenever an append reaches a cosigned size): nothing was torn.
    assert_eq!(node.state(&o)?.mirrored, 400);
    Ok(())
}

#[test]
fn a_forged_or_wrong_lane_is_refused_with_the_reason() -> Result<()> {
    let gw = Gateway::grown("iov.example/gw/VIN-C", 6);
    let (_dir, node) = setup(&[&gw])?;
    let o = gw.origin().to_owned();
    node.witness(&gw, 0, 6)?;

    let mut forged = gw.upload(0, 3, 6);
    forged.blocks[1].lanes[0].1[5] ^= 1;
    let r = node.upload(&o, &forged)?;
    let e = r.error();
    assert_eq!((r.status, e.code.clone()), (422, ErrorCode::BadLane));
    assert!(
        e.reason.contains("lane 0 (\"factory\") at height 1") && e.reason.contains("BLAKE3"),
        "{e}"
    );

    let mut city = gw.upload(0, 3, 6);
    city.blocks[0].lanes = vec![(0, gw.lanes[0][0].clone()), (1, gw.lanes[0][1].clone())];
    let e = node.upload(&o, &city)?.error();
    assert!(
        e.code == ErrorCode::BadLane
            && e.reason.contains("\"city\") is not a lane this organisation receives"),
        "{e}"
    );

    let mut missing = gw.upload(0, 3, 6);
    missing.blocks[2].lanes.clear();
    let e = node.upload(&o, &missing)?.error();
    assert!(
        e.code == ErrorCode::BadLane && e.reason.contains("height 2: lane 0 (\"factory\")"),
        "{e}"
    );

    let mut bad_proof = gw.upload(0, 3, 6);
    bad_proof.proof[0] = Hash([0; 32]);
    assert_eq!(node.upload(&o, &bad_proof)?.error().code, ErrorCode::BadProof);

    // Each lane is genuine, but the lanes of blocks 0 and 1 are swapped.
    let mut swapped = gw.upload(0, 3, 6);
    let lane0 = swapped.blocks[0].lanes.clone();
    swapped.blocks[0].lanes = swapped.blocks[1].lanes.clone();
    swapped.blocks[1].lanes = lane0;
    let e = node.upload(&o, &swapped)?.error();
    assert!(
        e.code == ErrorCode::BadLane && e.reason.contains("lane 0 (\"factory\") at height 0"),
        "{e}"
    );

    // A body cut short (a link that dropped mid-upload, replayed by a buggy client).
    let whole = gw.upload(0, 3, 6).to_cbor();
    let cut = node.post(&sync_wire::path::blocks(&o), &whole[..whole.len() / 2])?;
    assert_eq!(cut.status, 400, "truncated upload: {}", cut.error());

    // Nothing of the refused batches was kept.
    assert_eq!(node.state(&o)?.mirrored, 0);
    node.mirror(&gw, 0, 6, 6)?;
    assert_eq!(node.metric("iov_ledger_refusals_total{reason=\"bad_lane\"}")?, 4);
    Ok(())
}

#[test]
fn a_fork_at_a_held_height_is_refused_kept_as_evidence_and_alerts() -> Result<()> {
    // The gateway signs one tree whose leaves 0..5 are X0..X4 and whose leaves 5..10 chain from
    // a different block Y4: the ledger mirrors X0..X4, then is shown Y4 proven in a checkpoint
    // it cosigned: two histories signed by one key.
    let gw = Gateway::grown("iov.example/gw/VIN-D", 5);
    let mut y = gw.same_key();
    y.headers = gw.headers[..4].to_vec();
    y.lanes = gw.lanes[..4].to_vec();
    y.retree();
    y.grow(6); // Y4..Y9, Y4 chained to X3 with other lanes: a different header at height 4.
    let mut mixed = gw.same_key();
    mixed.headers = gw.headers.iter().chain(&y.headers[5..]).cloned().collect();
    mixed.lanes = gw.lanes.iter().chain(&y.lanes[5..]).cloned().collect();
    mixed.retree();

    let (_dir, node) = setup(&[&gw])?;
    let o = gw.origin().to_owned();
    node.witness(&mixed, 0, 10)?;
    node.mirror(&mixed, 0, 5, 10)?;
    // Y4..Y9: chains to X3, Y9 is leaf 9 of the cosigned tree, but height 4 is held as X4.
    let mut fork = y.upload(4, 10, 10);
    fork.proof = merkle::inclusion_proof(&mixed.tree, 9, 10)?;
    let r = node.upload(&o, &fork)?;
    let e = r.error();
    assert_eq!((r.status, e.code.clone()), (409, ErrorCode::Fork), "{e}");
    assert!(e.reason.contains("height 4"), "{e}");
    assert_eq!(node.metric("iov_ledger_forks ")?, 1);

    let ev =
        node.admin_get(&format!("/v1/admin/gateways/{}/evidence", sync_wire::escape_origin(&o)))?;
    let list: serde_json::Value = serde_json::from_slice(&ev.body)?;
    assert_eq!(list[0]["kind"], "fork");
    use base64::Engine as _;
    let kept = base64::engine::general_purpose::STANDARD
        .decode(list[0]["request_base64"].as_str().unwrap_or(""))?;
    assert_eq!(kept, fork.to_cbor(), "the evidence is the request, verbatim");
    assert_eq!(node.state(&o)?.mirrored, 5);
    Ok(())
}

#[test]
fn admin_endpoints_need_a_token_with_scope_admin_and_enrollment_opens_the_door() -> Result<()> {
    let gw = Gateway::grown("iov.example/gw/VIN-E", 3);
    let (dir, node) = setup(&[])?;
    // Not enrolled: refused on every sync endpoint.
    assert_eq!(node.add_checkpoint(&gw.add_checkpoint(0, 3))?.status, 404);
    assert_eq!(node.get(&sync_wire::path::state(gw.origin()))?.status, 404);

    let body =
        serde_json::json!({"vkey": gw.vkey(), "unit": "VIN-E", "lanes": ["factory"]}).to_string();
    let enroll = |auth: Option<&str>| -> Result<Reply> {
        let mut req = agent()
            .post(&node.url("/v1/admin/gateways"))
            .header("content-type", "application/json");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        reply(req.send(body.as_bytes()))
    };
    for (auth, want) in [(None, 401), (Some("Bearer wrong"), 401), (Some(ADMIN_SECRET), 401)] {
        let r = enroll(auth)?;
        assert_eq!(r.status, want, "{auth:?}");
        let j: serde_json::Value = serde_json::from_slice(&r.body)?;
        assert_eq!(j["code"], "unauthorized");
    }
    let list = reply(agent().get(&node.url("/v1/admin/gateways")).call())?;
    assert_eq!(list.status, 401, "no token, no data");
    assert_eq!(enroll(Some(&format!("Bearer {ADMIN_SECRET}")))?.status, 200);
    assert_eq!(node.metric("iov_ledger_gateways_enrolled ")?, 1);

    node.witness(&gw, 0, 3)?;
    let list = node.admin_get("/v1/admin/gateways")?;
    let rows: serde_json::Value = serde_json::from_slice(&list.body)?;
    assert_eq!(
        (rows[0]["origin"].as_str(), rows[0]["witnessed"].as_u64()),
        (Some(gw.origin()), Some(3))
    );
    // Re-keying an origin with state is refused.
    let other = ledger::keys::generate_signer(gw.origin())?;
    let rekey = serde_json::json!({"vkey": other.verifier().to_vkey(), "unit": "VIN-E", "lanes": ["factory"]});
    let r = reply(
        agent()
            .post(&node.url("/v1/admin/gateways"))
            .header("authorization", &format!("Bearer {ADMIN_SECRET}"))
            .send(rekey.to_string().as_bytes()),
    )?;
    assert_eq!(r.status, 403);
    // The enrollment is durable.
    drop(node);
    let node = start(dir.path())?;
    assert_eq!(node.state(gw.origin())?.witnessed.map(|w| w.size), Some(3));
    Ok(())
}

#[test]
fn tls_with_a_self_signed_certificate_serves_the_protocol() -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let gw = Gateway::grown("iov.example/gw/VIN-F", 4);
    let dir = tempfile::tempdir()?;
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    std::fs::write(dir.path().join("cert.pem"), ck.cert.pem())?;
    let key = dir.path().join("key.pem");
    std::fs::write(&key, ck.signing_key.serialize_pem())?;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    write_config(dir.path(), &[&gw], true)?;
    let node = start(dir.path())?;
    let port = node.base.rsplit(':').next().unwrap_or("0").to_owned();

    let https = https_agent(ck.cert.der());
    let base = format!("https://localhost:{port}");
    let r = reply(https.get(&format!("{base}{}", sync_wire::path::LINK)).call())?;
    assert_eq!(Link::from_cbor(&r.body)?.ledger, "factory.example");
    let r = reply(
        https
            .post(&format!("{base}{}", sync_wire::path::ADD_CHECKPOINT))
            .send(&gw.add_checkpoint(0, 4)[..]),
    )?;
    assert_eq!(r.status, 200);
    let r = reply(
        https
            .post(&format!("{base}{}", sync_wire::path::blocks(gw.origin())))
            .send(&gw.upload(0, 4, 4).to_cbor()[..]),
    )?;
    assert_eq!(UploadAck::from_cbor(&r.body)?.mirrored, 4);
    // Plain HTTP to the TLS port gets no answer; a client without the root refuses the server.
    assert!(agent().get(&format!("http://127.0.0.1:{port}/v1/link")).call().is_err());
    assert!(agent().get(&format!("{base}/v1/link")).call().is_err());
    assert!(node.stop()?.success());
    Ok(())
}

#[test]
fn the_aggregate_log_serves_accepted_checkpoints_as_verifiable_tiles() -> Result<()> {
    use ledger::tile::{self, Tile};
    let mut a = Gateway::new("iov.example/gw/VIN-H");
    let mut b = Gateway::new("iov.example/gw/VIN-I");
    a.grow(7);
    b.grow(2);
    let (dir, node) = setup(&[&a, &b])?;
    let log_key = ledger::keys::load_signer(&dir.path().join("signing.key"))?.verifier();
    let cosigner = node.cosigner()?;
    for (g, old, new) in [(&a, 0, 3), (&b, 0, 2), (&a, 3, 7), (&a, 7, 7)] {
        let r = node.add_checkpoint(&g.add_checkpoint(old, new))?;
        assert_eq!(r.status, 200, "{}", r.error());
    }
    let fetch = |node: &NodeProc, path: &str| -> Result<Reply> { node.get(path) };

    // The re-cosign of size 7 is not a new leaf: three accepted checkpoints.
    let cp_bytes = fetch(&node, "/checkpoint")?.body;
    let (signed, _) = SignedCheckpoint::verify(&cp_bytes, &[&log_key])?;
    let cp = signed.checkpoint().clone();
    assert_eq!((cp.origin(), cp.size()), ("factory.example/ledger", 3));

    let mut tiles = std::collections::BTreeMap::new();
    for t in tile::tiles_for_size(3) {
        let r = fetch(&node, &format!("/{}", t.path()))?;
        assert_eq!(r.status, 200, "{}", t.path());
        tiles.insert(t, r.body);
    }
    tile::verify_tiles(&tiles, 3, cp.root())?;
    let t0 = Tile::new(0, 0, 3)?;
    let bundle = fetch(&node, &format!("/{}", t0.entries_path()))?.body;
    tile::check_bundle(&bundle, &tiles[&t0])?;
    let leaves = tile::decode_bundle(&bundle)?;
    let sizes: Vec<(String, u64)> = leaves
        .iter()
        .map(|l| {
            let note = ledger::note::Note::parse(l)?;
            let c = Checkpoint::parse(note.text())?;
            let gw = if c.origin() == a.origin() { &a } else { &b };
            assert_eq!(note.verify(&[&gw.signer.verifier(), &cosigner])?.len(), 2);
            Ok((c.origin().to_owned(), c.size()))
        })
        .collect::<Result<_>>()?;
    assert_eq!(
        sizes,
        [(a.origin().to_owned(), 3), (b.origin().to_owned(), 2), (a.origin().to_owned(), 7)]
    );
    // Tiles are immutable and cacheable; a tile beyond the tree is not served.
    let r = fetch(&node, &format!("/{}", t0.path()))?;
    assert_eq!(r.cache_control, "public, max-age=31536000, immutable");
    assert_eq!(fetch(&node, "/checkpoint")?.cache_control, "no-cache");
    assert_eq!(fetch(&node, &format!("/{}", Tile::new(0, 0, 4)?.path()))?.status, 404);
    assert_eq!(fetch(&node, "/tile/0/x001/000")?.status, 404);

    // After a restart the log goes on from where it was.
    drop(node);
    let node = start(dir.path())?;
    assert_eq!(fetch(&node, "/checkpoint")?.body, cp_bytes);
    a.grow(1);
    node.witness(&a, 7, 8)?;
    let (signed, _) = SignedCheckpoint::verify(&fetch(&node, "/checkpoint")?.body, &[&log_key])?;
    assert_eq!(signed.checkpoint().size(), 4);
    let t4 = Tile::new(0, 0, 4)?;
    let mut leaves4 = std::collections::BTreeMap::new();
    leaves4.insert(t4, fetch(&node, &format!("/{}", t4.path()))?.body);
    tile::verify_tiles(&leaves4, 4, signed.checkpoint().root())?;
    assert_eq!(&leaves4[&t4][..96], &tiles[&t0][..], "the first three leaves did not change");
    Ok(())
}

#[test]
fn a_query_returns_blocks_with_a_completeness_proof_to_scoped_tokens() -> Result<()> {
    let mut gw = Gateway::new("iov.example/gw/VIN-J");
    let mut other = Gateway::new("iov.example/gw/VIN-K");
    gw.grow(30);
    other.grow(2);
    let (_dir, node) = setup(&[&gw, &other])?;
    let cosigner = node.cosigner()?;
    let o = gw.origin().to_owned();
    let query = |origin: &str, from: u64, to: u64, token: Option<&str>| -> Result<Reply> {
        node.query(origin, from, to, token)
    };
    // Cosigned 10 and mirrored up to it; then cosigned 30 and mirrored up to 20.
    node.witness(&gw, 0, 10)?;
    node.mirror(&gw, 0, 10, 10)?;
    node.witness(&gw, 10, 30)?;
    node.mirror(&gw, 10, 20, 30)?;

    assert_eq!(query(&o, 0, 5, None)?.status, 401);
    assert_eq!(query(&o, 0, 5, Some("nope"))?.status, 401);
    assert_eq!(query(&o, 0, 5, Some(ADMIN_SECRET))?.status, 403, "admin is not query");
    assert_eq!(query(other.origin(), 0, 1, Some(FLEET_SECRET))?.status, 403, "another unit");
    assert_eq!(query("iov.example/gw/NOBODY", 0, 1, Some(FLEET_SECRET))?.status, 404);

    // Provable up to 10 (the largest cosigned size that is mirrored).
    let r = query(&o, 2, 30, Some(FLEET_SECRET))?;
    assert_eq!(r.status, 200, "{}", r.error());
    let q = sync_wire::QueryBlocks::from_cbor(&r.body, 64 << 20)?;
    assert_eq!((q.start, q.end, q.unit.as_str()), (2, 10, "VIN-VIN-J"));
    let headers = verified_headers(&q, &gw)?;
    let note = ledger::note::Note::parse(&q.checkpoint)?;
    assert_eq!(note.verify(&[&gw.signer.verifier(), &cosigner])?.len(), 2, "cosigned");
    for (b, h) in q.blocks.iter().zip(&headers) {
        assert_eq!(b.lanes.len(), 1);
        ledger::verify::lane_against_header(h, usize::from(b.lanes[0].0), &b.lanes[0].1)?;
        assert!(b.received_at_ns > 1_700_000_000_000_000_000);
    }
    // A tampered proof does not verify: the check is real.
    let mut bad = q.range_proof.clone();
    if let Some(h) = bad.first_mut() {
        h.0[0] ^= 1;
    }
    assert!(ledger::verify::complete_range_signed(
        &headers,
        &q.checkpoint,
        &gw.signer.verifier(),
        &bad
    )
    .is_err());

    // After the rest is mirrored, the answer is proven in the checkpoint of 30, paged by 16.
    node.mirror(&gw, 20, 30, 30)?;
    let q =
        sync_wire::QueryBlocks::from_cbor(&query(&o, 5, 30, Some(FLEET_SECRET))?.body, 64 << 20)?;
    assert_eq!((q.start, q.end), (5, 21));
    verified_headers(&q, &gw)?;
    assert_eq!(Checkpoint::parse(ledger::note::Note::parse(&q.checkpoint)?.text())?.size(), 30);
    assert_eq!(q.requested_end, 30);

    // By time: the blocks whose records overlap [T(5) + 0.5 s, T(8) + 1 ns) are heights 5..=8.
    let t = |h: u64| 1_700_000_000_000_000_000 + h * 1_000_000_000;
    let by_time = |a: u64, b: u64| -> Result<Reply> {
        node.query_path(&sync_wire::path::query_times(&o, a, b), Some(FLEET_SECRET))
    };
    let r = by_time(t(5) + 500_000_000, t(8) + 1)?;
    assert_eq!(r.status, 200, "{}", r.error());
    let q = sync_wire::QueryBlocks::from_cbor(&r.body, 64 << 20)?;
    assert_eq!((q.start, q.end, q.requested_end), (5, 9, 9));
    verified_headers(&q, &gw)?;
    assert_eq!(by_time(1, 2)?.status, 404, "no block that early");
    assert_eq!(by_time(5, 5)?.status, 400, "empty time range");
    Ok(())
}

#[test]
fn real_sealed_blocks_are_mirrored_and_the_organisation_opens_its_lane_from_a_query() -> Result<()>
{
    use chacha20::rand_core::SeedableRng as _;
    use ledger::record::{CanFlags, CanRecord, Record};
    use ledger::seal::{open_lane_bytes, seal_block, LaneSpec, SealOptions};

    let factory = ledger::keys::X25519Key::generate("factory.example/lanes")?;
    let city = ledger::keys::X25519Key::generate("city.example/lanes")?;
    let mut rng = chacha20::ChaCha20Rng::from_seed([42; 32]);
    let mut gw = Gateway::new("iov.example/gw/VIN-J");
    let iface: Arc<str> = Arc::from("can0");
    let mut sent: Vec<Vec<Record>> = Vec::new();
    for h in 0..6u64 {
        let records: Vec<Record> = (0..50u64)
            .map(|i| {
                let t = 1_700_000_000_000_000_000 + h * 1_000_000_000 + i * 10_000_000;
                let data = [(i % 256) as u8, (h % 256) as u8, 1, 2, 3, 4, 5, 6];
                CanRecord::new(t, iface.clone(), 0x123, CanFlags::default(), &data, 0)
                    .map(Record::Can)
            })
            .collect::<Result<_, _>>()?;
        let prev = gw.headers.last().map_or(BlockHash::ZERO, |p| hash_header_bytes(p));
        let block = seal_block(
            gw.key(),
            h,
            prev,
            &[
                LaneSpec {
                    name: "factory".into(),
                    recipients: vec![factory.public()],
                    records: records.clone(),
                },
                LaneSpec {
                    name: "city".into(),
                    recipients: vec![city.public()],
                    records: records[..5].to_vec(),
                },
            ],
            &SealOptions::default(),
            &mut rng,
        )?;
        gw.tree.push(&block.header_bytes);
        gw.headers.push(block.header_bytes);
        gw.lanes.push(block.lanes);
        sent.push(records);
    }
    let (_dir, node) = setup(&[&gw])?;
    let o = gw.origin().to_owned();
    node.witness(&gw, 0, 6)?;
    assert_eq!(node.mirror(&gw, 0, 6, 6)?, 6);

    let r = node.query(&o, 0, 6, Some(FLEET_SECRET))?;
    let q = sync_wire::QueryBlocks::from_cbor(&r.body, 64 << 20)?;
    let headers = verified_headers(&q, &gw)?;
    for ((b, h), want) in q.blocks.iter().zip(&headers).zip(&sent) {
        let (idx, ct) = &b.lanes[0];
        let got =
            open_lane_bytes(h, usize::from(*idx), ct, &factory, &ledger::lane::Limits::DEFAULT)?;
        assert_eq!(&got, want, "height {}", h.height);
        assert!(open_lane_bytes(h, usize::from(*idx), ct, &city, &ledger::lane::Limits::DEFAULT)
            .is_err());
    }
    Ok(())
}

#[test]
fn check_config_names_the_bad_key_and_sigterm_exits_cleanly() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = write_config(dir.path(), &[], false)?;
    let ok = Command::new(env!("CARGO_BIN_EXE_iov-ledger"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()?;
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let text = std::fs::read_to_string(&path)?
        .replace("max_blocks_per_batch = 16", "max_blocks_per_batch = 0");
    std::fs::write(&path, text)?;
    let bad = Command::new(env!("CARGO_BIN_EXE_iov-ledger"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()?;
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("limits.max_blocks_per_batch"));
    let printed =
        Command::new(env!("CARGO_BIN_EXE_iov-ledger")).arg("print-default-config").output()?;
    assert!(String::from_utf8_lossy(&printed.stdout).contains("[ledger]"));

    let (_d, node) = setup(&[])?;
    let _ = &node.dir;
    assert!(node.stop()?.success());

    // Without ledger.log_key the node witnesses and mirrors but keeps no aggregate log.
    let gw = Gateway::grown("iov.example/gw/VIN-M", 3);
    let dir = tempfile::tempdir()?;
    let path = write_config(dir.path(), &[&gw], false)?;
    let text = std::fs::read_to_string(&path)?.replace("log_key = \"signing.key\"\n", "");
    std::fs::write(&path, text)?;
    let node = start(dir.path())?;
    node.witness(&gw, 0, 3)?;
    assert_eq!(node.get("/checkpoint")?.status, 404);
    assert_eq!(node.get("/tile/0/000.p/1")?.status, 404);
    assert!(node.stop()?.success());
    Ok(())
}
