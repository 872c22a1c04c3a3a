//! The agent task for one ledger: the thin shell around [`Core`].
//!
//! ```text
//!   writer ── watch<Durable> ──► agent ──HTTP──► ledger
//!                                  │ ▲
//!              store read handle ──┘ └── cursor + receipt (synced writes, this ledger's keys)
//! ```
//!
//! Backpressure: the agent never blocks the writer. It only *reads* what is durable (the
//! writer's `watch` says how far; the read handle reads the durable head itself), so a slow or
//! absent ledger only grows the lag, never the pipeline's queue. Its own outputs are the
//! ledger's cursor and receipt (single synced writes outside the log).
//!
//! Loop: wait for a new durable head, the retry timer or shutdown; check the link; then act
//! on the core's next step until it is idle or a step fails (a failure: forget the ledger's
//! state, back off with full jitter, count the error by kind). Every step either moves the
//! ledger forward or fails, so the inner loop is bounded by the log size.
//!
//! Shutdown: when `stop` is cancelled (after the writer made the last block durable), the
//! agent makes one last pass if the link was up, abandoning whatever request is still in
//! flight when `grace` runs out.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ledger::block::BlockHeader;
use ledger::checkpoint::Checkpoint;
use ledger::note::Note;
use ledger::store::cursor::{read_cursor, write_cursor, LedgerCursor};
use ledger::store::{Store, StoreError};
use ledger::sync_wire;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::client::{Client, Fail};
use super::core::{Action, Core, FailKind, Remote};
use super::pace::{Backoff, Budget};
use super::stats::AgentStats;
use super::wire;
use crate::config::LedgerConfig;
use crate::writer::Durable;

/// A store handle the agent may read from (and write its cursor and receipt to).
pub type ReadHandle = Box<dyn Store + Send>;

/// Largest clock skew accepted on a cosignature timestamp (seconds).
pub const MAX_SKEW_S: u64 = 300;

/// Everything one agent needs.
pub struct Agent {
    pub cfg: LedgerConfig,
    pub client: Client,
    pub store: Arc<Mutex<ReadHandle>>,
    pub durable: watch::Receiver<Durable>,
    pub stats: Arc<AgentStats>,
    /// Seed of the backoff jitter (OS randomness in the daemon; fixed in tests).
    pub seed: u64,
}

/// How a pass ended.
enum Pass {
    /// The ledger holds everything durable.
    Idle,
    /// A step failed.
    Failed(Fail),
}

