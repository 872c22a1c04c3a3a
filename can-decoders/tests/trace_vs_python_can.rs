//! Differential test: every ASC and BLF file in `fixtures/python-can/` read by our readers and by
//! python-can 4.6.1 (`scripts/pycan_oracle.py`) gives the same frames.
//!
//! Python comes from `IOV_ORACLE_PYTHON`, else `<workspace>/.venv/bin/python`; without either the
//! test fails and says to run `make deps`.
//!
//! Documented differences (each asserted below with what we produce instead):
//! 1. Channels: python-can returns the ASC/BLF channel number minus one; we keep the number as
//!    written, so our channel name is `(python + 1).to_string()`.
//! 2. Error frames: python-can gives id 0 (ASC) or the BLF record's id and bytes; we give the
//!    SocketCAN class `CAN_ERR_BUSERROR` (0x80, extended) and no data, on every format.
//! 3. CAN FD remote requests (ASC `CANFD` line of length 0 without EDL, BLF FD object with the
//!    remote flag): python-can says `is_fd` and may carry BRS/ESI and a DLC up to 64; CAN FD has no
//!    remote frames, so ours are classic remote requests of length `min(len, 8)`. A CAN FD error
//!    frame likewise is just an error frame for us.
//! 4. Classic DLC above 8: python-can reports `dlc2len(dlc)` (or the raw byte when above 15); we
//!    keep the 8 bytes and, for a raw DLC 9..=15, put it in `len8_dlc`.
//! 5. Impossible ids: python-can's synthetic BLF files (`test_CanMessage.blf` ...) hold standard
//!    (non-extended) ids like 0x4444444 that do not fit 11 bits; python-can yields them, we report
//!    each such object as malformed (reason "standard id above 0x7FF") and go on.
//! 6. Timestamps: python-can uses floats; ours are integers and must agree within 1 µs.

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Command;

use can_decoders::trace::{AscReader, BlfReader, CandumpReader, ErrorPolicy, TraceReader};
use can_decoders::{FrameKind, TimedFrame};
use serde_json::Value;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("IOV_ORACLE_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = workspace().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "no oracle Python: set IOV_ORACLE_PYTHON or run `make deps` to create {} with python-can 4.6.1",
        venv.display()
    );
    venv
}

/// python-can's messages for `path`, and the error it stopped on, if any.
fn oracle(path: &Path, absolute: bool) -> (Vec<Value>, Option<String>) {
    let mut cmd = Command::new(python());
    cmd.arg(workspace().join("scripts/pycan_oracle.py")).arg(path);
    if absolute {
        cmd.arg("--absolute");
    }
    let out = cmd.output().expect("oracle Python runs");
    assert!(out.status.success(), "oracle failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut msgs = Vec::new();
    let mut error = None;
    for line in String::from_utf8(out.stdout).expect("UTF-8").lines() {
        let v: Value = serde_json::from_str(line).expect("oracle prints JSON");
        match v.get("error") {
            Some(e) => error = Some(e.to_string()),
            None => msgs.push(v),
        }
    }
    (msgs, error)
}

fn input(path: &Path) -> Box<dyn std::io::BufRead> {
    let file = std::fs::File::open(path).expect("fixture exists");
    if path.extension().is_some_and(|e| e == "gz") {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Box::new(BufReader::new(file))
    }
}

/// Our frames, the channel table, and the time origin to subtract to get python-can's relative
/// ASC times. ASC must parse completely; BLF objects may only be malformed for difference 5.
fn ours(path: &Path) -> (Vec<TimedFrame>, Vec<String>, u64) {
    let name = path.to_string_lossy();
    if name.ends_with(".blf") {
        let mut r = BlfReader::new(input(path), ErrorPolicy::Skip).expect("BLF header");
        let mut frames = Vec::new();
        for item in r.by_ref() {
            match item {
                Ok(f) => frames.push(f),
                Err(e) => assert!(e.to_string().contains("standard id above 0x7FF"), "{name}: {e}"),
            }
        }
        (frames, r.channels().to_vec(), 0)
    } else {
        let mut r = AscReader::new(input(path), ErrorPolicy::Strict);
        let frames = r.by_ref().collect::<Result<Vec<_>, _>>().expect("no malformed line");
        assert_eq!(TraceReader::stats(&r).malformed, 0);
        let start = r.start_ns().unwrap_or(0);
        (frames, r.channels().to_vec(), start)
    }
}

fn b(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or_else(|| panic!("{key} in {v}"))
}
fn u(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or_else(|| panic!("{key} in {v}"))
}
fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_else(|| panic!("{key} in {v}"))
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

fn dlc2len(dlc: u64) -> u64 {
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64].get(dlc as usize).copied().unwrap_or(64)
}

