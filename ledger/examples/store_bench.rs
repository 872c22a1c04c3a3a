//! Store benchmark on real RocksDB (feature `rocks`):
//! durable appends per second (sync on, 64 KiB lanes), and inclusion / consistency proof
//! generation (from the stored tiles) and verification at tree sizes 1,000 and 1,000,000.
//!
//! `cargo run --release -p ledger --features rocks --example store_bench [DIR]`
//! (DIR defaults to a temporary directory; the disk under it is what is measured).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use ledger::keys;
use ledger::log;
use ledger::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use ledger::store::rocks::{Mode, Rocks};
use ledger::store::{append_blocks, tiles, BlockData, Store};

fn lane(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn block(h: u64, lanes: usize, lane_bytes: usize) -> BlockData {
    BlockData {
        header: format!("bench header {h} {}", "x".repeat(300)).into_bytes(),
        lanes: (0..lanes as u64).map(|i| lane(h * 16 + i, lane_bytes)).collect(),
    }
}

fn cpu_seconds() -> f64 {
    // user + system time of this process, from /proc (the machine is shared).
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return f64::NAN };
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 =
        fields.get(11..13).map_or(0.0, |f| f.iter().filter_map(|x| x.parse::<f64>().ok()).sum());
    ticks / 100.0
}

fn appends(
    dir: &std::path::Path,
    per_append: u64,
    lanes: usize,
    lane_bytes: usize,
    dur: Duration,
) -> anyhow::Result<()> {
    let signer = keys::generate_signer("iov.example/gw/bench")?;
    let path = dir.join(format!("append-{per_append}-{lanes}x{lane_bytes}"));
    let mut s = Rocks::open(&path, &signer.verifier(), Mode::CreateOrOpen)?;
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let mut n = 0u64;
    let mut lat = Vec::new();
    while t0.elapsed() < dur {
        let h = s.size();
        let blocks = (h..h + per_append).map(|h| block(h, lanes, lane_bytes)).collect();
        let t = Instant::now();
        append_blocks(&mut s, &signer, blocks)?;
        lat.push(t.elapsed());
        n += 1;
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - c0;
    lat.sort();
    let p = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    let mib = (n * per_append) as f64 * (lanes * lane_bytes) as f64 / (1 << 20) as f64;
    println!(
        "append {per_append} block(s)/batch, {lanes} x {} KiB lanes, sync: {n} appends in {wall:.2} s = \
         {:.0} appends/s, {:.0} blocks/s, {:.1} MiB/s of lanes; latency p50 {:.2} ms p99 {:.2} ms; \
         CPU {cpu:.2} s ({:.0} blocks per CPU second)",
        lane_bytes / 1024,
        n as f64 / wall,
        (n * per_append) as f64 / wall,
        mib / wall,
        p(0.5),
        p(0.99),
        (n * per_append) as f64 / cpu,
    );
    Ok(())
}

fn proofs(dir: &std::path::Path, size: u64) -> anyhow::Result<()> {
    let signer = keys::generate_signer("iov.example/gw/proofs")?;
    let mut s =
        Rocks::open(&dir.join(format!("proofs-{size}")), &signer.verifier(), Mode::CreateOrOpen)?;
    let t0 = Instant::now();
    let batch = 8192;
    while s.size() < size {
        let h = s.size();
        let n = batch.min(size - h);
        let blocks = (h..h + n)
            .map(|h| BlockData { header: format!("header {h}").into_bytes(), lanes: Vec::new() })
            .collect();
        append_blocks(&mut s, &signer, blocks)?;
    }
    let build = t0.elapsed();
    let root = *s.head_checkpoint().context("checkpoint")?.root();
    let t = tiles(&s);
    let rounds = 2000u64;
    let (mut gen, mut ver) = (Duration::ZERO, Duration::ZERO);
    let mut x = 12345u64;
    for _ in 0..rounds {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let i = (x >> 11) % size;
        let g = Instant::now();
        let p = log::inclusion_proof(&t, i, size)?;
        gen += g.elapsed();
        let leaf = leaf_hash(format!("header {i}").as_bytes());
        let v = Instant::now();
        verify_inclusion(&leaf, i, size, &p, &root)?;
        ver += v.elapsed();
    }
    let old = size / 3 + 1;
    let old_root = log::root(&t, old)?;
    let (mut cgen, mut cver) = (Duration::ZERO, Duration::ZERO);
    let mut len = 0;
    for _ in 0..rounds {
        let g = Instant::now();
        let p = log::consistency_proof(&t, old, size)?;
        cgen += g.elapsed();
        len = p.len();
        let v = Instant::now();
        verify_consistency(old, size, &p, &old_root, &root)?;
        cver += v.elapsed();
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6 / rounds as f64;
    println!(
        "proofs at size {size} (store built in {:.1} s, batches of {batch}): inclusion gen {:.1} us, verify {:.1} us; \
         consistency {old}->{size} ({len} hashes) gen {:.1} us, verify {:.1} us",
        build.as_secs_f64(),
        us(gen),
        us(ver),
        us(cgen),
        us(cver),
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir =
        std::env::args().nth(1).map_or_else(|| tmp.path().to_owned(), std::path::PathBuf::from);
    appends(&dir, 1, 2, 64 * 1024, Duration::from_secs(3))?;
    appends(&dir, 1, 0, 0, Duration::from_secs(2))?;
    appends(&dir, 16, 2, 64 * 1024, Duration::from_secs(3))?;
    proofs(&dir, 1_000)?;
    proofs(&dir, 1_000_000)?;
    Ok(())
}
