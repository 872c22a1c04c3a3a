//! The store writer: one blocking thread that owns the store, seals each pending block (height
//! and previous hash come from the store's head), appends it with the gateway's signer (one
//! synced batch with a signed checkpoint, `ledger::store::append_blocks`) and then publishes
//! what is durable on a `watch` channel.
//!
//! # Edges
//! - pipeline -> writer: a bounded `mpsc` of [`Pending`] blocks; the pipeline **awaits** room
//!   (sealing and fsync set the pace; CAN sources then drop at their own edge, MQTT stops
//!   acknowledging).
//! - writer -> anyone: a `watch` of [`Durable`]: the log size and, per source, the highest MQTT
//!   sequence number whose block is durable (the MQTT source acknowledges up to it).
//!
//! Retention ([`crate::retention`]) runs here too, between appends: pruning is a write, and
//! this thread owns the writable store. With `when_full = "stop"` blocks that arrive while
//! the store is over its quota are held (not acknowledged) until space frees; with
//! `drop-oldest` the next block carries the gap record in every lane.
//!
//! An append (or prune) error is **fatal**: the store is poisoned (`ledger` D21), the writer returns the
//! error, the daemon cancels everything and exits non-zero so systemd restarts it.

use ledger::block::{hash_header_bytes, BlockHash};
use ledger::note::Ed25519Signer;
use ledger::seal::SealOptions;
use ledger::store::{append_blocks, Store};
use rand_core::SeedableRng;
use tokio::sync::{mpsc, watch};

use crate::pipeline::{self, Pending};
use crate::retention::Retention;

/// What is durable: published after every append.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Durable {
    /// Log size (= blocks) on disk.
    pub size: u64,
    /// Per source index: highest MQTT sequence number covered by a durable block.
    pub mqtt_seq: Vec<Option<u64>>,
    /// Records sealed so far by this process.
    pub records: u64,
    /// Per lane name: records sealed so far by this process (a frame in two lanes counts in
    /// each).
    pub lane_records: std::collections::BTreeMap<String, u64>,
}

/// Why the writer stopped. Every variant is fatal for the daemon.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    #[error("reading the store head at height {height}: {source}")]
    Head { height: u64, source: ledger::store::StoreError },
    #[error("sealing block {height}: {source}")]
    Seal { height: u64, source: ledger::seal::SealError },
    #[error("appending block {height}: {source} (fatal)")]
    Append { height: u64, source: ledger::store::StoreError },
    #[error("operating-system randomness failed: {0}")]
    Random(String),
    #[error("retention: pruning the store: {source} (fatal)")]
    Prune { source: ledger::store::StoreError },
    #[error("retention: the gap record for heights {from}..{to}: {reason}")]
    Gap { from: u64, to: u64, reason: String },
}

/// The writer's state. `new` reads the head of `store`.
pub struct Writer<S: Store + ?Sized> {
    store: Box<S>,
    signer: Ed25519Signer,
    gateway: [u8; 32],
    prev: BlockHash,
    opts: SealOptions,
    /// The lanes' bit-field layouts, carried from block to block (D254).
    hints: ledger::seal::BlockHints,
    durable: watch::Sender<Durable>,
    retention: Retention,
}

impl<S: Store + ?Sized> Writer<S> {
    pub fn new(
        store: Box<S>,
        signer: Ed25519Signer,
        opts: SealOptions,
        sources: usize,
    ) -> Result<(Writer<S>, watch::Receiver<Durable>), WriteError> {
        let size = store.size();
        let prev = if size == 0 {
            BlockHash([0; 32])
        } else {
            let h = store
                .header(size - 1)
                .map_err(|source| WriteError::Head { height: size - 1, source })?
                .ok_or_else(|| WriteError::Head {
                    height: size - 1,
                    source: ledger::store::StoreError::Read {
                        place: ledger::store::Place {
                            cf: "headers",
                            key: ledger::store::height_key(size - 1),
                        },
                        reason: "missing".into(),
                    },
                })?;
            hash_header_bytes(&h)
        };
        let gateway = signer.verifier().public_key().to_bytes();
        let (durable, rx) = watch::channel(Durable {
            size,
            mqtt_seq: vec![None; sources],
            records: 0,
            lane_records: Default::default(),
        });
        let mut retention = Retention::measure_only();
        retention.open(&*store);
        let hints = Default::default();
        Ok((Writer { store, signer, gateway, prev, opts, hints, durable, retention }, rx))
    }

