//! Full verification of a gateway store: everything [`store::check_head`] checks at open, plus
//! every entry, every tile, every bundle and every stored checkpoint, and every block: its header
//! decodes as a [`BlockHeader`] of this gateway at its height, chains to the previous header
//! (`prev` = BLAKE3 of the previous header bytes, [`chain_segment`]), and every stored lane
//! matches the size and BLAKE3 digest the header lists ([`lane_against_header`]).
//!
//! A **pruned prefix** is not damage: below the store's `pruned_below` (retention deleted those
//! lanes on purpose, [`Store::prune_lanes`]) a height with no lanes stored is counted as pruned,
//! and its header, leaf, chain link, tiles and checkpoints are checked as usual. A lane missing
//! at or above `pruned_below`, or some but not all lanes of a height below it, is damage.
//!
//! Returns a [`Summary`] when the store is intact, or every [`Damage`] found (up to
//! [`MAX_REPORTED`]), each naming the column family, the key (height, tile path, size) and what
//! did not match.

use crate::block::{hash_header_bytes, BlockHash, BlockHeader};
use crate::checkpoint::SignedCheckpoint;
use crate::log;
use crate::merkle::{leaf_hash, Hash, HASH_SIZE};
use crate::note::{Ed25519Verifier, Verifier};
use crate::store::{self, height_key, Damage, Store};
use crate::tile::{self, TILE_WIDTH};
use crate::verify::{chain_segment, lane_against_header};

/// Stop collecting after this many problems (the first ones say enough).
pub const MAX_REPORTED: usize = 200;

/// What an intact store holds.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Summary {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    pub blocks: u64,
    pub lanes: u64,
    pub header_bytes: u64,
    pub lane_bytes: u64,
    pub tiles: u64,
    pub checkpoints: u64,
    /// Lanes of every height below this were pruned by retention (0: none).
    pub pruned_below: u64,
    /// Heights below `pruned_below` found without lanes (as pruning leaves them).
    pub pruned_blocks: u64,
}

struct Problems(Vec<Damage>);

impl Problems {
    fn push(&mut self, d: Damage) {
        if self.0.len() < MAX_REPORTED {
            self.0.push(d);
        }
    }
}

/// Block-level checks of one stored block. Returns the header's hash for the next link.
fn check_block(
    height: u64,
    bytes: &[u8],
    lanes: Option<&[Vec<u8>]>,
    prev: Option<BlockHash>,
    gateway: &[u8; 32],
    p: &mut Problems,
) -> Option<BlockHash> {
    let key = height_key(height);
    let header = match BlockHeader::from_bytes(bytes) {
        Ok(h) => h,
        Err(e) => {
            p.push(Damage::new("headers", key, format!("not a block header: {e}")));
            return None;
        }
    };
    if header.height != height {
        p.push(Damage::new(
            "headers",
            key.clone(),
            format!("header says height {}, stored at {height}", header.height),
        ));
    }
    if header.gateway != *gateway {
        p.push(Damage::new("headers", key.clone(), "header names another gateway's key"));
    }
    // At height 0 the link must be zero; later, to the previous header when it was readable.
    if let Err(e) = chain_segment(std::slice::from_ref(&header), prev) {
        p.push(Damage::new("headers", key.clone(), format!("chain: {e}")));
    }
    if let Some(lanes) = lanes {
        if lanes.len() != header.lanes.len() {
            p.push(Damage::new(
                "lanes",
                key,
                format!("{} lanes stored, the header lists {}", lanes.len(), header.lanes.len()),
            ));
        }
        for (i, lane) in lanes.iter().enumerate() {
            if let Err(e) = lane_against_header(&header, i, lane) {
                p.push(Damage::new("lanes", format!("height {height} lane {i}"), e.to_string()));
            }
        }
    }
    Some(hash_header_bytes(bytes))
}

