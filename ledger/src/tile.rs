//! C2SP tlog-tiles (`fixtures/specs/c2sp-tlog-tiles.md`): the Merkle tree published as static
//! tiles of 256 hashes, plus entry bundles.
//!
//! A tile at level `L` holds hashes of complete subtrees of `256^L` leaves, so the levels in
//! between are recomputed from tile contents. [`TileReader`] turns a set of tiles for one tree
//! size into a [`HashReader`]: with it, [`merkle::root`] checks "these tiles hash to this
//! checkpoint root" and [`merkle::inclusion_proof`] / [`merkle::consistency_proof`] work from
//! tiles exactly as from a store.

use std::collections::{BTreeMap, HashMap};

use crate::merkle::{self, leaf_hash, node_hash, Hash, HashReader, ReadError, HASH_SIZE};

/// Hashes per full tile.
pub const TILE_WIDTH: u64 = 256;
/// Merkle levels spanned by one tile level (256 = 2^8).
pub const TILE_HEIGHT: u8 = 8;
/// Highest tile level the path format allows.
pub const MAX_LEVEL: u8 = 63;
/// Largest entry an entry bundle can hold (uint16 length prefix).
pub const MAX_ENTRY_BYTES: usize = u16::MAX as usize;

/// Why a tile, tile path or entry bundle was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TileError {
    #[error("tile level {level} is above {MAX_LEVEL}")]
    LevelTooHigh { level: u8 },
    #[error("tile width {width} is not in 1..=256")]
    BadWidth { width: u16 },
    #[error("tile path {path:?} is malformed: {reason}")]
    BadPath { path: String, reason: &'static str },
    #[error("tile {path} not available")]
    NotFound { path: String },
    #[error("tile {path} could not be read: {reason}")]
    Unavailable { path: String, reason: String },
    #[error("tile {path} is {len} bytes, want {want}")]
    WrongSize { path: String, len: usize, want: usize },
    #[error("entry {entry} is {len} bytes, an entry bundle allows at most {MAX_ENTRY_BYTES}")]
    EntryTooLarge { entry: usize, len: usize },
    #[error("entry bundle has {count} entries, at most {TILE_WIDTH}")]
    TooManyEntries { count: usize },
    #[error("entry bundle truncated in entry {entry} at offset {offset}: need {need} bytes, {have} left")]
    BundleTruncated { entry: usize, offset: usize, need: usize, have: usize },
    #[error("entry bundle has {entries} entries but the level-0 tile has {hashes} hashes")]
    BundleCountMismatch { entries: usize, hashes: usize },
    #[error("entry {entry} of the bundle does not hash to the level-0 tile's hash {entry}")]
    BundleEntryMismatch { entry: usize },
    #[error("tiles of tree size {tree_size} hash to {computed:?}, checkpoint says {expected:?}")]
    RootMismatch { tree_size: u64, computed: Hash, expected: Hash },
    #[error("full tile {path} does not hash to its entry in the tile above")]
    ParentMismatch { path: String },
    #[error("reading tiles: {0}")]
    Read(#[from] ReadError),
}

/// One tile: level, index within the level, and width (256 for a full tile).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Tile {
    level: u8,
    index: u64,
    width: u16,
}

/// What a path under `tile/` names.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum TilePath {
    /// `tile/<L>/<N>[.p/<W>]`
    Hashes(Tile),
    /// `tile/entries/<N>[.p/<W>]`; the bundle for level-0 tile `(0, index, width)`.
    Entries(Tile),
}

impl Tile {
    pub fn new(level: u8, index: u64, width: u16) -> Result<Tile, TileError> {
        if level > MAX_LEVEL {
            return Err(TileError::LevelTooHigh { level });
        }
        if width == 0 || u64::from(width) > TILE_WIDTH {
            return Err(TileError::BadWidth { width });
        }
        Ok(Tile { level, index, width })
    }

    pub fn level(&self) -> u8 {
        self.level
    }
    pub fn index(&self) -> u64 {
        self.index
    }
    pub fn width(&self) -> u16 {
        self.width
    }
    pub fn is_partial(&self) -> bool {
        u64::from(self.width) < TILE_WIDTH
    }

