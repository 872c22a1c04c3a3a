//! Pure checks over headers, lane ciphertexts and Merkle proofs. Every failure names what did
//! not match (height, lane, field, expected vs got).
//!
//! - [`chain_segment`]: consecutive heights, `prev` links, one gateway.
//! - [`lane_against_header`]: a lane ciphertext's size and BLAKE3 digest.
//! - [`header_inclusion`]: one header is leaf `height` of a checkpointed tree.
//! - [`range_proof`] / [`complete_range`]: a run of headers is *every* leaf between two
//!   heights of a checkpointed tree (the gateway's log), so no block was left out.
//!
//! The gateway's log has the canonical header bytes as leaves, leaf index = height, RFC 6962
//! leaf hash. Headers are not signed one by one: the gateway signs checkpoints of this tree,
//! which cover every header in it.

use crate::block::{hex32, BlockHash, BlockHeader};
use crate::checkpoint::{Checkpoint, CheckpointError, SignedCheckpoint};
use crate::merkle::{self, Hash, HashReader, ProofError, VerifyError};
use crate::note::{Ed25519Verifier, Verifier};

/// Why a chain, lane or completeness check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    #[error("block at height {height} has {lanes} lanes, no lane {index}")]
    NoSuchLane { height: u64, index: usize, lanes: usize },
    #[error("lane {index} ({lane:?}) at height {height}: ciphertext is {got} bytes, header says {expected}")]
    LaneSize { height: u64, index: usize, lane: String, expected: u64, got: u64 },
    #[error("lane {index} ({lane:?}) at height {height}: ciphertext BLAKE3 {got}, header says {expected}")]
    LaneDigest { height: u64, index: usize, lane: String, expected: String, got: String },
    #[error("header {position} of the segment has height {got}, expected {expected}")]
    Height { position: usize, expected: u64, got: u64 },
    #[error("header at height {height}: prev {got:?}, expected {expected:?}")]
    Prev { height: u64, expected: BlockHash, got: BlockHash },
    #[error("header at height {height}: gateway {got}, expected {expected}")]
    Gateway { height: u64, expected: String, got: String },
    #[error("header at height {height}: version {got}, expected {expected}")]
    Version { height: u64, expected: u64, got: u64 },
    #[error("header at height {height} breaks a header rule: {reason}")]
    Rule { height: u64, reason: String },
    #[error("the range is empty: give at least one header")]
    EmptyRange,
    #[error("headers up to height {last} are beyond the checkpoint's tree size {tree_size}")]
    BeyondTree { last: u64, tree_size: u64 },
    #[error("range proof has {got} hashes, a range [{start}, {end}) of a tree of {tree_size} needs {want}")]
    RangeProofLength { start: u64, end: u64, tree_size: u64, got: usize, want: usize },
    #[error("headers [{start}, {end}) with the range proof give root {computed:?}, checkpoint root is {expected:?}")]
    RangeRoot { start: u64, end: u64, computed: Hash, expected: Hash },
    #[error("header at height {height} is not in the checkpointed tree: {source}")]
    Inclusion { height: u64, source: VerifyError },
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("checkpoint is signed by key {signer}, the headers name gateway {gateway}")]
    CheckpointKey { signer: String, gateway: String },
}

/// Checks a lane ciphertext's size and BLAKE3 digest against the header.
pub fn lane_against_header(
    header: &BlockHeader,
    index: usize,
    lane_ciphertext: &[u8],
) -> Result<(), ChainError> {
    let lane = header.lanes.get(index).ok_or(ChainError::NoSuchLane {
        height: header.height,
        index,
        lanes: header.lanes.len(),
    })?;
    if lane_ciphertext.len() as u64 != lane.size {
        return Err(ChainError::LaneSize {
            height: header.height,
            index,
            lane: lane.name.clone(),
            expected: lane.size,
            got: lane_ciphertext.len() as u64,
        });
    }
    let got = *blake3::hash(lane_ciphertext).as_bytes();
    if got != lane.digest {
        return Err(ChainError::LaneDigest {
            height: header.height,
            index,
            lane: lane.name.clone(),
            expected: hex32(&lane.digest),
            got: hex32(&got),
        });
    }
    Ok(())
}

