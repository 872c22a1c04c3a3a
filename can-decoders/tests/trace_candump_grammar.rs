//! Every item of the candump `-L` grammar (can-utils `lib.c`), read and written.

use std::io::{self, BufRead, BufReader, Read};

use can_decoders::trace::{CandumpReader, CandumpWriter, ErrorPolicy, ReadError, TimePrecision};
use can_decoders::{CanFrame, CanId, ChannelId, Direction, FrameKind, TimedFrame};

fn read_all(text: &str, policy: ErrorPolicy) -> (Vec<Result<TimedFrame, ReadError>>, Vec<String>) {
    let mut r = CandumpReader::new(text.as_bytes(), policy);
    let items = r.by_ref().collect();
    (items, r.channels().to_vec())
}

fn one(line: &str) -> TimedFrame {
    let (items, _) = read_all(line, ErrorPolicy::Strict);
    match items.as_slice() {
        [Ok(f)] => *f,
        other => panic!("{line:?} gave {other:?}"),
    }
}

/// The line number and reason of the single error `line` gives.
fn malformed(line: &str) -> (u64, String) {
    let (items, _) = read_all(line, ErrorPolicy::Strict);
    match items.as_slice() {
        [Err(ReadError::Malformed { line, reason })] => (*line, reason.clone()),
        other => panic!("{line:?} gave {other:?}"),
    }
}

fn std_id(raw: u32) -> CanId {
    CanId::standard(raw).expect("11-bit")
}
fn ext_id(raw: u32) -> CanId {
    CanId::extended(raw).expect("29-bit")
}

