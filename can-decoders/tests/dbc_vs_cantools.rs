//! Differential test: our model of every fixture DBC that cantools 45.1 loads equals cantools'
//! view, field by field (floats bit-equal).
//!
//! The oracle is `scripts/cantools_oracle.py`, run with the Python in `IOV_ORACLE_PYTHON` or
//! `<workspace>/.venv/bin/python` (`make deps` creates it).
//!
//! Where we deliberately differ from cantools (documented per case below):
//! - ids above 0x7FF without bit 31 are extended for us; cantools (lenient) calls them standard.
//! - `Vector__XXX` is never a sender or receiver for us; cantools drops it only when alone.
//! - `SIG_VALTYPE_` on a signal whose length is not 32/64 is kept as an integer (with a warning);
//!   cantools marks it float and cannot decode it.
//! - cantools keeps `min = max = None` when both are written `0`; our model has no "unset", so
//!   None compares equal to 0.0.
//! - Signals longer than 64 bits (J1939 text fields in `canmatrix/j1939.dbc`) are dropped by us
//!   (Error diagnostic): the model and decoders handle 1..=64 bits. They are left out of cantools'
//!   side before comparing.
//! - Single cases listed in `KNOWN_DIFFERENCES`, each with its reason.
//! - With long signal names, cantools names the multiplexor by its short name in
//!   `multiplexer_signal`; we use the long name (the name the signal has in the model).

use std::path::{Path, PathBuf};
use std::process::Command;

use can_decoders::dbc::{self, ByteOrder, LoadOptions, Message, Signal, ValueType};
use serde_json::Value;

/// (file, "message.signal", field, why cantools is the one that is wrong or we differ on purpose).
const KNOWN_DIFFERENCES: &[(&str, &str, &str, &str)] = &[
    (
        "fixtures/dbc/opendbc/vw_pq.dbc",
        "Motor_2.MO2_Mp_Code",
        "is_multiplexer",
        "written `SG_ MO2_Mp_Code m :`; SG_MUL_VAL_ lines name it as the multiplexor, so we read the bare `m` as `M` (with a warning); cantools ignores the marker",
    ),
    (
        "fixtures/dbc/strym/nissan_rogue_2021.dbc",
        "CRUISE.CRUISE_STATE",
        "choices",
        "the file's last statement is a VAL_ without ';'; cantools silently drops it, we keep it and warn",
    ),
];

fn known_difference(file: &str, signal: &str, field: &str) -> bool {
    KNOWN_DIFFERENCES.iter().any(|&(f, s, fl, _)| f == file && s == signal && fl == field)
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn oracle_python() -> PathBuf {
    if let Some(p) = std::env::var_os("IOV_ORACLE_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = workspace().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "no cantools oracle: set IOV_ORACLE_PYTHON or run `make deps` to create {}",
        venv.display()
    );
    venv
}

fn dbc_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x.eq_ignore_ascii_case("dbc")) {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&workspace().join("fixtures/dbc"), &mut out);
    out.sort();
    out
}

/// cantools' answer for each file (strict first, then lenient), by path; `{"error"}` when it
/// cannot load it. One Python process for all files.
fn cantools_views(python: &Path, files: &[PathBuf]) -> Vec<Value> {
    let out = Command::new(python)
        .arg(workspace().join("scripts/cantools_oracle.py"))
        .arg("dump-dbc-batch")
        .args(files)
        .output()
        .expect("run the cantools oracle");
    assert!(out.status.success(), "oracle failed: {}", String::from_utf8_lossy(&out.stderr));
    let views: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("oracle prints JSON lines"))
        .collect();
    assert_eq!(views.len(), files.len(), "one oracle answer per file");
    views
}

/// A float from the oracle, which sends them as Python `repr` text: parsing it with Rust's
/// correctly rounded parser gives bit-exact values (serde_json's default parser may be 1 ulp off).
fn f(v: &Value) -> f64 {
    v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).unwrap_or(0.0)
}

