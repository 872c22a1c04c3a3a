//! The ledger's storage boundary: [`LedgerStore`]. RocksDB (`rocks`, feature `rocks`) is the
//! embedded default; the trait speaks only in bytes, origins and heights (no RocksDB types), so
//! a PostgreSQL backend can implement it with one row per key and `UPDATE ... WHERE size = $old`
//! for the compare-and-set.
//!
//! Per enrolled gateway (keyed by origin) the store holds: the enrollment; the latest cosigned
//! checkpoint (the witness state, changed only by compare-and-set) and every cosigned checkpoint
//! by size; the mirror (headers, this organisation's lanes, the Merkle tiles and entry bundles
//! of the mirrored headers, per-block receipt metadata, the mirrored size); evidence records.
//! Every write is one synced batch: a method returns `Ok` only once it is durable.

#[cfg(feature = "rocks")]
pub mod rocks;

use serde::{Deserialize, Serialize};

/// A gateway this ledger witnesses and mirrors.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Enrollment {
    /// The gateway's checkpoint origin = its log key's name.
    pub origin: String,
    /// The gateway's Ed25519 verifier key (`name+id+base64(0x01||key)`); name = origin.
    pub vkey: String,
    /// Vehicle or roadside unit id (VIN, asset tag): what fleet tools ask for.
    pub unit: String,
    /// Lane names this organisation receives from the gateway.
    pub lanes: Vec<String>,
}

/// Result of a compare-and-set of the witness state.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Cas {
    Stored,
    /// The latest cosigned size was not the expected one: this is it (0 = none).
    Conflict {
        latest: u64,
    },
}

/// What the ledger records about one mirrored block beside its bytes.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct BlockMeta {
    /// When this ledger received (durably stored) the block, ns since the Unix epoch.
    pub received_at_ns: u64,
    /// The block's first record time is before the previous block's last record time.
    pub time_backwards: bool,
    /// The block's last record time is later than receipt time plus the configured tolerance.
    pub time_future: bool,
}

/// One block to add to the mirror.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MirrorBlock {
    pub height: u64,
    pub header: Vec<u8>,
    /// The header's record time range (for the time index).
    pub first_ns: u64,
    pub last_ns: u64,
    /// `(lane index in the header, ciphertext)`: only this organisation's lanes.
    pub lanes: Vec<(u16, Vec<u8>)>,
    pub meta: BlockMeta,
}

/// One atomic mirror append: blocks `old_size..new_size` and the log tiles they change.
#[derive(Clone, Debug)]
pub struct MirrorAppend {
    pub old_size: u64,
    pub new_size: u64,
    pub blocks: Vec<MirrorBlock>,
    /// `((level, index), contents)` of every tile the append changes.
    pub tiles: Vec<((u8, u64), Vec<u8>)>,
    /// `(level-0 tile index, contents)` of every entry bundle the append changes.
    pub bundles: Vec<(u64, Vec<u8>)>,
}

/// The reserved "origin" under which the ledger's own aggregate log keeps its tiles and
/// bundles (real origins cannot contain control characters).
pub const AGGREGATE: &str = "\u{1}aggregate";

/// One append to the ledger's aggregate log (its own tiled log of accepted checkpoints).
#[derive(Clone, Debug)]
pub struct LogAppend {
    pub old_size: u64,
    pub new_size: u64,
    pub tiles: Vec<((u8, u64), Vec<u8>)>,
    pub bundles: Vec<(u64, Vec<u8>)>,
    /// The signed checkpoint of `new_size`.
    pub checkpoint: Vec<u8>,
}

impl LogAppend {
    /// From what `ledger::log::prepare_append` computed.
    pub fn from_writes(w: &ledger::log::LogWrites) -> LogAppend {
        LogAppend {
            old_size: w.old_size,
            new_size: w.new_size,
            tiles: w.tiles.iter().map(|(t, b)| ((t.level(), t.index()), b.clone())).collect(),
            bundles: w.bundles.iter().map(|(t, b)| (t.index(), b.clone())).collect(),
            checkpoint: w.checkpoint.to_bytes(),
        }
    }
}

/// Something a gateway sent that proves or suggests misbehaviour, kept verbatim.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Evidence {
    pub at_ns: u64,
    /// `fork`, `conflicting_header`, ... (stable, for metrics and tools).
    pub kind: String,
    /// Human reason, as the refusal said it.
    pub reason: String,
    /// The request body (add-checkpoint text or upload CBOR) exactly as received.
    pub request: Vec<u8>,
}

/// Why a store operation failed. Writes that fail are fatal: the store poisons itself and the
/// node exits (recovery on open decides what is durable; retrying after a failed fsync could
/// acknowledge data the kernel dropped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("ledger store at {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("reading {what}: {reason}")]
    Read { what: String, reason: String },
    #[error("ledger store write of {what} failed: {reason} (fatal: no more writes)")]
    Io { what: String, reason: String },
    #[error("ledger store refuses writes after an earlier I/O error: {first}")]
    Poisoned { first: String },
    #[error("stored {what} does not decode: {reason}")]
    Corrupt { what: String, reason: String },
    #[error("mirror of {origin} is at size {found}, the append expects {expected}")]
    HeadMoved { origin: String, expected: u64, found: u64 },
    #[error("gateway {origin} is enrolled with key {existing}, refusing to change it to {new}")]
    KeyChange { origin: String, existing: String, new: String },
}

