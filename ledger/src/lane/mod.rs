//! A lane's plaintext: the columnar record encoding (`codec`) and its zstd container.
//!
//! `encode` turns records into the columnar bytes, `compress` wraps those in one zstd frame
//! (with its content size), and the reverse path is `decompress` then `decode`. Both reverse
//! steps take untrusted bytes: sizes are checked against [`Limits`] and against the remaining
//! input before anything is allocated. The byte layout is in `docs/formats.md`.

mod codec;
mod fields;
mod varint;

pub use codec::{decode, encode, encode_hinted, LayoutHints, PayloadDelta};

use crate::record::Record;

/// Hard limits for decoding untrusted lanes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest decompressed lane accepted, in bytes.
    pub max_plain_bytes: usize,
    /// Largest record count accepted.
    pub max_records: usize,
}

impl Limits {
    /// 256 MiB of plaintext, 16 Mi records: well above a block of a busy gateway (a few MiB).
    pub const DEFAULT: Limits = Limits { max_plain_bytes: 256 << 20, max_records: 16 << 20 };
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::DEFAULT
    }
}

/// Why lane bytes could not be decompressed or decoded. Every variant names the section
/// (and field) that did not match.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LaneError {
    #[error("lane {section}: truncated at offset {offset}: need {need} bytes, {have} left")]
    Truncated { section: &'static str, offset: usize, need: usize, have: usize },
    #[error("lane {section}: malformed or non-minimal varint at offset {offset}")]
    BadVarint { section: &'static str, offset: usize },
    #[error("lane {section}: {field} is {value}, limit {max}")]
    LimitExceeded { section: &'static str, field: &'static str, value: u64, max: u64 },
    #[error("lane {section}: {extra} trailing bytes")]
    TrailingBytes { section: &'static str, extra: usize },
    #[error("lane codec version {got}, this build reads {want}")]
    UnknownVersion { got: u8, want: u8 },
    #[error("lane {section}: {field}: expected {expected}, got {got}")]
    Mismatch { section: &'static str, field: &'static str, expected: u64, got: u64 },
    #[error("lane {section}: {field} is invalid: {reason}")]
    Invalid { section: &'static str, field: &'static str, reason: String },
    #[error("lane zstd frame: {reason}")]
    Decompress { reason: String },
    #[error("lane zstd compression failed: {reason}")]
    Compress { reason: String },
}

/// Compresses an encoded lane into one zstd frame that records its content size.
pub fn compress(plain: &[u8], level: i32) -> Result<Vec<u8>, LaneError> {
    let mut c = zstd::bulk::Compressor::new(level)
        .map_err(|e| LaneError::Compress { reason: e.to_string() })?;
    c.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(true))
        .map_err(|e| LaneError::Compress { reason: e.to_string() })?;
    c.compress(plain).map_err(|e| LaneError::Compress { reason: e.to_string() })
}

/// Decompresses untrusted bytes: the frame must declare its content size, that size must be
/// within `limits.max_plain_bytes`, and the output must be exactly that size.
pub fn decompress(compressed: &[u8], limits: &Limits) -> Result<Vec<u8>, LaneError> {
    let declared = zstd::zstd_safe::get_frame_content_size(compressed)
        .map_err(|_| LaneError::Decompress { reason: "not a zstd frame".into() })?
        .ok_or_else(|| LaneError::Decompress {
            reason: "frame does not declare its content size".into(),
        })?;
    if declared > limits.max_plain_bytes as u64 {
        return Err(LaneError::LimitExceeded {
            section: "zstd frame",
            field: "content size",
            value: declared,
            max: limits.max_plain_bytes as u64,
        });
    }
    let declared = declared as usize;
    let out = zstd::bulk::decompress(compressed, declared)
        .map_err(|e| LaneError::Decompress { reason: e.to_string() })?;
    if out.len() != declared {
        return Err(LaneError::Mismatch {
            section: "zstd frame",
            field: "content size",
            expected: declared as u64,
            got: out.len() as u64,
        });
    }
    Ok(out)
}

/// `encode` then `compress`.
pub fn pack(records: &[Record], level: i32, delta: PayloadDelta) -> Result<Vec<u8>, LaneError> {
    compress(&encode(records, delta), level)
}

/// `encode_hinted` then `compress`: [`pack`] for a lane's next block.
pub fn pack_hinted(
    records: &[Record],
    level: i32,
    delta: PayloadDelta,
    hints: &mut LayoutHints,
) -> Result<Vec<u8>, LaneError> {
    compress(&encode_hinted(records, delta, hints), level)
}

/// `decompress` then `decode`.
pub fn unpack(compressed: &[u8], limits: &Limits) -> Result<Vec<Record>, LaneError> {
    decode(&decompress(compressed, limits)?, limits)
}