fn without_no_node(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .filter(|s| *s != "Vector__XXX")
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn compare_signal(
    file: &str,
    message: &str,
    ours: &Signal,
    theirs: &Value,
    errors: &mut Vec<String>,
) {
    let path = format!("{message}.{}", ours.name);
    let mut check = |field: &str, ok: bool, detail: String| {
        if !ok && !known_difference(file, &path, field) {
            errors.push(format!("{file}: {path}: {field}: {detail}"));
        }
    };
    check(
        "start",
        theirs["start"].as_u64() == Some(u64::from(ours.start_bit)),
        format!("{} vs {}", ours.start_bit, theirs["start"]),
    );
    check(
        "length",
        theirs["length"].as_u64() == Some(u64::from(ours.length)),
        format!("{} vs {}", ours.length, theirs["length"]),
    );
    let order = match ours.byte_order {
        ByteOrder::LittleEndian => "little_endian",
        ByteOrder::BigEndian => "big_endian",
    };
    check(
        "byte_order",
        theirs["byte_order"] == order,
        format!("{order} vs {}", theirs["byte_order"]),
    );
    let is_float = matches!(ours.value_type, ValueType::Float32 | ValueType::Float64);
    let float_len_ok = ours.length == 32 || ours.length == 64;
    if float_len_ok {
        check(
            "is_float",
            theirs["is_float"] == is_float,
            format!("{is_float} vs {}", theirs["is_float"]),
        );
    }
    if !is_float {
        let signed = ours.value_type == ValueType::Signed;
        check(
            "is_signed",
            theirs["is_signed"] == signed,
            format!("{signed} vs {}", theirs["is_signed"]),
        );
    }
    for (field, mine) in [
        ("scale", ours.factor),
        ("offset", ours.offset),
        ("minimum", ours.minimum),
        ("maximum", ours.maximum),
    ] {
        let t = f(&theirs[field]);
        check(
            field,
            t.to_bits() == mine.to_bits() || (t == 0.0 && mine == 0.0),
            format!("{mine:?} vs {t:?}"),
        );
    }
    let unit = theirs["unit"].as_str().unwrap_or("");
    check("unit", unit == ours.unit, format!("{:?} vs {unit:?}", ours.unit));
    let mut choices: Vec<(i64, String)> = theirs["choices"]
        .as_object()
        .map(|o| {
            o.iter().filter_map(|(k, v)| Some((k.parse().ok()?, v.as_str()?.to_string()))).collect()
        })
        .unwrap_or_default();
    choices.sort();
    let mut mine = ours.value_table.clone();
    mine.sort();
    check("choices", choices == mine, format!("{mine:?} vs {choices:?}"));
    let initial = (!theirs["initial"].is_null()).then(|| f(&theirs["initial"]));
    check(
        "initial",
        initial.map(f64::to_bits) == ours.initial_raw.map(f64::to_bits),
        format!("{:?} vs {initial:?}", ours.initial_raw),
    );
    check(
        "receivers",
        without_no_node(&theirs["receivers"]) == ours.receivers,
        format!("{:?} vs {}", ours.receivers, theirs["receivers"]),
    );
    let mux = &ours.multiplexing;
    check(
        "is_multiplexer",
        theirs["is_multiplexer"] == mux.is_multiplexor,
        format!("{} vs {}", mux.is_multiplexor, theirs["is_multiplexer"]),
    );
    let their_ids: Option<Vec<u64>> =
        theirs["multiplexer_ids"].as_array().map(|a| a.iter().filter_map(Value::as_u64).collect());
    let our_ids: Option<Vec<u64>> = mux
        .multiplexed_by
        .as_ref()
        .map(|c| c.values.iter().flat_map(|&(lo, hi)| lo..=hi.min(lo + 100_000)).collect());
    check("multiplexer_ids", their_ids == our_ids, format!("{our_ids:?} vs {their_ids:?}"));
    let their_switch = theirs["multiplexer_signal"].as_str();
    let our_switch = mux.multiplexed_by.as_ref().map(|c| c.switch.as_str());
    check(
        "multiplexer_signal",
        their_switch == our_switch || their_ids.is_none(),
        format!("{our_switch:?} vs {their_switch:?}"),
    );
}

fn compare_message(file: &str, ours: &Message, theirs: &Value, errors: &mut Vec<String>) -> usize {
    let ctx = format!("{file}: {}", ours.name);
    let mut check = |field: &str, ok: bool, detail: String| {
        if !ok {
            errors.push(format!("{ctx}: {field}: {detail}"));
        }
    };
    let frame_id = theirs["frame_id"].as_u64().unwrap_or(u64::MAX);
    check(
        "frame_id",
        frame_id == u64::from(ours.id.raw()),
        format!("{} vs {frame_id:#x}", ours.id),
    );
    // Ids above 0x7FF are extended for us even without bit 31 (see the module doc).
    let ext = theirs["is_extended_frame"] == true || frame_id > 0x7FF;
    check(
        "is_extended",
        ext == ours.id.is_extended(),
        format!("{} vs {}", ours.id.is_extended(), theirs["is_extended_frame"]),
    );
    check(
        "name",
        theirs["name"] == ours.name.as_str(),
        format!("{} vs {}", ours.name, theirs["name"]),
    );
    check(
        "length",
        theirs["length"].as_u64() == Some(u64::from(ours.length)),
        format!("{} vs {}", ours.length, theirs["length"]),
    );
    check(
        "senders",
        without_no_node(&theirs["senders"]) == ours.senders,
        format!("{:?} vs {}", ours.senders, theirs["senders"]),
    );
    let cycle = theirs["cycle_time"].as_f64().map(|c| c as u32);
    check(
        "cycle_time",
        cycle == ours.cycle_time_ms,
        format!("{:?} vs {cycle:?}", ours.cycle_time_ms),
    );
    check(
        "is_fd",
        theirs["is_fd"] == ours.frame_format.is_fd(),
        format!("{:?} vs {}", ours.frame_format, theirs["is_fd"]),
    );
    let mut their_signals: Vec<&Value> = theirs["signals"]
        .as_array()
        .map(|a| a.iter().filter(|s| s["length"].as_u64().is_some_and(|l| l <= 64)).collect())
        .unwrap_or_default();
    their_signals
        .sort_by_key(|s| (s["name"].as_str().unwrap_or("").to_string(), s["start"].as_u64()));
    let mut our_signals: Vec<&Signal> = ours.signals.iter().collect();
    our_signals.sort_by_key(|s| (s.name.clone(), Some(u64::from(s.start_bit))));
    if their_signals.len() != our_signals.len() {
        errors.push(format!("{ctx}: {} signals vs {}", our_signals.len(), their_signals.len()));
        return 0;
    }
    for (o, t) in our_signals.iter().zip(&their_signals) {
        compare_signal(file, &ours.name, o, t, errors);
    }
    our_signals.len()
}

/// Messages and signals compared in one file, and the differences found.
type FileResult = (usize, usize, Vec<String>);

#[test]
fn every_fixture_that_cantools_loads_gives_the_same_model() {
    let python = oracle_python();
    let files = dbc_files();
    let views = cantools_views(&python, &files);
    let results: Vec<(String, Option<FileResult>)> = files
        .iter()
        .zip(&views)
        .map(|(file, theirs)| {
            let rel = file.strip_prefix(workspace()).unwrap_or(file).display().to_string();
            if theirs.get("error").is_some() {
                return (rel, None);
            }
            let ours = dbc::load_file(file).expect("every fixture loads leniently");
            let mut errors = Vec::new();
            // What cantools accepts strictly, we accept strictly too.
            if theirs["mode"] == "strict" {
                if let Err(e) = dbc::load_file_with(file, &LoadOptions { strict: true }) {
                    errors.push(format!("{rel}: cantools loads it strictly, we do not: {e}"));
                }
            }
            let their_msgs = theirs["messages"].as_array().cloned().unwrap_or_default();
            if their_msgs.len() != ours.messages.len() {
                errors.push(format!(
                    "{rel}: {} messages vs {}",
                    ours.messages.len(),
                    their_msgs.len()
                ));
                return (rel, Some((0, 0, errors)));
            }
            let mut signals = 0;
            for (o, t) in ours.messages.iter().zip(&their_msgs) {
                signals += compare_message(&rel, o, t, &mut errors);
            }
            (rel, Some((ours.messages.len(), signals, errors)))
        })
        .collect();
    let (mut files_compared, mut messages, mut signals, mut skipped) = (0, 0, 0, Vec::new());
    let mut errors = Vec::new();
    for (rel, r) in results {
        match r {
            None => skipped.push(rel),
            Some((m, s, e)) => {
                files_compared += 1;
                messages += m;
                signals += s;
                errors.extend(e);
            }
        }
    }
    let strict = views.iter().filter(|v| v["mode"] == "strict").count();
    println!(
        "compared {files_compared} files ({strict} loaded strictly by cantools; {messages} messages, {signals} signals) with cantools; cantools could not load {}",
        skipped.len()
    );
    assert!(files_compared >= 150, "too few files compared: {files_compared}");
    assert!(errors.is_empty(), "{} differences:\n{}", errors.len(), errors.join("\n"));
}
