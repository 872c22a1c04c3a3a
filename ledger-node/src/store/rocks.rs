//! RocksDB backend of [`LedgerStore`]: one database for the node, one column family per kind of
//! record, keys prefixed by `origin || 0x00` (origins are checkpoint origins: no control
//! characters, so no NUL) so one gateway's records are contiguous and in height order.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `meta` | `format` | `iov-ledger-store/v1` |
//! | `meta` | `aggregate/size`, `aggregate/checkpoint` | aggregate log size u64be, its latest signed checkpoint |
//! | `enroll` | origin | CBOR [`Enrollment`] |
//! | `witness` | origin | latest cosigned checkpoint note |
//! | `cosigned` | origin, 0, size u64be | cosigned checkpoint note of that size |
//! | `mirror` | origin | mirrored size u64be |
//! | `headers` | origin, 0, height u64be | header bytes |
//! | `lanes` | origin, 0, height u64be, lane u16be | lane ciphertext |
//! | `blockmeta` | origin, 0, height u64be | CBOR [`BlockMeta`] |
//! | `tiles` | origin, 0, level u8, index u64be | tile contents; level `0xff`: entry bundle (origin `\x01aggregate`: the aggregate log's) |
//! | `evidence` | origin, 0, seq u64be | CBOR [`Evidence`] |
//! | `times` | origin, 0, last_ns u64be, height u64be | first_ns u64be (the time index) |
//!
//! Writes go through one mutex (the compare-and-sets need it; the node's write rate is bounded
//! by fsyncs anyway) as synced `WriteBatch`es. A failed write poisons the store.

use std::path::Path;
use std::sync::Mutex;

use rocksdb::{
    ColumnFamily, DBCompressionType, Direction, IteratorMode, Options, ReadOptions, WriteBatch,
    WriteOptions, DB,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{
    BlockMeta, Cas, Enrollment, Evidence, LedgerStore, LogAppend, MirrorAppend, StoreError,
    AGGREGATE,
};

const FORMAT: &[u8] = b"iov-ledger-store/v1";
const CFS: &[&str] = &[
    "meta",
    "enroll",
    "witness",
    "cosigned",
    "mirror",
    "headers",
    "lanes",
    "blockmeta",
    "tiles",
    "evidence",
    "times",
];
const BUNDLE_LEVEL: u8 = 0xff;

/// A key suffix (after the scanned prefix) and its value.
type KeyValue = (Vec<u8>, Vec<u8>);

/// The node's RocksDB store.
pub struct Rocks {
    db: DB,
    path: String,
    /// Serialises writers; holds the first write error (then every write is refused).
    write: Mutex<Option<String>>,
}

impl std::fmt::Debug for Rocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rocks").field("path", &self.path).finish()
    }
}

fn prefix(origin: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(origin.len() + 1 + 10);
    k.extend_from_slice(origin.as_bytes());
    k.push(0);
    k
}

fn key_u64(origin: &str, n: u64) -> Vec<u8> {
    let mut k = prefix(origin);
    k.extend_from_slice(&n.to_be_bytes());
    k
}

fn lane_key(origin: &str, height: u64, lane: u16) -> Vec<u8> {
    let mut k = key_u64(origin, height);
    k.extend_from_slice(&lane.to_be_bytes());
    k
}

fn tile_key(origin: &str, level: u8, index: u64) -> Vec<u8> {
    let mut k = prefix(origin);
    k.push(level);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

fn cbor<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    // Serialising our own plain structs into a Vec cannot fail.
    if ciborium::ser::into_writer(v, &mut out).is_err() {
        out.clear();
    }
    out
}

fn uncbor<T: DeserializeOwned>(what: &str, b: &[u8]) -> Result<T, StoreError> {
    ciborium::de::from_reader(b)
        .map_err(|e| StoreError::Corrupt { what: what.to_owned(), reason: e.to_string() })
}

fn u64_value(what: &str, b: &[u8]) -> Result<u64, StoreError> {
    let a: [u8; 8] = b.try_into().map_err(|_| StoreError::Corrupt {
        what: what.to_owned(),
        reason: format!("{} bytes, want 8", b.len()),
    })?;
    Ok(u64::from_be_bytes(a))
}

