//! Compiled signal plans: where a signal's bits are (byte offset, shift, mask precomputed), how its
//! raw bits are interpreted, and how raw becomes physical, exactly as cantools does it.

use crate::dbc::{ByteOrder, ValueType};
use crate::frame::MAX_DATA_LEN;

use super::RawValue;

/// Highest byte offset a 16-byte window can start at inside the 64-byte padded buffer.
const MAX_BASE: usize = MAX_DATA_LEN - 16;

/// Where a signal's bits are: a 16-byte window of the zero-padded frame buffer, loaded as one
/// `u128` (little endian for Intel, big endian for Motorola), then shifted and masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BitPlan {
    base: u8,
    shift: u8,
    big_endian: bool,
    /// Bytes of payload the signal needs to be present entirely (its last byte, plus one).
    pub(crate) need_bytes: u8,
    length: u8,
    mask: u64,
}

impl BitPlan {
    /// The plan for a signal as the DBC writes it (Motorola: `start_bit` is the MSB in sawtooth
    /// numbering). `None` when the length is not 1..=64 or the signal does not fit in 64 bytes.
    pub(crate) fn new(start_bit: u16, length: u16, order: ByteOrder) -> Option<BitPlan> {
        if !(1..=64).contains(&length) {
            return None;
        }
        let start = usize::from(start_bit);
        let len = usize::from(length);
        // First bit of the signal in "stream" numbering: for Intel the LSB counted from byte 0
        // bit 0 upwards; for Motorola the MSB counted from byte 0 bit 7 (network order).
        let first = match order {
            ByteOrder::LittleEndian => start,
            ByteOrder::BigEndian => 8 * (start / 8) + (7 - start % 8),
        };
        let end = first + len;
        if end > 8 * MAX_DATA_LEN {
            return None;
        }
        let base = (first / 8).min(MAX_BASE);
        let rel = first - 8 * base;
        let shift = match order {
            ByteOrder::LittleEndian => rel,
            ByteOrder::BigEndian => 128 - rel - len,
        };
        let mask = if len == 64 { u64::MAX } else { (1u64 << len) - 1 };
        Some(BitPlan {
            base: u8::try_from(base).ok()?,
            shift: u8::try_from(shift).ok()?,
            big_endian: order == ByteOrder::BigEndian,
            need_bytes: u8::try_from(end.div_ceil(8)).ok()?,
            length: u8::try_from(len).ok()?,
            mask,
        })
    }

    pub(crate) fn length(&self) -> u32 {
        u32::from(self.length)
    }

    /// The signal's raw bits, right-aligned.
    #[inline(always)]
    pub(crate) fn extract(&self, buf: &[u8; MAX_DATA_LEN]) -> u64 {
        let window = match buf.get(usize::from(self.base)..).and_then(|w| w.first_chunk::<16>()) {
            Some(w) => *w,
            None => [0; 16],
        };
        let word =
            if self.big_endian { u128::from_be_bytes(window) } else { u128::from_le_bytes(window) };
        (word.wrapping_shr(u32::from(self.shift)) as u64) & self.mask
    }

    /// ORs the low `length` bits of `raw` into the buffer at the signal's position.
    pub(crate) fn insert(&self, buf: &mut [u8; MAX_DATA_LEN], raw: u64) {
        let word = u128::from(raw & self.mask) << self.shift;
        let bytes = if self.big_endian { word.to_be_bytes() } else { word.to_le_bytes() };
        let base = usize::from(self.base);
        if let Some(dst) = buf.get_mut(base..base + 16) {
            for (d, s) in dst.iter_mut().zip(bytes) {
                *d |= s;
            }
        }
    }
}

/// How the raw bits are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RawKind {
    Unsigned,
    Signed,
    Float32,
    Float64,
}

impl RawKind {
    pub(crate) fn from_model(vt: ValueType) -> RawKind {
        match vt {
            ValueType::Unsigned => RawKind::Unsigned,
            ValueType::Signed => RawKind::Signed,
            ValueType::Float32 => RawKind::Float32,
            ValueType::Float64 => RawKind::Float64,
        }
    }

    pub(crate) fn is_float(self) -> bool {
        matches!(self, RawKind::Float32 | RawKind::Float64)
    }
}

