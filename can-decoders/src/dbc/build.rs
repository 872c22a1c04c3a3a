//! Statements to model: nodes, messages and signals here; references between statements are
//! resolved in `resolve.rs` and derived fields (multiplexing, frame format, long names) in
//! `derive.rs`, following the conventions of cantools and CANdb++.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::layout;
use super::model::*;
use super::number::{parse_f64, parse_i64};
use super::statement::{RawValue, SignalDef, Statement, Stmt};
use crate::frame::{CanId, DBC_EXTENDED_FLAG};

/// The node name CANdb++ writes for "no node".
pub(super) const NO_NODE: &str = "Vector__XXX";
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

pub(super) struct Builder {
    pub(super) db: Database,
    pub(super) diags: Vec<Diagnostic>,
    /// First message with each id.
    pub(super) by_id: HashMap<CanId, usize>,
    /// Line of the first message with each name.
    pub(super) name_lines: HashMap<String, u32>,
    pub(super) node_names: HashSet<String>,
    /// DBC ids of dropped messages, whose references are silently ignored.
    pub(super) dropped_ids: Vec<u64>,
    /// Dropped signals by (message index, name): their references are silently ignored too.
    pub(super) dropped_signals: HashSet<(usize, String)>,
    /// Raw `mN`/`M` markers per message and signal, for multiplexing.
    pub(super) mux_markers: Vec<Vec<Option<String>>>,
    /// `SG_MUL_VAL_` per (message index, signal): switch and ranges.
    pub(super) mux_values: ExtendedMux,
}

pub(super) fn diag(severity: Severity, line: u32, column: u32, message: String) -> Diagnostic {
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
    pub(super) fn value(
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
