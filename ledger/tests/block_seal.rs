//! Sealing and opening blocks: round trips, each distinct failure, and the flipped-bit property.

mod common;

use common::{mixed_records, rng, x25519};
use ledger::block::{BlockError, BlockHash, BlockHeader, SealedBlock};
use ledger::keys::X25519Key;
use ledger::lane::Limits;
use ledger::record::{Record, SignalRecord};
use ledger::seal::{open_lane, open_lane_bytes, seal_block, LaneSpec, OpenError, SealOptions};
use ledger::verify::{self, ChainError};
use proptest::prelude::*;

const GATEWAY: [u8; 32] = [0x61; 32];

struct Keys {
    factory: X25519Key,
    auditor: X25519Key,
    city: X25519Key,
    stranger: X25519Key,
}

fn keys() -> Keys {
    Keys {
        factory: x25519("factory", 1),
        auditor: x25519("auditor", 2),
        city: x25519("city", 3),
        stranger: x25519("stranger", 4),
    }
}

fn city_records(h: u64) -> Vec<Record> {
    (0..5)
        .map(|i| {
            Record::Signal(SignalRecord {
                t_ns: 1_000 * h + i,
                name: "speed".into(),
                value: i as f64,
            })
        })
        .collect()
}

fn lanes(k: &Keys, h: u64) -> Vec<LaneSpec> {
    vec![
        LaneSpec {
            name: "factory".into(),
            recipients: vec![k.factory.public(), k.auditor.public()],
            records: mixed_records(),
        },
        LaneSpec {
            name: "city".into(),
            recipients: vec![k.city.public()],
            records: city_records(h),
        },
    ]
}

fn chain(k: &Keys, n: u64) -> Vec<SealedBlock> {
    let mut out: Vec<SealedBlock> = Vec::new();
    let mut r = rng(9);
    for h in 0..n {
        let prev = out.last().map_or(BlockHash::ZERO, |b| b.header.hash());
        out.push(
            seal_block(GATEWAY, h, prev, &lanes(k, h), &SealOptions::default(), &mut r)
                .expect("seal"),
        );
    }
    out
}

#[test]
fn every_recipient_opens_its_lane_and_gets_the_records_back() {
    let k = keys();
    let b = &chain(&k, 1)[0];
    assert_eq!(open_lane(b, 0, &k.factory, &Limits::DEFAULT).expect("factory"), mixed_records());
    assert_eq!(open_lane(b, 0, &k.auditor, &Limits::DEFAULT).expect("auditor"), mixed_records());
    assert_eq!(open_lane(b, 1, &k.city, &Limits::DEFAULT).expect("city"), city_records(0));
    assert_eq!(BlockHeader::from_bytes(&b.header_bytes).expect("parse"), b.header);
    // The city lane's first sample (t = 0) is the earliest record of the block.
    assert_eq!(b.header.first_ns, 0);
    assert_eq!(b.header.last_ns, u64::MAX);
    assert_eq!(b.header.lanes[0].record_count, mixed_records().len() as u64);
}

#[test]
fn empty_lane_seals_and_opens() {
    let k = keys();
    let spec =
        vec![LaneSpec { name: "idle".into(), recipients: vec![k.city.public()], records: vec![] }];
    let b = seal_block(GATEWAY, 0, BlockHash::ZERO, &spec, &SealOptions::default(), &mut rng(1))
        .expect("seal");
    assert_eq!(open_lane(&b, 0, &k.city, &Limits::DEFAULT).expect("open"), Vec::<Record>::new());
    assert_eq!((b.header.first_ns, b.header.last_ns), (0, 0));
}

#[test]
fn lane_moved_to_another_height_is_refused_as_moved() {
    let k = keys();
    let c = chain(&k, 3);
    let err =
        open_lane_bytes(&c[2].header, 0, &c[1].lanes[0], &k.factory, &Limits::DEFAULT).unwrap_err();
    assert_eq!(err, OpenError::Moved { field: "height", expected: "2".into(), got: "1".into() });
}

#[test]
fn lane_moved_to_another_index_is_refused_as_moved() {
    let k = keys();
    let b = &chain(&k, 1)[0];
    let err = open_lane_bytes(&b.header, 1, &b.lanes[0], &k.city, &Limits::DEFAULT).unwrap_err();
    assert_eq!(
        err,
        OpenError::Moved { field: "lane index", expected: "1".into(), got: "0".into() }
    );
}

