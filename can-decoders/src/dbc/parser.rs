//! Tokens to statements: the token cursor, its primitives (names, numbers, strings, `;`) and
//! error recovery. Each statement is parsed on its own (rules in `grammar.rs`); one that does not
//! parse becomes an Error diagnostic and parsing resumes at the next statement keyword that starts
//! a line.

use super::lexer::{Kind, Token};
use super::model::{Diagnostic, Severity};
pub(super) use super::number::clamp_i64;
use super::number::{parse_f64, parse_i64};
use super::statement::Statement;

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

pub(super) type PResult<T> = Result<T, Diagnostic>;

pub struct Parser<'t, 'a> {
    pub(super) toks: &'t [Token<'a>],
    pub(super) pos: usize,
    pub diags: Vec<Diagnostic>,
}

impl<'t, 'a> Parser<'t, 'a> {
    pub fn new(toks: &'t [Token<'a>]) -> Self {
        Parser { toks, pos: 0, diags: Vec::new() }
    }

    pub(super) fn peek(&self) -> Option<&'t Token<'a>> {
        self.toks.get(self.pos)
    }

    pub(super) fn peek_at(&self, n: usize) -> Option<&'t Token<'a>> {
        self.toks.get(self.pos.saturating_add(n))
    }

    pub(super) fn bump(&mut self) -> Option<&'t Token<'a>> {
        let t = self.toks.get(self.pos);
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    /// Where the next token is (or the end of the last token at end of input).
    pub(super) fn here(&self) -> (u32, u32) {
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
    pub(super) fn end_of_previous(&self) -> (u32, u32) {
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

    pub(super) fn found(&self) -> String {
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

    pub(super) fn warn_at(&mut self, line: u32, column: u32, message: String) {
        self.diags.push(Diagnostic { severity: Severity::Warning, line, column, message });
    }

    /// The next token starts a new statement (or there is none): list-like parts end here.
    pub(super) fn at_statement_start(&self) -> bool {
        self.peek().is_none_or(|t| t.bol && t.kind == Kind::Word && is_keyword(t.text))
    }

    pub(super) fn punct(&mut self, c: char, what: &str) -> PResult<()> {
        match self.peek() {
            Some(t) if t.is_punct(c) => {
                self.pos += 1;
                Ok(())
            }
            _ => Err(self.expected(what)),
        }
    }

    pub(super) fn eat_punct(&mut self, c: char) -> bool {
        let yes = self.peek().is_some_and(|t| t.is_punct(c));
        if yes {
            self.pos += 1;
        }
        yes
    }

    pub(super) fn eat_word(&mut self, w: &str) -> bool {
        let yes = self.peek().is_some_and(|t| t.is_word(w));
        if yes {
            self.pos += 1;
        }
        yes
    }

    /// A name: a word that is not a number with a fraction.
    pub(super) fn name(&mut self, what: &str) -> PResult<String> {
        match self.peek() {
            Some(t) if t.kind == Kind::Word && !t.text.contains('.') => {
                self.pos += 1;
                Ok(t.text.to_string())
            }
            _ => Err(self.expected(what)),
        }
    }

    pub(super) fn string(&mut self, what: &str) -> PResult<String> {
        match self.peek() {
            Some(t) if t.kind == Kind::Str => {
                self.pos += 1;
                Ok(t.string_value())
            }
            _ => Err(self.expected(what)),
        }
    }

    /// An unsigned integer, decimal or `0x` hex.
    pub(super) fn uint(&mut self, what: &str) -> PResult<u64> {
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
    pub(super) fn number_text(&mut self, what: &str) -> PResult<String> {
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

    pub(super) fn float(&mut self, what: &str) -> PResult<f64> {
        let start = self.pos;
        let text = self.number_text(what)?;
        parse_f64(&text).ok_or_else(|| {
            self.pos = start;
            self.expected(what)
        })
    }

    pub(super) fn int(&mut self, what: &str) -> PResult<i64> {
        let start = self.pos;
        let text = self.number_text(what)?;
        parse_i64(&text).ok_or_else(|| {
            self.pos = start;
            self.expected(what)
        })
    }

    /// `;`, tolerating its absence before the next statement (`CM_` without `;` is common).
    pub(super) fn end(&mut self, after: &str) -> PResult<()> {
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
    pub(super) fn recover(&mut self, start: usize) {
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
    pub(super) fn skip_to_semicolon(&mut self) {
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
}
