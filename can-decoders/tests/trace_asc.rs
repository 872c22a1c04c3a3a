//! Vector ASC: writer to reader round trip, header forms, skipped lines and malformed lines.

use can_decoders::trace::{AscReader, AscWriter, ErrorPolicy, ReadError};
use can_decoders::{CanFrame, CanId, ChannelId, Direction, FrameKind, TimedFrame};

fn std_id(raw: u32) -> CanId {
    CanId::standard(raw).expect("11-bit")
}
fn ext_id(raw: u32) -> CanId {
    CanId::extended(raw).expect("29-bit")
}

fn read(text: &str) -> (Vec<Result<TimedFrame, ReadError>>, AscReader<&[u8]>) {
    let mut r = AscReader::new(text.as_bytes(), ErrorPolicy::Skip);
    let items = r.by_ref().collect();
    (items, r)
}

#[test]
fn frames_written_as_asc_read_back_identical() {
    let t0 = 1_700_000_000_123_000_000; // on a millisecond, like the ASC date
    let mut raw_dlc =
        CanFrame::new(std_id(0x3FF), FrameKind::Data, &[1, 2, 3, 4, 5, 6, 7, 8]).expect("frame");
    raw_dlc.len8_dlc = 13;
    let frames = [
        CanFrame::new(std_id(0x123), FrameKind::Data, &[0x11, 0x22]).expect("frame"),
        CanFrame::new(ext_id(0x18FEF100), FrameKind::Data, &[]).expect("frame"),
        raw_dlc,
        CanFrame::remote(std_id(0x200), 8).expect("remote"),
        CanFrame::remote(ext_id(0x50005), 0).expect("remote"),
        CanFrame::new(std_id(0x4EE), FrameKind::Fd { brs: true, esi: false }, &[0xA5; 64])
            .expect("fd"),
        CanFrame::new(ext_id(0x1C4D80A7), FrameKind::Fd { brs: false, esi: true }, &[7; 12])
            .expect("fd"),
        CanFrame::new(std_id(0x10), FrameKind::Fd { brs: false, esi: false }, &[]).expect("fd"),
        CanFrame::new(ext_id(0x80), FrameKind::Error, &[]).expect("error"),
    ];
    let timed: Vec<TimedFrame> = frames
        .iter()
        .enumerate()
        .map(|(i, frame)| TimedFrame {
            t_ns: t0 + i as u64 * 1_234_567_000,
            channel: ChannelId((i % 2) as u16),
            // ASC error frames carry no direction; the reader says Rx.
            direction: if i % 3 == 1 && i != 8 { Direction::Tx } else { Direction::Rx },
            frame: *frame,
        })
        .collect();
    let names = ["1", "2"];
    let mut w = AscWriter::new(Vec::new());
    for f in &timed {
        w.write(f, names[usize::from(f.channel.0)]).expect("write");
    }
    let text = String::from_utf8(w.finish().expect("finish")).expect("ASCII");
    assert!(
        text.starts_with("date Tue Nov 14 10:13:20.123 pm 2023\nbase hex  timestamps absolute\n")
    );
    assert!(text.ends_with("End TriggerBlock\n"));
    let (items, reader) = read(&text);
    let back: Vec<TimedFrame> = items.into_iter().map(|r| r.expect("valid line")).collect();
    assert_eq!(back, timed, "{text}");
    assert_eq!(reader.channels(), ["1", "2"]);
    assert_eq!(reader.start_ns(), Some(t0));
}

#[test]
fn channel_names_that_are_not_numbers_become_their_trailing_number_plus_one() {
    let f = TimedFrame {
        t_ns: 0,
        channel: ChannelId(0),
        direction: Direction::Rx,
        frame: CanFrame::new(std_id(1), FrameKind::Data, &[]).expect("frame"),
    };
    let mut w = AscWriter::new(Vec::new());
    w.write(&f, "can0").expect("write");
    w.write(&f, "vcan").expect("write");
    let text = String::from_utf8(w.finish().expect("finish")).expect("ASCII");
    let (items, reader) = read(&text);
    assert_eq!(items.len(), 2);
    assert_eq!(reader.channels(), ["1"]);
}

#[test]
fn header_dates_in_english_german_and_12_hour_forms_are_read_as_utc() {
    let cases = [
        ("date Thu Apr 28 10:44:52.480 am 2022", 1_651_142_692_480_000_000),
        ("date Tue May 27 04:09:35.000 pm 2014", 1_401_206_975_000_000_000),
        ("date Sam Sep 30 15:06:13.191 2017", 1_506_783_973_191_000_000),
        ("date Fr Mär 01 12:00:00 am 2024", 1_709_251_200_000_000_000),
        ("date Di Dez 24 12:30:00.5 pm 2024", 1_735_043_400_500_000_000),
    ];
    for (header, start) in cases {
        let text =
            format!("{header}\nbase hex  timestamps absolute\n   1.000001 1  123  Rx   d 1 AA\n");
        let (items, reader) = read(&text);
        assert_eq!(reader.start_ns(), Some(start), "{header}");
        assert_eq!(items[0].as_ref().expect("frame").t_ns, start + 1_000_001_000, "{header}");
    }
}

