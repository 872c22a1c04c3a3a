//! C2SP tlog-checkpoint (`fixtures/specs/c2sp-tlog-checkpoint.md`): origin, tree size, root hash,
//! optional extension lines, carried as the text of a signed note.
//!
//! Parsing is strict (anything the spec forbids is refused) because two encodings of one tree
//! head would let a log show different bytes to different verifiers.

use std::fmt;

use crate::merkle::Hash;
use crate::note::{Ed25519Signer, Note, NoteError, Signature, Verifier};

/// Why a checkpoint text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    #[error("checkpoint text must end with a newline")]
    NotTerminated,
    #[error("checkpoint has {lines} lines, needs origin, size and root hash")]
    TooFewLines { lines: usize },
    #[error("checkpoint line {line} is empty")]
    EmptyLine { line: usize },
    #[error("checkpoint origin {origin:?} is not allowed (control character)")]
    BadOrigin { origin: String },
    #[error("checkpoint tree size {text:?} is not a decimal u64 without leading zeros")]
    BadSize { text: String },
    #[error("checkpoint root hash {text:?} is not base64 of 32 bytes")]
    BadRoot { text: String },
    #[error("checkpoint extension line {line} contains a control character")]
    BadExtension { line: usize },
    #[error("checkpoint note: {0}")]
    Note(#[from] NoteError),
}

/// A tree head: which log, how many leaves, what root.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Checkpoint {
    origin: String,
    size: u64,
    root: Hash,
    extensions: Vec<String>,
}

fn line_ok(s: &str) -> bool {
    !s.is_empty() && !s.bytes().any(|b| b < 0x20)
}

impl Checkpoint {
    /// A checkpoint without extension lines. The origin must be non-empty, one line.
    pub fn new(origin: &str, size: u64, root: Hash) -> Result<Checkpoint, CheckpointError> {
        Checkpoint::with_extensions(origin, size, root, Vec::new())
    }

    /// A checkpoint with extension lines (NOT RECOMMENDED by the spec: monitors cannot audit
    /// them); each must be a non-empty single line.
    pub fn with_extensions(
        origin: &str,
        size: u64,
        root: Hash,
        extensions: Vec<String>,
    ) -> Result<Checkpoint, CheckpointError> {
        if !line_ok(origin) {
            return Err(CheckpointError::BadOrigin { origin: origin.to_owned() });
        }
        if let Some(i) = extensions.iter().position(|e| !line_ok(e)) {
            return Err(CheckpointError::BadExtension { line: i + 4 });
        }
        Ok(Checkpoint { origin: origin.to_owned(), size, root, extensions })
    }

    /// Strict parse of a checkpoint note text.
    pub fn parse(text: &str) -> Result<Checkpoint, CheckpointError> {
        let body = text.strip_suffix('\n').ok_or(CheckpointError::NotTerminated)?;
        let lines: Vec<&str> = body.split('\n').collect();
        if lines.len() < 3 {
            return Err(CheckpointError::TooFewLines { lines: lines.len() });
        }
        if let Some(i) = lines.iter().position(|l| l.is_empty()) {
            return Err(CheckpointError::EmptyLine { line: i + 1 });
        }
        let origin = lines[0];
        if !line_ok(origin) {
            return Err(CheckpointError::BadOrigin { origin: origin.to_owned() });
        }
        let size = parse_size(lines[1])?;
        let root = Hash::from_base64(lines[2])
            .map_err(|_| CheckpointError::BadRoot { text: lines[2].to_owned() })?;
        let extensions: Vec<String> = lines[3..].iter().map(|s| (*s).to_owned()).collect();
        Checkpoint::with_extensions(origin, size, root, extensions)
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn root(&self) -> &Hash {
        &self.root
    }
    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }

    /// The note text: origin, size, base64 root, extensions, each newline-terminated.
    pub fn to_text(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}\n{}\n{}", self.origin, self.size, self.root.to_base64())?;
        for e in &self.extensions {
            writeln!(f, "{e}")?;
        }
        Ok(())
    }
}

/// ASCII decimal, no sign, no leading zeros except "0" itself.
fn parse_size(s: &str) -> Result<u64, CheckpointError> {
    let bad = || CheckpointError::BadSize { text: s.to_owned() };
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return Err(bad());
    }
    s.parse::<u64>().map_err(|_| bad())
}

/// A checkpoint together with the signed note that carries it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SignedCheckpoint {
    checkpoint: Checkpoint,
    note: Note,
}

