//! The per-gateway transparency log as a pure state machine.
//!
//! A gateway's log is an RFC 6962 tree whose leaves are block headers (opaque bytes here), laid
//! out as C2SP tlog-tiles, with a C2SP checkpoint signed by the gateway's Ed25519 key after every
//! append. This module does no I/O: given the current tree size and the stored tiles and entry
//! bundles (through [`TileSource`] and [`BundleSource`]), [`prepare_append`] computes exactly
//! what a store must write, in one batch, to hold the bigger tree:
//!
//! - every tile whose contents change (the partial tiles that grow, the tiles that become full,
//!   and new tiles above them), with its new contents;
//! - every entry bundle that changes (the last partial bundle grows; new bundles start);
//! - the new root and a checkpoint for it, signed with the gateway's key.
//!
//! # Origin
//!
//! The checkpoint origin is the signer's key name (the C2SP recommendation "key name SHOULD equal
//! the origin"), e.g. `iov.example/gw/VIN123`. A verifier therefore checks a gateway's
//! checkpoints with one vkey and requires `checkpoint.origin == vkey name`.
//!
//! # Stored tiles
//!
//! A store keeps, per `(level, index)`, the tile's *current* contents: a partial tile grows
//! until it is full, and a tile's earlier widths are prefixes of its later ones. So one stored
//! tile answers for every tree size up to the head (see [`PrefixTiles`]), and proofs between any
//! two sizes up to the head come straight from the stored tiles.

use std::collections::BTreeMap;

use crate::checkpoint::{Checkpoint, CheckpointError, SignedCheckpoint};
use crate::merkle::{self, leaf_hash, node_hash, Hash, ProofError, HASH_SIZE};
use crate::note::Ed25519Signer;
use crate::tile::{self, Tile, TileError, TileReader, TileSource, TILE_WIDTH};

/// Why an append could not be prepared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    #[error("append of no entries at size {size}: nothing to sign")]
    Empty { size: u64 },
    #[error("entry {index} is {len} bytes; a log entry (block header) may be at most {max}")]
    EntryTooLarge { index: u64, len: usize, max: usize },
    #[error("tree size {size} + {count} entries overflows")]
    Overflow { size: u64, count: usize },
    #[error("stored tile {path}: {reason}")]
    Tile { path: String, reason: String },
    #[error("stored entry bundle {path} has {got} entries, tree size {size} implies {want}")]
    BundleCount { path: String, size: u64, got: usize, want: usize },
    #[error("stored entry bundle {path}: {source}")]
    Bundle { path: String, source: TileError },
    #[error("computing the root of size {size}: {source}")]
    Root { size: u64, source: ProofError },
    #[error("checkpoint for size {size}: {source}")]
    Checkpoint { size: u64, source: CheckpointError },
}

/// Entry bundles (the level-0 tile's entries) as a store holds them.
pub trait BundleSource {
    /// The stored bundle for level-0 tile `index` (its current contents), if any.
    fn read_bundle(&self, index: u64) -> Result<Option<Vec<u8>>, TileError>;
}

impl<B: BundleSource + ?Sized> BundleSource for &B {
    fn read_bundle(&self, index: u64) -> Result<Option<Vec<u8>>, TileError> {
        (**self).read_bundle(index)
    }
}

/// Everything one append writes. A store commits all of it, with the entries themselves (and
/// whatever it keeps beside them), in one atomic batch, or nothing.
#[derive(Debug, Clone)]
pub struct LogWrites {
    /// Tree size before the append (a store refuses the batch if its head moved).
    pub old_size: u64,
    /// Tree size after the append.
    pub new_size: u64,
    /// Tiles with their new contents (width = contents / 32), lowest level first.
    pub tiles: Vec<(Tile, Vec<u8>)>,
    /// Entry bundles (keyed by their level-0 tile) with their new contents.
    pub bundles: Vec<(Tile, Vec<u8>)>,
    /// Root of the tree of `new_size`.
    pub root: Hash,
    /// The signed checkpoint for `(origin, new_size, root)`.
    pub checkpoint: SignedCheckpoint,
}

