//! Model fields derived from markers and attributes once the whole file is read: multiplexing,
//! frame format, cycle time, initial values and long names.

use std::collections::HashMap;

use super::model::*;

fn warn(out: &mut Vec<Diagnostic>, line: u32, message: String) {
    out.push(Diagnostic { severity: Severity::Warning, line, column: 1, message });
}

/// Sorted, merged inclusive ranges.
fn merge(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.iter_mut().for_each(|r| *r = (r.0.min(r.1), r.0.max(r.1)));
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// `M` / `mN` / `mNM` markers and `SG_MUL_VAL_` to [`Multiplexing`]. A plain `mN` refers to the
/// message's only multiplexor; with several, only `SG_MUL_VAL_` can say which (as in cantools).
pub fn multiplexing(
    db: &mut Database,
    markers: &[Vec<Option<String>>],
    extended: &super::build::ExtendedMux,
    out: &mut Vec<Diagnostic>,
) {
    for (mi, (msg, marks)) in db.messages.iter_mut().zip(markers).enumerate() {
        let switches: Vec<String> = msg
            .signals
            .iter()
            .zip(marks)
            .filter(|(_, m)| m.as_deref().is_some_and(|m| m.ends_with('M')))
            .map(|(s, _)| s.name.clone())
            .collect();
        let simple = match switches.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        };
        for (sig, mark) in msg.signals.iter_mut().zip(marks) {
            let mark = mark.as_deref().unwrap_or("");
            sig.multiplexing.is_multiplexor = mark.ends_with('M');
            let n = mark
                .strip_prefix('m')
                .map(|r| r.strip_suffix('M').unwrap_or(r))
                .and_then(|d| d.parse::<u64>().ok());
            let ext = extended.get(&(mi, sig.name.clone())).cloned();
            let cond = match (ext, n, &simple) {
                (Some((switch, mut ranges)), n, simple) => {
                    if let (Some(n), Some(s)) = (n, simple) {
                        if *s == switch {
                            ranges.push((n, n));
                        }
                    }
                    Some(MuxCondition { switch, values: merge(ranges) })
                }
                (None, Some(n), Some(s)) => {
                    Some(MuxCondition { switch: s.clone(), values: vec![(n, n)] })
                }
                (None, Some(_), None) => {
                    let message = format!(
                        "multiplexed signal '{}' of message '{}' has {} multiplexors and no SG_MUL_VAL_; treated as not multiplexed",
                        sig.name,
                        msg.name,
                        switches.len()
                    );
                    warn(out, sig.line, message);
                    None
                }
                (None, None, _) => None,
            };
            if cond.as_ref().is_some_and(|c| c.switch == sig.name) {
                warn(
                    out,
                    sig.line,
                    format!("signal '{}' is multiplexed by itself; ignored", sig.name),
                );
                continue;
            }
            sig.multiplexing.multiplexed_by = cond;
        }
    }
}

fn def_default<'a>(db: &'a Database, name: &str) -> Option<&'a AttributeValue> {
    db.attribute_defs.get(name).and_then(|d| d.default.as_ref())
}

/// The `VFrameFormat` label of a message, and whether it was set on the message itself.
fn frame_format_label(db: &Database, msg: &Message) -> Option<(String, bool)> {
    let def = db.attribute_defs.get("VFrameFormat")?;
    let (value, explicit) = match msg.attributes.get("VFrameFormat") {
        Some(v) => (v, true),
        None => (def.default.as_ref()?, false),
    };
    let label = match value {
        AttributeValue::String(s) => s.clone(),
        other => {
            let idx = usize::try_from(other.as_f64()? as i64).ok()?;
            match &def.kind {
                AttributeType::Enum(labels) => labels.get(idx)?.clone(),
                _ => VFRAMEFORMAT_LABELS.get(idx)?.to_string(),
            }
        }
    };
    Some((label, explicit))
}

use super::build::VFRAMEFORMAT_LABELS;

