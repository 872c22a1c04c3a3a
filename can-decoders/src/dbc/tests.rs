//! Loader behaviour on small inline DBC texts, one quirk per test, plus a few fixtures.

use std::path::{Path, PathBuf};

use super::*;
use crate::frame::CanId;

const HEAD: &str = "VERSION \"\"\nNS_ :\n\tCM_\n\tBA_\nBS_:\nBU_: ECU1 ECU2\n";

fn load(body: &str) -> Database {
    let text = format!("{HEAD}{body}");
    match parse_str(&text, &LoadOptions::default()) {
        Ok(db) => db,
        Err(e) => panic!("lenient load failed: {e}"),
    }
}

fn strict(body: &str) -> Result<Database, LoadError> {
    parse_str(&format!("{HEAD}{body}"), &LoadOptions { strict: true })
}

fn msgs(db: &Database) -> Vec<String> {
    db.warnings.iter().map(ToString::to_string).collect()
}

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/dbc").join(rel)
}

fn sig<'a>(db: &'a Database, msg: &str, sig: &str) -> &'a Signal {
    let m = db.message_by_name(msg).unwrap_or_else(|| panic!("no message {msg}"));
    m.signal(sig).unwrap_or_else(|| panic!("no signal {sig}"))
}

// Lines of the body start at line 7 (HEAD has 6 lines).

#[test]
fn id_above_0x7ff_without_extended_bit_is_extended() {
    let db = load("BO_ 316495015 MEB_Camera_04: 8 ECU1\n SG_ A : 0|8@1+ (1,0) [0|0] \"\" ECU2\n");
    assert_eq!(db.messages[0].id, CanId::extended(316_495_015).expect("29-bit"));
    assert_eq!(db.messages[0].frame_format, FrameFormat::Extended);
    assert!(db.warnings.is_empty(), "{:?}", msgs(&db));
}

#[test]
fn bit_31_marks_extended_and_is_stripped() {
    let db = load("BO_ 2147483748 M: 8 ECU1\nBO_ 2047 S: 8 ECU1\n");
    assert_eq!(db.messages[0].id, CanId::extended(100).expect("29-bit"));
    assert_eq!(db.messages[1].id, CanId::standard(0x7FF).expect("11-bit"));
}

#[test]
fn independent_signal_pseudo_message_is_dropped_silently() {
    let db = load(
        "BO_ 3221225472 VECTOR__INDEPENDENT_SIG_MSG: 0 Vector__XXX\n SG_ Lost : 0|8@1+ (1,0) [0|0] \"\" Vector__XXX\n\
         CM_ SG_ 3221225472 Lost \"orphan\";\n",
    );
    assert!(db.messages.is_empty());
    assert!(db.warnings.is_empty(), "{:?}", msgs(&db));
}

#[test]
fn real_world_number_forms_are_read() {
    let db = load("BO_ 1 M: 8 ECU1\n SG_ A : 0|8@1- (.25,-.5) [1e-06|+1] \"\" ECU2\n SG_ B : 8|8@1+ (1E+2,0) [-3.4E+038|3.4E+038] \"\" ECU2\n");
    let a = sig(&db, "M", "A");
    assert_eq!((a.factor, a.offset, a.minimum, a.maximum), (0.25, -0.5, 1e-6, 1.0));
    assert_eq!(a.value_type, ValueType::Signed);
    let b = sig(&db, "M", "B");
    assert_eq!((b.factor, b.minimum, b.maximum), (100.0, -3.4e38, 3.4e38));
}

#[test]
fn names_may_start_with_a_digit() {
    let db = load("BO_ 1 2Fast: 8 ECU1\n SG_ 4WD_Active : 0|1@1+ (1,0) [0|1] \"\" ECU2\n");
    assert_eq!(sig(&db, "2Fast", "4WD_Active").length, 1);
}

#[test]
fn signal_comment_without_signal_name_is_a_warning() {
    let db = load("BO_ 304 M: 8 ECU1\nCM_ SG_ 304 \"what signal?\";\nCM_ BO_ 304 \"kept\";\n");
    assert_eq!(
        msgs(&db),
        ["8:13: warning: signal comment for message 304 has no signal name; ignored"]
    );
    assert_eq!(db.messages[0].comment.as_deref(), Some("kept"));
}

