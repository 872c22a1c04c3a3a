//! Transparency-log core of the ledger: the primitives every later part relies on.
//!
//! Pure: no async runtime, no sockets, no database; time is always a parameter. The
//! exceptions are thin I/O shells: [`keys`] (key files, read at start-up) and `store::rocks`
//! (feature `rocks`, the RocksDB store).
//!
//! # Layout
//!
//! - [`merkle`]: RFC 6962 / RFC 9162 SHA-256 Merkle tree: leaf and node hashes, roots,
//!   inclusion and consistency proofs (generation from a [`merkle::HashReader`], verification),
//!   and [`merkle::MemoryTree`].
//! - [`note`]: C2SP signed notes: parse and format, Ed25519 signers and verifier keys (vkeys),
//!   key IDs, verification against a set of known keys.
//! - [`checkpoint`]: C2SP tlog-checkpoint: strict parse and format, [`checkpoint::SignedCheckpoint`].
//! - [`cosignature`]: C2SP tlog-cosignature v1 (timestamped Ed25519, key type 0x04).
//! - [`tile`]: C2SP tlog-tiles: tile coordinates and paths, which tiles a tree has, tile
//!   contents, entry bundles, a [`merkle::HashReader`] over tiles, and [`tile::verify_tiles`]
//!   ("these tiles are exactly the tree with this checkpoint root").
//! - [`record`]: the records lanes carry (CAN frames, MQTT messages, signal samples).
//! - [`lane`]: columnar record encoding (codec v1) and its bounded zstd container.
//! - [`block`]: block header (canonical CBOR, BLAKE3 hash) and [`block::SealedBlock`].
//! - [`seal`]: sealing lanes (ChaCha20-Poly1305 with a one-time key, HPKE-wrapped per
//!   recipient, AAD binding the lane to its header) and opening them.
//! - [`verify`]: chain segments, lane digests, header inclusion and range completeness.
//! - [`log`]: the per-gateway log as a pure state machine: an append yields exactly the tiles,
//!   entry bundles and signed checkpoint a store must write in one batch; proofs from stored tiles.
//! - [`store`]: the [`store::Store`] trait (blocks, lanes, tiles, bundles, checkpoints, per-ledger
//!   cursors and receipts), an in-memory store, and `store::rocks` (feature `rocks`): RocksDB,
//!   one synced batch per append, recovery checks on open.
//! - [`verify_store`]: full verification of a store, naming every damaged key.
//! - [`sync_wire`]: the gateway -> ledger sync protocol on the wire (`docs/sync-protocol.md`).
//! - [`keys`]: key generation, 0600 key files (atomic write, permission check on load),
//!   fingerprints; private keys never print.
//!
//! Hand-written rather than built on `tlog_tiles` / `signed_note` 0.2; the crate README says
//! why (a second Ed25519 stack, and errors without the context our log lines need).

pub mod block;
pub mod checkpoint;
pub mod cosignature;
pub mod keys;
pub mod lane;
pub mod log;
pub mod merkle;
pub mod note;
pub mod record;
pub mod seal;
pub mod store;
pub mod sync_wire;
pub mod tile;
pub mod units;
pub mod verify;
pub mod verify_store;
