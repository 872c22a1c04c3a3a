//! Builds DBC model values in code for the decode tests (the DBC parser lives elsewhere).
#![allow(dead_code, unused_imports)]

use std::path::PathBuf;

use can_decoders::dbc::{
    ByteOrder, Database, FrameFormat, Message, Multiplexing, MuxCondition, Signal, ValueType,
};
use can_decoders::decode::{Decoded, Decoder, EncodeOptions, MessageKey};
use can_decoders::{CanFrame, CanId, FrameKind};

pub use ByteOrder::{BigEndian as BE, LittleEndian as LE};

/// An unsigned, unscaled signal without range (`[0|0]`).
pub fn signal(name: &str, start_bit: u16, length: u16, byte_order: ByteOrder) -> Signal {
    Signal {
        name: name.to_owned(),
        start_bit,
        length,
        byte_order,
        value_type: ValueType::Unsigned,
        factor: 1.0,
        offset: 0.0,
        minimum: 0.0,
        maximum: 0.0,
        unit: String::new(),
        receivers: Vec::new(),
        multiplexing: Multiplexing::default(),
        value_table: Vec::new(),
        comment: None,
        initial_raw: None,
        attributes: Default::default(),
        line: 0,
    }
}

/// Chainable tweaks of a [`Signal`].
pub trait SignalExt: Sized {
    fn signed(self) -> Self;
    fn float32(self) -> Self;
    fn float64(self) -> Self;
    fn scaled(self, factor: f64, offset: f64) -> Self;
    fn range(self, minimum: f64, maximum: f64) -> Self;
    fn unit(self, unit: &str) -> Self;
    fn labels(self, labels: &[(i64, &str)]) -> Self;
    /// A multiplexor (`M`).
    fn switch(self) -> Self;
    /// Multiplexed by `switch` for these inclusive raw ranges (`mN` is `&[(N, N)]`).
    fn when(self, switch: &str, values: &[(u64, u64)]) -> Self;
}

impl SignalExt for Signal {
    fn signed(mut self) -> Self {
        self.value_type = ValueType::Signed;
        self
    }
    fn float32(mut self) -> Self {
        self.value_type = ValueType::Float32;
        self
    }
    fn float64(mut self) -> Self {
        self.value_type = ValueType::Float64;
        self
    }
    fn scaled(mut self, factor: f64, offset: f64) -> Self {
        self.factor = factor;
        self.offset = offset;
        self
    }
    fn range(mut self, minimum: f64, maximum: f64) -> Self {
        self.minimum = minimum;
        self.maximum = maximum;
        self
    }
    fn unit(mut self, unit: &str) -> Self {
        self.unit = unit.to_owned();
        self
    }
    fn labels(mut self, labels: &[(i64, &str)]) -> Self {
        self.value_table = labels.iter().map(|(k, l)| (*k, (*l).to_owned())).collect();
        self
    }
    fn switch(mut self) -> Self {
        self.multiplexing.is_multiplexor = true;
        self
    }
    fn when(mut self, switch: &str, values: &[(u64, u64)]) -> Self {
        self.multiplexing.multiplexed_by =
            Some(MuxCondition { switch: switch.to_owned(), values: values.to_vec() });
        self
    }
}

pub fn std_id(raw: u32) -> CanId {
    CanId::standard(raw).expect("11-bit id")
}

pub fn ext_id(raw: u32) -> CanId {
    CanId::extended(raw).expect("29-bit id")
}

/// A message; the frame format follows the id (extended or standard), FD when longer than 8.
pub fn message(id: CanId, name: &str, length: u8, signals: Vec<Signal>) -> Message {
    let frame_format = match (id.is_extended(), length > 8) {
        (false, false) => FrameFormat::Standard,
        (true, false) => FrameFormat::Extended,
        (false, true) => FrameFormat::FdStandard,
        (true, true) => FrameFormat::FdExtended,
    };
    Message {
        id,
        name: name.to_owned(),
        length,
        senders: Vec::new(),
        signals,
        frame_format,
        cycle_time_ms: None,
        comment: None,
        attributes: Default::default(),
        line: 0,
    }
}

pub fn database(source: &str, messages: Vec<Message>) -> Database {
    Database { source: Some(PathBuf::from(source)), messages, ..Database::default() }
}

/// A data frame (CAN FD when longer than 8 bytes).
pub fn frame(id: CanId, data: &[u8]) -> CanFrame {
    let kind =
        if data.len() > 8 { FrameKind::Fd { brs: true, esi: false } } else { FrameKind::Data };
    CanFrame::new(id, kind, data).expect("valid frame")
}

/// A decoder for one database on every channel; panics on warnings.
pub fn decoder(messages: Vec<Message>) -> Decoder {
    let mut b = Decoder::builder();
    b.add_database(&database("test.dbc", messages), &[]);
    let (d, warnings) = b.build().expect("builds");
    assert!(warnings.is_empty(), "{warnings:?}");
    d
}

/// Signal values by name, in decode order.
pub type Named = Vec<(String, f64)>;

/// Decodes `data` with `id` on the default bus: (message name, [(signal name, value)]) and the
/// full output.
pub fn decode(d: &Decoder, id: CanId, data: &[u8]) -> Option<(String, Named, Decoded)> {
    let mut out = Decoded::default();
    let key = d.decode(d.bus("any"), &frame(id, data), &mut out)?;
    let m = d.message(key);
    let values =
        out.values.iter().map(|v| (m.signals()[v.signal].name().to_owned(), v.value)).collect();
    Some((m.name().to_owned(), values, out))
}

/// The values of a decode as (name, value) pairs.
pub fn values(d: &Decoder, id: CanId, data: &[u8]) -> Vec<(String, f64)> {
    decode(d, id, data).map(|(_, v, _)| v).unwrap_or_default()
}

pub fn named(pairs: &[(&str, f64)]) -> Named {
    pairs.iter().map(|(n, v)| ((*n).to_owned(), *v)).collect()
}

pub fn key(d: &Decoder, name: &str) -> MessageKey {
    d.message_by_name(name).expect("message exists")
}

pub const STRICT: EncodeOptions = EncodeOptions { strict: true, padding: false };
pub const LENIENT: EncodeOptions = EncodeOptions { strict: false, padding: false };
