//! The records a lane carries: raw CAN frames, MQTT messages and decoded signal samples.
//!
//! These are the ledger's own types (not `can_decoders::CanFrame`), so the ledger core does not
//! depend on the decoding crate; the gateway converts at the edge (decision D8). Interface,
//! topic and signal names are `Arc<str>` so cloning a record never copies a string.

use std::fmt;
use std::sync::Arc;

/// Largest CAN payload (CAN FD).
pub const MAX_CAN_DATA: usize = 64;

/// Largest MQTT payload a lane accepts (the MQTT limit is 256 MiB; a lane is smaller).
pub const MAX_MQTT_PAYLOAD: usize = 16 << 20;

/// Largest interface, topic or signal name, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;

/// CAN frame flags, one byte on the wire (bit layout documented in `docs/formats.md`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CanFlags(u8);

impl CanFlags {
    /// 29-bit identifier.
    pub const EXTENDED: u8 = 0x01;
    /// Classic remote request: no data, `len` is the requested length.
    pub const REMOTE: u8 = 0x02;
    /// CAN FD frame.
    pub const FD: u8 = 0x04;
    /// CAN FD bit rate switch.
    pub const BRS: u8 = 0x08;
    /// CAN FD error state indicator.
    pub const ESI: u8 = 0x10;
    /// Error frame (the id holds the error class bits).
    pub const ERROR: u8 = 0x20;
    /// Transmitted by this gateway (else received).
    pub const TX: u8 = 0x40;
    /// Every defined bit; the top bit is reserved and refused by decoders.
    pub const ALL: u8 = 0x7F;

    /// Flags from their wire byte; `None` when a reserved bit is set.
    pub const fn from_bits(bits: u8) -> Option<CanFlags> {
        if bits & !Self::ALL == 0 {
            Some(CanFlags(bits))
        } else {
            None
        }
    }
    pub const fn bits(self) -> u8 {
        self.0
    }
    pub const fn has(self, flag: u8) -> bool {
        self.0 & flag == flag
    }
    #[must_use]
    pub const fn with(self, flag: u8) -> CanFlags {
        CanFlags((self.0 | flag) & Self::ALL)
    }
}

impl fmt::Debug for CanFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 7] = ["ext", "rtr", "fd", "brs", "esi", "err", "tx"];
        let set: Vec<&str> = NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, n)| *n)
            .collect();
        write!(f, "CanFlags({})", set.join("|"))
    }
}

/// One CAN frame as received or sent.
#[derive(Clone, PartialEq, Eq)]
pub struct CanRecord {
    /// Nanoseconds since the Unix epoch.
    pub t_ns: u64,
    /// Interface name (`can0`).
    pub interface: Arc<str>,
    /// The 11- or 29-bit identifier (error frames: the error class bits), without flags.
    pub id: u32,
    pub flags: CanFlags,
    len: u8,
    /// The payload of a frame of at most 8 bytes (classic CAN, short FD), zero-padded.
    head: [u8; 8],
    /// The whole zero-padded payload of an FD frame longer than 8 bytes, else `None`. Kept out of
    /// line so the common record is 48 bytes instead of 96: an open block holds 100,000 of them
    /// per lane, and this halves the gateway's resident memory for them (D250).
    long: Option<Box<[u8; MAX_CAN_DATA]>>,
}

/// Why a record could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    #[error("CAN id {id:#x} does not fit {bits} bits")]
    IdTooLarge { id: u32, bits: u8 },
    #[error("CAN payload of {len} bytes exceeds {max} for this frame kind ({flags:?})")]
    DataTooLong { len: usize, max: usize, flags: CanFlags },
    #[error("{what} name of {len} bytes exceeds {MAX_NAME_BYTES}")]
    NameTooLong { what: &'static str, len: usize },
    #[error("MQTT payload of {len} bytes exceeds {MAX_MQTT_PAYLOAD}")]
    PayloadTooLong { len: usize },
    #[error("MQTT QoS {qos} is not 0, 1 or 2")]
    BadQos { qos: u8 },
}

