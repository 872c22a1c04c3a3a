//! A small blocking HTTP/1.1 client for the gateway's local API over its Unix socket: one
//! `GET` per connection (`Connection: close`), response head parsed with `httparse`, body read
//! as it arrives (chunked or not), so long histories stream through without buffering.

use std::io::{self, BufRead, BufReader, Read, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Where `iov-gateway` serves its API by default (`[api] socket`).
pub const DEFAULT_SOCKET: &str = "/run/iov-gateway/api.sock";

/// How long a read may wait for the gateway (a wedged gateway must not hang the tool).
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a request failed: reaching the gateway (exit 2) or its answer (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the gateway at {socket}: {reason} (is iov-gateway running with [api] socket set? --socket PATH)")]
    Connect { socket: String, reason: String },
    #[error("bad answer from the gateway: {0}")]
    Protocol(String),
}

/// A response whose body is still to be read.
pub struct Response {
    pub status: u16,
    pub body: Box<dyn BufRead>,
}

impl Response {
    /// The whole body as text.
    pub fn text(mut self) -> Result<String, ClientError> {
        let mut s = String::new();
        self.body.read_to_string(&mut s).map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(s)
    }
}

/// `GET target` (path and query) on the socket at `socket`.
pub fn get(socket: &Path, target: &str) -> Result<Response, ClientError> {
    let connect_err = |e: io::Error| ClientError::Connect {
        socket: socket.display().to_string(),
        reason: e.to_string(),
    };
    let mut stream = UnixStream::connect(socket).map_err(connect_err)?;
    stream.set_read_timeout(Some(READ_TIMEOUT)).map_err(connect_err)?;
    write!(stream, "GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(connect_err)?;
    let mut r = BufReader::with_capacity(64 * 1024, stream);
    let proto = |m: String| ClientError::Protocol(m);
    // The head: read up to the blank line (bounded).
    let mut head = Vec::new();
    loop {
        let n = r.read_until(b'\n', &mut head).map_err(|e| proto(e.to_string()))?;
        if n == 0 {
            return Err(proto("the connection closed before a response".into()));
        }
        if head.ends_with(b"\r\n\r\n") || head == b"\r\n" {
            break;
        }
        if head.len() > 64 * 1024 {
            return Err(proto("response head larger than 64 KiB".into()));
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(proto("incomplete response head".into())),
        Err(e) => return Err(proto(format!("response head: {e}"))),
    }
    let status = resp.code.ok_or_else(|| proto("no status code".into()))?;
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    let body: Box<dyn BufRead> =
        if header("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
            Box::new(BufReader::new(Chunked { inner: r, left: 0, done: false }))
        } else if let Some(len) = header("content-length") {
            let n: u64 = len.parse().map_err(|_| proto(format!("content-length {len:?}")))?;
            Box::new(r.take(n))
        } else {
            Box::new(r)
        };
    Ok(Response { status, body })
}

/// Reads an HTTP/1.1 chunked body.
struct Chunked<R> {
    inner: R,
    left: usize,
    done: bool,
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let bad =
            |m: &str| io::Error::new(io::ErrorKind::InvalidData, format!("chunked body: {m}"));
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let mut line = String::new();
            if self.inner.read_line(&mut line)? == 0 {
                return Err(bad("the connection closed mid-body"));
            }
            let size = line.trim_end().split(';').next().unwrap_or("").trim();
            self.left = usize::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
            if self.left == 0 {
                // Trailers until the blank line.
                loop {
                    line.clear();
                    if self.inner.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                        break;
                    }
                }
                self.done = true;
                return Ok(0);
            }
        }
        let n = buf.len().min(self.left);
        let got = self.inner.read(&mut buf[..n])?;
        if got == 0 {
            return Err(bad("the connection closed mid-chunk"));
        }
        self.left -= got;
        if self.left == 0 {
            let mut crlf = [0u8; 2];
            self.inner.read_exact(&mut crlf)?;
            if &crlf != b"\r\n" {
                return Err(bad("chunk not followed by CRLF"));
            }
        }
        Ok(got)
    }
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b',') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `{"error":{"code","message"}}` of an error answer, as `code: message`.
pub fn error_text(status: u16, body: &str) -> String {
    let v: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let e = v.as_ref().and_then(|v| v.get("error"));
    match e {
        Some(e) => format!(
            "{}: {}",
            e.get("code").and_then(|c| c.as_str()).unwrap_or("error"),
            e.get("message").and_then(|m| m.as_str()).unwrap_or("")
        ),
        None => format!("HTTP {status}: {}", body.trim()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_joined_and_trailers_skipped() {
        let raw = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-T: 1\r\n\r\n";
        let mut c = Chunked { inner: &raw[..], left: 0, done: false };
        let mut s = String::new();
        c.read_to_string(&mut s).expect("read");
        assert_eq!(s, "hello, world");
        let cut = b"5\r\nhel";
        let mut c = Chunked { inner: &cut[..], left: 0, done: false };
        assert!(c.read_to_string(&mut String::new()).is_err(), "a cut body is an error");
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("gnss_pos.Latitude,Speed"), "gnss_pos.Latitude,Speed");
        assert_eq!(encode("a b+c&d"), "a%20b%2Bc%26d");
    }
}
