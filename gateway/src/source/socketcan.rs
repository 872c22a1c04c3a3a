//! The SocketCAN source: one task per interface, reading classic CAN, CAN FD and error frames
//! from a raw `CAN_RAW` socket with `CAN_RAW_FD_FRAMES` on, into the pipeline's bounded channel.
//!
//! What one [`Source`] does:
//! - **Filters** in the kernel (`CAN_RAW_FILTER`), one exact-match filter per configured id
//!   (standard and extended ids are distinct; data and remote frames both pass). No ids means every
//!   frame. More ids than the kernel accepts ([`KERNEL_FILTER_MAX`]) fall back to filtering in this
//!   task, with a warning.
//! - **Error frames** (`CAN_RAW_ERR_FILTER` = all classes, when [`Config::error_frames`]) are
//!   records like any other frame ([`FrameKind::Error`], the class bits as id, the 8 detail bytes
//!   as data) and are counted in [`SourceStats::error_frames`].
//! - **Timestamps**: hardware (`SO_TIMESTAMPING` raw hardware stamps, when the driver says it has
//!   them) mapped onto the wall clock by [`HwAnchor`]; else the kernel's receive time
//!   (`SO_TIMESTAMPNS`); else, per frame, the host clock. Each frame carries its [`Clock`].
//! - **Backpressure**: never waits for the pipeline; a full channel drops the *new* frame, counts
//!   it and logs at a bounded rate (the policy is in the [module above](super)).
//! - **Link loss**: a socket error `ENETDOWN` or `ENODEV` (interface down, or removed; noticed
//!   within one housekeeping tick, see [`Config::housekeeping_interval`]) closes the socket; the task waits for the interface to be present and up again (`/sys/class/net`),
//!   retrying with capped exponential backoff, reopens it with the same settings and counts a
//!   reconnect. Errors that retrying cannot fix (no CAN in the kernel, no permission, a bad
//!   option) end the task with a [`SourceError`] that names the interface and the errno.
//! - **Cancellation**: the task returns `Ok(())` as soon as the shutdown token is cancelled.
//!
//! All socket work goes through the `socketcan` crate (its `recvmsg` parses the timestamp control
//! messages), so this module needs no `unsafe`.

use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use can_decoders::frame::FrameError;
use can_decoders::{CanFrame, CanId, ChannelId, Direction, FrameKind, TimedFrame};
use futures_util::FutureExt as _;
use socketcan::timestamp::{
    SOF_TIMESTAMPING_OPT_CMSG, SOF_TIMESTAMPING_RAW_HARDWARE, SOF_TIMESTAMPING_RX_HARDWARE,
    SOF_TIMESTAMPING_RX_SOFTWARE, SOF_TIMESTAMPING_SOFTWARE,
};
use socketcan::tokio::CanFdSocket;
use socketcan::{CanAnyFrame, CanTimestamps, SocketOptions};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{Backoff, Clock, HwAnchor, LogLimiter, SourceFrame, SourceStats, DROP_LOG_INTERVAL};

/// `CAN_RAW_FILTER_MAX`: the most filters the kernel takes on one socket.
pub const KERNEL_FILTER_MAX: usize = 512;

const CAN_EFF_FLAG: u32 = 0x8000_0000;
const CAN_RTR_FLAG: u32 = 0x4000_0000;
const CAN_ERR_FLAG: u32 = 0x2000_0000;
const CAN_SFF_MASK: u32 = 0x0000_07FF;
const CAN_EFF_MASK: u32 = 0x1FFF_FFFF;
const CAN_ERR_MASK: u32 = 0x1FFF_FFFF;
const CANFD_BRS: u8 = 0x01;
const CANFD_ESI: u8 = 0x02;

/// `SO_MEMINFO` and `SK_MEMINFO_DROPS` (asm-generic values, as on x86-64 and arm64; libc does not
/// export the option itself).
const SO_MEMINFO: libc::c_int = 55;
const SK_MEMINFO_DROPS: usize = 8;
/// `SO_RCVBUFFORCE` (asm-generic): lets a privileged process exceed `net.core.rmem_max`.
const SO_RCVBUFFORCE: libc::c_int = 33;

/// Default socket receive buffer: about 4,000 queued frames. Measured in the test VM, `cangen`
/// at full speed (about 25,000 frames/s) lost 30 % of 100,000 frames in the kernel with the
/// system default buffer and none with this one.
pub const DEFAULT_RECV_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// Default receive coalescing interval ([`Config::coalesce`]); the trace source paces in the
/// same quantum (D161, D258).
pub const DEFAULT_COALESCE: Duration = Duration::from_millis(20);

