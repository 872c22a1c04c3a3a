//! DBC grammar: tokens to statements. Each statement is parsed on its own; a statement that does
//! not parse becomes an Error diagnostic and parsing resumes at the next statement keyword that
//! starts a line.

use super::lexer::{Kind, Token};
use super::model::{AttributeObject, AttributeType, Diagnostic, Severity, ValueTable};
pub use super::number::{clamp_i64, parse_f64, parse_i64};

/// Statement keywords that may start a top-level statement (`SG_` only inside a `BO_`).
const KEYWORDS: &[&str] = &[
    "VERSION",
    "NS_",
    "BS_",
    "BU_",
    "BO_",
    "BO_TX_BU_",
    "CM_",
    "BA_DEF_",
    "BA_DEF_DEF_",
    "BA_DEF_REL_",
    "BA_DEF_DEF_REL_",
    "BA_",
    "BA_REL_",
    "VAL_TABLE_",
    "VAL_",
    "SIG_VALTYPE_",
    "SG_MUL_VAL_",
    "EV_",
    "ENVVAR_DATA_",
    "EV_DATA_",
    "SGTYPE_",
    "SGTYPE_VAL_",
    "SIG_GROUP_",
    "SIG_TYPE_REF_",
    "SIGTYPE_VALTYPE_",
    "CAT_DEF_",
    "CAT_",
    "FILTER",
    "BU_SG_REL_",
    "BU_EV_REL_",
    "BU_BO_REL_",
    "BA_DEF_SGTYPE_",
    "BA_SGTYPE_",
    "NS_DESC_",
];

pub fn is_keyword(word: &str) -> bool {
    KEYWORDS.contains(&word)
}

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

type PResult<T> = Result<T, Diagnostic>;

pub struct Parser<'t, 'a> {
    toks: &'t [Token<'a>],
    pos: usize,
    pub diags: Vec<Diagnostic>,
}

