//! Any bytes as a cosigned checkpoint note and as a witness verifier key: cosignature lines are
//! split and verified (timestamp, length, key) without panicking, and a forged one never
//! verifies.
#![no_main]
use std::sync::OnceLock;

use ed25519_dalek::SigningKey;
use ledger::checkpoint::Checkpoint;
use ledger::cosignature::{timestamp, CosignatureVerifier, Cosigner};
use ledger::note::Note;
use libfuzzer_sys::fuzz_target;

fn witness() -> &'static CosignatureVerifier {
    static W: OnceLock<CosignatureVerifier> = OnceLock::new();
    W.get_or_init(|| {
        Cosigner::new("witness.example/w", SigningKey::from_bytes(&[9; 32]))
            .map(|c| c.verifier())
            .unwrap_or_else(|e| panic!("fixed key: {e}"))
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(v) = CosignatureVerifier::from_vkey(text) {
            assert_eq!(CosignatureVerifier::from_vkey(&v.to_vkey()).ok().as_ref(), Some(&v));
        }
    }
    let Ok(note) = Note::parse(data) else { return };
    let checkpoint = Checkpoint::parse(note.text()).ok();
    let w = witness();
    for sig in note.signatures() {
        let _ = timestamp(sig);
        let Some(cp) = &checkpoint else { continue };
        for (now, skew) in [(0, 0), (u64::MAX, u64::MAX), (1_700_000_000, 60)] {
            assert!(w.verify(cp, sig, now, skew).is_err(), "forged cosignature verified");
        }
    }
});
