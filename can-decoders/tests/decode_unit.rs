//! Decoder and encoder against hand-computed values.

mod decode_support;

use can_decoders::dbc::FrameFormat;
use can_decoders::decode::{BuildError, BuildWarning, Decoded, Decoder, EncodeError, RawValue};
use can_decoders::FrameKind;
use decode_support::*;

#[test]
fn intel_signals_decode_at_byte_boundaries_and_odd_positions() {
    let d = decoder(vec![message(
        std_id(0x100),
        "Intel",
        8,
        vec![
            signal("A", 0, 8, LE),
            signal("B", 8, 16, LE),
            signal("C", 27, 5, LE),
            signal("D", 36, 12, LE),
            signal("E", 63, 1, LE),
        ],
    )]);
    let v = values(&d, std_id(0x100), &[0x12, 0x34, 0x56, 0xF8, 0xA0, 0xBC, 0x00, 0x80]);
    assert_eq!(v, named(&[("A", 18.0), ("B", 22068.0), ("C", 31.0), ("D", 3018.0), ("E", 1.0)]));
}

#[test]
fn motorola_signals_count_the_start_bit_as_msb_in_sawtooth_numbering() {
    let d = decoder(vec![message(
        std_id(0x200),
        "Motorola",
        8,
        vec![
            signal("M1", 7, 8, BE),
            signal("M2", 15, 16, BE),
            signal("M3", 28, 6, BE),
            signal("M4", 35, 12, BE),
            signal("M5", 56, 1, BE),
        ],
    )]);
    let v = values(&d, std_id(0x200), &[0xAB, 0x12, 0x34, 0x15, 0x8C, 0xDE, 0x00, 0x01]);
    assert_eq!(
        v,
        named(&[("M1", 171.0), ("M2", 4660.0), ("M3", 43.0), ("M4", 3294.0), ("M5", 1.0)])
    );
}

#[test]
fn sixty_four_bit_signals_decode_in_both_byte_orders_and_across_nine_bytes() {
    let d = decoder(vec![
        message(std_id(0x10), "Le64", 8, vec![signal("L", 0, 64, LE)]),
        message(std_id(0x11), "Be64", 8, vec![signal("B", 7, 64, BE)]),
        message(std_id(0x12), "Span", 12, vec![signal("L9", 4, 64, LE)]),
        message(std_id(0x13), "SpanBe", 12, vec![signal("B9", 3, 64, BE)]),
    ]);
    let data = [0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF];
    let raw_of = |id, data: &[u8]| decode(&d, std_id(id), data).map(|(_, _, o)| o.values[0].raw);
    assert_eq!(raw_of(0x10, &data), Some(RawValue::UInt(0xEFCD_AB89_6745_2301)));
    assert_eq!(raw_of(0x11, &data), Some(RawValue::UInt(0x0123_4567_89AB_CDEF)));
    let mut span = [0u8; 12];
    span[..9].copy_from_slice(&[0x10, 0x32, 0x54, 0x76, 0x98, 0xBA, 0xDC, 0xFE, 0x0F]);
    assert_eq!(raw_of(0x12, &span), Some(RawValue::UInt(0xFFED_CBA9_8765_4321)));
    span[..9].copy_from_slice(&[0x0F, 0xED, 0xCB, 0xA9, 0x87, 0x65, 0x43, 0x21, 0x0F]);
    assert_eq!(raw_of(0x13, &span), Some(RawValue::UInt(0xFEDC_BA98_7654_3210)));
    let v = values(&d, std_id(0x10), &data);
    assert_eq!(v[0].1, 0xEFCD_AB89_6745_2301_u64 as f64);
}

#[test]
fn signed_signals_are_twos_complement_over_their_length() {
    let d = decoder(vec![message(
        std_id(0x20),
        "Signed",
        8,
        vec![
            signal("S12", 0, 12, LE).signed(),
            signal("S16", 23, 16, BE).signed().scaled(0.5, 0.0),
        ],
    )]);
    let (_, v, out) =
        decode(&d, std_id(0x20), &[0xFF, 0x0F, 0x80, 0x00, 0, 0, 0, 0]).expect("known");
    assert_eq!(v, named(&[("S12", -1.0), ("S16", -16384.0)]));
    assert_eq!(out.values[1].raw, RawValue::Int(-32768));
}

