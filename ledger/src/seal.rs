//! Sealing lanes into a block and opening them again.
//!
//! Per lane: a fresh random 32-byte data key; ChaCha20-Poly1305 over the compressed lane with a
//! zero nonce (the key encrypts exactly one message) and the lane AAD; the data key wrapped for
//! each recipient with HPKE base mode (RFC 9180: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//! ChaCha20-Poly1305), info [`HPKE_INFO`], the same AAD. The AAD is canonical CBOR of every
//! header field that does not depend on lane ciphertexts (see [`lane_aad`]), so a lane moved to
//! another block, height, index or recipient list does not open. `docs/formats.md` has the
//! byte layout of the lane ciphertext.

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce};
use ciborium::Value;
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use rand_core::CryptoRng;
use x25519_dalek::PublicKey;
use zeroize::Zeroizing;

use crate::block::{
    cbor_bytes, hex32, BlockError, BlockHash, BlockHeader, LaneInfo, SealedBlock, BLOCK_VERSION,
    MAX_LANES, MAX_RECIPIENTS,
};
use crate::keys::X25519Key;
use crate::lane::{self, LaneError, Limits, PayloadDelta};
use crate::record::Record;
use crate::verify::{self, ChainError};

type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type HpkeAead = hpke::aead::ChaCha20Poly1305;

/// HPKE `info`: names the scheme and its version.
pub const HPKE_INFO: &[u8] =
    b"iov/lane-key/v1 HPKE base DHKEM(X25519,HKDF-SHA256) HKDF-SHA256 ChaCha20Poly1305";
/// First text item of the lane AAD.
pub const AAD_LABEL: &str = "iov/lane-aad/v1";
/// Lane ciphertext format version (first byte).
pub const LANE_FORMAT: u8 = 1;

const ENC_LEN: usize = 32;
const WRAPPED_LEN: usize = 32 + 16;
const PREFIX_LEN: usize = 1 + 32 + 8 + 2 + 32 + 1;
const TAG_LEN: usize = 16;

/// Sealing parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealOptions {
    pub zstd_level: i32,
    pub delta: PayloadDelta,
}

impl Default for SealOptions {
    /// zstd level 5 and per-column delta choice. On the GPS trace in 131,072-frame blocks:
    /// level 3 stores 2.68 B/frame, 5 stores 2.59, 7 stores 2.55; encoding + compression runs
    /// at 3 M frames/s or more per core at each (`lane_bench`), and level 5 leaves headroom for
    /// slower gateway CPUs.
    fn default() -> SealOptions {
        SealOptions { zstd_level: 5, delta: PayloadDelta::Auto }
    }
}

/// One lane to seal: its audience name, who may open it, and its records in order.
#[derive(Clone, Debug)]
pub struct LaneSpec {
    pub name: String,
    pub recipients: Vec<PublicKey>,
    pub records: Vec<Record>,
}

/// Why a block could not be sealed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    #[error("block would break a header rule: {0}")]
    Header(#[from] BlockError),
    #[error("the header has {lanes} lanes, no lane {index} to seal")]
    NoSuchLane { index: usize, lanes: usize },
    #[error("lane {lane:?} has no recipients: nobody could open it")]
    NoRecipients { lane: String },
    #[error("lane {lane:?}: {source}")]
    Lane { lane: String, source: LaneError },
    #[error("lane {lane:?}: HPKE wrap for recipient {recipient} failed: {reason}")]
    Wrap { lane: String, recipient: usize, reason: String },
    #[error("lane {lane:?}: encryption failed")]
    Encrypt { lane: String },
}

/// Why a lane did not open. Each variant is a distinct cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error("block at height {height} has {lanes} lanes, no lane {index}")]
    NoSuchLane { height: u64, index: usize, lanes: usize },
    #[error("lane ciphertext is malformed: {what}")]
    Malformed { what: String },
    #[error("lane was sealed for {field} {got}, this header has {expected}: the lane was moved")]
    Moved { field: &'static str, expected: String, got: String },
    #[error(
        "lane {lane:?} at height {height} was sealed under different header fields \
         (prev, time range, name, record count or recipient list): binding {got} != {expected}"
    )]
    BindingMismatch { lane: String, height: u64, expected: String, got: String },
    #[error("lane ciphertext does not match the header: {0}")]
    Integrity(#[from] ChainError),
    #[error(
        "key {key_name} ({key_id:08x}) is not a recipient of lane {lane:?} at height {height}"
    )]
    NotARecipient { lane: String, height: u64, key_name: String, key_id: u32 },
    #[error(
        "lane {lane:?} at height {height}: the data key wrapped for recipient {recipient} \
         does not open with this key (wrong key or swapped/tampered wrapped key)"
    )]
    KeyUnwrap { lane: String, height: u64, recipient: usize },
    #[error("lane {lane:?} at height {height}: AEAD authentication of the lane body failed")]
    Decrypt { lane: String, height: u64 },
    #[error("lane {lane:?} at height {height}: {source}")]
    Decode { lane: String, height: u64, source: LaneError },
    #[error("lane {lane:?} at height {height} holds {got} records, the header says {expected}")]
    RecordCount { lane: String, height: u64, expected: u64, got: u64 },
}

