//! The block header: canonical CBOR, its BLAKE3 hash, and the sealed block (header + lanes).
//!
//! The header is a definite-length CBOR array with a fixed field order (shortest integer
//! forms, byte strings for keys and hashes); `docs/formats.md` lists it field by field.
//! [`BlockHeader::from_bytes`] refuses anything that does not re-encode to the same bytes, so a
//! header has exactly one encoding and its hash is well defined.

use std::collections::HashSet;
use std::fmt;

use ciborium::Value;

/// The only header version this build writes and reads.
pub const BLOCK_VERSION: u64 = 1;
/// Largest header accepted, in bytes.
pub const MAX_HEADER_BYTES: usize = 64 << 10;
/// Most lanes in one block.
pub const MAX_LANES: usize = 64;
/// Most recipients of one lane.
pub const MAX_RECIPIENTS: usize = 64;
/// Longest lane name, in bytes.
pub const MAX_LANE_NAME: usize = 64;

/// Domain separation: a header hash can never collide with another kind of BLAKE3 hash.
pub const HEADER_DOMAIN: &[u8] = b"iov/block-header/v1\0";

/// `BLAKE3(HEADER_DOMAIN || canonical header bytes)`: the block id and the `prev` link.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct BlockHash(pub [u8; 32]);

impl BlockHash {
    /// The `prev` of the block at height 0.
    pub const ZERO: BlockHash = BlockHash([0; 32]);

    pub fn to_hex(&self) -> String {
        hex32(&self.0)
    }
}

impl fmt::Debug for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockHash({})", self.to_hex())
    }
}

impl fmt::Display for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

pub(crate) fn hex32(b: &[u8; 32]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What the header says about one lane.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct LaneInfo {
    /// Audience name (`factory`, `city`): 1..=64 bytes of UTF-8, unique in the block.
    pub name: String,
    /// Records in the lane.
    pub record_count: u64,
    /// X25519 public keys that can open the lane, in wrapped-key order; unique.
    pub recipients: Vec<[u8; 32]>,
    /// `BLAKE3(lane ciphertext)` (plain BLAKE3: the ciphertext is already self-describing).
    pub digest: [u8; 32],
    /// Lane ciphertext length in bytes.
    pub size: u64,
}

/// A block header. Field order here is the CBOR order.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BlockHeader {
    /// [`BLOCK_VERSION`].
    pub version: u64,
    /// The gateway's Ed25519 public key.
    pub gateway: [u8; 32],
    /// Leaf index of this header in the gateway's log; the first block is 0.
    pub height: u64,
    /// Hash of the previous header, [`BlockHash::ZERO`] at height 0.
    pub prev: BlockHash,
    /// Smallest record timestamp in the block (ns since the Unix epoch); 0 when empty.
    pub first_ns: u64,
    /// Largest record timestamp in the block; `first_ns <= last_ns`.
    pub last_ns: u64,
    pub lanes: Vec<LaneInfo>,
}

/// Why header bytes were refused. Each variant names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
    #[error("header is {len} bytes, limit {max}")]
    TooLarge { len: usize, max: usize },
    #[error("header is not CBOR: {reason}")]
    Cbor { reason: String },
    #[error("header has {extra} trailing bytes after the CBOR item")]
    TrailingBytes { extra: usize },
    #[error("header field {field}: expected {expected}, got {got}")]
    Shape { field: String, expected: &'static str, got: String },
    #[error("header version {got}, this build reads {want}")]
    UnknownVersion { got: u64, want: u64 },
    #[error("header field {field} has {count} entries, limit {max}")]
    TooMany { field: String, count: usize, max: usize },
    #[error("header bytes are not canonical CBOR (definite lengths, shortest integers)")]
    NonCanonical,
    #[error("header time range is inverted: first_ns {first_ns} > last_ns {last_ns}")]
    TimeRange { first_ns: u64, last_ns: u64 },
    #[error("lane {index} name {name:?} is empty, longer than {MAX_LANE_NAME} bytes, or repeated")]
    LaneName { index: usize, name: String },
    #[error("lane {lane:?} lists recipient {key} twice")]
    DuplicateRecipient { lane: String, key: String },
}

