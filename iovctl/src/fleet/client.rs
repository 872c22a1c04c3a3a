//! A blocking client of the ledger's HTTP API (`docs/api/ledger-openapi.json`). Transport
//! only: answers are parsed but not trusted; [`super::verify`] checks them.

use std::path::Path;
use std::time::Duration;

use ledger::sync_wire::{self, ErrorBody, Link, QueryBlocks};
use serde::Deserialize;
use zeroize::Zeroizing;

/// Largest query answer read (a page of at most 1024 blocks with their lanes).
pub const MAX_ANSWER_BYTES: u64 = 512 << 20;
/// Largest JSON or link answer read.
const MAX_SMALL_BYTES: u64 = 16 << 20;

/// Why a request did not produce an answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The ledger could not be reached (DNS, TCP, TLS, timeout): retryable.
    #[error("{url}: cannot reach the ledger: {reason}")]
    Connect { url: String, reason: String },
    /// The ledger answered with an error status and code.
    #[error("{url}: the ledger refused: HTTP {status} {code}: {reason}")]
    Refused { url: String, status: u16, code: String, reason: String },
    /// The answer could not be read or parsed.
    #[error("{url}: unreadable answer: {reason}")]
    Answer { url: String, reason: String },
    /// A token or CA file could not be used.
    #[error("{path}: {reason}")]
    Token { path: String, reason: String },
}

impl ClientError {
    /// HTTP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// A refusal or the transport (not a malformed answer): exit status 2 in the CLI.
    pub fn is_connection(&self) -> bool {
        matches!(self, ClientError::Connect { .. } | ClientError::Token { .. })
    }
}

/// One gateway enrolled for a unit (`GET /v1/units/{unit}/gateways`).
#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct UnitGateway {
    pub origin: String,
    pub vkey: String,
    pub unit: String,
    pub lanes: Vec<String>,
    pub witnessed: u64,
    pub mirrored: u64,
}

/// A ledger's base URL with an optional bearer token.
pub struct Ledger {
    base: String,
    agent: ureq::Agent,
    token: Option<Zeroizing<String>>,
}

/// Reads a bearer token from a file that only its owner can read (like a key file); the
/// secret is the file's first line.
pub fn read_token_file(path: &Path) -> Result<Zeroizing<String>, ClientError> {
    let text = ledger::keys::read_secret_file(path).map_err(|e| ClientError::Token {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let first = text.lines().next().unwrap_or("").trim();
    if first.is_empty() {
        return Err(ClientError::Token {
            path: path.display().to_string(),
            reason: "empty: the file should hold the token's secret on its first line".into(),
        });
    }
    Ok(Zeroizing::new(first.to_owned()))
}

/// Reads the PEM certificates of a CA file (for a ledger whose certificate a private CA or
/// the ledger itself signed).
pub fn read_ca_file(path: &Path) -> Result<Vec<ureq::tls::Certificate<'static>>, ClientError> {
    let bad = |reason: String| ClientError::Token { path: path.display().to_string(), reason };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let ureq::tls::PemItem::Certificate(c) = item.map_err(|e| bad(e.to_string()))? {
            certs.push(c);
        }
    }
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(certs)
}

impl Ledger {
    /// `base` is `http://host:port` or `https://...` (the system's roots); no I/O happens here.
    pub fn new(base: &str, token: Option<Zeroizing<String>>, timeout: Duration) -> Ledger {
        Ledger::with_roots(base, token, timeout, None)
    }