#[test]
fn float_signals_reinterpret_the_bits_then_scale_in_f64() {
    let d = decoder(vec![message(
        std_id(0x30),
        "Floats",
        16,
        vec![
            signal("F32", 0, 32, LE).float32().scaled(2.0, 1.0),
            signal("Tenth", 32, 32, LE).float32(),
            signal("F64", 71, 64, BE).float64(),
        ],
    )]);
    let mut data = [0u8; 16];
    data[..4].copy_from_slice(&1.5f32.to_le_bytes());
    data[4..8].copy_from_slice(&0.1f32.to_le_bytes());
    data[8..].copy_from_slice(&(-2.25f64).to_be_bytes());
    let v = values(&d, std_id(0x30), &data);
    assert_eq!(v, named(&[("F32", 4.0), ("Tenth", 0.10000000149011612), ("F64", -2.25)]));
}

#[test]
fn integral_factor_and_offset_use_exact_integer_arithmetic_like_python_ints() {
    let d = decoder(vec![message(
        std_id(0x40),
        "Big",
        8,
        vec![signal("X", 0, 64, LE).scaled(3.0, -7.0)],
    )]);
    let v = values(&d, std_id(0x40), &[0xFF; 8]);
    let exact = (u64::MAX as i128) * 3 - 7;
    assert_eq!(v[0].1.to_bits(), (exact as f64).to_bits());
}

#[test]
fn a_64_byte_fd_message_decodes_signals_at_its_very_end() {
    let d = decoder(vec![message(
        std_id(0x50),
        "Fd64",
        64,
        vec![signal("Tail", 496, 16, LE), signal("Near", 487, 16, BE)],
    )]);
    let mut data = [0u8; 64];
    data[60..].copy_from_slice(&[0x12, 0x34, 0x78, 0x56]);
    assert_eq!(values(&d, std_id(0x50), &data), named(&[("Tail", 22136.0), ("Near", 4660.0)]));
}

fn mux_message() -> can_decoders::dbc::Message {
    message(
        std_id(0x300),
        "Mux",
        8,
        vec![
            signal("Mux", 0, 8, LE).switch(),
            signal("A", 8, 8, LE).when("Mux", &[(0, 0)]),
            signal("B", 8, 16, LE).when("Mux", &[(1, 1)]),
            signal("D", 24, 8, LE).when("Mux", &[(3, 5), (7, 7)]),
            signal("C", 56, 8, LE),
        ],
    )
}

#[test]
fn simple_and_extended_multiplexing_decode_only_the_selected_signals() {
    let d = decoder(vec![mux_message()]);
    let id = std_id(0x300);
    assert_eq!(
        values(&d, id, &[0, 5, 6, 8, 0, 0, 0, 9]),
        named(&[("Mux", 0.0), ("C", 9.0), ("A", 5.0)])
    );
    assert_eq!(
        values(&d, id, &[1, 5, 6, 8, 0, 0, 0, 9]),
        named(&[("Mux", 1.0), ("C", 9.0), ("B", 1541.0)])
    );
    assert_eq!(
        values(&d, id, &[4, 5, 6, 8, 0, 0, 0, 9]),
        named(&[("Mux", 4.0), ("C", 9.0), ("D", 8.0)])
    );
    assert_eq!(
        values(&d, id, &[7, 5, 6, 8, 0, 0, 0, 9]),
        named(&[("Mux", 7.0), ("C", 9.0), ("D", 8.0)])
    );
}

#[test]
fn an_unknown_mux_value_still_decodes_plain_signals_and_is_flagged() {
    let d = decoder(vec![mux_message()]);
    let (_, v, out) = decode(&d, std_id(0x300), &[2, 5, 6, 8, 0, 0, 0, 9]).expect("known id");
    assert_eq!(v, named(&[("Mux", 2.0), ("C", 9.0)]));
    assert!(out.mux_unknown);
    let (_, _, out) = decode(&d, std_id(0x300), &[1, 5, 6, 8, 0, 0, 0, 9]).expect("known id");
    assert!(!out.mux_unknown);
}

