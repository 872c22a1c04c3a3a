//! What a DBC file describes, after loading: plain data, no parsing state. The decoder compiles
//! this into per-message plans (see `decode`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::frame::CanId;

/// One loaded DBC file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Database {
    /// Where it was loaded from (for messages); `None` when parsed from a string.
    pub source: Option<PathBuf>,
    pub version: String,
    pub nodes: Vec<Node>,
    pub messages: Vec<Message>,
    /// Named value tables (`VAL_TABLE_`), by name.
    pub value_tables: BTreeMap<String, ValueTable>,
    /// Attribute definitions (`BA_DEF_`, `BA_DEF_DEF_`), by attribute name.
    pub attribute_defs: BTreeMap<String, AttributeDef>,
    /// Database-level attribute values (`BA_ "Name" value;`).
    pub attributes: BTreeMap<String, AttributeValue>,
    /// Database comment (`CM_ "..." ;`).
    pub comment: Option<String>,
    /// What the loader accepted but had to interpret or ignore, one per finding.
    pub warnings: Vec<Diagnostic>,
}

/// An ECU (`BU_`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Node {
    pub name: String,
    pub comment: Option<String>,
    pub attributes: BTreeMap<String, AttributeValue>,
}

/// How the message goes on the wire (`VFrameFormat` attribute, or the id's extended bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FrameFormat {
    #[default]
    Standard,
    Extended,
    J1939,
    FdStandard,
    FdExtended,
}

impl FrameFormat {
    pub fn is_fd(self) -> bool {
        matches!(self, FrameFormat::FdStandard | FrameFormat::FdExtended)
    }
}

/// A message (`BO_`).
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: CanId,
    pub name: String,
    /// Declared length in bytes (0..=64).
    pub length: u8,
    /// Transmitters: the `BO_` sender plus any `BO_TX_BU_`; `Vector__XXX` is left out.
    pub senders: Vec<String>,
    pub signals: Vec<Signal>,
    pub frame_format: FrameFormat,
    /// `GenMsgCycleTime`, when set for the message or by default.
    pub cycle_time_ms: Option<u32>,
    pub comment: Option<String>,
    /// Message attribute values (`BA_ "X" BO_ id value;`), by attribute name.
    pub attributes: BTreeMap<String, AttributeValue>,
    /// 1-based line of the `BO_` in its file, for messages about it.
    pub line: u32,
}

/// Bit numbering of a signal (`@1` Intel/little endian, `@0` Motorola/big endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteOrder {
    LittleEndian,
    BigEndian,
}

/// How the raw bits are interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    Unsigned,
    /// Two's complement over `length` bits.
    Signed,
    /// IEEE 754 single (`SIG_VALTYPE_ ... : 1`); length is 32.
    Float32,
    /// IEEE 754 double (`SIG_VALTYPE_ ... : 2`); length is 64.
    Float64,
}

/// The multiplexing role of a signal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Multiplexing {
    /// This signal selects which multiplexed signals are present (`M`, or the `M` of `mNM`).
    pub is_multiplexor: bool,
    /// When set, the signal is present only when `switch` holds one of `values`.
    pub multiplexed_by: Option<MuxCondition>,
}

/// "Present when signal `switch` has a raw value in one of these inclusive ranges."
#[derive(Debug, Clone, PartialEq)]
pub struct MuxCondition {
    /// Name of the multiplexor signal, in the same message.
    pub switch: String,
    /// Inclusive ranges of raw switch values. A simple `mN` is `[(N, N)]`; `SG_MUL_VAL_` may give several.
    pub values: Vec<(u64, u64)>,
}

/// A signal (`SG_`).
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    pub name: String,
    /// Start bit exactly as written in the DBC (for Motorola: the most significant bit, in the
    /// sawtooth numbering).
    pub start_bit: u16,
    /// Length in bits (1..=64).
    pub length: u16,
    pub byte_order: ByteOrder,
    pub value_type: ValueType,
    pub factor: f64,
    pub offset: f64,
    pub minimum: f64,
    pub maximum: f64,
    pub unit: String,
    pub receivers: Vec<String>,
    pub multiplexing: Multiplexing,
    /// Value descriptions (`VAL_`, or the `VAL_TABLE_` a signal refers to): raw value to label.
    pub value_table: ValueTable,
    pub comment: Option<String>,
    /// `GenSigStartValue` as a raw value, when set.
    pub initial_raw: Option<f64>,
    /// Signal attribute values, by attribute name.
    pub attributes: BTreeMap<String, AttributeValue>,
    /// 1-based line of the `SG_` in its file.
    pub line: u32,
}

/// Raw value to label, in file order.
pub type ValueTable = Vec<(i64, String)>;

/// Which object an attribute definition applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeObject {
    Database,
    Node,
    Message,
    Signal,
    EnvironmentVariable,
    /// `BA_DEF_REL_` relations (node-message, node-signal, ...).
    Relation,
}

/// The type of an attribute (`BA_DEF_`).
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeType {
    Int { min: i64, max: i64 },
    Hex { min: i64, max: i64 },
    Float { min: f64, max: f64 },
    String,
    Enum(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct AttributeDef {
    pub name: String,
    pub object: AttributeObject,
    pub kind: AttributeType,
    /// `BA_DEF_DEF_`, when given.
    pub default: Option<AttributeValue>,
}

/// An attribute value as written; enum values keep the index and resolve to the label through the
/// definition.
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeValue {
    Int(i64),
    Float(f64),
    String(String),
}

impl AttributeValue {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            AttributeValue::Int(i) => Some(*i as f64),
            AttributeValue::Float(f) => Some(*f),
            AttributeValue::String(_) => None,
        }
    }
}

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Accepted; the loader interpreted or ignored something.
    Warning,
    /// Rejected: the statement could not be used (reported as an error in strict mode).
    Error,
}

/// A located finding in a DBC file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// 1-based line and column.
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sev = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{}:{}: {}: {}", self.line, self.column, sev, self.message)
    }
}

impl Database {
    /// The message with exactly this id.
    pub fn message_by_id(&self, id: CanId) -> Option<&Message> {
        self.messages.iter().find(|m| m.id == id)
    }

    pub fn message_by_name(&self, name: &str) -> Option<&Message> {
        self.messages.iter().find(|m| m.name == name)
    }
}

impl Message {
    pub fn signal(&self, name: &str) -> Option<&Signal> {
        self.signals.iter().find(|s| s.name == name)
    }

    /// Whether this message is J1939 (by `VFrameFormat` or `ProtocolType`), and so matches frames by PGN.
    pub fn is_j1939(&self) -> bool {
        self.frame_format == FrameFormat::J1939
    }
}
