//! `iovctl decode` as a user runs it: the real binary on real fixtures.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::Context;
use serde_json::Value;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures").join(rel)
}

fn iovctl(args: &[&str]) -> anyhow::Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_iovctl")).args(args).output().context("running iovctl")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("fixture paths are UTF-8")
}

const GPS_DBC: &str = "dbc/css-electronics/canmod-gps.dbc";
const GPS_TRACE: &str = "traces/canmod_gps_3BA199E2.log.gz";

#[test]
fn jsonl_output_equals_the_committed_cantools_decode_for_100k_real_frames() -> anyhow::Result<()> {
    let out = iovctl(&[
        "decode",
        "--dbc",
        path(&fixture(GPS_DBC)),
        "--trace",
        path(&fixture(GPS_TRACE)),
        "--format",
        "jsonl",
        "--limit",
        "100000",
    ])?;
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let oracle_file =
        std::fs::File::open(fixture("oracle/canmod_gps_3BA199E2_first100k__canmod-gps.jsonl.gz"))?;
    let oracle = BufReader::new(flate2::read::GzDecoder::new(oracle_file));
    let mut frames = 0;
    for (line, want) in out.stdout.lines().zip(oracle.lines()) {
        let (got, want): (Value, Value) =
            (serde_json::from_str(&line?)?, serde_json::from_str(&want?)?);
        assert_eq!(got["id"], want["id"], "frame {frames}");
        assert_eq!(got["ext"], want["ext"], "frame {frames}");
        assert_eq!(got["iface"], want["ch"], "frame {frames}");
        assert_eq!(got["msg"], want["msg"], "frame {frames}");
        // cantools' float seconds are within a microsecond of our integer nanoseconds.
        let t = want["t"].as_f64().context("t")?;
        let t_ns = got["t_ns"].as_u64().context("t_ns")?;
        assert!((t_ns as f64 / 1e9 - t).abs() < 1e-6, "frame {frames}: {t_ns} vs {t}");
        let empty = serde_json::Map::new();
        let want_sig = want.get("sig").and_then(Value::as_object).unwrap_or(&empty);
        let got_sig = got["sig"].as_object().context("sig")?;
        assert_eq!(got_sig.len(), want_sig.len(), "frame {frames}");
        for (name, v) in want_sig {
            let (a, b) = (got_sig[name].as_f64().context("number")?, v.as_f64().context("number")?);
            assert_eq!(a.to_bits(), b.to_bits(), "frame {frames} {name}: {a} vs {b}");
        }
        let want_label = want.get("choice").and_then(Value::as_object).unwrap_or(&empty);
        assert_eq!(got["label"].as_object().context("label")?, want_label, "frame {frames}");
        frames += 1;
    }
    assert_eq!(frames, 100_000);
    Ok(())
}

#[test]
fn malformed_trace_lines_are_reported_with_their_line_and_skipped() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let trace = dir.path().join("bad.log");
    let mut f = std::fs::File::create(&trace)?;
    writeln!(f, "(1627274470.527200) can2 001#00 R")?;
    writeln!(f, "(1627274470.527300) can2 00Z#00 R")?;
    writeln!(f, "this is not candump")?;
    writeln!(f, "(1627274470.528100) can2 003#A3D70E1B81BA2075 R")?;
    drop(f);
    let out = iovctl(&[
        "decode",
        "--dbc",
        path(&fixture(GPS_DBC)),
        "--trace",
        path(&trace),
        "--format",
        "jsonl",
    ])?;
    assert_eq!(out.status.code(), Some(3), "malformed records give exit status 3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 2"), "stderr names the line: {stderr}");
    assert!(stderr.contains("line 3"), "stderr names the line: {stderr}");
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| Ok(serde_json::from_str(&l?)?))
        .collect::<anyhow::Result<_>>()?;
    assert_eq!(lines.len(), 2, "the two good frames are still decoded");
    assert_eq!(lines[0]["msg"], "gnss_status");
    assert_eq!(lines[1]["msg"], "gnss_pos");

    let strict = iovctl(&[
        "decode",
        "--strict",
        "--dbc",
        path(&fixture(GPS_DBC)),
        "--trace",
        path(&trace),
        "--format",
        "jsonl",
    ])?;
    assert_eq!(strict.status.code(), Some(1), "strict mode refuses the trace");
    assert!(String::from_utf8_lossy(&strict.stderr).contains("line 2"));
    Ok(())
}

