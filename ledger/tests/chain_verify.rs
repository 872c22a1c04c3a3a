//! Chain segments and completeness proofs over the gateway's Merkle log of headers.

mod common;

use common::{can, rng, x25519};
use ed25519_dalek::SigningKey;
use ledger::block::{BlockHash, BlockHeader};
use ledger::checkpoint::{Checkpoint, SignedCheckpoint};
use ledger::merkle::{self, MemoryTree};
use ledger::note::Ed25519Signer;
use ledger::seal::{seal_block, LaneSpec, SealOptions};
use ledger::verify::{self, ChainError};

fn signer() -> Ed25519Signer {
    Ed25519Signer::new("gw.example/vehicle-1", SigningKey::from_bytes(&[21; 32]))
        .expect("valid name")
}

fn headers(n: u64) -> Vec<BlockHeader> {
    let gateway = signer().verifier().public_key().to_bytes();
    let k = x25519("factory", 1);
    let mut r = rng(3);
    let mut out: Vec<BlockHeader> = Vec::new();
    for h in 0..n {
        let prev = out.last().map_or(BlockHash::ZERO, BlockHeader::hash);
        let spec = vec![LaneSpec {
            name: "factory".into(),
            recipients: vec![k.public()],
            records: vec![can(h * 100, "can0", 1, 0, &[h as u8])],
        }];
        out.push(
            seal_block(gateway, h, prev, &spec, &SealOptions::default(), &mut r)
                .expect("seal")
                .header,
        );
    }
    out
}

fn tree(hs: &[BlockHeader]) -> MemoryTree {
    MemoryTree::from_leaf_hashes(hs.iter().map(verify::header_leaf_hash))
}

#[test]
fn a_sealed_chain_verifies_from_genesis_and_from_the_middle() {
    let hs = headers(6);
    assert_eq!(verify::chain_segment(&hs, None), Ok(()));
    assert_eq!(verify::chain_segment(&hs[3..], Some(hs[2].hash())), Ok(()));
    assert_eq!(verify::chain_segment(&hs[3..], None), Ok(()));
    assert_eq!(verify::chain_segment(&[], None), Ok(()));
}

#[test]
fn gaps_broken_links_and_foreign_gateways_are_named() {
    let hs = headers(5);
    let gap = vec![hs[0].clone(), hs[2].clone()];
    assert_eq!(
        verify::chain_segment(&gap, None),
        Err(ChainError::Height { position: 1, expected: 1, got: 2 })
    );
    let err = verify::chain_segment(&hs[2..], Some(hs[0].hash())).unwrap_err();
    assert!(matches!(err, ChainError::Prev { height: 2, .. }), "{err}");
    let mut other = hs[1].clone();
    other.gateway = [9; 32];
    let err = verify::chain_segment(&[hs[0].clone(), other], None).unwrap_err();
    assert!(matches!(err, ChainError::Gateway { height: 1, .. }), "{err}");
    let mut genesis = hs[0].clone();
    genesis.prev = BlockHash([1; 32]);
    let err = verify::chain_segment(&[genesis], None).unwrap_err();
    assert!(matches!(err, ChainError::Prev { height: 0, .. }), "{err}");
}

#[test]
fn every_range_of_every_small_tree_is_proved_complete() {
    let hs = headers(13);
    for size in 1..=hs.len() as u64 {
        let t = tree(&hs[..size as usize]);
        let cp = Checkpoint::new("gw.example/vehicle-1", size, t.root()).expect("checkpoint");
        for start in 0..size {
            for end in start + 1..=size {
                let proof = verify::range_proof(&t, size, start, end).expect("proof");
                let range = &hs[start as usize..end as usize];
                assert_eq!(
                    verify::complete_range(range, &cp, &proof),
                    Ok(()),
                    "size {size} [{start},{end})"
                );
                if end - start >= 3 {
                    // Leave out a block in the middle and keep the heights consecutive: the
                    // chain check refuses; pretend-heights cannot satisfy the root either.
                    let mut missing = range.to_vec();
                    missing.remove(1);
                    assert!(verify::complete_range(&missing, &cp, &proof).is_err());
                }
            }
        }
    }
}

#[test]
fn inclusion_of_one_header_and_its_failure() {
    let hs = headers(7);
    let t = tree(&hs);
    let cp = Checkpoint::new("gw.example/vehicle-1", 7, t.root()).expect("checkpoint");
    let proof = merkle::inclusion_proof(&t, 4, 7).expect("proof");
    assert_eq!(verify::header_inclusion(&hs[4], &cp, &proof), Ok(()));
    let err = verify::header_inclusion(&hs[5], &cp, &proof).unwrap_err();
    assert!(matches!(err, ChainError::Inclusion { height: 5, .. }), "{err}");
}

#[test]
fn a_substituted_header_or_a_wrong_proof_gives_a_root_mismatch() {
    let hs = headers(9);
    let t = tree(&hs);
    let cp = Checkpoint::new("gw.example/vehicle-1", 9, t.root()).expect("checkpoint");
    let mut proof = verify::range_proof(&t, 9, 2, 6).expect("proof");
    // A different but well-linked tail: re-seal heights 2..6 with other content.
    let mut forged = hs[2..6].to_vec();
    forged[3].last_ns += 1;
    let err = verify::complete_range(&forged, &cp, &proof).unwrap_err();
    assert!(matches!(err, ChainError::RangeRoot { start: 2, end: 6, .. }), "{err}");
    proof[0].0[0] ^= 1;
    let err = verify::complete_range(&hs[2..6], &cp, &proof).unwrap_err();
    assert!(matches!(err, ChainError::RangeRoot { .. }), "{err}");
    proof.pop();
    let err = verify::complete_range(&hs[2..6], &cp, &proof).unwrap_err();
    assert!(matches!(err, ChainError::RangeProofLength { .. }), "{err}");
    let small = Checkpoint::new("gw.example/vehicle-1", 4, t.root()).expect("checkpoint");
    let err = verify::complete_range(&hs[2..6], &small, &proof).unwrap_err();
    assert_eq!(err, ChainError::BeyondTree { last: 5, tree_size: 4 });
}

#[test]
fn signed_checkpoint_must_come_from_the_headers_gateway() {
    let hs = headers(5);
    let t = tree(&hs);
    let cp = Checkpoint::new("gw.example/vehicle-1", 5, t.root()).expect("checkpoint");
    let note = SignedCheckpoint::sign(cp, &signer()).expect("sign").to_bytes();
    let proof = verify::range_proof(&t, 5, 1, 4).expect("proof");
    let key = signer().verifier();
    assert_eq!(verify::complete_range_signed(&hs[1..4], &note, &key, &proof), Ok(()));
    let other = Ed25519Signer::new("gw.example/vehicle-1", SigningKey::from_bytes(&[22; 32]))
        .expect("name");
    let err =
        verify::complete_range_signed(&hs[1..4], &note, &other.verifier(), &proof).unwrap_err();
    assert!(matches!(err, ChainError::CheckpointKey { .. }), "{err}");
    let mut bad = note.clone();
    let i = bad.len() - 5;
    bad[i] ^= 1;
    let err = verify::complete_range_signed(&hs[1..4], &bad, &key, &proof).unwrap_err();
    assert!(matches!(err, ChainError::Checkpoint(_)), "{err}");
}
