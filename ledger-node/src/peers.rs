//! Cross-witnessing between ledgers: the peers' configuration (validated into typed values),
//! the publication policy, and the pure decisions (which checkpoint to publish, whether a
//! peer's published checkpoint is consistent with what this ledger witnessed, the evidence
//! layout). The I/O (handlers, the push and gossip tasks) is in `server::witness`.
//!
//! Two ledgers (a factory and a city) each keep an aggregate log. Each one is the other's
//! witness: it cosigns the peer's aggregate checkpoints with the C2SP tlog-witness semantics it
//! uses for gateways, and pushes its own checkpoints to the peer. `/checkpoint` publishes the
//! newest aggregate checkpoint that carries the cosignatures the policy asks for.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use ledger::checkpoint::Checkpoint;
use ledger::cosignature::CosignatureVerifier;
use ledger::merkle::{self, Hash};
use ledger::note::{Ed25519Signer, Ed25519Verifier, Note, Signature, Verifier as _};
use serde::{Deserialize, Serialize};

use crate::config::{parse_duration, ConfigError};

/// Store key (a reserved "origin": real origins hold no control characters) of this ledger's
/// witness state for a peer's aggregate log: the latest cosigned note and every cosigned size.
pub fn witness_key(peer_origin: &str) -> String {
    format!("\u{2}peer-witness/{peer_origin}")
}

/// Store key of the aggregate checkpoints of *this* ledger that a peer cosigned (note: our log
/// signature plus the peer's cosignature), by the peer's cosigner vkey (a new key, new state).
pub fn cosigned_by_key(peer_cosigner_vkey: &str) -> String {
    format!("\u{2}cosigned-by/{peer_cosigner_vkey}")
}

// ---------------------------------------------------------------------------------------------
// config

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPeer {
    name: String,
    url: String,
    ca_file: Option<PathBuf>,
    log_vkey: String,
    cosigner_vkey: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPublication {
    witnesses: Option<Vec<String>>,
    quorum: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCrossWitness {
    push_interval: Option<String>,
    gossip_interval: Option<String>,
    request_timeout: Option<String>,
    max_backoff: Option<String>,
}

/// A peer ledger, validated.
#[derive(Clone, Debug)]
pub struct Peer {
    /// Short name (metrics, logs, `/v1/peers`).
    pub name: String,
    /// Base URL of its API, ending in `/`.
    pub url: reqwest::Url,
    /// PEM roots to trust for its HTTPS (none: the built-in web roots).
    pub ca_pem: Option<Vec<u8>>,
    /// Verifies its aggregate log's checkpoints; its name is that log's origin.
    pub log: Ed25519Verifier,
    /// Verifies its cosignatures on our checkpoints.
    pub cosigner: CosignatureVerifier,
}

impl Peer {
    pub fn origin(&self) -> &str {
        self.log.name()
    }
}

/// Which peers' cosignatures a checkpoint needs before `/checkpoint` serves it (C2SP
/// tlog-policy: a group of witnesses with a threshold; `quorum = 0` is the policy's `none`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Indices into the peers.
    pub witnesses: Vec<usize>,
    pub quorum: usize,
}

/// Cross-witnessing settings.
#[derive(Clone, Debug)]
pub struct CrossWitness {
    pub peers: Vec<Peer>,
    pub policy: Policy,
    /// How often each pusher looks for a new aggregate checkpoint.
    pub push_interval: Duration,
    /// How often each peer's published `/checkpoint` is fetched and checked.
    pub gossip_interval: Duration,
    /// One request to a peer.
    pub request_timeout: Duration,
    /// Longest wait between failed attempts (exponential backoff with jitter up to this).
    pub max_backoff: Duration,
}

impl Default for CrossWitness {
    fn default() -> Self {
        CrossWitness {
            peers: Vec::new(),
            policy: Policy { witnesses: Vec::new(), quorum: 0 },
            push_interval: Duration::from_secs(1),
            gossip_interval: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
            max_backoff: Duration::from_secs(60),
        }
    }
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), problem: problem.into() }
}

