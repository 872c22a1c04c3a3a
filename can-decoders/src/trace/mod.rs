//! Streaming readers and writers for CAN trace files: candump `-L` logs (read and write), Vector
//! ASC (read and write) and Vector BLF (read).
//!
//! Every reader is an [`Iterator`] of `Result<TimedFrame, ReadError>` over an `impl BufRead` (or
//! `impl Read` for BLF); none holds the whole file. Channel (interface) names are interned: a
//! frame's [`ChannelId`](crate::ChannelId) indexes the reader's [`channels`](TraceReader::channels).
//! Timestamps are integer nanoseconds parsed from the decimal text, never through floats.
//!
//! A malformed record yields `Some(Err(ReadError::Malformed { .. }))`; with [`ErrorPolicy::Skip`]
//! the reader then goes on with the next record, with [`ErrorPolicy::Strict`] it ends. An I/O
//! error always ends the iteration. [`open`] picks the reader by extension and gunzips `.gz`.
//!
//! Choices that hold across formats (details in each module):
//! - Channel names are kept as the file writes them: `can1` in candump, the channel number `"1"`
//!   in ASC and BLF (python-can returns ASC/BLF numbers minus one).
//! - ASC dates and the BLF start time are read as UTC.
//! - Error frames from ASC and BLF carry no SocketCAN class; they become
//!   [`FrameKind::Error`](crate::FrameKind::Error) with `CAN_ERR_BUSERROR` (0x80) and no data.
//! - Readers are strict where can-utils and python-can are silently lenient (trailing text, odd
//!   hex digits, impossible ids): such a record is malformed, with its line or offset and reason.
//! - Every size is bounded: text lines (16 KiB), channel names (64 bytes, 65,536 of them), BLF
//!   objects and inflated containers (16 MiB).

mod asc;
mod blf;
mod candump;
mod text;

use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

pub use asc::{AscReader, AscWriter};
pub use blf::BlfReader;
pub use candump::{CandumpReader, CandumpWriter, TimePrecision};

use crate::frame::TimedFrame;

/// Size of the read buffer [`open`] puts in front of files and gzip decoders.
const OPEN_BUF_SIZE: usize = 256 * 1024;

/// A trace file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// can-utils `candump -L` log (`.log`).
    Candump,
    /// Vector ASCII log (`.asc`).
    Asc,
    /// Vector binary logging format (`.blf`).
    Blf,
}

impl Format {
    /// The format named by the file extension (`.log`, `.asc`, `.blf`, each optionally followed by
    /// `.gz`), ignoring case; `None` for anything else.
    pub fn from_path(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        let ext = name.rsplit_once('.')?.1;
        match ext {
            "log" => Some(Format::Candump),
            "asc" => Some(Format::Asc),
            "blf" => Some(Format::Blf),
            _ => None,
        }
    }
}

/// What a reader does after a malformed record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ErrorPolicy {
    /// Yield the error, then continue with the next record.
    #[default]
    Skip,
    /// Yield the error, then end.
    Strict,
}

/// Counters a reader keeps while it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ReadStats {
    /// Frames yielded.
    pub frames: u64,
    /// Malformed records (each was yielded as an error).
    pub malformed: u64,
    /// Records that are not frames and were skipped on purpose: comments, empty lines, headers,
    /// candump `DROPCOUNT:` notes, ASC events and statistics, BLF objects of other types.
    pub ignored: u64,
}

/// Why a record could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// A text record (line, 1-based) that does not follow the format.
    #[error("line {line}: {reason}")]
    Malformed { line: u64, reason: String },
    /// A BLF object that does not follow the format. `offset` is the byte offset in the file of
    /// the object, or of the `LOG_CONTAINER` holding it (then `reason` says where inside).
    #[error("byte offset {offset}: {reason}")]
    MalformedBinary { offset: u64, reason: String },
    /// Reading failed; the iteration ends. `position` is the line number (text formats) or the byte
    /// offset (BLF) reached.
    #[error("I/O error at {position}: {source}")]
    Io {
        position: u64,
        #[source]
        source: io::Error,
    },
}

/// Why [`open`] could not start reading a file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error("{path}: unknown trace format (expected .log, .asc or .blf, optionally .gz)")]
    UnknownFormat { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file's header is not what the format requires (BLF: no `LOGG` signature).
    #[error("{path}: {reason}")]
    BadHeader { path: PathBuf, reason: String },
}

/// A trace reader behind a `Box`: what [`open`] returns.
pub trait TraceReader: Iterator<Item = Result<TimedFrame, ReadError>> {
    /// Channel names seen so far; a frame's `ChannelId` indexes this table.
    fn channels(&self) -> &[String];
    /// Counters so far.
    fn stats(&self) -> ReadStats;
}

/// Payload length of a DLC as python-can's `dlc2len` has it: 9..=15 map to the CAN FD lengths,
/// anything above 15 to 64. Classic readers then keep at most 8 bytes.
pub(crate) fn dlc2len(dlc: u32) -> usize {
    match dlc {
        0..=8 => dlc as usize,
        9 => 12,
        10 => 16,
        11 => 20,
        12 => 24,
        13 => 32,
        14 => 48,
        _ => 64,
    }
}

/// Opens `path` with the reader its extension names, gunzipping `.gz` on the fly.
pub fn open(path: &Path, policy: ErrorPolicy) -> Result<Box<dyn TraceReader>, OpenError> {
    let format =
        Format::from_path(path).ok_or_else(|| OpenError::UnknownFormat { path: path.into() })?;
    let io_err = |source| OpenError::Io { path: path.into(), source };
    let file = File::open(path).map_err(io_err)?;
    let gz = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    let input: Box<dyn io::Read> = if gz {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(OPEN_BUF_SIZE, file)))
    } else {
        Box::new(file)
    };
    let input = BufReader::with_capacity(OPEN_BUF_SIZE, input);
    Ok(match format {
        Format::Candump => Box::new(CandumpReader::new(input, policy)),
        Format::Asc => Box::new(AscReader::new(input, policy)),
        Format::Blf => Box::new(BlfReader::new(input, policy).map_err(|e| match e {
            ReadError::Io { source, .. } => OpenError::Io { path: path.into(), source },
            other => OpenError::BadHeader { path: path.into(), reason: other.to_string() },
        })?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_follows_the_extension_with_or_without_gz() {
        let f = |p: &str| Format::from_path(Path::new(p));
        assert_eq!(f("a/b/trace.log"), Some(Format::Candump));
        assert_eq!(f("trace.LOG.gz"), Some(Format::Candump));
        assert_eq!(f("x.asc"), Some(Format::Asc));
        assert_eq!(f("x.asc.gz"), Some(Format::Asc));
        assert_eq!(f("x.blf"), Some(Format::Blf));
        assert_eq!(f("x.blf.gz"), Some(Format::Blf));
        assert_eq!(f("x.trc"), None);
        assert_eq!(f("x.gz"), None);
        assert_eq!(f("log"), None);
    }

    #[test]
    fn open_names_the_path_when_the_format_is_unknown_or_the_file_is_missing() {
        let err = open(Path::new("/nonexistent/x.trc"), ErrorPolicy::Skip).err();
        assert!(matches!(err, Some(OpenError::UnknownFormat { .. })));
        let err = open(Path::new("/nonexistent/x.log"), ErrorPolicy::Skip).err();
        assert!(err.is_some_and(|e| e.to_string().starts_with("/nonexistent/x.log: ")));
    }
}
