//! Pieces the text formats share: bounded line reading into one reused buffer, decimal timestamps
//! to integer nanoseconds, hex digits, the channel name table and calendar arithmetic.

use std::io::{self, BufRead, Read};

use crate::frame::ChannelId;

/// Longest line a text reader accepts (a CAN FD ASC line is under 1 KiB); longer lines are
/// reported as malformed and skipped without being held in memory.
pub(crate) const MAX_LINE: usize = 16 * 1024;

/// What [`LineReader::next_line`] found.
pub(crate) enum Line<'a> {
    /// A line (without its `\n` / `\r\n`).
    Ok(&'a [u8]),
    /// The line was longer than [`MAX_LINE`]; it has been consumed and dropped.
    TooLong,
    Eof,
}

/// Reads lines and counts them. A line that lies whole in the input's buffer is handed out in
/// place (no copy); one that straddles a buffer refill is copied into one reused buffer.
pub(crate) struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    /// Bytes of the input's buffer handed out as the last line, consumed on the next call.
    pending: usize,
    /// 1-based number of the last line returned.
    pub(crate) line: u64,
}

/// Position of the first `\n`, a word at a time.
#[inline]
fn find_newline(s: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const NL: u64 = LO * b'\n' as u64;
    let mut chunks = s.chunks_exact(8);
    let mut base = 0;
    for c in chunks.by_ref() {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let x = u64::from_le_bytes(w) ^ NL;
        let z = x.wrapping_sub(LO) & !x & HI;
        if z != 0 {
            return Some(base + (z.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks.remainder().iter().position(|&c| c == b'\n').map(|i| base + i)
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl<R: BufRead> LineReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        LineReader { inner, buf: Vec::with_capacity(256), pending: 0, line: 0 }
    }

    pub(crate) fn next_line(&mut self) -> io::Result<Line<'_>> {
        if self.pending > 0 {
            self.inner.consume(self.pending);
            self.pending = 0;
        }
        let avail = self.inner.fill_buf()?;
        if avail.is_empty() {
            return Ok(Line::Eof);
        }
        if let Some(i) = find_newline(avail) {
            self.line += 1;
            if i >= MAX_LINE {
                self.inner.consume(i + 1);
                return Ok(Line::TooLong);
            }
            self.pending = i + 1;
            // The buffer is still filled, so this returns the same bytes without reading.
            let avail = self.inner.fill_buf()?;
            return Ok(Line::Ok(strip_cr(avail.get(..i).unwrap_or_default())));
        }
        self.buf.clear();
        let n = (&mut self.inner).take(MAX_LINE as u64).read_until(b'\n', &mut self.buf)?;
        self.line += 1;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
        } else if n >= MAX_LINE {
            // Discard the rest of the line without keeping it.
            loop {
                self.buf.clear();
                let m = (&mut self.inner).take(MAX_LINE as u64).read_until(b'\n', &mut self.buf)?;
                if m == 0 || self.buf.last() == Some(&b'\n') {
                    break;
                }
            }
            self.buf.clear();
            return Ok(Line::TooLong);
        }
        Ok(Line::Ok(strip_cr(&self.buf)))
    }
}

/// Hex digit values, 0xFF for anything else.
static HEX_TABLE: [u8; 256] = {
    let mut t = [0xFF; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => 0xFF,
        };
        i += 1;
    }
    t
};

/// Value of one hex digit, or `None`.
#[inline]
pub(crate) fn hex_val(c: u8) -> Option<u8> {
    let v = HEX_TABLE[usize::from(c)];
    (v != 0xFF).then_some(v)
}

/// Value of two hex digits, or `None`.
#[inline]
pub(crate) fn hex_byte(hi: u8, lo: u8) -> Option<u8> {
    let (h, l) = (HEX_TABLE[usize::from(hi)], HEX_TABLE[usize::from(lo)]);
    ((h | l) & 0xF0 == 0).then_some((h << 4) | l)
}

/// `digits` (1..=8 hex digits) as a number.
pub(crate) fn parse_hex_u32(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    digits.iter().try_fold(0u32, |acc, &c| Some((acc << 4) | u32::from(hex_val(c)?)))
}