#[test]
fn nested_multiplexors_must_themselves_be_active() {
    let d = decoder(vec![message(
        std_id(0x310),
        "Nested",
        8,
        vec![
            signal("S1", 0, 8, LE).switch().labels(&[(0, "Off")]),
            signal("S2", 8, 8, LE).switch().when("S1", &[(1, 1)]),
            signal("X", 16, 8, LE).when("S2", &[(2, 2)]),
            signal("Y", 16, 8, LE).when("S2", &[(3, 3)]),
        ],
    )]);
    let id = std_id(0x310);
    assert_eq!(
        values(&d, id, &[1, 2, 42, 0, 0, 0, 0, 0]),
        named(&[("S1", 1.0), ("S2", 2.0), ("X", 42.0)])
    );
    assert_eq!(
        values(&d, id, &[1, 3, 42, 0, 0, 0, 0, 0]),
        named(&[("S1", 1.0), ("S2", 3.0), ("Y", 42.0)])
    );
    // S1 = 0 has a label but selects nothing: S2, X and Y are absent and nothing is unknown.
    let (_, v, out) = decode(&d, id, &[0, 2, 42, 0, 0, 0, 0, 0]).expect("known id");
    assert_eq!(v, named(&[("S1", 0.0)]));
    assert!(!out.mux_unknown);
}

#[test]
fn a_truncated_frame_decodes_only_signals_entirely_received() {
    let d = decoder(vec![
        message(
            std_id(0x60),
            "Trunc",
            8,
            vec![signal("A", 0, 16, LE), signal("B", 16, 16, LE), signal("C", 39, 8, BE)],
        ),
        message(std_id(0x61), "Short", 2, vec![signal("S", 0, 16, LE)]),
    ]);
    let (_, v, out) = decode(&d, std_id(0x60), &[1, 2, 3]).expect("known id");
    assert_eq!(v, named(&[("A", 513.0)]));
    assert!(out.truncated);
    let (_, v, _) = decode(&d, std_id(0x60), &[1, 2, 3, 4]).expect("known id");
    assert_eq!(v, named(&[("A", 513.0), ("B", 1027.0)]));
    let (_, v, out) = decode(&d, std_id(0x60), &[1, 2, 3, 4, 5]).expect("known id");
    assert_eq!(v, named(&[("A", 513.0), ("B", 1027.0), ("C", 5.0)]));
    assert!(out.truncated);
    // A frame longer than the message decodes normally.
    let (_, v, out) = decode(&d, std_id(0x61), &[1, 2, 3, 4, 5, 6, 7, 8]).expect("known id");
    assert_eq!(v, named(&[("S", 513.0)]));
    assert!(!out.truncated);
}

#[test]
fn j1939_messages_match_by_pgn_ignoring_priority_source_and_pdu1_destination() {
    let mut eec = message(ext_id(0x18FE_F100), "Pdu2", 8, vec![signal("V", 0, 8, LE)]);
    eec.frame_format = FrameFormat::J1939;
    let mut req = message(ext_id(0x18EA_00FE), "Pdu1", 8, vec![signal("W", 0, 8, LE)]);
    req.frame_format = FrameFormat::J1939;
    let db = database("j1939.dbc", vec![eec, req]);
    let mut b = Decoder::builder();
    b.add_database(&db, &[]).j1939_by_pgn(true);
    let (d, _) = b.build().expect("builds");
    let (name, v, out) = decode(&d, ext_id(0x0CFE_F117), &[7; 8]).expect("matched by PGN");
    assert_eq!((name.as_str(), v), ("Pdu2", named(&[("V", 7.0)])));
    assert_eq!(out.j1939_source_address, Some(0x17));
    let (name, _, out) = decode(&d, ext_id(0x0CEA_2A33), &[7; 8]).expect("matched by PGN");
    assert_eq!(name, "Pdu1");
    assert_eq!(out.j1939_source_address, Some(0x33));

    let mut b = Decoder::builder();
    b.add_database(&db, &[]);
    let (exact_only, _) = b.build().expect("builds");
    assert!(decode(&exact_only, ext_id(0x0CFE_F117), &[7; 8]).is_none());
    assert!(decode(&exact_only, ext_id(0x18FE_F100), &[7; 8]).is_some());
}

