//! Random payloads over every message of every real DBC that cantools loads: our decode must
//! equal cantools' to the last bit. Covers Motorola-heavy opendbc files, CAN FD 64-byte messages,
//! extended ids, float signals and (extended) multiplexing.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{bail, Context};
use can_decoders::dbc;
use can_decoders::decode::{Decoded, Decoder};
use can_decoders::{CanFrame, FrameKind};
use common::{fixture, oracle_command, same_f64};
use serde_json::Value;

/// Payloads per message. Enough to hit many multiplexer values and sign bits, small enough that
/// the whole run stays within seconds.
const PAYLOADS_PER_MESSAGE: usize = 12;

/// Deterministic xorshift, so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn dbc_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in
        ["dbc/opendbc", "dbc/opendbc-generated", "dbc/cantools", "dbc/strym", "dbc/css-electronics"]
    {
        let Ok(entries) = std::fs::read_dir(fixture(dir)) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x.eq_ignore_ascii_case("dbc")) {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

struct Case {
    file: PathBuf,
    frame: CanFrame,
}

#[test]
fn random_payloads_over_real_dbcs_decode_like_cantools() -> anyhow::Result<()> {
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    let mut cases = Vec::new();
    let mut decoders = BTreeMap::new();
    // Messages whose signals overlap (the loader warns): cantools cannot unpack them at all.
    let mut overlapping = std::collections::BTreeSet::new();
    // Messages with a lowercase `m` multiplexor marker, which we read as `M` (with a warning) and
    // cantools reads as "not a multiplexor", so it never decodes the signals it selects.
    let mut misread_mux = std::collections::BTreeSet::new();
    // Signals whose `VAL_` line we accepted with a warning (a missing `;`, say) and cantools
    // dropped: we have labels where cantools has none.
    let mut repaired_labels = std::collections::BTreeSet::new();
    for file in dbc_files() {
        let Ok(db) = dbc::load_file(&file) else { continue };
        let text = String::from_utf8_lossy(&std::fs::read(&file)?).into_owned();
        for w in &db.warnings {
            if w.message.contains("value descriptions") {
                let line = text.lines().nth(w.line as usize - 1).unwrap_or_default();
                if let ["VAL_", _id, signal, ..] = line.split_whitespace().collect::<Vec<_>>()[..] {
                    repaired_labels.insert((file.clone(), signal.to_string()));
                }
            }
            if w.message.contains("read as 'M'") {
                for m in db.messages.iter().filter(|m| m.signals.iter().any(|s| s.line == w.line)) {
                    misread_mux.insert((file.clone(), m.name.clone()));
                }
            }
            if let Some(rest) = w.message.strip_prefix("in message '") {
                if w.message.contains("overlaps") {
                    let name = rest.split('\'').next().unwrap_or_default();
                    overlapping.insert((file.clone(), name.to_string()));
                }
            }
        }
        for m in &db.messages {
            let kind = if m.frame_format.is_fd() || m.length > 8 {
                FrameKind::Fd { brs: true, esi: false }
            } else {
                FrameKind::Data
            };
            for _ in 0..PAYLOADS_PER_MESSAGE {
                let mut data = vec![0u8; usize::from(m.length)];
                for chunk in data.chunks_mut(8) {
                    let r = rng.next().to_le_bytes();
                    chunk.copy_from_slice(&r[..chunk.len()]);
                }
                let Ok(frame) = CanFrame::new(m.id, kind, &data) else { continue };
                cases.push(Case { file: file.clone(), frame });
            }
        }
        let mut builder = Decoder::builder();
        builder.add_database(&db, &[]);
        let (decoder, _) =
            builder.build().with_context(|| format!("decoder for {}", file.display()))?;
        decoders.insert(file, decoder);
    }

    let mut child = oracle_command("oracle_decode.py")
        .arg("frames")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the cantools oracle")?;
    let mut stdin = child.stdin.take().context("oracle stdin")?;
    let input: String = cases
        .iter()
        .map(|c| {
            let hex: String = c.frame.data().iter().map(|b| format!("{b:02x}")).collect();
            let ext = u8::from(c.frame.id.is_extended());
            format!("{}\t{}\t{}\t{}\n", c.file.display(), c.frame.id.raw(), ext, hex)
        })
        .collect();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let stdout = child.stdout.take().context("oracle stdout")?;
    let answers: Vec<Value> = BufReader::new(stdout)
        .lines()
        .map(|l| Ok(serde_json::from_str(&l?)?))
        .collect::<anyhow::Result<_>>()?;
    writer.join().map_err(|_| anyhow::anyhow!("writer thread panicked"))??;
    child.wait()?;
    assert_eq!(answers.len(), cases.len(), "the oracle answered every case");

    let mut decoded = Decoded::default();
    let (
        mut compared_frames,
        mut compared_values,
        mut refused_by_cantools,
        mut unknown_to_cantools,
    ) = (0, 0, 0, 0);
    let mut files = std::collections::BTreeSet::new();
    for (case, answer) in cases.iter().zip(&answers) {
        let decoder = &decoders[&case.file];
        let key = decoder.decode(decoder.bus("can0"), &case.frame, &mut decoded);
        let Some(expected_name) = answer["msg"].as_str() else {
            // cantools did not load this message (it refuses some real-world syntax we accept).
            unknown_to_cantools += 1;
            continue;
        };
        let Some(key) = key else {
            bail!(
                "{}: {:?}: cantools knows {expected_name}, we matched nothing",
                case.file.display(),
                case.frame
            )
        };
        let m = decoder.message(key);
        assert_eq!(m.name(), expected_name, "{}: {:?}", case.file.display(), case.frame);
        if let Some(error) = answer.get("error").and_then(Value::as_str) {
            // cantools refuses a multiplexer value no signal is defined for, and a signal beyond
            // the received bytes; we decode what we can and flag why the rest is missing.
            refused_by_cantools += 1;
            let flagged = if error.contains("unpacking failed") {
                decoded.truncated
                    || overlapping.contains(&(case.file.clone(), m.name().to_string()))
            } else {
                decoded.mux_unknown
            };
            assert!(
                flagged,
                "{}: {:?}: cantools refused ({error}), we did not flag it",
                case.file.display(),
                case.frame
            );
            continue;
        }
        let expected = answer["sig"].as_object().context("sig")?;
        let ours: BTreeMap<&str, (f64, Option<&str>)> = decoded
            .values
            .iter()
            .map(|v| {
                let s = &m.signals()[v.signal];
                (s.name(), (v.value, s.label(&v.raw)))
            })
            .collect();
        let superset_allowed = misread_mux.contains(&(case.file.clone(), m.name().to_string()));
        assert!(
            superset_allowed || ours.len() == expected.len(),
            "{}: {:?}: signal sets differ: ours {ours:?}, cantools {expected:?}",
            case.file.display(),
            case.frame
        );
        assert!(ours.len() >= expected.len());
        for (name, want) in expected {
            let want = want.as_f64().context("number")?;
            let Some((got, label)) = ours.get(name.as_str()) else {
                bail!("{}: {:?}: we lack {name}", case.file.display(), case.frame)
            };
            assert!(
                same_f64(*got, want),
                "{}: {} signal {name}: ours {got:?} cantools {want:?}",
                case.file.display(),
                m.name()
            );
            let want_label = answer["choice"].get(name).and_then(Value::as_str);
            if want_label.is_none() && repaired_labels.contains(&(case.file.clone(), name.clone()))
            {
                continue;
            }
            assert_eq!(
                *label,
                want_label,
                "{}: {} signal {name}: label",
                case.file.display(),
                m.name()
            );
            compared_values += 1;
        }
        compared_frames += 1;
        files.insert(case.file.clone());
    }
    println!(
        "{} DBC files, {compared_frames} frames, {compared_values} signal values equal to cantools; \
         {refused_by_cantools} frames cantools refused (unknown multiplexer value or signal beyond the data, flagged by us); \
         {unknown_to_cantools} frames of messages cantools did not load",
        files.len()
    );
    assert!(files.len() >= 100, "only {} DBC files compared", files.len());
    assert!(compared_values > 100_000, "only {compared_values} values compared");
    Ok(())
}