#[test]
fn lane_under_a_header_from_another_gateway_is_refused_as_moved() {
    let k = keys();
    let b = &chain(&k, 1)[0];
    let mut h = b.header.clone();
    h.gateway = [0x62; 32];
    let err = open_lane_bytes(&h, 0, &b.lanes[0], &k.factory, &Limits::DEFAULT).unwrap_err();
    assert!(matches!(err, OpenError::Moved { field: "gateway", .. }), "{err}");
}

#[test]
fn header_with_swapped_recipient_list_breaks_the_binding() {
    let k = keys();
    let b = &chain(&k, 1)[0];
    let mut h = b.header.clone();
    h.lanes[0].recipients.swap(0, 1);
    let err = open_lane_bytes(&h, 0, &b.lanes[0], &k.factory, &Limits::DEFAULT).unwrap_err();
    assert!(
        matches!(&err, OpenError::BindingMismatch { lane, height: 0, .. } if lane == "factory"),
        "{err}"
    );
    // Also a different time range or prev: the lane was sealed under other header fields.
    let mut h = b.header.clone();
    h.last_ns -= 1;
    let err = open_lane_bytes(&h, 0, &b.lanes[0], &k.factory, &Limits::DEFAULT).unwrap_err();
    assert!(matches!(err, OpenError::BindingMismatch { .. }), "{err}");
}

/// Forges the header's digest and size for a tampered ciphertext, to reach the crypto checks.
fn forge(h: &BlockHeader, index: usize, ct: &[u8]) -> BlockHeader {
    let mut h = h.clone();
    h.lanes[index].digest = *blake3::hash(ct).as_bytes();
    h.lanes[index].size = ct.len() as u64;
    h
}

#[test]
fn swapped_wrapped_keys_do_not_unwrap() {
    let k = keys();
    let b = &chain(&k, 1)[0];
    let mut ct = b.lanes[0].clone();
    let (slot, at) = (80usize, 76usize);
    let (first, second) = ct[at..at + 2 * slot].split_at_mut(slot);
    first.swap_with_slice(second);
    let h = forge(&b.header, 0, &ct);
    let err = open_lane_bytes(&h, 0, &ct, &k.factory, &Limits::DEFAULT).unwrap_err();
    assert_eq!(err, OpenError::KeyUnwrap { lane: "factory".into(), height: 0, recipient: 0 });
}

#[test]
fn key_that_is_not_a_recipient_is_named() {
    let k = keys();
    let b = &chain(&k, 1)[0];
    let err = open_lane(b, 1, &k.factory, &Limits::DEFAULT).unwrap_err();
    assert!(
        matches!(&err, OpenError::NotARecipient { lane, key_name, .. } if lane == "city" && key_name == "factory"),
        "{err}"
    );
    let err = open_lane(b, 0, &k.stranger, &Limits::DEFAULT).unwrap_err();
    assert!(matches!(err, OpenError::NotARecipient { .. }), "{err}");
}

#[test]
fn truncated_lane_is_refused_by_size() {
    let k = keys();
    let b = &chain(&k, 1)[0];
    let ct = &b.lanes[0][..b.lanes[0].len() - 1];
    let err = open_lane_bytes(&b.header, 0, ct, &k.factory, &Limits::DEFAULT).unwrap_err();
    assert!(matches!(err, OpenError::Integrity(ChainError::LaneSize { index: 0, .. })), "{err}");
    let err =
        open_lane_bytes(&b.header, 0, &b.lanes[0][..10], &k.factory, &Limits::DEFAULT).unwrap_err();
    assert!(matches!(err, OpenError::Malformed { .. }), "{err}");
}

#[test]
fn flipped_body_bit_fails_the_digest_and_with_a_forged_digest_the_aead() {
    let k = keys();
    let b = &chain(&k, 1)[0];
    let mut ct = b.lanes[0].clone();
    let last = ct.len() - 20;
    ct[last] ^= 0x04;
    let err = open_lane_bytes(&b.header, 0, &ct, &k.factory, &Limits::DEFAULT).unwrap_err();
    assert!(matches!(err, OpenError::Integrity(ChainError::LaneDigest { index: 0, .. })), "{err}");
    let h = forge(&b.header, 0, &ct);
    let err = open_lane_bytes(&h, 0, &ct, &k.factory, &Limits::DEFAULT).unwrap_err();
    assert_eq!(err, OpenError::Decrypt { lane: "factory".into(), height: 0 });
}

