//! can-utils `candump -L` logs: `(1627274455.012500) can1 17F00010#2010000000000000 R`.
//!
//! Frame grammar as can-utils `lib.c` (`parse_canframe`) reads it, but strict where `lib.c`
//! silently ignores text:
//! - `<id>#<data>`: 3 hex digits for a standard id, 8 for an extended one. An 8-digit id with
//!   `CAN_ERR_FLAG` (`0x20000000`) is an error frame whose id is the error class bits.
//! - data is pairs of hex digits (any case), optionally separated by `.`; at most 8 bytes, then
//!   optionally `_<dlc>` (9..=15, only after 8 bytes) for the raw classic DLC.
//! - `<id>#R`, `<id>#R<len>` (0..=8), `<id>#R8_<dlc>`: remote request.
//! - `<id>##<flags><data>`: CAN FD; flags is one hex digit (BRS = 1, ESI = 2, FDF = 4, the last
//!   written by current can-utils and ignored here); the length must be a CAN FD length.
//! - after the frame, an optional direction `R` (received, the default) or `T` (transmitted).
//!
//! Whitespace between fields may be any run of spaces or tabs. Empty lines, lines starting with
//! `#` and notes like `DROPCOUNT: ...` (a word and a colon) are skipped and counted as ignored.
//! Anything else that does not parse is malformed. 5-digit CAN XL ids are reported as malformed
//! (not supported).

use std::io::{self, BufRead, Write};

use super::text::{self, ChannelTable, Line, LineReader, HEX_UPPER};
use super::{ErrorPolicy, ReadError, ReadStats, TraceReader};
use crate::frame::{
    is_valid_fd_len, CanFrame, CanId, Direction, FrameKind, TimedFrame, MAX_DATA_LEN,
};

/// `CAN_ERR_FLAG` of SocketCAN: marks an error frame's id.
pub const CAN_ERR_FLAG: u32 = 0x2000_0000;
/// `CAN_ERR_MASK`: the error class bits.
const CAN_ERR_MASK: u32 = 0x1FFF_FFFF;
const CANFD_BRS: u8 = 0x01;
const CANFD_ESI: u8 = 0x02;
const CANFD_FDF: u8 = 0x04;

/// Streaming reader of a candump `-L` log. Generic over the input so the hot path has no dynamic
/// dispatch; allocation happens only for a new channel name or an error message.
pub struct CandumpReader<R> {
    lines: LineReader<R>,
    policy: ErrorPolicy,
    channels: ChannelTable,
    stats: ReadStats,
    done: bool,
}

impl<R: BufRead> CandumpReader<R> {
    pub fn new(input: R, policy: ErrorPolicy) -> Self {
        CandumpReader {
            lines: LineReader::new(input),
            policy,
            channels: ChannelTable::default(),
            stats: ReadStats::default(),
            done: false,
        }
    }

    /// Interface names seen so far; a frame's `ChannelId` indexes this table.
    pub fn channels(&self) -> &[String] {
        self.channels.names()
    }

    pub fn stats(&self) -> ReadStats {
        self.stats
    }

    fn malformed(&mut self, reason: &str) -> ReadError {
        self.stats.malformed += 1;
        if self.policy == ErrorPolicy::Strict {
            self.done = true;
        }
        ReadError::Malformed { line: self.lines.line, reason: reason.to_owned() }
    }
}

impl<R: BufRead> Iterator for CandumpReader<R> {
    type Item = Result<TimedFrame, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            match self.lines.next_line() {
                Err(source) => {
                    self.done = true;
                    return Some(Err(ReadError::Io { position: self.lines.line, source }));
                }
                Ok(Line::Eof) => {
                    self.done = true;
                    return None;
                }
                Ok(Line::TooLong) => {
                    return Some(Err(self.malformed("line longer than 16384 bytes")));
                }
                Ok(Line::Ok(line)) => match parse_line(line, &mut self.channels) {
                    Ok(Some(frame)) => {
                        self.stats.frames += 1;
                        return Some(Ok(frame));
                    }
                    Ok(None) => self.stats.ignored += 1,
                    Err(reason) => return Some(Err(self.malformed(reason))),
                },
            }
        }
    }
}

