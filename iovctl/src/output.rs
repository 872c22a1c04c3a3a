//! Output formats of `iovctl decode`: one `Sink` per format, fed frame by frame, so memory stays
//! bounded whatever the trace size (the summary keeps per-signal statistics only).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::Duration;

use can_decoders::decode::{CompiledMessage, Decoded};
use can_decoders::{CanId, FrameKind, TimedFrame};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// One JSON object per frame.
    Jsonl,
    /// One row per decoded signal: t_ns,iface,id,ext,msg,signal,value,unit,label.
    Csv,
    /// Aligned text, one line per frame, for people.
    Table,
    /// Per-message and per-signal statistics and the decoding rate, for people.
    Summary,
}

/// What a run saw, for the summary and the exit status.
#[derive(Debug, Default)]
pub struct RunStats {
    pub trace: String,
    pub frames: u64,
    pub matched: u64,
    pub unmatched: u64,
    pub truncated: u64,
    pub bad_records: u64,
    pub elapsed: Duration,
}

pub trait Sink {
    fn frame(
        &mut self,
        record: &TimedFrame,
        iface: &str,
        message: Option<&CompiledMessage>,
        decoded: &Decoded,
    ) -> io::Result<()>;
    fn finish(&mut self, stats: &RunStats) -> io::Result<()>;
}

pub fn sink<'a, W: Write + 'a>(format: OutputFormat, out: W) -> Box<dyn Sink + 'a> {
    match format {
        OutputFormat::Jsonl => Box::new(Jsonl { out, shadowed: Shadowed::default() }),
        OutputFormat::Csv => Box::new(Csv { out, header_written: false }),
        OutputFormat::Table => Box::new(Table { out }),
        OutputFormat::Summary => {
            Box::new(Summary { out, messages: BTreeMap::new(), unmatched: UnmatchedIds::default() })
        }
    }
}

/// Writes a JSON number; non-finite values (a float signal can hold NaN) become `null`.
fn write_json_number(out: &mut impl Write, v: f64) -> io::Result<()> {
    if v.is_finite() {
        let mut buf = ryu::Buffer::new();
        let s = buf.format_finite(v);
        // ryu writes integral values as "1.0"; JSON readers treat 1.0 and 1 alike, keep it short.
        out.write_all(s.strip_suffix(".0").unwrap_or(s).as_bytes())
    } else {
        out.write_all(b"null")
    }
}

fn write_json_string(out: &mut impl Write, s: &str) -> io::Result<()> {
    serde_json::to_writer(&mut *out, s).map_err(io::Error::from)
}

fn kind_name(kind: FrameKind) -> Option<&'static str> {
    match kind {
        FrameKind::Data | FrameKind::Fd { .. } => None,
        FrameKind::Remote => Some("remote"),
        FrameKind::Error => Some("error"),
    }
}

struct Jsonl<W> {
    out: W,
    shadowed: Shadowed,
}

/// Signals whose name repeats an earlier signal of the same message (real DBCs have them, e.g.
/// truncated J1939 names). A JSON object cannot hold a key twice: like cantools, the first wins.
#[derive(Default)]
struct Shadowed {
    /// By message address (stable for the decoder's lifetime): which signal indexes are shadowed.
    by_message: std::collections::HashMap<usize, Vec<bool>>,
}

impl Shadowed {
    fn of(&mut self, m: &CompiledMessage) -> &[bool] {
        self.by_message.entry(m as *const CompiledMessage as usize).or_insert_with(|| {
            let mut seen = std::collections::HashSet::new();
            m.signals().iter().map(|s| !seen.insert(s.name())).collect()
        })
    }
}

impl<W: Write> Sink for Jsonl<W> {
    fn frame(
        &mut self,
        record: &TimedFrame,
        iface: &str,
        message: Option<&CompiledMessage>,
        decoded: &Decoded,
    ) -> io::Result<()> {
        let out = &mut self.out;
        let shadowed = message.map(|m| self.shadowed.of(m)).unwrap_or(&[]);
        write!(out, "{{\"t_ns\":{},\"iface\":", record.t_ns)?;
        write_json_string(out, iface)?;
        let id = record.frame.id;
        write!(out, ",\"id\":{},\"ext\":{}", id.raw(), id.is_extended())?;
        if let Some(kind) = kind_name(record.frame.kind) {
            write!(out, ",\"kind\":\"{kind}\"")?;
        }
        out.write_all(b",\"msg\":")?;
        match message {
            Some(m) => write_json_string(out, m.name())?,
            None => out.write_all(b"null")?,
        }
        out.write_all(b",\"sig\":{")?;
        if let Some(m) = message {
            let mut first = true;
            for v in &decoded.values {
                if shadowed.get(v.signal).copied().unwrap_or(false) {
                    continue;
                }
                if !first {
                    out.write_all(b",")?;
                }
                first = false;
                write_json_string(out, m.signals()[v.signal].name())?;
                out.write_all(b":")?;
                write_json_number(out, v.value)?;
            }
        }
        out.write_all(b"},\"label\":{")?;
        if let Some(m) = message {
            let mut first = true;
            for v in &decoded.values {
                if shadowed.get(v.signal).copied().unwrap_or(false) {
                    continue;
                }
                let signal = &m.signals()[v.signal];
                if let Some(label) = signal.label(&v.raw) {
                    if !first {
                        out.write_all(b",")?;
                    }
                    first = false;
                    write_json_string(out, signal.name())?;
                    out.write_all(b":")?;
                    write_json_string(out, label)?;
                }
            }
        }
        out.write_all(b"}")?;
        if decoded.truncated {
            out.write_all(b",\"truncated\":true")?;
        }
        if let Some(sa) = decoded.j1939_source_address {
            write!(out, ",\"sa\":{sa}")?;
        }
        out.write_all(b"}\n")
    }

