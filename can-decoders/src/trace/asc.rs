//! Vector ASC logs, read and write.
//!
//! Which lines are frames follows python-can 4.6.1's `ASCReader`: a timestamp (`\d+\.\d+`) then
//! either `<channel> <id> Rx|Tx ...`, `<channel> ErrorFrame ...` or `CANFD ...`. Every other line
//! (header, comments, `Begin/End TriggerBlock`, `Start of measurement`, statistics, chip status,
//! `J1939TP`, events) is skipped and counted as ignored. A line that looks like a frame but does
//! not parse is malformed.
//!
//! Choices (documented differences from python-can):
//! - The channel is kept as written (`"1"`), interned into [`AscReader::channels`]; python-can
//!   returns `int(channel) - 1`.
//! - Time: the `Begin Triggerblock` date (or, without one, the `date` header) is read as **UTC**
//!   and added to each line's time, giving epoch nanoseconds; when neither date parses, times
//!   are relative nanoseconds from 0. With `timestamps relative` in the header, each line's time
//!   is the delta to the previous frame line (CANoe's meaning; python-can ignores the keyword).
//! - Error frames (classic and CAN FD) become [`FrameKind::Error`] with the SocketCAN class
//!   `CAN_ERR_BUSERROR` (0x80, extended) and no data, as python-can's candump writer writes them.
//! - A `CANFD` line of data length 0 is a remote request (as python-can) unless its flags column
//!   has the EDL bit (0x1000), then it is an empty CAN FD frame (what [`AscWriter`] writes).
//! - Classic lines carry at most 8 bytes (`d D ...` keeps 8 bytes and raw DLC 13 as
//!   `len8_dlc`); DLCs above 15 keep 8 bytes, as python-can.

use std::io::{self, BufRead, Write};

use super::text::{self, ChannelTable, Line, LineReader, HEX_UPPER};
use super::{dlc2len, ErrorPolicy, ReadError, ReadStats, TraceReader};
use crate::frame::{
    is_valid_fd_len, CanFrame, CanId, Direction, FrameKind, TimedFrame, MAX_DATA_LEN,
};

/// SocketCAN `CAN_ERR_BUSERROR`: the class given to ASC and BLF error frames.
pub(crate) const CAN_ERR_BUSERROR: u32 = 0x80;
/// Vector CAN FD flags: extended data length (an FD frame).
const FD_FLAG_EDL: u32 = 0x1000;
const FD_FLAG_BRS: u32 = 0x2000;
const FD_FLAG_ESI: u32 = 0x4000;

/// Streaming reader of a Vector ASC log.
pub struct AscReader<R> {
    lines: LineReader<R>,
    policy: ErrorPolicy,
    stats: ReadStats,
    done: bool,
    st: AscState,
}

/// What the header lines set, and the channel table.
#[derive(Default)]
struct AscState {
    channels: ChannelTable,
    hex: bool,
    relative: bool,
    header_start_ns: Option<u64>,
    block_start_ns: Option<u64>,
    last_ns: u64,
}

impl<R: BufRead> AscReader<R> {
    pub fn new(input: R, policy: ErrorPolicy) -> Self {
        AscReader {
            lines: LineReader::new(input),
            policy,
            stats: ReadStats::default(),
            done: false,
            st: AscState { hex: true, ..AscState::default() },
        }
    }

    /// Channel numbers as written (`"1"`, `"2"`); a frame's `ChannelId` indexes this table.
    pub fn channels(&self) -> &[String] {
        self.st.channels.names()
    }

    pub fn stats(&self) -> ReadStats {
        self.stats
    }

    /// Epoch nanoseconds (UTC) that line times are added to: the trigger block date, else the
    /// `date` header; `None` when no date has parsed (times are then relative).
    pub fn start_ns(&self) -> Option<u64> {
        self.st.start_ns()
    }

    fn malformed(&mut self, reason: &str) -> ReadError {
        self.stats.malformed += 1;
        if self.policy == ErrorPolicy::Strict {
            self.done = true;
        }
        ReadError::Malformed { line: self.lines.line, reason: reason.to_owned() }
    }
}