impl<R: BufRead> TraceReader for CandumpReader<R> {
    fn channels(&self) -> &[String] {
        self.channels.names()
    }
    fn stats(&self) -> ReadStats {
        self.stats
    }
}

/// Next whitespace-separated token, advancing `rest`.
#[inline]
fn token<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let s = rest.trim_ascii_start();
    if s.is_empty() {
        *rest = s;
        return None;
    }
    let end = s.iter().position(|c| c.is_ascii_whitespace()).unwrap_or(s.len());
    let (tok, tail) = s.split_at(end);
    *rest = tail;
    Some(tok)
}

/// A note line such as `DROPCOUNT: dropped 3 CAN frames`: a word of letters and `_`, then `:`.
fn is_note(line: &[u8]) -> bool {
    let word = line.iter().take_while(|c| c.is_ascii_alphabetic() || **c == b'_').count();
    word > 0 && line.get(word) == Some(&b':')
}

/// One line: `Ok(None)` for a comment or note, `Err(reason)` when malformed.
fn parse_line(
    line: &[u8],
    channels: &mut ChannelTable,
) -> Result<Option<TimedFrame>, &'static str> {
    let line = line.trim_ascii();
    let rest = match line.split_first() {
        None | Some((b'#', _)) => return Ok(None),
        Some((b'(', rest)) => rest,
        Some(_) if is_note(line) => return Ok(None),
        Some(_) => return Err("expected '(' and a timestamp, a '#' comment or a note"),
    };
    let close = rest.iter().position(|&c| c == b')').ok_or("timestamp has no closing ')'")?;
    let (ts, mut rest) = rest.split_at(close);
    let t_ns = text::parse_decimal_ns(ts)?;
    rest = rest.get(1..).unwrap_or_default();
    if !rest.first().is_some_and(u8::is_ascii_whitespace) {
        return Err("expected whitespace after the timestamp");
    }
    let iface = token(&mut rest).ok_or("missing interface name")?;
    let frame_text = token(&mut rest).ok_or("missing frame after the interface name")?;
    let direction = match token(&mut rest) {
        None => Direction::Rx,
        Some(b"R" | b"r") => Direction::Rx,
        Some(b"T" | b"t") => Direction::Tx,
        Some(_) => return Err("direction after the frame must be R or T"),
    };
    if token(&mut rest).is_some() {
        return Err("unexpected text after the direction");
    }
    let frame = parse_frame(frame_text)?;
    let channel = channels.intern(iface)?;
    Ok(Some(TimedFrame { t_ns, channel, direction, frame }))
}

/// `<id>#<data>` and its variants (see the module documentation).
pub(crate) fn parse_frame(tok: &[u8]) -> Result<CanFrame, &'static str> {
    let hash = tok.iter().position(|&c| c == b'#').ok_or("frame has no '#' after the id")?;
    let (id_text, rest) = tok.split_at(hash);
    let rest = rest.get(1..).unwrap_or_default();
    let raw = text::parse_hex_u32(id_text);
    let (id, is_error) = match (id_text.len(), raw) {
        (3, Some(raw)) => (CanId::standard(raw).ok_or("standard id above 7FF")?, false),
        (8, Some(raw)) if raw & CAN_ERR_FLAG != 0 => {
            if raw & !(CAN_ERR_FLAG | CAN_ERR_MASK) != 0 {
                return Err("error frame id has flag bits 30 or 31 set");
            }
            (CanId::extended(raw & CAN_ERR_MASK).ok_or("error class out of range")?, true)
        }
        (8, Some(raw)) => {
            (CanId::extended(raw).ok_or("extended id has flag bits 30 or 31 set")?, false)
        }
        (3 | 8, None) => return Err("id is not hexadecimal"),
        (5, _) => return Err("CAN XL frames (5-digit id) are not supported"),
        _ => return Err("id must be 3 (standard) or 8 (extended) hex digits"),
    };
    let mut data = [0u8; MAX_DATA_LEN];
    match rest.split_first() {
        Some((b'R' | b'r', tail)) => {
            if is_error {
                return Err("an error frame cannot be a remote request");
            }
            parse_remote(id, tail)
        }
        Some((b'#', tail)) => {
            if is_error {
                return Err("an error frame cannot be CAN FD");
            }
            let (flags, tail) = tail.split_first().ok_or("CAN FD frame has no flags digit")?;
            let flags = text::hex_val(*flags).ok_or("CAN FD flags digit is not hex")?;
            let (len, tail) = parse_data(tail, &mut data, MAX_DATA_LEN)?;
            if !tail.is_empty() {
                return Err("unexpected text after CAN FD data");
            }
            if !is_valid_fd_len(len) {
                return Err("CAN FD data length is not 0..=8, 12, 16, 20, 24, 32, 48 or 64");
            }
            let kind = FrameKind::Fd { brs: flags & CANFD_BRS != 0, esi: flags & CANFD_ESI != 0 };
            CanFrame::new(id, kind, data.get(..len).unwrap_or_default())
                .map_err(|_| "invalid CAN FD frame")
        }
        _ => {
            let (len, tail) = parse_data(rest, &mut data, 8)?;
            let kind = if is_error { FrameKind::Error } else { FrameKind::Data };
            let mut frame = CanFrame::new(id, kind, data.get(..len).unwrap_or_default())
                .map_err(|_| "invalid classic frame")?;
            frame.len8_dlc = parse_len8_dlc(tail, len)?;
            Ok(frame)
        }
    }
}