/// Raw to physical, following cantools' `BaseConversion.factory`:
/// - `Identity` when factor is 1 and offset 0: the raw value itself;
/// - `Int` when both are integral and the signal is not a float: exact integer arithmetic (cantools
///   uses Python ints; `_is_integer` accepts `2.0` as well as `2`, so deciding by `fract() == 0`
///   matches cantools for every value our `f64` model can hold), converted once to `f64`;
/// - `Float` otherwise: `raw as f64 * factor + offset`, two roundings, no fused multiply-add.
///
/// Integral factors or offsets of magnitude 2^63 or more do not fit the `i128` arithmetic and fall
/// back to `Float`; only then can a value differ from cantools' (in the last bits, for raw values
/// above 2^53).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Conversion {
    Identity,
    Int { factor: i64, offset: i64 },
    Float { factor: f64, offset: f64 },
}

const I63: f64 = 9_223_372_036_854_775_808.0;

fn integral_i64(x: f64) -> Option<i64> {
    if x.is_finite() && x.fract() == 0.0 && x.abs() < I63 {
        Some(x as i64)
    } else {
        None
    }
}

impl Conversion {
    pub(crate) fn new(factor: f64, offset: f64, is_float: bool) -> Conversion {
        if factor == 1.0 && offset == 0.0 {
            return Conversion::Identity;
        }
        if !is_float {
            if let (Some(factor), Some(offset)) = (integral_i64(factor), integral_i64(offset)) {
                return Conversion::Int { factor, offset };
            }
        }
        Conversion::Float { factor, offset }
    }

    /// The physical value of a raw value, bit-exact with cantools' `raw_to_scaled`.
    #[inline(always)]
    pub(crate) fn physical(self, raw: RawValue) -> f64 {
        match (self, raw) {
            (Conversion::Identity, r) => r.as_f64(),
            (Conversion::Int { factor, offset }, RawValue::UInt(u)) => {
                // |u| < 2^64, |factor|, |offset| < 2^63: the result stays below 2^127.
                i128::from(u).wrapping_mul(i128::from(factor)).wrapping_add(i128::from(offset))
                    as f64
            }
            (Conversion::Int { factor, offset }, RawValue::Int(i)) => {
                i128::from(i).wrapping_mul(i128::from(factor)).wrapping_add(i128::from(offset))
                    as f64
            }
            (Conversion::Int { factor, offset }, RawValue::Float(f)) => {
                f * factor as f64 + offset as f64
            }
            (Conversion::Float { factor, offset }, r) => r.as_f64() * factor + offset,
        }
    }

    /// cantools' multiplexer number for a switch without a matching value-table entry:
    /// `int(scaled)`, truncating toward zero. `None` when the scaled value is not finite.
    pub(crate) fn mux_number(self, raw: RawValue) -> Option<i128> {
        match (self, raw) {
            (Conversion::Identity, RawValue::UInt(u)) => Some(i128::from(u)),
            (Conversion::Identity, RawValue::Int(i)) => Some(i128::from(i)),
            (Conversion::Int { factor, offset }, RawValue::UInt(u)) => Some(
                i128::from(u).wrapping_mul(i128::from(factor)).wrapping_add(i128::from(offset)),
            ),
            (Conversion::Int { factor, offset }, RawValue::Int(i)) => Some(
                i128::from(i).wrapping_mul(i128::from(factor)).wrapping_add(i128::from(offset)),
            ),
            _ => {
                let v = self.physical(raw);
                v.is_finite().then_some(v.trunc() as i128)
            }
        }
    }

    /// Physical to raw for an integer signal, as cantools' `numeric_scaled_to_raw`; returns the
    /// unrounded raw value (the caller rounds half to even, like Python's `round`).
    pub(crate) fn raw_unrounded(self, value: f64) -> f64 {
        match self {
            Conversion::Identity => value,
            // cantools: `divmod(value - offset, scale)`; when the remainder is 0 it takes the
            // quotient, otherwise `(value - offset) / scale`. Both equal the correctly rounded
            // quotient when the division is exact, so a plain division reproduces it.
            Conversion::Int { factor, offset } => (value - offset as f64) / factor as f64,
            Conversion::Float { factor, offset } => (value - offset) / factor,
        }
    }

    pub(crate) fn factor(self) -> f64 {
        match self {
            Conversion::Identity => 1.0,
            Conversion::Int { factor, .. } => factor as f64,
            Conversion::Float { factor, .. } => factor,
        }
    }
}

