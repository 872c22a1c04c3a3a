//! Durable storage for one gateway's log: block headers (the log entries), lane ciphertexts,
//! tiles, entry bundles, checkpoints, and per-ledger sync cursors and receipts.
//!
//! The [`Store`] trait is the boundary: [`memory::Memory`] backs pure tests, `rocks::Rocks`
//! (feature `rocks`) is the embedded, crash-safe default. The log math lives in [`crate::log`];
//! [`append_blocks`] joins the two: it reads what the log needs, lets the log compute the writes,
//! and commits blocks and writes as one [`Append`].
//!
//! Writing is block-agnostic: a block is header bytes (the Merkle leaf) plus lane blobs stored
//! beside it ([`append_sealed`] takes [`crate::block::SealedBlock`]s). Verification is
//! block-aware: headers must decode as [`crate::block::BlockHeader`]s of this gateway, chain by
//! `prev`, and list every lane's BLAKE3 digest and size ([`crate::verify_store`]).
//!
//! # Keys (big-endian, so iteration runs in height / index order)
//!
//! | what | key | value |
//! |---|---|---|
//! | header | `height` u64 | header bytes (= leaf `height` of the log) |
//! | lane | `height` u64, `lane` u16 | lane ciphertext |
//! | tile | `level` u8, `index` u64 | current tile contents (partial tiles grow) |
//! | entry bundle | `0xff`, `index` u64 | current bundle of level-0 tile `index` |
//! | checkpoint | `size` u64 | signed checkpoint note for that size |
//! | cursor / receipt | ledger name (UTF-8) | opaque bytes |
//! | meta | `format`, `origin`, `head` | `iov-store/v1`, origin text, head size u64 |
//! | meta | `pruned_below` | u64: lanes of every lower height were pruned (absent = 0) |
//! | meta | `prune_note` | opaque bytes the last pruning caller asked to keep (absent = none) |
//!
//! # Pruning
//!
//! Retention frees space by deleting **lane ciphertexts** of the oldest heights
//! ([`Store::prune_lanes`]): lanes are the bulk of a store, while headers, tiles, entry bundles
//! and checkpoints stay, so the log and every proof over it remain verifiable. The new
//! `pruned_below` is written in the same durable batch as the deletion, so verification can
//! tell a pruned prefix (lanes absent below it, on purpose) from damage (a lane missing above it).

pub mod cursor;
pub mod memory;
#[cfg(feature = "rocks")]
pub mod rocks;

use std::fmt;

use crate::log::{self, BundleSource, LogError, LogWrites, PrefixTiles, StoredTiles};
use crate::merkle::Hash;
use crate::note::Ed25519Signer;
use crate::tile::TileError;

/// Value of the meta `format` key.
pub const FORMAT: &[u8] = b"iov-store/v1";
/// Tile-CF key prefix for entry bundles (tile levels are at most 63).
pub const BUNDLE_PREFIX: u8 = 0xff;

/// One block as the store sees it: header bytes (the log entry) and its lanes.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BlockData {
    pub header: Vec<u8>,
    pub lanes: Vec<Vec<u8>>,
}

/// One atomic append: blocks at heights `log.old_size..log.new_size` and the log's writes.
#[derive(Debug, Clone)]
pub struct Append {
    pub blocks: Vec<BlockData>,
    pub log: LogWrites,
}

/// Which stored thing a problem is about: column family and key, as a log line names them.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Place {
    pub cf: &'static str,
    pub key: String,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.cf, self.key)
    }
}

/// One precise problem found in a store: where, and what did not match.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Damage {
    pub place: Place,
    pub problem: String,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.problem)
    }
}

impl Damage {
    pub fn new(cf: &'static str, key: impl Into<String>, problem: impl Into<String>) -> Damage {
        Damage { place: Place { cf, key: key.into() }, problem: problem.into() }
    }
}

pub fn height_key(height: u64) -> String {
    format!("height {height}")
}