fn uint(v: u64) -> Value {
    Value::Integer(v.into())
}

fn describe(v: &Value) -> String {
    match v {
        Value::Integer(i) => format!("integer {}", i128::from(*i)),
        Value::Bytes(b) => format!("byte string of {} bytes", b.len()),
        Value::Text(t) => format!("text of {} bytes", t.len()),
        Value::Array(a) => format!("array of {}", a.len()),
        Value::Map(m) => format!("map of {}", m.len()),
        Value::Float(_) => "float".into(),
        Value::Bool(_) => "bool".into(),
        Value::Null => "null".into(),
        Value::Tag(t, _) => format!("tag {t}"),
        _ => "other value".into(),
    }
}

fn shape(field: impl Into<String>, expected: &'static str, got: &Value) -> BlockError {
    BlockError::Shape { field: field.into(), expected, got: describe(got) }
}

fn get_u64(v: &Value, field: &str) -> Result<u64, BlockError> {
    match v {
        Value::Integer(i) => u64::try_from(*i).map_err(|_| shape(field, "unsigned integer", v)),
        _ => Err(shape(field, "unsigned integer", v)),
    }
}

fn get_32(v: &Value, field: &str) -> Result<[u8; 32], BlockError> {
    match v {
        Value::Bytes(b) => b.as_slice().try_into().map_err(|_| shape(field, "32-byte string", v)),
        _ => Err(shape(field, "32-byte string", v)),
    }
}

fn get_array<'a>(
    v: &'a Value,
    field: &str,
    expected: &'static str,
    max: usize,
) -> Result<&'a [Value], BlockError> {
    match v {
        Value::Array(a) if a.len() > max => {
            Err(BlockError::TooMany { field: field.into(), count: a.len(), max })
        }
        Value::Array(a) => Ok(a),
        _ => Err(shape(field, expected, v)),
    }
}

/// Canonical CBOR of a value tree built only from arrays, unsigned integers, byte and text
/// strings: ciborium writes definite lengths and shortest integer heads for these.
pub(crate) fn cbor_bytes(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    // Serializing a plain Value into a Vec has no failure path (no I/O, no unsupported types).
    ciborium::into_writer(v, &mut out).expect("CBOR into a Vec cannot fail");
    out
}

impl LaneInfo {
    fn to_value(&self) -> Value {
        Value::Array(vec![
            Value::Text(self.name.clone()),
            uint(self.record_count),
            Value::Array(self.recipients.iter().map(|k| Value::Bytes(k.to_vec())).collect()),
            Value::Bytes(self.digest.to_vec()),
            uint(self.size),
        ])
    }

    fn from_value(v: &Value, i: usize) -> Result<LaneInfo, BlockError> {
        let f = |name: &str| format!("lanes[{i}].{name}");
        let a = get_array(v, &format!("lanes[{i}]"), "array of 5", 5)?;
        let [name, count, recipients, digest, size] = a else {
            return Err(shape(format!("lanes[{i}]"), "array of 5", v));
        };
        let name = match name {
            Value::Text(t) => t.clone(),
            other => return Err(shape(f("name"), "text", other)),
        };
        let recipients = get_array(recipients, &f("recipients"), "array", MAX_RECIPIENTS)?
            .iter()
            .enumerate()
            .map(|(j, r)| get_32(r, &format!("lanes[{i}].recipients[{j}]")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LaneInfo {
            name,
            record_count: get_u64(count, &f("record_count"))?,
            recipients,
            digest: get_32(digest, &f("digest"))?,
            size: get_u64(size, &f("size"))?,
        })
    }
}

impl BlockHeader {
    fn to_value(&self) -> Value {
        Value::Array(vec![
            uint(self.version),
            Value::Bytes(self.gateway.to_vec()),
            uint(self.height),
            Value::Bytes(self.prev.0.to_vec()),
            uint(self.first_ns),
            uint(self.last_ns),
            Value::Array(self.lanes.iter().map(LaneInfo::to_value).collect()),
        ])
    }

