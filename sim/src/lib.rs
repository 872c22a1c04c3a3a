//! `iov-sim`: replays recorded CAN traces through real `iov-gateway` processes, models the
//! vehicles' connectivity (dead zones, tunnels, slow and lossy links, resets) with in-process
//! fault proxies in front of real `iov-ledger` processes, injects faults (gateway kills and
//! restarts, ledger restarts, a full disk), checks the invariants on disk afterwards and
//! reports (JSON, a summary, a PNG chart). Everything a test needs is a library call.
//!
//! # Layout
//! - [`scenario`]: the scenario file, validated into typed values (pure).
//! - [`plan`]: a scenario and its seed expanded into vehicles and timed actions (pure,
//!   deterministic).
//! - [`tracefile`]: counting and cutting recordings (max frames, the rest after a restart).
//! - [`proc`]: child processes, `/proc` usage, HTTP GET on loopback, Prometheus text.
//! - [`world`]: the processes and proxies, the drive, the final heal.
//! - [`check`]: the invariants, on the stores after everything stopped.
//! - [`report`], [`chart`]: JSON, summary, PNG.
//! - [`fleet_tools`]: the `iovctl history` and `iovctl audit` steps of the demo (subprocesses).
//! - [`vcan`]: `replay --into vcan` in the test VM.
//! - [`run`]: one scenario end to end; [`demo`]: the newcomer's demo; [`replay`]: one trace
//!   through one gateway.

pub mod chart;
pub mod check;
pub mod demo;
pub mod fleet_tools;
pub mod plan;
pub mod proc;
pub mod replay;
pub mod report;
pub mod run;
pub mod scenario;
pub mod tracefile;
pub mod vcan;
pub mod world;