    fn finish(&mut self, _stats: &RunStats) -> io::Result<()> {
        self.out.flush()
    }
}

struct Csv<W> {
    out: W,
    header_written: bool,
}

/// Quotes a CSV field when it needs it (RFC 4180).
fn write_csv_field(out: &mut impl Write, s: &str) -> io::Result<()> {
    if s.contains([',', '"', '\n', '\r']) {
        write!(out, "\"{}\"", s.replace('"', "\"\""))
    } else {
        out.write_all(s.as_bytes())
    }
}

impl<W: Write> Sink for Csv<W> {
    fn frame(
        &mut self,
        record: &TimedFrame,
        iface: &str,
        message: Option<&CompiledMessage>,
        decoded: &Decoded,
    ) -> io::Result<()> {
        let out = &mut self.out;
        if !self.header_written {
            out.write_all(b"t_ns,iface,id,ext,msg,signal,value,unit,label\n")?;
            self.header_written = true;
        }
        let Some(m) = message else { return Ok(()) };
        for v in &decoded.values {
            let signal = &m.signals()[v.signal];
            write!(out, "{},", record.t_ns)?;
            write_csv_field(out, iface)?;
            write!(out, ",{},{},", record.frame.id.raw(), record.frame.id.is_extended())?;
            write_csv_field(out, m.name())?;
            out.write_all(b",")?;
            write_csv_field(out, signal.name())?;
            out.write_all(b",")?;
            write_json_number(out, v.value)?;
            out.write_all(b",")?;
            write_csv_field(out, signal.unit())?;
            out.write_all(b",")?;
            write_csv_field(out, signal.label(&v.raw).unwrap_or(""))?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }

    fn finish(&mut self, _stats: &RunStats) -> io::Result<()> {
        self.out.flush()
    }
}

struct Table<W> {
    out: W,
}

fn format_time(t_ns: u64) -> String {
    format!("{}.{:06}", t_ns / 1_000_000_000, (t_ns % 1_000_000_000) / 1_000)
}

impl<W: Write> Sink for Table<W> {
    fn frame(
        &mut self,
        record: &TimedFrame,
        iface: &str,
        message: Option<&CompiledMessage>,
        decoded: &Decoded,
    ) -> io::Result<()> {
        let out = &mut self.out;
        let name = message.map_or("?", |m| m.name());
        write!(
            out,
            "{:>18}  {:<6} {:>8}  {:<24}",
            format_time(record.t_ns),
            iface,
            record.frame.id.to_string(),
            name
        )?;
        if let Some(kind) = kind_name(record.frame.kind) {
            write!(out, " [{kind}]")?;
        }
        if let Some(m) = message {
            for v in &decoded.values {
                let signal = &m.signals()[v.signal];
                write!(out, " {}={}", signal.name(), v.value)?;
                if !signal.unit().is_empty() {
                    write!(out, " {}", signal.unit())?;
                }
                if let Some(label) = signal.label(&v.raw) {
                    write!(out, " ({label})")?;
                }
            }
        } else {
            out.write_all(b" ")?;
            for b in record.frame.data() {
                write!(out, "{b:02X}")?;
            }
        }
        if decoded.truncated {
            out.write_all(b" [truncated]")?;
        }
        out.write_all(b"\n")
    }

    fn finish(&mut self, _stats: &RunStats) -> io::Result<()> {
        self.out.flush()
    }
}

#[derive(Default)]
struct SignalStats {
    name: String,
    unit: String,
    count: u64,
    min: f64,
    max: f64,
    sum: f64,
    last: f64,
    last_label: Option<String>,
}

#[derive(Default)]
struct MessageStats {
    id: String,
    frames: u64,
    signals: Vec<SignalStats>,
}

struct Summary<W> {
    out: W,
    messages: BTreeMap<String, MessageStats>,
    unmatched: UnmatchedIds,
}

/// Frame counts of the ids no DBC message matched, per interface, so a user sees which DBC is
/// missing. Bounded: past `MAX_UNMATCHED_IDS` distinct ids, further ones are only counted.
#[derive(Default)]
struct UnmatchedIds {
    counts: BTreeMap<(String, bool, u32), u64>,
    overflow_frames: u64,
}

const MAX_UNMATCHED_IDS: usize = 4096;
const SHOWN_UNMATCHED_IDS: usize = 10;

impl UnmatchedIds {
    fn add(&mut self, iface: &str, id: CanId) {
        let key = (iface.to_string(), id.is_extended(), id.raw());
        if let Some(n) = self.counts.get_mut(&key) {
            *n += 1;
        } else if self.counts.len() < MAX_UNMATCHED_IDS {
            self.counts.insert(key, 1);
        } else {
            self.overflow_frames += 1;
        }
    }