/// Bytes of socket buffer one queued CAN frame is taken to use (the kernel charges the whole
/// `skb`, not the 16 or 72 bytes of the frame; 2 KiB is above what it charges for a CAN FD
/// frame on x86-64), for bounding the coalescing wait by the buffer ([`coalesce_wait`]).
const QUEUED_FRAME_BYTES: usize = 2048;

/// Frames read in one go before the loop looks at shutdown and housekeeping again.
const DRAIN_MAX: usize = 1024;

/// Largest difference between a hardware-mapped and the kernel timestamp before [`HwAnchor`]
/// re-anchors.
const HW_MAX_SKEW: Duration = Duration::from_millis(20);

/// Settings of one SocketCAN source.
#[derive(Debug, Clone)]
pub struct Config {
    /// Interface name (`can0`, `vcan0`).
    pub iface: String,
    /// The channel id frames from this interface carry.
    pub channel: ChannelId,
    /// Ids to receive; empty means every id. Error frames are governed by `error_frames` alone.
    pub ids: Vec<CanId>,
    /// Receive error frames (all error classes) as records.
    pub error_frames: bool,
    /// Socket receive buffer in bytes (`SO_RCVBUFFORCE`, else `SO_RCVBUF`, which the kernel caps
    /// at `net.core.rmem_max`); `None` keeps the system default (about 200 frames). Default
    /// [`DEFAULT_RECV_BUFFER_BYTES`].
    pub recv_buffer_bytes: Option<usize>,
    /// First delay before reopening after the link went away; doubled up to `reopen_max`.
    pub reopen_initial: Duration,
    pub reopen_max: Duration,
    /// How often, while the socket is open, the kernel's drop counter and the socket's pending
    /// error are read (the latter bounds how late a link loss is noticed).
    pub housekeeping_interval: Duration,
    /// Receive coalescing: after the socket is read empty, wait this long before waiting for
    /// the next frame, so a busy bus costs one wake-up per interval instead of one per frame
    /// (the frames queue in the kernel with their receive timestamps, so their times are
    /// unchanged). Shortened so the queue stays within half the socket buffer; zero reads
    /// every frame as it arrives. See [`coalesce_wait`].
    pub coalesce: Duration,
}

impl Config {
    /// Defaults: every id, error frames on, a 4 MiB receive buffer, reopen after 50 ms backing
    /// off to 2 s, housekeeping every 100 ms, receive coalescing of [`DEFAULT_COALESCE`].
    pub fn new(iface: impl Into<String>, channel: ChannelId) -> Config {
        Config {
            iface: iface.into(),
            channel,
            ids: Vec::new(),
            error_frames: true,
            recv_buffer_bytes: Some(DEFAULT_RECV_BUFFER_BYTES),
            reopen_initial: Duration::from_millis(50),
            reopen_max: Duration::from_secs(2),
            housekeeping_interval: Duration::from_millis(100),
            coalesce: DEFAULT_COALESCE,
        }
    }
}

/// Where the source is, for whoever watches ([`Source::state`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Not open yet, or reopening after the link went away.
    Opening,
    /// The socket is open and configured; frames are being read.
    Open { clock: Clock },
    /// The task has ended.
    Stopped,
}

/// Why the source could not run. `retryable()` tells the failures the task itself waits out from
/// those it returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    #[error("{iface}: not a valid interface name ({reason})")]
    BadInterfaceName { iface: String, reason: &'static str },
    #[error("{iface}: opening a CAN_RAW socket failed: {source} (errno {errno})", errno = errno(source))]
    Open {
        iface: String,
        #[source]
        source: io::Error,
    },
    #[error("{iface}: setting {option} failed: {source} (errno {errno})", errno = errno(source))]
    Configure {
        iface: String,
        option: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{iface}: reading a frame failed: {source} (errno {errno})", errno = errno(source))]
    Read {
        iface: String,
        #[source]
        source: io::Error,
    },
    #[error("{iface}: the interface does not exist")]
    NoInterface { iface: String },
    #[error("{iface}: the interface is down")]
    LinkDown { iface: String },
    #[error("{iface}: the pipeline channel is closed")]
    PipelineClosed { iface: String },
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// errnos that mean the interface went down or away: waiting and reopening can fix them.
fn is_link_errno(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENETDOWN | libc::ENODEV | libc::ENXIO | libc::ENETUNREACH | libc::EADDRNOTAVAIL)
    )
}

