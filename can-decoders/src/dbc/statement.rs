//! Statements as parsed, before they are resolved into the model.

use super::model::{AttributeObject, AttributeType, ValueTable};

/// An attribute value as written: numbers keep their text until the definition says what they are.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    Number(String),
    Str(String),
}

/// What a `CM_`, `BA_` or `VAL_` refers to. Message ids are the DBC ids as written.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Database,
    Node(String),
    Message(u64),
    Signal(u64, String),
    EnvVar(String),
}

/// One `SG_` line as written.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalDef {
    pub name: String,
    /// `M`, `mN` or `mNM`, when present.
    pub mux: Option<String>,
    pub start: u64,
    pub length: u64,
    pub little_endian: bool,
    pub signed: bool,
    pub factor: f64,
    pub offset: f64,
    pub minimum: f64,
    pub maximum: f64,
    pub unit: String,
    pub receivers: Vec<String>,
    pub line: u32,
    pub column: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Stmt {
    Version(String),
    Nodes(Vec<String>),
    ValueTable {
        name: String,
        entries: ValueTable,
    },
    Message {
        id: u64,
        name: String,
        length: u64,
        sender: Option<String>,
        signals: Vec<SignalDef>,
    },
    Transmitters {
        id: u64,
        nodes: Vec<String>,
    },
    Comment {
        target: Target,
        text: String,
    },
    AttrDef {
        object: AttributeObject,
        name: String,
        kind: AttributeType,
    },
    AttrDefault {
        name: String,
        value: RawValue,
    },
    Attr {
        name: String,
        target: Target,
        value: RawValue,
    },
    ValueDescriptions {
        target: Target,
        entries: ValueTable,
    },
    SigValType {
        id: u64,
        signal: String,
        kind: u64,
    },
    MuxValues {
        id: u64,
        signal: String,
        switch: String,
        ranges: Vec<(u64, u64)>,
    },
    /// Parsed or skipped without effect on the model (`EV_`, `SIG_GROUP_`, `BA_REL_`, ...).
    Skipped,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub line: u32,
    pub column: u32,
    pub stmt: Stmt,
}
