//! `iov-ledger`: the IoV ledger node.
//!
//! - `iov-ledger check-config [--config FILE]`: validate the config; exit 0 when usable, 2 with
//!   the key and the problem when not.
//! - `iov-ledger print-default-config`: print a commented example config.
//! - `iov-ledger run [--config FILE]`: serve until SIGTERM/SIGINT, then finish open requests and
//!   exit 0. A fatal error (store I/O) exits 1 so systemd restarts the node.
//!
//! Under systemd (`Type=notify`, `systemd/iov-ledger.service`): `READY=1` once the listeners
//! accept, `WATCHDOG=1` every half `WatchdogSec=`, `STOPPING=1` at shutdown.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ledger_node::config::{Config, DEFAULT_CONFIG, DEFAULT_PATH};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "iov-ledger",
    version,
    about = "IoV ledger node: witness and mirror of gateway logs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration file.
    CheckConfig {
        #[arg(long, default_value = DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Print a commented example configuration.
    PrintDefaultConfig,
    /// Run the ledger node.
    Run {
        #[arg(long, default_value = DEFAULT_PATH)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::PrintDefaultConfig => {
            print!("{DEFAULT_CONFIG}");
            ExitCode::SUCCESS
        }
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(c) => {
                println!(
                    "{}: ok (ledger {}, cosigner {}, log {}, {} gateways, {} peers, tokens {}, tls {})",
                    config.display(),
                    c.name,
                    c.cosigner.verifier().to_vkey(),
                    c.log_signer.as_ref().map_or("none".into(), |s| s.verifier().to_vkey()),
                    c.gateways.len(),
                    c.cross_witness.peers.len(),
                    if c.tokens.is_empty() { "no" } else { "yes" },
                    if c.tls.is_some() { "on" } else { "off" },
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Run { config } => {
            let c = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            match run(c) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn run(config: Config) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let shutdown = CancellationToken::new();
        let sd = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received, shutting down");
            sd.cancel();
        });
        let result = ledger_node::run(config, shutdown.clone(), |main, metrics| {
            // One machine-readable line on stdout, for supervisors and tests that bind port 0.
            println!("{}", ledger_node::launch::Listening { addr: main, metrics });
            let status = format!("listening on {main}");
            notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(&status)]);
            if let Some(w) = sd_notify::watchdog_enabled() {
                tokio::spawn(watchdog(w, shutdown.clone()));
            }
        })
        .await;
        notify(&[sd_notify::NotifyState::Stopping]);
        result.context("ledger node")
    })
}

/// systemd's `Type=notify` protocol; a no-op without `NOTIFY_SOCKET`, a failed send is logged,
/// never fatal.
fn notify(states: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

/// `WATCHDOG=1` every half `WatchdogSec=` from a task on the runtime that serves requests: a
/// runtime wedged (every worker blocked) stops the pings and systemd restarts the node.
async fn watchdog(period: std::time::Duration, shutdown: CancellationToken) {
    let mut every = tokio::time::interval((period / 2).max(std::time::Duration::from_millis(1)));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => notify(&[sd_notify::NotifyState::Watchdog]),
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