/// Compares one frame with python-can's message; `origin` is subtracted from our time.
fn compare(ctx: &str, ours: &TimedFrame, channels: &[String], origin: u64, py: &Value) {
    let t_py: f64 = s(py, "timestamp").parse().expect("float repr");
    let t_ours = (ours.t_ns - origin) as f64 / 1e9;
    assert!((t_ours - t_py).abs() < 1e-6, "{ctx}: time {t_ours} vs python {t_py}");
    // Difference 1: channel numbers.
    let chan = &channels[usize::from(ours.channel.0)];
    assert_eq!(*chan, (u(py, "channel") + 1).to_string(), "{ctx}: channel");
    let f = &ours.frame;
    if b(py, "is_error_frame") {
        // Difference 2 (and 3 for CAN FD error frames).
        assert_eq!(f.kind, FrameKind::Error, "{ctx}");
        assert_eq!((f.id.raw(), f.id.is_extended()), (0x80, true), "{ctx}: error class");
        assert!(f.data().is_empty(), "{ctx}");
        assert_eq!(ours.direction.eq(&can_decoders::Direction::Rx), b(py, "is_rx"), "{ctx}: dir");
        return;
    }
    assert_eq!(f.id.raw(), u(py, "arbitration_id") as u32, "{ctx}: id");
    assert_eq!(f.id.is_extended(), b(py, "is_extended_id"), "{ctx}: extended");
    assert_eq!(ours.direction == can_decoders::Direction::Rx, b(py, "is_rx"), "{ctx}: direction");
    assert_eq!(hex(f.data()), s(py, "data"), "{ctx}: data");
    let dlc = u(py, "dlc");
    if b(py, "is_remote_frame") {
        // Difference 3: remote requests are classic, length capped at 8.
        assert_eq!(f.kind, FrameKind::Remote, "{ctx}");
        assert_eq!(f.len() as u64, dlc.min(8), "{ctx}: remote length");
        return;
    }
    if b(py, "is_fd") {
        let brs = b(py, "bitrate_switch");
        let esi = b(py, "error_state_indicator");
        assert_eq!(f.kind, FrameKind::Fd { brs, esi }, "{ctx}");
        assert_eq!(f.len() as u64, dlc, "{ctx}: FD length");
        return;
    }
    assert_eq!(f.kind, FrameKind::Data, "{ctx}");
    if dlc <= 8 {
        assert_eq!(f.len() as u64, dlc, "{ctx}: DLC");
        assert_eq!(f.len8_dlc, 0, "{ctx}");
    } else {
        // Difference 4: 8 bytes, raw DLC kept when it is 9..=15.
        assert_eq!(f.len(), 8, "{ctx}: classic frame with DLC {dlc}");
        if f.len8_dlc != 0 {
            assert_eq!(dlc2len(f.len8_dlc.into()), dlc, "{ctx}: raw DLC");
        }
    }
}

