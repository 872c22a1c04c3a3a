//! C2SP signed notes (`fixtures/specs/c2sp-signed-note.md`): text, a blank line, signature lines.
//!
//! The text is untrusted until [`Note::verify`] says a known key signed it; parsing only checks
//! the framing. Verification follows the spec: signatures from unknown keys are ignored, a bad
//! signature from a known key rejects the whole note, and at least one known key must verify.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// Signature type byte for plain Ed25519 note signatures.
pub const ED25519_TYPE: u8 = 0x01;

/// Largest note we parse. The spec asks verifiers for a limit; 1 MiB leaves room for many
/// post-quantum signatures.
pub const MAX_NOTE_BYTES: usize = 1 << 20;

/// Most signature lines we parse (the spec requires accepting at least 16).
pub const MAX_SIGNATURES: usize = 100;

const SIG_PREFIX: &str = "\u{2014} ";

/// Why a note could not be parsed, built, signed or verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    #[error("note is {len} bytes, limit {MAX_NOTE_BYTES}")]
    TooLarge { len: usize },
    #[error("note is not UTF-8 (first bad byte at offset {offset})")]
    NotUtf8 { offset: usize },
    #[error("note contains control character {byte:#04x} at offset {offset}")]
    ControlCharacter { offset: usize, byte: u8 },
    #[error("note text must be non-empty and end with a newline")]
    TextNotTerminated,
    #[error("note has no blank line separating text from signatures")]
    MissingSignatureSeparator,
    #[error("note has no signature lines")]
    NoSignatures,
    #[error("note has {count} signatures, limit {MAX_SIGNATURES}")]
    TooManySignatures { count: usize },
    #[error("signature line {line} does not start with an em dash and a space")]
    SignatureLinePrefix { line: usize },
    #[error("signature line {line} has no space between key name and signature")]
    SignatureLineShape { line: usize },
    #[error("key name {name:?} is empty or contains a space or '+'")]
    BadKeyName { name: String },
    #[error("signature line {line} for key {name:?} is not valid base64: {reason}")]
    SignatureBase64 { line: usize, name: String, reason: String },
    #[error("signature line {line} for key {name:?} is {len} bytes, need at least 5")]
    SignatureTooShort { line: usize, name: String, len: usize },
    #[error("signature by known key {name}+{key_id:08x} does not verify")]
    BadSignature { name: String, key_id: u32 },
    #[error("no signature on the note is from a known key ({count} signatures ignored)")]
    NoKnownSignature { count: usize },
}

/// Why a verifier key (vkey) or signer key string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyParseError {
    #[error("key string does not have the {want} '+'-separated parts")]
    Shape { want: &'static str },
    #[error("key name {name:?} is empty or contains a space or '+'")]
    BadName { name: String },
    #[error("key ID {text:?} of key {name:?} is not 8 lowercase hex digits")]
    BadKeyId { name: String, text: String },
    #[error("key material of key {name:?} is not valid base64: {reason}")]
    Base64 { name: String, reason: String },
    #[error("key {name:?} has type byte {got:#04x}, want {want:#04x}")]
    WrongType { name: String, got: u8, want: u8 },
    #[error("key {name:?} material is {len} bytes, want {want}")]
    Length { name: String, len: usize, want: usize },
    #[error("key {name:?} is not a valid Ed25519 public key")]
    InvalidPublicKey { name: String },
    #[error("key {name:?} claims ID {claimed:08x} but its material hashes to {computed:08x}")]
    KeyIdMismatch { name: String, claimed: u32, computed: u32 },
}

/// One signature line: key name, key ID, and the signature bytes after the ID.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Signature {
    pub name: String,
    pub key_id: u32,
    pub bytes: Vec<u8>,
}

impl Signature {
    /// The line as written in a note, without the trailing newline.
    pub fn to_line(&self) -> String {
        let mut raw = Vec::with_capacity(4 + self.bytes.len());
        raw.extend_from_slice(&self.key_id.to_be_bytes());
        raw.extend_from_slice(&self.bytes);
        format!("{SIG_PREFIX}{} {}", self.name, STANDARD.encode(raw))
    }
}

/// A key that can check signatures on note text. Implemented by [`Ed25519Verifier`] and the
/// cosignature verifier, so one verifier set can hold both.
pub trait Verifier {
    fn name(&self) -> &str;
    fn key_id(&self) -> u32;
    /// True when `signature` (the bytes after the key ID) is valid over `text`.
    fn verify(&self, text: &[u8], signature: &[u8]) -> bool;
}

/// A parsed signed note. Its text is not trusted until [`Note::verify`] succeeds.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Note {
    text: String,
    signatures: Vec<Signature>,
}

