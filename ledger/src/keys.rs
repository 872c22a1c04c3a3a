//! Key generation and key files: the one module of this crate that does I/O.
//!
//! # File formats (one line, newline-terminated, file mode 0600)
//!
//! - Ed25519 note signer (log key): `PRIVATE+KEY+<name>+<hex key ID>+base64(0x01 || seed)`, the
//!   signed-note private key format, so Go's `note` tools read it. Key ID as in [`note::key_id`].
//! - Ed25519 cosigner (witness key): the same with type byte 0x04.
//! - X25519 (to receive data addressed to us):
//!   `PRIVATE+X25519+<name>+<hex key ID>+base64(secret)`; public form
//!   `<name>+<hex key ID>+base64(public)`. Key ID = `SHA-256(name || 0x0A || 0xff ||
//!   "iov-x25519" || public)[:4]`: type 0xff is the spec's "longer identifier follows" slot.
//!
//! Files are written atomically (temp file, fsync, link into place, fsync dir) and never over
//! an existing key. Loading refuses a file that group or others can read or write.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::SigningKey;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::cosignature::{Cosigner, COSIGNATURE_TYPE};
use crate::note::{self, Ed25519Signer, KeyParseError, ED25519_TYPE};

const ED25519_PREFIX: &str = "PRIVATE+KEY+";
const X25519_PREFIX: &str = "PRIVATE+X25519+";
const X25519_TYPE: u8 = 0xff;
const X25519_LABEL: &[u8] = b"iov-x25519";
/// Key files are one short line; anything bigger is not ours.
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// Why a key could not be made, saved or loaded. Never contains key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error("key file {path} has mode {mode:04o}: group/others may access it; chmod 600 it")]
    InsecurePermissions { path: PathBuf, mode: u32 },
    #[error("key file {path} already exists; refusing to overwrite a key")]
    Exists { path: PathBuf },
    #[error("key file {path} is not a regular file of at most {MAX_KEY_FILE_BYTES} bytes")]
    NotAKeyFile { path: PathBuf },
    #[error("key does not start with {want:?}")]
    WrongPrefix { want: &'static str },
    #[error("private key {name:?} is malformed: {what}")]
    Malformed { name: String, what: &'static str },
    #[error("private key: {0}")]
    Parse(#[from] KeyParseError),
    #[error("key file {path}: {source}")]
    InFile { path: PathBuf, source: Box<KeyError> },
    #[error("operating-system randomness failed: {reason}")]
    Random { reason: String },
}

fn random_32() -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let mut b = Zeroizing::new([0u8; 32]);
    getrandom::fill(b.as_mut()).map_err(|e| KeyError::Random { reason: e.to_string() })?;
    Ok(b)
}

/// A fresh log signing key.
pub fn generate_signer(name: &str) -> Result<Ed25519Signer, KeyError> {
    Ok(Ed25519Signer::new(name, SigningKey::from_bytes(&*random_32()?))?)
}

/// A fresh witness cosigning key.
pub fn generate_cosigner(name: &str) -> Result<Cosigner, KeyError> {
    Ok(Cosigner::new(name, SigningKey::from_bytes(&*random_32()?))?)
}

/// Display fingerprint of a key: its 8-hex-digit key ID, as in vkeys and signature lines.
pub fn fingerprint(key_id: u32) -> String {
    format!("{key_id:08x}")
}

fn encode_private(prefix: &str, name: &str, key_id: u32, material: &[u8]) -> Zeroizing<String> {
    let b64 = Zeroizing::new(STANDARD.encode(material));
    Zeroizing::new(format!("{prefix}{name}+{key_id:08x}+{}\n", b64.as_str()))
}

/// Splits a private key line into (name, claimed key ID, material) without echoing secrets.
fn decode_private<'a>(
    s: &'a str,
    prefix: &'static str,
) -> Result<(&'a str, u32, Zeroizing<Vec<u8>>), KeyError> {
    let s = s.strip_suffix('\n').unwrap_or(s);
    let rest = s.strip_prefix(prefix).ok_or(KeyError::WrongPrefix { want: prefix })?;
    let mut parts = rest.splitn(3, '+');
    let (Some(name), Some(hex), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(KeyParseError::Shape { want: "PRIVATE+<kind>+name+keyid+key" }.into());
    };
    if !note::is_valid_key_name(name) {
        return Err(KeyParseError::BadName { name: name.to_owned() }.into());
    }
    let bad_id = || KeyParseError::BadKeyId { name: name.to_owned(), text: hex.to_owned() };
    if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(bad_id().into());
    }
    let id = u32::from_str_radix(hex, 16).map_err(|_| bad_id())?;
    let raw = Zeroizing::new(
        STANDARD
            .decode(b64)
            .map_err(|_| KeyError::Malformed { name: name.to_owned(), what: "not base64" })?,
    );
    Ok((name, id, raw))
}

