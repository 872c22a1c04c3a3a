//! The gateway -> ledger sync protocol on the wire (`docs/sync-protocol.md`): request and
//! response bodies, their limits, the error body, and the witness's pure `add-checkpoint`
//! decision. No I/O: the ledger node (server) and the gateway's sync agent (client) both build
//! on these types, so the two sides cannot drift apart.
//!
//! - `POST /add-checkpoint`: exactly C2SP tlog-witness (`fixtures/specs/c2sp-tlog-witness.md`):
//!   [`AddCheckpoint`] text body, [`check_add_checkpoint`] applies the spec's checks in its order.
//! - `GET /v1/link`: [`Link`] (CBOR).
//! - `POST /v1/gateways/{origin}/blocks`: [`Upload`] -> [`UploadAck`] (CBOR).
//! - `GET /v1/gateways/{origin}/state`: [`GatewayState`] (CBOR).
//! - errors: [`ErrorBody`] (CBOR on `/v1/...`, a text line on `/add-checkpoint`), [`ErrorCode`].
//!
//! CBOR messages are maps with text keys; decoders refuse missing or mistyped fields and
//! duplicate keys, and ignore unknown keys (a later minor version may add fields). Nothing here is
//! hashed or signed except what already has a layout (header bytes, checkpoint notes,
//! cosignatures), so the maps need not be canonical.

use std::fmt;

use ciborium::Value;

use crate::checkpoint::{Checkpoint, CheckpointError, SignedCheckpoint};
use crate::merkle::{self, Hash, VerifyError, HASH_SIZE};
use crate::note::{Ed25519Verifier, Note, NoteError, Signature, Verifier, MAX_NOTE_BYTES};

/// Protocol name and major version, in [`Link`]. A client refuses a ledger with another major.
pub const PROTOCOL: &str = "iov-sync/1";
/// Version field of every CBOR message.
pub const WIRE_VERSION: u64 = 1;

/// `Content-Type` of CBOR bodies.
pub const CBOR_TYPE: &str = "application/cbor";
/// `Content-Type` of the 409 body of `add-checkpoint` (C2SP tlog-witness).
pub const SIZE_TYPE: &str = "text/x.tlog.size";
/// `Content-Type` of add-checkpoint requests, cosignature responses and text errors.
pub const TEXT_TYPE: &str = "text/plain; charset=utf-8";

/// The spec: a client MUST NOT send more than 63 consistency proof lines.
pub const MAX_PROOF_LINES: usize = 63;
/// Largest add-checkpoint body: the `old` line, 63 proof lines and a checkpoint note.
pub const MAX_ADD_CHECKPOINT_BYTES: usize = 32 + MAX_PROOF_LINES * 45 + 1 + MAX_NOTE_BYTES;
/// Most hashes in an upload's inclusion proof (a tree of 2^64 leaves needs 64).
pub const MAX_INCLUSION_PROOF: usize = 64;
/// Default and hard cap of blocks per upload batch (a ledger may configure less).
pub const MAX_BLOCKS_PER_BATCH: usize = 1024;
/// Default cap of an upload body, bytes (a ledger may configure another).
pub const DEFAULT_MAX_UPLOAD_BYTES: usize = 32 << 20;
/// Largest CBOR message other than an upload (state, link, ack, error).
pub const MAX_SMALL_MESSAGE_BYTES: usize = 2 << 20;
/// Longest human reason in an error body, bytes (longer ones are cut at a char boundary).
pub const MAX_REASON_BYTES: usize = 4096;

/// Paths, relative to a ledger's base URL.
pub mod path {
    pub const ADD_CHECKPOINT: &str = "/add-checkpoint";
    pub const LINK: &str = "/v1/link";

    /// `/v1/gateways/{escaped origin}/blocks`
    pub fn blocks(origin: &str) -> String {
        format!("/v1/gateways/{}/blocks", super::escape_origin(origin))
    }

    /// `/v1/gateways/{escaped origin}/state`
    pub fn state(origin: &str) -> String {
        format!("/v1/gateways/{}/state", super::escape_origin(origin))
    }

    /// `/v1/query/{escaped origin}/blocks?from=<height>&to=<height>` (fleet tools).
    pub fn query_blocks(origin: &str, from: u64, to: u64) -> String {
        format!("/v1/query/{}/blocks?from={from}&to={to}", super::escape_origin(origin))
    }

    /// `/v1/query/{escaped origin}/blocks?since_ns=<t>&until_ns=<t>`: the blocks whose record
    /// time range overlaps `[since_ns, until_ns)`, as the height range that holds them all.
    pub fn query_times(origin: &str, since_ns: u64, until_ns: u64) -> String {
        format!(
            "/v1/query/{}/blocks?since_ns={since_ns}&until_ns={until_ns}",
            super::escape_origin(origin)
        )
    }
}

