//! Pure checks of a ledger's query answers, and lane opening. No I/O; `now` is a parameter.
//!
//! A page ([`QueryBlocks`]) is accepted only when all of these hold, checked in this order:
//!
//! 1. it is about the gateway asked for (origin) and covers the heights asked for, one block
//!    per height in order;
//! 2. every header parses and is the block at its height;
//! 3. the checkpoint note carries a valid signature by the gateway's key (the key whose bytes
//!    the headers name), its origin is the gateway's, and the headers with the range proof
//!    recompute its root: they are *all* the blocks at those heights
//!    (`ledger::verify::complete_range_signed`);
//! 4. the note carries a valid cosignature by the ledger's cosigner key (timestamp not in the
//!    future beyond a skew);
//! 5. every lane ciphertext in the answer has the size and BLAKE3 digest its header declares.
//!
//! Between pages the caller checks the chain ([`link`]): each page's first `prev` is the hash
//! of the previous page's last header, so pages verified against different checkpoints still
//! form one history.

use ledger::block::{BlockHash, BlockHeader};
use ledger::checkpoint::Checkpoint;
use ledger::cosignature::{CosignatureError, CosignatureVerifier};
use ledger::keys::X25519Key;
use ledger::note::{Ed25519Verifier, Note, Verifier as _};
use ledger::record::Record;
use ledger::seal::OpenError;
use ledger::sync_wire::QueryBlocks;
use ledger::verify::ChainError;

/// Cosignature timestamps may be this far (seconds) ahead of the verifier's clock.
pub const MAX_COSIGNATURE_SKEW_S: u64 = 600;

/// The keys answers are checked against.
#[derive(Clone, Debug)]
pub struct Trust {
    /// The gateway's log key (its name is the origin).
    pub gateway: Ed25519Verifier,
    /// The ledger's cosigner key.
    pub ledger: CosignatureVerifier,
}

/// Why an answer was not accepted. Each variant names what did not match.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    #[error("the answer is about origin {got:?}, asked for {expected:?}")]
    Origin { expected: String, got: String },
    #[error("the answer covers heights [{start}, {end}), asked for [{asked_from}, {asked_to})")]
    Range { asked_from: u64, asked_to: u64, start: u64, end: u64 },
    #[error("the answer claims heights [{start}, {end}) but holds {blocks} blocks")]
    BlockCount { start: u64, end: u64, blocks: usize },
    #[error("block {position} of the answer is height {got}, expected {expected}")]
    BlockHeight { position: usize, expected: u64, got: u64 },
    #[error("header at height {height}: {reason}")]
    Header { height: u64, reason: String },
    #[error("checkpoint note: {reason}")]
    Note { reason: String },
    #[error("checkpoint origin {got:?} is not the gateway's {expected:?}")]
    CheckpointOrigin { expected: String, got: String },
    #[error("heights [{start}, {end}) against the gateway-signed checkpoint: {source}")]
    Completeness { start: u64, end: u64, source: Box<ChainError> },
    #[error("checkpoint (size {size}) has no cosignature by the ledger key {ledger}")]
    NotCosigned { size: u64, ledger: String },
    #[error("checkpoint (size {size}): ledger cosignature by {ledger} does not verify: {reason}")]
    Cosignature { size: u64, ledger: String, reason: String },
    #[error("lane ciphertext in the answer: {source}")]
    Lane { source: Box<ChainError> },
    #[error(
        "lane {index} ({lane:?}) at height {height} is sealed for this key but the answer lacks it"
    )]
    LaneMissing { height: u64, index: usize, lane: String },
    #[error("opening lane {index} ({lane:?}) at height {height}: {source}")]
    Open { height: u64, index: usize, lane: String, source: Box<OpenError> },
    #[error("chain break between pages: block {height} has prev {got:?}, block {} hashes to {expected:?}", height.saturating_sub(1))]
    Link { height: u64, expected: BlockHash, got: BlockHash },
    #[error("incomplete range: block {height} (records {first_ns}..{last_ns} ns) overlaps [{from_ns}, {to_ns}] but the ledger's answer {side}")]
    Boundary {
        height: u64,
        first_ns: u64,
        last_ns: u64,
        from_ns: u64,
        to_ns: u64,
        side: &'static str,
    },
}