fn fixtures() -> Vec<PathBuf> {
    let dir = workspace().join("fixtures/python-can");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixtures/python-can exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            let n = p.to_string_lossy();
            n.ends_with(".asc") || n.ends_with(".asc.gz") || n.ends_with(".blf")
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_python_can_asc_and_blf_file_reads_the_same_frames_as_python_can() {
    let files = fixtures();
    assert_eq!(files.len(), 19, "{files:?}");
    let mut total = 0;
    let mut skipped = 0;
    for path in &files {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let (mut py, err) = oracle(path, false);
        assert_eq!(err, None, "{name}: python-can aborted");
        // Difference 5: the impossible standard ids are malformed for us.
        let before = py.len();
        py.retain(|m| b(m, "is_extended_id") || u(m, "arbitration_id") <= 0x7FF);
        skipped += before - py.len();
        let (frames, channels, origin) = ours(path);
        assert_eq!(frames.len(), py.len(), "{name}: frame count");
        for (i, (f, m)) in frames.iter().zip(&py).enumerate() {
            compare(&format!("{name} frame {i}"), f, &channels, origin, m);
        }
        total += frames.len();
    }
    println!("{total} frames compared, {skipped} impossible ids skipped");
    assert_eq!((total, skipped), (1536, 8));
}

#[test]
fn asc_times_are_epoch_nanoseconds_from_the_trigger_block_date_read_as_utc() {
    for path in fixtures().iter().filter(|p| p.extension().is_some_and(|e| e == "asc")) {
        let name = path.display();
        let (py, err) = oracle(path, true);
        assert_eq!(err, None, "{name}: python-can aborted");
        let (frames, channels, origin) = ours(path);
        assert!(origin > 1_300_000_000_000_000_000, "{name}: date parsed");
        for (i, (f, m)) in frames.iter().zip(&py).enumerate() {
            compare(&format!("{name} frame {i}"), f, &channels, 0, m);
        }
    }
}

#[test]
fn issue_1299_keeps_the_raw_dlc_13_of_an_eight_byte_classic_frame() {
    let (frames, _, _) = ours(&workspace().join("fixtures/python-can/issue_1299.asc"));
    let f = frames.iter().find(|f| f.frame.id.raw() == 0x3FF).expect("3FF frame");
    assert_eq!(f.frame.len8_dlc, 13);
    assert_eq!(f.frame.data(), [0x55, 0xAA, 1, 2, 3, 4, 5, 6]);
}

#[test]
fn gzipped_asc_opens_through_the_generic_entry_point() {
    let path = workspace().join("fixtures/python-can/test_CanMessage.asc.gz");
    let mut r = can_decoders::trace::open(&path, ErrorPolicy::Strict).expect("opens");
    let n = r.by_ref().inspect(|f| assert!(f.is_ok(), "{f:?}")).count();
    assert_eq!(n, 2);
    assert_eq!(r.channels(), ["2", "1"]);
    let mut text = String::new();
    input(&path).read_to_string(&mut text).expect("gunzip");
    assert!(text.contains("Begin Triggerblock"));
}

/// Rewrites the first `limit` frames of `src` with python-can's writer for `dest`'s extension.
fn convert(src: &Path, dest: &Path, limit: usize) {
    let out = Command::new(python())
        .arg(workspace().join("scripts/pycan_oracle.py"))
        .arg("--convert")
        .arg(src)
        .arg(dest)
        .args(["--limit", &limit.to_string()])
        .output()
        .expect("oracle Python runs");
    assert!(out.status.success(), "conversion failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// python-can's BLF writer fills 128 KiB containers and carries the object that does not fit
/// into the next one, so a real log written as BLF exercises container spanning at scale.
#[test]
fn blf_and_asc_that_python_can_wrote_from_a_real_log_read_like_python_can_and_like_the_log() {
    const N: usize = 30_000;
    let dir = std::env::temp_dir().join(format!("iov-trace-oracle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let src = workspace().join("fixtures/traces/canmod_gps_3BA199E2.log.gz");
    let mut log = CandumpReader::new(input(&src), ErrorPolicy::Strict);
    let original: Vec<TimedFrame> = log.by_ref().take(N).map(|f| f.expect("valid")).collect();
    let log_names = log.channels().to_vec();
    for ext in ["blf", "asc"] {
        let path = dir.join(format!("gps.{ext}"));
        convert(&src, &path, N);
        let (py, err) = oracle(&path, false);
        assert_eq!(err, None, "{ext}: python-can aborted");
        let (frames, channels, origin) = ours(&path);
        assert_eq!((frames.len(), py.len()), (N, N), "{ext}");
        let (t0, o0) = (frames[0].t_ns, original[0].t_ns);
        for (i, ((f, m), o)) in frames.iter().zip(&py).zip(&original).enumerate() {
            let ctx = format!("{ext} frame {i}");
            compare(&ctx, f, &channels, origin, m);
            // Against the log: python-can numbers `canN` as channel N + 1 in both formats.
            let log_name = &log_names[usize::from(o.channel.0)];
            let n: u32 = log_name.trim_start_matches("can").parse().expect("canN");
            assert_eq!(channels[usize::from(f.channel.0)], (n + 1).to_string(), "{ctx}");
            assert_eq!((f.direction, f.frame), (o.direction, o.frame), "{ctx}");
            // Times relative to the first frame (python-can truncates the ASC start to the
            // millisecond and goes through floats): within 2 µs.
            let (dt, dt_log) = ((f.t_ns - t0) as i64, (o.t_ns - o0) as i64);
            assert!((dt - dt_log).abs() <= 2_000, "{ctx}: {dt} vs {dt_log}");
        }
        if ext == "blf" {
            // Absolute BLF times: the start time is stored to the millisecond, offsets in ns.
            assert!(frames[0].t_ns.abs_diff(o0) <= 2_000, "{} vs {o0}", frames[0].t_ns);
        }
    }
    std::fs::remove_dir_all(&dir).expect("clean up");
}

/// The J1939 candump log read by python-can's `CanutilsLogReader` and by ours: all 150,411
/// frames agree (python-can keeps interface names as strings here).
#[test]
fn the_real_j1939_candump_log_reads_the_same_frames_as_python_can() {
    let path = workspace().join("fixtures/traces/j1939_asammdf_basics.log.gz");
    let (py, err) = oracle(&path, false);
    assert_eq!(err, None, "python-can aborted");
    let mut r = CandumpReader::new(input(&path), ErrorPolicy::Strict);
    let frames: Vec<TimedFrame> = r.by_ref().map(|f| f.expect("valid")).collect();
    let channels = r.channels().to_vec();
    assert_eq!((frames.len(), py.len()), (150_411, 150_411));
    for (i, (f, m)) in frames.iter().zip(&py).enumerate() {
        let ctx = format!("frame {i}");
        let t_py: f64 = s(m, "timestamp").parse().expect("float repr");
        assert!((f.t_ns as f64 / 1e9 - t_py).abs() < 1e-6, "{ctx}: time");
        assert_eq!(channels[usize::from(f.channel.0)], s(m, "channel"), "{ctx}");
        assert_eq!(f.frame.id.raw(), u(m, "arbitration_id") as u32, "{ctx}");
        assert_eq!(f.frame.id.is_extended(), b(m, "is_extended_id"), "{ctx}");
        assert_eq!(f.frame.kind, FrameKind::Data, "{ctx}");
        assert!(!b(m, "is_remote_frame") && !b(m, "is_error_frame") && !b(m, "is_fd"), "{ctx}");
        assert_eq!(f.frame.len() as u64, u(m, "dlc"), "{ctx}");
        assert_eq!(hex(f.frame.data()), s(m, "data"), "{ctx}");
        assert_eq!(f.direction == can_decoders::Direction::Rx, b(m, "is_rx"), "{ctx}");
    }
}