    /// Bytes this tile has: 32 per hash.
    pub fn byte_len(&self) -> usize {
        usize::from(self.width) * HASH_SIZE
    }

    /// `tile/<L>/<N>[.p/<W>]`.
    pub fn path(&self) -> String {
        format!("tile/{}/{}", self.level, self.suffix())
    }

    /// `tile/entries/<N>[.p/<W>]`: the entry bundle matching this level-0 tile.
    pub fn entries_path(&self) -> String {
        format!("tile/entries/{}", self.suffix())
    }

    fn suffix(&self) -> String {
        let n = encode_index(self.index);
        if self.is_partial() {
            format!("{n}.p/{}", self.width)
        } else {
            n
        }
    }

    /// Parses a path under `tile/` strictly: one canonical spelling per tile.
    pub fn parse_path(path: &str) -> Result<TilePath, TileError> {
        let bad = |reason| TileError::BadPath { path: path.to_owned(), reason };
        let rest = path.strip_prefix("tile/").ok_or(bad("does not start with tile/"))?;
        let (kind, rest) = rest.split_once('/').ok_or(bad("no index"))?;
        let (n, width) = match rest.split_once(".p/") {
            Some((n, w)) => (n, parse_decimal(w).ok_or(bad("bad partial width"))?),
            None => (rest, TILE_WIDTH),
        };
        let width = u16::try_from(width).map_err(|_| bad("bad partial width"))?;
        if u64::from(width) >= TILE_WIDTH && rest.contains(".p/") {
            return Err(bad("partial width must be 1..=255"));
        }
        let index = decode_index(n).ok_or(bad("bad index"))?;
        if kind == "entries" {
            return Ok(TilePath::Entries(
                Tile::new(0, index, width).map_err(|_| bad("bad width"))?,
            ));
        }
        let level = parse_decimal(kind).ok_or(bad("bad level"))?;
        let level = u8::try_from(level).map_err(|_| bad("level above 63"))?;
        Ok(TilePath::Hashes(Tile::new(level, index, width).map_err(|_| bad("bad level or width"))?))
    }
}

/// Decimal without sign or leading zeros.
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// `1234067` -> `x001/x234/067`: zero-padded 3-digit groups, all but the last prefixed `x`.
pub fn encode_index(mut n: u64) -> String {
    let mut s = format!("{:03}", n % 1000);
    n /= 1000;
    while n > 0 {
        s = format!("x{:03}/{s}", n % 1000);
        n /= 1000;
    }
    s
}

/// Inverse of [`encode_index`]; refuses non-canonical spellings (e.g. a leading `x000`).
pub fn decode_index(s: &str) -> Option<u64> {
    let groups: Vec<&str> = s.split('/').collect();
    let (last, init) = groups.split_last()?;
    let mut n: u64 = 0;
    for (i, g) in init.iter().enumerate() {
        let d = g.strip_prefix('x')?;
        if i == 0 && d == "000" {
            return None;
        }
        n = n.checked_mul(1000)?.checked_add(three_digits(d)?)?;
    }
    n.checked_mul(1000)?.checked_add(three_digits(last)?)
}

