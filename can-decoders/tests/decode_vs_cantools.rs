//! Differential test: random payloads over generated messages (Intel, Motorola, signed, float,
//! 64-bit, multiplexed and nested multiplexed signals, FD lengths, truncated frames) decode to
//! bit-equal values in our decoder and in cantools (the oracle, `scripts/cantools_decode.py`).
//!
//! Python comes from `IOV_ORACLE_PYTHON`, else `<workspace>/.venv/bin/python` (`make deps`).

mod decode_support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use can_decoders::dbc::{ByteOrder, Message, Signal, ValueType};
use can_decoders::decode::{Decoded, Decoder};
use can_decoders::{CanFrame, CanId, FrameKind};
use decode_support::*;

/// splitmix64: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Which physical bits (byte * 8 + bit, bit 0 = LSB) are taken.
#[derive(Clone)]
struct Occupancy(Vec<bool>);

/// Physical bits of a signal given its first stream bit (Intel: LSB; Motorola: MSB, network order).
fn physical_bits(first: usize, len: usize, order: ByteOrder) -> Vec<usize> {
    (first..first + len)
        .map(|j| match order {
            ByteOrder::LittleEndian => j,
            ByteOrder::BigEndian => 8 * (j / 8) + 7 - j % 8,
        })
        .collect()
}

/// Places a signal of `len` bits somewhere free in `bytes` bytes; returns (start_bit, order).
fn place(rng: &mut Rng, occ: &mut Occupancy, bytes: usize, len: usize) -> Option<(u16, ByteOrder)> {
    let total = bytes * 8;
    if len > total {
        return None;
    }
    for _ in 0..60 {
        let order = if rng.chance(50) { ByteOrder::BigEndian } else { ByteOrder::LittleEndian };
        let first = rng.below((total - len + 1) as u64) as usize;
        let bits = physical_bits(first, len, order);
        if bits.iter().all(|&b| !occ.0[b]) {
            for b in bits {
                occ.0[b] = true;
            }
            let start = match order {
                ByteOrder::LittleEndian => first,
                ByteOrder::BigEndian => 8 * (first / 8) + 7 - first % 8,
            };
            return Some((start as u16, order));
        }
    }
    None
}

const SCALES: &[(f64, f64)] = &[
    (1.0, 0.0),
    (1.0, 0.0),
    (3.0, -7.0),
    (2.0, 0.0),
    (1.0, 100.0),
    (0.1, 0.0),
    (1e-6, -90.0),
    (0.05, -40.0),
    (0.125, 0.5),
    (-0.5, 0.0),
    (0.001, 1000.0),
    (7.3, -2.1),
];

const INT_LENGTHS: &[u16] = &[1, 2, 3, 7, 8, 9, 12, 16, 24, 31, 32, 33, 48, 53, 54, 63, 64];

fn random_signal(rng: &mut Rng, occ: &mut Occupancy, bytes: usize, name: String) -> Option<Signal> {
    let kind = rng.below(10);
    let (vt, len) = match kind {
        0 => (ValueType::Float32, 32),
        1 => (ValueType::Float64, 64),
        2..=4 => (ValueType::Signed, rng.pick(INT_LENGTHS)),
        _ => (ValueType::Unsigned, rng.pick(INT_LENGTHS)),
    };
    let (start, order) = place(rng, occ, bytes, usize::from(len))?;
    let (factor, offset) = rng.pick(SCALES);
    let mut s = signal(&name, start, len, order).scaled(factor, offset);
    s.value_type = vt;
    Some(s)
}

