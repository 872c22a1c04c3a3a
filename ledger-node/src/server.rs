//! The HTTP shell: routes, handlers, the accept loop (plain or TLS), graceful shutdown.
//!
//! Handlers parse with `ledger::sync_wire`, decide with the pure cores
//! (`sync_wire::check_add_checkpoint`, [`crate::mirror::check`]) and do store I/O on
//! `spawn_blocking`. A failed store write is fatal: the node cancels its shutdown token, answers
//! 503 from then on, and `run` returns the error so the process exits non-zero.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use ledger::checkpoint::Checkpoint;
use ledger::cosignature::Cosigner;
use ledger::note::{Ed25519Signer, Ed25519Verifier, Note, Verifier as _};
use ledger::sync_wire::{
    self, AddCheckpoint, AddCheckpointError, ErrorBody, ErrorCode, GatewayState, Link, QueryBlocks,
    Upload, UploadAck, Witnessed,
};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;
use crate::mirror;
use crate::store::{
    Cas, Enrollment, Evidence, LedgerStore, LogAppend, MirrorAppend, StoreError, Tiles, AGGREGATE,
};
use crate::token::{Denied, Scope, TokenSet};

/// Cross-witnessing between ledgers (a child module: it shares this module's plumbing).
#[path = "witness.rs"]
pub mod witness;

#[path = "fleet.rs"]
mod fleet;

/// Limits the handlers enforce.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_upload_bytes: usize,
    pub max_blocks_per_batch: usize,
    pub max_connections: usize,
    pub request_timeout: Duration,
    pub future_tolerance: Duration,
}

/// Uploads read and checked at once (memory bound: this many times `max_upload_bytes`).
pub const UPLOAD_SLOTS: usize = 8;

/// Who this ledger is: its name and keys.
pub struct Identity {
    /// Organisation name, in `/v1/link`.
    pub name: String,
    /// Cosigns gateway checkpoints.
    pub cosigner: Cosigner,
    /// Signs the aggregate log's checkpoints (`None`: no aggregate log).
    pub log_signer: Option<Ed25519Signer>,
}

/// Everything the handlers share.
pub struct Node {
    store: Arc<dyn LedgerStore>,
    name: String,
    cosigner: Cosigner,
    /// Signs the aggregate log's checkpoints (`None`: no aggregate log).
    log_signer: Option<Ed25519Signer>,
    /// Serialises add-checkpoint from the check to the durable write: each acceptance appends
    /// one leaf to the aggregate log, whose head must not move in between.
    aggregate: tokio::sync::Mutex<()>,
    tokens: TokenSet,
    limits: Limits,
    metrics: Arc<Metrics>,
    /// `ledger::log::prepare_append` signs a checkpoint of every append; the mirror does not
    /// publish those (the gateway's own, cosigned checkpoints are the ones that count), so a
    /// throwaway key made at start signs them and they are dropped.
    scratch: Ed25519Signer,
    /// Bounds the memory of upload bodies: at most [`UPLOAD_SLOTS`] are read and checked at
    /// once (so at most that many times `max_upload_bytes`); further uploads wait for a slot
    /// within their request timeout (then 503, and the gateway retries).
    upload_slots: tokio::sync::Semaphore,
    /// One upload at a time per origin (check and append must see the same mirrored size).
    uploads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Cancelled on a fatal store error (and by the caller on SIGTERM).
    shutdown: CancellationToken,
    fatal: Mutex<Option<String>>,
    /// Peers, policy and published checkpoint (set by `witness::start`).
    cross: witness::CrossSlot,
}

