//! The gateway's one TOML file: parsed with serde into raw structs that refuse unknown keys, then
//! validated into typed values ([`Config`]). Every error names the key path
//! (`lanes.city.signals[2].name`) and what is wrong with it; nothing here panics on input.
//!
//! Validation does the start-up I/O that can fail early: it loads the DBC files (a DBC that does
//! not load is an error naming the key and the file), the gateway's signing key (`ledger::keys`,
//! refused unless mode 0600) and the recipients' X25519 public keys, and checks that the paths
//! it will need exist. Lane policies are checked against what was loaded: sources must be
//! configured, messages and signals must exist in a DBC (or be an MQTT field a layout defines),
//! recipients must be declared.
//!
//! [`DEFAULT_CONFIG`] is the commented example `iov-gateway print-default-config` prints; a test
//! checks that it validates (with its paths pointed at real files).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use can_decoders::decode::Decoder;
use can_decoders::{dbc, CanId, ChannelId};
use ledger::note::Ed25519Signer;
use serde::Deserialize;
use x25519_dalek::PublicKey;

/// Where the daemon looks when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/iov/gateway.toml";

/// A configuration error: the key it is about, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("{path}: {message}")]
    Syntax { path: String, message: String },
    #[error("{key}: {problem}")]
    Invalid { key: String, problem: String },
    #[error("reading {path}: {reason}")]
    Read { path: String, reason: String },
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), problem: problem.into() }
}

// ---------------------------------------------------------------------------------------------
// Raw structs: exactly the file's shape.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    gateway: RawGateway,
    #[serde(default)]
    block: RawBlock,
    #[serde(default)]
    dbc: Vec<RawDbc>,
    #[serde(default)]
    recipients: BTreeMap<String, String>,
    #[serde(default)]
    sources: BTreeMap<String, RawSource>,
    #[serde(default)]
    lanes: BTreeMap<String, RawLane>,
    #[serde(default)]
    metrics: Option<RawMetrics>,
    #[serde(default)]
    api: Option<RawApi>,
    #[serde(default)]
    retention: Option<RawRetention>,
    #[serde(default)]
    ledgers: BTreeMap<String, RawLedger>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    socket: Option<PathBuf>,
    listen: Option<String>,
    #[serde(default = "default_api_concurrency")]
    max_concurrent: usize,
    #[serde(default = "default_api_rows")]
    max_rows: usize,
    #[serde(default = "default_api_blocks")]
    max_blocks: usize,
}

fn default_api_concurrency() -> usize {
    8
}
fn default_api_rows() -> usize {
    100_000
}
fn default_api_blocks() -> usize {
    2_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    quota: String,
    #[serde(default = "default_low_watermark")]
    low_watermark: String,
    #[serde(default = "default_when_full")]
    when_full: String,
    #[serde(default = "default_recheck")]
    recheck: String,
}

fn default_low_watermark() -> String {
    "90%".into()
}
fn default_when_full() -> String {
    "stop".into()
}
fn default_recheck() -> String {
    "1s".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: String,
    #[serde(default)]
    allow_remote: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    signing_key: PathBuf,
    store: PathBuf,
    #[serde(default = "default_capacity")]
    pipeline_capacity: usize,
    #[serde(default = "default_writer_capacity")]
    writer_capacity: usize,
    #[serde(default = "default_grace")]
    shutdown_grace: String,
    /// The gateway's own X25519 key (`x25519.key` of `iovctl keygen`), for lanes sealed for
    /// the reserved recipient `self` (local history).
    history_key: Option<PathBuf>,
    /// `"generate"` (default) or `"provisioned"`: see [`KeyProvisioning`].
    key_provisioning: Option<String>,
    /// Name of keys generated on first start (the log origin); default `<hostname>/log`.
    key_name: Option<String>,
}

fn default_coalesce() -> String {
    "20ms".into()
}

/// Longest receive coalescing a SocketCAN source accepts: beyond this the delay is visible to
/// whoever watches the live data, and the socket buffer bound does the limiting anyway.
const MAX_COALESCE: Duration = Duration::from_secs(1);

fn default_capacity() -> usize {
    8192
}
fn default_writer_capacity() -> usize {
    4
}
fn default_grace() -> String {
    "10s".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBlock {
    #[serde(default = "default_max_records")]
    max_records: usize,
    #[serde(default = "default_max_bytes")]
    max_bytes: String,
    #[serde(default = "default_max_age")]
    max_age: String,
    #[serde(default = "default_zstd")]
    zstd_level: i32,
}

impl Default for RawBlock {
    fn default() -> Self {
        RawBlock {
            max_records: default_max_records(),
            max_bytes: default_max_bytes(),
            max_age: default_max_age(),
            zstd_level: default_zstd(),
        }
    }
}

/// 50,000 records: at a 25k frames/s bus one block every 2 s, and the open block plus the one
/// being sealed stay within the 32 MiB memory budget (D253).
fn default_max_records() -> usize {
    50_000
}
fn default_max_bytes() -> String {
    "4 MiB".into()
}
fn default_max_age() -> String {
    "10s".into()
}
fn default_zstd() -> i32 {
    5
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDbc {
    file: PathBuf,
    #[serde(default)]
    interfaces: Vec<String>,
    #[serde(default)]
    j1939_by_pgn: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
// Read once at start-up; boxing the MQTT variant would only complicate the serde shape.
#[allow(clippy::large_enum_variant)]
enum RawSource {
    Socketcan {
        interface: String,
        #[serde(default)]
        ids: Vec<u32>,
        #[serde(default = "yes")]
        error_frames: bool,
        #[serde(default = "default_coalesce")]
        coalesce: String,
    },
    Trace {
        file: PathBuf,
        #[serde(default = "default_pace")]
        pace: String,
        #[serde(default = "default_on_error")]
        on_error: String,
        #[serde(default = "default_at_end")]
        at_end: String,
        #[serde(default)]
        time_shift: Option<String>,
        #[serde(default = "default_loops")]
        loops: u32,
    },
    Mqtt {
        host: String,
        #[serde(default = "default_mqtt_port")]
        port: u16,
        client_id: String,
        #[serde(default = "default_protocol")]
        protocol: String,
        username: Option<String>,
        password_file: Option<PathBuf>,
        #[serde(default = "default_keep_alive")]
        keep_alive: String,
        #[serde(default = "default_reconnect_min")]
        reconnect_min: String,
        #[serde(default = "default_reconnect_max")]
        reconnect_max: String,
        #[serde(default = "default_max_payload")]
        max_payload: String,
        topics: Vec<RawTopic>,
        #[serde(default)]
        layouts: Vec<RawLayout>,
        tls: Option<RawTls>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca_file: PathBuf,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
}

fn yes() -> bool {
    true
}
fn default_pace() -> String {
    "recorded".into()
}
fn default_on_error() -> String {
    "skip".into()
}
fn default_at_end() -> String {
    "continue".into()
}
fn default_loops() -> u32 {
    1
}
fn default_mqtt_port() -> u16 {
    1883
}
fn default_protocol() -> String {
    "3.1.1".into()
}
fn default_keep_alive() -> String {
    "30s".into()
}
fn default_reconnect_min() -> String {
    "100ms".into()
}
fn default_reconnect_max() -> String {
    "30s".into()
}
fn default_max_payload() -> String {
    "1 MiB".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopic {
    filter: String,
    #[serde(default = "one")]
    qos: u8,
}

fn one() -> u8 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLayout {
    topic: String,
    format: String,
    fields: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLane {
    carries: String,
    #[serde(default)]
    sources: Option<Vec<String>>,
    #[serde(default)]
    messages: Option<Vec<String>>,
    #[serde(default)]
    signals: Vec<RawSignal>,
    recipients: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignal {
    name: String,
    every: Option<u64>,
    min_interval: Option<String>,
    #[serde(default)]
    on_change: bool,
    grid: Option<f64>,
}

// ---------------------------------------------------------------------------------------------
// Typed, validated configuration.

/// The validated configuration.
#[derive(Clone)]
pub struct Config {
    /// The file it came from (for log lines).
    pub path: PathBuf,
    pub signer: Ed25519Signer,
    /// RocksDB directory (created on first start; its parent must exist).
    pub store: PathBuf,
    pub pipeline_capacity: NonZeroUsize,
    pub writer_capacity: NonZeroUsize,
    pub shutdown_grace: Duration,
    pub block: BlockPolicy,
    /// Every configured DBC compiled into one decoder, per interface.
    pub decoder: Arc<Decoder>,
    /// DBC build warnings, for the log.
    pub dbc_warnings: Vec<String>,
    pub sources: Vec<SourceConfig>,
    pub lanes: Vec<LanePolicy>,
    /// Where the Prometheus text metrics are served (`[metrics] listen`); `None` = not served.
    pub metrics: Option<std::net::SocketAddr>,
    pub retention: RetentionConfig,
    /// The gateway's own X25519 key (`gateway.history_key`): lanes whose recipients include
    /// [`SELF_RECIPIENT`] are sealed for its public key and readable through the local API.
    pub history_key: Option<ledger::keys::X25519Key>,
    /// The local read API (`[api]`); `None` = not served.
    pub api: Option<ApiConfig>,
    /// `[ledgers.NAME]`: where blocks are synced, in name order.
    pub ledgers: Vec<LedgerConfig>,
}

/// The recipient name that means the gateway's own key (`gateway.history_key`).
pub const SELF_RECIPIENT: &str = "self";

/// Where and how the local read API is served (`[api]`, see `api`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// Unix socket path (mode 0660; a stale socket file is replaced, removed on shutdown).
    pub socket: Option<PathBuf>,
    /// Loopback TCP address, for tools that cannot speak Unix sockets.
    pub listen: Option<std::net::SocketAddr>,
    /// Requests served at once; more wait for a slot.
    pub max_concurrent: NonZeroUsize,
    /// Most rows one history answer carries (`limit` is capped to it); then a `next` cursor.
    pub max_rows: NonZeroUsize,
    /// Most blocks one history answer opens; then a `next` cursor.
    pub max_blocks: NonZeroUsize,
}

/// `[retention]`, and the ledgers whose acknowledgements let retention prune.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RetentionConfig {
    /// `None`: no quota (the store grows until the disk is full; its size is still measured).
    pub policy: Option<RetentionPolicy>,
    /// Ledgers whose sync cursors must all acknowledge a block before retention may prune it.
    /// The names of `[ledgers.NAME]`; empty (no ledger configured): nothing counts as
    /// acknowledged.
    pub ledger_names: Vec<String>,
}

/// What to do when pruning acknowledged blocks does not bring the store under its quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Refuse new input (CAN frames dropped and counted with reason `quota`, MQTT left
    /// unacknowledged) until space frees; raise the alarm.
    Stop,
    /// Prune the oldest unsynced lanes too; raise the alarm and record the gap in the log.
    DropOldest,
}

/// A disk quota for the store (`[retention]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetentionPolicy {
    /// Bytes the store directory may occupy; checked after every append.
    pub quota: u64,
    /// Over the quota, prune down to this many bytes (hysteresis, so one prune buys room for
    /// many blocks).
    pub low_watermark: u64,
    pub when_full: WhenFull,
    /// While refusing input (`stop`), how often to check whether space has freed.
    pub recheck: Duration,
}

/// Smallest quota accepted: RocksDB's own files need about this much.
pub const MIN_QUOTA: u64 = 1 << 20;

fn retention_policy(r: &RawRetention) -> Result<RetentionPolicy, ConfigError> {
    let quota = parse_size("retention.quota", &r.quota)? as u64;
    if quota < MIN_QUOTA {
        return Err(invalid("retention.quota", format!("{:?} is less than 1 MiB", r.quota)));
    }
    let lw = r.low_watermark.trim();
    let low_watermark = match lw.strip_suffix('%') {
        Some(pct) => {
            let p: u64 =
                pct.trim().parse().ok().filter(|p| (1..=99).contains(p)).ok_or_else(|| {
                    invalid(
                        "retention.low_watermark",
                        format!("{lw:?}: a percentage of the quota must be 1% to 99%"),
                    )
                })?;
            quota / 100 * p
        }
        None => parse_size("retention.low_watermark", lw)? as u64,
    };
    if low_watermark >= quota {
        return Err(invalid(
            "retention.low_watermark",
            format!("{lw:?} ({low_watermark} bytes) must be below the quota ({quota} bytes)"),
        ));
    }
    let when_full = match r.when_full.as_str() {
        "stop" => WhenFull::Stop,
        "drop-oldest" => WhenFull::DropOldest,
        other => {
            return Err(invalid(
                "retention.when_full",
                format!("{other:?}: use \"stop\" or \"drop-oldest\""),
            ))
        }
    };
    let recheck = parse_duration("retention.recheck", &r.recheck)?;
    if recheck.is_zero() {
        return Err(invalid("retention.recheck", "must be more than 0"));
    }
    Ok(RetentionPolicy { quota, low_watermark, when_full, recheck })
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("path", &self.path)
            .field("signer", &self.signer)
            .field("store", &self.store)
            .field("block", &self.block)
            .field("sources", &self.sources)
            .field("lanes", &self.lanes)
            .field("metrics", &self.metrics)
            .field("history_key", &self.history_key)
            .field("api", &self.api)
            .field("retention", &self.retention)
            .field("ledgers", &self.ledgers)
            .finish_non_exhaustive()
    }
}

/// When to seal a block: whichever limit is reached first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockPolicy {
    /// Input records (CAN frames, MQTT messages) per block.
    pub max_records: NonZeroUsize,
    /// Approximate plaintext bytes of every lane together.
    pub max_bytes: NonZeroUsize,
    /// Age of the block's first record (by the monotonic clock of the pipeline).
    pub max_age: Duration,
    pub zstd_level: i32,
}

/// One configured source.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Its key under `[sources]`.
    pub name: String,
    pub kind: SourceKind,
}

