//! The proxy: accept on a bound listener, connect each client to the upstream, and move bytes
//! both ways through the faults in force.
//!
//! # Tasks per connection
//! A supervisor (reacts to `down`/`cut`, ends when both directions are done) and, per
//! direction, a reader and a writer joined by a bounded queue of [`QUEUE`] chunks of at most
//! [`CHUNK`] bytes. The reader stamps each chunk when read; the writer sends it at stamp +
//! latency, after any stall and the rate limiter, and within the reset budgets. So latency is
//! pipelined, a stall holds at most `QUEUE * CHUNK` bytes before the reader stops reading
//! (then TCP flow control pushes back on the sender), and every wait is interruptible by
//! the connection's token.
//!
//! A reset sets `SO_LINGER` to zero on both sockets and drops them: the peers see `ECONNRESET`.
//! An orderly end (EOF) is passed on as a half-close (`shutdown(SHUT_WR)`).
//!
//! # Determinism
//! Connection `i` (in accept order) draws its random choices (drop or not, random reset
//! budget) from a ChaCha8 stream seeded by `(seed, i)`, always in the same order, so a seed
//! gives the same faults per connection whatever the timing.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chacha20::ChaCha8Rng;
use rand_core::{Rng as _, SeedableRng as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bucket::Bucket;
use crate::command::{Command, Direction, Schedule};

/// Largest chunk read at once.
pub const CHUNK: usize = 16 * 1024;
/// Chunks queued per direction between reader and writer.
pub const QUEUE: usize = 16;
/// How long connecting to the upstream may take before the client is reset.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The faults in force. Changed through [`Handle::apply`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    pub down: bool,
    pub refuse: bool,
    pub drop_probability: f64,
    pub reset_after_up: Option<u64>,
    pub reset_after_down: Option<u64>,
    pub reset_random: Option<(u64, u64)>,
    pub stall_until: Option<Instant>,
    pub rate: Option<u64>,
    pub latency: Duration,
    /// Bumped by `cut` (and `down`): live connections older than the bump are reset.
    pub cuts: u64,
}

impl Faults {
    /// Applies `cmd` as of `now`.
    pub fn apply(&mut self, cmd: &Command, now: Instant) {
        match cmd {
            Command::Down => {
                self.down = true;
                self.cuts += 1;
            }
            Command::Up => self.down = false,
            Command::Cut => self.cuts += 1,
            Command::Refuse(on) => self.refuse = *on,
            Command::Drop(p) => self.drop_probability = *p,
            Command::ResetAfter(Direction::Up, n) => self.reset_after_up = *n,
            Command::ResetAfter(Direction::Down, n) => self.reset_after_down = *n,
            Command::ResetRandom(r) => self.reset_random = *r,
            Command::Stall(d) => self.stall_until = d.map(|d| now + d),
            Command::Rate(r) => self.rate = *r,
            Command::Latency(d) => self.latency = d.unwrap_or_default(),
            Command::Clear => {
                *self = Faults { cuts: self.cuts, ..Faults::default() };
            }
        }
    }
}

/// Counters, readable while the proxy runs.
#[derive(Debug, Default)]
pub struct Stats {
    accepted: AtomicU64,
    refused: AtomicU64,
    connect_failed: AtomicU64,
    resets: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    open: AtomicU64,
}

/// A copy of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Connections accepted from clients (refused ones included).
    pub accepted: u64,
    /// Refused on arrival (`down`, `refuse`, `drop`).
    pub refused: u64,
    /// The upstream could not be reached.
    pub connect_failed: u64,
    /// Connections reset by a fault (`cut`, `down`, a reset budget) or by a peer's reset.
    pub resets: u64,
    /// Bytes forwarded client to upstream.
    pub bytes_up: u64,
    /// Bytes forwarded upstream to client.
    pub bytes_down: u64,
    /// Connections open now.
    pub open: u64,
}

/// Controls a running proxy: change faults, read counters. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Handle {
    faults: Arc<watch::Sender<Faults>>,
    stats: Arc<Stats>,
}

impl Handle {
    pub fn new() -> Handle {
        Handle { faults: Arc::new(watch::channel(Faults::default()).0), stats: Arc::default() }
    }

