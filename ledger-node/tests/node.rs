//! End to end: the real `iov-ledger` binary on a loopback port with a RocksDB directory, driven
//! over real HTTP(S) with gateway logs built by the `ledger` crate (real headers, Merkle tree,
//! signed checkpoints; lane ciphertexts are random bytes, which is all a ledger sees of them).

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use ledger::block::{hash_header_bytes, BlockHash, BlockHeader, LaneInfo, BLOCK_VERSION};
use ledger::checkpoint::{Checkpoint, SignedCheckpoint};
use ledger::cosignature::CosignatureVerifier;
use ledger::merkle::{self, Hash, MemoryTree};
use ledger::note::Ed25519Signer;
use ledger::sync_wire::{
    self, AddCheckpoint, ErrorBody, ErrorCode, GatewayState, Link, Upload, UploadAck, UploadBlock,
};
use sha2::Digest as _;

const ADMIN_SECRET: &str = "admin-secret-for-tests";
const FLEET_SECRET: &str = "fleet-secret-for-tests";

// ---------------------------------------------------------------------------------------------
// A gateway log made with the ledger crate.

struct Gateway {
    signer: Ed25519Signer,
    headers: Vec<Vec<u8>>,
    lanes: Vec<Vec<Vec<u8>>>,
    tree: MemoryTree,
}

impl Gateway {
    fn new(name: &str) -> Gateway {
        let signer = ledger::keys::generate_signer(name).expect("key");
        Gateway { signer, headers: Vec::new(), lanes: Vec::new(), tree: MemoryTree::new() }
    }

    fn origin(&self) -> &str {
        self.signer.name()
    }

    fn vkey(&self) -> String {
        self.signer.verifier().to_vkey()
    }

    fn key(&self) -> [u8; 32] {
        *self.signer.verifier().public_key().as_bytes()
    }

    /// Appends `n` blocks with lanes "factory" (index 0) and "city" (index 1), chained to the
    /// last header (or to `prev` when given).
    fn grow_from(&mut self, n: u64, prev: Option<BlockHash>) {
        let mut prev = prev;
        for _ in 0..n {
            let height = self.headers.len() as u64;
            let p = prev.take().unwrap_or_else(|| {
                self.headers.last().map_or(BlockHash::ZERO, |h| hash_header_bytes(h))
            });
            let lanes: Vec<Vec<u8>> = (0..2)
                .map(|i| {
                    let mut b = vec![0u8; 64 + (height as usize * 7 + i) % 200];
                    getrandom::fill(&mut b).expect("random");
                    b
                })
                .collect();
            let t0 = 1_700_000_000_000_000_000 + height * 1_000_000_000;
            let header = BlockHeader {
                version: BLOCK_VERSION,
                gateway: self.key(),
                height,
                prev: p,
                first_ns: t0,
                last_ns: t0 + 999_000_000,
                lanes: ["factory", "city"]
                    .iter()
                    .zip(&lanes)
                    .map(|(name, l)| LaneInfo {
                        name: (*name).into(),
                        record_count: 10,
                        recipients: Vec::new(),
                        digest: *blake3::hash(l).as_bytes(),
                        size: l.len() as u64,
                    })
                    .collect(),
            };
            let bytes = header.to_bytes();
            self.tree.push(&bytes);
            self.headers.push(bytes);
            self.lanes.push(lanes);
        }
    }

    fn grow(&mut self, n: u64) {
        self.grow_from(n, None);
    }

    fn root_at(&self, size: u64) -> Hash {
        MemoryTree::from_leaf_hashes(
            self.headers[..size as usize].iter().map(|h| merkle::leaf_hash(h)),
        )
        .root()
    }

    fn checkpoint(&self, size: u64) -> Vec<u8> {
        let cp = Checkpoint::new(self.origin(), size, self.root_at(size)).expect("checkpoint");
        SignedCheckpoint::sign(cp, &self.signer).expect("sign").to_bytes()
    }

    fn add_checkpoint(&self, old: u64, new: u64) -> Vec<u8> {
        let proof = if old == 0 || old == new {
            Vec::new()
        } else {
            merkle::consistency_proof(&self.tree, old, new).expect("proof")
        };
        AddCheckpoint { old_size: old, proof, checkpoint: self.checkpoint(new) }.to_bytes()
    }