/// Why a store operation failed. `Io` and `Poisoned` are fatal for the writer: after a failed
/// write or fsync the store refuses every further write, and the process should exit and let
/// its supervisor restart it (recovery on open then decides what is durable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("reading {place} failed: {reason}")]
    Read { place: Place, reason: String },
    #[error("store I/O failed at {place}: {reason} (fatal: the store accepts no more writes)")]
    Io { place: Place, reason: String },
    #[error("store refuses writes after an earlier I/O error: {first}")]
    Poisoned { first: String },
    #[error("append expects head {expected}, store head is {found}")]
    HeadMoved { expected: u64, found: u64 },
    #[error("append carries {blocks} blocks for log sizes {old_size}..{new_size}")]
    BadAppend { blocks: usize, old_size: u64, new_size: u64 },
    #[error("block at height {height} has {lanes} lanes, at most {max}")]
    TooManyLanes { height: u64, lanes: usize, max: usize },
    #[error("store damaged: {0}")]
    Damaged(Damage),
    #[error("store is damaged in {} places; first: {}", .0.len(), .0.first().map(ToString::to_string).unwrap_or_default())]
    DamagedMany(Vec<Damage>),
    #[error("preparing the log append: {0}")]
    Log(#[from] LogError),
    #[error("store at {path}: {reason}")]
    Open { path: String, reason: String },
    #[error(
        "pruning lanes below height {below}: the head is {head}, nothing past it can be pruned"
    )]
    BadPrune { below: u64, head: u64 },
    #[error("this store backend does not support {what}")]
    Unsupported { what: &'static str },
}

/// What [`Store::prune_lanes`] did: lanes of heights `from..below` are gone (`from == below` when
/// there was nothing left to prune).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Pruned {
    pub from: u64,
    pub below: u64,
}

impl Pruned {
    /// Heights whose lanes this call deleted.
    pub fn blocks(&self) -> u64 {
        self.below - self.from
    }
}

/// Checks a prune request against the head and the current `pruned_below`: `Ok(None)` when there
/// is nothing to do.
pub(crate) fn check_prune(
    head: u64,
    pruned_below: u64,
    below: u64,
) -> Result<Option<u64>, StoreError> {
    if below > head {
        return Err(StoreError::BadPrune { below, head });
    }
    Ok((below > pruned_below).then_some(pruned_below))
}

/// Storage for one gateway's log. Reads return `Ok(None)` for absent keys and `Err` when the
/// backend failed (including a checksum mismatch the backend detected).
pub trait Store {
    /// Tree size = number of blocks = next height.
    fn size(&self) -> u64;
    /// Origin of the log (the gateway's key name).
    fn origin(&self) -> &str;

    /// Commits blocks, tiles, bundles, checkpoint and the new head atomically; durable when it
    /// returns `Ok`. Refused when `append.log.old_size` is not the head.
    fn append(&mut self, append: &Append) -> Result<(), StoreError>;