impl SourceError {
    /// Whether the interface may come back: the source retries these itself.
    pub fn retryable(&self) -> bool {
        match self {
            SourceError::NoInterface { .. } | SourceError::LinkDown { .. } => true,
            SourceError::Open { source, .. } | SourceError::Read { source, .. } => {
                is_link_errno(source)
            }
            _ => false,
        }
    }
}

/// How ids are filtered.
#[derive(Debug, Clone, PartialEq, Eq)]
enum IdFilter {
    All,
    /// `(can_id, can_mask)` pairs for `CAN_RAW_FILTER`.
    Kernel(Vec<(u32, u32)>),
    /// Too many ids for the kernel: sorted, checked per frame.
    User(Vec<CanId>),
}

impl IdFilter {
    fn from_ids(ids: &[CanId]) -> IdFilter {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            IdFilter::All
        } else if ids.len() > KERNEL_FILTER_MAX {
            IdFilter::User(ids)
        } else {
            IdFilter::Kernel(ids.iter().map(|&id| kernel_filter(id)).collect())
        }
    }

    fn passes(&self, frame: &CanFrame) -> bool {
        match self {
            IdFilter::User(ids) => {
                frame.kind == FrameKind::Error || ids.binary_search(&frame.id).is_ok()
            }
            _ => true,
        }
    }
}

/// The exact-match kernel filter for one id: the id bits and the EFF flag must match; RTR is left
/// out of the mask so data and remote frames both pass.
fn kernel_filter(id: CanId) -> (u32, u32) {
    if id.is_extended() {
        (id.raw() | CAN_EFF_FLAG, CAN_EFF_MASK | CAN_EFF_FLAG)
    } else {
        (id.raw(), CAN_SFF_MASK | CAN_EFF_FLAG)
    }
}

/// Our frame from the fields of a kernel `can_frame` (classic data, remote or error frame).
pub fn frame_from_classic(
    can_id: u32,
    len: u8,
    len8_dlc: u8,
    data: &[u8; 8],
) -> Result<CanFrame, FrameError> {
    let len = usize::from(len.min(8));
    if can_id & CAN_ERR_FLAG != 0 {
        // Error frames always carry 8 detail bytes; the id is the error class bits.
        let class = CanId::extended(can_id & CAN_ERR_MASK).unwrap_or(ERR_CLASS_FALLBACK);
        return CanFrame::new(class, FrameKind::Error, data);
    }
    let id = id_of(can_id);
    if can_id & CAN_RTR_FLAG != 0 {
        return CanFrame::remote(id, len as u8);
    }
    let mut frame = CanFrame::new(id, FrameKind::Data, &data[..len])?;
    if len == 8 && (9..=15).contains(&len8_dlc) {
        frame.len8_dlc = len8_dlc;
    }
    Ok(frame)
}

/// Our frame from the fields of a kernel `canfd_frame`.
pub fn frame_from_fd(
    can_id: u32,
    len: u8,
    flags: u8,
    data: &[u8; 64],
) -> Result<CanFrame, FrameError> {
    let kind = FrameKind::Fd { brs: flags & CANFD_BRS != 0, esi: flags & CANFD_ESI != 0 };
    let len = usize::from(len);
    let payload = data.get(..len).ok_or(FrameError::InvalidFdLength { len })?;
    CanFrame::new(id_of(can_id), kind, payload)
}

/// `CAN_ERR_MASK` is 29 bits, so this is never used; it keeps the conversion free of panics.
const ERR_CLASS_FALLBACK: CanId = match CanId::extended(0) {
    Some(id) => id,
    None => panic!("0 is a valid extended id"),
};

fn id_of(can_id: u32) -> CanId {
    let id = if can_id & CAN_EFF_FLAG != 0 {
        CanId::extended(can_id & CAN_EFF_MASK)
    } else {
        CanId::standard(can_id & CAN_SFF_MASK)
    };
    // Both masks keep the value in range.
    id.unwrap_or(ERR_CLASS_FALLBACK)
}

fn convert(any: &CanAnyFrame) -> Result<CanFrame, FrameError> {
    let classic = |raw: &libc::can_frame| {
        frame_from_classic(raw.can_id, raw.can_dlc, raw.len8_dlc, &raw.data)
    };
    match any {
        CanAnyFrame::Normal(f) => classic(f.as_ref()),
        CanAnyFrame::Remote(f) => classic(f.as_ref()),
        CanAnyFrame::Error(f) => classic(f.as_ref()),
        CanAnyFrame::Fd(f) => {
            let raw: &libc::canfd_frame = f.as_ref();
            frame_from_fd(raw.can_id, raw.len, raw.flags, &raw.data)
        }
    }
}

fn system_time_ns(t: SystemTime) -> Option<u64> {
    t.duration_since(UNIX_EPOCH).ok().and_then(|d| u64::try_from(d.as_nanos()).ok())
}

