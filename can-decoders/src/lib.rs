//! CAN decoding for the IoV gateway: load DBC files, decode frames into physical signals (and
//! encode signals into frames), and read and write CAN trace files.
//!
//! Pure library: no async runtime, no sockets, no storage. Everything here is a function of its
//! input bytes, so the daemon, the simulator, `iovctl` and the tests all run the same code.
//!
//! # Layout
//! - [`frame`]: our own CAN frame type (`CanId`, `CanFrame`, `TimedFrame`); sources convert to it at the edge.
//! - [`dbc`]: the DBC loader (lenient, with located warnings and errors) and the database model.
//! - [`decode`]: per-message plans compiled from one or more databases; decoding frames into
//!   signals without allocating, J1939 matching by PGN, and encoding signals into payloads.
//! - [`trace`]: streaming readers and writers for candump `-L` logs and Vector ASC, and a reader
//!   for Vector BLF.

pub mod dbc;
pub mod decode;
pub mod frame;
pub mod trace;

pub use frame::{CanFrame, CanId, ChannelId, Direction, FrameKind, TimedFrame};