#[derive(Debug, Clone)]
pub enum SourceKind {
    SocketCan(crate::source::socketcan::Config),
    Trace(TraceConfig),
    Mqtt(MqttConfig),
}

/// How fast a trace is replayed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// With the recorded gaps between frames.
    Recorded,
    /// `"xN"`: the recorded gaps divided by N (`"x10"` plays ten times as fast; `"x0.5"` at half
    /// speed). Lets a recorded trace stand in for a busier bus (benchmarks, load tests).
    Scaled(f64),
    /// As fast as the pipeline takes them.
    Fast,
}

impl Pace {
    /// The fastest and slowest multipliers `"xN"` accepts.
    pub const SCALE_RANGE: std::ops::RangeInclusive<f64> = 0.001..=1_000_000.0;

    /// Parses `"recorded"`, `"fast"` or `"xN"`; the error says what is accepted.
    pub fn parse(text: &str) -> Result<Pace, String> {
        let scaled = |n: &str| n.parse::<f64>().ok().filter(|f| Pace::SCALE_RANGE.contains(f));
        match text {
            "recorded" | "x1" => Ok(Pace::Recorded),
            "fast" => Ok(Pace::Fast),
            t => match t.strip_prefix('x').and_then(scaled) {
                Some(1.0) => Ok(Pace::Recorded),
                Some(f) => Ok(Pace::Scaled(f)),
                None => Err(format!(
                    "{t:?}: use \"recorded\", \"fast\" or \"xN\" (N times the recorded speed, \
                     N from 0.001 to 1000000, e.g. \"x10\")"
                )),
            },
        }
    }
}

/// What the daemon does when a trace ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtEnd {
    /// Keep running after the trace (API, sync, metrics) until stopped (SIGTERM).
    Continue,
    /// Shut the gateway down gracefully (the partial block is sealed).
    Shutdown,
}

#[derive(Debug, Clone)]
pub struct TraceConfig {
    pub file: PathBuf,
    pub pace: Pace,
    pub policy: can_decoders::trace::ErrorPolicy,
    pub at_end: AtEnd,
    /// Added to every recorded timestamp (`time_shift = "+90s"`, `"-2h"`, `"+1627274455012500000ns"`),
    /// so one recording can stand for a drive at another time (the simulator's vehicles).
    pub time_shift_ns: i64,
    /// How many times the file is replayed; each pass is shifted past the previous one's last
    /// frame (by the recording's span plus 1 ms), so timestamps keep increasing.
    pub loops: NonZeroU32,
}

/// Parses a signed time shift: `"+90s"`, `"-2h"`, `"0s"`, or exact integer nanoseconds
/// `"+1627274455012500000ns"` (no float rounding for shifts of years).
pub fn parse_time_shift(key: &str, text: &str) -> Result<i64, ConfigError> {
    let t = text.trim();
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let too_big = || invalid(key, format!("{text:?}: more than 292 years"));
    let magnitude: i64 = match body
        .strip_suffix("ns")
        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()) && !n.is_empty())
    {
        Some(n) => n.parse().map_err(|_| too_big())?,
        None => {
            let d = parse_duration(key, body)
                .map_err(|_| invalid(key, format!("{text:?}: use a signed duration such as \"+90s\", \"-2h\" or \"+1500000000ns\"")))?;
            i64::try_from(d.as_nanos()).map_err(|_| too_big())?
        }
    };
    Ok(if neg { -magnitude } else { magnitude })
}

/// How an MQTT payload is decoded into signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadFormat {
    Json,
    Cbor,
}

/// One topic's payload layout: signal name -> field path (`pos.lat`).
#[derive(Debug, Clone)]
pub struct Layout {
    pub topic: String,
    pub format: PayloadFormat,
    pub fields: Vec<(String, Vec<String>)>,
}

/// MQTT protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttProtocol {
    V311,
    V5,
}

#[derive(Clone)]
pub struct MqttConfig {
    pub protocol: MqttProtocol,
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub keep_alive: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub max_payload: usize,
    pub topics: Vec<(String, u8)>,
    pub layouts: Vec<Layout>,
    pub tls: Option<TlsFiles>,
}

/// TLS to the broker: the CA certificates (PEM) that sign its certificate, and optionally a
/// client certificate and key (PEM; the key file must be 0600). Contents are loaded at start.
#[derive(Clone)]
pub struct TlsFiles {
    pub ca_pem: Vec<u8>,
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsFiles")
            .field("client_auth", &self.client.is_some())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttConfig")
            .field("protocol", &self.protocol)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("topics", &self.topics)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// What a lane carries.
#[derive(Debug, Clone)]
pub enum LaneContent {
    /// Raw records: every CAN frame and MQTT message of its sources, or only the CAN ids of
    /// the listed messages (MQTT messages always).
    Raw { can_ids: Option<BTreeSet<CanId>> },
    /// Decoded signal samples.
    Signals(Vec<SignalRule>),
}

/// One signal a signal lane carries, and how it is thinned and coarsened.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalRule {
    /// `Message.Signal` for DBC signals, the layout's field name for MQTT signals.
    pub name: String,
    /// Keep every n-th sample (the first, the n+1-th, ...).
    pub every: Option<NonZeroU64>,
    /// Keep a sample only when at least this long (record time) after the last kept one.
    pub min_interval: Option<Duration>,
    /// Keep a sample only when its (coarsened) value differs from the last kept one.
    pub on_change: bool,
    /// Round the value to the nearest multiple of this (e.g. 0.001 degrees: about 100 m).
    pub grid: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct LanePolicy {
    pub name: String,
    /// Indexes into [`Config::sources`]; `None` = every source.
    pub sources: Option<Vec<usize>>,
    pub content: LaneContent,
    pub recipients: Vec<PublicKey>,
}

// ---------------------------------------------------------------------------------------------
// Small typed values.

/// A duration in the project's one grammar (`ledger::units`, D255), errors naming `key`.
pub fn parse_duration(key: &str, text: &str) -> Result<Duration, ConfigError> {
    ledger::units::parse_duration(text).map_err(|m| invalid(key, m))
}

/// A size in the project's one grammar (`ledger::units`, D255), errors naming `key`.
pub fn parse_size(key: &str, text: &str) -> Result<usize, ConfigError> {
    ledger::units::parse_size(text).map_err(|m| invalid(key, m))
}

fn non_zero(key: &str, v: usize) -> Result<NonZeroUsize, ConfigError> {
    NonZeroUsize::new(v).ok_or_else(|| invalid(key, "must be at least 1"))
}

/// Parses an X25519 public key in `iovctl keygen`'s `name+hexid+base64` form, or plain base64
/// of the 32 bytes; checks the key id when present.
pub fn parse_public_key(text: &str) -> Result<PublicKey, String> {
    let text = text.trim();
    // Key names never contain '+'; base64 may.
    let mut parts = text.splitn(3, '+');
    let (name_id, b64) = match (parts.next(), parts.next(), parts.next()) {
        (Some(name), Some(id), Some(b64))
            if id.len() == 8 && id.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            (Some((name, id)), b64)
        }
        _ => (None, text),
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("public key is not base64: {e}"))?;
    let bytes: [u8; 32] =
        raw.as_slice().try_into().map_err(|_| format!("{} bytes, want 32", raw.len()))?;
    let pk = PublicKey::from(bytes);
    if let Some((name, id)) = name_id {
        let want = ledger::keys::x25519_key_id(name, &pk);
        let got = u32::from_str_radix(id, 16).map_err(|_| format!("key id {id:?} is not hex"))?;
        if got != want {
            return Err(format!("key id {got:08x} does not match the key ({want:08x})"));
        }
    }
    Ok(pk)
}

