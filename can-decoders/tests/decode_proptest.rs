//! Properties: encode then decode gives back the raw values; decoding never panics.

mod decode_support;

use can_decoders::dbc::{ByteOrder, Message, Signal, ValueType};
use can_decoders::decode::{Decoded, Decoder, RawValue};
use can_decoders::{CanFrame, CanId, FrameKind};
use decode_support::*;
use proptest::prelude::*;

/// (byte order, value type, length, first stream bit, scale index)
type Spec = (bool, u8, u16, u16, usize);

const SCALES: &[(f64, f64)] = &[(1.0, 0.0), (3.0, -7.0), (0.1, 0.0), (1e-6, -90.0), (0.25, 10.0)];

/// Turns random specs into non-overlapping signals of a `bytes`-long message (overlapping or
/// non-fitting specs are dropped).
fn layout(specs: &[Spec], bytes: usize) -> Vec<Signal> {
    let mut taken = vec![false; bytes * 8];
    let mut signals = Vec::new();
    for (i, &(big, vt, len, first, scale)) in specs.iter().enumerate() {
        let (value_type, len) = match vt % 6 {
            0 => (ValueType::Float32, 32),
            1 => (ValueType::Float64, 64),
            2 | 3 => (ValueType::Signed, len),
            _ => (ValueType::Unsigned, len),
        };
        let len = usize::from(len);
        let first = usize::from(first) % (bytes * 8 - len + 1);
        let order = if big { ByteOrder::BigEndian } else { ByteOrder::LittleEndian };
        let phys: Vec<usize> =
            (first..first + len).map(|j| if big { 8 * (j / 8) + 7 - j % 8 } else { j }).collect();
        if phys.iter().any(|&b| taken[b]) {
            continue;
        }
        for b in phys {
            taken[b] = true;
        }
        let start = if big { 8 * (first / 8) + 7 - first % 8 } else { first };
        let (factor, offset) = SCALES[scale % SCALES.len()];
        let mut s =
            signal(&format!("S{i}"), start as u16, len as u16, order).scaled(factor, offset);
        s.value_type = value_type;
        signals.push(s);
    }
    signals
}

/// A raw value that fits the signal, from random bits.
fn fitting_raw(s: &Signal, bits: u64) -> RawValue {
    let len = u32::from(s.length);
    let masked = if len == 64 { bits } else { bits & ((1u64 << len) - 1) };
    match s.value_type {
        ValueType::Unsigned => RawValue::UInt(masked),
        ValueType::Signed => RawValue::Int(((masked << (64 - len)) as i64) >> (64 - len)),
        ValueType::Float32 => {
            let f = f32::from_bits(bits as u32);
            RawValue::Float(f64::from(if f.is_nan() { 1.5 } else { f }))
        }
        ValueType::Float64 => {
            let f = f64::from_bits(bits);
            RawValue::Float(if f.is_nan() { -0.25 } else { f })
        }
    }
}