/// Why the node stopped abnormally.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    #[error("ledger store: {0}")]
    Store(#[from] StoreError),
    #[error("fatal: {0}")]
    Fatal(String),
    #[error("listener {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("making the scratch key: {0}")]
    Key(String),
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl Node {
    /// A node over an open store. Seeds `enrollments` (from the config) into the store and
    /// loads the gauges the store implies.
    pub fn new(
        store: Arc<dyn LedgerStore>,
        identity: Identity,
        tokens: TokenSet,
        limits: Limits,
        enrollments: &[Enrollment],
        shutdown: CancellationToken,
    ) -> Result<Arc<Node>, RunError> {
        for e in enrollments {
            store.put_enrollment(e)?;
        }
        let metrics = Arc::new(Metrics::default());
        let all = store.enrollments()?;
        metrics.gateways_enrolled.store(all.len() as u64, Ordering::Relaxed);
        for e in &all {
            let ev = store.evidence(&e.origin)?;
            metrics.evidence.fetch_add(ev.len() as u64, Ordering::Relaxed);
            let forks = ev.iter().filter(|x| x.kind == "fork").count() as u64;
            metrics.forks.fetch_add(forks, Ordering::Relaxed);
        }
        let scratch = ledger::keys::generate_signer("iov-ledger/mirror-scratch")
            .map_err(|e| RunError::Key(e.to_string()))?;
        let Identity { name, cosigner, log_signer } = identity;
        Ok(Arc::new(Node {
            store,
            name,
            cosigner,
            log_signer,
            aggregate: tokio::sync::Mutex::new(()),
            tokens,
            limits,
            metrics,
            scratch,
            upload_slots: tokio::sync::Semaphore::new(UPLOAD_SLOTS),
            uploads: Mutex::new(HashMap::new()),
            shutdown,
            fatal: Mutex::new(None),
            cross: witness::CrossSlot::new(),
        }))
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The first fatal error, if one happened.
    pub fn fatal_error(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Maps a store error to a response; a fatal one stops the node.
    fn store_failed(&self, e: &StoreError) -> Failure {
        if e.is_fatal() {
            tracing::error!(error = %e, "store write failed; stopping");
            let mut f = self.fatal.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            f.get_or_insert_with(|| e.to_string());
            self.shutdown.cancel();
            return Failure::new(ErrorCode::Unavailable, e.to_string());
        }
        tracing::error!(error = %e, "store read failed");
        Failure::new(ErrorCode::Internal, e.to_string())
    }

    fn upload_lock(&self, origin: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.uploads.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        m.entry(origin.to_owned()).or_default().clone()
    }
}

/// A refusal on its way to becoming a response.
#[derive(Debug)]
struct Failure {
    body: ErrorBody,
    status: u16,
}

impl Failure {
    fn new(code: ErrorCode, reason: impl Into<String>) -> Failure {
        let status = code.status();
        Failure { body: ErrorBody::new(code, reason), status }
    }
}

fn status(s: u16) -> StatusCode {
    StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn cbor_ok(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, sync_wire::CBOR_TYPE)], bytes).into_response()
}

fn cbor_err(node: &Node, f: Failure) -> Response {
    node.metrics.refusal(f.body.code.as_str());
    (status(f.status), [(header::CONTENT_TYPE, sync_wire::CBOR_TYPE)], f.body.to_cbor())
        .into_response()
}

fn text_err(node: &Node, f: Failure) -> Response {
    node.metrics.refusal(f.body.code.as_str());
    (status(f.status), [(header::CONTENT_TYPE, sync_wire::TEXT_TYPE)], f.body.to_text())
        .into_response()
}

fn json_err(node: &Node, f: Failure) -> Response {
    node.metrics.refusal(f.body.code.as_str());
    let body = serde_json::json!({"code": f.body.code.as_str(), "reason": f.body.reason});
    (status(f.status), [(header::CONTENT_TYPE, "application/json")], body.to_string())
        .into_response()
}

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Failure::new(ErrorCode::Internal, format!("store task failed: {e}")))
}

/// Reads a body of at most `max` bytes.
async fn read_body(body: Body, headers: &HeaderMap, max: usize) -> Result<Bytes, Failure> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(Failure::new(
            ErrorCode::TooLarge,
            format!("body of {} bytes, limit {max}", declared.unwrap_or_default()),
        ));
    }
    axum::body::to_bytes(body, max).await.map_err(|e| body_failure(e.into_inner(), max))
}

/// Over the limit is `too_large` (413); anything else while reading a body (the client cut the
/// connection, a bad chunk) is `malformed` (400), so the refusal metrics tell the two apart.
fn body_failure(e: axum::BoxError, max: usize) -> Failure {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e.as_ref());
    while let Some(c) = cause {
        if c.is::<http_body_util::LengthLimitError>() {
            return Failure::new(
                ErrorCode::TooLarge,
                format!("body over the limit of {max} bytes"),
            );
        }
        cause = c.source();
    }
    Failure::new(ErrorCode::Malformed, format!("reading the body failed: {e}"))
}

/// The router of the main listener.
pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route(sync_wire::path::LINK, get(link))
        .route(sync_wire::path::ADD_CHECKPOINT, post(add_checkpoint))
        .route("/v1/gateways/{origin}/blocks", post(upload))
        .route("/v1/gateways/{origin}/state", get(state))
        .route("/v1/admin/gateways", post(admin_enroll).get(admin_list))
        .route("/v1/admin/gateways/{origin}/evidence", get(admin_evidence))
        .route("/v1/query/{origin}/blocks", get(query_blocks))
        .route("/v1/units/{unit}/gateways", get(fleet::unit_gateways))
        .route("/checkpoint", get(aggregate_checkpoint))
        .route("/{origin_hash}/checkpoint", get(monitor_checkpoint))
        .route("/tile/{*path}", get(aggregate_tile))
        .route("/v1/peers", get(witness::peers_info))
        .route("/v1/admin/peers/evidence", get(witness::admin_peer_evidence))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(node.clone(), guard))
        .with_state(node)
}

/// Per request: refuse when stopping after a fatal error, enforce the request timeout, count
/// the answer by endpoint and status.
async fn guard(
    State(node): State<Arc<Node>>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let endpoint = endpoint_name(req.uri().path());
    if node.fatal_error().is_some() {
        node.metrics.request(endpoint, 503);
        return cbor_err(&node, Failure::new(ErrorCode::Unavailable, "the ledger is stopping"));
    }
    let resp = match tokio::time::timeout(node.limits.request_timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => cbor_err(
            &node,
            Failure::new(
                ErrorCode::Unavailable,
                format!("request took longer than {:?}", node.limits.request_timeout),
            ),
        ),
    };
    node.metrics.request(endpoint, resp.status().as_u16());
    resp
}