    fn header(&self, height: u64) -> Result<Option<Vec<u8>>, StoreError>;
    fn lane(&self, height: u64, lane: u16) -> Result<Option<Vec<u8>>, StoreError>;
    /// All lanes of a block, in lane order.
    fn lanes(&self, height: u64) -> Result<Vec<Vec<u8>>, StoreError>;
    /// Current contents of tile `(level, index)`.
    fn tile(&self, level: u8, index: u64) -> Result<Option<Vec<u8>>, StoreError>;
    /// Current entry bundle of level-0 tile `index`.
    fn bundle(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError>;
    /// The latest signed checkpoint (for the head), if the log is not empty.
    fn checkpoint(&self) -> Result<Option<Vec<u8>>, StoreError>;
    /// The signed checkpoint written when the log reached `size`.
    fn checkpoint_at(&self, size: u64) -> Result<Option<Vec<u8>>, StoreError>;
    /// Size of the latest stored checkpoint.
    fn last_checkpoint_size(&self) -> Result<Option<u64>, StoreError>;
    /// Sizes of every stored checkpoint, ascending.
    fn checkpoint_sizes(&self) -> Result<Vec<u64>, StoreError>;
    /// Highest stored header height and highest height with a lane, to find strays past the head.
    fn last_heights(&self) -> Result<(Option<u64>, Option<u64>), StoreError>;

    /// Reads every stored key and value of every column family (so the backend checks every
    /// block checksum, including data verification would otherwise not touch, such as cursors
    /// and receipts); returns the problems found. Backends without checksums have nothing to do.
    fn scan_all(&self) -> Vec<Damage> {
        Vec::new()
    }

    /// Lanes of every height below this were pruned on purpose (0: none). Headers, tiles,
    /// bundles and checkpoints of those heights are kept.
    fn pruned_below(&self) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// Deletes the lanes of every height below `below` and records the new `pruned_below` (and
    /// `note`, when given, replacing the stored one) in **one durable batch**, then returns the
    /// space to the filesystem (RocksDB: flush and compaction of the deleted range). A height
    /// at or below the current `pruned_below` is a no-op; one past the head is refused. Like an
    /// append, a failed write is fatal (the store is poisoned). Only the store's writer prunes.
    fn prune_lanes(&mut self, below: u64, note: Option<&[u8]>) -> Result<Pruned, StoreError> {
        let _ = (below, note);
        Err(StoreError::Unsupported { what: "pruning" })
    }

    /// The note stored by the last [`Store::prune_lanes`] that gave one.
    fn prune_note(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }

    /// Bytes the store occupies, when the backend can tell (RocksDB: its directory on disk,
    /// `rocks::Rocks::disk_usage`; memory: stored keys and values). `None`: unknown.
    fn usage_bytes(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    fn cursor(&self, ledger: &str) -> Result<Option<Vec<u8>>, StoreError>;
    fn set_cursor(&mut self, ledger: &str, value: &[u8]) -> Result<(), StoreError>;
    fn receipt(&self, ledger: &str) -> Result<Option<Vec<u8>>, StoreError>;
    fn set_receipt(&mut self, ledger: &str, value: &[u8]) -> Result<(), StoreError>;
}

/// Largest lane count per block (lane numbers are u16 in keys).
pub const MAX_LANES: usize = u16::MAX as usize;

/// A store's tiles, for [`PrefixTiles`].
pub struct StoreTiles<'a, S: ?Sized>(&'a S);

impl<S: Store + ?Sized> StoredTiles for StoreTiles<'_, S> {
    fn stored_tile(&self, level: u8, index: u64) -> Result<Option<Vec<u8>>, TileError> {
        self.0.tile(level, index).map_err(|e| TileError::NotFound {
            path: format!("tile/{level}/{} ({e})", crate::tile::encode_index(index)),
        })
    }
}

/// The store's tiles as a [`crate::tile::TileSource`] for any tree size up to the head.
pub fn tiles<S: Store + ?Sized>(store: &S) -> PrefixTiles<StoreTiles<'_, S>> {
    PrefixTiles(StoreTiles(store))
}

struct Bundles<'a, S: ?Sized>(&'a S);

impl<S: Store + ?Sized> BundleSource for Bundles<'_, S> {
    fn read_bundle(&self, index: u64) -> Result<Option<Vec<u8>>, TileError> {
        self.0.bundle(index).map_err(|e| TileError::NotFound {
            path: format!("tile/entries/{} ({e})", crate::tile::encode_index(index)),
        })
    }
}

/// What an append left behind: the new head and its root.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Appended {
    pub first_height: u64,
    pub new_size: u64,
    pub root: Hash,
}

/// Appends blocks: computes the log writes from the store's tiles and bundles, signs the new
/// checkpoint, and commits everything in one durable batch.
pub fn append_blocks<S: Store + ?Sized>(
    store: &mut S,
    signer: &Ed25519Signer,
    blocks: Vec<BlockData>,
) -> Result<Appended, StoreError> {
    let size = store.size();
    for (height, b) in (size..).zip(&blocks) {
        if b.lanes.len() > MAX_LANES {
            return Err(StoreError::TooManyLanes { height, lanes: b.lanes.len(), max: MAX_LANES });
        }
    }
    let headers: Vec<&[u8]> = blocks.iter().map(|b| b.header.as_slice()).collect();
    let writes = log::prepare_append(&tiles(&*store), &Bundles(&*store), size, &headers, signer)?;
    let done = Appended { first_height: size, new_size: writes.new_size, root: writes.root };
    store.append(&Append { blocks, log: writes })?;
    Ok(done)
}

