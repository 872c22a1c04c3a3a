//! The daemon's task graph: `run(config, store, shutdown)`.
//!
//! ```text
//!  socketcan (task per iface) ─┐ try_send: drop new + count
//!  trace (blocking thread) ────┤ blocking_send: waits        ┌──────────┐ send().await ┌──────────────┐
//!                              ├── frames mpsc (bounded) ───►│ pipeline │─────────────►│ store writer │
//!  mqtt (task per broker) ─────┴── mqtt mpsc (bounded) ─────►│  (task)  │ pending mpsc │   (thread)   │
//!          ▲  send().await: waits, unacked                   └──────────┘              └──────┬───────┘
//!          └────────────────── watch<Durable>: ack QoS 1 up to the durable sequence ──────────┘
//! ```
//!
//! Shutdown (the token is cancelled by SIGTERM/SIGINT, a trace with `at_end = "shutdown"`, or
//! a failing critical task): sources stop and drop their senders; the pipeline drains what is
//! queued, seals the partial block and closes the writer's channel; the writer appends it (a
//! synced batch) and ends; MQTT sources send the acks of that block and disconnect. A writer
//! error is fatal: everything is cancelled and `run` returns the error.

use std::sync::Arc;
use std::time::Duration;

use ledger::seal::SealOptions;
use ledger::store::Store;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, SourceKind};
use crate::health::{Health, SourceEntry, SourceKindLabel};
use crate::pipeline::{Counters, MqttMessage, Pending, Pipeline};
use crate::source::channels::Channels;
use crate::source::{SourceFrame, SourceStats};
use crate::writer::{Durable, WriteError, Writer};

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    #[error("store writer: {0}")]
    Writer(#[from] WriteError),
    #[error("source {name}: {reason}")]
    Source { name: String, reason: String },
    #[error("the store writer thread panicked or was cancelled: {0}")]
    Join(String),
    #[error("metrics: binding {addr}: {reason}")]
    Metrics { addr: std::net::SocketAddr, reason: String },
    #[error("local API: {0}")]
    Api(#[from] crate::api::BindError),
    #[error("sync: {0}")]
    Sync(String),
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Summary {
    pub counters: Counters,
    pub durable: Durable,
    pub elapsed: Duration,
    /// Per source: name and counters.
    pub sources: Vec<(String, crate::source::StatsSnapshot)>,
}

/// Runs the gateway until `shutdown` is cancelled (or a trace ends with `at_end = "shutdown"`),
/// then shuts down gracefully. `store` is the gateway's log (RocksDB in the daemon).
pub async fn run(
    config: Config,
    store: Box<dyn Store + Send>,
    shutdown: CancellationToken,
) -> Result<Summary, RunError> {
    run_with(config, store, shutdown, Arc::new(Health::new(Duration::from_secs(1)))).await
}

/// [`run`], reporting to `health`: sources and the writer's durable marks are registered, the
/// pipeline bumps the heartbeat, readiness is set once every task is spawned (the store is
/// open, every source opened or waiting for its input), and with `config.metrics` the metrics
/// endpoint is served (a bind failure is fatal at start).
pub async fn run_with(
    config: Config,
    store: Box<dyn Store + Send>,
    shutdown: CancellationToken,
    health: Arc<Health>,
) -> Result<Summary, RunError> {
    run_serving(config, store, None, shutdown, health).await
}

/// Read handles on the writer's store (`Rocks::reader` in the daemon), made on demand for the
/// tasks that read while it appends: the local read API and the sync agents.
pub type StoreReaders = Arc<dyn Fn() -> Box<dyn Store + Send + Sync> + Send + Sync>;

/// [`run_with`], with read handles on the store: the local read API ([`crate::api`]) is served
/// when `config.api` is set (binding it is a start-up error), and one sync agent runs per
/// `[ledgers.NAME]` (without `readers` a config with ledgers is refused). The agents stop after
/// the writer: they get the last block and `shutdown_grace` for a last attempt.
pub async fn run_serving(
    config: Config,
    store: Box<dyn Store + Send>,
    readers: Option<StoreReaders>,
    shutdown: CancellationToken,
    health: Arc<Health>,
) -> Result<Summary, RunError> {
    let ledger_names: Vec<String> = config.ledgers.iter().map(|l| l.name.clone()).collect();
    let api = match (&config.api, &readers) {
        (Some(a), Some(r)) => {
            let reader: crate::api::Reader = Arc::from(r());
            Some(crate::api::Api::bind(a, &config, reader, health.clone(), ledger_names).await?)
        }
        (Some(_), None) => {
            tracing::warn!("[api] is configured but this store has no read handle: not served");
            None
        }
        (None, _) => None,
    };
    let started = tokio::time::Instant::now();
    let metrics_listener = match config.metrics {
        None => None,
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| RunError::Metrics { addr, reason: e.to_string() })?;
            tracing::info!(%addr, "metrics listening");
            Some(l)
        }
    };
    let opts = SealOptions { zstd_level: config.block.zstd_level, ..SealOptions::default() };
    let (writer, durable_rx) =
        Writer::new(store, config.signer.clone(), opts, config.sources.len())?;
    let source_names: Vec<String> = config.sources.iter().map(|s| s.name.clone()).collect();
    let retention_stats = Arc::new(crate::retention::Stats::new(
        config.retention.policy.map(|p| p.quota),
        &source_names,
    ));
    let writer = writer.with_retention(crate::retention::Retention::new(
        &config.retention,
        retention_stats.clone(),
        shutdown.clone(),
    ));
    health.set_durable(durable_rx.clone());
    health.set_retention(retention_stats.clone());
    let agents = match (&readers, config.ledgers.is_empty()) {
        (_, true) => Vec::new(),
        (Some(r), false) => {
            let r = r.clone();
            let sync_readers: crate::sync::Readers =
                Arc::new(move || -> crate::sync::ReadHandle { r() });
            crate::sync::agents(&config.ledgers, &sync_readers, &durable_rx)
                .map_err(|e| RunError::Sync(e.to_string()))?
        }
        (None, false) => return Err(RunError::Sync(
            "[ledgers] configured but the store has no read handles (sync needs the RocksDB store)"
                .into(),
        )),
    };
    let sync_stats: Arc<[Arc<crate::sync::AgentStats>]> =
        agents.iter().map(|a| a.stats.clone()).collect();
    // Not a child of `shutdown`: agents outlive the writer to send the last block.
    let sync_stop = CancellationToken::new();
    let _sync_guard = sync_stop.clone().drop_guard();
    let sync_tasks: Vec<_> = agents
        .into_iter()
        .map(|a| tokio::spawn(a.run(sync_stop.clone(), config.shutdown_grace)))
        .collect();
    let (pending_tx, pending_rx) = mpsc::channel::<Pending>(config.writer_capacity.get());
    let writer_task = tokio::task::spawn_blocking(move || writer.run(pending_rx).map(|_| ()));

    let cap = config.pipeline_capacity.get();
    let (frames_tx, frames_rx) = mpsc::channel::<SourceFrame>(cap);
    let (mqtt_tx, mqtt_rx) = mpsc::channel::<MqttMessage>(cap);
    let channels = Channels::new(
        &config
            .sources
            .iter()
            .map(|s| match &s.kind {
                SourceKind::SocketCan(c) => c.iface.clone(),
                _ => s.name.clone(),
            })
            .collect::<Vec<_>>(),
    );
    let tracker = TaskTracker::new();
    let failure: Arc<std::sync::Mutex<Option<RunError>>> = Arc::default();
    let fail = {
        let failure = failure.clone();
        let shutdown = shutdown.clone();
        move |e: RunError| {
            tracing::error!(error = %e, "critical task failed: shutting down");
            let mut f = failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            f.get_or_insert(e);
            shutdown.cancel();
        }
    };
    let mut stats = Vec::new();
    for (i, s) in config.sources.iter().enumerate() {
        let st = Arc::new(SourceStats::default());
        stats.push((s.name.clone(), st.clone()));
        health.add_source(SourceEntry {
            name: s.name.clone(),
            label: match &s.kind {
                SourceKind::SocketCan(c) => c.iface.clone(),
                _ => s.name.clone(),
            },
            kind: match &s.kind {
                SourceKind::Mqtt(_) => SourceKindLabel::Mqtt,
                _ => SourceKindLabel::Frames,
            },
            stats: st.clone(),
        });
        let name = s.name.clone();
        let fail = fail.clone();
        let token = shutdown.clone();
        match &s.kind {
            SourceKind::SocketCan(c) => {
                let src = crate::source::socketcan::Source::new(c.clone(), frames_tx.clone(), st)
                    .map_err(|e| RunError::Source {
                    name: name.clone(),
                    reason: e.to_string(),
                })?;
                tracker.spawn(async move {
                    if let Err(e) = src.run(token).await {
                        fail(RunError::Source { name, reason: e.to_string() });
                    }
                });
            }
            SourceKind::Trace(t) => {
                let src = crate::source::trace::TraceSource {
                    name: name.clone(),
                    index: i,
                    config: t.clone(),
                    channels: channels.clone(),
                    tx: frames_tx.clone(),
                    stats: st,
                };
                // `at_end = "continue"`: the gateway keeps running after the trace (API, sync,
                // metrics, the age trigger) until it is stopped, even when the trace is its only
                // source: a sender held until shutdown keeps the pipeline's input open.
                if t.at_end == crate::config::AtEnd::Continue {
                    let (hold, token) = (frames_tx.clone(), token.clone());
                    tracker.spawn(async move {
                        token.cancelled().await;
                        drop(hold);
                    });
                }
                tracker.spawn_blocking(move || {
                    if let Err(e) = src.run_blocking(&token) {
                        fail(RunError::Source { name, reason: e.to_string() });
                    }
                });
            }
            SourceKind::Mqtt(m) => {
                let src = crate::source::mqtt::MqttSource {
                    name: name.clone(),
                    index: i,
                    config: m.clone(),
                    tx: Some(mqtt_tx.clone()),
                    durable: durable_rx.clone(),
                    stats: st,
                    grace: config.shutdown_grace,
                };
                tracker.spawn(async move {
                    if let Err(e) = src.run(token).await {
                        fail(RunError::Source { name, reason: e.to_string() });
                    }
                });
            }
        }
    }
    drop(frames_tx);
    drop(mqtt_tx);
    // Served until `run` returns (also when it ends without the token being cancelled), apart
    // from the tracker so that waiting for the sources never waits for it.
    let metrics_stop = shutdown.child_token();
    let _metrics_guard = metrics_stop.clone().drop_guard();
    if let Some(l) = metrics_listener {
        tokio::spawn(crate::metrics::serve_with(
            l,
            health.clone(),
            sync_stats,
            metrics_stop.clone(),
        ));
    }
    if let Some(api) = api {
        tokio::spawn(api.serve(metrics_stop));
    }
    tracker.close();

    let pipeline = Pipeline::new(&config);
    let pipe = tokio::spawn(pipeline_task(
        pipeline,
        frames_rx,
        mqtt_rx,
        channels,
        pending_tx,
        started,
        health.clone(),
        retention_stats,
        shutdown.clone(),
    ));
    health.set_ready();
    let counters = pipe.await.map_err(|e| RunError::Join(e.to_string()))?;
    let writer_result = writer_task.await.map_err(|e| RunError::Join(e.to_string()))?;
    // The writer is done: agents make their last attempt (bounded by the grace period).
    sync_stop.cancel();
    let sync_wait = async {
        for t in sync_tasks {
            let _ = t.await;
        }
    };
    if tokio::time::timeout(config.shutdown_grace + Duration::from_secs(1), sync_wait)
        .await
        .is_err()
    {
        tracing::warn!("sync agents did not stop within the shutdown grace period");
    }
    if let Err(e) = writer_result {
        shutdown.cancel();
        let grace = config.shutdown_grace;
        let _ = tokio::time::timeout(grace, tracker.wait()).await;
        return Err(RunError::Writer(e));
    }
    // MQTT sources send their last acks, then stop.
    if tokio::time::timeout(config.shutdown_grace, tracker.wait()).await.is_err() {
        tracing::warn!("sources did not stop within the shutdown grace period");
    }
    let failed = failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    if let Some(e) = failed {
        return Err(e);
    }
    let durable = durable_rx.borrow().clone();
    Ok(Summary {
        counters,
        durable,
        elapsed: started.elapsed(),
        sources: stats.into_iter().map(|(n, s)| (n, s.snapshot())).collect(),
    })
}