/// The lane AAD: canonical CBOR array
/// `[AAD_LABEL, version, gateway, height, prev, first_ns, last_ns, lane index, lane name,
/// lane record count, [recipient keys]]`. It leaves out the lane digests and sizes (they
/// depend on the ciphertexts) and the other lanes (each lane stands alone).
pub fn lane_aad(header: &BlockHeader, index: usize) -> Option<Vec<u8>> {
    let lane = header.lanes.get(index)?;
    Some(cbor_bytes(&Value::Array(vec![
        Value::Text(AAD_LABEL.into()),
        Value::Integer(header.version.into()),
        Value::Bytes(header.gateway.to_vec()),
        Value::Integer(header.height.into()),
        Value::Bytes(header.prev.0.to_vec()),
        Value::Integer(header.first_ns.into()),
        Value::Integer(header.last_ns.into()),
        Value::Integer((index as u64).into()),
        Value::Text(lane.name.clone()),
        Value::Integer(lane.record_count.into()),
        Value::Array(lane.recipients.iter().map(|k| Value::Bytes(k.to_vec())).collect()),
    ])))
}

/// Seals `lanes` into block `height` of `gateway`, linked to `prev`. Randomness (data keys,
/// HPKE ephemeral keys) comes from `rng` in lane order, each lane's data key before its
/// recipients' encapsulations, so a seeded `rng` gives reproducible test vectors.
pub fn seal_block(
    gateway: [u8; 32],
    height: u64,
    prev: BlockHash,
    lanes: &[LaneSpec],
    opts: &SealOptions,
    rng: &mut impl CryptoRng,
) -> Result<SealedBlock, SealError> {
    seal_block_hinted(gateway, height, prev, lanes, opts, &mut BlockHints::default(), rng)
}

/// Per lane name, the bit-field layouts its earlier blocks chose ([`lane::LayoutHints`]): a
/// gateway sealing block after block keeps one and passes it to [`seal_block_hinted`].
pub type BlockHints = std::collections::HashMap<String, lane::LayoutHints>;

/// [`seal_block`] reusing and updating `hints` (the lanes' bit-field layouts, D254).
pub fn seal_block_hinted(
    gateway: [u8; 32],
    height: u64,
    prev: BlockHash,
    lanes: &[LaneSpec],
    opts: &SealOptions,
    hints: &mut BlockHints,
    rng: &mut impl CryptoRng,
) -> Result<SealedBlock, SealError> {
    let times = lanes.iter().flat_map(|l| l.records.iter().map(Record::t_ns));
    let (first_ns, last_ns) = times
        .fold(None, |acc: Option<(u64, u64)>, t| match acc {
            None => Some((t, t)),
            Some((a, b)) => Some((a.min(t), b.max(t))),
        })
        .unwrap_or((0, 0));
    let mut header = BlockHeader {
        version: BLOCK_VERSION,
        gateway,
        height,
        prev,
        first_ns,
        last_ns,
        lanes: lanes
            .iter()
            .map(|l| LaneInfo {
                name: l.name.clone(),
                record_count: l.records.len() as u64,
                recipients: l.recipients.iter().map(|k| *k.as_bytes()).collect(),
                digest: [0; 32],
                size: 0,
            })
            .collect(),
    };
    header.check_rules()?;
    let mut out = Vec::with_capacity(lanes.len());
    for (i, spec) in lanes.iter().enumerate() {
        let lane_hints = hints.entry(spec.name.clone()).or_default();
        let compressed = lane::pack_hinted(&spec.records, opts.zstd_level, opts.delta, lane_hints)
            .map_err(|source| SealError::Lane { lane: spec.name.clone(), source })?;
        let ct = seal_lane(&header, i, &compressed, rng)?;
        header.lanes[i].digest = *blake3::hash(&ct).as_bytes();
        header.lanes[i].size = ct.len() as u64;
        out.push(ct);
    }
    let header_bytes = header.to_bytes();
    Ok(SealedBlock { header, header_bytes, lanes: out })
}

