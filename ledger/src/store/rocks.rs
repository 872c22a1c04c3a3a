//! The RocksDB store (feature `rocks`): the gateway's durable, crash-safe log.
//!
//! # Column families
//!
//! `headers`, `lanes`, `tiles` (tiles and entry bundles), `checkpoints`, `cursors`, `receipts`,
//! `meta`; keys as in the [`super`] module table, big-endian so iteration runs in height order.
//!
//! # Durability
//!
//! An append is one `WriteBatch` (headers, lanes, tiles, bundles, checkpoint, meta `head`)
//! written with `sync = true`: it returns only after the WAL is on disk, and after a crash either
//! all of it or none of it is there. Cursors and receipts are single synced writes.
//!
//! A failed write or fsync is **fatal for the writer**: the store remembers the first error and
//! refuses every later write ([`StoreError::Poisoned`]); the daemon must exit and let systemd
//! restart it, and recovery on open decides what is durable. (After a failed fsync the page
//! cache may hold data that never reaches the disk, so retrying could acknowledge lost data.)
//!
//! # Integrity
//!
//! RocksDB's own checksums are on: `paranoid_checks`, checksum verification on every read, and
//! WAL recovery mode `TolerateCorruptedTailRecords` for read-write opens (a torn, never
//! acknowledged tail record from a crash is dropped; a bad record anywhere else fails the open).
//! [`Mode::Verify`] opens read-only with `AbsoluteConsistency`, so verification never modifies
//! the store and refuses any WAL damage at all.
//!
//! # Concurrent readers
//!
//! One `Rocks` value is the store's single writer (the gateway's store writer thread owns it).
//! [`Rocks::reader`] hands out cheap read handles (`Send + Sync`, one shared RocksDB instance)
//! for the tasks that read while the writer appends: sync agents, the local read API, retention
//! accounting. A reader's [`Store::size`] reads the durable head on every call (never a cached
//! value that could run ahead of disk); it refuses appends, and may write sync cursors and
//! receipts (single synced writes outside the log, owned by one sync agent per ledger).
//!
//! # Pruning and disk usage
//!
//! [`Store::prune_lanes`] deletes the lanes below a height with one range tombstone and writes
//! meta `pruned_below` (and the caller's note) in the same synced batch; then it flushes every
//! column family (so the write-ahead log that still holds the deleted lanes can be dropped) and
//! compacts the deleted key range, so the files that held those lanes are rewritten or deleted
//! and the space is back on the filesystem when it returns. [`Rocks::disk_usage`] measures what
//! the store occupies by walking its directory (see there for why).
//!
//! The WAL is capped at [`MAX_TOTAL_WAL_BYTES`]: RocksDB's default cap (four times the memtable
//! budget of all seven column families, about 3.5 GiB) would let the log alone outgrow a
//! retention quota; past the cap RocksDB flushes the column families holding the oldest log.
//!
//! # Recovery on open
//!
//! [`Rocks::open`] checks that meta `format` and `origin` are ours, then [`super::check_head`]:
//! the head, the tiles and the latest checkpoint agree (size, root recomputed from the tiles,
//! signature with the gateway's public key), the head's header is the last leaf, and nothing is
//! stored past the head. Otherwise the open fails naming the column family, the key and what was
//! expected versus found.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rocksdb::{
    ColumnFamily, DBCompressionType, DBRecoveryMode, Direction, IteratorMode, Options, ReadOptions,
    WriteBatch, WriteOptions, DB,
};

use super::{
    bundle_key, check_append, check_head, check_prune, lane_key, tile_key, Append, Damage, Place,
    Pruned, Store, StoreError, FORMAT,
};
use crate::checkpoint::Checkpoint;
use crate::note::{Ed25519Verifier, Verifier as _};

/// Column families, in the order they are opened.
pub const COLUMN_FAMILIES: [&str; 7] =
    ["headers", "lanes", "tiles", "checkpoints", "cursors", "receipts", "meta"];

/// Cap on the write-ahead log's total size (RocksDB `max_total_wal_size`); see the module docs.
pub const MAX_TOTAL_WAL_BYTES: u64 = 64 << 20;