/// Frames the pipeline task takes from its channel per wake-up, at most.
const DRAIN_MAX: usize = 256;

/// One frame into the pipeline, its channel resolved through the task's cache; while retention
/// refuses input (`quota` is `Some`), counted as a `quota` drop instead.
fn take_frame(
    p: &mut Pipeline,
    cache: &mut Vec<Option<crate::source::channels::Channel>>,
    channels: &Channels,
    sf: &SourceFrame,
    now: Duration,
    quota: Option<&crate::retention::Stats>,
) -> Option<Pending> {
    let id = usize::from(sf.frame.channel.0);
    if cache.len() <= id {
        cache.resize(id + 1, None);
    }
    if cache[id].is_none() {
        cache[id] = channels.get(sf.frame.channel);
    }
    match &cache[id] {
        Some(ch) => match quota {
            Some(q) => {
                q.count_quota_drop(ch.source);
                None
            }
            None => p.push_can(ch.source, &ch.name, &sf.frame, now),
        },
        None => {
            tracing::warn!(channel = id, "frame from an unregistered channel dropped");
            None
        }
    }
}

/// The pipeline task: takes records until every source has closed its sender, seals by
/// count/size/age, then seals the partial block and closes the writer's channel.
///
/// While retention refuses input (`when_full = "stop"`, store over its quota) it keeps reading
/// frames but drops them, counted per source with reason `quota` (the CAN edge's own policy:
/// a bus cannot wait), and stops reading MQTT, so nothing more is acknowledged and the broker
/// keeps the messages. The open block is not sealed by age meanwhile (it cannot grow): the
/// pipeline then never waits on the writer holding its blocks, so its heartbeat, and with it the
/// systemd watchdog, keeps going. The idle tick re-reads the flag, so input resumes within a
/// tick. Once shutdown starts, input is taken again so that the sources' channels drain and close.
#[allow(clippy::too_many_arguments)]
async fn pipeline_task(
    mut p: Pipeline,
    mut frames: mpsc::Receiver<SourceFrame>,
    mut mqtt: mpsc::Receiver<MqttMessage>,
    channels: Channels,
    writer: mpsc::Sender<Pending>,
    started: tokio::time::Instant,
    health: Arc<Health>,
    retention: Arc<crate::retention::Stats>,
    shutdown: CancellationToken,
) -> Counters {
    let mut tick = tokio::time::interval(health.tick());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cache: Vec<Option<crate::source::channels::Channel>> = Vec::new();
    let (mut frames_open, mut mqtt_open) = (true, true);
    let mut writer_open = true;
    let send = |pending: Option<Pending>| {
        let writer = writer.clone();
        async move {
            match pending {
                Some(b) => writer.send(b).await.is_ok(),
                None => true,
            }
        }
    };
    while frames_open || mqtt_open {
        health.beat();
        // At shutdown everything left is taken (and written even over the quota), so that the
        // sources' channels drain and close.
        let refusing = retention.refusing() && !shutdown.is_cancelled();
        let deadline = p.deadline().map(|d| started + d);
        let out = tokio::select! {
            biased;
            () = async { if let Some(d) = deadline { tokio::time::sleep_until(d).await } }, if deadline.is_some() && !refusing => {
                p.poll(started.elapsed())
            }
            // Keeps the heartbeat going while no input arrives.
            _ = tick.tick() => {
                if health.stall_requested() {
                    tracing::warn!("TEST ONLY: stall trigger ({}): the pipeline stops", crate::health::STALL_ENV);
                    std::future::pending::<()>().await;
                }
                None
            }
            f = frames.recv(), if frames_open => match f {
                None => { frames_open = false; None }
                Some(sf) => {
                    // One clock read per batch: the age trigger needs no finer time.
                    let now = started.elapsed();
                    let quota = refusing.then_some(&*retention);
                    let mut out = take_frame(&mut p, &mut cache, &channels, &sf, now, quota);
                    // Take what is already queued without another trip through `select!`
                    // (its timer and wake-up bookkeeping cost more than a frame), up to
                    // DRAIN_MAX, stopping at a sealed block.
                    let mut n = 1;
                    while out.is_none() && n < DRAIN_MAX {
                        let Ok(sf) = frames.try_recv() else { break };
                        out = take_frame(&mut p, &mut cache, &channels, &sf, now, quota);
                        n += 1;
                    }
                    out
                }
            },
            m = mqtt.recv(), if mqtt_open && !refusing => match m {
                None => { mqtt_open = false; None }
                Some(m) => p.push_mqtt(m, started.elapsed()),
            },
        };
        if out.is_some() && !send(out).await {
            writer_open = false;
            break;
        }
    }
    if writer_open {
        if let Some(last) = p.flush() {
            tracing::info!(records = last.record_count(), "sealing the partial block");
            let _ = send(Some(last)).await;
        }
    }
    p.counters()
}

