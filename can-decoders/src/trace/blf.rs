//! Vector BLF (binary logging format), read only.
//!
//! Layout (as python-can 4.6.1 and Toby Lorenz's vector_blf read it): a `LOGG` file header with
//! the start time as a Windows `SYSTEMTIME`, then `LOBJ` objects. `LOG_CONTAINER` objects hold
//! further objects, zlib-compressed or not; an object may continue in the next container, so the
//! unparsed tail of one container is kept and the next one appended to it. Inside containers,
//! objects are found by their `LOBJ` signature within 8 bytes (padding).
//!
//! Frames come from `CAN_MESSAGE` (1), `CAN_MESSAGE2` (86), `CAN_ERROR_EXT` (73),
//! `CAN_FD_MESSAGE` (100) and `CAN_FD_MESSAGE_64` (101); other objects are counted as ignored.
//! Times: object timestamp × 10 µs (flag 1) or × 1 ns (otherwise), plus the header's start time
//! read as UTC (0 when the start time is not a valid date).
//!
//! Choices: the channel name is the channel number as stored (`"1"`; python-can returns it minus
//! one). Error frames become [`FrameKind::Error`] with class `CAN_ERR_BUSERROR` and no data, like
//! ASC error frames (the id and bytes BLF records for the frame in error are dropped). Remote
//! requests are classic, their length capped at 8. Every length field is bounded: an object
//! above 16 MiB, or a container inflating to more than 16 MiB, is refused with an error and
//! nothing that size is allocated.

use std::io::{self, Read};

use flate2::read::ZlibDecoder;

use super::asc::error_frame;
use super::text::{self, ChannelTable};
use super::{dlc2len, ErrorPolicy, ReadError, ReadStats, TraceReader};
use crate::frame::{is_valid_fd_len, CanFrame, CanId, Direction, FrameKind, TimedFrame};

/// Largest object or inflated container accepted.
pub const MAX_OBJECT_SIZE: usize = 16 * 1024 * 1024;
/// Largest file header accepted.
const MAX_HEADER_SIZE: u32 = 1024 * 1024;
const FILE_HEADER_LEN: usize = 72;
const BASE_HEADER_LEN: usize = 16;

const CAN_MESSAGE: u32 = 1;
const LOG_CONTAINER: u32 = 10;
const CAN_ERROR_EXT: u32 = 73;
const CAN_MESSAGE2: u32 = 86;
const CAN_FD_MESSAGE: u32 = 100;
const CAN_FD_MESSAGE_64: u32 = 101;

const NO_COMPRESSION: u16 = 0;
const ZLIB_DEFLATE: u16 = 2;
const TIME_TEN_MICS: u32 = 1;
const CAN_MSG_EXT: u32 = 0x8000_0000;
const REMOTE_FLAG: u8 = 0x80;
const DIR_TX: u8 = 0x01;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}
fn u8_at(b: &[u8], at: usize) -> Option<u8> {
    b.get(at).copied()
}

/// Streaming reader of a BLF file.
pub struct BlfReader<R> {
    input: R,
    policy: ErrorPolicy,
    channels: ChannelTable,
    stats: ReadStats,
    done: bool,
    start_ns: u64,
    /// Bytes of the file consumed so far.
    file_pos: u64,
    /// File offset of the container whose data is being parsed.
    container_offset: u64,
    /// Uncompressed object data still to parse (`buf[cur..]`).
    buf: Vec<u8>,
    cur: usize,
    /// Raw bytes of the last top-level object, reused.
    obj: Vec<u8>,
}

/// What parsing the buffered data gave.
enum Inner {
    Frame(TimedFrame),
    Ignored,
    Malformed(String),
    NeedMore,
}