#[test]
fn comment_without_semicolon_is_accepted_with_a_warning() {
    let db = load("BO_ 1 M: 8 ECU1\nCM_ BO_ 1 \"no end\"\nCM_ \"db \\\"quoted\\\"\";\n");
    assert_eq!(db.messages[0].comment.as_deref(), Some("no end"));
    assert_eq!(db.comment.as_deref(), Some("db \"quoted\""));
    assert_eq!(msgs(&db), ["8:19: warning: missing ';' after comment"]);
}

#[test]
fn value_descriptions_for_unknown_signals_are_ignored_with_a_warning() {
    let db = load("BO_ 1 M: 8 ECU1\n SG_ A : 0|8@1+ (1,0) [0|0] \"\" ECU2\nVAL_ 1 A 0 \"Off\" 1 \"On\" ;\nVAL_ 1 Nope 0 \"x\";\nVAL_ 9 A 0 \"x\";\n");
    assert_eq!(sig(&db, "M", "A").value_table, vec![(0, "Off".to_string()), (1, "On".to_string())]);
    assert_eq!(
        msgs(&db),
        [
            "10:1: warning: VAL_ for unknown signal 'Nope' of message 'M'; ignored",
            "11:1: warning: VAL_ for unknown message id 9; ignored",
        ]
    );
}

#[test]
fn duplicate_message_ids_and_names_are_warned_naming_both_lines() {
    let db = load("BO_ 1 A: 8 ECU1\nBO_ 1 B: 8 ECU1\nBO_ 2 A: 8 ECU1\n");
    assert_eq!(db.messages.len(), 3);
    assert_eq!(
        msgs(&db),
        [
            "8:1: warning: message 'B' (line 8) has the same id 001 as message 'A' (line 7); references apply to the first",
            "9:1: warning: message name 'A' (line 9) is also used at line 7",
        ]
    );
}

#[test]
fn signal_beyond_the_message_is_kept_with_a_warning() {
    let db = load("BO_ 1 M: 1 ECU1\n SG_ A : 8|1@1+ (1,0) [0|0] \"\" ECU2\n SG_ B : 7|8@0+ (1,0) [0|0] \"\" ECU2\n");
    assert_eq!(db.messages[0].signals.len(), 2);
    assert_eq!(
        msgs(&db),
        ["8:1: warning: signal 'A' (start bit 8, 1 bits) does not fit in the 1-byte message 'M'"]
    );
}

#[test]
fn overlapping_signals_are_one_warning_per_message_but_mux_branches_may_share_bits() {
    let db = load(
        "BO_ 1 M: 8 ECU1\n SG_ S M : 0|8@1+ (1,0) [0|0] \"\" ECU2\n SG_ A m1 : 8|8@1+ (1,0) [0|0] \"\" ECU2\n\
         SG_ B m2 : 8|8@1+ (1,0) [0|0] \"\" ECU2\n SG_ C : 4|8@1+ (1,0) [0|0] \"\" ECU2\n",
    );
    assert_eq!(
        msgs(&db),
        ["7:1: warning: in message 'M', signal 'C' overlaps signal 'S' (and 2 more overlapping pairs)"]
    );
}

#[test]
fn zero_or_too_long_signals_are_dropped_as_errors_and_fail_strict_loading() {
    // References to a dropped signal are ignored silently: the error already says it.
    let body = "BO_ 1 M: 8 ECU1\n SG_ Z : 0|0@1+ (1,0) [0|0] \"\" ECU2\n SG_ L : 0|65@1+ (1,0) [0|0] \"\" ECU2\n SG_ ok : 0|8@1+ (1,0) [0|0] \"\" ECU2\nCM_ SG_ 1 L \"long\";\n";
    let db = load(body);
    assert_eq!(db.messages[0].signals.len(), 1);
    assert_eq!(
        msgs(&db),
        [
            "8:2: error: signal 'Z' of message 'M' has length 0, not 1..=64; signal dropped",
            "9:2: error: signal 'L' of message 'M' has length 65, not 1..=64; signal dropped",
        ]
    );
    let err = strict(body).err().map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("<string>:8:2: signal 'Z' of message 'M' has length 0, not 1..=64; signal dropped")
    );
}