#[cfg(test)]
mod tests {
    use ledger::store::memory::Memory;
    use ledger::store::{Append, Place, StoreError};

    use super::*;

    /// A store whose appends fail like a failed fsync; reads delegate to memory.
    struct FailingStore(Memory);

    type R<T> = Result<T, StoreError>;

    impl Store for FailingStore {
        fn size(&self) -> u64 {
            self.0.size()
        }
        fn origin(&self) -> &str {
            self.0.origin()
        }
        fn append(&mut self, _: &Append) -> R<()> {
            Err(StoreError::Io {
                place: Place { cf: "headers", key: "height 0".into() },
                reason: "fsync: EIO (injected)".into(),
            })
        }
        fn header(&self, h: u64) -> R<Option<Vec<u8>>> {
            self.0.header(h)
        }
        fn lane(&self, h: u64, l: u16) -> R<Option<Vec<u8>>> {
            self.0.lane(h, l)
        }
        fn lanes(&self, h: u64) -> R<Vec<Vec<u8>>> {
            self.0.lanes(h)
        }
        fn tile(&self, l: u8, i: u64) -> R<Option<Vec<u8>>> {
            self.0.tile(l, i)
        }
        fn bundle(&self, i: u64) -> R<Option<Vec<u8>>> {
            self.0.bundle(i)
        }
        fn checkpoint(&self) -> R<Option<Vec<u8>>> {
            self.0.checkpoint()
        }
        fn checkpoint_at(&self, s: u64) -> R<Option<Vec<u8>>> {
            self.0.checkpoint_at(s)
        }
        fn last_checkpoint_size(&self) -> R<Option<u64>> {
            self.0.last_checkpoint_size()
        }
        fn checkpoint_sizes(&self) -> R<Vec<u64>> {
            self.0.checkpoint_sizes()
        }
        fn last_heights(&self) -> R<(Option<u64>, Option<u64>)> {
            self.0.last_heights()
        }
        fn cursor(&self, l: &str) -> R<Option<Vec<u8>>> {
            self.0.cursor(l)
        }
        fn set_cursor(&mut self, l: &str, v: &[u8]) -> R<()> {
            self.0.set_cursor(l, v)
        }
        fn receipt(&self, l: &str) -> R<Option<Vec<u8>>> {
            self.0.receipt(l)
        }
        fn set_receipt(&mut self, l: &str, v: &[u8]) -> R<()> {
            self.0.set_receipt(l, v)
        }
    }