#[test]
fn flipped_wrapped_key_bit_fails_unwrap_when_the_digest_is_forged() {
    let k = keys();
    let b = &chain(&k, 1)[0];
    let mut ct = b.lanes[0].clone();
    ct[76 + 40] ^= 1;
    let h = forge(&b.header, 0, &ct);
    let err = open_lane_bytes(&h, 0, &ct, &k.factory, &Limits::DEFAULT).unwrap_err();
    assert!(matches!(err, OpenError::KeyUnwrap { recipient: 0, .. }), "{err}");
    // The auditor's slot is intact: it still opens.
    assert!(open_lane_bytes(&h, 0, &ct, &k.auditor, &Limits::DEFAULT).is_ok());
}

#[test]
fn header_parser_refuses_non_canonical_trailing_unknown_and_oversized() {
    let k = keys();
    let b = &chain(&k, 1)[0];
    let bytes = &b.header_bytes;
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(BlockHeader::from_bytes(&trailing), Err(BlockError::TrailingBytes { extra: 1 }));
    // Version 1 written as a two-byte integer (0x18 0x01) instead of 0x01.
    assert_eq!(bytes[1], 0x01);
    let mut long_int = vec![bytes[0], 0x18, 0x01];
    long_int.extend_from_slice(&bytes[2..]);
    assert_eq!(BlockHeader::from_bytes(&long_int), Err(BlockError::NonCanonical));
    let mut v2 = bytes.clone();
    v2[1] = 0x02;
    assert_eq!(BlockHeader::from_bytes(&v2), Err(BlockError::UnknownVersion { got: 2, want: 1 }));
    // Indefinite-length outer array.
    let mut indef = vec![0x9f];
    indef.extend_from_slice(&bytes[1..]);
    indef.push(0xff);
    assert!(BlockHeader::from_bytes(&indef).is_err());
    let mut h = b.header.clone();
    h.lanes = (0..65)
        .map(|i| {
            let mut l = b.header.lanes[0].clone();
            l.name = format!("l{i}");
            l
        })
        .collect();
    assert!(matches!(
        BlockHeader::from_bytes(&h.to_bytes()),
        Err(BlockError::TooMany { max: 64, .. })
    ));
    let mut h = b.header.clone();
    (h.first_ns, h.last_ns) = (5, 4);
    assert!(matches!(BlockHeader::from_bytes(&h.to_bytes()), Err(BlockError::TimeRange { .. })));
    assert!(matches!(BlockHeader::from_bytes(&[0x83, 1, 2, 3]), Err(BlockError::Shape { .. })));
}

#[test]
fn seal_refuses_a_lane_without_recipients_and_duplicate_names() {
    let k = keys();
    let mut spec = lanes(&k, 0);
    spec[1].recipients.clear();
    assert!(seal_block(GATEWAY, 0, BlockHash::ZERO, &spec, &SealOptions::default(), &mut rng(1))
        .is_err());
    let mut spec = lanes(&k, 0);
    spec[1].name = "factory".into();
    assert!(seal_block(GATEWAY, 0, BlockHash::ZERO, &spec, &SealOptions::default(), &mut rng(1))
        .is_err());
}

fn detected_header_flip(c: &[SealedBlock], bit: usize) -> bool {
    let mut bytes = c[0].header_bytes.clone();
    bytes[bit / 8] ^= 1 << (bit % 8);
    match BlockHeader::from_bytes(&bytes) {
        Err(_) => true,
        // It parsed: the next header's prev link no longer matches.
        Ok(h) => verify::chain_segment(&[h, c[1].header.clone()], None).is_err(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
    #[test]
    fn any_flipped_bit_in_a_header_or_lane_is_detected(which in 0usize..3, bit in any::<prop::sample::Index>()) {
        let k = keys();
        let c = chain(&k, 2);
        if which == 0 {
            let bit = bit.index(c[0].header_bytes.len() * 8);
            prop_assert!(detected_header_flip(&c, bit), "header bit {} undetected", bit);
        } else {
            let lane = which - 1;
            let mut ct = c[0].lanes[lane].clone();
            let bit = bit.index(ct.len() * 8);
            ct[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(verify::lane_against_header(&c[0].header, lane, &ct).is_err());
        }
    }
}

#[test]
fn every_header_bit_flip_is_detected_exhaustively() {
    let k = keys();
    let c = chain(&k, 2);
    for bit in 0..c[0].header_bytes.len() * 8 {
        assert!(detected_header_flip(&c, bit), "header bit {bit} undetected");
    }
}