/// One memtable's size (RocksDB `write_buffer_size`, every column family); all memtables
/// together are capped at twice this (`db_write_buffer_size`). See [`options`].
pub const MEMTABLE_BYTES: usize = 4 << 20;

/// What a store directory occupies on disk, by kind of file (apparent sizes, bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct DiskUsage {
    /// Table files (`*.sst`): live ones and obsolete ones RocksDB has not deleted yet.
    pub sst: u64,
    /// Write-ahead log files (`*.log`).
    pub wal: u64,
    /// `MANIFEST-*` files.
    pub manifest: u64,
    /// Everything else: `OPTIONS-*`, the info `LOG` and its rotated copies, `CURRENT`, `LOCK`.
    pub other: u64,
    /// Files counted.
    pub files: u64,
}

impl DiskUsage {
    pub fn total(&self) -> u64 {
        self.sst + self.wal + self.manifest + self.other
    }
}

/// How to open a store directory.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// Create the store if the directory holds none; otherwise open it read-write.
    CreateOrOpen,
    /// Open an existing store read-write.
    Open,
    /// Open an existing store read-only, with the strictest WAL checks (for verification).
    Verify,
}

/// What a `Rocks` handle may do.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    /// The single writer (opened with `CreateOrOpen` or `Open`).
    Writer,
    /// Opened read-only for verification ([`Mode::Verify`]).
    Verify,
    /// A read handle of a writer's database ([`Rocks::reader`]).
    Reader,
}

/// A gateway store in a RocksDB directory.
pub struct Rocks {
    db: Arc<DB>,
    path: PathBuf,
    origin: String,
    /// The head (log size). The writer's own; a reader refreshes it on every `size()` call and
    /// keeps the last value it read, so a failed read never reports more than was durable.
    size: AtomicU64,
    role: Role,
    /// The first write error; once set, every write is refused.
    poisoned: Option<String>,
    checkpoint: Option<Checkpoint>,
}

impl std::fmt::Debug for Rocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rocks")
            .field("path", &self.path)
            .field("origin", &self.origin)
            .field("size", &self.size)
            .field("role", &self.role)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

fn options(mode: Mode) -> Options {
    let mut o = Options::default();
    o.create_if_missing(mode == Mode::CreateOrOpen);
    o.create_missing_column_families(mode == Mode::CreateOrOpen);
    o.set_paranoid_checks(true);
    o.set_compression_type(DBCompressionType::None);
    o.set_wal_recovery_mode(if mode == Mode::Verify {
        DBRecoveryMode::AbsoluteConsistency
    } else {
        DBRecoveryMode::TolerateCorruptedTailRecords
    });
    o.set_keep_log_file_num(4);
    // RocksDB's info log (`LOG`) grows with every flush and compaction (each prune adds some);
    // rotated at 1 MiB and four kept, it stays bounded inside a retention quota.
    o.set_max_log_file_size(1 << 20);
    o.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES);
    // Memtables are resident memory. RocksDB's default (64 MiB per column family) let a
    // gateway's RSS climb by every block it appended until a flush, far past its 32 MiB budget;
    // appends are synced through the WAL either way, so smaller memtables cost only earlier
    // flushes of already durable data (D252).
    o.set_write_buffer_size(MEMTABLE_BYTES);
    o.set_db_write_buffer_size(2 * MEMTABLE_BYTES);
    // No preallocation: a preallocated WAL block holds disk space its apparent size does not
    // show, so the retention quota (which counts apparent sizes) would undercount what the
    // store takes, and a small disk fills before the quota is reached (D256).
    // (The crate has no setter; the options string is RocksDB's own syntax, checked by the
    // tests on a small tmpfs, `gateway/tests/retention.rs`.)
    match o.get_options_from_string("allow_fallocate=false") {
        Ok(without_fallocate) => without_fallocate,
        Err(_) => o,
    }
}

fn read_opts() -> ReadOptions {
    let mut r = ReadOptions::default();
    r.set_verify_checksums(true);
    r
}

fn u64_key(k: &[u8]) -> Option<u64> {
    k.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes)
}