impl Rocks {
    /// Opens or creates the store at `path`.
    pub fn open(path: &Path) -> Result<Rocks, StoreError> {
        let open_err =
            |reason: String| StoreError::Open { path: path.display().to_string(), reason };
        let mut o = Options::default();
        o.create_if_missing(true);
        o.create_missing_column_families(true);
        o.set_paranoid_checks(true);
        o.set_compression_type(DBCompressionType::None);
        o.set_wal_recovery_mode(rocksdb::DBRecoveryMode::TolerateCorruptedTailRecords);
        o.set_keep_log_file_num(4);
        let db = DB::open_cf(&o, path, CFS)
            .map_err(|e| open_err(format!("RocksDB refused to open it: {e}")))?;
        let s = Rocks { db, path: path.display().to_string(), write: Mutex::new(None) };
        match s.get("meta", b"format")? {
            None => {
                let mut b = WriteBatch::default();
                b.put_cf(s.cf("meta")?, b"format", FORMAT);
                s.commit(b, "meta/format")?;
            }
            Some(f) if f == FORMAT => {}
            Some(f) => {
                return Err(open_err(format!(
                    "format is {:?}, this build reads {:?}",
                    String::from_utf8_lossy(&f),
                    String::from_utf8_lossy(FORMAT)
                )))
            }
        }
        Ok(s)
    }

    fn cf(&self, name: &str) -> Result<&ColumnFamily, StoreError> {
        self.db.cf_handle(name).ok_or_else(|| StoreError::Open {
            path: self.path.clone(),
            reason: format!("column family {name} is missing"),
        })
    }

    fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let mut r = ReadOptions::default();
        r.set_verify_checksums(true);
        self.db.get_cf_opt(self.cf(cf)?, key, &r).map_err(|e| StoreError::Read {
            what: format!("{cf}[{}]", show(key)),
            reason: e.to_string(),
        })
    }

    /// Every `(key suffix, value)` under `prefix` in `cf`, in key order.
    fn scan(&self, cf: &str, pre: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        let mut r = ReadOptions::default();
        r.set_verify_checksums(true);
        let it =
            self.db.iterator_cf_opt(self.cf(cf)?, r, IteratorMode::From(pre, Direction::Forward));
        let mut out = Vec::new();
        for item in it {
            let (k, v) = item.map_err(|e| StoreError::Read {
                what: format!("{cf}[{}..]", show(pre)),
                reason: e.to_string(),
            })?;
            if !k.starts_with(pre) {
                break;
            }
            out.push((k[pre.len()..].to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// The last key under `pre` in `cf`, if any.
    fn last_under(&self, cf: &str, pre: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let mut end = pre.to_vec();
        // Keys under `pre` are < pre with its last byte + 1 (the prefix ends in 0x00).
        if let Some(b) = end.last_mut() {
            *b = b.saturating_add(1);
        }
        let mut r = ReadOptions::default();
        r.set_verify_checksums(true);
        let mut it =
            self.db.iterator_cf_opt(self.cf(cf)?, r, IteratorMode::From(&end, Direction::Reverse));
        match it.next() {
            Some(Ok((k, _))) if k.starts_with(pre) => Ok(Some(k[pre.len()..].to_vec())),
            Some(Ok(_)) | None => Ok(None),
            Some(Err(e)) => {
                Err(StoreError::Read { what: format!("{cf} last"), reason: e.to_string() })
            }
        }
    }

    /// One synced batch under the write lock the caller holds (or takes here).
    fn commit(&self, batch: WriteBatch, what: &str) -> Result<(), StoreError> {
        let mut guard = self.write.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.commit_locked(&mut guard, batch, what)
    }

    fn commit_locked(
        &self,
        poisoned: &mut Option<String>,
        batch: WriteBatch,
        what: &str,
    ) -> Result<(), StoreError> {
        if let Some(first) = poisoned.as_ref() {
            return Err(StoreError::Poisoned { first: first.clone() });
        }
        let mut w = WriteOptions::default();
        w.set_sync(true);
        self.db.write_opt(batch, &w).map_err(|e| {
            let err = StoreError::Io { what: what.to_owned(), reason: e.to_string() };
            *poisoned = Some(err.to_string());
            err
        })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Option<String>>, StoreError> {
        let g = self.write.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(first) = g.as_ref() {
            return Err(StoreError::Poisoned { first: first.clone() });
        }
        Ok(g)
    }

    fn has_state(&self, origin: &str) -> Result<bool, StoreError> {
        Ok(self.get("witness", origin.as_bytes())?.is_some()
            || self.get("mirror", origin.as_bytes())?.is_some())
    }
}

fn show(key: &[u8]) -> String {
    String::from_utf8_lossy(key).replace('\0', "/")
}

impl LedgerStore for Rocks {
    fn put_enrollment(&self, e: &Enrollment) -> Result<(), StoreError> {
        let mut g = self.lock()?;
        if let Some(old) = self.enrollment(&e.origin)? {
            if old.vkey != e.vkey && self.has_state(&e.origin)? {
                return Err(StoreError::KeyChange {
                    origin: e.origin.clone(),
                    existing: old.vkey,
                    new: e.vkey.clone(),
                });
            }
        }
        let mut b = WriteBatch::default();
        b.put_cf(self.cf("enroll")?, e.origin.as_bytes(), cbor(e));
        self.commit_locked(&mut g, b, "enroll")
    }

    fn enrollment(&self, origin: &str) -> Result<Option<Enrollment>, StoreError> {
        self.get("enroll", origin.as_bytes())?
            .map(|b| uncbor(&format!("enroll[{origin}]"), &b))
            .transpose()
    }

    fn enrollments(&self) -> Result<Vec<Enrollment>, StoreError> {
        self.scan("enroll", b"")?
            .iter()
            .map(|(k, v)| uncbor(&format!("enroll[{}]", show(k)), v))
            .collect()
    }

    fn witnessed(&self, origin: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get("witness", origin.as_bytes())
    }

    fn witnessed_at(&self, origin: &str, size: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.get("cosigned", &key_u64(origin, size))
    }

    fn witnessed_at_or_below(
        &self,
        origin: &str,
        max_size: u64,
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let pre = prefix(origin);
        let from = key_u64(origin, max_size);
        let mut r = ReadOptions::default();
        r.set_verify_checksums(true);
        let mut it = self.db.iterator_cf_opt(
            self.cf("cosigned")?,
            r,
            IteratorMode::From(&from, Direction::Reverse),
        );
        match it.next() {
            Some(Ok((k, v))) if k.starts_with(&pre) => {
                Ok(Some((u64_value("cosigned key", &k[pre.len()..])?, v.to_vec())))
            }
            Some(Ok(_)) | None => Ok(None),
            Some(Err(e)) => {
                Err(StoreError::Read { what: format!("cosigned[{origin}]"), reason: e.to_string() })
            }
        }
    }

    fn cas_witnessed(
        &self,
        origin: &str,
        expected: u64,
        size: u64,
        note: &[u8],
        aggregate: Option<&LogAppend>,
    ) -> Result<Cas, StoreError> {
        let mut g = self.lock()?;
        let latest = match self.get("witness", origin.as_bytes())? {
            None => 0,
            Some(n) => note_size(origin, &n)?,
        };
        if latest != expected {
            return Ok(Cas::Conflict { latest });
        }
        let mut b = WriteBatch::default();
        b.put_cf(self.cf("witness")?, origin.as_bytes(), note);
        b.put_cf(self.cf("cosigned")?, key_u64(origin, size), note);
        if let Some(a) = aggregate {
            let found = self.aggregate_size()?;
            if found != a.old_size {
                return Err(StoreError::HeadMoved {
                    origin: "(aggregate log)".into(),
                    expected: a.old_size,
                    found,
                });
            }
            let tiles = self.cf("tiles")?;
            for ((level, index), t) in &a.tiles {
                b.put_cf(tiles, tile_key(AGGREGATE, *level, *index), t);
            }
            for (index, t) in &a.bundles {
                b.put_cf(tiles, tile_key(AGGREGATE, BUNDLE_LEVEL, *index), t);
            }
            let meta = self.cf("meta")?;
            b.put_cf(meta, b"aggregate/size", a.new_size.to_be_bytes());
            b.put_cf(meta, b"aggregate/checkpoint", &a.checkpoint);
        }
        self.commit_locked(&mut g, b, &format!("witness[{origin}]"))?;
        Ok(Cas::Stored)
    }

    fn aggregate_size(&self) -> Result<u64, StoreError> {
        match self.get("meta", b"aggregate/size")? {
            None => Ok(0),
            Some(b) => u64_value("meta[aggregate/size]", &b),
        }
    }

    fn aggregate_checkpoint(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.get("meta", b"aggregate/checkpoint")
    }

    fn mirrored(&self, origin: &str) -> Result<u64, StoreError> {
        match self.get("mirror", origin.as_bytes())? {
            None => Ok(0),
            Some(b) => u64_value(&format!("mirror[{origin}]"), &b),
        }
    }

    fn header(&self, origin: &str, height: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.get("headers", &key_u64(origin, height))
    }

    fn lanes(&self, origin: &str, height: u64) -> Result<Vec<(u16, Vec<u8>)>, StoreError> {
        self.scan("lanes", &key_u64(origin, height))?
            .into_iter()
            .map(|(k, v)| {
                let idx: [u8; 2] = k.as_slice().try_into().map_err(|_| StoreError::Corrupt {
                    what: format!("lanes[{origin}/{height}]"),
                    reason: "lane key suffix is not 2 bytes".into(),
                })?;
                Ok((u16::from_be_bytes(idx), v))
            })
            .collect()
    }

    fn block_meta(&self, origin: &str, height: u64) -> Result<Option<BlockMeta>, StoreError> {
        self.get("blockmeta", &key_u64(origin, height))?
            .map(|b| uncbor(&format!("blockmeta[{origin}/{height}]"), &b))
            .transpose()
    }

    fn tile(&self, origin: &str, level: u8, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.get("tiles", &tile_key(origin, level, index))
    }

    fn bundle(&self, origin: &str, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.get("tiles", &tile_key(origin, BUNDLE_LEVEL, index))
    }

    fn append_mirror(&self, origin: &str, a: &MirrorAppend) -> Result<(), StoreError> {
        let mut g = self.lock()?;
        let found = self.mirrored(origin)?;
        if found != a.old_size {
            return Err(StoreError::HeadMoved {
                origin: origin.to_owned(),
                expected: a.old_size,
                found,
            });
        }
        let mut b = WriteBatch::default();
        let (headers, lanes, meta, tiles) =
            (self.cf("headers")?, self.cf("lanes")?, self.cf("blockmeta")?, self.cf("tiles")?);
        let times = self.cf("times")?;
        for blk in &a.blocks {
            b.put_cf(headers, key_u64(origin, blk.height), &blk.header);
            for (i, l) in &blk.lanes {
                b.put_cf(lanes, lane_key(origin, blk.height, *i), l);
            }
            b.put_cf(meta, key_u64(origin, blk.height), cbor(&blk.meta));
            let mut tk = key_u64(origin, blk.last_ns);
            tk.extend_from_slice(&blk.height.to_be_bytes());
            b.put_cf(times, tk, blk.first_ns.to_be_bytes());
        }
        for ((level, index), t) in &a.tiles {
            b.put_cf(tiles, tile_key(origin, *level, *index), t);
        }
        for (index, t) in &a.bundles {
            b.put_cf(tiles, tile_key(origin, BUNDLE_LEVEL, *index), t);
        }
        b.put_cf(self.cf("mirror")?, origin.as_bytes(), a.new_size.to_be_bytes());
        self.commit_locked(&mut g, b, &format!("mirror[{origin}] {}..{}", a.old_size, a.new_size))
    }

    fn heights_between(
        &self,
        origin: &str,
        since_ns: u64,
        until_ns: u64,
        max_scan: usize,
    ) -> Result<Option<(u64, u64)>, StoreError> {
        // Index order is last_ns: start at the first block that ends at or after `since_ns`;
        // those that also start before `until_ns` overlap.
        let pre = prefix(origin);
        let from = key_u64(origin, since_ns);
        let mut r = ReadOptions::default();
        r.set_verify_checksums(true);
        let it = self.db.iterator_cf_opt(
            self.cf("times")?,
            r,
            IteratorMode::From(&from, Direction::Forward),
        );
        let mut found: Option<(u64, u64)> = None;
        for (scanned, item) in it.enumerate() {
            let (k, v) = item.map_err(|e| StoreError::Read {
                what: format!("times[{origin}]"),
                reason: e.to_string(),
            })?;
            if !k.starts_with(&pre) {
                break;
            }
            if scanned >= max_scan {
                return Err(StoreError::Read {
                    what: format!("times[{origin}]"),
                    reason: format!(
                        "more than {max_scan} blocks end after {since_ns}: query by height"
                    ),
                });
            }
            let height = u64_value("times key height", k.get(pre.len() + 8..).unwrap_or_default())?;
            let first_ns = u64_value("times value", &v)?;
            if first_ns < until_ns {
                found = Some(
                    found.map_or((height, height), |(lo, hi)| (lo.min(height), hi.max(height))),
                );
            }
        }
        Ok(found)
    }

    fn add_evidence(&self, origin: &str, e: &Evidence) -> Result<u64, StoreError> {
        let mut g = self.lock()?;
        let pre = prefix(origin);
        let seq = match self.last_under("evidence", &pre)? {
            None => 0,
            Some(k) => u64_value("evidence key", &k)?.saturating_add(1),
        };
        let mut b = WriteBatch::default();
        b.put_cf(self.cf("evidence")?, key_u64(origin, seq), cbor(e));
        self.commit_locked(&mut g, b, &format!("evidence[{origin}/{seq}]"))?;
        Ok(seq)
    }

    fn evidence(&self, origin: &str) -> Result<Vec<Evidence>, StoreError> {
        self.scan("evidence", &prefix(origin))?
            .iter()
            .map(|(k, v)| uncbor(&format!("evidence[{origin}/{}]", show(k)), v))
            .collect()
    }
}

/// Tree size of a stored cosigned checkpoint note.
fn note_size(origin: &str, note: &[u8]) -> Result<u64, StoreError> {
    let corrupt =
        |reason: String| StoreError::Corrupt { what: format!("witness[{origin}]"), reason };
    let n = ledger::note::Note::parse(note).map_err(|e| corrupt(e.to_string()))?;
    let c = ledger::checkpoint::Checkpoint::parse(n.text()).map_err(|e| corrupt(e.to_string()))?;
    Ok(c.size())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enrollment(vkey: &str) -> Enrollment {
        Enrollment {
            origin: "o/1".into(),
            vkey: vkey.into(),
            unit: "VIN1".into(),
            lanes: vec!["factory".into()],
        }
    }

    #[test]
    fn records_survive_reopen_and_origins_do_not_mix() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Rocks::open(dir.path()).unwrap();
            s.put_enrollment(&enrollment("k1")).unwrap();
            let e =
                Evidence { at_ns: 1, kind: "fork".into(), reason: "r".into(), request: vec![1, 2] };
            assert_eq!(s.add_evidence("o/1", &e).unwrap(), 0);
            assert_eq!(s.add_evidence("o/1", &e).unwrap(), 1);
            assert_eq!(s.add_evidence("o/10", &e).unwrap(), 0);
        }
        let s = Rocks::open(dir.path()).unwrap();
        assert_eq!(s.enrollments().unwrap(), vec![enrollment("k1")]);
        assert_eq!(s.evidence("o/1").unwrap().len(), 2);
        assert_eq!(s.evidence("o/10").unwrap().len(), 1);
        assert_eq!(s.mirrored("o/1").unwrap(), 0);
    }
}
