//! Runs the SocketCAN source on one interface and writes what it delivers as a candump `-L` log.
//!
//! ```text
//! can_capture --iface vcan0 --out capture.log --count 20000 [--seconds 120]
//! can_capture --iface vcan0 --out capture.log --seconds 10
//! ```
//!
//! Stops when the source has seen `--count` frames (received, or dropped by the kernel), or after
//! `--seconds`, whichever comes first; then drains the channel into the log. Lines on stdout, for
//! scripts to synchronise on:
//! - `ready iface=<iface> clock=<clock>`: the socket is open and filtered; frames sent from now on
//!   are received.
//! - `link-down`, `reopened reconnects=<n> clock=<clock>`: the interface went away and came back.
//! - `progress received=<n>`: at most every 100 ms, when the count changed.
//! - `stats received=.. delivered=.. dropped_full=.. kernel_drops=.. error_frames=.. malformed=..
//!   link_down=.. reconnects=.. wakeups=.. clock=.. written=.. stop=count|seconds cpu_ms=..`: the
//!   last line (`cpu_ms`: the process's CPU time, 10 ms ticks).
//!
//! Exit status: 0 when the stop condition was met (`--count` reached, or `--seconds` without
//! `--count`), 3 when `--count` was not reached in `--seconds`, 1 on errors.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use can_decoders::trace::{CandumpWriter, TimePrecision};
use can_decoders::{CanId, ChannelId};
use clap::Parser;
use gateway::source::socketcan::{Config, Source, State};
use gateway::source::{SourceFrame, SourceStats, StatsSnapshot};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(about = "Capture one SocketCAN interface through the gateway's CAN source")]
struct Args {
    /// Interface to read (vcan0, can0).
    #[arg(long)]
    iface: String,
    /// candump -L log to write.
    #[arg(long)]
    out: PathBuf,
    /// Stop after this many frames seen (received plus dropped by the kernel).
    #[arg(long)]
    count: Option<u64>,
    /// Stop after this many seconds (the bound when --count is given too).
    #[arg(long)]
    seconds: Option<f64>,
    /// Ids to receive, comma separated hex; 8 digits means extended (as candump writes them).
    #[arg(long, value_delimiter = ',')]
    ids: Vec<String>,
    /// Capacity of the channel between the source and the writer.
    #[arg(long, default_value_t = 4096)]
    capacity: usize,
    /// Socket receive buffer in bytes (default: the source's, 4 MiB; 0: the system default).
    #[arg(long)]
    rcvbuf: Option<usize>,
    /// Pause after writing each frame (simulates a slow pipeline, to exercise drops).
    #[arg(long, default_value_t = 0)]
    consumer_delay_ms: u64,
    /// Do not ask for error frames.
    #[arg(long)]
    no_error_frames: bool,
    /// Receive coalescing in milliseconds (default: the source's, 20; 0: off).
    #[arg(long)]
    coalesce_ms: Option<u64>,
}

fn parse_id(text: &str) -> anyhow::Result<CanId> {
    let raw = u32::from_str_radix(text, 16).with_context(|| format!("id {text:?} is not hex"))?;
    let id = if text.len() == 8 { CanId::extended(raw) } else { CanId::standard(raw) };
    id.with_context(|| format!("id {text:?} is out of range"))
}

fn stats_line(s: &StatsSnapshot, written: u64, stop: &str) -> String {
    format!(
        "stats received={} delivered={} dropped_full={} kernel_drops={} error_frames={} \
         malformed={} link_down={} reconnects={} wakeups={} clock={} written={written} stop={stop}",
        s.received,
        s.delivered,
        s.dropped_full,
        s.kernel_drops,
        s.error_frames,
        s.malformed,
        s.link_down,
        s.reconnects,
        s.wakeups,
        s.last_clock.map_or("none", |c| c.name()),
    )
}