    /// A memory store whose appends wait until the test drops the gate's sender: a writer
    /// stuck in a hung fsync.
    struct WedgedStore {
        inner: Memory,
        gate: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    }

    impl Store for WedgedStore {
        fn size(&self) -> u64 {
            self.inner.size()
        }
        fn origin(&self) -> &str {
            self.inner.origin()
        }
        fn append(&mut self, a: &Append) -> R<()> {
            // Err(Disconnected) once the test drops the sender: then the append goes through.
            let _ = self.gate.lock().unwrap_or_else(std::sync::PoisonError::into_inner).recv();
            self.inner.append(a)
        }
        fn header(&self, h: u64) -> R<Option<Vec<u8>>> {
            self.inner.header(h)
        }
        fn lane(&self, h: u64, l: u16) -> R<Option<Vec<u8>>> {
            self.inner.lane(h, l)
        }
        fn lanes(&self, h: u64) -> R<Vec<Vec<u8>>> {
            self.inner.lanes(h)
        }
        fn tile(&self, l: u8, i: u64) -> R<Option<Vec<u8>>> {
            self.inner.tile(l, i)
        }
        fn bundle(&self, i: u64) -> R<Option<Vec<u8>>> {
            self.inner.bundle(i)
        }
        fn checkpoint(&self) -> R<Option<Vec<u8>>> {
            self.inner.checkpoint()
        }
        fn checkpoint_at(&self, s: u64) -> R<Option<Vec<u8>>> {
            self.inner.checkpoint_at(s)
        }
        fn last_checkpoint_size(&self) -> R<Option<u64>> {
            self.inner.last_checkpoint_size()
        }
        fn checkpoint_sizes(&self) -> R<Vec<u64>> {
            self.inner.checkpoint_sizes()
        }
        fn last_heights(&self) -> R<(Option<u64>, Option<u64>)> {
            self.inner.last_heights()
        }
        fn cursor(&self, l: &str) -> R<Option<Vec<u8>>> {
            self.inner.cursor(l)
        }
        fn set_cursor(&mut self, l: &str, v: &[u8]) -> R<()> {
            self.inner.set_cursor(l, v)
        }
        fn receipt(&self, l: &str) -> R<Option<Vec<u8>>> {
            self.inner.receipt(l)
        }
        fn set_receipt(&mut self, l: &str, v: &[u8]) -> R<()> {
            self.inner.set_receipt(l, v)
        }
    }