#[test]
fn a_dbc_that_does_not_load_is_named_with_its_line() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let dbc = dir.path().join("broken.dbc");
    std::fs::write(&dbc, "VERSION \"\"\nBO_ 100 Msg: 8 Node\n SG_ Sig : 0|8@1+ (1,0) [0|255] \"\" Node\nB0_ 101 Typo: 8 Node\n")?;
    let out = iovctl(&[
        "decode",
        "--strict",
        "--dbc",
        path(&dbc),
        "--trace",
        path(&fixture(GPS_TRACE)),
        "--limit",
        "1",
    ])?;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("broken.dbc") && stderr.contains(":4:"),
        "error names file and line: {stderr}"
    );

    let missing =
        iovctl(&["decode", "--dbc", "/nonexistent/x.dbc", "--trace", path(&fixture(GPS_TRACE))])?;
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/x.dbc"));
    Ok(())
}

#[test]
fn csv_has_one_row_per_signal_and_j1939_reports_the_source_address() -> anyhow::Result<()> {
    let out = iovctl(&[
        "decode",
        "--dbc",
        path(&fixture("dbc/canmatrix/j1939.dbc")),
        "--j1939",
        "--trace",
        path(&fixture("traces/j1939_asammdf_basics.log.gz")),
        "--format",
        "csv",
        "--signals",
        "Engine_Speed",
        "--limit",
        "5000",
    ])?;
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout)?;
    let mut rows = text.lines();
    assert_eq!(rows.next(), Some("t_ns,iface,id,ext,msg,signal,value,unit,label"));
    let rows: Vec<&str> = rows.collect();
    assert!(!rows.is_empty(), "EEC1 frames carry engine speed");
    for row in &rows {
        let cols: Vec<&str> = row.split(',').collect();
        assert_eq!(cols[4], "EEC1", "{row}");
        assert_eq!(cols[5], "Engine_Speed", "{row}");
        // canmatrix's J1939 DBC gives this signal no scaling: raw counts of 0.125 rpm.
        let raw: f64 = cols[6].parse()?;
        assert!((0.0..=65535.0).contains(&raw) && raw.fract() == 0.0, "{row}");
    }

    let jsonl = iovctl(&[
        "decode",
        "--dbc",
        path(&fixture("dbc/canmatrix/j1939.dbc")),
        "--j1939",
        "--trace",
        path(&fixture("traces/j1939_asammdf_basics.log.gz")),
        "--format",
        "jsonl",
        "--limit",
        "2000",
    ])?;
    let with_sa =
        jsonl.stdout.lines().map_while(Result::ok).filter(|l| l.contains("\"sa\":")).count();
    assert!(with_sa > 100, "PGN matches carry the source address ({with_sa})");
    Ok(())
}

#[test]
fn summary_names_messages_signals_and_rate() -> anyhow::Result<()> {
    let out = iovctl(&[
        "decode",
        "--dbc",
        path(&fixture(GPS_DBC)),
        "--trace",
        path(&fixture(GPS_TRACE)),
        "--format",
        "summary",
        "--limit",
        "50000",
    ])?;
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout)?;
    assert!(text.contains("50000 frames"), "{text}");
    assert!(text.contains("gnss_pos (id 003)"), "{text}");
    assert!(text.contains("Latitude"), "{text}");
    assert!(text.contains("frames/s"), "{text}");

    // The ids no message matched are listed, and their counts add up to the "did not" figure.
    let unmatched: u64 = text
        .split(" did not")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no unmatched count in {text}"))?;
    assert!(unmatched > 0, "the GPS trace carries frames of other ids: {text}");
    let listed: u64 = text
        .lines()
        .skip_while(|l| !l.starts_with("Ids no DBC message matched"))
        .skip(1)
        .take_while(|l| l.starts_with("  can"))
        .map(|l| l.split_whitespace().nth(2).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0))
        .sum();
    assert_eq!(listed, unmatched, "{text}");
    assert!(text.contains("can1          7E8"), "{text}");
    Ok(())
}
