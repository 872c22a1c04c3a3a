//! The gateway's local read API: HTTP/1.1 on a Unix socket (and optionally loopback TCP) for
//! workshop and fleet tools (`iovctl status`, `iovctl history --local`).
//!
//! - `GET /v1/status`: JSON: identity, version, uptime, store head, per-source counters,
//!   per-lane records, pipeline heartbeat, per-ledger sync cursors ([`status`]).
//! - `GET /v1/history?from=T&to=T[&lane=L][&signals=a,b][&limit=N][&after=CURSOR]`: the
//!   gateway's own history, decoded, from a lane sealed for its own key, as JSON lines in time
//!   order ([`history`]).
//! - Errors: `{"error":{"code":"...","message":"..."}}` with a 4xx/5xx status.
//!
//! Bounded everywhere (D101): at most `max_concurrent` connections are served at once (more
//! wait in the kernel's accept backlog, one per listener accepted and waiting for a slot); one request per connection (no keep-alive); request
//! heads larger than [`MAX_HEAD`] or slower than [`HEAD_TIMEOUT`] are refused; a history
//! answer carries at most `max_rows` rows and opens at most `max_blocks` blocks, then ends with
//! a `next` cursor; its body is streamed from a blocking producer through a small bounded
//! channel, so a slow reader slows the producer instead of growing a buffer.
//!
//! There is no authentication: access is the socket file's mode (0660: the gateway's user and
//! group) or loopback TCP (config refuses other addresses).

pub mod history;
pub mod status;

use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use ledger::store::Store;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::{ApiConfig, Config};
use crate::health::Health;

/// Largest request head (request line and headers) read; larger requests are refused.
pub const MAX_HEAD: usize = 16 * 1024;
/// How long a client may take to send its request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Mode of the socket file: the gateway's user and group may connect.
pub const SOCKET_MODE: u32 = 0o660;

/// A read handle on the gateway's store, shared by the API's requests.
pub type Reader = Arc<dyn Store + Send + Sync>;

/// Why the API could not start (fatal at start-up, like a metrics port that cannot be bound).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    #[error(
        "api.socket: the directory {dir} does not exist (systemd: RuntimeDirectory=iov-gateway)"
    )]
    NoDir { dir: String },
    #[error("api.socket: {path} exists and is not a socket; refusing to replace it")]
    NotASocket { path: String },
    #[error("api.socket: {path} is in use by a running process (another iov-gateway?)")]
    InUse { path: String },
    #[error("api.socket: {path}: {reason}")]
    Io { path: String, reason: String },
    #[error("api.listen: binding {addr}: {reason}")]
    Tcp { addr: std::net::SocketAddr, reason: String },
}

/// An API error answer: HTTP status, a stable machine code and a human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn internal(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, code, message)
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({ "error": { "code": self.code, "message": self.message } })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.json())).into_response()
    }
}

/// Records when the pipeline heartbeat last moved (sampled every health tick).
#[derive(Debug)]
pub struct BeatWatch {
    last: Mutex<(u64, Instant)>,
}

impl BeatWatch {
    fn new(now: Instant) -> BeatWatch {
        BeatWatch { last: Mutex::new((0, now)) }
    }
    /// Notes the heartbeat `beat` seen at `now`.
    pub fn observe(&self, beat: u64, now: Instant) {
        let mut l = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if l.0 != beat {
            *l = (beat, now);
        }
    }
    /// `(heartbeat, time since it last moved)`.
    pub fn age(&self, now: Instant) -> (u64, Duration) {
        let l = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        (l.0, now.saturating_duration_since(l.1))
    }
}

/// Everything a request reads.
pub struct State {
    pub reader: Reader,
    pub health: Arc<Health>,
    /// The log origin (signing key name) and its key id.
    pub origin: String,
    pub key_id: u32,
    pub vkey: String,
    pub started: Instant,
    pub beat: BeatWatch,
    /// The heartbeat counts as stalled when it has not moved for this long.
    pub stall_after: Duration,
    /// Ledger names whose sync cursors status shows (none until ledgers are configured).
    pub ledgers: Vec<String>,
    pub limits: ApiConfig,
    /// `None` without `gateway.history_key`.
    pub history: Option<history::Context>,
    pub index: Mutex<history::Index>,
}