    /// The watchdog's premise (D90): while the writer is wedged the pipeline blocks on its
    /// channel and the heartbeat stops; once the writer moves, the run completes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wedged_writer_stops_the_pipeline_heartbeat() {
        let k = crate::pipeline::tests::keys();
        let mut cfg = trace_config(&k);
        cfg.writer_capacity = std::num::NonZeroUsize::MIN;
        let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
        let store = Box::new(WedgedStore {
            inner: Memory::new(cfg.signer.name()),
            gate: std::sync::Mutex::new(gate_rx),
        });
        let health = Arc::new(Health::new(Duration::from_millis(5)));
        let token = CancellationToken::new();
        let task = tokio::spawn(run_with(cfg, store, token.clone(), health.clone()));
        tokio::time::timeout(Duration::from_secs(30), health.wait_ready()).await.expect("ready");
        // Bounded wait for the heartbeat to stand still over ten idle ticks (50 ms).
        let stalled_at = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let before = health.heartbeat();
                tokio::time::sleep(Duration::from_millis(50)).await;
                if health.heartbeat() == before {
                    return before;
                }
            }
        })
        .await
        .expect("the heartbeat stalls behind the wedged writer");
        assert!(stalled_at > 0, "the pipeline had been beating");
        assert!(!task.is_finished(), "the run is stuck, not finished");
        let (_, d) = health.durable().expect("writer registered");
        assert_eq!(d.size, 0, "nothing became durable while the writer was wedged");
        drop(gate_tx);
        let s = tokio::time::timeout(Duration::from_secs(120), task)
            .await
            .expect("run ends once the writer moves")
            .expect("join")
            .expect("run succeeds");
        assert!(health.heartbeat() > stalled_at, "the heartbeat moved again");
        assert_eq!(s.durable.records, 640_067);
    }

    fn trace_config(k: &crate::pipeline::tests::Keys) -> Config {
        let f = crate::pipeline::tests::fixtures();
        let text = format!(
            "[gateway]\nsigning_key = \"signing.key\"\nstore = \"store\"\n[block]\nmax_records = 1000\n\
             [recipients]\nfactory = \"factory.pub\"\n\
             [sources.replay]\nkind = \"trace\"\nfile = \"{}\"\npace = \"fast\"\nat_end = \"shutdown\"\n\
             [lanes.factory]\ncarries = \"raw\"\nrecipients = [\"factory\"]\n",
            f.join("traces/canmod_gps_3BA199E2.log.gz").display()
        );
        Config::from_toml(&text, &k.dir.path().join("g.toml")).expect("config")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_append_stops_the_gateway_with_the_writer_error() {
        let k = crate::pipeline::tests::keys();
        let cfg = trace_config(&k);
        let store = Box::new(FailingStore(Memory::new(cfg.signer.name())));
        let token = CancellationToken::new();
        let r = tokio::time::timeout(Duration::from_secs(60), run(cfg, store, token.clone()))
            .await
            .expect("run ends");
        match r {
            Err(RunError::Writer(WriteError::Append { height: 0, .. })) => {}
            other => panic!("expected the writer's append error, got {other:?}"),
        }
        assert!(token.is_cancelled(), "everything else was told to stop");
    }

    /// `at_end = "continue"` with the trace as the only source: the gateway keeps running after
    /// the trace (the partial block waits for its age or for shutdown), and stops on request.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_trace_with_at_end_continue_keeps_the_gateway_running_until_stopped() {
        let k = crate::pipeline::tests::keys();
        let mut cfg = trace_config(&k);
        match &mut cfg.sources[0].kind {
            SourceKind::Trace(t) => t.at_end = crate::config::AtEnd::Continue,
            other => panic!("expected the trace source, got {other:?}"),
        }
        cfg.block.max_age = Duration::from_secs(3600);
        let health = Arc::new(Health::new(Duration::from_millis(5)));
        let token = CancellationToken::new();
        let store = Box::new(Memory::new(cfg.signer.name()));
        let mut task = tokio::spawn(run_with(cfg, store, token.clone(), health.clone()));
        tokio::time::timeout(Duration::from_secs(30), health.wait_ready()).await.expect("ready");
        // Every full block of the trace becomes durable; the last 67 frames wait in the open block.
        tokio::time::timeout(Duration::from_secs(120), async {
            while health.durable().map(|(_, d)| d.records) != Some(640_000) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the trace's full blocks become durable");
        // Before the fix the pipeline closed with the trace and the run ended at once.
        assert!(
            tokio::time::timeout(Duration::from_millis(300), &mut task).await.is_err(),
            "the gateway stopped at the end of the trace"
        );
        token.cancel();
        let s = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("run ends on shutdown")
            .expect("join")
            .expect("run succeeds");
        assert_eq!(s.durable.records, 640_067, "shutdown sealed the partial block");
        assert_eq!(s.durable.size, 641);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_trace_run_into_memory_stores_every_frame_and_stops_at_its_end() {
        let k = crate::pipeline::tests::keys();
        let cfg = trace_config(&k);
        let store = Box::new(Memory::new(cfg.signer.name()));
        let s = tokio::time::timeout(
            Duration::from_secs(120),
            run(cfg, store, CancellationToken::new()),
        )
        .await
        .expect("run ends")
        .expect("run succeeds");
        assert_eq!(s.counters.frames_in, 640_067);
        assert_eq!(s.durable.records, 640_067);
        assert_eq!(s.durable.size, 641, "blocks of 1,000 frames and the partial last one");
    }
}