/// Why a wire message could not be parsed. Carries what and where, never the whole input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    #[error("{what} is {len} bytes, limit {max}")]
    TooLarge { what: &'static str, len: usize, max: usize },
    #[error("{what}: not CBOR: {reason}")]
    Cbor { what: &'static str, reason: String },
    #[error("{what}: {extra} bytes after the CBOR item")]
    Trailing { what: &'static str, extra: usize },
    #[error("{what}: field {field}: {problem}")]
    Field { what: &'static str, field: String, problem: String },
    #[error("{what}: wire version {got}, this build speaks {WIRE_VERSION}")]
    Version { what: &'static str, got: u64 },
    #[error("add-checkpoint line {line}: {problem}")]
    Line { line: usize, problem: String },
    #[error("add-checkpoint checkpoint: {0}")]
    Note(#[from] NoteError),
    #[error("add-checkpoint checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("origin escape {text:?}: {problem}")]
    Escape { text: String, problem: &'static str },
    #[error("tree size {text:?} is not a decimal u64 without leading zeros and a newline")]
    Size { text: String },
}

// ---------------------------------------------------------------------------------------------
// Origin escaping: `/v1/gateways/{origin}/...`

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Percent-encodes every byte outside RFC 3986 `unreserved` (so `/` becomes `%2F`), uppercase
/// hex: one origin has exactly one path segment.
pub fn escape_origin(origin: &str) -> String {
    let mut out = String::with_capacity(origin.len() * 3 / 2);
    for &b in origin.as_bytes() {
        if unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes a path segment made by [`escape_origin`] (either hex case accepted); refuses a
/// truncated or non-hex escape and a result that is not UTF-8.
pub fn unescape_origin(segment: &str) -> Result<String, WireError> {
    let bad = |problem| WireError::Escape { text: segment.to_owned(), problem };
    let b = segment.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or_else(|| bad("truncated %-escape"))?;
            let s = std::str::from_utf8(hex).map_err(|_| bad("non-hex %-escape"))?;
            let v = u8::from_str_radix(s, 16).map_err(|_| bad("non-hex %-escape"))?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad("not UTF-8 after unescaping"))
}

// ---------------------------------------------------------------------------------------------
// add-checkpoint (C2SP tlog-witness)

/// An `add-checkpoint` request body: `old <size>\n`, proof lines, `\n`, the signed checkpoint.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AddCheckpoint {
    pub old_size: u64,
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, verbatim (may carry several signatures).
    pub checkpoint: Vec<u8>,
}

fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

impl AddCheckpoint {
    /// The request body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("old {}\n", self.old_size).into_bytes();
        for h in &self.proof {
            out.extend_from_slice(h.to_base64().as_bytes());
            out.push(b'\n');
        }
        out.push(b'\n');
        out.extend_from_slice(&self.checkpoint);
        out
    }

    /// Parses a request body strictly: `old` line without leading zeros, at most 63 proof lines
    /// of canonical base64 of 32 bytes, a blank line, then a note that parses (its signatures
    /// are not checked here). Never panics.
    pub fn parse(body: &[u8]) -> Result<AddCheckpoint, WireError> {
        if body.len() > MAX_ADD_CHECKPOINT_BYTES {
            return Err(WireError::TooLarge {
                what: "add-checkpoint body",
                len: body.len(),
                max: MAX_ADD_CHECKPOINT_BYTES,
            });
        }
        let mut rest = body;
        let mut line_no = 0;
        let mut next_line = |rest: &mut &[u8]| -> Result<(usize, String), WireError> {
            line_no += 1;
            let end = rest.iter().position(|&b| b == b'\n').ok_or(WireError::Line {
                line: line_no,
                problem: "not terminated by a newline".into(),
            })?;
            let line = std::str::from_utf8(&rest[..end])
                .map_err(|_| WireError::Line { line: line_no, problem: "not UTF-8".into() })?
                .to_owned();
            *rest = &rest[end + 1..];
            Ok((line_no, line))
        };
        let (n, old) = next_line(&mut rest)?;
        let old_size = old.strip_prefix("old ").and_then(parse_decimal).ok_or(WireError::Line {
            line: n,
            problem: format!("want \"old <decimal size>\", got {:?}", truncate(&old, 64)),
        })?;
        let mut proof = Vec::new();
        loop {
            let (n, line) = next_line(&mut rest)?;
            if line.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_LINES {
                return Err(WireError::Line {
                    line: n,
                    problem: format!("more than {MAX_PROOF_LINES} consistency proof lines"),
                });
            }
            let h = Hash::from_base64(&line).map_err(|_| WireError::Line {
                line: n,
                problem: format!("proof line {:?} is not base64 of 32 bytes", truncate(&line, 64)),
            })?;
            proof.push(h);
        }
        // Framing only: the caller verifies signatures against the origin's trusted keys.
        let note = Note::parse(rest)?;
        Checkpoint::parse(note.text())?;
        Ok(AddCheckpoint { old_size, proof, checkpoint: rest.to_vec() })
    }

    /// The checkpoint as claimed (not yet verified): its origin picks the trusted key.
    pub fn claimed_checkpoint(&self) -> Result<Checkpoint, WireError> {
        let note = Note::parse(&self.checkpoint)?;
        Ok(Checkpoint::parse(note.text())?)
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The 409 body: the latest cosigned size in decimal and a newline.
pub fn size_body(size: u64) -> String {
    format!("{size}\n")
}

/// Parses a `text/x.tlog.size` body.
pub fn parse_size_body(body: &[u8]) -> Result<u64, WireError> {
    let text = std::str::from_utf8(body).unwrap_or("");
    text.strip_suffix('\n')
        .and_then(parse_decimal)
        .ok_or_else(|| WireError::Size { text: truncate(text, 32).to_owned() })
}

/// The 200 body: one note signature line per cosignature, each ending in a newline.
pub fn cosignature_lines(sigs: &[Signature]) -> String {
    sigs.iter().map(|s| format!("{}\n", s.to_line())).collect()
}

/// Parses a 200 body into signature lines (unverified: check them with
/// [`crate::cosignature::CosignatureVerifier::verify`] against the checkpoint you sent).
pub fn parse_cosignature_lines(body: &[u8]) -> Result<Vec<Signature>, WireError> {
    let mut note = b"x\n\n".to_vec();
    note.extend_from_slice(body);
    Ok(Note::parse(&note)?.signatures().to_vec())
}

/// Why a witness refuses an add-checkpoint request, in the spec's order of checks, with the
/// HTTP status the spec assigns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddCheckpointError {
    #[error("malformed request: {0}")]
    Malformed(WireError),
    #[error("origin {origin:?} is not enrolled at this ledger")]
    UnknownOrigin { origin: String },
    #[error("checkpoint of {origin:?}: {reason}")]
    BadSignature { origin: String, reason: String },
    #[error("old size {old} is larger than the checkpoint size {new}")]
    OldTooLarge { old: u64, new: u64 },
    #[error("old size {old} is not the latest cosigned size {latest}")]
    SizeMismatch { old: u64, latest: u64 },
    #[error("checkpoint of size 0 has root {root}, the empty tree's root is {empty}")]
    EmptyTreeRoot { root: String, empty: String },
    #[error("old size is 0 but the request carries {lines} proof lines")]
    ProofNotEmpty { lines: usize },
    #[error("consistency proof from size {old} to {new} does not verify: {source}")]
    BadProof { old: u64, new: u64, source: VerifyError },
    #[error("checkpoint of size {size} has root {got}, the cosigned checkpoint of that size has {cosigned}")]
    SameSizeDifferentRoot { size: u64, got: String, cosigned: String },
}

impl AddCheckpointError {
    /// The HTTP status the C2SP tlog-witness spec assigns.
    pub fn status(&self) -> u16 {
        match self {
            // The spec fixes 422 here; on upload a fork is 409.
            AddCheckpointError::SameSizeDifferentRoot { .. } => 422,
            other => other.code().status(),
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            AddCheckpointError::Malformed(_) => ErrorCode::Malformed,
            AddCheckpointError::UnknownOrigin { .. } => ErrorCode::UnknownOrigin,
            AddCheckpointError::BadSignature { .. } => ErrorCode::BadSignature,
            AddCheckpointError::OldTooLarge { .. } => ErrorCode::OldSizeTooLarge,
            AddCheckpointError::SizeMismatch { .. } => ErrorCode::SizeMismatch,
            AddCheckpointError::EmptyTreeRoot { .. } => ErrorCode::EmptyTreeRoot,
            AddCheckpointError::ProofNotEmpty { .. } | AddCheckpointError::BadProof { .. } => {
                ErrorCode::BadProof
            }
            AddCheckpointError::SameSizeDifferentRoot { .. } => ErrorCode::Fork,
        }
    }

    /// True when a correctly signed checkpoint has the size of the one this witness cosigned
    /// and another root: the gateway signed two trees that cannot both be true (a fork).
    pub fn is_fork(&self) -> bool {
        matches!(self, AddCheckpointError::SameSizeDifferentRoot { .. })
    }

    /// True when the request is correctly signed but refused on consistency (a fork, or a
    /// consistency proof that does not verify, which is a fork or a client bug): worth keeping
    /// verbatim as evidence, as the spec allows.
    pub fn is_evidence(&self) -> bool {
        matches!(
            self,
            AddCheckpointError::BadProof { .. } | AddCheckpointError::SameSizeDifferentRoot { .. }
        )
    }
}

/// The witness's decision for one add-checkpoint request, as the spec orders the checks.
///
/// `trusted` is the enrolled gateway key for the checkpoint's origin (`None`: not enrolled,
/// 404); `latest` the latest checkpoint this witness cosigned for that origin. On success returns
/// the verified checkpoint; the caller cosigns it and must store it atomically with a check that
/// the latest cosigned size is still `latest`'s (compare-and-set), else answer 409.
pub fn check_add_checkpoint(
    req: &AddCheckpoint,
    trusted: Option<&Ed25519Verifier>,
    latest: Option<&Checkpoint>,
) -> Result<SignedCheckpoint, AddCheckpointError> {
    let claimed = req.claimed_checkpoint().map_err(AddCheckpointError::Malformed)?;
    let origin = claimed.origin().to_owned();
    let Some(key) = trusted else {
        return Err(AddCheckpointError::UnknownOrigin { origin });
    };
    // The gateway's key name is its origin (ledger README): a key for another name is no key
    // for this origin.
    if key.name() != origin {
        return Err(AddCheckpointError::UnknownOrigin { origin });
    }
    let (signed, _) =
        SignedCheckpoint::verify(&req.checkpoint, &[key as &dyn Verifier]).map_err(|e| {
            AddCheckpointError::BadSignature { origin: origin.clone(), reason: e.to_string() }
        })?;
    let cp = signed.checkpoint();
    let new = cp.size();
    if req.old_size > new {
        return Err(AddCheckpointError::OldTooLarge { old: req.old_size, new });
    }
    let latest_size = latest.map_or(0, Checkpoint::size);
    if req.old_size != latest_size {
        return Err(AddCheckpointError::SizeMismatch { old: req.old_size, latest: latest_size });
    }
    if new == 0 && *cp.root() != merkle::empty_root() {
        return Err(AddCheckpointError::EmptyTreeRoot {
            root: cp.root().to_base64(),
            empty: merkle::empty_root().to_base64(),
        });
    }
    match latest {
        None => {
            if !req.proof.is_empty() {
                return Err(AddCheckpointError::ProofNotEmpty { lines: req.proof.len() });
            }
        }
        Some(old) if old.size() == new => {
            if old.root() != cp.root() {
                return Err(AddCheckpointError::SameSizeDifferentRoot {
                    size: new,
                    got: cp.root().to_base64(),
                    cosigned: old.root().to_base64(),
                });
            }
            if !req.proof.is_empty() {
                return Err(AddCheckpointError::BadProof {
                    old: new,
                    new,
                    source: VerifyError::WrongProofLength { got: req.proof.len(), want: 0 },
                });
            }
        }
        Some(old) if old.size() == 0 => {
            if !req.proof.is_empty() {
                return Err(AddCheckpointError::ProofNotEmpty { lines: req.proof.len() });
            }
        }
        Some(old) => {
            merkle::verify_consistency(old.size(), new, &req.proof, old.root(), cp.root())
                .map_err(|source| AddCheckpointError::BadProof { old: old.size(), new, source })?;
        }
    }
    Ok(signed)
}

// ---------------------------------------------------------------------------------------------
// Error bodies

/// Stable machine codes of refusals. The string form (`as_str`) is what travels; a client
/// that meets a code it does not know keeps it as [`ErrorCode::Other`] and goes by the status.
#[derive(Clone, PartialEq, Eq, Debug, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 400: the body does not parse (names the line or field).
    Malformed,
    /// 400: add-checkpoint `old` is larger than the checkpoint's size.
    OldSizeTooLarge,
    /// 401: no or unknown access token (admin and query endpoints).
    Unauthorized,
    /// 403: add-checkpoint: no signature by the enrolled key, or one that does not verify.
    BadSignature,
    /// 403: the token lacks the scope.
    Forbidden,
    /// 404: the origin is not enrolled here.
    UnknownOrigin,
    /// 404: no such endpoint.
    NotFound,
    /// 409: add-checkpoint `old` is not the latest cosigned size (body: `text/x.tlog.size`).
    SizeMismatch,
    /// 409: upload before this ledger cosigned any checkpoint of the origin, or for a
    /// checkpoint size it did not cosign: send add-checkpoint first, then read `/state`.
    NotWitnessed,
    /// 409: the batch starts above the mirrored size: read `/state` and resend from there.
    Gap,
    /// 409 (upload) / 422 (add-checkpoint): the gateway signed history that contradicts what
    /// this ledger holds. Refused and kept as evidence.
    Fork,
    /// 413: body or batch over the ledger's limits.
    TooLarge,
    /// 422: a checkpoint of size 0 without the empty tree's root.
    EmptyTreeRoot,
    /// 422: a consistency or inclusion proof does not verify.
    BadProof,
    /// 422: headers do not chain (`prev`, heights, gateway key) or break a header rule.
    BadChain,
    /// 422: a lane does not match its header (size or BLAKE3 digest), or is missing, repeated
    /// or not one this organisation receives.
    BadLane,
    /// 422: blocks past the cosigned checkpoint's size.
    BeyondCheckpoint,
    /// 500: the ledger failed (storage); retry later.
    Internal,
    /// 503: shutting down or overloaded; retry later.
    Unavailable,
    /// A code this build does not know.
    Other(String),
}

impl ErrorCode {
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::Malformed => "malformed",
            ErrorCode::OldSizeTooLarge => "old_size_too_large",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::BadSignature => "bad_signature",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::UnknownOrigin => "unknown_origin",
            ErrorCode::NotFound => "not_found",
            ErrorCode::SizeMismatch => "size_mismatch",
            ErrorCode::NotWitnessed => "not_witnessed",
            ErrorCode::Gap => "gap",
            ErrorCode::Fork => "fork",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::EmptyTreeRoot => "empty_tree_root",
            ErrorCode::BadProof => "bad_proof",
            ErrorCode::BadChain => "bad_chain",
            ErrorCode::BadLane => "bad_lane",
            ErrorCode::BeyondCheckpoint => "beyond_checkpoint",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Other(s) => s,
        }
    }

    pub fn parse(s: &str) -> ErrorCode {
        ALL_CODES.iter().find(|c| c.as_str() == s).cloned().unwrap_or(ErrorCode::Other(s.into()))
    }

    /// The HTTP status a ledger answers with. (Fork is 409 on upload, 422 on add-checkpoint,
    /// where the spec fixes it; this returns the upload one.)
    pub fn status(&self) -> u16 {
        match self {
            ErrorCode::Malformed | ErrorCode::OldSizeTooLarge => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::BadSignature | ErrorCode::Forbidden => 403,
            ErrorCode::UnknownOrigin | ErrorCode::NotFound => 404,
            ErrorCode::SizeMismatch
            | ErrorCode::NotWitnessed
            | ErrorCode::Gap
            | ErrorCode::Fork => 409,
            ErrorCode::TooLarge => 413,
            ErrorCode::EmptyTreeRoot
            | ErrorCode::BadProof
            | ErrorCode::BadChain
            | ErrorCode::BadLane
            | ErrorCode::BeyondCheckpoint => 422,
            ErrorCode::Internal | ErrorCode::Other(_) => 500,
            ErrorCode::Unavailable => 503,
        }
    }

    /// Whether sending the same request later can succeed without changing it (storage
    /// trouble, shutdown). Everything else needs a different request (resync from `/state`,
    /// fix the data) or an operator.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ErrorCode::Internal | ErrorCode::Unavailable)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every known code, for parsing and documentation tests.
pub const ALL_CODES: &[ErrorCode] = &[
    ErrorCode::Malformed,
    ErrorCode::OldSizeTooLarge,
    ErrorCode::Unauthorized,
    ErrorCode::BadSignature,
    ErrorCode::Forbidden,
    ErrorCode::UnknownOrigin,
    ErrorCode::NotFound,
    ErrorCode::SizeMismatch,
    ErrorCode::NotWitnessed,
    ErrorCode::Gap,
    ErrorCode::Fork,
    ErrorCode::TooLarge,
    ErrorCode::EmptyTreeRoot,
    ErrorCode::BadProof,
    ErrorCode::BadChain,
    ErrorCode::BadLane,
    ErrorCode::BeyondCheckpoint,
    ErrorCode::Internal,
    ErrorCode::Unavailable,
];

/// An error response: a stable code and a human reason (names what and where).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub reason: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, reason: impl Into<String>) -> ErrorBody {
        let reason = reason.into();
        let reason = truncate(&reason, MAX_REASON_BYTES).to_owned();
        ErrorBody { code, reason }
    }

    /// CBOR `{"v": 1, "code": tstr, "reason": tstr}` (the `/v1/...` endpoints).
    pub fn to_cbor(&self) -> Vec<u8> {
        to_cbor(&map(vec![
            ("v", uint(WIRE_VERSION)),
            ("code", Value::Text(self.code.as_str().to_owned())),
            ("reason", Value::Text(self.reason.clone())),
        ]))
    }

    pub fn from_cbor(bytes: &[u8]) -> Result<ErrorBody, WireError> {
        let top = decode_top("error body", bytes, MAX_SMALL_MESSAGE_BYTES)?;
        let m = Map::from_value("error body", String::new(), &top)?;
        Ok(ErrorBody { code: ErrorCode::parse(&m.text("code")?), reason: m.text("reason")? })
    }

    /// `<code>: <reason>\n` (the text endpoint `add-checkpoint`; newlines in the reason become
    /// spaces so the body stays one line).
    pub fn to_text(&self) -> String {
        format!("{}: {}\n", self.code, self.reason.replace(['\n', '\r'], " "))
    }

    /// Parses [`ErrorBody::to_text`]; a body without a code (another witness implementation)
    /// becomes [`ErrorCode::Other`] with the whole text as the reason.
    pub fn from_text(body: &[u8]) -> ErrorBody {
        let text = String::from_utf8_lossy(body);
        let line = text.trim_end_matches('\n');
        match line.split_once(": ") {
            Some((code, reason)) if !code.contains(' ') => {
                ErrorBody { code: ErrorCode::parse(code), reason: reason.to_owned() }
            }
            _ => ErrorBody { code: ErrorCode::Other(String::new()), reason: line.to_owned() },
        }
    }
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.reason)
    }
}

