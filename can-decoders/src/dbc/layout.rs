//! Where a signal's bits are in the payload, to warn about signals that overlap or do not fit.

use super::model::{ByteOrder, Diagnostic, Message, Multiplexing, Severity, Signal};

/// Largest payload (CAN FD), in bits.
const MAX_BITS: u32 = 512;
/// Above this many signals in one message the overlap check is skipped (it is quadratic).
const MAX_PAIRWISE: usize = 2048;

/// Bit positions (0 = bit 0 of byte 0) a signal occupies, in the DBC's numbering. Motorola signals
/// start at their most significant bit and walk the sawtooth.
pub fn bit_positions(signal: &Signal) -> impl Iterator<Item = u32> {
    let start = u32::from(signal.start_bit);
    let big = signal.byte_order == ByteOrder::BigEndian;
    let mut pos = start;
    (0..u32::from(signal.length)).map(move |i| {
        if !big {
            return start.saturating_add(i);
        }
        let here = pos;
        pos = if pos % 8 == 0 { pos.saturating_add(15) } else { pos - 1 };
        here
    })
}

#[derive(Clone, Copy, Default)]
struct Bits([u64; (MAX_BITS / 64) as usize]);

impl Bits {
    fn of(signal: &Signal) -> Bits {
        let mut b = Bits::default();
        for p in bit_positions(signal).filter(|&p| p < MAX_BITS) {
            if let Some(w) = b.0.get_mut((p / 64) as usize) {
                *w |= 1u64 << (p % 64);
            }
        }
        b
    }

    fn intersects(&self, other: &Bits) -> bool {
        self.0.iter().zip(other.0.iter()).any(|(a, b)| a & b != 0)
    }
}

/// Whether two signals can be in the same frame: multiplexed signals under the same switch only
/// when their value ranges meet; under different switches we cannot tell, so assume not.
fn coexist(a: &Multiplexing, b: &Multiplexing) -> bool {
    match (&a.multiplexed_by, &b.multiplexed_by) {
        (Some(x), Some(y)) if x.switch == y.switch => {
            x.values.iter().any(|&(lo, hi)| y.values.iter().any(|&(l2, h2)| lo <= h2 && l2 <= hi))
        }
        (Some(_), Some(_)) => false,
        _ => true,
    }
}

/// Warnings for signals that extend past the declared length and for overlapping signals. The
/// signals are kept: decoders decode what fits.
pub fn check(message: &Message, out: &mut Vec<Diagnostic>) {
    let limit = u32::from(message.length) * 8;
    let bits: Vec<Bits> = message.signals.iter().map(Bits::of).collect();
    let mut overlaps: Vec<(&str, &str)> = Vec::new();
    for (i, s) in message.signals.iter().enumerate() {
        if bit_positions(s).any(|p| p >= limit) {
            out.push(Diagnostic {
                severity: Severity::Warning,
                line: s.line,
                column: 1,
                message: format!(
                    "signal '{}' (start bit {}, {} bits) does not fit in the {}-byte message '{}'",
                    s.name, s.start_bit, s.length, message.length, message.name
                ),
            });
        }
        // Pairwise, so bounded: real messages have at most a few hundred signals.
        let pairs = if message.signals.len() <= MAX_PAIRWISE { i } else { 0 };
        for (j, other) in message.signals.iter().enumerate().take(pairs) {
            let (Some(a), Some(b)) = (bits.get(i), bits.get(j)) else { continue };
            if a.intersects(b) && coexist(&s.multiplexing, &other.multiplexing) {
                overlaps.push((other.name.as_str(), s.name.as_str()));
            }
        }
    }
    // One finding per message: files with group signals spanning their members (GM) would
    // otherwise drown the real problems.
    if let Some((a, b)) = overlaps.first() {
        let more = match overlaps.len() - 1 {
            0 => String::new(),
            n => format!(" (and {n} more overlapping pairs)"),
        };
        out.push(Diagnostic {
            severity: Severity::Warning,
            line: message.line,
            column: 1,
            message: format!(
                "in message '{}', signal '{b}' overlaps signal '{a}'{more}",
                message.name
            ),
        });
    }
}
