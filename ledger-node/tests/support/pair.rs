//! Test harness shared by `ledger-node/tests/cross_witness.rs` and `iovctl/tests/audit.rs`
//! (included with `#[path]`): two real `iov-ledger` processes (a factory and a city) on fixed
//! loopback ports, each configured as the other's peer, and gateway logs made with the
//! `ledger` crate. Uses only `ledger`, `ureq`, `tempfile` and `anyhow`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use ledger::checkpoint::{Checkpoint, SignedCheckpoint};
use ledger::cosignature::Cosigner;
use ledger::merkle::{self, MemoryTree};
use ledger::note::Ed25519Signer;
use ledger::sync_wire::AddCheckpoint;

/// The admin token's secret; the configs hold its SHA-256 (below, precomputed).
pub const ADMIN_SECRET: &str = "admin-secret-for-cross-witness-tests";
/// `printf %s admin-secret-for-cross-witness-tests | sha256sum`
pub const ADMIN_SHA256: &str = "e1d053dbfdd6cbd4f06106f813efbc8b52314a2daa75e0d754137c7f01fdaa0b";

/// A gateway log whose leaves are arbitrary bytes (the witness only sees checkpoints).
pub struct Gateway {
    pub signer: Ed25519Signer,
    pub tree: MemoryTree,
}

impl Gateway {
    pub fn new(name: &str) -> Gateway {
        Gateway {
            signer: ledger::keys::generate_signer(name).expect("key"),
            tree: MemoryTree::new(),
        }
    }
    pub fn vkey(&self) -> String {
        self.signer.verifier().to_vkey()
    }
    pub fn grow(&mut self, n: u64) {
        for _ in 0..n {
            let i = self.tree.size();
            self.tree.push(format!("{} leaf {i}", self.signer.name()).as_bytes());
        }
    }
    pub fn size(&self) -> u64 {
        self.tree.size()
    }
    /// `add-checkpoint` from `old` to the current size.
    pub fn add_checkpoint(&self, old: u64) -> Vec<u8> {
        let new = self.tree.size();
        let proof = if old == 0 || old == new {
            Vec::new()
        } else {
            merkle::consistency_proof(&self.tree, old, new).expect("proof")
        };
        let cp = Checkpoint::new(self.signer.name(), new, self.tree.root()).expect("checkpoint");
        let note = SignedCheckpoint::sign(cp, &self.signer).expect("sign").to_bytes();
        AddCheckpoint { old_size: old, proof, checkpoint: note }.to_bytes()
    }
}