// ---------------------------------------------------------------------------------------------
// CBOR messages

/// `GET /v1/link`: who this ledger is, cheaply (a link probe before a sync window).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Link {
    /// [`PROTOCOL`].
    pub protocol: String,
    /// The organisation's name (e.g. `factory.example`).
    pub ledger: String,
    /// The cosigner verifier key (`name+id+base64(0x04||key)`) its cosignatures verify with.
    pub cosigner: String,
}

impl Link {
    pub fn to_cbor(&self) -> Vec<u8> {
        to_cbor(&map(vec![
            ("v", uint(WIRE_VERSION)),
            ("protocol", Value::Text(self.protocol.clone())),
            ("ledger", Value::Text(self.ledger.clone())),
            ("cosigner", Value::Text(self.cosigner.clone())),
        ]))
    }

    pub fn from_cbor(bytes: &[u8]) -> Result<Link, WireError> {
        let top = decode_top("link", bytes, MAX_SMALL_MESSAGE_BYTES)?;
        let m = Map::from_value("link", String::new(), &top)?;
        m.version()?;
        Ok(Link {
            protocol: m.text("protocol")?,
            ledger: m.text("ledger")?,
            cosigner: m.text("cosigner")?,
        })
    }
}

/// One block in an upload: header bytes and the lanes this ledger receives, by lane index in
/// the header.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct UploadBlock {
    pub height: u64,
    /// Canonical header bytes (the gateway log's leaf).
    pub header: Vec<u8>,
    /// `(lane index, lane ciphertext)`, ascending index.
    pub lanes: Vec<(u16, Vec<u8>)>,
}

