//! Compiling databases into plans, frame lookup per bus (direct table for standard ids, sorted
//! tables for extended ids and J1939 PGNs), multiplexing and the decode loop.

use std::collections::{BTreeMap, HashSet};

use crate::dbc::{Database, Message, ValueType};
use crate::frame::{CanFrame, FrameKind};

use super::plan::{BitPlan, Conversion, RawKind, SignalPlan};
use super::{
    BuildError, BuildWarning, BusId, CompiledMessage, CompiledSignal, Condition, Decoded, Decoder,
    DecoderBuilder, MessageKey, SignalValue, Step,
};

const NONE: u32 = u32::MAX;
/// `Condition::more` when the condition has a single range.
const NO_MORE: u16 = u16::MAX;

/// A database as added to the builder: which compiled messages it contributed, and where.
#[derive(Debug, Clone)]
pub(crate) struct SourceDb {
    channels: Vec<String>,
    first: usize,
    count: usize,
}

/// Frame lookup for one bus.
#[derive(Debug, Clone)]
pub(crate) struct BusTable {
    /// Message key by standard id, `NONE` when unknown.
    standard: Box<[u32]>,
    /// (raw id, key) sorted by id.
    extended: Vec<(u32, u32)>,
    /// (PGN, key) of J1939 messages, sorted by PGN.
    pgn: Vec<(u32, u32)>,
}

impl BusTable {
    fn new() -> BusTable {
        BusTable {
            standard: vec![NONE; 2048].into_boxed_slice(),
            extended: Vec::new(),
            pgn: Vec::new(),
        }
    }

    fn find(&self, frame: &CanFrame, by_pgn: bool) -> Option<u32> {
        let id = frame.id;
        if !id.is_extended() {
            let k = *self.standard.get(id.raw() as usize)?;
            return (k != NONE).then_some(k);
        }
        if let Ok(i) = self.extended.binary_search_by_key(&id.raw(), |e| e.0) {
            return self.extended.get(i).map(|e| e.1);
        }
        if by_pgn {
            let pgn = id.j1939_pgn();
            if let Ok(i) = self.pgn.binary_search_by_key(&pgn, |e| e.0) {
                return self.pgn.get(i).map(|e| e.1);
            }
        }
        None
    }
}

impl DecoderBuilder {
    /// Adds a database for the interfaces named in `channels` (e.g. `"can1"`), or for every
    /// channel when `channels` is empty. When two messages share an id on a channel, the one
    /// added first is used and a [`BuildWarning::DuplicateId`] names both.
    pub fn add_database(&mut self, db: &Database, channels: &[&str]) -> &mut Self {
        let first = self.messages.len();
        for m in &db.messages {
            let (compiled, warnings) = compile_message(m, db);
            self.messages.push(compiled);
            self.warnings.extend(warnings);
        }
        self.sources.push(SourceDb {
            channels: channels.iter().map(|c| (*c).to_owned()).collect(),
            first,
            count: db.messages.len(),
        });
        self
    }

    /// When a frame's exact id is unknown, match J1939 messages by PGN (priority, source address
    /// and a PDU1 destination address are ignored); [`Decoded::j1939_source_address`] reports the
    /// frame's source address. When several J1939 messages share a PGN, the first added is used.
    pub fn j1939_by_pgn(&mut self, enabled: bool) -> &mut Self {
        self.j1939_by_pgn = enabled;
        self
    }