fn same_raw(a: RawValue, b: RawValue) -> bool {
    match (a, b) {
        (RawValue::Float(x), RawValue::Float(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

fn specs() -> impl Strategy<Value = (Vec<Spec>, bool)> {
    (
        prop::collection::vec(
            (any::<bool>(), any::<u8>(), 1u16..=64, 0u16..512, any::<usize>()),
            1..10,
        ),
        any::<bool>(),
    )
}

fn build(m: Message) -> Decoder {
    let mut b = Decoder::builder();
    b.add_database(&database("prop.dbc", vec![m]), &[]);
    b.build().expect("builds").0
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn encoding_raw_values_then_decoding_returns_them((specs, fd) in specs(), bits in prop::collection::vec(any::<u64>(), 10)) {
        let bytes = if fd { 64 } else { 8 };
        let signals = layout(&specs, bytes);
        prop_assume!(!signals.is_empty());
        let raws: Vec<(usize, RawValue)> =
            signals.iter().zip(&bits).enumerate().map(|(i, (s, b))| (i, fitting_raw(s, *b))).collect();
        let d = build(message(std_id(0x123), "P", bytes as u8, signals));
        let k = d.message_by_name("P").expect("exists");
        let f = d.encode_raw(k, &raws, &LENIENT).expect("fitting raw values encode");
        let mut out = Decoded::default();
        d.decode(d.bus("x"), &f, &mut out).expect("decodes");
        prop_assert_eq!(out.values.len(), raws.len());
        for (i, raw) in &raws {
            let got = out.get(*i).expect("decoded").raw;
            prop_assert!(same_raw(got, *raw), "signal {}: {:?} != {:?}", i, got, raw);
        }
    }

    #[test]
    fn encoding_physical_values_then_decoding_returns_the_raw_values((specs, fd) in specs(), bits in prop::collection::vec(any::<u64>(), 10)) {
        let bytes = if fd { 64 } else { 8 };
        // Physical values pin down the raw value when the raw fits in an f64 mantissa with room
        // for the scaling error: integers up to 32 bits, and floats.
        let signals: Vec<Signal> = layout(&specs, bytes)
            .into_iter()
            .filter(|s| s.length <= 32 || s.value_type == ValueType::Float64)
            .map(|s| if matches!(s.value_type, ValueType::Float32 | ValueType::Float64) { s.scaled(1.0, 0.0) } else { s })
            .collect();
        prop_assume!(!signals.is_empty());
        let raws: Vec<RawValue> = signals.iter().zip(&bits).map(|(s, b)| fitting_raw(s, *b)).collect();
        let d = build(message(std_id(0x123), "P", bytes as u8, signals));
        let k = d.message_by_name("P").expect("exists");
        let m = d.message(k);
        // The physical value of each raw value, as the decoder computes it.
        let mut buf = Decoded::default();
        let raw_frame = d.encode_raw(k, &raws.iter().copied().enumerate().collect::<Vec<_>>(), &LENIENT).expect("encodes");
        d.decode(d.bus("x"), &raw_frame, &mut buf).expect("decodes");
        let physical: Vec<(usize, f64)> = buf.values.iter().map(|v| (v.signal, v.value)).collect();
        let f = d.encode(k, &physical, &LENIENT).expect("physical values encode");
        let mut out = Decoded::default();
        d.decode(d.bus("x"), &f, &mut out).expect("decodes");
        for (i, raw) in raws.iter().enumerate() {
            let got = out.get(i).expect("decoded").raw;
            prop_assert!(same_raw(got, *raw), "signal {} ({:?}): {:?} != {:?}", i, m.signals()[i].name(), got, raw);
        }
    }

    #[test]
    fn decoding_arbitrary_frames_never_panics(
        (specs, fd) in specs(),
        id in 0u32..0x800,
        data in prop::collection::vec(any::<u8>(), 0..=64),
        mux_len in 1u16..=64,
    ) {
        let bytes = if fd { 64 } else { 8 };
        let mut signals = layout(&specs, bytes);
        // Make the first signal a multiplexor of the rest, and add an unusable signal.
        let names: Vec<String> = signals.iter().map(|s| s.name.clone()).collect();
        if let Some(first) = signals.first_mut() {
            first.multiplexing.is_multiplexor = true;
        }
        for (s, _) in signals.iter_mut().zip(&names).skip(1) {
            *s = s.clone().when(&names[0], &[(0, 3), (u64::MAX - 1, u64::MAX)]);
        }
        signals.push(signal("Bad", 500, mux_len, ByteOrder::BigEndian));
        let m = message(std_id(id), "P", bytes as u8, signals);
        let mut b = Decoder::builder();
        b.add_database(&database("prop.dbc", vec![m]), &[]).j1939_by_pgn(true);
        let (d, _) = b.build().expect("builds");
        let kind = if data.len() > 8 { FrameKind::Fd { brs: false, esi: false } } else { FrameKind::Data };
        let mut out = Decoded::default();
        if let Ok(f) = CanFrame::new(CanId::standard(id).expect("11-bit"), kind, &data) {
            prop_assert!(d.decode(d.bus("x"), &f, &mut out).is_some());
            // A short frame is always flagged; a full one may be too, when the unusable signal
            // lies past the message length and so past the data.
            if data.len() < bytes {
                prop_assert!(out.truncated);
            }
        }
    }

    #[test]
    fn encoding_arbitrary_values_never_panics(
        (specs, fd) in specs(),
        values in prop::collection::vec(prop_oneof![any::<f64>(), -1e6f64..1e6, Just(f64::NAN), Just(f64::INFINITY)], 10),
        strict in any::<bool>(),
        padding in any::<bool>(),
    ) {
        let bytes = if fd { 64 } else { 8 };
        let signals = layout(&specs, bytes);
        let n = signals.len();
        let d = build(message(std_id(0x123), "P", bytes as u8, signals));
        let k = d.message_by_name("P").expect("exists");
        let given: Vec<(usize, f64)> = values.iter().copied().enumerate().take(n).collect();
        let options = can_decoders::decode::EncodeOptions { strict, padding };
        if let Ok(f) = d.encode(k, &given, &options) {
            prop_assert_eq!(f.len(), bytes);
        }
        let raws: Vec<(usize, RawValue)> = values.iter().enumerate().take(n).map(|(i, v)| (i, RawValue::Float(*v))).collect();
        let _ = d.encode_raw(k, &raws, &options);
    }
}