/// After `R`: nothing, or a length digit 0..=8, then for 8 optionally `_<dlc>`.
fn parse_remote(id: CanId, tail: &[u8]) -> Result<CanFrame, &'static str> {
    let Some((len, tail)) = tail.split_first() else {
        return CanFrame::remote(id, 0).map_err(|_| "invalid remote frame");
    };
    let len = text::hex_val(*len).filter(|l| *l <= 8).ok_or("remote length must be 0..=8")?;
    let mut frame = CanFrame::remote(id, len).map_err(|_| "invalid remote frame")?;
    frame.len8_dlc = parse_len8_dlc(tail, len.into())?;
    Ok(frame)
}

/// The optional `_<dlc>` suffix of an 8-byte classic frame: the raw DLC 9..=15, else 0.
fn parse_len8_dlc(tail: &[u8], len: usize) -> Result<u8, &'static str> {
    match tail {
        [] => Ok(0),
        [b'_', d] if len == 8 => text::hex_val(*d)
            .filter(|d| (9..=15).contains(d))
            .ok_or("raw DLC after '_' must be a hex digit 9..=F"),
        [b'_', ..] if len == 8 => Err("raw DLC after '_' must be one hex digit"),
        [b'_', ..] => Err("'_<dlc>' is only valid after 8 data bytes"),
        _ => Err("data is not pairs of hex digits"),
    }
}

/// Hex byte pairs with optional `.` separators, up to `max` bytes; returns the count and the text
/// after the data (starting at `_`, or empty).
#[inline]
fn parse_data<'a>(
    text: &'a [u8],
    out: &mut [u8; MAX_DATA_LEN],
    max: usize,
) -> Result<(usize, &'a [u8]), &'static str> {
    let mut n = 0;
    let mut rest = text;
    loop {
        if let Some((b'.', tail)) = rest.split_first() {
            rest = tail;
        }
        match rest {
            [] => return Ok((n, rest)),
            [b'_', ..] => return Ok((n, rest)),
            [hi, lo, tail @ ..] => {
                let Some(byte) = text::hex_byte(*hi, *lo) else {
                    return Err("data is not pairs of hex digits");
                };
                if n >= max {
                    return Err(if max == 8 {
                        "more than 8 data bytes in a classic frame"
                    } else {
                        "more than 64 data bytes"
                    });
                }
                if let Some(slot) = out.get_mut(n) {
                    *slot = byte;
                }
                n += 1;
                rest = tail;
            }
            [_] => return Err("data is not pairs of hex digits"),
        }
    }
}

/// How many fraction digits [`CandumpWriter`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TimePrecision {
    /// `(1627274455.012500)`: what `candump -L` writes; sub-microsecond digits are truncated.
    #[default]
    Micros,
    /// `(1627274455.012500123)`.
    Nanos,
}