    /// Canonical CBOR bytes (the Merkle leaf and the input of [`BlockHeader::hash`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        cbor_bytes(&self.to_value())
    }

    /// Parses untrusted bytes: size limit, one CBOR item and nothing after it, the exact shape,
    /// a known version, list limits, the header rules, and canonical form (re-encoding must
    /// give the same bytes).
    pub fn from_bytes(b: &[u8]) -> Result<BlockHeader, BlockError> {
        if b.len() > MAX_HEADER_BYTES {
            return Err(BlockError::TooLarge { len: b.len(), max: MAX_HEADER_BYTES });
        }
        let mut rest = b;
        let v: Value = ciborium::from_reader(&mut rest)
            .map_err(|e| BlockError::Cbor { reason: e.to_string() })?;
        if !rest.is_empty() {
            return Err(BlockError::TrailingBytes { extra: rest.len() });
        }
        let a = get_array(&v, "header", "array of 7", 7)?;
        let [version, gateway, height, prev, first, last, lanes] = a else {
            return Err(shape("header", "array of 7", &v));
        };
        let version = get_u64(version, "version")?;
        if version != BLOCK_VERSION {
            return Err(BlockError::UnknownVersion { got: version, want: BLOCK_VERSION });
        }
        let h = BlockHeader {
            version,
            gateway: get_32(gateway, "gateway")?,
            height: get_u64(height, "height")?,
            prev: BlockHash(get_32(prev, "prev")?),
            first_ns: get_u64(first, "first_ns")?,
            last_ns: get_u64(last, "last_ns")?,
            lanes: get_array(lanes, "lanes", "array", MAX_LANES)?
                .iter()
                .enumerate()
                .map(|(i, l)| LaneInfo::from_value(l, i))
                .collect::<Result<_, _>>()?,
        };
        h.check_rules()?;
        if h.to_bytes() != b {
            return Err(BlockError::NonCanonical);
        }
        Ok(h)
    }

    /// Rules beyond the shape: time range order, lane names, recipient uniqueness, limits.
    pub fn check_rules(&self) -> Result<(), BlockError> {
        if self.version != BLOCK_VERSION {
            return Err(BlockError::UnknownVersion { got: self.version, want: BLOCK_VERSION });
        }
        if self.first_ns > self.last_ns {
            return Err(BlockError::TimeRange { first_ns: self.first_ns, last_ns: self.last_ns });
        }
        if self.lanes.len() > MAX_LANES {
            return Err(BlockError::TooMany {
                field: "lanes".into(),
                count: self.lanes.len(),
                max: MAX_LANES,
            });
        }
        let mut names = HashSet::new();
        for (i, l) in self.lanes.iter().enumerate() {
            if l.name.is_empty() || l.name.len() > MAX_LANE_NAME || !names.insert(&l.name) {
                return Err(BlockError::LaneName { index: i, name: l.name.clone() });
            }
            if l.recipients.len() > MAX_RECIPIENTS {
                return Err(BlockError::TooMany {
                    field: format!("lanes[{i}].recipients"),
                    count: l.recipients.len(),
                    max: MAX_RECIPIENTS,
                });
            }
            let mut seen = HashSet::new();
            for r in &l.recipients {
                if !seen.insert(r) {
                    return Err(BlockError::DuplicateRecipient {
                        lane: l.name.clone(),
                        key: hex32(r),
                    });
                }
            }
        }
        Ok(())
    }

    /// `BLAKE3(HEADER_DOMAIN || self.to_bytes())`.
    pub fn hash(&self) -> BlockHash {
        hash_header_bytes(&self.to_bytes())
    }
}

/// [`BlockHeader::hash`] of bytes already known to be canonical.
pub fn hash_header_bytes(bytes: &[u8]) -> BlockHash {
    let mut h = blake3::Hasher::new();
    h.update(HEADER_DOMAIN);
    h.update(bytes);
    BlockHash(*h.finalize().as_bytes())
}

/// A header with its canonical bytes and every lane ciphertext, in header lane order.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SealedBlock {
    pub header: BlockHeader,
    pub header_bytes: Vec<u8>,
    pub lanes: Vec<Vec<u8>>,
}
