//! `iovctl store verify` and `export-tiles` against real RocksDB stores on disk: an intact store
//! exits 0; flipped bytes in SST, WAL and MANIFEST files and values rewritten through RocksDB
//! never exit 0, and the message names the damage.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{ensure, Context as _};
use ledger::keys;
use ledger::note::Ed25519Signer;
use ledger::store::rocks::{Mode, Rocks};
use ledger::store::{append_blocks, testing, Store};

const BLOCKS: u64 = 600;

fn lanes(h: u64) -> Vec<Vec<u8>> {
    (0..2u8).map(|i| vec![(h as u8).wrapping_mul(31).wrapping_add(i); 3000]).collect()
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    store: PathBuf,
    vkey: PathBuf,
    signer: Ed25519Signer,
}

/// A store of 600 blocks in batches of 1..7; `flush` moves everything into SST files,
/// otherwise the data stays in the WAL (RocksDB does not flush on close).
fn fixture(flush: bool) -> anyhow::Result<Fixture> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().to_owned();
    let store = root.join("store");
    let signer = keys::generate_signer("iov.example/gw/cli")?;
    let vkey = root.join("gw.vkey");
    fs::write(&vkey, format!("{}\n", signer.verifier().to_vkey()))?;
    let mut s = Rocks::open(&store, &signer.verifier(), Mode::CreateOrOpen)?;
    let gw = signer.verifier().public_key().to_bytes();
    while s.size() < BLOCKS {
        let h = s.size();
        let n = (h % 7 + 1).min(BLOCKS - h);
        let blocks = testing::next_blocks(&s, gw, n, lanes)?;
        append_blocks(&mut s, &signer, blocks)?;
    }
    s.set_cursor("factory", b"17")?;
    if flush {
        s.flush()?;
    }
    drop(s);
    Ok(Fixture { _tmp: tmp, root, store, vkey, signer })
}

fn iovctl(args: &[&str]) -> anyhow::Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_iovctl")).args(args).output().context("running iovctl")
}

fn verify(store: &Path, vkey: &Path) -> anyhow::Result<(Option<i32>, String)> {
    let out = iovctl(&[
        "store",
        "verify",
        "--store",
        store.to_str().context("utf-8 path")?,
        "--key",
        vkey.to_str().context("utf-8 path")?,
    ])?;
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok((out.status.code(), text))
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(to)?;
    for e in fs::read_dir(from)? {
        let e = e?;
        fs::copy(e.path(), to.join(e.file_name()))?;
    }
    Ok(())
}

fn files_ending(dir: &Path, suffix: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(suffix) || n.starts_with(suffix))
        })
        .collect();
    v.sort();
    Ok(v)
}

/// Flips one byte of `file` (in a fresh copy of the store) at each position and runs verify:
/// it must never exit 0, and must say DAMAGED and why. Returns how many flips were tried.
fn flip_each(f: &Fixture, suffix: &str, positions: &[f64]) -> anyhow::Result<usize> {
    let files = files_ending(&f.store, suffix)?;
    ensure!(!files.is_empty(), "no {suffix} files in {}", f.store.display());
    let mut tried = 0;
    for file in &files {
        let len = fs::metadata(file)?.len();
        if len == 0 {
            continue;
        }
        let name = file.file_name().context("file name")?.to_owned();
        for &pos in positions {
            let at = ((len as f64 * pos) as u64).min(len - 1);
            let copy = f.root.join(format!("flip-{}-{at}", name.to_string_lossy()));
            copy_dir(&f.store, &copy)?;
            let target = copy.join(&name);
            let mut bytes = fs::read(&target)?;
            bytes[at as usize] ^= 0x5a;
            fs::write(&target, &bytes)?;
            let (code, text) = verify(&copy, &f.vkey)?;
            ensure!(
                code != Some(0),
                "verify exited 0 after flipping byte {at} of {} ({len} bytes): {text}",
                name.to_string_lossy()
            );
            ensure!(code == Some(1), "exit {code:?} is not 'damaged' for a flip at {at}: {text}");
            ensure!(text.contains("DAMAGED"), "no DAMAGED line for byte {at}: {text}");
            ensure!(
                text.contains("orrupt") || text.contains("checksum") || text.contains('['),
                "the message does not name the damage for byte {at} of {}: {text}",
                name.to_string_lossy()
            );
            println!(
                "flip {}@{at}/{len}: {}",
                name.to_string_lossy(),
                text.lines().nth(1).unwrap_or("").trim()
            );
            tried += 1;
            fs::remove_dir_all(&copy)?;
        }
    }
    Ok(tried)
}