#[test]
fn a_classic_extended_line_gives_time_channel_id_data_and_direction() {
    let f = one("(1627274455.012500) can1 17F00010#2010000000000000 R");
    assert_eq!(f.t_ns, 1_627_274_455_012_500_000);
    assert_eq!(f.channel, ChannelId(0));
    assert_eq!(f.direction, Direction::Rx);
    assert_eq!(f.frame.id, ext_id(0x17F0_0010));
    assert_eq!(f.frame.kind, FrameKind::Data);
    assert_eq!(f.frame.data(), [0x20, 0x10, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn fractions_of_one_to_nine_digits_are_exact_nanoseconds_and_ten_are_refused() {
    assert_eq!(one("(1.123456789) can0 123#").t_ns, 1_123_456_789);
    assert_eq!(one("(1.5) can0 123#").t_ns, 1_500_000_000);
    assert_eq!(one("(0.000001) can0 123#").t_ns, 1_000);
    let (line, reason) = malformed("(1.1234567891) can0 123#");
    assert_eq!(line, 1);
    assert!(reason.contains("more than 9 fraction digits"), "{reason}");
    assert!(malformed("(1.2a) can0 123#").1.contains("not a decimal"));
    assert!(malformed("(1.5 can0 123#").1.contains("closing ')'"));
}

#[test]
fn whitespace_runs_and_tabs_between_fields_are_accepted() {
    let f = one("(1.000000)   can0 \t  123#11   T  ");
    assert_eq!(f.frame.id, std_id(0x123));
    assert_eq!(f.direction, Direction::Tx);
}

#[test]
fn direction_defaults_to_rx_and_anything_but_r_or_t_is_malformed() {
    assert_eq!(one("(1.0) can0 123#11").direction, Direction::Rx);
    assert_eq!(one("(1.0) can0 123#11 t").direction, Direction::Tx);
    assert!(malformed("(1.0) can0 123#11 X").1.contains("must be R or T"));
    assert!(malformed("(1.0) can0 123#11 R extra").1.contains("unexpected text"));
}

#[test]
fn standard_ids_are_three_digits_extended_eight_and_other_widths_are_malformed() {
    assert_eq!(one("(1.0) can0 7FF#").frame.id, std_id(0x7FF));
    assert_eq!(one("(1.0) can0 00000123#").frame.id, ext_id(0x123));
    assert!(malformed("(1.0) can0 800#").1.contains("standard id above 7FF"));
    assert!(malformed("(1.0) can0 1234#").1.contains("3 (standard) or 8 (extended)"));
    assert!(malformed("(1.0) can0 12G#").1.contains("not hexadecimal"));
    assert!(malformed("(1.0) can0 40000000#").1.contains("flag bits"));
    assert!(malformed("(1.0) can0 12345#11").1.contains("CAN XL"));
}

#[test]
fn lower_case_hex_and_dot_separators_are_read() {
    let f = one("(1.0) can0 1ab#de.ad.be.ef");
    assert_eq!(f.frame.id, std_id(0x1AB));
    assert_eq!(f.frame.data(), [0xDE, 0xAD, 0xBE, 0xEF]);
}

#[test]
fn data_must_be_whole_hex_pairs_and_at_most_eight_bytes_for_classic_frames() {
    assert!(malformed("(1.0) can0 123#112").1.contains("pairs of hex digits"));
    assert!(malformed("(1.0) can0 123#1x").1.contains("pairs of hex digits"));
    assert!(malformed("(1.0) can0 123#112233445566778899").1.contains("more than 8"));
    assert!(one("(1.0) can0 123#").frame.is_empty());
}

#[test]
fn remote_requests_carry_an_optional_length_and_raw_dlc() {
    let r = one("(1.0) can0 123#R").frame;
    assert_eq!((r.kind, r.len()), (FrameKind::Remote, 0));
    let r = one("(1.0) can0 123#r5").frame;
    assert_eq!((r.kind, r.len()), (FrameKind::Remote, 5));
    let r = one("(1.0) can0 123#R8_C").frame;
    assert_eq!((r.len(), r.len8_dlc), (8, 12));
    assert!(malformed("(1.0) can0 123#R9").1.contains("remote length must be 0..=8"));
    assert!(malformed("(1.0) can0 123#R5_C").1.contains("only valid after 8 data bytes"));
    // lib.c silently reads `R_9` as a remote request of length 0; we say what is wrong.
    assert!(malformed("(1.0) can0 123#R_9").1.contains("remote length must be 0..=8"));
}

#[test]
fn raw_dlc_suffix_is_kept_only_on_eight_byte_classic_frames() {
    let f = one("(1.0) can0 123#1122334455667788_C").frame;
    assert_eq!((f.len(), f.len8_dlc), (8, 12));
    assert!(malformed("(1.0) can0 123#11_C").1.contains("only valid after 8 data bytes"));
    assert!(malformed("(1.0) can0 123#1122334455667788_8").1.contains("9..=F"));
    assert!(malformed("(1.0) can0 123#1122334455667788_CC").1.contains("one hex digit"));
}

#[test]
fn can_fd_frames_take_brs_esi_from_the_flags_digit_and_need_an_fd_length() {
    let data = "00112233445566778899AABB";
    let f = one(&format!("(1.0) can0 123##1{data}")).frame;
    assert_eq!(f.kind, FrameKind::Fd { brs: true, esi: false });
    assert_eq!(f.len(), 12);
    assert_eq!(one("(1.0) can0 123##2").frame.kind, FrameKind::Fd { brs: false, esi: true });
    // FDF (4) as written by current can-utils.
    assert_eq!(one("(1.0) can0 123##5").frame.kind, FrameKind::Fd { brs: true, esi: false });
    let f = one(&format!("(1.0) can0 12345678##3{}", "AB".repeat(64))).frame;
    assert_eq!((f.id, f.len()), (ext_id(0x1234_5678), 64));
    let (_, reason) = malformed("(1.0) can0 123##1112233445566778899");
    assert!(reason.contains("CAN FD data length"), "{reason}");
    assert!(malformed("(1.0) can0 123##").1.contains("no flags digit"));
    assert!(malformed("(1.0) can0 123##G11").1.contains("not hex"));
    assert!(malformed(&format!("(1.0) can0 123##0{}", "00".repeat(65))).1.contains("64"));
}

#[test]
fn error_frames_are_eight_digit_ids_with_can_err_flag_and_keep_the_class_bits() {
    let f = one("(1.0) can0 20000080#0000000000000000").frame;
    assert_eq!(f.kind, FrameKind::Error);
    assert_eq!(f.id, ext_id(0x80));
    assert_eq!(f.data(), [0; 8]);
    assert!(malformed("(1.0) can0 20000080#R").1.contains("cannot be a remote"));
    assert!(malformed("(1.0) can0 20000080##0").1.contains("cannot be CAN FD"));
}

#[test]
fn comments_empty_lines_and_notes_are_skipped_and_counted() {
    let text =
        "# a comment\n\n   \nDROPCOUNT: dropped 3 CAN frames on 'can0' socket\n(1.0) can0 123#\n";
    let mut r = CandumpReader::new(text.as_bytes(), ErrorPolicy::Strict);
    assert_eq!(r.by_ref().filter(Result::is_ok).count(), 1);
    let s = r.stats();
    assert_eq!((s.frames, s.ignored, s.malformed), (1, 4, 0));
    assert!(malformed("garbage line").1.contains("expected '('"));
}

#[test]
fn channel_names_are_interned_in_order_of_appearance() {
    let (items, channels) =
        read_all("(1.0) can0 123#\n(2.0) vcan1 123#\n(3.0) can0 123#\n", ErrorPolicy::Strict);
    let ids: Vec<u16> = items.iter().map(|r| r.as_ref().expect("valid").channel.0).collect();
    assert_eq!(ids, [0, 1, 0]);
    assert_eq!(channels, ["can0", "vcan1"]);
    let long = "n".repeat(65);
    assert!(malformed(&format!("(1.0) {long} 123#")).1.contains("longer than 64 bytes"));
}

#[test]
fn skip_reports_the_bad_line_by_number_and_goes_on_while_strict_stops() {
    let text = "(1.0) can0 123#11\n(2.0) can0 123#1\n(3.0) can0 123#33\n";
    let (items, _) = read_all(text, ErrorPolicy::Skip);
    assert_eq!(items.len(), 3);
    assert!(matches!(&items[1], Err(ReadError::Malformed { line: 2, .. })));
    assert_eq!(items[2].as_ref().expect("third line").frame.data(), [0x33]);
    let mut r = CandumpReader::new(text.as_bytes(), ErrorPolicy::Skip);
    r.by_ref().for_each(drop);
    assert_eq!((r.stats().frames, r.stats().malformed), (2, 1));

    let (items, _) = read_all(text, ErrorPolicy::Strict);
    assert_eq!(items.len(), 2);
    let err = items[1].as_ref().expect_err("line 2 is malformed");
    assert_eq!(err.to_string(), "line 2: data is not pairs of hex digits");
}

#[test]
fn crlf_line_ends_and_a_missing_final_newline_are_accepted() {
    let (items, _) = read_all("(1.0) can0 123#11\r\n(2.0) can0 123#22", ErrorPolicy::Strict);
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(Result::is_ok));
}

#[test]
fn a_line_longer_than_16_kib_is_malformed_without_being_kept() {
    let text = format!("(1.0) can0 123#{}\n(2.0) can0 123#22\n", "1".repeat(100_000));
    let (items, _) = read_all(&text, ErrorPolicy::Skip);
    assert!(
        matches!(&items[0], Err(ReadError::Malformed { line: 1, reason }) if reason.contains("longer"))
    );
    assert_eq!(items[1].as_ref().expect("line 2").frame.data(), [0x22]);
}

struct FailingReader;
impl Read for FailingReader {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::other("disk on fire"))
    }
}

