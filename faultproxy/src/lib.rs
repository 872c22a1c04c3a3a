//! A fault-injecting TCP proxy for tests and the simulator: it sits between a listen address
//! and an upstream and models a bad link: outages, refused connections, resets after a byte
//! count or at random (seeded), stalls, a bandwidth cap and added latency. Faults are switched
//! at run time through a [`Handle`] (or the binary's control socket) or scripted as a
//! [`Schedule`] of commands at times relative to the start.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use tokio_util::sync::CancellationToken;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let upstream = "127.0.0.1:8080".parse().expect("addr");
//! let (proxy, _task) = faultproxy::spawn(listener, upstream, 42, CancellationToken::new());
//! proxy.apply_line("rate 65536").expect("command");
//! proxy.apply_line("down").expect("command");   // cut live connections, refuse new ones
//! proxy.apply_line("up").expect("command");
//! println!("{:?}", proxy.stats());
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`command`]: the command words and the schedule file (pure).
//! - [`bucket`]: the byte-rate limiter (pure, the clock is a parameter).
//! - [`proxy`]: the accept loop, the per-connection tasks, [`Handle`] and [`Stats`].

pub mod bucket;
pub mod command;
pub mod proxy;

pub use command::{parse_schedule, Command, Direction, ParseError, Schedule};
pub use proxy::{run, run_schedule, spawn, Faults, Handle, Stats, StatsSnapshot};