    /// Applies one command now.
    pub fn apply(&self, cmd: &Command) {
        let now = Instant::now();
        self.faults.send_modify(|f| f.apply(cmd, now));
        tracing::debug!(?cmd, "fault applied");
    }

    /// Parses and applies one command line.
    pub fn apply_line(&self, line: &str) -> Result<(), String> {
        let cmd = Command::parse(line)?;
        self.apply(&cmd);
        Ok(())
    }

    pub fn faults(&self) -> Faults {
        self.faults.borrow().clone()
    }

    pub fn stats(&self) -> StatsSnapshot {
        let s = &self.stats;
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            accepted: r(&s.accepted),
            refused: r(&s.refused),
            connect_failed: r(&s.connect_failed),
            resets: r(&s.resets),
            bytes_up: r(&s.bytes_up),
            bytes_down: r(&s.bytes_down),
            open: r(&s.open),
        }
    }
}

impl Default for Handle {
    fn default() -> Self {
        Handle::new()
    }
}

/// Everything the connection tasks share.
struct Ctx {
    upstream: SocketAddr,
    seed: u64,
    faults: watch::Receiver<Faults>,
    stats: Arc<Stats>,
    /// Per direction: up, down.
    buckets: [Mutex<Bucket>; 2],
}

/// Proxies `listener`'s connections to `upstream` until `shutdown`; then resets what is still
/// open and returns once every connection task has ended.
pub async fn run(
    listener: TcpListener,
    upstream: SocketAddr,
    seed: u64,
    handle: Handle,
    shutdown: CancellationToken,
) {
    let ctx = Arc::new(Ctx {
        upstream,
        seed,
        faults: handle.faults.subscribe(),
        stats: handle.stats.clone(),
        buckets: [Mutex::new(Bucket::new()), Mutex::new(Bucket::new())],
    });
    let tracker = TaskTracker::new();
    let mut index: u64 = 0;
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((client, peer)) => {
                ctx.stats.accepted.fetch_add(1, Ordering::Relaxed);
                let ctx = ctx.clone();
                let token = shutdown.child_token();
                let i = index;
                index += 1;
                tracker.spawn(async move {
                    tracing::debug!(%peer, conn = i, "accepted");
                    connection(client, i, ctx, token).await;
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                // Out of descriptors and the like: do not spin.
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
    }
    tracker.close();
    tracker.wait().await;
}

/// Binds nothing: spawns [`run`] on `listener` with a fresh [`Handle`] and returns it.
pub fn spawn(
    listener: TcpListener,
    upstream: SocketAddr,
    seed: u64,
    shutdown: CancellationToken,
) -> (Handle, tokio::task::JoinHandle<()>) {
    let handle = Handle::new();
    let task = tokio::spawn(run(listener, upstream, seed, handle.clone(), shutdown));
    (handle, task)
}

/// Applies `schedule` (times relative to `start`) until its end or `shutdown`.
pub async fn run_schedule(
    handle: Handle,
    schedule: Schedule,
    start: Instant,
    shutdown: CancellationToken,
) {
    for (at, cmd) in schedule {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep_until(start + at) => {}
        }
        tracing::info!(at_ms = at.as_millis() as u64, ?cmd, "schedule");
        handle.apply(&cmd);
    }
}

/// The random stream of connection `index`.
fn conn_rng(seed: u64, index: u64) -> ChaCha8Rng {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&seed.to_le_bytes());
    s[8..16].copy_from_slice(&index.to_le_bytes());
    s[16..].copy_from_slice(b"iov-faultproxy/1");
    ChaCha8Rng::from_seed(s)
}

/// A uniform draw in `[0, 1)`.
fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// What one connection's tasks share.
struct Conn {
    client: TcpStream,
    upstream: TcpStream,
    token: CancellationToken,
    /// Bytes forwarded: up, down.
    moved: [AtomicU64; 2],
    /// Total budget (both directions) of a random reset, if one was drawn.
    budget: Option<u64>,
    reset: std::sync::atomic::AtomicBool,
}

impl Conn {
    /// Resets both sides (RST) and ends every task of the connection.
    fn reset(&self, stats: &Stats) {
        if !self.reset.swap(true, Ordering::AcqRel) {
            stats.resets.fetch_add(1, Ordering::Relaxed);
            let _ = self.client.set_zero_linger();
            let _ = self.upstream.set_zero_linger();
        }
        self.token.cancel();
    }
}