impl<R: BufRead> Iterator for AscReader<R> {
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
                Ok(Line::Ok(line)) => match self.st.frame_line(line.trim_ascii()) {
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

impl<R: BufRead> TraceReader for AscReader<R> {
    fn channels(&self) -> &[String] {
        self.st.channels.names()
    }
    fn stats(&self) -> ReadStats {
        self.stats
    }
}

fn is_word(t: &[u8]) -> bool {
    !t.is_empty() && t.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

fn is_asc_time(t: &[u8]) -> bool {
    match t.iter().position(|&c| c == b'.') {
        Some(dot) => {
            let (a, b) = t.split_at(dot);
            let b = b.get(1..).unwrap_or_default();
            !a.is_empty() && !b.is_empty() && a.iter().chain(b).all(u8::is_ascii_digit)
        }
        None => false,
    }
}

fn direction(t: &[u8]) -> Option<Direction> {
    if t.eq_ignore_ascii_case(b"rx") {
        Some(Direction::Rx)
    } else if t.eq_ignore_ascii_case(b"tx") {
        Some(Direction::Tx)
    } else {
        None
    }
}

fn len2dlc(len: usize) -> usize {
    match len {
        0..=8 => len,
        9..=12 => 9,
        13..=16 => 10,
        17..=20 => 11,
        21..=24 => 12,
        25..=32 => 13,
        33..=48 => 14,
        _ => 15,
    }
}

impl AscState {
    fn start_ns(&self) -> Option<u64> {
        self.block_start_ns.or(self.header_start_ns)
    }

    /// Header and meta lines; `true` when the line was one.
    fn header_line(&mut self, line: &[u8]) -> bool {
        let lower_starts =
            |p: &[u8]| line.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p));
        if lower_starts(b"date ") {
            if let Some(ns) = parse_date(line.get(5..).unwrap_or_default()) {
                self.header_start_ns = Some(ns);
            }
        } else if lower_starts(b"begin triggerblock") {
            if let Some(ns) = parse_date(line.get(18..).unwrap_or_default()) {
                self.block_start_ns = Some(ns);
            }
        } else if lower_starts(b"base ") {
            let mut words = line.split(u8::is_ascii_whitespace).filter(|w| !w.is_empty());
            words.next();
            match words.next() {
                Some(w) if w.eq_ignore_ascii_case(b"dec") => self.hex = false,
                Some(w) if w.eq_ignore_ascii_case(b"hex") => self.hex = true,
                _ => {}
            }
            if let (Some(kw), Some(mode)) = (words.next(), words.next()) {
                if kw.eq_ignore_ascii_case(b"timestamps") {
                    self.relative = mode.eq_ignore_ascii_case(b"relative");
                }
            }
        } else if !(lower_starts(b"//")
            || lower_starts(b"end triggerblock")
            || lower_starts(b"internal events logged")
            || lower_starts(b"no internal events logged"))
        {
            return false;
        }
        true
    }

    fn num(&self, t: &[u8]) -> Option<u32> {
        if self.hex {
            text::parse_hex_u32(t)
        } else {
            text::parse_dec_u32(t)
        }
    }

    fn can_id(&self, t: &[u8]) -> Result<CanId, &'static str> {
        match t.split_last() {
            Some((b'x' | b'X', digits)) => self
                .num(digits)
                .and_then(CanId::extended)
                .ok_or("extended id is not a number below 0x20000000"),
            _ => self
                .num(t)
                .and_then(CanId::standard)
                .ok_or("standard id is not a number below 0x800"),
        }
    }

