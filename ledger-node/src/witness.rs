//! The I/O shell of cross-witnessing (a child of `server`, so it shares the handlers'
//! plumbing): the peer branch of `add-checkpoint`, `GET /v1/peers`, the admin evidence list,
//! the published checkpoint, and one push task and one gossip task per peer. Decisions are in
//! [`crate::peers`].
//!
//! Backpressure: each task makes one request at a time to its peer and waits (interval, or
//! exponential backoff with jitter after a failure); nothing queues. The witness side is
//! serialised per peer (check, cosign, compare-and-set), like gateways.

use std::sync::OnceLock;

use ledger::merkle::Hash;
use ledger::tile::{Tile, TileError, TileSource};

use super::*;
use crate::peers::{self, kind, CrossWitness, Peer, PeerEvidence, ViewCheck};

/// Most candidate sizes tried when choosing the checkpoint to publish.
const MAX_SELECT_STEPS: usize = 4096;
/// Largest response read from a peer (a checkpoint note, cosignature lines, a tile).
const MAX_PEER_RESPONSE: usize = 1 << 20;

/// Cross-witnessing state shared by the handlers and the tasks.
pub struct Cross {
    cfg: CrossWitness,
    /// One add-checkpoint at a time per peer (check and compare-and-set see the same state).
    locks: Vec<tokio::sync::Mutex<()>>,
    /// What `/checkpoint` serves when the policy needs cosignatures: `(size, note)`.
    published: Mutex<Option<(u64, Vec<u8>)>>,
    /// Per peer: the last gossip outcome, for `/v1/peers`.
    gossip: Mutex<Vec<serde_json::Value>>,
    /// Per peer: the last push outcome, for `/v1/peers`.
    pushes: Mutex<Vec<serde_json::Value>>,
    clients: Vec<reqwest::Client>,
}

/// Slot in the node (set once by [`start`]).
pub type CrossSlot = OnceLock<Arc<Cross>>;

impl Cross {
    fn peer_index(&self, origin: &str) -> Option<usize> {
        self.cfg.peers.iter().position(|p| p.origin() == origin)
    }
}

fn client(p: &Peer, timeout: Duration) -> Result<reqwest::Client, RunError> {
    let mut roots = rustls::RootCertStore::empty();
    match &p.ca_pem {
        Some(pem) => {
            use rustls::pki_types::pem::PemObject as _;
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
                let cert =
                    cert.map_err(|e| RunError::Fatal(format!("peer {}: ca_file: {e}", p.name)))?;
                roots
                    .add(cert)
                    .map_err(|e| RunError::Fatal(format!("peer {}: ca_file: {e}", p.name)))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| RunError::Fatal(format!("peer {}: TLS: {e}", p.name)))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("iov-ledger/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| RunError::Fatal(format!("peer {}: HTTP client: {e}", p.name)))
}

/// Attaches cross-witnessing to `node` and spawns one pusher and one gossip task per peer
/// (they stop with `shutdown`). With no peers only the policy is attached.
pub fn start(node: &Arc<Node>, cfg: CrossWitness) -> Result<(), RunError> {
    let clients =
        cfg.peers.iter().map(|p| client(p, cfg.request_timeout)).collect::<Result<Vec<_>, _>>()?;
    let n = cfg.peers.len();
    let cross = Arc::new(Cross {
        locks: (0..n).map(|_| tokio::sync::Mutex::new(())).collect(),
        published: Mutex::new(None),
        gossip: Mutex::new(vec![serde_json::Value::Null; n]),
        pushes: Mutex::new(vec![serde_json::Value::Null; n]),
        clients,
        cfg,
    });
    if node.cross.set(cross.clone()).is_err() {
        return Err(RunError::Fatal("cross-witnessing started twice".into()));
    }
    // Gauges and the published checkpoint from what the store holds.
    let mut split = 0u64;
    for p in &cross.cfg.peers {
        let key = peers::witness_key(p.origin());
        let ev = node.store.evidence(&key)?;
        split += ev.len() as u64;
        node.metrics.evidence.fetch_add(ev.len() as u64, Ordering::Relaxed);
        let w = node.store.witnessed(&key)?.map_or(0, |n| note_size(&n));
        node.metrics.peers.witnessed(&p.name, w);
        let c = node.store.witnessed(&peers::cosigned_by_key(&p.cosigner.to_vkey()))?;
        node.metrics.peers.cosigned_ours(&p.name, c.map_or(0, |n| note_size(&n)));
    }
    node.metrics.peers.split_views.store(split, Ordering::Relaxed);
    refresh_published(node)?;
    for i in 0..n {
        let (a, b) = (node.clone(), node.clone());
        tokio::spawn(async move { pusher(a, i).await });
        tokio::spawn(async move { gossiper(b, i).await });
    }
    Ok(())
}

fn note_size(note: &[u8]) -> u64 {
    Note::parse(note).ok().and_then(|n| Checkpoint::parse(n.text()).ok()).map_or(0, |c| c.size())
}

fn parse_note(note: &[u8]) -> Option<Checkpoint> {
    Note::parse(note).ok().and_then(|n| Checkpoint::parse(n.text()).ok())
}

/// Recomputes what `/checkpoint` serves under the policy (blocking: store reads).
fn refresh_published(node: &Node) -> Result<(), StoreError> {
    let Some(cross) = node.cross.get() else { return Ok(()) };
    if cross.cfg.policy.quorum == 0 {
        return Ok(());
    }
    let keys: Vec<String> =
        cross.cfg.peers.iter().map(|p| peers::cosigned_by_key(&p.cosigner.to_vkey())).collect();
    let chosen = peers::select(
        &cross.cfg.peers,
        &cross.cfg.policy,
        |w, max| node.store.witnessed_at_or_below(&keys[w], max),
        MAX_SELECT_STEPS,
    )?;
    let mut p = cross.published.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let newer = match (&*p, &chosen) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some((old, _)), Some((new, _))) => new > old,
    };
    if newer {
        if let Some((size, _)) = &chosen {
            node.metrics.peers.published_size.store(*size, Ordering::Relaxed);
            tracing::info!(size, "aggregate checkpoint published (policy satisfied)");
        }
        *p = chosen;
    }
    Ok(())
}

