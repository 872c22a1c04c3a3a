//! Untrusted tile data: tile paths, tile contents through `TileReader` / `verify_tiles`, and
//! entry bundles. An error or a value, never a panic; paths and bundles that parse have exactly
//! one encoding.
#![no_main]
use ledger::merkle::{consistency_proof, inclusion_proof};
use ledger::tile::{
    check_bundle, decode_bundle, decode_index, encode_bundle, encode_index, verify_tiles, Tile,
    TileError, TilePath, TileReader, TileSource,
};
use libfuzzer_sys::fuzz_target;

/// Serves every tile from the fuzz input: tile k gets the bytes after a k-dependent offset,
/// sometimes cut one hash short or one byte long, so lengths are both right and wrong.
struct FuzzTiles<'a> {
    data: &'a [u8],
}

impl TileSource for FuzzTiles<'_> {
    fn read_tile(&self, t: &Tile) -> Result<Vec<u8>, TileError> {
        if self.data.is_empty() {
            return Err(TileError::NotFound { path: t.path() });
        }
        let k = (t.index().wrapping_mul(31) ^ u64::from(t.level())) as usize;
        let start = k % self.data.len();
        let want = match self.data[start] % 8 {
            0 => t.byte_len().saturating_sub(32),
            1 => t.byte_len() + 1,
            _ => t.byte_len(),
        };
        Ok(self.data.iter().cycle().skip(start).take(want).copied().collect())
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        match Tile::parse_path(s) {
            Ok(TilePath::Hashes(t)) => assert_eq!(t.path(), s),
            Ok(TilePath::Entries(t)) => assert_eq!(t.entries_path(), s),
            Ok(_) | Err(_) => {}
        }
        if let Some(n) = decode_index(s) {
            assert_eq!(encode_index(n), s);
        }
    }

    if let Ok(entries) = decode_bundle(data) {
        assert_eq!(encode_bundle(&entries).ok().as_deref(), Some(data), "second bundle encoding");
    }
    let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let _ = check_bundle(&data[split..], &data[..split]);

    if data.len() < 9 {
        return;
    }
    let (head, rest) = data.split_at(9);
    let mut size = u64::from_le_bytes([
        head[0], head[1], head[2], head[3], head[4], head[5], head[6], head[7],
    ]);
    if head[8] & 1 == 0 {
        size %= 1 << 12; // small enough that every tile can match
    }
    let source = FuzzTiles { data: rest };
    let reader = TileReader::new(&source, size);
    // Any size, up to 2^64 - 1: verify_tiles must fail at the first wrong tile, not allocate.
    let expected = reader.root().unwrap_or_default();
    let _ = verify_tiles(&source, size, &expected);
    if size > 0 {
        let idx = u64::from(head[8]) * 977 % size;
        let _ = inclusion_proof(&reader, idx, size);
        let _ = consistency_proof(&reader, idx.max(1), size);
    }
});
