//! `iovctl tlog verify`: audit a C2SP tlog-tiles log (a directory or an HTTP(S) URL) the way a
//! monitor or witness does.
//!
//! Steps, each failing with the thing that did not match:
//! 1. `checkpoint`: parse the signed note, verify it with the given verifier keys, parse the
//!    checkpoint text strictly, check its origin.
//! 2. Tiles: every tile of that tree size (or, with `--root-only`, the right edge) must hash to
//!    the checkpoint root (`ledger::tile::verify_tiles`); partial tiles fall back to the full
//!    tile when the log has deleted them, as the spec allows.
//! 3. Entry bundles: each level-0 tile's bundle, when present (required with `--entries`),
//!    must hash to that tile.
//! 4. Earlier checkpoints (`--previous`, `--state`): same keys, same origin, not larger, and
//!    consistent with this one by a consistency proof computed from the verified tiles.
//!    `--state` is then advanced to this checkpoint.
//!
//! Exit status: 0 verified; 1 verification failed; 2 usage or fetch error (retryable).

mod fetch;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context};
use ledger::checkpoint::{Checkpoint, SignedCheckpoint};
use ledger::merkle;
use ledger::note::{Ed25519Verifier, Verifier};
use ledger::tile::{self, Tile, TileError, TileReader, TileSource, TILE_WIDTH};

use fetch::{FetchError, Fetcher};

pub const EXAMPLES: &str = "\
Examples:
  iovctl tlog verify --log /srv/ledger/log --key \"$(cat keys/signing.vkey)\"
  iovctl tlog verify --log https://log.example/ --key keys/signing.vkey --state ~/.iov/log.state
  iovctl tlog verify --log ./mirror --key log.vkey --previous old-checkpoint --entries

--key takes a verifier key (NAME+id+base64) or a file holding one.

Exit status: 0 verified; 1 verification failed (the message names the file, hash or
signature that did not match); 2 usage or fetch error (missing file, network, timeout).";

/// Largest checkpoint we read (signed notes are capped at 1 MiB by `ledger::note`).
const MAX_CHECKPOINT_BYTES: u64 = 1 << 20;
/// A tile is 256 hashes of 32 bytes at most.
const MAX_TILE_BYTES: u64 = TILE_WIDTH * 32;
/// The largest entry bundle the format can express: 256 entries of a u16 length and 65,535 bytes.
const MAX_BUNDLE_BYTES: u64 = TILE_WIDTH * (2 + 65_535);

#[derive(clap::Subcommand)]
pub enum Command {
    /// Verify a log's checkpoint, tiles, entry bundles and consistency with earlier checkpoints.
    #[command(after_help = EXAMPLES)]
    Verify(VerifyArgs),
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The log: a directory or an http(s):// URL prefix holding `checkpoint` and `tile/`.
    #[arg(long, value_name = "DIR_OR_URL")]
    log: String,
    /// Verifier key of the log (NAME+id+base64, or a file holding it); repeatable.
    #[arg(long = "key", value_name = "VKEY", required = true)]
    keys: Vec<String>,
    /// Origin the checkpoint must name (default: the name of the key that verified it).
    #[arg(long)]
    origin: Option<String>,
    /// Require an entry bundle for every level-0 tile (default: check those present).
    #[arg(long)]
    entries: bool,
    /// An earlier checkpoint of this log (signed note file) that this one must be consistent with.
    #[arg(long, value_name = "FILE")]
    previous: Option<PathBuf>,
    /// State file remembering the last verified checkpoint: checked for consistency (a smaller
    /// size is a rollback), then replaced by this checkpoint. Created if missing.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Check only the tiles on the right edge that the root needs, not every full tile.
    #[arg(long)]
    root_only: bool,
    /// Timeout for each HTTP request, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    timeout: u64,
}

/// Why verification stopped: the log is wrong (exit 1) or we could not ask it (exit 2).
enum Failure {
    Verify(anyhow::Error),
    Fetch(anyhow::Error),
}

type Result<T> = std::result::Result<T, Failure>;

fn verify_err(e: impl Into<anyhow::Error>) -> Failure {
    Failure::Verify(e.into())
}
fn fetch_err(e: impl Into<anyhow::Error>) -> Failure {
    Failure::Fetch(e.into())
}

/// A fetch error is the log's fault (exit 1) only when the log served too much.
fn classify(e: FetchError) -> Failure {
    match e {
        FetchError::TooLarge { .. } => verify_err(e),
        _ => fetch_err(e),
    }
}

