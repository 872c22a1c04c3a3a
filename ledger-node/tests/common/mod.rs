//! Shared by the ledger node's end-to-end tests: gateway logs built with the `ledger` crate
//! (real headers, Merkle tree, signed checkpoints; lane ciphertexts are random bytes, which is
//! all a ledger sees of them), the real `iov-ledger` binary as a child process with a config
//! enrolling them, an HTTP client, and the sync steps a test repeats (witness, mirror, query).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context as _, Result};
use ledger::block::{hash_header_bytes, BlockHash, BlockHeader, LaneInfo, BLOCK_VERSION};
use ledger::checkpoint::{Checkpoint, SignedCheckpoint};
use ledger::cosignature::CosignatureVerifier;
use ledger::merkle::{self, Hash, MemoryTree};
use ledger::note::Ed25519Signer;
use ledger::sync_wire::{
    self, AddCheckpoint, ErrorBody, GatewayState, Link, QueryBlocks, Upload, UploadAck, UploadBlock,
};
use sha2::Digest as _;

pub const ADMIN_SECRET: &str = "admin-secret-for-tests";
pub const FLEET_SECRET: &str = "fleet-secret-for-tests";

// ---------------------------------------------------------------------------------------------
// A gateway log made with the ledger crate.

pub struct Gateway {
    pub signer: Ed25519Signer,
    pub headers: Vec<Vec<u8>>,
    pub lanes: Vec<Vec<Vec<u8>>>,
    pub tree: MemoryTree,
}

impl Gateway {
    pub fn new(name: &str) -> Gateway {
        let signer = ledger::keys::generate_signer(name).expect("key");
        Gateway { signer, headers: Vec::new(), lanes: Vec::new(), tree: MemoryTree::new() }
    }

    pub fn origin(&self) -> &str {
        self.signer.name()
    }

    pub fn vkey(&self) -> String {
        self.signer.verifier().to_vkey()
    }

    pub fn key(&self) -> [u8; 32] {
        *self.signer.verifier().public_key().as_bytes()
    }