/// `digits` (decimal, at most 10 digits so it cannot overflow a u64 step) as a u32.
pub(crate) fn parse_dec_u32(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 10 {
        return None;
    }
    let v = digits
        .iter()
        .try_fold(0u64, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + u64::from(c - b'0')))?;
    u32::try_from(v).ok()
}

/// Uppercase hex digits for writers.
pub(crate) const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// `secs.frac` (1..=9 fraction digits, or none and no dot) as nanoseconds, without floats.
pub(crate) fn parse_decimal_ns(text: &[u8]) -> Result<u64, &'static str> {
    let mut secs = 0u64;
    let mut int_digits = 0usize;
    let mut iter = text.iter();
    let mut dot = false;
    for &c in iter.by_ref() {
        match c {
            b'0'..=b'9' => {
                int_digits += 1;
                if int_digits > 11 {
                    return Err("timestamp seconds must be 1 to 11 digits");
                }
                secs = secs * 10 + u64::from(c - b'0');
            }
            b'.' => {
                dot = true;
                break;
            }
            _ => return Err("timestamp is not a decimal number"),
        }
    }
    if int_digits == 0 {
        return Err("timestamp seconds must be 1 to 11 digits");
    }
    let mut ns = 0u64;
    let mut frac_digits = 0u32;
    for &c in iter {
        if !c.is_ascii_digit() {
            return Err("timestamp is not a decimal number");
        }
        frac_digits += 1;
        if frac_digits > 9 {
            return Err("timestamp has more than 9 fraction digits");
        }
        ns = ns * 10 + u64::from(c - b'0');
    }
    if dot && frac_digits == 0 {
        return Err("timestamp has a '.' but no fraction digits");
    }
    ns *= POW10[(9 - frac_digits) as usize & 15];
    secs.checked_mul(1_000_000_000)
        .and_then(|s| s.checked_add(ns))
        .ok_or("timestamp does not fit in 64-bit nanoseconds")
}

const POW10: [u64; 16] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
    0,
    0,
    0,
    0,
    0,
    0,
];

/// Appends `t_ns` as `secs.fraction` with `digits` (6 or 9) fraction digits, truncating.
pub(crate) fn push_decimal_ns(out: &mut Vec<u8>, t_ns: u64, digits: u32) {
    push_u64(out, t_ns / 1_000_000_000);
    out.push(b'.');
    let frac = t_ns % 1_000_000_000;
    let frac = frac / 10u64.pow(9 - digits.min(9));
    let mut tmp = [b'0'; 9];
    let mut v = frac;
    for i in (0..digits.min(9) as usize).rev() {
        if let Some(slot) = tmp.get_mut(i) {
            *slot = b'0' + (v % 10) as u8;
        }
        v /= 10;
    }
    out.extend_from_slice(tmp.get(..digits.min(9) as usize).unwrap_or(&[]));
}

/// Appends the decimal digits of `v`.
pub(crate) fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        if let Some(slot) = tmp.get_mut(i) {
            *slot = b'0' + (v % 10) as u8;
        }
        v /= 10;
        if v == 0 || i == 0 {
            break;
        }
    }
    out.extend_from_slice(tmp.get(i..).unwrap_or(&[]));
}

/// Longest channel name accepted, so a hostile file cannot make the table large (65,536 names
/// of at most 64 bytes).
const MAX_CHANNEL_NAME: usize = 64;

/// Interned channel names; the last hit is checked first, so a trace of one or two interfaces
/// costs one comparison per frame and no allocation.
#[derive(Default, Debug)]
pub(crate) struct ChannelTable {
    names: Vec<String>,
    last: usize,
}

impl ChannelTable {
    pub(crate) fn names(&self) -> &[String] {
        &self.names
    }