impl CanRecord {
    /// A frame. For remote frames pass the requested length in `remote_len` and empty `data`.
    /// Classic and error frames carry at most 8 bytes, FD frames at most 64.
    pub fn new(
        t_ns: u64,
        interface: Arc<str>,
        id: u32,
        flags: CanFlags,
        data: &[u8],
        remote_len: u8,
    ) -> Result<CanRecord, RecordError> {
        let bits = if flags.has(CanFlags::EXTENDED) { 29 } else { 11 };
        if !flags.has(CanFlags::ERROR) && id >> bits != 0 {
            return Err(RecordError::IdTooLarge { id, bits });
        }
        if interface.len() > MAX_NAME_BYTES {
            return Err(RecordError::NameTooLong { what: "interface", len: interface.len() });
        }
        let max = if flags.has(CanFlags::REMOTE) {
            0
        } else if flags.has(CanFlags::FD) {
            MAX_CAN_DATA
        } else {
            8
        };
        if data.len() > max {
            return Err(RecordError::DataTooLong { len: data.len(), max, flags });
        }
        let mut buf = [0u8; MAX_CAN_DATA];
        buf[..data.len()].copy_from_slice(data);
        let len = if flags.has(CanFlags::REMOTE) {
            if remote_len > 8 {
                return Err(RecordError::DataTooLong { len: remote_len.into(), max: 8, flags });
            }
            remote_len
        } else {
            data.len() as u8
        };
        Ok(CanRecord::from_parts(t_ns, interface, id, flags, len, buf))
    }

    /// Payload (empty for remote frames).
    pub fn data(&self) -> &[u8] {
        if self.flags.has(CanFlags::REMOTE) {
            &[]
        } else if let Some(long) = &self.long {
            &long[..self.len as usize]
        } else {
            &self.head[..self.len as usize]
        }
    }

    /// Payload length; for a remote frame the requested length.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// From decoded parts the lane decoder has already validated.
    pub(crate) fn from_parts(
        t_ns: u64,
        interface: Arc<str>,
        id: u32,
        flags: CanFlags,
        len: u8,
        data: [u8; MAX_CAN_DATA],
    ) -> CanRecord {
        // One representation per payload, so derived equality stays equality of frames.
        let (head, long) = if usize::from(len) > 8 && !flags.has(CanFlags::REMOTE) {
            ([0u8; 8], Some(Box::new(data)))
        } else {
            let mut head = [0u8; 8];
            head.copy_from_slice(&data[..8]);
            (head, None)
        };
        CanRecord { t_ns, interface, id, flags, len, head, long }
    }

    /// Byte `j` of the zero-padded payload (0 past the payload).
    pub(crate) fn padded_byte(&self, j: usize) -> u8 {
        match &self.long {
            Some(long) => long.get(j).copied().unwrap_or(0),
            None => self.head.get(j).copied().unwrap_or(0),
        }
    }

    /// The first 8 bytes of the zero-padded payload.
    pub(crate) fn first_word(&self) -> [u8; 8] {
        match &self.long {
            Some(long) => {
                let mut w = [0u8; 8];
                w.copy_from_slice(&long[..8]);
                w
            }
            None => self.head,
        }
    }
}

/// Back to the decoding crate's frame, for readers that decode stored records (D8: behind the
/// `can-frames` feature, so the ledger core itself does not depend on `can_decoders`).
#[cfg(feature = "can-frames")]
impl CanRecord {
    /// The frame to decode; `None` for remote and error frames, which carry no signals.
    pub fn to_can_frame(&self) -> Option<can_decoders::CanFrame> {
        use can_decoders::{CanFrame, CanId, FrameKind};
        if self.flags.has(CanFlags::REMOTE) || self.flags.has(CanFlags::ERROR) {
            return None;
        }
        let id = if self.flags.has(CanFlags::EXTENDED) {
            CanId::extended(self.id)
        } else {
            CanId::standard(self.id)
        }?;
        let kind = if self.flags.has(CanFlags::FD) {
            FrameKind::Fd { brs: self.flags.has(CanFlags::BRS), esi: self.flags.has(CanFlags::ESI) }
        } else {
            FrameKind::Data
        };
        CanFrame::new(id, kind, self.data()).ok()
    }
}