/// Validates `[[peers]]`, `[publication]` and `[cross_witness]`.
pub(crate) fn validate(
    raw_peers: Vec<RawPeer>,
    publication: Option<RawPublication>,
    cross: Option<RawCrossWitness>,
    base: &Path,
    log_signer: Option<&Ed25519Signer>,
) -> Result<CrossWitness, ConfigError> {
    let mut out = CrossWitness::default();
    for (i, p) in raw_peers.into_iter().enumerate() {
        let key = |k: &str| format!("peers[{i}].{k}");
        let name = p.name.trim().to_owned();
        if name.is_empty()
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(invalid(key("name"), "1 or more of A-Z a-z 0-9 - _ ."));
        }
        if out.peers.iter().any(|q| q.name == name) {
            return Err(invalid(key("name"), format!("peer {name:?} is listed twice")));
        }
        let mut url = reqwest::Url::parse(p.url.trim())
            .map_err(|e| invalid(key("url"), format!("{:?} is not a URL: {e}", p.url)))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(invalid(
                key("url"),
                format!("{:?}: use http://HOST:PORT/ or https://", p.url),
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid(key("url"), "no query or fragment: the peer's base URL"));
        }
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        let ca_pem = match &p.ca_file {
            None => None,
            Some(f) => {
                let full = if f.is_absolute() { f.clone() } else { base.join(f) };
                let pem = std::fs::read(&full)
                    .map_err(|e| invalid(key("ca_file"), format!("{}: {e}", full.display())))?;
                use rustls::pki_types::pem::PemObject as _;
                let certs: Vec<_> =
                    rustls::pki_types::CertificateDer::pem_slice_iter(&pem).collect();
                if certs.is_empty() || certs.iter().any(Result::is_err) {
                    return Err(invalid(
                        key("ca_file"),
                        format!("{}: no PEM certificates in it", full.display()),
                    ));
                }
                Some(pem)
            }
        };
        let log = Ed25519Verifier::from_vkey(p.log_vkey.trim()).map_err(|e| {
            invalid(key("log_vkey"), format!("not an Ed25519 log verifier key (type 0x01): {e}"))
        })?;
        let cosigner = CosignatureVerifier::from_vkey(p.cosigner_vkey.trim()).map_err(|e| {
            invalid(key("cosigner_vkey"), format!("not a cosigner verifier key (type 0x04): {e}"))
        })?;
        if log_signer.is_some_and(|s| s.name() == log.name()) {
            return Err(invalid(
                key("log_vkey"),
                format!("origin {} is this ledger's own aggregate log", log.name()),
            ));
        }
        if out.peers.iter().any(|q| q.origin() == log.name()) {
            return Err(invalid(key("log_vkey"), format!("origin {} is listed twice", log.name())));
        }
        out.peers.push(Peer { name, url, ca_pem, log, cosigner });
    }
    if !out.peers.is_empty() && log_signer.is_none() {
        return Err(invalid(
            "ledger.log_key",
            "peers are configured: cross-witnessing needs this ledger's aggregate log",
        ));
    }
    let (names, quorum) = match publication {
        None => (None, None),
        Some(p) => (p.witnesses, p.quorum),
    };
    let witnesses: Vec<usize> = match names {
        None => (0..out.peers.len()).collect(),
        Some(names) => {
            let mut w = Vec::new();
            for (j, n) in names.iter().enumerate() {
                let k = format!("publication.witnesses[{j}]");
                let idx = out
                    .peers
                    .iter()
                    .position(|p| &p.name == n)
                    .ok_or_else(|| invalid(&k, format!("{n:?} is not a [[peers]] name")))?;
                if w.contains(&idx) {
                    return Err(invalid(k, format!("{n:?} is listed twice")));
                }
                w.push(idx);
            }
            w
        }
    };
    let quorum = quorum.unwrap_or(witnesses.len());
    if quorum > witnesses.len() {
        return Err(invalid(
            "publication.quorum",
            format!("{quorum} is more than the {} witnesses listed", witnesses.len()),
        ));
    }
    out.policy = Policy { witnesses, quorum };
    if let Some(c) = cross {
        let d = |k: &str, v: Option<String>, default: Duration| -> Result<Duration, ConfigError> {
            let key = format!("cross_witness.{k}");
            let d = match v {
                None => default,
                Some(t) => parse_duration(&key, &t)?,
            };
            if d.is_zero() {
                return Err(invalid(key, "must be more than 0"));
            }
            Ok(d)
        };
        out.push_interval = d("push_interval", c.push_interval, out.push_interval)?;
        out.gossip_interval = d("gossip_interval", c.gossip_interval, out.gossip_interval)?;
        out.request_timeout = d("request_timeout", c.request_timeout, out.request_timeout)?;
        out.max_backoff = d("max_backoff", c.max_backoff, out.max_backoff)?;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// publication

/// Builds the published note: the checkpoint text, this ledger's log signature(s) from
/// `own` (the note as the log signed it), then each cosignature, in policy order. Layout:
/// C2SP signed-note (text, blank line, one `— name base64(keyid || sig)` line each).
pub fn compose(own: &[u8], cosignatures: &[Signature]) -> Option<Vec<u8>> {
    let note = Note::parse(own).ok()?;
    let mut out = Note::new(note.text().to_owned()).ok()?;
    for s in note.signatures() {
        out.add_signature(s.clone());
    }
    for c in cosignatures {
        if !out.signatures().iter().any(|s| s.name == c.name && s.key_id == c.key_id) {
            out.add_signature(c.clone());
        }
    }
    Some(out.to_bytes())
}

/// The cosignature of `peer` in a stored "cosigned-by" note, if it verifies.
pub fn cosignature_in(note: &[u8], peer: &CosignatureVerifier) -> Option<(Checkpoint, Signature)> {
    let n = Note::parse(note).ok()?;
    let cp = Checkpoint::parse(n.text()).ok()?;
    let sig = n.signatures().iter().find(|s| peer.verify(&cp, s, u64::MAX / 2, 0).is_ok())?.clone();
    Some((cp, sig))
}

/// Picks the newest checkpoint the policy allows: `cosigned(peer index, max size)` answers the
/// largest size at most `max` that peer cosigned, with the stored note. Returns the published
/// note or `None` (nothing satisfies the policy yet). `quorum == 0` is handled by the caller
/// (it publishes the latest checkpoint). At most `max_steps` candidate sizes are tried.
pub fn select<E>(
    peers: &[Peer],
    policy: &Policy,
    mut cosigned: impl FnMut(usize, u64) -> Result<Option<(u64, Vec<u8>)>, E>,
    max_steps: usize,
) -> Result<Option<(u64, Vec<u8>)>, E> {
    let mut bound = u64::MAX;
    for _ in 0..max_steps {
        let mut candidates = Vec::new();
        for &w in &policy.witnesses {
            if let Some((size, note)) = cosigned(w, bound)? {
                candidates.push((w, size, note));
            }
        }
        let Some(size) = candidates.iter().map(|c| c.1).max() else { return Ok(None) };
        let at: Vec<&(usize, u64, Vec<u8>)> = candidates.iter().filter(|c| c.1 == size).collect();
        let mut sigs = Vec::new();
        let mut own = None;
        for (w, _, note) in at {
            if let Some((_, sig)) = cosignature_in(note, &peers[*w].cosigner) {
                sigs.push(sig);
                own.get_or_insert(note);
            }
        }
        if sigs.len() >= policy.quorum {
            if let Some(note) = own.and_then(|n| compose(n, &sigs)) {
                return Ok(Some((size, note)));
            }
        }
        if size == 0 {
            return Ok(None);
        }
        bound = size - 1;
    }
    Ok(None)
}

// ---------------------------------------------------------------------------------------------
// split views

/// How a peer's published checkpoint relates to what this ledger witnessed of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ViewCheck {
    /// Same tree, or one extends the other (consistency proof verified).
    Consistent,
    /// Sizes differ: the proof between them is needed (`(smaller, larger)` sizes).
    NeedProof { from: u64, to: u64 },
    /// Two signed checkpoints of one origin that cannot both be true.
    Conflict(String),
}