pub fn run(cmd: &Command) -> anyhow::Result<ExitCode> {
    let Command::Verify(args) = cmd;
    Ok(match verify(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Verify(e)) => {
            eprintln!("iovctl: verification failed: {e:#}");
            ExitCode::from(1)
        }
        Err(Failure::Fetch(e)) => {
            eprintln!("iovctl: error: {e:#}");
            ExitCode::from(2)
        }
    })
}

fn load_verifiers(keys: &[String]) -> Result<Vec<Ed25519Verifier>> {
    keys.iter()
        .map(|k| {
            let text = if Path::new(k).is_file() {
                fs::read_to_string(k)
                    .with_context(|| format!("reading verifier key file {k}"))
                    .map_err(fetch_err)?
            } else {
                k.clone()
            };
            Ed25519Verifier::from_vkey(text.trim())
                .with_context(|| format!("--key {k:?} is not an Ed25519 verifier key"))
                .map_err(fetch_err)
        })
        .collect()
}

/// Verifies a signed checkpoint against the keys and the origin rule; `what` names it in errors.
/// `origin` is the expected origin and who expects it (`--origin`, or the current checkpoint).
fn verify_checkpoint(
    bytes: &[u8],
    verifiers: &[Ed25519Verifier],
    origin: Option<(&str, &str)>,
    what: &str,
) -> Result<(Checkpoint, Vec<String>)> {
    let dyns: Vec<&dyn Verifier> = verifiers.iter().map(|v| v as &dyn Verifier).collect();
    let (signed, sigs) =
        SignedCheckpoint::verify(bytes, &dyns).map_err(|e| verify_err(anyhow!("{what}: {e}")))?;
    let cp = signed.checkpoint().clone();
    let by: Vec<String> = sigs.iter().map(|s| format!("{}+{:08x}", s.name, s.key_id)).collect();
    match origin {
        Some((o, by_whom)) if cp.origin() != o => {
            return Err(verify_err(anyhow!(
                "{what}: origin is {:?}, {by_whom} wants {o:?}",
                cp.origin()
            )))
        }
        Some(_) => {}
        None => {
            if !sigs.iter().any(|s| s.name == cp.origin()) {
                return Err(verify_err(anyhow!(
                    "{what}: origin {:?} is not the name of the key that signed it ({}); pass \
                     --origin if that is intended",
                    cp.origin(),
                    by.join(", ")
                )));
            }
        }
    }
    Ok((cp, by))
}

/// Tiles fetched once each, with the entry-bundle check done as each level-0 tile arrives.
struct LogTiles<'a> {
    fetcher: &'a Fetcher,
    /// Tiles above level 0 and partial tiles are few; kept. Full level-0 tiles are read once
    /// by `verify_tiles` and not kept (a million-entry log has 3,906 of them).
    cache: RefCell<HashMap<Tile, Vec<u8>>>,
    /// The first fetch failure, so an error surfacing as a `TileError` string can be classified.
    fetch_failure: RefCell<Option<FetchError>>,
    fetched: Cell<u64>,
    entries: EntryCheck,
}

#[derive(Default)]
struct EntryCheck {
    required: bool,
    done: RefCell<HashSet<u64>>,
    fetched: Cell<u64>,
    bundles: Cell<u64>,
    entries: Cell<u64>,
    absent: Cell<u64>,
    /// First bundle failure; reported only after the tiles verified, so a bad tile is never
    /// blamed on its bundle.
    failure: RefCell<Option<Failure>>,
}

