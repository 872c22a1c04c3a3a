//! `iov-faultproxy`: a fault-injecting TCP proxy.
//!
//! ```text
//! iov-faultproxy --listen 127.0.0.1:9000 --upstream 127.0.0.1:8080 [--schedule FILE] [--seed N]
//!                [--control 127.0.0.1:9001]
//! iov-faultproxy ctl 127.0.0.1:9001 down
//! ```
//!
//! Commands (see the library's `command` module) come from the schedule, from standard input
//! (one per line) and from the control socket (one per line, answered `ok` or `error: ...`).
//! SIGTERM/SIGINT or the end of standard input with `--exit-on-eof` stop it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "iov-faultproxy", version, about = "Fault-injecting TCP proxy")]
struct Cli {
    #[command(subcommand)]
    command: Option<Ctl>,
    /// Address to accept clients on.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Where to connect each client.
    #[arg(long)]
    upstream: Option<SocketAddr>,
    /// Schedule file: `TIME COMMAND` lines, times relative to the start.
    #[arg(long)]
    schedule: Option<PathBuf>,
    /// Seed of the random faults (`drop`, `reset-random`).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Accept control commands (one per line) on this address (keep it on loopback).
    #[arg(long)]
    control: Option<SocketAddr>,
}

#[derive(Subcommand)]
enum Ctl {
    /// Send one command to a running proxy's control socket.
    Ctl {
        control: SocketAddr,
        #[arg(trailing_var_arg = true, required = true)]
        words: Vec<String>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(real_main(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn real_main(cli: Cli) -> anyhow::Result<()> {
    if let Some(Ctl::Ctl { control, words }) = cli.command {
        let mut s = tokio::net::TcpStream::connect(control)
            .await
            .with_context(|| format!("connecting to the control socket {control}"))?;
        s.write_all(format!("{}\n", words.join(" ")).as_bytes()).await?;
        let mut reply = String::new();
        BufReader::new(s).read_line(&mut reply).await?;
        let reply = reply.trim();
        println!("{reply}");
        anyhow::ensure!(reply == "ok", "the proxy refused the command");
        return Ok(());
    }
    let listen = cli.listen.context("--listen is required")?;
    let upstream = cli.upstream.context("--upstream is required")?;
    let schedule = match &cli.schedule {
        None => Vec::new(),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading the schedule {}", p.display()))?;
            faultproxy::parse_schedule(&text)
                .with_context(|| format!("schedule {}", p.display()))?
        }
    };
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    let shutdown = CancellationToken::new();
    let start = tokio::time::Instant::now();
    let (handle, proxy) = faultproxy::spawn(listener, upstream, cli.seed, shutdown.clone());
    tracing::info!(%listen, %upstream, seed = cli.seed, "proxying");
    tokio::spawn(faultproxy::run_schedule(handle.clone(), schedule, start, shutdown.clone()));
    if let Some(addr) = cli.control {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the control socket {addr}"))?;
        tokio::spawn(control(l, handle.clone(), shutdown.clone()));
    }
    tokio::spawn(stdin_commands(handle.clone(), shutdown.clone()));
    wait_for_signal().await;
    shutdown.cancel();
    let _ = proxy.await;
    let s = handle.stats();
    println!(
        "iov-faultproxy: accepted={} refused={} connect_failed={} resets={} bytes_up={} bytes_down={}",
        s.accepted, s.refused, s.connect_failed, s.resets, s.bytes_up, s.bytes_down
    );
    Ok(())
}

/// Commands from standard input, until it closes.
async fn stdin_commands(handle: faultproxy::Handle, shutdown: CancellationToken) {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        let line = tokio::select! {
            () = shutdown.cancelled() => return,
            l = lines.next_line() => match l { Ok(Some(l)) => l, _ => return },
        };
        if line.trim().is_empty() {
            continue;
        }
        if let Err(e) = handle.apply_line(&line) {
            eprintln!("error: {e}");
        }
    }
}

/// One command line per connection... or many: each line is answered `ok` or `error: ...`.
async fn control(
    l: tokio::net::TcpListener,
    handle: faultproxy::Handle,
    shutdown: CancellationToken,
) {
    loop {
        let (s, _) = tokio::select! {
            () = shutdown.cancelled() => return,
            a = l.accept() => match a { Ok(a) => a, Err(_) => continue },
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let (r, mut w) = s.into_split();
            let mut lines = BufReader::new(r.take(64 * 1024)).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let reply = match handle.apply_line(&line) {
                    Ok(()) => "ok\n".to_string(),
                    Err(e) => format!("error: {e}\n"),
                };
                if w.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
