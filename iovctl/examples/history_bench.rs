//! Figures for the client side of `iovctl history --ledger`: how fast a fleet tool checks and
//! decodes query answers, without the network (the ledger's own figures are in
//! `ledger-node/examples/sync_bench.rs`).
//!
//! `cargo run --release -p iovctl --example history_bench [-- FRAMES BLOCK_FRAMES PAGE]`
//! (defaults: 262144 frames of the real GPS trace, 4096 frames per block, 256 blocks per page).
//! Seals the frames into blocks for one recipient, builds the gateway's log, signs and cosigns
//! its checkpoint, cuts it into query pages with range proofs (CBOR, as the ledger sends them),
//! then times: parse + `verify::page` (signature, cosignature, range proof, lane digests), then
//! `verify::open_page` (HPKE unwrap, AEAD, zstd, lane decode), then rows with the DBC. Prints
//! figures; asserts nothing.

use std::io::Read as _;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result};
use can_decoders::decode::Decoder;
use can_decoders::{Direction, FrameKind};
use chacha20::rand_core::SeedableRng as _;
use iovctl::fleet::rows::{Rows, Where};
use iovctl::fleet::verify::{self, Trust};
use ledger::block::BlockHash;
use ledger::checkpoint::{Checkpoint, SignedCheckpoint};
use ledger::keys::X25519Key;
use ledger::merkle::MemoryTree;
use ledger::record::{CanFlags, CanRecord, Record};
use ledger::seal::{LaneSpec, SealOptions};
use ledger::sync_wire::{QueriedBlock, QueryBlocks};