/// Compares the witnessed checkpoint with the published one; `proof` is the consistency proof
/// from the smaller to the larger size when the sizes differ.
pub fn check_view(
    witnessed: &Checkpoint,
    published: &Checkpoint,
    proof: Option<&[Hash]>,
) -> ViewCheck {
    let (w, p) = (witnessed, published);
    if w.size() == p.size() {
        if w.root() == p.root() {
            return ViewCheck::Consistent;
        }
        return ViewCheck::Conflict(format!(
            "published checkpoint of size {} has root {}, the witnessed one of that size has {}",
            p.size(),
            p.root(),
            w.root()
        ));
    }
    let (small, large) = if w.size() < p.size() { (w, p) } else { (p, w) };
    if small.size() == 0 {
        return if *small.root() == merkle::empty_root() {
            ViewCheck::Consistent
        } else {
            ViewCheck::Conflict("a checkpoint of size 0 with a non-empty root".into())
        };
    }
    let Some(proof) = proof else {
        return ViewCheck::NeedProof { from: small.size(), to: large.size() };
    };
    match merkle::verify_consistency(small.size(), large.size(), proof, small.root(), large.root())
    {
        Ok(()) => ViewCheck::Consistent,
        Err(e) => ViewCheck::Conflict(format!(
            "published size {} (root {}) and witnessed size {} (root {}) are not consistent: {e}",
            p.size(),
            p.root(),
            w.size(),
            w.root()
        )),
    }
}