impl<R: Read> BlfReader<R> {
    /// Reads and checks the file header.
    pub fn new(mut input: R, policy: ErrorPolicy) -> Result<Self, ReadError> {
        let mut header = [0u8; FILE_HEADER_LEN];
        let n = read_full(&mut input, &mut header)
            .map_err(|source| ReadError::Io { position: 0, source })?;
        let bad = |reason: &str| ReadError::MalformedBinary { offset: 0, reason: reason.into() };
        if n < FILE_HEADER_LEN {
            return Err(bad("file is shorter than a BLF header"));
        }
        if header.get(..4) != Some(b"LOGG") {
            return Err(bad("no LOGG signature: not a BLF file"));
        }
        let header_size = u32_at(&header, 4).unwrap_or(0);
        if !(FILE_HEADER_LEN as u32..=MAX_HEADER_SIZE).contains(&header_size) {
            return Err(bad("file header size is out of range"));
        }
        let rest = u64::from(header_size) - FILE_HEADER_LEN as u64;
        let skipped = io::copy(&mut (&mut input).take(rest), &mut io::sink())
            .map_err(|source| ReadError::Io { position: FILE_HEADER_LEN as u64, source })?;
        if skipped < rest {
            return Err(bad("file ends inside the header"));
        }
        let st = |i: usize| u16_at(&header, 40 + 2 * i).map_or(0, u32::from);
        let start_ns = text::epoch_ns(
            i64::from(st(0)),
            st(1),
            st(3),
            st(4),
            st(5),
            st(6),
            u64::from(st(7)) * 1_000_000,
        )
        .unwrap_or(0);
        Ok(BlfReader {
            input,
            policy,
            channels: ChannelTable::default(),
            stats: ReadStats::default(),
            done: false,
            start_ns,
            file_pos: u64::from(header_size),
            container_offset: u64::from(header_size),
            buf: Vec::new(),
            cur: 0,
            obj: Vec::new(),
        })
    }

    /// Channel numbers as stored (`"1"`); a frame's `ChannelId` indexes this table.
    pub fn channels(&self) -> &[String] {
        self.channels.names()
    }

    pub fn stats(&self) -> ReadStats {
        self.stats
    }

    /// The file header's start time as epoch nanoseconds (0 when it is not a valid date).
    pub fn start_ns(&self) -> u64 {
        self.start_ns
    }

    fn malformed(&mut self, offset: u64, reason: String) -> ReadError {
        self.stats.malformed += 1;
        if self.policy == ErrorPolicy::Strict {
            self.done = true;
        }
        ReadError::MalformedBinary { offset, reason }
    }

    fn fatal(&mut self, reason: &str) -> ReadError {
        self.stats.malformed += 1;
        self.done = true;
        ReadError::MalformedBinary { offset: self.file_pos, reason: reason.into() }
    }

    /// Reads the next top-level object; `Ok(false)` at the end of the file.
    fn read_object(&mut self) -> Result<bool, ReadError> {
        let offset = self.file_pos;
        let io_err = |source| ReadError::Io { position: offset, source };
        let mut base = [0u8; BASE_HEADER_LEN];
        let n = read_full(&mut self.input, &mut base).map_err(io_err)?;
        if n == 0 {
            return Ok(false);
        }
        if n < BASE_HEADER_LEN {
            return Err(self.fatal("file ends inside an object header"));
        }
        if base.get(..4) != Some(b"LOBJ") {
            return Err(self.fatal("no LOBJ signature at the next object"));
        }
        let size = u32_at(&base, 8).unwrap_or(0) as usize;
        let kind = u32_at(&base, 12).unwrap_or(0);
        if size < BASE_HEADER_LEN {
            return Err(self.fatal("object size is smaller than its header"));
        }
        let body_len = (size - BASE_HEADER_LEN) as u64;
        let padding = (size % 4) as u64;
        self.file_pos += n as u64;
        if size > MAX_OBJECT_SIZE || kind != LOG_CONTAINER {
            // Skip it without holding it.
            let skipped =
                io::copy(&mut (&mut self.input).take(body_len + padding), &mut io::sink())
                    .map_err(io_err)?;
            self.file_pos += skipped;
            let truncated = skipped < body_len;
            if kind == LOG_CONTAINER {
                let reason = format!(
                    "log container of {size} bytes is above the 16 MiB limit{}",
                    if truncated { " (and the file ends inside it)" } else { "" }
                );
                if truncated {
                    self.done = true;
                }
                return Err(self.malformed(offset, reason));
            }
            if truncated {
                return Err(self.fatal("file ends inside an object"));
            }
            self.stats.ignored += 1;
            return Ok(true);
        }
        self.obj.clear();
        let got = (&mut self.input).take(body_len).read_to_end(&mut self.obj).map_err(io_err)?;
        self.file_pos += got as u64;
        if (got as u64) < body_len {
            return Err(self.fatal("file ends inside a log container"));
        }
        let pad =
            io::copy(&mut (&mut self.input).take(padding), &mut io::sink()).map_err(io_err)?;
        self.file_pos += pad;
        self.container_offset = offset;
        self.append_container(offset)?;
        Ok(true)
    }