fn three_digits(s: &str) -> Option<u64> {
    (s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
}

/// Number of complete hashes at tile level `level` (Merkle level `8 * level`) in a tree.
fn hashes_at_level(tree_size: u64, level: u8) -> u64 {
    tree_size.checked_shr(u32::from(level) * u32::from(TILE_HEIGHT)).unwrap_or(0)
}

/// Width of tile `index` at `level` in a tree of `tree_size`, or `None` if it has no hashes.
pub fn tile_width(tree_size: u64, level: u8, index: u64) -> Option<u16> {
    let have = hashes_at_level(tree_size, level).checked_sub(index.checked_mul(TILE_WIDTH)?)?;
    u16::try_from(have.min(TILE_WIDTH)).ok().filter(|&w| w > 0)
}

/// Every tile (full and partial) of a tree of `tree_size`, level by level.
pub fn tiles_for_size(tree_size: u64) -> Vec<Tile> {
    let mut out = Vec::new();
    for level in 0..=MAX_LEVEL {
        let hashes = hashes_at_level(tree_size, level);
        if hashes == 0 {
            break;
        }
        let tiles = hashes.div_ceil(TILE_WIDTH);
        for index in 0..tiles {
            if let Some(width) = tile_width(tree_size, level, index) {
                out.push(Tile { level, index, width });
            }
        }
    }
    out
}

/// Number of tiles (full and partial) of a tree of `tree_size`, without listing them.
pub fn tile_count(tree_size: u64) -> u64 {
    (0..=MAX_LEVEL).map(|level| hashes_at_level(tree_size, level).div_ceil(TILE_WIDTH)).sum()
}

/// Tile contents (concatenated hashes) read from any [`HashReader`] that holds the tree.
pub fn tile_contents<R: HashReader + ?Sized>(r: &R, tile: &Tile) -> Result<Vec<u8>, ReadError> {
    let merkle_level = tile.level * TILE_HEIGHT;
    let mut out = Vec::with_capacity(tile.byte_len());
    let first = tile.index.saturating_mul(TILE_WIDTH);
    for i in 0..u64::from(tile.width) {
        out.extend_from_slice(&r.node(merkle_level, first.saturating_add(i))?.0);
    }
    Ok(out)
}

/// All tiles of a tree of `tree_size`, built from a reader (e.g. a [`merkle::MemoryTree`]).
pub fn build_tiles<R: HashReader + ?Sized>(
    r: &R,
    tree_size: u64,
) -> Result<BTreeMap<Tile, Vec<u8>>, ReadError> {
    tiles_for_size(tree_size).into_iter().map(|t| Ok((t, tile_contents(r, &t)?))).collect()
}

/// Where tiles come from (a map in tests, files or HTTP in the shells).
pub trait TileSource {
    fn read_tile(&self, tile: &Tile) -> Result<Vec<u8>, TileError>;
}

impl<S: TileSource + ?Sized> TileSource for &S {
    fn read_tile(&self, tile: &Tile) -> Result<Vec<u8>, TileError> {
        (**self).read_tile(tile)
    }
}

impl TileSource for BTreeMap<Tile, Vec<u8>> {
    fn read_tile(&self, tile: &Tile) -> Result<Vec<u8>, TileError> {
        self.get(tile).cloned().ok_or_else(|| TileError::NotFound { path: tile.path() })
    }
}

impl TileSource for HashMap<Tile, Vec<u8>> {
    fn read_tile(&self, tile: &Tile) -> Result<Vec<u8>, TileError> {
        self.get(tile).cloned().ok_or_else(|| TileError::NotFound { path: tile.path() })
    }
}

/// A [`HashReader`] over the tiles of one tree size. It asks the source for exactly the tile
/// (full or partial) that size implies and checks its length before using it.
#[derive(Debug, Clone)]
pub struct TileReader<S> {
    source: S,
    tree_size: u64,
}

impl<S: TileSource> TileReader<S> {
    pub fn new(source: S, tree_size: u64) -> TileReader<S> {
        TileReader { source, tree_size }
    }

    pub fn tree_size(&self) -> u64 {
        self.tree_size
    }

    /// Root these tiles hash to; compare with a verified checkpoint's root.
    pub fn root(&self) -> Result<Hash, ReadError> {
        merkle::root(self, self.tree_size).map_err(|e| match e {
            merkle::ProofError::Read(r) => r,
            other => ReadError::Backend { level: 0, index: 0, reason: other.to_string() },
        })
    }
}

impl<S: TileSource> HashReader for TileReader<S> {
    fn node(&self, level: u8, index: u64) -> Result<Hash, ReadError> {
        let missing = || ReadError::Missing { level, index };
        // The node must be complete within this tree size.
        let end = (u128::from(index) + 1) << level;
        if level >= 64 || end > u128::from(self.tree_size) {
            return Err(missing());
        }
        let tile_level = level / TILE_HEIGHT;
        let sub = level % TILE_HEIGHT;
        let first = index << sub; // position among the tile level's hashes
        let count = 1u64 << sub;
        let tile_index = first / TILE_WIDTH;
        let width = tile_width(self.tree_size, tile_level, tile_index).ok_or_else(missing)?;
        let tile = Tile { level: tile_level, index: tile_index, width };
        let bytes = self.source.read_tile(&tile).map_err(|e| ReadError::Backend {
            level,
            index,
            reason: e.to_string(),
        })?;
        if bytes.len() != tile.byte_len() {
            let e =
                TileError::WrongSize { path: tile.path(), len: bytes.len(), want: tile.byte_len() };
            return Err(ReadError::Backend { level, index, reason: e.to_string() });
        }
        let off = usize::try_from(first % TILE_WIDTH).map_err(|_| missing())?;
        let count = usize::try_from(count).map_err(|_| missing())?;
        let mut hashes: Vec<Hash> = bytes
            .chunks_exact(HASH_SIZE)
            .skip(off)
            .take(count)
            .filter_map(|c| Hash::from_slice(c).ok())
            .collect();
        if hashes.len() != count {
            return Err(missing());
        }
        while hashes.len() > 1 {
            hashes = hashes.chunks_exact(2).map(|p| node_hash(&p[0], &p[1])).collect();
        }
        hashes.pop().ok_or_else(missing)
    }
}

/// Checks that the tiles of a tree of `tree_size` are exactly the tree with `expected_root`
/// (e.g. from a verified checkpoint): partial tiles feed the root directly, and every full
/// tile must hash to its entry in the tile above. Checked top-down, so the error names the
/// tile that is wrong, not its children.
pub fn verify_tiles<S: TileSource>(
    source: S,
    tree_size: u64,
    expected_root: &Hash,
) -> Result<(), TileError> {
    let reader = TileReader::new(source, tree_size);
    let computed = reader.root()?;
    if computed != *expected_root {
        return Err(TileError::RootMismatch { tree_size, computed, expected: *expected_root });
    }
    // Full tiles top-down, generated as we go: a signed checkpoint may claim any size up to
    // 2^64 - 1, and collecting its tiles first (`tiles_for_size`) would abort on allocation.
    let top = (0..=MAX_LEVEL).rev().find(|&l| hashes_at_level(tree_size, l) > 0).unwrap_or(0);
    let full_tiles = (0..=top).rev().flat_map(|level| {
        (0..hashes_at_level(tree_size, level) / TILE_WIDTH).map(move |index| Tile {
            level,
            index,
            width: TILE_WIDTH as u16,
        })
    });
    for t in full_tiles {
        let bytes = reader.source.read_tile(&t)?;
        if bytes.len() != t.byte_len() {
            return Err(TileError::WrongSize {
                path: t.path(),
                len: bytes.len(),
                want: t.byte_len(),
            });
        }
        let mut hashes: Vec<Hash> =
            bytes.chunks_exact(HASH_SIZE).filter_map(|c| Hash::from_slice(c).ok()).collect();
        while hashes.len() > 1 {
            hashes = hashes.chunks_exact(2).map(|p| node_hash(&p[0], &p[1])).collect();
        }
        // A full tile has level <= 6 (a full level-7 tile would need 2^64 leaves): no overflow.
        let parent = reader.node((t.level + 1) * TILE_HEIGHT, t.index)?;
        if hashes.first() != Some(&parent) {
            return Err(TileError::ParentMismatch { path: t.path() });
        }
    }
    Ok(())
}

/// Entry bundle: each entry as big-endian uint16 length, then its bytes.
pub fn encode_bundle<T: AsRef<[u8]>>(entries: &[T]) -> Result<Vec<u8>, TileError> {
    if entries.len() as u64 > TILE_WIDTH {
        return Err(TileError::TooManyEntries { count: entries.len() });
    }
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let e = e.as_ref();
        let len = u16::try_from(e.len())
            .map_err(|_| TileError::EntryTooLarge { entry: i, len: e.len() })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}

/// Splits an untrusted entry bundle into entries. Never panics.
pub fn decode_bundle(bytes: &[u8]) -> Result<Vec<&[u8]>, TileError> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let entry = out.len();
        if entry as u64 == TILE_WIDTH {
            return Err(TileError::TooManyEntries { count: entry + 1 });
        }
        let offset = bytes.len() - rest.len();
        let Some((len, tail)) = rest.split_first_chunk::<2>() else {
            return Err(TileError::BundleTruncated { entry, offset, need: 2, have: rest.len() });
        };
        let len = usize::from(u16::from_be_bytes(*len));
        if tail.len() < len {
            return Err(TileError::BundleTruncated {
                entry,
                offset: offset + 2,
                need: len,
                have: tail.len(),
            });
        }
        let (e, tail) = tail.split_at(len);
        out.push(e);
        rest = tail;
    }
    Ok(out)
}

