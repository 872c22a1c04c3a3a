//! Crash test: a child process appends blocks to a RocksDB store as fast as it can and prints
//! `ACK <height>` only after `append` returned (the write is synced); the parent kills it with
//! SIGKILL after a random delay, reads everything the child acknowledged, and then checks that
//! the store opens (recovery checks), verifies fully, and holds every acknowledged block with
//! the exact bytes written. Repeated for at least 200 trials on one growing store.
//!
//! The child is this test binary itself, re-run with `IOV_CRASH_CHILD` set (so no example
//! binary path has to be guessed).
#![cfg(feature = "rocks")]

mod store_common;
use store_common as common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use ledger::keys;
use ledger::store::rocks::{Mode, Rocks};
use ledger::store::{append_blocks, Store};

const TRIALS: u32 = 200;
const LANES: usize = 2;
const LANE_BYTES: usize = 4 * 1024;

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("OS randomness");
    u64::from_le_bytes(b)
}

/// The child: open (running recovery), then append forever, acknowledging each append.
fn child(dir: &Path, key: &Path) -> anyhow::Result<()> {
    let signer = keys::load_signer(key)?;
    let mut store = Rocks::open(dir, &signer.verifier(), Mode::CreateOrOpen)
        .map_err(|e| anyhow::anyhow!("child open: {e}"))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "OPEN {}", store.size())?;
    out.flush()?;
    let mut n = 0u64;
    loop {
        let h = store.size();
        // Mostly single blocks, sometimes a batch of three.
        let count = if n % 5 == 4 { 3 } else { 1 };
        let blocks = (h..h + count).map(|h| common::block(h, LANES, LANE_BYTES)).collect();
        let done = append_blocks(&mut store, &signer, blocks)?;
        for acked in done.first_height..done.new_size {
            writeln!(out, "ACK {acked}")?;
        }
        out.flush()?;
        n += 1;
    }
}

#[test]
fn crash_child_entry_point() {
    // Does nothing in a normal run; the parent runs it with the environment set.
    let (Some(dir), Some(key)) =
        (std::env::var_os("IOV_CRASH_DIR"), std::env::var_os("IOV_CRASH_KEY"))
    else {
        return;
    };
    if let Err(e) = child(Path::new(&dir), Path::new(&key)) {
        println!("CHILD-ERROR {e:#}");
        std::process::exit(3);
    }
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_block() -> anyhow::Result<()> {
    if std::env::var_os("IOV_CRASH_DIR").is_some() {
        return Ok(()); // we are a child that was asked to run the other test
    }
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("store");
    let key = tmp.path().join("gw.key");
    let signer = keys::generate_signer("iov.example/gw/crash")?;
    keys::save_signer(&key, &signer)?;
    let verifier = signer.verifier();
    let exe = std::env::current_exe()?;
    let started = Instant::now();

    let mut acked_total = 0u64;
    let mut checked_blocks = 0u64;
    let mut killed_before_open = 0u32;
    let mut highest_acked: Option<u64> = None;
    for trial in 0..TRIALS {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child_entry_point", "--nocapture", "--test-threads=1"])
            .env("IOV_CRASH_DIR", &dir)
            .env("IOV_CRASH_KEY", &key)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning the child")?;
        let stdout = child.stdout.take().context("child stdout")?;
        // Read acknowledgements on a thread while the main thread picks the moment to kill.
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => lines.push(l),
                    Err(_) => break,
                }
            }
            lines
        });
        // Between 0 and 60 ms: some kills land during start-up and recovery, most mid-append.
        std::thread::sleep(Duration::from_micros(random_u64() % 60_000));
        child.kill().context("SIGKILL")?;
        let status = child.wait()?;
        let lines = reader.join().map_err(|_| anyhow::anyhow!("reader thread panicked"))?;
        if let Some(err) = lines.iter().find(|l| l.contains("CHILD-ERROR")) {
            bail!("trial {trial}: child failed: {err} (status {status})");
        }
        let acks: Vec<u64> = lines
            .iter()
            // libtest may print "test name ... " in front of the child's first line.
            .filter_map(|l| l.find("ACK ").map(|i| &l[i + 4..]))
            .map(str::parse)
            .collect::<Result<_, _>>()
            .context("parsing ACK lines")?;
        if !lines.iter().any(|l| l.contains("OPEN ")) {
            killed_before_open += 1;
        }
        acked_total += acks.len() as u64;
        if let Some(&m) = acks.iter().max() {
            highest_acked = Some(highest_acked.map_or(m, |h| h.max(m)));
        }

        // Recovery: the store opens, verifies fully, and holds every acknowledged block.
        let store = Rocks::open(&dir, &verifier, Mode::Open)
            .map_err(|e| anyhow::anyhow!("trial {trial}: open after SIGKILL failed: {e}"))?;
        let summary = ledger::verify_store::verify(&store, &verifier).map_err(|d| {
            anyhow::anyhow!(
                "trial {trial}: verify failed: {}",
                d.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
            )
        })?;
        if let Some(h) = highest_acked {
            ensure!(
                store.size() > h,
                "trial {trial}: block {h} was acknowledged but the store has only {} blocks",
                store.size()
            );
        }
        for &h in &acks {
            let want = common::block(h, LANES, LANE_BYTES);
            ensure!(
                store.header(h)?.as_deref() == Some(&want.header[..]),
                "trial {trial}: header {h} differs"
            );
            ensure!(store.lanes(h)? == want.lanes, "trial {trial}: lanes of block {h} differ");
            checked_blocks += 1;
        }
        ensure!(summary.lanes == summary.blocks * LANES as u64, "lane count {summary:?}");
        drop(store);
    }
    // A last, complete check of every block ever acknowledged.
    let store = Rocks::open(&dir, &verifier, Mode::Open).map_err(|e| anyhow::anyhow!("{e}"))?;
    let final_size = store.size();
    for h in 0..=highest_acked.unwrap_or(0) {
        let want = common::block(h, LANES, LANE_BYTES);
        ensure!(store.header(h)?.as_deref() == Some(&want.header[..]), "final: header {h} differs");
        ensure!(store.lanes(h)? == want.lanes, "final: lanes of block {h} differ");
    }
    let elapsed = started.elapsed();
    println!(
        "crash test: {TRIALS} SIGKILL trials in {:.1} s; {acked_total} appends acknowledged, \
         {checked_blocks} acknowledged blocks re-read after their trial, final store {final_size} blocks \
         (all {} acknowledged re-checked); {killed_before_open} kills landed before the child had opened the store",
        elapsed.as_secs_f64(),
        highest_acked.map_or(0, |h| h + 1),
    );
    ensure!(TRIALS >= 200);
    ensure!(acked_total > 0, "no append was ever acknowledged: the delays are too short");
    Ok(())
}
