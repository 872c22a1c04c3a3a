//! Where a log's files come from: a directory or an HTTP(S) base URL. Every read is bounded in
//! size (and, over HTTP, in time), and "not there" is kept apart from other failures so the
//! caller can apply the partial-tile fallback and `--entries`.

use std::fs::File;
use std::io::{ErrorKind, Read as _};
use std::path::PathBuf;
use std::time::Duration;

/// A file of the log that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// 404 / no such file.
    NotFound { path: String },
    /// The log served more than `limit` bytes for `path`: the log is wrong, not the network.
    TooLarge { path: String, limit: u64 },
    /// Anything else (connection, timeout, HTTP 5xx, permissions): retryable.
    Other { path: String, reason: String },
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::NotFound { path } => write!(f, "{path}: not found"),
            FetchError::TooLarge { path, limit } => {
                write!(f, "{path}: larger than the {limit}-byte limit for this file")
            }
            FetchError::Other { path, reason } => write!(f, "{path}: {reason}"),
        }
    }
}

impl std::error::Error for FetchError {}

enum Location {
    Dir(PathBuf),
    Url { base: String, agent: ureq::Agent },
}

/// Reads files of one log.
pub struct Fetcher {
    location: Location,
    /// What the user gave, for messages.
    display: String,
}

impl Fetcher {
    /// `log` is an `http://` or `https://` base URL, or a directory. No I/O happens here.
    pub fn new(log: &str, timeout: Duration) -> Fetcher {
        let location = if log.starts_with("http://") || log.starts_with("https://") {
            let config = ureq::Agent::config_builder()
                .timeout_global(Some(timeout))
                .http_status_as_error(true)
                .max_redirects(3)
                .user_agent(concat!("iovctl/", env!("CARGO_PKG_VERSION")))
                .build();
            Location::Url { base: log.trim_end_matches('/').to_owned(), agent: config.into() }
        } else {
            Location::Dir(PathBuf::from(log))
        };
        Fetcher { location, display: log.to_owned() }
    }

    pub fn display(&self) -> &str {
        &self.display
    }

    /// The file at `path` (relative to the log prefix, e.g. `tile/0/000`), at most `limit` bytes.
    pub fn get(&self, path: &str, limit: u64) -> Result<Vec<u8>, FetchError> {
        match &self.location {
            Location::Dir(dir) => {
                let full = dir.join(path);
                let other = |e: std::io::Error| FetchError::Other {
                    path: full.display().to_string(),
                    reason: e.to_string(),
                };
                let f = match File::open(&full) {
                    Ok(f) => f,
                    Err(e) if e.kind() == ErrorKind::NotFound => {
                        return Err(FetchError::NotFound { path: full.display().to_string() })
                    }
                    Err(e) => return Err(other(e)),
                };
                let mut out = Vec::new();
                f.take(limit.saturating_add(1)).read_to_end(&mut out).map_err(other)?;
                if out.len() as u64 > limit {
                    return Err(FetchError::TooLarge { path: full.display().to_string(), limit });
                }
                Ok(out)
            }
            Location::Url { base, agent } => {
                let url = format!("{base}/{path}");
                let mut resp = match agent.get(&url).call() {
                    Ok(r) => r,
                    Err(ureq::Error::StatusCode(404 | 410)) => {
                        return Err(FetchError::NotFound { path: url })
                    }
                    Err(e) => return Err(FetchError::Other { path: url, reason: e.to_string() }),
                };
                match resp.body_mut().with_config().limit(limit).read_to_vec() {
                    Ok(b) => Ok(b),
                    Err(ureq::Error::BodyExceedsLimit(_)) => {
                        Err(FetchError::TooLarge { path: url, limit })
                    }
                    Err(e) => Err(FetchError::Other { path: url, reason: e.to_string() }),
                }
            }
        }
    }
}
