//! A full disk: appends to a RocksDB store on a small tmpfs until the filesystem refuses a
//! write. The failed append returns an error (no panic), every later append is refused as
//! poisoned (a failed write is fatal for the writer), and a copy of the store taken at that
//! moment opens, verifies fully and holds every block whose append had returned.
//!
//! Mounting the tmpfs needs root (CI and `make test` run as root here); without it the test
//! fails and says so rather than skipping.
#![cfg(feature = "rocks")]

mod store_common;
use store_common as common;

use std::path::Path;
use std::process::Command;

use anyhow::{bail, ensure, Context as _};
use ledger::keys;
use ledger::store::rocks::{Mode, Rocks};
use ledger::store::{append_blocks, testing, Store, StoreError};

const LANES: usize = 2;
const LANE_BYTES: usize = 64 * 1024;
/// Small enough to fill in a few dozen blocks, large enough for RocksDB's files at open.
const FS_SIZE: &str = "8m";

/// A tmpfs mounted for the test's lifetime, unmounted on drop.
struct Mount<'a>(&'a Path);

impl<'a> Mount<'a> {
    fn tmpfs(at: &'a Path, size: &str) -> anyhow::Result<Mount<'a>> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "iov-disk-full"])
            .arg(at)
            .output()
            .context("running mount")?;
        if !out.status.success() {
            bail!(
                "mounting a {size} tmpfs at {} failed (this test needs root): {}",
                at.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(Mount(at))
    }
}

impl Drop for Mount<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

#[test]
fn a_full_disk_fails_the_append_poisons_the_writer_and_keeps_every_returned_block(
) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let small = tmp.path().join("small");
    std::fs::create_dir(&small)?;
    let _mount = Mount::tmpfs(&small, FS_SIZE)?;
    let dir = small.join("store");

    let signer = keys::generate_signer("iov.example/gw/disk-full")?;
    let verifier = signer.verifier();
    let gw = verifier.public_key().to_bytes();
    let mut store = Rocks::open(&dir, &verifier, Mode::CreateOrOpen)
        .map_err(|e| anyhow::anyhow!("create on the tmpfs: {e}"))?;

    // Bounded: 8 MiB cannot hold 1,000 blocks of 128 KiB.
    let mut returned = 0u64;
    let mut failure = None;
    for _ in 0..1000 {
        let blocks = testing::next_blocks(&store, gw, 1, |h| common::lanes(h, LANES, LANE_BYTES))?;
        match append_blocks(&mut store, &signer, blocks) {
            Ok(done) => returned = done.new_size,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let failure = failure.context("the tmpfs never filled up")?;
    println!("disk full after {returned} blocks: {failure}");
    ensure!(returned > 0, "not a single block fit: {failure}");
    ensure!(
        !matches!(failure, StoreError::Poisoned { .. }),
        "the first failure must be the write error itself, not {failure}"
    );
    ensure!(store.poisoned().is_some(), "a failed write must poison the writer");

    // Every later append is refused, whatever it holds.
    let next = testing::next_blocks(&store, gw, 1, |h| common::lanes(h, 1, 16))?;
    match append_blocks(&mut store, &signer, next) {
        Err(StoreError::Poisoned { first }) => println!("then refused: poisoned by {first}"),
        Err(other) => bail!("expected a poisoned refusal, got {other}"),
        Ok(_) => bail!("an append after a failed write was accepted"),
    }
    drop(store);

    // What the disk holds now is a store a restarted daemon can open: copy it off the full
    // filesystem (opening needs room for a new WAL) and check it.
    let copy = tmp.path().join("copy");
    let status = Command::new("cp").arg("-a").arg(&dir).arg(&copy).status()?;
    ensure!(status.success(), "copying the store off the tmpfs");
    let store = Rocks::open(&copy, &verifier, Mode::Open)
        .map_err(|e| anyhow::anyhow!("open after the disk filled: {e}"))?;
    let summary = ledger::verify_store::verify(&store, &verifier).map_err(|d| {
        anyhow::anyhow!(
            "verify after the disk filled: {}",
            d.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
        )
    })?;
    ensure!(
        store.size() >= returned,
        "{returned} appends returned but the store holds {} blocks",
        store.size()
    );
    let mut expected = common::Expected::new(gw, LANES, LANE_BYTES);
    for h in 0..returned {
        let want = expected.block(h);
        ensure!(store.header(h)?.as_deref() == Some(&want.header[..]), "header {h} differs");
        ensure!(store.lanes(h)? == want.lanes, "lanes of block {h} differ");
    }
    println!("after the copy: {} blocks verify ({summary:?})", store.size());
    Ok(())
}
