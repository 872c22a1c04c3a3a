//! Statements to model: resolves references between statements (comments, attributes, value
//! descriptions, multiplexing) and applies the conventions cantools and CANdb++ follow.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::layout;
use super::model::*;
use super::number::{parse_f64, parse_i64};
use super::statement::{RawValue, SignalDef, Statement, Stmt, Target};
use crate::frame::{CanId, DBC_EXTENDED_FLAG};

/// The node name CANdb++ writes for "no node".
const NO_NODE: &str = "Vector__XXX";
/// The pseudo message holding signals that belong to no message.
const INDEPENDENT_SIG_MSG: &str = "VECTOR__INDEPENDENT_SIG_MSG";
/// Labels of `VFrameFormat` when a file defines it as INT (cantools uses the same list).
pub const VFRAMEFORMAT_LABELS: [&str; 16] = [
    "StandardCAN",
    "ExtendedCAN",
    "reserved",
    "J1939PG",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "StandardCAN_FD",
    "ExtendedCAN_FD",
];

/// A DBC id as written to our id: bit 31 marks extended ids; ids above 0x7FF without it are
/// extended too (opendbc and cantools read them so). `None` when it fits neither.
pub fn normalize_id(dbc_id: u64) -> Option<CanId> {
    let v = u32::try_from(dbc_id).ok()?;
    if v & DBC_EXTENDED_FLAG != 0 {
        CanId::extended(v & !DBC_EXTENDED_FLAG)
    } else if v <= 0x7FF {
        CanId::standard(v)
    } else {
        CanId::extended(v)
    }
}

/// `SG_MUL_VAL_` by (message index, signal name): the switch and its raw value ranges.
pub type ExtendedMux = HashMap<(usize, String), (String, Vec<(u64, u64)>)>;

struct Builder {
    db: Database,
    diags: Vec<Diagnostic>,
    /// First message with each id.
    by_id: HashMap<CanId, usize>,
    /// Line of the first message with each name.
    name_lines: HashMap<String, u32>,
    node_names: HashSet<String>,
    /// DBC ids of dropped messages, whose references are silently ignored.
    dropped_ids: Vec<u64>,
    /// Dropped signals by (message index, name): their references are silently ignored too.
    dropped_signals: HashSet<(usize, String)>,
    /// Raw `mN`/`M` markers per message and signal, for multiplexing.
    mux_markers: Vec<Vec<Option<String>>>,
    /// `SG_MUL_VAL_` per (message index, signal): switch and ranges.
    mux_values: ExtendedMux,
}

fn diag(severity: Severity, line: u32, column: u32, message: String) -> Diagnostic {
    Diagnostic { severity, line, column, message }
}

pub fn build(statements: Vec<Statement>, diags: Vec<Diagnostic>) -> Database {
    let mut b = Builder {
        db: Database::default(),
        diags,
        by_id: HashMap::new(),
        name_lines: HashMap::new(),
        node_names: HashSet::new(),
        dropped_ids: Vec::new(),
        dropped_signals: HashSet::new(),
        mux_markers: Vec::new(),
        mux_values: HashMap::new(),
    };
    // Definitions first: values are typed by them wherever they appear in the file.
    for s in &statements {
        if let Stmt::AttrDef { object, name, kind } = &s.stmt {
            let def = AttributeDef {
                name: name.clone(),
                object: *object,
                kind: kind.clone(),
                default: None,
            };
            b.db.attribute_defs.insert(name.clone(), def);
        }
    }
    let mut rest = Vec::new();
    for s in statements {
        match s.stmt {
            Stmt::Version(v) => b.db.version = v,
            Stmt::Nodes(nodes) => b.nodes(nodes),
            Stmt::ValueTable { name, entries } => {
                b.db.value_tables.insert(name, entries);
            }
            Stmt::Message { id, name, length, sender, signals } => {
                b.message(s.line, s.column, id, name, length, sender, signals)
            }
            Stmt::AttrDefault { name, value } => b.attr_default(s.line, s.column, &name, &value),
            Stmt::AttrDef { .. } | Stmt::Skipped => {}
            other => rest.push(Statement { line: s.line, column: s.column, stmt: other }),
        }
    }
    for s in rest {
        b.reference(s);
    }
    b.finish()
}

