//! Vector BLF: containers (zlib and stored), objects spanning containers, timestamps, and bounded
//! handling of hostile length fields. Files are built here byte by byte.

use std::io::Write;

use can_decoders::trace::{BlfReader, ErrorPolicy, ReadError};
use can_decoders::{CanId, Direction, FrameKind, TimedFrame};
use flate2::write::ZlibEncoder;
use flate2::Compression;

/// 2024-01-02 03:04:05.678 UTC as a SYSTEMTIME (year, month, weekday, day, h, m, s, ms).
const START: [u16; 8] = [2024, 1, 2, 2, 3, 4, 5, 678];
const START_NS: u64 = 1_704_164_645_678_000_000;

fn file_header(start: [u16; 8]) -> Vec<u8> {
    let mut h = vec![0u8; 144];
    h[..4].copy_from_slice(b"LOGG");
    h[4..8].copy_from_slice(&144u32.to_le_bytes());
    for (i, v) in start.iter().enumerate() {
        h[40 + 2 * i..42 + 2 * i].copy_from_slice(&v.to_le_bytes());
    }
    h
}

/// An object with a version 1 (or 2) header; `flags` 1 = 10 µs units, 2 = 1 ns.
fn object(version: u16, kind: u32, flags: u32, ts: u64, body: &[u8]) -> Vec<u8> {
    let header_len: usize = if version == 1 { 32 } else { 40 };
    let size = header_len + body.len();
    let mut o = Vec::new();
    o.extend_from_slice(b"LOBJ");
    o.extend_from_slice(&(header_len as u16).to_le_bytes());
    o.extend_from_slice(&version.to_le_bytes());
    o.extend_from_slice(&(size as u32).to_le_bytes());
    o.extend_from_slice(&kind.to_le_bytes());
    o.extend_from_slice(&flags.to_le_bytes());
    o.extend_from_slice(&[0; 4]);
    o.extend_from_slice(&ts.to_le_bytes());
    if version == 2 {
        o.extend_from_slice(&[0; 8]);
    }
    o.extend_from_slice(body);
    o
}

fn can_message(chan: u16, flags: u8, dlc: u8, id: u32, data: [u8; 8]) -> Vec<u8> {
    let mut b = chan.to_le_bytes().to_vec();
    b.extend_from_slice(&[flags, dlc]);
    b.extend_from_slice(&id.to_le_bytes());
    b.extend_from_slice(&data);
    b
}

fn can_fd_message_64(chan: u8, valid: u8, id: u32, flags: u32, data: &[u8]) -> Vec<u8> {
    let mut b = vec![chan, 15, valid, 0];
    b.extend_from_slice(&id.to_le_bytes());
    b.extend_from_slice(&[0; 4]); // frame length
    b.extend_from_slice(&flags.to_le_bytes());
    b.extend_from_slice(&[0; 18]); // bit rates, offsets, bit count
    b.extend_from_slice(&[0, 0]); // direction, ext data offset
    b.extend_from_slice(&[0; 4]); // crc
    b.extend_from_slice(data);
    b
}

fn container(data: &[u8], zlib: bool) -> Vec<u8> {
    let payload = if zlib {
        let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).expect("compress");
        e.finish().expect("compress")
    } else {
        data.to_vec()
    };
    let size = 32 + payload.len();
    let mut o = Vec::new();
    o.extend_from_slice(b"LOBJ");
    o.extend_from_slice(&16u16.to_le_bytes());
    o.extend_from_slice(&1u16.to_le_bytes());
    o.extend_from_slice(&(size as u32).to_le_bytes());
    o.extend_from_slice(&10u32.to_le_bytes());
    o.extend_from_slice(&(if zlib { 2u16 } else { 0 }).to_le_bytes());
    o.extend_from_slice(&[0; 6]);
    o.extend_from_slice(&(data.len() as u32).to_le_bytes());
    o.extend_from_slice(&[0; 4]);
    o.extend_from_slice(&payload);
    o.resize(o.len() + size % 4, 0);
    o
}