/// The frame's time and the clock behind it, from whatever the kernel delivered.
fn stamp(ts: &CanTimestamps, anchor: &mut HwAnchor) -> (u64, Clock) {
    let kernel = ts.socket.or(ts.sw).and_then(system_time_ns);
    match (ts.hw, kernel) {
        (Some(hw), Some(wall)) => {
            let hw_ns = u64::try_from(hw.as_nanos()).unwrap_or(u64::MAX);
            (anchor.map(hw_ns, wall), Clock::Hardware)
        }
        (_, Some(wall)) => (wall, Clock::Kernel),
        _ => (system_time_ns(SystemTime::now()).unwrap_or(0), Clock::Host),
    }
}

/// What `/sys/class/net/<iface>/flags` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Up,
    Down,
    Absent,
    /// sysfs is not readable here: just try to open.
    Unknown,
}

fn link_state(iface: &str) -> Link {
    let net = Path::new("/sys/class/net");
    if !net.is_dir() {
        return Link::Unknown;
    }
    let dir = net.join(iface);
    if !dir.exists() {
        return Link::Absent;
    }
    let Ok(text) = std::fs::read_to_string(dir.join("flags")) else {
        return Link::Unknown;
    };
    let text = text.trim();
    match u32::from_str_radix(text.trim_start_matches("0x"), 16) {
        Ok(flags) if flags & (libc::IFF_UP as u32) != 0 => Link::Up,
        Ok(_) => Link::Down,
        Err(_) => Link::Unknown,
    }
}

/// An open, configured socket.
struct Opened {
    socket: CanFdSocket,
    clock: Clock,
    /// Frames the socket buffer holds for certain (`SO_RCVBUF` / [`QUEUED_FRAME_BYTES`]).
    queue_frames: usize,
}

/// One SocketCAN interface as a source. `new` does no I/O; [`Source::run`] opens the socket.
pub struct Source {
    config: Config,
    filter: IdFilter,
    tx: mpsc::Sender<SourceFrame>,
    stats: Arc<SourceStats>,
    state: watch::Sender<State>,
}

impl Source {
    /// A source for `config.iface` sending into `tx` and counting into `stats`.
    pub fn new(
        config: Config,
        tx: mpsc::Sender<SourceFrame>,
        stats: Arc<SourceStats>,
    ) -> Result<Source, SourceError> {
        let bad = |reason| SourceError::BadInterfaceName { iface: config.iface.clone(), reason };
        if config.iface.is_empty() {
            return Err(bad("empty"));
        }
        if config.iface.len() >= libc::IFNAMSIZ {
            return Err(bad("longer than 15 bytes"));
        }
        if config.iface.contains(['/', '\0']) || config.iface.chars().any(char::is_whitespace) {
            return Err(bad("contains '/', NUL or whitespace"));
        }
        let filter = IdFilter::from_ids(&config.ids);
        let (state, _) = watch::channel(State::Opening);
        Ok(Source { config, filter, tx, stats, state })
    }

    /// Follows the source's state (opening, open with which clock, stopped).
    pub fn state(&self) -> watch::Receiver<State> {
        self.state.subscribe()
    }

