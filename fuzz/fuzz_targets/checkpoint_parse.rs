//! Any bytes as a signed checkpoint (signed note + checkpoint text) and as a verifier key: an
//! error or a value, never a panic. A checkpoint text that parses formats back to the same
//! bytes (one encoding per tree head), and a note never verifies against a key that did not
//! sign it.
#![no_main]
use std::sync::OnceLock;

use ed25519_dalek::SigningKey;
use ledger::checkpoint::{Checkpoint, SignedCheckpoint};
use ledger::note::{Ed25519Signer, Ed25519Verifier, Note, Verifier};
use libfuzzer_sys::fuzz_target;

fn verifier() -> &'static Ed25519Verifier {
    static V: OnceLock<Ed25519Verifier> = OnceLock::new();
    V.get_or_init(|| {
        Ed25519Signer::new("example.com/fuzz", SigningKey::from_bytes(&[7; 32]))
            .map(|s| s.verifier())
            .unwrap_or_else(|e| panic!("fixed key: {e}"))
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(c) = Checkpoint::parse(text) {
            assert_eq!(c.to_text(), text, "checkpoint text has a second encoding");
        }
        if let Ok(v) = Ed25519Verifier::from_vkey(text) {
            assert_eq!(Ed25519Verifier::from_vkey(&v.to_vkey()).ok().as_ref(), Some(&v));
        }
    }
    if let Ok(note) = Note::parse(data) {
        let _ = Checkpoint::parse(note.text());
        let _ = note.to_bytes();
    }
    let v: &dyn Verifier = verifier();
    // Nobody holds the fixed key's seed but this target, and it never signs fuzz input.
    assert!(SignedCheckpoint::verify(data, &[v]).is_err(), "forged checkpoint verified");
});