fn endpoint_name(path: &str) -> &'static str {
    match path {
        sync_wire::path::LINK => "link",
        sync_wire::path::ADD_CHECKPOINT => "add-checkpoint",
        "/v1/admin/gateways" => "admin-gateways",
        "/v1/peers" => "peers",
        p if p.starts_with("/v1/admin/") => "admin-evidence",
        "/checkpoint" => "checkpoint",
        p if p.ends_with("/checkpoint") && !p.starts_with("/v1/") => "monitor-checkpoint",
        p if p.starts_with("/v1/query/") => "query",
        p if p.starts_with("/tile/") => "tile",
        p if p.starts_with("/v1/gateways/") && p.ends_with("/blocks") => "blocks",
        p if p.starts_with("/v1/gateways/") && p.ends_with("/state") => "state",
        _ => "other",
    }
}

async fn not_found(State(node): State<Arc<Node>>, req: Request) -> Response {
    let reason = format!("no endpoint {} {}", req.method(), req.uri().path());
    cbor_err(&node, Failure::new(ErrorCode::NotFound, reason))
}

async fn link(State(node): State<Arc<Node>>) -> Response {
    cbor_ok(
        Link {
            protocol: sync_wire::PROTOCOL.into(),
            ledger: node.name.clone(),
            cosigner: node.cosigner.verifier().to_vkey(),
        }
        .to_cbor(),
    )
}

// ---------------------------------------------------------------------------------------------
// add-checkpoint

async fn add_checkpoint(State(node): State<Arc<Node>>, headers: HeaderMap, body: Body) -> Response {
    match add_checkpoint_inner(&node, &headers, body).await {
        Ok(r) => r,
        Err(f) => text_err(&node, f),
    }
}