/// Encrypts one compressed lane for its recipients. `header` must already carry everything
/// [`lane_aad`] reads (digests and sizes may still be zero).
pub fn seal_lane(
    header: &BlockHeader,
    index: usize,
    compressed: &[u8],
    rng: &mut impl CryptoRng,
) -> Result<Vec<u8>, SealError> {
    let info = header
        .lanes
        .get(index)
        .ok_or_else(|| SealError::Encrypt { lane: format!("#{index} (no such lane)") })?;
    let name = &info.name;
    if info.recipients.is_empty() {
        return Err(SealError::NoRecipients { lane: name.clone() });
    }
    if info.recipients.len() > MAX_RECIPIENTS || header.lanes.len() > MAX_LANES {
        return Err(SealError::Header(BlockError::TooMany {
            field: format!("lane {name:?} recipients"),
            count: info.recipients.len(),
            max: MAX_RECIPIENTS,
        }));
    }
    let aad = lane_aad(header, index).ok_or_else(|| SealError::Encrypt { lane: name.clone() })?;
    let mut key = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(key.as_mut());

    let mut out = Vec::with_capacity(
        PREFIX_LEN + info.recipients.len() * (ENC_LEN + WRAPPED_LEN) + compressed.len() + TAG_LEN,
    );
    out.push(LANE_FORMAT);
    out.extend_from_slice(&header.gateway);
    out.extend_from_slice(&header.height.to_be_bytes());
    out.extend_from_slice(&(index as u16).to_be_bytes());
    out.extend_from_slice(blake3::hash(&aad).as_bytes());
    out.push(info.recipients.len() as u8);
    for (r, pk) in info.recipients.iter().enumerate() {
        let wrap_err =
            |reason: String| SealError::Wrap { lane: name.clone(), recipient: r, reason };
        let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(pk)
            .map_err(|e| wrap_err(format!("bad public key: {e:?}")))?;
        let (enc, mut ctx) =
            hpke::setup_sender_with_rng::<HpkeAead, Kdf, Kem>(&OpModeS::Base, &pk, HPKE_INFO, rng)
                .map_err(|e| wrap_err(format!("{e:?}")))?;
        let wrapped = ctx.seal(key.as_ref(), &aad).map_err(|e| wrap_err(format!("{e:?}")))?;
        out.extend_from_slice(&enc.to_bytes());
        out.extend_from_slice(&wrapped);
    }
    let cipher = ChaCha20Poly1305::new(&(*key).into());
    let body = cipher
        .encrypt(&Nonce::default(), Payload { msg: compressed, aad: &aad })
        .map_err(|_| SealError::Encrypt { lane: name.clone() })?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// Opens lane `index` of a sealed block with a recipient's key.
pub fn open_lane(
    block: &SealedBlock,
    index: usize,
    key: &X25519Key,
    limits: &Limits,
) -> Result<Vec<Record>, OpenError> {
    let ct = block.lanes.get(index).ok_or(OpenError::NoSuchLane {
        height: block.header.height,
        index,
        lanes: block.lanes.len(),
    })?;
    open_lane_bytes(&block.header, index, ct, key, limits)
}

/// Opens an untrusted lane ciphertext against `header` (itself verified by the caller, e.g. by
/// [`verify::chain_segment`] and the checkpoint). Checks, in order: the lane exists; the
/// ciphertext names this gateway, height and index ([`OpenError::Moved`]); its binding digest
/// equals BLAKE3 of this header's lane AAD ([`OpenError::BindingMismatch`]); size and digest
/// ([`OpenError::Integrity`]); `key` is a recipient ([`OpenError::NotARecipient`]); the wrapped
/// key opens ([`OpenError::KeyUnwrap`]); the body authenticates ([`OpenError::Decrypt`]);
/// it decompresses and decodes within `limits` to the declared record count.
pub fn open_lane_bytes(
    header: &BlockHeader,
    index: usize,
    ct: &[u8],
    key: &X25519Key,
    limits: &Limits,
) -> Result<Vec<Record>, OpenError> {
    let height = header.height;
    let info = header.lanes.get(index).ok_or(OpenError::NoSuchLane {
        height,
        index,
        lanes: header.lanes.len(),
    })?;
    let lane = || info.name.clone();
    let malformed = |what: &str| OpenError::Malformed { what: what.to_owned() };
    let prefix = ct.get(..PREFIX_LEN).ok_or_else(|| {
        malformed(&format!("{} bytes, shorter than the {PREFIX_LEN}-byte prefix", ct.len()))
    })?;
    if prefix[0] != LANE_FORMAT {
        return Err(malformed(&format!("format byte {}, want {LANE_FORMAT}", prefix[0])));
    }
    let gw: [u8; 32] = prefix[1..33].try_into().map_err(|_| malformed("gateway"))?;
    if gw != header.gateway {
        return Err(OpenError::Moved {
            field: "gateway",
            expected: hex32(&header.gateway),
            got: hex32(&gw),
        });
    }
    let h = u64::from_be_bytes(prefix[33..41].try_into().map_err(|_| malformed("height"))?);
    if h != height {
        return Err(OpenError::Moved {
            field: "height",
            expected: height.to_string(),
            got: h.to_string(),
        });
    }
    let i = u16::from_be_bytes(prefix[41..43].try_into().map_err(|_| malformed("index"))?);
    if usize::from(i) != index {
        return Err(OpenError::Moved {
            field: "lane index",
            expected: index.to_string(),
            got: i.to_string(),
        });
    }
    let aad = lane_aad(header, index).ok_or(OpenError::NoSuchLane {
        height,
        index,
        lanes: header.lanes.len(),
    })?;
    let binding: [u8; 32] = prefix[43..75].try_into().map_err(|_| malformed("binding"))?;
    let want = *blake3::hash(&aad).as_bytes();
    if binding != want {
        return Err(OpenError::BindingMismatch {
            lane: lane(),
            height,
            expected: hex32(&want),
            got: hex32(&binding),
        });
    }
    verify::lane_against_header(header, index, ct)?;
    let n = usize::from(prefix[75]);
    if n != info.recipients.len() {
        return Err(malformed(&format!(
            "{n} wrapped keys, the header lists {} recipients",
            info.recipients.len()
        )));
    }
    let public = *key.public().as_bytes();
    let r = info.recipients.iter().position(|k| *k == public).ok_or_else(|| {
        OpenError::NotARecipient {
            lane: lane(),
            height,
            key_name: key.name().to_owned(),
            key_id: key.key_id(),
        }
    })?;
    let body_at = PREFIX_LEN + n * (ENC_LEN + WRAPPED_LEN);
    if ct.len() < body_at + TAG_LEN {
        return Err(malformed(&format!("{} bytes, too short for {n} wrapped keys", ct.len())));
    }
    let slot = &ct[PREFIX_LEN + r * (ENC_LEN + WRAPPED_LEN)..][..ENC_LEN + WRAPPED_LEN];
    let unwrap_err = || OpenError::KeyUnwrap { lane: lane(), height, recipient: r };
    let enc =
        <Kem as hpke::Kem>::EncappedKey::from_bytes(&slot[..ENC_LEN]).map_err(|_| unwrap_err())?;
    let sk = Zeroizing::new(key.secret().to_bytes());
    let sk = <Kem as hpke::Kem>::PrivateKey::from_bytes(sk.as_ref()).map_err(|_| unwrap_err())?;
    let mut ctx = hpke::setup_receiver::<HpkeAead, Kdf, Kem>(&OpModeR::Base, &sk, &enc, HPKE_INFO)
        .map_err(|_| unwrap_err())?;
    let data_key = Zeroizing::new(ctx.open(&slot[ENC_LEN..], &aad).map_err(|_| unwrap_err())?);
    let data_key: [u8; 32] = data_key.as_slice().try_into().map_err(|_| unwrap_err())?;
    let data_key = Zeroizing::new(data_key);
    let cipher = ChaCha20Poly1305::new(&(*data_key).into());
    let compressed = cipher
        .decrypt(&Nonce::default(), Payload { msg: &ct[body_at..], aad: &aad })
        .map_err(|_| OpenError::Decrypt { lane: lane(), height })?;
    let limits = Limits {
        max_records: limits
            .max_records
            .min(usize::try_from(info.record_count).unwrap_or(usize::MAX)),
        ..*limits
    };
    let records = lane::unpack(&compressed, &limits).map_err(|source| OpenError::Decode {
        lane: lane(),
        height,
        source,
    })?;
    if records.len() as u64 != info.record_count {
        return Err(OpenError::RecordCount {
            lane: lane(),
            height,
            expected: info.record_count,
            got: records.len() as u64,
        });
    }
    Ok(records)
}