impl StoreError {
    /// A write failed: the node must stop (see the type's docs).
    pub fn is_fatal(&self) -> bool {
        matches!(self, StoreError::Io { .. } | StoreError::Poisoned { .. })
    }
}

/// Storage for a ledger node. All methods are blocking (call them from `spawn_blocking`).
pub trait LedgerStore: Send + Sync {
    /// Adds or updates an enrollment. Changing the key of an origin that has witness or mirror
    /// state is refused ([`StoreError::KeyChange`]): that would be a different log.
    fn put_enrollment(&self, e: &Enrollment) -> Result<(), StoreError>;
    fn enrollment(&self, origin: &str) -> Result<Option<Enrollment>, StoreError>;
    fn enrollments(&self) -> Result<Vec<Enrollment>, StoreError>;

    /// The latest cosigned checkpoint note (gateway signature + our cosignature).
    fn witnessed(&self, origin: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// The cosigned checkpoint note of `size`, if this ledger cosigned that size.
    fn witnessed_at(&self, origin: &str, size: u64) -> Result<Option<Vec<u8>>, StoreError>;
    /// The largest cosigned checkpoint of size at most `max_size`: `(size, note)`.
    fn witnessed_at_or_below(
        &self,
        origin: &str,
        max_size: u64,
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError>;
    /// Stores `note` (a checkpoint of `size`) as the latest cosigned checkpoint iff the latest
    /// cosigned size is still `expected` (0 = none): the witness's atomic check-and-persist. In
    /// the same batch, `aggregate` (when given) appends the note to the aggregate log; refused
    /// with [`StoreError::HeadMoved`] unless the aggregate log's size is `aggregate.old_size`.
    fn cas_witnessed(
        &self,
        origin: &str,
        expected: u64,
        size: u64,
        note: &[u8],
        aggregate: Option<&LogAppend>,
    ) -> Result<Cas, StoreError>;

    /// Size of the aggregate log.
    fn aggregate_size(&self) -> Result<u64, StoreError>;
    /// The aggregate log's latest signed checkpoint (none while it is empty). Its tiles and
    /// bundles are [`LedgerStore::tile`] / [`LedgerStore::bundle`] of origin [`AGGREGATE`].
    fn aggregate_checkpoint(&self) -> Result<Option<Vec<u8>>, StoreError>;

    /// Mirrored size: blocks `0..size` are held.
    fn mirrored(&self, origin: &str) -> Result<u64, StoreError>;
    fn header(&self, origin: &str, height: u64) -> Result<Option<Vec<u8>>, StoreError>;
    /// This organisation's lanes of a block: `(lane index, ciphertext)`, ascending.
    fn lanes(&self, origin: &str, height: u64) -> Result<Vec<(u16, Vec<u8>)>, StoreError>;
    fn block_meta(&self, origin: &str, height: u64) -> Result<Option<BlockMeta>, StoreError>;
    /// Current contents of tile `(level, index)` of the mirrored headers' tree.
    fn tile(&self, origin: &str, level: u8, index: u64) -> Result<Option<Vec<u8>>, StoreError>;
    /// Current entry bundle of level-0 tile `index`.
    fn bundle(&self, origin: &str, index: u64) -> Result<Option<Vec<u8>>, StoreError>;
    /// Appends to the mirror in one synced batch; refused unless the mirrored size is
    /// `append.old_size`.
    fn append_mirror(&self, origin: &str, append: &MirrorAppend) -> Result<(), StoreError>;

    /// The heights `(lowest, highest)` of the mirrored blocks whose record time range
    /// `[first_ns, last_ns]` overlaps `[since_ns, until_ns)`, or `None` if none does. Block
    /// times are not monotonic, so this is a scan of a time index; more than `max_scan` index
    /// entries is refused ([`StoreError::Read`] naming the limit).
    fn heights_between(
        &self,
        origin: &str,
        since_ns: u64,
        until_ns: u64,
        max_scan: usize,
    ) -> Result<Option<(u64, u64)>, StoreError>;

    /// Keeps evidence (synced); returns its sequence number for the origin.
    fn add_evidence(&self, origin: &str, e: &Evidence) -> Result<u64, StoreError>;
    fn evidence(&self, origin: &str) -> Result<Vec<Evidence>, StoreError>;
}

/// The mirror's tiles as `ledger::log` wants them.
pub struct Tiles<'a> {
    pub store: &'a dyn LedgerStore,
    pub origin: &'a str,
}

impl ledger::log::StoredTiles for Tiles<'_> {
    fn stored_tile(
        &self,
        level: u8,
        index: u64,
    ) -> Result<Option<Vec<u8>>, ledger::tile::TileError> {
        self.store.tile(self.origin, level, index).map_err(|e| ledger::tile::TileError::NotFound {
            path: format!("tile/{level}/{} ({e})", ledger::tile::encode_index(index)),
        })
    }
}

impl ledger::log::BundleSource for Tiles<'_> {
    fn read_bundle(&self, index: u64) -> Result<Option<Vec<u8>>, ledger::tile::TileError> {
        self.store.bundle(self.origin, index).map_err(|e| ledger::tile::TileError::NotFound {
            path: format!("tile/entries/{} ({e})", ledger::tile::encode_index(index)),
        })
    }
}