impl Builder {
    fn nodes(&mut self, nodes: Vec<String>) {
        for name in nodes {
            if name != NO_NODE && self.node_names.insert(name.clone()) {
                self.db.nodes.push(Node { name, comment: None, attributes: BTreeMap::new() });
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn message(
        &mut self,
        line: u32,
        column: u32,
        dbc_id: u64,
        name: String,
        length: u64,
        sender: Option<String>,
        defs: Vec<SignalDef>,
    ) {
        if name == INDEPENDENT_SIG_MSG {
            self.dropped_ids.push(dbc_id);
            return;
        }
        let Some(id) = normalize_id(dbc_id) else {
            self.dropped_ids.push(dbc_id);
            self.diags.push(diag(
                Severity::Error,
                line,
                column,
                format!("message '{name}' has id {dbc_id}, which is not a CAN id; message dropped"),
            ));
            return;
        };
        let length = if length > 64 {
            self.diags.push(diag(
                Severity::Warning,
                line,
                column,
                format!("message '{name}' declares {length} bytes; clamped to 64"),
            ));
            64
        } else {
            u8::try_from(length).unwrap_or(64)
        };
        if sender.is_none() {
            self.diags.push(diag(
                Severity::Warning,
                line,
                column,
                format!("message '{name}' has no sender"),
            ));
        }
        let mut signals = Vec::with_capacity(defs.len());
        let mut markers = Vec::with_capacity(defs.len());
        for d in defs {
            if let Some(s) = self.signal(&name, d, &mut markers) {
                signals.push(s);
            }
        }
        for (i, s) in signals.iter().enumerate() {
            if let Some(first) = signals.iter().take(i).find(|o| o.name == s.name) {
                self.diags.push(diag(
                    Severity::Warning,
                    s.line,
                    1,
                    format!(
                        "signal name '{}' repeats line {} in message '{name}'",
                        s.name, first.line
                    ),
                ));
            }
        }
        if let Some(&first) = self.by_id.get(&id) {
            let other =
                self.db.messages.get(first).map(|m| (m.name.clone(), m.line)).unwrap_or_default();
            self.diags.push(diag(
                Severity::Warning,
                line,
                column,
                format!("message '{name}' (line {line}) has the same id {id} as message '{}' (line {}); references apply to the first", other.0, other.1),
            ));
        } else {
            self.by_id.insert(id, self.db.messages.len());
        }
        if let Some(first) = self.name_lines.get(&name) {
            self.diags.push(diag(
                Severity::Warning,
                line,
                column,
                format!("message name '{name}' (line {line}) is also used at line {first}"),
            ));
        } else {
            self.name_lines.insert(name.clone(), line);
        }
        let senders = sender.into_iter().filter(|s| s != NO_NODE).collect();
        self.mux_markers.push(markers);
        self.db.messages.push(Message {
            id,
            name,
            length,
            senders,
            signals,
            frame_format: if id.is_extended() {
                FrameFormat::Extended
            } else {
                FrameFormat::Standard
            },
            cycle_time_ms: None,
            comment: None,
            attributes: BTreeMap::new(),
            line,
        });
    }

    fn signal(
        &mut self,
        message: &str,
        d: SignalDef,
        markers: &mut Vec<Option<String>>,
    ) -> Option<Signal> {
        let length = match u16::try_from(d.length) {
            Ok(l @ 1..=64) => l,
            _ => {
                self.diags.push(diag(
                    Severity::Error,
                    d.line,
                    d.column,
                    format!("signal '{}' of message '{message}' has length {}, not 1..=64; signal dropped", d.name, d.length),
                ));
                self.dropped_signals.insert((self.db.messages.len(), d.name));
                return None;
            }
        };
        let Ok(start_bit) = u16::try_from(d.start) else {
            self.diags.push(diag(
                Severity::Error,
                d.line,
                d.column,
                format!(
                    "signal '{}' of message '{message}' has start bit {}; signal dropped",
                    d.name, d.start
                ),
            ));
            self.dropped_signals.insert((self.db.messages.len(), d.name));
            return None;
        };
        markers.push(d.mux);
        Some(Signal {
            name: d.name,
            start_bit,
            length,
            byte_order: if d.little_endian {
                ByteOrder::LittleEndian
            } else {
                ByteOrder::BigEndian
            },
            value_type: if d.signed { ValueType::Signed } else { ValueType::Unsigned },
            factor: d.factor,
            offset: d.offset,
            minimum: d.minimum,
            maximum: d.maximum,
            unit: d.unit,
            receivers: d.receivers.into_iter().filter(|r| r != NO_NODE).collect(),
            multiplexing: Multiplexing::default(),
            value_table: Vec::new(),
            comment: None,
            initial_raw: None,
            attributes: BTreeMap::new(),
            line: d.line,
        })
    }

    fn attr_default(&mut self, line: u32, column: u32, name: &str, raw: &RawValue) {
        let value = self.value(line, column, name, raw);
        match (self.db.attribute_defs.get_mut(name), value) {
            (Some(def), Some(v)) => def.default = Some(v),
            (None, _) => self.diags.push(diag(
                Severity::Warning,
                line,
                column,
                format!("default for undefined attribute '{name}' ignored"),
            )),
            (Some(_), None) => {}
        }
    }

    /// Types a written value by its definition (ENUM values stay indices or labels as written).
    fn value(
        &mut self,
        line: u32,
        column: u32,
        name: &str,
        raw: &RawValue,
    ) -> Option<AttributeValue> {
        let text = match raw {
            RawValue::Str(s) => return Some(AttributeValue::String(s.clone())),
            RawValue::Number(t) => t,
        };
        let kind = self.db.attribute_defs.get(name).map(|d| &d.kind);
        let v = match kind {
            Some(AttributeType::String) => Some(AttributeValue::String(text.clone())),
            Some(AttributeType::Float { .. }) => parse_f64(text).map(AttributeValue::Float),
            _ => parse_i64(text)
                .map(AttributeValue::Int)
                .or_else(|| parse_f64(text).map(AttributeValue::Float)),
        };
        if v.is_none() {
            self.diags.push(diag(
                Severity::Error,
                line,
                column,
                format!("value '{text}' of attribute '{name}' is not a number; ignored"),
            ));
        }
        v
    }

    fn find_message(&mut self, line: u32, column: u32, dbc_id: u64, what: &str) -> Option<usize> {
        if self.dropped_ids.contains(&dbc_id) {
            return None;
        }
        let idx = normalize_id(dbc_id).and_then(|id| self.by_id.get(&id).copied());
        if idx.is_none() {
            self.diags.push(diag(
                Severity::Warning,
                line,
                column,
                format!("{what} for unknown message id {dbc_id}; ignored"),
            ));
        }
        idx
    }

    /// The message index and the signals named `name` in it (several when a file repeats a name:
    /// references apply to all of them, as in cantools).
    fn find_signal(
        &mut self,
        line: u32,
        column: u32,
        dbc_id: u64,
        name: &str,
        what: &str,
    ) -> Option<(usize, Vec<usize>)> {
        let m = self.find_message(line, column, dbc_id, what)?;
        let msg = self.db.messages.get(m)?;
        let found: Vec<usize> = msg
            .signals
            .iter()
            .enumerate()
            .filter(|(_, s)| s.name == name)
            .map(|(i, _)| i)
            .collect();
        if found.is_empty() {
            if self.dropped_signals.contains(&(m, name.to_string())) {
                return None;
            }
            let message =
                format!("{what} for unknown signal '{name}' of message '{}'; ignored", msg.name);
            self.diags.push(diag(Severity::Warning, line, column, message));
            return None;
        }
        Some((m, found))
    }

    fn signals_mut<'s>(
        &'s mut self,
        at: &'s (usize, Vec<usize>),
    ) -> impl Iterator<Item = &'s mut Signal> + 's {
        let idx = &at.1;
        self.db
            .messages
            .get_mut(at.0)
            .into_iter()
            .flat_map(|m| m.signals.iter_mut().enumerate())
            .filter(move |(i, _)| idx.contains(i))
            .map(|(_, s)| s)
    }

    fn reference(&mut self, s: Statement) {
        let (line, column) = (s.line, s.column);
        match s.stmt {
            Stmt::Transmitters { id, nodes } => {
                let Some(m) = self.find_message(line, column, id, "BO_TX_BU_") else { return };
                if let Some(msg) = self.db.messages.get_mut(m) {
                    for n in nodes {
                        if n != NO_NODE && !msg.senders.contains(&n) {
                            msg.senders.push(n);
                        }
                    }
                }
            }
            Stmt::Comment { target, text } => self.comment(line, column, target, text),
            Stmt::Attr { name, target, value } => {
                if !self.db.attribute_defs.contains_key(&name) {
                    self.diags.push(diag(
                        Severity::Warning,
                        line,
                        column,
                        format!("attribute '{name}' has no definition (BA_DEF_); kept as written"),
                    ));
                }
                let Some(v) = self.value(line, column, &name, &value) else { return };
                match target {
                    Target::Database => {
                        self.db.attributes.insert(name, v);
                    }
                    Target::Node(n) => match self.db.nodes.iter_mut().find(|x| x.name == n) {
                        Some(node) => {
                            node.attributes.insert(name, v);
                        }
                        None => self.diags.push(diag(
                            Severity::Warning,
                            line,
                            column,
                            format!("attribute '{name}' for unknown node '{n}'; ignored"),
                        )),
                    },
                    Target::Message(id) => {
                        let what = format!("attribute '{name}'");
                        if let Some(m) = self.find_message(line, column, id, &what) {
                            if let Some(msg) = self.db.messages.get_mut(m) {
                                msg.attributes.insert(name, v);
                            }
                        }
                    }
                    Target::Signal(id, sig) => {
                        let what = format!("attribute '{name}'");
                        if let Some(at) = self.find_signal(line, column, id, &sig, &what) {
                            for signal in self.signals_mut(&at) {
                                signal.attributes.insert(name.clone(), v.clone());
                            }
                        }
                    }
                    Target::EnvVar(_) => {}
                }
            }
            Stmt::ValueDescriptions { target: Target::Signal(id, sig), entries } => {
                let Some(at) = self.find_signal(line, column, id, &sig, "VAL_") else { return };
                let mut table: ValueTable = Vec::with_capacity(entries.len());
                for (v, label) in entries {
                    // Like cantools: a repeated value keeps its first place and its last label.
                    match table.iter_mut().find(|(k, _)| *k == v) {
                        Some(slot) => slot.1 = label,
                        None => table.push((v, label)),
                    }
                }
                for signal in self.signals_mut(&at) {
                    signal.value_table.clone_from(&table);
                }
            }
            Stmt::SigValType { id, signal, kind } => {
                let Some(at) = self.find_signal(line, column, id, &signal, "SIG_VALTYPE_") else {
                    return;
                };
                let (want, ty) = match kind {
                    0 => return,
                    1 => (32, ValueType::Float32),
                    2 => (64, ValueType::Float64),
                    _ => {
                        let message = format!(
                            "SIG_VALTYPE_ {kind} of signal '{signal}' is not 0, 1 or 2; ignored"
                        );
                        self.diags.push(diag(Severity::Warning, line, column, message));
                        return;
                    }
                };
                let mut bad = Vec::new();
                for sig in self.signals_mut(&at) {
                    if sig.length == want {
                        sig.value_type = ty;
                    } else {
                        bad.push(sig.length);
                    }
                }
                for len in bad {
                    let message = format!(
                        "signal '{signal}' is declared float{want} (SIG_VALTYPE_ {kind}) but has {len} bits; kept as an integer"
                    );
                    self.diags.push(diag(Severity::Warning, line, column, message));
                }
            }
            Stmt::MuxValues { id, signal, switch, ranges } => {
                let Some(at) = self.find_signal(line, column, id, &signal, "SG_MUL_VAL_") else {
                    return;
                };
                let switch_known = self
                    .db
                    .messages
                    .get(at.0)
                    .is_some_and(|m| m.signals.iter().any(|s| s.name == switch));
                if !switch_known {
                    let message = format!("SG_MUL_VAL_ of signal '{signal}' names unknown multiplexor '{switch}'; ignored");
                    self.diags.push(diag(Severity::Warning, line, column, message));
                    return;
                }
                let entry = self
                    .mux_values
                    .entry((at.0, signal))
                    .or_insert_with(|| (switch.clone(), Vec::new()));
                if entry.0 == switch {
                    entry.1.extend(ranges);
                } else {
                    *entry = (switch, ranges);
                }
            }
            _ => {}
        }
    }

    fn comment(&mut self, line: u32, column: u32, target: Target, text: String) {
        match target {
            Target::Database => match &mut self.db.comment {
                // CANdb++ concatenates several database comments; so does cantools.
                Some(c) => c.push_str(&text),
                None => self.db.comment = Some(text),
            },
            Target::Node(n) => match self.db.nodes.iter_mut().find(|x| x.name == n) {
                Some(node) => node.comment = Some(text),
                None => self.diags.push(diag(
                    Severity::Warning,
                    line,
                    column,
                    format!("comment for unknown node '{n}'; ignored"),
                )),
            },
            Target::Message(id) => {
                if let Some(m) = self.find_message(line, column, id, "comment") {
                    if let Some(msg) = self.db.messages.get_mut(m) {
                        msg.comment = Some(text);
                    }
                }
            }
            Target::Signal(id, sig) => {
                if let Some(at) = self.find_signal(line, column, id, &sig, "comment") {
                    for signal in self.signals_mut(&at) {
                        signal.comment = Some(text.clone());
                    }
                }
            }
            Target::EnvVar(_) => {}
        }
    }

    fn finish(mut self) -> Database {
        super::derive::multiplexing(
            &mut self.db,
            &self.mux_markers,
            &self.mux_values,
            &mut self.diags,
        );
        super::derive::message_attributes(&mut self.db, &mut self.diags);
        super::derive::long_names(&mut self.db);
        for m in &self.db.messages {
            layout::check(m, &mut self.diags);
        }
        self.diags.sort_by_key(|d| (d.line, d.column));
        self.db.warnings = self.diags;
        self.db
    }
}
