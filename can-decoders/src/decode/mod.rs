//! Decoding CAN frames into physical signal values, and encoding them back, exactly as cantools
//! 45 does.
//!
//! One or more [`Database`](crate::dbc::Database)s are compiled by a [`DecoderBuilder`] into per-message plans: every
//! signal's byte window, shift and mask are precomputed, so decoding a frame is a table lookup
//! plus a few loads, shifts and multiplies per signal, and writes into a caller-owned [`Decoded`]
//! buffer (no allocation once the buffer has grown to the largest message).
//!
//! ```
//! use can_decoders::decode::{Decoded, Decoder};
//! # use can_decoders::dbc::Database;
//! # let db = Database::default();
//! let mut builder = Decoder::builder();
//! builder.add_database(&db, &[]);
//! let (decoder, warnings) = builder.build().expect("no selection, cannot fail");
//! assert!(warnings.is_empty());
//! let bus = decoder.bus("can0");
//! let mut out = Decoded::default();
//! # let frame = can_decoders::CanFrame::new(can_decoders::CanId::standard(1).unwrap(),
//! #     can_decoders::FrameKind::Data, &[]).unwrap();
//! if let Some(key) = decoder.decode(bus, &frame, &mut out) {
//!     let message = decoder.message(key);
//!     for v in &out.values {
//!         println!("{} {} = {}", message.name(), message.signals()[v.signal].name(), v.value);
//!     }
//! }
//! ```
//!
//! # Semantics (cantools' `Message.decode(data, allow_truncated=True)`)
//! - Intel and Motorola bit numbering as in DBC files, lengths 1..=64 anywhere in 64 bytes.
//! - Physical values are bit-equal to cantools' (see the conversion rules on [`CompiledSignal`]).
//! - A frame shorter than the message decodes only the signals that lie entirely in the received
//!   bytes and sets [`Decoded::truncated`]; a longer frame decodes normally.
//! - A multiplexed signal is decoded when its switch is decoded and cantools' multiplexer number
//!   for it (the raw value for an unscaled switch) is in one of its ranges. A switch value that
//!   selects nothing sets [`Decoded::mux_unknown`] (cantools raises an error there) and the other
//!   signals are still decoded.
//! - Remote and error frames never match a message.

mod decoder;
mod encode;
mod plan;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::dbc::{ByteOrder, FrameFormat, ValueType};
use crate::frame::CanId;

pub use encode::EncodeOptions;

use plan::SignalPlan;

/// Inclusive ranges of multiplexer numbers.
pub(crate) type Ranges = Box<[(u64, u64)]>;

/// A raw (unscaled) signal value as read from the frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RawValue {
    /// A signed integer signal (two's complement over its length).
    Int(i64),
    /// An unsigned integer signal.
    UInt(u64),
    /// A float signal (`Float32` widened exactly to `f64`).
    Float(f64),
}

impl RawValue {
    /// The value as `f64` (rounded to nearest for integers above 2^53, as Python's `float()`).
    pub fn as_f64(self) -> f64 {
        match self {
            RawValue::Int(i) => i as f64,
            RawValue::UInt(u) => u as f64,
            RawValue::Float(f) => f,
        }
    }

    /// The integer a value table is looked up with (cantools: `int(raw)`); `None` for floats that
    /// are not finite or do not fit `i64`.
    pub fn as_table_key(self) -> Option<i64> {
        match self {
            RawValue::Int(i) => Some(i),
            RawValue::UInt(u) => i64::try_from(u).ok(),
            RawValue::Float(f) => {
                let t = f.trunc();
                (f.is_finite()
                    && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&t))
                .then_some(t as i64)
            }
        }
    }
}

impl fmt::Display for RawValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawValue::Int(i) => write!(f, "{i}"),
            RawValue::UInt(u) => write!(f, "{u}"),
            RawValue::Float(x) => write!(f, "{x}"),
        }
    }
}

/// One decoded signal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SignalValue {
    /// Index into [`CompiledMessage::signals`] (the database's signal order).
    pub signal: usize,
    pub raw: RawValue,
    /// The physical value, bit-equal to cantools' (`int` results compare as their `f64`).
    pub value: f64,
}