/// Checks that `headers` are consecutive blocks of one gateway: heights increase by one, each
/// `prev` is the hash of the header before it, the first `prev` equals `expected_prev` when
/// given (and is zero at height 0), and every header obeys the header rules. Time ranges may
/// overlap or step back between blocks (a gateway clock can be corrected); within a header
/// `first_ns <= last_ns`.
pub fn chain_segment(
    headers: &[BlockHeader],
    expected_prev: Option<BlockHash>,
) -> Result<(), ChainError> {
    let Some(first) = headers.first() else { return Ok(()) };
    let mut want_prev = match expected_prev {
        Some(p) => Some(p),
        None if first.height == 0 => Some(BlockHash::ZERO),
        None => None,
    };
    for (position, h) in headers.iter().enumerate() {
        h.check_rules()
            .map_err(|e| ChainError::Rule { height: h.height, reason: e.to_string() })?;
        let expected = first.height.checked_add(position as u64).ok_or(ChainError::Height {
            position,
            expected: u64::MAX,
            got: h.height,
        })?;
        if h.height != expected {
            return Err(ChainError::Height { position, expected, got: h.height });
        }
        if h.gateway != first.gateway {
            return Err(ChainError::Gateway {
                height: h.height,
                expected: hex32(&first.gateway),
                got: hex32(&h.gateway),
            });
        }
        if h.version != first.version {
            return Err(ChainError::Version {
                height: h.height,
                expected: first.version,
                got: h.version,
            });
        }
        if h.height == 0 && h.prev != BlockHash::ZERO {
            return Err(ChainError::Prev { height: 0, expected: BlockHash::ZERO, got: h.prev });
        }
        if let Some(p) = want_prev {
            if h.prev != p {
                return Err(ChainError::Prev { height: h.height, expected: p, got: h.prev });
            }
        }
        want_prev = Some(h.hash());
    }
    Ok(())
}

/// RFC 6962 leaf hash of a header's canonical bytes.
pub fn header_leaf_hash(header: &BlockHeader) -> Hash {
    merkle::leaf_hash(&header.to_bytes())
}

/// Checks that `header` is leaf `header.height` of the tree `checkpoint` commits to.
pub fn header_inclusion(
    header: &BlockHeader,
    checkpoint: &Checkpoint,
    proof: &[Hash],
) -> Result<(), ChainError> {
    merkle::verify_inclusion(
        &header_leaf_hash(header),
        header.height,
        checkpoint.size(),
        proof,
        checkpoint.root(),
    )
    .map_err(|source| ChainError::Inclusion { height: header.height, source })
}

fn split(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

fn subtree<R: HashReader + ?Sized>(r: &R, lo: u64, hi: u64) -> Result<Hash, ProofError> {
    let n = hi - lo;
    if n.is_power_of_two() && lo.is_multiple_of(n) {
        let level = n.trailing_zeros() as u8;
        return Ok(r.node(level, lo >> level)?);
    }
    let k = split(n);
    Ok(merkle::node_hash(&subtree(r, lo, lo + k)?, &subtree(r, lo + k, hi)?))
}

fn range_walk<R: HashReader + ?Sized>(
    r: &R,
    lo: u64,
    hi: u64,
    start: u64,
    end: u64,
    out: &mut Vec<Hash>,
) -> Result<(), ProofError> {
    if hi <= start || lo >= end {
        out.push(subtree(r, lo, hi)?);
    } else if !(start <= lo && hi <= end) {
        let k = split(hi - lo);
        range_walk(r, lo, lo + k, start, end, out)?;
        range_walk(r, lo + k, hi, start, end, out)?;
    }
    Ok(())
}

/// Range proof for leaves `[start, end)` of the tree of `tree_size`: the roots of the maximal
/// RFC 6962 subtrees that lie wholly outside the range, left to right in the order the RFC
/// recursion meets them. With the range's own leaves they give the root.
pub fn range_proof<R: HashReader + ?Sized>(
    r: &R,
    tree_size: u64,
    start: u64,
    end: u64,
) -> Result<Vec<Hash>, ProofError> {
    if start >= end || end > tree_size {
        return Err(ProofError::IndexOutOfRange { index: end.max(start), tree_size });
    }
    let mut out = Vec::new();
    range_walk(r, 0, tree_size, start, end, &mut out)?;
    Ok(out)
}

fn range_len(lo: u64, hi: u64, start: u64, end: u64) -> usize {
    if hi <= start || lo >= end {
        1
    } else if start <= lo && hi <= end {
        0
    } else {
        let k = split(hi - lo);
        range_len(lo, lo + k, start, end) + range_len(lo + k, hi, start, end)
    }
}

struct RangeCtx<'a> {
    start: u64,
    end: u64,
    leaves: &'a [Hash],
    proof: std::slice::Iter<'a, Hash>,
}