/// Checks that a bundle's entries hash to the hashes of its level-0 tile, in order.
pub fn check_bundle(bundle: &[u8], level0_tile: &[u8]) -> Result<(), TileError> {
    let entries = decode_bundle(bundle)?;
    let hashes = level0_tile.len() / HASH_SIZE;
    if entries.len() != hashes || !level0_tile.len().is_multiple_of(HASH_SIZE) {
        return Err(TileError::BundleCountMismatch { entries: entries.len(), hashes });
    }
    for (i, (e, h)) in entries.iter().zip(level0_tile.chunks_exact(HASH_SIZE)).enumerate() {
        if leaf_hash(e).0 != h {
            return Err(TileError::BundleEntryMismatch { entry: i });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{consistency_proof, inclusion_proof, MemoryTree};

    fn tile(level: u8, index: u64, width: u16) -> Tile {
        Tile::new(level, index, width).unwrap()
    }

    #[test]
    fn spec_index_1234067_encodes_as_x001_x234_067() {
        assert_eq!(encode_index(1234067), "x001/x234/067");
        assert_eq!(encode_index(0), "000");
        assert_eq!(encode_index(1000), "x001/000");
        assert_eq!(decode_index("x001/x234/067"), Some(1234067));
        assert_eq!(decode_index("x000/005"), None);
        assert_eq!(decode_index("5"), None);
        assert_eq!(decode_index("x1/005"), None);
    }

    #[test]
    fn tile_paths_format_and_parse_back() {
        assert_eq!(tile(0, 1234067, 256).path(), "tile/0/x001/x234/067");
        assert_eq!(tile(2, 5, 17).path(), "tile/2/005.p/17");
        assert_eq!(tile(0, 5, 17).entries_path(), "tile/entries/005.p/17");
        for t in [tile(0, 1234067, 256), tile(63, 0, 1), tile(1, 999, 255)] {
            assert_eq!(Tile::parse_path(&t.path()), Ok(TilePath::Hashes(t)));
            if t.level == 0 {
                assert_eq!(Tile::parse_path(&t.entries_path()), Ok(TilePath::Entries(t)));
            }
        }
        for bad in [
            "tile/64/000",
            "tile/01/000",
            "tile/0/000.p/0",
            "tile/0/000.p/256",
            "tile/0/000.p/05",
            "tiles/0/000",
            "tile/0/x000/001",
            "tile/0",
        ] {
            assert!(Tile::parse_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn spec_tree_of_70000_has_the_listed_tiles() {
        let tiles = tiles_for_size(70_000);
        let full0 = tiles.iter().filter(|t| t.level == 0 && !t.is_partial()).count();
        assert_eq!(full0, 273);
        let partial: Vec<(u8, u16)> =
            tiles.iter().filter(|t| t.is_partial()).map(|t| (t.level, t.width)).collect();
        assert_eq!(partial, [(0, 112), (1, 17), (2, 1)]);
        assert_eq!(tiles.iter().filter(|t| t.level == 1 && !t.is_partial()).count(), 1);
        assert_eq!(tiles.len(), 273 + 1 + 1 + 1 + 1);
    }

    #[test]
    fn spec_tree_of_256_has_one_full_tile_and_a_level1_tile_of_width_1() {
        assert_eq!(tiles_for_size(256), [tile(0, 0, 256), tile(1, 0, 1)]);
        assert!(tiles_for_size(0).is_empty());
    }

    fn tree(n: u64) -> MemoryTree {
        MemoryTree::from_leaf_hashes((0..n).map(|i| leaf_hash(&i.to_le_bytes())))
    }

    fn check_size(t: &MemoryTree, n: u64) {
        let tiles = build_tiles(t, n).unwrap();
        let r = TileReader::new(&tiles, n);
        let want = merkle::root(t, n).unwrap();
        assert_eq!(r.root().unwrap(), want, "root of {n}");
        for i in [0, n / 3, n / 2, n - 1] {
            assert_eq!(inclusion_proof(&r, i, n).unwrap(), inclusion_proof(t, i, n).unwrap());
        }
        for m in [1, n / 2, n - 1, n] {
            if m >= 1 {
                assert_eq!(
                    consistency_proof(&r, m, n).unwrap(),
                    consistency_proof(t, m, n).unwrap()
                );
            }
        }
    }

    #[test]
    fn tiles_give_the_same_root_and_proofs_as_the_tree_for_sizes_1_to_1000() {
        let t = tree(1000);
        for n in 1..=1000 {
            check_size(&t, n);
        }
    }

    #[test]
    fn tiles_give_the_same_root_and_proofs_around_256_squared() {
        let t = tree(65_540);
        for n in [65_279, 65_280, 65_535, 65_536, 65_537, 65_540] {
            check_size(&t, n);
        }
    }

    #[test]
    fn tile_of_the_wrong_length_is_reported_with_its_path() {
        let t = tree(300);
        let mut tiles = build_tiles(&t, 300).unwrap();
        tiles.entry(tile(0, 1, 44)).or_default().pop();
        let err = TileReader::new(&tiles, 300).root().unwrap_err();
        let ReadError::Backend { reason, .. } = err else { panic!("{err:?}") };
        assert!(reason.contains("tile/0/001.p/44 is 1407 bytes, want 1408"), "{reason}");
    }

    /// Answers every tile with bytes of the right length derived from its coordinates.
    struct AnyTiles;

    impl TileSource for AnyTiles {
        fn read_tile(&self, t: &Tile) -> Result<Vec<u8>, TileError> {
            let seed = leaf_hash(&[&[t.level], &t.index.to_be_bytes()[..]].concat());
            Ok(seed.0.iter().copied().cycle().take(t.byte_len()).collect())
        }
    }

    #[test]
    fn verify_tiles_for_a_checkpoint_claiming_2_pow_63_leaves_fails_without_aborting() {
        // Regression: verify_tiles used to collect tiles_for_size(size) first, which for a
        // signed checkpoint claiming ~2^63 leaves asks for 2^55 tiles and aborts on allocation.
        for size in [(1u64 << 50) + 12_345, u64::MAX] {
            let root = TileReader::new(AnyTiles, size).root().unwrap();
            let err = verify_tiles(AnyTiles, size, &root).unwrap_err();
            assert!(matches!(err, TileError::ParentMismatch { .. }), "{size}: {err}");
        }
        assert_eq!(tile_count(70_000), 277);
        assert_eq!(tile_count(u64::MAX), tiles_for_size(0).len() as u64 + 72_340_172_838_076_673);
    }

    #[test]
    fn entry_bundle_round_trips_and_matches_its_level0_tile() {
        let entries: Vec<Vec<u8>> = (0..256u32).map(|i| vec![i as u8; i as usize]).collect();
        let bundle = encode_bundle(&entries).unwrap();
        assert_eq!(&bundle[..2], [0, 0]);
        assert_eq!(
            decode_bundle(&bundle).unwrap(),
            entries.iter().map(Vec::as_slice).collect::<Vec<_>>()
        );
        let t = MemoryTree::from_leaf_hashes(entries.iter().map(|e| leaf_hash(e)));
        let tile0 = tile_contents(&t, &tile(0, 0, 256)).unwrap();
        check_bundle(&bundle, &tile0).unwrap();
        let mut bad = bundle.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(check_bundle(&bad, &tile0), Err(TileError::BundleEntryMismatch { entry: 255 }));
    }

    #[test]
    fn malformed_entry_bundles_are_refused() {
        assert_eq!(
            decode_bundle(&[0, 5, 1, 2]),
            Err(TileError::BundleTruncated { entry: 0, offset: 2, need: 5, have: 2 })
        );
        assert_eq!(
            decode_bundle(&[0, 0, 7]),
            Err(TileError::BundleTruncated { entry: 1, offset: 2, need: 2, have: 1 })
        );
        assert_eq!(
            encode_bundle(&[vec![0u8; 65_536]]),
            Err(TileError::EntryTooLarge { entry: 0, len: 65_536 })
        );
        assert_eq!(
            decode_bundle(&[0, 0].repeat(257)),
            Err(TileError::TooManyEntries { count: 257 })
        );
    }
}