/// Entries can be at most this long: an entry bundle's length prefix is a uint16.
pub const MAX_ENTRY_BYTES: usize = tile::MAX_ENTRY_BYTES;

/// Tiles as a store keeps them: per `(level, index)`, the current contents.
pub trait StoredTiles {
    fn stored_tile(&self, level: u8, index: u64) -> Result<Option<Vec<u8>>, TileError>;
}

impl<T: StoredTiles + ?Sized> StoredTiles for &T {
    fn stored_tile(&self, level: u8, index: u64) -> Result<Option<Vec<u8>>, TileError> {
        (**self).stored_tile(level, index)
    }
}

/// A [`TileSource`] over stored tiles that hold their *current* contents: a request for a
/// narrower (earlier) width of the same tile is answered with the prefix.
pub struct PrefixTiles<T>(pub T);

impl<T: StoredTiles> TileSource for PrefixTiles<T> {
    fn read_tile(&self, t: &Tile) -> Result<Vec<u8>, TileError> {
        let mut bytes = self
            .0
            .stored_tile(t.level(), t.index())?
            .ok_or_else(|| TileError::NotFound { path: t.path() })?;
        if bytes.len() < t.byte_len() || bytes.len() % HASH_SIZE != 0 {
            return Err(TileError::WrongSize {
                path: t.path(),
                len: bytes.len(),
                want: t.byte_len(),
            });
        }
        bytes.truncate(t.byte_len());
        Ok(bytes)
    }
}

/// The stored tiles overlaid with the tiles an append is about to write.
struct Overlay<'a, S> {
    base: &'a S,
    new: &'a BTreeMap<(u8, u64), Vec<u8>>,
}

impl<S: TileSource> TileSource for Overlay<'_, S> {
    fn read_tile(&self, t: &Tile) -> Result<Vec<u8>, TileError> {
        match self.new.get(&(t.level(), t.index())) {
            Some(b) if b.len() == t.byte_len() => Ok(b.clone()),
            Some(b) => {
                Err(TileError::WrongSize { path: t.path(), len: b.len(), want: t.byte_len() })
            }
            None => self.base.read_tile(t),
        }
    }
}

/// Hash of a full tile's 256 hashes folded up to one: the tile's entry in the tile above.
fn fold_tile(bytes: &[u8]) -> Option<Hash> {
    let mut hashes: Vec<Hash> =
        bytes.chunks_exact(HASH_SIZE).filter_map(|c| Hash::from_slice(c).ok()).collect();
    while hashes.len() > 1 {
        hashes = hashes.chunks_exact(2).map(|p| node_hash(&p[0], &p[1])).collect();
    }
    hashes.pop()
}

fn tile_at(level: u8, index: u64, bytes: usize) -> Result<Tile, LogError> {
    let width = u16::try_from(bytes / HASH_SIZE).unwrap_or(0);
    Tile::new(level, index, width).map_err(|e| LogError::Tile {
        path: format!("tile/{level}/{}", tile::encode_index(index)),
        reason: e.to_string(),
    })
}

const TILE_BYTES: usize = TILE_WIDTH as usize * HASH_SIZE;
const TILE_ENTRIES: usize = TILE_WIDTH as usize;