#[test]
fn an_io_error_is_reported_once_and_ends_the_iteration() {
    let input = BufReader::new(b"(1.0) can0 123#\n".chain(FailingReader));
    let mut r = CandumpReader::new(Box::new(input) as Box<dyn BufRead>, ErrorPolicy::Skip);
    assert!(r.next().expect("first line").is_ok());
    assert!(matches!(r.next(), Some(Err(ReadError::Io { .. }))));
    assert!(r.next().is_none());
}

fn written(frame: CanFrame, direction: Direction, precision: TimePrecision) -> String {
    let mut w = CandumpWriter::new(Vec::new()).with_precision(precision);
    let f = TimedFrame { t_ns: 1_627_274_455_012_500_123, channel: ChannelId(0), direction, frame };
    w.write(&f, "can1").expect("write");
    String::from_utf8(w.into_inner().expect("flush")).expect("ASCII")
}

#[test]
fn the_writer_writes_what_can_utils_writes() {
    let us = TimePrecision::Micros;
    let data = CanFrame::new(std_id(0x7E8), FrameKind::Data, &[3, 0x41, 0x0c]).expect("frame");
    assert_eq!(written(data, Direction::Rx, us), "(1627274455.012500) can1 7E8#03410C R\n");
    assert_eq!(
        written(data, Direction::Tx, TimePrecision::Nanos),
        "(1627274455.012500123) can1 7E8#03410C T\n"
    );
    let mut raw = CanFrame::new(ext_id(0x1234), FrameKind::Data, &[0xAB; 8]).expect("frame");
    raw.len8_dlc = 15;
    assert_eq!(
        written(raw, Direction::Rx, us),
        "(1627274455.012500) can1 00001234#ABABABABABABABAB_F R\n"
    );
    let rtr = CanFrame::remote(std_id(0x123), 3).expect("remote");
    assert_eq!(written(rtr, Direction::Rx, us), "(1627274455.012500) can1 123#R3 R\n");
    let rtr0 = CanFrame::remote(std_id(0x123), 0).expect("remote");
    assert_eq!(written(rtr0, Direction::Rx, us), "(1627274455.012500) can1 123#R R\n");
    let fd =
        CanFrame::new(std_id(0x123), FrameKind::Fd { brs: true, esi: true }, &[1; 12]).expect("fd");
    assert_eq!(
        written(fd, Direction::Rx, us),
        "(1627274455.012500) can1 123##7010101010101010101010101 R\n"
    );
    let err = CanFrame::new(ext_id(0x80), FrameKind::Error, &[0; 8]).expect("error");
    assert_eq!(
        written(err, Direction::Rx, us),
        "(1627274455.012500) can1 20000080#0000000000000000 R\n"
    );
}