impl fmt::Debug for CanRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Can({} {} {:X} {:?} len {} [",
            self.t_ns, self.interface, self.id, self.flags, self.len
        )?;
        for b in self.data() {
            write!(f, "{b:02X}")?;
        }
        write!(f, "])")
    }
}

/// One MQTT message.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MqttRecord {
    pub t_ns: u64,
    pub topic: Arc<str>,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
}

impl MqttRecord {
    pub fn new(
        t_ns: u64,
        topic: Arc<str>,
        payload: Vec<u8>,
        qos: u8,
        retain: bool,
    ) -> Result<MqttRecord, RecordError> {
        if topic.len() > MAX_NAME_BYTES {
            return Err(RecordError::NameTooLong { what: "topic", len: topic.len() });
        }
        if payload.len() > MAX_MQTT_PAYLOAD {
            return Err(RecordError::PayloadTooLong { len: payload.len() });
        }
        if qos > 2 {
            return Err(RecordError::BadQos { qos });
        }
        Ok(MqttRecord { t_ns, topic, payload, qos, retain })
    }
}

/// One decoded signal sample (for lanes that carry signals instead of raw frames).
#[derive(Clone, Debug)]
pub struct SignalRecord {
    pub t_ns: u64,
    pub name: Arc<str>,
    pub value: f64,
}

/// Bitwise equality, so NaN payloads and -0.0 round-trip checks are exact.
impl PartialEq for SignalRecord {
    fn eq(&self, o: &Self) -> bool {
        self.t_ns == o.t_ns && self.name == o.name && self.value.to_bits() == o.value.to_bits()
    }
}
impl Eq for SignalRecord {}

/// Any record a lane can carry.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Record {
    Can(CanRecord),
    Mqtt(MqttRecord),
    Signal(SignalRecord),
}

impl Record {
    pub fn t_ns(&self) -> u64 {
        match self {
            Record::Can(r) => r.t_ns,
            Record::Mqtt(r) => r.t_ns,
            Record::Signal(r) => r.t_ns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gateway keeps every record of an open block in memory; the peak RSS target (issue 4)
    /// depends on these sizes (D250).
    #[test]
    fn in_memory_records_stay_small() {
        assert_eq!(std::mem::size_of::<CanRecord>(), 48);
        assert!(std::mem::size_of::<Record>() <= 64, "Record is {}", std::mem::size_of::<Record>());
    }

    #[test]
    fn short_and_long_payloads_read_back() {
        let iface: Arc<str> = Arc::from("can0");
        let fd = CanFlags::default().with(CanFlags::FD);
        for len in [0usize, 1, 8, 12, 64] {
            let data: Vec<u8> = (1..=len as u8).collect();
            let r = CanRecord::new(7, iface.clone(), 0x123, fd, &data, 0).expect("valid frame");
            assert_eq!(r.data(), &data[..]);
            assert_eq!(r.len(), len);
            for j in 0..MAX_CAN_DATA {
                assert_eq!(
                    r.padded_byte(j),
                    data.get(j).copied().unwrap_or(0),
                    "len {len} byte {j}"
                );
            }
            let mut first = [0u8; 8];
            for (j, b) in first.iter_mut().enumerate() {
                *b = data.get(j).copied().unwrap_or(0);
            }
            assert_eq!(r.first_word(), first);
        }
        let remote =
            CanRecord::new(7, iface, 0x10, CanFlags::default().with(CanFlags::REMOTE), &[], 6)
                .expect("valid remote frame");
        assert_eq!(remote.data(), &[] as &[u8]);
        assert_eq!(remote.len(), 6);
    }
}
