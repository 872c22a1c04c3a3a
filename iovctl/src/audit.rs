//! `iovctl audit`: audit a ledger's aggregate log end to end and against its peer's view.
//!
//! For the ledger (and, with `--peer`, the same the other way round):
//! 1. keys: the ledger's log key (`--log-key`, else what the ledger declares at `/v1/peers`)
//!    must be the one the peer pinned, and the peer's cosigner key (`--peer-key`, else what the
//!    peer declares) the one the ledger pinned;
//! 2. the published `/checkpoint` verifies with the log key;
//! 3. every hash tile of that size hashes to its root, and the root recomputed from all the
//!    leaves (entry bundles) equals it;
//! 4. every leaf is a gateway checkpoint cosigned by the ledger's cosigner, signed by the
//!    gateway's enrolled key (with an admin token: the enrolled keys are listed), and no
//!    gateway's size goes backwards along the log;
//! 5. the published checkpoint carries the peer's valid cosignature;
//! 6. the peer's witnessed view of the ledger (`/<sha256(origin)>/checkpoint`) verifies and
//!    is the same tree as the published one or a prefix/extension of it (both roots recomputed
//!    from the same leaves);
//! 7. with a token: the evidence each ledger holds (forks, split views) is listed; evidence of
//!    misbehaviour fails the audit.
//!
//! Exit status: 0 all consistent; 1 a verification failure or evidence (the report says which);
//! 2 usage or connection error.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use ledger::checkpoint::{Checkpoint, SignedCheckpoint};
use ledger::cosignature::CosignatureVerifier;
use ledger::merkle::{self, MemoryTree};
use ledger::note::{Ed25519Verifier, Note, Verifier};
use ledger::tile::{self, Tile, TILE_WIDTH};
use serde_json::{json, Value};

pub const EXAMPLES: &str = "\
Examples:
  iovctl audit --ledger https://factory.example:7480 --peer https://city.example:7480
  iovctl audit --ledger http://127.0.0.1:7480 --peer http://127.0.0.1:7481 \\
      --token-file ~/.iov/admin.token --log-key factory/signing.vkey --peer-key city/witness.vkey
  iovctl audit --ledger http://127.0.0.1:7480 --format json | jq .checks

Without --log-key/--peer-key the keys each ledger declares (GET /v1/peers) are used, and
checked against the keys the other ledger pinned in its config.

Exit status: 0 all consistent; 1 verification failure or evidence of misbehaviour (the
report names it); 2 usage or connection error.";

#[derive(clap::Args)]
pub struct Args {
    /// The ledger to audit (base URL of its API).
    #[arg(long, value_name = "URL")]
    ledger: String,
    /// Its peer ledger (witness): checks its cosignatures and its view, and audits it back.
    #[arg(long, value_name = "URL")]
    peer: Option<String>,
    /// File holding an admin token (for enrolled gateway keys and evidence), used at both.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// The ledger's aggregate-log verifier key (NAME+id+base64, or a file holding it).
    #[arg(long, value_name = "VKEY")]
    log_key: Option<String>,
    /// The peer's cosigner verifier key (type 0x04; or a file holding it).
    #[arg(long, value_name = "VKEY")]
    peer_key: Option<String>,
    /// Output: a table for people, JSON for machines.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Timeout for each HTTP request, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    timeout: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Table,
    Json,
}

/// Evidence kinds that prove misbehaviour (of a gateway or a peer ledger).
const MISBEHAVIOUR: &[&str] = &["fork", "peer_fork", "peer_inconsistent", "split_view"];
/// Largest response read (an entry bundle is at most 256 x 64 KiB).
const MAX_BODY: u64 = 17 << 20;

/// A check's outcome.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    Fail,
    /// Not checked or informational; does not change the exit status.
    Note,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Fail => "FAIL",
            Status::Note => "note",
        }
    }
}

struct Check {
    subject: String,
    name: &'static str,
    status: Status,
    detail: String,
}

#[derive(Default)]
struct Report {
    checks: Vec<Check>,
    evidence: Vec<Value>,
}

