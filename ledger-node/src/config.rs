//! The node's one TOML file: raw structs that refuse unknown keys, validated into typed values
//! ([`Config`]). Every error names the key (`gateways[1].vkey`) and what is wrong; nothing here
//! panics on input. Validation loads the cosigner key (`ledger::keys`, refused unless 0600) and
//! the TLS certificate and key, so a node that starts has everything it needs.
//!
//! [`DEFAULT_CONFIG`] is what `iov-ledger print-default-config` prints; a test validates it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ledger::cosignature::Cosigner;
use ledger::note::{Ed25519Signer, Ed25519Verifier};
use serde::Deserialize;

use crate::store::Enrollment;
use crate::token::{Scope, TokenHash, TokenSet};

/// Where the daemon looks when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/iov/ledger.toml";

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    ledger: RawLedger,
    listen: RawListen,
    #[serde(default)]
    metrics: Option<RawMetrics>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    time: RawTime,
    #[serde(default)]
    tokens: Vec<RawToken>,
    #[serde(default)]
    gateways: Vec<RawGateway>,
    #[serde(default)]
    peers: Vec<crate::peers::RawPeer>,
    publication: Option<crate::peers::RawPublication>,
    cross_witness: Option<crate::peers::RawCrossWitness>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLedger {
    name: String,
    cosigner_key: PathBuf,
    log_key: Option<PathBuf>,
    store: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    address: String,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
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
struct RawLimits {
    #[serde(default = "default_upload")]
    max_upload_bytes: String,
    #[serde(default = "default_batch")]
    max_blocks_per_batch: usize,
    #[serde(default = "default_connections")]
    max_connections: usize,
    #[serde(default = "default_timeout")]
    request_timeout: String,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_upload_bytes: default_upload(),
            max_blocks_per_batch: default_batch(),
            max_connections: default_connections(),
            request_timeout: default_timeout(),
        }
    }
}

