//! Columnar record encoding (codec version 1), laid out for zstd.
//!
//! Records are grouped into *streams*: a CAN stream is one (interface, id, flags) triple, an MQTT
//! stream one topic, a signal stream one signal name. Inside a stream, timestamps are stored as
//! the deviation of each delta from the stream's median period (zigzag varints, in units of the
//! lane's common time step). CAN payloads of long fixed-length streams are split into bit
//! fields (see `fields`); otherwise their byte columns are stored raw, XORed or subtracted with
//! the previous frame of the same stream (per column, the lowest-entropy choice), transposed so
//! that byte 0 of every frame comes first, then byte 1, and so on. Sections of the same kind are
//! kept together so zstd sees homogeneous data. The original record order is restored either by
//! merging the streams on (timestamp, stream index), when the encoder saw that this reproduces
//! it, or from an explicit per-record stream index column. `docs/formats.md` has the byte layout.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use super::fields::{self, Field};
use super::varint::{put, unzigzag, zigzag, Reader};
use super::{LaneError, Limits};
use crate::record::{
    CanFlags, CanRecord, MqttRecord, Record, SignalRecord, MAX_CAN_DATA, MAX_MQTT_PAYLOAD,
    MAX_NAME_BYTES,
};

/// The codec version byte this build writes and reads.
pub const CODEC_VERSION: u8 = 1;

const KIND_CAN: u8 = 0;
const KIND_MQTT: u8 = 1;
const KIND_SIGNAL: u8 = 2;

const LAYOUT_BYTES: u8 = 0;
const LAYOUT_FIELDS: u8 = 1;

const ORDER_MERGED: u8 = 0;
const ORDER_EXPLICIT: u8 = 1;

/// How one byte column of a CAN stream is stored relative to the same byte of the previous
/// frame of that stream. All are exact; which compresses best depends on the signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PayloadDelta {
    /// The byte as is (noise around a mean).
    Raw,
    /// `byte ^ previous` (flags and enums that toggle bits).
    Xor,
    /// `byte - previous` mod 256 (counters and slowly moving values).
    Sub,
    /// Encoder only: per column, whichever of the three has the lowest order-0 entropy.
    #[default]
    Auto,
}

impl PayloadDelta {
    const CHOICES: [PayloadDelta; 3] = [PayloadDelta::Raw, PayloadDelta::Xor, PayloadDelta::Sub];

    fn code(self) -> u8 {
        match self {
            PayloadDelta::Raw | PayloadDelta::Auto => 0,
            PayloadDelta::Xor => 1,
            PayloadDelta::Sub => 2,
        }
    }
    fn from_code(c: u8) -> Option<PayloadDelta> {
        Self::CHOICES.get(usize::from(c)).copied()
    }
    #[inline]
    fn apply(self, cur: u8, prev: u8) -> u8 {
        match self {
            PayloadDelta::Raw | PayloadDelta::Auto => cur,
            PayloadDelta::Xor => cur ^ prev,
            PayloadDelta::Sub => cur.wrapping_sub(prev),
        }
    }
    #[inline]
    fn undo(self, stored: u8, prev: u8) -> u8 {
        match self {
            PayloadDelta::Raw | PayloadDelta::Auto => stored,
            PayloadDelta::Xor => stored ^ prev,
            PayloadDelta::Sub => stored.wrapping_add(prev),
        }
    }
}

/// Order-0 entropy of a column in bits (times a constant): the cost model for `Auto`.
fn entropy(col: &[u8]) -> f64 {
    let mut h = [0u32; 256];
    for &b in col {
        h[usize::from(b)] += 1;
    }
    let n = col.len() as f64;
    h.iter().filter(|&&c| c > 0).map(|&c| -f64::from(c) * (f64::from(c) / n).log2()).sum()
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Can { name: u32, id: u32, flags: u8 },
    Mqtt { name: u32 },
    Signal { name: u32 },
}