/// A bound API, ready to [`serve`](Api::serve).
pub struct Api {
    unix: Option<(UnixListener, SocketFile)>,
    tcp: Option<TcpListener>,
    state: Arc<State>,
}

impl Api {
    /// Binds the configured socket and/or loopback port. `ledgers`: the names whose sync
    /// cursors `/v1/status` shows.
    pub async fn bind(
        api: &ApiConfig,
        config: &Config,
        reader: Reader,
        health: Arc<Health>,
        ledgers: Vec<String>,
    ) -> Result<Api, BindError> {
        let unix = match &api.socket {
            None => None,
            Some(p) => Some(bind_unix(p)?),
        };
        let tcp = match api.listen {
            None => None,
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|e| BindError::Tcp { addr, reason: e.to_string() })?,
            ),
        };
        let tick = health.tick();
        let state = Arc::new(State {
            reader,
            health,
            origin: config.signer.name().to_owned(),
            key_id: config.signer.key_id(),
            vkey: config.signer.verifier().to_vkey(),
            started: Instant::now(),
            beat: BeatWatch::new(Instant::now()),
            stall_after: (tick * 10).max(Duration::from_secs(2)),
            ledgers,
            limits: api.clone(),
            history: history::Context::new(config),
            index: Mutex::new(history::Index::default()),
        });
        if let Some((_, f)) = &unix {
            tracing::info!(socket = %f.path.display(), "local API listening");
        }
        if let Some(t) = &tcp {
            if let Ok(a) = t.local_addr() {
                tracing::info!(addr = %a, "local API listening (loopback TCP)");
            }
        }
        Ok(Api { unix, tcp, state })
    }

    /// The loopback TCP address actually bound (tests bind port 0).
    pub fn tcp_addr(&self) -> Option<std::net::SocketAddr> {
        self.tcp.as_ref().and_then(|t| t.local_addr().ok())
    }

    /// Serves until `shutdown`; the socket file is removed when this returns.
    pub async fn serve(self, shutdown: CancellationToken) {
        let router = router(self.state.clone());
        let slots = Arc::new(Semaphore::new(self.state.limits.max_concurrent.get()));
        let sampler = tokio::spawn(sample_heartbeat(self.state.clone(), shutdown.clone()));
        let unix = self.unix.map(|(l, file)| {
            let (r, s, t) = (router.clone(), slots.clone(), shutdown.clone());
            tokio::spawn(async move {
                let l = &l;
                accept_loop(move || async move { l.accept().await.map(|(s, _)| s) }, r, s, t).await;
                drop(file);
            })
        });
        let tcp = self.tcp.map(|l| {
            let (r, s, t) = (router.clone(), slots.clone(), shutdown.clone());
            tokio::spawn(async move {
                let l = &l;
                accept_loop(move || async move { l.accept().await.map(|(s, _)| s) }, r, s, t).await;
            })
        });
        if let Some(u) = unix {
            let _ = u.await;
        }
        if let Some(t) = tcp {
            let _ = t.await;
        }
        let _ = sampler.await;
    }
}

fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/v1/status", get(status::handler))
        .route("/v1/history", get(history::handler))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint: GET /v1/status or /v1/history",
            )
        })
        .with_state(state)
}

async fn sample_heartbeat(state: Arc<State>, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(state.health.tick());
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => state.beat.observe(state.health.heartbeat(), Instant::now()),
        }
    }
}

