//! The offline proof bundle: a run of one gateway's block headers (and this organisation's lane
//! ciphertexts of them), proven to be *every* block at those heights of the gateway's log by a
//! range proof against one checkpoint the gateway signed and the ledger cosigned. A third party
//! verifies it with nothing but the bundle and the two public keys (ledger cosigner vkey,
//! optionally the gateway vkey to pin it). Byte layout: `docs/formats.md`, section 10.
//!
//! In the style of C2SP tlog-proof (text lines, base64, the checkpoint note verbatim at the
//! end):
//!
//! ```text
//! iov.example/range-proof@v1
//! gateway <gateway vkey>
//! start <height of the first header>
//! header <base64 canonical header CBOR>          (one per height, in order)
//! lane <height> <index> <base64 ciphertext>       (zero or more, sorted by height, index)
//! <base64 hash>                                   (the range proof, in order)
//!
//! <checkpoint note: text, blank line, signature lines>
//! ```
//!
//! Verification refuses any bundle that is not in canonical form (the parsed bundle encoded
//! again must give the same bytes), so every byte counts: there is no slack an attacker could
//! change without the check failing. Every signature line of the note must be the gateway's or
//! the ledger's and verify.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ledger::block::BlockHeader;
use ledger::checkpoint::Checkpoint;
use ledger::cosignature::CosignatureVerifier;
#[cfg(test)]
use ledger::merkle::MemoryTree;
use ledger::merkle::{self, Hash};
use ledger::note::{Ed25519Verifier, Note, Verifier as _};
use std::collections::HashMap;

use super::verify::{self, VerifiedPage, VerifyError};

/// First line of a bundle.
pub const MAGIC: &str = "iov.example/range-proof@v1";
/// Largest bundle read (headers, lanes and a note).
pub const MAX_BUNDLE_BYTES: usize = 1 << 30;

/// A parsed (not yet verified) bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    pub gateway_vkey: String,
    pub start: u64,
    /// Canonical header bytes, heights `start..start + len`.
    pub headers: Vec<Vec<u8>>,
    /// `(height, lane index, ciphertext)`.
    pub lanes: Vec<(u64, u16, Vec<u8>)>,
    pub proof: Vec<Hash>,
    pub note: Vec<u8>,
}

/// Why a bundle was refused. Parse errors name the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    #[error("line {line}: {problem}")]
    Parse { line: usize, problem: String },
    #[error("not in canonical form: first difference at byte {offset} (re-encoding the parsed bundle gives other bytes)")]
    NotCanonical { offset: usize },
    #[error("gateway key in the bundle: {0}")]
    GatewayKey(String),
    #[error("the bundle's gateway key {got} is not the pinned one {pinned}")]
    GatewayPin { pinned: String, got: String },
    #[error(
        "checkpoint note signature line {line} ({name}) is neither the gateway's nor the ledger's"
    )]
    UnknownSignature { line: usize, name: String },
    #[error("lane line {position}: height {height} is not a header of the bundle")]
    LaneHeight { position: usize, height: u64 },
    #[error(transparent)]
    Verify(Box<VerifyError>),
    #[error("pages were proven against different checkpoints (sizes {a} and {b}): the ledger moved during the export; export again")]
    MixedCheckpoints { a: u64, b: u64 },
    #[error("no pages to bundle")]
    Empty,
    #[error("range proof: {0}")]
    Proof(String),
}

impl From<VerifyError> for BundleError {
    fn from(e: VerifyError) -> BundleError {
        BundleError::Verify(Box::new(e))
    }
}