    fn write(&self, out: &mut impl Write) -> io::Result<()> {
        if self.counts.is_empty() {
            return Ok(());
        }
        let mut by_count: Vec<_> = self.counts.iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        writeln!(
            out,
            "Ids no DBC message matched ({} distinct{}), most frequent first:",
            self.counts.len(),
            if self.overflow_frames > 0 { ", more not tracked" } else { "" }
        )?;
        for ((iface, extended, raw), n) in by_count.iter().take(SHOWN_UNMATCHED_IDS) {
            let id = if *extended { CanId::extended(*raw) } else { CanId::standard(*raw) };
            let shown = id.map_or_else(|| format!("{raw:X}"), |id| id.to_string());
            writeln!(out, "  {iface:<8} {shown:>8}  {n} frames")?;
        }
        if by_count.len() > SHOWN_UNMATCHED_IDS {
            writeln!(out, "  ... {} more ids", by_count.len() - SHOWN_UNMATCHED_IDS)?;
        }
        if self.overflow_frames > 0 {
            writeln!(
                out,
                "  ... {} frames of ids beyond the first {MAX_UNMATCHED_IDS}",
                self.overflow_frames
            )?;
        }
        writeln!(out)
    }
}

impl<W: Write> Sink for Summary<W> {
    fn frame(
        &mut self,
        record: &TimedFrame,
        iface: &str,
        message: Option<&CompiledMessage>,
        decoded: &Decoded,
    ) -> io::Result<()> {
        let Some(m) = message else {
            if record.frame.kind != FrameKind::Error {
                self.unmatched.add(iface, record.frame.id);
            }
            return Ok(());
        };
        if !self.messages.contains_key(m.name()) {
            let stats = MessageStats {
                id: m.id().to_string(),
                frames: 0,
                signals: m
                    .signals()
                    .iter()
                    .map(|s| SignalStats {
                        name: s.name().to_string(),
                        unit: s.unit().to_string(),
                        min: f64::INFINITY,
                        max: f64::NEG_INFINITY,
                        ..SignalStats::default()
                    })
                    .collect(),
            };
            self.messages.insert(m.name().to_string(), stats);
        }
        let Some(stats) = self.messages.get_mut(m.name()) else { return Ok(()) };
        stats.frames += 1;
        for v in &decoded.values {
            let Some(s) = stats.signals.get_mut(v.signal) else { continue };
            s.count += 1;
            s.min = s.min.min(v.value);
            s.max = s.max.max(v.value);
            s.sum += v.value;
            s.last = v.value;
            let label = m.signals()[v.signal].label(&v.raw);
            if s.last_label.as_deref() != label {
                s.last_label = label.map(str::to_string);
            }
        }
        Ok(())
    }

    fn finish(&mut self, stats: &RunStats) -> io::Result<()> {
        let out = &mut self.out;
        let secs = stats.elapsed.as_secs_f64();
        writeln!(out, "Decoded {}", stats.trace)?;
        writeln!(
            out,
            "  {} frames: {} matched a DBC message, {} did not, {} truncated, {} malformed records skipped",
            stats.frames, stats.matched, stats.unmatched, stats.truncated, stats.bad_records
        )?;
        if secs > 0.0 {
            writeln!(
                out,
                "  {:.3} s, {:.0} frames/s (reading, unpacking and decoding, one core)",
                secs,
                stats.frames as f64 / secs
            )?;
        }
        writeln!(out)?;
        for (name, m) in &self.messages {
            writeln!(out, "{name} (id {}): {} frames", m.id, m.frames)?;
            writeln!(
                out,
                "  {:<24} {:>10} {:>16} {:>16} {:>16} {:>16}  unit / last label",
                "signal", "samples", "min", "mean", "max", "last"
            )?;
            for s in &m.signals {
                if s.count == 0 {
                    writeln!(out, "  {:<24} {:>10}", s.name, 0)?;
                    continue;
                }
                let mean = s.sum / s.count as f64;
                write!(
                    out,
                    "  {:<24} {:>10} {:>16.6} {:>16.6} {:>16.6} {:>16.6}  {}",
                    s.name, s.count, s.min, mean, s.max, s.last, s.unit
                )?;
                if let Some(label) = &s.last_label {
                    write!(out, " ({label})")?;
                }
                writeln!(out)?;
            }
            writeln!(out)?;
        }
        self.unmatched.write(out)?;
        out.flush()
    }
}