#[test]
fn message_longer_than_64_bytes_is_clamped_with_a_warning() {
    let db = load("BO_ 1 M: 100 ECU1\n");
    assert_eq!(db.messages[0].length, 64);
    assert_eq!(msgs(&db), ["7:1: warning: message 'M' declares 100 bytes; clamped to 64"]);
}

#[test]
fn error_message_names_file_line_column_and_what_was_expected() {
    let text = format!("{HEAD}\nBO_ 100 Name foo: 8 ECU1\n");
    let db = parse_bytes(
        text.as_bytes(),
        Some(Path::new("fixtures/dbc/x.dbc")),
        &LoadOptions::default(),
    );
    let db = db.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(msgs(&db), ["8:14: error: expected ':' after message name, found 'foo'"]);
    let strict = parse_bytes(
        text.as_bytes(),
        Some(Path::new("fixtures/dbc/x.dbc")),
        &LoadOptions { strict: true },
    );
    assert_eq!(
        strict.err().map(|e| e.to_string()).as_deref(),
        Some("fixtures/dbc/x.dbc:8:14: expected ':' after message name, found 'foo'")
    );
}

#[test]
fn unterminated_string_is_a_hard_syntax_error_at_its_start() {
    let err =
        parse_str("VERSION \"\"\nBU_: A\nCM_ \"never closed;\n", &LoadOptions::default()).err();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("<string>:3:5: expected '\"' closing the string, found end of file")
    );
}

#[test]
fn text_without_any_dbc_statement_is_a_syntax_error() {
    let err = parse_str("hello world", &LoadOptions::default()).err();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("<string>:1:1: expected a DBC statement (VERSION, BU_, BO_, ...), found 'hello'")
    );
}

#[test]
fn bad_statement_is_skipped_up_to_the_next_statement_line() {
    let db =
        load("B0_ 427 msg1 : 48 XXX\n SG_ A : 0|8@1+ (1,0) [0|0] \"\" ECU2\nBO_ 1 M: 8 ECU1\n");
    assert_eq!(db.messages.len(), 1);
    assert_eq!(
        msgs(&db),
        ["7:1: error: expected a statement keyword (BO_, SG_, CM_, BA_, VAL_, ...), found 'B0_'"]
    );
}

#[test]
fn vector_xxx_is_neither_sender_nor_receiver() {
    let db = load("BO_ 1 M: 8 Vector__XXX\n SG_ A : 0|8@1+ (1,0) [0|0] \"\" Vector__XXX\nBO_TX_BU_ 1 : ECU2,ECU1;\n");
    assert_eq!(db.messages[0].senders, ["ECU2", "ECU1"]);
    assert!(sig(&db, "M", "A").receivers.is_empty());
}

#[test]
fn float_value_types_follow_sig_valtype_and_mismatched_lengths_warn() {
    let db = load(
        "BO_ 1 M: 8 ECU1\n SG_ F : 0|32@1- (1,0) [0|0] \"\" ECU2\n SG_ D : 0|64@1- (1,0) [0|0] \"\" ECU2\n\
         SG_ Bad : 0|16@1- (1,0) [0|0] \"\" ECU2\nSIG_VALTYPE_ 1 F : 1;\nSIG_VALTYPE_ 1 D : 2;\nSIG_VALTYPE_ 1 Bad : 1;\n",
    );
    assert_eq!(sig(&db, "M", "F").value_type, ValueType::Float32);
    assert_eq!(sig(&db, "M", "D").value_type, ValueType::Float64);
    assert_eq!(sig(&db, "M", "Bad").value_type, ValueType::Signed);
    assert!(msgs(&db).contains(&"13:1: warning: signal 'Bad' is declared float32 (SIG_VALTYPE_ 1) but has 16 bits; kept as an integer".to_string()));
}