fn range_root(c: &mut RangeCtx<'_>, lo: u64, hi: u64) -> Option<Hash> {
    if hi <= c.start || lo >= c.end {
        return c.proof.next().copied();
    }
    if c.start <= lo && hi <= c.end {
        let a = usize::try_from(lo - c.start).ok()?;
        let b = usize::try_from(hi - c.start).ok()?;
        return Some(merkle::root_from_leaf_hashes(c.leaves.get(a..b)?));
    }
    let k = split(hi - lo);
    let left = range_root(c, lo, lo + k)?;
    let right = range_root(c, lo + k, hi)?;
    Some(merkle::node_hash(&left, &right))
}

/// Completeness: `headers` form a valid chain segment (see [`chain_segment`]) and are *all*
/// the leaves at heights `[headers[0].height, last height]` of the tree `checkpoint` commits to:
/// the root is recomputed from every header of the range and the `proof` hashes outside it.
/// Nothing can be missing, inserted or reordered, because each leaf's position is fixed by
/// the recomputation. The caller must already trust `checkpoint` (see
/// [`complete_range_signed`] to verify the gateway's signature too).
pub fn complete_range(
    headers: &[BlockHeader],
    checkpoint: &Checkpoint,
    proof: &[Hash],
) -> Result<(), ChainError> {
    let first = headers.first().ok_or(ChainError::EmptyRange)?;
    chain_segment(headers, None)?;
    let start = first.height;
    let end = start + headers.len() as u64;
    let tree_size = checkpoint.size();
    if end > tree_size {
        return Err(ChainError::BeyondTree { last: end - 1, tree_size });
    }
    let want = range_len(0, tree_size, start, end);
    if proof.len() != want {
        return Err(ChainError::RangeProofLength { start, end, tree_size, got: proof.len(), want });
    }
    let leaves: Vec<Hash> = headers.iter().map(header_leaf_hash).collect();
    let mut c = RangeCtx { start, end, leaves: &leaves, proof: proof.iter() };
    let computed = range_root(&mut c, 0, tree_size).ok_or(ChainError::RangeProofLength {
        start,
        end,
        tree_size,
        got: proof.len(),
        want,
    })?;
    if computed != *checkpoint.root() {
        return Err(ChainError::RangeRoot { start, end, computed, expected: *checkpoint.root() });
    }
    Ok(())
}

/// [`complete_range`] with the checkpoint as untrusted signed-note bytes: the note must carry
/// a valid signature by `gateway_key`, and that key must be the gateway the headers name.
pub fn complete_range_signed(
    headers: &[BlockHeader],
    checkpoint_note: &[u8],
    gateway_key: &Ed25519Verifier,
    proof: &[Hash],
) -> Result<(), ChainError> {
    let first = headers.first().ok_or(ChainError::EmptyRange)?;
    let signer = gateway_key.public_key().to_bytes();
    if signer != first.gateway {
        return Err(ChainError::CheckpointKey {
            signer: format!("{} ({})", gateway_key.name(), hex32(&signer)),
            gateway: hex32(&first.gateway),
        });
    }
    let verifiers: [&dyn Verifier; 1] = [gateway_key];
    let (signed, _) = SignedCheckpoint::verify(checkpoint_note, &verifiers)?;
    complete_range(headers, signed.checkpoint(), proof)
}
