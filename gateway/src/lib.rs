//! The IoV edge gateway daemon as a library: config, sources, the pure pipeline core, the store
//! writer, and [`run::run`], which `iov-gateway run` calls (tests and the simulator call it too).
//!
//! # Layout
//! - [`config`]: the TOML file, parsed into raw structs that refuse unknown keys and validated
//!   into typed values; errors name the key path. [`config::DEFAULT_CONFIG`] is the commented
//!   example.
//! - [`source`]: inputs. [`source::socketcan`] (one SocketCAN interface, drop-new backpressure),
//!   [`source::trace`] (candump/ASC/BLF replay, recorded pace or as fast as possible, waits),
//!   [`source::mqtt`] (rumqttc, MQTT 3.1.1 or 5, TLS, QoS 0/1, manual acks after durability, waits),
//!   [`source::channels`] (which source and interface a frame's channel id means).
//! - [`pipeline`]: pure core: records -> lanes by policy (raw frames; decoded, thinned and
//!   coarsened signals) -> blocks sealed by count, bytes or age, time a parameter.
//! - [`writer`]: the blocking store writer: seal, append with a signed checkpoint, publish what
//!   is durable on a `watch`; an I/O error is fatal.
//! - [`retention`]: the store's disk quota, enforced by the writer between appends: prune what
//!   every ledger acknowledged, then stop or drop the oldest (recording the gap in the log).
//! - [`run`]: the task graph, channels and shutdown order.
//! - [`health`]: readiness, the pipeline heartbeat and the live counters (read by the systemd
//!   notifier in `main.rs` and by [`metrics`]).
//! - [`metrics`]: Prometheus text metrics over a minimal, bounded HTTP/1.1 server.
//! - [`api`]: the local read API (Unix socket, HTTP/1.1): status and the gateway's own history,
//!   decoded, from a lane sealed for its own key.
//! - [`logging`]: journald, text or JSON logs, chosen from the environment or a flag.
//! - [`sync`]: one sync agent per configured ledger (checkpoint, cosignature, block upload).

pub mod api;
pub mod config;
pub mod health;
pub mod logging;
pub mod metrics;
pub mod pipeline;
pub mod provision;
pub mod retention;
pub mod run;
pub mod source;
pub mod sync;
pub mod writer;