fn main() -> Result<()> {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse()).collect::<Result<_, _>>()?;
    let frames = args.first().copied().unwrap_or(262_144);
    let per_block = args.get(1).copied().unwrap_or(4096).max(1);
    let page = args.get(2).copied().unwrap_or(256).max(1);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");

    // The real trace, as the gateway records it.
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(
        root.join("traces/canmod_gps_3BA199E2.log.gz"),
    )?)
    .read_to_string(&mut text)?;
    let dir = tempfile::tempdir()?;
    let trace = dir.path().join("t.log");
    std::fs::write(&trace, text.lines().take(frames).collect::<Vec<_>>().join("\n") + "\n")?;
    let mut reader = can_decoders::trace::open(&trace, can_decoders::trace::ErrorPolicy::Skip)?;
    let mut records = Vec::new();
    let mut ifaces: Vec<Arc<str>> = Vec::new();
    while let Some(r) = reader.next() {
        let f = r?;
        let ch = usize::from(f.channel.0);
        while ifaces.len() <= ch {
            let n = reader.channels().get(ifaces.len()).cloned().unwrap_or_default();
            ifaces.push(n.into());
        }
        let mut flags = CanFlags::default();
        if f.frame.id.is_extended() {
            flags = flags.with(CanFlags::EXTENDED);
        }
        if f.direction == Direction::Tx {
            flags = flags.with(CanFlags::TX);
        }
        if f.frame.kind != FrameKind::Data {
            continue;
        }
        records.push(Record::Can(CanRecord::new(
            f.t_ns,
            ifaces[ch].clone(),
            f.frame.id.raw(),
            flags,
            f.frame.data(),
            0,
        )?));
    }

    let gw = ledger::keys::generate_signer("bench.example/gw/1")?;
    let cos = ledger::keys::generate_cosigner("bench.example/ledger")?;
    let org = X25519Key::generate("org")?;
    let gateway: [u8; 32] = gw.verifier().public_key().to_bytes();
    let mut rng = chacha20::ChaCha20Rng::from_seed([42; 32]);
    let mut prev = BlockHash::ZERO;
    let mut tree = MemoryTree::new();
    let mut blocks = Vec::new();
    let seal_start = Instant::now();
    for (h, chunk) in records.chunks(per_block).enumerate() {
        let spec = LaneSpec {
            name: "factory".into(),
            recipients: vec![org.public()],
            records: chunk.to_vec(),
        };
        let b = ledger::seal::seal_block(
            gateway,
            h as u64,
            prev,
            &[spec],
            &SealOptions::default(),
            &mut rng,
        )?;
        prev = b.header.hash();
        tree.push(&b.header_bytes);
        blocks.push(b);
    }
    let sealed_s = seal_start.elapsed().as_secs_f64();
    let size = tree.size();
    let cp = Checkpoint::new(gw.name(), size, tree.root())?;
    let mut signed = SignedCheckpoint::sign(cp.clone(), &gw)?;
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    signed.add_signature(cos.cosign(&cp, now_s)?);
    let note = signed.to_bytes();
    let mut answers = Vec::new();
    for start in (0..size).step_by(page) {
        let end = (start + page as u64).min(size);
        let q = QueryBlocks {
            origin: gw.name().to_owned(),
            unit: "U1".into(),
            checkpoint: note.clone(),
            start,
            end,
            requested_end: size,
            blocks: (start..end)
                .map(|h| {
                    let b = &blocks[h as usize];
                    QueriedBlock {
                        height: h,
                        header: b.header_bytes.clone(),
                        lanes: vec![(0, b.lanes[0].clone())],
                        received_at_ns: 0,
                        time_backwards: false,
                        time_future: false,
                    }
                })
                .collect(),
            range_proof: ledger::verify::range_proof(&tree, size, start, end)?,
        };
        answers.push(q.to_cbor());
    }
    let bytes: usize = answers.iter().map(Vec::len).sum();

    let trust = Trust { gateway: gw.verifier(), ledger: cos.verifier() };
    let db = can_decoders::dbc::load_file_with(
        &root.join("dbc/css-electronics/canmod-gps.dbc"),
        &can_decoders::dbc::LoadOptions::default(),
    )?;
    let mut b = Decoder::builder();
    b.add_database(&db, &[]);
    let (decoder, _) = b.build()?;

    let t = Instant::now();
    let mut pages = Vec::new();
    for a in &answers {
        let q = QueryBlocks::from_cbor(a, 1 << 30)?;
        pages.push(verify::page(&q, &trust, (Some(q.start), None), now_s)?);
    }
    let verify_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut opened = Vec::new();
    for p in &pages {
        opened.push(verify::open_page(p, &org, None)?);
    }
    let open_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut rows = Rows::new(Some(&decoder), None);
    let mut out = Vec::new();
    let mut n_rows = 0usize;
    for lanes in &opened {
        for l in lanes {
            let at = Where { origin: "o".into(), height: l.height, lane: "factory".into() };
            for r in &l.records {
                rows.record(&at, r, &mut out);
            }
            n_rows += out.len();
            out.clear();
        }
    }
    let rows_s = t.elapsed().as_secs_f64();
    let n = records.len() as f64;
    println!("history_bench: {} frames of the GPS trace in {size} blocks of {per_block}, pages of {page} ({} answers, {:.1} MB of CBOR)", records.len(), answers.len(), bytes as f64 / 1e6);
    println!("  seal (for the set-up)              {:>10.0} frames/s", n / sealed_s);
    println!(
        "  parse + verify pages               {:>10.0} blocks/s  {:>12.0} frames/s  {:.1} ms/page",
        size as f64 / verify_s,
        n / verify_s,
        verify_s * 1e3 / answers.len() as f64
    );
    println!("  open lanes (HPKE, AEAD, zstd, decode) {:>7.0} frames/s", n / open_s);
    println!("  decode to rows with the DBC        {:>10.0} frames/s  ({n_rows} rows)", n / rows_s);
    println!(
        "  total client                       {:>10.0} frames/s",
        n / (verify_s + open_s + rows_s)
    );
    let _ = pages.first().context("no pages")?;
    Ok(())
}
