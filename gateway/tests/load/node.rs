//! One organisation's `iov-ledger` process: keys, config (every gateway enrolled, a query
//! token), start and stop, metrics, and the checks of what it holds after a run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use ledger::block::BlockHeader;
use ledger::cosignature::Cosigner;
use ledger::note::Note;
use ledger::store::Store as _;
use ledger::sync_wire::{self, QueryBlocks};
use ledger_node::store::LedgerStore as _;

use super::{iov_ledger, Gateway, QUERY_SECRET, RAW_LANE};

/// One gateway as the ledgers enroll it.
#[derive(Clone)]
pub struct Enrollment {
    pub vkey: String,
    pub unit: String,
}

/// TLS files for a ledger's listener.
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// One organisation's `iov-ledger` process.
pub struct Ledger {
    pub name: String,
    pub lane: String,
    pub cosigner: Cosigner,
    pub dir: PathBuf,
    /// The main listener (sync, query), asked directly (not through the proxy).
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    pub tls: bool,
    child: Option<Child>,
}

impl Ledger {
    /// Writes keys and config (`gateways` enrolled for `lane`, a query token) and starts it.
    pub fn start(
        root: &Path,
        name: &str,
        lane: &str,
        gateways: &[Enrollment],
        tls: Option<TlsFiles>,
    ) -> Result<Ledger> {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir)?;
        let cosigner = ledger::keys::generate_cosigner(&format!("{name}.example/ledger"))?;
        ledger::keys::save_cosigner(&dir.join("witness.key"), &cosigner)?;
        let mut cfg = format!(
            "[ledger]\nname = \"{name}.example\"\ncosigner_key = \"witness.key\"\nstore = \"store\"\n\
             [listen]\naddress = \"127.0.0.1:0\"\n"
        );
        if let Some(t) = &tls {
            cfg.push_str(&format!(
                "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
                t.cert.display(),
                t.key.display()
            ));
        }
        cfg.push_str(&format!(
            "[metrics]\nlisten = \"127.0.0.1:0\"\n[limits]\nmax_blocks_per_batch = 256\n\
             max_connections = 1024\n\
             [[tokens]]\nname = \"fleet\"\nblake3 = \"{}\"\nscopes = [\"query\"]\n",
            blake3::hash(QUERY_SECRET.as_bytes()).to_hex()
        ));
        for g in gateways {
            cfg.push_str(&format!(
                "[[gateways]]\nvkey = \"{}\"\nunit = \"{}\"\nlanes = [\"{lane}\"]\n",
                g.vkey, g.unit
            ));
        }
        std::fs::write(dir.join("ledger.toml"), cfg)?;
        let mut child = Command::new(iov_ledger()?)
            .args(["run", "--config"])
            .arg(dir.join("ledger.toml"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting iov-ledger")?;
        let up = ledger_node::launch::wait_child_listening(&mut child, Duration::from_secs(60))
            .with_context(|| format!("ledger {name}"))?;
        let metrics = up.metrics.with_context(|| format!("{name}: no metrics listener"))?;
        Ok(Ledger {
            name: name.to_owned(),
            lane: lane.to_owned(),
            cosigner,
            dir,
            addr: up.addr,
            metrics,
            tls: tls.is_some(),
            child: Some(child),
        })
    }

    pub fn vkey(&self) -> String {
        self.cosigner.verifier().to_vkey()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn cpu_seconds(&self) -> Result<f64> {
        Ok(process_metrics::ProcessSample::of_pid(self.pid().context("not running")?)?.cpu_seconds)
    }

    /// Stops it with SIGTERM and waits (bounded) for a clean exit.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            let st = Command::new("kill").args(["-TERM", &c.id().to_string()]).status()?;
            ensure!(st.success(), "kill -TERM {}", c.id());
            let end = Instant::now() + Duration::from_secs(60);
            loop {
                if let Some(st) = c.try_wait()? {
                    ensure!(st.success(), "{}: exit {st}", self.name);
                    return Ok(());
                }
                if Instant::now() > end {
                    let _ = c.kill();
                    bail!("{} did not stop within 60 s", self.name);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// Its Prometheus text.
    pub fn metrics_text(&self) -> Result<String> {
        let mut r = ureq::get(&format!("http://{}/metrics", self.metrics)).call()?;
        Ok(r.body_mut().read_to_string()?)
    }

    /// Sum of every sample of metric `name` (all label sets).
    pub fn metric_sum(&self, name: &str) -> Result<f64> {
        Ok(self
            .metrics_text()?
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.split(['{', ' ']).next() == Some(name))
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .fold(0.0, |a, b| a + b))
    }

    /// The ledger's own base URL (not through the proxy): `https://localhost:PORT` with TLS.
    pub fn base(&self) -> String {
        if self.tls {
            format!("https://localhost:{}", self.addr.port())
        } else {
            format!("http://{}", self.addr)
        }
    }

    /// Its refusals by reason, `gap=3 not_witnessed=1` (`none` when there were none).
    pub fn refusals(&self) -> Result<String> {
        let text = self.metrics_text()?;
        let parts: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("iov_ledger_refusals_total{"))
            .filter_map(|l| {
                let reason = l.split("reason=\"").nth(1)?.split('"').next()?;
                let n: f64 = l.rsplit(' ').next()?.parse().ok()?;
                (n > 0.0).then(|| format!("{reason}={n}"))
            })
            .collect();
        Ok(if parts.is_empty() { "none".into() } else { parts.join(" ") })
    }

    /// What a fleet tool gets for `gw`'s blocks `0..size` over the query API (straight to the
    /// ledger; `http` must trust its certificate when it has one): every page's completeness proof, the gateway's signature and
    /// this ledger's cosignature on its checkpoint, every lane against its header, no lane of
    /// another organisation, header bytes equal to the gateway's own. Returns the frames
    /// provable here (the raw lane's record counts) and the lane bytes.
    pub fn check_query(&self, http: &ureq::Agent, gw: &Gateway) -> Result<(u64, u64)> {
        let origin = gw.signer.name().to_owned();
        let gv = gw.signer.verifier();
        let cv = self.cosigner.verifier();
        let store = gw.reader();
        let mut from = 0;
        let (mut frames, mut lane_bytes) = (0u64, 0u64);
        while from < gw.size {
            let url =
                format!("{}{}", self.base(), sync_wire::path::query_blocks(&origin, from, gw.size));
            let mut r = http
                .get(&url)
                .header("authorization", &format!("Bearer {QUERY_SECRET}"))
                .call()
                .with_context(|| format!("{}: query {origin} from {from}", self.name))?;
            ensure!(r.status() == 200, "{}: query {origin} from {from}: {}", self.name, r.status());
            let q = QueryBlocks::from_cbor(&r.body_mut().read_to_vec()?, 1 << 30)?;
            ensure!(q.start == from && q.end > from, "{}: page {}..{}", self.name, q.start, q.end);
            let headers: Vec<BlockHeader> = q
                .blocks
                .iter()
                .map(|b| BlockHeader::from_bytes(&b.header))
                .collect::<Result<_, _>>()?;
            ledger::verify::complete_range_signed(&headers, &q.checkpoint, &gv, &q.range_proof)
                .with_context(|| format!("{}: {origin} {from}..{}", self.name, q.end))?;
            let note = Note::parse(&q.checkpoint)?;
            let ok = note.verify(&[&gv, &cv])?;
            ensure!(ok.len() == 2, "{}: checkpoint verifies with {} keys", self.name, ok.len());
            for (b, h) in q.blocks.iter().zip(&headers) {
                ensure!(
                    store.header(b.height)?.as_deref() == Some(&b.header[..]),
                    "{}: {origin} header {} differs from the gateway's",
                    self.name,
                    b.height
                );
                for (i, lane) in &b.lanes {
                    let name = h.lanes.get(usize::from(*i)).map(|l| l.name.as_str());
                    ensure!(
                        name == Some(&self.lane),
                        "{}: {origin} block {} carries lane {name:?}",
                        self.name,
                        b.height
                    );
                    ledger::verify::lane_against_header(h, usize::from(*i), lane)?;
                    lane_bytes += lane.len() as u64;
                }
                frames += h
                    .lanes
                    .iter()
                    .filter(|l| l.name == RAW_LANE)
                    .map(|l| l.record_count)
                    .sum::<u64>();
            }
            from = q.end;
        }
        Ok((frames, lane_bytes))
    }

    /// After [`Ledger::stop`]: the ledger's store holds exactly `gw`'s log: every header byte
    /// for byte, this organisation's lanes equal to the gateway's, no other lane, nothing past
    /// the head.
    pub fn check_store(&self, gws: &[Gateway]) -> Result<()> {
        ensure!(self.child.is_none(), "stop the ledger first");
        let ls = ledger_node::store::rocks::Rocks::open(&self.dir.join("store"))?;
        for gw in gws {
            let origin = gw.signer.name();
            let store = gw.reader();
            ensure!(ls.mirrored(origin)? == gw.size, "{}: {origin} mirrored", self.name);
            for h in 0..gw.size {
                let header = store.header(h)?.context("gateway header")?;
                ensure!(
                    ls.header(origin, h)?.as_ref() == Some(&header),
                    "{}: {origin} header {h}",
                    self.name
                );
                let parsed = BlockHeader::from_bytes(&header)?;
                let want: Vec<(u16, Vec<u8>)> = parsed
                    .lanes
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| l.name == self.lane)
                    .map(|(i, _)| Ok((i as u16, store.lane(h, i as u16)?.context("lane")?)))
                    .collect::<Result<_>>()?;
                ensure!(
                    ls.lanes(origin, h)? == want,
                    "{}: {origin} lanes of block {h} differ (or carry another org's lane)",
                    self.name
                );
            }
            ensure!(ls.header(origin, gw.size)?.is_none(), "{}: {origin} past the head", self.name);
        }
        Ok(())
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