/// Reusable output buffer of [`Decoder::decode`]. Keep one per thread and pass it to every call:
/// after the first frames it never allocates again.
#[derive(Debug, Clone, Default)]
pub struct Decoded {
    /// Decoded signals, multiplexors before the signals they select, otherwise in database order.
    pub values: Vec<SignalValue>,
    /// Signals not entirely received were skipped: the frame was shorter than the message, or
    /// (in a malformed DBC) a signal lies beyond the message's declared length.
    pub truncated: bool,
    /// A decoded multiplexor had a value that selects no signal (and is not in its value table).
    pub mux_unknown: bool,
    /// For a J1939 message, the source address of the frame (the low byte of its id).
    pub j1939_source_address: Option<u8>,
    /// Multiplexer numbers of the message's switches, by switch slot (scratch).
    mux: Vec<Option<i128>>,
}

impl Decoded {
    pub fn new() -> Decoded {
        Decoded::default()
    }

    /// Empties the buffer, keeping its capacity.
    pub fn clear(&mut self) {
        self.values.clear();
        self.truncated = false;
        self.mux_unknown = false;
        self.j1939_source_address = None;
        self.mux.clear();
    }

    /// The decoded value of signal `index`, when it was decoded.
    pub fn get(&self, index: usize) -> Option<&SignalValue> {
        self.values.iter().find(|v| v.signal == index)
    }
}

/// Identifies a compiled message within one [`Decoder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageKey(u32);

impl MessageKey {
    /// Position in [`Decoder::messages`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A bus (channel) as the decoder knows it; resolve once per channel with [`Decoder::bus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BusId(u16);

/// A signal compiled for decoding and encoding.
///
/// Physical values follow cantools' conversion choice: identity when factor is 1 and offset 0;
/// exact integer arithmetic (converted once to `f64`) when factor and offset are integral and the
/// signal is not a float; otherwise `raw as f64 * factor + offset` in `f64`. cantools' `_is_integer`
/// accepts both `2` and `2.0`, so the choice matches cantools for every DBC; only integral factors
/// or offsets of magnitude 2^63 and above fall back to `f64` arithmetic, where results for raw
/// values above 2^53 can differ in the last bits.
#[derive(Debug, Clone)]
pub struct CompiledSignal {
    pub(crate) name: String,
    pub(crate) unit: String,
    pub(crate) start_bit: u16,
    pub(crate) length: u16,
    pub(crate) byte_order: ByteOrder,
    pub(crate) value_type: ValueType,
    pub(crate) factor: f64,
    pub(crate) offset: f64,
    pub(crate) minimum: Option<f64>,
    pub(crate) maximum: Option<f64>,
    pub(crate) is_multiplexor: bool,
    /// Value table sorted by raw value; for a duplicate raw value the last label wins (cantools
    /// builds a dict in file order).
    pub(crate) labels: Box<[(i64, String)]>,
    /// Raw value to the raw value its label maps back to, where they differ (duplicate labels).
    pub(crate) label_inverse: Box<[(i64, i64)]>,
    /// `None` when the signal cannot be decoded (reported as a [`BuildWarning`]).
    pub(crate) plan: Option<SignalPlan>,
    /// Switch index and raw ranges, when multiplexed by a usable switch.
    pub(crate) condition: Option<(usize, Ranges)>,
    /// For a multiplexor: its slot in the multiplexer-number scratch.
    pub(crate) mux_slot: Option<u16>,
    /// For a multiplexor: the multiplexer numbers that select something (children's ranges and
    /// value-table keys). Empty means cantools never checks it.
    pub(crate) mux_known: Box<[(u64, u64)]>,
    /// Whether the signal can ever be decoded (its switch chain resolves).
    pub(crate) reachable: bool,
}

impl CompiledSignal {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn unit(&self) -> &str {
        &self.unit
    }
    pub fn start_bit(&self) -> u16 {
        self.start_bit
    }
    pub fn length(&self) -> u16 {
        self.length
    }
    pub fn byte_order(&self) -> ByteOrder {
        self.byte_order
    }
    pub fn value_type(&self) -> ValueType {
        self.value_type
    }
    pub fn factor(&self) -> f64 {
        self.factor
    }
    pub fn offset(&self) -> f64 {
        self.offset
    }
    /// Minimum physical value; `None` when the DBC gives `[0|0]` (cantools: no range).
    pub fn minimum(&self) -> Option<f64> {
        self.minimum
    }
    /// Maximum physical value; `None` when the DBC gives `[0|0]` (cantools: no range).
    pub fn maximum(&self) -> Option<f64> {
        self.maximum
    }
    pub fn is_multiplexor(&self) -> bool {
        self.is_multiplexor
    }
    /// The switch signal's index and the raw ranges selecting this signal, when multiplexed.
    pub fn multiplexed_by(&self) -> Option<(usize, &[(u64, u64)])> {
        self.condition.as_ref().map(|(s, r)| (*s, &r[..]))
    }
    /// Whether this signal is ever decoded (length, position and multiplexing are usable).
    pub fn is_decodable(&self) -> bool {
        self.plan.is_some() && self.reachable
    }
    /// The value-table label of a raw value (cantools' `choices.get(int(raw))`).
    pub fn label(&self, raw: &RawValue) -> Option<&str> {
        let key = raw.as_table_key()?;
        self.labels.binary_search_by_key(&key, |(k, _)| *k).ok().map(|i| self.labels[i].1.as_str())
    }
    /// The value table, sorted by raw value.
    pub fn labels(&self) -> &[(i64, String)] {
        &self.labels
    }
}

/// "Decode only when switch slot `slot` holds a number in `lo..=hi` or in `conditions[more]`."
#[derive(Debug, Clone, Copy)]
pub(crate) struct Condition {
    pub(crate) slot: u16,
    pub(crate) lo: u64,
    pub(crate) hi: u64,
    /// Index into `CompiledMessage::conditions` of all the ranges, or `u16::MAX` for one range.
    pub(crate) more: u16,
}

/// One step of a message's decode program.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    pub(crate) plan: SignalPlan,
    pub(crate) signal: u16,
    pub(crate) condition: Option<Condition>,
    /// Where to store the multiplexer number, when this signal is a needed switch.
    pub(crate) mux_slot: Option<u16>,
    pub(crate) output: bool,
}