impl Bundle {
    /// The canonical encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = String::new();
        s.push_str(MAGIC);
        s.push('\n');
        s.push_str(&format!("gateway {}\nstart {}\n", self.gateway_vkey, self.start));
        for h in &self.headers {
            s.push_str("header ");
            s.push_str(&STANDARD.encode(h));
            s.push('\n');
        }
        for (height, index, ct) in &self.lanes {
            s.push_str(&format!("lane {height} {index} {}\n", STANDARD.encode(ct)));
        }
        for h in &self.proof {
            s.push_str(&STANDARD.encode(h.0));
            s.push('\n');
        }
        s.push('\n');
        let mut out = s.into_bytes();
        out.extend_from_slice(&self.note);
        out
    }

    /// Parses a bundle and checks it is in canonical form. Nothing is verified yet.
    pub fn parse(bytes: &[u8]) -> Result<Bundle, BundleError> {
        let perr = |line: usize, problem: String| BundleError::Parse { line, problem };
        if bytes.len() > MAX_BUNDLE_BYTES {
            return Err(perr(0, format!("{} bytes, limit {MAX_BUNDLE_BYTES}", bytes.len())));
        }
        let split = bytes
            .windows(2)
            .position(|w| w == b"\n\n")
            .ok_or_else(|| perr(0, "no blank line before the checkpoint note".into()))?;
        let head =
            std::str::from_utf8(&bytes[..split]).map_err(|e| perr(0, format!("not UTF-8: {e}")))?;
        let note = bytes[split + 2..].to_vec();
        let mut lines = head.split('\n').enumerate().map(|(i, l)| (i + 1, l));
        let mut next = |what: &str| {
            lines.next().ok_or_else(|| perr(0, format!("ends before the {what} line")))
        };
        let (n, magic) = next("first")?;
        if magic != MAGIC {
            return Err(perr(n, format!("want {MAGIC:?}")));
        }
        let (n, g) = next("gateway")?;
        let gateway_vkey = g
            .strip_prefix("gateway ")
            .ok_or_else(|| perr(n, "want `gateway <vkey>`".into()))?
            .to_owned();
        let (n, st) = next("start")?;
        let start = st
            .strip_prefix("start ")
            .and_then(|x| x.parse::<u64>().ok())
            .ok_or_else(|| perr(n, "want `start <height>`".into()))?;
        let mut b = Bundle {
            gateway_vkey,
            start,
            headers: Vec::new(),
            lanes: Vec::new(),
            proof: Vec::new(),
            note,
        };
        let b64 =
            |n: usize, s: &str| STANDARD.decode(s).map_err(|e| perr(n, format!("bad base64: {e}")));
        for (n, line) in lines {
            if let Some(h) = line.strip_prefix("header ") {
                if !b.lanes.is_empty() || !b.proof.is_empty() {
                    return Err(perr(n, "header line after lane or proof lines".into()));
                }
                b.headers.push(b64(n, h)?);
            } else if let Some(l) = line.strip_prefix("lane ") {
                if !b.proof.is_empty() {
                    return Err(perr(n, "lane line after proof lines".into()));
                }
                let mut parts = l.splitn(3, ' ');
                let height = parts.next().and_then(|x| x.parse::<u64>().ok());
                let index = parts.next().and_then(|x| x.parse::<u16>().ok());
                let (Some(height), Some(index), Some(data)) = (height, index, parts.next()) else {
                    return Err(perr(n, "want `lane <height> <index> <base64>`".into()));
                };
                b.lanes.push((height, index, b64(n, data)?));
            } else {
                let raw = b64(n, line)?;
                let arr: [u8; 32] =
                    raw.try_into().map_err(|_| perr(n, "a proof hash must be 32 bytes".into()))?;
                b.proof.push(Hash(arr));
            }
        }
        let again = b.to_bytes();
        if again != bytes {
            let offset = again
                .iter()
                .zip(bytes)
                .position(|(a, c)| a != c)
                .unwrap_or(again.len().min(bytes.len()));
            return Err(BundleError::NotCanonical { offset });
        }
        Ok(b)
    }
}

/// What a verified bundle proves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proven {
    pub origin: String,
    pub checkpoint: Checkpoint,
    pub cosigned_at: u64,
    pub start: u64,
    pub end: u64,
    pub headers: Vec<BlockHeader>,
    pub lanes: Vec<(u64, u16, Vec<u8>)>,
    /// Records of blocks `start+1 .. end-1` cover every record of the log with a time in
    /// `(complete_after_ns, complete_before_ns)` when clocks run forward: the first and last
    /// headers are the boundaries (`None`: the log starts at `start` / the range runs to the
    /// checkpoint's end).
    pub complete_after_ns: Option<u64>,
    pub complete_before_ns: Option<u64>,
}