#[test]
fn duplicate_ids_across_databases_warn_naming_both_and_the_first_wins() {
    let a =
        database("a.dbc", vec![message(std_id(0x123), "First", 8, vec![signal("X", 0, 8, LE)])]);
    let b =
        database("b.dbc", vec![message(std_id(0x123), "Second", 8, vec![signal("Y", 0, 8, LE)])]);
    let mut builder = Decoder::builder();
    builder.add_database(&a, &[]).add_database(&b, &[]);
    let (d, warnings) = builder.build().expect("builds");
    assert_eq!(warnings.len(), 1);
    let BuildWarning::DuplicateId { kept, ignored, kept_source, ignored_source, .. } = &warnings[0]
    else {
        panic!("expected a duplicate id warning, got {warnings:?}");
    };
    assert_eq!((kept.as_str(), ignored.as_str()), ("First", "Second"));
    assert_eq!(kept_source.as_deref(), Some(std::path::Path::new("a.dbc")));
    assert_eq!(ignored_source.as_deref(), Some(std::path::Path::new("b.dbc")));
    let text = warnings[0].to_string();
    assert!(text.contains("a.dbc") && text.contains("b.dbc") && text.contains("123"), "{text}");
    assert_eq!(decode(&d, std_id(0x123), &[1; 8]).map(|r| r.0), Some("First".to_owned()));
}

#[test]
fn databases_added_for_a_channel_apply_only_to_that_channel() {
    let all = database(
        "all.dbc",
        vec![message(std_id(0x1), "Everywhere", 1, vec![signal("X", 0, 8, LE)])],
    );
    let one =
        database("one.dbc", vec![message(std_id(0x2), "Can1Only", 1, vec![signal("Y", 0, 8, LE)])]);
    let mut b = Decoder::builder();
    b.add_database(&all, &[]).add_database(&one, &["can1"]);
    let (d, warnings) = b.build().expect("builds");
    assert!(warnings.is_empty());
    let mut out = Decoded::default();
    let (can0, can1) = (d.bus("can0"), d.bus("can1"));
    assert!(d.decode(can0, &frame(std_id(0x2), &[1]), &mut out).is_none());
    assert!(d.decode(can1, &frame(std_id(0x2), &[1]), &mut out).is_some());
    assert!(d.decode(can0, &frame(std_id(0x1), &[1]), &mut out).is_some());
    assert!(d.decode(can1, &frame(std_id(0x1), &[1]), &mut out).is_some());
}

#[test]
fn selected_signals_decode_alone_but_their_multiplexors_still_decide_presence() {
    let db = database("mux.dbc", vec![mux_message()]);
    let mut b = Decoder::builder();
    b.add_database(&db, &[]).select_signals(["B", "Mux.C"]);
    let (d, _) = b.build().expect("builds");
    let id = std_id(0x300);
    assert_eq!(values(&d, id, &[1, 5, 6, 8, 0, 0, 0, 9]), named(&[("C", 9.0), ("B", 1541.0)]));
    assert_eq!(values(&d, id, &[0, 5, 6, 8, 0, 0, 0, 9]), named(&[("C", 9.0)]));

    let mut b = Decoder::builder();
    b.add_database(&db, &[]).select_signals(["B", "Nope", "Mux.Nada"]);
    assert_eq!(
        b.build().err(),
        Some(BuildError::UnknownSignals { names: vec!["Nope".into(), "Mux.Nada".into()] })
    );
}

#[test]
fn remote_frames_and_unknown_ids_match_nothing_and_clear_the_output() {
    let d = decoder(vec![mux_message()]);
    let mut out = Decoded::default();
    assert!(d.decode(d.bus("x"), &frame(std_id(0x300), &[1; 8]), &mut out).is_some());
    let rtr = can_decoders::CanFrame::remote(std_id(0x300), 8).expect("valid");
    assert!(d.decode(d.bus("x"), &rtr, &mut out).is_none());
    assert!(out.values.is_empty());
    assert!(d.decode(d.bus("x"), &frame(std_id(0x301), &[1; 8]), &mut out).is_none());
}

#[test]
fn labels_come_from_the_value_table_with_the_last_duplicate_winning() {
    let d = decoder(vec![message(
        std_id(0x70),
        "Labels",
        1,
        vec![signal("State", 0, 8, LE).labels(&[(0, "Off"), (1, "On"), (0, "Idle")]).unit("-")],
    )]);
    let s = &d.message(key(&d, "Labels")).signals()[0];
    assert_eq!(s.label(&RawValue::UInt(1)), Some("On"));
    assert_eq!(s.label(&RawValue::UInt(0)), Some("Idle"));
    assert_eq!(s.label(&RawValue::UInt(2)), None);
    assert_eq!(s.unit(), "-");
}

fn gnss() -> can_decoders::dbc::Message {
    message(
        std_id(0x400),
        "Gnss",
        8,
        vec![
            signal("Valid", 0, 1, LE),
            signal("Lat", 1, 28, LE).scaled(1e-6, -90.0).range(-90.0, 90.0),
            signal("Lon", 29, 29, LE).scaled(1e-6, -180.0).range(-180.0, 180.0),
            signal("Sats", 58, 6, LE),
        ],
    )
}

