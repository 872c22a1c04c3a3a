//! Pruning a real RocksDB store on disk: the lanes below a height go (one durable batch with
//! meta `pruned_below`), the space comes back (measured with `Rocks::disk_usage`), the log still
//! verifies with the pruned prefix reported as such, the lanes above stay bit-exact, and reopening
//! (read-write and read-only) works. A lane missing above the prefix is still damage. And a
//! SIGKILL at any moment of an append-and-prune loop (mid-batch, mid-flush, mid-compaction)
//! leaves a store that opens, verifies, and keeps every acknowledged prune and block.
#![cfg(feature = "rocks")]

mod store_common;
use store_common as common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

/// The child: append 4 blocks, acknowledge them, prune all but the newest 8, acknowledge the
/// prune; forever.
fn prune_child(dir: &Path, key: &Path) -> anyhow::Result<()> {
    let signer = keys::load_signer(key)?;
    let mut store = Rocks::open(dir, &signer.verifier(), Mode::CreateOrOpen)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "OPEN {}", store.size())?;
    out.flush()?;
    loop {
        add(&mut store, &signer, 4, 4)?;
        writeln!(out, "ACK {}", store.size() - 1)?;
        out.flush()?;
        let below = store.size().saturating_sub(8);
        if below > store.pruned_below()? {
            writeln!(out, "PRUNING {below}")?;
            out.flush()?;
            store.prune_lanes(below, None)?;
            writeln!(out, "PRUNED {below}")?;
            out.flush()?;
        }
    }
}

#[test]
fn prune_child_entry_point() {
    let (Some(dir), Some(key)) =
        (std::env::var_os("IOV_PRUNE_DIR"), std::env::var_os("IOV_PRUNE_KEY"))
    else {
        return;
    };
    if let Err(e) = prune_child(Path::new(&dir), Path::new(&key)) {
        println!("CHILD-ERROR {e:#}");
        std::process::exit(3);
    }
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

#[test]
fn sigkill_during_pruning_keeps_the_store_verifiable_and_every_acknowledged_prune(
) -> anyhow::Result<()> {
    if std::env::var_os("IOV_PRUNE_DIR").is_some() {
        return Ok(());
    }
    const TRIALS: u32 = 40;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("store");
    let key = tmp.path().join("gw.key");
    let signer = keys::generate_signer("iov.example/gw/prune-crash")?;
    keys::save_signer(&key, &signer)?;
    let verifier = signer.verifier();
    let mut expected = common::Expected::new(verifier.public_key().to_bytes(), LANES, LANE_BYTES);
    let exe = std::env::current_exe()?;
    let (mut top_ack, mut top_prune, mut prunes, mut mid_prune) = (None::<u64>, 0u64, 0usize, 0u32);
    for trial in 0..TRIALS {
        let mut child = Command::new(&exe)
            .args(["--exact", "prune_child_entry_point", "--nocapture", "--test-threads=1"])
            .env("IOV_PRUNE_DIR", &dir)
            .env("IOV_PRUNE_KEY", &key)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().context("child stdout")?;
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout).lines().map_while(Result::ok).collect::<Vec<String>>()
        });
        // Past the child's open (tens of ms) and into its loop of appends and prunes.
        std::thread::sleep(Duration::from_micros(20_000 + random_u64() % 400_000));
        child.kill()?;
        child.wait()?;
        let lines = reader.join().map_err(|_| anyhow::anyhow!("reader thread panicked"))?;
        if let Some(e) = lines.iter().find(|l| l.contains("CHILD-ERROR")) {
            anyhow::bail!("trial {trial}: {e}");
        }
        let num = |tag: &str| -> Vec<u64> {
            lines
                .iter()
                .filter_map(|l| l.find(tag).and_then(|i| l[i + tag.len()..].parse().ok()))
                .collect()
        };
        if let Some(&a) = num("ACK ").iter().max() {
            top_ack = Some(top_ack.map_or(a, |t| t.max(a)));
        }
        if lines.last().is_some_and(|l| l.contains("PRUNING ")) {
            mid_prune += 1;
        }
        let pruned = num("PRUNED ");
        prunes += pruned.len();
        if let Some(&p) = pruned.iter().max() {
            top_prune = top_prune.max(p);
        }
        let mode = if top_ack.is_none() { Mode::CreateOrOpen } else { Mode::Open };
        let store = Rocks::open(&dir, &verifier, mode)
            .map_err(|e| anyhow::anyhow!("trial {trial}: open after SIGKILL: {e}"))?;
        let sum = verify(&store, &signer).with_context(|| format!("trial {trial}"))?;
        ensure!(
            sum.pruned_below >= top_prune,
            "trial {trial}: acknowledged prune {top_prune} lost: {sum:?}"
        );
        if let Some(a) = top_ack {
            ensure!(
                store.size() > a,
                "trial {trial}: block {a} acknowledged, size {}",
                store.size()
            );
            for h in sum.pruned_below..=a {
                ensure!(store.lanes(h)? == expected.block(h).lanes, "trial {trial}: lanes of {h}");
            }
        }
    }
    println!(
        "{TRIALS} SIGKILLs during append+prune ({mid_prune} in the middle of a prune): {prunes} prunes \
         acknowledged, pruned below {top_prune}, blocks up to {top_ack:?} acknowledged; every trial \
         opened and verified"
    );
    ensure!(prunes > 0, "no prune was ever acknowledged: the delays are too short");
    Ok(())
}