impl Rocks {
    /// Opens (or creates) the store at `path` for the gateway whose checkpoints `verifier`
    /// checks, running the recovery checks. The origin is the verifier's key name.
    pub fn open(path: &Path, verifier: &Ed25519Verifier, mode: Mode) -> Result<Rocks, StoreError> {
        let open_err =
            |reason: String| StoreError::Open { path: path.display().to_string(), reason };
        let exists = path.join("CURRENT").exists();
        if !exists && mode != Mode::CreateOrOpen {
            return Err(open_err("no RocksDB store here (no CURRENT file)".into()));
        }
        let opts = options(mode);
        let db = if mode == Mode::Verify {
            DB::open_cf_for_read_only(&opts, path, COLUMN_FAMILIES, false)
        } else {
            DB::open_cf(&opts, path, COLUMN_FAMILIES)
        }
        .map_err(|e| open_err(format!("RocksDB refused to open it: {e}")))?;
        let mut s = Rocks {
            db: Arc::new(db),
            path: path.to_owned(),
            origin: verifier.name().to_owned(),
            size: AtomicU64::new(0),
            role: if mode == Mode::Verify { Role::Verify } else { Role::Writer },
            poisoned: None,
            checkpoint: None,
        };
        let format = s.get("meta", b"format")?;
        // A crash while creating the store can leave RocksDB files but none of our keys (the
        // meta batch below is atomic): that is still a fresh store.
        let fresh = format.is_none() && (!exists || s.all_empty()?);
        match format {
            None if fresh && mode == Mode::CreateOrOpen => {
                // A fresh store: record what it is, durably, before anything else.
                let mut b = WriteBatch::default();
                b.put_cf(s.cf("meta")?, b"format", FORMAT);
                b.put_cf(s.cf("meta")?, b"origin", verifier.name().as_bytes());
                b.put_cf(s.cf("meta")?, b"head", 0u64.to_be_bytes());
                s.write(b, Place { cf: "meta", key: "format".into() })?;
            }
            Some(f) if f == FORMAT => {}
            other => {
                return Err(StoreError::Damaged(Damage::new(
                    "meta",
                    "format",
                    format!(
                        "expected {:?}, found {:?}",
                        String::from_utf8_lossy(FORMAT),
                        other.map(|f| String::from_utf8_lossy(&f).into_owned())
                    ),
                )))
            }
        }
        let origin = s.get("meta", b"origin")?.unwrap_or_default();
        if origin != verifier.name().as_bytes() {
            return Err(StoreError::Damaged(Damage::new(
                "meta",
                "origin",
                format!(
                    "store belongs to {:?}, the key is {:?}",
                    String::from_utf8_lossy(&origin),
                    verifier.name()
                ),
            )));
        }
        s.size = AtomicU64::new(s.read_head()?);
        s.checkpoint = check_head(&s, verifier).map_err(StoreError::Damaged)?;
        Ok(s)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A read handle on the same database, for tasks that read while this handle writes.
    /// See the module docs ("Concurrent readers").
    pub fn reader(&self) -> Rocks {
        Rocks {
            db: Arc::clone(&self.db),
            path: self.path.clone(),
            origin: self.origin.clone(),
            size: AtomicU64::new(self.size.load(Ordering::Acquire)),
            role: Role::Reader,
            poisoned: None,
            checkpoint: None,
        }
    }

    /// The durable head from meta `head`.
    fn read_head(&self) -> Result<u64, StoreError> {
        let head = self.get("meta", b"head")?;
        match head.as_deref().map(<[u8; 8]>::try_from) {
            Some(Ok(b)) => Ok(u64::from_be_bytes(b)),
            _ => Err(StoreError::Damaged(Damage::new(
                "meta",
                "head",
                format!("expected 8 bytes, found {:?}", head.as_ref().map(Vec::len)),
            ))),
        }
    }

    /// Meta `pruned_below` (0 when absent: nothing pruned).
    fn read_pruned_below(&self) -> Result<u64, StoreError> {
        match self.get("meta", b"pruned_below")? {
            None => Ok(0),
            Some(v) => match <[u8; 8]>::try_from(v.as_slice()) {
                Ok(b) => Ok(u64::from_be_bytes(b)),
                Err(_) => Err(StoreError::Damaged(Damage::new(
                    "meta",
                    "pruned_below",
                    format!("expected 8 bytes, found {}", v.len()),
                ))),
            },
        }
    }

    /// What the store directory occupies: the sum of the apparent sizes of every file in it,
    /// by kind.
    ///
    /// Measured by walking the directory rather than through RocksDB's properties because the
    /// quota protects the filesystem, and only the directory holds everything that fills it:
    /// `rocksdb.live-sst-files-size` leaves out the WAL (no property reports its size), obsolete
    /// table files not yet deleted, MANIFESTs and info logs. One `readdir` and a `stat` per file
    /// (a few dozen files): the retention check runs it after every append, and the metrics
    /// endpoint serves the last value. Apparent sizes, not allocated blocks: RocksDB preallocates
    /// WAL space (up to [`MAX_TOTAL_WAL_BYTES`]) that is returned when the log is closed, and
    /// counting it would make small quotas meaningless. A file deleted between `readdir` and
    /// `stat` (RocksDB purging obsolete files) is skipped.
    pub fn disk_usage(&self) -> Result<DiskUsage, StoreError> {
        let err = |reason: String| StoreError::Read {
            place: Place { cf: "meta", key: format!("disk usage of {}", self.path.display()) },
            reason,
        };
        let mut u = DiskUsage::default();
        for entry in std::fs::read_dir(&self.path).map_err(|e| err(e.to_string()))? {
            let entry = entry.map_err(|e| err(e.to_string()))?;
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(err(format!("{}: {e}", entry.path().display()))),
            };
            if !meta.is_file() {
                continue;
            }
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let slot = if name.ends_with(".sst") {
                &mut u.sst
            } else if name.ends_with(".log") {
                &mut u.wal
            } else if name.starts_with("MANIFEST-") {
                &mut u.manifest
            } else {
                &mut u.other
            };
            *slot += meta.len();
            u.files += 1;
        }
        Ok(u)
    }