/// `POST /v1/gateways/{origin}/blocks`: consecutive blocks starting at or below the ledger's
/// mirrored size, and an inclusion proof of the last header in a checkpoint this ledger
/// cosigned (of size `checkpoint_size`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Upload {
    pub blocks: Vec<UploadBlock>,
    pub checkpoint_size: u64,
    /// RFC 6962 inclusion proof of the last block's header (leaf = header bytes, index =
    /// height) in the tree of `checkpoint_size`.
    pub proof: Vec<Hash>,
}

impl Upload {
    /// `{"v":1, "checkpoint_size": uint, "proof": [bstr 32...], "blocks": [{"height": uint,
    /// "header": bstr, "lanes": [[uint, bstr]...]}...]}`
    pub fn to_cbor(&self) -> Vec<u8> {
        let blocks = self
            .blocks
            .iter()
            .map(|b| {
                map(vec![
                    ("height", uint(b.height)),
                    ("header", Value::Bytes(b.header.clone())),
                    (
                        "lanes",
                        Value::Array(
                            b.lanes
                                .iter()
                                .map(|(i, l)| {
                                    Value::Array(vec![uint(u64::from(*i)), Value::Bytes(l.clone())])
                                })
                                .collect(),
                        ),
                    ),
                ])
            })
            .collect();
        to_cbor(&map(vec![
            ("v", uint(WIRE_VERSION)),
            ("checkpoint_size", uint(self.checkpoint_size)),
            ("proof", hashes(&self.proof)),
            ("blocks", Value::Array(blocks)),
        ]))
    }

    /// Decodes an upload of at most `max_bytes`, refusing more than `max_blocks` blocks. Only
    /// the shape is checked here; the ledger checks heights, chain, proof and lanes.
    pub fn from_cbor(
        bytes: &[u8],
        max_bytes: usize,
        max_blocks: usize,
    ) -> Result<Upload, WireError> {
        const WHAT: &str = "upload";
        let top = decode_top(WHAT, bytes, max_bytes)?;
        let m = Map::from_value(WHAT, String::new(), &top)?;
        m.version()?;
        let checkpoint_size = m.uint("checkpoint_size")?;
        let proof = m.hashes("proof", MAX_INCLUSION_PROOF)?;
        let blocks_v = m.array("blocks")?;
        if blocks_v.len() > max_blocks {
            return Err(WireError::TooLarge {
                what: "upload batch (blocks)",
                len: blocks_v.len(),
                max: max_blocks,
            });
        }
        let mut blocks = Vec::with_capacity(blocks_v.len());
        for (i, b) in blocks_v.iter().enumerate() {
            let bm = Map::from_value(WHAT, format!("blocks[{i}]"), b)?;
            let lanes_v = bm.array("lanes")?;
            let mut lanes = Vec::with_capacity(lanes_v.len());
            for (j, l) in lanes_v.iter().enumerate() {
                let field = format!("blocks[{i}].lanes[{j}]");
                let bad = |problem: &str| WireError::Field {
                    what: WHAT,
                    field: field.clone(),
                    problem: problem.into(),
                };
                let Value::Array(pair) = l else { return Err(bad("want [lane index, bstr]")) };
                let [idx, data] = pair.as_slice() else {
                    return Err(bad("want [lane index, bstr]"));
                };
                let idx = idx
                    .as_integer()
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or_else(|| bad("lane index is not a u16"))?;
                let Value::Bytes(data) = data else { return Err(bad("lane is not a byte string")) };
                lanes.push((idx, data.clone()));
            }
            blocks.push(UploadBlock {
                height: bm.uint("height")?,
                header: bm.bytes("header")?,
                lanes,
            });
        }
        Ok(Upload { blocks, checkpoint_size, proof })
    }
}

/// Answer to an accepted upload: the ledger's mirrored size after it (next height it wants).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct UploadAck {
    pub mirrored: u64,
}

impl UploadAck {
    pub fn to_cbor(&self) -> Vec<u8> {
        to_cbor(&map(vec![("v", uint(WIRE_VERSION)), ("mirrored", uint(self.mirrored))]))
    }

    pub fn from_cbor(bytes: &[u8]) -> Result<UploadAck, WireError> {
        let top = decode_top("upload ack", bytes, MAX_SMALL_MESSAGE_BYTES)?;
        let m = Map::from_value("upload ack", String::new(), &top)?;
        m.version()?;
        Ok(UploadAck { mirrored: m.uint("mirrored")? })
    }
}