async fn add_checkpoint_inner(
    node: &Arc<Node>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Failure> {
    let bytes = read_body(body, headers, sync_wire::MAX_ADD_CHECKPOINT_BYTES).await?;
    let req = AddCheckpoint::parse(&bytes)
        .map_err(|e| Failure::new(ErrorCode::Malformed, e.to_string()))?;
    let origin = req
        .claimed_checkpoint()
        .map_err(|e| Failure::new(ErrorCode::Malformed, e.to_string()))?
        .origin()
        .to_owned();
    if witness::is_peer(node, &origin) {
        return witness::add_peer_checkpoint(node, &origin, req, bytes).await;
    }
    let _serial = node.aggregate.lock().await;
    let n = node.clone();
    let o = origin.clone();
    let (enrollment, latest) = blocking(move || {
        let e = n.store.enrollment(&o)?;
        let w = n.store.witnessed(&o)?;
        Ok::<_, StoreError>((e, w))
    })
    .await?
    .map_err(|e| node.store_failed(&e))?;
    let trusted = match &enrollment {
        Some(e) => Some(Ed25519Verifier::from_vkey(&e.vkey).map_err(|err| {
            Failure::new(ErrorCode::Internal, format!("enrolled key of {origin}: {err}"))
        })?),
        None => None,
    };
    let latest_cp = match &latest {
        None => None,
        Some(note) => Some(stored_checkpoint(&origin, note)?),
    };
    let signed = match sync_wire::check_add_checkpoint(&req, trusted.as_ref(), latest_cp.as_ref()) {
        Ok(s) => s,
        Err(AddCheckpointError::SizeMismatch { latest, .. }) => {
            node.metrics.refusal(ErrorCode::SizeMismatch.as_str());
            return Ok(size_conflict(latest));
        }
        Err(e) => {
            if e.is_evidence() {
                let kind = if e.is_fork() { "fork" } else { "inconsistent_checkpoint" };
                keep_evidence(node, &origin, kind, &e.to_string(), bytes.to_vec()).await?;
            }
            tracing::warn!(%origin, code = %e.code(), error = %e, "add-checkpoint refused");
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
    // What is kept (and is the aggregate log's leaf): the checkpoint with the enrolled key's
    // signature(s) and this cosignature; other signatures in the request are dropped.
    let note = {
        let key = trusted.as_ref().map(|k| (k.name().to_owned(), k.key_id()));
        let mut n = Note::new(cp.to_text())
            .map_err(|e| Failure::new(ErrorCode::Malformed, e.to_string()))?;
        for s in signed.note().signatures() {
            if key.as_ref().is_some_and(|(name, id)| *name == s.name && *id == s.key_id) {
                n.add_signature(s.clone());
            }
        }
        n.add_signature(sig.clone());
        n.to_bytes()
    };
    if note.len() > ledger::tile::MAX_ENTRY_BYTES {
        return Err(Failure::new(
            ErrorCode::TooLarge,
            format!(
                "checkpoint note of {} bytes, limit {}",
                note.len(),
                ledger::tile::MAX_ENTRY_BYTES
            ),
        ));
    }
    let expected = latest_cp.as_ref().map_or(0, Checkpoint::size);
    let n = node.clone();
    let o = origin.clone();
    let size = cp.size();
    let cas = blocking(move || {
        let store = n.store.as_ref();
        // A new size is a new leaf of the aggregate log; a re-cosign of the same size is not.
        let aggregate = match &n.log_signer {
            Some(log_signer) if !(size == expected && latest.is_some()) => {
                let agg_size = store.aggregate_size()?;
                let tiles = Tiles { store, origin: AGGREGATE };
                let writes = ledger::log::prepare_append(
                    &ledger::log::PrefixTiles(&tiles),
                    &tiles,
                    agg_size,
                    &[note.as_slice()],
                    log_signer,
                )
                .map_err(|e| StoreError::Read {
                    what: "aggregate log tiles".into(),
                    reason: e.to_string(),
                })?;
                Some(LogAppend::from_writes(&writes))
            }
            _ => None,
        };
        store.cas_witnessed(&o, expected, size, &note, aggregate.as_ref())
    })
    .await?
    .map_err(|e| node.store_failed(&e))?;
    match cas {
        Cas::Stored => {
            node.metrics.checkpoints_cosigned.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%origin, size, "cosigned");
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

fn size_conflict(latest: u64) -> Response {
    (
        StatusCode::CONFLICT,
        [(header::CONTENT_TYPE, sync_wire::SIZE_TYPE)],
        sync_wire::size_body(latest),
    )
        .into_response()
}

fn stored_checkpoint(origin: &str, note: &[u8]) -> Result<Checkpoint, Failure> {
    Note::parse(note).ok().and_then(|n| Checkpoint::parse(n.text()).ok()).ok_or_else(|| {
        Failure::new(ErrorCode::Internal, format!("stored checkpoint of {origin} does not parse"))
    })
}

async fn keep_evidence(
    node: &Arc<Node>,
    origin: &str,
    kind: &'static str,
    reason: &str,
    request: Vec<u8>,
) -> Result<(), Failure> {
    let ev = Evidence { at_ns: now_ns(), kind: kind.into(), reason: reason.into(), request };
    let n = node.clone();
    let o = origin.to_owned();
    let seq = blocking(move || n.store.add_evidence(&o, &ev))
        .await?
        .map_err(|e| node.store_failed(&e))?;
    node.metrics.evidence.fetch_add(1, Ordering::Relaxed);
    if kind == "fork" {
        node.metrics.forks.fetch_add(1, Ordering::Relaxed);
        tracing::error!(%origin, seq, %reason, "FORK: evidence kept");
    } else {
        tracing::warn!(%origin, seq, kind, %reason, "evidence kept");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// upload and state

async fn enrolled(node: &Arc<Node>, origin: &str) -> Result<Enrollment, Failure> {
    let n = node.clone();
    let o = origin.to_owned();
    blocking(move || n.store.enrollment(&o)).await?.map_err(|e| node.store_failed(&e))?.ok_or_else(
        || {
            Failure::new(
                ErrorCode::UnknownOrigin,
                format!("origin {origin:?} is not enrolled here"),
            )
        },
    )
}

async fn upload(
    State(node): State<Arc<Node>>,
    Path(origin): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match upload_inner(&node, origin, &headers, body).await {
        Ok(r) => r,
        Err(f) => cbor_err(&node, f),
    }
}

async fn upload_inner(
    node: &Arc<Node>,
    origin: String,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Failure> {
    let enrollment = enrolled(node, &origin).await?;
    let _slot = node
        .upload_slots
        .acquire()
        .await
        .map_err(|_| Failure::new(ErrorCode::Unavailable, "the ledger is stopping"))?;
    let bytes = read_body(body, headers, node.limits.max_upload_bytes).await?;
    let up =
        Upload::from_cbor(&bytes, node.limits.max_upload_bytes, node.limits.max_blocks_per_batch)
            .map_err(|e| match e {
            sync_wire::WireError::TooLarge { .. } => {
                Failure::new(ErrorCode::TooLarge, e.to_string())
            }
            other => Failure::new(ErrorCode::Malformed, other.to_string()),
        })?;
    let gateway = Ed25519Verifier::from_vkey(&enrollment.vkey)
        .map(|v| *v.public_key().as_bytes())
        .map_err(|e| Failure::new(ErrorCode::Internal, format!("enrolled key of {origin}: {e}")))?;
    let lock = node.upload_lock(&origin);
    let _guard = lock.lock().await;
    let n = node.clone();
    let o = origin.clone();
    let tolerance = u64::try_from(node.limits.future_tolerance.as_nanos()).unwrap_or(u64::MAX);
    let up_size = up.checkpoint_size;
    let outcome = blocking(
        move || -> Result<Result<(u64, usize, MirrorStats), mirror::Refusal>, StoreError> {
            let store = n.store.as_ref();
            let mirrored = store.mirrored(&o)?;
            let cosigned = match store.witnessed_at(&o, up_size)? {
                None => None,
                Some(note) => {
                    Note::parse(&note).ok().and_then(|n| Checkpoint::parse(n.text()).ok())
                }
            };
            let read = |h: u64| store.header(&o, h).map_err(|e| e.to_string());
            let held = mirror::Held {
                gateway,
                lanes: &enrollment.lanes,
                mirrored,
                cosigned: cosigned.as_ref(),
                header: &read,
                now_ns: now_ns(),
                future_tolerance_ns: tolerance,
            };
            let accepted = match mirror::check(&up, &held) {
                Ok(a) => a,
                Err(r) => return Ok(Err(r)),
            };
            if accepted.new_blocks.is_empty() {
                return Ok(Ok((mirrored, accepted.already_held, MirrorStats::default())));
            }
            let entries: Vec<&[u8]> =
                accepted.new_blocks.iter().map(|b| b.header.as_slice()).collect();
            let tiles = Tiles { store, origin: &o };
            let writes = ledger::log::prepare_append(
                &ledger::log::PrefixTiles(&tiles),
                &tiles,
                mirrored,
                &entries,
                &n.scratch,
            )
            .map_err(|e| StoreError::Read {
                what: format!("tiles of {o}"),
                reason: e.to_string(),
            })?;
            if let Some(cp) = &cosigned {
                if writes.new_size == cp.size() && writes.root != *cp.root() {
                    return Ok(Err(mirror::Refusal {
                        code: ErrorCode::Internal,
                        reason: format!(
                            "mirrored tree of size {} has root {}, the cosigned checkpoint {}",
                            writes.new_size,
                            writes.root.to_base64(),
                            cp.root().to_base64()
                        ),
                        evidence: None,
                    }));
                }
            }
            let stats = MirrorStats {
                blocks: accepted.new_blocks.len() as u64,
                lane_bytes: accepted
                    .new_blocks
                    .iter()
                    .flat_map(|b| b.lanes.iter().map(|(_, l)| l.len() as u64))
                    .sum(),
                backwards: accepted.new_blocks.iter().filter(|b| b.meta.time_backwards).count()
                    as u64,
                future: accepted.new_blocks.iter().filter(|b| b.meta.time_future).count() as u64,
            };
            let append = MirrorAppend {
                old_size: writes.old_size,
                new_size: writes.new_size,
                blocks: accepted.new_blocks,
                tiles: writes
                    .tiles
                    .iter()
                    .map(|(t, b)| ((t.level(), t.index()), b.clone()))
                    .collect(),
                bundles: writes.bundles.iter().map(|(t, b)| (t.index(), b.clone())).collect(),
            };
            store.append_mirror(&o, &append)?;
            Ok(Ok((append.new_size, accepted.already_held, stats)))
        },
    )
    .await?
    .map_err(|e| node.store_failed(&e))?;
    match outcome {
        Ok((mirrored, already, stats)) => {
            let m = &node.metrics;
            m.blocks_mirrored.fetch_add(stats.blocks, Ordering::Relaxed);
            m.lane_bytes_mirrored.fetch_add(stats.lane_bytes, Ordering::Relaxed);
            m.time_backwards.fetch_add(stats.backwards, Ordering::Relaxed);
            m.time_future.fetch_add(stats.future, Ordering::Relaxed);
            if stats.backwards + stats.future > 0 {
                tracing::warn!(%origin, backwards = stats.backwards, future = stats.future, "block times flagged");
            }
            tracing::info!(%origin, mirrored, added = stats.blocks, already_held = already, "upload");
            Ok(cbor_ok(UploadAck { mirrored }.to_cbor()))
        }
        Err(r) => {
            if let Some(kind) = r.evidence {
                keep_evidence(node, &origin, kind, &r.reason, bytes.to_vec()).await?;
            }
            tracing::warn!(%origin, code = %r.code, reason = %r.reason, "upload refused");
            Err(Failure::new(r.code, r.reason))
        }
    }
}

#[derive(Default)]
struct MirrorStats {
    blocks: u64,
    lane_bytes: u64,
    backwards: u64,
    future: u64,
}

async fn state(State(node): State<Arc<Node>>, Path(origin): Path<String>) -> Response {
    let r = async {
        let e = enrolled(&node, &origin).await?;
        let n = node.clone();
        let o = origin.clone();
        let (w, mirrored) =
            blocking(move || Ok::<_, StoreError>((n.store.witnessed(&o)?, n.store.mirrored(&o)?)))
                .await?
                .map_err(|err| node.store_failed(&err))?;
        let witnessed = match w {
            None => None,
            Some(note) => {
                let cp = stored_checkpoint(&origin, &note)?;
                Some(Witnessed { size: cp.size(), root: *cp.root(), checkpoint: note })
            }
        };
        Ok::<_, Failure>(GatewayState {
            origin: origin.clone(),
            witnessed,
            mirrored,
            lanes: e.lanes,
        })
    }
    .await;
    match r {
        Ok(s) => cbor_ok(s.to_cbor()),
        Err(f) => cbor_err(&node, f),
    }
}

// ---------------------------------------------------------------------------------------------
// admin (JSON, token with scope admin)

fn authorize(node: &Node, headers: &HeaderMap) -> Result<String, Failure> {
    authorize_for(node, headers, &Scope::Admin)
}

fn authorize_for(node: &Node, headers: &HeaderMap, scope: &Scope) -> Result<String, Failure> {
    let auth = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    node.tokens.check(auth, scope).map(str::to_owned).map_err(|d| match d {
        Denied::Unauthenticated => {
            Failure::new(ErrorCode::Unauthorized, "send Authorization: Bearer <token>")
        }
        Denied::MissingScope => {
            Failure::new(ErrorCode::Forbidden, format!("the token lacks scope {scope:?}"))
        }
    })
}

/// `POST /v1/admin/gateways` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollRequest {
    vkey: String,
    unit: String,
    lanes: Vec<String>,
}

/// One row of `GET /v1/admin/gateways`.
#[derive(Serialize)]
struct GatewayRow {
    origin: String,
    vkey: String,
    unit: String,
    lanes: Vec<String>,
    witnessed: u64,
    mirrored: u64,
    evidence: usize,
}

async fn admin_enroll(State(node): State<Arc<Node>>, headers: HeaderMap, body: Body) -> Response {
    let r = async {
        let who = authorize(&node, &headers)?;
        let bytes = read_body(body, &headers, 64 << 10).await?;
        let req: EnrollRequest = serde_json::from_slice(&bytes)
            .map_err(|e| Failure::new(ErrorCode::Malformed, format!("enrollment JSON: {e}")))?;
        let e = crate::config::enrollment(req.vkey, req.unit, req.lanes)
            .map_err(|(k, p)| Failure::new(ErrorCode::Malformed, format!("{k}: {p}")))?;
        let n = node.clone();
        let e2 = e.clone();
        let count = blocking(move || {
            n.store.put_enrollment(&e2)?;
            Ok::<_, StoreError>(n.store.enrollments()?.len())
        })
        .await?
        .map_err(|err| match err {
            StoreError::KeyChange { .. } => Failure::new(ErrorCode::Forbidden, err.to_string()),
            other => node.store_failed(&other),
        })?;
        node.metrics.gateways_enrolled.store(count as u64, Ordering::Relaxed);
        tracing::info!(origin = %e.origin, unit = %e.unit, by = %who, "gateway enrolled");
        Ok::<_, Failure>(e)
    }
    .await;
    match r {
        Ok(e) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_string(&e).unwrap_or_default(),
        )
            .into_response(),
        Err(f) => json_err(&node, f),
    }
}

async fn admin_list(State(node): State<Arc<Node>>, headers: HeaderMap) -> Response {
    let r = async {
        authorize(&node, &headers)?;
        let n = node.clone();
        blocking(move || {
            let mut rows = Vec::new();
            for e in n.store.enrollments()? {
                let witnessed = match n.store.witnessed(&e.origin)? {
                    None => 0,
                    Some(note) => stored_checkpoint(&e.origin, &note).map_or(0, |c| c.size()),
                };
                let mirrored = n.store.mirrored(&e.origin)?;
                let evidence = n.store.evidence(&e.origin)?.len();
                rows.push(GatewayRow {
                    origin: e.origin,
                    vkey: e.vkey,
                    unit: e.unit,
                    lanes: e.lanes,
                    witnessed,
                    mirrored,
                    evidence,
                });
            }
            Ok::<_, StoreError>(rows)
        })
        .await?
        .map_err(|err| node.store_failed(&err))
    }
    .await;
    match r {
        Ok(rows) => (
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_string(&rows).unwrap_or_default(),
        )
            .into_response(),
        Err(f) => json_err(&node, f),
    }
}

async fn admin_evidence(
    State(node): State<Arc<Node>>,
    Path(origin): Path<String>,
    headers: HeaderMap,
) -> Response {
    let r = async {
        authorize(&node, &headers)?;
        let n = node.clone();
        blocking(move || n.store.evidence(&origin)).await?.map_err(|err| node.store_failed(&err))
    }
    .await;
    match r {
        Ok(list) => {
            use base64::Engine as _;
            let rows: Vec<serde_json::Value> = list
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "at_ns": e.at_ns,
                        "kind": e.kind,
                        "reason": e.reason,
                        "request_base64": base64::engine::general_purpose::STANDARD.encode(&e.request),
                    })
                })
                .collect();
            (
                [(header::CONTENT_TYPE, "application/json")],
                serde_json::Value::Array(rows).to_string(),
            )
                .into_response()
        }
        Err(f) => json_err(&node, f),
    }
}

// ---------------------------------------------------------------------------------------------
// query (fleet tools; CBOR; token with scope query or query:<unit>)

/// What a query asks for.
enum Wanted {
    /// `from=H[&to=H]`
    Heights(u64, Option<u64>),
    /// `since_ns=T&until_ns=T`
    Times(u64, u64),
}

/// Most time-index entries one time query may scan.
const MAX_TIME_SCAN: usize = 1_000_000;

fn wanted(query: Option<&str>) -> Result<Wanted, Failure> {
    let (mut from, mut to, mut since, mut until) = (None, None, None, None);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let n = v.parse::<u64>().map_err(|_| {
            Failure::new(ErrorCode::Malformed, format!("query parameter {k}={v:?} is not a u64"))
        })?;
        match k {
            "from" => from = Some(n),
            "to" => to = Some(n),
            "since_ns" => since = Some(n),
            "until_ns" => until = Some(n),
            other => {
                return Err(Failure::new(
                    ErrorCode::Malformed,
                    format!("unknown query parameter {other:?} (from, to, since_ns, until_ns)"),
                ))
            }
        }
    }
    match (from, to, since, until) {
        (Some(f), t, None, None) => Ok(Wanted::Heights(f, t)),
        (None, None, Some(a), Some(b)) if a < b => Ok(Wanted::Times(a, b)),
        _ => Err(Failure::new(
            ErrorCode::Malformed,
            "give from=<height>[&to=<height>] or since_ns=<t>&until_ns=<t> with since < until",
        )),
    }
}

async fn query_blocks(
    State(node): State<Arc<Node>>,
    Path(origin): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let r = async {
        // Any valid token first (401), then enrollment (404), then the unit's scope (403).
        let auth = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
        if node.tokens.check(auth, &Scope::Query(Some(String::new())))
            == Err(Denied::Unauthenticated)
        {
            return Err(Failure::new(
                ErrorCode::Unauthorized,
                "send Authorization: Bearer <token>",
            ));
        }
        let wanted = wanted(uri.query())?;
        let e = enrolled(&node, &origin).await?;
        authorize_for(&node, &headers, &Scope::Query(Some(e.unit.clone())))?;
        let max = node.limits.max_blocks_per_batch as u64;
        let n = node.clone();
        let o = origin.clone();
        blocking(move || -> Result<Result<QueryBlocks, Failure>, StoreError> {
            let store = n.store.as_ref();
            let mirrored = store.mirrored(&o)?;
            let (from, to) = match wanted {
                Wanted::Heights(f, t) => (f, t),
                Wanted::Times(a, b) => match store.heights_between(&o, a, b, MAX_TIME_SCAN)? {
                    Some((lo, hi)) => (lo, Some(hi.saturating_add(1))),
                    None => {
                        return Ok(Err(Failure::new(
                            ErrorCode::NotFound,
                            format!("no mirrored block of {o} has records in [{a}, {b})"),
                        )))
                    }
                },
            };
            let Some((size, note)) = store.witnessed_at_or_below(&o, mirrored)? else {
                return Ok(Err(Failure::new(
                    ErrorCode::NotWitnessed,
                    format!("no cosigned checkpoint of {o} is mirrored yet (mirrored {mirrored})"),
                )));
            };
            let end = to.unwrap_or(u64::MAX).min(from.saturating_add(max)).min(size);
            if from >= end {
                return Ok(Err(Failure::new(
                    ErrorCode::Malformed,
                    format!("range [{from}, {end}) is empty; provable heights are 0..{size}"),
                )));
            }
            let mut blocks = Vec::new();
            for h in from..end {
                let header = store.header(&o, h)?.ok_or_else(|| StoreError::Corrupt {
                    what: format!("headers[{o}/{h}]"),
                    reason: "missing below the mirrored size".into(),
                })?;
                let meta = store.block_meta(&o, h)?;
                blocks.push(sync_wire::QueriedBlock {
                    height: h,
                    header,
                    lanes: store.lanes(&o, h)?,
                    received_at_ns: meta.as_ref().map_or(0, |m| m.received_at_ns),
                    time_backwards: meta.as_ref().is_some_and(|m| m.time_backwards),
                    time_future: meta.as_ref().is_some_and(|m| m.time_future),
                });
            }
            let tiles = Tiles { store, origin: &o };
            let reader = ledger::tile::TileReader::new(ledger::log::PrefixTiles(&tiles), size);
            let range_proof =
                ledger::verify::range_proof(&reader, size, from, end).map_err(|e| {
                    StoreError::Read { what: format!("tiles of {o}"), reason: e.to_string() }
                })?;
            Ok(Ok(QueryBlocks {
                origin: o.clone(),
                unit: e.unit,
                checkpoint: note,
                start: from,
                end,
                requested_end: to.unwrap_or(end).min(size).max(end),
                blocks,
                range_proof,
            }))
        })
        .await?
        .map_err(|err| node.store_failed(&err))?
    }
    .await;
    match r {
        Ok(q) => cbor_ok(q.to_cbor()),
        Err(f) => cbor_err(&node, f),
    }
}

// ---------------------------------------------------------------------------------------------
// C2SP tlog-witness monitor retrieval: GET /<hex SHA-256 of origin>/checkpoint

async fn monitor_checkpoint(
    State(node): State<Arc<Node>>,
    Path(origin_hash): Path<String>,
) -> Response {
    use sha2::Digest as _;
    let n = node.clone();
    let r = blocking(move || -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(key) = witness::witness_key_for_hash(&n, &origin_hash) {
            return n.store.witnessed(&key);
        }
        for e in n.store.enrollments()? {
            let h: String = sha2::Sha256::digest(e.origin.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            if h == origin_hash {
                return n.store.witnessed(&e.origin);
            }
        }
        Ok(None)
    })
    .await
    .and_then(|r| r.map_err(|e| node.store_failed(&e)));
    match r {
        // The latest cosigned checkpoint with the gateway's signature and ours, as the spec asks.
        Ok(Some(note)) => (
            [(header::CONTENT_TYPE, sync_wire::TEXT_TYPE), (header::CACHE_CONTROL, "no-cache")],
            note,
        )
            .into_response(),
        Ok(None) => text_err(
            &node,
            Failure::new(ErrorCode::NotFound, "no cosigned checkpoint for that origin hash"),
        ),
        Err(f) => text_err(&node, f),
    }
}

// ---------------------------------------------------------------------------------------------
// the aggregate log (C2SP tlog-tiles, static layout)

/// Tiles never change once written (a partial tile's path names its width), so caches may keep
/// them for good; the checkpoint changes with every accepted checkpoint.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

fn no_aggregate_log(node: &Node) -> Response {
    text_err(
        node,
        Failure::new(
            ErrorCode::NotFound,
            "this ledger keeps no aggregate log (ledger.log_key is not set)",
        ),
    )
}

async fn aggregate_checkpoint(State(node): State<Arc<Node>>) -> Response {
    let Some(log_signer) = node.log_signer.clone() else { return no_aggregate_log(&node) };
    let n = node.clone();
    // With a publication policy: the newest checkpoint it allows (newer ones wait).
    let r = match witness::published(&node) {
        Some(p) => Ok(p),
        None => blocking(move || n.store.aggregate_checkpoint())
            .await
            .and_then(|r| r.map_err(|e| node.store_failed(&e))),
    };
    let bytes = match r {
        Ok(Some(b)) => b,
        // Empty log: the signed checkpoint of the empty tree (Ed25519 is deterministic, so
        // every request gets the same bytes).
        Ok(None) => match Checkpoint::new(log_signer.name(), 0, ledger::merkle::empty_root())
            .and_then(|c| ledger::checkpoint::SignedCheckpoint::sign(c, &log_signer))
        {
            Ok(s) => s.to_bytes(),
            Err(e) => return text_err(&node, Failure::new(ErrorCode::Internal, e.to_string())),
        },
        Err(f) => return text_err(&node, f),
    };
    ([(header::CONTENT_TYPE, sync_wire::TEXT_TYPE), (header::CACHE_CONTROL, "no-cache")], bytes)
        .into_response()
}

async fn aggregate_tile(State(node): State<Arc<Node>>, Path(path): Path<String>) -> Response {
    use ledger::tile::{Tile, TilePath};
    if node.log_signer.is_none() {
        return no_aggregate_log(&node);
    }
    let r = async {
        let full = format!("tile/{path}");
        let parsed = Tile::parse_path(&full)
            .map_err(|e| Failure::new(ErrorCode::NotFound, e.to_string()))?;
        let (tile, entries) = match parsed {
            TilePath::Hashes(t) => (t, false),
            TilePath::Entries(t) => (t, true),
            _ => {
                return Err(Failure::new(ErrorCode::NotFound, format!("no such tile path {full}")))
            }
        };
        let n = node.clone();
        let (size, stored) = blocking(move || {
            let size = n.store.aggregate_size()?;
            let stored = if entries {
                n.store.bundle(AGGREGATE, tile.index())?
            } else {
                n.store.tile(AGGREGATE, tile.level(), tile.index())?
            };
            Ok::<_, StoreError>((size, stored))
        })
        .await?
        .map_err(|e| node.store_failed(&e))?;
        let missing = || {
            Failure::new(
                ErrorCode::NotFound,
                format!("{} is not in the tree of size {size}", tile.path()),
            )
        };
        let have =
            ledger::tile::tile_width(size, tile.level(), tile.index()).ok_or_else(missing)?;
        if tile.width() > have {
            return Err(missing());
        }
        let stored = stored.ok_or_else(missing)?;
        let body = if entries {
            let all = ledger::tile::decode_bundle(&stored)
                .map_err(|e| Failure::new(ErrorCode::Internal, e.to_string()))?;
            let want = usize::from(tile.width());
            let some = all.get(..want).ok_or_else(missing)?;
            ledger::tile::encode_bundle(some)
                .map_err(|e| Failure::new(ErrorCode::Internal, e.to_string()))?
        } else {
            stored.get(..tile.byte_len()).ok_or_else(missing)?.to_vec()
        };
        Ok::<_, Failure>(body)
    }
    .await;
    match r {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (header::CACHE_CONTROL, IMMUTABLE),
            ],
            body,
        )
            .into_response(),
        Err(f) => text_err(&node, f),
    }
}