impl SignedCheckpoint {
    /// Signs `checkpoint` with the log key. The key name SHOULD equal the origin.
    pub fn sign(checkpoint: Checkpoint, signer: &Ed25519Signer) -> Result<Self, CheckpointError> {
        let mut note = Note::new(checkpoint.to_text())?;
        note.sign(signer);
        Ok(SignedCheckpoint { checkpoint, note })
    }

    /// Parses untrusted bytes and verifies them against known keys; only then is the
    /// checkpoint returned. Also returns which signatures verified.
    pub fn verify(
        bytes: &[u8],
        verifiers: &[&dyn Verifier],
    ) -> Result<(SignedCheckpoint, Vec<Signature>), CheckpointError> {
        let note = Note::parse(bytes)?;
        let verified: Vec<Signature> = note.verify(verifiers)?.into_iter().cloned().collect();
        let checkpoint = Checkpoint::parse(note.text())?;
        Ok((SignedCheckpoint { checkpoint, note }, verified))
    }

    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    pub fn note(&self) -> &Note {
        &self.note
    }

    /// Adds a signature line, e.g. a witness cosignature.
    pub fn add_signature(&mut self, sig: Signature) {
        self.note.add_signature(sig);
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.note.to_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    const SPEC_TEXT: &str =
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

    #[test]
    fn spec_example_text_parses_and_formats_back_identically() {
        let c = Checkpoint::parse(SPEC_TEXT).unwrap();
        assert_eq!(c.origin(), "example.com/behind-the-sofa");
        assert_eq!(c.size(), 20852163);
        assert_eq!(c.to_text(), SPEC_TEXT);
    }

    #[test]
    fn extension_lines_round_trip() {
        let text = format!("{SPEC_TEXT}ext one\next two\n");
        let c = Checkpoint::parse(&text).unwrap();
        assert_eq!(c.extensions(), ["ext one", "ext two"]);
        assert_eq!(c.to_text(), text);
    }

    #[test]
    fn forbidden_checkpoint_texts_are_refused() {
        let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
        let cases = [
            (format!("o\n1\n{root}"), CheckpointError::NotTerminated),
            ("o\n1\n".to_owned(), CheckpointError::TooFewLines { lines: 2 }),
            (format!("\n1\n{root}\n"), CheckpointError::EmptyLine { line: 1 }),
            (format!("o\n01\n{root}\n"), CheckpointError::BadSize { text: "01".into() }),
            (format!("o\n+1\n{root}\n"), CheckpointError::BadSize { text: "+1".into() }),
            (format!("o\n 1\n{root}\n"), CheckpointError::BadSize { text: " 1".into() }),
            (
                format!("o\n18446744073709551616\n{root}\n"),
                CheckpointError::BadSize { text: "18446744073709551616".into() },
            ),
            ("o\n1\nAAAA\n".to_owned(), CheckpointError::BadRoot { text: "AAAA".into() }),
            (
                // Same bytes, non-canonical trailing bits: a second spelling of one root.
                "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=\n".to_owned(),
                CheckpointError::BadRoot {
                    text: "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=".into(),
                },
            ),
            (
                format!("o\n1\n{}\n", root.trim_end_matches('=')),
                CheckpointError::BadRoot { text: root.trim_end_matches('=').into() },
            ),
            (format!("o\n1\n{root}\n\next\n"), CheckpointError::EmptyLine { line: 4 }),
        ];
        for (text, want) in cases {
            assert_eq!(Checkpoint::parse(&text), Err(want), "{text:?}");
        }
        assert_eq!(Checkpoint::parse(&format!("o\n0\n{root}\n")).unwrap().size(), 0);
    }

    #[test]
    fn signed_checkpoint_verifies_and_a_stranger_key_does_not() {
        let log = Ed25519Signer::new("example.com/log", SigningKey::from_bytes(&[4; 32])).unwrap();
        let c = Checkpoint::new("example.com/log", 5, Hash([9; 32])).unwrap();
        let signed = SignedCheckpoint::sign(c.clone(), &log).unwrap();
        let (back, verified) =
            SignedCheckpoint::verify(&signed.to_bytes(), &[&log.verifier()]).unwrap();
        assert_eq!(back.checkpoint(), &c);
        assert_eq!(verified.len(), 1);
        let stranger =
            Ed25519Signer::new("example.com/log", SigningKey::from_bytes(&[5; 32])).unwrap();
        assert!(matches!(
            SignedCheckpoint::verify(&signed.to_bytes(), &[&stranger.verifier()]),
            Err(CheckpointError::Note(NoteError::NoKnownSignature { count: 1 }))
        ));
    }
}
