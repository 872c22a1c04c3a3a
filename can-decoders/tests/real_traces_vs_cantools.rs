//! Differential tests on real recordings: every frame our decoder produces must equal cantools'
//! decode of the same frame, value for value, to the last bit of the f64.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

use anyhow::{bail, Context};
use can_decoders::dbc;
use can_decoders::decode::{Decoded, Decoder};
use can_decoders::trace::{self, ErrorPolicy};
use common::{fixture, oracle_command, same_f64};
use serde_json::Value;

/// One decoded frame in a comparable shape.
#[derive(Debug, Default)]
struct Decode {
    t_ns: u64,
    id: u32,
    msg: Option<String>,
    sig: BTreeMap<String, f64>,
    label: BTreeMap<String, String>,
    sa: Option<u8>,
}

fn decode_ours(dbc_rel: &str, trace_rel: &str, j1939: bool) -> anyhow::Result<Vec<Decode>> {
    let db = dbc::load_file(&fixture(dbc_rel))?;
    let mut builder = Decoder::builder();
    builder.add_database(&db, &[]).j1939_by_pgn(j1939);
    let (decoder, _warnings) = builder.build()?;
    let mut reader = trace::open(&fixture(trace_rel), ErrorPolicy::Strict)?;
    let mut out = Vec::new();
    let mut decoded = Decoded::default();
    while let Some(record) = reader.next() {
        let record = record?;
        let name = reader.channels()[usize::from(record.channel.0)].clone();
        let bus = decoder.bus(&name);
        let mut d = Decode { t_ns: record.t_ns, id: record.frame.id.raw(), ..Decode::default() };
        if let Some(key) = decoder.decode(bus, &record.frame, &mut decoded) {
            let m = decoder.message(key);
            d.msg = Some(m.name().to_string());
            d.sa = decoded.j1939_source_address;
            for v in &decoded.values {
                let s = &m.signals()[v.signal];
                // A real DBC (canmatrix j1939.dbc, EBC4) names two signals alike; cantools'
                // decode keeps the first, and so does our JSON output.
                if d.sig.contains_key(s.name()) {
                    continue;
                }
                d.sig.insert(s.name().to_string(), v.value);
                if let Some(label) = s.label(&v.raw) {
                    d.label.insert(s.name().to_string(), label.to_string());
                }
            }
        }
        out.push(d);
    }
    Ok(out)
}

fn parse_oracle_line(line: &str) -> anyhow::Result<Decode> {
    let v: Value = serde_json::from_str(line).with_context(|| format!("oracle line {line}"))?;
    let mut d = Decode {
        t_ns: v["t_ns"].as_u64().unwrap_or(0),
        id: v["id"].as_u64().context("id")? as u32,
        msg: v["msg"].as_str().map(str::to_string),
        sa: v.get("sa").and_then(Value::as_u64).map(|sa| sa as u8),
        ..Decode::default()
    };
    if let Some(sig) = v["sig"].as_object() {
        for (k, x) in sig {
            d.sig.insert(k.clone(), x.as_f64().context("signal value is a number")?);
        }
    }
    if let Some(ch) = v.get("choice").and_then(Value::as_object) {
        for (k, x) in ch {
            d.label.insert(k.clone(), x.as_str().context("label")?.to_string());
        }
    }
    Ok(d)
}

/// Compares frame by frame; returns (frames, signal values) compared.
fn compare(ours: &[Decode], oracle: &[Decode], check_time: bool) -> anyhow::Result<(usize, usize)> {
    if ours.len() != oracle.len() {
        bail!("we decoded {} frames, the oracle {}", ours.len(), oracle.len());
    }
    let mut values = 0;
    for (i, (a, b)) in ours.iter().zip(oracle).enumerate() {
        if check_time && a.t_ns != b.t_ns {
            bail!("frame {i}: time {} != oracle {}", a.t_ns, b.t_ns);
        }
        if a.id != b.id || a.msg != b.msg || a.sa != b.sa {
            bail!("frame {i}: ours {a:?}\n oracle {b:?}");
        }
        if a.sig.len() != b.sig.len() || a.label != b.label {
            bail!("frame {i}: signals differ\n ours {a:?}\n oracle {b:?}");
        }
        for (name, x) in &a.sig {
            let y = b.sig.get(name).with_context(|| format!("frame {i}: oracle lacks {name}"))?;
            if !same_f64(*x, *y) {
                bail!(
                    "frame {i} signal {name}: ours {x:?} ({:#x}) != cantools {y:?} ({:#x})",
                    x.to_bits(),
                    y.to_bits()
                );
            }
            values += 1;
        }
    }
    Ok((oracle.len(), values))
}

