//! The IoV edge gateway daemon, as a library: today its CAN input; the pipeline, store, sync
//! agents and `run(config, shutdown)` come next (see `docs/ARCHITECTURE.md`).
//!
//! # Layout
//! - [`source`]: inputs that turn the outside world into records. [`source::socketcan`] reads one
//!   SocketCAN interface (classic, CAN FD and error frames, kernel filters, kernel or hardware
//!   timestamps, reconnects) into a bounded channel that never blocks the reader.

pub mod source;
