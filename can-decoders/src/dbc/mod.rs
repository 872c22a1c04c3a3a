//! DBC files: the loader and the model it produces.
//!
//! The loader is lenient by default: statements it cannot use are skipped and reported in
//! [`Database::warnings`] with their line and column, because real-world files (opendbc, tool
//! exports) rarely follow the grammar exactly. [`LoadOptions::strict`] turns Error-severity
//! findings into a [`LoadError`].
//!
//! Conventions, following cantools 45.1 where it has one (checked by `tests/dbc_vs_cantools.rs`):
//! - Ids: bit 31 marks extended ids; ids above 0x7FF without it are extended too (opendbc).
//!   `VECTOR__INDEPENDENT_SIG_MSG` is dropped. `Vector__XXX` is never a sender or receiver.
//! - `GenMsgCycleTime`: the message's value (0 = none), else the definition's default.
//!   `GenSigStartValue`: only a value set on the signal itself (defaults are not applied).
//! - `System*LongSymbol` attributes replace the short names (nodes, messages, signals, and
//!   multiplexor names in [`MuxCondition`]).
//! - A plain `mN` refers to the message's only `M`/`mNM` signal; `SG_MUL_VAL_` names the switch
//!   explicitly and gives value ranges.
//! - `CM_`, `BA_`, `VAL_` on a signal name that a message repeats apply to every such signal.
//! - Signals that refer to a `VAL_TABLE_` by `SIG_TYPE_REF_`/`SGTYPE_` are not resolved (the
//!   tables are kept in [`Database::value_tables`]); no fixture uses it.
//! - Files are UTF-8 when valid, else Windows-1252.

mod build;
mod derive;
mod encoding;
mod error;
mod grammar;
mod layout;
mod lexer;
pub mod model;
mod number;
mod parser;
mod resolve;
mod statement;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use error::{LoadError, LoadOptions};
pub use layout::bit_positions;
pub use model::*;

/// Loads a DBC file leniently.
pub fn load_file(path: &Path) -> Result<Database, LoadError> {
    load_file_with(path, &LoadOptions::default())
}

pub fn load_file_with(path: &Path, options: &LoadOptions) -> Result<Database, LoadError> {
    let bytes =
        std::fs::read(path).map_err(|source| LoadError::Io { path: path.to_path_buf(), source })?;
    parse_bytes(&bytes, Some(path), options)
}

/// Parses DBC bytes: UTF-8 when valid, else Windows-1252. `source` names the file in messages.
pub fn parse_bytes(
    bytes: &[u8],
    source: Option<&Path>,
    options: &LoadOptions,
) -> Result<Database, LoadError> {
    let text = encoding::decode_text(bytes);
    let file = source.map_or_else(|| "<string>".to_string(), |p| p.display().to_string());
    let mut db = parse(&text, &file, options)?;
    db.source = source.map(Path::to_path_buf);
    Ok(db)
}

pub fn parse_str(text: &str, options: &LoadOptions) -> Result<Database, LoadError> {
    parse(text.strip_prefix('\u{FEFF}').unwrap_or(text), "<string>", options)
}

fn parse(text: &str, file: &str, options: &LoadOptions) -> Result<Database, LoadError> {
    let tokens = lexer::tokenize(text).map_err(|e| LoadError::Syntax {
        file: file.to_string(),
        line: e.line,
        column: e.column,
        expected: "'\"' closing the string".to_string(),
        found: "end of file".to_string(),
    })?;
    let mut p = parser::Parser::new(&tokens);
    let statements = p.parse_all();
    if statements.is_empty() {
        // Nothing parsed at all: this is not a DBC file (or is empty).
        let first = p.diags.first().cloned();
        let (line, column, found) = match (tokens.first(), first) {
            (Some(t), _) => (t.line, t.column, t.describe()),
            (None, _) => (1, 1, "end of file".to_string()),
        };
        return Err(LoadError::Syntax {
            file: file.to_string(),
            line,
            column,
            expected: "a DBC statement (VERSION, BU_, BO_, ...)".to_string(),
            found,
        });
    }
    let db = build::build(statements, p.diags);
    if options.strict {
        if let Some(d) = db.warnings.iter().find(|d| d.severity == Severity::Error) {
            return Err(LoadError::Rejected {
                file: file.to_string(),
                line: d.line,
                column: d.column,
                message: d.message.clone(),
            });
        }
    }
    Ok(db)
}