fn random_message(rng: &mut Rng, index: usize) -> Message {
    let bytes: u8 = if rng.chance(70) { 8 } else { rng.pick(&[12, 16, 20, 24, 32, 48, 64]) };
    let id = if rng.chance(70) {
        std_id(0x100 + index as u32)
    } else {
        ext_id(0x1800_0000 + index as u32)
    };
    let mut occ = Occupancy(vec![false; 512]);
    let mut signals = Vec::new();
    let n = &mut 0;
    let mut name = |prefix: &str| {
        *n += 1;
        format!("{prefix}{n}")
    };
    for _ in 0..rng.below(6) + 1 {
        if let Some(s) = random_signal(rng, &mut occ, bytes.into(), name("S")) {
            signals.push(s);
        }
    }
    if rng.chance(45) {
        let switch_len = rng.pick(&[2u16, 3, 8]);
        if let Some((start, order)) = place(rng, &mut occ, bytes.into(), switch_len.into()) {
            let switch_name = name("Mux");
            let mut switch = signal(&switch_name, start, switch_len, order).switch();
            if rng.chance(40) {
                // A duplicate label: cantools maps raw 0 back to 2 for the multiplexer number.
                switch = if rng.chance(50) {
                    switch.labels(&[(0, "Zero"), (3, "Three")])
                } else {
                    switch.labels(&[(0, "Zero"), (3, "Three"), (2, "Zero")])
                };
            }
            signals.push(switch);
            let branches: &[&[(u64, u64)]] = &[&[(1, 1)], &[(2, 2), (3, 3)], &[(0, 0)], &[(5, 6)]];
            for (b, ranges) in branches.iter().enumerate().take(rng.below(4) as usize + 1) {
                let mut branch_occ = occ.clone();
                for _ in 0..rng.below(3) + 1 {
                    if let Some(s) = random_signal(rng, &mut branch_occ, bytes.into(), name("B")) {
                        signals.push(s.when(&switch_name, ranges));
                    }
                }
                if b == 1 && rng.chance(60) {
                    if let Some((start, order)) = place(rng, &mut branch_occ, bytes.into(), 2) {
                        let inner = name("Sub");
                        signals.push(
                            signal(&inner, start, 2, order).switch().when(&switch_name, ranges),
                        );
                        for sub in [&[(1u64, 1u64)][..], &[(2, 3)]] {
                            let mut sub_occ = branch_occ.clone();
                            for _ in 0..rng.below(2) + 1 {
                                if let Some(s) =
                                    random_signal(rng, &mut sub_occ, bytes.into(), name("N"))
                                {
                                    signals.push(s.when(&inner, sub));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    message(id, &format!("Msg{index}"), bytes, signals)
}

/// The DBC text cantools loads for these messages.
fn dbc_text(messages: &[Message]) -> String {
    let mut t = String::from("VERSION \"\"\n\nNS_ :\n\nBS_:\n\nBU_:\n\n");
    let dbc_id = |id: CanId| if id.is_extended() { id.raw() | 0x8000_0000 } else { id.raw() };
    for (i, m) in messages.iter().enumerate() {
        let _ = writeln!(t, "BO_ {} {}: {} Vector__XXX", dbc_id(m.id), m.name, m.length);
        // Half the messages write integral factors as "3", half as "3.0" (int vs float in Python).
        let num = |x: f64| if i % 2 == 0 { format!("{x}") } else { format!("{x:?}") };
        for s in &m.signals {
            let mux = match (&s.multiplexing.multiplexed_by, s.multiplexing.is_multiplexor) {
                (None, false) => String::new(),
                (None, true) => " M".into(),
                (Some(c), sw) => format!(" m{}{}", c.values[0].0, if sw { "M" } else { "" }),
            };
            let order = if s.byte_order == ByteOrder::LittleEndian { 1 } else { 0 };
            let sign = if s.value_type == ValueType::Unsigned { '+' } else { '-' };
            let _ = writeln!(
                t,
                " SG_ {}{} : {}|{}@{}{} ({},{}) [0|0] \"\" Vector__XXX",
                s.name,
                mux,
                s.start_bit,
                s.length,
                order,
                sign,
                num(s.factor),
                num(s.offset)
            );
        }
        t.push('\n');
    }
    for m in messages {
        for s in &m.signals {
            if !s.value_table.is_empty() {
                let labels: Vec<String> =
                    s.value_table.iter().map(|(k, l)| format!("{k} \"{l}\"")).collect();
                let _ = writeln!(t, "VAL_ {} {} {} ;", dbc_id(m.id), s.name, labels.join(" "));
            }
        }
    }
    for m in messages {
        for s in &m.signals {
            let code = match s.value_type {
                ValueType::Float32 => 1,
                ValueType::Float64 => 2,
                _ => continue,
            };
            let _ = writeln!(t, "SIG_VALTYPE_ {} {} : {};", dbc_id(m.id), s.name, code);
        }
    }
    for m in messages {
        for s in &m.signals {
            if let Some(c) = &s.multiplexing.multiplexed_by {
                let ranges: Vec<String> =
                    c.values.iter().map(|(a, b)| format!("{a}-{b}")).collect();
                let _ = writeln!(
                    t,
                    "SG_MUL_VAL_ {} {} {} {};",
                    dbc_id(m.id),
                    s.name,
                    c.switch,
                    ranges.join(", ")
                );
            }
        }
    }
    t
}

fn oracle_python() -> PathBuf {
    if let Some(p) = std::env::var_os("IOV_ORACLE_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        venv.exists(),
        "the cantools oracle is not installed: run `make deps` (creates {}), or set IOV_ORACLE_PYTHON \
         to a Python with cantools 45.1.0",
        venv.display()
    );
    venv
}

/// Python's `float.hex()` back to an `f64`, exactly.
fn parse_hex_float(s: &str) -> Option<f64> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let magnitude = match s {
        "inf" => f64::INFINITY,
        "nan" => f64::NAN,
        _ => {
            let (mant, exp) = s.strip_prefix("0x")?.split_once('p')?;
            let exp: i64 = exp.parse().ok()?;
            let (lead, frac) = mant.split_once('.').unwrap_or((mant, "0"));
            let frac = u64::from_str_radix(&format!("{frac:0<13}"), 16).ok()?;
            match lead {
                "1" => f64::from_bits((u64::try_from(exp + 1023).ok()? << 52) | frac),
                "0" if frac == 0 => 0.0,
                "0" if exp == -1022 => f64::from_bits(frac),
                _ => return None,
            }
        }
    };
    Some(if neg { -magnitude } else { magnitude })
}

/// A value as comparable bits (every NaN is one NaN).
fn key_bits(v: f64) -> u64 {
    if v.is_nan() {
        u64::MAX
    } else {
        v.to_bits()
    }
}

#[derive(Debug, PartialEq)]
struct Outcome {
    values: BTreeMap<String, u64>,
    mux_unknown: bool,
}

fn oracle_outcome(line: &str) -> Outcome {
    let json: serde_json::Value = serde_json::from_str(line).expect("oracle prints JSON");
    let mut values = BTreeMap::new();
    for (name, v) in json["values"].as_object().expect("values object") {
        let (kind, text) = (v[0].as_str().expect("kind"), v[1].as_str().expect("text"));
        let value = match kind {
            "i" => text.parse::<i128>().expect("python int") as f64,
            _ => parse_hex_float(text).unwrap_or_else(|| panic!("bad float.hex {text}")),
        };
        values.insert(name.clone(), key_bits(value));
    }
    Outcome { values, mux_unknown: json["mux_unknown"].as_bool().expect("bool") }
}

#[test]
fn hex_floats_parse_exactly() {
    for v in [0.1, -2.5, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 0.0, -0.0, 1.0] {
        let hex = python_style_hex(v);
        assert_eq!(parse_hex_float(&hex).map(f64::to_bits), Some(v.to_bits()), "{hex}");
    }
}

/// `float.hex()` as Python formats it (only for the parser's self-test).
fn python_style_hex(v: f64) -> String {
    let sign = if v.is_sign_negative() { "-" } else { "" };
    let bits = v.to_bits();
    let exp = ((bits >> 52) & 0x7FF) as i64;
    let frac = bits & ((1 << 52) - 1);
    match (exp, frac) {
        (0, 0) => format!("{sign}0x0.0p+0"),
        (0, f) => format!("{sign}0x0.{f:013x}p-1022"),
        (e, f) => format!("{sign}0x1.{f:013x}p{:+}", e - 1023),
    }
}

/// Runs the oracle on `input` lines against the DBC at `dbc_path`; one output line per input line.
fn run_oracle(dbc_path: &std::path::Path, input: String) -> Vec<String> {
    let python = oracle_python();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/cantools_decode.py");
    let expected = input.lines().count();
    let mut child = Command::new(&python)
        .arg(&script)
        .arg(dbc_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; run `make deps`", python.display()));
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().expect("oracle runs");
    writer.join().expect("writer thread").expect("write payloads");
    assert!(output.status.success(), "oracle failed: {}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let lines: Vec<String> = stdout.lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), expected, "one oracle line per input line");
    lines
}

/// Generated messages written as a DBC file for the oracle, and our decoder for them.
struct Generated {
    messages: Vec<Message>,
    decoder: Decoder,
    dir: PathBuf,
    dbc_path: PathBuf,
}

impl Generated {
    fn new(seed: u64, tag: &str) -> (Generated, Rng) {
        let mut rng = Rng(seed);
        let messages: Vec<Message> = (0..100).map(|i| random_message(&mut rng, i)).collect();
        let dir =
            std::env::temp_dir().join(format!("decode_vs_cantools_{tag}_{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let dbc_path = dir.join("generated.dbc");
        std::fs::write(&dbc_path, dbc_text(&messages)).expect("write DBC");
        let mut builder = Decoder::builder();
        builder.add_database(&database("generated.dbc", messages.clone()), &[]);
        let (decoder, warnings) = builder.build().expect("builds");
        assert!(warnings.is_empty(), "{warnings:?}");
        (Generated { messages, decoder, dir, dbc_path }, rng)
    }

    fn frame(&self, i: usize, data: &[u8]) -> CanFrame {
        let m = &self.messages[i];
        let kind = if data.len() > 8 || m.length > 8 {
            FrameKind::Fd { brs: true, esi: false }
        } else {
            FrameKind::Data
        };
        CanFrame::new(m.id, kind, data).expect("valid frame")
    }
}

impl Drop for Generated {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn random_payload(rng: &mut Rng, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| match rng.below(10) {
            0 => 0xFF,
            1 => 0x00,
            2 => 0x80,
            _ => rng.next() as u8,
        })
        .collect()
}

#[test]
fn random_payloads_decode_bit_equal_to_cantools() {
    let (g, mut rng) = Generated::new(0x107E_57DE_C0DE, "decode");
    let messages = &g.messages;
    let decoder = &g.decoder;

    // Payloads: full length mostly, some truncated; bytes uniform or saturated.
    let mut cases: Vec<(usize, Vec<u8>)> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        for _ in 0..150 {
            let full = usize::from(m.length);
            let len = if rng.chance(85) {
                full
            } else {
                let valid: Vec<usize> = [0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48]
                    .into_iter()
                    .filter(|&l| l < full)
                    .collect();
                rng.pick(&valid)
            };
            cases.push((i, random_payload(&mut rng, len)));
        }
    }

    let mut input = String::new();
    for (i, data) in &cases {
        let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
        let _ = writeln!(input, "{} {}", messages[*i].name, hex);
    }
    let lines = run_oracle(&g.dbc_path, input);

    let mut out = Decoded::default();
    let mut mismatches = Vec::new();
    let (mut compared_values, mut unknown_mux, mut truncated) = (0usize, 0usize, 0usize);
    for ((i, data), line) in cases.iter().zip(&lines) {
        let m = &messages[*i];
        let frame = g.frame(*i, data);
        let key = decoder.decode(decoder.bus("can0"), &frame, &mut out).expect("known id");
        let compiled = decoder.message(key);
        let ours = Outcome {
            values: out
                .values
                .iter()
                .map(|v| (compiled.signals()[v.signal].name().to_owned(), key_bits(v.value)))
                .collect(),
            mux_unknown: out.mux_unknown,
        };
        let theirs = oracle_outcome(line);
        compared_values += theirs.values.len();
        unknown_mux += usize::from(theirs.mux_unknown);
        truncated += usize::from(out.truncated);
        if ours != theirs && mismatches.len() < 10 {
            mismatches.push(format!(
                "{} {:02X?}\n  ours:     {ours:?}\n  cantools: {theirs:?}",
                m.name, data
            ));
        }
    }
    eprintln!(
        "{} payloads, {compared_values} values, {unknown_mux} unknown mux, {truncated} truncated",
        cases.len()
    );
    assert!(mismatches.is_empty(), "decodes differ from cantools:\n{}", mismatches.join("\n"));
    assert!(cases.len() >= 15_000, "{} payloads", cases.len());
    assert!(compared_values > 30_000, "only {compared_values} values compared");
    assert!(
        unknown_mux > 100 && truncated > 500,
        "coverage: {unknown_mux} unknown mux, {truncated} truncated"
    );
}

#[test]
fn physical_values_encode_to_the_same_bytes_as_cantools() {
    let (g, mut rng) = Generated::new(0x0E4C_0DE5, "encode");
    let decoder = &g.decoder;
    let mut out = Decoded::default();
    // (message index, physical values by name) from decoding random payloads, integer signals
    // nudged by fractions of their factor to exercise rounding.
    let mut cases: Vec<(usize, Vec<(String, f64)>)> = Vec::new();
    for i in 0..g.messages.len() {
        for _ in 0..60 {
            let data = random_payload(&mut rng, usize::from(g.messages[i].length));
            let key =
                decoder.decode(decoder.bus("can0"), &g.frame(i, &data), &mut out).expect("known");
            if out.mux_unknown || out.values.iter().any(|v| !v.value.is_finite()) {
                continue;
            }
            let m = decoder.message(key);
            let values = out
                .values
                .iter()
                .map(|v| {
                    let s = &m.signals()[v.signal];
                    let nudge = if matches!(v.raw, can_decoders::decode::RawValue::Float(_)) {
                        0.0
                    } else {
                        rng.pick(&[0.0, 0.0, 0.5, -0.5, 0.25, 0.75, 0.4999]) * s.factor()
                    };
                    (s.name().to_owned(), v.value + nudge)
                })
                .collect();
            cases.push((i, values));
        }
    }
    let mut input = String::new();
    for (i, values) in &cases {
        let map: serde_json::Map<String, serde_json::Value> =
            values.iter().map(|(n, v)| (n.clone(), serde_json::json!(v))).collect();
        let _ =
            writeln!(input, "!encode {} {}", g.messages[*i].name, serde_json::Value::Object(map));
    }
    let lines = run_oracle(&g.dbc_path, input);
    let (mut same_bytes, mut both_refused, mut mismatches) = (0usize, 0usize, Vec::new());
    for ((i, values), line) in cases.iter().zip(&lines) {
        let key = decoder.message_by_name(&g.messages[*i].name).expect("exists");
        let named: Vec<(&str, f64)> = values.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        let ours = decoder.encode_by_name(key, &named, &STRICT);
        let theirs: serde_json::Value = serde_json::from_str(line).expect("JSON");
        match (&ours, theirs["hex"].as_str()) {
            (Ok(f), Some(hex)) => {
                let ours_hex: String = f.data().iter().map(|b| format!("{b:02x}")).collect();
                if ours_hex == hex {
                    same_bytes += 1;
                } else if mismatches.len() < 10 {
                    mismatches
                        .push(format!("{values:?}\n  ours:     {ours_hex}\n  cantools: {hex}"));
                }
            }
            (Err(_), None) => both_refused += 1,
            _ => {
                if mismatches.len() < 10 {
                    mismatches
                        .push(format!("{values:?}\n  ours:     {ours:?}\n  cantools: {theirs}"));
                }
            }
        }
    }
    eprintln!("{} encodes: {same_bytes} same bytes, {both_refused} refused by both", cases.len());
    assert!(mismatches.is_empty(), "encodes differ from cantools:\n{}", mismatches.join("\n"));
    assert!(same_bytes > 3000, "only {same_bytes} encodes compared");
}