fn run_oracle(args: &[&str]) -> anyhow::Result<Vec<Decode>> {
    let child = oracle_command("oracle_decode.py")
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the cantools oracle")?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!("oracle failed: {}", output.status);
    }
    output.stdout.lines().map(|l| parse_oracle_line(&l?)).collect()
}

#[test]
fn gps_trace_first_100k_frames_equal_the_committed_cantools_decode() -> anyhow::Result<()> {
    let ours = decode_ours(
        "dbc/css-electronics/canmod-gps.dbc",
        "traces/canmod_gps_3BA199E2.log.gz",
        false,
    )?;
    let file =
        std::fs::File::open(fixture("oracle/canmod_gps_3BA199E2_first100k__canmod-gps.jsonl.gz"))?;
    let oracle = BufReader::new(flate2::read::GzDecoder::new(file))
        .lines()
        .map(|l| parse_oracle_line(&l?))
        .collect::<anyhow::Result<Vec<_>>>()?;
    assert_eq!(oracle.len(), 100_000);
    // The committed oracle has float seconds, so time is checked by the live test below.
    let (frames, values) = compare(&ours[..oracle.len()], &oracle, false)?;
    println!("{frames} frames and {values} signal values equal to cantools' committed decode");
    assert!(values > 100_000, "the comparison must cover real signal values, not only unknown ids");
    Ok(())
}

#[test]
fn gps_trace_every_frame_equals_live_cantools() -> anyhow::Result<()> {
    let dbc = fixture("dbc/css-electronics/canmod-gps.dbc");
    let trace = fixture("traces/canmod_gps_3BA199E2.log.gz");
    let oracle = run_oracle(&["trace", "--dbc", path(&dbc)?, "--trace", path(&trace)?])?;
    let ours = decode_ours(
        "dbc/css-electronics/canmod-gps.dbc",
        "traces/canmod_gps_3BA199E2.log.gz",
        false,
    )?;
    let (frames, values) = compare(&ours, &oracle, true)?;
    println!("{frames} frames and {values} signal values equal to cantools");
    assert_eq!(frames, 640_067);
    Ok(())
}

#[test]
fn j1939_truck_trace_matches_by_pgn_like_cantools() -> anyhow::Result<()> {
    let dbc = fixture("dbc/canmatrix/j1939.dbc");
    let trace = fixture("traces/j1939_asammdf_basics.log.gz");
    let oracle = run_oracle(&["trace", "--j1939", "--dbc", path(&dbc)?, "--trace", path(&trace)?])?;
    let ours = decode_ours("dbc/canmatrix/j1939.dbc", "traces/j1939_asammdf_basics.log.gz", true)?;
    let (frames, values) = compare(&ours, &oracle, true)?;
    let matched = ours.iter().filter(|d| d.msg.is_some()).count();
    let sources: std::collections::BTreeSet<u8> = ours.iter().filter_map(|d| d.sa).collect();
    println!(
        "{frames} frames, {matched} matched by PGN, {values} values, source addresses {sources:?}"
    );
    assert_eq!(frames, 150_411);
    // The DBC knows each PGN with source address 0 only: every match is by PGN, from real senders.
    assert!(matched > 50_000, "only {matched} frames matched by PGN");
    assert!(sources.len() > 1, "real trucks have several source addresses");
    Ok(())
}

fn path(p: &std::path::Path) -> anyhow::Result<&str> {
    p.to_str().context("fixture path is not UTF-8")
}