/// Writes candump `-L` lines as can-utils does: seconds padded to 10 digits, uppercase hex, `_<dlc>` for a raw classic DLC,
/// `##<flags>` for CAN FD (with the FDF bit, as current can-utils), error frames with
/// `CAN_ERR_FLAG`, and a trailing `R`/`T` direction (can be turned off).
pub struct CandumpWriter<W: Write> {
    out: W,
    line: Vec<u8>,
    precision: TimePrecision,
    direction: bool,
}

impl<W: Write> CandumpWriter<W> {
    pub fn new(out: W) -> Self {
        CandumpWriter {
            out,
            line: Vec::with_capacity(256),
            precision: TimePrecision::Micros,
            direction: true,
        }
    }

    /// Fraction digits of the timestamp (microseconds by default).
    pub fn with_precision(mut self, precision: TimePrecision) -> Self {
        self.precision = precision;
        self
    }

    /// Whether to append ` R` / ` T` (default true, as `candump -L -x` and python-can do).
    pub fn with_direction(mut self, direction: bool) -> Self {
        self.direction = direction;
        self
    }

    /// Writes one line. `channel_name` must be non-empty and free of whitespace.
    pub fn write(&mut self, frame: &TimedFrame, channel_name: &str) -> io::Result<()> {
        if channel_name.is_empty() || channel_name.bytes().any(|c| c.is_ascii_whitespace()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("channel name {channel_name:?} is empty or contains whitespace"),
            ));
        }
        let line = &mut self.line;
        line.clear();
        line.push(b'(');
        let digits = match self.precision {
            TimePrecision::Micros => 6,
            TimePrecision::Nanos => 9,
        };
        // candump prints the seconds as `%010llu`.
        let secs_digits = decimal_digits(frame.t_ns / 1_000_000_000);
        line.extend(std::iter::repeat_n(b'0', 10usize.saturating_sub(secs_digits)));
        text::push_decimal_ns(line, frame.t_ns, digits);
        line.extend_from_slice(b") ");
        line.extend_from_slice(channel_name.as_bytes());
        line.push(b' ');
        push_frame(line, &frame.frame);
        if self.direction {
            line.extend_from_slice(match frame.direction {
                Direction::Rx => b" R",
                Direction::Tx => b" T",
            });
        }
        line.push(b'\n');
        self.out.write_all(line)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Flushes and returns the output.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Number of decimal digits of `v` (1 for 0).
fn decimal_digits(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 10 {
        v /= 10;
        n += 1;
    }
    n
}

fn push_hex(out: &mut Vec<u8>, v: u32, digits: u32) {
    for i in (0..digits).rev() {
        out.push(HEX_UPPER[((v >> (i * 4)) & 0xF) as usize]);
    }
}

fn push_bytes(out: &mut Vec<u8>, data: &[u8]) {
    for b in data {
        out.push(HEX_UPPER[usize::from(b >> 4)]);
        out.push(HEX_UPPER[usize::from(b & 0xF)]);
    }
}

/// The `<id>#<data>` text of `frame`, as can-utils `snprintf_canframe` writes it.
fn push_frame(out: &mut Vec<u8>, frame: &CanFrame) {
    let raw = frame.id.raw();
    match frame.kind {
        FrameKind::Error => push_hex(out, CAN_ERR_FLAG | (raw & CAN_ERR_MASK), 8),
        _ if frame.id.is_extended() => push_hex(out, raw, 8),
        _ => push_hex(out, raw, 3),
    }
    out.push(b'#');
    let raw_dlc =
        (frame.len() == 8 && (9..=15).contains(&frame.len8_dlc)).then_some(frame.len8_dlc);
    match frame.kind {
        FrameKind::Remote => {
            out.push(b'R');
            if !frame.is_empty() {
                out.push(HEX_UPPER[frame.len() & 0xF]);
            }
        }
        FrameKind::Fd { brs, esi } => {
            let flags =
                CANFD_FDF | if brs { CANFD_BRS } else { 0 } | if esi { CANFD_ESI } else { 0 };
            out.push(b'#');
            out.push(HEX_UPPER[usize::from(flags)]);
            push_bytes(out, frame.data());
            return;
        }
        FrameKind::Data | FrameKind::Error => push_bytes(out, frame.data()),
    }
    if let Some(dlc) = raw_dlc {
        out.push(b'_');
        out.push(HEX_UPPER[usize::from(dlc & 0xF)]);
    }
}
