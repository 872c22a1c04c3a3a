//! Lane encoding, compression, sealing and opening on the real GPS trace, on one core.
//!
//! `cargo run -p ledger --release --example lane_bench [-- trace.log.gz]`
//!
//! Prints bytes/frame against the candump text (raw, and under zstd -3 alone, both computed in
//! this run), per zstd level and payload-delta choice; then, for the default options and
//! blocks of 131,072 frames, seal throughput split into encode, compress and encrypt (HPKE wrap
//! and ChaCha20-Poly1305), and open throughput split into decrypt and decompress + decode. Rates
//! are per CPU second of this thread (the machine may be shared), wall time in brackets.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use can_decoders::trace::{self, ErrorPolicy};
use chacha20::rand_core::SeedableRng;
use chacha20::ChaCha20Rng;
use ledger::block::{BlockHash, BlockHeader, LaneInfo, BLOCK_VERSION};
use ledger::keys::X25519Key;
use ledger::lane::{self, Limits, PayloadDelta};
use ledger::record::Record;
use ledger::seal::{open_lane_bytes, seal_lane, SealOptions};
use x25519_dalek::StaticSecret;

/// The trace-frame conversion the ledger tests use (the gateway's edge conversion, in short).
#[path = "../tests/common/mod.rs"]
mod common;
use common::to_record;

const BLOCK_FRAMES: usize = 131_072;

