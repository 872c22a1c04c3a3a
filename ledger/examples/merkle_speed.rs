//! Ad-hoc speed figures for the Merkle core (release build):
//! `cargo run -p ledger --release --example merkle_speed [leaves...]` (default: 1000 1000000).
//! For each tree size: leaf hashing rate, tree build rate, and inclusion/consistency proof
//! generation and verification times (in memory and through tiles).

use std::hint::black_box;
use std::time::Instant;

use ledger::merkle::{
    consistency_proof, inclusion_proof, leaf_hash, verify_consistency, verify_inclusion, MemoryTree,
};
use ledger::tile::{build_tiles, verify_tiles, TileReader};

fn per_op(label: &str, ops: u64, f: impl FnMut(u64)) {
    let mut f = f;
    let t = Instant::now();
    for i in 0..ops {
        f(i);
    }
    let dt = t.elapsed();
    println!("  {label}: {:.2} µs/op ({ops} ops)", dt.as_secs_f64() * 1e6 / ops as f64);
}

fn main() {
    let sizes: Vec<u64> = std::env::args().skip(1).filter_map(|s| s.parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![1_000, 1_000_000] } else { sizes };
    for n in sizes.into_iter().filter(|&n| n >= 2) {
        run(n);
    }
}

fn run(n: u64) {
    println!("tree of {n} leaves");
    let entry = [0x5au8; 256]; // a block header is a few hundred bytes

    let t = Instant::now();
    let leaves: Vec<_> = (0..n)
        .map(|i| {
            let mut e = entry;
            e[..8].copy_from_slice(&i.to_be_bytes());
            leaf_hash(&e)
        })
        .collect();
    let dt = t.elapsed().as_secs_f64();
    println!("  leaf hashing (256-byte entries): {:.0} leaves/s", n as f64 / dt);

    let t = Instant::now();
    let tree = MemoryTree::from_leaf_hashes(leaves.iter().copied());
    let dt = t.elapsed().as_secs_f64();
    println!("  tree append (node hashing): {:.0} leaves/s", n as f64 / dt);
    let root = tree.root();

    // Spread indexes and sizes over the whole tree with a prime stride.
    per_op("inclusion proof generation, memory tree", 100_000, |i| {
        black_box(inclusion_proof(&tree, (i * 7919) % n, n).ok());
    });
    let proofs: Vec<_> = (0..1000).map(|i| inclusion_proof(&tree, (i * 997) % n, n)).collect();
    per_op("inclusion proof verification", 100_000, |i| {
        let k = (i % 1000) as usize;
        let idx = (k as u64 * 997) % n;
        if let Ok(p) = &proofs[k] {
            black_box(verify_inclusion(&leaves[idx as usize], idx, n, p, &root).ok());
        }
    });
    per_op("consistency proof generation, memory tree", 10_000, |i| {
        black_box(consistency_proof(&tree, 1 + (i * 7919) % (n - 1), n).ok());
    });
    let m = n / 3 + 7;
    let cp = consistency_proof(&tree, m, n).unwrap_or_default();
    let rm = ledger::merkle::root(&tree, m).unwrap_or_default();
    per_op("consistency proof verification", 100_000, |_| {
        black_box(verify_consistency(m, n, &cp, &rm, &root).ok());
    });

    let t = Instant::now();
    let tiles = build_tiles(&tree, n).unwrap_or_default();
    println!("  build {} tiles: {:.1} ms", tiles.len(), t.elapsed().as_secs_f64() * 1e3);
    let t = Instant::now();
    let ok = verify_tiles(&tiles, n, &root).is_ok();
    println!(
        "  verify all tiles against root: {:.1} ms (ok={ok})",
        t.elapsed().as_secs_f64() * 1e3
    );
    let reader = TileReader::new(&tiles, n);
    per_op("inclusion proof generation, from tiles", 10_000, |i| {
        black_box(inclusion_proof(&reader, (i * 7919) % n, n).ok());
    });
    per_op("consistency proof generation, from tiles", 10_000, |i| {
        black_box(consistency_proof(&reader, 1 + (i * 7919) % (n - 1), n).ok());
    });
}