/// Prints state changes and progress until the token is cancelled.
async fn report(
    iface: String,
    mut state: tokio::sync::watch::Receiver<State>,
    stats: Arc<SourceStats>,
    done: CancellationToken,
) {
    let mut opened_once = false;
    let mut last_received = u64::MAX;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            biased;
            () = done.cancelled() => return,
            changed = state.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = *state.borrow_and_update();
                match now {
                    State::Open { clock } if !opened_once => {
                        opened_once = true;
                        println!("ready iface={iface} clock={}", clock.name());
                    }
                    State::Open { clock } => {
                        let n = stats.snapshot().reconnects;
                        println!("reopened reconnects={n} clock={}", clock.name());
                    }
                    State::Opening if opened_once => println!("link-down"),
                    State::Opening | State::Stopped => {}
                }
            }
            _ = tick.tick() => {
                let received = stats.snapshot().received;
                if received != last_received {
                    last_received = received;
                    println!("progress received={received}");
                }
            }
        }
    }
}

async fn capture(args: Args) -> anyhow::Result<ExitCode> {
    if args.count.is_none() && args.seconds.is_none() {
        bail!("give --count N, --seconds S, or both");
    }
    if args.capacity == 0 {
        bail!("--capacity must be at least 1");
    }
    let ids = args.ids.iter().map(|t| parse_id(t)).collect::<anyhow::Result<Vec<_>>>()?;
    let file =
        File::create(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let mut writer = CandumpWriter::new(BufWriter::with_capacity(64 * 1024, file))
        .with_precision(TimePrecision::Nanos);

    let mut config = Config::new(args.iface.clone(), ChannelId(0));
    config.ids = ids;
    config.error_frames = !args.no_error_frames;
    if let Some(ms) = args.coalesce_ms {
        config.coalesce = Duration::from_millis(ms);
    }
    match args.rcvbuf {
        Some(0) => config.recv_buffer_bytes = None,
        Some(bytes) => config.recv_buffer_bytes = Some(bytes),
        None => {}
    }
    let stats = Arc::new(SourceStats::default());
    let (tx, mut rx) = mpsc::channel::<SourceFrame>(args.capacity);
    let source = Source::new(config, tx, stats.clone())?;
    let state = source.state();
    let shutdown = CancellationToken::new();
    let source_task = tokio::spawn(source.run(shutdown.clone()));
    let report_done = CancellationToken::new();
    let reporter =
        tokio::spawn(report(args.iface.clone(), state, stats.clone(), report_done.clone()));

    let deadline = args.seconds.map(|s| tokio::time::Instant::now() + Duration::from_secs_f64(s));
    let sleep_until = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(sleep_until);
    let reached = |s: &StatsSnapshot| args.count.is_some_and(|n| s.received + s.kernel_drops >= n);
    let mut check = tokio::time::interval(Duration::from_millis(20));
    let mut written = 0u64;
    let delay = Duration::from_millis(args.consumer_delay_ms);
    let stop = loop {
        tokio::select! {
            biased;
            () = &mut sleep_until => break "seconds",
            _ = check.tick() => {
                if reached(&stats.snapshot()) {
                    break "count";
                }
            }
            item = rx.recv() => {
                let Some(item) = item else { break "source-ended" };
                writer.write(&item.frame, &args.iface).context("writing the log")?;
                written += 1;
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
            }
        }
    };
    shutdown.cancel();
    let source_result = source_task.await.context("the source task panicked")?;
    // What the source delivered before it stopped is still queued: write it too.
    while let Some(item) = rx.recv().await {
        writer.write(&item.frame, &args.iface).context("writing the log")?;
        written += 1;
    }
    writer.into_inner().context("flushing the log")?.flush().context("flushing the log")?;
    // The reporter may still owe the last progress line; it is not needed after the stats.
    report_done.cancel();
    reporter.await.context("the report task panicked")?;
    let snapshot = stats.snapshot();
    println!(
        "{} cpu_ms={}",
        stats_line(&snapshot, written, stop),
        process_metrics::ProcessSample::of_self().map_or(0, |s| (s.cpu_seconds * 1000.0) as u64)
    );
    source_result.context("the CAN source failed")?;
    Ok(match stop {
        "count" => ExitCode::SUCCESS,
        "seconds" if args.count.is_none() => ExitCode::SUCCESS,
        _ => ExitCode::from(3),
    })
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("can_capture: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(capture(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("can_capture: {e:#}");
            ExitCode::from(1)
        }
    }
}