impl LogTiles<'_> {
    fn fetch(
        &self,
        path: &str,
        limit: u64,
        count: &Cell<u64>,
    ) -> std::result::Result<Vec<u8>, FetchError> {
        let r = self.fetcher.get(path, limit);
        if r.is_ok() {
            count.set(count.get() + 1);
        }
        r
    }

    fn remember(&self, e: &FetchError) {
        self.fetch_failure.borrow_mut().get_or_insert_with(|| e.clone());
    }

    /// A tile's bytes: the partial tile, or the prefix of the full tile if the log deleted it.
    fn fetch_tile(&self, t: &Tile) -> std::result::Result<Vec<u8>, FetchError> {
        match self.fetch(&t.path(), MAX_TILE_BYTES, &self.fetched) {
            Err(FetchError::NotFound { path }) if t.is_partial() => {
                let full = Tile::new(t.level(), t.index(), TILE_WIDTH as u16)
                    .map_err(|e| FetchError::Other { path: path.clone(), reason: e.to_string() })?;
                match self.fetch(&full.path(), MAX_TILE_BYTES, &self.fetched) {
                    Ok(mut b) if b.len() == full.byte_len() => {
                        b.truncate(t.byte_len());
                        Ok(b)
                    }
                    // A wrong-sized full tile: hand it on so the length check names it.
                    Ok(b) => Ok(b),
                    Err(FetchError::NotFound { .. }) => Err(FetchError::NotFound {
                        path: format!("{path} (and full tile {})", full.path()),
                    }),
                    Err(e) => Err(e),
                }
            }
            r => r,
        }
    }

    fn check_entries(&self, t: &Tile, level0: &[u8]) {
        let e = &self.entries;
        if t.level() != 0 || !e.done.borrow_mut().insert(t.index()) {
            return;
        }
        if let Err(f) = self.check_bundle(t, level0) {
            e.failure.borrow_mut().get_or_insert(f);
        }
    }

    fn check_bundle(&self, t: &Tile, level0: &[u8]) -> Result<()> {
        let e = &self.entries;
        let path = t.entries_path();
        let bundle = match self.fetch(&path, MAX_BUNDLE_BYTES, &e.fetched) {
            Ok(b) => b,
            Err(FetchError::NotFound { .. }) if t.is_partial() => {
                // As for tiles: the first W entries of the full bundle.
                let full = Tile::new(0, t.index(), TILE_WIDTH as u16).map_err(verify_err)?;
                match self.fetch(&full.entries_path(), MAX_BUNDLE_BYTES, &e.fetched) {
                    Ok(b) => {
                        let all = tile::decode_bundle(&b).map_err(|err| {
                            verify_err(anyhow!("entry bundle {}: {err}", full.entries_path()))
                        })?;
                        let first = all.get(..usize::from(t.width())).unwrap_or(&all);
                        tile::encode_bundle(first).map_err(verify_err)?
                    }
                    Err(FetchError::NotFound { .. }) if !e.required => {
                        e.absent.set(e.absent.get() + 1);
                        return Ok(());
                    }
                    Err(FetchError::NotFound { path: p }) => {
                        return Err(verify_err(anyhow!(
                            "entry bundle {path} is missing (nor is {p} there) and --entries \
                             requires it"
                        )))
                    }
                    Err(err) => return Err(classify(err)),
                }
            }
            Err(FetchError::NotFound { .. }) if !e.required => {
                e.absent.set(e.absent.get() + 1);
                return Ok(());
            }
            Err(FetchError::NotFound { path: p }) => {
                return Err(verify_err(anyhow!(
                    "entry bundle {p} is missing and --entries requires it"
                )))
            }
            Err(err) => return Err(classify(err)),
        };
        tile::check_bundle(&bundle, level0).map_err(|err| {
            verify_err(anyhow!("entry bundle {path} does not match tile {}: {err}", t.path()))
        })?;
        e.bundles.set(e.bundles.get() + 1);
        e.entries.set(e.entries.get() + u64::from(t.width()));
        Ok(())
    }
}

impl TileSource for LogTiles<'_> {
    fn read_tile(&self, t: &Tile) -> std::result::Result<Vec<u8>, TileError> {
        if let Some(b) = self.cache.borrow().get(t) {
            return Ok(b.clone());
        }
        let bytes = self.fetch_tile(t).map_err(|e| {
            self.remember(&e);
            match e {
                FetchError::NotFound { path } => TileError::NotFound { path },
                other => TileError::Unavailable { path: t.path(), reason: other.to_string() },
            }
        })?;
        if bytes.len() == t.byte_len() {
            self.check_entries(t, &bytes);
        }
        if t.level() > 0 || t.is_partial() {
            self.cache.borrow_mut().insert(*t, bytes.clone());
        }
        Ok(bytes)
    }
}

/// An earlier checkpoint to check against, and where it came from.
struct Earlier {
    what: String,
    checkpoint: Checkpoint,
}

fn load_earlier(
    path: &Path,
    what: &str,
    verifiers: &[Ed25519Verifier],
    origin: &str,
) -> Result<Earlier> {
    let bytes = fs::read(path)
        .with_context(|| format!("reading {what} {}", path.display()))
        .map_err(fetch_err)?;
    let what = format!("{what} {}", path.display());
    let (checkpoint, _) =
        verify_checkpoint(&bytes, verifiers, Some((origin, "the log's checkpoint")), &what)?;
    Ok(Earlier { what, checkpoint })
}