    /// Decode only these signals, named `Signal` (in any message) or `Message.Signal`. The
    /// multiplexors deciding their presence are still read, but not output. Messages without a
    /// selected signal still match and decode to no values.
    pub fn select_signals<I, S>(&mut self, names: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.selection = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Compiles the lookup tables and decode programs.
    pub fn build(&self) -> Result<(Decoder, Vec<BuildWarning>), BuildError> {
        let mut messages = self.messages.clone();
        let mut warnings = self.warnings.clone();

        // Selection: which signals each message outputs.
        let mut selected: Vec<Vec<bool>> =
            messages.iter().map(|m| vec![self.selection.is_none(); m.signals.len()]).collect();
        if let Some(names) = &self.selection {
            let mut unknown = Vec::new();
            for name in names {
                let mut found = false;
                for (m, sel) in messages.iter().zip(selected.iter_mut()) {
                    for (s, flag) in m.signals.iter().zip(sel.iter_mut()) {
                        let hit = match name.split_once('.') {
                            Some((mn, sn)) => (mn == m.name && sn == s.name) || *name == s.name,
                            None => *name == s.name,
                        };
                        if hit {
                            *flag = true;
                            found = true;
                        }
                    }
                }
                if !found {
                    unknown.push(name.clone());
                }
            }
            if !unknown.is_empty() {
                return Err(BuildError::UnknownSignals { names: unknown });
            }
        }
        for (m, sel) in messages.iter_mut().zip(&selected) {
            if m.signals.len() > usize::from(u16::MAX) {
                return Err(BuildError::TooManySignals {
                    message: m.name.clone(),
                    id: m.id,
                    count: m.signals.len(),
                });
            }
            compile_steps(m, sel);
        }

        // Lookup tables: bus 0 is every channel not named, bus i is bus_names[i - 1].
        let mut bus_names: Vec<String> = Vec::new();
        for src in &self.sources {
            for c in &src.channels {
                if !bus_names.contains(c) {
                    bus_names.push(c.clone());
                }
            }
        }
        let mut reported: HashSet<(u32, u32)> = HashSet::new();
        let mut buses = Vec::with_capacity(bus_names.len() + 1);
        for b in 0..=bus_names.len() {
            let channel = b.checked_sub(1).and_then(|i| bus_names.get(i));
            let mut by_id: BTreeMap<u32, u32> = BTreeMap::new();
            let mut table = BusTable::new();
            let mut pgn: BTreeMap<u32, u32> = BTreeMap::new();
            for src in &self.sources {
                let applies =
                    src.channels.is_empty() || channel.is_some_and(|c| src.channels.contains(c));
                if !applies {
                    continue;
                }
                for k in src.first..src.first + src.count {
                    let key = k as u32;
                    let m = &messages[k];
                    let slot = if m.id.is_extended() {
                        by_id.entry(m.id.raw()).or_insert(NONE)
                    } else {
                        &mut table.standard[m.id.raw() as usize]
                    };
                    if *slot == NONE {
                        *slot = key;
                    } else if reported.insert((*slot, key)) {
                        let kept = &messages[*slot as usize];
                        warnings.push(BuildWarning::DuplicateId {
                            id: m.id,
                            channel: if src.channels.is_empty() { None } else { channel.cloned() },
                            kept: kept.name.clone(),
                            kept_source: kept.source.clone(),
                            ignored: m.name.clone(),
                            ignored_source: m.source.clone(),
                        });
                    }
                    if m.j1939 && m.id.is_extended() {
                        pgn.entry(m.id.j1939_pgn()).or_insert(key);
                    }
                }
            }
            table.extended = by_id.into_iter().collect();
            table.pgn = pgn.into_iter().collect();
            buses.push(table);
        }
        let decoder = Decoder { messages, buses, bus_names, j1939_by_pgn: self.j1939_by_pgn };
        Ok((decoder, warnings))
    }
}

impl Decoder {
    /// Decodes `frame` received on `bus` into `out` (cleared first). Returns the message key, or
    /// `None` when no message matches (always for remote and error frames).
    #[inline]
    pub fn decode(&self, bus: BusId, frame: &CanFrame, out: &mut Decoded) -> Option<MessageKey> {
        out.clear();
        if matches!(frame.kind, FrameKind::Remote | FrameKind::Error) {
            return None;
        }
        let key = self.buses.get(usize::from(bus.0))?.find(frame, self.j1939_by_pgn)?;
        let message = self.messages.get(key as usize)?;
        message.decode_into(frame, out);
        Some(MessageKey(key))
    }