/// Refuses a client: reset at once.
fn refuse(client: &TcpStream, stats: &Stats) {
    stats.refused.fetch_add(1, Ordering::Relaxed);
    let _ = client.set_zero_linger();
}

async fn connection(client: TcpStream, index: u64, ctx: Arc<Ctx>, token: CancellationToken) {
    let mut rng = conn_rng(ctx.seed, index);
    // Always draw both, in this order, so connection i's choices depend only on (seed, i).
    let roll = unit(&mut rng);
    let draw = rng.next_u64();
    let f = ctx.faults.borrow().clone();
    if f.down || f.refuse || roll < f.drop_probability {
        tracing::debug!(conn = index, "refused");
        refuse(&client, &ctx.stats);
        return;
    }
    let budget = f.reset_random.map(|(lo, hi)| lo + draw % (hi - lo).saturating_add(1).max(1));
    let upstream = tokio::select! {
        () = token.cancelled() => return,
        c = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(ctx.upstream)) => c,
    };
    let upstream = match upstream {
        Ok(Ok(u)) => u,
        Ok(Err(_)) | Err(_) => {
            ctx.stats.connect_failed.fetch_add(1, Ordering::Relaxed);
            let _ = client.set_zero_linger();
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let conn = Arc::new(Conn {
        client,
        upstream,
        token: token.clone(),
        moved: [AtomicU64::new(0), AtomicU64::new(0)],
        budget,
        reset: false.into(),
    });
    ctx.stats.open.fetch_add(1, Ordering::Relaxed);
    let cuts = f.cuts;
    let up = tokio::spawn(direction(conn.clone(), ctx.clone(), Direction::Up));
    let down = tokio::spawn(direction(conn.clone(), ctx.clone(), Direction::Down));
    let mut faults = ctx.faults.clone();
    let both = async {
        let _ = up.await;
        let _ = down.await;
    };
    tokio::pin!(both);
    loop {
        tokio::select! {
            () = &mut both => break,
            () = token.cancelled() => {
                // Shutdown or a reset from a direction: make sure it is a reset.
                conn.reset(&ctx.stats);
                both.as_mut().await;
                break;
            }
            changed = faults.changed() => {
                let (down, now_cuts) = {
                    let f = faults.borrow_and_update();
                    (f.down, f.cuts)
                };
                if changed.is_err() || down || now_cuts != cuts {
                    tracing::debug!(conn = index, "cut");
                    conn.reset(&ctx.stats);
                    both.as_mut().await;
                    break;
                }
            }
        }
    }
    ctx.stats.open.fetch_sub(1, Ordering::Relaxed);
}

/// One direction: a reader feeding a writer through a bounded queue.
async fn direction(conn: Arc<Conn>, ctx: Arc<Ctx>, dir: Direction) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUE);
    let reader = {
        let conn = conn.clone();
        let ctx = ctx.clone();
        async move {
            let src = match dir {
                Direction::Up => &conn.client,
                Direction::Down => &conn.upstream,
            };
            loop {
                let mut buf = vec![0u8; CHUNK];
                let n = tokio::select! {
                    () = conn.token.cancelled() => return,
                    r = read(src, &mut buf) => match r {
                        Ok(n) => n,
                        Err(_) => {
                            // The peer reset or the socket failed: pass the reset on.
                            conn.reset(&ctx.stats);
                            return;
                        }
                    },
                };
                buf.truncate(n);
                // An empty chunk is EOF; the writer half-closes after what is queued.
                let eof = n == 0;
                tokio::select! {
                    () = conn.token.cancelled() => return,
                    r = tx.send((Instant::now(), buf)) => if r.is_err() { return },
                }
                if eof {
                    return;
                }
            }
        }
    };
    let writer = writer(conn.clone(), ctx, dir, rx);
    tokio::join!(reader, writer);
}

