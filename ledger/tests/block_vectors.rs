//! Regenerates `fixtures/vectors/block-v1.json` from fixed keys, a seeded rng and fixed records,
//! and compares. `IOV_BLESS=1` rewrites the file (review the diff: any change is a format change).

mod common;

use chacha20::rand_core::Rng;
use common::{fixture, mixed_records, rng, x25519};
use ed25519_dalek::SigningKey;
use ledger::block::{BlockHash, BlockHeader};
use ledger::lane::{self, Limits, PayloadDelta};
use ledger::record::Record;
use ledger::seal::{self, open_lane, seal_block, LaneSpec, SealOptions};
use serde_json::{json, Value};

fn record_json(r: &Record) -> Value {
    match r {
        Record::Can(c) => json!({
            "kind": "can", "t_ns": c.t_ns, "interface": &*c.interface, "id": c.id,
            "flags": c.flags.bits(), "len": c.len(), "data": hex::encode(c.data()),
        }),
        Record::Mqtt(m) => json!({
            "kind": "mqtt", "t_ns": m.t_ns, "topic": &*m.topic, "qos": m.qos, "retain": m.retain,
            "payload": hex::encode(&m.payload),
        }),
        Record::Signal(s) => json!({
            "kind": "signal", "t_ns": s.t_ns, "name": &*s.name, "value_bits": format!("{:016x}", s.value.to_bits()),
        }),
    }
}

fn generate() -> Value {
    let gw = SigningKey::from_bytes(&[0x11; 32]);
    let gateway = gw.verifying_key().to_bytes();
    let factory = x25519("factory", 0x21);
    let city = x25519("city", 0x22);
    let factory_records = mixed_records();
    let city_records: Vec<Record> =
        mixed_records().into_iter().filter(|r| matches!(r, Record::Signal(_))).collect();
    let specs = vec![
        LaneSpec {
            name: "factory".into(),
            recipients: vec![factory.public(), city.public()],
            records: factory_records,
        },
        LaneSpec { name: "city".into(), recipients: vec![city.public()], records: city_records },
    ];
    let opts = SealOptions { zstd_level: 3, delta: PayloadDelta::Auto };
    let mut r = rng(0x2a);
    let mut prev = BlockHash::ZERO;
    let mut blocks = Vec::new();
    for height in 0..2u64 {
        let b = seal_block(gateway, height, prev, &specs, &opts, &mut r).expect("seal");
        assert_eq!(BlockHeader::from_bytes(&b.header_bytes).expect("parse"), b.header);
        let lanes: Vec<Value> = specs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let opener = if i == 0 { &factory } else { &city };
                assert_eq!(open_lane(&b, i, opener, &Limits::DEFAULT).expect("open"), s.records);
                let plain = lane::encode(&s.records, opts.delta);
                json!({
                    "name": s.name,
                    "records": s.records.iter().map(record_json).collect::<Vec<_>>(),
                    "codec_plaintext_hex": hex::encode(&plain),
                    "aad_hex": hex::encode(seal::lane_aad(&b.header, i).expect("lane")),
                    "ciphertext_hex": hex::encode(&b.lanes[i]),
                    "ciphertext_blake3": hex::encode(blake3::hash(&b.lanes[i]).as_bytes()),
                    "ciphertext_size": b.lanes[i].len(),
                })
            })
            .collect();
        blocks.push(json!({
            "height": height,
            "prev": prev.to_hex(),
            "header_hex": hex::encode(&b.header_bytes),
            "header_hash": b.header.hash().to_hex(),
            "lanes": lanes,
        }));
        prev = b.header.hash();
    }
    // A draw after sealing, so a reimplementation can check it consumed the same randomness.
    let mut tail = [0u8; 8];
    r.fill_bytes(&mut tail);
    json!({
        "description": "iov block format v1 test vectors; see docs/formats.md. Randomness: ChaCha20Rng (rand_core 0.10, chacha20 crate) from seed 32 x 0x2a; per block, per lane: 32-byte data key, then one HPKE encapsulation per recipient in header order. Compressed bytes depend on libzstd 1.5.7 at level 3.",
        "gateway_ed25519_seed_hex": hex::encode([0x11u8; 32]),
        "gateway_hex": hex::encode(gateway),
        "recipients": [
            {"name": "factory", "x25519_secret_hex": hex::encode([0x21u8; 32]), "public_hex": hex::encode(factory.public().as_bytes())},
            {"name": "city", "x25519_secret_hex": hex::encode([0x22u8; 32]), "public_hex": hex::encode(city.public().as_bytes())},
        ],
        "hpke_info": String::from_utf8_lossy(seal::HPKE_INFO),
        "zstd_level": 3,
        "blocks": blocks,
        "rng_next_8_bytes_hex": hex::encode(tail),
    })
}

#[test]
fn block_v1_vectors_match() {
    let path = fixture("fixtures/vectors/block-v1.json");
    let got = serde_json::to_string_pretty(&generate()).expect("json") + "\n";
    if std::env::var_os("IOV_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &got).expect("write vectors");
    }
    let want = std::fs::read_to_string(&path).expect("vectors file (run with IOV_BLESS=1)");
    assert!(got == want, "block-v1 vectors changed; review and rerun with IOV_BLESS=1");
}