    /// `count` data bytes from `words`.
    fn data<'a>(
        &self,
        words: &mut impl Iterator<Item = &'a [u8]>,
        count: usize,
        out: &mut [u8; MAX_DATA_LEN],
    ) -> Result<usize, &'static str> {
        let mut n = 0;
        for slot in out.iter_mut().take(count) {
            let Some(w) = words.next() else { break };
            *slot = self
                .num(w)
                .and_then(|v| u8::try_from(v).ok())
                .ok_or("data byte is not a number 0..=255")?;
            n += 1;
        }
        Ok(n)
    }

    fn frame_line(&mut self, line: &[u8]) -> Result<Option<TimedFrame>, &'static str> {
        if self.header_line(line) {
            return Ok(None);
        }
        let mut words = line.split(u8::is_ascii_whitespace).filter(|w| !w.is_empty());
        let Some(time) = words.next().filter(|t| is_asc_time(t)) else { return Ok(None) };
        let Some(chan) = words.next() else { return Ok(None) };
        let fd = chan.eq_ignore_ascii_case(b"CANFD");
        if !fd && !chan.iter().all(u8::is_ascii_digit) {
            return Ok(None); // "Start of measurement", "CAN 1 Status", ...
        }
        let (frame, chan, dir) = if fd {
            let chan = words.next().ok_or("CANFD line has no channel")?;
            if !chan.iter().all(u8::is_ascii_digit) {
                return Err("CANFD channel is not a number");
            }
            let dir = words.next().and_then(direction).ok_or("CANFD direction must be Rx or Tx")?;
            (self.fd_frame(&mut words)?, chan, dir)
        } else {
            let Some(w) = words.next() else { return Ok(None) };
            if w.eq_ignore_ascii_case(b"ErrorFrame") {
                (error_frame()?, chan, Direction::Rx)
            } else {
                // python-can's pattern: `<word> Rx|Tx`; anything else (Statistic:, J1939TP) is not a frame.
                let Some(dir) = words.next().and_then(direction) else { return Ok(None) };
                if !is_word(w) {
                    return Ok(None);
                }
                (self.classic_frame(w, &mut words)?, chan, dir)
            }
        };
        let rel = text::parse_decimal_ns(time)?;
        let rel = if self.relative {
            let t = self.last_ns.checked_add(rel).ok_or("timestamp overflows")?;
            self.last_ns = t;
            t
        } else {
            rel
        };
        let t_ns = rel.checked_add(self.start_ns().unwrap_or(0)).ok_or("timestamp overflows")?;
        let channel = self.channels.intern(chan)?;
        Ok(Some(TimedFrame { t_ns, channel, direction: dir, frame }))
    }

    fn classic_frame<'a>(
        &self,
        id: &[u8],
        words: &mut impl Iterator<Item = &'a [u8]>,
    ) -> Result<CanFrame, &'static str> {
        let id = self.can_id(id)?;
        let kind = words.next().ok_or("frame has no 'd' or 'r' after the direction")?;
        if kind.first().is_some_and(|c| c.eq_ignore_ascii_case(&b'r')) {
            // An optional DLC (python-can takes only decimal digits; we take a number in the
            // file's base, so the raw DLCs A..F that AscWriter writes read back).
            let dlc = words.next().and_then(|w| self.num(w)).unwrap_or(0);
            let mut frame =
                CanFrame::remote(id, dlc2len(dlc).min(8) as u8).map_err(|_| "bad remote")?;
            if (9..=15).contains(&dlc) {
                frame.len8_dlc = dlc as u8;
            }
            return Ok(frame);
        }
        let dlc = words.next().and_then(|w| self.num(w)).ok_or("DLC is not a number")?;
        let mut data = [0u8; MAX_DATA_LEN];
        let n = self.data(words, dlc2len(dlc).min(8), &mut data)?;
        let mut frame = CanFrame::new(id, FrameKind::Data, data.get(..n).unwrap_or_default())
            .map_err(|_| "invalid classic frame")?;
        if n == 8 && (9..=15).contains(&dlc) {
            frame.len8_dlc = dlc as u8;
        }
        Ok(frame)
    }

    fn fd_frame<'a>(
        &self,
        words: &mut impl Iterator<Item = &'a [u8]>,
    ) -> Result<CanFrame, &'static str> {
        let id = words.next().ok_or("CANFD line has no id")?;
        if id.eq_ignore_ascii_case(b"ErrorFrame") {
            return error_frame();
        }
        let id = self.can_id(id)?;
        let mut brs = words.next().ok_or("CANFD line has no BRS")?;
        if !brs.iter().all(u8::is_ascii_digit) {
            // A symbolic name precedes BRS.
            brs = words.next().ok_or("CANFD line has no BRS")?;
        }
        let esi = words.next().ok_or("CANFD line has no ESI")?;
        let dlc = words.next().and_then(|w| self.num(w)).ok_or("CANFD DLC is not a number")?;
        let len =
            words.next().and_then(text::parse_dec_u32).ok_or("CANFD data length is not a number")?
                as usize;
        let mut data = [0u8; MAX_DATA_LEN];
        if len == 0 {
            // Message duration, message length, flags.
            let flags = words.nth(2).and_then(text::parse_hex_u32).unwrap_or(0);
            if flags & FD_FLAG_EDL == 0 {
                return CanFrame::remote(id, dlc2len(dlc).min(8) as u8)
                    .map_err(|_| "invalid remote frame");
            }
        }
        if !is_valid_fd_len(len) {
            return Err("CANFD data length is not a CAN FD length");
        }
        if self.data(words, len, &mut data)? != len {
            return Err("CANFD line has fewer data bytes than its data length");
        }
        let kind = FrameKind::Fd { brs: brs == b"1", esi: esi == b"1" };
        CanFrame::new(id, kind, data.get(..len).unwrap_or_default())
            .map_err(|_| "invalid CAN FD frame")
    }
}