/// Evidence against a peer, kept in `Evidence::request` as JSON: the two signed notes of one
/// origin that conflict. `held` is what this ledger witnessed (the peer's log signature and
/// our cosignature), `received` what the peer sent or published (an add-checkpoint body, or a
/// `/checkpoint` note), both verbatim UTF-8.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerEvidence {
    pub peer: String,
    pub origin: String,
    pub held: String,
    pub received: String,
}

/// Evidence kinds against peers (stable; the ones that prove misbehaviour).
pub mod kind {
    /// Same size, different root, through add-checkpoint.
    pub const PEER_FORK: &str = "peer_fork";
    /// A consistency proof from the cosigned size that does not verify.
    pub const PEER_INCONSISTENT: &str = "peer_inconsistent";
    /// The peer's published `/checkpoint` conflicts with what this ledger cosigned.
    pub const SPLIT_VIEW: &str = "split_view";
}

// ---------------------------------------------------------------------------------------------
// metrics

/// Per-peer gauges and the split-view alert.
#[derive(Default, Debug)]
pub struct PeerMetrics {
    /// Evidence records against peers held (alert when > 0).
    pub split_views: AtomicU64,
    /// Size of the published aggregate checkpoint.
    pub published_size: AtomicU64,
    per_peer: Mutex<BTreeMap<String, PeerGauges>>,
}