    /// Appends the uncompressed contents of the container in `self.obj` to the parse buffer.
    fn append_container(&mut self, offset: u64) -> Result<(), ReadError> {
        let method = u16_at(&self.obj, 0);
        let data = self.obj.get(16..);
        self.buf.drain(..self.cur.min(self.buf.len()));
        self.cur = 0;
        let before = self.buf.len();
        match (method, data) {
            (Some(NO_COMPRESSION), Some(data)) => {
                if data.len() > MAX_OBJECT_SIZE {
                    return Err(self.malformed(offset, "container above 16 MiB".into()));
                }
                self.buf.extend_from_slice(data);
            }
            (Some(ZLIB_DEFLATE), Some(data)) => {
                let limit = MAX_OBJECT_SIZE as u64 + 1;
                let res = ZlibDecoder::new(data).take(limit).read_to_end(&mut self.buf);
                let inflated = self.buf.len() - before;
                if let Err(e) = res {
                    self.buf.truncate(before);
                    return Err(self
                        .malformed(offset, format!("zlib data of the container is corrupt: {e}")));
                }
                if inflated > MAX_OBJECT_SIZE {
                    self.buf.truncate(before);
                    return Err(
                        self.malformed(offset, "container inflates to more than 16 MiB".into())
                    );
                }
            }
            (Some(m), Some(_)) => {
                return Err(
                    self.malformed(offset, format!("unknown container compression method {m}"))
                );
            }
            _ => {
                return Err(
                    self.malformed(offset, "log container is shorter than its header".into())
                )
            }
        }
        Ok(())
    }

    /// Parses the next object in the buffer.
    fn parse_buffered(&mut self) -> Inner {
        let data = self.buf.get(self.cur..).unwrap_or_default();
        let Some(p) = data.windows(4).take(5).position(|w| w == b"LOBJ") else {
            if data.len() < 8 {
                return Inner::NeedMore;
            }
            // Lost sync: skip to the next signature (or keep the last 3 bytes).
            let skip = data
                .windows(4)
                .skip(1)
                .position(|w| w == b"LOBJ")
                .map_or(data.len().saturating_sub(3), |i| i + 1);
            self.cur += skip;
            return Inner::Malformed(format!("no LOBJ signature; skipped {skip} bytes"));
        };
        let Some(obj_start) = data.get(p..) else { return Inner::NeedMore };
        if obj_start.len() < BASE_HEADER_LEN {
            return Inner::NeedMore;
        }
        let header_size = u16_at(obj_start, 4).unwrap_or(0) as usize;
        let version = u16_at(obj_start, 6).unwrap_or(0);
        let size = u32_at(obj_start, 8).unwrap_or(0) as usize;
        let kind = u32_at(obj_start, 12).unwrap_or(0);
        if !(BASE_HEADER_LEN..=MAX_OBJECT_SIZE).contains(&size) {
            self.cur += p + 4;
            return Inner::Malformed(format!("object size {size} out of range"));
        }
        let Some(obj) = obj_start.get(..size) else { return Inner::NeedMore };
        self.cur += p + size;
        let (flags, ts, body) = match version {
            1 => (u32_at(obj, 16), u64_at(obj, 24), obj.get(32..)),
            2 => (u32_at(obj, 16), u64_at(obj, 24), obj.get(40..)),
            v => return Inner::Malformed(format!("unknown object header version {v}")),
        };
        if !matches!(
            kind,
            CAN_MESSAGE | CAN_MESSAGE2 | CAN_ERROR_EXT | CAN_FD_MESSAGE | CAN_FD_MESSAGE_64
        ) {
            return Inner::Ignored;
        }
        let (Some(flags), Some(ts), Some(body)) = (flags, ts, body) else {
            return Inner::Malformed(format!("object type {kind} is shorter than its header"));
        };
        let factor = if flags == TIME_TEN_MICS { 10_000 } else { 1 };
        let Some(t_ns) = ts.checked_mul(factor).and_then(|t| t.checked_add(self.start_ns)) else {
            return Inner::Malformed("timestamp overflows 64-bit nanoseconds".into());
        };
        let parsed = match kind {
            CAN_MESSAGE | CAN_MESSAGE2 => can_message(body),
            CAN_ERROR_EXT => u16_at(body, 0)
                .filter(|_| body.len() >= 32)
                .ok_or("CAN_ERROR_EXT object is too short")
                .and_then(|ch| Ok((u32::from(ch), Direction::Rx, error_frame()?))),
            CAN_FD_MESSAGE => can_fd_message(body),
            _ => can_fd_message_64(body, size, header_size),
        };
        match parsed {
            Ok((chan, direction, frame)) => {
                let mut digits = [0u8; 10];
                match self.channels.intern(decimal(chan, &mut digits)) {
                    Ok(channel) => Inner::Frame(TimedFrame { t_ns, channel, direction, frame }),
                    Err(reason) => Inner::Malformed(reason.into()),
                }
            }
            Err(reason) => Inner::Malformed(format!("object type {kind}: {reason}")),
        }
    }
}