/// Appends sealed blocks (header bytes as the leaves, lanes in header order).
pub fn append_sealed<S: Store + ?Sized>(
    store: &mut S,
    signer: &Ed25519Signer,
    blocks: &[crate::block::SealedBlock],
) -> Result<Appended, StoreError> {
    let data = blocks
        .iter()
        .map(|b| BlockData { header: b.header_bytes.clone(), lanes: b.lanes.clone() })
        .collect();
    append_blocks(store, signer, data)
}

/// Checks an [`Append`] against the head before a backend writes it.
pub(crate) fn check_append(head: u64, a: &Append) -> Result<(), StoreError> {
    if a.log.old_size != head {
        return Err(StoreError::HeadMoved { expected: a.log.old_size, found: head });
    }
    let n = a.log.new_size.checked_sub(a.log.old_size);
    if n != Some(a.blocks.len() as u64) || a.blocks.is_empty() {
        return Err(StoreError::BadAppend {
            blocks: a.blocks.len(),
            old_size: a.log.old_size,
            new_size: a.log.new_size,
        });
    }
    Ok(())
}

/// Key of a tile in the tiles column family.
pub fn tile_key(level: u8, index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = level;
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

/// Key of an entry bundle in the tiles column family.
pub fn bundle_key(index: u64) -> [u8; 9] {
    tile_key(BUNDLE_PREFIX, index)
}

/// Key of a lane.
pub fn lane_key(height: u64, lane: u16) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[..8].copy_from_slice(&height.to_be_bytes());
    k[8..].copy_from_slice(&lane.to_be_bytes());
    k
}