/// Accepts connections while a slot is free and serves one request on each.
async fn accept_loop<F, Fut, Io>(
    mut accept: F,
    router: Router,
    slots: Arc<Semaphore>,
    shutdown: CancellationToken,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = io::Result<Io>>,
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    loop {
        let io = tokio::select! {
            () = shutdown.cancelled() => return,
            c = accept() => match c {
                Ok(io) => io,
                Err(e) => {
                    tracing::warn!(error = %e, "local API: accept failed");
                    // Out of file descriptors and the like: don't spin.
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    }
                }
            },
        };
        // After accept, so that several listeners share the slots without one of them holding
        // a slot while it waits for a client; at most one accepted connection per listener
        // waits here (this loop accepts nothing meanwhile; the rest wait in the backlog).
        let permit = tokio::select! {
            () = shutdown.cancelled() => return,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let service = TowerToHyperService::new(router.clone());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .max_buf_size(MAX_HEAD)
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .serve_connection(TokioIo::new(io), service);
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!(error = %e, "local API connection ended with an error");
                },
                () = stop.cancelled() => {}
            }
        });
    }
}

/// The bound socket file, removed on drop if it is still ours (same device and inode).
struct SocketFile {
    path: PathBuf,
    id: Option<(u64, u64)>,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .ok()
            .is_some_and(|m| Some((m.dev(), m.ino())) == self.id);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds the Unix socket at `path` with mode [`SOCKET_MODE`]. A socket file left by a dead
/// process (nobody accepts on it) is replaced; a live one or a file of another kind is an
/// error, so two gateways never steal each other's socket and no regular file is deleted.
fn bind_unix(path: &Path) -> Result<(UnixListener, SocketFile), BindError> {
    let shown = || path.display().to_string();
    let io = |e: io::Error| BindError::Io { path: shown(), reason: e.to_string() };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(BindError::NoDir { dir: dir.display().to_string() });
    }
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
        Ok(m) if !m.file_type().is_socket() => return Err(BindError::NotASocket { path: shown() }),
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => return Err(BindError::InUse { path: shown() }),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                tracing::info!(socket = %path.display(), "replacing a stale API socket");
                std::fs::remove_file(path).map_err(io)?;
            }
            Err(e) => return Err(io(e)),
        },
    }
    let listener = UnixListener::bind(path).map_err(io)?;
    let m = std::fs::symlink_metadata(path).map_err(io)?;
    let file = SocketFile { path: path.to_owned(), id: Some((m.dev(), m.ino())) };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE)).map_err(io)?;
    Ok((listener, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stale_socket_is_replaced_and_a_live_one_or_a_file_is_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("api.sock");
        // A socket file nobody listens on any more.
        drop(std::os::unix::net::UnixListener::bind(&p).expect("bind"));
        let (live, file) = bind_unix(&p).expect("stale socket replaced");
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        match bind_unix(&p) {
            Err(BindError::InUse { .. }) => {}
            other => panic!("a live socket must not be replaced: {:?}", other.err()),
        }
        drop(live);
        drop(file);
        assert!(!p.exists(), "removed when the API stops");
        std::fs::write(&p, b"not a socket").expect("write");
        match bind_unix(&p) {
            Err(BindError::NotASocket { .. }) => {}
            other => panic!("a regular file must not be replaced: {:?}", other.err()),
        }
        assert_eq!(std::fs::read(&p).expect("still there"), b"not a socket");
        match bind_unix(&d.path().join("nope/api.sock")) {
            Err(BindError::NoDir { .. }) => {}
            other => panic!("missing directory: {:?}", other.err()),
        }
    }

    #[test]
    fn the_heartbeat_age_counts_from_its_last_move() {
        let t0 = Instant::now();
        let w = BeatWatch::new(t0);
        w.observe(5, t0 + Duration::from_secs(1));
        w.observe(5, t0 + Duration::from_secs(3));
        assert_eq!(w.age(t0 + Duration::from_secs(4)), (5, Duration::from_secs(3)));
        w.observe(6, t0 + Duration::from_secs(4));
        assert_eq!(w.age(t0 + Duration::from_secs(4)), (6, Duration::ZERO));
    }
}