    pub(crate) fn intern(&mut self, name: &[u8]) -> Result<ChannelId, &'static str> {
        if let Some(n) = self.names.get(self.last) {
            if n.as_bytes() == name {
                return Ok(ChannelId(self.last as u16));
            }
        }
        if let Some(i) = self.names.iter().position(|n| n.as_bytes() == name) {
            self.last = i;
            return Ok(ChannelId(i as u16));
        }
        if name.len() > MAX_CHANNEL_NAME {
            return Err("channel name longer than 64 bytes");
        }
        if self.names.len() > usize::from(u16::MAX) {
            return Err("more than 65536 distinct channel names");
        }
        let name = std::str::from_utf8(name).map_err(|_| "channel name is not UTF-8")?;
        self.last = self.names.len();
        self.names.push(name.to_owned());
        Ok(ChannelId(self.last as u16))
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day count since 1970-01-01.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Epoch nanoseconds of a UTC civil time, if it is valid and not before 1970.
pub(crate) fn epoch_ns(
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    min: u32,
    sec: u32,
    ns: u64,
) -> Option<u64> {
    if !(1..=12).contains(&month)
        || day == 0
        || day > 31
        || hour > 23
        || min > 59
        || sec > 59
        || ns >= 1_000_000_000
    {
        return None;
    }
    if !(1970..=9999).contains(&year) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    // Reject dates like Feb 30 that roll over into the next month.
    if civil_from_days(days) != (year, month, day) {
        return None;
    }
    let secs = days * 86_400 + i64::from(hour) * 3600 + i64::from(min) * 60 + i64::from(sec);
    u64::try_from(secs).ok()?.checked_mul(1_000_000_000)?.checked_add(ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_found_in_place_or_across_buffer_refills() {
        for cap in [1, 3, 8, 64] {
            let input = b"first\r\nsecond line that is long\n\nlast";
            let mut r = LineReader::new(std::io::BufReader::with_capacity(cap, &input[..]));
            let mut got = Vec::new();
            while let Ok(Line::Ok(l)) = r.next_line() {
                got.push(String::from_utf8_lossy(l).into_owned());
            }
            assert_eq!(got, ["first", "second line that is long", "", "last"], "capacity {cap}");
            assert_eq!(r.line, 4);
        }
        assert_eq!(find_newline(b"0123456789abcdef\n"), Some(16));
        assert_eq!(find_newline(b"0123\n"), Some(4));
        assert_eq!(find_newline(b"\x8a\x0b\n"), Some(2));
        assert_eq!(find_newline(b"no newline here"), None);
    }

    #[test]
    fn decimal_timestamps_become_exact_nanoseconds() {
        assert_eq!(parse_decimal_ns(b"1627274455.012500"), Ok(1_627_274_455_012_500_000));
        assert_eq!(parse_decimal_ns(b"1.000000001"), Ok(1_000_000_001));
        assert_eq!(parse_decimal_ns(b"2.5"), Ok(2_500_000_000));
        assert_eq!(parse_decimal_ns(b"7"), Ok(7_000_000_000));
        assert!(parse_decimal_ns(b"1.0000000001").is_err());
        assert!(parse_decimal_ns(b"1.2x").is_err());
        assert!(parse_decimal_ns(b".5").is_err());
        assert!(parse_decimal_ns(b"1.").is_err());
        assert_eq!(parse_decimal_ns(b"18446744073.709551615"), Ok(u64::MAX));
        assert!(parse_decimal_ns(b"18446744073.709551616").is_err());
    }

    #[test]
    fn decimal_timestamps_are_written_truncated_to_the_asked_digits() {
        let mut out = Vec::new();
        push_decimal_ns(&mut out, 1_627_274_455_012_500_999, 6);
        assert_eq!(out, b"1627274455.012500");
        out.clear();
        push_decimal_ns(&mut out, 5, 9);
        assert_eq!(out, b"0.000000005");
    }

    #[test]
    fn civil_dates_round_trip_through_day_counts() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        for z in [-1, 0, 59, 10_000, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(epoch_ns(2017, 9, 30, 22, 6, 13, 191_000_000), Some(1_506_809_173_191_000_000));
        assert_eq!(epoch_ns(2017, 2, 30, 0, 0, 0, 0), None);
    }
}