    /// Blocks `[from, to)` with the factory lane, proven in the checkpoint of `cp_size`.
    fn upload(&self, from: u64, to: u64, cp_size: u64) -> Upload {
        let blocks = (from..to)
            .map(|h| UploadBlock {
                height: h,
                header: self.headers[h as usize].clone(),
                lanes: vec![(0, self.lanes[h as usize][0].clone())],
            })
            .collect();
        let proof = merkle::inclusion_proof(&self.tree, to - 1, cp_size).expect("inclusion");
        Upload { blocks, checkpoint_size: cp_size, proof }
    }
}

// ---------------------------------------------------------------------------------------------
// The node as a child process.

struct NodeProc {
    child: Child,
    base: String,
    metrics: String,
    dir: PathBuf,
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sha_hex(s: &str) -> String {
    sha2::Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes the cosigner key and a config into `dir` (once) and returns the config path.
fn write_config(dir: &Path, gateways: &[&Gateway], tls: bool) -> Result<PathBuf> {
    let key = dir.join("witness.key");
    if !key.exists() {
        let c = ledger::keys::generate_cosigner("factory.example/ledger")?;
        ledger::keys::save_cosigner(&key, &c)?;
        let l = ledger::keys::generate_signer("factory.example/ledger")?;
        ledger::keys::save_signer(&dir.join("signing.key"), &l)?;
    }
    let mut text = format!(
        "[ledger]\nname = \"factory.example\"\ncosigner_key = \"witness.key\"\nlog_key = \"signing.key\"\nstore = \"store\"\n\n\
         [listen]\naddress = \"127.0.0.1:0\"\n{}\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n\n\
         [limits]\nmax_blocks_per_batch = 16\nmax_upload_bytes = \"1MiB\"\n\n\
         [[tokens]]\nname = \"ops\"\nsha256 = \"{}\"\nscopes = [\"admin\"]\n\n\
         [[tokens]]\nname = \"fleet\"\nblake3 = \"{}\"\nscopes = [\"query:VIN-VIN-J\"]\n",
        if tls { "tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n" } else { "" },
        sha_hex(ADMIN_SECRET),
        blake3::hash(FLEET_SECRET.as_bytes()).to_hex()
    );
    for g in gateways {
        text.push_str(&format!(
            "\n[[gateways]]\nvkey = \"{}\"\nunit = \"VIN-{}\"\nlanes = [\"factory\"]\n",
            g.vkey(),
            g.origin().rsplit('/').next().unwrap_or("x")
        ));
    }
    let path = dir.join("ledger.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

fn start(dir: &Path) -> Result<NodeProc> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_iov-ledger"))
        .args(["run", "--config"])
        .arg(dir.join("ledger.toml"))
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("spawning iov-ledger")?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .context("iov-ledger did not report its address within 60 s")?;
    let parts: Vec<&str> = line.split_whitespace().collect();
    let ["listening", main, "metrics", metrics] = parts.as_slice() else {
        let _ = child.kill();
        bail!("unexpected first line {line:?}");
    };
    Ok(NodeProc {
        base: main.to_string(),
        metrics: format!("http://{metrics}/metrics"),
        child,
        dir: dir.to_owned(),
    })
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

struct Reply {
    status: u16,
    content_type: String,
    cache_control: String,
    body: Vec<u8>,
}

impl Reply {
    fn error(&self) -> ErrorBody {
        ErrorBody::from_cbor(&self.body).unwrap_or_else(|_| ErrorBody::from_text(&self.body))
    }
}

fn reply(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Reply> {
    let mut r = r?;
    let content_type =
        r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let cache_control =
        r.headers().get("cache-control").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let status = r.status().as_u16();
    let body = r.body_mut().read_to_vec()?;
    Ok(Reply { status, content_type, cache_control, body })
}

impl NodeProc {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.base)
    }

    fn post(&self, path: &str, body: &[u8]) -> Result<Reply> {
        reply(agent().post(&self.url(path)).send(body))
    }

    fn get(&self, path: &str) -> Result<Reply> {
        reply(agent().get(&self.url(path)).call())
    }

    fn add_checkpoint(&self, body: &[u8]) -> Result<Reply> {
        self.post(sync_wire::path::ADD_CHECKPOINT, body)
    }

    fn upload(&self, origin: &str, u: &Upload) -> Result<Reply> {
        self.post(&sync_wire::path::blocks(origin), &u.to_cbor())
    }

    fn state(&self, origin: &str) -> Result<GatewayState> {
        let r = self.get(&sync_wire::path::state(origin))?;
        if r.status != 200 {
            bail!("state: {} {}", r.status, r.error());
        }
        Ok(GatewayState::from_cbor(&r.body)?)
    }

    fn metric(&self, line_start: &str) -> Result<u64> {
        let text = reply(agent().get(&self.metrics).call())?.body;
        let text = String::from_utf8(text)?;
        text.lines()
            .find_map(|l| l.strip_prefix(line_start).and_then(|v| v.trim().parse().ok()))
            .ok_or_else(|| anyhow!("metric {line_start} not in\n{text}"))
    }

    fn cosigner(&self) -> Result<CosignatureVerifier> {
        let l = Link::from_cbor(&self.get(sync_wire::path::LINK)?.body)?;
        assert_eq!(l.protocol, sync_wire::PROTOCOL);
        assert_eq!(l.ledger, "factory.example");
        Ok(CosignatureVerifier::from_vkey(&l.cosigner)?)
    }

    /// SIGTERM, then wait for a clean exit.
    fn stop(mut self) -> Result<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let st = Command::new("kill").args(["-TERM", &pid]).status()?;
        assert!(st.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                bail!("iov-ledger did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn setup(gateways: &[&Gateway]) -> Result<(tempfile::TempDir, NodeProc)> {
    let dir = tempfile::tempdir()?;
    write_config(dir.path(), gateways, false)?;
    let node = start(dir.path())?;
    Ok((dir, node))
}

// ---------------------------------------------------------------------------------------------

#[test]
fn add_checkpoint_answers_every_witness_status_code() -> Result<()> {
    let mut gw = Gateway::new("iov.example/gw/VIN-A");
    gw.grow(12);
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
    let mut other = Gateway { signer: gw.signer.clone(), ..Gateway::new("x/z") };
    other.grow(5);
    let r = node.add_checkpoint(
        &AddCheckpoint { old_size: 5, proof: vec![], checkpoint: other.checkpoint(5) }.to_bytes(),
    )?;
    assert_eq!((r.status, r.error().code), (422, ErrorCode::Fork));
    assert_eq!(node.metric("iov_ledger_forks ")?, 1);
    assert_eq!(node.metric("iov_ledger_evidence ")?, 2);

    // 200 again from the cosigned size, and a resend of the same checkpoint is answered again.
    assert_eq!(node.add_checkpoint(&gw.add_checkpoint(5, 12))?.status, 200);
    assert_eq!(node.add_checkpoint(&gw.add_checkpoint(12, 12))?.status, 200);
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
    let mut gw = Gateway::new("iov.example/gw/VIN-G");
    gw.grow(16);
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
fn uploads_in_batches_are_idempotent_and_resume_after_a_restart() -> Result<()> {
    let mut gw = Gateway::new("iov.example/gw/VIN-B");
    gw.grow(40);
    let (dir, node) = setup(&[&gw])?;
    let o = gw.origin().to_owned();

    // Before any checkpoint: not witnessed.
    let r = node.upload(&o, &gw.upload(0, 5, 40))?;
    assert_eq!((r.status, r.error().code), (409, ErrorCode::NotWitnessed));
    assert_eq!(node.add_checkpoint(&gw.add_checkpoint(0, 40))?.status, 200);

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
    let mut at = st.mirrored;
    while at < 40 {
        let to = (at + 16).min(40);
        let r = node.upload(&o, &gw.upload(at, to, 40))?;
        assert_eq!(r.status, 200, "{}", r.error());
        at = UploadAck::from_cbor(&r.body)?.mirrored;
    }
    assert_eq!(node.state(&o)?.mirrored, 40);

    // The gateway grows; checkpoint, then upload the rest against the new checkpoint.
    gw.grow(5);
    assert_eq!(node.add_checkpoint(&gw.add_checkpoint(40, 45))?.status, 200);
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
    let mut gw = Gateway::new("iov.example/gw/VIN-L");
    gw.grow(400);
    let (dir, mut node) = setup(&[&gw])?;
    let o = gw.origin().to_owned();
    assert_eq!(node.add_checkpoint(&gw.add_checkpoint(0, 400))?.status, 200);
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
    let mut at = st.mirrored;
    while at < 400 {
        let to = (at + 16).min(400);
        at = UploadAck::from_cbor(&node.upload(&o, &gw.upload(at, to, 400))?.body)?.mirrored;
    }
    // Reaching 400 means the mirror's tiles hashed to the cosigned root on the last append
    // (the node checks it whenever an append reaches a cosigned size): nothing was torn.
    assert_eq!(node.state(&o)?.mirrored, 400);
    Ok(())
}

#[test]
fn a_forged_or_wrong_lane_is_refused_with_the_reason() -> Result<()> {
    let mut gw = Gateway::new("iov.example/gw/VIN-C");
    gw.grow(6);
    let (_dir, node) = setup(&[&gw])?;
    let o = gw.origin().to_owned();
    assert_eq!(node.add_checkpoint(&gw.add_checkpoint(0, 6))?.status, 200);

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

    // Nothing of the refused batches was kept.
    assert_eq!(node.state(&o)?.mirrored, 0);
    assert_eq!(node.upload(&o, &gw.upload(0, 6, 6))?.status, 200);
    assert_eq!(node.metric("iov_ledger_refusals_total{reason=\"bad_lane\"}")?, 3);
    Ok(())
}

#[test]
fn a_fork_at_a_held_height_is_refused_kept_as_evidence_and_alerts() -> Result<()> {
    // The gateway signs one tree whose leaves 0..5 are X0..X4 and whose leaves 5..10 chain from
    // a different block Y4: the ledger mirrors X0..X4, then is shown Y4 proven in a checkpoint
    // it cosigned: two histories signed by one key.
    let mut gw = Gateway::new("iov.example/gw/VIN-D");
    gw.grow(5);
    let mut y = Gateway { signer: gw.signer.clone(), ..Gateway::new("x/w") };
    y.headers = gw.headers[..4].to_vec();
    y.lanes = gw.lanes[..4].to_vec();
    y.tree = MemoryTree::from_leaf_hashes(y.headers.iter().map(|h| merkle::leaf_hash(h)));
    y.grow(6); // Y4..Y9, Y4 chained to X3 with other lanes: a different header at height 4.
    let mut mixed = Gateway { signer: gw.signer.clone(), ..Gateway::new("x/v") };
    mixed.headers = gw.headers.iter().chain(&y.headers[5..]).cloned().collect();
    mixed.lanes = gw.lanes.iter().chain(&y.lanes[5..]).cloned().collect();
    mixed.tree = MemoryTree::from_leaf_hashes(mixed.headers.iter().map(|h| merkle::leaf_hash(h)));

    let (_dir, node) = setup(&[&gw])?;
    let o = gw.origin().to_owned();
    assert_eq!(node.add_checkpoint(&mixed.add_checkpoint(0, 10))?.status, 200);
    assert_eq!(node.upload(&o, &mixed.upload(0, 5, 10))?.status, 200);
    // Y4..Y9: chains to X3, Y9 is leaf 9 of the cosigned tree, but height 4 is held as X4.
    let mut fork = y.upload(4, 10, 10);
    fork.proof = merkle::inclusion_proof(&mixed.tree, 9, 10)?;
    let r = node.upload(&o, &fork)?;
    let e = r.error();
    assert_eq!((r.status, e.code.clone()), (409, ErrorCode::Fork), "{e}");
    assert!(e.reason.contains("height 4"), "{e}");
    assert_eq!(node.metric("iov_ledger_forks ")?, 1);

    let ev = reply(
        agent()
            .get(
                &node.url(&format!("/v1/admin/gateways/{}/evidence", sync_wire::escape_origin(&o))),
            )
            .header("authorization", &format!("Bearer {ADMIN_SECRET}"))
            .call(),
    )?;
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
    let mut gw = Gateway::new("iov.example/gw/VIN-E");
    gw.grow(3);
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

    assert_eq!(node.add_checkpoint(&gw.add_checkpoint(0, 3))?.status, 200);
    let list = reply(
        agent()
            .get(&node.url("/v1/admin/gateways"))
            .header("authorization", &format!("Bearer {ADMIN_SECRET}"))
            .call(),
    )?;
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
    let mut gw = Gateway::new("iov.example/gw/VIN-F");
    gw.grow(4);
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

    let root = ureq::tls::Certificate::from_der(ck.cert.der()).to_owned();
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![root])))
        .build();
    let https: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
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
    assert_eq!(node.add_checkpoint(&a.add_checkpoint(7, 8))?.status, 200);
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
        let mut r = agent().get(&node.url(&sync_wire::path::query_blocks(origin, from, to)));
        if let Some(t) = token {
            r = r.header("authorization", &format!("Bearer {t}"));
        }
        reply(r.call())
    };
    // Cosigned 10 and mirrored up to it; then cosigned 30 and mirrored up to 20.
    assert_eq!(node.add_checkpoint(&gw.add_checkpoint(0, 10))?.status, 200);
    assert_eq!(node.upload(&o, &gw.upload(0, 10, 10))?.status, 200);
    assert_eq!(node.add_checkpoint(&gw.add_checkpoint(10, 30))?.status, 200);
    assert_eq!(node.upload(&o, &gw.upload(10, 20, 30))?.status, 200);

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
    let headers: Vec<BlockHeader> =
        q.blocks.iter().map(|b| BlockHeader::from_bytes(&b.header)).collect::<Result<_, _>>()?;
    ledger::verify::complete_range_signed(
        &headers,
        &q.checkpoint,
        &gw.signer.verifier(),
        &q.range_proof,
    )?;
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
    assert_eq!(node.upload(&o, &gw.upload(20, 30, 30))?.status, 200);
    let q =
        sync_wire::QueryBlocks::from_cbor(&query(&o, 5, 30, Some(FLEET_SECRET))?.body, 64 << 20)?;
    assert_eq!((q.start, q.end), (5, 21));
    let headers: Vec<BlockHeader> =
        q.blocks.iter().map(|b| BlockHeader::from_bytes(&b.header)).collect::<Result<_, _>>()?;
    ledger::verify::complete_range_signed(
        &headers,
        &q.checkpoint,
        &gw.signer.verifier(),
        &q.range_proof,
    )?;
    assert_eq!(Checkpoint::parse(ledger::note::Note::parse(&q.checkpoint)?.text())?.size(), 30);
    assert_eq!(q.requested_end, 30);

    // By time: the blocks whose records overlap [T(5) + 0.5 s, T(8) + 1 ns) are heights 5..=8.
    let t = |h: u64| 1_700_000_000_000_000_000 + h * 1_000_000_000;
    let by_time = |a: u64, b: u64| -> Result<Reply> {
        reply(
            agent()
                .get(&node.url(&sync_wire::path::query_times(&o, a, b)))
                .header("authorization", &format!("Bearer {FLEET_SECRET}"))
                .call(),
        )
    };
    let r = by_time(t(5) + 500_000_000, t(8) + 1)?;
    assert_eq!(r.status, 200, "{}", r.error());
    let q = sync_wire::QueryBlocks::from_cbor(&r.body, 64 << 20)?;
    assert_eq!((q.start, q.end, q.requested_end), (5, 9, 9));
    let headers: Vec<BlockHeader> =
        q.blocks.iter().map(|b| BlockHeader::from_bytes(&b.header)).collect::<Result<_, _>>()?;
    ledger::verify::complete_range_signed(
        &headers,
        &q.checkpoint,
        &gw.signer.verifier(),
        &q.range_proof,
    )?;
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
    assert_eq!(node.add_checkpoint(&gw.add_checkpoint(0, 6))?.status, 200);
    assert_eq!(UploadAck::from_cbor(&node.upload(&o, &gw.upload(0, 6, 6))?.body)?.mirrored, 6);

    let r = reply(
        agent()
            .get(&node.url(&sync_wire::path::query_blocks(&o, 0, 6)))
            .header("authorization", &format!("Bearer {FLEET_SECRET}"))
            .call(),
    )?;
    let q = sync_wire::QueryBlocks::from_cbor(&r.body, 64 << 20)?;
    let headers: Vec<BlockHeader> =
        q.blocks.iter().map(|b| BlockHeader::from_bytes(&b.header)).collect::<Result<_, _>>()?;
    ledger::verify::complete_range_signed(
        &headers,
        &q.checkpoint,
        &gw.signer.verifier(),
        &q.range_proof,
    )?;
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
    let mut gw = Gateway::new("iov.example/gw/VIN-M");
    gw.grow(3);
    let dir = tempfile::tempdir()?;
    let path = write_config(dir.path(), &[&gw], false)?;
    let text = std::fs::read_to_string(&path)?.replace("log_key = \"signing.key\"\n", "");
    std::fs::write(&path, text)?;
    let node = start(dir.path())?;
    assert_eq!(node.add_checkpoint(&gw.add_checkpoint(0, 3))?.status, 200);
    assert_eq!(node.get("/checkpoint")?.status, 404);
    assert_eq!(node.get("/tile/0/000.p/1")?.status, 404);
    assert!(node.stop()?.success());
    Ok(())
}