/// A page that passed every check.
#[derive(Clone, Debug)]
pub struct VerifiedPage {
    pub origin: String,
    /// The gateway-signed, ledger-cosigned checkpoint the page was proven against.
    pub checkpoint: Checkpoint,
    /// The checkpoint note as received (both signatures).
    pub note: Vec<u8>,
    /// The ledger's cosignature timestamp (POSIX seconds).
    pub cosigned_at: u64,
    pub start: u64,
    pub end: u64,
    /// Where the ledger said the asked range ends (page again from `end` while below).
    pub requested_end: u64,
    pub headers: Vec<BlockHeader>,
    /// Per block: `(lane index, ciphertext)` as received (digests checked).
    pub lanes: Vec<Vec<(u16, Vec<u8>)>>,
    pub range_proof: Vec<ledger::merkle::Hash>,
}

/// Checks one page (see the module docs). `asked` is `(from, to)`; `from = None` accepts the
/// start the ledger chose (a time query).
pub fn page(
    q: &QueryBlocks,
    trust: &Trust,
    asked: (Option<u64>, Option<u64>),
    now_s: u64,
) -> Result<VerifiedPage, VerifyError> {
    let origin = trust.gateway.name();
    if q.origin != origin {
        return Err(VerifyError::Origin { expected: origin.to_owned(), got: q.origin.clone() });
    }
    let bad_range = || VerifyError::Range {
        asked_from: asked.0.unwrap_or(q.start),
        asked_to: asked.1.unwrap_or(q.requested_end),
        start: q.start,
        end: q.end,
    };
    if asked.0.is_some_and(|f| f != q.start)
        || q.end <= q.start
        || asked.1.is_some_and(|t| q.end > t)
        || q.requested_end < q.end
    {
        return Err(bad_range());
    }
    if q.blocks.len() as u64 != q.end - q.start {
        return Err(VerifyError::BlockCount { start: q.start, end: q.end, blocks: q.blocks.len() });
    }
    let mut headers = Vec::with_capacity(q.blocks.len());
    for (i, b) in q.blocks.iter().enumerate() {
        let expected = q.start + i as u64;
        if b.height != expected {
            return Err(VerifyError::BlockHeight { position: i, expected, got: b.height });
        }
        let h = BlockHeader::from_bytes(&b.header)
            .map_err(|e| VerifyError::Header { height: expected, reason: e.to_string() })?;
        if h.height != expected {
            return Err(VerifyError::Header {
                height: expected,
                reason: format!("the header says height {}", h.height),
            });
        }
        headers.push(h);
    }
    let (checkpoint, cosigned_at) = checkpoint(&q.checkpoint, trust, now_s)?;
    ledger::verify::complete_range_signed(&headers, &q.checkpoint, &trust.gateway, &q.range_proof)
        .map_err(|e| VerifyError::Completeness {
            start: q.start,
            end: q.end,
            source: Box::new(e),
        })?;
    for (b, h) in q.blocks.iter().zip(&headers) {
        for (index, ct) in &b.lanes {
            ledger::verify::lane_against_header(h, usize::from(*index), ct)
                .map_err(|e| VerifyError::Lane { source: Box::new(e) })?;
        }
    }
    Ok(VerifiedPage {
        origin: q.origin.clone(),
        checkpoint,
        note: q.checkpoint.clone(),
        cosigned_at,
        start: q.start,
        end: q.end,
        requested_end: q.requested_end,
        headers,
        lanes: q.blocks.iter().map(|b| b.lanes.clone()).collect(),
        range_proof: q.range_proof.clone(),
    })
}

