//! C2SP tlog-cosignature v1 (`fixtures/specs/c2sp-tlog-cosignature.md`): a witness's timestamped
//! Ed25519 statement that it saw a checkpoint as the largest consistent tree of that log.
//!
//! Signed message: `cosignature/v1\ntime <T>\n` followed by the whole checkpoint note text.
//! Signature bytes: `u64 big-endian timestamp || 64-byte Ed25519 signature`. Key ID type byte
//! 0x04. Time is always a parameter (POSIX seconds).

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};

use crate::checkpoint::Checkpoint;
use crate::note::{self, is_valid_key_name, KeyParseError, Signature, Verifier};

/// Signature type byte for timestamped Ed25519 cosignatures.
pub const COSIGNATURE_TYPE: u8 = 0x04;

/// The spec caps timestamps at 2^63 - 1.
pub const MAX_TIMESTAMP: u64 = i64::MAX as u64;

const SIGNATURE_LEN: usize = 8 + 64;

/// Why a cosignature was not made or not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CosignatureError {
    #[error("cosignature from {name}+{key_id:08x} is {len} bytes, want {SIGNATURE_LEN}")]
    Length { name: String, key_id: u32, len: usize },
    #[error("cosignature is from {got_name}+{got_id:08x}, this verifier is {name}+{key_id:08x}")]
    WrongKey { name: String, key_id: u32, got_name: String, got_id: u32 },
    #[error("cosignature timestamp {timestamp} exceeds 2^63-1")]
    TimestampTooLarge { timestamp: u64 },
    #[error("cosignature by {name} is dated {timestamp}, after now ({now}) plus allowed skew")]
    FromTheFuture { name: String, timestamp: u64, now: u64 },
    #[error("cosignature by {name}+{key_id:08x} at time {timestamp} does not verify")]
    BadSignature { name: String, key_id: u32, timestamp: u64 },
}

/// `cosignature/v1\ntime <timestamp>\n<checkpoint text>`: the exact bytes that are signed.
pub fn signed_message(checkpoint_text: &str, timestamp: u64) -> Vec<u8> {
    format!("cosignature/v1\ntime {timestamp}\n{checkpoint_text}").into_bytes()
}

/// The timestamp a cosignature line claims (unverified), or `None` if it is not 72 bytes.
pub fn timestamp(sig: &Signature) -> Option<u64> {
    split(&sig.bytes).map(|(ts, _)| ts)
}

/// Splits cosignature bytes into (timestamp, Ed25519 signature).
fn split(bytes: &[u8]) -> Option<(u64, ed25519_dalek::Signature)> {
    if bytes.len() != SIGNATURE_LEN {
        return None;
    }
    let (ts, sig) = bytes.split_at(8);
    let ts = u64::from_be_bytes(ts.try_into().ok()?);
    Some((ts, ed25519_dalek::Signature::from_slice(sig).ok()?))
}