#[test]
fn vframeformat_by_index_or_label_sets_fd_and_j1939() {
    let db = load(
        "BO_ 1 Fd: 64 ECU1\nBO_ 2147483650 J: 8 ECU1\nBO_ 3 Std: 8 ECU1\nBO_ 2147483652 Ext: 8 ECU1\n\
         BA_DEF_ BO_ \"VFrameFormat\" ENUM \"StandardCAN\",\"ExtendedCAN\",\"reserved\",\"J1939PG\",\"reserved\",\"reserved\",\"reserved\",\"reserved\",\"reserved\",\"reserved\",\"reserved\",\"reserved\",\"reserved\",\"reserved\",\"StandardCAN_FD\",\"ExtendedCAN_FD\";\n\
         BA_DEF_DEF_ \"VFrameFormat\" \"StandardCAN\";\nBA_ \"VFrameFormat\" BO_ 1 14;\nBA_ \"VFrameFormat\" BO_ 2147483650 \"J1939PG\";\n",
    );
    let f: Vec<FrameFormat> = db.messages.iter().map(|m| m.frame_format).collect();
    assert_eq!(
        f,
        [FrameFormat::FdStandard, FrameFormat::J1939, FrameFormat::Standard, FrameFormat::Extended]
    );
    assert!(db.warnings.is_empty(), "{:?}", msgs(&db));
}

#[test]
fn protocol_type_j1939_makes_extended_messages_j1939() {
    let db = load(
        "BO_ 2147483650 J: 8 ECU1\nBO_ 3 Std: 8 ECU1\nBA_DEF_ \"ProtocolType\" STRING;\nBA_ \"ProtocolType\" \"J1939\";\n",
    );
    assert_eq!(db.messages[0].frame_format, FrameFormat::J1939);
    assert!(db.messages[0].is_j1939());
    assert_eq!(db.messages[1].frame_format, FrameFormat::Standard);
}

#[test]
fn a_message_own_vframeformat_wins_over_protocol_type_j1939() {
    let db = load(
        "BO_ 2147483650 J: 8 ECU1\nBO_ 2147483651 E: 8 ECU1\nBA_DEF_ \"ProtocolType\" STRING;\nBA_DEF_DEF_ \"ProtocolType\" \"J1939\";\n\
         BA_DEF_ BO_ \"VFrameFormat\" ENUM \"StandardCAN\",\"ExtendedCAN\",\"reserved\",\"J1939PG\";\nBA_ \"VFrameFormat\" BO_ 2147483651 1;\n",
    );
    let f: Vec<FrameFormat> = db.messages.iter().map(|m| m.frame_format).collect();
    assert_eq!(f, [FrameFormat::J1939, FrameFormat::Extended]);
}

#[test]
fn canmatrix_j1939_messages_are_j1939_through_the_file_own_enum_order() {
    // That file lists J1939PG as the fifth label, not the fourth.
    let db = load_file(&fixture("canmatrix/j1939.dbc")).unwrap_or_else(|e| panic!("{e}"));
    assert!(db.messages.len() > 300);
    assert!(db.messages.iter().all(Message::is_j1939));
}

#[test]
fn vframeformat_defined_as_int_uses_the_standard_labels() {
    let db = load_file(&fixture("cantools/vframeformat_int.dbc")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        db.message_by_name("TestMsg_J1939").map(|m| m.frame_format),
        Some(FrameFormat::J1939)
    );
    assert_eq!(
        db.message_by_name("TestMsg_Std").map(|m| m.frame_format),
        Some(FrameFormat::Standard)
    );
}

#[test]
fn j1939_fixture_messages_are_j1939() {
    let db = load_file(&fixture("cantools/j1939.dbc")).unwrap_or_else(|e| panic!("{e}"));
    assert!(db.messages.iter().all(Message::is_j1939));
}

#[test]
fn cycle_time_comes_from_the_message_or_the_default_and_zero_means_none() {
    let db = load(
        "BO_ 1 A: 8 ECU1\nBO_ 2 B: 8 ECU1\nBO_ 3 C: 8 ECU1\nBA_DEF_ BO_ \"GenMsgCycleTime\" INT 0 65535;\n\
         BA_DEF_DEF_ \"GenMsgCycleTime\" 100;\nBA_ \"GenMsgCycleTime\" BO_ 1 20;\nBA_ \"GenMsgCycleTime\" BO_ 3 0;\n",
    );
    let c: Vec<Option<u32>> = db.messages.iter().map(|m| m.cycle_time_ms).collect();
    assert_eq!(c, [Some(20), Some(100), None]);
}