/// Recovery-on-open checks shared by every backend: the head, the tiles and the latest
/// checkpoint agree (size, recomputed root, signature with the gateway's key), the last header
/// is leaf `head - 1`, and nothing is stored past the head. Cheap: O(log n) reads.
pub fn check_head<S: Store + ?Sized>(
    store: &S,
    verifier: &crate::note::Ed25519Verifier,
) -> Result<Option<crate::checkpoint::Checkpoint>, Damage> {
    use crate::checkpoint::SignedCheckpoint;
    use crate::note::Verifier as _;

    let head = store.size();
    let read = |cf: &'static str, key: String, e: StoreError| Damage::new(cf, key, e.to_string());
    let (last_header, last_lane) =
        store.last_heights().map_err(|e| read("headers", "last".into(), e))?;
    if let Some(h) = last_header.filter(|&h| h >= head) {
        return Err(Damage::new(
            "headers",
            height_key(h),
            format!("header stored past the head {head}"),
        ));
    }
    if let Some(h) = last_lane.filter(|&h| h >= head) {
        return Err(Damage::new(
            "lanes",
            height_key(h),
            format!("lane stored past the head {head}"),
        ));
    }
    let pruned = store.pruned_below().map_err(|e| read("meta", "pruned_below".into(), e))?;
    if pruned > head {
        return Err(Damage::new(
            "meta",
            "pruned_below",
            format!("lanes pruned below {pruned}, past the head {head}"),
        ));
    }
    let last = store.last_checkpoint_size().map_err(|e| read("checkpoints", "last".into(), e))?;
    if head == 0 {
        if let Some(s) = last {
            return Err(Damage::new(
                "checkpoints",
                format!("size {s}"),
                "checkpoint in an empty log (meta head 0)",
            ));
        }
        return Ok(None);
    }
    match last {
        Some(s) if s == head => {}
        Some(s) => {
            return Err(Damage::new(
                "checkpoints",
                format!("size {s}"),
                format!("latest checkpoint is for size {s}, meta head is {head}"),
            ))
        }
        None => {
            return Err(Damage::new(
                "checkpoints",
                format!("size {head}"),
                "no checkpoint for the head",
            ))
        }
    }
    let key = format!("size {head}");
    let bytes = store
        .checkpoint_at(head)
        .map_err(|e| read("checkpoints", key.clone(), e))?
        .ok_or_else(|| Damage::new("checkpoints", key.clone(), "missing"))?;
    let (signed, _) = SignedCheckpoint::verify(&bytes, &[verifier as &dyn crate::note::Verifier])
        .map_err(|e| {
        Damage::new("checkpoints", key.clone(), format!("signature with {}: {e}", verifier.name()))
    })?;
    let cp = signed.checkpoint().clone();
    if cp.origin() != verifier.name() || cp.origin() != store.origin() {
        return Err(Damage::new(
            "checkpoints",
            key,
            format!(
                "origin {:?}, key {:?}, store {:?}",
                cp.origin(),
                verifier.name(),
                store.origin()
            ),
        ));
    }
    if cp.size() != head {
        return Err(Damage::new(
            "checkpoints",
            key,
            format!("checkpoint says size {}, head is {head}", cp.size()),
        ));
    }
    let t = tiles(store);
    let root = log::root(&t, head)
        .map_err(|e| Damage::new("tiles", format!("size {head}"), e.to_string()))?;
    if root != *cp.root() {
        return Err(Damage::new(
            "tiles",
            format!("size {head}"),
            format!(
                "tiles hash to root {}, checkpoint says {}",
                root.to_base64(),
                cp.root().to_base64()
            ),
        ));
    }
    // The last stored level-0 tile must be exactly as wide as the head implies.
    let idx = (head - 1) / crate::tile::TILE_WIDTH;
    let want =
        crate::tile::tile_width(head, 0, idx).map_or(0, usize::from) * crate::merkle::HASH_SIZE;
    let tkey = format!("tile/0/{}", crate::tile::encode_index(idx));
    let t0 = store
        .tile(0, idx)
        .map_err(|e| read("tiles", tkey.clone(), e))?
        .ok_or_else(|| Damage::new("tiles", tkey.clone(), "missing"))?;
    if t0.len() != want {
        return Err(Damage::new(
            "tiles",
            tkey,
            format!("{} bytes, head {head} implies {want}", t0.len()),
        ));
    }
    let hk = height_key(head - 1);
    let header = store
        .header(head - 1)
        .map_err(|e| read("headers", hk.clone(), e))?
        .ok_or_else(|| Damage::new("headers", hk.clone(), "missing: the head's header"))?;
    let off = t0.len() - crate::merkle::HASH_SIZE;
    if crate::merkle::leaf_hash(&header).0[..] != t0[off..] {
        return Err(Damage::new("headers", hk, "leaf hash differs from the level-0 tile"));
    }
    // The head is a block of this gateway at its height.
    let block = crate::block::BlockHeader::from_bytes(&header)
        .map_err(|e| Damage::new("headers", hk.clone(), format!("not a block header: {e}")))?;
    if block.height != head - 1 {
        return Err(Damage::new(
            "headers",
            hk,
            format!("header says height {}, stored at {}", block.height, head - 1),
        ));
    }
    if block.gateway != verifier.public_key().to_bytes() {
        return Err(Damage::new("headers", hk, "header names another gateway's key"));
    }
    Ok(Some(cp))
}

#[cfg(test)]
mod tests {
    use super::memory::Memory;
    use super::*;
    use ed25519_dalek::SigningKey;

    fn signer() -> Ed25519Signer {
        Ed25519Signer::new("iov.example/gw/m", SigningKey::from_bytes(&[2; 32])).unwrap()
    }

    fn block(h: u64) -> BlockData {
        BlockData { header: format!("h{h}").into_bytes(), lanes: vec![vec![1, 2, 3]] }
    }

    #[test]
    fn an_append_prepared_for_an_older_head_is_refused() {
        let s = signer();
        let mut m = Memory::new(s.name());
        let stale = log::prepare_append(&tiles(&m), &Bundles(&m), 0, &[b"a"], &s).unwrap();
        append_blocks(&mut m, &s, vec![block(0)]).unwrap();
        let err = m.append(&Append { blocks: vec![block(1)], log: stale }).unwrap_err();
        assert_eq!(err, StoreError::HeadMoved { expected: 0, found: 1 });
        assert_eq!(m.size(), 1);
    }

