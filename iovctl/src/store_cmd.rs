//! `iovctl store`: check and publish a gateway's local store.
//!
//! - `verify --store DIR --key VKEY_FILE`: opens the store read-only (strictest RocksDB checks),
//!   runs the recovery checks and a full verification, prints a summary. Exit 0 intact,
//!   1 damaged (every problem printed, naming column family, key and mismatch), 2 usage error
//!   (bad arguments, unreadable or invalid key file, no store in DIR). Any WAL damage counts,
//!   including the torn last record a crash can leave: run it after the daemon has reopened
//!   the store (which drops that never-acknowledged record).
//! - `export-tiles --store DIR --key VKEY_FILE --out DIR`: writes the C2SP tlog-tiles static
//!   layout of the head (`checkpoint`, `tile/<L>/<N>[.p/<W>]`, `tile/entries/<N>[.p/<W>]`), so
//!   the log can be served as static files. The key is needed because opening a store runs the
//!   recovery checks, which verify the checkpoint signature.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use ledger::note::Ed25519Verifier;
use ledger::store::rocks::{Mode, Rocks};
use ledger::store::{self, Store, StoreError};
use ledger::tile::{self, TileSource as _};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Verify a store fully: every header against the tiles, tiles against the checkpoint,
    /// checkpoint signatures, entry bundles. Exit 0 intact, 1 damaged, 2 usage error.
    Verify {
        /// Store directory (RocksDB).
        #[arg(long)]
        store: PathBuf,
        /// File holding the gateway's note verifier key (vkey: name+keyid+base64).
        #[arg(long)]
        key: PathBuf,
    },
    /// Write the log as C2SP tlog-tiles static files (checkpoint, tiles, entry bundles).
    ExportTiles {
        #[arg(long)]
        store: PathBuf,
        /// File holding the gateway's vkey (opening runs the recovery checks).
        #[arg(long)]
        key: PathBuf,
        /// Output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
}

const USAGE: u8 = 2;
const DAMAGED: u8 = 1;

fn load_vkey(path: &Path) -> Result<Ed25519Verifier, String> {
    let text = fs::read_to_string(path)
        .map_err(|e| format!("reading key file {}: {e}", path.display()))?;
    Ed25519Verifier::from_vkey(text.trim())
        .map_err(|e| format!("key file {} is not a note verifier key: {e}", path.display()))
}

/// Opens a store; `Err(code)` after printing why.
fn open(dir: &Path, key: &Path) -> Result<Rocks, ExitCode> {
    let verifier = load_vkey(key).map_err(|e| {
        eprintln!("iovctl: {e}");
        ExitCode::from(USAGE)
    })?;
    if !dir.join("CURRENT").is_file() {
        eprintln!("iovctl: {} holds no store (no RocksDB CURRENT file)", dir.display());
        return Err(ExitCode::from(USAGE));
    }
    Rocks::open(dir, &verifier, Mode::Verify).map_err(|e| {
        println!("store {}: DAMAGED", dir.display());
        match e {
            StoreError::Damaged(d) => println!("  {d}"),
            other => println!("  {other}"),
        }
        ExitCode::from(DAMAGED)
    })
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    match &args.command {
        Command::Verify { store, key } => Ok(verify(store, key)),
        Command::ExportTiles { store, key, out } => export_tiles(store, key, out),
    }
}

fn verify(dir: &Path, key: &Path) -> ExitCode {
    let s = match open(dir, key) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let verifier = match load_vkey(key) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("iovctl: {e}");
            return ExitCode::from(USAGE);
        }
    };
    match ledger::verify_store::verify(&s, &verifier) {
        Ok(sum) => {
            println!("store {}: intact", dir.display());
            println!("origin      {}", sum.origin);
            println!("size        {}", sum.size);
            println!("root        {}", sum.root.to_base64());
            println!("blocks      {}", sum.blocks);
            println!("lanes       {}", sum.lanes);
            println!(
                "bytes       {} (headers {}, lanes {})",
                sum.header_bytes + sum.lane_bytes,
                sum.header_bytes,
                sum.lane_bytes
            );
            println!("tiles       {}", sum.tiles);
            println!("checkpoints {}", sum.checkpoints);
            if sum.pruned_below == 0 {
                println!("pruned      none");
            } else {
                println!(
                    "pruned      heights 0..{} ({} blocks): lanes deleted by retention; headers, tiles and checkpoints kept and verified",
                    sum.pruned_below, sum.pruned_blocks
                );
            }
            ExitCode::SUCCESS
        }
        Err(problems) => {
            println!("store {}: DAMAGED ({} problems)", dir.display(), problems.len());
            for d in &problems {
                println!("  {d}");
            }
            ExitCode::from(DAMAGED)
        }
    }
}

fn write_file(out: &Path, rel: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let path = out.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn export_tiles(dir: &Path, key: &Path, out: &Path) -> anyhow::Result<ExitCode> {
    let s = match open(dir, key) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let size = s.size();
    let checkpoint = s.checkpoint()?.context("the log is empty: nothing to export")?;
    write_file(out, "checkpoint", &checkpoint)?;
    let tiles = store::tiles(&s);
    let mut count = 0u64;
    for t in tile::tiles_for_size(size) {
        let bytes = tiles.read_tile(&t).with_context(|| format!("reading {}", t.path()))?;
        write_file(out, &t.path(), &bytes)?;
        count += 1;
        if t.level() == 0 {
            let b =
                s.bundle(t.index())?.with_context(|| format!("{} missing", t.entries_path()))?;
            write_file(out, &t.entries_path(), &b)?;
            count += 1;
        }
    }
    println!(
        "exported size {size}: checkpoint and {count} tiles and entry bundles to {}",
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}