/// Verifies a bundle with nothing but public keys (see the module docs). `now_s` bounds
/// cosignature timestamps.
pub fn verify(
    bytes: &[u8],
    ledger_key: &CosignatureVerifier,
    gateway_pin: Option<&Ed25519Verifier>,
    now_s: u64,
) -> Result<Proven, BundleError> {
    let b = Bundle::parse(bytes)?;
    let gateway = Ed25519Verifier::from_vkey(&b.gateway_vkey)
        .map_err(|e| BundleError::GatewayKey(e.to_string()))?;
    if gateway.to_vkey() != b.gateway_vkey {
        return Err(BundleError::GatewayKey("not in canonical form".into()));
    }
    if let Some(p) = gateway_pin {
        if p != &gateway {
            return Err(BundleError::GatewayPin { pinned: p.to_vkey(), got: b.gateway_vkey });
        }
    }
    let trust = verify::Trust { gateway: gateway.clone(), ledger: ledger_key.clone() };
    let (checkpoint, cosigned_at) = verify::checkpoint(&b.note, &trust, now_s)?;
    let note = Note::parse(&b.note).map_err(|e| VerifyError::Note { reason: e.to_string() })?;
    for (i, sig) in note.signatures().iter().enumerate() {
        let is_gateway = sig.name == gateway.name() && sig.key_id == gateway.key_id();
        if !is_gateway
            && ledger_key.verify(&checkpoint, sig, now_s, verify::MAX_COSIGNATURE_SKEW_S).is_err()
        {
            return Err(BundleError::UnknownSignature { line: i + 1, name: sig.name.clone() });
        }
    }
    let mut headers = Vec::with_capacity(b.headers.len());
    for (i, raw) in b.headers.iter().enumerate() {
        let height = b.start + i as u64;
        let h = BlockHeader::from_bytes(raw)
            .map_err(|e| VerifyError::Header { height, reason: e.to_string() })?;
        if h.height != height {
            return Err(VerifyError::Header {
                height,
                reason: format!("the header says height {}", h.height),
            }
            .into());
        }
        if h.to_bytes() != *raw {
            return Err(VerifyError::Header { height, reason: "not canonical CBOR".into() }.into());
        }
        headers.push(h);
    }
    let end = b.start + headers.len() as u64;
    ledger::verify::complete_range_signed(&headers, &b.note, &gateway, &b.proof)
        .map_err(|e| VerifyError::Completeness { start: b.start, end, source: Box::new(e) })?;
    let mut last: Option<(u64, u16)> = None;
    for (position, (height, index, ct)) in b.lanes.iter().enumerate() {
        if last.is_some_and(|l| l >= (*height, *index)) {
            return Err(BundleError::Parse {
                line: 0,
                problem: format!("lane line {position} is out of order or repeated"),
            });
        }
        last = Some((*height, *index));
        let h = height
            .checked_sub(b.start)
            .and_then(|i| headers.get(usize::try_from(i).ok()?))
            .ok_or(BundleError::LaneHeight { position, height: *height })?;
        ledger::verify::lane_against_header(h, usize::from(*index), ct)
            .map_err(|e| VerifyError::Lane { source: Box::new(e) })?;
    }
    let complete_after_ns = (b.start > 0).then(|| headers[0].last_ns);
    let complete_before_ns =
        (end < checkpoint.size()).then(|| headers.last().map_or(0, |h| h.first_ns));
    Ok(Proven {
        origin: gateway.name().to_owned(),
        checkpoint,
        cosigned_at,
        start: b.start,
        end,
        headers,
        lanes: b.lanes,
        complete_after_ns,
        complete_before_ns,
    })
}

/// Builds a bundle from verified pages of one gateway (boundary and data pages, any order,
/// together contiguous), all proven against the same checkpoint. `lanes_of` says which lane
/// ciphertexts to include: `(height)` of the data blocks (boundary blocks carry headers only).
pub fn build(
    pages: &[&VerifiedPage],
    gateway_vkey: &str,
    include_lanes: impl Fn(u64) -> bool,
) -> Result<Bundle, BundleError> {
    let mut pages: Vec<&VerifiedPage> = pages.to_vec();
    pages.sort_by_key(|p| p.start);
    let first = *pages.first().ok_or(BundleError::Empty)?;
    for p in &pages {
        if p.checkpoint != first.checkpoint {
            return Err(BundleError::MixedCheckpoints {
                a: first.checkpoint.size(),
                b: p.checkpoint.size(),
            });
        }
    }
    let size = first.checkpoint.size();
    let mut known: HashMap<(u64, u64), Hash> = HashMap::new();
    let mut headers = Vec::new();
    let mut lanes = Vec::new();
    let mut at = first.start;
    for p in &pages {
        if p.start != at {
            return Err(BundleError::Proof(format!(
                "pages are not contiguous: height {at} is followed by a page at {}",
                p.start
            )));
        }
        at = p.end;
        let mut it = p.range_proof.iter();
        record_outside(0, size, p.start, p.end, &mut it, &mut known)?;
        for (h, l) in p.headers.iter().zip(&p.lanes) {
            known.insert((h.height, h.height + 1), ledger::verify::header_leaf_hash(h));
            headers.push(h.to_bytes());
            if include_lanes(h.height) {
                let mut l = l.clone();
                l.sort_by_key(|(i, _)| *i);
                lanes.extend(l.into_iter().map(|(i, ct)| (h.height, i, ct)));
            }
        }
    }
    let mut proof = Vec::new();
    union_proof(0, size, first.start, at, &known, &mut proof)?;
    Ok(Bundle {
        gateway_vkey: gateway_vkey.to_owned(),
        start: first.start,
        headers,
        lanes,
        proof,
        note: first.note.clone(),
    })
}