impl Report {
    fn add(
        &mut self,
        subject: &str,
        name: &'static str,
        status: Status,
        detail: impl Into<String>,
    ) {
        self.checks.push(Check { subject: subject.into(), name, status, detail: detail.into() });
    }
    fn ok(&mut self, s: &str, n: &'static str, d: impl Into<String>) {
        self.add(s, n, Status::Ok, d);
    }
    fn fail(&mut self, s: &str, n: &'static str, d: impl Into<String>) {
        self.add(s, n, Status::Fail, d);
    }
    fn note(&mut self, s: &str, n: &'static str, d: impl Into<String>) {
        self.add(s, n, Status::Note, d);
    }
    fn passed(&self) -> bool {
        !self.checks.iter().any(|c| c.status == Status::Fail)
    }
}

/// A connection or usage problem (exit 2).
struct Unreachable(anyhow::Error);

impl<E: Into<anyhow::Error>> From<E> for Unreachable {
    fn from(e: E) -> Self {
        Unreachable(e.into())
    }
}

struct Http {
    agent: ureq::Agent,
    token: Option<String>,
}

impl Http {
    fn get(&self, base: &str, path: &str, admin: bool) -> Result<(u16, Vec<u8>), Unreachable> {
        let url = format!("{}{path}", base.trim_end_matches('/'));
        let mut req = self.agent.get(&url);
        if admin {
            if let Some(t) = &self.token {
                req = req.header("authorization", &format!("Bearer {t}"));
            }
        }
        let mut resp = req.call().with_context(|| format!("GET {url}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .with_context(|| format!("reading GET {url}"))?;
        Ok((status, body))
    }

    fn json(&self, base: &str, path: &str, admin: bool) -> Result<Option<Value>, Unreachable> {
        let (s, b) = self.get(base, path, admin)?;
        match s {
            200 => Ok(Some(
                serde_json::from_slice(&b).with_context(|| format!("{base}{path}: not JSON"))?,
            )),
            404 => Ok(None),
            401 | 403 => Err(Unreachable(anyhow!(
                "{base}{path}: token refused ({s}): {}",
                String::from_utf8_lossy(&b).trim()
            ))),
            _ => Err(Unreachable(anyhow!("{base}{path} answered {s}"))),
        }
    }
}

fn key_text(arg: &str) -> anyhow::Result<String> {
    if arg.contains('+') {
        return Ok(arg.trim().to_owned());
    }
    Ok(std::fs::read_to_string(arg)
        .with_context(|| format!("reading key file {arg}"))?
        .trim()
        .to_owned())
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let mut report = Report::default();
    match audit(args, &mut report) {
        Ok(()) => {}
        Err(Unreachable(e)) => {
            eprintln!("iovctl: audit: {e:#}");
            return Ok(ExitCode::from(2));
        }
    }
    print(args, &report);
    Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn print(args: &Args, r: &Report) {
    match args.format {
        Format::Json => {
            let checks: Vec<Value> = r
                .checks
                .iter()
                .map(|c| json!({"subject": c.subject, "check": c.name, "status": c.status.as_str(), "detail": c.detail}))
                .collect();
            let v = json!({"ok": r.passed(), "ledger": args.ledger, "peer": args.peer, "checks": checks, "evidence": r.evidence});
            println!("{v}");
        }
        Format::Table => {
            let w = r.checks.iter().map(|c| c.subject.len()).max().unwrap_or(7).max(7);
            println!("{:<w$}  {:<20}  {:<6}  DETAIL", "SUBJECT", "CHECK", "RESULT");
            for c in &r.checks {
                println!(
                    "{:<w$}  {:<20}  {:<6}  {}",
                    c.subject,
                    c.name,
                    c.status.as_str(),
                    c.detail
                );
            }
            for e in &r.evidence {
                println!(
                    "evidence at {}: {} {} ({}): {}",
                    e["held_by"].as_str().unwrap_or("?"),
                    e["kind"].as_str().unwrap_or("?"),
                    e["about"].as_str().unwrap_or("?"),
                    e["at_ns"],
                    e["reason"].as_str().unwrap_or("")
                );
            }
            match r.checks.iter().find(|c| c.status == Status::Fail) {
                None => println!("result: OK, every check passed"),
                Some(c) => println!("result: FAILED: {} {}: {}", c.subject, c.name, c.detail),
            }
        }
    }
}

/// What `/v1/peers` says about a ledger.
struct Declared {
    url: String,
    info: Value,
    log: Ed25519Verifier,
    cosigner: CosignatureVerifier,
}

fn declared(http: &Http, url: &str, log_key: Option<&str>) -> Result<Declared, Unreachable> {
    let info = http.json(url, "/v1/peers", false)?.ok_or_else(|| {
        anyhow!("{url}/v1/peers: not found (is this an iov-ledger with cross-witnessing?)")
    })?;
    let log_text = match log_key {
        Some(k) => key_text(k)?,
        None => info["log_vkey"]
            .as_str()
            .ok_or_else(|| anyhow!("{url} declares no aggregate log key (ledger.log_key unset)"))?
            .to_owned(),
    };
    let log = Ed25519Verifier::from_vkey(&log_text).context("the log key")?;
    let cos = info["cosigner_vkey"].as_str().ok_or_else(|| anyhow!("{url}: no cosigner_vkey"))?;
    let cosigner = CosignatureVerifier::from_vkey(cos).context("the declared cosigner key")?;
    Ok(Declared { url: url.to_owned(), info, log, cosigner })
}

fn audit(args: &Args, report: &mut Report) -> Result<(), Unreachable> {
    let token = match &args.token_file {
        None => None,
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("reading token file {}", p.display()))?
                .trim()
                .to_owned(),
        ),
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(args.timeout)))
        .http_status_as_error(false)
        .user_agent(concat!("iovctl/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let http = Http { agent, token };
    let ledger = declared(&http, &args.ledger, args.log_key.as_deref())?;
    let subject = ledger.log.name().to_owned();
    if let Some(k) = &args.log_key {
        let want = key_text(k)?;
        match ledger.info["log_vkey"].as_str() {
            Some(d) if d == want => {
                report.ok(&subject, "keys", "the ledger declares the --log-key")
            }
            d => report.fail(
                &subject,
                "keys",
                format!("the ledger declares log key {d:?}, --log-key is {want}"),
            ),
        }
    }
    let Some(peer_url) = &args.peer else {
        audit_log(&http, report, &ledger, None, None)?;
        evidence(&http, report, &ledger)?;
        return Ok(());
    };
    let peer = declared(&http, peer_url, None)?;
    let peer_cosigner = match &args.peer_key {
        Some(k) => CosignatureVerifier::from_vkey(&key_text(k)?).context("--peer-key")?,
        None => peer.cosigner.clone(),
    };
    if peer_cosigner != peer.cosigner {
        report.fail(
            peer.log.name(),
            "keys",
            format!(
                "the peer declares cosigner {}, --peer-key is {}",
                peer.cosigner.to_vkey(),
                peer_cosigner.to_vkey()
            ),
        );
    }
    pins(report, &ledger, &peer);
    pins(report, &peer, &ledger);
    audit_log(&http, report, &ledger, Some(&peer), Some(&peer_cosigner))?;
    audit_log(&http, report, &peer, Some(&ledger), Some(&ledger.cosigner))?;
    evidence(&http, report, &ledger)?;
    evidence(&http, report, &peer)?;
    Ok(())
}

/// The witness pinned the subject's keys in its config (its `/v1/peers` entry for the subject).
fn pins(report: &mut Report, subject: &Declared, witness: &Declared) {
    let s = subject.log.name();
    let entry = witness.info["peers"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["origin"].as_str() == Some(s)));
    let Some(entry) = entry else {
        report.fail(
            s,
            "witnessed by peer",
            format!("{} does not list {s} among its peers", witness.url),
        );
        return;
    };
    let log_ok = entry["log_vkey"].as_str() == Some(subject.log.to_vkey().as_str());
    let cos_ok = entry["cosigner_vkey"].as_str() == Some(subject.cosigner.to_vkey().as_str());
    if log_ok && cos_ok {
        report.ok(
            s,
            "keys pinned by peer",
            format!("{} pins this ledger's log and cosigner keys", witness.log.name()),
        );
    } else {
        report.fail(
            s,
            "keys pinned by peer",
            format!(
                "{} pins log key {} and cosigner {}; this ledger uses {} and {}",
                witness.log.name(),
                entry["log_vkey"],
                entry["cosigner_vkey"],
                subject.log.to_vkey(),
                subject.cosigner.to_vkey()
            ),
        );
    }
}

fn sha_hex(s: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Fetches the leaves `0..size` from the entry bundles; `None` if the ledger does not serve them.
fn leaves(http: &Http, url: &str, size: u64) -> Result<Result<Vec<Vec<u8>>, String>, Unreachable> {
    let mut out = Vec::new();
    let mut index = 0u64;
    while (index * TILE_WIDTH) < size {
        let width = (size - index * TILE_WIDTH).min(TILE_WIDTH) as u16;
        let t = Tile::new(0, index, width).context("tile")?;
        let (s, b) = http.get(url, &format!("/{}", t.entries_path()), false)?;
        if s != 200 {
            return Ok(Err(format!("{} answered {s}", t.entries_path())));
        }
        let entries = match tile::decode_bundle(&b) {
            Ok(e) => e,
            Err(e) => return Ok(Err(format!("{}: {e}", t.entries_path()))),
        };
        if entries.len() != usize::from(width) {
            return Ok(Err(format!(
                "{} holds {} entries, want {width}",
                t.entries_path(),
                entries.len()
            )));
        }
        out.extend(entries.into_iter().map(<[u8]>::to_vec));
        index += 1;
    }
    Ok(Ok(out))
}

fn audit_log(
    http: &Http,
    report: &mut Report,
    ledger: &Declared,
    peer: Option<&Declared>,
    peer_cosigner: Option<&CosignatureVerifier>,
) -> Result<(), Unreachable> {
    let s = ledger.log.name().to_owned();
    let s = s.as_str();
    // 2. The published checkpoint.
    let (st, note) = http.get(&ledger.url, "/checkpoint", false)?;
    if st != 200 {
        return Err(Unreachable(anyhow!("{}/checkpoint answered {st}", ledger.url)));
    }
    let (signed, _) = match SignedCheckpoint::verify(&note, &[&ledger.log as &dyn Verifier]) {
        Ok(x) => x,
        Err(e) => {
            report.fail(
                s,
                "checkpoint",
                format!("does not verify with {}: {e}", ledger.log.to_vkey()),
            );
            return Ok(());
        }
    };
    let cp = signed.checkpoint().clone();
    if cp.origin() != s {
        report.fail(s, "checkpoint", format!("names origin {:?}", cp.origin()));
        return Ok(());
    }
    let n = cp.size();
    report.ok(
        s,
        "checkpoint",
        format!("size {n}, root {}, signed by {}", cp.root(), ledger.log.to_vkey()),
    );

    // 6 (fetch first: its size decides how many leaves are needed).
    let view = match peer {
        None => None,
        Some(p) => {
            let (st, b) = http.get(&p.url, &format!("/{}/checkpoint", sha_hex(s)), false)?;
            match st {
                200 => Some(b),
                404 => None,
                other => {
                    return Err(Unreachable(anyhow!("{}: witnessed view answered {other}", p.url)))
                }
            }
        }
    };
    let view_cp = match (&view, peer, peer_cosigner) {
        (Some(b), Some(p), Some(pc)) => match Note::parse(b) {
            Ok(vn) => match vn.verify(&[&ledger.log as &dyn Verifier, pc]) {
                Ok(ok) if ok.len() == 2 => Checkpoint::parse(vn.text()).ok(),
                Ok(_) => {
                    report.fail(
                        s,
                        "peer's view",
                        format!(
                            "{}'s view lacks the log signature or its cosignature",
                            p.log.name()
                        ),
                    );
                    None
                }
                Err(e) => {
                    report.fail(
                        s,
                        "peer's view",
                        format!("{}'s view does not verify: {e}", p.log.name()),
                    );
                    None
                }
            },
            Err(e) => {
                report.fail(s, "peer's view", format!("does not parse: {e}"));
                None
            }
        },
        _ => None,
    };
    let m = view_cp.as_ref().map_or(0, Checkpoint::size);
    let want = n.max(m);

    // 3. Tiles and leaves.
    let mut tiles = BTreeMap::new();
    let mut tiles_ok = true;
    for t in tile::tiles_for_size(n) {
        let (st, b) = http.get(&ledger.url, &format!("/{}", t.path()), false)?;
        if st != 200 {
            report.fail(s, "tiles", format!("{} answered {st}", t.path()));
            tiles_ok = false;
            break;
        }
        tiles.insert(t, b);
    }
    if tiles_ok {
        match tile::verify_tiles(&tiles, n, cp.root()) {
            Ok(()) => report.ok(s, "tiles", format!("{} tiles hash to the root", tiles.len())),
            Err(e) => report.fail(s, "tiles", e.to_string()),
        }
    }
    let all = match leaves(http, &ledger.url, want)? {
        Ok(l) => l,
        Err(e) if want > n => {
            report.fail(
                s,
                "peer's view",
                format!(
                    "the peer cosigned size {m} but the ledger does not serve those leaves: {e}"
                ),
            );
            match leaves(http, &ledger.url, n)? {
                Ok(l) => l,
                Err(e) => {
                    report.fail(s, "leaves", e);
                    return Ok(());
                }
            }
        }
        Err(e) => {
            report.fail(s, "leaves", e);
            return Ok(());
        }
    };
    let tree = MemoryTree::from_leaf_hashes(all.iter().map(|l| merkle::leaf_hash(l)));
    let root_n = merkle::root(&tree, n).map_err(|e| anyhow!("root: {e}"))?;
    if root_n == *cp.root() {
        report.ok(s, "tree", format!("root recomputed from {n} leaves matches"));
    } else {
        report.fail(
            s,
            "tree",
            format!(
                "root recomputed from {n} leaves is {root_n}, the checkpoint says {}",
                cp.root()
            ),
        );
    }

    // 4. Each leaf.
    let enrolled: Option<HashMap<String, Ed25519Verifier>> = if http.token.is_some() {
        let rows = http.json(&ledger.url, "/v1/admin/gateways", true)?.unwrap_or_default();
        let mut m = HashMap::new();
        for r in rows.as_array().into_iter().flatten() {
            if let (Some(o), Some(v)) = (r["origin"].as_str(), r["vkey"].as_str()) {
                if let Ok(k) = Ed25519Verifier::from_vkey(v) {
                    m.insert(o.to_owned(), k);
                }
            }
        }
        Some(m)
    } else {
        None
    };
    let mut bad = None;
    let mut last: HashMap<String, u64> = HashMap::new();
    for (i, leaf) in all.iter().take(n as usize).enumerate() {
        let r = (|| -> anyhow::Result<()> {
            let note = Note::parse(leaf)?;
            let c = Checkpoint::parse(note.text())?;
            let mut keys: Vec<&dyn Verifier> = vec![&ledger.cosigner];
            let gw = enrolled.as_ref().map(|e| e.get(c.origin()));
            if let Some(g) = gw {
                let g = g.ok_or_else(|| anyhow!("gateway {} is not enrolled", c.origin()))?;
                keys.push(g);
            }
            let ok = note.verify(&keys)?;
            if !ok
                .iter()
                .any(|s| s.name == ledger.cosigner.name() && s.key_id == ledger.cosigner.key_id())
            {
                bail!("no cosignature of the ledger");
            }
            if gw.is_some() && ok.len() < 2 {
                bail!("no signature of gateway {}", c.origin());
            }
            if let Some(prev) = last.insert(c.origin().to_owned(), c.size()) {
                if c.size() <= prev {
                    bail!("gateway {} at size {} after size {prev}", c.origin(), c.size());
                }
            }
            Ok(())
        })();
        if let Err(e) = r {
            bad = Some(format!("leaf {i}: {e:#}"));
            break;
        }
    }
    match (bad, &enrolled) {
        (Some(e), _) => report.fail(s, "leaves", e),
        (None, Some(_)) => report.ok(
            s,
            "leaves",
            format!("{n} gateway checkpoints, each signed by its enrolled key and cosigned; sizes only grow"),
        ),
        (None, None) => report.ok(
            s,
            "leaves",
            format!("{n} gateway checkpoints cosigned by the ledger; sizes only grow (gateway keys not checked: no token)"),
        ),
    }

    let (Some(p), Some(pc)) = (peer, peer_cosigner) else { return Ok(()) };
    // 5. The peer's cosignature on the published checkpoint.
    if n == 0 {
        report.note(s, "peer cosignature", "nothing published yet (the empty tree)");
    } else if signed
        .note()
        .signatures()
        .iter()
        .any(|sig| pc.verify(&cp, sig, u64::MAX / 2, 0).is_ok())
    {
        report.ok(
            s,
            "peer cosignature",
            format!("{} cosigned the published checkpoint", pc.to_vkey()),
        );
    } else {
        report.fail(
            s,
            "peer cosignature",
            format!("the published checkpoint carries no valid cosignature of {}", pc.to_vkey()),
        );
    }
    // 6. The peer's view against the published checkpoint.
    match view_cp {
        None if view.is_none() && n == 0 => {
            report.note(s, "peer's view", "the peer has witnessed nothing yet")
        }
        None if view.is_none() => report.fail(
            s,
            "peer's view",
            format!(
                "{} has witnessed nothing of this ledger, yet size {n} is published",
                p.log.name()
            ),
        ),
        None => {}
        Some(v) if v.origin() != s => {
            report.fail(s, "peer's view", format!("names origin {:?}", v.origin()))
        }
        Some(v) => match merkle::root(&tree, v.size()) {
            Ok(r) if r == *v.root() => report.ok(
                s,
                "peer's view",
                format!(
                    "{} witnessed size {} and it is the same history (published size {n})",
                    p.log.name(),
                    v.size()
                ),
            ),
            Ok(r) => report.fail(
                s,
                "peer's view",
                format!(
                    "SPLIT VIEW: {} witnessed size {} with root {}, the ledger's leaves give {r}",
                    p.log.name(),
                    v.size(),
                    v.root()
                ),
            ),
            Err(e) => report.fail(s, "peer's view", format!("size {}: {e}", v.size())),
        },
    }
    Ok(())
}

/// The evidence a ledger holds (admin token).
fn evidence(http: &Http, report: &mut Report, ledger: &Declared) -> Result<(), Unreachable> {
    let s = ledger.log.name();
    if http.token.is_none() {
        report.note(s, "evidence", "not listed (no --token-file)");
        return Ok(());
    }
    let mut found = Vec::new();
    for row in http
        .json(&ledger.url, "/v1/admin/gateways", true)?
        .unwrap_or_default()
        .as_array()
        .into_iter()
        .flatten()
    {
        if row["evidence"].as_u64().unwrap_or(0) == 0 {
            continue;
        }
        let origin = row["origin"].as_str().unwrap_or_default();
        let path =
            format!("/v1/admin/gateways/{}/evidence", ledger::sync_wire::escape_origin(origin));
        for e in http
            .json(&ledger.url, &path, true)?
            .unwrap_or_default()
            .as_array()
            .into_iter()
            .flatten()
        {
            found.push(json!({"held_by": s, "about": origin, "kind": e["kind"], "reason": e["reason"], "at_ns": e["at_ns"]}));
        }
    }
    for e in http
        .json(&ledger.url, "/v1/admin/peers/evidence", true)?
        .unwrap_or_default()
        .as_array()
        .into_iter()
        .flatten()
    {
        found.push(json!({
            "held_by": s, "about": e["origin"], "peer": e["peer"], "kind": e["kind"], "reason": e["reason"],
            "at_ns": e["at_ns"], "held": e["held"], "received": e["received"],
        }));
    }
    let bad: Vec<&Value> =
        found.iter().filter(|e| MISBEHAVIOUR.contains(&e["kind"].as_str().unwrap_or(""))).collect();
    if bad.is_empty() {
        report.ok(s, "evidence", format!("{} records, none of misbehaviour", found.len()));
    } else {
        let list: Vec<String> = bad
            .iter()
            .map(|e| {
                format!(
                    "{} against {}",
                    e["kind"].as_str().unwrap_or("?"),
                    e["about"].as_str().unwrap_or("?")
                )
            })
            .collect();
        report.fail(s, "evidence", format!("holds evidence of misbehaviour: {}", list.join("; ")));
    }
    report.evidence.extend(found);
    Ok(())
}
