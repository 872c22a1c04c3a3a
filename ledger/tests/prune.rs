//! Pruning a real RocksDB store on disk: the lanes below a height go (one durable batch with
//! meta `pruned_below`), the space comes back (measured with `Rocks::disk_usage`), the log still
//! verifies with the pruned prefix reported as such, the lanes above stay bit-exact, and reopening
//! (read-write and read-only) works. A lane missing above the prefix is still damage.
#![cfg(feature = "rocks")]

mod store_common;
use store_common as common;

use std::time::Instant;

use anyhow::{ensure, Context as _};
use ledger::keys;
use ledger::note::Ed25519Signer;
use ledger::store::rocks::{Mode, Rocks};
use ledger::store::{append_blocks, testing, Pruned, Store, StoreError};

const LANES: usize = 2;
const LANE_BYTES: usize = 32 * 1024;

fn add(store: &mut Rocks, signer: &Ed25519Signer, n: u64, per_append: u64) -> anyhow::Result<()> {
    let gw = signer.verifier().public_key().to_bytes();
    let mut left = n;
    while left > 0 {
        let k = left.min(per_append);
        let blocks = testing::next_blocks(store, gw, k, |h| common::lanes(h, LANES, LANE_BYTES))?;
        append_blocks(store, signer, blocks)?;
        left -= k;
    }
    Ok(())
}