async fn read(s: &TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        s.readable().await?;
        match s.try_read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

async fn write_all(s: &TcpStream, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        s.writable().await?;
        match s.try_write(buf) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn writer(
    conn: Arc<Conn>,
    ctx: Arc<Ctx>,
    dir: Direction,
    mut rx: mpsc::Receiver<(Instant, Vec<u8>)>,
) {
    let (dst, slot) = match dir {
        Direction::Up => (&conn.upstream, 0),
        Direction::Down => (&conn.client, 1),
    };
    let mut faults = ctx.faults.clone();
    loop {
        let (stamp, chunk) = tokio::select! {
            () = conn.token.cancelled() => return,
            c = rx.recv() => match c { Some(c) => c, None => return },
        };
        if chunk.is_empty() {
            let _ = socket2::SockRef::from(dst).shutdown(std::net::Shutdown::Write);
            return;
        }
        // Latency, then any stall, both re-read when the faults change.
        loop {
            let (latency, stall) = {
                let f = faults.borrow_and_update();
                (f.latency, f.stall_until)
            };
            let due = (stamp + latency).max(stall.unwrap_or(stamp));
            if Instant::now() >= due {
                break;
            }
            tokio::select! {
                () = conn.token.cancelled() => return,
                () = tokio::time::sleep_until(due) => {}
                r = faults.changed() => if r.is_err() { return },
            }
        }
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            let (rate, after) = {
                let f = faults.borrow();
                let after = match dir {
                    Direction::Up => f.reset_after_up,
                    Direction::Down => f.reset_after_down,
                };
                (f.rate, after)
            };
            let piece_len = rate.map_or(rest.len(), |r| rest.len().min(Bucket::quantum(r)));
            let mut piece = &rest[..piece_len];
            rest = &rest[piece_len..];
            if let Some(r) = rate {
                let at = ctx.buckets[slot].lock().unwrap_or_else(PoisonError::into_inner).reserve(
                    Instant::now(),
                    piece.len() as u64,
                    r,
                );
                tokio::select! {
                    () = conn.token.cancelled() => return,
                    () = tokio::time::sleep_until(at) => {}
                }
            }
            // Reset budgets: this direction's, and the connection's random total.
            let moved_here = conn.moved[slot].load(Ordering::Relaxed);
            let moved_total =
                conn.moved[0].load(Ordering::Relaxed) + conn.moved[1].load(Ordering::Relaxed);
            let allowed = [
                after.map(|n| n.saturating_sub(moved_here)),
                conn.budget.map(|b| b.saturating_sub(moved_total)),
            ]
            .into_iter()
            .flatten()
            .min();
            let cut_here = allowed.is_some_and(|a| a < piece.len() as u64);
            if let Some(a) = allowed.filter(|_| cut_here) {
                piece = &piece[..usize::try_from(a).unwrap_or(0)];
            }
            if !piece.is_empty() {
                let r = tokio::select! {
                    () = conn.token.cancelled() => return,
                    r = write_all(dst, piece) => r,
                };
                if r.is_err() {
                    conn.reset(&ctx.stats);
                    return;
                }
                conn.moved[slot].fetch_add(piece.len() as u64, Ordering::Relaxed);
                let counter = match dir {
                    Direction::Up => &ctx.stats.bytes_up,
                    Direction::Down => &ctx.stats.bytes_down,
                };
                counter.fetch_add(piece.len() as u64, Ordering::Relaxed);
            }
            if cut_here {
                tracing::debug!(?dir, "reset budget reached");
                conn.reset(&ctx.stats);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_draws_depend_only_on_seed_and_index() {
        let a: Vec<u64> = (0..4).map(|i| conn_rng(7, i).next_u64()).collect();
        let b: Vec<u64> = (0..4).map(|i| conn_rng(7, i).next_u64()).collect();
        let c: Vec<u64> = (0..4).map(|i| conn_rng(8, i).next_u64()).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a[0], a[1]);
        let u = unit(&mut conn_rng(1, 1));
        assert!((0.0..1.0).contains(&u));
    }

    #[test]
    fn clear_keeps_the_cut_generation_so_old_connections_are_not_cut_again() {
        let now = Instant::now();
        let mut f = Faults::default();
        f.apply(&Command::Down, now);
        f.apply(&Command::Rate(Some(10)), now);
        assert!(f.down);
        f.apply(&Command::Clear, now);
        assert_eq!(f, Faults { cuts: 1, ..Faults::default() });
    }
}
