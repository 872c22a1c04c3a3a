//! LEB128 varints and a bounded reader over untrusted bytes.

use super::LaneError;

pub(crate) fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A cursor over one section of a lane. Every read names the section on failure.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    section: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], section: &'static str) -> Reader<'a> {
        Reader { buf, pos: 0, section }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn truncated(&self, need: usize) -> LaneError {
        LaneError::Truncated {
            section: self.section,
            offset: self.pos,
            need,
            have: self.remaining(),
        }
    }

    pub(crate) fn u8(&mut self) -> Result<u8, LaneError> {
        let b = *self.buf.get(self.pos).ok_or_else(|| self.truncated(1))?;
        self.pos += 1;
        Ok(b)
    }

    /// A LEB128 u64 in its shortest form (a non-minimal or over-long encoding is refused, so
    /// every lane has exactly one encoding).
    pub(crate) fn varint(&mut self) -> Result<u64, LaneError> {
        let start = self.pos;
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.u8()?;
            let bits = u64::from(b & 0x7F);
            if i == 9 && b > 1 {
                return Err(LaneError::BadVarint { section: self.section, offset: start });
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                if b == 0 && i > 0 {
                    return Err(LaneError::BadVarint { section: self.section, offset: start });
                }
                return Ok(v);
            }
        }
        Err(LaneError::BadVarint { section: self.section, offset: start })
    }

    /// A varint that must be at most `max` (a count or length about to size an allocation).
    pub(crate) fn bounded(&mut self, field: &'static str, max: u64) -> Result<usize, LaneError> {
        let v = self.varint()?;
        if v > max {
            return Err(LaneError::LimitExceeded { section: self.section, field, value: v, max });
        }
        usize::try_from(v).map_err(|_| LaneError::LimitExceeded {
            section: self.section,
            field,
            value: v,
            max,
        })
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], LaneError> {
        if n > self.remaining() {
            return Err(self.truncated(n));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Fails unless every byte was consumed.
    pub(crate) fn finish(&self) -> Result<(), LaneError> {
        if self.remaining() != 0 {
            return Err(LaneError::TrailingBytes {
                section: self.section,
                extra: self.remaining(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_refuse_non_minimal_forms() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX.into(), u64::MAX] {
            let mut b = Vec::new();
            put(&mut b, v);
            let mut r = Reader::new(&b, "t");
            assert_eq!(r.varint().ok(), Some(v));
            assert!(r.finish().is_ok());
        }
        assert!(Reader::new(&[0x80, 0x00], "t").varint().is_err());
        assert!(Reader::new(&[0xFF; 10], "t").varint().is_err());
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }
}