// ---------------------------------------------------------------------------------------------
// Loading and validation.

impl Config {
    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Config::from_toml(&text, path)
    }

    /// Parses and validates `text`; relative paths in it are taken relative to `path`'s
    /// directory.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.display().to_string(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        validate(raw, path, &base, MissingKeys::Refuse)
    }

    /// [`Config::load`] for `check-config`: with `key_provisioning = "generate"`, key files
    /// that do not exist yet (`run` creates them on first start) are stood in for by throwaway
    /// in-memory keys, so the rest of the file is still checked. Never run a gateway with it.
    pub fn load_for_check(path: &Path) -> Result<Config, ConfigError> {
        let text = read_config(path)?;
        let raw: RawConfig = parse_raw(&text, path)?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        validate(raw, path, &base, MissingKeys::StandIn)
    }

    /// What the file says about the gateway's own keys (paths resolved), for first-start
    /// provisioning (`crate::provision`) before the config is loaded.
    pub fn key_plan(path: &Path) -> Result<KeyPlan, ConfigError> {
        let text = read_config(path)?;
        let raw = parse_raw(&text, path)?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        key_plan_of(&raw.gateway, &base)
    }

    /// Index of the source named `name`.
    pub fn source_index(&self, name: &str) -> Option<usize> {
        self.sources.iter().position(|s| s.name == name)
    }
}

fn read_config(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| ConfigError::Read { path: path.display().to_string(), reason: e.to_string() })
}

fn parse_raw(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: path.display().to_string(),
        message: e.to_string().trim_end().to_owned(),
    })
}

/// How the gateway gets its own keys (`gateway.key_provisioning`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyProvisioning {
    /// `"generate"` (default): `iov-gateway run` creates missing key files (0600, the public
    /// halves next to them) on first start and logs their fingerprints.
    Generate,
    /// `"provisioned"`: the keys are installed by the operator; a missing key stops the start.
    Provisioned,
}

/// The gateway's own key files, as the config names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPlan {
    pub provisioning: KeyProvisioning,
    /// Name given to generated keys (the log origin): `gateway.key_name`, default
    /// `<hostname>/log`.
    pub name: String,
    pub signing_key: PathBuf,
    pub history_key: Option<PathBuf>,
}

/// What validation does with a key file that does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MissingKeys {
    /// An error (`run`: provisioning has already created what it may).
    Refuse,
    /// With `"generate"`, a throwaway key stands in (`check-config` before the first start).
    StandIn,
}

fn key_plan_of(g: &RawGateway, base: &Path) -> Result<KeyPlan, ConfigError> {
    let provisioning = match g.key_provisioning.as_deref() {
        None | Some("generate") => KeyProvisioning::Generate,
        Some("provisioned") => KeyProvisioning::Provisioned,
        Some(other) => {
            return Err(invalid(
                "gateway.key_provisioning",
                format!("{other:?}: use \"generate\" or \"provisioned\""),
            ))
        }
    };
    let name = match &g.key_name {
        Some(n) => n.clone(),
        None => format!("{}/log", hostname().unwrap_or_else(|| "iov-gateway".into())),
    };
    if !ledger::note::is_valid_key_name(&name) {
        return Err(invalid(
            "gateway.key_name",
            format!("{name:?} is empty or contains a space or '+' (set gateway.key_name)"),
        ));
    }
    Ok(KeyPlan {
        provisioning,
        name,
        signing_key: resolve(base, &g.signing_key),
        history_key: g.history_key.as_ref().map(|p| resolve(base, p)),
    })
}

/// This machine's host name (for the default key name): `/etc/hostname`, else the kernel's
/// (hidden from a unit with `ProcSubset=pid`, hence the file first).
fn hostname() -> Option<String> {
    ["/etc/hostname", "/proc/sys/kernel/hostname"].iter().find_map(|f| {
        let text = std::fs::read_to_string(f).ok()?;
        let h = text.lines().next()?.trim().to_owned();
        (!h.is_empty()).then_some(h)
    })
}