impl<R: Read> Iterator for BlfReader<R> {
    type Item = Result<TimedFrame, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            let at = self.cur;
            match self.parse_buffered() {
                Inner::Frame(f) => {
                    self.stats.frames += 1;
                    return Some(Ok(f));
                }
                Inner::Ignored => self.stats.ignored += 1,
                Inner::Malformed(reason) => {
                    let offset = self.container_offset;
                    let reason = format!("{reason} (at byte {at} of the container data)");
                    return Some(Err(self.malformed(offset, reason)));
                }
                Inner::NeedMore => match self.read_object() {
                    Ok(true) => {}
                    Ok(false) => {
                        self.done = true;
                        let rest = self.buf.get(self.cur..).unwrap_or_default();
                        if rest.windows(4).any(|w| w == b"LOBJ") {
                            self.stats.malformed += 1;
                            return Some(Err(ReadError::MalformedBinary {
                                offset: self.file_pos,
                                reason: format!(
                                    "file ends inside an object ({} bytes of it were read)",
                                    rest.len()
                                ),
                            }));
                        }
                        return None;
                    }
                    Err(e) => return Some(Err(e)),
                },
            }
        }
    }
}

impl<R: Read> TraceReader for BlfReader<R> {
    fn channels(&self) -> &[String] {
        self.channels.names()
    }
    fn stats(&self) -> ReadStats {
        self.stats
    }
}

/// The decimal digits of `v`, written into `buf` without allocating.
fn decimal(mut v: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        if let Some(slot) = buf.get_mut(i) {
            *slot = b'0' + (v % 10) as u8;
        }
        v /= 10;
        if v == 0 || i == 0 {
            break;
        }
    }
    buf.get(i..).unwrap_or_default()
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(buf.get_mut(n..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn can_id(raw: u32) -> Result<CanId, &'static str> {
    if raw & CAN_MSG_EXT != 0 {
        CanId::extended(raw & 0x1FFF_FFFF).ok_or("extended id above 29 bits")
    } else {
        CanId::standard(raw).ok_or("standard id above 0x7FF")
    }
}

type Parsed = Result<(u32, Direction, CanFrame), &'static str>;

fn remote(id: CanId, dlc: u8) -> Result<CanFrame, &'static str> {
    let mut f =
        CanFrame::remote(id, dlc2len(dlc.into()).min(8) as u8).map_err(|_| "bad remote frame")?;
    if (9..=15).contains(&dlc) {
        f.len8_dlc = dlc;
    }
    Ok(f)
}

