//! Property tests: any flipped bit in a proof, a checkpoint, a note signature or a tile is
//! detected, and the error says what did not match.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use ed25519_dalek::SigningKey;
use ledger::checkpoint::{Checkpoint, CheckpointError, SignedCheckpoint};
use ledger::merkle::{
    consistency_proof, inclusion_proof, leaf_hash, root, verify_consistency, verify_inclusion,
    Hash, MemoryTree, VerifyError,
};
use ledger::note::{Ed25519Signer, Note, NoteError, Verifier};
use ledger::tile::{build_tiles, tiles_for_size, verify_tiles, Tile, TileError};
use proptest::prelude::*;

const TREE: u64 = 70_000;

fn tree() -> &'static MemoryTree {
    static T: OnceLock<MemoryTree> = OnceLock::new();
    T.get_or_init(|| MemoryTree::from_leaf_hashes((0..TREE).map(|i| leaf_hash(&i.to_be_bytes()))))
}

fn flip(h: &mut Hash, bit: usize) {
    h.0[(bit / 8) % 32] ^= 1 << (bit % 8);
}

fn log_signer() -> Ed25519Signer {
    Ed25519Signer::new("example.com/log", SigningKey::from_bytes(&[11; 32]))
        .expect("a fixed, valid key name")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn flipped_bit_in_an_inclusion_proof_is_a_root_mismatch(
        n in 2u64..5000, i in any::<u64>(), which in any::<usize>(), bit in 0usize..256,
    ) {
        let t = tree();
        let i = i % n;
        let r = root(t, n).unwrap();
        let mut p = inclusion_proof(t, i, n).unwrap();
        let k = which % p.len();
        flip(&mut p[k], bit);
        let leaf = leaf_hash(&i.to_be_bytes());
        let err = verify_inclusion(&leaf, i, n, &p, &r).unwrap_err();
        prop_assert!(matches!(err, VerifyError::RootMismatch { .. }), "{}", err);
    }

    #[test]
    fn flipped_bit_in_a_consistency_proof_or_root_is_detected(
        n2 in 2u64..5000, n1 in any::<u64>(), which in any::<usize>(), bit in 0usize..256,
    ) {
        let t = tree();
        let n1 = 1 + n1 % (n2 - 1);
        let (r1, r2) = (root(t, n1).unwrap(), root(t, n2).unwrap());
        let p = consistency_proof(t, n1, n2).unwrap();
        // Positions 0..p.len() flip a proof hash, then root1, then root2.
        let k = which % (p.len() + 2);
        let (mut p, mut r1b, mut r2b) = (p, r1, r2);
        match k {
            k if k < p.len() => flip(&mut p[k], bit),
            k if k == p.len() => flip(&mut r1b, bit),
            _ => flip(&mut r2b, bit),
        }
        let err = verify_consistency(n1, n2, &p, &r1b, &r2b).unwrap_err();
        prop_assert!(
            matches!(err, VerifyError::FirstRootMismatch { .. } | VerifyError::SecondRootMismatch { .. }),
            "{}", err
        );
    }

    #[test]
    fn flipped_bit_anywhere_in_a_signed_checkpoint_fails_verification(
        size in any::<u64>(), root_bytes in any::<[u8; 32]>(), pos in any::<usize>(), bit in 0u8..8,
    ) {
        let s = log_signer();
        let c = Checkpoint::new("example.com/log", size, Hash(root_bytes)).unwrap();
        let mut bytes = SignedCheckpoint::sign(c, &s).unwrap().to_bytes();
        let pos = pos % bytes.len();
        bytes[pos] ^= 1 << bit;
        let v = s.verifier();
        prop_assert!(SignedCheckpoint::verify(&bytes, &[&v as &dyn Verifier]).is_err());
    }

    #[test]
    fn checkpoint_with_any_changed_field_bit_is_a_bad_signature(
        size in any::<u64>(), root_bytes in any::<[u8; 32]>(), bit in 0usize..320,
    ) {
        let s = log_signer();
        let c = Checkpoint::new("example.com/log", size, Hash(root_bytes)).unwrap();
        let signed = SignedCheckpoint::sign(c, &s).unwrap();
        let (size2, mut root2) = if bit < 64 { (size ^ (1 << bit), Hash(root_bytes)) } else { (size, Hash(root_bytes)) };
        if bit >= 64 { flip(&mut root2, bit - 64); }
        let forged_text = Checkpoint::new("example.com/log", size2, root2).unwrap().to_text();
        let sig_lines: String = signed.note().signatures().iter().map(|x| x.to_line() + "\n").collect();
        let forged = format!("{forged_text}\n{sig_lines}");
        let v = s.verifier();
        let err = SignedCheckpoint::verify(forged.as_bytes(), &[&v as &dyn Verifier]).unwrap_err();
        prop_assert_eq!(err, CheckpointError::Note(NoteError::BadSignature {
            name: "example.com/log".into(), key_id: s.key_id() }));
    }

    #[test]
    fn flipped_bit_in_a_note_signature_is_a_bad_signature_and_in_its_key_id_is_unknown(
        text in "[a-z ]{1,40}", byte in 0usize..68, bit in 0u8..8,
    ) {
        let s = log_signer();
        let mut n = Note::new(format!("{text}\n")).unwrap();
        n.sign(&s);
        let mut sig = n.signatures()[0].clone();
        let want = if byte < 4 {
            sig.key_id ^= 1 << (8 * byte as u32 + u32::from(bit));
            NoteError::NoKnownSignature { count: 1 }
        } else {
            sig.bytes[byte - 4] ^= 1 << bit;
            NoteError::BadSignature { name: "example.com/log".into(), key_id: s.key_id() }
        };
        let mut forged = Note::new(format!("{text}\n")).unwrap();
        forged.add_signature(sig);
        let parsed = Note::parse(&forged.to_bytes()).unwrap();
        prop_assert_eq!(parsed.verify(&[&s.verifier() as &dyn Verifier]).unwrap_err(), want);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn flipped_bit_in_any_tile_is_named_or_breaks_the_root(
        n in prop_oneof![1u64..3000, 65_000u64..TREE], pick in any::<usize>(),
        byte in any::<usize>(), bit in 0u8..8,
    ) {
        let t = tree();
        let expected = root(t, n).unwrap();
        let mut tiles: BTreeMap<Tile, Vec<u8>> = build_tiles(t, n).unwrap();
        verify_tiles(&tiles, n, &expected).unwrap();
        let all = tiles_for_size(n);
        let victim = all[pick % all.len()];
        let data = tiles.get_mut(&victim).unwrap();
        let at = byte % data.len();
        data[at] ^= 1 << bit;
        let err = verify_tiles(&tiles, n, &expected).unwrap_err();
        if victim.is_partial() {
            prop_assert!(matches!(err, TileError::RootMismatch { .. }), "{}", err);
        } else {
            prop_assert_eq!(err, TileError::ParentMismatch { path: victim.path() });
        }
    }
}