    #[test]
    fn an_append_whose_block_count_does_not_match_the_log_is_refused() {
        let s = signer();
        let mut m = Memory::new(s.name());
        let w = log::prepare_append(&tiles(&m), &Bundles(&m), 0, &[b"a", b"b"], &s).unwrap();
        let err = m.append(&Append { blocks: vec![block(0)], log: w }).unwrap_err();
        assert_eq!(err, StoreError::BadAppend { blocks: 1, old_size: 0, new_size: 2 });
    }

    #[test]
    fn cursors_and_receipts_are_kept_per_ledger() {
        let s = signer();
        let mut m = Memory::new(s.name());
        m.set_cursor("factory", b"5").unwrap();
        m.set_receipt("city", b"r").unwrap();
        assert_eq!(m.cursor("factory").unwrap().as_deref(), Some(&b"5"[..]));
        assert_eq!(m.cursor("city").unwrap(), None);
        assert_eq!(m.receipt("city").unwrap().as_deref(), Some(&b"r"[..]));
    }

    #[test]
    fn proofs_served_from_a_store_verify() {
        let s = signer();
        let mut m = Memory::new(s.name());
        let a = append_blocks(&mut m, &s, (0..700).map(block).collect()).unwrap();
        let b = append_blocks(&mut m, &s, (700..701).map(block).collect()).unwrap();
        let t = tiles(&m);
        let p = log::inclusion_proof(&t, 699, 700).unwrap();
        crate::merkle::verify_inclusion(&crate::merkle::leaf_hash(b"h699"), 699, 700, &p, &a.root)
            .unwrap();
        let p = log::consistency_proof(&t, 700, 701).unwrap();
        crate::merkle::verify_consistency(700, 701, &p, &a.root, &b.root).unwrap();
    }
}

/// Deterministic, valid blocks for tests, examples and benchmarks (no encryption: lanes are
/// opaque bytes whose BLAKE3 digests and sizes the header lists).
#[doc(hidden)]
pub mod testing {
    use super::BlockData;
    use crate::block::{hash_header_bytes, BlockHash, BlockHeader, LaneInfo, BLOCK_VERSION};

    /// Block `height` of gateway `gateway`, chained to `prev_header` (the previous header's
    /// bytes; `None` at height 0), carrying `lanes`.
    pub fn chained_block(
        gateway: [u8; 32],
        height: u64,
        prev_header: Option<&[u8]>,
        lanes: Vec<Vec<u8>>,
    ) -> BlockData {
        let header = BlockHeader {
            version: BLOCK_VERSION,
            gateway,
            height,
            prev: prev_header.map_or(BlockHash::ZERO, hash_header_bytes),
            first_ns: height.saturating_mul(1_000_000_000),
            last_ns: height.saturating_mul(1_000_000_000).saturating_add(999_999_999),
            lanes: lanes
                .iter()
                .enumerate()
                .map(|(i, l)| LaneInfo {
                    name: format!("lane{i}"),
                    record_count: 1,
                    recipients: Vec::new(),
                    digest: *blake3::hash(l).as_bytes(),
                    size: l.len() as u64,
                })
                .collect(),
        };
        BlockData { header: header.to_bytes(), lanes }
    }

    /// `count` chained blocks from `start`, the first linked to `prev_header`; block `h` carries
    /// `lanes(h)`.
    pub fn chain(
        gateway: [u8; 32],
        start: u64,
        prev_header: Option<&[u8]>,
        count: u64,
        lanes: impl Fn(u64) -> Vec<Vec<u8>>,
    ) -> Vec<BlockData> {
        let mut out: Vec<BlockData> = Vec::new();
        for h in start..start + count {
            let prev = out.last().map(|b| b.header.as_slice()).or(prev_header);
            let b = chained_block(gateway, h, prev, lanes(h));
            out.push(b);
        }
        out
    }

    /// The next `count` blocks for `store`, chained to its head.
    pub fn next_blocks<S: super::Store + ?Sized>(
        store: &S,
        gateway: [u8; 32],
        count: u64,
        lanes: impl Fn(u64) -> Vec<Vec<u8>>,
    ) -> Result<Vec<BlockData>, super::StoreError> {
        let size = store.size();
        let prev = match size {
            0 => None,
            n => store.header(n - 1)?,
        };
        Ok(chain(gateway, size, prev.as_deref(), count, lanes))
    }
}