    /// The message a frame with this id would decode as on `bus` (exact id, then PGN when
    /// enabled).
    pub fn lookup(&self, bus: BusId, id: crate::frame::CanId) -> Option<MessageKey> {
        let frame = CanFrame::new(id, FrameKind::Data, &[]).ok()?;
        self.buses.get(usize::from(bus.0))?.find(&frame, self.j1939_by_pgn).map(MessageKey)
    }
}

impl CompiledMessage {
    /// Runs the decode program on `frame` into `out` (assumed cleared).
    #[inline]
    pub(crate) fn decode_into(&self, frame: &CanFrame, out: &mut Decoded) {
        if self.j1939 {
            out.j1939_source_address = Some(frame.id.j1939_source_address());
        }
        let len = frame.data().len();
        out.truncated = len < usize::from(self.length);
        let buf = frame.padded_data();
        if self.mux_slots == 0 && len >= usize::from(self.need_bytes) {
            // Plain message, every signal received: no conditions, no per-signal length check.
            out.values.reserve(self.steps.len());
            for step in self.steps.iter() {
                let raw = step.plan.raw(buf);
                out.values.push(SignalValue {
                    signal: usize::from(step.signal),
                    raw,
                    value: step.plan.conversion.physical(raw),
                });
            }
            return;
        }
        out.mux.resize(usize::from(self.mux_slots), None);
        for step in self.steps.iter() {
            if let Some(c) = &step.condition {
                let Some(&Some(n)) = out.mux.get(usize::from(c.slot)) else { continue };
                let hit = (i128::from(c.lo) <= n && n <= i128::from(c.hi))
                    || (c.more != NO_MORE
                        && self
                            .conditions
                            .get(usize::from(c.more))
                            .is_some_and(|r| in_ranges(n, r)));
                if !hit {
                    continue;
                }
            }
            if usize::from(step.plan.bits.need_bytes) > len {
                // Also when the DBC declares a length its own signals do not fit in.
                out.truncated = true;
                continue;
            }
            let raw = step.plan.raw(buf);
            if let Some(slot) = step.mux_slot {
                if let Some(signal) = self.signals.get(usize::from(step.signal)) {
                    let n = mux_number(signal, &step.plan, raw);
                    if !signal.mux_known.is_empty()
                        && !n.is_some_and(|n| in_ranges(n, &signal.mux_known))
                    {
                        out.mux_unknown = true;
                    }
                    if let Some(m) = out.mux.get_mut(usize::from(slot)) {
                        *m = n;
                    }
                }
            }
            if step.output {
                out.values.push(SignalValue {
                    signal: usize::from(step.signal),
                    raw,
                    value: step.plan.conversion.physical(raw),
                });
            }
        }
    }
}

#[inline]
pub(crate) fn in_ranges(n: i128, ranges: &[(u64, u64)]) -> bool {
    ranges.iter().any(|&(lo, hi)| i128::from(lo) <= n && n <= i128::from(hi))
}

/// cantools' multiplexer number (`_get_mux_number` after `decode(decode_choices=True)`): a raw
/// value with a label maps back through the label (the last raw value carrying that label);
/// otherwise `int(scaled value)`.
pub(crate) fn mux_number(
    signal: &CompiledSignal,
    plan: &SignalPlan,
    raw: super::RawValue,
) -> Option<i128> {
    if !signal.labels.is_empty() {
        if let Some(k) = raw.as_table_key() {
            if signal.labels.binary_search_by_key(&k, |e| e.0).is_ok() {
                let canonical = signal
                    .label_inverse
                    .binary_search_by_key(&k, |e| e.0)
                    .ok()
                    .and_then(|j| signal.label_inverse.get(j))
                    .map_or(k, |e| e.1);
                return Some(i128::from(canonical));
            }
        }
    }
    plan.conversion.mux_number(raw)
}

fn compile_message(m: &Message, db: &Database) -> (CompiledMessage, Vec<BuildWarning>) {
    let mut warnings = Vec::new();
    let mut signals: Vec<CompiledSignal> = Vec::with_capacity(m.signals.len());
    for s in &m.signals {
        let kind = RawKind::from_model(s.value_type);
        let bits = BitPlan::new(s.start_bit, s.length, s.byte_order);
        let plan = match (bits, s.value_type) {
            (None, _) => {
                warnings.push(unusable(
                    m,
                    &s.name,
                    format!("start bit {} length {} does not fit 64 bytes", s.start_bit, s.length),
                ));
                None
            }
            (Some(_), ValueType::Float32) if s.length != 32 => {
                warnings.push(unusable(
                    m,
                    &s.name,
                    format!("a float32 signal must be 32 bits, not {}", s.length),
                ));
                None
            }
            (Some(_), ValueType::Float64) if s.length != 64 => {
                warnings.push(unusable(
                    m,
                    &s.name,
                    format!("a float64 signal must be 64 bits, not {}", s.length),
                ));
                None
            }
            (Some(bits), _) => {
                if usize::from(bits.need_bytes) > usize::from(m.length) {
                    warn_past_end(&mut warnings, m, &s.name);
                }
                Some(SignalPlan {
                    bits,
                    kind,
                    conversion: Conversion::new(s.factor, s.offset, kind.is_float()),
                })
            }
        };
        // Value table with Python dict semantics: key order of first appearance, last label wins.
        let mut dict: Vec<(i64, String)> = Vec::new();
        for (k, label) in &s.value_table {
            match dict.iter_mut().find(|e| e.0 == *k) {
                Some(e) => e.1 = label.clone(),
                None => dict.push((*k, label.clone())),
            }
        }
        let mut inverse: BTreeMap<&str, i64> = BTreeMap::new();
        for (k, label) in &dict {
            inverse.insert(label.as_str(), *k);
        }
        let mut label_inverse: Vec<(i64, i64)> = dict
            .iter()
            .filter_map(|(k, l)| inverse.get(l.as_str()).filter(|c| **c != *k).map(|c| (*k, *c)))
            .collect();
        label_inverse.sort_unstable();
        let mut labels = dict.clone();
        labels.sort_by_key(|e| e.0);
        let no_range = s.minimum == 0.0 && s.maximum == 0.0;
        signals.push(CompiledSignal {
            name: s.name.clone(),
            unit: s.unit.clone(),
            start_bit: s.start_bit,
            length: s.length,
            byte_order: s.byte_order,
            value_type: s.value_type,
            factor: s.factor,
            offset: s.offset,
            minimum: (!no_range).then_some(s.minimum),
            maximum: (!no_range).then_some(s.maximum),
            is_multiplexor: s.multiplexing.is_multiplexor,
            labels: labels.into_boxed_slice(),
            label_inverse: label_inverse.into_boxed_slice(),
            plan,
            condition: None,
            mux_slot: None,
            mux_known: Box::new([]),
            reachable: false,
        });
    }

    // Multiplexing: resolve switches.
    let mut switch_of: Vec<Option<usize>> = vec![None; m.signals.len()];
    let mut broken: Vec<bool> = vec![false; m.signals.len()];
    for (i, s) in m.signals.iter().enumerate() {
        let Some(cond) = &s.multiplexing.multiplexed_by else { continue };
        match m.signals.iter().position(|o| o.name == cond.switch) {
            Some(j) if j != i && m.signals[j].multiplexing.is_multiplexor => {
                switch_of[i] = Some(j);
                signals[i].condition = Some((j, cond.values.clone().into_boxed_slice()));
            }
            Some(_) => {
                broken[i] = true;
                warnings.push(unusable(
                    m,
                    &s.name,
                    format!("{} is not a multiplexor", cond.switch),
                ));
            }
            None => {
                broken[i] = true;
                warnings.push(unusable(
                    m,
                    &s.name,
                    format!("multiplexor {} not found", cond.switch),
                ));
            }
        }
    }
    // Depth in the switch tree; signals on a cycle or below a broken switch stay unreachable.
    let mut depth: Vec<Option<usize>> = vec![None; m.signals.len()];
    for _ in 0..=m.signals.len() {
        let mut changed = false;
        for i in 0..m.signals.len() {
            if depth[i].is_some() || broken[i] || signals[i].plan.is_none() {
                continue;
            }
            let d = match switch_of[i] {
                None => Some(0),
                Some(j) => depth[j].map(|d| d + 1),
            };
            if d.is_some() {
                depth[i] = d;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut slots = 0u16;
    for i in 0..m.signals.len() {
        signals[i].reachable = depth[i].is_some();
        if signals[i].is_multiplexor && signals[i].reachable {
            signals[i].mux_slot = Some(slots);
            slots = slots.saturating_add(1);
        }
        if signals[i].plan.is_some() && !signals[i].reachable && !broken[i] {
            warnings.push(unusable(
                m,
                &m.signals[i].name,
                "its multiplexor is never decoded".into(),
            ));
        }
    }
    for i in 0..m.signals.len() {
        if !signals[i].is_multiplexor {
            continue;
        }
        let mut known: Vec<(u64, u64)> = Vec::new();
        for (j, s) in m.signals.iter().enumerate() {
            if switch_of[j] == Some(i) {
                if let Some(c) = &s.multiplexing.multiplexed_by {
                    known.extend(c.values.iter().copied());
                }
            }
        }
        known.extend(
            signals[i].labels.iter().filter_map(|(k, _)| u64::try_from(*k).ok().map(|u| (u, u))),
        );
        known.sort_unstable();
        signals[i].mux_known = known.into_boxed_slice();
    }
    let mut order: Vec<u16> =
        (0..m.signals.len()).filter(|&i| depth[i].is_some()).map(|i| i as u16).collect();
    order.sort_by_key(|&i| (depth[usize::from(i)], i));

    let compiled = CompiledMessage {
        name: m.name.clone(),
        id: m.id,
        length: m.length,
        frame_format: m.frame_format,
        j1939: m.is_j1939(),
        source: db.source.clone(),
        signals,
        order,
        steps: Box::new([]),
        need_bytes: 0,
        conditions: Box::new([]),
        mux_slots: slots,
    };
    (compiled, warnings)
}

fn unusable(m: &Message, signal: &str, reason: String) -> BuildWarning {
    BuildWarning::SignalUnusable {
        message: m.name.clone(),
        id: m.id,
        signal: signal.to_owned(),
        reason,
    }
}

fn warn_past_end(warnings: &mut Vec<BuildWarning>, m: &Message, signal: &str) {
    warnings.push(BuildWarning::SignalPastEnd {
        message: m.name.clone(),
        id: m.id,
        signal: signal.to_owned(),
        length: m.length,
    });
}

/// The decode program for the selected signals: those, plus the switches they depend on.
fn compile_steps(m: &mut CompiledMessage, selected: &[bool]) {
    let n = m.signals.len();
    let mut needed = vec![false; n];
    for i in 0..n {
        if !selected.get(i).copied().unwrap_or(false) || !m.signals[i].is_decodable() {
            continue;
        }
        let mut cur = Some(i);
        let mut guard = 0;
        while let Some(c) = cur {
            needed[c] = true;
            cur = m.signals[c].condition.as_ref().map(|(s, _)| *s);
            guard += 1;
            if guard > n {
                break;
            }
        }
    }
    let mut steps = Vec::new();
    let mut conditions: Vec<Box<[(u64, u64)]>> = Vec::new();
    for &i in &m.order {
        let s = &m.signals[usize::from(i)];
        let Some(plan) = s.plan else { continue };
        if !needed[usize::from(i)] {
            continue;
        }
        let condition = s.condition.as_ref().and_then(|(sw, ranges)| {
            let slot = m.signals.get(*sw)?.mux_slot?;
            // The first range inline (the common `mN` case); the rest, if any, out of line.
            let (lo, hi) = ranges.first().copied().unwrap_or((1, 0));
            let more = if ranges.len() > 1 {
                conditions.push(ranges.clone());
                u16::try_from(conditions.len() - 1).unwrap_or(NO_MORE)
            } else {
                NO_MORE
            };
            Some(Condition { slot, lo, hi, more })
        });
        steps.push(Step {
            plan,
            signal: i,
            condition,
            mux_slot: s.mux_slot,
            output: selected.get(usize::from(i)).copied().unwrap_or(false),
        });
    }
    m.need_bytes = steps.iter().map(|s| s.plan.bits.need_bytes).max().unwrap_or(0);
    m.steps = steps.into_boxed_slice();
    m.conditions = conditions.into_boxed_slice();
}