#[test]
fn the_trigger_block_date_takes_precedence_over_the_header_date() {
    let text = "date Sam Sep 30 15:06:13.191 2017\nBegin Triggerblock Sat Sep 30 10:06:13.191 PM 2017\n 2.5010 2 C8 Tx d 1 09\n";
    let (items, reader) = read(text);
    assert_eq!(reader.start_ns(), Some(1_506_809_173_191_000_000));
    assert_eq!(items[0].as_ref().expect("frame").t_ns, 1_506_809_175_692_000_000);
}

#[test]
fn without_a_parsable_date_times_are_relative_to_zero() {
    let (items, reader) = read("date Someday\n  0.250000 1 123 Rx d 0\n");
    assert_eq!(reader.start_ns(), None);
    assert_eq!(items[0].as_ref().expect("frame").t_ns, 250_000_000);
}

#[test]
fn base_dec_reads_ids_and_data_in_decimal() {
    let (items, _) =
        read("base dec  timestamps absolute\n 0.1 1 291 Rx d 2 255 16\n 0.2 1 291x Tx d 1 1\n");
    let f = items[0].as_ref().expect("frame");
    assert_eq!((f.frame.id, f.frame.data()), (std_id(291), &[255u8, 16][..]));
    assert_eq!(items[1].as_ref().expect("frame").frame.id, ext_id(291));
}

#[test]
fn relative_timestamps_are_deltas_to_the_previous_frame() {
    let (items, _) = read("base hex  timestamps relative\n 0.5 1 1 Rx d 0\n 0.25 1 2 Rx d 0\n");
    let times: Vec<u64> = items.iter().map(|r| r.as_ref().expect("frame").t_ns).collect();
    assert_eq!(times, [500_000_000, 750_000_000]);
}

#[test]
fn events_statistics_and_j1939_lines_are_skipped_and_counted() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/python-can/logfile.asc");
    let file = std::fs::File::open(path).expect("fixture");
    let mut r = AscReader::new(std::io::BufReader::new(file), ErrorPolicy::Strict);
    let n = r.by_ref().inspect(|f| assert!(f.is_ok(), "{f:?}")).count();
    let stats = r.stats();
    assert_eq!(stats.frames, n as u64);
    assert_eq!(stats.malformed, 0);
    let lines = std::fs::read_to_string(path).expect("fixture").lines().count() as u64;
    assert_eq!(stats.frames + stats.ignored, lines);
    assert!(stats.ignored >= 10, "{stats:?}");
}

#[test]
fn a_frame_line_that_does_not_parse_is_malformed_with_its_line_number() {
    let text = "date Sam Sep 30 15:06:13.191 2017\n 1.0 1 123 Rx d 2 11 ZZ\n 1.1 1 FFF Rx d 0\n 1.2 CANFD 1 Rx 123 1 0 9 9 00 00 00 00 00 00 00 00 00\n 1.3 1 123 Rx d 1 01\n";
    let (items, reader) = read(text);
    let errs: Vec<(u64, String)> = items
        .iter()
        .filter_map(|r| match r {
            Err(ReadError::Malformed { line, reason }) => Some((*line, reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert_eq!(errs[0].0, 2);
    assert!(errs[0].1.contains("data byte"));
    assert_eq!(errs[1].0, 3);
    assert!(errs[1].1.contains("standard id"));
    assert_eq!(errs[2].0, 4);
    assert!(errs[2].1.contains("CAN FD length"));
    assert_eq!(reader.stats().frames, 1);
    // Strict stops at the first.
    let mut strict = AscReader::new(text.as_bytes(), ErrorPolicy::Strict);
    assert!(strict.next().expect("error").is_err());
    assert!(strict.next().is_none());
}

/// Ad-hoc figure: `cargo test --release --test trace_asc -- --ignored --nocapture`.
#[test]
#[ignore = "measurement, not a check"]
fn asc_throughput_on_the_gps_log_rewritten_as_asc() {
    use can_decoders::trace::CandumpReader;
    use std::io::Read;
    let path =
        concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/traces/canmod_gps_3BA199E2.log.gz");
    let mut text = Vec::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(path).expect("fixture"))
        .read_to_end(&mut text)
        .expect("gunzip");
    let mut r = CandumpReader::new(&text[..], ErrorPolicy::Strict);
    let frames: Vec<TimedFrame> = r.by_ref().map(|f| f.expect("valid")).collect();
    let names = r.channels().to_vec();
    let cpu = || -> f64 {
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |ns| ns / 1e9)
    };
    let t = cpu();
    let mut w = AscWriter::new(Vec::new());
    for f in &frames {
        w.write(f, &names[usize::from(f.channel.0)]).expect("write");
    }
    let asc = w.finish().expect("finish");
    let write_s = cpu() - t;
    let t = cpu();
    let n = AscReader::new(&asc[..], ErrorPolicy::Strict).inspect(|f| assert!(f.is_ok())).count();
    let read_s = cpu() - t;
    assert_eq!(n, frames.len());
    println!(
        "ASC ({} MB): write {:.2} M frames/s, read {:.2} M frames/s (thread CPU time)",
        asc.len() / 1_000_000,
        n as f64 / write_s / 1e6,
        n as f64 / read_s / 1e6
    );
}