fn split(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Walks the RFC 6962 structure as `ledger::verify::range_proof` does and records each
/// proof hash under the subtree `[lo, hi)` it is the root of.
fn record_outside(
    lo: u64,
    hi: u64,
    start: u64,
    end: u64,
    proof: &mut std::slice::Iter<'_, Hash>,
    known: &mut HashMap<(u64, u64), Hash>,
) -> Result<(), BundleError> {
    if hi <= start || lo >= end {
        let h = proof.next().ok_or_else(|| BundleError::Proof("a page's proof is short".into()))?;
        known.insert((lo, hi), *h);
    } else if !(start <= lo && hi <= end) {
        let k = split(hi - lo);
        record_outside(lo, lo + k, start, end, proof, known)?;
        record_outside(lo + k, hi, start, end, proof, known)?;
    }
    Ok(())
}

fn subtree(lo: u64, hi: u64, known: &HashMap<(u64, u64), Hash>) -> Result<Hash, BundleError> {
    if let Some(h) = known.get(&(lo, hi)) {
        return Ok(*h);
    }
    if hi - lo <= 1 {
        return Err(BundleError::Proof(format!("no hash for leaf {lo}")));
    }
    let k = split(hi - lo);
    Ok(merkle::node_hash(&subtree(lo, lo + k, known)?, &subtree(lo + k, hi, known)?))
}

/// The range proof of `[start, end)` from the subtree hashes the pages' proofs revealed.
fn union_proof(
    lo: u64,
    hi: u64,
    start: u64,
    end: u64,
    known: &HashMap<(u64, u64), Hash>,
    out: &mut Vec<Hash>,
) -> Result<(), BundleError> {
    if hi <= start || lo >= end {
        out.push(subtree(lo, hi, known)?);
    } else if !(start <= lo && hi <= end) {
        let k = split(hi - lo);
        union_proof(lo, lo + k, start, end, known, out)?;
        union_proof(lo + k, hi, start, end, known, out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(i: u64) -> Hash {
        merkle::leaf_hash(&i.to_be_bytes())
    }

    /// For every tree size up to 40, every range and page size: the proof merged from the
    /// pages' proofs equals the range proof computed from the whole tree.
    #[test]
    fn merged_page_proofs_equal_the_direct_range_proof() {
        for size in 1..=40u64 {
            let tree = MemoryTree::from_leaf_hashes((0..size).map(leaf));
            for a in 0..size {
                for b in a + 1..=size {
                    for page in [1u64, 2, 3, 8] {
                        let mut known = HashMap::new();
                        let mut s = a;
                        while s < b {
                            let e = (s + page).min(b);
                            let p = ledger::verify::range_proof(&tree, size, s, e).expect("proof");
                            record_outside(0, size, s, e, &mut p.iter(), &mut known).expect("walk");
                            for i in s..e {
                                known.insert((i, i + 1), leaf(i));
                            }
                            s = e;
                        }
                        let mut merged = Vec::new();
                        union_proof(0, size, a, b, &known, &mut merged).expect("merge");
                        let direct = ledger::verify::range_proof(&tree, size, a, b).expect("proof");
                        assert_eq!(merged, direct, "size {size} range [{a}, {b}) pages of {page}");
                    }
                }
            }
        }
    }

    #[test]
    fn parse_refuses_non_canonical_forms() {
        let b = Bundle {
            gateway_vkey: "g".into(),
            start: 3,
            headers: vec![vec![1, 2, 3]],
            lanes: vec![(3, 0, vec![9; 5])],
            proof: vec![Hash([7; 32])],
            note: b"origin\n1\nroot\n\n".to_vec(),
        };
        let bytes = b.to_bytes();
        assert_eq!(Bundle::parse(&bytes), Ok(b));
        let text = String::from_utf8(bytes).expect("utf8");
        // A leading zero, a trailing space: both parse to the same values, both are refused.
        for bad in [text.replace("start 3", "start 03"), text.replace("lane 3 0 ", "lane 3 0  ")] {
            assert!(Bundle::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }
}