#[test]
fn gen_sig_start_value_is_the_initial_raw_value() {
    let db = load(
        "BO_ 1 M: 8 ECU1\n SG_ A : 0|8@1+ (1,0) [0|0] \"\" ECU2\n SG_ B : 8|8@1+ (1,0) [0|0] \"\" ECU2\n\
         BA_DEF_ SG_ \"GenSigStartValue\" INT 0 255;\nBA_DEF_DEF_ \"GenSigStartValue\" 0;\nBA_ \"GenSigStartValue\" SG_ 1 A 42;\n",
    );
    assert_eq!(sig(&db, "M", "A").initial_raw, Some(42.0));
    assert_eq!(sig(&db, "M", "B").initial_raw, None);
}

#[test]
fn long_names_replace_short_names_everywhere() {
    let db = load(
        "BU_: ShortNode\nBO_ 1 ShortMsg: 8 ShortNode\n SG_ ShortSw M : 0|8@1+ (1,0) [0|0] \"\" ShortNode\n SG_ ShortSig m1 : 8|8@1+ (1,0) [0|0] \"\" ShortNode\n\
         BA_DEF_ SG_ \"SystemSignalLongSymbol\" STRING;\nBA_DEF_ BO_ \"SystemMessageLongSymbol\" STRING;\nBA_DEF_ BU_ \"SystemNodeLongSymbol\" STRING;\n\
         BA_ \"SystemSignalLongSymbol\" SG_ 1 ShortSw \"LongSwitchName\";\nBA_ \"SystemSignalLongSymbol\" SG_ 1 ShortSig \"LongSignalName\";\n\
         BA_ \"SystemMessageLongSymbol\" BO_ 1 \"LongMessageName\";\nBA_ \"SystemNodeLongSymbol\" BU_ ShortNode \"LongNodeName\";\n",
    );
    let m = &db.messages[0];
    assert_eq!(m.name, "LongMessageName");
    assert_eq!(m.senders, ["LongNodeName"]);
    let s = sig(&db, "LongMessageName", "LongSignalName");
    assert_eq!(s.receivers, ["LongNodeName"]);
    assert_eq!(
        s.multiplexing.multiplexed_by.as_ref().map(|c| c.switch.as_str()),
        Some("LongSwitchName")
    );
    assert!(db.nodes.iter().any(|n| n.name == "LongNodeName"));
}

#[test]
fn long_names_fixture_gives_cantools_names() {
    let db = load_file(&fixture("cantools/long_names.dbc")).unwrap_or_else(|e| panic!("{e}"));
    assert!(db.message_by_name("SS12345678901234567890123458789012345").is_some());
    assert!(db.nodes.iter().any(|n| n.name == "NN123456789012345678901234567890123"));
}

#[test]
fn simple_multiplexing_marks_switch_and_branches() {
    let db = load("BO_ 1 M: 8 ECU1\n SG_ S M : 0|8@1+ (1,0) [0|0] \"\" ECU2\n SG_ A m3 : 8|8@1+ (1,0) [0|0] \"\" ECU2\n");
    let s = sig(&db, "M", "S");
    assert!(s.multiplexing.is_multiplexor && s.multiplexing.multiplexed_by.is_none());
    let a = &sig(&db, "M", "A").multiplexing;
    assert_eq!(a.multiplexed_by, Some(MuxCondition { switch: "S".into(), values: vec![(3, 3)] }));
    assert!(!a.is_multiplexor);
}

#[test]
fn plain_mn_with_two_multiplexors_and_no_sg_mul_val_is_not_multiplexed() {
    let db = load(
        "BO_ 1 M: 8 ECU1\n SG_ S M : 0|8@1+ (1,0) [0|0] \"\" ECU2\n SG_ A m3 : 8|8@1+ (1,0) [0|0] \"\" ECU2\n SG_ N m4M : 16|8@1+ (1,0) [0|0] \"\" ECU2\n",
    );
    assert!(sig(&db, "M", "N").multiplexing.is_multiplexor);
    assert_eq!(sig(&db, "M", "A").multiplexing.multiplexed_by, None);
    assert!(msgs(&db).contains(
        &"9:1: warning: multiplexed signal 'A' of message 'M' has 2 multiplexors and no SG_MUL_VAL_; treated as not multiplexed".to_string()
    ), "{:?}", msgs(&db));
}