fn ed25519_seed(name: &str, raw: &[u8], sig_type: u8) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let malformed = |what| KeyError::Malformed { name: name.to_owned(), what };
    let (&ty, seed) = raw.split_first().ok_or(malformed("empty key"))?;
    if ty != sig_type {
        return Err(
            KeyParseError::WrongType { name: name.to_owned(), got: ty, want: sig_type }.into()
        );
    }
    let seed: [u8; 32] = seed.try_into().map_err(|_| malformed("seed is not 32 bytes"))?;
    Ok(Zeroizing::new(seed))
}

fn check_id(name: &str, claimed: u32, computed: u32) -> Result<(), KeyError> {
    if claimed != computed {
        return Err(
            KeyParseError::KeyIdMismatch { name: name.to_owned(), claimed, computed }.into()
        );
    }
    Ok(())
}

/// `PRIVATE+KEY+name+id+base64(0x01||seed)\n`. Zeroized on drop.
pub fn encode_signer(s: &Ed25519Signer) -> Zeroizing<String> {
    let mut m = Zeroizing::new(vec![ED25519_TYPE]);
    m.extend_from_slice(s.signing_key().as_bytes());
    encode_private(ED25519_PREFIX, s.name(), s.key_id(), &m)
}

pub fn parse_signer(text: &str) -> Result<Ed25519Signer, KeyError> {
    let (name, claimed, raw) = decode_private(text, ED25519_PREFIX)?;
    let seed = ed25519_seed(name, &raw, ED25519_TYPE)?;
    let s = Ed25519Signer::new(name, SigningKey::from_bytes(&seed))?;
    check_id(name, claimed, s.key_id())?;
    Ok(s)
}

/// `PRIVATE+KEY+name+id+base64(0x04||seed)\n`.
pub fn encode_cosigner(c: &Cosigner) -> Zeroizing<String> {
    let mut m = Zeroizing::new(vec![COSIGNATURE_TYPE]);
    m.extend_from_slice(c.signing_key().as_bytes());
    encode_private(ED25519_PREFIX, c.name(), c.key_id(), &m)
}

pub fn parse_cosigner(text: &str) -> Result<Cosigner, KeyError> {
    let (name, claimed, raw) = decode_private(text, ED25519_PREFIX)?;
    let seed = ed25519_seed(name, &raw, COSIGNATURE_TYPE)?;
    let c = Cosigner::new(name, SigningKey::from_bytes(&seed))?;
    check_id(name, claimed, c.key_id())?;
    Ok(c)
}

/// An X25519 key pair with a name (the HPKE recipient key of a gateway or ledger lane).
/// Debug never shows the secret.
#[derive(Clone)]
pub struct X25519Key {
    name: String,
    key_id: u32,
    secret: StaticSecret,
}

impl fmt::Debug for X25519Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X25519Key")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// `SHA-256(name || 0x0A || 0xff || "iov-x25519" || public)[:4]`.
pub fn x25519_key_id(name: &str, public: &PublicKey) -> u32 {
    let mut m = X25519_LABEL.to_vec();
    m.extend_from_slice(public.as_bytes());
    note::key_id(name, X25519_TYPE, &m)
}

impl X25519Key {
    pub fn new(name: &str, secret: StaticSecret) -> Result<X25519Key, KeyError> {
        if !note::is_valid_key_name(name) {
            return Err(KeyParseError::BadName { name: name.to_owned() }.into());
        }
        let key_id = x25519_key_id(name, &PublicKey::from(&secret));
        Ok(X25519Key { name: name.to_owned(), key_id, secret })
    }