/// `(metric name, type, help, value)`.
type Series = (&'static str, &'static str, &'static str, fn(&PeerGauges) -> u64);

#[derive(Default, Debug, Clone, Copy)]
struct PeerGauges {
    witnessed: u64,
    cosigned_ours: u64,
    push_failures: u64,
    gossip_failures: u64,
}

impl PeerMetrics {
    fn with(&self, peer: &str, f: impl FnOnce(&mut PeerGauges)) {
        let mut m = self.per_peer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(m.entry(peer.to_owned()).or_default());
    }
    pub fn witnessed(&self, peer: &str, size: u64) {
        self.with(peer, |g| g.witnessed = size);
    }
    pub fn cosigned_ours(&self, peer: &str, size: u64) {
        self.with(peer, |g| g.cosigned_ours = size);
    }
    pub fn push_failed(&self, peer: &str) {
        self.with(peer, |g| g.push_failures += 1);
    }
    pub fn gossip_failed(&self, peer: &str) {
        self.with(peer, |g| g.gossip_failures += 1);
    }

    /// Appends the Prometheus text (nothing when no peer is configured).
    pub fn render(&self, s: &mut String) {
        let m = self.per_peer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if m.is_empty() {
            return;
        }
        let _ = write!(
            s,
            "# HELP iov_ledger_split_views Evidence records against peer ledgers (forks, split views): alert when > 0.\n\
             # TYPE iov_ledger_split_views gauge\niov_ledger_split_views {}\n\
             # HELP iov_ledger_published_size Size of the aggregate checkpoint /checkpoint serves.\n\
             # TYPE iov_ledger_published_size gauge\niov_ledger_published_size {}\n",
            self.split_views.load(Ordering::Relaxed),
            self.published_size.load(Ordering::Relaxed)
        );
        let series: [Series; 4] = [
            (
                "iov_ledger_peer_witnessed_size",
                "gauge",
                "Size of the peer's aggregate log this ledger last cosigned.",
                |g| g.witnessed,
            ),
            (
                "iov_ledger_peer_cosigned_size",
                "gauge",
                "Size of this ledger's aggregate log the peer last cosigned.",
                |g| g.cosigned_ours,
            ),
            (
                "iov_ledger_peer_push_failures_total",
                "counter",
                "Failed pushes of our checkpoints to the peer.",
                |g| g.push_failures,
            ),
            (
                "iov_ledger_peer_gossip_failures_total",
                "counter",
                "Failed fetches of the peer's published checkpoint.",
                |g| g.gossip_failures,
            ),
        ];
        for (name, kind, help, get) in series {
            let _ = write!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
            for (peer, g) in m.iter() {
                let _ = writeln!(s, "{name}{{peer=\"{peer}\"}} {}", get(g));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::checkpoint::SignedCheckpoint;

    fn peer(name: &str) -> (Peer, ledger::cosignature::Cosigner) {
        let log = ledger::keys::generate_signer(&format!("{name}.example/ledger")).unwrap();
        let c = ledger::keys::generate_cosigner(&format!("{name}.example/ledger")).unwrap();
        let p = Peer {
            name: name.into(),
            url: reqwest::Url::parse("http://127.0.0.1:1/").unwrap(),
            ca_pem: None,
            log: log.verifier(),
            cosigner: c.verifier(),
        };
        (p, c)
    }

    #[test]
    fn select_publishes_the_newest_size_with_a_quorum_of_cosignatures() {
        let own = ledger::keys::generate_signer("factory.example/ledger").unwrap();
        let (a, ca) = peer("city");
        let (b, cb) = peer("port");
        let peers = vec![a, b];
        let mut tree = merkle::MemoryTree::new();
        let mut notes = BTreeMap::new();
        for i in 0..5u64 {
            tree.push(&i.to_be_bytes());
            let cp = Checkpoint::new(own.name(), i + 1, tree.root()).unwrap();
            notes.insert(i + 1, SignedCheckpoint::sign(cp, &own).unwrap());
        }
        // city cosigned 2, 3, 5; port cosigned 2, 3.
        let held = |who: usize, c: &ledger::cosignature::Cosigner, sizes: &[u64]| {
            sizes
                .iter()
                .map(|s| {
                    let mut n = notes[s].clone();
                    n.add_signature(c.cosign(n.checkpoint(), 1_700_000_000).unwrap());
                    ((who, *s), n.to_bytes())
                })
                .collect::<Vec<_>>()
        };
        let mut store: BTreeMap<(usize, u64), Vec<u8>> = BTreeMap::new();
        store.extend(held(0, &ca, &[2, 3, 5]));
        store.extend(held(1, &cb, &[2, 3]));
        let lookup = |w: usize, max: u64| -> Result<Option<(u64, Vec<u8>)>, ()> {
            Ok(store.range((w, 0)..=(w, max)).next_back().map(|((_, s), n)| (*s, n.clone())))
        };
        let both = Policy { witnesses: vec![0, 1], quorum: 2 };
        let (size, note) = select(&peers, &both, lookup, 100).unwrap().unwrap();
        assert_eq!(size, 3);
        let n = Note::parse(&note).unwrap();
        assert_eq!(n.signatures().len(), 3, "log signature and two cosignatures");
        assert_eq!(
            n.verify(&[&own.verifier(), &peers[0].cosigner, &peers[1].cosigner]).unwrap().len(),
            3
        );
        let any = Policy { witnesses: vec![0, 1], quorum: 1 };
        assert_eq!(select(&peers, &any, lookup, 100).unwrap().unwrap().0, 5);
        let only_port = Policy { witnesses: vec![1], quorum: 1 };
        assert_eq!(select(&peers, &only_port, lookup, 100).unwrap().unwrap().0, 3);
        let empty = |_: usize, _: u64| -> Result<Option<(u64, Vec<u8>)>, ()> { Ok(None) };
        assert_eq!(select(&peers, &both, empty, 100).unwrap(), None);
    }

    /// The published note's layout (docs/sync-protocol.md, "Peer ledgers"): fixed keys
    /// (Ed25519 seeds 0x01.. and 0x02..), a fixed cosignature time; Ed25519 is deterministic.
    #[test]
    fn published_note_test_vector() {
        let sk = |b: u8| ed25519_dalek::SigningKey::from_bytes(&[b; 32]);
        let log = Ed25519Signer::new("factory.example/ledger", sk(1)).unwrap();
        let city = ledger::cosignature::Cosigner::new("city.example/ledger", sk(2)).unwrap();
        let cp = Checkpoint::new("factory.example/ledger", 3, Hash([0x11; 32])).unwrap();
        let own = SignedCheckpoint::sign(cp.clone(), &log).unwrap().to_bytes();
        let cos = city.cosign(&cp, 1_700_000_000).unwrap();
        let published = String::from_utf8(compose(&own, &[cos]).unwrap()).unwrap();
        assert_eq!(published, PUBLISHED_VECTOR, "{published}");
        // Both lines verify over the text: the log's as a note signature, the city's as a
        // C2SP cosignature (timestamp 1700000000 = 0x6553f100 big-endian before the signature).
        let n = Note::parse(PUBLISHED_VECTOR.as_bytes()).unwrap();
        assert_eq!(n.verify(&[&log.verifier(), &city.verifier()]).unwrap().len(), 2);
        assert_eq!(ledger::cosignature::timestamp(&n.signatures()[1]), Some(1_700_000_000));
    }

    const PUBLISHED_VECTOR: &str = "factory.example/ledger\n3\nERERERERERERERERERERERERERERERERERERERERERE=\n\n\
\u{2014} factory.example/ledger FeUWi08vmujPBgM4V1IP+LapjI5filT5CS54yPHFWXBGSjTSycErzki4kb2zM/BkJ0A2P9/CsWAOqa71X1PVTS2eMg4=\n\
\u{2014} city.example/ledger VJ0hlQAAAABlU/EAKy1m3f6sbr0zLXvesA7VOTEOJcgK4BPq1uNMhjd7m5SjwNLJaHWPZDh3JedWnUEB9S2WmcydRxpgsFqgOE0EAg==\n";

    #[test]
    fn check_view_finds_forks_and_needs_a_proof_across_sizes() {
        let mut t = merkle::MemoryTree::new();
        for i in 0..9u64 {
            t.push(&i.to_be_bytes());
        }
        let o = "factory.example/ledger";
        let cp = |size: u64, root: Hash| Checkpoint::new(o, size, root).unwrap();
        let at = |n: u64| merkle::root(&t, n).unwrap();
        let w = cp(5, at(5));
        assert_eq!(check_view(&w, &cp(5, at(5)), None), ViewCheck::Consistent);
        assert!(matches!(check_view(&w, &cp(5, at(6)), None), ViewCheck::Conflict(_)));
        assert_eq!(check_view(&w, &cp(9, at(9)), None), ViewCheck::NeedProof { from: 5, to: 9 });
        let proof = merkle::consistency_proof(&t, 5, 9).unwrap();
        assert_eq!(check_view(&w, &cp(9, at(9)), Some(&proof)), ViewCheck::Consistent);
        let bad = cp(9, at(8));
        assert!(matches!(check_view(&w, &bad, Some(&proof)), ViewCheck::Conflict(_)));
        // The published one may lag the witnessed one (it waits for cosignatures).
        let p3 = merkle::consistency_proof(&t, 3, 5).unwrap();
        assert_eq!(check_view(&w, &cp(3, at(3)), Some(&p3)), ViewCheck::Consistent);
    }
}