#[test]
fn an_intact_store_verifies_with_exit_0_and_a_summary() -> anyhow::Result<()> {
    let f = fixture(false)?;
    let (code, text) = verify(&f.store, &f.vkey)?;
    ensure!(code == Some(0), "exit {code:?}: {text}");
    ensure!(
        text.contains("intact")
            && text.contains("blocks      600")
            && text.contains("lanes       1200"),
        "{text}"
    );
    // Verification opened it read-only: the store still opens read-write afterwards.
    let s = Rocks::open(&f.store, &f.signer.verifier(), Mode::Open)?;
    ensure!(s.size() == BLOCKS);
    Ok(())
}

#[test]
fn usage_errors_exit_2() -> anyhow::Result<()> {
    let f = fixture(false)?;
    let (code, text) = verify(&f.store, &f.root.join("missing.vkey"))?;
    ensure!(code == Some(2), "missing key file: exit {code:?}: {text}");
    let (code, text) = verify(&f.root.join("nowhere"), &f.vkey)?;
    ensure!(code == Some(2), "missing store: exit {code:?}: {text}");
    fs::write(f.root.join("bad.vkey"), "not a key")?;
    let (code, _) = verify(&f.store, &f.root.join("bad.vkey"))?;
    ensure!(code == Some(2));
    let out = iovctl(&["store", "verify", "--store"])?;
    ensure!(out.status.code() == Some(2));
    Ok(())
}

#[test]
fn a_key_of_another_gateway_is_damage_not_success() -> anyhow::Result<()> {
    let f = fixture(false)?;
    let other = keys::generate_signer("iov.example/gw/cli")?;
    let vkey = f.root.join("other.vkey");
    fs::write(&vkey, other.verifier().to_vkey())?;
    let (code, text) = verify(&f.store, &vkey)?;
    ensure!(code == Some(1), "exit {code:?}: {text}");
    ensure!(text.contains("checkpoints[size 600]: signature"), "{text}");
    Ok(())
}

#[test]
fn flipped_bytes_in_sst_files_never_verify() -> anyhow::Result<()> {
    let f = fixture(true)?;
    // Start, middle of data blocks, index and footer regions.
    let n = flip_each(&f, ".sst", &[0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 0.97, 1.0])?;
    println!("SST flips tried: {n}");
    ensure!(n >= 8);
    Ok(())
}

#[test]
fn flipped_bytes_in_the_wal_never_verify() -> anyhow::Result<()> {
    let f = fixture(false)?;
    let n = flip_each(&f, ".log", &[0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0])?;
    println!("WAL flips tried: {n}");
    ensure!(n >= 7);
    Ok(())
}

#[test]
fn flipped_bytes_in_the_manifest_never_verify() -> anyhow::Result<()> {
    let f = fixture(true)?;
    let n = flip_each(&f, "MANIFEST-", &[0.0, 0.3, 0.6, 1.0])?;
    println!("MANIFEST flips tried: {n}");
    Ok(())
}

#[test]
fn a_header_rewritten_through_rocksdb_is_named_by_height() -> anyhow::Result<()> {
    let f = fixture(false)?;
    let s = Rocks::open(&f.store, &f.signer.verifier(), Mode::Open)?;
    // A well-formed header for height 417 that is not the one the log holds (other lanes).
    let gw = f.signer.verifier().public_key().to_bytes();
    let prev = s.header(416)?.context("header 416")?;
    let forged = testing::chained_block(gw, 417, Some(&prev), vec![vec![7; 10]]);
    s.put_raw_for_test("headers", &417u64.to_be_bytes(), &forged.header)?;
    drop(s);
    let (code, text) = verify(&f.store, &f.vkey)?;
    ensure!(code == Some(1), "exit {code:?}: {text}");
    ensure!(text.contains("headers[height 417]: leaf hash"), "{text}");
    Ok(())
}