/// Whether a key file is absent (not: present but unreadable, which stays an error).
pub fn key_absent(p: &Path) -> bool {
    matches!(p.symlink_metadata(), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

/// A key file that does not exist: an error unless `"generate"` lets a stand-in be used.
fn missing_key(
    plan: &KeyPlan,
    key: &str,
    file: &Path,
    missing: MissingKeys,
) -> Result<(), ConfigError> {
    match (plan.provisioning, missing) {
        (KeyProvisioning::Generate, MissingKeys::StandIn) => Ok(()),
        (KeyProvisioning::Generate, MissingKeys::Refuse) => Err(invalid(
            key,
            format!(
                "{} does not exist yet: `iov-gateway run` generates it on first start \
                 (gateway.key_provisioning = \"generate\")",
                file.display()
            ),
        )),
        (KeyProvisioning::Provisioned, _) => Err(invalid(
            key,
            format!(
                "{} does not exist: gateway.key_provisioning = \"provisioned\" needs the key \
                 installed before the start (iovctl keygen; mode 0600, owned by the gateway's user)",
                file.display()
            ),
        )),
    }
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn existing_file(base: &Path, key: &str, p: &Path) -> Result<PathBuf, ConfigError> {
    let full = resolve(base, p);
    match std::fs::metadata(&full) {
        Ok(m) if m.is_file() => Ok(full),
        Ok(_) => Err(invalid(key, format!("{} is not a regular file", full.display()))),
        Err(e) => Err(invalid(key, format!("{}: {e}", full.display()))),
    }
}

fn validate(
    raw: RawConfig,
    path: &Path,
    base: &Path,
    missing: MissingKeys,
) -> Result<Config, ConfigError> {
    // [gateway]
    let g = &raw.gateway;
    let plan = key_plan_of(g, base)?;
    let signer = if key_absent(&plan.signing_key) {
        missing_key(&plan, "gateway.signing_key", &plan.signing_key, missing)?;
        ledger::keys::generate_signer(&plan.name)
            .map_err(|e| invalid("gateway.signing_key", e.to_string()))?
    } else {
        let key_path = existing_file(base, "gateway.signing_key", &g.signing_key)?;
        ledger::keys::load_signer(&key_path)
            .map_err(|e| invalid("gateway.signing_key", e.to_string()))?
    };
    let store = resolve(base, &g.store);
    let parent = store.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(invalid(
            "gateway.store",
            format!("the parent directory {} does not exist", parent.display()),
        ));
    }
    if store.exists() && !store.is_dir() {
        return Err(invalid("gateway.store", format!("{} is not a directory", store.display())));
    }
    let pipeline_capacity = non_zero("gateway.pipeline_capacity", g.pipeline_capacity)?;
    let writer_capacity = non_zero("gateway.writer_capacity", g.writer_capacity)?;
    let shutdown_grace = parse_duration("gateway.shutdown_grace", &g.shutdown_grace)?;

    // [block]
    let b = &raw.block;
    let block = BlockPolicy {
        max_records: non_zero("block.max_records", b.max_records)?,
        max_bytes: non_zero("block.max_bytes", parse_size("block.max_bytes", &b.max_bytes)?)?,
        max_age: parse_duration("block.max_age", &b.max_age)?,
        zstd_level: b.zstd_level,
    };
    if block.max_age.is_zero() {
        return Err(invalid("block.max_age", "must be more than 0"));
    }
    if !(1..=22).contains(&block.zstd_level) {
        return Err(invalid("block.zstd_level", format!("{} is not in 1..=22", b.zstd_level)));
    }

    // [[dbc]]
    let mut builder = Decoder::builder();
    let mut dbs = Vec::new();
    let mut by_pgn = false;
    for (i, d) in raw.dbc.iter().enumerate() {
        let key = format!("dbc[{i}].file");
        let file = existing_file(base, &key, &d.file)?;
        let db = dbc::load_file(&file)
            .map_err(|e| invalid(&key, format!("{} does not load: {e}", file.display())))?;
        for (j, iface) in d.interfaces.iter().enumerate() {
            if iface.is_empty() {
                return Err(invalid(format!("dbc[{i}].interfaces[{j}]"), "empty name"));
            }
        }
        by_pgn |= d.j1939_by_pgn;
        dbs.push((db, d.interfaces.clone()));
    }
    for (db, ifaces) in &dbs {
        let names: Vec<&str> = ifaces.iter().map(String::as_str).collect();
        builder.add_database(db, &names);
    }
    builder.j1939_by_pgn(by_pgn);
    let (decoder, warnings) =
        builder.build().map_err(|e| invalid("dbc", format!("the DBCs do not compile: {e}")))?;
    let dbc_warnings = warnings.iter().map(ToString::to_string).collect();

    // gateway.history_key: the gateway's own X25519 key, the reserved recipient `self`.
    let history_key = match &g.history_key {
        None => None,
        Some(p) if key_absent(&resolve(base, p)) => {
            missing_key(&plan, "gateway.history_key", &resolve(base, p), missing)?;
            Some(
                ledger::keys::X25519Key::generate(&plan.name)
                    .map_err(|e| invalid("gateway.history_key", e.to_string()))?,
            )
        }
        Some(p) => {
            let f = existing_file(base, "gateway.history_key", p)?;
            Some(
                ledger::keys::load_x25519(&f)
                    .map_err(|e| invalid("gateway.history_key", e.to_string()))?,
            )
        }
    };

    // [recipients]
    let mut recipients = BTreeMap::new();
    if let Some(k) = &history_key {
        recipients.insert(SELF_RECIPIENT.to_owned(), k.public());
    }
    for (name, file) in &raw.recipients {
        let key = format!("recipients.{name}");
        if name == SELF_RECIPIENT {
            return Err(invalid(
                key,
                "\"self\" is reserved for the gateway's own key: set gateway.history_key instead",
            ));
        }
        let full = existing_file(base, &key, Path::new(file))?;
        let text = std::fs::read_to_string(&full)
            .map_err(|e| invalid(&key, format!("{}: {e}", full.display())))?;
        let pk = parse_public_key(&text)
            .map_err(|e| invalid(&key, format!("{}: {e}", full.display())))?;
        recipients.insert(name.clone(), pk);
    }

    // [sources.*]
    let mut sources = Vec::new();
    let mut mqtt_signals = BTreeSet::new();
    for (i, (name, s)) in raw.sources.iter().enumerate() {
        let key = |k: &str| format!("sources.{name}.{k}");
        if name.is_empty() {
            return Err(invalid("sources", "a source name is empty"));
        }
        let kind = match s {
            RawSource::Socketcan { interface, ids, error_frames, coalesce } => {
                let channel =
                    ChannelId(u16::try_from(i).map_err(|_| {
                        invalid(format!("sources.{name}"), "more than 65535 sources")
                    })?);
                let mut c = crate::source::socketcan::Config::new(interface.clone(), channel);
                for (j, id) in ids.iter().enumerate() {
                    let cid =
                        if *id <= 0x7FF { CanId::standard(*id) } else { CanId::extended(*id) };
                    c.ids.push(cid.ok_or_else(|| {
                        invalid(key(&format!("ids[{j}]")), format!("{id:#x} is not a CAN id"))
                    })?);
                }
                c.error_frames = *error_frames;
                c.coalesce = parse_duration(&key("coalesce"), coalesce)?;
                if c.coalesce > MAX_COALESCE {
                    return Err(invalid(
                        key("coalesce"),
                        format!(
                            "at most {} ms (frames wait in the kernel this long)",
                            MAX_COALESCE.as_millis()
                        ),
                    ));
                }
                if interface.is_empty() || interface.len() > 15 {
                    return Err(invalid(key("interface"), "must be 1 to 15 bytes"));
                }
                SourceKind::SocketCan(c)
            }
            RawSource::Trace { file, pace, on_error, at_end, time_shift, loops } => {
                let file = existing_file(base, &key("file"), file)?;
                if can_decoders::trace::Format::from_path(&file).is_none() {
                    return Err(invalid(
                        key("file"),
                        format!("{}: not .log, .asc or .blf (optionally .gz)", file.display()),
                    ));
                }
                let pace = Pace::parse(pace).map_err(|e| invalid(key("pace"), e))?;
                let policy = match on_error.as_str() {
                    "skip" => can_decoders::trace::ErrorPolicy::Skip,
                    "strict" => can_decoders::trace::ErrorPolicy::Strict,
                    p => {
                        return Err(invalid(
                            key("on_error"),
                            format!("{p:?}: use \"skip\" or \"strict\""),
                        ))
                    }
                };
                let at_end = match at_end.as_str() {
                    "continue" => AtEnd::Continue,
                    "shutdown" => AtEnd::Shutdown,
                    p => {
                        return Err(invalid(
                            key("at_end"),
                            format!("{p:?}: use \"continue\" or \"shutdown\""),
                        ))
                    }
                };
                let time_shift_ns = match time_shift {
                    Some(t) => parse_time_shift(&key("time_shift"), t)?,
                    None => 0,
                };
                let loops = NonZeroU32::new(*loops)
                    .ok_or_else(|| invalid(key("loops"), "at least 1 (the number of passes)"))?;
                SourceKind::Trace(TraceConfig { file, pace, policy, at_end, time_shift_ns, loops })
            }
            RawSource::Mqtt {
                host,
                port,
                client_id,
                protocol,
                username,
                password_file,
                keep_alive,
                reconnect_min,
                reconnect_max,
                max_payload,
                topics,
                layouts,
                tls,
            } => {
                let protocol = match protocol.as_str() {
                    "3.1.1" => MqttProtocol::V311,
                    "5" => MqttProtocol::V5,
                    p => {
                        return Err(invalid(
                            key("protocol"),
                            format!("{p:?}: use \"3.1.1\" or \"5\""),
                        ))
                    }
                };
                if host.is_empty() {
                    return Err(invalid(key("host"), "empty"));
                }
                if client_id.is_empty() || client_id.len() > 23 {
                    return Err(invalid(
                        key("client_id"),
                        "must be 1 to 23 bytes (a fixed id keeps the broker session, so unacked QoS 1 messages are redelivered)",
                    ));
                }
                let password = match password_file {
                    None => None,
                    Some(p) => {
                        let f = existing_file(base, &key("password_file"), p)?;
                        let text = ledger::keys::read_secret_file(&f)
                            .map_err(|e| invalid(key("password_file"), e.to_string()))?;
                        Some(text.trim_end_matches(['\n', '\r']).to_owned())
                    }
                };
                if password.is_some() && username.is_none() {
                    return Err(invalid(key("password_file"), "needs sources.*.username"));
                }
                if topics.is_empty() {
                    return Err(invalid(key("topics"), "at least one topic filter"));
                }
                let mut ts = Vec::new();
                for (j, t) in topics.iter().enumerate() {
                    if t.filter.is_empty() {
                        return Err(invalid(key(&format!("topics[{j}].filter")), "empty"));
                    }
                    if t.qos > 1 {
                        return Err(invalid(
                            key(&format!("topics[{j}].qos")),
                            format!("{} is not 0 or 1", t.qos),
                        ));
                    }
                    ts.push((t.filter.clone(), t.qos));
                }
                let mut ls = Vec::new();
                for (j, l) in layouts.iter().enumerate() {
                    let lk = |k: &str| key(&format!("layouts[{j}].{k}"));
                    let format = match l.format.as_str() {
                        "json" => PayloadFormat::Json,
                        "cbor" => PayloadFormat::Cbor,
                        f => {
                            return Err(invalid(
                                lk("format"),
                                format!("{f:?}: use \"json\" or \"cbor\""),
                            ))
                        }
                    };
                    if l.fields.is_empty() {
                        return Err(invalid(lk("fields"), "at least one field"));
                    }
                    let mut fields = Vec::new();
                    for (sig, p) in &l.fields {
                        let parts: Vec<String> = p.split('.').map(str::to_owned).collect();
                        if parts.iter().any(String::is_empty) {
                            return Err(invalid(
                                lk(&format!("fields.{sig}")),
                                format!("{p:?} is not a field path like \"pos.lat\""),
                            ));
                        }
                        mqtt_signals.insert(sig.clone());
                        fields.push((sig.clone(), parts));
                    }
                    ls.push(Layout { topic: l.topic.clone(), format, fields });
                }
                let reconnect_min = parse_duration(&key("reconnect_min"), reconnect_min)?;
                let reconnect_max = parse_duration(&key("reconnect_max"), reconnect_max)?;
                if reconnect_min.is_zero() || reconnect_max < reconnect_min {
                    return Err(invalid(
                        key("reconnect_max"),
                        "reconnect_min must be > 0 and reconnect_max >= reconnect_min",
                    ));
                }
                let max_payload = parse_size(&key("max_payload"), max_payload)?;
                if max_payload == 0 || max_payload > ledger::record::MAX_MQTT_PAYLOAD {
                    return Err(invalid(
                        key("max_payload"),
                        format!("must be 1 byte to {} bytes", ledger::record::MAX_MQTT_PAYLOAD),
                    ));
                }
                let tls = match tls {
                    None => None,
                    Some(t) => {
                        let ca = existing_file(base, &key("tls.ca_file"), &t.ca_file)?;
                        let ca_pem = std::fs::read(&ca).map_err(|e| {
                            invalid(key("tls.ca_file"), format!("{}: {e}", ca.display()))
                        })?;
                        if !ca_pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                            return Err(invalid(
                                key("tls.ca_file"),
                                format!("{}: no PEM certificate in it", ca.display()),
                            ));
                        }
                        let client = match (&t.client_cert, &t.client_key) {
                            (None, None) => None,
                            (Some(c), Some(k)) => {
                                let c = existing_file(base, &key("tls.client_cert"), c)?;
                                let cert = std::fs::read(&c).map_err(|e| {
                                    invalid(key("tls.client_cert"), format!("{}: {e}", c.display()))
                                })?;
                                let k = existing_file(base, &key("tls.client_key"), k)?;
                                let pem = ledger::keys::read_secret_file(&k)
                                    .map_err(|e| invalid(key("tls.client_key"), e.to_string()))?;
                                Some((cert, pem.as_bytes().to_vec()))
                            }
                            _ => {
                                return Err(invalid(
                                    key("tls"),
                                    "client_cert and client_key go together",
                                ))
                            }
                        };
                        Some(TlsFiles { ca_pem, client })
                    }
                };
                SourceKind::Mqtt(MqttConfig {
                    protocol,
                    tls,
                    host: host.clone(),
                    port: *port,
                    client_id: client_id.clone(),
                    username: username.clone(),
                    password,
                    keep_alive: parse_duration(&key("keep_alive"), keep_alive)?,
                    reconnect_min,
                    reconnect_max,
                    max_payload,
                    topics: ts,
                    layouts: ls,
                })
            }
        };
        sources.push(SourceConfig { name: name.clone(), kind });
    }
    if sources.is_empty() {
        return Err(invalid("sources", "no source configured"));
    }

    // [lanes.*]
    let dbc_signals: BTreeSet<String> = decoder
        .messages()
        .flat_map(|(_, m)| m.signals().iter().map(move |s| format!("{}.{}", m.name(), s.name())))
        .collect();
    let mut lanes = Vec::new();
    for (name, l) in &raw.lanes {
        let key = |k: &str| format!("lanes.{name}.{k}");
        if name.is_empty() || name.len() > 64 {
            return Err(invalid(format!("lanes.{name}"), "a lane name is 1 to 64 bytes"));
        }
        let srcs = match &l.sources {
            None => None,
            Some(list) => {
                let mut v = Vec::new();
                for (j, s) in list.iter().enumerate() {
                    let idx = sources.iter().position(|c| &c.name == s).ok_or_else(|| {
                        invalid(key(&format!("sources[{j}]")), format!("no source named {s:?}"))
                    })?;
                    v.push(idx);
                }
                Some(v)
            }
        };
        let content = match l.carries.as_str() {
            "raw" => {
                if !l.signals.is_empty() {
                    return Err(invalid(key("signals"), "a raw lane carries frames, not signals"));
                }
                let can_ids = match &l.messages {
                    None => None,
                    Some(ms) => {
                        let mut ids = BTreeSet::new();
                        for (j, m) in ms.iter().enumerate() {
                            let k = decoder.message_by_name(m).ok_or_else(|| {
                                invalid(
                                    key(&format!("messages[{j}]")),
                                    format!("no DBC message named {m:?}"),
                                )
                            })?;
                            ids.insert(decoder.message(k).id());
                        }
                        Some(ids)
                    }
                };
                LaneContent::Raw { can_ids }
            }
            "signals" => {
                if l.messages.is_some() {
                    return Err(invalid(key("messages"), "only raw lanes select messages"));
                }
                if l.signals.is_empty() {
                    return Err(invalid(key("signals"), "a signal lane needs at least one signal"));
                }
                let mut rules = Vec::new();
                for (j, s) in l.signals.iter().enumerate() {
                    let sk = |k: &str| key(&format!("signals[{j}].{k}"));
                    if !dbc_signals.contains(&s.name) && !mqtt_signals.contains(&s.name) {
                        return Err(invalid(
                            sk("name"),
                            format!(
                                "{:?} is neither a DBC signal (Message.Signal) nor an MQTT layout field",
                                s.name
                            ),
                        ));
                    }
                    let every = match s.every {
                        None => None,
                        Some(n) => Some(
                            NonZeroU64::new(n)
                                .ok_or_else(|| invalid(sk("every"), "must be at least 1"))?,
                        ),
                    };
                    let min_interval = s
                        .min_interval
                        .as_deref()
                        .map(|t| parse_duration(&sk("min_interval"), t))
                        .transpose()?;
                    if let Some(g) = s.grid {
                        if !(g.is_finite() && g > 0.0) {
                            return Err(invalid(
                                sk("grid"),
                                format!("{g} is not a positive number"),
                            ));
                        }
                    }
                    rules.push(SignalRule {
                        name: s.name.clone(),
                        every,
                        min_interval,
                        on_change: s.on_change,
                        grid: s.grid,
                    });
                }
                LaneContent::Signals(rules)
            }
            c => return Err(invalid(key("carries"), format!("{c:?}: use \"raw\" or \"signals\""))),
        };
        if l.recipients.is_empty() {
            return Err(invalid(
                key("recipients"),
                "at least one recipient: nobody could open the lane",
            ));
        }
        let mut rs = Vec::new();
        for (j, r) in l.recipients.iter().enumerate() {
            let pk = recipients.get(r).ok_or_else(|| {
                let problem = if r == SELF_RECIPIENT {
                    "\"self\" is the gateway's own key: set gateway.history_key".to_owned()
                } else {
                    format!("{r:?} is not declared under [recipients]")
                };
                invalid(key(&format!("recipients[{j}]")), problem)
            })?;
            if rs.contains(pk) {
                return Err(invalid(key(&format!("recipients[{j}]")), "listed twice"));
            }
            rs.push(*pk);
        }
        lanes.push(LanePolicy { name: name.clone(), sources: srcs, content, recipients: rs });
    }
    if lanes.is_empty() {
        return Err(invalid("lanes", "no lane configured: nothing would be stored"));
    }
    if lanes.len() > 64 {
        return Err(invalid("lanes", format!("{} lanes, at most 64", lanes.len())));
    }

    let ledgers = validate_ledgers(&raw.ledgers, base, &lanes)?;

    // [metrics]
    let metrics = match &raw.metrics {
        None => None,
        Some(m) => {
            let addr: std::net::SocketAddr = m.listen.trim().parse().map_err(|_| {
                invalid(
                    "metrics.listen",
                    format!("{:?} is not an address:port (e.g. \"127.0.0.1:9187\")", m.listen),
                )
            })?;
            if !addr.ip().is_loopback() && !m.allow_remote {
                return Err(invalid(
                    "metrics.listen",
                    format!(
                        "{addr} is not a loopback address; the metrics are unauthenticated \
                         (set metrics.allow_remote = true to serve them anyway)"
                    ),
                ));
            }
            Some(addr)
        }
    };

    let api = raw.api.as_ref().map(validate_api).transpose()?;
    // [retention]
    let retention = RetentionConfig {
        policy: raw.retention.as_ref().map(retention_policy).transpose()?,
        ledger_names: ledgers.iter().map(|l| l.name.clone()).collect(),
    };

    Ok(Config {
        path: path.to_path_buf(),
        signer,
        store,
        pipeline_capacity,
        writer_capacity,
        shutdown_grace,
        block,
        decoder: Arc::new(decoder),
        dbc_warnings,
        sources,
        lanes,
        metrics,
        history_key,
        api,
        retention,
        ledgers,
    })
}

fn validate_api(a: &RawApi) -> Result<ApiConfig, ConfigError> {
    let listen = match &a.listen {
        None => None,
        Some(l) => {
            let addr: std::net::SocketAddr = l.trim().parse().map_err(|_| {
                invalid(
                    "api.listen",
                    format!("{l:?} is not an address:port (e.g. \"127.0.0.1:9188\")"),
                )
            })?;
            if !addr.ip().is_loopback() {
                return Err(invalid(
                    "api.listen",
                    format!("{addr} is not a loopback address; the API serves decrypted history without authentication"),
                ));
            }
            Some(addr)
        }
    };
    if let Some(s) = &a.socket {
        if !s.is_absolute() {
            return Err(invalid("api.socket", format!("{} is not an absolute path", s.display())));
        }
        // sockaddr_un.sun_path holds 107 bytes and a NUL.
        if s.as_os_str().len() > 107 {
            return Err(invalid(
                "api.socket",
                "longer than the 107 bytes a Unix socket path may have",
            ));
        }
    }
    if a.socket.is_none() && listen.is_none() {
        return Err(invalid(
            "api",
            "set socket (a Unix socket path) or listen (loopback address), or remove [api]",
        ));
    }
    Ok(ApiConfig {
        socket: a.socket.clone(),
        listen,
        max_concurrent: non_zero("api.max_concurrent", a.max_concurrent)?,
        max_rows: non_zero("api.max_rows", a.max_rows)?,
        max_blocks: non_zero("api.max_blocks", a.max_blocks)?,
    })
}

// ---------------------------------------------------------------------------------------------
// [ledgers.NAME]: sync targets (the sync agents, `crate::sync`).

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLedger {
    url: String,
    lanes: Vec<String>,
    cosigner: Option<String>,
    cosigner_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    bandwidth: Option<String>,
    #[serde(default = "default_batch_blocks")]
    batch_blocks: usize,
    #[serde(default = "default_batch_bytes")]
    batch_bytes: String,
    #[serde(default = "default_backoff_min")]
    backoff_min: String,
    #[serde(default = "default_backoff_max")]
    backoff_max: String,
    #[serde(default = "default_ledger_timeout")]
    timeout: String,
}

fn default_batch_blocks() -> usize {
    64
}
fn default_batch_bytes() -> String {
    "4 MiB".into()
}
fn default_backoff_min() -> String {
    "500ms".into()
}
fn default_backoff_max() -> String {
    "60s".into()
}
fn default_ledger_timeout() -> String {
    "30s".into()
}

/// One ledger this gateway syncs to.
#[derive(Clone)]
pub struct LedgerConfig {
    /// Its key under `[ledgers]`: names its cursor, receipt and metrics.
    pub name: String,
    /// Base URL of the ledger's API (`http` or `https`), ending in `/`.
    pub url: reqwest::Url,
    /// Lane names this ledger receives (each a configured lane).
    pub lanes: Vec<String>,
    /// The ledger's C2SP cosignature key: its receipts must verify with it.
    pub cosigner: ledger::cosignature::CosignatureVerifier,
    /// CA certificates (PEM) for an `https` ledger; `None` = the built-in web roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Upload budget in bytes per second; `None` = unlimited.
    pub bandwidth: Option<NonZeroU64>,
    /// Most blocks per upload request (a batch always holds at least one block).
    pub batch_blocks: NonZeroUsize,
    /// Most bytes (headers and lanes) per upload request, unless one block alone is larger.
    pub batch_bytes: NonZeroUsize,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Per HTTP request.
    pub timeout: Duration,
}

impl fmt::Debug for LedgerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LedgerConfig")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("lanes", &self.lanes)
            .field("cosigner", &self.cosigner.to_vkey())
            .field("bandwidth", &self.bandwidth)
            .finish_non_exhaustive()
    }
}