/// One organisation: its key files, store and fixed port, in its own directory.
pub struct Org {
    pub dir: tempfile::TempDir,
    pub name: String,
    pub log: Ed25519Signer,
    pub cosigner: Cosigner,
    pub port: u16,
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

impl Org {
    pub fn new(name: &str) -> Result<Org> {
        let dir = tempfile::tempdir()?;
        let key_name = format!("{name}.example/ledger");
        let log = ledger::keys::generate_signer(&key_name)?;
        let cosigner = ledger::keys::generate_cosigner(&key_name)?;
        ledger::keys::save_signer(&dir.path().join("signing.key"), &log)?;
        ledger::keys::save_cosigner(&dir.path().join("witness.key"), &cosigner)?;
        Ok(Org { dir, name: name.into(), log, cosigner, port: free_port()? })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log_vkey(&self) -> String {
        self.log.verifier().to_vkey()
    }

    pub fn cosigner_vkey(&self) -> String {
        self.cosigner.verifier().to_vkey()
    }

    /// Writes `ledger.toml`: `peer` (name, url, org keys) as its only peer, `extra` appended.
    pub fn configure(
        &self,
        peer: Option<(&Org, &str)>,
        gateways: &[&Gateway],
        extra: &str,
    ) -> Result<PathBuf> {
        let mut text = format!(
            "[ledger]\nname = \"{n}.example\"\ncosigner_key = \"witness.key\"\nlog_key = \"signing.key\"\nstore = \"store\"\n\n\
             [listen]\naddress = \"127.0.0.1:{p}\"\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n\n\
             [[tokens]]\nname = \"ops\"\nsha256 = \"{ADMIN_SHA256}\"\nscopes = [\"admin\"]\n",
            n = self.name,
            p = self.port
        );
        for g in gateways {
            text.push_str(&format!(
                "\n[[gateways]]\nvkey = \"{}\"\nunit = \"{}\"\nlanes = [\"{}\"]\n",
                g.vkey(),
                g.signer.name().rsplit('/').next().unwrap_or("x"),
                self.name
            ));
        }
        if let Some((p, url)) = peer {
            text.push_str(&format!(
                "\n[[peers]]\nname = \"{}\"\nurl = \"{url}\"\nlog_vkey = \"{}\"\ncosigner_vkey = \"{}\"\n",
                p.name,
                p.log_vkey(),
                p.cosigner_vkey()
            ));
        }
        text.push_str(extra);
        let path = self.dir.path().join("ledger.toml");
        std::fs::write(&path, text)?;
        Ok(path)
    }

    pub fn start(&self) -> Result<Node> {
        start(self.dir.path())
    }
}

/// Fast intervals so tests converge in well under a second per step.
pub const FAST: &str = "\n[cross_witness]\npush_interval = \"100ms\"\ngossip_interval = \"200ms\"\nrequest_timeout = \"2s\"\nmax_backoff = \"400ms\"\n";

pub struct Node {
    pub child: Child,
    pub base: String,
    pub metrics: String,
    pub dir: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `iov-ledger` binary: this package's when built as its test, else next to the test's
/// own binaries (a workspace build builds both).
pub fn ledger_bin() -> PathBuf {
    if let Some(p) = option_env!("CARGO_BIN_EXE_iov-ledger") {
        return PathBuf::from(p);
    }
    sibling("iov-ledger")
}

/// A binary of the workspace next to the running test's target directory.
pub fn sibling(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is not built: run `cargo build --release -p ledger-node -p iovctl` (or test the whole workspace) first",
        p.display()
    );
    p
}

pub fn start(dir: &Path) -> Result<Node> {
    let mut child = Command::new(ledger_bin())
        .args(["run", "--config"])
        .arg(dir.join("ledger.toml"))
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("spawning iov-ledger")?;
    let up = ledger_node::launch::wait_child_listening(&mut child, Duration::from_secs(60))?;
    let metrics = up.metrics.ok_or_else(|| anyhow!("the test config has a metrics listener"))?;
    Ok(Node {
        base: format!("http://{}", up.addr),
        metrics: format!("http://{metrics}/metrics"),
        child,
        dir: dir.to_owned(),
    })
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

pub fn http(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<(u16, Vec<u8>)> {
    let mut r = r?;
    let status = r.status().as_u16();
    Ok((status, r.body_mut().read_to_vec()?))
}

impl Node {
    pub fn get(&self, path: &str) -> Result<(u16, Vec<u8>)> {
        http(agent().get(&format!("{}{path}", self.base)).call())
    }
    pub fn admin_get(&self, path: &str) -> Result<(u16, Vec<u8>)> {
        http(
            agent()
                .get(&format!("{}{path}", self.base))
                .header("authorization", &format!("Bearer {ADMIN_SECRET}"))
                .call(),
        )
    }
    pub fn post(&self, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
        http(agent().post(&format!("{}{path}", self.base)).send(body))
    }
    pub fn add_checkpoint(&self, body: &[u8]) -> Result<(u16, Vec<u8>)> {
        self.post("/add-checkpoint", body)
    }
    pub fn checkpoint(&self) -> Result<Vec<u8>> {
        let (s, b) = self.get("/checkpoint")?;
        if s != 200 {
            bail!("/checkpoint answered {s}");
        }
        Ok(b)
    }
    pub fn metric(&self, line_start: &str) -> Result<u64> {
        let (_, text) = http(agent().get(&self.metrics).call())?;
        let text = String::from_utf8(text)?;
        text.lines()
            .find_map(|l| l.strip_prefix(line_start).and_then(|v| v.trim().parse().ok()))
            .ok_or_else(|| anyhow!("metric {line_start} not in\n{text}"))
    }
    pub fn peers(&self) -> Result<serde_json::Value> {
        let (s, b) = self.get("/v1/peers")?;
        if s != 200 {
            bail!("/v1/peers answered {s}");
        }
        Ok(serde_json::from_slice(&b)?)
    }
}

/// Polls `f` until it returns `Some` or `deadline` passes.
pub fn wait_for<T>(
    what: &str,
    deadline: Duration,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if Instant::now() > end {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Factory and city, each the other's peer, each with one enrolled gateway.
pub struct Pair {
    pub factory: Org,
    pub city: Org,
    pub gf: Gateway,
    pub gc: Gateway,
}

impl Pair {
    pub fn new(extra: &str) -> Result<Pair> {
        let factory = Org::new("factory")?;
        let city = Org::new("city")?;
        let gf = Gateway::new("iov.example/gw/VIN-F");
        let gc = Gateway::new("iov.example/gw/RSU-C");
        factory.configure(Some((&city, &city.url())), &[&gf], extra)?;
        city.configure(Some((&factory, &factory.url())), &[&gc], extra)?;
        Ok(Pair { factory, city, gf, gc })
    }
}

/// Size of a signed note's checkpoint (unverified: for polling only).
pub fn size_of(note: &[u8]) -> u64 {
    ledger::note::Note::parse(note)
        .ok()
        .and_then(|n| Checkpoint::parse(n.text()).ok())
        .map_or(u64::MAX, |c| c.size())
}