/// Computes what appending `entries` to the log of `size` must write.
///
/// `tiles` must answer for the tree of `size` (e.g. [`PrefixTiles`] over a store) and `bundles`
/// must hold the partial entry bundle of that size, if any. The checkpoint origin is
/// `signer.name()`.
pub fn prepare_append<S: TileSource, B: BundleSource, E: AsRef<[u8]>>(
    tiles: &S,
    bundles: &B,
    size: u64,
    entries: &[E],
    signer: &Ed25519Signer,
) -> Result<LogWrites, LogError> {
    if entries.is_empty() {
        return Err(LogError::Empty { size });
    }
    let count = u64::try_from(entries.len())
        .map_err(|_| LogError::Overflow { size, count: entries.len() })?;
    let new_size =
        size.checked_add(count).ok_or(LogError::Overflow { size, count: entries.len() })?;
    for (i, e) in (size..).zip(entries) {
        if e.as_ref().len() > MAX_ENTRY_BYTES {
            return Err(LogError::EntryTooLarge {
                index: i,
                len: e.as_ref().len(),
                max: MAX_ENTRY_BYTES,
            });
        }
    }

    // Tiles, level by level: extend the last partial tile with the new hashes, cut into tiles;
    // every tile that became full contributes one hash to the level above.
    let mut written: BTreeMap<(u8, u64), Vec<u8>> = BTreeMap::new();
    let mut new_hashes: Vec<Hash> = entries.iter().map(|e| leaf_hash(e.as_ref())).collect();
    let mut start = size; // index of the first new hash at this tile level
    let mut level: u8 = 0;
    while !new_hashes.is_empty() {
        let first_tile = start / TILE_WIDTH;
        let have = start % TILE_WIDTH;
        let mut buf = Vec::new();
        if have > 0 {
            let t = tile_at(level, first_tile, have as usize * HASH_SIZE)?;
            buf = tiles
                .read_tile(&t)
                .map_err(|e| LogError::Tile { path: t.path(), reason: e.to_string() })?;
            if buf.len() != t.byte_len() {
                return Err(LogError::Tile {
                    path: t.path(),
                    reason: format!("{} bytes, want {}", buf.len(), t.byte_len()),
                });
            }
        }
        for h in &new_hashes {
            buf.extend_from_slice(&h.0);
        }
        let mut above = Vec::new();
        for (k, chunk) in (first_tile..).zip(buf.chunks(TILE_BYTES)) {
            if chunk.len() == TILE_BYTES {
                above.extend(fold_tile(chunk));
            }
            written.insert((level, k), chunk.to_vec());
        }
        new_hashes = above;
        start = first_tile;
        level += 1;
    }

    // Entry bundles: the same cut at level 0, over the entries themselves.
    let first_tile = size / TILE_WIDTH;
    let have = usize::try_from(size % TILE_WIDTH).unwrap_or(0);
    let mut pending: Vec<Vec<u8>> = Vec::new();
    if have > 0 {
        let t = tile_at(0, first_tile, have * HASH_SIZE)?;
        let path = t.entries_path();
        let stored = bundles
            .read_bundle(first_tile)
            .map_err(|source| LogError::Bundle { path: path.clone(), source })?
            .ok_or(LogError::BundleCount { path: path.clone(), size, got: 0, want: have })?;
        let decoded = tile::decode_bundle(&stored)
            .map_err(|source| LogError::Bundle { path: path.clone(), source })?;
        if decoded.len() != have {
            return Err(LogError::BundleCount { path, size, got: decoded.len(), want: have });
        }
        pending.extend(decoded.into_iter().map(<[u8]>::to_vec));
    }
    pending.extend(entries.iter().map(|e| e.as_ref().to_vec()));
    let mut bundle_writes = Vec::new();
    for (k, chunk) in (first_tile..).zip(pending.chunks(TILE_ENTRIES)) {
        let t = tile_at(0, k, chunk.len() * HASH_SIZE)?;
        let bytes = tile::encode_bundle(chunk)
            .map_err(|source| LogError::Bundle { path: t.entries_path(), source })?;
        bundle_writes.push((t, bytes));
    }

    let overlay = Overlay { base: tiles, new: &written };
    let root = merkle::root(&TileReader::new(&overlay, new_size), new_size)
        .map_err(|source| LogError::Root { size: new_size, source })?;
    let checkpoint = Checkpoint::new(signer.name(), new_size, root)
        .and_then(|c| SignedCheckpoint::sign(c, signer))
        .map_err(|source| LogError::Checkpoint { size: new_size, source })?;

    let mut tile_writes = Vec::with_capacity(written.len());
    for ((level, index), bytes) in written {
        tile_writes.push((tile_at(level, index, bytes.len())?, bytes));
    }
    Ok(LogWrites {
        old_size: size,
        new_size,
        tiles: tile_writes,
        bundles: bundle_writes,
        root,
        checkpoint,
    })
}