fn validate_ledgers(
    raw: &BTreeMap<String, RawLedger>,
    base: &Path,
    lanes: &[LanePolicy],
) -> Result<Vec<LedgerConfig>, ConfigError> {
    let mut out = Vec::new();
    for (name, l) in raw {
        let key = |k: &str| format!("ledgers.{name}.{k}");
        if name.is_empty()
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(invalid(
                format!("ledgers.{name}"),
                "a ledger name is 1 or more of A-Z a-z 0-9 - _ .",
            ));
        }
        let mut url = reqwest::Url::parse(l.url.trim())
            .map_err(|e| invalid(key("url"), format!("{:?} is not a URL: {e}", l.url)))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(invalid(
                key("url"),
                format!("{:?}: use http://HOST[:PORT]/ or https://", l.url),
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid(
                key("url"),
                "no query or fragment: the base URL of the ledger's API",
            ));
        }
        if !url.path().ends_with('/') {
            let p = format!("{}/", url.path());
            url.set_path(&p);
        }
        if l.lanes.is_empty() {
            return Err(invalid(
                key("lanes"),
                "at least one lane: the ledger would receive nothing",
            ));
        }
        for (j, lane) in l.lanes.iter().enumerate() {
            if !lanes.iter().any(|p| &p.name == lane) {
                return Err(invalid(
                    key(&format!("lanes[{j}]")),
                    format!("{lane:?} is not a lane under [lanes]"),
                ));
            }
            if l.lanes[..j].contains(lane) {
                return Err(invalid(key(&format!("lanes[{j}]")), "listed twice"));
            }
        }
        let (vkey, from) = match (&l.cosigner, &l.cosigner_file) {
            (Some(text), None) => (text.clone(), key("cosigner")),
            (None, Some(p)) => {
                let full = existing_file(base, &key("cosigner_file"), p)?;
                let text = std::fs::read_to_string(&full).map_err(|e| {
                    invalid(key("cosigner_file"), format!("{}: {e}", full.display()))
                })?;
                (text, key("cosigner_file"))
            }
            _ => {
                return Err(invalid(
                    key("cosigner"),
                    "give exactly one of cosigner (the vkey text) or cosigner_file",
                ))
            }
        };
        let cosigner = ledger::cosignature::CosignatureVerifier::from_vkey(vkey.trim())
            .map_err(|e| invalid(&from, format!("not a cosignature (witness) vkey: {e}")))?;
        let ca_pem = match &l.ca_file {
            None => None,
            Some(p) => {
                let full = existing_file(base, &key("ca_file"), p)?;
                let pem = std::fs::read(&full)
                    .map_err(|e| invalid(key("ca_file"), format!("{}: {e}", full.display())))?;
                if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                    return Err(invalid(
                        key("ca_file"),
                        format!("{}: no PEM certificate", full.display()),
                    ));
                }
                if url.scheme() != "https" {
                    return Err(invalid(key("ca_file"), "set, but the url is not https"));
                }
                // Every certificate must be one rustls accepts as a root now (what the agent's
                // client does at start), so `check-config` catches a damaged CA file.
                {
                    use rustls::pki_types::pem::PemObject as _;
                    let mut roots = rustls::RootCertStore::empty();
                    for (i, cert) in
                        rustls::pki_types::CertificateDer::pem_slice_iter(&pem).enumerate()
                    {
                        let bad = |e: String| {
                            invalid(
                                key("ca_file"),
                                format!("{}: certificate {}: {e}", full.display(), i + 1),
                            )
                        };
                        let cert = cert.map_err(|e| bad(e.to_string()))?;
                        roots.add(cert).map_err(|e| bad(e.to_string()))?;
                    }
                }
                Some(pem)
            }
        };
        let bandwidth = match &l.bandwidth {
            None => None,
            Some(t) => Some(NonZeroU64::new(parse_size(&key("bandwidth"), t)? as u64).ok_or_else(
                || invalid(key("bandwidth"), "must be more than 0 bytes/s (omit it for no limit)"),
            )?),
        };
        let backoff_min = parse_duration(&key("backoff_min"), &l.backoff_min)?;
        let backoff_max = parse_duration(&key("backoff_max"), &l.backoff_max)?;
        if backoff_min.is_zero() || backoff_max < backoff_min {
            return Err(invalid(key("backoff_max"), "need 0 < backoff_min <= backoff_max"));
        }
        let timeout = parse_duration(&key("timeout"), &l.timeout)?;
        if timeout.is_zero() {
            return Err(invalid(key("timeout"), "must be more than 0"));
        }
        out.push(LedgerConfig {
            name: name.clone(),
            url,
            lanes: l.lanes.clone(),
            cosigner,
            ca_pem,
            bandwidth,
            batch_blocks: non_zero(&key("batch_blocks"), l.batch_blocks)?,
            batch_bytes: non_zero(
                &key("batch_bytes"),
                parse_size(&key("batch_bytes"), &l.batch_bytes)?,
            )?,
            backoff_min,
            backoff_max,
            timeout,
        });
    }
    Ok(out)
}