impl<'t, 'a> Parser<'t, 'a> {
    pub fn new(toks: &'t [Token<'a>]) -> Self {
        Parser { toks, pos: 0, diags: Vec::new() }
    }

    fn peek(&self) -> Option<&'t Token<'a>> {
        self.toks.get(self.pos)
    }

    fn peek_at(&self, n: usize) -> Option<&'t Token<'a>> {
        self.toks.get(self.pos.saturating_add(n))
    }

    fn bump(&mut self) -> Option<&'t Token<'a>> {
        let t = self.toks.get(self.pos);
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    /// Where the next token is (or the end of the last token at end of input).
    fn here(&self) -> (u32, u32) {
        match self.peek().or_else(|| self.toks.last()) {
            Some(t) if self.peek().is_some() => (t.line, t.column),
            Some(t) => {
                let len = u32::try_from(t.text.chars().count()).unwrap_or(0);
                let extra = if t.kind == Kind::Str { 2 } else { 0 };
                (t.line, t.column.saturating_add(len).saturating_add(extra))
            }
            None => (1, 1),
        }
    }

    /// Just past the last consumed token: where a missing `;` belongs.
    fn end_of_previous(&self) -> (u32, u32) {
        let Some(t) = self.pos.checked_sub(1).and_then(|i| self.toks.get(i)) else {
            return self.here();
        };
        let quotes = if t.kind == Kind::Str { 2 } else { 0 };
        let count = |s: &str| u32::try_from(s.chars().count()).unwrap_or(u32::MAX);
        match t.text.rsplit_once('\n') {
            Some((before, last)) => {
                let lines = u32::try_from(before.matches('\n').count()).unwrap_or(0);
                (t.line.saturating_add(lines).saturating_add(1), count(last).saturating_add(2))
            }
            None => (t.line, t.column.saturating_add(count(t.text)).saturating_add(quotes)),
        }
    }

    fn found(&self) -> String {
        self.peek().map_or_else(|| "end of file".to_string(), Token::describe)
    }

    /// "expected X, found Y" at the next token.
    pub fn expected(&self, what: &str) -> Diagnostic {
        let (line, column) = self.here();
        Diagnostic {
            severity: Severity::Error,
            line,
            column,
            message: format!("expected {what}, found {}", self.found()),
        }
    }

    fn warn_at(&mut self, line: u32, column: u32, message: String) {
        self.diags.push(Diagnostic { severity: Severity::Warning, line, column, message });
    }

    /// The next token starts a new statement (or there is none): list-like parts end here.
    fn at_statement_start(&self) -> bool {
        self.peek().is_none_or(|t| t.bol && t.kind == Kind::Word && is_keyword(t.text))
    }

    fn punct(&mut self, c: char, what: &str) -> PResult<()> {
        match self.peek() {
            Some(t) if t.is_punct(c) => {
                self.pos += 1;
                Ok(())
            }
            _ => Err(self.expected(what)),
        }
    }

    fn eat_punct(&mut self, c: char) -> bool {
        let yes = self.peek().is_some_and(|t| t.is_punct(c));
        if yes {
            self.pos += 1;
        }
        yes
    }

    fn eat_word(&mut self, w: &str) -> bool {
        let yes = self.peek().is_some_and(|t| t.is_word(w));
        if yes {
            self.pos += 1;
        }
        yes
    }

    /// A name: a word that is not a number with a fraction.
    fn name(&mut self, what: &str) -> PResult<String> {
        match self.peek() {
            Some(t) if t.kind == Kind::Word && !t.text.contains('.') => {
                self.pos += 1;
                Ok(t.text.to_string())
            }
            _ => Err(self.expected(what)),
        }
    }

    fn string(&mut self, what: &str) -> PResult<String> {
        match self.peek() {
            Some(t) if t.kind == Kind::Str => {
                self.pos += 1;
                Ok(t.string_value())
            }
            _ => Err(self.expected(what)),
        }
    }

    /// An unsigned integer, decimal or `0x` hex.
    fn uint(&mut self, what: &str) -> PResult<u64> {
        let t = self.peek().filter(|t| t.kind == Kind::Word).ok_or_else(|| self.expected(what))?;
        let parsed = match t.text.strip_prefix("0x").or_else(|| t.text.strip_prefix("0X")) {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => t.text.parse::<u64>(),
        };
        match parsed {
            Ok(v) => {
                self.pos += 1;
                Ok(v)
            }
            Err(_) if t.text.bytes().all(|b| b.is_ascii_digit()) => {
                let mut d = self.expected(what);
                d.message = format!("{what} {} is too large", t.text);
                Err(d)
            }
            Err(_) => Err(self.expected(what)),
        }
    }

    /// Optional sign, then a number word; returns the text with the sign.
    fn number_text(&mut self, what: &str) -> PResult<String> {
        let save = self.pos;
        let mut text = String::new();
        if let Some(t) = self.peek().filter(|t| t.is_punct('-') || t.is_punct('+')) {
            text.push_str(t.text);
            self.pos += 1;
        }
        match self.peek() {
            Some(t)
                if t.kind == Kind::Word
                    && t.text.starts_with(|c: char| c.is_ascii_digit() || c == '.') =>
            {
                self.pos += 1;
                text.push_str(t.text);
                Ok(text)
            }
            _ => {
                self.pos = save;
                Err(self.expected(what))
            }
        }
    }

    fn float(&mut self, what: &str) -> PResult<f64> {
        let start = self.pos;
        let text = self.number_text(what)?;
        parse_f64(&text).ok_or_else(|| {
            self.pos = start;
            self.expected(what)
        })
    }

    fn int(&mut self, what: &str) -> PResult<i64> {
        let start = self.pos;
        let text = self.number_text(what)?;
        parse_i64(&text).ok_or_else(|| {
            self.pos = start;
            self.expected(what)
        })
    }

    /// `;`, tolerating its absence before the next statement (`CM_` without `;` is common).
    fn end(&mut self, after: &str) -> PResult<()> {
        if self.eat_punct(';') {
            return Ok(());
        }
        if self.at_statement_start() {
            let (line, column) = self.end_of_previous();
            self.warn_at(line, column, format!("missing ';' after {after}"));
            return Ok(());
        }
        Err(self.expected(&format!("';' after {after}")))
    }

    /// Skips to the next statement keyword at the start of a line, past at least one token of the
    /// failed statement (which started at `start`).
    fn recover(&mut self, start: usize) {
        if self.pos <= start {
            self.pos = start.saturating_add(1);
        }
        while let Some(t) = self.peek() {
            if t.bol && t.kind == Kind::Word && is_keyword(t.text) && t.text != "SG_" {
                break;
            }
            self.pos += 1;
        }
    }

    /// Skips a statement we do not model, up to and including its `;`.
    fn skip_to_semicolon(&mut self) {
        while let Some(t) = self.peek() {
            if t.is_punct(';') {
                self.pos += 1;
                return;
            }
            if self.pos > 0 && self.at_statement_start() {
                return;
            }
            self.pos += 1;
        }
    }

    /// All statements; bad ones are reported in `diags` and left out.
    pub fn parse_all(&mut self) -> Vec<Statement> {
        let mut out = Vec::new();
        while let Some(t) = self.peek() {
            let (line, column) = (t.line, t.column);
            let start = self.pos;
            match self.statement() {
                Ok(stmt) => out.push(Statement { line, column, stmt }),
                Err(d) => {
                    self.diags.push(d);
                    self.recover(start);
                }
            }
        }
        out
    }

    fn statement(&mut self) -> PResult<Stmt> {
        let t = self.peek().ok_or_else(|| self.expected("a statement"))?;
        if t.kind != Kind::Word || !is_keyword(t.text) || t.text == "NS_DESC_" {
            return Err(self.expected("a statement keyword (BO_, SG_, CM_, BA_, VAL_, ...)"));
        }
        self.pos += 1;
        match t.text {
            "VERSION" => {
                let v = self.string("version string after VERSION")?;
                Ok(Stmt::Version(v))
            }
            "NS_" => {
                self.skip_new_symbols();
                Ok(Stmt::Skipped)
            }
            "BS_" => {
                while !self.at_statement_start() {
                    self.pos += 1;
                }
                Ok(Stmt::Skipped)
            }
            "BU_" => self.nodes(),
            "BO_" => self.message(),
            "BO_TX_BU_" => self.transmitters(),
            "CM_" => self.comment(),
            "BA_DEF_" => self.attr_def(false),
            "BA_DEF_REL_" => self.attr_def(true),
            "BA_DEF_DEF_" | "BA_DEF_DEF_REL_" => {
                let name = self.string("attribute name")?;
                let value = self.raw_value()?;
                self.end("attribute default")?;
                Ok(Stmt::AttrDefault { name, value })
            }
            "BA_" => self.attr(),
            "VAL_TABLE_" => {
                let name = self.name("value table name")?;
                let entries = self.value_entries()?;
                self.end("value table")?;
                Ok(Stmt::ValueTable { name, entries })
            }
            "VAL_" => self.value_descriptions(),
            "SIG_VALTYPE_" => {
                let id = self.uint("message id")?;
                let signal = self.name("signal name")?;
                self.eat_punct(':');
                let kind = self.uint("signal value type (0, 1 or 2)")?;
                self.end("SIG_VALTYPE_")?;
                Ok(Stmt::SigValType { id, signal, kind })
            }
            "SG_MUL_VAL_" => self.mux_values(),
            "SG_" => Err({
                let mut d = self.expected("");
                d.line = t.line;
                d.column = t.column;
                d.message = "SG_ outside a message (no BO_ before it)".to_string();
                d
            }),
            _ => {
                self.skip_to_semicolon();
                Ok(Stmt::Skipped)
            }
        }
    }

    /// `NS_ :` lists keywords; it ends where the next `X :` or `BS_`/`BU_`/`BO_` line starts.
    fn skip_new_symbols(&mut self) {
        self.eat_punct(':');
        while let Some(t) = self.peek() {
            let next_is_colon = self.peek_at(1).is_some_and(|n| n.is_punct(':'));
            if t.bol && (next_is_colon || ["BS_", "BU_", "BO_", "VERSION"].contains(&t.text)) {
                return;
            }
            self.pos += 1;
        }
    }

    fn nodes(&mut self) -> PResult<Stmt> {
        self.punct(':', "':' after BU_")?;
        let mut nodes = Vec::new();
        // The node list ends at the line's end unless the next line is indented.
        while !self.at_statement_start() && !self.peek().is_some_and(|t| t.bol && t.column == 1) {
            if self.eat_punct(',') {
                continue;
            }
            nodes.push(self.name("node name")?);
        }
        Ok(Stmt::Nodes(nodes))
    }

    fn message(&mut self) -> PResult<Stmt> {
        let id = self.uint("message id after BO_")?;
        let name = self.name("message name")?;
        self.punct(':', "':' after message name")?;
        let length = self.uint("message length")?;
        let sender = if self.at_statement_start() || self.peek().is_some_and(|t| t.bol) {
            None
        } else {
            Some(self.name("message sender")?)
        };
        let mut signals = Vec::new();
        while self.peek().is_some_and(|t| t.is_word("SG_")) {
            let start = self.pos;
            match self.signal() {
                Ok(s) => signals.push(s),
                Err(d) => {
                    // A bad signal drops only itself: skip to the next line.
                    self.diags.push(d);
                    self.pos = self.pos.max(start + 1);
                    while self.peek().is_some_and(|t| !t.bol) {
                        self.pos += 1;
                    }
                }
            }
        }
        Ok(Stmt::Message { id, name, length, sender, signals })
    }

    fn signal(&mut self) -> PResult<SignalDef> {
        let (line, column) = self.here();
        self.bump();
        let name = self.name("signal name after SG_")?;
        let mux = match self.peek() {
            Some(t) if t.is_word("m") => {
                // Seen in opendbc (vw_pq): a bare `m` where `M` (the multiplexor) is meant.
                self.warn_at(
                    t.line,
                    t.column,
                    format!("multiplexer indicator 'm' of signal '{name}' read as 'M'"),
                );
                self.pos += 1;
                Some("M".to_string())
            }
            Some(t) if t.kind == Kind::Word => {
                if !is_mux_marker(t.text) {
                    return Err(self.expected("multiplexer indicator (M, mN or mNM) or ':'"));
                }
                self.pos += 1;
                Some(t.text.to_string())
            }
            _ => None,
        };
        self.punct(':', "':' after signal name")?;
        let start = self.uint("start bit")?;
        self.punct('|', "'|' after start bit")?;
        let length = self.uint("signal length")?;
        self.punct('@', "'@' after signal length")?;
        let little_endian = if self.eat_word("1") {
            true
        } else if self.eat_word("0") {
            false
        } else {
            return Err(self.expected("byte order (0 or 1) after '@'"));
        };
        let signed = if self.eat_punct('-') {
            true
        } else if self.eat_punct('+') {
            false
        } else {
            return Err(self.expected("'+' or '-' after byte order"));
        };
        self.punct('(', "'(' before factor")?;
        let factor = self.float("factor")?;
        self.punct(',', "',' after factor")?;
        let offset = self.float("offset")?;
        self.punct(')', "')' after offset")?;
        self.punct('[', "'[' before minimum")?;
        let minimum = self.float("minimum")?;
        self.punct('|', "'|' after minimum")?;
        let maximum = self.float("maximum")?;
        self.punct(']', "']' after maximum")?;
        let unit = self.string("unit string")?;
        let mut receivers = Vec::new();
        while self.peek().is_some_and(|t| !t.bol) {
            if self.eat_punct(',') {
                continue;
            }
            receivers.push(self.name("receiver node name")?);
        }
        Ok(SignalDef {
            name,
            mux,
            start,
            length,
            little_endian,
            signed,
            factor,
            offset,
            minimum,
            maximum,
            unit,
            receivers,
            line,
            column,
        })
    }

    fn transmitters(&mut self) -> PResult<Stmt> {
        let id = self.uint("message id after BO_TX_BU_")?;
        self.punct(':', "':' after message id")?;
        let mut nodes = Vec::new();
        while !self.peek().is_some_and(|t| t.is_punct(';')) && !self.at_statement_start() {
            if self.eat_punct(',') {
                continue;
            }
            nodes.push(self.name("transmitter node name")?);
        }
        self.end("BO_TX_BU_")?;
        Ok(Stmt::Transmitters { id, nodes })
    }

    fn comment(&mut self) -> PResult<Stmt> {
        let target = if self.eat_word("BU_") {
            Target::Node(self.name("node name")?)
        } else if self.eat_word("BO_") {
            Target::Message(self.uint("message id")?)
        } else if self.eat_word("EV_") {
            Target::EnvVar(self.name("environment variable name")?)
        } else if self.eat_word("SG_") {
            let id = self.uint("message id")?;
            if self.peek().is_some_and(|t| t.kind == Kind::Str) {
                let (line, column) = self.here();
                self.bump();
                self.end("comment")?;
                self.warn_at(
                    line,
                    column,
                    format!("signal comment for message {id} has no signal name; ignored"),
                );
                return Ok(Stmt::Skipped);
            }
            Target::Signal(id, self.name("signal name")?)
        } else {
            Target::Database
        };
        let text = self.string("comment string")?;
        self.end("comment")?;
        Ok(Stmt::Comment { target, text })
    }

    fn attr_def(&mut self, relation: bool) -> PResult<Stmt> {
        let object = if relation {
            if self.eat_word("BU_SG_REL_")
                || self.eat_word("BU_BO_REL_")
                || self.eat_word("BU_EV_REL_")
            {
                AttributeObject::Relation
            } else {
                return Err(self.expected("relation kind (BU_SG_REL_, BU_BO_REL_, BU_EV_REL_)"));
            }
        } else if self.eat_word("BU_") {
            AttributeObject::Node
        } else if self.eat_word("BO_") {
            AttributeObject::Message
        } else if self.eat_word("SG_") {
            AttributeObject::Signal
        } else if self.eat_word("EV_") {
            AttributeObject::EnvironmentVariable
        } else {
            AttributeObject::Database
        };
        let name = self.string("attribute name")?;
        let ty = self.name("attribute type (INT, HEX, FLOAT, STRING, ENUM)")?;
        let kind = match ty.as_str() {
            "INT" | "HEX" => {
                let (min, max) = self.bounds()?;
                let (min, max) = (clamp_i64(min), clamp_i64(max));
                if ty == "INT" {
                    AttributeType::Int { min, max }
                } else {
                    AttributeType::Hex { min, max }
                }
            }
            "FLOAT" => {
                let (min, max) = self.bounds()?;
                AttributeType::Float { min, max }
            }
            "STRING" => AttributeType::String,
            "ENUM" => {
                let mut labels = Vec::new();
                while self.peek().is_some_and(|t| t.kind == Kind::Str) {
                    labels.push(self.string("enum label")?);
                    if !self.eat_punct(',') {
                        break;
                    }
                }
                AttributeType::Enum(labels)
            }
            _ => {
                self.pos -= 1;
                return Err(self.expected("attribute type (INT, HEX, FLOAT, STRING, ENUM)"));
            }
        };
        self.end("attribute definition")?;
        Ok(Stmt::AttrDef { object, name, kind })
    }

    /// `min max` of an INT/HEX/FLOAT definition; some tools leave both out (0 0 then).
    fn bounds(&mut self) -> PResult<(f64, f64)> {
        if self.peek().is_some_and(|t| t.is_punct(';')) || self.at_statement_start() {
            return Ok((0.0, 0.0));
        }
        Ok((self.float("attribute minimum")?, self.float("attribute maximum")?))
    }

    fn raw_value(&mut self) -> PResult<RawValue> {
        if self.peek().is_some_and(|t| t.kind == Kind::Str) {
            return Ok(RawValue::Str(self.string("attribute value")?));
        }
        let text = self.number_text("attribute value (number or string)")?;
        Ok(RawValue::Number(text))
    }

    fn attr(&mut self) -> PResult<Stmt> {
        let name = self.string("attribute name")?;
        let target = if self.eat_word("BU_") {
            Target::Node(self.name("node name")?)
        } else if self.eat_word("BO_") {
            Target::Message(self.uint("message id")?)
        } else if self.eat_word("SG_") {
            let id = self.uint("message id")?;
            Target::Signal(id, self.name("signal name")?)
        } else if self.eat_word("EV_") {
            Target::EnvVar(self.name("environment variable name")?)
        } else {
            Target::Database
        };
        let value = self.raw_value()?;
        self.end("attribute value")?;
        Ok(Stmt::Attr { name, target, value })
    }

    fn value_entries(&mut self) -> PResult<ValueTable> {
        let mut entries = Vec::new();
        while !self.peek().is_some_and(|t| t.is_punct(';')) && !self.at_statement_start() {
            let v = self.int("value (integer)")?;
            let label = self.string("value description string")?;
            entries.push((v, label));
        }
        Ok(entries)
    }

    fn value_descriptions(&mut self) -> PResult<Stmt> {
        let is_signal = self.peek().is_some_and(|t| t.text.bytes().all(|b| b.is_ascii_digit()))
            && self.peek_at(1).is_some_and(|t| t.kind == Kind::Word);
        let target = if is_signal {
            let id = self.uint("message id")?;
            Target::Signal(id, self.name("signal name")?)
        } else {
            Target::EnvVar(self.name("message id or environment variable name")?)
        };
        let entries = self.value_entries()?;
        self.end("value descriptions")?;
        Ok(Stmt::ValueDescriptions { target, entries })
    }

    fn mux_values(&mut self) -> PResult<Stmt> {
        let id = self.uint("message id")?;
        let signal = self.name("signal name")?;
        let switch = self.name("multiplexor signal name")?;
        let mut ranges = Vec::new();
        loop {
            let lo = self.uint("range start")?;
            self.punct('-', "'-' in value range")?;
            let hi = self.uint("range end")?;
            ranges.push((lo, hi));
            if !self.eat_punct(',') {
                break;
            }
        }
        self.end("SG_MUL_VAL_")?;
        Ok(Stmt::MuxValues { id, signal, switch, ranges })
    }
}

/// `M`, `m<digits>` or `m<digits>M`.
fn is_mux_marker(w: &str) -> bool {
    if w == "M" {
        return true;
    }
    let Some(rest) = w.strip_prefix('m') else { return false };
    let digits = rest.strip_suffix('M').unwrap_or(rest);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}