/// Inclusion proof for leaf `index` in the tree of `size`, from stored tiles.
pub fn inclusion_proof<S: TileSource>(
    tiles: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofError> {
    merkle::inclusion_proof(&TileReader::new(tiles, size), index, size)
}

/// Consistency proof from `size1` to `size2`, from stored tiles (any sizes up to the head).
pub fn consistency_proof<S: TileSource>(
    tiles: &S,
    size1: u64,
    size2: u64,
) -> Result<Vec<Hash>, ProofError> {
    merkle::consistency_proof(&TileReader::new(tiles, size2), size1, size2)
}

/// Root of the tree of `size`, from stored tiles.
pub fn root<S: TileSource>(tiles: &S, size: u64) -> Result<Hash, ProofError> {
    merkle::root(&TileReader::new(tiles, size), size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::SignedCheckpoint;
    use crate::merkle::{verify_consistency, verify_inclusion, MemoryTree};
    use crate::note::Verifier;
    use ed25519_dalek::SigningKey;
    use std::collections::HashMap;

    /// A tile/bundle map that applies writes as a store would.
    #[derive(Default)]
    struct Mem {
        tiles: HashMap<(u8, u64), Vec<u8>>,
        bundles: HashMap<u64, Vec<u8>>,
        size: u64,
    }

    impl BundleSource for Mem {
        fn read_bundle(&self, index: u64) -> Result<Option<Vec<u8>>, TileError> {
            Ok(self.bundles.get(&index).cloned())
        }
    }

    impl StoredTiles for Mem {
        fn stored_tile(&self, level: u8, index: u64) -> Result<Option<Vec<u8>>, TileError> {
            Ok(self.tiles.get(&(level, index)).cloned())
        }
    }

    impl Mem {
        fn tiles(&self) -> PrefixTiles<&Mem> {
            PrefixTiles(self)
        }
        fn append(&mut self, entries: &[Vec<u8>], s: &Ed25519Signer) -> LogWrites {
            let w = prepare_append(&self.tiles(), self, self.size, entries, s).unwrap();
            for (t, b) in &w.tiles {
                self.tiles.insert((t.level(), t.index()), b.clone());
            }
            for (t, b) in &w.bundles {
                self.bundles.insert(t.index(), b.clone());
            }
            self.size = w.new_size;
            w
        }
    }

    fn signer() -> Ed25519Signer {
        Ed25519Signer::new("iov.example/gw/test", SigningKey::from_bytes(&[7; 32])).unwrap()
    }

    fn entry(i: u64) -> Vec<u8> {
        format!("header {i}").into_bytes()
    }

    #[test]
    fn appends_in_uneven_batches_match_the_memory_tree_tiles_and_bundles_at_every_size() {
        let s = signer();
        let mut m = Mem::default();
        let mut reference = MemoryTree::new();
        let mut next = 0u64;
        // Batch sizes cross tile boundaries at level 0 and level 1 (65,536 leaves).
        for batch in [1u64, 2, 253, 1, 255, 256, 512, 3, 64_000, 300, 1] {
            let entries: Vec<Vec<u8>> = (next..next + batch).map(entry).collect();
            let w = m.append(&entries, &s);
            for e in &entries {
                reference.push(e);
            }
            next += batch;
            assert_eq!(w.new_size, next);
            assert_eq!(w.root, reference.root(), "root at {next}");
            let want = tile::build_tiles(&reference, next).unwrap();
            for (t, bytes) in &want {
                let got = m.tiles.get(&(t.level(), t.index())).unwrap();
                assert_eq!(got, bytes, "tile {} at size {next}", t.path());
            }
            assert_eq!(m.tiles.len(), want.len(), "no stray tiles at size {next}");
            for (t, bytes) in &want {
                if t.level() == 0 {
                    tile::check_bundle(&m.bundles[&t.index()], bytes).unwrap();
                }
            }
            let v = s.verifier();
            let (cp, _) =
                SignedCheckpoint::verify(&w.checkpoint.to_bytes(), &[&v as &dyn Verifier]).unwrap();
            assert_eq!(cp.checkpoint().origin(), "iov.example/gw/test");
            assert_eq!(cp.checkpoint().size(), next);
            assert_eq!(cp.checkpoint().root(), &reference.root());
        }
    }

    #[test]
    fn an_append_rewrites_only_the_tiles_it_changes() {
        let s = signer();
        let mut m = Mem::default();
        m.append(&(0..300).map(entry).collect::<Vec<_>>(), &s);
        let w = m.append(&[entry(300)], &s);
        let paths: Vec<String> = w.tiles.iter().map(|(t, _)| t.path()).collect();
        assert_eq!(paths, ["tile/0/001.p/45"]);
        assert_eq!(w.bundles.len(), 1);
        assert_eq!(w.bundles[0].0.entries_path(), "tile/entries/001.p/45");
    }

    #[test]
    fn proofs_from_stored_tiles_verify_against_older_and_newer_checkpoints() {
        let s = signer();
        let mut m = Mem::default();
        let w1 = m.append(&(0..1000).map(entry).collect::<Vec<_>>(), &s);
        let w2 = m.append(&(1000..1700).map(entry).collect::<Vec<_>>(), &s);
        let tiles = m.tiles();
        for i in [0, 255, 256, 999] {
            let p = inclusion_proof(&tiles, i, 1000).unwrap();
            verify_inclusion(&leaf_hash(&entry(i)), i, 1000, &p, &w1.root).unwrap();
            let p = inclusion_proof(&tiles, i, 1700).unwrap();
            verify_inclusion(&leaf_hash(&entry(i)), i, 1700, &p, &w2.root).unwrap();
        }
        let p = consistency_proof(&tiles, 1000, 1700).unwrap();
        verify_consistency(1000, 1700, &p, &w1.root, &w2.root).unwrap();
        assert_eq!(root(&tiles, 1000).unwrap(), w1.root);
    }

    #[test]
    fn a_stored_partial_bundle_of_the_wrong_length_is_refused_with_its_path() {
        let s = signer();
        let mut m = Mem::default();
        m.append(&(0..10).map(entry).collect::<Vec<_>>(), &s);
        m.bundles.insert(0, tile::encode_bundle(&[entry(0)]).unwrap());
        let err = prepare_append(&m.tiles(), &m, 10, &[entry(10)], &s).unwrap_err();
        assert_eq!(
            err,
            LogError::BundleCount {
                path: "tile/entries/000.p/10".into(),
                size: 10,
                got: 1,
                want: 10
            }
        );
    }

    #[test]
    fn empty_and_oversized_appends_are_refused() {
        let s = signer();
        let m = Mem::default();
        let none: [Vec<u8>; 0] = [];
        assert_eq!(
            prepare_append(&m.tiles(), &m, 0, &none, &s).unwrap_err(),
            LogError::Empty { size: 0 }
        );
        let big = vec![0u8; MAX_ENTRY_BYTES + 1];
        assert!(matches!(
            prepare_append(&m.tiles(), &m, 0, &[big], &s),
            Err(LogError::EntryTooLarge { index: 0, .. })
        ));
    }
}