/// A message compiled for decoding and encoding.
#[derive(Debug, Clone)]
pub struct CompiledMessage {
    pub(crate) name: String,
    pub(crate) id: CanId,
    pub(crate) length: u8,
    pub(crate) frame_format: FrameFormat,
    pub(crate) j1939: bool,
    pub(crate) source: Option<PathBuf>,
    pub(crate) signals: Vec<CompiledSignal>,
    /// Decodable signals in dependency order (switches before what they select).
    pub(crate) order: Vec<u16>,
    /// The decode program for the selected signals.
    pub(crate) steps: Box<[Step]>,
    pub(crate) conditions: Box<[Ranges]>,
    /// Payload bytes the decode program needs to read every step without a length check.
    pub(crate) need_bytes: u8,
    pub(crate) mux_slots: u16,
}

impl CompiledMessage {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn id(&self) -> CanId {
        self.id
    }
    /// Declared length in bytes.
    pub fn length(&self) -> usize {
        usize::from(self.length)
    }
    pub fn frame_format(&self) -> FrameFormat {
        self.frame_format
    }
    pub fn is_j1939(&self) -> bool {
        self.j1939
    }
    /// The file the message was loaded from (`Database::source`).
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }
    /// All signals, in the database's order; [`SignalValue::signal`] indexes this.
    pub fn signals(&self) -> &[CompiledSignal] {
        &self.signals
    }
    /// A signal and its index, by name.
    pub fn signal(&self, name: &str) -> Option<(usize, &CompiledSignal)> {
        self.signals.iter().enumerate().find(|(_, s)| s.name == name)
    }
    /// Whether [`Decoder::decode`] outputs anything for this message (false when a signal
    /// selection excludes all its signals).
    pub fn has_selected_signals(&self) -> bool {
        self.steps.iter().any(|s| s.output)
    }
}

/// Builds a [`Decoder`]; see [`Decoder::builder`].
#[derive(Debug, Default)]
pub struct DecoderBuilder {
    pub(crate) sources: Vec<decoder::SourceDb>,
    pub(crate) messages: Vec<CompiledMessage>,
    pub(crate) warnings: Vec<BuildWarning>,
    pub(crate) j1939_by_pgn: bool,
    pub(crate) selection: Option<Vec<String>>,
}

/// Compiled databases: frame lookup per bus, decode plans, encoding.
#[derive(Debug, Clone)]
pub struct Decoder {
    pub(crate) messages: Vec<CompiledMessage>,
    pub(crate) buses: Vec<decoder::BusTable>,
    /// Named buses; bus `i + 1` is `bus_names[i]`, bus 0 is every other channel.
    pub(crate) bus_names: Vec<String>,
    pub(crate) j1939_by_pgn: bool,
}

/// Why a decoder could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// `select_signals` named signals no message has.
    #[error("selected signals not found in any message: {}", names.join(", "))]
    UnknownSignals { names: Vec<String> },
    /// A message has more signals than a plan can index.
    #[error("message {message} ({id}) has {count} signals, more than 65535")]
    TooManySignals { message: String, id: CanId, count: usize },
}

