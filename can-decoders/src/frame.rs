//! The CAN frame as every other module sees it: our own type, so nothing downstream depends on
//! socketcan or on a trace format's representation.

use std::fmt;

/// Largest payload of any CAN frame (CAN FD).
pub const MAX_DATA_LEN: usize = 64;

/// Bit 31 of a DBC message id marks it as extended (29-bit).
pub const DBC_EXTENDED_FLAG: u32 = 0x8000_0000;

/// A CAN identifier: 11-bit standard or 29-bit extended.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CanId {
    raw: u32,
    extended: bool,
}

impl CanId {
    /// A standard (11-bit) id; `None` when `raw` does not fit in 11 bits.
    pub const fn standard(raw: u32) -> Option<CanId> {
        if raw <= 0x7FF {
            Some(CanId { raw, extended: false })
        } else {
            None
        }
    }

    /// An extended (29-bit) id; `None` when `raw` does not fit in 29 bits.
    pub const fn extended(raw: u32) -> Option<CanId> {
        if raw <= 0x1FFF_FFFF {
            Some(CanId { raw, extended: true })
        } else {
            None
        }
    }

    /// The id without the extended flag.
    pub const fn raw(self) -> u32 {
        self.raw
    }

    pub const fn is_extended(self) -> bool {
        self.extended
    }

    /// J1939 parameter group number of an extended id: the data page bits and PDU format, plus the
    /// PDU specific byte only when it is a group extension (PDU2, PF >= 240). Priority and source
    /// address are not part of it, nor is a PDU1 destination address.
    pub const fn j1939_pgn(self) -> u32 {
        let pf = (self.raw >> 16) & 0xFF;
        let dp_pf = (self.raw >> 8) & 0x3_FF00;
        if pf >= 240 {
            (self.raw >> 8) & 0x3_FFFF
        } else {
            dp_pf
        }
    }

    /// J1939 source address (the low byte of an extended id).
    pub const fn j1939_source_address(self) -> u8 {
        (self.raw & 0xFF) as u8
    }
}

impl fmt::Debug for CanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for CanId {
    /// candump style: three hex digits for standard ids, eight for extended.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.extended {
            write!(f, "{:08X}", self.raw)
        } else {
            write!(f, "{:03X}", self.raw)
        }
    }
}

/// What kind of frame this is. Flags that only exist for one kind live in that variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// Classic CAN data frame (0..=8 bytes).
    Data,
    /// Classic CAN remote request; `len` is the requested length, `data` is empty.
    Remote,
    /// CAN FD data frame (0..=64 bytes) with its bit-rate-switch and error-state-indicator flags.
    Fd { brs: bool, esi: bool },
    /// Error frame as SocketCAN reports it: `id` holds the `CAN_ERR_*` class bits (without
    /// `CAN_ERR_FLAG`), `data` the 8 error detail bytes.
    Error,
}

/// Which way the frame went, as far as the recording knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    #[default]
    Rx,
    Tx,
}

/// One CAN frame, fixed size and `Copy`, so the hot path never allocates.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CanFrame {
    pub id: CanId,
    pub kind: FrameKind,
    /// Payload length in bytes (0..=64; at most 8 for classic frames).
    len: u8,
    /// For classic frames of 8 bytes, the raw DLC when it was 9..=15 (candump's `_<dlc>`), else 0.
    pub len8_dlc: u8,
    data: [u8; MAX_DATA_LEN],
}

/// Why a frame could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("{len} data bytes do not fit a {kind} frame (at most {max})")]
    TooLong { len: usize, kind: &'static str, max: usize },
    #[error("{len} is not a valid CAN FD length (0..=8, 12, 16, 20, 24, 32, 48, 64)")]
    InvalidFdLength { len: usize },
}

impl CanFrame {
    /// A frame of `kind` carrying `data`. Classic and error frames take at most 8 bytes; CAN FD
    /// frames take a valid FD length; remote frames take no data (use [`CanFrame::remote`]).
    pub fn new(id: CanId, kind: FrameKind, data: &[u8]) -> Result<CanFrame, FrameError> {
        let max = match kind {
            FrameKind::Fd { .. } => MAX_DATA_LEN,
            FrameKind::Remote => 0,
            FrameKind::Data | FrameKind::Error => 8,
        };
        if data.len() > max {
            return Err(FrameError::TooLong { len: data.len(), kind: kind.name(), max });
        }
        if matches!(kind, FrameKind::Fd { .. }) && !is_valid_fd_len(data.len()) {
            return Err(FrameError::InvalidFdLength { len: data.len() });
        }
        let mut buf = [0u8; MAX_DATA_LEN];
        buf[..data.len()].copy_from_slice(data);
        Ok(CanFrame { id, kind, len: data.len() as u8, len8_dlc: 0, data: buf })
    }