fn verify(store: &Rocks, signer: &Ed25519Signer) -> anyhow::Result<ledger::verify_store::Summary> {
    ledger::verify_store::verify(store, &signer.verifier()).map_err(|d| {
        anyhow::anyhow!(
            "verify: {}",
            d.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
        )
    })
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

#[test]
fn pruning_returns_the_space_keeps_the_log_verifiable_and_survives_reopen() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let signer = keys::generate_signer("iov.example/gw/prune")?;
    let verifier = signer.verifier();
    let gw = verifier.public_key().to_bytes();
    let mut store = Rocks::open(dir.path(), &verifier, Mode::CreateOrOpen)?;
    add(&mut store, &signer, 300, 5)?;
    let before = store.disk_usage()?;
    println!(
        "300 blocks x {LANES} lanes x {LANE_BYTES} B: {:.1} MiB on disk ({:.1} WAL, {:.1} SST, {:.2} MANIFEST, {:.2} other, {} files)",
        mib(before.total()),
        mib(before.wal),
        mib(before.sst),
        mib(before.manifest),
        mib(before.other),
        before.files
    );

    let t = Instant::now();
    let done = store.prune_lanes(200, None)?;
    let took = t.elapsed();
    ensure!(done == Pruned { from: 0, below: 200 }, "{done:?}");
    let after = store.disk_usage()?;
    let pruned_bytes = 200 * (LANES * LANE_BYTES) as u64;
    println!(
        "pruned heights 0..200 ({:.1} MiB of lanes) in {:.0} ms: {:.1} MiB on disk ({:.1} WAL, {:.1} SST, {:.2} other, {} files)",
        mib(pruned_bytes),
        took.as_secs_f64() * 1e3,
        mib(after.total()),
        mib(after.wal),
        mib(after.sst),
        mib(after.other),
        after.files
    );
    ensure!(
        after.total() + pruned_bytes * 9 / 10 <= before.total(),
        "pruning {pruned_bytes} lane bytes returned only {} bytes",
        before.total().saturating_sub(after.total())
    );
    ensure!(store.lane(199, 0)?.is_none() && store.lanes(0)?.is_empty(), "pruned lanes are gone");
    ensure!(store.header(0)?.is_some() && store.header(199)?.is_some(), "headers stay");

    let sum = verify(&store, &signer)?;
    ensure!((sum.pruned_below, sum.pruned_blocks, sum.blocks) == (200, 200, 300), "{sum:?}");
    ensure!(sum.lanes == 100 * LANES as u64, "{sum:?}");
    let mut expected = common::Expected::new(gw, LANES, LANE_BYTES);
    for h in 200..300 {
        ensure!(store.lanes(h)? == expected.block(h).lanes, "lanes of {h} changed");
    }

    // Reopened read-write: the prefix is durable and appends go on.
    drop(store);
    let mut store = Rocks::open(dir.path(), &verifier, Mode::Open)?;
    ensure!(store.pruned_below()? == 200);
    add(&mut store, &signer, 20, 20)?;
    let sum = verify(&store, &signer)?;
    ensure!((sum.pruned_below, sum.blocks, sum.lanes) == (200, 320, 120 * LANES as u64), "{sum:?}");
    for h in [200, 299, 300, 319] {
        ensure!(store.lanes(h)? == expected.block(h).lanes, "lanes of {h} changed");
    }
    // Pruning again moves the prefix; lower is a no-op.
    ensure!(store.prune_lanes(250, Some(b"note"))? == Pruned { from: 200, below: 250 });
    ensure!(store.prune_lanes(100, None)? == Pruned { from: 250, below: 250 });
    ensure!(store.prune_note()?.as_deref() == Some(&b"note"[..]));
    drop(store);

    // Read-only (what `iovctl store verify` opens).
    let ro = Rocks::open(dir.path(), &verifier, Mode::Verify)?;
    let sum = verify(&ro, &signer)?;
    ensure!((sum.pruned_below, sum.pruned_blocks) == (250, 250), "{sum:?}");

    // The measurement itself: one readdir and a stat per file.
    let t = Instant::now();
    for _ in 0..1000 {
        std::hint::black_box(ro.disk_usage()?);
    }
    println!(
        "disk_usage over {} files: {:.1} us per call",
        after.files,
        t.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

#[test]
fn a_lane_missing_above_the_pruned_prefix_is_damage_and_the_prefix_is_not() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let signer = keys::generate_signer("iov.example/gw/prune-damage")?;
    let mut store = Rocks::open(dir.path(), &signer.verifier(), Mode::CreateOrOpen)?;
    add(&mut store, &signer, 40, 10)?;
    store.prune_lanes(20, None)?;
    verify(&store, &signer).context("a pruned store verifies")?;
    store.delete_raw_for_test("lanes", &ledger::store::lane_key(30, 1))?;
    let errs = ledger::verify_store::verify(&store, &signer.verifier())
        .err()
        .context("a missing lane above the prefix must fail verification")?;
    let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
    ensure!(
        text == ["lanes[height 30]: 1 lanes stored, the header lists 2"],
        "damage named by height: {text:?}"
    );
    Ok(())
}

#[test]
fn only_the_writer_prunes_and_never_past_the_head() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let signer = keys::generate_signer("iov.example/gw/prune-who")?;
    let mut store = Rocks::open(dir.path(), &signer.verifier(), Mode::CreateOrOpen)?;
    add(&mut store, &signer, 10, 10)?;
    match store.prune_lanes(11, None) {
        Err(StoreError::BadPrune { below: 11, head: 10 }) => {}
        other => anyhow::bail!("pruning past the head: {other:?}"),
    }
    let mut reader = store.reader();
    let err = reader.prune_lanes(5, None).err().context("a reader must not prune")?;
    ensure!(err.to_string().contains("only the store's writer prunes"), "{err}");
    ensure!(reader.pruned_below()? == 0);
    // The whole log may go (headers stay), and a reader sees it.
    store.prune_lanes(10, None)?;
    ensure!(reader.pruned_below()? == 10);
    let sum = verify(&store, &signer)?;
    ensure!((sum.pruned_blocks, sum.lanes) == (10, 0), "{sum:?}");
    drop((store, reader));
    let mut ro = Rocks::open(dir.path(), &signer.verifier(), Mode::Verify)?;
    let err = ro.prune_lanes(10, None).err().context("read-only must not prune")?;
    ensure!(err.to_string().contains("read-only"), "{err}");
    Ok(())
}