// ---------------------------------------------------------------------------------------------
// metrics listener

/// The router of the metrics listener: `GET /metrics`.
pub fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let m = metrics.clone();
            async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], m.render()) }
        }),
    )
}

// ---------------------------------------------------------------------------------------------
// accept loop

/// How long open connections get to finish after shutdown starts.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves `router` on an already-bound listener until `shutdown`, then lets open connections
/// finish their request (up to [`SHUTDOWN_GRACE`]). At most `max_connections` connections are
/// served at once; further ones wait in the kernel's accept queue (backpressure on the client).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    max_connections: usize,
    shutdown: CancellationToken,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let permits = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let tracker = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (tcp, peer) = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let router = router.clone();
        let acceptor = acceptor.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let _permit = permit;
            match acceptor {
                None => connection(TokioIo::new(tcp), router, shutdown, peer).await,
                Some(a) => match tokio::time::timeout(Duration::from_secs(10), a.accept(tcp)).await
                {
                    Ok(Ok(s)) => connection(TokioIo::new(s), router, shutdown, peer).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
            }
        });
    }
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await.is_err() {
        tracing::warn!("connections still open after the shutdown grace period; closing them");
    }
}

async fn connection<I>(
    io: TokioIo<I>,
    router: Router,
    shutdown: CancellationToken,
    peer: SocketAddr,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = TowerToHyperService::new(router);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .keep_alive(true)
        .serve_connection(io, svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Binds `addr`.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Listen { addr: addr.to_string(), source })
}
