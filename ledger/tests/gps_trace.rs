//! The real GPS trace (640,067 frames) sealed in blocks, chained, opened, and compared frame by
//! frame; the stored size must beat the best generic layout measured (3.35 bytes/frame).

mod common;

use std::sync::Arc;

use anyhow::Context;
use can_decoders::trace::{self, ErrorPolicy};
use common::{fixture, rng, to_record, x25519};
use ledger::block::{BlockHash, BlockHeader};
use ledger::lane::Limits;
use ledger::record::Record;
use ledger::seal::{open_lane, seal_block, seal_block_hinted, BlockHints, LaneSpec, SealOptions};
use ledger::verify;

/// Frames per block in this test: about two minutes of this trace.
const BLOCK_FRAMES: usize = 131_072;

#[test]
fn gps_trace_seals_opens_exactly_and_beats_3_35_bytes_per_frame() -> anyhow::Result<()> {
    let path = fixture("fixtures/traces/canmod_gps_3BA199E2.log.gz");
    let mut reader = trace::open(&path, ErrorPolicy::Strict).context("open trace")?;
    let mut frames = Vec::new();
    for f in reader.by_ref() {
        frames.push(f?);
    }
    let names: Vec<Arc<str>> = reader.channels().iter().map(|s| Arc::from(s.as_str())).collect();
    let records: Vec<Record> =
        frames.iter().map(|f| to_record(f, &names)).collect::<anyhow::Result<_>>()?;
    assert_eq!(records.len(), 640_067);

    let key = x25519("factory", 7);
    let mut r = rng(5);
    let mut prev = BlockHash::ZERO;
    let (mut headers, mut stored, mut back) =
        (Vec::new(), 0usize, Vec::with_capacity(records.len()));
    for (h, chunk) in records.chunks(BLOCK_FRAMES).enumerate() {
        let spec = vec![LaneSpec {
            name: "factory".into(),
            recipients: vec![key.public()],
            records: chunk.to_vec(),
        }];
        let block = seal_block([1; 32], h as u64, prev, &spec, &SealOptions::default(), &mut r)?;
        stored += block.header_bytes.len() + block.lanes.iter().map(Vec::len).sum::<usize>();
        prev = block.header.hash();
        let parsed = BlockHeader::from_bytes(&block.header_bytes)?;
        verify::lane_against_header(&parsed, 0, &block.lanes[0])?;
        back.extend(open_lane(&block, 0, &key, &Limits::DEFAULT)?);
        headers.push(parsed);
    }
    verify::chain_segment(&headers, Some(BlockHash::ZERO))?;
    assert!(back == records, "opened records differ from the trace");
    let per_frame = stored as f64 / records.len() as f64;
    println!(
        "GPS trace: {} blocks, {stored} bytes stored, {per_frame:.3} bytes/frame",
        headers.len()
    );
    assert!(per_frame < 3.35, "{per_frame:.3} bytes/frame");
    Ok(())
}

/// The gateway's default block size and its way of sealing: one `BlockHints` carried across
/// blocks (D254). Every block still opens to exactly its records, and reusing layouts costs at
/// most 1 % of bytes against a fresh search per block.
#[test]
fn gps_trace_in_default_blocks_with_carried_layouts_opens_exactly() -> anyhow::Result<()> {
    let path = fixture("fixtures/traces/canmod_gps_3BA199E2.log.gz");
    let mut reader = trace::open(&path, ErrorPolicy::Strict).context("open trace")?;
    let mut frames = Vec::new();
    for f in reader.by_ref() {
        frames.push(f?);
    }
    let names: Vec<Arc<str>> = reader.channels().iter().map(|s| Arc::from(s.as_str())).collect();
    let records: Vec<Record> =
        frames.iter().map(|f| to_record(f, &names)).collect::<anyhow::Result<_>>()?;
    let key = x25519("factory", 7);
    let mut r = rng(6);
    let mut hints = BlockHints::new();
    let (mut hinted, mut fresh) = (0usize, 0usize);
    for (h, chunk) in records.chunks(50_000).enumerate() {
        let spec = vec![LaneSpec {
            name: "factory".into(),
            recipients: vec![key.public()],
            records: chunk.to_vec(),
        }];
        let opts = SealOptions::default();
        let block = seal_block_hinted(
            [1; 32],
            h as u64,
            BlockHash::ZERO,
            &spec,
            &opts,
            &mut hints,
            &mut r,
        )?;
        assert!(open_lane(&block, 0, &key, &Limits::DEFAULT)? == chunk, "block {h} differs");
        hinted += block.lanes[0].len();
        fresh +=
            seal_block([1; 32], h as u64, BlockHash::ZERO, &spec, &opts, &mut r)?.lanes[0].len();
    }
    println!("GPS trace in 50k-frame blocks: {hinted} bytes with carried layouts, {fresh} searched per block");
    assert!((hinted as f64) < fresh as f64 * 1.01, "{hinted} vs {fresh}");
    Ok(())
}