fn default_upload() -> String {
    "32MiB".into()
}
fn default_batch() -> usize {
    256
}
fn default_connections() -> usize {
    256
}
fn default_timeout() -> String {
    "60s".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTime {
    #[serde(default = "default_future")]
    future_tolerance: String,
}

impl Default for RawTime {
    fn default() -> Self {
        RawTime { future_tolerance: default_future() }
    }
}

fn default_future() -> String {
    "5m".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: String,
    sha256: Option<String>,
    blake3: Option<String>,
    scopes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    vkey: String,
    unit: String,
    lanes: Vec<String>,
}

/// TLS material, loaded.
#[derive(Clone, Debug)]
pub struct Tls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// The validated configuration.
#[derive(Debug)]
pub struct Config {
    /// Organisation name, shown in `/v1/link`.
    pub name: String,
    pub cosigner: Cosigner,
    /// Signs the aggregate log's checkpoints; its name is the aggregate log's origin. `None`:
    /// no aggregate log (`ledger.log_key` not set).
    pub log_signer: Option<Ed25519Signer>,
    pub store: PathBuf,
    pub listen: SocketAddr,
    pub tls: Option<Tls>,
    pub metrics_listen: Option<SocketAddr>,
    pub max_upload_bytes: usize,
    pub max_blocks_per_batch: usize,
    pub max_connections: usize,
    pub request_timeout: Duration,
    pub future_tolerance: Duration,
    pub tokens: TokenSet,
    /// Enrollments seeded from the file (added or updated at start).
    pub gateways: Vec<Enrollment>,
    /// Peer ledgers (cross-witnessing) and the publication policy.
    pub cross_witness: crate::peers::CrossWitness,
}

/// The commented example config `print-default-config` prints.
pub const DEFAULT_CONFIG: &str = r#"# iov-ledger configuration. Unknown keys are refused; errors name the key.

[ledger]
# Organisation name, shown to gateways in GET /v1/link.
name = "factory.example"
# Ed25519 cosigner key (C2SP tlog-cosignature, type 0x04), mode 0600:
#   iovctl keygen --out /etc/iov/keys/ledger --name factory.example/ledger --kind org
# writes it as witness.key. Its vkey is what gateways pin.
cosigner_key = "/etc/iov/keys/ledger/witness.key"
# Ed25519 log key (type 0x01, signing.key from the same keygen): signs the checkpoints of this
# ledger's aggregate log (GET /checkpoint, /tile/...), whose origin is the key's name. Without
# it the ledger keeps no aggregate log; set it from the start (leaves are not back-filled).
log_key = "/etc/iov/keys/ledger/signing.key"
# RocksDB directory (created if missing).
store = "/var/lib/iov-ledger/store"

[listen]
# Gateways and fleet tools connect here.
address = "0.0.0.0:7480"
# TLS (rustls). Both or neither; the key file must be 0600.
# tls_cert = "/etc/iov/tls/ledger.pem"
# tls_key = "/etc/iov/tls/ledger.key"

[metrics]
# Prometheus text at /metrics on its own listener. Loopback only unless allow_remote = true
# (the endpoint has no authentication).
listen = "127.0.0.1:9480"
allow_remote = false

[limits]
max_upload_bytes = "32MiB"       # largest upload body
max_blocks_per_batch = 256       # most blocks per upload (at most 1024)
max_connections = 256            # concurrent connections; more wait in the accept queue
request_timeout = "60s"          # a request (body included) must complete in this time

[time]
# A block whose last record time is later than its receipt time plus this is flagged
# (kept with the block, counted in metrics), never refused or reordered.
future_tolerance = "5m"

# Access tokens for the admin endpoints: the secret never appears here, only its SHA-256 (or
# BLAKE3) in hex:  printf %s "$SECRET" | sha256sum
# [[tokens]]
# name = "ops"
# sha256 = "<64 hex digits>"
# scopes = ["admin"]

# Gateways enrolled at start (more can be added with POST /v1/admin/gateways). The origin is
# the vkey's name.
# [[gateways]]
# vkey = "iov.example/gw/VIN123+1a2b3c4d+AQ..."   # cat <gateway keys>/signing.vkey
# unit = "VIN123"
# lanes = ["factory"]

# Cross-witnessing (ledger-node/README.md, "Cross-witnessing"): peer ledgers that cosign this
# ledger's aggregate checkpoints and whose aggregate checkpoints this ledger cosigns. Needs
# ledger.log_key. Each peer lists the same keys for this ledger.
# [[peers]]
# name = "city"                                   # A-Z a-z 0-9 - _ .
# url = "https://city.example:7480/"              # the peer's API (http or https)
# ca_file = "/etc/iov/tls/city-ca.pem"            # optional: pinned CA for its HTTPS
# log_vkey = "city.example/ledger+1a2b3c4d+AQ..."        # its signing.vkey (aggregate log)
# cosigner_vkey = "city.example/ledger+5e6f7a8b+BA..."   # its witness.vkey (cosigner)

# Publication policy (C2SP tlog-policy): GET /checkpoint serves the newest aggregate checkpoint
# cosigned by at least `quorum` of `witnesses`; newer ones wait. Defaults: every peer, all of
# them. quorum = 0 publishes with this ledger's own signature only (the behaviour without peers).
# [publication]
# witnesses = ["city"]
# quorum = 1

# [cross_witness]
# push_interval = "1s"       # how often each peer's pusher looks for a new aggregate checkpoint
# gossip_interval = "60s"    # how often each peer's published /checkpoint is fetched and checked
# request_timeout = "10s"    # one request to a peer
# max_backoff = "60s"        # longest wait after failures (exponential, with jitter)
"#;

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Config::from_toml(&text, path)
    }

    /// Parses and validates `text`; relative paths are relative to `path`'s directory.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        validate(raw, base)
    }
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_owned()
    } else {
        base.join(p)
    }
}

fn addr(key: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse().map_err(|_| invalid(key, format!("{text:?} is not an address like 0.0.0.0:7480")))
}