/// An ASC or BLF error frame: class `CAN_ERR_BUSERROR`, no data.
pub(crate) fn error_frame() -> Result<CanFrame, &'static str> {
    CanId::extended(CAN_ERR_BUSERROR)
        .and_then(|id| CanFrame::new(id, FrameKind::Error, &[]).ok())
        .ok_or("cannot build an error frame")
}

const MONTHS: [(&str, u32); 17] = [
    ("jan", 1),
    ("feb", 2),
    ("mar", 3),
    ("mär", 3),
    ("mrz", 3),
    ("apr", 4),
    ("may", 5),
    ("mai", 5),
    ("jun", 6),
    ("jul", 7),
    ("aug", 8),
    ("sep", 9),
    ("oct", 10),
    ("okt", 10),
    ("nov", 11),
    ("dec", 12),
    ("dez", 12),
];

/// `<weekday> <month> <day> <H:M:S[.frac]> [am|pm] <year>` (English or German names) as epoch
/// nanoseconds, reading the time as UTC.
pub(crate) fn parse_date(text: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?;
    let mut w = text.split_ascii_whitespace();
    let _weekday = w.next()?;
    let month = w.next()?.to_lowercase();
    let month = MONTHS.iter().find(|(n, _)| *n == month)?.1;
    let day: u32 = w.next()?.parse().ok()?;
    let time = w.next()?;
    let mut next = w.next()?;
    let ampm = if next.eq_ignore_ascii_case("am") || next.eq_ignore_ascii_case("pm") {
        let pm = next.eq_ignore_ascii_case("pm");
        next = w.next()?;
        Some(pm)
    } else {
        None
    };
    let year: i64 = next.parse().ok()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut parts = hms.split(':');
    let mut hour: u32 = parts.next()?.parse().ok()?;
    let min: u32 = parts.next()?.parse().ok()?;
    let sec: u32 = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    let ns = if frac.is_empty() {
        0
    } else {
        text::parse_decimal_ns(format!("0.{frac}").as_bytes()).ok()?
    };
    if let Some(pm) = ampm {
        if !(1..=12).contains(&hour) {
            return None;
        }
        hour = match (hour, pm) {
            (12, false) => 0,
            (12, true) => 12,
            (h, false) => h,
            (h, true) => h + 12,
        };
    }
    text::epoch_ns(year, month, day, hour, min, sec, ns)
}

const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTH_NAMES: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// `Sat Sep 30 10:06:13.191 pm 2017` (UTC, milliseconds, CANoe's 12-hour form).
fn format_date(t_ns: u64) -> String {
    let secs = t_ns / 1_000_000_000;
    let ms = (t_ns / 1_000_000) % 1000;
    let days = (secs / 86_400) as i64;
    let (y, m, d) = text::civil_from_days(days);
    let sod = secs % 86_400;
    let (h, min, s) = (sod / 3600, (sod / 60) % 60, sod % 60);
    let (h12, ampm) = match h {
        0 => (12, "am"),
        1..=11 => (h, "am"),
        12 => (12, "pm"),
        _ => (h - 12, "pm"),
    };
    let wd = WEEKDAYS.get((days % 7) as usize).unwrap_or(&"Mon");
    let mn = MONTH_NAMES.get((m as usize).wrapping_sub(1)).unwrap_or(&"Jan");
    format!("{wd} {mn} {d:02} {h12:02}:{min:02}:{s:02}.{ms:03} {ampm} {y}")
}

/// Writes a Vector ASC log: `date` header, `base hex  timestamps absolute`, `Begin Triggerblock`
/// with the first frame's time (UTC, truncated to the millisecond), line times relative to it
/// with 6 fraction digits (sub-microsecond digits are truncated), and `End TriggerBlock` on
/// [`finish`](AscWriter::finish).
///
/// The ASC channel is a number: a channel name of digits is written as is; otherwise its
/// trailing number plus one (`can0` → 1, python-can's convention for 0-based interfaces), or 1.
///
/// ASC has no room for some of what a [`TimedFrame`] holds: an error frame is written as a bare
/// `ErrorFrame` (its class, data and direction are lost; it reads back as `CAN_ERR_BUSERROR`, Rx).
pub struct AscWriter<W: Write> {
    out: W,
    line: Vec<u8>,
    start_ns: Option<u64>,
}