/// CPU time of this thread in ns (`/proc/thread-self/schedstat`).
fn cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Runs `f`, returns its result and (cpu seconds, wall seconds).
fn timed<T>(f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<(T, f64, f64)> {
    let (c0, w0) = (cpu_ns(), Instant::now());
    let out = f()?;
    let wall = w0.elapsed().as_secs_f64();
    let cpu = cpu_ns().zip(c0).map_or(wall, |(a, b)| (a - b) as f64 / 1e9);
    Ok((out, cpu, wall))
}

fn rate(label: &str, frames: usize, in_bytes: usize, cpu: f64, wall: f64) {
    println!(
        "  {label:<28} {:>6.2} M frames/s {:>7.1} MB/s of candump text  ({:.3} s cpu, {:.3} s wall)",
        frames as f64 / cpu / 1e6,
        in_bytes as f64 / cpu / 1e6,
        cpu,
        wall
    );
}

fn header_for(records: &[Record], key: &X25519Key) -> BlockHeader {
    BlockHeader {
        version: BLOCK_VERSION,
        gateway: [1; 32],
        height: 0,
        prev: BlockHash::ZERO,
        first_ns: records.iter().map(Record::t_ns).min().unwrap_or(0),
        last_ns: records.iter().map(Record::t_ns).max().unwrap_or(0),
        lanes: vec![LaneInfo {
            name: "factory".into(),
            record_count: records.len() as u64,
            recipients: vec![*key.public().as_bytes()],
            digest: [0; 32],
            size: 0,
        }],
    }
}

fn main() -> anyhow::Result<()> {
    let path = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/traces/canmod_gps_3BA199E2.log.gz")
    });
    let mut text = Vec::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(&path)?).read_to_end(&mut text)?;
    let mut reader = trace::open(&path, ErrorPolicy::Strict)?;
    let mut frames = Vec::new();
    for f in reader.by_ref() {
        frames.push(f?);
    }
    let names: Vec<Arc<str>> = reader.channels().iter().map(|s| Arc::from(s.as_str())).collect();
    let records =
        frames.iter().map(|f| to_record(f, &names)).collect::<anyhow::Result<Vec<_>>>()?;
    let n = records.len();
    let nf = n as f64;
    let (text_z3, cpu, _) = timed(|| Ok(zstd::bulk::compress(&text, 3)?.len()))?;
    println!("{}: {n} frames", path.display());
    println!("candump text:            {:>6.2} B/frame", text.len() as f64 / nf);
    println!(
        "candump text, zstd -3:   {:>6.2} B/frame ({:.1} M frames/s)",
        text_z3 as f64 / nf,
        nf / cpu / 1e6
    );

    println!("\nlane codec + zstd (no seal), B/frame and compress rate per CPU second:");
    for block in [n, BLOCK_FRAMES, 16_384] {
        for delta in [PayloadDelta::Auto, PayloadDelta::Xor, PayloadDelta::Sub] {
            for level in [1, 3, 5, 7, 9] {
                let (packed, cpu, _) = timed(|| {
                    let mut total = 0;
                    for chunk in records.chunks(block) {
                        total += lane::pack(chunk, level, delta)?.len();
                    }
                    Ok(total)
                })?;
                println!(
                    "  block {block:>7}  {:<5} zstd {level}: {:.3} B/frame  {:>5.2} M frames/s  ({:.1}x vs text, {:.2}x vs text zstd -3)",
                    format!("{delta:?}"),
                    packed as f64 / nf,
                    nf / cpu / 1e6,
                    text.len() as f64 / packed as f64,
                    text_z3 as f64 / packed as f64
                );
            }
        }
    }

    // Seal and open with the defaults, in blocks, split by stage.
    let key = X25519Key::new("factory", StaticSecret::from([7; 32]))?;
    let level = SealOptions::default().zstd_level;
    let mut rng = ChaCha20Rng::from_seed([3; 32]);
    let chunks: Vec<&[Record]> = records.chunks(BLOCK_FRAMES).collect();
    let headers: Vec<BlockHeader> = chunks.iter().map(|c| header_for(c, &key)).collect();
    let (plains, enc_cpu, enc_wall) = timed(|| {
        Ok(chunks.iter().map(|c| lane::encode(c, PayloadDelta::Auto)).collect::<Vec<_>>())
    })?;
    let (packed, z_cpu, z_wall) = timed(|| {
        plains.iter().map(|p| Ok(lane::compress(p, level)?)).collect::<anyhow::Result<Vec<_>>>()
    })?;
    let (sealed, s_cpu, s_wall) = timed(|| {
        headers
            .iter()
            .zip(&packed)
            .map(|(h, p)| Ok(seal_lane(h, 0, p, &mut rng)?))
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    let sealed_bytes: usize = sealed.iter().map(Vec::len).sum();
    let header_bytes: usize = headers
        .iter()
        .zip(&sealed)
        .map(|(h, ct)| {
            let mut h = h.clone();
            h.lanes[0].digest = *blake3::hash(ct).as_bytes();
            h.lanes[0].size = ct.len() as u64;
            h.to_bytes().len()
        })
        .sum();
    println!(
        "\nseal, defaults (Auto, zstd {level}), {} blocks of {BLOCK_FRAMES}: {:.3} B/frame stored (lanes {:.3} + headers {:.4}); compressed {:.3}, plaintext {:.2} B/frame",
        chunks.len(),
        (sealed_bytes + header_bytes) as f64 / nf,
        sealed_bytes as f64 / nf,
        header_bytes as f64 / nf,
        packed.iter().map(Vec::len).sum::<usize>() as f64 / nf,
        plains.iter().map(Vec::len).sum::<usize>() as f64 / nf
    );
    rate("encode (codec v1)", n, text.len(), enc_cpu, enc_wall);
    rate("compress (zstd default)", n, text.len(), z_cpu, z_wall);
    rate("encrypt (HPKE + AEAD)", n, text.len(), s_cpu, s_wall);
    rate("seal total", n, text.len(), enc_cpu + z_cpu + s_cpu, enc_wall + z_wall + s_wall);

    let headers: Vec<BlockHeader> = headers
        .into_iter()
        .zip(&sealed)
        .map(|(mut h, ct)| {
            h.lanes[0].digest = *blake3::hash(ct).as_bytes();
            h.lanes[0].size = ct.len() as u64;
            h
        })
        .collect();
    let mut back = Vec::with_capacity(n);
    for (h, ct) in headers.iter().zip(&sealed) {
        back.extend(open_lane_bytes(h, 0, ct, &key, &Limits::DEFAULT)?);
    }
    anyhow::ensure!(back == records, "opened records differ");
    drop(back);
    // Timed like the decode below: each block's records are dropped before the next block, so
    // both measure the same allocation pattern.
    let (_, o_cpu, o_wall) = timed(|| {
        for (h, ct) in headers.iter().zip(&sealed) {
            std::hint::black_box(open_lane_bytes(h, 0, ct, &key, &Limits::DEFAULT)?);
        }
        Ok(())
    })?;
    let (_, d_cpu, d_wall) = timed(|| {
        for p in &packed {
            std::hint::black_box(lane::unpack(p, &Limits::DEFAULT)?);
        }
        Ok(())
    })?;
    println!("open:");
    rate("decompress + decode", n, text.len(), d_cpu, d_wall);
    rate("decrypt (the rest)", n, text.len(), (o_cpu - d_cpu).max(0.0), (o_wall - d_wall).max(0.0));
    rate("open total", n, text.len(), o_cpu, o_wall);
    Ok(())
}