/// Consistency of an earlier checkpoint with the current one, proved from the tiles.
fn check_consistency<S: TileSource>(
    reader: &TileReader<S>,
    earlier: &Earlier,
    current: &Checkpoint,
) -> Result<String> {
    let (m, n) = (earlier.checkpoint.size(), current.size());
    let (r1, r2) = (earlier.checkpoint.root(), current.root());
    if m > n {
        return Err(verify_err(anyhow!(
            "rollback: checkpoint size {n} is smaller than size {m} of {}",
            earlier.what
        )));
    }
    if m == n {
        if r1 != r2 {
            return Err(verify_err(anyhow!(
                "fork: checkpoint and {} both have size {n} but roots {r2} and {r1}",
                earlier.what
            )));
        }
        return Ok(format!("same tree as {}", earlier.what));
    }
    if m == 0 {
        return Ok(format!("extends the empty tree of {}", earlier.what));
    }
    let proof = merkle::consistency_proof(reader, m, n).map_err(|e| {
        fetch_err(anyhow!("computing the consistency proof {m} -> {n} from tiles: {e}"))
    })?;
    merkle::verify_consistency(m, n, &proof, r1, r2).map_err(|e| {
        verify_err(anyhow!(
            "{} (size {m}, root {r1}) is not consistent with the checkpoint (size {n}, root {r2}): \
             {e}",
            earlier.what
        ))
    })?;
    Ok(format!("consistent with {} (size {m}, {} proof hashes)", earlier.what, proof.len()))
}

/// Replaces the state file atomically: temp file in the same directory, fsync, rename.
fn write_state(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().context("state path has no file name")?.to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing state file {}", path.display()))
}

fn verify(args: &VerifyArgs) -> Result<()> {
    let verifiers = load_verifiers(&args.keys)?;
    let fetcher = Fetcher::new(&args.log, Duration::from_secs(args.timeout));

    // 1. The checkpoint.
    let cp_bytes = fetcher.get("checkpoint", MAX_CHECKPOINT_BYTES).map_err(classify)?;
    let what = format!("checkpoint of {}", fetcher.display());
    let (cp, signed_by) = verify_checkpoint(
        &cp_bytes,
        &verifiers,
        args.origin.as_deref().map(|o| (o, "--origin")),
        &what,
    )?;
    let earlier_state = match &args.state {
        Some(p) if p.exists() => Some(load_earlier(p, "state", &verifiers, cp.origin())?),
        _ => None,
    };
    let earlier_prev = match &args.previous {
        Some(p) => Some(load_earlier(p, "previous checkpoint", &verifiers, cp.origin())?),
        None => None,
    };
    // A rollback is refused before any tile is fetched.
    for e in earlier_state.iter().chain(&earlier_prev) {
        if e.checkpoint.size() > cp.size() {
            return Err(verify_err(anyhow!(
                "rollback: checkpoint size {} is smaller than size {} of {}",
                cp.size(),
                e.checkpoint.size(),
                e.what
            )));
        }
    }

    // 2 and 3. Tiles and entry bundles.
    let tiles = LogTiles {
        fetcher: &fetcher,
        cache: RefCell::default(),
        fetch_failure: RefCell::default(),
        fetched: Cell::new(0),
        entries: EntryCheck { required: args.entries, ..EntryCheck::default() },
    };
    let n = cp.size();
    let tile_failure = |e: String| match tiles.fetch_failure.borrow().clone() {
        Some(f @ FetchError::TooLarge { .. }) => verify_err(f),
        Some(f) => fetch_err(anyhow!("fetching tile {f}")),
        None => verify_err(anyhow!("{e}")),
    };
    let reader = TileReader::new(&tiles, n);
    if args.root_only {
        let computed = reader.root().map_err(|e| tile_failure(e.to_string()))?;
        if computed != *cp.root() {
            return Err(verify_err(TileError::RootMismatch {
                tree_size: n,
                computed,
                expected: *cp.root(),
            }));
        }
    } else {
        tile::verify_tiles(&tiles, n, cp.root()).map_err(|e| tile_failure(e.to_string()))?;
    }
    if let Some(f) = tiles.entries.failure.borrow_mut().take() {
        return Err(f);
    }

    // 4. Earlier checkpoints.
    let mut consistency = Vec::new();
    for e in earlier_prev.iter().chain(&earlier_state) {
        consistency.push(check_consistency(&reader, e, &cp)?);
    }
    if let Some(state) = &args.state {
        write_state(state, &cp_bytes).map_err(fetch_err)?;
    }

    let e = &tiles.entries;
    println!("log          {}", fetcher.display());
    println!("origin       {}", cp.origin());
    println!("size         {n}");
    println!("root         {}", cp.root());
    println!("signed by    {}", signed_by.join(", "));
    let scope = if args.root_only { "right-edge tiles" } else { "all tiles" };
    println!(
        "tiles        {} fetched; {scope} of size {n} hash to the root ({} tiles in all)",
        tiles.fetched.get(),
        tile::tile_count(n)
    );
    println!(
        "entries      {} bundles checked, {} entries; {} bundles absent",
        e.bundles.get(),
        e.entries.get(),
        e.absent.get()
    );
    for c in &consistency {
        println!("consistency  {c}");
    }
    if let Some(state) = &args.state {
        println!("state        {} now at size {n}", state.display());
    }
    Ok(())
}