impl<W: Write> AscWriter<W> {
    pub fn new(out: W) -> Self {
        AscWriter { out, line: Vec::with_capacity(512), start_ns: None }
    }

    fn header(&mut self, t_ns: u64) -> io::Result<u64> {
        if let Some(s) = self.start_ns {
            return Ok(s);
        }
        let start = t_ns - t_ns % 1_000_000;
        let date = format_date(start);
        write!(
            self.out,
            "date {date}\nbase hex  timestamps absolute\ninternal events logged\n\
             Begin Triggerblock {date}\n   0.000000 Start of measurement\n"
        )?;
        self.start_ns = Some(start);
        Ok(start)
    }

    pub fn write(&mut self, frame: &TimedFrame, channel_name: &str) -> io::Result<()> {
        let start = self.header(frame.t_ns)?;
        let rel = frame.t_ns.saturating_sub(start);
        let chan = asc_channel(channel_name);
        let line = &mut self.line;
        line.clear();
        let mut ts = Vec::with_capacity(24);
        text::push_decimal_ns(&mut ts, rel, 6);
        for _ in ts.len()..11 {
            line.push(b' ');
        }
        line.extend_from_slice(&ts);
        let f = &frame.frame;
        let dir = match frame.direction {
            Direction::Rx => "Rx",
            Direction::Tx => "Tx",
        };
        let id = if f.id.is_extended() {
            format!("{:X}x", f.id.raw())
        } else {
            format!("{:X}", f.id.raw())
        };
        match f.kind {
            FrameKind::Error => {
                write!(line, " {chan}  ErrorFrame")?;
            }
            FrameKind::Remote => {
                let dlc = if f.len() == 8 && (9..=15).contains(&f.len8_dlc) {
                    f.len8_dlc.into()
                } else {
                    f.len()
                };
                write!(line, " {chan}  {id:<15} {dir:<4} r {dlc:x}")?;
            }
            FrameKind::Data => {
                let dlc = if f.len() == 8 && (9..=15).contains(&f.len8_dlc) {
                    f.len8_dlc.into()
                } else {
                    f.len()
                };
                write!(line, " {chan}  {id:<15} {dir:<4} d {dlc:x}")?;
                push_data(line, f.data());
            }
            FrameKind::Fd { brs, esi } => {
                let flags = FD_FLAG_EDL
                    | if brs { FD_FLAG_BRS } else { 0 }
                    | if esi { FD_FLAG_ESI } else { 0 };
                write!(
                    line,
                    " CANFD {chan:>3} {dir:<4} {id:>8}  {:>32} {} {} {:x} {:>2}",
                    "",
                    u8::from(brs),
                    u8::from(esi),
                    len2dlc(f.len()),
                    f.len()
                )?;
                push_data(line, f.data());
                write!(
                    line,
                    " {:>8} {:>4} {flags:>8X} {:>8} {:>8} {:>8} {:>8} {:>8}",
                    0, 0, 0, 0, 0, 0, 0
                )?;
            }
        }
        line.push(b'\n');
        self.out.write_all(line)
    }

    /// Writes the footer (and the header, if no frame was written) and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.header(0)?;
        self.out.write_all(b"End TriggerBlock\n")?;
        self.out.flush()?;
        Ok(self.out)
    }
}

fn push_data(line: &mut Vec<u8>, data: &[u8]) {
    for b in data {
        line.push(b' ');
        line.push(HEX_UPPER[usize::from(b >> 4)]);
        line.push(HEX_UPPER[usize::from(b & 0xF)]);
    }
}

fn asc_channel(name: &str) -> u64 {
    if !name.is_empty() && name.bytes().all(|c| c.is_ascii_digit()) {
        return name.parse().unwrap_or(1);
    }
    let digits = name.len() - name.bytes().rev().take_while(u8::is_ascii_digit).count();
    name.get(digits..).and_then(|d| d.parse::<u64>().ok()).map_or(1, |n| n.saturating_add(1))
}