/// `SHA-256(name || 0x0A || type || public key)[:4]`, big-endian: the spec's key ID.
pub fn key_id(name: &str, sig_type: u8, public_key: &[u8]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', sig_type]);
    h.update(public_key);
    let d: [u8; 32] = h.finalize().into();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// Key names must be non-empty with no Unicode space and no '+'.
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

fn check_chars(s: &str) -> Result<(), NoteError> {
    match s.bytes().enumerate().find(|&(_, b)| b < 0x20 && b != b'\n') {
        Some((offset, byte)) => Err(NoteError::ControlCharacter { offset, byte }),
        None => Ok(()),
    }
}

impl Note {
    /// An unsigned note over `text` (must end with a newline, no control characters, and no
    /// blank final line, which would be mistaken for the separator).
    pub fn new(text: impl Into<String>) -> Result<Note, NoteError> {
        let text = text.into();
        if !text.ends_with('\n') || text.ends_with("\n\n") || text == "\n" {
            return Err(NoteError::TextNotTerminated);
        }
        check_chars(&text)?;
        Ok(Note { text, signatures: Vec::new() })
    }

    /// Parses a signed note from untrusted bytes. Never panics.
    pub fn parse(bytes: &[u8]) -> Result<Note, NoteError> {
        if bytes.len() > MAX_NOTE_BYTES {
            return Err(NoteError::TooLarge { len: bytes.len() });
        }
        let s = std::str::from_utf8(bytes)
            .map_err(|e| NoteError::NotUtf8 { offset: e.valid_up_to() })?;
        check_chars(s)?;
        // The text ends at the last blank line: signature lines are never empty.
        let sep = s.rfind("\n\n").ok_or(NoteError::MissingSignatureSeparator)?;
        let text = &s[..=sep];
        if text == "\n" {
            return Err(NoteError::TextNotTerminated);
        }
        let sigs = &s[sep + 2..];
        if sigs.is_empty() {
            return Err(NoteError::NoSignatures);
        }
        let Some(sigs) = sigs.strip_suffix('\n') else {
            return Err(NoteError::TextNotTerminated);
        };
        let mut signatures = Vec::new();
        for (i, line) in sigs.split('\n').enumerate() {
            let line_no = i + 1;
            if signatures.len() == MAX_SIGNATURES {
                return Err(NoteError::TooManySignatures { count: sigs.split('\n').count() });
            }
            let rest = line
                .strip_prefix(SIG_PREFIX)
                .ok_or(NoteError::SignatureLinePrefix { line: line_no })?;
            let (name, b64) =
                rest.split_once(' ').ok_or(NoteError::SignatureLineShape { line: line_no })?;
            if !is_valid_key_name(name) {
                return Err(NoteError::BadKeyName { name: name.to_owned() });
            }
            let raw = STANDARD.decode(b64).map_err(|e| NoteError::SignatureBase64 {
                line: line_no,
                name: name.to_owned(),
                reason: e.to_string(),
            })?;
            if raw.len() < 5 {
                return Err(NoteError::SignatureTooShort {
                    line: line_no,
                    name: name.to_owned(),
                    len: raw.len(),
                });
            }
            let key_id = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
            signatures.push(Signature { name: name.to_owned(), key_id, bytes: raw[4..].to_vec() });
        }
        Ok(Note { text: text.to_owned(), signatures })
    }

    /// The note text, including its final newline. Untrusted until verified.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn signatures(&self) -> &[Signature] {
        &self.signatures
    }

    /// Adds a signature line (e.g. a cosignature made elsewhere).
    pub fn add_signature(&mut self, sig: Signature) {
        self.signatures.push(sig);
    }

    /// Signs the text with `signer` and appends the signature line.
    pub fn sign(&mut self, signer: &Ed25519Signer) {
        let sig = signer.sign(self.text.as_bytes());
        self.signatures.push(sig);
    }

    /// Verifies against known keys. Returns the signatures that verified (at least one).
    pub fn verify(&self, verifiers: &[&dyn Verifier]) -> Result<Vec<&Signature>, NoteError> {
        let mut verified = Vec::new();
        for sig in &self.signatures {
            let Some(v) =
                verifiers.iter().find(|v| v.name() == sig.name && v.key_id() == sig.key_id)
            else {
                continue; // Unknown key: ignored, as the spec requires.
            };
            if !v.verify(self.text.as_bytes(), &sig.bytes) {
                return Err(NoteError::BadSignature { name: sig.name.clone(), key_id: sig.key_id });
            }
            verified.push(sig);
        }
        if verified.is_empty() {
            return Err(NoteError::NoKnownSignature { count: self.signatures.len() });
        }
        Ok(verified)
    }

    /// The note in wire form: text, blank line, one line per signature.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)?;
        f.write_str("\n")?;
        for s in &self.signatures {
            writeln!(f, "{}", s.to_line())?;
        }
        Ok(())
    }
}