/// The commented example `print-default-config` prints. Paths are the packaged defaults; with
/// them pointed at real files it passes `check-config` (tested).
pub const DEFAULT_CONFIG: &str = r#"# iov-gateway configuration (/etc/iov/gateway.toml).
# Unknown keys are refused; `iov-gateway check-config --config FILE` validates a file.
# Durations: "250ms", "10s", "5m", "1h". Sizes: "4 MiB", "512 KiB", "1000000".
# Relative paths are relative to this file's directory.

[gateway]
# Ed25519 signing key of this gateway (mode 0600). Its name is the log origin; its public half
# (signing.vkey next to it) is what the ledgers enroll.
signing_key = "/var/lib/iov-gateway/keys/signing.key"
# "generate": on first start `iov-gateway run` creates missing keys (signing_key, history_key)
# with mode 0600 in a 0700 directory, writes their public halves next to them and logs the
# fingerprints. "provisioned": the keys must be installed beforehand (iovctl keygen); a
# missing key stops the start.
key_provisioning = "generate"
# Name of generated keys, i.e. the origin of this gateway's log. Default: "<hostname>/log".
# key_name = "gw-0042.fleet.example/log"
# The gateway's log: a RocksDB directory, created on first start (the parent must exist).
store = "/var/lib/iov-gateway/store"
# Bounded channel from the sources to the pipeline (records). CAN sources drop new frames when
# it is full (counted); MQTT stops reading (and acknowledging) until there is room.
pipeline_capacity = 8192
# Sealed-block requests queued for the store writer; the pipeline waits when it is full.
writer_capacity = 4
# How long shutdown may take (seal the partial block, sync) before the process gives up.
shutdown_grace = "10s"
# The gateway's own X25519 key (the x25519.key `iovctl keygen` writes; mode 0600). Lanes that
# list the reserved recipient "self" are sealed for it too, so the local API can read them.
# history_key = "/var/lib/iov-gateway/keys/x25519.key"

[block]
# A block is sealed when any of these is reached, and on shutdown. Records are held in memory
# until the block is sealed (about 64 bytes each): larger blocks compress a little better and
# cost memory.
max_records = 50000
max_bytes = "4 MiB"
max_age = "10s"
zstd_level = 5

# DBC files: decode frames of the listed interfaces (none listed = every interface).
[[dbc]]
file = "/etc/iov/dbc/canmod-gps.dbc"
interfaces = ["can0"]
j1939_by_pgn = false

# X25519 public keys of the lane audiences (`NAME+KEYID+BASE64`, as iovctl keygen writes them).
[recipients]
factory = "/etc/iov/keys/factory.x25519.pub"
city = "/etc/iov/keys/city.x25519.pub"

# Sources. kind = "socketcan" | "trace" | "mqtt".
[sources.can0]
kind = "socketcan"
interface = "can0"
# ids = [0x3, 0x7]       # kernel filter; empty = every id
error_frames = true
# Receive coalescing: after reading the socket empty, let frames queue in the kernel this long
# (they keep their kernel receive timestamps) so a busy bus costs one wake-up per interval, not
# one per frame; shortened automatically to stay within half the socket buffer; "0" = off.
coalesce = "20ms"

# [sources.replay]
# kind = "trace"
# file = "/var/lib/iov-gateway/replay.log.gz"   # candump .log, .asc or .blf, optionally .gz
# pace = "recorded"      # or "fast": as fast as the pipeline takes them (never drops),
#                        # or "x10": ten times the recorded speed ("xN", N from 0.001)
# on_error = "skip"      # or "strict": stop at the first malformed record
# at_end = "continue"    # or "shutdown": stop the gateway gracefully at the end of the trace
# time_shift = "+2h"     # added to every recorded timestamp ("-90s", exact "+1500000000ns")
# loops = 1              # passes over the file, each shifted past the previous one

# [sources.telemetry]
# kind = "mqtt"
# host = "127.0.0.1"
# port = 1883
# client_id = "iov-gw-1"  # fixed: the broker keeps the session and redelivers unacked QoS 1
# protocol = "3.1.1"      # or "5" (session kept for a week while away)
# username = "gateway"
# password_file = "/etc/iov/keys/mqtt.password"   # mode 0600
# keep_alive = "30s"
# reconnect_min = "100ms"
# reconnect_max = "30s"
# max_payload = "1 MiB"
# topics = [{ filter = "vehicle/+/telemetry", qos = 1 }]
# tls = { ca_file = "/etc/iov/mqtt-ca.pem" }   # optional client_cert / client_key (0600)
# [[sources.telemetry.layouts]]
# topic = "vehicle/+/telemetry"   # an MQTT topic filter
# format = "json"                 # or "cbor"
# fields = { "telemetry.speed" = "speed", "telemetry.lat" = "pos.lat" }

# Lanes: one audience's view of each block, sealed for its recipients.
[lanes.factory]
carries = "raw"                    # every CAN frame and MQTT message of its sources
# sources = ["can0"]               # default: every source
# messages = ["gnss_pos"]          # only these DBC messages' CAN ids
recipients = ["factory"]

[lanes.city]
carries = "signals"                # decoded signal samples
recipients = ["city"]
signals = [
  { name = "gnss_speed.Speed", min_interval = "1s" },
  { name = "gnss_pos.Latitude", min_interval = "1s", grid = 0.001 },
  { name = "gnss_pos.Longitude", min_interval = "1s", grid = 0.001 },
  # { name = "gnss_status.FixType", on_change = true },
  # { name = "gnss_imu.AccelerationX", every = 10 },
]

# Local history: a lane sealed for the gateway itself (needs gateway.history_key).
# [lanes.local]
# carries = "raw"
# recipients = ["self"]

# The local read API (iovctl status, iovctl history --local): HTTP/1.1, GET /v1/status and
# /v1/history. Unauthenticated: access is the socket's mode (0660: owner and group).
# Absent = not served.
# [api]
# socket = "/run/iov-gateway/api.sock"
# listen = "127.0.0.1:9188"   # optional loopback TCP, for tools without Unix sockets
# max_concurrent = 8          # requests served at once
# max_rows = 100000           # rows per answer at most, then a `next` cursor
# max_blocks = 2000           # blocks opened per answer at most, then a `next` cursor

# Prometheus text metrics (GET /metrics), unauthenticated: loopback only unless allow_remote.
# Absent = not served.
# [metrics]
# listen = "127.0.0.1:9187"
# allow_remote = false

# A disk quota for the store. Checked after every append: over the quota, retention deletes
# the lanes of the oldest blocks every ledger has acknowledged (headers and proofs stay) until
# the store is down to low_watermark; if that is not enough, when_full decides:
#   "stop":        refuse new input until space frees (CAN frames dropped and counted with
#                  reason "quota", MQTT left unacknowledged); iov_retention_alarm = 1
#   "drop-oldest": delete the oldest unsynced lanes too; iov_retention_alarm = 1, and the next
#                  block carries a "$iov/gap" record naming the heights, in every lane
# Leave room below the filesystem's size: compaction briefly needs extra space.
# Absent = no quota (a full disk stops the daemon: a failed write is fatal).
# [retention]
# quota = "2 GiB"
# low_watermark = "90%"    # or a size, e.g. "1800 MiB"
# when_full = "stop"       # or "drop-oldest"
# recheck = "1s"           # how often a stopped gateway checks for free space