/// A witness's cosigning key. Debug never shows the private key.
#[derive(Clone)]
pub struct Cosigner {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cosigner")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Cosigner {
    pub fn new(name: &str, key: SigningKey) -> Result<Cosigner, KeyParseError> {
        if !is_valid_key_name(name) {
            return Err(KeyParseError::BadName { name: name.to_owned() });
        }
        let key_id = note::key_id(name, COSIGNATURE_TYPE, key.verifying_key().as_bytes());
        Ok(Cosigner { name: name.to_owned(), key_id, key })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The raw key, for [`crate::keys`] to encode. Crate-private so it cannot leak by accident.
    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    pub fn verifier(&self) -> CosignatureVerifier {
        CosignatureVerifier {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }

    /// Cosigns `checkpoint` as of `timestamp` (POSIX seconds, supplied by the caller).
    pub fn cosign(
        &self,
        checkpoint: &Checkpoint,
        timestamp: u64,
    ) -> Result<Signature, CosignatureError> {
        if timestamp > MAX_TIMESTAMP {
            return Err(CosignatureError::TimestampTooLarge { timestamp });
        }
        let sig = self.key.sign(&signed_message(&checkpoint.to_text(), timestamp));
        let mut bytes = Vec::with_capacity(SIGNATURE_LEN);
        bytes.extend_from_slice(&timestamp.to_be_bytes());
        bytes.extend_from_slice(&sig.to_bytes());
        Ok(Signature { name: self.name.clone(), key_id: self.key_id, bytes })
    }
}

/// A known witness key (vkey type 0x04).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CosignatureVerifier {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl CosignatureVerifier {
    pub fn new(name: &str, key: VerifyingKey) -> Result<CosignatureVerifier, KeyParseError> {
        if !is_valid_key_name(name) {
            return Err(KeyParseError::BadName { name: name.to_owned() });
        }
        let key_id = note::key_id(name, COSIGNATURE_TYPE, key.as_bytes());
        Ok(CosignatureVerifier { name: name.to_owned(), key_id, key })
    }

    /// Parses `name+hex(keyid)+base64(0x04 || pubkey)`; the key ID must match.
    pub fn from_vkey(vkey: &str) -> Result<CosignatureVerifier, KeyParseError> {
        let (name, claimed, raw) = note::split_key(vkey, "name+keyid+key")?;
        let key = note::ed25519_material(name, &raw, COSIGNATURE_TYPE)?;
        let key = VerifyingKey::from_bytes(&key)
            .map_err(|_| KeyParseError::InvalidPublicKey { name: name.to_owned() })?;
        let v = CosignatureVerifier::new(name, key)?;
        if v.key_id != claimed {
            return Err(KeyParseError::KeyIdMismatch {
                name: name.to_owned(),
                claimed,
                computed: v.key_id,
            });
        }
        Ok(v)
    }

    pub fn to_vkey(&self) -> String {
        let mut raw = vec![COSIGNATURE_TYPE];
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.key_id, STANDARD.encode(raw))
    }

    /// Verifies `sig` over `checkpoint`; refuses timestamps later than `now + max_skew`
    /// (both POSIX seconds). Returns the cosignature's timestamp.
    pub fn verify(
        &self,
        checkpoint: &Checkpoint,
        sig: &Signature,
        now: u64,
        max_skew: u64,
    ) -> Result<u64, CosignatureError> {
        if sig.name != self.name || sig.key_id != self.key_id {
            return Err(CosignatureError::WrongKey {
                name: self.name.clone(),
                key_id: self.key_id,
                got_name: sig.name.clone(),
                got_id: sig.key_id,
            });
        }
        let (timestamp, ed) = split(&sig.bytes).ok_or(CosignatureError::Length {
            name: self.name.clone(),
            key_id: self.key_id,
            len: sig.bytes.len(),
        })?;
        if timestamp > MAX_TIMESTAMP {
            return Err(CosignatureError::TimestampTooLarge { timestamp });
        }
        let msg = signed_message(&checkpoint.to_text(), timestamp);
        if self.key.verify_strict(&msg, &ed).is_err() {
            return Err(CosignatureError::BadSignature {
                name: self.name.clone(),
                key_id: self.key_id,
                timestamp,
            });
        }
        if timestamp > now.saturating_add(max_skew) {
            return Err(CosignatureError::FromTheFuture {
                name: self.name.clone(),
                timestamp,
                now,
            });
        }
        Ok(timestamp)
    }
}

