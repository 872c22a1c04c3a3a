//! Load options and the hard errors of the loader.

use std::path::PathBuf;

/// How forgiving the loader is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Fail on the first Error-severity diagnostic instead of skipping the statement. Real-world
    /// files (opendbc) rarely pass strict loading, hence lenient by default.
    pub strict: bool,
}

/// Why a DBC file could not be loaded at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text cannot be parsed any further (e.g. a string running to the end of the file).
    #[error("{file}:{line}:{column}: expected {expected}, found {found}")]
    Syntax { file: String, line: u32, column: u32, expected: String, found: String },
    /// Strict mode: a statement had to be dropped.
    #[error("{file}:{line}:{column}: {message}")]
    Rejected { file: String, line: u32, column: u32, message: String },
}

impl LoadError {
    /// 1-based line and column, when the error is located in the text.
    pub fn location(&self) -> Option<(u32, u32)> {
        match self {
            LoadError::Io { .. } => None,
            LoadError::Syntax { line, column, .. } | LoadError::Rejected { line, column, .. } => {
                Some((*line, *column))
            }
        }
    }
}