fn read(file: &[u8], policy: ErrorPolicy) -> Vec<Result<TimedFrame, ReadError>> {
    BlfReader::new(file, policy).expect("header").collect()
}

/// Five objects of three kinds plus an unknown one, as one object stream.
fn stream() -> Vec<u8> {
    let mut s = Vec::new();
    s.extend(object(1, 1, 1, 100, &can_message(1, 0, 2, 0x123, [1, 2, 0, 0, 0, 0, 0, 0])));
    s.extend(object(1, 86, 2, 2_000_000, &can_message(2, 1, 8, 0x8000_1234, [9; 8])));
    s.extend(object(2, 999, 2, 0, &[0xEE; 13]));
    s.extend([0, 0, 0]); // padding between objects
    s.extend(object(1, 1, 2, 3_000_000, &can_message(1, 0x80, 4, 0x7FF, [0; 8])));
    s.extend(object(2, 101, 2, 4_000_000, &can_fd_message_64(3, 12, 0x456, 0x3000, &[7; 12])));
    s.extend(object(1, 73, 2, 5_000_000, &[0u8; 32]));
    s
}

fn check_stream_frames(frames: &[TimedFrame]) {
    assert_eq!(frames.len(), 5);
    assert_eq!(frames[0].t_ns, START_NS + 1_000_000); // 100 × 10 µs
    assert_eq!(frames[0].frame.id, CanId::standard(0x123).expect("id"));
    assert_eq!(frames[0].frame.data(), [1, 2]);
    assert_eq!(frames[1].t_ns, START_NS + 2_000_000);
    assert_eq!(frames[1].frame.id, CanId::extended(0x1234).expect("id"));
    assert_eq!(frames[1].direction, Direction::Tx);
    assert_eq!((frames[2].frame.kind, frames[2].frame.len()), (FrameKind::Remote, 4));
    assert_eq!(frames[3].frame.kind, FrameKind::Fd { brs: true, esi: false });
    assert_eq!(frames[3].frame.data(), [7; 12]);
    assert_eq!(frames[4].frame.kind, FrameKind::Error);
}

#[test]
fn objects_read_the_same_however_the_stream_is_split_across_containers() {
    let s = stream();
    for cut in 1..s.len() {
        for zlib_first in [true, false] {
            let mut file = file_header(START);
            file.extend(container(&s[..cut], zlib_first));
            file.extend(container(&s[cut..], !zlib_first));
            let mut r = BlfReader::new(&file[..], ErrorPolicy::Strict).expect("header");
            let frames: Vec<TimedFrame> =
                r.by_ref().map(|f| f.unwrap_or_else(|e| panic!("cut {cut}: {e}"))).collect();
            check_stream_frames(&frames);
            assert_eq!(r.channels(), ["1", "2", "3", "0"]);
            assert_eq!(r.stats().ignored, 1, "the unknown object");
            assert_eq!(r.stats().frames, 5);
        }
    }
}

#[test]
fn an_object_spanning_three_containers_is_reassembled() {
    let s = stream();
    let mut file = file_header(START);
    for chunk in s.chunks(20) {
        file.extend(container(chunk, true));
    }
    let frames: Vec<TimedFrame> =
        read(&file, ErrorPolicy::Strict).into_iter().map(|f| f.expect("valid")).collect();
    check_stream_frames(&frames);
}

#[test]
fn an_invalid_start_time_gives_times_from_zero() {
    let mut file = file_header([0; 8]);
    file.extend(container(&object(1, 1, 2, 42, &can_message(1, 0, 0, 1, [0; 8])), false));
    let frames = read(&file, ErrorPolicy::Strict);
    assert_eq!(frames[0].as_ref().expect("frame").t_ns, 42);
}

