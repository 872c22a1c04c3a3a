//! Lane codec: exact round trips of every record kind and order, and bounded decoding of
//! untrusted bytes.

mod common;

use std::sync::Arc;

use common::{can, mixed_records};
use ledger::lane::{self, LaneError, Limits, PayloadDelta};
use ledger::record::{CanFlags, CanRecord, MqttRecord, Record, SignalRecord};
use proptest::prelude::*;

const DELTAS: [PayloadDelta; 4] =
    [PayloadDelta::Auto, PayloadDelta::Raw, PayloadDelta::Xor, PayloadDelta::Sub];

#[test]
fn mixed_lane_round_trips_exactly_with_every_delta() {
    let records = mixed_records();
    for d in DELTAS {
        let packed = lane::pack(&records, 3, d).expect("pack");
        assert_eq!(lane::unpack(&packed, &Limits::DEFAULT).expect("unpack"), records, "{d:?}");
    }
}

#[test]
fn empty_lane_round_trips() {
    let packed = lane::pack(&[], 3, PayloadDelta::Auto).expect("pack");
    assert_eq!(lane::unpack(&packed, &Limits::DEFAULT).expect("unpack"), Vec::<Record>::new());
}

#[test]
fn time_sorted_lane_stores_no_order_column_and_unsorted_one_does() {
    let sorted: Vec<Record> =
        (0..1000).map(|i| can(i * 10_000, "can0", (i % 7) as u32, 0, &[i as u8])).collect();
    let mut shuffled = sorted.clone();
    shuffled.swap(10, 500);
    let a = lane::encode(&sorted, PayloadDelta::Auto);
    let b = lane::encode(&shuffled, PayloadDelta::Auto);
    assert!(
        b.len() > a.len() + 900,
        "explicit order costs a byte per record: {} vs {}",
        b.len(),
        a.len()
    );
    assert_eq!(lane::decode(&b, &Limits::DEFAULT).expect("decode"), shuffled);
    assert_eq!(lane::decode(&a, &Limits::DEFAULT).expect("decode"), sorted);
}

#[test]
fn every_truncation_of_an_encoded_lane_is_an_error() {
    let plain = lane::encode(&mixed_records(), PayloadDelta::Auto);
    for cut in 0..plain.len() {
        assert!(lane::decode(&plain[..cut], &Limits::DEFAULT).is_err(), "cut at {cut}");
    }
    let mut longer = plain.clone();
    longer.push(0);
    assert!(matches!(
        lane::decode(&longer, &Limits::DEFAULT),
        Err(LaneError::TrailingBytes { section: "section table", extra: 1 })
    ));
}

#[test]
fn record_count_above_the_limit_is_refused_before_allocating() {
    let plain = lane::encode(&mixed_records(), PayloadDelta::Auto);
    let limits = Limits { max_records: 3, ..Limits::DEFAULT };
    assert!(matches!(
        lane::decode(&plain, &limits),
        Err(LaneError::LimitExceeded { field: "record count", value: 12, max: 3, .. })
    ));
}

#[test]
fn zstd_frame_declaring_more_than_the_limit_is_refused() {
    let packed = lane::pack(&mixed_records(), 3, PayloadDelta::Auto).expect("pack");
    let limits = Limits { max_plain_bytes: 16, ..Limits::DEFAULT };
    assert!(matches!(
        lane::unpack(&packed, &limits),
        Err(LaneError::LimitExceeded { field: "content size", max: 16, .. })
    ));
    assert!(matches!(
        lane::unpack(b"not zstd", &Limits::DEFAULT),
        Err(LaneError::Decompress { .. })
    ));
}

#[test]
fn unknown_codec_version_is_named() {
    let mut plain = lane::encode(&mixed_records(), PayloadDelta::Auto);
    plain[0] = 9;
    assert_eq!(
        lane::decode(&plain, &Limits::DEFAULT),
        Err(LaneError::UnknownVersion { got: 9, want: 1 })
    );
}

fn arb_name() -> impl Strategy<Value = Arc<str>> {
    prop_oneof![Just("can0"), Just("can1"), Just("vcan9"), Just("t/é")].prop_map(Arc::from)
}

fn arb_can() -> impl Strategy<Value = Record> {
    (
        any::<u64>(),
        arb_name(),
        any::<u32>(),
        0u8..0x80,
        prop::collection::vec(any::<u8>(), 0..=64),
        0u8..=8,
    )
        .prop_map(|(t, iface, id, bits, data, rlen)| {
            let flags = CanFlags::from_bits(bits).expect("bits < 0x80");
            let id = if flags.has(CanFlags::ERROR) {
                id
            } else if flags.has(CanFlags::EXTENDED) {
                id & 0x1FFF_FFFF
            } else {
                id & 0x7FF
            };
            let max = if flags.has(CanFlags::REMOTE) {
                0
            } else if flags.has(CanFlags::FD) {
                64
            } else {
                8
            };
            let data = &data[..data.len().min(max)];
            Record::Can(CanRecord::new(t, iface, id, flags, data, rlen).expect("fits"))
        })
}