    /// [`Ledger::new`] trusting only `roots` for HTTPS when given.
    pub fn with_roots(
        base: &str,
        token: Option<Zeroizing<String>>,
        timeout: Duration,
        roots: Option<Vec<ureq::tls::Certificate<'static>>>,
    ) -> Ledger {
        let mut b = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("iovctl/", env!("CARGO_PKG_VERSION")));
        if let Some(r) = roots {
            b = b.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(r)))
                    .build(),
            );
        }
        Ledger { base: base.trim_end_matches('/').to_owned(), agent: b.build().into(), token }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET `path`; the body of a 2xx answer, else the refusal with its code and reason.
    fn get(&self, path: &str, limit: u64) -> Result<Vec<u8>, ClientError> {
        let url = self.url(path);
        let mut req = self.agent.get(&url);
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {}", t.as_str()));
        }
        let resp = req
            .call()
            .map_err(|e| ClientError::Connect { url: url.clone(), reason: e.to_string() })?;
        answer(url, resp, limit)
    }

    fn post_json(&self, path: &str, body: String) -> Result<Vec<u8>, ClientError> {
        let url = self.url(path);
        let mut req = self.agent.post(&url).header("content-type", "application/json");
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {}", t.as_str()));
        }
        let resp = req
            .send(body)
            .map_err(|e| ClientError::Connect { url: url.clone(), reason: e.to_string() })?;
        answer(url, resp, MAX_SMALL_BYTES)
    }

    /// `GET /v1/link`: the ledger's name and cosigner vkey (unauthenticated: pin the vkey).
    pub fn link(&self) -> Result<Link, ClientError> {
        let body = self.get(sync_wire::path::LINK, MAX_SMALL_BYTES)?;
        Link::from_cbor(&body).map_err(|e| ClientError::Answer {
            url: self.url(sync_wire::path::LINK),
            reason: e.to_string(),
        })
    }

    /// `GET /v1/units/{unit}/gateways`.
    pub fn unit_gateways(&self, unit: &str) -> Result<Vec<UnitGateway>, ClientError> {
        let path = format!("/v1/units/{}/gateways", sync_wire::escape_origin(unit));
        let body = self.get(&path, MAX_SMALL_BYTES)?;
        serde_json::from_slice(&body)
            .map_err(|e| ClientError::Answer { url: self.url(&path), reason: e.to_string() })
    }

    fn query(&self, path: &str) -> Result<QueryBlocks, ClientError> {
        let body = self.get(path, MAX_ANSWER_BYTES)?;
        QueryBlocks::from_cbor(&body, MAX_ANSWER_BYTES as usize)
            .map_err(|e| ClientError::Answer { url: self.url(path), reason: e.to_string() })
    }

    /// `GET /v1/query/{origin}/blocks?from=&to=`: blocks `[from, to)` (the ledger may cut the
    /// answer short: page from its `end`).
    pub fn query_heights(
        &self,
        origin: &str,
        from: u64,
        to: u64,
    ) -> Result<QueryBlocks, ClientError> {
        self.query(&sync_wire::path::query_blocks(origin, from, to))
    }

    /// `GET /v1/query/{origin}/blocks?since_ns=&until_ns=`: `None` when the ledger holds no
    /// block overlapping `[since, until)` (its 404, which proves nothing by itself).
    pub fn query_times(
        &self,
        origin: &str,
        since_ns: u64,
        until_ns: u64,
    ) -> Result<Option<QueryBlocks>, ClientError> {
        match self.query(&sync_wire::path::query_times(origin, since_ns, until_ns)) {
            Ok(q) => Ok(Some(q)),
            Err(ClientError::Refused { status: 404, code, .. }) if code == "not_found" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /v1/admin/gateways` (scope admin): the stored enrollment as JSON.
    pub fn enroll(
        &self,
        vkey: &str,
        unit: &str,
        lanes: &[String],
    ) -> Result<serde_json::Value, ClientError> {
        let body = serde_json::json!({"vkey": vkey, "unit": unit, "lanes": lanes}).to_string();
        let path = "/v1/admin/gateways";
        let answer = self.post_json(path, body)?;
        serde_json::from_slice(&answer)
            .map_err(|e| ClientError::Answer { url: self.url(path), reason: e.to_string() })
    }

    /// `GET /v1/admin/gateways` (scope admin): every enrollment with its sizes.
    pub fn admin_gateways(&self) -> Result<Vec<serde_json::Value>, ClientError> {
        let path = "/v1/admin/gateways";
        let body = self.get(path, MAX_SMALL_BYTES)?;
        serde_json::from_slice(&body)
            .map_err(|e| ClientError::Answer { url: self.url(path), reason: e.to_string() })
    }
}

/// The body of a 2xx answer; a refusal's code and reason from its CBOR, JSON or text body.
fn answer(
    url: String,
    mut resp: ureq::http::Response<ureq::Body>,
    limit: u64,
) -> Result<Vec<u8>, ClientError> {
    let status = resp.status().as_u16();
    let ctype =
        resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body = resp
        .body_mut()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|e| ClientError::Answer { url: url.clone(), reason: e.to_string() })?;
    if (200..300).contains(&status) {
        return Ok(body);
    }
    let (code, reason) = if ctype.starts_with(sync_wire::CBOR_TYPE) {
        match ErrorBody::from_cbor(&body) {
            Ok(e) => (e.code.as_str().to_owned(), e.reason),
            Err(_) => ("unknown".to_owned(), String::from_utf8_lossy(&body).into_owned()),
        }
    } else if ctype.starts_with("application/json") {
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        (
            v.get("code").and_then(|c| c.as_str()).unwrap_or("unknown").to_owned(),
            v.get("reason").and_then(|c| c.as_str()).unwrap_or("").to_owned(),
        )
    } else {
        let e = ErrorBody::from_text(&body);
        (e.code.as_str().to_owned(), e.reason)
    };
    Err(ClientError::Refused { url, status, code, reason })
}