#[test]
fn encoding_rounds_physical_values_to_the_nearest_raw_and_decodes_back() {
    let d = decoder(vec![gnss()]);
    let k = key(&d, "Gnss");
    let f = d
        .encode_by_name(
            k,
            &[("Valid", 1.0), ("Lat", 48.137154), ("Lon", 11.576124), ("Sats", 9.0)],
            &STRICT,
        )
        .expect("encodes");
    let mut out = Decoded::default();
    d.decode(d.bus("x"), &f, &mut out).expect("decodes");
    let raws: Vec<RawValue> = out.values.iter().map(|v| v.raw).collect();
    assert_eq!(
        raws,
        vec![
            RawValue::UInt(1),
            RawValue::UInt(138_137_154),
            RawValue::UInt(191_576_124),
            RawValue::UInt(9)
        ]
    );
}

#[test]
fn encoding_rounds_halves_to_even_like_python() {
    let d = decoder(vec![message(
        std_id(0x71),
        "Half",
        2,
        vec![signal("H", 0, 8, LE), signal("S", 8, 8, LE).signed()],
    )]);
    let k = key(&d, "Half");
    let f = d.encode(k, &[(0, 2.5), (1, -1.5)], &STRICT).expect("encodes");
    assert_eq!(f.data(), &[2, 0xFE]);
    let f = d.encode(k, &[(0, 3.5), (1, -2.5)], &STRICT).expect("encodes");
    assert_eq!(f.data(), &[4, 0xFE]);
}

#[test]
fn encoding_a_multiplexed_message_writes_the_signals_its_multiplexor_selects() {
    let d = decoder(vec![mux_message()]);
    let k = key(&d, "Mux");
    let f =
        d.encode_by_name(k, &[("Mux", 1.0), ("B", 1541.0), ("C", 9.0)], &STRICT).expect("encodes");
    assert_eq!(f.data(), &[1, 5, 6, 0, 0, 0, 0, 9]);
    let missing = d.encode_by_name(k, &[("Mux", 1.0), ("C", 9.0)], &STRICT);
    assert!(
        matches!(missing, Err(EncodeError::MissingSignal { ref signal, .. }) if signal == "B"),
        "{missing:?}"
    );
    let extra = d.encode_by_name(k, &[("Mux", 1.0), ("B", 1.0), ("A", 2.0), ("C", 9.0)], &STRICT);
    assert!(
        matches!(extra, Err(EncodeError::UnusedSignals { ref signals, .. }) if signals == &["A"]),
        "{extra:?}"
    );
    assert!(d
        .encode_by_name(k, &[("Mux", 1.0), ("B", 1.0), ("A", 2.0), ("C", 9.0)], &LENIENT)
        .is_ok());
    let bad = d.encode_by_name(k, &[("Mux", 9.0), ("C", 9.0)], &STRICT);
    assert!(
        matches!(bad, Err(EncodeError::InvalidMuxValue { ref signal, .. }) if signal == "Mux"),
        "{bad:?}"
    );
}

#[test]
fn out_of_range_values_are_refused_unless_not_strict_but_raw_overflow_always_is() {
    let d = decoder(vec![message(
        std_id(0x72),
        "Ranged",
        1,
        vec![signal("P", 0, 8, LE).range(0.0, 100.0)],
    )]);
    let k = key(&d, "Ranged");
    let err = d.encode(k, &[(0, 150.0)], &STRICT);
    assert!(
        matches!(err, Err(EncodeError::OutOfRange { ref signal, .. }) if signal == "P"),
        "{err:?}"
    );
    assert_eq!(d.encode(k, &[(0, 150.0)], &LENIENT).map(|f| f.data().to_vec()), Ok(vec![150]));
    let err = d.encode(k, &[(0, 300.0)], &LENIENT);
    assert!(matches!(err, Err(EncodeError::RawOverflow { .. })), "{err:?}");
    let text =
        d.encode(k, &[(0, 300.0)], &LENIENT).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(text.contains("Ranged") && text.contains('P'), "{text}");
}