/// The latest checkpoint this ledger cosigned for a gateway.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Witnessed {
    pub size: u64,
    pub root: Hash,
    /// The checkpoint note as the gateway signed it, with this ledger's cosignature line added.
    pub checkpoint: Vec<u8>,
}

/// `GET /v1/gateways/{origin}/state`: where a gateway resumes.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct GatewayState {
    pub origin: String,
    /// `None` until the first add-checkpoint succeeded (then send `old 0`).
    pub witnessed: Option<Witnessed>,
    /// Blocks `0..mirrored` are held (headers, and this organisation's lanes).
    pub mirrored: u64,
    /// Lane names this organisation receives (upload exactly these lanes of each block).
    pub lanes: Vec<String>,
}

impl GatewayState {
    /// `{"v":1, "origin": tstr, "witnessed": null | {"size", "root": bstr 32, "checkpoint":
    /// bstr}, "mirrored": uint, "lanes": [tstr...]}`
    pub fn to_cbor(&self) -> Vec<u8> {
        let witnessed = match &self.witnessed {
            None => Value::Null,
            Some(w) => map(vec![
                ("size", uint(w.size)),
                ("root", Value::Bytes(w.root.0.to_vec())),
                ("checkpoint", Value::Bytes(w.checkpoint.clone())),
            ]),
        };
        to_cbor(&map(vec![
            ("v", uint(WIRE_VERSION)),
            ("origin", Value::Text(self.origin.clone())),
            ("witnessed", witnessed),
            ("mirrored", uint(self.mirrored)),
            ("lanes", Value::Array(self.lanes.iter().cloned().map(Value::Text).collect())),
        ]))
    }

    pub fn from_cbor(bytes: &[u8]) -> Result<GatewayState, WireError> {
        const WHAT: &str = "gateway state";
        let top = decode_top(WHAT, bytes, MAX_SMALL_MESSAGE_BYTES)?;
        let m = Map::from_value(WHAT, String::new(), &top)?;
        m.version()?;
        let witnessed = match m.get("witnessed")? {
            Value::Null => None,
            v => {
                let w = Map::from_value(WHAT, "witnessed".into(), v)?;
                let root = w.bytes("root")?;
                let root = Hash::from_slice(&root).map_err(|_| WireError::Field {
                    what: WHAT,
                    field: "witnessed.root".into(),
                    problem: format!("{} bytes, want {HASH_SIZE}", root.len()),
                })?;
                Some(Witnessed { size: w.uint("size")?, root, checkpoint: w.bytes("checkpoint")? })
            }
        };
        let lanes = m
            .array("lanes")?
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::Text(s) => Ok(s.clone()),
                _ => Err(WireError::Field {
                    what: WHAT,
                    field: format!("lanes[{i}]"),
                    problem: "not text".into(),
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(GatewayState {
            origin: m.text("origin")?,
            witnessed,
            mirrored: m.uint("mirrored")?,
            lanes,
        })
    }
}

/// One block in a query answer, with what the ledger recorded on receipt.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct QueriedBlock {
    pub height: u64,
    pub header: Vec<u8>,
    /// `(lane index, ciphertext)`: the lanes this ledger holds (its organisation's).
    pub lanes: Vec<(u16, Vec<u8>)>,
    pub received_at_ns: u64,
    pub time_backwards: bool,
    pub time_future: bool,
}

/// Most hashes in a range (completeness) proof: about `2 log2 N`.
pub const MAX_RANGE_PROOF: usize = 130;

/// `GET /v1/query/{origin}/blocks?from=&to=`: blocks `[start, end)` of one gateway, with the
/// proof that they are *all* the blocks at those heights: `range_proof` (see
/// `verify::complete_range_signed`) in the tree of `checkpoint`, a checkpoint the gateway
/// signed and this ledger cosigned (both signatures are in the note).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct QueryBlocks {
    pub origin: String,
    /// The vehicle or unit id the gateway is enrolled as.
    pub unit: String,
    pub checkpoint: Vec<u8>,
    pub start: u64,
    pub end: u64,
    /// The end of the range asked for (`to`, or the last height a time range covers, + 1):
    /// while `end < requested_end`, ask again from `end`.
    pub requested_end: u64,
    pub blocks: Vec<QueriedBlock>,
    pub range_proof: Vec<Hash>,
}

impl QueryBlocks {
    /// `{"v":1, "origin", "unit", "checkpoint": bstr, "start", "end", "requested_end",
    /// "range_proof": [bstr 32],
    /// "blocks": [{"height", "header": bstr, "lanes": [[uint, bstr]], "received_at_ns",
    /// "time_backwards": bool, "time_future": bool}]}`
    pub fn to_cbor(&self) -> Vec<u8> {
        let blocks = self
            .blocks
            .iter()
            .map(|b| {
                map(vec![
                    ("height", uint(b.height)),
                    ("header", Value::Bytes(b.header.clone())),
                    ("lanes", lanes_value(&b.lanes)),
                    ("received_at_ns", uint(b.received_at_ns)),
                    ("time_backwards", Value::Bool(b.time_backwards)),
                    ("time_future", Value::Bool(b.time_future)),
                ])
            })
            .collect();
        to_cbor(&map(vec![
            ("v", uint(WIRE_VERSION)),
            ("origin", Value::Text(self.origin.clone())),
            ("unit", Value::Text(self.unit.clone())),
            ("checkpoint", Value::Bytes(self.checkpoint.clone())),
            ("start", uint(self.start)),
            ("end", uint(self.end)),
            ("requested_end", uint(self.requested_end)),
            ("range_proof", hashes(&self.range_proof)),
            ("blocks", Value::Array(blocks)),
        ]))
    }

    pub fn from_cbor(bytes: &[u8], max_bytes: usize) -> Result<QueryBlocks, WireError> {
        const WHAT: &str = "query answer";
        let top = decode_top(WHAT, bytes, max_bytes)?;
        let m = Map::from_value(WHAT, String::new(), &top)?;
        m.version()?;
        let mut blocks = Vec::new();
        for (i, b) in m.array("blocks")?.iter().enumerate() {
            let bm = Map::from_value(WHAT, format!("blocks[{i}]"), b)?;
            blocks.push(QueriedBlock {
                height: bm.uint("height")?,
                header: bm.bytes("header")?,
                lanes: lanes_from(WHAT, i, bm.array("lanes")?)?,
                received_at_ns: bm.uint("received_at_ns")?,
                time_backwards: bm.boolean("time_backwards")?,
                time_future: bm.boolean("time_future")?,
            });
        }
        Ok(QueryBlocks {
            origin: m.text("origin")?,
            unit: m.text("unit")?,
            checkpoint: m.bytes("checkpoint")?,
            start: m.uint("start")?,
            end: m.uint("end")?,
            requested_end: m.uint("requested_end")?,
            blocks,
            range_proof: m.hashes("range_proof", MAX_RANGE_PROOF)?,
        })
    }
}

fn lanes_value(lanes: &[(u16, Vec<u8>)]) -> Value {
    Value::Array(
        lanes
            .iter()
            .map(|(i, l)| Value::Array(vec![uint(u64::from(*i)), Value::Bytes(l.clone())]))
            .collect(),
    )
}

fn lanes_from(what: &'static str, i: usize, v: &[Value]) -> Result<Vec<(u16, Vec<u8>)>, WireError> {
    let mut lanes = Vec::with_capacity(v.len());
    for (j, l) in v.iter().enumerate() {
        let field = format!("blocks[{i}].lanes[{j}]");
        let bad = |problem: &str| WireError::Field {
            what,
            field: field.clone(),
            problem: problem.into(),
        };
        let Value::Array(pair) = l else { return Err(bad("want [lane index, bstr]")) };
        let [idx, data] = pair.as_slice() else { return Err(bad("want [lane index, bstr]")) };
        let idx = idx
            .as_integer()
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| bad("lane index is not a u16"))?;
        let Value::Bytes(data) = data else { return Err(bad("lane is not a byte string")) };
        lanes.push((idx, data.clone()));
    }
    Ok(lanes)
}