fn arb_record() -> impl Strategy<Value = Record> {
    prop_oneof![
        6 => arb_can(),
        1 => (any::<u64>(), arb_name(), prop::collection::vec(any::<u8>(), 0..40), 0u8..=2, any::<bool>())
            .prop_map(|(t, topic, p, q, r)| Record::Mqtt(MqttRecord::new(t, topic, p, q, r).expect("valid"))),
        1 => (any::<u64>(), arb_name(), any::<u64>())
            .prop_map(|(t, name, bits)| Record::Signal(SignalRecord { t_ns: t, name, value: f64::from_bits(bits) })),
    ]
}

/// Records close in time on a few ids, so the merged order and deltas get exercised too.
fn arb_stream_like() -> impl Strategy<Value = Vec<Record>> {
    prop::collection::vec((0u64..50, 0u32..4, prop::collection::vec(any::<u8>(), 0..=8)), 0..200)
        .prop_map(|v| {
            let mut t = 1_600_000_000_000_000_000u64;
            v.into_iter()
                .map(|(dt, id, data)| {
                    t += dt * 1000;
                    can(t, "can0", id, 0, &data)
                })
                .collect()
        })
}

proptest! {
    #[test]
    fn any_records_round_trip(records in prop::collection::vec(arb_record(), 0..60), d in 0usize..4) {
        let packed = lane::pack(&records, 1, DELTAS[d]).expect("pack");
        prop_assert_eq!(lane::unpack(&packed, &Limits::DEFAULT).expect("unpack"), records);
    }

    #[test]
    fn stream_like_records_round_trip(records in arb_stream_like()) {
        let plain = lane::encode(&records, PayloadDelta::Auto);
        prop_assert_eq!(lane::decode(&plain, &Limits::DEFAULT).expect("decode"), records);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = lane::decode(&bytes, &Limits::DEFAULT);
        let _ = lane::unpack(&bytes, &Limits::DEFAULT);
    }

    #[test]
    fn mutated_encodings_never_panic(pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut plain = lane::encode(&mixed_records(), PayloadDelta::Auto);
        let i = pos.index(plain.len());
        plain[i] = byte;
        let _ = lane::decode(&plain, &Limits::DEFAULT);
    }
}

/// A long stream of one id whose payload is bit fields: the encoder's bit-field layout path.
fn imu_like(n: usize) -> Vec<Record> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..n as u64)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let w = 1
                | ((500 + (x % 9)) << 1)
                | ((1000 + (x >> 20) % 13) << 11)
                | ((x >> 40) & 0xFF) << 40;
            can(1_000_000 + i * 10_000 + (x % 3) * 50, "can2", 9, 0, &w.to_le_bytes())
        })
        .collect()
}

#[test]
fn long_bit_field_stream_round_trips_and_beats_byte_columns() {
    let records = imu_like(5000);
    let auto = lane::pack(&records, 3, PayloadDelta::Auto).expect("pack");
    let xor = lane::pack(&records, 3, PayloadDelta::Xor).expect("pack");
    assert_eq!(lane::unpack(&auto, &Limits::DEFAULT).expect("unpack"), records);
    assert!(auto.len() < xor.len(), "fields {} vs xor bytes {}", auto.len(), xor.len());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn mutated_bit_field_lanes_never_panic(pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut plain = lane::encode(&imu_like(1100), PayloadDelta::Auto);
        let i = pos.index(plain.len());
        plain[i] = byte;
        let _ = lane::decode(&plain, &Limits::DEFAULT);
    }

    #[test]
    fn random_long_streams_round_trip(seed in any::<u64>(), len in 1usize..=8, n in 1024usize..1400) {
        let mut x = seed | 1;
        let records: Vec<Record> = (0..n as u64)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Low bits random, high bits slow: some layout gets chosen, whatever it is.
                let w = (x & 0x3F) | ((i / 7) << 6) ^ (x & 0xFFFF_0000_0000);
                can(i * 1000, "can0", 0x100, 0, &w.to_le_bytes()[..len])
            })
            .collect();
        let plain = lane::encode(&records, PayloadDelta::Auto);
        prop_assert_eq!(lane::decode(&plain, &Limits::DEFAULT).expect("decode"), records);
    }
}