/// Verifies the whole store against the gateway's verifier key.
pub fn verify<S: Store + ?Sized>(
    store: &S,
    verifier: &Ed25519Verifier,
) -> Result<Summary, Vec<Damage>> {
    let mut p = Problems(Vec::new());
    let size = store.size();
    let origin = store.origin().to_owned();
    if origin != verifier.name() {
        p.push(Damage::new(
            "meta",
            "origin",
            format!("store origin {origin:?} is not the key's name {:?}", verifier.name()),
        ));
    }
    for d in store.scan_all() {
        p.push(d);
    }
    let head = match store::check_head(store, verifier) {
        Ok(cp) => cp,
        Err(d) => {
            p.push(d);
            None
        }
    };
    let root = head.as_ref().map(|c| *c.root()).unwrap_or_else(crate::merkle::empty_root);
    let pruned_below = match store.pruned_below() {
        Ok(p) => p,
        Err(e) => {
            p.push(Damage::new("meta", "pruned_below", e.to_string()));
            0
        }
    };

    // Every full tile hashes to its parent, and the tiles hash to the checkpoint root.
    let tiles = store::tiles(store);
    if head.is_some() {
        if let Err(e) = tile::verify_tiles(&tiles, size, &root) {
            p.push(Damage::new("tiles", format!("size {size}"), e.to_string()));
        }
    }

    // Every header: present, and its leaf hash is the level-0 tile's hash at its height.
    let mut s = Summary {
        origin: origin.clone(),
        size,
        root,
        blocks: 0,
        lanes: 0,
        header_bytes: 0,
        lane_bytes: 0,
        tiles: tile::tiles_for_size(size).len() as u64,
        checkpoints: 0,
        pruned_below,
        pruned_blocks: 0,
    };
    let gateway = verifier.public_key().to_bytes();
    let mut prev: Option<BlockHash> = None;
    let level0_tiles = size.div_ceil(TILE_WIDTH);
    for idx in 0..level0_tiles {
        let tkey = format!("tile/0/{}", tile::encode_index(idx));
        let t0 = match store.tile(0, idx) {
            Ok(Some(t)) => t,
            Ok(None) => {
                p.push(Damage::new("tiles", tkey, "missing"));
                prev = None;
                continue;
            }
            Err(e) => {
                p.push(Damage::new("tiles", tkey, e.to_string()));
                prev = None;
                continue;
            }
        };
        let first = idx * TILE_WIDTH;
        let width = tile::tile_width(size, 0, idx).map_or(0, u64::from);
        if t0.len() as u64 != width * HASH_SIZE as u64 {
            p.push(Damage::new(
                "tiles",
                tkey.clone(),
                format!("{} bytes, want {}", t0.len(), width * HASH_SIZE as u64),
            ));
        }
        for (height, want) in (first..first + width).zip(t0.chunks_exact(HASH_SIZE)) {
            let header = match store.header(height) {
                Ok(Some(h)) => h,
                Ok(None) => {
                    p.push(Damage::new("headers", height_key(height), "missing"));
                    prev = None;
                    continue;
                }
                Err(e) => {
                    p.push(Damage::new("headers", height_key(height), e.to_string()));
                    prev = None;
                    continue;
                }
            };
            let got = leaf_hash(&header);
            if got.0[..] != *want {
                p.push(Damage::new(
                    "headers",
                    height_key(height),
                    format!(
                        "leaf hash {} differs from {tkey} entry {}",
                        got.to_hex(),
                        Hash::from_slice(want).map(|h| h.to_hex()).unwrap_or_default()
                    ),
                ));
            }
            s.blocks += 1;
            s.header_bytes += header.len() as u64;
            let lanes = match store.lanes(height) {
                // Pruned on purpose: nothing to check against the header.
                Ok(lanes) if height < pruned_below && lanes.is_empty() => {
                    s.pruned_blocks += 1;
                    None
                }
                Ok(lanes) => {
                    s.lanes += lanes.len() as u64;
                    s.lane_bytes += lanes.iter().map(|l| l.len() as u64).sum::<u64>();
                    Some(lanes)
                }
                Err(e) => {
                    p.push(Damage::new("lanes", height_key(height), e.to_string()));
                    None
                }
            };
            prev = check_block(height, &header, lanes.as_deref(), prev, &gateway, &mut p);
        }
        // The entry bundle holds exactly these headers.
        let bkey = format!("tile/entries/{}", tile::encode_index(idx));
        match store.bundle(idx) {
            Ok(Some(b)) => {
                if let Err(e) = tile::check_bundle(&b, &t0) {
                    p.push(Damage::new(
                        "tiles",
                        bkey,
                        format!("entry bundle vs level-0 tile: {e}"),
                    ));
                }
            }
            Ok(None) => p.push(Damage::new("tiles", bkey, "entry bundle missing")),
            Err(e) => p.push(Damage::new("tiles", bkey, e.to_string())),
        }
    }

    // Every stored checkpoint: signed by the gateway, and a prefix of today's tree.
    match store.checkpoint_sizes() {
        Ok(sizes) => {
            for cs in sizes {
                s.checkpoints += 1;
                let key = format!("size {cs}");
                let bytes = match store.checkpoint_at(cs) {
                    Ok(Some(b)) => b,
                    Ok(None) => {
                        p.push(Damage::new("checkpoints", key, "missing"));
                        continue;
                    }
                    Err(e) => {
                        p.push(Damage::new("checkpoints", key, e.to_string()));
                        continue;
                    }
                };
                let cp = match SignedCheckpoint::verify(&bytes, &[verifier as &dyn Verifier]) {
                    Ok((c, _)) => c.checkpoint().clone(),
                    Err(e) => {
                        p.push(Damage::new("checkpoints", key, format!("does not verify: {e}")));
                        continue;
                    }
                };
                if cp.size() != cs || cs > size {
                    p.push(Damage::new(
                        "checkpoints",
                        key,
                        format!("says size {}, head {size}", cp.size()),
                    ));
                    continue;
                }
                match log::root(&tiles, cs) {
                    Ok(r) if r == *cp.root() => {}
                    Ok(r) => p.push(Damage::new(
                        "checkpoints",
                        key,
                        format!(
                            "root {} is not the tree's root {} at that size",
                            cp.root().to_base64(),
                            r.to_base64()
                        ),
                    )),
                    Err(e) => p.push(Damage::new("tiles", key, e.to_string())),
                }
            }
        }
        Err(e) => p.push(Damage::new("checkpoints", "all", e.to_string())),
    }

    if p.0.is_empty() {
        Ok(s)
    } else {
        Err(p.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::Ed25519Signer;
    use crate::store::memory::Memory;
    use crate::store::{append_blocks, testing, Pruned};
    use ed25519_dalek::SigningKey;

    fn signer() -> Ed25519Signer {
        Ed25519Signer::new("iov.example/gw/mem", SigningKey::from_bytes(&[9; 32])).unwrap()
    }

    fn lanes(h: u64) -> Vec<Vec<u8>> {
        vec![vec![h as u8; 10], vec![1; 3]]
    }

    fn store(n: u64) -> (Memory, Ed25519Signer) {
        let s = signer();
        let gw = s.verifier().public_key().to_bytes();
        let mut m = Memory::new(s.name());
        while m.size() < n {
            let k = (n - m.size()).min(37);
            let blocks = testing::next_blocks(&m, gw, k, lanes).unwrap();
            append_blocks(&mut m, &s, blocks).unwrap();
        }
        (m, s)
    }

    #[test]
    fn an_intact_store_verifies_with_its_counts() {
        let (m, s) = store(600);
        let sum = verify(&m, &s.verifier()).unwrap();
        assert_eq!((sum.size, sum.blocks, sum.lanes, sum.lane_bytes), (600, 600, 1200, 600 * 13));
        assert_eq!(sum.checkpoints, 600u64.div_ceil(37));
        assert_eq!(m.checkpoint_sizes().unwrap().last(), Some(&600));
    }

    #[test]
    fn a_changed_header_is_named_by_height() {
        let (mut m, s) = store(300);
        let mut forged = m.headers[&17].clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        m.headers.insert(17, forged);
        let errs = verify(&m, &s.verifier()).unwrap_err();
        assert!(
            errs.iter().any(|d| d.place.cf == "headers" && d.place.key == "height 17"),
            "{errs:?}"
        );
    }

    #[test]
    fn a_changed_lane_is_named_by_height_and_lane() {
        let (mut m, s) = store(50);
        m.lanes.get_mut(&(33, 1)).unwrap()[0] ^= 0x80;
        let errs = verify(&m, &s.verifier()).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].place.key, "height 33 lane 1");
        assert!(errs[0].problem.contains("BLAKE3"), "{errs:?}");
        m.lanes.remove(&(34, 1));
        let errs = verify(&m, &s.verifier()).unwrap_err();
        assert!(
            errs.iter()
                .any(|d| d.to_string() == "lanes[height 34]: 1 lanes stored, the header lists 2"),
            "{errs:?}"
        );
    }

    #[test]
    fn a_consistently_rebuilt_log_with_a_broken_chain_is_named_by_height() {
        // A forger with the gateway's key rebuilds the log, but header 20 does not link to 19.
        let s = signer();
        let gw = s.verifier().public_key().to_bytes();
        let mut m = Memory::new(s.name());
        let mut blocks = testing::chain(gw, 0, None, 40, lanes);
        blocks[20] = testing::chained_block(gw, 20, Some(&blocks[18].header), lanes(20));
        blocks[21] = testing::chained_block(gw, 21, Some(&blocks[20].header), lanes(21));
        let rest = testing::chain(gw, 22, Some(&blocks[21].header), 18, lanes);
        blocks.truncate(22);
        blocks.extend(rest);
        append_blocks(&mut m, &s, blocks).unwrap();
        let errs = verify(&m, &s.verifier()).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].place.key, "height 20");
        assert!(errs[0].problem.starts_with("chain: header at height 20: prev"), "{errs:?}");
    }

    #[test]
    fn a_changed_tile_a_lost_bundle_and_a_wrong_key_are_reported() {
        let (mut m, s) = store(300);
        let t = m.tiles.get_mut(&(0, 0)).unwrap();
        t[40] ^= 1;
        m.bundles.remove(&1);
        let errs = verify(&m, &s.verifier()).unwrap_err();
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert!(text.iter().any(|t| t.contains("tile/0/000")), "{text:?}");
        assert!(
            text.iter().any(|t| t.contains("tile/entries/001") && t.contains("missing")),
            "{text:?}"
        );
        let other =
            Ed25519Signer::new("iov.example/gw/mem", SigningKey::from_bytes(&[1; 32])).unwrap();
        let (m, _) = store(5);
        let errs = verify(&m, &other.verifier()).unwrap_err();
        assert!(errs[0].to_string().contains("checkpoints[size 5]: signature"), "{errs:?}");
    }

    #[test]
    fn a_pruned_prefix_is_reported_as_pruned_and_a_lane_missing_above_it_as_damage() {
        let (mut m, s) = store(120);
        let done = m.prune_lanes(70, None).unwrap();
        assert_eq!((done.from, done.below, done.blocks()), (0, 70, 70));
        let sum = verify(&m, &s.verifier()).unwrap();
        assert_eq!((sum.pruned_below, sum.pruned_blocks, sum.blocks), (70, 70, 120));
        assert_eq!((sum.lanes, sum.lane_bytes), (50 * 2, 50 * 13));
        // Pruning again lower is a no-op; past the head is refused.
        assert_eq!(m.prune_lanes(30, None).unwrap(), Pruned { from: 70, below: 70 });
        let err = m.prune_lanes(121, None).unwrap_err();
        assert_eq!(err, store::StoreError::BadPrune { below: 121, head: 120 });
        // A lane missing above the prefix is still damage, named by height.
        m.lanes.remove(&(90, 0));
        m.lanes.remove(&(90, 1));
        let errs = verify(&m, &s.verifier()).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].to_string(), "lanes[height 90]: 0 lanes stored, the header lists 2");
    }

    #[test]
    fn half_a_block_below_the_prefix_or_a_prefix_past_the_head_is_damage() {
        let (mut m, s) = store(40);
        m.prune_lanes(20, Some(b"note")).unwrap();
        assert_eq!(m.prune_note().unwrap().as_deref(), Some(&b"note"[..]));
        m.lanes.insert((5, 0), vec![5; 10]);
        let errs = verify(&m, &s.verifier()).unwrap_err();
        assert_eq!(errs[0].to_string(), "lanes[height 5]: 1 lanes stored, the header lists 2");
        m.lanes.remove(&(5, 0));
        m.pruned_below = 41;
        let d = store::check_head(&m, &s.verifier()).unwrap_err();
        assert_eq!(d.to_string(), "meta[pruned_below]: lanes pruned below 41, past the head 40");
    }

    #[test]
    fn a_rolled_back_head_is_refused_at_open() {
        let (mut m, s) = store(100);
        m.set_size_for_test(99);
        let d = store::check_head(&m, &s.verifier()).unwrap_err();
        assert_eq!(d.place.cf, "headers");
        assert_eq!(d.place.key, "height 99");
    }
}
