//! Bit-field layout for CAN streams whose frames all have the same length (1..=8 bytes).
//!
//! Signals inside CAN payloads are bit fields (10 or 11 bits, not bytes), so a byte-wise delta
//! cannot follow them. For a long stream the encoder looks for a partition of the payload bits
//! (read as a little-endian u64) into fields of 1..=16 bits, each stored raw or as a delta from
//! the previous frame, that minimises the estimated order-0 entropy on a sample of frames; the
//! layout is written into the lane, so decoding needs no DBC. The layout is only a bijective
//! transform: a poor guess costs bytes, never exactness.

use super::varint::{put, unzigzag, zigzag, Reader};
use super::LaneError;

/// Longest field the search considers.
pub(super) const MAX_FIELD_BITS: u8 = 16;
/// Streams shorter than this keep byte columns (the search costs more than it could save).
pub(super) const MIN_FRAMES: usize = 1024;
/// Frames the search looks at: `RUNS` runs of consecutive frames spread over the stream (the
/// start of a block alone may be unrepresentative, e.g. a vehicle still standing).
const SAMPLE: usize = 1024;
const RUNS: usize = 16;
/// Fields are used only when their estimate is below this share of the byte columns' one.
const MIN_GAIN: f64 = 0.92;

/// One field: `bits` wide, stored raw or as the wrapped difference from the previous frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Field {
    pub bits: u8,
    pub delta: bool,
}

fn mask(bits: u8) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// Entropy in bits of a set of symbols (< 2^16) with the Miller-Madow small-sample correction.
struct Hist {
    counts: Vec<u32>,
    touched: Vec<u16>,
}

impl Hist {
    fn new() -> Hist {
        Hist { counts: vec![0; 1 << 16], touched: Vec::new() }
    }

    fn bits(&mut self, symbols: impl Iterator<Item = u16>) -> f64 {
        let mut n = 0u32;
        for s in symbols {
            let c = &mut self.counts[usize::from(s)];
            if *c == 0 {
                self.touched.push(s);
            }
            *c += 1;
            n += 1;
        }
        let nf = f64::from(n.max(1));
        let mut h = 0.0;
        for &s in &self.touched {
            let c = f64::from(self.counts[usize::from(s)]);
            h -= c * (c / nf).log2();
            self.counts[usize::from(s)] = 0;
        }
        let k = self.touched.len() as f64;
        self.touched.clear();
        h + (k - 1.0).max(0.0) / (2.0 * std::f64::consts::LN_2)
    }
}

/// Blocks in a row that may reuse a stream's layout before it is searched again.
pub(super) const REUSE_BLOCKS: u32 = 16;

/// What the last search chose for one stream, carried to the next blocks (D254).
#[derive(Clone, Debug)]
pub(super) struct Hint {
    fields: Option<Vec<Field>>,
    reused: u32,
}

/// Like [`choose`], but first tries the layout an earlier block of the same stream chose: it is
/// kept (without the search, which is about 50 times the cost of checking) while its estimate
/// on this block's sample still beats byte columns by [`MIN_GAIN`], for at most
/// [`REUSE_BLOCKS`] blocks; a hint of byte columns is kept likewise. The result is as exact as
/// any layout; only its size may differ from a fresh search's.
pub(super) fn choose_hinted(
    words: &[u64],
    len: usize,
    hint: &mut Option<Hint>,
) -> Option<Vec<Field>> {
    if words.len() < MIN_FRAMES || !(1..=8).contains(&len) {
        return None;
    }
    if let Some(h) = hint.as_mut().filter(|h| h.reused < REUSE_BLOCKS) {
        let keep = match &h.fields {
            None => true,
            Some(fs) => {
                let sample = sample(words);
                let mut hist = Hist::new();
                layout_cost(&sample, fs, &mut hist) < byte_cost(&sample, len, &mut hist) * MIN_GAIN
            }
        };
        if keep {
            h.reused += 1;
            return h.fields.clone();
        }
    }
    let fields = choose(words, len);
    *hint = Some(Hint { fields: fields.clone(), reused: 0 });
    fields
}

/// `RUNS` runs of consecutive frames spread over the stream (all of it when short).
fn sample(words: &[u64]) -> Vec<u64> {
    if words.len() <= SAMPLE {
        words.to_vec()
    } else {
        let run = SAMPLE / RUNS;
        let stride = (words.len() - run) / (RUNS - 1);
        (0..RUNS).flat_map(|r| &words[r * stride..r * stride + run]).copied().collect()
    }
}

