//! Statements that refer to messages and signals by id and name (`BO_TX_BU_`, `CM_`, `BA_`,
//! `VAL_`, `SIG_VALTYPE_`, `SG_MUL_VAL_`), applied to the messages built so far.

use super::build::{diag, normalize_id, Builder, NO_NODE};
use super::model::*;
use super::statement::{Statement, Stmt, Target};

impl Builder {
    pub(super) fn find_message(
        &mut self,
        line: u32,
        column: u32,
        dbc_id: u64,
        what: &str,
    ) -> Option<usize> {
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
    pub(super) fn find_signal(
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

    pub(super) fn signals_mut<'s>(
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

    pub(super) fn reference(&mut self, s: Statement) {
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

    pub(super) fn comment(&mut self, line: u32, column: u32, target: Target, text: String) {
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
}