/// CAN_MESSAGE / CAN_MESSAGE2: channel u16, flags u8, dlc u8, id u32, data[8].
fn can_message(b: &[u8]) -> Parsed {
    let (Some(chan), Some(flags), Some(dlc), Some(id), Some(data)) =
        (u16_at(b, 0), u8_at(b, 2), u8_at(b, 3), u32_at(b, 4), b.get(8..16))
    else {
        return Err("object is too short");
    };
    let id = can_id(id)?;
    let dir = if flags & DIR_TX != 0 { Direction::Tx } else { Direction::Rx };
    let frame = if flags & REMOTE_FLAG != 0 {
        remote(id, dlc)?
    } else {
        let n = usize::from(dlc).min(8);
        let mut f = CanFrame::new(id, FrameKind::Data, data.get(..n).unwrap_or_default())
            .map_err(|_| "bad classic frame")?;
        if n == 8 && (9..=15).contains(&dlc) {
            f.len8_dlc = dlc;
        }
        f
    };
    Ok((chan.into(), dir, frame))
}

/// CAN_FD_MESSAGE: channel u16, flags u8, dlc u8, id u32, frame length u32, bit count u8,
/// FD flags u8, valid bytes u8, 5 reserved, data[64].
fn can_fd_message(b: &[u8]) -> Parsed {
    let (Some(chan), Some(flags), Some(dlc), Some(id), Some(fd_flags), Some(valid), Some(data)) = (
        u16_at(b, 0),
        u8_at(b, 2),
        u8_at(b, 3),
        u32_at(b, 4),
        u8_at(b, 13),
        u8_at(b, 14),
        b.get(20..84),
    ) else {
        return Err("object is too short");
    };
    let id = can_id(id)?;
    let dir = if flags & DIR_TX != 0 { Direction::Tx } else { Direction::Rx };
    let frame = if flags & REMOTE_FLAG != 0 {
        remote(id, dlc)?
    } else {
        let kind = if fd_flags & 0x1 != 0 {
            FrameKind::Fd { brs: fd_flags & 0x2 != 0, esi: fd_flags & 0x4 != 0 }
        } else {
            FrameKind::Data
        };
        let data = data.get(..usize::from(valid)).ok_or("valid byte count above 64")?;
        CanFrame::new(id, kind, data).map_err(|_| "data length does not fit the frame kind")?
    };
    Ok((chan.into(), dir, frame))
}

/// CAN_FD_MESSAGE_64: a 40-byte fixed part, then the data (possibly shorter than `valid`; the
/// rest is zero, as CANoe and python-can read it).
fn can_fd_message_64(b: &[u8], obj_size: usize, header_size: usize) -> Parsed {
    let (Some(chan), Some(dlc), Some(valid), Some(id), Some(flags), Some(dir), Some(ext_off)) = (
        u8_at(b, 0),
        u8_at(b, 1),
        u8_at(b, 2),
        u32_at(b, 4),
        u32_at(b, 12),
        u8_at(b, 34),
        u8_at(b, 35),
    ) else {
        return Err("object is too short");
    };
    if b.len() < 40 {
        return Err("object is too short");
    }
    let id = can_id(id)?;
    let direction = if dir != 0 { Direction::Tx } else { Direction::Rx };
    let frame = if flags & 0x0010 != 0 {
        remote(id, dlc)?
    } else {
        let valid = usize::from(valid);
        if valid > 64 || (flags & 0x1000 != 0 && !is_valid_fd_len(valid)) {
            return Err("valid byte count is not a CAN FD length");
        }
        let end = if ext_off != 0 { usize::from(ext_off) } else { obj_size };
        let avail = end.saturating_sub(header_size).saturating_sub(40).min(valid);
        let mut data = [0u8; 64];
        let src = b.get(40..40 + avail).unwrap_or_default();
        if let Some(dst) = data.get_mut(..src.len()) {
            dst.copy_from_slice(src);
        }
        let kind = if flags & 0x1000 != 0 {
            FrameKind::Fd { brs: flags & 0x2000 != 0, esi: flags & 0x4000 != 0 }
        } else {
            FrameKind::Data
        };
        CanFrame::new(id, kind, data.get(..valid).unwrap_or_default())
            .map_err(|_| "data length does not fit the frame kind")?
    };
    Ok((chan.into(), direction, frame))
}