    /// The verified checkpoint of the head at open (None for an empty log, and for readers).
    pub fn head_checkpoint(&self) -> Option<&Checkpoint> {
        self.checkpoint.as_ref()
    }

    /// Forces memtables into SST files (tests and tools; appends never need it).
    pub fn flush(&self) -> Result<(), StoreError> {
        for name in COLUMN_FAMILIES {
            self.db.flush_cf(self.cf(name)?).map_err(|e| StoreError::Io {
                place: Place { cf: name, key: "flush".into() },
                reason: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// Writes one raw value, bypassing the log (for damage tests and repair tools only).
    #[doc(hidden)]
    pub fn put_raw_for_test(
        &self,
        cf: &'static str,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), StoreError> {
        let mut w = WriteOptions::default();
        w.set_sync(true);
        self.db.put_cf_opt(self.cf(cf)?, key, value, &w).map_err(|e| StoreError::Io {
            place: Place { cf, key: format!("{key:02x?}") },
            reason: e.to_string(),
        })
    }

    /// Deletes one raw key, bypassing the log (for damage tests only).
    #[doc(hidden)]
    pub fn delete_raw_for_test(&self, cf: &'static str, key: &[u8]) -> Result<(), StoreError> {
        let mut w = WriteOptions::default();
        w.set_sync(true);
        self.db.delete_cf_opt(self.cf(cf)?, key, &w).map_err(|e| StoreError::Io {
            place: Place { cf, key: format!("{key:02x?}") },
            reason: e.to_string(),
        })
    }

    /// Whether an earlier write failed (the store then refuses writes).
    pub fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    fn cf(&self, name: &'static str) -> Result<&ColumnFamily, StoreError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StoreError::Damaged(Damage::new(name, "", "column family missing")))
    }

    fn get(&self, cf: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_named(cf, key, || String::from_utf8_lossy(key).into_owned())
    }

    fn get_named(
        &self,
        cf: &'static str,
        key: &[u8],
        name: impl Fn() -> String,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get_cf_opt(self.cf(cf)?, key, &read_opts()).map_err(|e| StoreError::Read {
            place: Place { cf, key: name() },
            reason: e.to_string(),
        })
    }

    fn all_empty(&self) -> Result<bool, StoreError> {
        for name in COLUMN_FAMILIES {
            if self.last_key(name)?.is_some() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Last key of a column family.
    fn last_key(&self, cf: &'static str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut it = self.db.iterator_cf_opt(self.cf(cf)?, read_opts(), IteratorMode::End);
        match it.next() {
            Some(Ok((k, _))) => Ok(Some(k.into_vec())),
            Some(Err(e)) => Err(StoreError::Read {
                place: Place { cf, key: "last".into() },
                reason: e.to_string(),
            }),
            None => Ok(None),
        }
    }

    /// Cursors and receipts: the writer and readers may write them, a verifying open may not.
    fn check_writable(&self) -> Result<(), StoreError> {
        if let Some(first) = &self.poisoned {
            return Err(StoreError::Poisoned { first: first.clone() });
        }
        if self.role == Role::Verify {
            return Err(StoreError::Open {
                path: self.path.display().to_string(),
                reason: "opened read-only for verification".into(),
            });
        }
        Ok(())
    }

    /// One synced batch; any error poisons the store.
    fn write(&mut self, batch: WriteBatch, place: Place) -> Result<(), StoreError> {
        self.check_writable()?;
        let mut w = WriteOptions::default();
        w.set_sync(true);
        if let Err(e) = self.db.write_opt(batch, &w) {
            let err = StoreError::Io { place, reason: e.to_string() };
            self.poisoned = Some(err.to_string());
            return Err(err);
        }
        Ok(())
    }
}

impl Store for Rocks {
    fn size(&self) -> u64 {
        if self.role == Role::Reader {
            if let Ok(head) = self.read_head() {
                self.size.store(head, Ordering::Release);
            }
        }
        self.size.load(Ordering::Acquire)
    }
    fn origin(&self) -> &str {
        &self.origin
    }

    fn append(&mut self, a: &Append) -> Result<(), StoreError> {
        self.check_writable()?;
        if self.role == Role::Reader {
            return Err(StoreError::Open {
                path: self.path.display().to_string(),
                reason: "a read handle cannot append (appends go through the store's writer)"
                    .into(),
            });
        }
        check_append(*self.size.get_mut(), a)?;
        let mut b = WriteBatch::default();
        let (headers, lanes, tiles) = (self.cf("headers")?, self.cf("lanes")?, self.cf("tiles")?);
        for (height, block) in (a.log.old_size..).zip(&a.blocks) {
            b.put_cf(headers, height.to_be_bytes(), &block.header);
            for (i, lane) in (0u16..).zip(&block.lanes) {
                b.put_cf(lanes, lane_key(height, i), lane);
            }
        }
        for (t, bytes) in &a.log.tiles {
            b.put_cf(tiles, tile_key(t.level(), t.index()), bytes);
        }
        for (t, bytes) in &a.log.bundles {
            b.put_cf(tiles, bundle_key(t.index()), bytes);
        }
        b.put_cf(
            self.cf("checkpoints")?,
            a.log.new_size.to_be_bytes(),
            a.log.checkpoint.to_bytes(),
        );
        b.put_cf(self.cf("meta")?, b"head", a.log.new_size.to_be_bytes());
        self.write(
            b,
            Place { cf: "headers", key: format!("heights {}..{}", a.log.old_size, a.log.new_size) },
        )?;
        *self.size.get_mut() = a.log.new_size;
        self.checkpoint = Some(a.log.checkpoint.checkpoint().clone());
        Ok(())
    }

    fn header(&self, height: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_named("headers", &height.to_be_bytes(), || super::height_key(height))
    }
    fn lane(&self, height: u64, lane: u16) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_named("lanes", &lane_key(height, lane), || format!("height {height} lane {lane}"))
    }
    fn lanes(&self, height: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        let prefix = height.to_be_bytes();
        let mut out = Vec::new();
        let mode = IteratorMode::From(&prefix, Direction::Forward);
        for item in self.db.iterator_cf_opt(self.cf("lanes")?, read_opts(), mode) {
            let (k, v) = item.map_err(|e| StoreError::Read {
                place: Place { cf: "lanes", key: super::height_key(height) },
                reason: e.to_string(),
            })?;
            if !k.starts_with(&prefix) {
                break;
            }
            let want = u16::try_from(out.len()).unwrap_or(u16::MAX);
            if k.len() != 10 || k[8..] != want.to_be_bytes() {
                return Err(StoreError::Damaged(Damage::new(
                    "lanes",
                    format!("height {height} lane {}", out.len()),
                    format!("expected key for lane {want}, found key {:02x?}", &k[..]),
                )));
            }
            out.push(v.into_vec());
        }
        Ok(out)
    }
    fn tile(&self, level: u8, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_named("tiles", &tile_key(level, index), || {
            format!("tile/{level}/{}", crate::tile::encode_index(index))
        })
    }
    fn bundle(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_named("tiles", &bundle_key(index), || {
            format!("tile/entries/{}", crate::tile::encode_index(index))
        })
    }
    fn checkpoint(&self) -> Result<Option<Vec<u8>>, StoreError> {
        match self.last_checkpoint_size()? {
            Some(s) => self.checkpoint_at(s),
            None => Ok(None),
        }
    }
    fn checkpoint_at(&self, size: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_named("checkpoints", &size.to_be_bytes(), || format!("size {size}"))
    }
    fn last_checkpoint_size(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.last_key("checkpoints")?.as_deref().and_then(u64_key))
    }
    fn checkpoint_sizes(&self) -> Result<Vec<u64>, StoreError> {
        let mut out = Vec::new();
        for item in
            self.db.iterator_cf_opt(self.cf("checkpoints")?, read_opts(), IteratorMode::Start)
        {
            let (k, _) = item.map_err(|e| StoreError::Read {
                place: Place { cf: "checkpoints", key: "all".into() },
                reason: e.to_string(),
            })?;
            out.push(u64_key(&k).ok_or_else(|| {
                StoreError::Damaged(Damage::new(
                    "checkpoints",
                    format!("{:02x?}", &k[..]),
                    "key is not 8 bytes",
                ))
            })?);
        }
        Ok(out)
    }
    fn last_heights(&self) -> Result<(Option<u64>, Option<u64>), StoreError> {
        let h = self.last_key("headers")?.as_deref().and_then(u64_key);
        let l = self.last_key("lanes")?.as_deref().and_then(u64_key);
        Ok((h, l))
    }

    fn scan_all(&self) -> Vec<Damage> {
        let mut out = Vec::new();
        for name in COLUMN_FAMILIES {
            let cf = match self.cf(name) {
                Ok(cf) => cf,
                Err(e) => {
                    out.push(Damage::new(name, "", e.to_string()));
                    continue;
                }
            };
            let mut last: Option<Box<[u8]>> = None;
            for item in self.db.iterator_cf_opt(cf, read_opts(), IteratorMode::Start) {
                match item {
                    Ok((k, _)) => last = Some(k),
                    Err(e) => {
                        let after = last
                            .as_ref()
                            .map_or("start".to_owned(), |k| format!("after key {k:02x?}"));
                        out.push(Damage::new(name, after, format!("full scan: {e}")));
                        break;
                    }
                }
            }
        }
        out
    }

    fn pruned_below(&self) -> Result<u64, StoreError> {
        self.read_pruned_below()
    }

    fn prune_lanes(&mut self, below: u64, note: Option<&[u8]>) -> Result<Pruned, StoreError> {
        self.check_writable()?;
        if self.role != Role::Writer {
            return Err(StoreError::Open {
                path: self.path.display().to_string(),
                reason: "only the store's writer prunes (a read handle cannot)".into(),
            });
        }
        let head = *self.size.get_mut();
        let current = self.read_pruned_below()?;
        let Some(from) = check_prune(head, current, below)? else {
            return Ok(Pruned { from: current, below: current });
        };
        // From height 0, not `from`: one tombstone over everything below, strays included.
        let (start, end) = (lane_key(0, 0), lane_key(below, 0));
        let mut b = WriteBatch::default();
        b.delete_range_cf(self.cf("lanes")?, start, end);
        b.put_cf(self.cf("meta")?, b"pruned_below", below.to_be_bytes());
        if let Some(n) = note {
            b.put_cf(self.cf("meta")?, b"prune_note", n);
        }
        let place = Place { cf: "lanes", key: format!("pruning heights {from}..{below}") };
        self.write(b, place.clone())?;
        // Return the space: the deleted lanes live in memtables + WAL and in table files.
        // Flushing every column family lets RocksDB drop the WAL files; compacting the range
        // rewrites (or drops) the table files holding it. A failed flush is an I/O failure.
        for name in COLUMN_FAMILIES {
            if let Err(e) = self.db.flush_cf(self.cf(name)?) {
                let err = StoreError::Io {
                    place: Place { cf: name, key: format!("flush after {}", place.key) },
                    reason: e.to_string(),
                };
                self.poisoned = Some(err.to_string());
                return Err(err);
            }
        }
        self.db.compact_range_cf(self.cf("lanes")?, Some(start), Some(end));
        Ok(Pruned { from, below })
    }

    fn prune_note(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.get("meta", b"prune_note")
    }

    fn usage_bytes(&self) -> Result<Option<u64>, StoreError> {
        self.disk_usage().map(|u| Some(u.total()))
    }

    fn cursor(&self, ledger: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_named("cursors", ledger.as_bytes(), || ledger.to_owned())
    }
    fn set_cursor(&mut self, ledger: &str, value: &[u8]) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        b.put_cf(self.cf("cursors")?, ledger.as_bytes(), value);
        self.write(b, Place { cf: "cursors", key: ledger.to_owned() })
    }
    fn receipt(&self, ledger: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_named("receipts", ledger.as_bytes(), || ledger.to_owned())
    }
    fn set_receipt(&mut self, ledger: &str, value: &[u8]) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        b.put_cf(self.cf("receipts")?, ledger.as_bytes(), value);
        self.write(b, Place { cf: "receipts", key: ledger.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::Ed25519Signer;
    use crate::store::{append_blocks, testing};
    use ed25519_dalek::SigningKey;

    fn signer() -> Ed25519Signer {
        Ed25519Signer::new("iov.example/gw/rocks", SigningKey::from_bytes(&[3; 32])).unwrap()
    }

    fn lanes(h: u64) -> Vec<Vec<u8>> {
        vec![vec![h as u8; 100]; 3]
    }

    /// Appends `n` chained blocks in one batch.
    fn add(st: &mut Rocks, s: &Ed25519Signer, n: u64) {
        let gw = s.verifier().public_key().to_bytes();
        let blocks = testing::next_blocks(st, gw, n, lanes).unwrap();
        append_blocks(st, s, blocks).unwrap();
    }

    #[test]
    fn appends_survive_reopen_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let s = signer();
        let v = s.verifier();
        {
            let mut st = Rocks::open(dir.path(), &v, Mode::CreateOrOpen).unwrap();
            for _ in 0..300 {
                add(&mut st, &s, 1);
            }
            st.set_cursor("factory", b"cursor-1").unwrap();
            st.set_receipt("city", b"receipt").unwrap();
        }
        let st = Rocks::open(dir.path(), &v, Mode::Open).unwrap();
        assert_eq!(st.size(), 300);
        let head =
            crate::block::BlockHeader::from_bytes(&st.header(299).unwrap().unwrap()).unwrap();
        assert_eq!(head.height, 299);
        assert_eq!(st.lanes(7).unwrap(), lanes(7));
        assert_eq!(st.cursor("factory").unwrap().unwrap(), b"cursor-1");
        assert_eq!(st.receipt("city").unwrap().unwrap(), b"receipt");
        let sum = crate::verify_store::verify(&st, &v).unwrap();
        assert_eq!((sum.blocks, sum.lanes, sum.checkpoints), (300, 900, 300));
        drop(st);
        let ro = Rocks::open(dir.path(), &v, Mode::Verify).unwrap();
        assert!(matches!(ro.checkpoint(), Ok(Some(_))));
    }

    #[test]
    fn open_with_another_gateways_key_names_the_origin() {
        let dir = tempfile::tempdir().unwrap();
        let s = signer();
        let mut st = Rocks::open(dir.path(), &s.verifier(), Mode::CreateOrOpen).unwrap();
        add(&mut st, &s, 1);
        drop(st);
        let other =
            Ed25519Signer::new("iov.example/gw/other", SigningKey::from_bytes(&[4; 32])).unwrap();
        let err = Rocks::open(dir.path(), &other.verifier(), Mode::Open).unwrap_err();
        assert!(err.to_string().contains("meta[origin]: store belongs to"), "{err}");
        let same_name =
            Ed25519Signer::new("iov.example/gw/rocks", SigningKey::from_bytes(&[5; 32])).unwrap();
        let err = Rocks::open(dir.path(), &same_name.verifier(), Mode::Open).unwrap_err();
        assert!(err.to_string().contains("checkpoints[size 1]: signature"), "{err}");
    }

    #[test]
    fn a_head_rolled_forward_without_its_batch_fails_open_naming_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let s = signer();
        let mut st = Rocks::open(dir.path(), &s.verifier(), Mode::CreateOrOpen).unwrap();
        add(&mut st, &s, 5);
        st.put_raw_for_test("meta", b"head", &6u64.to_be_bytes()).unwrap();
        drop(st);
        let err = Rocks::open(dir.path(), &s.verifier(), Mode::Open).unwrap_err();
        assert!(
            err.to_string()
                .contains("checkpoints[size 5]: latest checkpoint is for size 5, meta head is 6"),
            "{err}"
        );
    }

    #[test]
    fn a_store_whose_creation_was_interrupted_is_created_again_but_not_opened_as_is() {
        let dir = tempfile::tempdir().unwrap();
        // RocksDB files exist, none of our keys do (a crash before the meta batch).
        drop(DB::open_cf(&options(Mode::CreateOrOpen), dir.path(), COLUMN_FAMILIES).unwrap());
        let s = signer();
        let err = Rocks::open(dir.path(), &s.verifier(), Mode::Open).unwrap_err();
        assert!(err.to_string().contains("meta[format]: expected"), "{err}");
        let mut st = Rocks::open(dir.path(), &s.verifier(), Mode::CreateOrOpen).unwrap();
        assert_eq!(st.size(), 0);
        add(&mut st, &s, 2);
        assert_eq!(st.size(), 2);
    }

    #[test]
    fn a_reader_sees_each_durable_head_refuses_appends_and_writes_cursors() {
        let dir = tempfile::tempdir().unwrap();
        let s = signer();
        let mut st = Rocks::open(dir.path(), &s.verifier(), Mode::CreateOrOpen).unwrap();
        add(&mut st, &s, 2);
        let mut reader = st.reader();
        let seen = std::thread::spawn(move || {
            let size = reader.size();
            reader.set_cursor("factory", b"acked 2").unwrap();
            let gw = signer().verifier().public_key().to_bytes();
            let blocks = testing::chain(gw, size, None, 1, lanes);
            let err = append_blocks(&mut reader, &signer(), blocks).unwrap_err();
            assert!(err.to_string().contains("read handle cannot append"), "{err}");
            reader
        })
        .join()
        .unwrap();
        assert_eq!(seen.size(), 2);
        add(&mut st, &s, 3);
        assert_eq!(seen.size(), 5);
        assert_eq!(seen.lanes(4).unwrap(), lanes(4));
        assert_eq!(st.cursor("factory").unwrap().unwrap(), b"acked 2");
        drop(st);
        // The reader keeps the database open after the writer is gone.
        assert_eq!(seen.size(), 5);
    }

    #[test]
    fn a_read_only_store_refuses_appends() {
        let dir = tempfile::tempdir().unwrap();
        let s = signer();
        drop(Rocks::open(dir.path(), &s.verifier(), Mode::CreateOrOpen).unwrap());
        let mut ro = Rocks::open(dir.path(), &s.verifier(), Mode::Verify).unwrap();
        let gw = s.verifier().public_key().to_bytes();
        let blocks = testing::chain(gw, 0, None, 1, lanes);
        let err = append_blocks(&mut ro, &s, blocks).unwrap_err();
        assert!(err.to_string().contains("read-only"), "{err}");
    }
}