/// Splits `name+hex+base64` (base64 may itself contain '+').
pub(crate) fn split_key<'a>(
    s: &'a str,
    want: &'static str,
) -> Result<(&'a str, u32, Vec<u8>), KeyParseError> {
    let mut parts = s.splitn(3, '+');
    let (Some(name), Some(hex), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(KeyParseError::Shape { want });
    };
    if !is_valid_key_name(name) {
        return Err(KeyParseError::BadName { name: name.to_owned() });
    }
    let bad_id = || KeyParseError::BadKeyId { name: name.to_owned(), text: hex.to_owned() };
    if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(bad_id());
    }
    let id = u32::from_str_radix(hex, 16).map_err(|_| bad_id())?;
    let raw = STANDARD
        .decode(b64)
        .map_err(|e| KeyParseError::Base64 { name: name.to_owned(), reason: e.to_string() })?;
    Ok((name, id, raw))
}

/// Parses `type || 32-byte key` material, checking type, length and the claimed key ID.
pub(crate) fn ed25519_material(
    name: &str,
    raw: &[u8],
    sig_type: u8,
) -> Result<[u8; 32], KeyParseError> {
    let (&ty, key) = raw.split_first().ok_or(KeyParseError::Length {
        name: name.to_owned(),
        len: 0,
        want: 33,
    })?;
    if ty != sig_type {
        return Err(KeyParseError::WrongType { name: name.to_owned(), got: ty, want: sig_type });
    }
    let key: [u8; 32] = key.try_into().map_err(|_| KeyParseError::Length {
        name: name.to_owned(),
        len: raw.len(),
        want: 33,
    })?;
    Ok(key)
}

/// Ed25519 note verifier (signature type 0x01), from a vkey.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Ed25519Verifier {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl Ed25519Verifier {
    pub fn new(name: &str, key: VerifyingKey) -> Result<Ed25519Verifier, KeyParseError> {
        if !is_valid_key_name(name) {
            return Err(KeyParseError::BadName { name: name.to_owned() });
        }
        let key_id = key_id(name, ED25519_TYPE, key.as_bytes());
        Ok(Ed25519Verifier { name: name.to_owned(), key_id, key })
    }

    /// Parses `name+hex(keyid)+base64(0x01 || pubkey)`; the key ID must match the key.
    pub fn from_vkey(vkey: &str) -> Result<Ed25519Verifier, KeyParseError> {
        let (name, claimed, raw) = split_key(vkey, "name+keyid+key")?;
        let key = ed25519_material(name, &raw, ED25519_TYPE)?;
        let key = VerifyingKey::from_bytes(&key)
            .map_err(|_| KeyParseError::InvalidPublicKey { name: name.to_owned() })?;
        let v = Ed25519Verifier::new(name, key)?;
        if v.key_id != claimed {
            return Err(KeyParseError::KeyIdMismatch {
                name: name.to_owned(),
                claimed,
                computed: v.key_id,
            });
        }
        Ok(v)
    }

    /// `name+hex(keyid)+base64(0x01 || pubkey)`.
    pub fn to_vkey(&self) -> String {
        let mut raw = vec![ED25519_TYPE];
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.key_id, STANDARD.encode(raw))
    }

    pub fn public_key(&self) -> &VerifyingKey {
        &self.key
    }
}

impl Verifier for Ed25519Verifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.key_id
    }
    fn verify(&self, text: &[u8], signature: &[u8]) -> bool {
        let Ok(sig) = ed25519_dalek::Signature::from_slice(signature) else {
            return false;
        };
        self.key.verify_strict(text, &sig).is_ok()
    }
}