impl Agent {
    /// Runs in the store's blocking context: `f` gets the read handle.
    async fn store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, Fail> {
        let store = self.store.clone();
        let ledger = self.cfg.name.clone();
        tokio::task::spawn_blocking(move || {
            let mut s = store.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut **s)
        })
        .await
        .map_err(|e| Fail::new(FailKind::Store, format!("ledger {ledger}: store task: {e}")))?
        .map_err(|e| Fail::new(FailKind::Store, format!("ledger {ledger}: {e}")))
    }

    /// Runs until `stop`, then makes a last pass within `grace`.
    pub async fn run(self, stop: CancellationToken, grace: Duration) {
        let name = self.cfg.name.clone();
        let mut rng = chacha_from(self.seed);
        let mut backoff = Backoff::new(self.cfg.backoff_min, self.cfg.backoff_max);
        let mut budget = self.cfg.bandwidth.map(|b| Budget::new(b.get()));
        let epoch = Instant::now();
        let (size, cursor) = match self
            .store({
                let name = name.clone();
                move |s| Ok((s.size(), read_cursor(s, &name)?))
            })
            .await
        {
            Ok(v) => v,
            Err(e) => {
                // A damaged cursor: start from nothing known (the ledger's state decides).
                tracing::warn!(ledger = %name, error = %e, "reading the sync cursor");
                self.stats.error(FailKind::Store);
                (self.durable.borrow().size, LedgerCursor::default())
            }
        };
        let mut core = Core::new(size, cursor, self.cfg.batch_blocks.get());
        self.publish(&core);
        let mut durable = self.durable.clone();
        let mut writer_open = true;
        let mut retry_at: Option<Instant> = Some(Instant::now());
        loop {
            // Wait for work: a new durable head, the retry timer, or shutdown.
            let idle =
                core.remote().is_some() && matches!(core.clone().next_action(), Action::Idle);
            if idle || retry_at.is_some_and(|t| t > Instant::now()) {
                tokio::select! {
                    () = stop.cancelled() => break,
                    r = durable.changed(), if writer_open => {
                        if r.is_err() { writer_open = false; }
                    }
                    () = async {
                        match retry_at { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await }
                    } => {}
                }
            }
            core.durable(durable.borrow_and_update().size);
            if retry_at.is_some_and(|t| t > Instant::now()) {
                continue;
            }
            retry_at = None;
            match self.pass(&mut core, &mut budget, epoch, &stop).await {
                Some(Pass::Idle) => {
                    backoff.succeeded();
                }
                Some(Pass::Failed(f)) => {
                    core.failed();
                    let delay = backoff.failed(unit(&mut rng));
                    self.stats.error(f.kind);
                    if matches!(f.kind, FailKind::Link | FailKind::Timeout) {
                        self.stats.link_up.store(0, Ordering::Relaxed);
                    }
                    tracing::warn!(ledger = %name, error = %f, retry_ms = delay.as_millis() as u64, "sync step failed");
                    retry_at = Some(Instant::now() + delay);
                }
                None => {
                    // Stopped mid-pass: what the abandoned request did is unknown.
                    core.failed();
                    break;
                }
            }
            self.publish(&core);
        }
        // Last attempt: everything durable now, bounded by the grace period.
        core.durable(self.durable.borrow().size);
        if self.stats.link_up.load(Ordering::Relaxed) == 1 && core.lag() > 0 {
            let last = CancellationToken::new();
            let guard = last.clone();
            let r =
                tokio::time::timeout(grace, self.pass(&mut core, &mut budget, epoch, &last)).await;
            drop(guard);
            match r {
                Ok(Some(Pass::Idle)) => tracing::info!(ledger = %name, "last sync pass: caught up"),
                Ok(Some(Pass::Failed(f))) => {
                    tracing::warn!(ledger = %name, error = %f, "last sync pass failed")
                }
                _ => {
                    tracing::warn!(ledger = %name, lag = core.lag(), "last sync pass abandoned at the grace period")
                }
            }
            self.publish(&core);
        }
        tracing::info!(ledger = %name, acked = core.cursor().acked, witnessed = core.cursor().witnessed, "sync agent stopped");
    }

    fn publish(&self, core: &Core) {
        let c = core.cursor();
        self.stats.acked.store(c.acked, Ordering::Relaxed);
        self.stats.witnessed.store(c.witnessed, Ordering::Relaxed);
        self.stats.lag.store(core.lag(), Ordering::Relaxed);
    }

    /// One pass: link check, then steps until idle or a failure. `None` when `stop` fired.
    async fn pass(
        &self,
        core: &mut Core,
        budget: &mut Option<Budget>,
        epoch: Instant,
        stop: &CancellationToken,
    ) -> Option<Pass> {
        let link = tokio::select! {
            () = stop.cancelled() => return None,
            r = self.link() => r,
        };
        if let Err(f) = link {
            return Some(Pass::Failed(f));
        }
        self.stats.link_up.store(1, Ordering::Relaxed);
        loop {
            let action = core.next_action();
            let step = async {
                match action {
                    Action::Idle => Ok(true),
                    Action::FetchState => self.fetch_state(core).await.map(|()| false),
                    Action::AddCheckpoint { old, size } => self
                        .add_checkpoint(core, old, size, budget, epoch, stop)
                        .await
                        .map(|()| false),
                    Action::Upload { from, to, witnessed } => self
                        .upload(core, from, to, witnessed, budget, epoch, stop)
                        .await
                        .map(|()| false),
                    Action::Diverged { ours, theirs } => Err(Fail::new(
                        FailKind::Diverged,
                        format!(
                            "ledger {} reports size {theirs}, our log holds {ours}: refusing to \
                             sync (a rolled-back store, or the ledger holds another history)",
                            self.cfg.name
                        ),
                    )),
                }
            };
            let r = tokio::select! {
                () = stop.cancelled() => return None,
                r = step => r,
            };
            self.publish(core);
            match r {
                Ok(true) => return Some(Pass::Idle),
                Ok(false) => {}
                Err(f) => return Some(Pass::Failed(f)),
            }
        }
    }

    async fn link(&self) -> Result<(), Fail> {
        let r = self.client.get(self.client.url(sync_wire::path::LINK)).await?;
        if !r.status.is_success() {
            return Err(wire::refusal("GET /v1/link", &r));
        }
        wire::check_link(&r.body, &self.cfg.cosigner.to_vkey()).map(|_| ())
    }

    async fn fetch_state(&self, core: &mut Core) -> Result<(), Fail> {
        let origin = self.origin().await?;
        let r = self.client.get(self.client.url(&sync_wire::path::state(&origin))).await?;
        if !r.status.is_success() {
            return Err(wire::refusal("GET state", &r));
        }
        let st = wire::GatewayState::from_cbor(&r.body)
            .map_err(|e| Fail::new(FailKind::Protocol, format!("GET state: {e}")))?;
        if st.origin != origin {
            return Err(Fail::new(
                FailKind::Protocol,
                format!("GET state: answered for origin {:?}, asked for {origin:?}", st.origin),
            ));
        }
        if st.lanes != self.cfg.lanes {
            // The ledger decides what it stores; a mismatch is a config problem on one side.
            tracing::warn!(ledger = %self.cfg.name, ours = ?self.cfg.lanes, theirs = ?st.lanes, "the ledger receives other lanes than configured");
        }
        let witnessed = st.witnessed.as_ref().map_or(0, |w| w.size);
        if let Some(c) = core.state(Remote { witnessed, mirrored: st.mirrored }) {
            self.save_cursor(c).await?;
        }
        // A cosignature we never received (its answer was lost) comes back with the state:
        // verify it and keep it as the receipt.
        if let Some(w) = st.witnessed {
            if w.size > core.cursor().witnessed && w.size <= core.local() {
                let size = w.size;
                let note = self.checkpoint_note(size).await?;
                let theirs = Note::parse(&w.checkpoint).map_err(|e| {
                    Fail::new(FailKind::Protocol, format!("GET state: witnessed checkpoint: {e}"))
                })?;
                let ours = Note::parse(&note).map_err(|e| {
                    Fail::new(FailKind::Store, format!("our checkpoint of size {size}: {e}"))
                })?;
                if theirs.text() != ours.text() {
                    return Err(Fail::new(
                        FailKind::Diverged,
                        format!("the ledger's witnessed checkpoint of size {size} is not ours"),
                    ));
                }
                let receipt = self.verify_cosignature(&note, theirs.signatures())?;
                self.store_receipt(core, size, receipt).await?;
            }
        }
        Ok(())
    }

    async fn origin(&self) -> Result<String, Fail> {
        self.store(|s| Ok(s.origin().to_owned())).await
    }

    async fn wait_budget(
        &self,
        budget: &mut Option<Budget>,
        epoch: Instant,
        bytes: u64,
        stop: &CancellationToken,
    ) -> Result<(), Fail> {
        if let Some(b) = budget {
            let wait = b.reserve(epoch.elapsed(), bytes);
            if !wait.is_zero() {
                tokio::select! {
                    () = stop.cancelled() => return Err(Fail::new(FailKind::Link, "stopping")),
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
        Ok(())
    }

    async fn add_checkpoint(
        &self,
        core: &mut Core,
        old: u64,
        size: u64,
        budget: &mut Option<Budget>,
        epoch: Instant,
        stop: &CancellationToken,
    ) -> Result<(), Fail> {
        let note = self.checkpoint_note(size).await?;
        let proof = self
            .store(move |s| {
                // No proof from the empty tree or to the same size (C2SP tlog-witness).
                if old == 0 || old == size {
                    return Ok(Vec::new());
                }
                let proof = ledger::log::consistency_proof(&ledger::store::tiles(s), old, size)
                    .map_err(|e| StoreError::Read {
                        place: ledger::store::Place {
                            cf: "tiles",
                            key: format!("proof {old}..{size}"),
                        },
                        reason: e.to_string(),
                    })?;
                Ok(proof)
            })
            .await?;
        let body = wire::add_checkpoint_body(old, &proof, &note);
        self.wait_budget(budget, epoch, body.len() as u64, stop).await?;
        self.stats.bytes_sent.fetch_add(body.len() as u64, Ordering::Relaxed);
        let r = self
            .client
            .post(self.client.url(sync_wire::path::ADD_CHECKPOINT), wire::TEXT_TYPE, body)
            .await?;
        match r.status.as_u16() {
            200 => {
                let sigs = sync_wire::parse_cosignature_lines(&r.body).map_err(|e| {
                    Fail::new(FailKind::Protocol, format!("add-checkpoint answer: {e}"))
                })?;
                let receipt = self.verify_cosignature(&note, &sigs)?;
                self.store_receipt(core, size, receipt).await?;
                tracing::info!(ledger = %self.cfg.name, old, size, "checkpoint cosigned");
                Ok(())
            }
            409 => {
                let theirs = sync_wire::parse_size_body(&r.body).map_err(|e| {
                    Fail::new(FailKind::Protocol, format!("add-checkpoint 409: {e}"))
                })?;
                tracing::info!(ledger = %self.cfg.name, sent_old = old, theirs, "add-checkpoint conflict: retrying from the ledger's size");
                core.conflict(theirs).map_err(|k| {
                    Fail::new(
                        k,
                        format!("add-checkpoint 409 names size {theirs}, the old size we sent"),
                    )
                })
            }
            _ => Err(wire::refusal("add-checkpoint", &r)),
        }
    }

    /// Our signed checkpoint note of `size`.
    async fn checkpoint_note(&self, size: u64) -> Result<Vec<u8>, Fail> {
        self.store(move |s| {
            s.checkpoint_at(size)?.ok_or_else(|| StoreError::Read {
                place: ledger::store::Place { cf: "checkpoints", key: format!("size {size}") },
                reason: "missing".into(),
            })
        })
        .await
    }

    /// Stores a verified receipt, then moves the cursor's `witnessed` (in that order: a
    /// cursor never claims a receipt that is not on disk).
    async fn store_receipt(
        &self,
        core: &mut Core,
        size: u64,
        receipt: Vec<u8>,
    ) -> Result<(), Fail> {
        let name = self.cfg.name.clone();
        self.store(move |s| s.set_receipt(&name, &receipt)).await?;
        if let Some(c) = core.cosigned(size) {
            self.save_cursor(c).await?;
        }
        Ok(())
    }

    /// Checks the ledger's cosignature among `sigs` on our checkpoint `note` with the pinned
    /// key; returns the receipt: our signed note with that one cosignature line appended.
    fn verify_cosignature(
        &self,
        note: &[u8],
        sigs: &[ledger::note::Signature],
    ) -> Result<Vec<u8>, Fail> {
        let bad =
            |d: String| Fail::new(FailKind::Cosignature, format!("ledger {}: {d}", self.cfg.name));
        let parsed = Note::parse(note)
            .map_err(|e| Fail::new(FailKind::Store, format!("our checkpoint note: {e}")))?;
        let checkpoint = Checkpoint::parse(parsed.text())
            .map_err(|e| Fail::new(FailKind::Store, format!("our checkpoint: {e}")))?;
        let v = &self.cfg.cosigner;
        let sig = sigs
            .iter()
            .find(|s| {
                s.name == ledger::note::Verifier::name(v)
                    && s.key_id == ledger::note::Verifier::key_id(v)
            })
            .ok_or_else(|| bad(format!("no cosignature from {}", v.to_vkey())))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        v.verify(&checkpoint, sig, now, MAX_SKEW_S).map_err(|e| bad(e.to_string()))?;
        // Keep exactly our note plus that one line.
        let mut out = note.to_vec();
        out.extend_from_slice(sig.to_line().as_bytes());
        out.push(b'\n');
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    async fn upload(
        &self,
        core: &mut Core,
        from: u64,
        to: u64,
        witnessed: u64,
        budget: &mut Option<Budget>,
        epoch: Instant,
        stop: &CancellationToken,
    ) -> Result<(), Fail> {
        let lanes = self.cfg.lanes.clone();
        let max_bytes = (self.cfg.batch_bytes.get() >> core.shrink()).max(1);
        let batch =
            self.store(move |s| read_batch(s, from, to, witnessed, &lanes, max_bytes)).await?;
        let origin = self.origin().await?;
        let end = batch.blocks.last().map_or(from, |b| b.height + 1);
        let body = batch.to_cbor();
        self.wait_budget(budget, epoch, body.len() as u64, stop).await?;
        self.stats.bytes_sent.fetch_add(body.len() as u64, Ordering::Relaxed);
        let r = self
            .client
            .post(self.client.url(&sync_wire::path::blocks(&origin)), wire::CBOR_TYPE, body)
            .await?;
        if !r.status.is_success() {
            return Err(wire::refusal(&format!("upload of blocks {from}..{end}"), &r));
        }
        let mirrored = wire::UploadAck::from_cbor(&r.body)
            .map_err(|e| Fail::new(FailKind::Protocol, format!("upload answer: {e}")))?
            .mirrored;
        if mirrored < end {
            return Err(Fail::new(
                FailKind::Protocol,
                format!("uploaded blocks {from}..{end}, the ledger says it holds {mirrored}"),
            ));
        }
        self.stats.blocks_sent.fetch_add(end - from, Ordering::Relaxed);
        if let Some(c) = core.uploaded(mirrored) {
            self.save_cursor(c).await?;
        }
        tracing::debug!(ledger = %self.cfg.name, from, to = end, "blocks uploaded");
        Ok(())
    }

    async fn save_cursor(&self, c: LedgerCursor) -> Result<(), Fail> {
        let name = self.cfg.name.clone();
        self.store(move |s| write_cursor(s, &name, c)).await
    }
}

/// Reads blocks `from..to` (fewer when `max_bytes` is reached, never fewer than one) with
/// the lanes named in `lanes`, and the inclusion proof of the last one in the tree of size
/// `witnessed`.
pub fn read_batch(
    s: &mut dyn Store,
    from: u64,
    to: u64,
    witnessed: u64,
    lanes: &[String],
    max_bytes: usize,
) -> Result<wire::Upload, StoreError> {
    let missing = |cf: &'static str, key: String| StoreError::Read {
        place: ledger::store::Place { cf, key },
        reason: "missing".into(),
    };
    let mut blocks = Vec::new();
    let mut bytes = 0usize;
    for height in from..to {
        let header = s
            .header(height)?
            .ok_or_else(|| missing("headers", ledger::store::height_key(height)))?;
        let h = BlockHeader::from_bytes(&header).map_err(|e| {
            StoreError::Damaged(ledger::store::Damage::new(
                "headers",
                ledger::store::height_key(height),
                e.to_string(),
            ))
        })?;
        let mut picked = Vec::new();
        for (i, info) in h.lanes.iter().enumerate() {
            if lanes.contains(&info.name) {
                let idx = u16::try_from(i).unwrap_or(u16::MAX);
                let lane = s
                    .lane(height, idx)?
                    .ok_or_else(|| missing("lanes", format!("height {height} lane {i}")))?;
                picked.push((idx, lane));
            }
        }
        let size = header.len() + picked.iter().map(|l| l.1.len()).sum::<usize>();
        if !blocks.is_empty() && bytes + size > max_bytes {
            break;
        }
        bytes += size;
        blocks.push(wire::UploadBlock { height, header, lanes: picked });
    }
    let last = blocks.last().map_or(from, |b| b.height);
    let proof =
        ledger::log::inclusion_proof(&ledger::store::tiles(s), last, witnessed).map_err(|e| {
            StoreError::Read {
                place: ledger::store::Place {
                    cf: "tiles",
                    key: format!("inclusion {last} in {witnessed}"),
                },
                reason: e.to_string(),
            }
        })?;
    Ok(wire::Upload { checkpoint_size: witnessed, blocks, proof })
}

fn chacha_from(seed: u64) -> chacha20::ChaCha8Rng {
    use rand_core::SeedableRng as _;
    chacha20::ChaCha8Rng::seed_from_u64(seed)
}

fn unit(rng: &mut chacha20::ChaCha8Rng) -> f64 {
    use rand_core::Rng as _;
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}