#[test]
fn fd_messages_encode_to_fd_frames_of_the_message_length() {
    let d = decoder(vec![message(std_id(0x50), "Fd64", 64, vec![signal("Tail", 496, 16, LE)])]);
    let f = d.encode(key(&d, "Fd64"), &[(0, 0x5678 as f64)], &STRICT).expect("encodes");
    assert!(matches!(f.kind, FrameKind::Fd { .. }));
    assert_eq!(f.len(), 64);
    assert_eq!(&f.data()[62..], &[0x78, 0x56]);
}

#[test]
fn raw_encoding_skips_scaling_and_floats_round_trip_bit_exactly() {
    let d = decoder(vec![message(
        std_id(0x31),
        "RawF",
        12,
        vec![signal("F", 0, 32, LE).float32().scaled(2.0, 1.0), signal("G", 39, 64, BE).float64()],
    )]);
    let k = key(&d, "RawF");
    let f = d
        .encode_raw(k, &[(0, RawValue::Float(1.5)), (1, RawValue::Float(-0.1))], &STRICT)
        .expect("encodes");
    let mut out = Decoded::default();
    d.decode(d.bus("x"), &f, &mut out).expect("decodes");
    assert_eq!(out.values[0].value, 4.0);
    assert_eq!(out.values[1].raw, RawValue::Float(-0.1));
}

#[test]
fn a_scaled_multiplexor_selects_by_its_scaled_value_as_cantools_does() {
    // cantools: `SG_ Sw M : 0|4@1+ (2,0)`, payload 01 07 decodes {'Sw': 2, 'A': 7}; 02 07 is an
    // unknown multiplexer id 4.
    let d = decoder(vec![message(
        std_id(0x1),
        "M",
        2,
        vec![
            signal("Sw", 0, 4, LE).switch().scaled(2.0, 0.0),
            signal("A", 8, 8, LE).when("Sw", &[(2, 2)]),
            signal("B", 8, 8, LE).when("Sw", &[(1, 1)]),
        ],
    )]);
    assert_eq!(values(&d, std_id(0x1), &[1, 7]), named(&[("Sw", 2.0), ("A", 7.0)]));
    let (_, v, out) = decode(&d, std_id(0x1), &[2, 7]).expect("known id");
    assert_eq!((v, out.mux_unknown), (named(&[("Sw", 4.0)]), true));
    let f = d.encode_by_name(key(&d, "M"), &[("Sw", 2.0), ("A", 7.0)], &STRICT).expect("encodes");
    assert_eq!(f.data(), &[1, 7]);
}

#[test]
fn unusable_signals_are_reported_and_skipped_without_failing_the_build() {
    let db = database(
        "bad.dbc",
        vec![message(
            std_id(0x2),
            "Bad",
            8,
            vec![
                signal("Ok", 0, 8, LE),
                signal("ShortFloat", 8, 16, LE).float32(),
                signal("Orphan", 24, 8, LE).when("NoSuchSwitch", &[(1, 1)]),
                signal("PastEnd", 60, 8, LE),
            ],
        )],
    );
    let mut b = Decoder::builder();
    b.add_database(&db, &[]);
    let (d, warnings) = b.build().expect("builds despite bad signals");
    let unusable: Vec<&str> = warnings
        .iter()
        .filter_map(|w| match w {
            BuildWarning::SignalUnusable { signal, .. } => Some(signal.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(unusable, ["ShortFloat", "Orphan"]);
    assert!(warnings
        .iter()
        .any(|w| matches!(w, BuildWarning::SignalPastEnd { signal, .. } if signal == "PastEnd")));
    assert!(warnings.iter().all(|w| w.to_string().contains("Bad")));
    // PastEnd needs 9 bytes: an 8-byte frame leaves it out.
    assert_eq!(values(&d, std_id(0x2), &[5; 8]), named(&[("Ok", 5.0)]));
}

#[test]
fn a_decoder_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Decoder>();
    assert_send_sync::<Decoded>();
}

#[test]
fn float32_signals_refuse_finite_values_beyond_f32_but_take_infinity() {
    let d = decoder(vec![message(std_id(0x32), "F", 4, vec![signal("F", 0, 32, LE).float32()])]);
    let k = key(&d, "F");
    let err = d.encode(k, &[(0, 1e300)], &STRICT);
    assert!(
        matches!(err, Err(EncodeError::RawOverflow { ref signal, .. }) if signal == "F"),
        "{err:?}"
    );
    let f = d.encode(k, &[(0, f64::INFINITY)], &STRICT).expect("infinity is an f32");
    assert_eq!(f.data(), &f32::INFINITY.to_le_bytes());
}