    pub fn generate(name: &str) -> Result<X25519Key, KeyError> {
        let bytes = random_32()?;
        X25519Key::new(name, StaticSecret::from(*bytes))
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn key_id(&self) -> u32 {
        self.key_id
    }
    pub fn public(&self) -> PublicKey {
        PublicKey::from(&self.secret)
    }
    /// The secret, for the HPKE layer.
    pub fn secret(&self) -> &StaticSecret {
        &self.secret
    }

    /// `name+hex(id)+base64(public)`: what gets published.
    pub fn public_text(&self) -> String {
        format!("{}+{:08x}+{}", self.name, self.key_id, STANDARD.encode(self.public().as_bytes()))
    }

    /// `PRIVATE+X25519+name+id+base64(secret)\n`.
    pub fn encode(&self) -> Zeroizing<String> {
        let secret = Zeroizing::new(self.secret.to_bytes());
        encode_private(X25519_PREFIX, &self.name, self.key_id, secret.as_ref())
    }

    pub fn parse(text: &str) -> Result<X25519Key, KeyError> {
        let (name, claimed, raw) = decode_private(text, X25519_PREFIX)?;
        let secret: [u8; 32] = raw.as_slice().try_into().map_err(|_| KeyError::Malformed {
            name: name.to_owned(),
            what: "secret is not 32 bytes",
        })?;
        let k = X25519Key::new(name, StaticSecret::from(secret))?;
        check_id(name, claimed, k.key_id)?;
        Ok(k)
    }
}

/// Writes `contents` to a new file at `path` with mode 0600, atomically: it either appears
/// complete or not at all, and an existing file is never replaced.
pub fn write_secret_file(path: &Path, contents: &[u8]) -> Result<(), KeyError> {
    let io = |op, source| KeyError::Io { op, path: path.to_owned(), source };
    if path.exists() {
        return Err(KeyError::Exists { path: path.to_owned() });
    }
    let file_name = path.file_name().ok_or(KeyError::NotAKeyFile { path: path.to_owned() })?;
    let tmp =
        path.with_file_name(format!(".{}.tmp-{}", file_name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io("creating temp file for", e))?;
        f.write_all(contents).map_err(|e| io("writing", e))?;
        f.sync_all().map_err(|e| io("syncing", e))?;
        // link(2) fails if `path` exists: no clobbering even in a race.
        fs::hard_link(&tmp, path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::Exists { path: path.to_owned() }
            } else {
                io("linking into place", e)
            }
        })?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io("syncing directory of", e))?;
        }
        Ok(())
    })();
    let _ = fs::remove_file(&tmp);
    result
}

/// Reads a key file after checking it is a small regular file that only its owner can access.
pub fn read_secret_file(path: &Path) -> Result<Zeroizing<String>, KeyError> {
    let mut f = File::open(path).map_err(|source| KeyError::Io {
        op: "opening",
        path: path.to_owned(),
        source,
    })?;
    let meta = f.metadata().map_err(|source| KeyError::Io {
        op: "inspecting",
        path: path.to_owned(),
        source,
    })?;
    if !meta.is_file() || meta.len() > MAX_KEY_FILE_BYTES {
        return Err(KeyError::NotAKeyFile { path: path.to_owned() });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::InsecurePermissions { path: path.to_owned(), mode });
    }
    let mut bytes = Zeroizing::new(Vec::new());
    f.read_to_end(&mut bytes).map_err(|source| KeyError::Io {
        op: "reading",
        path: path.to_owned(),
        source,
    })?;
    let text = String::from_utf8(bytes.to_vec())
        .map_err(|_| KeyError::NotAKeyFile { path: path.to_owned() })?;
    Ok(Zeroizing::new(text))
}

fn in_file<T>(path: &Path, r: Result<T, KeyError>) -> Result<T, KeyError> {
    r.map_err(|e| KeyError::InFile { path: path.to_owned(), source: Box::new(e) })
}

pub fn save_signer(path: &Path, s: &Ed25519Signer) -> Result<(), KeyError> {
    write_secret_file(path, encode_signer(s).as_bytes())
}

pub fn load_signer(path: &Path) -> Result<Ed25519Signer, KeyError> {
    let text = read_secret_file(path)?;
    in_file(path, parse_signer(&text))
}