#[test]
fn extended_multiplexing_gives_value_ranges() {
    let db = load_file(&fixture("cantools/issue_184_extended_mux_multiple_values.dbc"))
        .unwrap_or_else(|e| panic!("{e}"));
    let s = sig(&db, "ext_MUX_multiple_values", "muxed_0_3_4_5");
    assert_eq!(
        s.multiplexing.multiplexed_by,
        Some(MuxCondition { switch: "MUX".into(), values: vec![(0, 0), (3, 5)] })
    );
}

#[test]
fn cascaded_extended_multiplexing_nests_switches() {
    let db = load_file(&fixture("cantools/issue_184_extended_mux_cascaded.dbc"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mid = sig(&db, "ext_MUX_cascaded", "muxed_A_2_MUX_B");
    assert!(mid.multiplexing.is_multiplexor);
    assert_eq!(
        mid.multiplexing.multiplexed_by,
        Some(MuxCondition { switch: "MUX_A".into(), values: vec![(2, 2)] })
    );
    let leaf = sig(&db, "ext_MUX_cascaded", "muxed_B_1");
    assert_eq!(
        leaf.multiplexing.multiplexed_by,
        Some(MuxCondition { switch: "muxed_A_2_MUX_B".into(), values: vec![(1, 1)] })
    );
}

#[test]
fn cp1252_file_is_decoded_by_hand() {
    let db = load_file(&fixture("cantools/cp1252.dbc")).unwrap_or_else(|e| panic!("{e}"));
    let comment = db.nodes.first().and_then(|n| n.comment.clone()).unwrap_or_default();
    assert!(comment.contains("€‚ƒ„…†‡ˆ‰Š‹ŒŽ"), "{comment}");
    assert!(comment.ends_with("ÿ"), "{comment}");
}

#[test]
fn attributes_are_typed_by_their_definition() {
    let db = load(
        "BO_ 1 M: 8 ECU1\nBA_DEF_ BO_ \"F\" FLOAT 0 10;\nBA_DEF_ BO_ \"H\" HEX 0 255;\nBA_DEF_ BO_ \"E\" ENUM \"No\",\"Yes\";\nBA_DEF_ \"S\" STRING;\n\
         BA_ \"F\" BO_ 1 2;\nBA_ \"H\" BO_ 1 0x1F;\nBA_ \"E\" BO_ 1 1;\nBA_ \"S\" \"db\";\nBA_ \"Undefined\" BO_ 1 3;\n",
    );
    let a = &db.messages[0].attributes;
    assert_eq!(a.get("F"), Some(&AttributeValue::Float(2.0)));
    assert_eq!(a.get("H"), Some(&AttributeValue::Int(31)));
    assert_eq!(a.get("E"), Some(&AttributeValue::Int(1)));
    assert_eq!(db.attributes.get("S"), Some(&AttributeValue::String("db".into())));
    assert_eq!(
        msgs(&db),
        ["16:1: warning: attribute 'Undefined' has no definition (BA_DEF_); kept as written"]
    );
}

#[test]
fn huge_numbers_do_not_panic() {
    let db = load("BO_ 99999999999999999999999 M: 8 ECU1\nBO_ 1 N: 99999999999999999999 ECU1\n SG_ A : 99999999|8@1+ (1e999,0) [0|0] \"\" ECU2\n");
    assert!(db.messages.is_empty());
    assert_eq!(db.warnings.len(), 2, "{:?}", msgs(&db));
}

#[test]
fn bare_lowercase_m_is_read_as_the_multiplexor_with_a_warning() {
    let db = load(
        "BO_ 1 M: 8 ECU1\n SG_ Sw m : 0|2@1+ (1,0) [0|3] \"\" ECU2\n SG_ A m1 : 8|8@1+ (1,0) [0|0] \"\" ECU2\n\
         SG_MUL_VAL_ 1 A Sw 1-1;\n",
    );
    assert!(sig(&db, "M", "Sw").multiplexing.is_multiplexor);
    assert_eq!(
        sig(&db, "M", "A").multiplexing.multiplexed_by,
        Some(MuxCondition { switch: "Sw".into(), values: vec![(1, 1)] })
    );
    assert_eq!(msgs(&db), ["8:9: warning: multiplexer indicator 'm' of signal 'Sw' read as 'M'"]);
}

#[test]
fn sg_mul_val_naming_an_unknown_switch_is_ignored_with_a_warning() {
    let db = load(
        "BO_ 1 M: 8 ECU1\n SG_ Sw M : 0|8@1+ (1,0) [0|0] \"\" ECU2\n SG_ A m1 : 8|8@1+ (1,0) [0|0] \"\" ECU2\n\
         SG_MUL_VAL_ 1 A Nope 1-3;\n",
    );
    assert_eq!(
        sig(&db, "M", "A").multiplexing.multiplexed_by,
        Some(MuxCondition { switch: "Sw".into(), values: vec![(1, 1)] })
    );
    assert_eq!(
        msgs(&db),
        ["10:1: warning: SG_MUL_VAL_ of signal 'A' names unknown multiplexor 'Nope'; ignored"]
    );
}

#[test]
fn statements_we_do_not_model_are_skipped_cleanly() {
    let db = load(
        "BO_ 1 M: 8 ECU1\n SG_ A : 0|8@1+ (1,0) [0|0] \"\" ECU2\n\
         EV_ Env: 0 [0|10] \"\" 0 1 DUMMY_NODE_VECTOR0 ECU1;\nENVVAR_DATA_ Env: 4;\nSIG_GROUP_ 1 G 1 : A;\n\
         BA_DEF_REL_ BU_SG_REL_ \"R\" INT 0 10;\nBA_DEF_DEF_REL_ \"R\" 3;\nBA_REL_ \"R\" BU_SG_REL_ ECU2 SG_ 1 A 5;\n\
         VAL_ Env 0 \"zero\";\nCM_ EV_ Env \"env comment\";\nVAL_TABLE_ T 1 \"one\" 0 \"zero\";\nBO_ 2 N: 8 ECU1\n",
    );
    assert_eq!(db.messages.len(), 2);
    assert!(db.warnings.is_empty(), "{:?}", msgs(&db));
    let rel = db.attribute_defs.get("R").map(|d| (d.object, d.default.clone()));
    assert_eq!(rel, Some((AttributeObject::Relation, Some(AttributeValue::Int(3)))));
    assert_eq!(db.value_tables.get("T").map(Vec::len), Some(2));
}

#[test]
fn new_symbols_list_ends_at_bs_even_without_indentation() {
    let db = parse_str(
        "VERSION \"v1\"\nNS_ :\nCM_\nBA_\nVAL_\nBS_:\nBU_: A\nBO_ 1 M: 8 A\n",
        &LoadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(db.version, "v1");
    assert_eq!(db.nodes.len(), 1);
    assert_eq!(db.messages.len(), 1);
    assert!(db.warnings.is_empty(), "{:?}", msgs(&db));
}

#[test]
fn a_bad_signal_line_drops_only_that_signal() {
    let db = load("BO_ 1 M: 8 ECU1\n SG_ A : 0|8@1+ (1,0) [0|0] \"\" ECU2\n SG_ B : 8|8@2+ (1,0) [0|0] \"\" ECU2\n SG_ C : 16|8@1+ (1,0) [0|0] \"\" ECU2\n");
    let names: Vec<&str> = db.messages[0].signals.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["A", "C"]);
    assert_eq!(msgs(&db), ["9:14: error: expected byte order (0 or 1) after '@', found '2'"]);
}

#[test]
fn motorola_bit_positions_walk_the_sawtooth() {
    let db = load("BO_ 1 M: 8 ECU1\n SG_ A : 7|12@0+ (1,0) [0|0] \"\" ECU2\n");
    let bits: Vec<u32> = bit_positions(sig(&db, "M", "A")).collect();
    assert_eq!(bits, [7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12]);
}

#[test]
fn a_missing_file_is_an_io_error_naming_the_path() {
    let err = load_file(Path::new("/nonexistent/x.dbc")).err();
    assert!(
        matches!(&err, Some(LoadError::Io { path, .. }) if path == Path::new("/nonexistent/x.dbc"))
    );
    assert!(err.is_some_and(|e| e.to_string().starts_with("/nonexistent/x.dbc: ")));
}

#[test]
fn loading_from_bytes_keeps_the_source_path() {
    let db =
        parse_bytes(b"BU_: A\nBO_ 1 M: 8 A\n", Some(Path::new("a.dbc")), &LoadOptions::default());
    assert_eq!(db.ok().and_then(|d| d.source), Some(PathBuf::from("a.dbc")));
}