/// Everything the hot loop needs about one signal, kept small and together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SignalPlan {
    pub(crate) bits: BitPlan,
    pub(crate) kind: RawKind,
    pub(crate) conversion: Conversion,
}

impl SignalPlan {
    /// The raw value of this signal in `buf`.
    #[inline(always)]
    pub(crate) fn raw(&self, buf: &[u8; MAX_DATA_LEN]) -> RawValue {
        let bits = self.bits.extract(buf);
        match self.kind {
            RawKind::Unsigned => RawValue::UInt(bits),
            RawKind::Signed => {
                let unused = 64u32.wrapping_sub(self.bits.length());
                RawValue::Int((bits.wrapping_shl(unused) as i64).wrapping_shr(unused))
            }
            RawKind::Float32 => RawValue::Float(f64::from(f32::from_bits(bits as u32))),
            RawKind::Float64 => RawValue::Float(f64::from_bits(bits)),
        }
    }

    /// The raw bits to store for a raw value; `None` when it does not fit the signal.
    pub(crate) fn raw_bits(&self, raw: RawValue) -> Option<u64> {
        let len = self.bits.length();
        match (self.kind, raw) {
            (RawKind::Float32, RawValue::Float(f)) => {
                // Python's struct refuses a finite value that rounds to an f32 infinity.
                let single = f as f32;
                (single.is_finite() || !f.is_finite()).then_some(u64::from(single.to_bits()))
            }
            (RawKind::Float64, RawValue::Float(f)) => Some(f.to_bits()),
            (RawKind::Unsigned, RawValue::UInt(u)) => (len == 64 || u >> len == 0).then_some(u),
            (RawKind::Unsigned, RawValue::Int(i)) => {
                u64::try_from(i).ok().and_then(|u| self.raw_bits(RawValue::UInt(u)))
            }
            (RawKind::Signed, RawValue::Int(i)) => {
                let min = i128::MIN >> (128 - len);
                let max = !min;
                (min..=max).contains(&i128::from(i)).then_some(i as u64)
            }
            (RawKind::Signed, RawValue::UInt(u)) => {
                i64::try_from(u).ok().and_then(|i| self.raw_bits(RawValue::Int(i)))
            }
            (_, RawValue::Float(_)) | (RawKind::Float32 | RawKind::Float64, _) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buf(bytes: &[u8]) -> [u8; MAX_DATA_LEN] {
        let mut b = [0u8; MAX_DATA_LEN];
        b[..bytes.len()].copy_from_slice(bytes);
        b
    }

    #[test]
    fn motorola_start_bit_is_the_msb_in_sawtooth_numbering() {
        // 16-bit Motorola signal with MSB at bit 7 of byte 0: bytes 0..2 big endian.
        let p = BitPlan::new(7, 16, ByteOrder::BigEndian).expect("fits");
        assert_eq!(p.extract(&buf(&[0x12, 0x34, 0x56])), 0x1234);
        // 4 bits with MSB at bit 3 of byte 1: the low nibble of byte 1.
        let p = BitPlan::new(11, 4, ByteOrder::BigEndian).expect("fits");
        assert_eq!(p.extract(&buf(&[0xFF, 0xA5])), 0x5);
    }

    #[test]
    fn signals_at_the_end_of_a_64_byte_buffer_are_reachable_and_past_it_rejected() {
        let p = BitPlan::new(504, 8, ByteOrder::LittleEndian).expect("fits");
        let mut b = [0u8; MAX_DATA_LEN];
        b[63] = 0xAB;
        assert_eq!(p.extract(&b), 0xAB);
        assert!(BitPlan::new(505, 8, ByteOrder::LittleEndian).is_none());
        assert!(BitPlan::new(0, 65, ByteOrder::LittleEndian).is_none());
    }

    #[test]
    fn insert_then_extract_round_trips_a_nine_byte_spanning_signal() {
        for order in [ByteOrder::LittleEndian, ByteOrder::BigEndian] {
            let p = BitPlan::new(5, 64, order).expect("fits");
            let mut b = [0u8; MAX_DATA_LEN];
            p.insert(&mut b, 0xDEAD_BEEF_0123_4567);
            assert_eq!(p.extract(&b), 0xDEAD_BEEF_0123_4567, "{order:?}");
        }
    }
}