/// Median of the deltas after the first (0 when there are none): the stream's period.
fn median(deltas: &[i64]) -> i64 {
    if deltas.is_empty() {
        return 0;
    }
    let mut v = deltas.to_vec();
    let mid = v.len() / 2;
    *v.select_nth_unstable(mid).1
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Encodes records into the codec-v1 plaintext (before compression). Infallible: every value a
/// [`Record`] can hold has an encoding.
pub fn encode(records: &[Record], delta: PayloadDelta) -> Vec<u8> {
    encode_hinted(records, delta, &mut LayoutHints::default())
}

/// Bit-field layouts chosen for earlier blocks of a lane, by CAN stream, so the next blocks
/// can skip most searches (D254). Keep one per lane, across its blocks; a fresh one gives what
/// [`encode`] gives.
#[derive(Debug, Default)]
pub struct LayoutHints {
    streams: HashMap<(Box<str>, u32, u8, u8), Option<fields::Hint>>,
}

/// [`encode`] that takes and updates the lane's [`LayoutHints`]. The bytes decode the same way
/// whatever the hints; only which (exact) layout a stream gets may differ.
pub fn encode_hinted(records: &[Record], delta: PayloadDelta, hints: &mut LayoutHints) -> Vec<u8> {
    let mut names: Vec<&str> = Vec::new();
    // foldhash, seeded per process: SipHash on these 9-byte keys was ~2 % of the gateway's
    // CPU at bus load (D257); a per-process seed keeps the map's behaviour unpredictable to
    // whoever sends the frames.
    let mut name_idx: foldhash::HashMap<&str, u32> = foldhash::HashMap::default();
    let mut keys: Vec<Key> = Vec::new();
    let mut key_idx: foldhash::HashMap<Key, u32> = foldhash::HashMap::default();
    let mut members: Vec<Vec<u32>> = Vec::new();
    let mut sidx: Vec<u32> = Vec::with_capacity(records.len());
    let mut last_name: (*const u8, usize, u32) = (std::ptr::null(), 0, 0);
    for (i, r) in records.iter().enumerate() {
        let name: &str = match r {
            Record::Can(c) => &c.interface,
            Record::Mqtt(m) => &m.topic,
            Record::Signal(s) => &s.name,
        };
        // Most records share one interface `Arc`: skip the hash lookup when it is the same one.
        let ni = if last_name.0 == name.as_ptr() && last_name.1 == name.len() {
            last_name.2
        } else {
            let next = names.len() as u32;
            let ni = *name_idx.entry(name).or_insert_with(|| {
                names.push(name);
                next
            });
            last_name = (name.as_ptr(), name.len(), ni);
            ni
        };
        let key = match r {
            Record::Can(c) => Key::Can { name: ni, id: c.id, flags: c.flags.bits() },
            Record::Mqtt(_) => Key::Mqtt { name: ni },
            Record::Signal(_) => Key::Signal { name: ni },
        };
        let next = keys.len() as u32;
        let s = *key_idx.entry(key).or_insert_with(|| {
            keys.push(key);
            members.push(Vec::new());
            next
        });
        members[s as usize].push(i as u32);
        sidx.push(s);
    }

    let t_base = records.iter().map(Record::t_ns).min().unwrap_or(0);
    let unit = records.iter().fold(0, |g, r| gcd(g, r.t_ns() - t_base)).max(1);
    let sorted = records
        .windows(2)
        .zip(sidx.windows(2))
        .all(|(r, s)| (r[0].t_ns(), s[0]) <= (r[1].t_ns(), s[1]));

    let mut out = Vec::with_capacity(records.len() * 8 + 64);
    out.push(CODEC_VERSION);
    put(&mut out, records.len() as u64);
    put(&mut out, t_base);
    put(&mut out, unit);
    put(&mut out, names.len() as u64);
    for n in &names {
        put(&mut out, n.len() as u64);
        out.extend_from_slice(n.as_bytes());
    }
    put(&mut out, keys.len() as u64);
    for (k, m) in keys.iter().zip(&members) {
        match *k {
            Key::Can { name, id, flags } => {
                out.push(KIND_CAN);
                put(&mut out, name.into());
                put(&mut out, id.into());
                out.push(flags);
            }
            Key::Mqtt { name } => {
                out.push(KIND_MQTT);
                put(&mut out, name.into());
            }
            Key::Signal { name } => {
                out.push(KIND_SIGNAL);
                put(&mut out, name.into());
            }
        }
        put(&mut out, m.len() as u64);
    }

    let mut order = Vec::new();
    if sorted {
        out.push(ORDER_MERGED);
    } else {
        out.push(ORDER_EXPLICIT);
        for s in &sidx {
            put(&mut order, (*s).into());
        }
    }

    let mut ts = Vec::with_capacity(records.len() * 2);
    let mut lens = Vec::with_capacity(records.len());
    let mut can = Vec::with_capacity(records.len() * 8);
    let mut modes = Vec::new();
    let mut col = Vec::new();
    let mut mqtt_meta = Vec::new();
    let mut mqtt_payload = Vec::new();
    let mut signal = Vec::new();
    for (k, m) in keys.iter().zip(&members) {
        let mut prev = 0u64;
        let deltas: Vec<i64> = m
            .iter()
            .map(|&i| {
                let v = (records[i as usize].t_ns() - t_base) / unit;
                let d = v.wrapping_sub(prev) as i64;
                prev = v;
                d
            })
            .collect();
        if !deltas.is_empty() {
            let period = median(&deltas[1..]);
            put(&mut ts, zigzag(period));
            for d in deltas {
                put(&mut ts, zigzag(d.wrapping_sub(period)));
            }
        }
        match k {
            Key::Can { name, id, flags } => {
                let frames: Vec<&CanRecord> = m
                    .iter()
                    .filter_map(|&i| match &records[i as usize] {
                        Record::Can(c) => Some(c),
                        _ => None,
                    })
                    .collect();
                let remote = flags & CanFlags::REMOTE != 0;
                let mut max_len = 0;
                for f in &frames {
                    lens.push(f.len() as u8);
                    max_len = max_len.max(if remote { 0 } else { f.len() });
                }
                let uniform = frames.first().map(|f| f.len()).filter(|&l| {
                    !remote
                        && delta == PayloadDelta::Auto
                        && frames.len() >= fields::MIN_FRAMES
                        && frames.iter().all(|f| f.len() == l)
                });
                let layout = uniform.and_then(|l| {
                    let words: Vec<u64> =
                        frames.iter().map(|f| u64::from_le_bytes(f.first_word())).collect();
                    let stream = (Box::from(names[*name as usize]), *id, *flags, l as u8);
                    let hint = hints.streams.entry(stream).or_default();
                    fields::choose_hinted(&words, l, hint).map(|fs| (fs, words))
                });
                if let Some((fs, words)) = layout {
                    modes.push(LAYOUT_FIELDS);
                    put(&mut modes, fs.len() as u64);
                    for f in &fs {
                        modes.push(f.bits);
                        modes.push(u8::from(f.delta));
                    }
                    fields::encode(&words, &fs, &mut can);
                } else {
                    modes.push(LAYOUT_BYTES);
                    for j in 0..max_len {
                        let mut best = (f64::INFINITY, PayloadDelta::Raw, Vec::new());
                        let fixed = [delta];
                        let choices: &[PayloadDelta] = if delta == PayloadDelta::Auto {
                            &PayloadDelta::CHOICES
                        } else {
                            &fixed
                        };
                        for &d in choices {
                            col.clear();
                            let mut p = 0u8;
                            for f in &frames {
                                let b = f.padded_byte(j);
                                if f.len() > j {
                                    col.push(d.apply(b, p));
                                }
                                p = b;
                            }
                            let cost = if choices.len() == 1 { 0.0 } else { entropy(&col) };
                            if cost < best.0 {
                                best = (cost, d, std::mem::take(&mut col));
                            }
                        }
                        modes.push(best.1.code());
                        can.extend_from_slice(&best.2);
                        col = best.2;
                    }
                }
            }
            Key::Mqtt { .. } => {
                for &i in m {
                    if let Record::Mqtt(r) = &records[i as usize] {
                        mqtt_meta.push(r.qos | (u8::from(r.retain) << 2));
                        put(&mut lens, r.payload.len() as u64);
                        mqtt_payload.extend_from_slice(&r.payload);
                    }
                }
            }
            Key::Signal { .. } => {
                let mut bits = Vec::with_capacity(m.len());
                let mut p = 0u64;
                for &i in m {
                    if let Record::Signal(r) = &records[i as usize] {
                        let b = r.value.to_bits();
                        bits.push((b ^ p).to_le_bytes());
                        p = b;
                    }
                }
                for j in 0..8 {
                    signal.extend(bits.iter().map(|b| b[j]));
                }
            }
        }
    }
    for section in [&order, &ts, &lens, &modes, &can, &mqtt_meta, &mqtt_payload, &signal] {
        put(&mut out, section.len() as u64);
        out.extend_from_slice(section);
    }
    out
}

struct StreamDecl {
    kind: u8,
    name: u32,
    id: u32,
    flags: CanFlags,
    count: usize,
}

/// Decodes untrusted codec-v1 plaintext. Every count and length is checked against the
/// remaining input and `limits` before it sizes an allocation.
pub fn decode(plain: &[u8], limits: &Limits) -> Result<Vec<Record>, LaneError> {
    let mut h = Reader::new(plain, "header");
    let version = h.u8()?;
    if version != CODEC_VERSION {
        return Err(LaneError::UnknownVersion { got: version, want: CODEC_VERSION });
    }
    // Every record costs at least one timestamp byte, so the input length bounds the count.
    let max_records = limits.max_records.min(plain.len()) as u64;
    let n = h.bounded("record count", max_records)?;
    let t_base = h.varint()?;
    let unit = h.varint()?;
    if unit == 0 {
        return Err(LaneError::Invalid {
            section: "header",
            field: "time unit",
            reason: "zero".into(),
        });
    }

    let mut nr = Reader::new(&plain[plain.len() - h.remaining()..], "name table");
    let n_names = nr.bounded("name count", nr.remaining() as u64)?;
    let mut names: Vec<Arc<str>> = Vec::with_capacity(n_names);
    for _ in 0..n_names {
        let len = nr.bounded("name length", MAX_NAME_BYTES as u64)?;
        let bytes = nr.bytes(len)?;
        let s = std::str::from_utf8(bytes).map_err(|e| LaneError::Invalid {
            section: "name table",
            field: "name",
            reason: format!("not UTF-8: {e}"),
        })?;
        names.push(Arc::from(s));
    }

    let mut sr = Reader::new(&plain[plain.len() - nr.remaining()..], "stream table");
    let n_streams = sr.bounded("stream count", (sr.remaining() as u64).min(n as u64))?;
    let mut streams = Vec::with_capacity(n_streams);
    let mut total: u64 = 0;
    for _ in 0..n_streams {
        let kind = sr.u8()?;
        let name = sr.bounded("name index", (names.len() as u64).saturating_sub(1))? as u32;
        if names.is_empty() {
            return Err(LaneError::Invalid {
                section: "stream table",
                field: "name index",
                reason: "the name table is empty".into(),
            });
        }
        let (id, flags) = match kind {
            KIND_CAN => {
                let id = sr.bounded("CAN id", u32::MAX.into())? as u32;
                let bits = sr.u8()?;
                let flags = CanFlags::from_bits(bits).ok_or_else(|| LaneError::Invalid {
                    section: "stream table",
                    field: "CAN flags",
                    reason: format!("reserved bit set in {bits:#04x}"),
                })?;
                let id_bits = if flags.has(CanFlags::EXTENDED) { 29 } else { 11 };
                if !flags.has(CanFlags::ERROR) && id >> id_bits != 0 {
                    return Err(LaneError::Invalid {
                        section: "stream table",
                        field: "CAN id",
                        reason: format!("{id:#x} does not fit {id_bits} bits"),
                    });
                }
                (id, flags)
            }
            KIND_MQTT | KIND_SIGNAL => (0, CanFlags::default()),
            k => {
                return Err(LaneError::Invalid {
                    section: "stream table",
                    field: "stream kind",
                    reason: format!("{k} is not 0 (CAN), 1 (MQTT) or 2 (signal)"),
                })
            }
        };
        let count = sr.bounded("stream record count", n as u64)?;
        total += count as u64;
        streams.push(StreamDecl { kind, name, id, flags, count });
    }
    if total != n as u64 {
        return Err(LaneError::Mismatch {
            section: "stream table",
            field: "sum of stream record counts",
            expected: n as u64,
            got: total,
        });
    }
    let order_mode = sr.u8()?;
    let mut rest = Reader::new(&plain[plain.len() - sr.remaining()..], "section table");
    let mut section = |name: &'static str| -> Result<Reader<'_>, LaneError> {
        let len = rest.bounded("section length", rest.remaining() as u64)?;
        Ok(Reader::new(rest.bytes(len)?, name))
    };
    let mut order = section("order")?;
    let mut ts = section("timestamps")?;
    let mut lens = section("lengths")?;
    let mut modes = section("column deltas")?;
    let mut can = section("CAN payload")?;
    let mut mqtt_meta = section("MQTT flags")?;
    let mut mqtt_payload = section("MQTT payload")?;
    let mut signal = section("signal values")?;
    rest.finish()?;

    let mut per_stream: Vec<std::vec::IntoIter<Record>> = Vec::with_capacity(streams.len());
    for s in &streams {
        let mut times = Vec::with_capacity(s.count);
        let mut prev = 0u64;
        let period = if s.count > 0 { unzigzag(ts.varint()?) } else { 0 };
        for _ in 0..s.count {
            let d = period.wrapping_add(unzigzag(ts.varint()?));
            let v = prev.wrapping_add(d as u64);
            let t = v.checked_mul(unit).and_then(|x| x.checked_add(t_base)).ok_or_else(|| {
                LaneError::Invalid {
                    section: "timestamps",
                    field: "timestamp",
                    reason: format!("{v} units of {unit} ns past {t_base} overflows u64"),
                }
            })?;
            times.push(t);
            prev = v;
        }
        let name = &names[s.name as usize];
        let recs: Vec<Record> = match s.kind {
            KIND_CAN => decode_can(s, name, &times, &mut lens, &mut modes, &mut can)?,
            KIND_MQTT => {
                let mut v = Vec::with_capacity(s.count);
                for &t in &times {
                    let meta = mqtt_meta.u8()?;
                    if meta > 0b110 || meta & 3 == 3 {
                        return Err(LaneError::Invalid {
                            section: "MQTT flags",
                            field: "qos/retain",
                            reason: format!("{meta:#04x} (qos must be 0..=2, bits 3.. zero)"),
                        });
                    }
                    let len = lens.bounded("MQTT payload length", MAX_MQTT_PAYLOAD as u64)?;
                    let payload = mqtt_payload.bytes(len)?.to_vec();
                    v.push(Record::Mqtt(MqttRecord {
                        t_ns: t,
                        topic: name.clone(),
                        payload,
                        qos: meta & 3,
                        retain: meta & 4 != 0,
                    }));
                }
                v
            }
            _ => {
                let cols = signal.bytes(s.count * 8)?;
                let mut v = Vec::with_capacity(s.count);
                let mut p = 0u64;
                for (i, &t) in times.iter().enumerate() {
                    let mut le = [0u8; 8];
                    for (j, b) in le.iter_mut().enumerate() {
                        *b = cols[j * s.count + i];
                    }
                    p ^= u64::from_le_bytes(le);
                    v.push(Record::Signal(SignalRecord {
                        t_ns: t,
                        name: name.clone(),
                        value: f64::from_bits(p),
                    }));
                }
                v
            }
        };
        per_stream.push(recs.into_iter());
    }
    for r in [&ts, &lens, &modes, &can, &mqtt_meta, &mqtt_payload, &signal] {
        r.finish()?;
    }

    let mut out = Vec::with_capacity(n);
    match order_mode {
        ORDER_MERGED => {
            order.finish()?;
            let mut heap: BinaryHeap<Reverse<(u64, usize)>> = per_stream
                .iter()
                .enumerate()
                .filter_map(|(i, it)| it.as_slice().first().map(|r| Reverse((r.t_ns(), i))))
                .collect();
            while let Some(Reverse((_, i))) = heap.pop() {
                let it = &mut per_stream[i];
                if let Some(r) = it.next() {
                    out.push(r);
                }
                if let Some(r) = it.as_slice().first() {
                    heap.push(Reverse((r.t_ns(), i)));
                }
            }
        }
        ORDER_EXPLICIT => {
            let max = (per_stream.len() as u64).saturating_sub(1);
            for _ in 0..n {
                let s = order.bounded("stream index", max)?;
                let r = per_stream.get_mut(s).and_then(Iterator::next).ok_or_else(|| {
                    LaneError::Invalid {
                        section: "order",
                        field: "stream index",
                        reason: format!("stream {s} has no records left"),
                    }
                })?;
                out.push(r);
            }
            order.finish()?;
        }
        m => {
            return Err(LaneError::Invalid {
                section: "stream table",
                field: "order mode",
                reason: format!("{m} is neither 0 (merged) nor 1 (explicit)"),
            })
        }
    }
    Ok(out)
}

fn decode_can(
    s: &StreamDecl,
    name: &Arc<str>,
    times: &[u64],
    lens: &mut Reader<'_>,
    modes: &mut Reader<'_>,
    can: &mut Reader<'_>,
) -> Result<Vec<Record>, LaneError> {
    let remote = s.flags.has(CanFlags::REMOTE);
    let max = if remote || !s.flags.has(CanFlags::FD) { 8 } else { MAX_CAN_DATA };
    let ls = lens.bytes(s.count)?;
    if let Some(&bad) = ls.iter().find(|&&l| usize::from(l) > max) {
        return Err(LaneError::Invalid {
            section: "lengths",
            field: "CAN length",
            reason: format!("{bad} > {max} for CAN id {:#x} flags {:?}", s.id, s.flags),
        });
    }
    let mut data = vec![[0u8; MAX_CAN_DATA]; s.count];
    let layout = modes.u8()?;
    match layout {
        LAYOUT_BYTES => {
            let max_len = if remote { 0 } else { ls.iter().copied().max().unwrap_or(0) as usize };
            for j in 0..max_len {
                let code = modes.u8()?;
                let delta = PayloadDelta::from_code(code).ok_or_else(|| LaneError::Invalid {
                    section: "column deltas",
                    field: "delta code",
                    reason: format!("{code} is not 0 (raw), 1 (xor) or 2 (sub)"),
                })?;
                let mut p = 0u8;
                for (d, &l) in data.iter_mut().zip(ls) {
                    if usize::from(l) > j {
                        d[j] = delta.undo(can.u8()?, p);
                    }
                    p = d[j];
                }
            }
        }
        LAYOUT_FIELDS => {
            let bad = |reason: String| LaneError::Invalid {
                section: "column deltas",
                field: "bit-field layout",
                reason,
            };
            let len = usize::from(ls.first().copied().unwrap_or(0));
            if remote || len == 0 || len > 8 || ls.iter().any(|&l| usize::from(l) != len) {
                return Err(bad(format!(
                    "CAN id {:#x}: fields need non-remote frames of one length 1..=8",
                    s.id
                )));
            }
            let k = modes.bounded("field count", 64)?;
            let mut fs = Vec::with_capacity(k);
            let mut total = 0usize;
            for _ in 0..k {
                let bits = modes.u8()?;
                let delta = modes.u8()?;
                if bits == 0 || bits > fields::MAX_FIELD_BITS || delta > 1 {
                    return Err(bad(format!("field of {bits} bits, mode {delta}")));
                }
                total += usize::from(bits);
                fs.push(Field { bits, delta: delta == 1 });
            }
            if total != len * 8 {
                return Err(bad(format!("fields cover {total} bits, frames have {}", len * 8)));
            }
            let mut words = vec![0u64; s.count];
            fields::decode(&fs, &mut words, can)?;
            for (d, w) in data.iter_mut().zip(words) {
                d[..8].copy_from_slice(&w.to_le_bytes());
            }
        }
        other => {
            return Err(LaneError::Invalid {
                section: "column deltas",
                field: "payload layout",
                reason: format!("{other} is neither 0 (byte columns) nor 1 (bit fields)"),
            })
        }
    }
    Ok(times
        .iter()
        .zip(ls)
        .zip(data)
        .map(|((&t, &len), d)| {
            Record::Can(CanRecord::from_parts(t, name.clone(), s.id, s.flags, len, d))
        })
        .collect())
}
