//! The DBC grammar, one method per statement kind (Vector's DBC format description, plus the
//! deviations real files make).

use super::lexer::Kind;
use super::model::{AttributeObject, AttributeType, ValueTable};
use super::parser::{clamp_i64, is_keyword, PResult, Parser};
use super::statement::{RawValue, SignalDef, Stmt, Target};

impl Parser<'_, '_> {
    pub(super) fn statement(&mut self) -> PResult<Stmt> {
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
    pub(super) fn skip_new_symbols(&mut self) {
        self.eat_punct(':');
        while let Some(t) = self.peek() {
            let next_is_colon = self.peek_at(1).is_some_and(|n| n.is_punct(':'));
            if t.bol && (next_is_colon || ["BS_", "BU_", "BO_", "VERSION"].contains(&t.text)) {
                return;
            }
            self.pos += 1;
        }
    }

    pub(super) fn nodes(&mut self) -> PResult<Stmt> {
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

    pub(super) fn message(&mut self) -> PResult<Stmt> {
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

    pub(super) fn signal(&mut self) -> PResult<SignalDef> {
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

    pub(super) fn transmitters(&mut self) -> PResult<Stmt> {
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

    pub(super) fn comment(&mut self) -> PResult<Stmt> {
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

    pub(super) fn attr_def(&mut self, relation: bool) -> PResult<Stmt> {
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
    pub(super) fn bounds(&mut self) -> PResult<(f64, f64)> {
        if self.peek().is_some_and(|t| t.is_punct(';')) || self.at_statement_start() {
            return Ok((0.0, 0.0));
        }
        Ok((self.float("attribute minimum")?, self.float("attribute maximum")?))
    }

    pub(super) fn raw_value(&mut self) -> PResult<RawValue> {
        if self.peek().is_some_and(|t| t.kind == Kind::Str) {
            return Ok(RawValue::Str(self.string("attribute value")?));
        }
        let text = self.number_text("attribute value (number or string)")?;
        Ok(RawValue::Number(text))
    }

    pub(super) fn attr(&mut self) -> PResult<Stmt> {
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

    pub(super) fn value_entries(&mut self) -> PResult<ValueTable> {
        let mut entries = Vec::new();
        while !self.peek().is_some_and(|t| t.is_punct(';')) && !self.at_statement_start() {
            let v = self.int("value (integer)")?;
            let label = self.string("value description string")?;
            entries.push((v, label));
        }
        Ok(entries)
    }

    pub(super) fn value_descriptions(&mut self) -> PResult<Stmt> {
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

    pub(super) fn mux_values(&mut self) -> PResult<Stmt> {
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