    /// Enforces `retention` (a quota) after every append instead of only measuring the store.
    pub fn with_retention(mut self, mut retention: Retention) -> Writer<S> {
        retention.open(&*self.store);
        self.retention = retention;
        self
    }

    /// Seals and appends one pending block (if it holds records), then publishes its marks and
    /// runs the retention step. Holding blocks while over the quota is [`Writer::run`]'s job.
    pub fn write(&mut self, input: &Pending) -> Result<(), WriteError> {
        // After a `drop-oldest` prune, every lane of the next block carries the gap record.
        let gap_record = match self.retention.gap() {
            Some(gap) => Some(gap.record().map_err(|e| WriteError::Gap {
                from: gap.from,
                to: gap.to,
                reason: e.to_string(),
            })?),
            None => None,
        };
        let with_gap;
        let p = match &gap_record {
            Some(rec) => {
                let mut q = input.clone();
                for lane in &mut q.lanes {
                    lane.records.push(rec.clone());
                }
                with_gap = q;
                &with_gap
            }
            None => input,
        };
        let mut appended = false;
        if p.has_records() {
            let height = self.store.size();
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| WriteError::Random(e.to_string()))?;
            let mut rng = chacha20::ChaCha20Rng::from_seed(seed);
            let (sealed, data) = pipeline::seal(
                p,
                self.gateway,
                height,
                self.prev,
                &self.opts,
                &mut self.hints,
                &mut rng,
            )
            .map_err(|source| WriteError::Seal { height, source })?;
            append_blocks(&mut *self.store, &self.signer, vec![data])
                .map_err(|source| WriteError::Append { height, source })?;
            self.prev = sealed.header.hash();
            appended = true;
            if let Some(gap) = self.retention.gap() {
                tracing::warn!(
                    height,
                    from = gap.from,
                    to = gap.to,
                    "retention: gap record carried"
                );
                self.retention.gap_carried();
            }
            let records = input.record_count();
            tracing::info!(height, records, inputs = input.inputs, "block durable");
        }
        // Counts are of input records (gap records left out).
        let records = if appended { input.record_count() as u64 } else { 0 };
        let size = self.store.size();
        self.durable.send_modify(|d| {
            d.size = size;
            d.records += records;
            if records > 0 {
                for l in &input.lanes {
                    *d.lane_records.entry(l.name.clone()).or_default() += l.records.len() as u64;
                }
            }
            for &(src, seq) in &input.marks {
                if let Some(slot) = d.mqtt_seq.get_mut(src) {
                    *slot = Some(slot.map_or(seq, |s| s.max(seq)));
                }
            }
        });
        // Published first: acknowledgements need not wait for a prune's compaction.
        if appended {
            self.retention
                .after_append(&mut *self.store)
                .map_err(|source| WriteError::Prune { source })?;
        }
        Ok(())
    }

    /// Runs until the pipeline closes its sender; returns the store (for tests) or the first
    /// fatal error.
    ///
    /// While retention holds (`stop`, over the quota), the writer keeps taking the blocks in
    /// flight off the channel and holds them, in order, rechecking every `recheck`: the pipeline
    /// then never waits on a full channel (its heartbeat, the watchdog's, goes on) and nothing it
    /// sealed is lost. It sends nothing new while input is refused, so the held blocks are the
    /// few in flight when refusing began. They are appended first once there is room again (or
    /// at shutdown).
    pub fn run(mut self, mut rx: mpsc::Receiver<Pending>) -> Result<Box<S>, WriteError> {
        let mut held: std::collections::VecDeque<Pending> = std::collections::VecDeque::new();
        loop {
            if self.retention.holding() {
                while let Ok(p) = rx.try_recv() {
                    held.push_back(p);
                }
                if let Err(source) = self.retention.recheck(&mut *self.store) {
                    let e = WriteError::Prune { source };
                    tracing::error!(error = %e, "store writer stopped");
                    return Err(e);
                }
                continue;
            }
            let p = match held.pop_front() {
                Some(p) => p,
                None => match rx.blocking_recv() {
                    Some(p) => p,
                    None => break,
                },
            };
            if let Err(e) = self.write(&p) {
                tracing::error!(error = %e, "store writer stopped");
                return Err(e);
            }
        }
        Ok(self.store)
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn retention(&self) -> &Retention {
        &self.retention
    }
}