/// What `/checkpoint` serves: `None` when no policy with cosignatures applies (the caller
/// serves the latest checkpoint as before), `Some(None)` when nothing satisfies it yet.
pub(super) fn published(node: &Node) -> Option<Option<Vec<u8>>> {
    let cross = node.cross.get()?;
    if cross.cfg.policy.quorum == 0 {
        return None;
    }
    let p = cross.published.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    Some(p.as_ref().map(|(_, n)| n.clone()))
}

/// The store key of the witness state of the peer whose origin hashes (SHA-256, hex) to
/// `origin_hash` (C2SP tlog-witness monitor retrieval).
pub(super) fn witness_key_for_hash(node: &Node, origin_hash: &str) -> Option<String> {
    use sha2::Digest as _;
    let cross = node.cross.get()?;
    cross.cfg.peers.iter().find_map(|p| {
        let h: String = sha2::Sha256::digest(p.origin().as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        (h == origin_hash).then(|| peers::witness_key(p.origin()))
    })
}

/// True when `origin` is a configured peer's aggregate log.
pub(super) fn is_peer(node: &Node, origin: &str) -> bool {
    node.cross.get().is_some_and(|c| c.peer_index(origin).is_some())
}

// ---------------------------------------------------------------------------------------------
// witness side: add-checkpoint for a peer's aggregate log

pub(super) async fn add_peer_checkpoint(
    node: &Arc<Node>,
    origin: &str,
    req: AddCheckpoint,
    bytes: Bytes,
) -> Result<Response, Failure> {
    let Some(cross) = node.cross.get().cloned() else {
        return Err(Failure::new(ErrorCode::Internal, "cross-witnessing is not running"));
    };
    let Some(i) = cross.peer_index(origin) else {
        return Err(Failure::new(ErrorCode::UnknownOrigin, format!("{origin:?} is not a peer")));
    };
    let peer = cross.cfg.peers[i].clone();
    let _serial = cross.locks[i].lock().await;
    let key = peers::witness_key(origin);
    let n = node.clone();
    let k = key.clone();
    let latest =
        blocking(move || n.store.witnessed(&k)).await?.map_err(|e| node.store_failed(&e))?;
    let latest_cp = match &latest {
        None => None,
        Some(note) => Some(stored_checkpoint(origin, note)?),
    };
    let signed = match sync_wire::check_add_checkpoint(&req, Some(&peer.log), latest_cp.as_ref()) {
        Ok(s) => s,
        Err(AddCheckpointError::SizeMismatch { latest, .. }) => {
            node.metrics.refusal(ErrorCode::SizeMismatch.as_str());
            return Ok(size_conflict(latest));
        }
        Err(e) => {
            if e.is_evidence() {
                let k = if e.is_fork() { kind::PEER_FORK } else { kind::PEER_INCONSISTENT };
                let held = latest.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
                let ev = PeerEvidence {
                    peer: peer.name.clone(),
                    origin: origin.to_owned(),
                    held: held.into_owned(),
                    received: String::from_utf8_lossy(&bytes).into_owned(),
                };
                keep_peer_evidence(node, &peer, k, &e.to_string(), &ev).await?;
            }
            tracing::warn!(peer = %peer.name, code = %e.code(), error = %e, "peer checkpoint refused");
            return Err(Failure {
                status: e.status(),
                body: ErrorBody::new(e.code(), e.to_string()),
            });
        }
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_secs().max(1));
    let cp = signed.checkpoint().clone();
    let sig = node
        .cosigner
        .cosign(&cp, now)
        .map_err(|e| Failure::new(ErrorCode::Internal, e.to_string()))?;
    // Kept: the checkpoint with the peer's log signature and our cosignature.
    let note = {
        let mut n = Note::new(cp.to_text())
            .map_err(|e| Failure::new(ErrorCode::Malformed, e.to_string()))?;
        for s in signed.note().signatures() {
            if s.name == peer.log.name() && s.key_id == peer.log.key_id() {
                n.add_signature(s.clone());
            }
        }
        n.add_signature(sig.clone());
        n.to_bytes()
    };
    let expected = latest_cp.as_ref().map_or(0, Checkpoint::size);
    let size = cp.size();
    let n = node.clone();
    let cas = blocking(move || n.store.cas_witnessed(&key, expected, size, &note, None))
        .await?
        .map_err(|e| node.store_failed(&e))?;
    match cas {
        Cas::Stored => {
            node.metrics.checkpoints_cosigned.fetch_add(1, Ordering::Relaxed);
            node.metrics.peers.witnessed(&peer.name, size);
            tracing::info!(peer = %peer.name, size, "peer aggregate checkpoint cosigned");
            Ok((
                [(header::CONTENT_TYPE, sync_wire::TEXT_TYPE)],
                sync_wire::cosignature_lines(&[sig]),
            )
                .into_response())
        }
        Cas::Conflict { latest } => {
            node.metrics.refusal(ErrorCode::SizeMismatch.as_str());
            Ok(size_conflict(latest))
        }
    }
}

async fn keep_peer_evidence(
    node: &Arc<Node>,
    peer: &Peer,
    kind: &'static str,
    reason: &str,
    ev: &PeerEvidence,
) -> Result<(), Failure> {
    let request = serde_json::to_vec(ev).unwrap_or_default();
    let key = peers::witness_key(peer.origin());
    let n = node.clone();
    let k = key.clone();
    let received = ev.received.clone();
    let record = Evidence { at_ns: now_ns(), kind: kind.into(), reason: reason.into(), request };
    // The same conflicting note seen again (gossip repeats) is not a new record.
    let added = blocking(move || {
        let held = n.store.evidence(&k)?;
        let dup = held.iter().any(|e| {
            serde_json::from_slice::<PeerEvidence>(&e.request).is_ok_and(|p| p.received == received)
        });
        if dup {
            return Ok(None);
        }
        n.store.add_evidence(&k, &record).map(Some)
    })
    .await?
    .map_err(|e| node.store_failed(&e))?;
    if let Some(seq) = added {
        node.metrics.evidence.fetch_add(1, Ordering::Relaxed);
        node.metrics.peers.split_views.fetch_add(1, Ordering::Relaxed);
        tracing::error!(peer = %peer.name, seq, kind, %reason, "PEER MISBEHAVIOUR: evidence kept");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// GET /v1/peers (public) and GET /v1/admin/peers/evidence (admin)

pub(super) async fn peers_info(State(node): State<Arc<Node>>) -> Response {
    let n = node.clone();
    let r = blocking(move || -> Result<serde_json::Value, StoreError> {
        let agg = n.store.aggregate_size()?;
        let published = match published(&n) {
            None => agg,
            Some(p) => p.as_deref().map_or(0, note_size),
        };
        let mut rows = Vec::new();
        let pushes = n.cross.get().map_or_else(Vec::new, |c| {
            c.pushes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
        });
        let (policy, gossip) = match n.cross.get() {
            None => (serde_json::json!({"witnesses": [], "quorum": 0}), Vec::new()),
            Some(c) => (
                serde_json::json!({
                    "witnesses": c.cfg.policy.witnesses.iter().map(|&w| c.cfg.peers[w].name.clone()).collect::<Vec<_>>(),
                    "quorum": c.cfg.policy.quorum,
                }),
                c.gossip.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone(),
            ),
        };
        for (i, p) in n.cross.get().map_or(&[][..], |c| &c.cfg.peers[..]).iter().enumerate() {
            let key = peers::witness_key(p.origin());
            let w = n.store.witnessed(&key)?;
            let ours = n.store.witnessed(&peers::cosigned_by_key(&p.cosigner.to_vkey()))?;
            rows.push(serde_json::json!({
                "name": p.name,
                "origin": p.origin(),
                "log_vkey": p.log.to_vkey(),
                "cosigner_vkey": p.cosigner.to_vkey(),
                "witnessed_size": w.as_deref().map_or(0, note_size),
                "witnessed_checkpoint": w.map(|b| String::from_utf8_lossy(&b).into_owned()),
                "cosigned_our_size": ours.as_deref().map_or(0, note_size),
                "evidence": n.store.evidence(&key)?.len(),
                "last_gossip": gossip.get(i).cloned().unwrap_or_default(),
                "last_push": pushes.get(i).cloned().unwrap_or_default(),
            }));
        }
        Ok(serde_json::json!({
            "ledger": n.name,
            "log_vkey": n.log_signer.as_ref().map(|s| s.verifier().to_vkey()),
            "cosigner_vkey": n.cosigner.verifier().to_vkey(),
            "aggregate_size": agg,
            "published_size": published,
            "policy": policy,
            "peers": rows,
        }))
    })
    .await
    .and_then(|r| r.map_err(|e| node.store_failed(&e)));
    match r {
        Ok(v) => (
            [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-cache")],
            v.to_string(),
        )
            .into_response(),
        Err(f) => json_err(&node, f),
    }
}

pub(super) async fn admin_peer_evidence(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
) -> Response {
    let r = async {
        authorize(&node, &headers)?;
        let n = node.clone();
        blocking(move || -> Result<Vec<serde_json::Value>, StoreError> {
            let mut rows = Vec::new();
            for p in n.cross.get().map_or(&[][..], |c| &c.cfg.peers[..]) {
                for e in n.store.evidence(&peers::witness_key(p.origin()))? {
                    let detail: Option<PeerEvidence> = serde_json::from_slice(&e.request).ok();
                    rows.push(serde_json::json!({
                        "peer": p.name,
                        "origin": p.origin(),
                        "at_ns": e.at_ns,
                        "kind": e.kind,
                        "reason": e.reason,
                        "held": detail.as_ref().map(|d| d.held.clone()),
                        "received": detail.as_ref().map(|d| d.received.clone()),
                    }));
                }
            }
            Ok(rows)
        })
        .await?
        .map_err(|e| node.store_failed(&e))
    }
    .await;
    match r {
        Ok(rows) => (
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::Value::Array(rows).to_string(),
        )
            .into_response(),
        Err(f) => json_err(&node, f),
    }
}

// ---------------------------------------------------------------------------------------------
// tasks

/// Exponential backoff with full jitter in `[d/2, d]`.
fn backoff(attempt: u32, max: Duration) -> Duration {
    let base = Duration::from_millis(250).saturating_mul(1u32 << attempt.min(16)).min(max);
    let mut r = [0u8; 4];
    let frac = match getrandom::fill(&mut r) {
        Ok(()) => f64::from(u32::from_le_bytes(r)) / f64::from(u32::MAX),
        Err(_) => 1.0,
    };
    base.mul_f64(0.5 + frac / 2.0)
}

/// Sleeps `d` or until shutdown; false on shutdown.
async fn pause(node: &Node, d: Duration) -> bool {
    tokio::select! {
        () = node.shutdown.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}

async fn fetch(
    client: &reqwest::Client,
    req: reqwest::RequestBuilder,
) -> Result<(u16, Vec<u8>), String> {
    let _ = client;
    let mut resp = req.send().await.map_err(|e| {
        let mut s = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(x) = src {
            s.push_str(": ");
            s.push_str(&x.to_string());
            src = x.source();
        }
        s
    })?;
    let status = resp.status().as_u16();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_PEER_RESPONSE {
            return Err(format!("response larger than {MAX_PEER_RESPONSE} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, body))
}

fn url(p: &Peer, path: &str) -> String {
    format!("{}{}", p.url.as_str().trim_end_matches('/'), path)
}

/// Pushes each new aggregate checkpoint to one peer and stores its cosignature.
async fn pusher(node: Arc<Node>, i: usize) {
    let Some(cross) = node.cross.get().cloned() else { return };
    let peer = cross.cfg.peers[i].clone();
    let key = peers::cosigned_by_key(&peer.cosigner.to_vkey());
    let n = node.clone();
    let k = key.clone();
    // The size the peer last cosigned, as far as we know (a 409 corrects it).
    let mut peer_size = match blocking(move || n.store.witnessed(&k)).await {
        Ok(Ok(w)) => w.as_deref().map_or(0, note_size),
        _ => 0,
    };
    let mut attempt = 0u32;
    let mut wait = Duration::ZERO;
    loop {
        if !pause(&node, wait).await {
            return;
        }
        wait = cross.cfg.push_interval;
        let status = match push_once(&node, &cross, &peer, i, &key, &mut peer_size).await {
            Ok(()) => {
                attempt = 0;
                serde_json::json!({"at_ns": now_ns(), "ok": true, "peer_cosigned_size": peer_size})
            }
            Err(e) => {
                node.metrics.peers.push_failed(&peer.name);
                tracing::warn!(peer = %peer.name, error = %e, "push of our checkpoint failed");
                wait = backoff(attempt, cross.cfg.max_backoff);
                attempt = attempt.saturating_add(1);
                serde_json::json!({"at_ns": now_ns(), "ok": false, "detail": e})
            }
        };
        if let Some(slot) =
            cross.pushes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_mut(i)
        {
            *slot = status;
        }
    }
}

/// What to push: `(size, our signed checkpoint, consistency proof from the peer's size)`.
type Push = (u64, Vec<u8>, Vec<Hash>);

async fn push_once(
    node: &Arc<Node>,
    cross: &Cross,
    peer: &Peer,
    i: usize,
    key: &str,
    peer_size: &mut u64,
) -> Result<(), String> {
    // A 409 re-proves from the size the peer reports: at most twice in a row.
    for _ in 0..3 {
        let n = node.clone();
        let old = *peer_size;
        let step = blocking(move || -> Result<Option<Push>, StoreError> {
            let Some(note) = n.store.aggregate_checkpoint()? else { return Ok(None) };
            let size = note_size(&note);
            if size <= old {
                return Ok(None);
            }
            let proof = if old == 0 {
                Vec::new()
            } else {
                let tiles = Tiles { store: n.store.as_ref(), origin: AGGREGATE };
                ledger::log::consistency_proof(&ledger::log::PrefixTiles(&tiles), old, size)
                    .map_err(|e| StoreError::Read {
                        what: "aggregate tiles".into(),
                        reason: e.to_string(),
                    })?
            };
            Ok(Some((size, note, proof)))
        })
        .await
        .map_err(|f| f.body.reason)?
        .map_err(|e| e.to_string())?;
        let Some((size, note, proof)) = step else { return Ok(()) };
        let body = AddCheckpoint { old_size: old, proof, checkpoint: note.clone() }.to_bytes();
        let c = &cross.clients[i];
        let (status, resp) = fetch(
            c,
            c.post(url(peer, sync_wire::path::ADD_CHECKPOINT))
                .header(header::CONTENT_TYPE.as_str(), sync_wire::TEXT_TYPE)
                .body(body),
        )
        .await?;
        match status {
            200 => {
                let sigs = sync_wire::parse_cosignature_lines(&resp).map_err(|e| e.to_string())?;
                let cp = parse_note(&note).ok_or("our own checkpoint does not parse")?;
                let sig = sigs
                    .into_iter()
                    .find(|s| peer.cosigner.verify(&cp, s, u64::MAX / 2, 0).is_ok())
                    .ok_or_else(|| {
                        format!("no valid cosignature by {} in the answer", peer.cosigner.to_vkey())
                    })?;
                let stored = peers::compose(&note, &[sig]).ok_or("composing the cosigned note")?;
                let n = node.clone();
                let k = key.to_owned();
                blocking(move || -> Result<(), StoreError> {
                    let prev = n.store.witnessed(&k)?.as_deref().map_or(0, note_size);
                    if prev < size {
                        n.store.cas_witnessed(&k, prev, size, &stored, None)?;
                    }
                    refresh_published(&n)
                })
                .await
                .map_err(|f| f.body.reason)?
                .map_err(|e| node.store_failed(&e).body.reason)?;
                *peer_size = size;
                node.metrics.peers.cosigned_ours(&peer.name, size);
                tracing::info!(peer = %peer.name, size, "peer cosigned our checkpoint");
                return Ok(());
            }
            409 => {
                let s = sync_wire::parse_size_body(&resp).map_err(|e| e.to_string())?;
                if s > size {
                    return Err(format!(
                        "peer says it cosigned size {s} of our log, larger than our {size}"
                    ));
                }
                tracing::info!(peer = %peer.name, was = old, now = s, "peer holds another size; re-proving");
                *peer_size = s;
                if s == size {
                    // It holds this size already (an answer was lost): re-cosign for the
                    // signature with an empty proof.
                    return resend_same(node, cross, peer, i, key, size, note).await;
                }
            }
            other => {
                return Err(format!(
                    "add-checkpoint answered {other}: {}",
                    ErrorBody::from_text(&resp).reason
                ))
            }
        }
    }
    Err("the peer answered 409 three times in a row".into())
}

/// The peer already cosigned `size`: ask again with `old = size` (an empty proof) to get the
/// cosignature, as the spec allows.
async fn resend_same(
    node: &Arc<Node>,
    cross: &Cross,
    peer: &Peer,
    i: usize,
    key: &str,
    size: u64,
    note: Vec<u8>,
) -> Result<(), String> {
    let body =
        AddCheckpoint { old_size: size, proof: Vec::new(), checkpoint: note.clone() }.to_bytes();
    let c = &cross.clients[i];
    let (status, resp) = fetch(
        c,
        c.post(url(peer, sync_wire::path::ADD_CHECKPOINT))
            .header(header::CONTENT_TYPE.as_str(), sync_wire::TEXT_TYPE)
            .body(body),
    )
    .await?;
    if status != 200 {
        return Err(format!("re-cosign answered {status}: {}", ErrorBody::from_text(&resp).reason));
    }
    let sigs = sync_wire::parse_cosignature_lines(&resp).map_err(|e| e.to_string())?;
    let cp = parse_note(&note).ok_or("our own checkpoint does not parse")?;
    let sig = sigs
        .into_iter()
        .find(|s| peer.cosigner.verify(&cp, s, u64::MAX / 2, 0).is_ok())
        .ok_or("no valid cosignature in the answer")?;
    let stored = peers::compose(&note, &[sig]).ok_or("composing the cosigned note")?;
    let n = node.clone();
    let k = key.to_owned();
    blocking(move || -> Result<(), StoreError> {
        let prev = n.store.witnessed(&k)?.as_deref().map_or(0, note_size);
        if prev < size {
            n.store.cas_witnessed(&k, prev, size, &stored, None)?;
        }
        refresh_published(&n)
    })
    .await
    .map_err(|f| f.body.reason)?
    .map_err(|e| node.store_failed(&e).body.reason)?;
    node.metrics.peers.cosigned_ours(&peer.name, size);
    Ok(())
}

/// Tiles of a peer's aggregate log fetched over HTTP (for a consistency proof; whatever they
/// hold, the proof is checked against both signed roots).
struct FetchedTiles(std::collections::HashMap<Tile, Vec<u8>>);

impl TileSource for FetchedTiles {
    fn read_tile(&self, t: &Tile) -> Result<Vec<u8>, TileError> {
        self.0.get(t).cloned().ok_or_else(|| TileError::NotFound { path: t.path() })
    }
}

/// Records which tiles a computation reads (answering zeros of the right length).
struct Recorder(Mutex<Vec<Tile>>);

impl TileSource for Recorder {
    fn read_tile(&self, t: &Tile) -> Result<Vec<u8>, TileError> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(*t);
        Ok(vec![0; t.byte_len()])
    }
}

/// Consistency proof between two sizes of a peer's log, from the peer's tiles.
async fn peer_consistency(
    cross: &Cross,
    i: usize,
    from: u64,
    to: u64,
) -> Result<Vec<Hash>, String> {
    let rec = Recorder(Mutex::new(Vec::new()));
    ledger::log::consistency_proof(&rec, from, to).map_err(|e| e.to_string())?;
    let wanted = rec.0.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    let peer = &cross.cfg.peers[i];
    let c = &cross.clients[i];
    let mut got = std::collections::HashMap::new();
    for t in wanted {
        if got.contains_key(&t) {
            continue;
        }
        let (status, body) = fetch(c, c.get(url(peer, &format!("/{}", t.path())))).await?;
        if status != 200 {
            return Err(format!("{} answered {status}", t.path()));
        }
        got.insert(t, body);
    }
    ledger::log::consistency_proof(&FetchedTiles(got), from, to).map_err(|e| e.to_string())
}

/// Fetches each peer's published checkpoint and checks it against what we witnessed.
async fn gossiper(node: Arc<Node>, i: usize) {
    let Some(cross) = node.cross.get().cloned() else { return };
    let peer = cross.cfg.peers[i].clone();
    let mut attempt = 0u32;
    let mut wait = cross.cfg.gossip_interval.min(Duration::from_secs(1));
    loop {
        if !pause(&node, wait).await {
            return;
        }
        wait = cross.cfg.gossip_interval;
        let outcome = gossip_once(&node, &cross, &peer, i).await;
        let status = match &outcome {
            Ok(s) => {
                attempt = 0;
                serde_json::json!({"at_ns": now_ns(), "ok": true, "detail": s})
            }
            Err(e) => {
                node.metrics.peers.gossip_failed(&peer.name);
                tracing::warn!(peer = %peer.name, error = %e, "gossip with the peer failed");
                wait = backoff(attempt, cross.cfg.max_backoff).min(cross.cfg.gossip_interval);
                attempt = attempt.saturating_add(1);
                serde_json::json!({"at_ns": now_ns(), "ok": false, "detail": e})
            }
        };
        if let Some(slot) =
            cross.gossip.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_mut(i)
        {
            *slot = status;
        }
    }
}

async fn gossip_once(
    node: &Arc<Node>,
    cross: &Cross,
    peer: &Peer,
    i: usize,
) -> Result<String, String> {
    let c = &cross.clients[i];
    let (status, body) = fetch(c, c.get(url(peer, "/checkpoint"))).await?;
    if status != 200 {
        return Err(format!("/checkpoint answered {status}"));
    }
    let (signed, _) = ledger::checkpoint::SignedCheckpoint::verify(
        &body,
        &[&peer.log as &dyn ledger::note::Verifier],
    )
    .map_err(|e| {
        format!("published checkpoint does not verify with {}: {e}", peer.log.to_vkey())
    })?;
    let published = signed.checkpoint().clone();
    if published.origin() != peer.origin() {
        return Err(format!("published checkpoint names origin {:?}", published.origin()));
    }
    let n = node.clone();
    let key = peers::witness_key(peer.origin());
    let held = blocking(move || n.store.witnessed(&key))
        .await
        .map_err(|f| f.body.reason)?
        .map_err(|e| e.to_string())?;
    let Some(held) = held else {
        return Ok(format!("published size {}; nothing witnessed yet", published.size()));
    };
    let witnessed = parse_note(&held).ok_or("stored witness state does not parse")?;
    let mut check = peers::check_view(&witnessed, &published, None);
    if let ViewCheck::NeedProof { from, to } = check {
        let proof = peer_consistency(cross, i, from, to).await?;
        check = peers::check_view(&witnessed, &published, Some(&proof));
    }
    match check {
        ViewCheck::Consistent => Ok(format!(
            "published size {} consistent with witnessed size {}",
            published.size(),
            witnessed.size()
        )),
        ViewCheck::NeedProof { .. } => Err("no consistency proof".into()),
        ViewCheck::Conflict(reason) => {
            let ev = PeerEvidence {
                peer: peer.name.clone(),
                origin: peer.origin().to_owned(),
                held: String::from_utf8_lossy(&held).into_owned(),
                received: String::from_utf8_lossy(&body).into_owned(),
            };
            keep_peer_evidence(node, peer, kind::SPLIT_VIEW, &reason, &ev)
                .await
                .map_err(|f| f.body.reason)?;
            Err(format!("SPLIT VIEW: {reason}"))
        }
    }
}