/// What the builder accepted but had to interpret or ignore.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildWarning {
    /// Two messages have the same id on one channel; the first one added is used.
    DuplicateId {
        id: CanId,
        /// The channel, or `None` for databases that apply to every channel.
        channel: Option<String>,
        kept: String,
        kept_source: Option<PathBuf>,
        ignored: String,
        ignored_source: Option<PathBuf>,
    },
    /// A signal extends past the message's declared length: it is decoded only from frames
    /// long enough to hold it (cantools refuses such a database).
    SignalPastEnd { message: String, id: CanId, signal: String, length: u8 },
    /// A signal that is never decoded or encoded.
    SignalUnusable { message: String, id: CanId, signal: String, reason: String },
}

fn show_source(p: &Option<PathBuf>) -> String {
    p.as_ref().map_or_else(|| "<string>".to_owned(), |p| p.display().to_string())
}

impl fmt::Display for BuildWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildWarning::DuplicateId {
                id,
                channel,
                kept,
                kept_source,
                ignored,
                ignored_source,
            } => {
                write!(
                    f,
                    "id {id} on {}: message {ignored} ({}) ignored, {kept} ({}) is used",
                    channel.as_deref().unwrap_or("every channel"),
                    show_source(ignored_source),
                    show_source(kept_source)
                )
            }
            BuildWarning::SignalPastEnd { message, id, signal, length } => {
                write!(
                    f,
                    "signal {signal} of message {message} ({id}) extends past its {length} bytes"
                )
            }
            BuildWarning::SignalUnusable { message, id, signal, reason } => {
                write!(f, "signal {signal} of message {message} ({id}) is not decoded: {reason}")
            }
        }
    }
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    #[error("message {message} ({id}): signal {signal} is required but no value was given")]
    MissingSignal { message: String, id: CanId, signal: String },
    #[error("message {message} ({id}): no signal named {signal}")]
    UnknownSignal { message: String, id: CanId, signal: String },
    #[error("message {message} ({id}): signal index {index} out of range")]
    BadSignalIndex { message: String, id: CanId, index: usize },
    #[error("message {message} ({id}): signals given but not used by this multiplexing: {}", signals.join(", "))]
    UnusedSignals { message: String, id: CanId, signals: Vec<String> },
    #[error(
        "message {message} ({id}): signal {signal} value {value} is outside [{minimum}, {maximum}]"
    )]
    OutOfRange {
        message: String,
        id: CanId,
        signal: String,
        value: f64,
        minimum: f64,
        maximum: f64,
    },
    #[error(
        "message {message} ({id}): signal {signal} raw value {raw} does not fit its {length} bits"
    )]
    RawOverflow { message: String, id: CanId, signal: String, raw: String, length: u16 },
    #[error("message {message} ({id}): signal {signal} value {value} is not finite")]
    NotFinite { message: String, id: CanId, signal: String, value: f64 },
    #[error("message {message} ({id}): multiplexor {signal} value {value} selects nothing")]
    InvalidMuxValue { message: String, id: CanId, signal: String, value: String },
    #[error(
        "message {message} ({id}): signal {signal} cannot be encoded (see the build warnings)"
    )]
    Unencodable { message: String, id: CanId, signal: String },
    #[error("message {message} ({id}): length {length} is not a valid {kind} frame length")]
    FrameLength { message: String, id: CanId, length: usize, kind: &'static str },
}

impl Decoder {
    pub fn builder() -> DecoderBuilder {
        DecoderBuilder::default()
    }

    /// The bus to pass to [`Decoder::decode`] for frames from interface `channel_name`: the
    /// databases added for that name plus those added for every channel.
    pub fn bus(&self, channel_name: &str) -> BusId {
        self.bus_names
            .iter()
            .position(|n| n == channel_name)
            .and_then(|i| u16::try_from(i + 1).ok())
            .map_or(BusId(0), BusId)
    }

    /// The compiled message of a key this decoder returned. Panics on a key from another decoder.
    pub fn message(&self, key: MessageKey) -> &CompiledMessage {
        &self.messages[key.index()]
    }

    /// Every compiled message with its key, in the order databases and messages were added.
    pub fn messages(&self) -> impl Iterator<Item = (MessageKey, &CompiledMessage)> {
        self.messages.iter().enumerate().map(|(i, m)| (MessageKey(i as u32), m))
    }

    /// The first message with this name.
    pub fn message_by_name(&self, name: &str) -> Option<MessageKey> {
        self.messages.iter().position(|m| m.name == name).map(|i| MessageKey(i as u32))
    }
}