/// Checks a checkpoint note: signed by the gateway (origin = its name) and cosigned by the
/// ledger. Returns the checkpoint and the cosignature's timestamp.
pub fn checkpoint(
    note_bytes: &[u8],
    trust: &Trust,
    now_s: u64,
) -> Result<(Checkpoint, u64), VerifyError> {
    let verifiers: [&dyn ledger::note::Verifier; 1] = [&trust.gateway];
    let (signed, _) = ledger::checkpoint::SignedCheckpoint::verify(note_bytes, &verifiers)
        .map_err(|e| VerifyError::Note { reason: format!("gateway signature: {e}") })?;
    let cp = signed.checkpoint().clone();
    if cp.origin() != trust.gateway.name() {
        return Err(VerifyError::CheckpointOrigin {
            expected: trust.gateway.name().to_owned(),
            got: cp.origin().to_owned(),
        });
    }
    let note = Note::parse(note_bytes).map_err(|e| VerifyError::Note { reason: e.to_string() })?;
    let at = cosigned_at(&note, &cp, &trust.ledger, now_s)?;
    Ok((cp, at))
}

/// The timestamp of the first signature line of `note` that is `ledger`'s cosignature over
/// `cp`; a line by that key that does not verify is an error, not skipped.
pub fn cosigned_at(
    note: &Note,
    cp: &Checkpoint,
    ledger: &CosignatureVerifier,
    now_s: u64,
) -> Result<u64, VerifyError> {
    for sig in note.signatures() {
        match ledger.verify(cp, sig, now_s, MAX_COSIGNATURE_SKEW_S) {
            Ok(at) => return Ok(at),
            Err(CosignatureError::WrongKey { .. }) => continue,
            Err(e) => {
                return Err(VerifyError::Cosignature {
                    size: cp.size(),
                    ledger: ledger.to_vkey(),
                    reason: e.to_string(),
                })
            }
        }
    }
    Err(VerifyError::NotCosigned { size: cp.size(), ledger: ledger.to_vkey() })
}

/// The chain between pages: `next` starts where `prev` ended and links to its last header.
pub fn link(prev_last: &BlockHeader, next_first: &BlockHeader) -> Result<(), VerifyError> {
    let expected = prev_last.hash();
    if next_first.height != prev_last.height + 1 || next_first.prev != expected {
        return Err(VerifyError::Link {
            height: next_first.height,
            expected,
            got: next_first.prev,
        });
    }
    Ok(())
}

/// Opened records of one lane of one block.
#[derive(Debug)]
pub struct OpenedLane {
    pub height: u64,
    pub lane: String,
    pub records: Vec<Record>,
}

/// Opens every lane of the page sealed for `key` (only lane `only` when given). A lane the
/// header says is sealed for `key` but the answer lacks is an error, not a silent gap.
pub fn open_page(
    page: &VerifiedPage,
    key: &X25519Key,
    only: Option<&str>,
) -> Result<Vec<OpenedLane>, VerifyError> {
    let me = *key.public().as_bytes();
    let limits = ledger::lane::Limits::DEFAULT;
    let mut out = Vec::new();
    for (h, lanes) in page.headers.iter().zip(&page.lanes) {
        for (index, info) in h.lanes.iter().enumerate() {
            if !info.recipients.contains(&me) || only.is_some_and(|o| o != info.name) {
                continue;
            }
            let ct =
                lanes.iter().find(|(i, _)| usize::from(*i) == index).map(|(_, c)| c).ok_or_else(
                    || VerifyError::LaneMissing {
                        height: h.height,
                        index,
                        lane: info.name.clone(),
                    },
                )?;
            let records =
                ledger::seal::open_lane_bytes(h, index, ct, key, &limits).map_err(|source| {
                    VerifyError::Open {
                        height: h.height,
                        index,
                        lane: info.name.clone(),
                        source: Box::new(source),
                    }
                })?;
            out.push(OpenedLane { height: h.height, lane: info.name.clone(), records });
        }
    }
    Ok(out)
}