// ---------------------------------------------------------------------------------------------
// CBOR helpers

fn uint(v: u64) -> Value {
    Value::Integer(v.into())
}

fn hashes(h: &[Hash]) -> Value {
    Value::Array(h.iter().map(|h| Value::Bytes(h.0.to_vec())).collect())
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(entries.into_iter().map(|(k, v)| (Value::Text(k.to_owned()), v)).collect())
}

fn to_cbor(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing a Value into a Vec cannot fail (no I/O error, no unsupported type).
    if ciborium::ser::into_writer(v, &mut out).is_err() {
        out.clear();
    }
    out
}

/// Decodes exactly one CBOR item of at most `max` bytes.
fn decode_top(what: &'static str, bytes: &[u8], max: usize) -> Result<Value, WireError> {
    if bytes.len() > max {
        return Err(WireError::TooLarge { what, len: bytes.len(), max });
    }
    let mut cursor = std::io::Cursor::new(bytes);
    let value: Value = ciborium::de::from_reader(&mut cursor)
        .map_err(|e| WireError::Cbor { what, reason: e.to_string() })?;
    let extra = bytes.len().saturating_sub(usize::try_from(cursor.position()).unwrap_or(0));
    if extra != 0 {
        return Err(WireError::Trailing { what, extra });
    }
    Ok(value)
}

/// A CBOR map with text keys, for field-by-field access with located errors.
struct Map<'a> {
    what: &'static str,
    prefix: String,
    entries: Vec<(&'a str, &'a Value)>,
}

fn field_err(what: &'static str, prefix: &str, k: &str, problem: &str) -> WireError {
    let field = if prefix.is_empty() { k.to_owned() } else { format!("{prefix}.{k}") };
    WireError::Field { what, field, problem: problem.to_owned() }
}