/// Frame format (`VFrameFormat`, `ProtocolType`), cycle time and initial values.
pub fn message_attributes(db: &mut Database, out: &mut Vec<Diagnostic>) {
    let j1939_db =
        db.attributes.get("ProtocolType").or_else(|| def_default(db, "ProtocolType")).is_some_and(
            |v| matches!(v, AttributeValue::String(s) if s.eq_ignore_ascii_case("J1939")),
        );
    let has_cycle_def = db.attribute_defs.contains_key("GenMsgCycleTime");
    let cycle_default = def_default(db, "GenMsgCycleTime").and_then(AttributeValue::as_f64);
    let labels: Vec<Option<(String, bool)>> =
        db.messages.iter().map(|m| frame_format_label(db, m)).collect();
    for (msg, label) in db.messages.iter_mut().zip(labels) {
        let ext = msg.id.is_extended();
        let mut format = if ext { FrameFormat::Extended } else { FrameFormat::Standard };
        // The message's own VFrameFormat wins over the database's ProtocolType.
        let explicit_format = label.as_ref().is_some_and(|l| l.1);
        if let Some((label, explicit)) = label {
            match label.as_str() {
                "J1939PG" if ext => format = FrameFormat::J1939,
                "StandardCAN_FD" | "ExtendedCAN_FD" => {
                    format = if ext { FrameFormat::FdExtended } else { FrameFormat::FdStandard }
                }
                "StandardCAN" | "ExtendedCAN" => {}
                other if explicit => warn(
                    out,
                    msg.line,
                    format!(
                        "message '{}' has VFrameFormat '{other}' for id {}; using the id",
                        msg.name, msg.id
                    ),
                ),
                _ => {}
            }
        }
        if j1939_db && !explicit_format && format == FrameFormat::Extended {
            format = FrameFormat::J1939;
        }
        msg.frame_format = format;
        // As cantools: the message's own value when set (0 means none), else the default.
        if has_cycle_def {
            let v = match msg.attributes.get("GenMsgCycleTime") {
                Some(v) => v.as_f64(),
                None => cycle_default,
            };
            msg.cycle_time_ms =
                v.filter(|v| *v > 0.0 && v.is_finite()).map(|v| v.min(f64::from(u32::MAX)) as u32);
        }
        for sig in &mut msg.signals {
            match sig.attributes.get("GenSigStartValue") {
                Some(AttributeValue::String(s)) => {
                    let message = format!(
                        "GenSigStartValue '{s}' of signal '{}' is not a number; ignored",
                        sig.name
                    );
                    warn(out, sig.line, message);
                }
                Some(v) => sig.initial_raw = v.as_f64(),
                None => {}
            }
        }
    }
}

fn long_name(
    attrs: &std::collections::BTreeMap<String, AttributeValue>,
    key: &str,
) -> Option<String> {
    match attrs.get(key) {
        Some(AttributeValue::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// `System*LongSymbol` attributes replace the 32-character short names (as cantools does).
pub fn long_names(db: &mut Database) {
    let mut nodes: HashMap<String, String> = HashMap::new();
    for n in &mut db.nodes {
        if let Some(long) = long_name(&n.attributes, "SystemNodeLongSymbol") {
            nodes.insert(std::mem::replace(&mut n.name, long.clone()), long);
        }
    }
    let rename = |v: &mut Vec<String>| {
        for x in v.iter_mut() {
            if let Some(l) = nodes.get(x) {
                x.clone_from(l);
            }
        }
    };
    for msg in &mut db.messages {
        if let Some(long) = long_name(&msg.attributes, "SystemMessageLongSymbol") {
            msg.name = long;
        }
        rename(&mut msg.senders);
        let mut signals: HashMap<String, String> = HashMap::new();
        for sig in &mut msg.signals {
            rename(&mut sig.receivers);
            if let Some(long) = long_name(&sig.attributes, "SystemSignalLongSymbol") {
                signals.insert(std::mem::replace(&mut sig.name, long.clone()), long);
            }
        }
        for sig in &mut msg.signals {
            if let Some(c) = &mut sig.multiplexing.multiplexed_by {
                if let Some(l) = signals.get(&c.switch) {
                    c.switch.clone_from(l);
                }
            }
        }
    }
}
