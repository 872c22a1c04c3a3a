//! The HTTP shell of one ledger: reqwest over rustls (ring provider, the configured CA or the
//! built-in web roots), one request per call, every response body read with a size bound.
//! Every failure is classified ([`FailKind`]) for the core, the backoff and the metrics.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{StatusCode, Url};

use super::core::FailKind;
use crate::config::LedgerConfig;

/// Largest response body read (state, cosignatures, upload answers are small).
pub const MAX_RESPONSE: usize = 64 * 1024;

/// A failed request: what kind (for retries and metrics) and the detail for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", kind.label())]
pub struct Fail {
    pub kind: FailKind,
    pub detail: String,
}

impl Fail {
    pub fn new(kind: FailKind, detail: impl Into<String>) -> Fail {
        Fail { kind, detail: detail.into() }
    }
}

/// Why the client could not be built (a start-up error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("ledger {ledger}: ca_file: {reason}")]
    Ca { ledger: String, reason: String },
    #[error("ledger {ledger}: TLS setup: {reason}")]
    Tls { ledger: String, reason: String },
    #[error("ledger {ledger}: HTTP client: {reason}")]
    Http { ledger: String, reason: String },
}

/// A response: status, content type and the (bounded) body.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// One ledger's HTTP endpoint.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    ledger: String,
}

impl Client {
    /// Builds the client (no I/O beyond parsing the configured CA).
    pub fn new(cfg: &LedgerConfig) -> Result<Client, ClientError> {
        let mut roots = rustls::RootCertStore::empty();
        match &cfg.ca_pem {
            Some(pem) => {
                use rustls::pki_types::pem::PemObject as _;
                use rustls::pki_types::CertificateDer;
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| ClientError::Ca {
                        ledger: cfg.name.clone(),
                        reason: e.to_string(),
                    })?;
                    roots.add(cert).map_err(|e| ClientError::Ca {
                        ledger: cfg.name.clone(),
                        reason: e.to_string(),
                    })?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Tls { ledger: cfg.name.clone(), reason: e.to_string() })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("iov-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Http { ledger: cfg.name.clone(), reason: e.to_string() })?;
        Ok(Client { http, base: cfg.url.clone(), ledger: cfg.name.clone() })
    }

    /// `base` joined with a protocol path (`ledger::sync_wire::path`, already escaped).
    pub fn url(&self, path: &str) -> Url {
        let joined = format!("{}{path}", self.base.as_str().trim_end_matches('/'));
        // The base is a valid URL and the path is escaped, so this parses; fall back to the
        // base (the request then fails with the server's 404, visibly) rather than panic.
        Url::parse(&joined).unwrap_or_else(|_| self.base.clone())
    }

    pub async fn get(&self, url: Url) -> Result<Response, Fail> {
        self.send(self.http.get(url)).await
    }

    pub async fn post(
        &self,
        url: Url,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Response, Fail> {
        self.send(
            self.http.post(url).header(reqwest::header::CONTENT_TYPE, content_type).body(body),
        )
        .await
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Response, Fail> {
        let mut resp = req.send().await.map_err(|e| classify(&self.ledger, &e))?;
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| classify(&self.ledger, &e))? {
            if body.len() + chunk.len() > MAX_RESPONSE {
                return Err(Fail::new(
                    FailKind::Protocol,
                    format!("ledger {}: response larger than {MAX_RESPONSE} bytes", self.ledger),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response { status, content_type, body })
    }
}

fn classify(ledger: &str, e: &reqwest::Error) -> Fail {
    let kind = if e.is_timeout() { FailKind::Timeout } else { FailKind::Link };
    // reqwest's Display hides the cause chain ("error sending request"); keep it all.
    let mut detail = format!("ledger {ledger}: {e}");
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        src = s.source();
    }
    Fail::new(kind, detail)
}