pub fn save_cosigner(path: &Path, c: &Cosigner) -> Result<(), KeyError> {
    write_secret_file(path, encode_cosigner(c).as_bytes())
}

pub fn load_cosigner(path: &Path) -> Result<Cosigner, KeyError> {
    let text = read_secret_file(path)?;
    in_file(path, parse_cosigner(&text))
}

pub fn save_x25519(path: &Path, k: &X25519Key) -> Result<(), KeyError> {
    write_secret_file(path, k.encode().as_bytes())
}

pub fn load_x25519(path: &Path) -> Result<X25519Key, KeyError> {
    let text = read_secret_file(path)?;
    in_file(path, X25519Key::parse(&text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::{Note, Verifier as _};

    #[test]
    fn saved_signer_loads_back_with_mode_0600_and_signs_verifiably() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.key");
        let s = generate_signer("example.com/log").unwrap();
        save_signer(&path, &s).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let back = load_signer(&path).unwrap();
        assert_eq!(back.key_id(), s.key_id());
        let mut n = Note::new("hi\n").unwrap();
        n.sign(&back);
        n.verify(&[&s.verifier()]).unwrap();
        let leftovers = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "temp file left behind");
    }

    #[test]
    fn group_readable_key_file_is_refused_naming_path_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.key");
        save_x25519(&path, &X25519Key::generate("gw1").unwrap()).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let err = load_x25519(&path).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, KeyError::InsecurePermissions { mode: 0o640, .. }), "{msg}");
        assert!(msg.contains("x.key") && msg.contains("0640"), "{msg}");
    }

    #[test]
    fn saving_over_an_existing_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let s = generate_signer("a").unwrap();
        save_signer(&path, &s).unwrap();
        assert!(matches!(save_signer(&path, &s), Err(KeyError::Exists { .. })));
        assert_eq!(load_signer(&path).unwrap().key_id(), s.key_id());
    }

    #[test]
    fn x25519_and_cosigner_keys_round_trip_through_files() {
        let dir = tempfile::tempdir().unwrap();
        let x = X25519Key::generate("gw1.example/lane").unwrap();
        save_x25519(&dir.path().join("x"), &x).unwrap();
        let xb = load_x25519(&dir.path().join("x")).unwrap();
        assert_eq!(xb.public(), x.public());
        assert_eq!(xb.public_text(), x.public_text());
        let c = generate_cosigner("witness.example/w").unwrap();
        save_cosigner(&dir.path().join("c"), &c).unwrap();
        assert_eq!(load_cosigner(&dir.path().join("c")).unwrap().verifier(), c.verifier());
    }

    #[test]
    fn go_note_private_key_format_is_read() {
        // Seed of all 0x2a bytes, encoded the way Go's note.GenerateKey writes it.
        let s = Ed25519Signer::new("example.com/foo", SigningKey::from_bytes(&[0x2a; 32])).unwrap();
        let text = encode_signer(&s);
        assert!(text.starts_with(&format!("PRIVATE+KEY+example.com/foo+{:08x}+AS", s.key_id())));
        assert_eq!(parse_signer(&text).unwrap().verifier(), s.verifier());
    }

    #[test]
    fn tampered_private_key_is_refused_as_id_mismatch_without_echoing_secrets() {
        let s = Ed25519Signer::new("n", SigningKey::from_bytes(&[1; 32])).unwrap();
        let text = encode_signer(&s).replacen("+n+", "+m+", 1);
        let err = parse_signer(&text).unwrap_err();
        assert!(matches!(err, KeyError::Parse(KeyParseError::KeyIdMismatch { .. })), "{err}");
        let b64 = text.rsplit('+').next().unwrap().trim().to_owned();
        assert!(!err.to_string().contains(&b64));
    }

    #[test]
    fn debug_output_of_private_keys_is_redacted() {
        let x = X25519Key::new("gw", StaticSecret::from([9u8; 32])).unwrap();
        let c = Cosigner::new("w", SigningKey::from_bytes(&[9; 32])).unwrap();
        for dbg in [format!("{x:?}"), format!("{c:?}")] {
            assert!(dbg.contains("<redacted>") && !dbg.contains("9, 9"), "{dbg}");
        }
        assert_eq!(fingerprint(c.verifier().key_id()), format!("{:08x}", c.key_id()));
    }
}