# Ledgers this gateway syncs to (one sync agent each): the newest checkpoint first (the ledger
# cosigns it), then the missing blocks with the listed lanes only. Absent = no sync.
# [ledgers.factory]
# url = "https://factory-ledger.example:8443/"     # http or https; the ledger's API base
# lanes = ["factory"]                               # lanes it receives (from [lanes])
# cosigner_file = "/etc/iov/keys/factory.witness.vkey"   # its cosignature vkey (or cosigner = "TEXT")
# ca_file = "/etc/iov/ledger-ca.pem"                # https: CAs to trust (default: web roots)
# bandwidth = "256 KiB"                             # upload budget per second (default: none)
# batch_blocks = 64                                 # per upload request
# batch_bytes = "4 MiB"                             # per upload request (one bigger block goes alone)
# backoff_min = "500ms"                             # retry delays: exponential, full jitter
# backoff_max = "60s"
# timeout = "30s"                                   # per request
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::tests::{chmod, fixtures, keys};

    /// The default config with its packaged paths pointed at real files in `dir`.
    fn default_in(dir: &Path) -> String {
        let dbc = fixtures().join("dbc/css-electronics/canmod-gps.dbc");
        DEFAULT_CONFIG
            .replace(
                "/var/lib/iov-gateway/keys/signing.key",
                &dir.join("signing.key").display().to_string(),
            )
            .replace("/var/lib/iov-gateway/store", &dir.join("store").display().to_string())
            .replace("/etc/iov/dbc/canmod-gps.dbc", &dbc.display().to_string())
            .replace(
                "/etc/iov/keys/factory.x25519.pub",
                &dir.join("factory.pub").display().to_string(),
            )
            .replace("/etc/iov/keys/city.x25519.pub", &dir.join("city.pub").display().to_string())
    }

    fn err(text: &str, dir: &Path) -> String {
        match Config::from_toml(text, &dir.join("gateway.toml")) {
            Ok(_) => panic!("config was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_printed_default_config_validates() {
        let k = keys();
        let text = default_in(k.dir.path());
        let c = Config::from_toml(&text, &k.dir.path().join("gateway.toml"))
            .expect("default validates");
        assert_eq!(c.lanes.len(), 2);
        assert_eq!(c.sources.len(), 1);
        assert_eq!(c.block.max_age, Duration::from_secs(10));
        assert_eq!(c.block.max_bytes.get(), 4 << 20);
        let city = c.lanes.iter().find(|l| l.name == "city").expect("city lane");
        let LaneContent::Signals(rules) = &city.content else { panic!("city carries signals") };
        assert_eq!(rules[1].grid, Some(0.001));
        assert_eq!(rules[1].min_interval, Some(Duration::from_secs(1)));
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_name() {
        let k = keys();
        let text = default_in(k.dir.path()).replace("[block]\n", "[block]\nmax_recods = 5\n");
        let e = err(&text, k.dir.path());
        assert!(e.contains("max_recods"), "{e}");
    }

    #[test]
    fn errors_name_the_key_path() {
        let k = keys();
        let d = k.dir.path();
        let base = default_in(d);
        let e = err(&base.replace("\"gnss_pos.Latitude\"", "\"gnss_pos.Lattitude\""), d);
        assert!(e.starts_with("lanes.city.signals[1].name: \"gnss_pos.Lattitude\""), "{e}");
        let e = err(&base.replace("max_age = \"10s\"", "max_age = \"10 parsecs\""), d);
        assert!(e.starts_with("block.max_age: "), "{e}");
        let e = err(&base.replace("recipients = [\"city\"]", "recipients = [\"town\"]"), d);
        assert!(e.starts_with("lanes.city.recipients[0]: \"town\" is not declared"), "{e}");
        let mq = format!(
            "{base}\n[sources.telemetry]\nkind = \"mqtt\"\nhost = \"127.0.0.1\"\nclient_id = \"gw\"\n\
             protocol = \"4\"\ntopics = [{{ filter = \"a/b\", qos = 2 }}]\n"
        );
        let e = err(&mq, d);
        assert!(e.starts_with("sources.telemetry.protocol: \"4\""), "{e}");
        let e = err(&mq.replace("protocol = \"4\"", "protocol = \"5\""), d);
        assert!(e.starts_with("sources.telemetry.topics[0].qos: 2 is not 0 or 1"), "{e}");
        let e = err(&base.replace("kind = \"socketcan\"", "kind = \"serial\""), d);
        assert!(e.contains("serial"), "{e}");
        let e = err(&base.replace("coalesce = \"20ms\"", "coalesce = \"2s\""), d);
        assert!(e.starts_with("sources.can0.coalesce: at most 1000 ms"), "{e}");
        let e = err(&base.replace("coalesce = \"20ms\"", "coalesce = \"soon\""), d);
        assert!(e.starts_with("sources.can0.coalesce: "), "{e}");
        let coalesce = |text: &str| {
            let c = Config::from_toml(
                &base.replace("coalesce = \"20ms\"", text),
                &d.join("gateway.toml"),
            )
            .expect("coalesce");
            c.sources.iter().find_map(|s| match &s.kind {
                SourceKind::SocketCan(sc) => Some(sc.coalesce),
                _ => None,
            })
        };
        assert_eq!(coalesce("coalesce = \"20ms\""), Some(Duration::from_millis(20)));
        assert_eq!(coalesce("coalesce = \"0\""), Some(Duration::ZERO));
        assert_eq!(coalesce(""), Some(crate::source::socketcan::DEFAULT_COALESCE));
        let e = err(&base.replace("# messages = [\"gnss_pos\"]", "messages = [\"gnss_posx\"]"), d);
        assert!(
            e.starts_with("lanes.factory.messages[0]: no DBC message named \"gnss_posx\""),
            "{e}"
        );
        let ok = Config::from_toml(
            &base.replace("# messages = [\"gnss_pos\"]", "messages = [\"gnss_pos\"]"),
            &d.join("gateway.toml"),
        )
        .expect("messages by name");
        let f = ok.lanes.iter().find(|l| l.name == "factory").expect("factory");
        let LaneContent::Raw { can_ids: Some(ids) } = &f.content else { panic!("ids") };
        assert_eq!(ids.iter().map(|i| i.raw()).collect::<Vec<_>>(), [3]);
        let e = err(&base.replace("# sources = [\"can0\"]", "sources = [\"can9\"]"), d);
        assert!(e.starts_with("lanes.factory.sources[0]: no source named \"can9\""), "{e}");
        let e = err(
            &base.replace(
                &fixtures().join("dbc/css-electronics/canmod-gps.dbc").display().to_string(),
                &d.join("nope.dbc").display().to_string(),
            ),
            d,
        );
        assert!(e.starts_with("dbc[0].file: "), "{e}");
    }

    #[test]
    fn metrics_listen_is_loopback_unless_remote_is_allowed() {
        let k = keys();
        let d = k.dir.path();
        let base = default_in(d);
        let on = base.replace("# [metrics]\n# listen", "[metrics]\nlisten");
        let c = Config::from_toml(&on, &d.join("gateway.toml")).expect("loopback metrics");
        assert_eq!(c.metrics, Some("127.0.0.1:9187".parse().expect("addr")));
        let remote = on.replace("127.0.0.1:9187", "0.0.0.0:9187");
        let e = err(&remote, d);
        assert!(e.starts_with("metrics.listen: 0.0.0.0:9187 is not a loopback"), "{e}");
        let allowed = remote.replace("# allow_remote = false", "allow_remote = true");
        let c = Config::from_toml(&allowed, &d.join("gateway.toml")).expect("remote allowed");
        assert_eq!(c.metrics, Some("0.0.0.0:9187".parse().expect("addr")));
        let e = err(&on.replace("127.0.0.1:9187", "localhost"), d);
        assert!(e.starts_with("metrics.listen: \"localhost\" is not an address"), "{e}");
    }

    /// The default config with its `[ledgers.factory]` example switched on.
    fn with_ledger(dir: &Path) -> String {
        let c = ledger::keys::generate_cosigner("factory.example/witness").expect("cosigner");
        std::fs::write(dir.join("factory.witness.vkey"), c.verifier().to_vkey()).expect("vkey");
        std::fs::write(
            dir.join("ca.pem"),
            rcgen::generate_simple_self_signed(vec!["ca.example".to_owned()])
                .expect("a test CA")
                .cert
                .pem(),
        )
        .expect("ca");
        let mut out = String::new();
        let mut on = false;
        for line in default_in(dir).lines() {
            if line.starts_with("# [ledgers.factory]") {
                on = true;
            }
            let l = if on { line.strip_prefix("# ").unwrap_or(line) } else { line };
            out.push_str(l);
            out.push('\n');
        }
        out.replace(
            "/etc/iov/keys/factory.witness.vkey",
            &dir.join("factory.witness.vkey").display().to_string(),
        )
        .replace("/etc/iov/ledger-ca.pem", &dir.join("ca.pem").display().to_string())
    }

    #[test]
    fn the_ledger_example_validates_into_typed_values() {
        let k = keys();
        let d = k.dir.path();
        let c = Config::from_toml(&with_ledger(d), &d.join("gateway.toml")).expect("validates");
        assert_eq!(c.ledgers.len(), 1);
        let l = &c.ledgers[0];
        assert_eq!(l.name, "factory");
        assert_eq!(l.url.as_str(), "https://factory-ledger.example:8443/");
        assert_eq!(l.lanes, ["factory"]);
        assert_eq!(l.bandwidth.map(|b| b.get()), Some(256 * 1024));
        assert_eq!((l.batch_blocks.get(), l.batch_bytes.get()), (64, 4 << 20));
        assert_eq!(
            (l.backoff_min, l.backoff_max),
            (Duration::from_millis(500), Duration::from_secs(60))
        );
        assert_eq!(l.timeout, Duration::from_secs(30));
        assert!(l.ca_pem.is_some());
        assert_eq!(ledger::note::Verifier::name(&l.cosigner), "factory.example/witness");
        // Without the section: no ledgers.
        let none = Config::from_toml(&default_in(d), &d.join("gateway.toml")).expect("validates");
        assert!(none.ledgers.is_empty());
    }

    #[test]
    fn ledger_errors_name_the_key() {
        let k = keys();
        let d = k.dir.path();
        let base = with_ledger(d);
        let e = err(&base.replace("lanes = [\"factory\"]", "lanes = [\"fctory\"]"), d);
        assert!(e.starts_with("ledgers.factory.lanes[0]: \"fctory\" is not a lane"), "{e}");
        let e = err(&base.replace("https://factory-ledger.example:8443/", "ftp://x/"), d);
        assert!(e.starts_with("ledgers.factory.url: "), "{e}");
        let e = err(&base.replace("bandwidth = \"256 KiB\"", "bandwidth = \"0\""), d);
        assert!(e.starts_with("ledgers.factory.bandwidth: "), "{e}");
        let e = err(&base.replace("backoff_max = \"60s\"", "backoff_max = \"1ms\""), d);
        assert!(e.starts_with("ledgers.factory.backoff_max: "), "{e}");
        let signer_vkey = k.dir.path().join("signing.vkey");
        std::fs::write(
            &signer_vkey,
            ledger::keys::generate_signer("a.example/gw").expect("s").verifier().to_vkey(),
        )
        .expect("write");
        let e = err(
            &base.replace(
                &d.join("factory.witness.vkey").display().to_string(),
                &signer_vkey.display().to_string(),
            ),
            d,
        );
        assert!(e.starts_with("ledgers.factory.cosigner_file: not a cosignature"), "{e}");
        let e = err(&base.replace("cosigner_file = ", "cosigner = \"x\"\ncosigner_file = "), d);
        assert!(e.starts_with("ledgers.factory.cosigner: give exactly one"), "{e}");
        let e = err(&base.replace("https://factory", "http://factory"), d);
        assert!(e.starts_with("ledgers.factory.ca_file: set, but the url is not https"), "{e}");
        // A CA file whose PEM holds no certificate rustls accepts is refused at load time.
        std::fs::write(
            d.join("ca.pem"),
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let e = err(&base, d);
        assert!(e.starts_with("ledgers.factory.ca_file: ") && e.contains("certificate 1: "), "{e}");
        std::fs::write(d.join("ca.pem"), "not a certificate\n").expect("write");
        let e = err(&base, d);
        assert!(e.starts_with("ledgers.factory.ca_file: ") && e.contains("no PEM"), "{e}");
        let e = err(&base.replace("timeout = \"30s\"", "timeout = \"30s\"\nretries = 3"), d);
        assert!(e.contains("retries"), "{e}");
    }

    #[test]
    fn self_lanes_need_the_history_key_and_api_keys_are_checked() {
        let k = keys();
        let d = k.dir.path();
        let base = default_in(d);
        let local = base.replace(
            "# [lanes.local]\n# carries = \"raw\"\n# recipients = [\"self\"]",
            "[lanes.local]\ncarries = \"raw\"\nrecipients = [\"self\"]",
        );
        let e = err(&local, d);
        assert!(
            e.starts_with("lanes.local.recipients[0]: \"self\" is the gateway's own key"),
            "{e}"
        );
        let gk = ledger::keys::X25519Key::generate("gw").expect("x25519");
        ledger::keys::save_x25519(&d.join("x25519.key"), &gk).expect("save");
        let with_key = local.replace(
            "# history_key = \"/var/lib/iov-gateway/keys/x25519.key\"",
            &format!("history_key = \"{}\"", d.join("x25519.key").display()),
        );
        let c = Config::from_toml(&with_key, &d.join("gateway.toml")).expect("self lane");
        let l = c.lanes.iter().find(|l| l.name == "local").expect("local lane");
        assert_eq!(l.recipients, vec![gk.public()]);
        assert!(c.api.is_none(), "absent [api]: not served");
        let e = err(&with_key.replace("[recipients]\n", "[recipients]\nself = \"city.pub\"\n"), d);
        assert!(e.starts_with("recipients.self: \"self\" is reserved"), "{e}");
        chmod(&d.join("x25519.key"), 0o640);
        let e = err(&with_key, d);
        assert!(e.starts_with("gateway.history_key: ") && e.contains("0640"), "{e}");
        chmod(&d.join("x25519.key"), 0o600);

        let api = with_key.replace("# [api]\n# socket", "[api]\nsocket");
        let c = Config::from_toml(&api, &d.join("gateway.toml")).expect("api");
        let a = c.api.expect("api section");
        assert_eq!(a.socket.as_deref(), Some(Path::new("/run/iov-gateway/api.sock")));
        assert_eq!((a.listen, a.max_rows.get(), a.max_concurrent.get()), (None, 100_000, 8));
        let e = err(&api.replace("# listen = \"127.0.0.1:9188\"", "listen = \"0.0.0.0:9188\""), d);
        assert!(e.starts_with("api.listen: 0.0.0.0:9188 is not a loopback"), "{e}");
        let e =
            err(&api.replace("socket = \"/run/iov-gateway/api.sock\"", "socket = \"api.sock\""), d);
        assert!(e.starts_with("api.socket: api.sock is not an absolute path"), "{e}");
        let e = err(&api.replace("socket = \"/run/iov-gateway/api.sock\"", "max_rows = 0"), d);
        assert!(e.starts_with("api: set socket"), "{e}");
    }

    #[test]
    fn retention_parses_with_defaults_and_names_bad_keys() {
        let k = keys();
        let d = k.dir.path();
        let base = default_in(d);
        let c = Config::from_toml(&base, &d.join("gateway.toml")).expect("default");
        assert_eq!(c.retention, RetentionConfig::default());
        let on = base.replace("# [retention]\n# quota", "[retention]\nquota");
        let c = Config::from_toml(&on, &d.join("gateway.toml")).expect("retention");
        assert_eq!(
            c.retention.policy,
            Some(RetentionPolicy {
                quota: 2 << 30,
                low_watermark: (2u64 << 30) / 100 * 90,
                when_full: WhenFull::Stop,
                recheck: Duration::from_secs(1),
            })
        );
        let drop = on.replace("# when_full = \"stop\"", "when_full = \"drop-oldest\"");
        let c = Config::from_toml(&drop, &d.join("gateway.toml")).expect("drop-oldest");
        assert_eq!(c.retention.policy.map(|p| p.when_full), Some(WhenFull::DropOldest));
        let e = err(&on.replace("# when_full = \"stop\"", "when_full = \"panic\""), d);
        assert!(e.starts_with("retention.when_full: \"panic\""), "{e}");
        let e = err(&on.replace("# low_watermark = \"90%\"", "low_watermark = \"3 GiB\""), d);
        assert!(e.starts_with("retention.low_watermark: \"3 GiB\""), "{e}");
        let e = err(&on.replace("# low_watermark = \"90%\"", "low_watermark = \"100%\""), d);
        assert!(e.starts_with("retention.low_watermark: \"100%\""), "{e}");
        let e = err(&on.replace("quota = \"2 GiB\"", "quota = \"100 KiB\""), d);
        assert!(e.starts_with("retention.quota: "), "{e}");
        let e = err(&on.replace("quota = \"2 GiB\"", "quota = \"2 GiB\"\nquotta = 1"), d);
        assert!(e.contains("quotta"), "{e}");
    }

    #[test]
    fn a_signing_key_readable_by_others_is_refused() {
        let k = keys();
        chmod(&k.dir.path().join("signing.key"), 0o644);
        let e = err(&default_in(k.dir.path()), k.dir.path());
        assert!(e.starts_with("gateway.signing_key: ") && e.contains("0644"), "{e}");
    }

    #[test]
    fn a_recipient_key_with_a_wrong_id_is_refused() {
        let k = keys();
        let p = k.dir.path().join("city.pub");
        let text = std::fs::read_to_string(&p).expect("read");
        let mut parts: Vec<&str> = text.split('+').collect();
        parts[1] = if parts[1] == "00000000" { "00000001" } else { "00000000" };
        std::fs::write(&p, parts.join("+")).expect("write");
        let e = err(&default_in(k.dir.path()), k.dir.path());
        assert!(e.starts_with("recipients.city: ") && e.contains("key id"), "{e}");
    }

    #[test]
    fn durations_and_sizes_parse_with_units() {
        assert_eq!(parse_duration("k", "250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("k", "1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("k", "5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("k", "5 fortnights").is_err());
        assert_eq!(parse_size("k", "4 MiB"), Ok(4 << 20));
        assert_eq!(parse_size("k", "1000"), Ok(1000));
        assert!(parse_size("k", "-1").is_err());
    }

    #[test]
    fn missing_keys_follow_key_provisioning() {
        let k = keys();
        let dir = k.dir.path();
        std::fs::remove_file(dir.join("signing.key")).expect("rm");
        let path = dir.join("gateway.toml");
        // "generate" (the default config): loading for a run refuses until provisioning made
        // the key; check-config accepts it with a stand-in; the plan names it.
        let text = default_in(dir);
        std::fs::write(&path, &text).expect("write");
        let e = err(&text, dir);
        assert!(
            e.starts_with("gateway.signing_key: ") && e.contains("generates it on first start"),
            "{e}"
        );
        Config::load_for_check(&path).expect("check-config accepts a key still to be generated");
        let plan = Config::key_plan(&path).expect("plan");
        assert_eq!(plan.provisioning, KeyProvisioning::Generate);
        assert_eq!(plan.signing_key, dir.join("signing.key"));
        // "provisioned": refused by check-config too, naming the key and the mode.
        let prov =
            text.replace("key_provisioning = \"generate\"", "key_provisioning = \"provisioned\"");
        std::fs::write(&path, &prov).expect("write");
        let e = Config::load_for_check(&path).expect_err("refused").to_string();
        assert!(e.starts_with("gateway.signing_key: ") && e.contains("\"provisioned\""), "{e}");
        // Once the key exists (as provisioning writes it), the run's load works and uses it.
        crate::provision::ensure_keys(&plan).expect("generate");
        let c = Config::from_toml(&text, &path).expect("loads");
        let on_disk = ledger::keys::load_signer(&dir.join("signing.key")).expect("key");
        assert_eq!(c.signer.key_id(), on_disk.key_id());
    }

    #[test]
    fn key_provisioning_and_key_name_are_validated() {
        let k = keys();
        let dir = k.dir.path();
        let text = default_in(dir);
        let e = err(&text.replace("\"generate\"", "\"maybe\""), dir);
        assert!(e.starts_with("gateway.key_provisioning: ") && e.contains("\"maybe\""), "{e}");
        let e = err(
            &text.replace("# key_name = \"gw-0042.fleet.example/log\"", "key_name = \"a b\""),
            dir,
        );
        assert!(e.starts_with("gateway.key_name: "), "{e}");
        let e = err(&text.replace("key_provisioning", "key_provisoning"), dir);
        assert!(e.contains("unknown field `key_provisoning`"), "{e}");
        let named = text.replace(
            "# key_name = \"gw-0042.fleet.example/log\"",
            "key_name = \"gw-7.example/log\"",
        );
        let path = dir.join("gateway.toml");
        std::fs::write(&path, named).expect("write");
        assert_eq!(Config::key_plan(&path).expect("plan").name, "gw-7.example/log");
    }
}
