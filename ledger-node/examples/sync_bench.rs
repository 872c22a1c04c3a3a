//! Figures for the ledger node over loopback HTTP with a RocksDB store on disk (every answer
//! after a synced write): add-checkpoint round trips, upload throughput in batches, queries.
//!
//! `cargo run --release -p ledger-node --example sync_bench [-- BLOCKS LANE_BYTES BATCH]`
//! (defaults 4096 blocks, 2048-byte lanes, batches of 256). Prints figures; asserts nothing.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use ledger::block::{hash_header_bytes, BlockHash, BlockHeader, LaneInfo, BLOCK_VERSION};
use ledger::checkpoint::{Checkpoint, SignedCheckpoint};
use ledger::merkle::{self, MemoryTree};
use ledger::sync_wire::{self, AddCheckpoint, Upload, UploadAck, UploadBlock};
use tokio_util::sync::CancellationToken;

fn main() -> Result<()> {
    let args: Vec<u64> = std::env::args().skip(1).map(|a| a.parse()).collect::<Result<_, _>>()?;
    let blocks = args.first().copied().unwrap_or(4096);
    let lane_bytes = args.get(1).copied().unwrap_or(2048) as usize;
    let batch = args.get(2).copied().unwrap_or(256);

    let dir = tempfile::tempdir()?;
    let cos = ledger::keys::generate_cosigner("bench.example/ledger")?;
    ledger::keys::save_cosigner(&dir.path().join("witness.key"), &cos)?;
    let log = ledger::keys::generate_signer("bench.example/ledger")?;
    ledger::keys::save_signer(&dir.path().join("signing.key"), &log)?;
    let gw = ledger::keys::generate_signer("bench.example/gw/1")?;
    let secret = "bench-token";
    let text = format!(
        "[ledger]\nname = \"bench\"\ncosigner_key = \"witness.key\"\nlog_key = \"signing.key\"\n\
         store = \"store\"\n[listen]\naddress = \"127.0.0.1:0\"\n[limits]\n\
         max_blocks_per_batch = {batch}\nmax_upload_bytes = \"256MiB\"\n[[tokens]]\nname = \"q\"\n\
         blake3 = \"{}\"\nscopes = [\"query\"]\n[[gateways]]\nvkey = \"{}\"\nunit = \"U1\"\n\
         lanes = [\"factory\"]\n",
        blake3::hash(secret.as_bytes()).to_hex(),
        gw.verifier().to_vkey()
    );
    let path = dir.path().join("ledger.toml");
    std::fs::write(&path, text)?;
    let config = ledger_node::config::Config::load(&path)?;

    let shutdown = CancellationToken::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let sd = shutdown.clone();
    let server = std::thread::spawn(move || -> Result<()> {
        let rt =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        rt.block_on(ledger_node::run(config, sd, move |a, _| {
            let _ = tx.send(a);
        }))?;
        Ok(())
    });
    let addr = rx.recv_timeout(Duration::from_secs(30)).context("node did not start")?;
    let base = format!("http://{addr}");
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).build().into();

    // The gateway's log.
    let mut headers: Vec<Vec<u8>> = Vec::new();
    let mut lanes: Vec<Vec<u8>> = Vec::new();
    let mut tree = MemoryTree::new();
    let key = *gw.verifier().public_key().as_bytes();
    for h in 0..blocks {
        let mut lane = vec![0u8; lane_bytes];
        getrandom::fill(&mut lane).map_err(|e| anyhow!("{e}"))?;
        let header = BlockHeader {
            version: BLOCK_VERSION,
            gateway: key,
            height: h,
            prev: headers.last().map_or(BlockHash::ZERO, |p| hash_header_bytes(p)),
            first_ns: h * 1_000_000_000,
            last_ns: h * 1_000_000_000 + 999,
            lanes: vec![LaneInfo {
                name: "factory".into(),
                record_count: 100,
                recipients: vec![[7; 32]],
                digest: *blake3::hash(&lane).as_bytes(),
                size: lane.len() as u64,
            }],
        }
        .to_bytes();
        tree.push(&header);
        headers.push(header);
        lanes.push(lane);
    }
    let checkpoint = |size: u64| -> Result<Vec<u8>> {
        let root = MemoryTree::from_leaf_hashes(
            headers[..size as usize].iter().map(|h| merkle::leaf_hash(h)),
        )
        .root();
        Ok(SignedCheckpoint::sign(Checkpoint::new(gw.name(), size, root)?, &gw)?.to_bytes())
    };

    // add-checkpoint: one per step of `step` blocks.
    let steps: Vec<u64> = (1..=200).map(|i| i * blocks / 200).filter(|&s| s > 0).collect();
    let mut old = 0;
    let t = Instant::now();
    for &s in &steps {
        if s == old {
            continue;
        }
        let proof = if old == 0 { vec![] } else { merkle::consistency_proof(&tree, old, s)? };
        let body = AddCheckpoint { old_size: old, proof, checkpoint: checkpoint(s)? }.to_bytes();
        let r =
            agent.post(&format!("{base}{}", sync_wire::path::ADD_CHECKPOINT)).send(&body[..])?;
        if r.status() != 200 {
            bail!("add-checkpoint {old} -> {s}: {}", r.status());
        }
        old = s;
    }
    let n = steps.len() as f64;
    let el = t.elapsed();
    println!(
        "add-checkpoint: {} round trips in {:.2} s: {:.2} ms each (verify, cosign, aggregate-log append, fsync)",
        steps.len(),
        el.as_secs_f64(),
        el.as_secs_f64() * 1e3 / n
    );

    // Upload everything against the final checkpoint.
    let t = Instant::now();
    let mut at = 0;
    let mut wire = 0usize;
    while at < blocks {
        let to = (at + batch).min(blocks);
        let up = Upload {
            blocks: (at..to)
                .map(|h| UploadBlock {
                    height: h,
                    header: headers[h as usize].clone(),
                    lanes: vec![(0, lanes[h as usize].clone())],
                })
                .collect(),
            checkpoint_size: old,
            proof: merkle::inclusion_proof(&tree, to - 1, old)?,
        };
        let body = up.to_cbor();
        wire += body.len();
        let mut r =
            agent.post(&format!("{base}{}", sync_wire::path::blocks(gw.name()))).send(&body[..])?;
        if r.status() != 200 {
            bail!("upload {at}..{to}: {}", r.status());
        }
        at = UploadAck::from_cbor(&r.body_mut().read_to_vec()?)?.mirrored;
    }
    let el = t.elapsed().as_secs_f64();
    println!(
        "upload: {blocks} blocks ({lane_bytes}-byte lane) in batches of {batch}: {:.2} s, {:.0} blocks/s, {:.1} MB/s of request bodies",
        el,
        blocks as f64 / el,
        wire as f64 / el / 1e6
    );

    // Resend of everything: all no-ops.
    let t = Instant::now();
    let up = Upload {
        blocks: (0..batch.min(blocks))
            .map(|h| UploadBlock {
                height: h,
                header: headers[h as usize].clone(),
                lanes: vec![(0, lanes[h as usize].clone())],
            })
            .collect(),
        checkpoint_size: old,
        proof: merkle::inclusion_proof(&tree, batch.min(blocks) - 1, old)?,
    };
    let body = up.to_cbor();
    for _ in 0..20 {
        let r =
            agent.post(&format!("{base}{}", sync_wire::path::blocks(gw.name()))).send(&body[..])?;
        if r.status() != 200 {
            bail!("resend: {}", r.status());
        }
    }
    println!(
        "resend of a held batch ({} blocks): {:.2} ms each",
        batch.min(blocks),
        t.elapsed().as_secs_f64() * 1e3 / 20.0
    );

    // Queries of one page each.
    let t = Instant::now();
    let pages = 20;
    for i in 0..pages {
        let from = (i * batch) % blocks;
        let mut r = agent
            .get(&format!("{base}{}", sync_wire::path::query_blocks(gw.name(), from, from + batch)))
            .header("authorization", &format!("Bearer {secret}"))
            .call()?;
        if r.status() != 200 {
            bail!("query: {}", r.status());
        }
        let q = sync_wire::QueryBlocks::from_cbor(&r.body_mut().read_to_vec()?, 1 << 30)?;
        let hs: Vec<BlockHeader> = q
            .blocks
            .iter()
            .map(|b| BlockHeader::from_bytes(&b.header))
            .collect::<Result<_, _>>()?;
        ledger::verify::complete_range_signed(&hs, &q.checkpoint, &gw.verifier(), &q.range_proof)?;
    }
    println!(
        "query: {pages} pages of up to {batch} blocks with lanes, verified by the client: {:.2} ms per page",
        t.elapsed().as_secs_f64() * 1e3 / pages as f64
    );

    shutdown.cancel();
    server.join().map_err(|_| anyhow!("server thread panicked"))??;
    Ok(())
}