/// Lets a cosigner sit in the same verifier set as log keys for [`note::Note::verify`]
/// (no clock check there; use [`CosignatureVerifier::verify`] for that).
impl Verifier for CosignatureVerifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.key_id
    }
    fn verify(&self, text: &[u8], signature: &[u8]) -> bool {
        let Some((ts, sig)) = split(signature) else { return false };
        if ts > MAX_TIMESTAMP {
            return false;
        }
        let mut msg = format!("cosignature/v1\ntime {ts}\n").into_bytes();
        msg.extend_from_slice(text);
        self.key.verify_strict(&msg, &sig).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::SignedCheckpoint;
    use crate::merkle::Hash;
    use crate::note::{Ed25519Signer, Note};

    fn cp() -> Checkpoint {
        Checkpoint::new("example.com/behind-the-sofa", 20852163, Hash([3; 32])).unwrap()
    }

    fn witness() -> Cosigner {
        Cosigner::new("witness.example.com/w1", SigningKey::from_bytes(&[8; 32])).unwrap()
    }

    #[test]
    fn signed_message_matches_the_spec_layout() {
        let text =
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        assert_eq!(
            signed_message(text, 1679315147),
            b"cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
        );
    }

    #[test]
    fn spec_example_cosignature_line_carries_the_spec_timestamp() {
        let text = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n\u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n";
        let note = Note::parse(text.as_bytes()).unwrap();
        let w = &note.signatures()[1];
        assert_eq!((w.name.as_str(), w.key_id), ("witness.example.com/w1", 0x8d66cf3f));
        assert_eq!(timestamp(w), Some(1679315147)); // the spec's "time 1679315147"
        assert_eq!(timestamp(&note.signatures()[0]), None); // plain Ed25519: 64 bytes
    }

    #[test]
    fn cosignature_verifies_and_returns_its_timestamp() {
        let w = witness();
        let sig = w.cosign(&cp(), 1_700_000_000).unwrap();
        assert_eq!(sig.bytes.len(), 72);
        assert_eq!(w.verifier().verify(&cp(), &sig, 1_700_000_000, 0), Ok(1_700_000_000));
    }

    #[test]
    fn cosignature_key_id_uses_type_byte_4_not_1() {
        let key = SigningKey::from_bytes(&[8; 32]);
        let plain = Ed25519Signer::new("witness.example.com/w1", key).unwrap();
        assert_ne!(plain.key_id(), witness().key_id());
        let vk = witness().verifier().to_vkey();
        assert_eq!(CosignatureVerifier::from_vkey(&vk).unwrap(), witness().verifier());
        assert!(matches!(
            note::Ed25519Verifier::from_vkey(&vk),
            Err(KeyParseError::WrongType { got: 4, want: 1, .. })
        ));
    }

    #[test]
    fn cosignature_on_another_checkpoint_is_refused() {
        let w = witness();
        let sig = w.cosign(&cp(), 10).unwrap();
        let other =
            Checkpoint::new("example.com/behind-the-sofa", 20852164, Hash([3; 32])).unwrap();
        assert_eq!(
            w.verifier().verify(&other, &sig, 10, 0),
            Err(CosignatureError::BadSignature {
                name: "witness.example.com/w1".into(),
                key_id: w.key_id(),
                timestamp: 10
            })
        );
    }

    #[test]
    fn cosignature_dated_after_now_plus_skew_is_refused() {
        let w = witness();
        let sig = w.cosign(&cp(), 1000).unwrap();
        assert!(w.verifier().verify(&cp(), &sig, 990, 10).is_ok());
        assert!(matches!(
            w.verifier().verify(&cp(), &sig, 989, 10),
            Err(CosignatureError::FromTheFuture { timestamp: 1000, now: 989, .. })
        ));
    }

    #[test]
    fn log_signature_and_cosignature_verify_together_in_one_note() {
        let log =
            Ed25519Signer::new("example.com/behind-the-sofa", SigningKey::from_bytes(&[1; 32]))
                .unwrap();
        let mut signed = SignedCheckpoint::sign(cp(), &log).unwrap();
        signed.add_signature(witness().cosign(&cp(), 5).unwrap());
        let note = Note::parse(&signed.to_bytes()).unwrap();
        let (lv, wv) = (log.verifier(), witness().verifier());
        assert_eq!(note.verify(&[&lv, &wv]).unwrap().len(), 2);
    }
}