/// Estimated bits of the sample under `fields`.
fn layout_cost(sample: &[u64], fields: &[Field], hist: &mut Hist) -> f64 {
    let mut start = 0u8;
    let mut cost = 0.0;
    for f in fields {
        cost += field_cost(sample, start, f.bits, f.delta, hist);
        start += f.bits;
    }
    cost
}

/// Estimated bits of one field of the sample, raw or as deltas.
fn field_cost(sample: &[u64], start: u8, bits: u8, delta: bool, hist: &mut Hist) -> f64 {
    let m = mask(bits);
    if delta {
        hist.bits(sample.iter().scan(0u64, |p, w| {
            let v = (w >> start) & m;
            let d = v.wrapping_sub(*p) & m;
            *p = v;
            Some(d as u16)
        }))
    } else {
        hist.bits(sample.iter().map(|w| ((w >> start) & m) as u16))
    }
}

/// Estimated bits of the sample as byte columns, each the best of raw, xor and sub.
fn byte_cost(sample: &[u64], len: usize, hist: &mut Hist) -> f64 {
    let mut byte_cost = 0.0;
    for j in 0..len {
        let col = |w: &u64| (*w >> (8 * j)) as u8;
        let raw = hist.bits(sample.iter().map(|w| u16::from(col(w))));
        let xor = hist.bits(sample.iter().scan(0u8, |p, w| {
            let b = col(w);
            let out = b ^ *p;
            *p = b;
            Some(u16::from(out))
        }));
        let sub = hist.bits(sample.iter().scan(0u8, |p, w| {
            let b = col(w);
            let out = b.wrapping_sub(*p);
            *p = b;
            Some(u16::from(out))
        }));
        byte_cost += raw.min(xor).min(sub);
    }
    byte_cost
}

/// Chooses fields for `words` (payloads of `len` bytes as little-endian u64), or `None` when
/// byte columns (best of raw, xor, sub per byte) are estimated to be as small.
pub(super) fn choose(words: &[u64], len: usize) -> Option<Vec<Field>> {
    if words.len() < MIN_FRAMES || !(1..=8).contains(&len) {
        return None;
    }
    let sample = sample(words);
    let mut hist = Hist::new();
    let total_bits = (len * 8) as u8;
    let byte_cost = byte_cost(&sample, len, &mut hist);
    // best[b]: cheapest layout of bits [0, b); choice[b]: the last field.
    let mut best = vec![f64::INFINITY; usize::from(total_bits) + 1];
    let mut choice = vec![Field { bits: 0, delta: false }; usize::from(total_bits) + 1];
    best[0] = 0.0;
    for end in 1..=total_bits {
        for bits in 1..=end.min(MAX_FIELD_BITS) {
            let start = end - bits;
            let raw = field_cost(&sample, start, bits, false, &mut hist);
            let dlt = field_cost(&sample, start, bits, true, &mut hist);
            let (cost, delta) = if dlt < raw { (dlt, true) } else { (raw, false) };
            let total = best[usize::from(start)] + cost;
            if total < best[usize::from(end)] {
                best[usize::from(end)] = total;
                choice[usize::from(end)] = Field { bits, delta };
            }
        }
    }
    if best[usize::from(total_bits)] >= byte_cost * MIN_GAIN {
        return None;
    }
    let mut fields = Vec::new();
    let mut at = total_bits;
    while at > 0 {
        let f = choice[usize::from(at)];
        fields.push(f);
        at -= f.bits;
    }
    fields.reverse();
    Some(fields)
}

/// Sign-extends the low `bits` of `d`.
fn signed(d: u64, bits: u8) -> i64 {
    let shift = 64 - u32::from(bits);
    ((d << shift) as i64) >> shift
}

/// Appends each field's column: varints of raw values, or of zigzag wrapped deltas.
pub(super) fn encode(words: &[u64], fields: &[Field], out: &mut Vec<u8>) {
    let mut start = 0u8;
    for f in fields {
        let m = mask(f.bits);
        let mut prev = 0u64;
        for w in words {
            let v = (w >> start) & m;
            if f.delta {
                put(out, zigzag(signed(v.wrapping_sub(prev) & m, f.bits)));
            } else {
                put(out, v);
            }
            prev = v;
        }
        start += f.bits;
    }
}