#[test]
fn the_writer_pads_seconds_to_ten_digits_like_candump() {
    let mut w = CandumpWriter::new(Vec::new());
    let mut f = one("(0.5) can0 123#");
    w.write(&f, "can0").expect("write");
    f.t_ns = 12_345_678_901_000_000_000; // 11 digits: no padding, no truncation
    w.write(&f, "can0").expect("write");
    let text = String::from_utf8(w.into_inner().expect("flush")).expect("ASCII");
    assert_eq!(text, "(0000000000.500000) can0 123# R\n(12345678901.000000) can0 123# R\n");
    let back: Vec<u64> = CandumpReader::new(text.as_bytes(), ErrorPolicy::Strict)
        .map(|r| r.expect("valid").t_ns)
        .collect();
    assert_eq!(back, [500_000_000, 12_345_678_901_000_000_000]);
}

#[test]
fn the_writer_refuses_channel_names_that_would_not_read_back() {
    let mut w = CandumpWriter::new(Vec::new());
    let f = one("(1.0) can0 123#");
    assert!(w.write(&f, "can 0").is_err());
    assert!(w.write(&f, "").is_err());
    let mut w = CandumpWriter::new(Vec::new()).with_direction(false);
    w.write(&f, "can0").expect("write");
    assert_eq!(w.into_inner().expect("flush"), b"(0000000001.000000) can0 123#\n");
}
