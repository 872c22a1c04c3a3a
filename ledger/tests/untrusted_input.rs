//! Decoders of untrusted bytes never panic: they return a value or an error for any input.
//! (A stand-in until cargo-fuzz targets exist; same property, fewer iterations.)

use ledger::checkpoint::{Checkpoint, SignedCheckpoint};
use ledger::cosignature::CosignatureVerifier;
use ledger::keys::{parse_signer, X25519Key};
use ledger::merkle::{verify_consistency_bytes, verify_inclusion_bytes, Hash};
use ledger::note::{Ed25519Verifier, Note};
use ledger::tile::{decode_bundle, decode_index, Tile};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parsers_return_instead_of_panicking_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Note::parse(&bytes);
        let _ = SignedCheckpoint::verify(&bytes, &[]);
        let _ = decode_bundle(&bytes);
        let s = String::from_utf8_lossy(&bytes);
        let _ = Checkpoint::parse(&s);
        let _ = Tile::parse_path(&s);
        let _ = decode_index(&s);
        let _ = Ed25519Verifier::from_vkey(&s);
        let _ = CosignatureVerifier::from_vkey(&s);
        let _ = parse_signer(&s);
        let _ = X25519Key::parse(&s);
        let _ = Hash::from_base64(&s);
    }

    #[test]
    fn text_shaped_inputs_do_not_panic_either(
        s in "(\u{2014} |[a-z+/=0-9]{0,12}|\n|tile/|x0[0-9]{2}/|\\.p/|PRIVATE\\+KEY\\+){0,12}",
    ) {
        let _ = Note::parse(s.as_bytes());
        let _ = Checkpoint::parse(&s);
        let _ = Tile::parse_path(&s);
        let _ = parse_signer(&s);
        let _ = Ed25519Verifier::from_vkey(&s);
    }

    #[test]
    fn proof_verifiers_do_not_panic_on_any_sizes(
        a in any::<u64>(), b in any::<u64>(), n in 0usize..70, len in 0usize..40,
    ) {
        let h = [7u8; 32];
        let proof: Vec<&[u8]> = std::iter::repeat_n(&h[..], n).collect();
        let short = vec![1u8; len];
        let _ = verify_inclusion_bytes(&h, a, b, &proof, &h);
        let _ = verify_consistency_bytes(a, b, &proof, &h, &h);
        let _ = verify_consistency_bytes(a.min(b), a.max(b), &proof, &short, &h);
        let _ = verify_inclusion_bytes(&short, a % (b.max(1)), b, &proof, &h);
    }
}