#[test]
fn a_file_without_logg_or_with_a_short_header_is_refused() {
    let err = BlfReader::new(&b"LOGX"[..], ErrorPolicy::Skip).err().expect("refused");
    assert!(err.to_string().contains("shorter than a BLF header"), "{err}");
    let mut file = file_header(START);
    file[3] = b'X';
    let err = BlfReader::new(&file[..], ErrorPolicy::Skip).err().expect("refused");
    assert!(err.to_string().contains("LOGG"), "{err}");
    let mut file = file_header(START);
    file[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(BlfReader::new(&file[..], ErrorPolicy::Skip).is_err());
}

#[test]
fn a_huge_container_length_is_refused_without_allocating_it() {
    let mut file = file_header(START);
    let mut c = container(&[0; 8], false);
    c[8..12].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    file.extend(c);
    let items = read(&file, ErrorPolicy::Skip);
    assert_eq!(items.len(), 1);
    let err = items[0].as_ref().expect_err("refused");
    assert!(matches!(err, ReadError::MalformedBinary { offset: 144, .. }), "{err}");
}

#[test]
fn a_huge_object_length_inside_a_container_is_malformed_and_reading_resyncs() {
    let mut s = object(1, 1, 2, 0, &can_message(1, 0, 0, 1, [0; 8]));
    s[8..12].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    s.extend(object(1, 1, 2, 7, &can_message(1, 0, 1, 2, [5; 8])));
    let mut file = file_header(START);
    file.extend(container(&s, true));
    let items = read(&file, ErrorPolicy::Skip);
    assert!(items[0].as_ref().is_err_and(|e| e.to_string().contains("out of range")), "{items:?}");
    let last = items.last().expect("items").as_ref().expect("second object reads");
    assert_eq!(last.frame.data(), [5]);
    // Strict stops after the first error.
    assert_eq!(read(&file, ErrorPolicy::Strict).len(), 1);
}

#[test]
fn a_container_inflating_beyond_16_mib_is_refused() {
    let zeros = vec![0u8; 17 * 1024 * 1024];
    let mut file = file_header(START);
    file.extend(container(&zeros, true));
    let items = read(&file, ErrorPolicy::Skip);
    assert!(
        items.iter().any(|i| i.as_ref().is_err_and(|e| e.to_string().contains("16 MiB"))),
        "{:?}",
        items.first()
    );
}

#[test]
fn a_truncated_file_ends_with_an_error_naming_the_offset() {
    let mut file = file_header(START);
    file.extend(container(&stream(), true));
    let cut = file.len() - 5;
    let items = read(&file[..cut], ErrorPolicy::Skip);
    let err = items.last().expect("items").as_ref().expect_err("truncated");
    assert!(err.to_string().contains("ends inside"), "{err}");
}

#[test]
fn top_level_objects_other_than_containers_are_skipped() {
    let mut file = file_header(START);
    file.extend(object(1, 65, 2, 0, &[0; 21]));
    file.resize(file.len() + 1, 0); // 53 % 4 = 1 byte of padding
    file.extend(container(&object(1, 1, 2, 0, &can_message(1, 0, 0, 1, [0; 8])), false));
    let mut r = BlfReader::new(&file[..], ErrorPolicy::Strict).expect("header");
    assert_eq!(r.by_ref().inspect(|f| assert!(f.is_ok(), "{f:?}")).count(), 1);
    assert_eq!(r.stats().ignored, 1);
}

#[test]
fn a_file_ending_inside_an_object_that_spans_containers_says_so() {
    let s = stream();
    let mut file = file_header(START);
    file.extend(container(&s[..40], true)); // the first object is 48 bytes
    let items = read(&file, ErrorPolicy::Skip);
    assert_eq!(items.len(), 1);
    let err = items[0].as_ref().expect_err("truncated object");
    assert!(err.to_string().contains("file ends inside an object (40 bytes"), "{err}");
}