    /// Runs until `shutdown` is cancelled (`Ok`), or until an error that reopening cannot fix.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), SourceError> {
        // The error, if any, is the caller's to report (it knows whether it is fatal there).
        let result = self.run_inner(&shutdown).await;
        self.state.send_replace(State::Stopped);
        result
    }

    async fn run_inner(&self, shutdown: &CancellationToken) -> Result<(), SourceError> {
        let iface = self.config.iface.as_str();
        if let IdFilter::User(ids) = &self.filter {
            tracing::warn!(
                iface,
                ids = ids.len(),
                max = KERNEL_FILTER_MAX,
                "more ids than the kernel filter takes: filtering in user space"
            );
        }
        let mut backoff = Backoff::new(self.config.reopen_initial, self.config.reopen_max);
        let mut anchor = HwAnchor::new(HW_MAX_SKEW);
        let mut drop_log = LogLimiter::new(DROP_LOG_INTERVAL);
        let mut kernel_drops_base = 0u64;
        let mut ever_opened = false;
        // The first failed attempt of a wait is a warning; the retries after it are debug.
        let mut wait_logged = false;
        loop {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            let opened = match self.open() {
                Ok(o) => o,
                Err(e) if e.retryable() => {
                    let delay = backoff.next_delay();
                    if wait_logged {
                        tracing::debug!(iface, error = %e, ?delay, "CAN interface not ready, retrying");
                    } else {
                        wait_logged = true;
                        tracing::warn!(iface, error = %e, "CAN interface not ready; waiting for it");
                    }
                    tokio::select! {
                        biased;
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(delay) => continue,
                    }
                }
                Err(e) => return Err(e),
            };
            if ever_opened {
                self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                tracing::info!(iface, "CAN interface reopened");
            }
            ever_opened = true;
            wait_logged = false;
            anchor.reset();
            self.state.send_replace(State::Open { clock: opened.clock });
            let mut session = Session {
                source: self,
                opened: &opened,
                anchor: &mut anchor,
                drop_log: &mut drop_log,
                kernel_drops_base,
                backoff: &mut backoff,
            };
            let result = session.read_loop(shutdown).await;
            kernel_drops_base = session.update_kernel_drops();
            drop(opened);
            match result {
                Ok(()) => return Ok(()),
                Err(e) if e.retryable() => {
                    self.stats.link_down.fetch_add(1, Ordering::Relaxed);
                    self.state.send_replace(State::Opening);
                    tracing::warn!(iface, error = %e, "CAN interface went away; will reopen");
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn open(&self) -> Result<Opened, SourceError> {
        let iface = &self.config.iface;
        match link_state(iface) {
            Link::Absent => return Err(SourceError::NoInterface { iface: iface.clone() }),
            Link::Down => return Err(SourceError::LinkDown { iface: iface.clone() }),
            Link::Up | Link::Unknown => {}
        }
        let socket = CanFdSocket::open(iface)
            .map_err(|source| SourceError::Open { iface: iface.clone(), source })?;
        let cfg = |option: &'static str| {
            move |source| SourceError::Configure { iface: iface.clone(), option, source }
        };
        if let IdFilter::Kernel(filters) = &self.filter {
            socket.set_filters(filters).map_err(cfg("CAN_RAW_FILTER"))?;
        }
        if self.config.error_frames {
            socket.set_error_filter_accept_all().map_err(cfg("CAN_RAW_ERR_FILTER"))?;
        }
        if let Some(bytes) = self.config.recv_buffer_bytes {
            let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
            // SO_RCVBUFFORCE needs CAP_NET_ADMIN; without it SO_RCVBUF is capped by rmem_max.
            socket
                .set_socket_option_int(libc::SOL_SOCKET, SO_RCVBUFFORCE, bytes)
                .or_else(|_| socket.set_socket_option_int(libc::SOL_SOCKET, libc::SO_RCVBUF, bytes))
                .map_err(cfg("SO_RCVBUF"))?;
        }
        let hardware = socket.has_hw_timestamps()
            && socket
                .set_timestamping(
                    SOF_TIMESTAMPING_RX_HARDWARE
                        | SOF_TIMESTAMPING_RAW_HARDWARE
                        | SOF_TIMESTAMPING_RX_SOFTWARE
                        | SOF_TIMESTAMPING_SOFTWARE
                        | SOF_TIMESTAMPING_OPT_CMSG,
                )
                .is_ok();
        let kernel = match socket.set_recv_timestamp(true) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(iface = %iface, error = %e, "SO_TIMESTAMPNS refused: stamping frames with the host clock");
                false
            }
        };
        let clock = match (hardware, kernel) {
            (true, _) => Clock::Hardware,
            (false, true) => Clock::Kernel,
            (false, false) => Clock::Host,
        };
        // The kernel reports the buffer it really allots (twice what was asked, up to its cap).
        let queue_frames = socket
            .get_socket_option_int(libc::SOL_SOCKET, libc::SO_RCVBUF)
            .ok()
            .and_then(|b| usize::try_from(b).ok())
            .map_or(64, |b| (b / QUEUED_FRAME_BYTES).max(1));
        Ok(Opened { socket, clock, queue_frames })
    }
}

/// How long to let frames queue in the kernel after a wake-up that read `frames` and came
/// `since` after the previous one: at most `most`, and short enough that at the rate just seen
/// the queue fills at most half of the `queue_frames` the socket buffer holds (a 1 Mbit/s bus
/// at full load, about 20,000 frames/s, with the system's default 200 kB buffer gets about
/// 2.5 ms). `None`: read on at once (coalescing off).
pub fn coalesce_wait(
    most: Duration,
    queue_frames: usize,
    frames: usize,
    since: Duration,
) -> Option<Duration> {
    if most.is_zero() {
        return None;
    }
    let half = (queue_frames / 2).max(1) as f64;
    let rate = frames as f64 / since.as_secs_f64().max(1e-6);
    let fits = Duration::try_from_secs_f64(half / rate).unwrap_or(most);
    Some(most.min(fits))
}