fn validate(raw: RawConfig, base: &Path) -> Result<Config, ConfigError> {
    let name = raw.ledger.name.trim().to_owned();
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(invalid("ledger.name", "must be a non-empty single line"));
    }
    let key_path = resolve(base, &raw.ledger.cosigner_key);
    let cosigner = ledger::keys::load_cosigner(&key_path)
        .map_err(|e| invalid("ledger.cosigner_key", e.to_string()))?;
    let log_signer = match &raw.ledger.log_key {
        None => None,
        Some(p) => Some(
            ledger::keys::load_signer(&resolve(base, p))
                .map_err(|e| invalid("ledger.log_key", e.to_string()))?,
        ),
    };
    let store = resolve(base, &raw.ledger.store);
    let listen = addr("listen.address", &raw.listen.address)?;
    let tls = match (raw.listen.tls_cert, raw.listen.tls_key) {
        (None, None) => None,
        (Some(c), Some(k)) => {
            let (cert_file, key_file) = (resolve(base, &c), resolve(base, &k));
            crate::tls::server_config(&cert_file, &key_file)
                .map_err(|e| invalid("listen.tls_cert", e.to_string()))?;
            Some(Tls { cert_file, key_file })
        }
        (Some(_), None) => {
            return Err(invalid("listen.tls_key", "missing: tls_cert needs tls_key"))
        }
        (None, Some(_)) => {
            return Err(invalid("listen.tls_cert", "missing: tls_key needs tls_cert"))
        }
    };
    let metrics_listen = match raw.metrics {
        None => None,
        Some(m) => {
            let a = addr("metrics.listen", &m.listen)?;
            if !a.ip().is_loopback() && !m.allow_remote {
                return Err(invalid(
                    "metrics.listen",
                    format!("{a} is not loopback; set metrics.allow_remote = true to expose it"),
                ));
            }
            Some(a)
        }
    };
    let max_upload_bytes = parse_size("limits.max_upload_bytes", &raw.limits.max_upload_bytes)?;
    if max_upload_bytes < 4096 {
        return Err(invalid("limits.max_upload_bytes", "must be at least 4 KiB"));
    }
    let max_blocks_per_batch = raw.limits.max_blocks_per_batch;
    if !(1..=ledger::sync_wire::MAX_BLOCKS_PER_BATCH).contains(&max_blocks_per_batch) {
        return Err(invalid(
            "limits.max_blocks_per_batch",
            format!("must be 1..={}", ledger::sync_wire::MAX_BLOCKS_PER_BATCH),
        ));
    }
    if raw.limits.max_connections == 0 {
        return Err(invalid("limits.max_connections", "must be at least 1"));
    }
    let request_timeout = parse_duration("limits.request_timeout", &raw.limits.request_timeout)?;
    if request_timeout.is_zero() {
        return Err(invalid("limits.request_timeout", "must be more than 0"));
    }
    let future_tolerance = parse_duration("time.future_tolerance", &raw.time.future_tolerance)?;

    let mut tokens = TokenSet::default();
    for (i, t) in raw.tokens.into_iter().enumerate() {
        let key = |k: &str| format!("tokens[{i}].{k}");
        if t.name.trim().is_empty() {
            return Err(invalid(key("name"), "must not be empty"));
        }
        let hash = match (t.sha256, t.blake3) {
            (Some(h), None) => TokenHash::sha256_hex(&h).map_err(|e| invalid(key("sha256"), e))?,
            (None, Some(h)) => TokenHash::blake3_hex(&h).map_err(|e| invalid(key("blake3"), e))?,
            _ => return Err(invalid(key("sha256"), "give exactly one of sha256 or blake3")),
        };
        let mut scopes = Vec::new();
        for (j, s) in t.scopes.iter().enumerate() {
            scopes
                .push(Scope::parse(s).map_err(|e| invalid(format!("tokens[{i}].scopes[{j}]"), e))?);
        }
        if scopes.is_empty() {
            return Err(invalid(key("scopes"), "list at least one scope (admin)"));
        }
        tokens.add(t.name, hash, scopes);
    }

    let mut gateways: Vec<Enrollment> = Vec::new();
    for (i, g) in raw.gateways.into_iter().enumerate() {
        let e = enrollment(g.vkey, g.unit, g.lanes)
            .map_err(|(k, p)| invalid(format!("gateways[{i}].{k}"), p))?;
        if gateways.iter().any(|o| o.origin == e.origin) {
            return Err(invalid(
                format!("gateways[{i}].vkey"),
                format!("origin {} is enrolled twice", e.origin),
            ));
        }
        gateways.push(e);
    }
    let cross_witness = crate::peers::validate(
        raw.peers,
        raw.publication,
        raw.cross_witness,
        base,
        log_signer.as_ref(),
    )?;
    Ok(Config {
        name,
        cosigner,
        log_signer,
        store,
        listen,
        tls,
        metrics_listen,
        max_upload_bytes,
        max_blocks_per_batch,
        max_connections: raw.limits.max_connections,
        request_timeout,
        future_tolerance,
        tokens,
        gateways,
        cross_witness,
    })
}

/// Validates one enrollment (config or admin API): the vkey parses as an Ed25519 log key, the
/// unit is non-empty, lanes are valid lane names without repeats. Errors: `(field, problem)`.
pub fn enrollment(
    vkey: String,
    unit: String,
    lanes: Vec<String>,
) -> Result<Enrollment, (&'static str, String)> {
    let v = Ed25519Verifier::from_vkey(vkey.trim())
        .map_err(|e| ("vkey", format!("not an Ed25519 verifier key: {e}")))?;
    let unit = unit.trim().to_owned();
    if unit.is_empty() || unit.chars().any(char::is_control) {
        return Err(("unit", "must be a non-empty single line".into()));
    }
    if lanes.is_empty() {
        return Err(("lanes", "list at least one lane name this organisation receives".into()));
    }
    for (j, l) in lanes.iter().enumerate() {
        if l.is_empty() || l.len() > ledger::block::MAX_LANE_NAME {
            return Err(("lanes", format!("lanes[{j}] {l:?} is not a lane name (1..=64 bytes)")));
        }
        if lanes[..j].contains(l) {
            return Err(("lanes", format!("lane {l:?} is listed twice")));
        }
    }
    use ledger::note::Verifier as _;
    Ok(Enrollment { origin: v.name().to_owned(), vkey: vkey.trim().to_owned(), unit, lanes })
}