#[test]
fn a_lane_rewritten_through_rocksdb_is_named_by_height_and_lane() -> anyhow::Result<()> {
    let f = fixture(true)?;
    let s = Rocks::open(&f.store, &f.signer.verifier(), Mode::Open)?;
    let mut lane = s.lane(250, 1)?.context("lane 250/1")?;
    lane[1500] ^= 1;
    let mut key = 250u64.to_be_bytes().to_vec();
    key.extend_from_slice(&1u16.to_be_bytes());
    s.put_raw_for_test("lanes", &key, &lane)?;
    drop(s);
    let (code, text) = verify(&f.store, &f.vkey)?;
    ensure!(code == Some(1), "exit {code:?}: {text}");
    ensure!(text.contains("lanes[height 250 lane 1]: lane 1"), "{text}");
    ensure!(text.contains("BLAKE3"), "{text}");
    Ok(())
}

#[test]
fn export_tiles_writes_the_c2sp_layout_that_verifies_against_the_checkpoint() -> anyhow::Result<()>
{
    let f = fixture(false)?;
    let out = f.root.join("static");
    let o = iovctl(&[
        "store",
        "export-tiles",
        "--store",
        f.store.to_str().context("path")?,
        "--key",
        f.vkey.to_str().context("path")?,
        "--out",
        out.to_str().context("path")?,
    ])?;
    ensure!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cp = fs::read(out.join("checkpoint"))?;
    let v = f.signer.verifier();
    let (signed, _) =
        ledger::checkpoint::SignedCheckpoint::verify(&cp, &[&v as &dyn ledger::note::Verifier])?;
    ensure!(signed.checkpoint().size() == BLOCKS);
    // 600 leaves: tiles 0/000, 0/001, 0/002.p/88, 1/000.p/2, and the matching bundles.
    for p in
        ["tile/0/000", "tile/0/001", "tile/0/002.p/88", "tile/1/000.p/2", "tile/entries/002.p/88"]
    {
        ensure!(out.join(p).is_file(), "{p} missing");
    }
    let mut tiles = std::collections::BTreeMap::new();
    for t in ledger::tile::tiles_for_size(BLOCKS) {
        tiles.insert(t, fs::read(out.join(t.path()))?);
        if t.level() == 0 {
            ledger::tile::check_bundle(&fs::read(out.join(t.entries_path()))?, &tiles[&t])?;
        }
    }
    ledger::tile::verify_tiles(&tiles, BLOCKS, signed.checkpoint().root())?;

    // The exported log passes the generic C2SP verifier a mirror or auditor would run.
    let o = iovctl(&[
        "tlog",
        "verify",
        "--log",
        out.to_str().context("path")?,
        "--key",
        f.vkey.to_str().context("path")?,
        "--entries",
    ])?;
    ensure!(
        o.status.success(),
        "tlog verify of the exported store: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    Ok(())
}

#[test]
fn a_flipped_byte_in_the_last_wal_record_fails_a_read_write_open_too() -> anyhow::Result<()> {
    // The daemon opens read-write (WAL recovery TolerateCorruptedTailRecords): damage inside the
    // last, acknowledged record must not be mistaken for a torn tail and dropped silently.
    let f = fixture(false)?;
    // The newest WAL with records: a memtable switch (4 MiB memtables) can leave the last
    // writes in a short new WAL, or none at all in the newest one.
    let wals = files_ending(&f.store, ".log")?;
    let wal = wals
        .iter()
        .rev()
        .find(|w| fs::metadata(w).is_ok_and(|m| m.len() > 0))
        .context("no WAL with records")?;
    let mut bytes = fs::read(wal)?;
    // 100 bytes before the end lies inside the last record; a WAL shorter than that holds
    // about one record (the cursor), and its middle is inside it.
    let at = if bytes.len() >= 100 { bytes.len() - 100 } else { bytes.len() / 2 };
    bytes[at] ^= 0x5a;
    fs::write(wal, &bytes)?;
    let r = Rocks::open(&f.store, &f.signer.verifier(), Mode::Open);
    match r {
        Ok(s) => {
            anyhow::bail!("opened with {} blocks after a flip in the last WAL record", s.size())
        }
        Err(e) => println!("read-write open refused: {e}"),
    }
    Ok(())
}