/// The state of one open socket's read loop.
struct Session<'a> {
    source: &'a Source,
    opened: &'a Opened,
    anchor: &'a mut HwAnchor,
    drop_log: &'a mut LogLimiter<Instant>,
    kernel_drops_base: u64,
    backoff: &'a mut Backoff,
}

impl Session<'_> {
    async fn read_loop(&mut self, shutdown: &CancellationToken) -> Result<(), SourceError> {
        let mut drops_tick = tokio::time::interval(self.source.config.housekeeping_interval);
        drops_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_wake = Instant::now();
        loop {
            // Wait for a frame (or shutdown, or housekeeping).
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(()),
                _ = drops_tick.tick() => {
                    self.update_kernel_drops();
                    self.check_socket_error()?;
                    continue;
                }
                read = self.opened.socket.read_frame_with_timestamps() => self.take(read)?,
            }
            // Then take what is queued without waiting: a read that would block is not
            // repeated (`now_or_never` drops it, and tokio re-arms readiness).
            let mut drained = 1usize;
            let emptied = loop {
                if drained >= DRAIN_MAX {
                    break false;
                }
                match self.opened.socket.read_frame_with_timestamps().now_or_never() {
                    Some(read) => {
                        self.take(read)?;
                        drained += 1;
                    }
                    None => break true,
                }
            };
            let now = Instant::now();
            self.source.stats.wakeups.fetch_add(1, Ordering::Relaxed);
            let wait = if emptied {
                coalesce_wait(
                    self.source.config.coalesce,
                    self.opened.queue_frames,
                    drained,
                    now - last_wake,
                )
            } else {
                None
            };
            last_wake = now;
            if let Some(wait) = wait {
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }

    /// One read's outcome: a frame is handled; a malformed or interrupted read is counted or
    /// skipped; any other error ends the session.
    fn take(&mut self, read: io::Result<(CanAnyFrame, CanTimestamps)>) -> Result<(), SourceError> {
        match read {
            Ok((frame, ts)) => {
                self.backoff.reset();
                self.handle(&frame, &ts)
            }
            // A read of a size that is neither a CAN nor a CAN FD frame, or (never seen:
            // socketcan's buffer fits both timestamp messages) truncated control data.
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                self.source.stats.malformed.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(source) => {
                Err(SourceError::Read { iface: self.source.config.iface.clone(), source })
            }
        }
    }

    fn handle(&mut self, any: &CanAnyFrame, ts: &CanTimestamps) -> Result<(), SourceError> {
        let source = self.source;
        let stats = &source.stats;
        let Ok(frame) = convert(any) else {
            stats.malformed.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        if !source.filter.passes(&frame) {
            return Ok(());
        }
        stats.received.fetch_add(1, Ordering::Relaxed);
        if frame.kind == FrameKind::Error {
            stats.error_frames.fetch_add(1, Ordering::Relaxed);
        }
        let (t_ns, clock) = stamp(ts, self.anchor);
        stats.set_clock(clock);
        let item = SourceFrame {
            frame: TimedFrame {
                t_ns,
                channel: source.config.channel,
                direction: Direction::Rx,
                frame,
            },
            clock,
        };
        match source.tx.try_send(item) {
            Ok(()) => {
                stats.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_)) => {
                let total = stats.dropped_full.fetch_add(1, Ordering::Relaxed) + 1;
                if let Some(n) = self.drop_log.event(Instant::now()) {
                    tracing::warn!(
                        iface = %source.config.iface,
                        dropped = n,
                        total,
                        "pipeline full: dropping new CAN frames"
                    );
                }
            }
            Err(TrySendError::Closed(_)) => {
                return Err(SourceError::PipelineClosed { iface: source.config.iface.clone() });
            }
        }
        Ok(())
    }

    /// A pending socket error (`ENETDOWN` when the interface goes down, `ENODEV` when it is
    /// removed) raises only `EPOLLERR`, which does not wake tokio's readable waiter; so the read
    /// loop asks for it (`SO_ERROR`, which also clears it) on every housekeeping tick.
    fn check_socket_error(&self) -> Result<(), SourceError> {
        let read = |source| SourceError::Read { iface: self.source.config.iface.clone(), source };
        match self.opened.socket.get_socket_option_int(libc::SOL_SOCKET, libc::SO_ERROR) {
            Ok(0) => Ok(()),
            Ok(errno) => Err(read(io::Error::from_raw_os_error(errno))),
            Err(e) => Err(read(e)),
        }
    }

    /// Reads the socket's drop counter into the stats; returns the total so far.
    fn update_kernel_drops(&mut self) -> u64 {
        let mut buf = [0u8; 64];
        let drops = match self.opened.socket.get_socket_option_bytes(
            libc::SOL_SOCKET,
            SO_MEMINFO,
            &mut buf,
        ) {
            Ok(n) if n >= (SK_MEMINFO_DROPS + 1) * 4 => {
                let at = SK_MEMINFO_DROPS * 4;
                let mut word = [0u8; 4];
                word.copy_from_slice(&buf[at..at + 4]);
                u64::from(u32::from_ne_bytes(word))
            }
            _ => 0,
        };
        let total = self.kernel_drops_base + drops;
        self.source.stats.kernel_drops.fetch_max(total, Ordering::Relaxed);
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn std_id(raw: u32) -> CanId {
        CanId::standard(raw).expect("11-bit")
    }

    fn ext_id(raw: u32) -> CanId {
        CanId::extended(raw).expect("29-bit")
    }

    #[test]
    fn coalescing_waits_the_interval_unless_the_socket_buffer_would_fill_first() {
        let ms = Duration::from_millis;
        let most = ms(20);
        // Off: never waits.
        assert_eq!(coalesce_wait(Duration::ZERO, 4096, 100, ms(20)), None);
        // 4,000 frames/s into a 4,096-frame buffer: half the buffer lasts 512 ms, so the full
        // interval.
        assert_eq!(coalesce_wait(most, 4096, 80, ms(20)), Some(most));
        // 20,000 frames/s into the default ~100-frame buffer: 50 frames last 2.5 ms.
        assert_eq!(coalesce_wait(most, 104, 400, ms(20)), Some(Duration::from_micros(2_600)));
        // A first wake-up after a long idle spell (rate near zero) waits the interval.
        assert_eq!(coalesce_wait(most, 4096, 1, Duration::from_secs(3600)), Some(most));
        // A degenerate buffer size still gives a finite, short wait.
        let w = coalesce_wait(most, 0, 1000, ms(1)).expect("waits");
        assert!(w < ms(1), "{w:?}");
    }

    #[test]
    fn error_frames_become_error_records_with_their_class_bits() {
        // CAN_ERR_FLAG | CAN_ERR_CRTL | CAN_ERR_BUSOFF, controller detail in data[1].
        let data = [0, 0x04, 0, 0, 0, 0, 0, 0];
        let f = frame_from_classic(CAN_ERR_FLAG | 0x04 | 0x40, 8, 0, &data).expect("valid");
        assert_eq!(f.kind, FrameKind::Error);
        assert_eq!(f.id, ext_id(0x44));
        assert_eq!(f.data(), &data);
        // The same through socketcan's own error frame type.
        let sc = socketcan::CanErrorFrame::new_error(0x44, &data).expect("valid error frame");
        let f2 = convert(&CanAnyFrame::Error(sc)).expect("converts");
        assert_eq!(f, f2);
    }

    #[test]
    fn classic_remote_and_len8_dlc_frames_convert_exactly() {
        let data = [1, 2, 3, 4, 5, 6, 7, 8];
        let f = frame_from_classic(0x123, 3, 0, &data).expect("valid");
        assert_eq!((f.id, f.kind, f.data()), (std_id(0x123), FrameKind::Data, &data[..3]));
        let f = frame_from_classic(CAN_EFF_FLAG | 0x18FE_F100, 8, 0, &data).expect("valid");
        assert_eq!(f.id, ext_id(0x18FE_F100));
        let f = frame_from_classic(CAN_RTR_FLAG | 0x7FF, 5, 0, &[0; 8]).expect("valid");
        assert_eq!((f.kind, f.len()), (FrameKind::Remote, 5));
        let f = frame_from_classic(0x100, 8, 13, &data).expect("valid");
        assert_eq!(f.len8_dlc, 13);
        let f = frame_from_classic(0x100, 7, 13, &data).expect("valid");
        assert_eq!(f.len8_dlc, 0, "len8_dlc only means something with 8 bytes");
    }

    #[test]
    fn fd_frames_keep_length_and_flags_and_bad_lengths_are_refused() {
        let mut data = [0u8; 64];
        data[..12].copy_from_slice(&[9; 12]);
        let f = frame_from_fd(CAN_EFF_FLAG | 0x1234, 12, CANFD_BRS | 0x04, &data).expect("valid");
        assert_eq!(f.kind, FrameKind::Fd { brs: true, esi: false });
        assert_eq!((f.id, f.data()), (ext_id(0x1234), &[9u8; 12][..]));
        assert!(frame_from_fd(0x1, 13, 0, &data).is_err());
        assert!(frame_from_fd(0x1, 65, 0, &data).is_err());
    }

    #[test]
    fn kernel_filters_match_exact_ids_and_overflow_to_user_space() {
        assert_eq!(IdFilter::from_ids(&[]), IdFilter::All);
        let f = IdFilter::from_ids(&[ext_id(0x123), std_id(0x123), std_id(0x123)]);
        assert_eq!(
            f,
            IdFilter::Kernel(vec![
                (0x123, CAN_SFF_MASK | CAN_EFF_FLAG),
                (CAN_EFF_FLAG | 0x123, CAN_EFF_MASK | CAN_EFF_FLAG),
            ])
        );
        let many: Vec<CanId> = (0..=KERNEL_FILTER_MAX as u32).map(ext_id).collect();
        let f = IdFilter::from_ids(&many);
        assert!(matches!(f, IdFilter::User(ref ids) if ids.len() == KERNEL_FILTER_MAX + 1));
        let yes = CanFrame::new(ext_id(7), FrameKind::Data, &[]).expect("valid");
        let no = CanFrame::new(std_id(7), FrameKind::Data, &[]).expect("valid");
        let err = CanFrame::new(ext_id(4), FrameKind::Error, &[0; 8]).expect("valid");
        assert!(f.passes(&yes));
        assert!(!f.passes(&no));
        assert!(f.passes(&err), "error frames are not id-filtered");
    }

    #[test]
    fn stamps_prefer_hardware_then_kernel_then_host() {
        let mut anchor = HwAnchor::new(HW_MAX_SKEW);
        let wall = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        let ts = CanTimestamps { socket: Some(wall), sw: None, hw: None };
        assert_eq!(stamp(&ts, &mut anchor), (1_700_000_000_123_456_789, Clock::Kernel));
        let ts = CanTimestamps { socket: Some(wall), sw: None, hw: Some(Duration::from_secs(3)) };
        assert_eq!(stamp(&ts, &mut anchor), (1_700_000_000_123_456_789, Clock::Hardware));
        let before = system_time_ns(SystemTime::now()).expect("after 1970");
        let (t, clock) = stamp(&CanTimestamps::default(), &mut anchor);
        assert_eq!(clock, Clock::Host);
        assert!(t >= before);
    }

    #[test]
    fn link_errors_are_retryable_and_others_are_not() {
        let read = |errno| SourceError::Read {
            iface: "vcan0".into(),
            source: io::Error::from_raw_os_error(errno),
        };
        assert!(read(libc::ENETDOWN).retryable());
        assert!(read(libc::ENODEV).retryable());
        assert!(!read(libc::EBADF).retryable());
        let open = SourceError::Open {
            iface: "can0".into(),
            source: io::Error::from_raw_os_error(libc::EAFNOSUPPORT),
        };
        assert!(!open.retryable());
        let text = open.to_string();
        assert!(text.starts_with("can0: opening a CAN_RAW socket failed"), "{text}");
        assert!(text.contains(&format!("errno {}", libc::EAFNOSUPPORT)), "{text}");
    }

    /// Needs no CAN in the kernel: a missing interface is found missing in sysfs before any
    /// socket is opened.
    #[tokio::test(start_paused = true)]
    async fn a_missing_interface_is_waited_for_until_cancelled() {
        let (tx, _rx) = mpsc::channel(1);
        let stats = Arc::new(SourceStats::default());
        let source = Source::new(Config::new("iovabsent0", ChannelId(0)), tx, stats.clone())
            .expect("valid name");
        let state = source.state();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(source.run(shutdown.clone()));
        // Many backoff rounds of virtual time: still waiting, nothing counted.
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(*state.borrow(), State::Opening);
        shutdown.cancel();
        let ended = tokio::time::timeout(Duration::from_secs(1), task).await;
        assert!(matches!(ended, Ok(Ok(Ok(())))), "{ended:?}");
        assert_eq!(*state.borrow(), State::Stopped);
        assert_eq!(stats.snapshot(), crate::source::StatsSnapshot::default());
    }

    #[test]
    fn interface_names_are_checked_before_any_io() {
        let (tx, _rx) = mpsc::channel(1);
        let stats = Arc::new(SourceStats::default());
        for bad in ["", "a_very_long_interface0", "can/0", "can 0"] {
            let r = Source::new(Config::new(bad, ChannelId(0)), tx.clone(), stats.clone());
            assert!(matches!(r, Err(SourceError::BadInterfaceName { .. })), "{bad:?}");
        }
        assert!(Source::new(Config::new("vcan0", ChannelId(0)), tx, stats).is_ok());
    }
}