/// Reads the columns back into `words` (which start at zero).
pub(super) fn decode(
    fields: &[Field],
    words: &mut [u64],
    input: &mut Reader<'_>,
) -> Result<(), LaneError> {
    let mut start = 0u8;
    for f in fields {
        let m = mask(f.bits);
        let mut prev = 0u64;
        for w in words.iter_mut() {
            let x = input.varint()?;
            let v = if f.delta {
                prev.wrapping_add(unzigzag(x) as u64) & m
            } else if x > m {
                return Err(LaneError::Invalid {
                    section: "CAN payload",
                    field: "bit field",
                    reason: format!("value {x} does not fit {} bits", f.bits),
                });
            } else {
                x
            };
            *w |= v << start;
            prev = v;
        }
        start += f.bits;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Four noise bits, then a 12-bit and an 11-bit counter that straddle byte boundaries.
    fn imu_words(n: usize) -> Vec<u64> {
        let mut x = 0x1234_5678_9abc_def0u64;
        let mut noise = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        (0..n as u64)
            .map(|i| (noise() & 0xF) | ((i * 37) & 0xFFF) << 4 | ((i * 5) & 0x7FF) << 16)
            .collect()
    }

    #[test]
    fn structured_stream_gets_fields_and_round_trips() {
        let words = imu_words(3000);
        let fields = choose(&words, 8).expect("bit fields beat byte columns here");
        assert_eq!(fields.iter().map(|f| usize::from(f.bits)).sum::<usize>(), 64);
        let mut out = Vec::new();
        encode(&words, &fields, &mut out);
        let mut back = vec![0u64; words.len()];
        let mut r = Reader::new(&out, "t");
        decode(&fields, &mut back, &mut r).expect("decode");
        assert!(r.finish().is_ok());
        assert_eq!(back, words);
    }

    #[test]
    fn short_streams_keep_byte_columns() {
        assert_eq!(choose(&imu_words(MIN_FRAMES - 1), 8), None);
    }

    #[test]
    fn any_layout_round_trips_any_words() {
        let words = imu_words(500);
        for bits in 1..=MAX_FIELD_BITS {
            let mut fields = Vec::new();
            let mut left = 64u8;
            let mut delta = false;
            while left > 0 {
                let b = bits.min(left);
                fields.push(Field { bits: b, delta });
                delta = !delta;
                left -= b;
            }
            let mut out = Vec::new();
            encode(&words, &fields, &mut out);
            let mut back = vec![0u64; words.len()];
            decode(&fields, &mut back, &mut Reader::new(&out, "t")).expect("decode");
            assert_eq!(back, words, "fields of {bits} bits");
        }
    }

    /// Bytes drawn independently from four values: byte columns are the natural layout.
    fn byte_words(n: usize) -> Vec<u64> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (0..8).fold(0u64, |w, j| {
                    w | [0x00u64, 0x55, 0xAA, 0xFF][(x >> (2 * j) & 3) as usize] << (8 * j)
                })
            })
            .collect()
    }

    #[test]
    fn a_hint_is_reused_while_it_still_pays_then_searched_again() {
        let words = imu_words(3000);
        let mut hint = None;
        let first = choose_hinted(&words, 8, &mut hint);
        assert_eq!(first, choose(&words, 8));
        assert_eq!(hint.as_ref().map(|h| h.reused), Some(0));
        for n in 1..=REUSE_BLOCKS {
            assert_eq!(choose_hinted(&words, 8, &mut hint), first);
            assert_eq!(hint.as_ref().map(|h| h.reused), Some(n));
        }
        // The budget is spent: a fresh search, and the count starts again.
        assert_eq!(choose_hinted(&words, 8, &mut hint), first);
        assert_eq!(hint.as_ref().map(|h| h.reused), Some(0));
    }

    #[test]
    fn a_hint_that_no_longer_pays_is_dropped_at_once() {
        let mut hint = None;
        assert!(choose_hinted(&imu_words(3000), 8, &mut hint).is_some());
        // The stream changes: the old layout is checked, loses, and byte columns win.
        let noise = byte_words(3000);
        assert_eq!(choose(&noise, 8), None);
        assert_eq!(choose_hinted(&noise, 8, &mut hint), None);
        assert_eq!(hint.as_ref().map(|h| (h.fields.is_none(), h.reused)), Some((true, 0)));
    }
}