    /// Appends `n` blocks with lanes "factory" (index 0) and "city" (index 1), chained to the
    /// last header (or to `prev` when given).
    pub fn grow_from(&mut self, n: u64, prev: Option<BlockHash>) {
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

    pub fn grow(&mut self, n: u64) {
        self.grow_from(n, None);
    }

    /// A gateway named `name` with `n` blocks.
    pub fn grown(name: &str, n: u64) -> Gateway {
        let mut g = Gateway::new(name);
        g.grow(n);
        g
    }

    /// An empty log signed by this gateway's key (to build a second history with it).
    pub fn same_key(&self) -> Gateway {
        Gateway { signer: self.signer.clone(), ..Gateway::new("iov.example/gw/unused") }
    }

    /// Rebuilds the Merkle tree from `headers` (after they were replaced by hand).
    pub fn retree(&mut self) {
        self.tree = MemoryTree::from_leaf_hashes(self.headers.iter().map(|h| merkle::leaf_hash(h)));
    }

    pub fn root_at(&self, size: u64) -> Hash {
        MemoryTree::from_leaf_hashes(
            self.headers[..size as usize].iter().map(|h| merkle::leaf_hash(h)),
        )
        .root()
    }

    pub fn checkpoint(&self, size: u64) -> Vec<u8> {
        let cp = Checkpoint::new(self.origin(), size, self.root_at(size)).expect("checkpoint");
        SignedCheckpoint::sign(cp, &self.signer).expect("sign").to_bytes()
    }

    pub fn add_checkpoint(&self, old: u64, new: u64) -> Vec<u8> {
        let proof = if old == 0 || old == new {
            Vec::new()
        } else {
            merkle::consistency_proof(&self.tree, old, new).expect("proof")
        };
        AddCheckpoint { old_size: old, proof, checkpoint: self.checkpoint(new) }.to_bytes()
    }

    /// Blocks `[from, to)` with the factory lane, proven in the checkpoint of `cp_size`.
    pub fn upload(&self, from: u64, to: u64, cp_size: u64) -> Upload {
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

pub struct NodeProc {
    pub child: Child,
    /// `127.0.0.1:PORT` of the main listener.
    pub base: String,
    /// The metrics URL.
    pub metrics: String,
    pub dir: PathBuf,
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn sha_hex(s: &str) -> String {
    sha2::Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes the cosigner key and a config into `dir` (once) and returns the config path.
pub fn write_config(dir: &Path, gateways: &[&Gateway], tls: bool) -> Result<PathBuf> {
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

pub fn start(dir: &Path) -> Result<NodeProc> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_iov-ledger"))
        .args(["run", "--config"])
        .arg(dir.join("ledger.toml"))
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("spawning iov-ledger")?;
    let up = ledger_node::launch::wait_child_listening(&mut child, Duration::from_secs(60))?;
    let metrics = up.metrics.ok_or_else(|| anyhow!("the test config has a metrics listener"))?;
    Ok(NodeProc {
        base: up.addr.to_string(),
        metrics: format!("http://{metrics}/metrics"),
        child,
        dir: dir.to_owned(),
    })
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub cache_control: String,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn error(&self) -> ErrorBody {
        ErrorBody::from_cbor(&self.body).unwrap_or_else(|_| ErrorBody::from_text(&self.body))
    }
}

pub fn reply(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Reply> {
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
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.base)
    }

    pub fn post(&self, path: &str, body: &[u8]) -> Result<Reply> {
        reply(agent().post(&self.url(path)).send(body))
    }

    pub fn get(&self, path: &str) -> Result<Reply> {
        reply(agent().get(&self.url(path)).call())
    }

    pub fn add_checkpoint(&self, body: &[u8]) -> Result<Reply> {
        self.post(sync_wire::path::ADD_CHECKPOINT, body)
    }

    pub fn upload(&self, origin: &str, u: &Upload) -> Result<Reply> {
        self.post(&sync_wire::path::blocks(origin), &u.to_cbor())
    }

    pub fn state(&self, origin: &str) -> Result<GatewayState> {
        let r = self.get(&sync_wire::path::state(origin))?;
        if r.status != 200 {
            bail!("state: {} {}", r.status, r.error());
        }
        Ok(GatewayState::from_cbor(&r.body)?)
    }

    pub fn metric(&self, line_start: &str) -> Result<u64> {
        let text = reply(agent().get(&self.metrics).call())?.body;
        let text = String::from_utf8(text)?;
        text.lines()
            .find_map(|l| l.strip_prefix(line_start).and_then(|v| v.trim().parse().ok()))
            .ok_or_else(|| anyhow!("metric {line_start} not in\n{text}"))
    }

    pub fn cosigner(&self) -> Result<CosignatureVerifier> {
        let l = Link::from_cbor(&self.get(sync_wire::path::LINK)?.body)?;
        assert_eq!(l.protocol, sync_wire::PROTOCOL);
        assert_eq!(l.ledger, "factory.example");
        Ok(CosignatureVerifier::from_vkey(&l.cosigner)?)
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) -> Result<std::process::ExitStatus> {
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

/// A client that trusts only the certificate `der`.
pub fn https_agent(der: &[u8]) -> ureq::Agent {
    let root = ureq::tls::Certificate::from_der(der).to_owned();
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![root])))
        .build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// Decodes a query answer's headers and checks its completeness proof against the checkpoint
/// signed by `gw`.
pub fn verified_headers(q: &QueryBlocks, gw: &Gateway) -> Result<Vec<BlockHeader>> {
    let headers: Vec<BlockHeader> =
        q.blocks.iter().map(|b| BlockHeader::from_bytes(&b.header)).collect::<Result<_, _>>()?;
    ledger::verify::complete_range_signed(
        &headers,
        &q.checkpoint,
        &gw.signer.verifier(),
        &q.range_proof,
    )?;
    Ok(headers)
}

impl NodeProc {
    /// add-checkpoint `old -> new` for `gw`, which must be cosigned (200).
    pub fn witness(&self, gw: &Gateway, old: u64, new: u64) -> Result<Reply> {
        let r = self.add_checkpoint(&gw.add_checkpoint(old, new))?;
        ensure!(r.status == 200, "add-checkpoint {old} -> {new}: {} {}", r.status, r.error());
        Ok(r)
    }

    /// Uploads `gw`'s blocks `[from, to)` proven in its checkpoint of `cp_size`, which must be
    /// accepted (200); returns the mirrored size the ledger answered.
    pub fn mirror(&self, gw: &Gateway, from: u64, to: u64, cp_size: u64) -> Result<u64> {
        let r = self.upload(gw.origin(), &gw.upload(from, to, cp_size))?;
        ensure!(r.status == 200, "upload {from}..{to}: {} {}", r.status, r.error());
        Ok(UploadAck::from_cbor(&r.body)?.mirrored)
    }

    /// Uploads from `from` up to `cp_size` in batches of `batch`, each from the mirrored size
    /// the last answer named; returns the final mirrored size.
    pub fn mirror_rest(&self, gw: &Gateway, from: u64, cp_size: u64, batch: u64) -> Result<u64> {
        let mut at = from;
        while at < cp_size {
            at = self.mirror(gw, at, (at + batch).min(cp_size), cp_size)?;
        }
        Ok(at)
    }

    /// GET `path` with `Authorization: Bearer ADMIN_SECRET`.
    pub fn admin_get(&self, path: &str) -> Result<Reply> {
        reply(
            agent()
                .get(&self.url(path))
                .header("authorization", &format!("Bearer {ADMIN_SECRET}"))
                .call(),
        )
    }

    /// A height query for `origin`'s blocks `[from, to)`, with `token` as the bearer if any.
    pub fn query(&self, origin: &str, from: u64, to: u64, token: Option<&str>) -> Result<Reply> {
        self.query_path(&sync_wire::path::query_blocks(origin, from, to), token)
    }

    /// A query by `path` (height or time), with `token` as the bearer if any.
    pub fn query_path(&self, path: &str, token: Option<&str>) -> Result<Reply> {
        let mut r = agent().get(&self.url(path));
        if let Some(t) = token {
            r = r.header("authorization", &format!("Bearer {t}"));
        }
        reply(r.call())
    }
}

pub fn setup(gateways: &[&Gateway]) -> Result<(tempfile::TempDir, NodeProc)> {
    let dir = tempfile::tempdir()?;
    write_config(dir.path(), gateways, false)?;
    let node = start(dir.path())?;
    Ok((dir, node))
}