    /// A classic remote request for `len` bytes (0..=8).
    pub fn remote(id: CanId, len: u8) -> Result<CanFrame, FrameError> {
        if len > 8 {
            return Err(FrameError::TooLong { len: len.into(), kind: "remote", max: 8 });
        }
        Ok(CanFrame { id, kind: FrameKind::Remote, len, len8_dlc: 0, data: [0; MAX_DATA_LEN] })
    }

    /// Payload length in bytes (for a remote frame, the requested length).
    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The payload (empty for remote frames).
    pub fn data(&self) -> &[u8] {
        match self.kind {
            FrameKind::Remote => &[],
            _ => &self.data[..self.len as usize],
        }
    }

    /// The whole 64-byte buffer, zero beyond `len`: lets decoders read without bounds checks.
    pub fn padded_data(&self) -> &[u8; MAX_DATA_LEN] {
        &self.data
    }
}

impl fmt::Debug for CanFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CanFrame({} {:?} [", self.id, self.kind)?;
        for b in self.data() {
            write!(f, "{b:02X}")?;
        }
        write!(f, "])")
    }
}

impl FrameKind {
    fn name(self) -> &'static str {
        match self {
            FrameKind::Data => "classic CAN",
            FrameKind::Remote => "remote",
            FrameKind::Fd { .. } => "CAN FD",
            FrameKind::Error => "error",
        }
    }
}

/// CAN FD payloads come in these sizes only.
pub fn is_valid_fd_len(len: usize) -> bool {
    matches!(len, 0..=8 | 12 | 16 | 20 | 24 | 32 | 48 | 64)
}

/// Index of an interface (channel) name in a reader's or writer's channel table; keeps a
/// [`TimedFrame`] `Copy` and free of allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ChannelId(pub u16);

/// A frame with its receive time and interface: one line of a trace, one read from a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimedFrame {
    /// Nanoseconds since the Unix epoch (or since the start of the recording, when the trace
    /// carries no absolute time).
    pub t_ns: u64,
    pub channel: ChannelId,
    pub direction: Direction,
    pub frame: CanFrame,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn j1939_pgn_ignores_priority_source_and_pdu1_destination() {
        // PDU2 (PF 0xF0 = 240): PS is a group extension and belongs to the PGN.
        let eec1 = CanId::extended(0x0CF0_0400).expect("29-bit");
        assert_eq!(eec1.j1939_pgn(), 0xF004);
        assert_eq!(eec1.j1939_source_address(), 0x00);
        // PDU1 (PF 0xEF < 240): PS is a destination address and is not part of the PGN.
        let prop_a = CanId::extended(0x18EF_2A17).expect("29-bit");
        assert_eq!(prop_a.j1939_pgn(), 0xEF00);
        assert_eq!(prop_a.j1939_source_address(), 0x17);
        // Data page bit is kept.
        let dp = CanId::extended(0x19FE_CA00).expect("29-bit");
        assert_eq!(dp.j1939_pgn(), 0x1_FECA);
    }

    #[test]
    fn frame_lengths_are_checked_per_kind() {
        let id = CanId::standard(0x123).expect("11-bit");
        assert!(CanFrame::new(id, FrameKind::Data, &[0; 9]).is_err());
        assert!(CanFrame::new(id, FrameKind::Fd { brs: true, esi: false }, &[0; 13]).is_err());
        let fd =
            CanFrame::new(id, FrameKind::Fd { brs: true, esi: false }, &[7; 64]).expect("valid");
        assert_eq!(fd.len(), 64);
        assert_eq!(fd.data()[63], 7);
        let rtr = CanFrame::remote(id, 4).expect("valid");
        assert_eq!(rtr.len(), 4);
        assert!(rtr.data().is_empty());
    }

    #[test]
    fn ids_are_range_checked() {
        assert!(CanId::standard(0x800).is_none());
        assert!(CanId::extended(0x2000_0000).is_none());
        assert_eq!(CanId::extended(0x1FFF_FFFF).map(|i| i.to_string()), Some("1FFFFFFF".into()));
        assert_eq!(CanId::standard(0x7E8).map(|i| i.to_string()), Some("7E8".into()));
    }
}