/// Ed25519 note signer. Debug never shows the private key.
#[derive(Clone)]
pub struct Ed25519Signer {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl fmt::Debug for Ed25519Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ed25519Signer")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Ed25519Signer {
    pub fn new(name: &str, key: SigningKey) -> Result<Ed25519Signer, KeyParseError> {
        if !is_valid_key_name(name) {
            return Err(KeyParseError::BadName { name: name.to_owned() });
        }
        let key_id = key_id(name, ED25519_TYPE, key.verifying_key().as_bytes());
        Ok(Ed25519Signer { name: name.to_owned(), key_id, key })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The matching verifier (same name, ID and public key).
    pub fn verifier(&self) -> Ed25519Verifier {
        Ed25519Verifier {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }

    /// Signs `text` and returns the signature line's contents.
    pub fn sign(&self, text: &[u8]) -> Signature {
        let sig = self.key.sign(text);
        Signature { name: self.name.clone(), key_id: self.key_id, bytes: sig.to_bytes().to_vec() }
    }

    /// The raw key, for [`crate::keys`] to encode. Crate-private so it cannot leak by accident.
    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verbatim from fixtures/specs/c2sp-signed-note.md, "Example".
    const SPEC_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
    const SPEC_NOTE: &str = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

    fn signer(name: &str, seed: u8) -> Ed25519Signer {
        Ed25519Signer::new(name, SigningKey::from_bytes(&[seed; 32])).unwrap()
    }

    #[test]
    fn spec_example_note_verifies_with_spec_vkey() {
        let v = Ed25519Verifier::from_vkey(SPEC_VKEY).unwrap();
        assert_eq!(v.key_id(), 0x530d903a);
        assert_eq!(v.to_vkey(), SPEC_VKEY);
        let note = Note::parse(SPEC_NOTE.as_bytes()).unwrap();
        assert_eq!(note.text(), "This is an example message.\n");
        let ok = note.verify(&[&v]).unwrap();
        assert_eq!(ok.len(), 1);
        assert_eq!(note.to_string(), SPEC_NOTE);
    }

    #[test]
    fn spec_example_with_altered_text_is_rejected_as_bad_signature() {
        let v = Ed25519Verifier::from_vkey(SPEC_VKEY).unwrap();
        let altered = SPEC_NOTE.replacen("example", "exemple", 1);
        let err = Note::parse(altered.as_bytes()).unwrap().verify(&[&v]).unwrap_err();
        assert_eq!(
            err,
            NoteError::BadSignature { name: "example.com/foo".into(), key_id: 0x530d903a }
        );
    }

    #[test]
    fn signatures_from_unknown_keys_are_ignored_but_one_known_is_required() {
        let (a, b) = (signer("a.example/log", 1), signer("b.example/w", 2));
        let mut n = Note::new("hello\n\nworld\n").unwrap();
        n.sign(&a);
        n.sign(&b);
        let parsed = Note::parse(&n.to_bytes()).unwrap();
        assert_eq!(parsed, n);
        assert_eq!(parsed.verify(&[&a.verifier()]).unwrap().len(), 1);
        let other = signer("c.example/x", 3).verifier();
        assert_eq!(parsed.verify(&[&other]), Err(NoteError::NoKnownSignature { count: 2 }));
    }

    #[test]
    fn same_name_different_key_is_treated_as_unknown() {
        let mut n = Note::new("t\n").unwrap();
        n.sign(&signer("log", 1));
        let impostor = signer("log", 9).verifier();
        assert_eq!(n.verify(&[&impostor]), Err(NoteError::NoKnownSignature { count: 1 }));
    }

    #[test]
    fn vkey_with_wrong_key_id_is_refused() {
        let bad = SPEC_VKEY.replace("530d903a", "530d903b");
        assert!(matches!(
            Ed25519Verifier::from_vkey(&bad),
            Err(KeyParseError::KeyIdMismatch { claimed: 0x530d903b, computed: 0x530d903a, .. })
        ));
    }

    type Case = (&'static [u8], fn(&NoteError) -> bool);

    #[test]
    fn malformed_notes_are_refused_with_a_reason() {
        let cases: &[Case] = &[
            (b"no separator\n", |e| matches!(e, NoteError::MissingSignatureSeparator)),
            (b"text\n\n", |e| matches!(e, NoteError::NoSignatures)),
            ("\n\n\u{2014} a AAAAAAA=\n".as_bytes(), |e| matches!(e, NoteError::TextNotTerminated)),
            (b"text\n\n- a AAAAAAA=\n", |e| {
                matches!(e, NoteError::SignatureLinePrefix { line: 1 })
            }),
            (b"te\x01xt\n\n", |e| matches!(e, NoteError::ControlCharacter { offset: 2, byte: 1 })),
            (b"text\xff\n\n", |e| matches!(e, NoteError::NotUtf8 { offset: 4 })),
            ("t\n\n\u{2014} a AAAA\n".as_bytes(), |e| {
                matches!(e, NoteError::SignatureTooShort { .. })
            }),
            ("t\n\n\u{2014} a+b AAAAAAA=\n".as_bytes(), |e| {
                matches!(e, NoteError::BadKeyName { .. })
            }),
            ("t\n\n\u{2014} a AAAAAAA=".as_bytes(), |e| matches!(e, NoteError::TextNotTerminated)),
        ];
        for (bytes, want) in cases {
            let err = Note::parse(bytes).unwrap_err();
            assert!(want(&err), "{:?} gave {err:?}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn signer_debug_output_redacts_the_private_key() {
        let s = signer("log", 7);
        let dbg = format!("{s:?}");
        assert!(dbg.contains("<redacted>"));
        assert!(!dbg.contains(&format!("{:?}", [7u8; 32])));
    }
}