/// A duration in the project's one grammar (`ledger::units`, D255), errors naming `key`.
pub fn parse_duration(key: &str, text: &str) -> Result<Duration, ConfigError> {
    ledger::units::parse_duration(text).map_err(|m| invalid(key, m))
}

/// A size in the project's one grammar (`ledger::units`, D255), errors naming `key`.
pub fn parse_size(key: &str, text: &str) -> Result<usize, ConfigError> {
    ledger::units::parse_size(text).map_err(|m| invalid(key, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let c = ledger::keys::generate_cosigner("factory.example/ledger").unwrap();
        ledger::keys::save_cosigner(&dir.path().join("witness.key"), &c).unwrap();
        let l = ledger::keys::generate_signer("factory.example/ledger").unwrap();
        ledger::keys::save_signer(&dir.path().join("signing.key"), &l).unwrap();
        let text = DEFAULT_CONFIG
            .replace("/etc/iov/keys/ledger/witness.key", "witness.key")
            .replace("/etc/iov/keys/ledger/signing.key", "signing.key")
            .replace("/var/lib/iov-ledger/store", "store");
        (dir, text)
    }

    fn err(text: &str, dir: &Path) -> String {
        Config::from_toml(text, &dir.join("ledger.toml")).unwrap_err().to_string()
    }

    #[test]
    fn the_printed_default_config_validates() {
        let (dir, text) = setup();
        let c = Config::from_toml(&text, &dir.path().join("ledger.toml")).unwrap();
        assert_eq!(c.name, "factory.example");
        assert_eq!(c.max_blocks_per_batch, 256);
        assert_eq!(c.max_upload_bytes, 32 << 20);
        assert_eq!(c.future_tolerance, Duration::from_secs(300));
        assert_eq!(c.store, dir.path().join("store"));
        assert!(c.log_signer.is_some());
        // log_key is optional: without it the ledger keeps no aggregate log.
        let without = text.replace("log_key = \"signing.key\"\n", "");
        let c = Config::from_toml(&without, &dir.path().join("ledger.toml")).unwrap();
        assert!(c.log_signer.is_none());
    }

    #[test]
    fn errors_name_the_key() {
        let (dir, text) = setup();
        let d = dir.path();
        assert!(err(&format!("{text}\n[extra]\nx = 1\n"), d).contains("unknown field `extra`"));
        let cases = [
            (text.replace("0.0.0.0:7480", "nowhere"), "listen.address"),
            (text.replace("127.0.0.1:9480", "0.0.0.0:9480"), "metrics.listen"),
            (
                text.replace("max_blocks_per_batch = 256", "max_blocks_per_batch = 5000"),
                "limits.max_blocks_per_batch",
            ),
            (text.replace("\"32MiB\"", "\"32 parsecs\""), "limits.max_upload_bytes"),
            (text.replace("\"5m\"", "\"soon\""), "time.future_tolerance"),
            (text.replace("witness.key", "missing.key"), "ledger.cosigner_key"),
            (
                format!(
                    "{text}\n[[tokens]]\nname = \"ops\"\nsha256 = \"abc\"\nscopes = [\"admin\"]\n"
                ),
                "tokens[0].sha256",
            ),
            (
                format!(
                    "{text}\n[[tokens]]\nname = \"ops\"\nsha256 = \"{}\"\nscopes = [\"root\"]\n",
                    "a".repeat(64)
                ),
                "tokens[0].scopes[0]",
            ),
            (
                format!(
                    "{text}\n[[gateways]]\nvkey = \"nope\"\nunit = \"V\"\nlanes = [\"factory\"]\n"
                ),
                "gateways[0].vkey",
            ),
            (
                text.replace("# tls_cert = \"/etc/iov/tls/ledger.pem\"", "tls_cert = \"c.pem\""),
                "listen.tls_key",
            ),
        ];
        for (t, key) in cases {
            let e = err(&t, d);
            assert!(e.starts_with(key), "want {key}: {e}");
        }
    }

    #[test]
    fn a_cosigner_key_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let (dir, text) = setup();
        let p = dir.path().join("witness.key");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = err(&text, dir.path());
        assert!(e.contains("ledger.cosigner_key") && e.contains("0644"), "{e}");
    }
}
