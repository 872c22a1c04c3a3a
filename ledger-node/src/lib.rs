//! The IoV ledger node (`iov-ledger`): witness and mirror of enrolled gateways' logs.
//!
//! A gateway sends its newest checkpoint (C2SP tlog-witness `add-checkpoint`); the node checks
//! it against the gateway's enrolled key and the latest checkpoint it cosigned, cosigns it
//! (C2SP tlog-cosignature, the organisation's key) and persists it atomically. Then the gateway
//! uploads headers and this organisation's lanes in batches, each authenticated by an inclusion
//! proof in a cosigned checkpoint and the `prev` hash chain. Wire format:
//! `ledger::sync_wire` and `docs/sync-protocol.md`.
//!
//! # Layout
//!
//! - [`config`]: the TOML file, validated into typed values; errors name the key.
//! - [`launch`]: the `listening ...` line the daemon prints once it serves, and reading it.
//! - [`store`]: the [`store::LedgerStore`] trait (no backend types in it) and `store::rocks`.
//! - [`mirror`]: the pure upload check (heights, chain, proof, forks, lanes, clock flags).
//! - [`peers`]: cross-witnessing between ledgers: peers, publication policy, split views.
//! - [`token`]: access tokens (hashes in the config, constant-time compare, scopes).
//! - [`metrics`]: Prometheus counters and their text rendering.
//! - [`tls`]: rustls server config from PEM files.
//! - [`server`]: routes, handlers, the accept loop, graceful shutdown.
//! - [`run`]: wires a [`config::Config`] into a running node.

pub mod config;
pub mod launch;
pub mod metrics;
pub mod mirror;
pub mod peers;
pub mod server;
pub mod store;
pub mod tls;
pub mod token;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::server::{Identity, Limits, Node, RunError};

/// Runs the node until `shutdown` is cancelled (SIGTERM) or a fatal store error; then stops
/// accepting, lets open requests finish (bounded), and returns. `on_ready` is called with the
/// bound addresses (main listener, metrics listener) once both accept connections.
#[cfg(feature = "rocks")]
pub async fn run(
    config: Config,
    shutdown: CancellationToken,
    on_ready: impl FnOnce(std::net::SocketAddr, Option<std::net::SocketAddr>),
) -> Result<(), RunError> {
    let path = config.store.clone();
    let store = tokio::task::spawn_blocking(move || store::rocks::Rocks::open(&path))
        .await
        .map_err(|e| RunError::Fatal(format!("opening the store: {e}")))??;
    let tls = match &config.tls {
        None => None,
        Some(t) => Some(tls::server_config(&t.cert_file, &t.key_file).map_err(RunError::Fatal)?),
    };
    let limits = Limits {
        max_upload_bytes: config.max_upload_bytes,
        max_blocks_per_batch: config.max_blocks_per_batch,
        max_connections: config.max_connections,
        request_timeout: config.request_timeout,
        future_tolerance: config.future_tolerance,
    };
    let node = Node::new(
        Arc::new(store),
        Identity {
            name: config.name.clone(),
            cosigner: config.cosigner.clone(),
            log_signer: config.log_signer.clone(),
        },
        config.tokens.clone(),
        limits,
        &config.gateways,
        shutdown.clone(),
    )?;
    server::witness::start(&node, config.cross_witness.clone())?;
    let listener = server::bind(config.listen).await?;
    let main_addr = listener
        .local_addr()
        .map_err(|source| RunError::Listen { addr: config.listen.to_string(), source })?;
    let metrics_task = match config.metrics_listen {
        None => None,
        Some(a) => {
            let l = server::bind(a).await?;
            let bound = l
                .local_addr()
                .map_err(|source| RunError::Listen { addr: a.to_string(), source })?;
            let router = server::metrics_router(node.metrics());
            let sd = shutdown.clone();
            Some((bound, tokio::spawn(server::serve(l, router, None, 4, sd))))
        }
    };
    tracing::info!(
        ledger = %config.name,
        cosigner = %config.cosigner.verifier().to_vkey(),
        aggregate_log = %config.log_signer.as_ref().map_or("none".into(), |s| s.verifier().to_vkey()),
        listen = %main_addr,
        tls = tls.is_some(),
        metrics = ?metrics_task.as_ref().map(|(a, _)| *a),
        "iov-ledger ready"
    );
    on_ready(main_addr, metrics_task.as_ref().map(|(a, _)| *a));
    server::serve(
        listener,
        server::router(node.clone()),
        tls,
        limits.max_connections,
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    if let Some((_, t)) = metrics_task {
        let _ = t.await;
    }
    match node.fatal_error() {
        Some(e) => Err(RunError::Fatal(e)),
        None => Ok(()),
    }
}