impl<'a> Map<'a> {
    fn from_value(what: &'static str, prefix: String, v: &'a Value) -> Result<Map<'a>, WireError> {
        let Value::Map(entries) = v else {
            return Err(WireError::Field {
                what,
                field: if prefix.is_empty() { "(top)".into() } else { prefix },
                problem: "not a map".into(),
            });
        };
        let mut out: Vec<(&str, &Value)> = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            let Value::Text(k) = k else {
                return Err(field_err(what, &prefix, "(key)", "map key is not text"));
            };
            if out.iter().any(|(seen, _)| seen == k) {
                return Err(field_err(what, &prefix, k, "key appears twice"));
            }
            out.push((k.as_str(), v));
        }
        Ok(Map { what, prefix, entries: out })
    }

    fn get(&self, k: &str) -> Result<&'a Value, WireError> {
        self.entries
            .iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| *v)
            .ok_or_else(|| field_err(self.what, &self.prefix, k, "missing"))
    }

    fn uint(&self, k: &str) -> Result<u64, WireError> {
        self.get(k)?
            .as_integer()
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| field_err(self.what, &self.prefix, k, "not an unsigned integer"))
    }

    fn text(&self, k: &str) -> Result<String, WireError> {
        match self.get(k)? {
            Value::Text(s) => Ok(s.clone()),
            _ => Err(field_err(self.what, &self.prefix, k, "not text")),
        }
    }

    fn bytes(&self, k: &str) -> Result<Vec<u8>, WireError> {
        match self.get(k)? {
            Value::Bytes(b) => Ok(b.clone()),
            _ => Err(field_err(self.what, &self.prefix, k, "not a byte string")),
        }
    }

    fn array(&self, k: &str) -> Result<&'a Vec<Value>, WireError> {
        match self.get(k)? {
            Value::Array(a) => Ok(a),
            _ => Err(field_err(self.what, &self.prefix, k, "not an array")),
        }
    }

    fn boolean(&self, k: &str) -> Result<bool, WireError> {
        match self.get(k)? {
            Value::Bool(b) => Ok(*b),
            _ => Err(field_err(self.what, &self.prefix, k, "not a boolean")),
        }
    }

    fn version(&self) -> Result<(), WireError> {
        let got = self.uint("v")?;
        if got != WIRE_VERSION {
            return Err(WireError::Version { what: self.what, got });
        }
        Ok(())
    }

    fn hashes(&self, k: &str, max: usize) -> Result<Vec<Hash>, WireError> {
        let a = self.array(k)?;
        if a.len() > max {
            let problem = format!("{} hashes, limit {max}", a.len());
            return Err(field_err(self.what, &self.prefix, k, &problem));
        }
        a.iter()
            .enumerate()
            .map(|(i, v)| {
                let at = format!("{k}[{i}]");
                match v {
                    Value::Bytes(b) => Hash::from_slice(b).map_err(|_| {
                        let problem = format!("{} bytes, want {HASH_SIZE}", b.len());
                        field_err(self.what, &self.prefix, &at, &problem)
                    }),
                    _ => Err(field_err(self.what, &self.prefix, &at, "not a byte string")),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cosignature::Cosigner;
    use crate::merkle::MemoryTree;
    use crate::note::Ed25519Signer;
    use ed25519_dalek::SigningKey;

    const ORIGIN: &str = "iov.example/gw/VIN123";

    fn gateway() -> Ed25519Signer {
        Ed25519Signer::new(ORIGIN, SigningKey::from_bytes(&[7; 32])).unwrap()
    }

    fn tree(n: u64) -> MemoryTree {
        let mut t = MemoryTree::new();
        for i in 0..n {
            t.push(format!("header {i}").as_bytes());
        }
        t
    }

    fn signed(signer: &Ed25519Signer, size: u64, root: Hash) -> Vec<u8> {
        let cp = Checkpoint::new(signer.name(), size, root).unwrap();
        SignedCheckpoint::sign(cp, signer).unwrap().to_bytes()
    }

    fn request(old: u64, new: u64) -> AddCheckpoint {
        let t = tree(new);
        let proof = if old == 0 || old == new {
            Vec::new()
        } else {
            merkle::consistency_proof(&t, old, new).unwrap()
        };
        AddCheckpoint { old_size: old, proof, checkpoint: signed(&gateway(), new, t.root()) }
    }

    fn cp(size: u64) -> Checkpoint {
        Checkpoint::new(ORIGIN, size, tree(size).root()).unwrap()
    }

    #[test]
    fn spec_example_request_parses_and_formats_back_identically() {
        // The add-checkpoint example of fixtures/specs/c2sp-tlog-witness.md, verbatim.
        let body = "old 20852014\nPlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\njrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n\u{2014} example.com/behind-the-sofa opLqBQsREYCgu6xQkYQwJr9fo45a62DN9EdmHXnZdXNqlcVGlCum2Wks+49/V6267UEjw6QUXTS5Rovnzv++qbSzm9Q=\n";
        let req = AddCheckpoint::parse(body.as_bytes()).unwrap();
        assert_eq!(req.old_size, 20852014);
        assert_eq!(req.proof.len(), 4);
        assert_eq!(req.proof[0].to_base64(), "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=");
        assert_eq!(req.claimed_checkpoint().unwrap().size(), 20852163);
        assert_eq!(req.to_bytes(), body.as_bytes());
    }

    #[test]
    fn malformed_add_checkpoint_bodies_are_refused_naming_the_line() {
        let good = String::from_utf8(request(3, 5).to_bytes()).unwrap();
        let (head, note) = good.split_once("\n\n").unwrap();
        let proof_line = head.lines().nth(1).unwrap();
        let many: String = std::iter::repeat_n(format!("{proof_line}\n"), 64).collect();
        let cases: Vec<(String, &str)> = vec![
            (good.replacen("old 3", "old 03", 1), "line 1"),
            (good.replacen("old 3", "old -3", 1), "line 1"),
            (good.replacen("old 3", "new 3", 1), "line 1"),
            (good.replacen(proof_line, "AAAA", 1), "line 2"),
            (format!("old 3\n{many}\n{note}"), "line 65"),
            ("old 3".to_owned(), "line 1: not terminated"),
            (format!("old 3\n{proof_line}\n"), "line 3: not terminated"),
            (format!("{head}\n\nnot a note\n"), "checkpoint"),
        ];
        for (body, want) in cases {
            let err = AddCheckpoint::parse(body.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(want), "{body:?}: {err}");
        }
        let big = vec![b'a'; MAX_ADD_CHECKPOINT_BYTES + 1];
        assert!(matches!(AddCheckpoint::parse(&big), Err(WireError::TooLarge { .. })));
    }

    #[test]
    fn add_checkpoint_checks_follow_the_witness_spec() {
        let key = gateway().verifier();
        let k = Some(&key);
        // First contact: old 0, no proof.
        assert_eq!(check_add_checkpoint(&request(0, 5), k, None).unwrap().checkpoint(), &cp(5));
        // Consistency from the latest cosigned size.
        assert!(check_add_checkpoint(&request(5, 9), k, Some(&cp(5))).is_ok());
        // Same size, same root: accepted again (idempotent resend).
        assert!(check_add_checkpoint(&request(5, 5), k, Some(&cp(5))).is_ok());

        let cases: Vec<(AddCheckpoint, Option<Checkpoint>, u16, ErrorCode)> = vec![
            // 400 old > new
            (
                AddCheckpoint { old_size: 6, ..request(0, 5) },
                Some(cp(6)),
                400,
                ErrorCode::OldSizeTooLarge,
            ),
            // 409 old != latest
            (request(3, 5), Some(cp(4)), 409, ErrorCode::SizeMismatch),
            (request(3, 5), None, 409, ErrorCode::SizeMismatch),
            // 422 proof with old 0
            (
                AddCheckpoint { proof: request(3, 5).proof, ..request(0, 5) },
                None,
                422,
                ErrorCode::BadProof,
            ),
            // 422 bad proof
            (
                AddCheckpoint { proof: vec![Hash([1; 32]); 2], ..request(3, 5) },
                Some(cp(3)),
                422,
                ErrorCode::BadProof,
            ),
            // 422 same size, different root
            (
                AddCheckpoint {
                    old_size: 5,
                    proof: vec![],
                    checkpoint: signed(&gateway(), 5, Hash([2; 32])),
                },
                Some(cp(5)),
                422,
                ErrorCode::Fork,
            ),
            // 422 size 0 with a non-empty root
            (
                AddCheckpoint {
                    old_size: 0,
                    proof: vec![],
                    checkpoint: signed(&gateway(), 0, Hash([2; 32])),
                },
                None,
                422,
                ErrorCode::EmptyTreeRoot,
            ),
        ];
        for (i, (req, latest, status, code)) in cases.into_iter().enumerate() {
            let err = check_add_checkpoint(&req, k, latest.as_ref()).unwrap_err();
            assert_eq!((err.status(), err.code()), (status, code), "case {i}: {err}");
        }
        let empty = AddCheckpoint {
            old_size: 0,
            proof: vec![],
            checkpoint: signed(&gateway(), 0, merkle::empty_root()),
        };
        assert!(check_add_checkpoint(&empty, k, None).is_ok());
    }

    #[test]
    fn unknown_origins_and_bad_signatures_are_404_and_403() {
        let req = request(0, 5);
        let e = check_add_checkpoint(&req, None, None).unwrap_err();
        assert_eq!((e.status(), e.code()), (404, ErrorCode::UnknownOrigin));
        // An enrolled key of another origin is no key for this one.
        let other = Ed25519Signer::new("iov.example/gw/OTHER", SigningKey::from_bytes(&[7; 32]))
            .unwrap()
            .verifier();
        assert_eq!(check_add_checkpoint(&req, Some(&other), None).unwrap_err().status(), 404);
        // Same name, another key: no signature from the trusted key.
        let impostor = Ed25519Signer::new(ORIGIN, SigningKey::from_bytes(&[8; 32])).unwrap();
        let forged =
            AddCheckpoint { checkpoint: signed(&impostor, 5, tree(5).root()), ..request(0, 5) };
        let e = check_add_checkpoint(&forged, Some(&gateway().verifier()), None).unwrap_err();
        assert_eq!((e.status(), e.code()), (403, ErrorCode::BadSignature));
        // The trusted key's line, with a flipped signature byte: does not verify.
        let mut text = String::from_utf8(req.checkpoint.clone()).unwrap();
        let at = text.rfind('=').unwrap() - 3;
        let flipped = if &text[at..=at] == "A" { "B" } else { "A" };
        text.replace_range(at..=at, flipped);
        let bad = AddCheckpoint { checkpoint: text.into_bytes(), ..request(0, 5) };
        let e = check_add_checkpoint(&bad, Some(&gateway().verifier()), None).unwrap_err();
        assert_eq!(e.status(), 403, "{e}");
    }

    #[test]
    fn cosignature_response_matches_its_test_vector() {
        // Test vector: gateway key seed [7; 32], witness key seed [9; 32] named
        // "factory.example/ledger", leaves "header 0".."header 4", time 1700000000.
        let witness =
            Cosigner::new("factory.example/ledger", SigningKey::from_bytes(&[9; 32])).unwrap();
        let req = request(0, 5);
        let signed = check_add_checkpoint(&req, Some(&gateway().verifier()), None).unwrap();
        let sig = witness.cosign(signed.checkpoint(), 1_700_000_000).unwrap();
        let body = cosignature_lines(std::slice::from_ref(&sig));
        assert_eq!(body, COSIGNATURE_VECTOR);
        let back = parse_cosignature_lines(body.as_bytes()).unwrap();
        assert_eq!(back, vec![sig.clone()]);
        assert_eq!(
            witness.verifier().verify(signed.checkpoint(), &back[0], 1_700_000_000, 0),
            Ok(1_700_000_000)
        );
        assert_eq!(String::from_utf8(req.to_bytes()).unwrap(), REQUEST_VECTOR);
    }

    const REQUEST_VECTOR: &str = "old 0\n\niov.example/gw/VIN123\n5\nENqhVbc7b0AHei19TjScuvg8cKix1r9QvqvEP5B68g0=\n\n\u{2014} iov.example/gw/VIN123 Qzb+CXCy3ejWx/WL4P+aVkgXMBDnos2tli7UCbsT3yxiuEkkKPXIxFJOqszl3K+/BwPOhZjrDks/KQVL7N+5qDq4hgM=\n";
    const COSIGNATURE_VECTOR: &str = "\u{2014} factory.example/ledger q9egDAAAAABlU/EAgDuOVk60cAUQvPKdvtKOgLu+T+en1eShJ63EsY2g7aIKNeqPP9PX2pSFpRpk1n0HLIMCNGsh9rqzDYBE62SpAQ==\n";

    #[test]
    fn size_bodies_round_trip_and_refuse_leading_zeros() {
        assert_eq!(size_body(42), "42\n");
        assert_eq!(parse_size_body(b"42\n"), Ok(42));
        assert_eq!(parse_size_body(b"0\n"), Ok(0));
        for bad in [&b"042\n"[..], b"42", b"", b"-1\n", b"4 2\n"] {
            assert!(parse_size_body(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn origins_escape_to_one_path_segment_and_back() {
        let o = "iov.example/gw/VIN 1+ü";
        let e = escape_origin(o);
        assert_eq!(e, "iov.example%2Fgw%2FVIN%201%2B%C3%BC");
        assert_eq!(unescape_origin(&e).unwrap(), o);
        assert_eq!(unescape_origin("a%2fb").unwrap(), "a/b");
        assert_eq!(path::blocks("a/b"), "/v1/gateways/a%2Fb/blocks");
        for bad in ["a%2", "a%zz", "%ff%fe"] {
            assert!(unescape_origin(bad).is_err(), "{bad}");
        }
    }

    type Entries = Vec<(Value, Value)>;

    fn upload() -> Upload {
        Upload {
            blocks: vec![
                UploadBlock {
                    height: 4,
                    header: vec![1, 2, 3],
                    lanes: vec![(0, vec![9; 10]), (2, vec![])],
                },
                UploadBlock { height: 5, header: vec![4], lanes: vec![] },
            ],
            checkpoint_size: 9,
            proof: vec![Hash([5; 32]), Hash([6; 32])],
        }
    }

    #[test]
    fn cbor_messages_round_trip() {
        let u = upload();
        assert_eq!(Upload::from_cbor(&u.to_cbor(), 1 << 20, 16).unwrap(), u);
        let q = QueryBlocks {
            origin: ORIGIN.into(),
            unit: "VIN123".into(),
            checkpoint: b"cp\n".to_vec(),
            start: 4,
            end: 6,
            requested_end: 9,
            blocks: vec![QueriedBlock {
                height: 4,
                header: vec![1],
                lanes: vec![(1, vec![2, 3])],
                received_at_ns: 9,
                time_backwards: true,
                time_future: false,
            }],
            range_proof: vec![Hash([4; 32])],
        };
        assert_eq!(QueryBlocks::from_cbor(&q.to_cbor(), 1 << 20).unwrap(), q);
        let a = UploadAck { mirrored: 77 };
        assert_eq!(UploadAck::from_cbor(&a.to_cbor()).unwrap(), a);
        let l = Link {
            protocol: PROTOCOL.into(),
            ledger: "factory.example".into(),
            cosigner: "x+00000000+AA==".into(),
        };
        assert_eq!(Link::from_cbor(&l.to_cbor()).unwrap(), l);
        for witnessed in
            [None, Some(Witnessed { size: 9, root: Hash([3; 32]), checkpoint: b"cp\n".to_vec() })]
        {
            let s = GatewayState {
                origin: ORIGIN.into(),
                witnessed,
                mirrored: 4,
                lanes: vec!["factory".into()],
            };
            assert_eq!(GatewayState::from_cbor(&s.to_cbor()).unwrap(), s);
        }
        for code in ALL_CODES {
            let e = ErrorBody::new(code.clone(), "lane 1 at height 5:\nbad");
            assert_eq!(ErrorBody::from_cbor(&e.to_cbor()).unwrap(), e);
            let t = ErrorBody::from_text(e.to_text().as_bytes());
            assert_eq!((t.code, t.reason.as_str()), (code.clone(), "lane 1 at height 5: bad"));
            assert_eq!(ErrorCode::parse(code.as_str()), *code);
        }
        assert_eq!(ErrorCode::parse("new_thing"), ErrorCode::Other("new_thing".into()));
        assert_eq!(ErrorBody::from_text(b"Not Found\n").code, ErrorCode::Other(String::new()));
    }

    #[test]
    fn cbor_refusals_name_the_field() {
        let good = upload().to_cbor();
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(matches!(
            Upload::from_cbor(&trailing, 1 << 20, 16),
            Err(WireError::Trailing { extra: 1, .. })
        ));
        assert!(matches!(Upload::from_cbor(&good, 10, 16), Err(WireError::TooLarge { .. })));
        assert!(matches!(
            Upload::from_cbor(&good, 1 << 20, 1),
            Err(WireError::TooLarge { len: 2, max: 1, .. })
        ));
        assert!(matches!(
            Upload::from_cbor(&good[..good.len() - 1], 1 << 20, 16),
            Err(WireError::Cbor { .. })
        ));

        let edit = |f: &dyn Fn(&mut Entries)| {
            let mut v: Value = ciborium::de::from_reader(good.as_slice()).unwrap();
            let Value::Map(m) = &mut v else { unreachable!() };
            f(m);
            to_cbor(&v)
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                edit(&|m| m.retain(|(k, _)| k.as_text() != Some("checkpoint_size"))),
                "checkpoint_size: missing",
            ),
            (edit(&|m| m[0].1 = uint(2)), "wire version 2"),
            (edit(&|m| m.push((Value::Text("v".into()), uint(1)))), "v: key appears twice"),
            (
                edit(&|m| m[2].1 = Value::Array(vec![Value::Bytes(vec![0; 31])])),
                "proof[0]: 31 bytes",
            ),
            (
                edit(&|m| {
                    if let Value::Array(b) = &mut m[3].1 {
                        if let Value::Map(b0) = &mut b[0] {
                            b0[2].1 = Value::Array(vec![Value::Array(vec![
                                uint(70000),
                                Value::Bytes(vec![]),
                            ])]);
                        }
                    }
                }),
                "blocks[0].lanes[0]: lane index is not a u16",
            ),
        ];
        for (bytes, want) in cases {
            let err = Upload::from_cbor(&bytes, 1 << 20, 16).unwrap_err().to_string();
            assert!(err.contains(want), "want {want:?} in {err}");
        }
        // Unknown keys are ignored (a later minor version may add fields).
        let extra = edit(&|m| m.push((Value::Text("later".into()), uint(1))));
        assert_eq!(Upload::from_cbor(&extra, 1 << 20, 16).unwrap(), upload());
    }

    proptest::proptest! {
        /// Parsers of untrusted bodies never panic, whatever the bytes.
        #[test]
        fn parsers_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            let _ = AddCheckpoint::parse(&bytes);
            let _ = Upload::from_cbor(&bytes, 1 << 20, 16);
            let _ = GatewayState::from_cbor(&bytes);
            let _ = QueryBlocks::from_cbor(&bytes, 1 << 20);
            let _ = Link::from_cbor(&bytes);
            let _ = UploadAck::from_cbor(&bytes);
            let _ = ErrorBody::from_cbor(&bytes);
            let _ = ErrorBody::from_text(&bytes);
            let _ = parse_size_body(&bytes);
            let _ = parse_cosignature_lines(&bytes);
            let _ = unescape_origin(&String::from_utf8_lossy(&bytes));
        }

        /// Any flipped bit in an encoded upload either fails to decode or decodes to something
        /// else: never silently to the same upload.
        #[test]
        fn a_flipped_bit_in_an_upload_is_never_the_same_upload(pos in 0usize..4096, bit in 0u8..8) {
            let good = upload().to_cbor();
            let mut bad = good.clone();
            let i = pos % bad.len();
            bad[i] ^= 1 << bit;
            if let Ok(u) = Upload::from_cbor(&bad, 1 << 20, 16) {
                proptest::prop_assert_ne!(u, upload());
            }
        }
    }

    #[test]
    fn every_code_has_a_status_and_only_server_trouble_is_retryable() {
        for c in ALL_CODES {
            assert!((400..600).contains(&c.status()), "{c}");
            assert_eq!(c.is_retryable(), c.status() >= 500, "{c}");
        }
    }
}
