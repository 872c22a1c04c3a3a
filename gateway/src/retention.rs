//! Retention: a disk quota for the store, enforced by the store writer between appends.
//!
//! After every append the writer runs [`Retention::after_append`]. It measures the store
//! (`Store::usage_bytes`: for RocksDB its directory on disk) and, over `quota`:
//!
//! 1. prunes the lanes of the oldest blocks that **every configured ledger acknowledged**
//!    (`ledger::store::cursor::acked_by_all`), oldest first, until the estimate reaches
//!    `low_watermark`; headers, tiles and checkpoints stay, so the log still verifies. Pruning
//!    is a write, so it runs here, on the writer's thread, between two appends. With no ledger
//!    configured nothing counts as acknowledged.
//! 2. measures again; if still over, `when_full` decides:
//!    - `stop`: the alarm is raised and [`Stats::refusing`] is set. The pipeline then drops CAN
//!      (and trace) frames, counting them per source with reason `quota`, and stops reading
//!      MQTT (nothing is acknowledged, the broker keeps the messages). Blocks already formed are
//!      held by the writer, which checks every `recheck` whether space has freed (a sync agent
//!      acknowledged more, an operator cleared space) and resumes when the store is back under
//!      its quota. At shutdown the held blocks are written even over the quota (the quota sits
//!      below the disk's size; if the disk is really full the write fails and the daemon exits
//!      non-zero, `ledger` D21).
//!    - `drop-oldest`: the oldest **unsynced** lanes are pruned too, the alarm is raised, and
//!      the next block carries a [`Gap`] record (topic [`GAP_TOPIC`]) in every lane, so the
//!      loss is in the signed log itself. The gap is also stored with the prune (meta
//!      `prune_note`), so a crash before the next block cannot lose it.
//!
//! Nothing is dropped silently: every pruned block is counted (`acked` or `unsynced`), every
//! refused frame is counted, and the alarm is logged at most once per [`ALARM_LOG_INTERVAL`]
//! (and whenever it is raised or cleared).
//!
//! The alarm is raised when retention has to go past acknowledged blocks (refuse input, or
//! drop unsynced lanes) and cleared when an over-quota check is settled by acknowledged
//! blocks alone or, with `stop`, when the store is back under its quota.
//!
//! Errors: a failed prune is a failed write, fatal like a failed append. Failed reads while
//! planning (measuring the directory, a header, a cursor) skip that round with an error log and
//! raise the alarm: the quota cannot be enforced, but the data is not at risk.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger::block::BlockHeader;
use ledger::record::{MqttRecord, Record};
use ledger::store::{Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::config::{RetentionConfig, RetentionPolicy, WhenFull};

/// Topic of the gap record (a reserved `$` topic: MQTT clients cannot publish to it).
pub const GAP_TOPIC: &str = "$iov/gap";
/// Version of the gap payload.
pub const GAP_VERSION: u64 = 1;
/// How often at most the alarm is logged while it stays raised.
pub const ALARM_LOG_INTERVAL: Duration = Duration::from_secs(60);
/// Key bytes per stored lane (height u64, lane u16), added to each lane's ciphertext size when
/// estimating what a prune frees.
const LANE_KEY_BYTES: u64 = 10;

/// Retention's live state, shared with the pipeline (which reads [`Stats::refusing`] and counts
/// refused frames) and the metrics endpoint.
#[derive(Debug)]
pub struct Stats {
    /// The configured quota, if any.
    pub quota: Option<u64>,
    store_bytes: AtomicU64,
    measured: AtomicBool,
    pruned_below: AtomicU64,
    pruned_acked: AtomicU64,
    pruned_unsynced: AtomicU64,
    alarm: AtomicBool,
    refusing: AtomicBool,
    /// Per source, in config order: name and frames dropped while refusing input.
    dropped_quota: Vec<(String, AtomicU64)>,
}

impl Stats {
    /// Stats for a store with `quota`, and the configured sources' names (config order).
    pub fn new(quota: Option<u64>, sources: &[String]) -> Stats {
        Stats {
            quota,
            store_bytes: AtomicU64::new(0),
            measured: AtomicBool::new(false),
            pruned_below: AtomicU64::new(0),
            pruned_acked: AtomicU64::new(0),
            pruned_unsynced: AtomicU64::new(0),
            alarm: AtomicBool::new(false),
            refusing: AtomicBool::new(false),
            dropped_quota: sources.iter().map(|s| (s.clone(), AtomicU64::new(0))).collect(),
        }
    }

    /// Bytes the store occupied at the last measurement (`None` before the first, or when the
    /// backend cannot tell).
    pub fn store_bytes(&self) -> Option<u64> {
        self.measured.load(Ordering::Acquire).then(|| self.store_bytes.load(Ordering::Relaxed))
    }
    pub fn pruned_below(&self) -> u64 {
        self.pruned_below.load(Ordering::Relaxed)
    }
    /// Blocks whose lanes were pruned by this process: `(acknowledged, unsynced)`.
    pub fn pruned_blocks(&self) -> (u64, u64) {
        (self.pruned_acked.load(Ordering::Relaxed), self.pruned_unsynced.load(Ordering::Relaxed))
    }
    pub fn alarm(&self) -> bool {
        self.alarm.load(Ordering::Relaxed)
    }
    /// Whether new input is refused (`when_full = "stop"` and the store is over its quota).
    pub fn refusing(&self) -> bool {
        self.refusing.load(Ordering::Acquire)
    }
    /// Counts one frame of source `index` dropped because input is refused.
    pub fn count_quota_drop(&self, index: usize) {
        if let Some((_, n)) = self.dropped_quota.get(index) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }
    /// Frames of the source named `name` dropped because input was refused.
    pub fn dropped_quota(&self, name: &str) -> u64 {
        self.dropped_quota
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, c)| c.load(Ordering::Relaxed))
    }
    pub fn dropped_quota_total(&self) -> u64 {
        self.dropped_quota.iter().map(|(_, c)| c.load(Ordering::Relaxed)).sum()
    }
    fn set_measured(&self, bytes: Option<u64>) {
        if let Some(b) = bytes {
            self.store_bytes.store(b, Ordering::Relaxed);
            self.measured.store(true, Ordering::Release);
        }
    }
}

/// Heights `from..below` whose lanes a prune would delete, and their estimated bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub from: u64,
    pub below: u64,
    pub bytes: u64,
}

/// Pure: the oldest heights from `start` (exclusive `limit`) whose lanes free at least `need`
/// bytes (fewer when the heights run out); `None` when there is nothing to take.
/// `lane_bytes(h)` is what height `h`'s lanes occupy.
pub fn span_to_free<E>(
    start: u64,
    limit: u64,
    need: u64,
    mut lane_bytes: impl FnMut(u64) -> Result<u64, E>,
) -> Result<Option<Span>, E> {
    let (mut h, mut bytes) = (start, 0u64);
    while h < limit && bytes < need {
        bytes = bytes.saturating_add(lane_bytes(h)?);
        h += 1;
    }
    Ok((h > start).then_some(Span { from: start, below: h, bytes }))
}

/// The record of unsynced lanes pruned by `when_full = "drop-oldest"`, carried as an MQTT
/// record with topic [`GAP_TOPIC`] in every lane of the next block. Payload: canonical CBOR
/// (docs/formats.md, "Gap record").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// Lanes of heights `from..to` (end exclusive) were deleted before any ledger held them.
    pub from: u64,
    pub to: u64,
    /// Lane ciphertext bytes deleted (the sizes the headers list).
    pub bytes: u64,
    /// When they were deleted (ns since the Unix epoch, the gateway's wall clock).
    pub t_ns: u64,
    /// Why: `quota` (the store was over its quota and no ledger had acknowledged enough).
    pub reason: String,
}

impl Gap {
    /// `{"v": 1, "to": .., "from": .., "t_ns": .., "bytes": .., "reason": ..}`: a definite
    /// map with its keys in RFC 8949 core deterministic order (shorter encoded key first).
    pub fn to_cbor(&self) -> Vec<u8> {
        use ciborium::Value;
        let kv = |k: &str, v: Value| (Value::Text(k.into()), v);
        let map = Value::Map(vec![
            kv("v", GAP_VERSION.into()),
            kv("to", self.to.into()),
            kv("from", self.from.into()),
            kv("t_ns", self.t_ns.into()),
            kv("bytes", self.bytes.into()),
            kv("reason", Value::Text(self.reason.clone())),
        ]);
        let mut out = Vec::with_capacity(64);
        // Writing into a Vec cannot fail.
        let _ = ciborium::into_writer(&map, &mut out);
        out
    }

    /// Parses a gap payload; refuses anything that is not exactly the canonical encoding.
    pub fn from_cbor(bytes: &[u8]) -> Result<Gap, String> {
        let v: ciborium::Value =
            ciborium::from_reader(bytes).map_err(|e| format!("gap record: not CBOR: {e}"))?;
        let map = v.as_map().ok_or("gap record: not a map")?;
        let get = |k: &str| map.iter().find(|(key, _)| key.as_text() == Some(k)).map(|(_, v)| v);
        let int = |k: &str| -> Result<u64, String> {
            get(k)
                .and_then(|v| v.as_integer())
                .and_then(|i| u64::try_from(i).ok())
                .ok_or_else(|| format!("gap record: {k:?} missing or not an unsigned integer"))
        };
        if int("v")? != GAP_VERSION {
            return Err(format!("gap record: version is not {GAP_VERSION}"));
        }
        let reason = get("reason")
            .and_then(|v| v.as_text())
            .ok_or("gap record: \"reason\" missing or not text")?
            .to_owned();
        let gap = Gap {
            from: int("from")?,
            to: int("to")?,
            bytes: int("bytes")?,
            t_ns: int("t_ns")?,
            reason,
        };
        if gap.to_cbor() != bytes {
            return Err("gap record: not in canonical form".into());
        }
        if gap.from >= gap.to {
            return Err(format!("gap record: empty range {}..{}", gap.from, gap.to));
        }
        Ok(gap)
    }

    /// The record carried in each lane.
    pub fn record(&self) -> Result<Record, ledger::record::RecordError> {
        MqttRecord::new(self.t_ns, Arc::from(GAP_TOPIC), self.to_cbor(), 0, false).map(Record::Mqtt)
    }

    /// The note stored with the prune: `u64be height of the block that must carry it || payload`.
    fn note(&self, at: u64) -> Vec<u8> {
        let mut n = at.to_be_bytes().to_vec();
        n.extend_from_slice(&self.to_cbor());
        n
    }

    fn from_note(note: &[u8]) -> Result<(u64, Gap), String> {
        let (at, payload) = note.split_at_checked(8).ok_or("prune note shorter than 8 bytes")?;
        let at = u64::from_be_bytes(at.try_into().map_err(|_| "prune note height")?);
        Ok((at, Gap::from_cbor(payload)?))
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Bytes the lanes of `height` occupy, from its header's lane sizes (pruned heights: 0).
fn lane_bytes<S: Store + ?Sized>(store: &S, height: u64) -> Result<u64, StoreError> {
    let Some(bytes) = store.header(height)? else { return Ok(0) };
    let h = BlockHeader::from_bytes(&bytes).map_err(|e| {
        StoreError::Damaged(ledger::store::Damage::new(
            "headers",
            ledger::store::height_key(height),
            format!("not a block header: {e}"),
        ))
    })?;
    Ok(h.lanes.iter().map(|l| l.size + LANE_KEY_BYTES).sum())
}

/// Retention as the writer runs it. See the module docs.
#[derive(Debug)]
pub struct Retention {
    policy: Option<RetentionPolicy>,
    ledgers: Vec<String>,
    stats: Arc<Stats>,
    /// The gap the next block must carry.
    gap: Option<Gap>,
    shutdown: CancellationToken,
    last_alarm_log: Option<Instant>,
}

impl Retention {
    /// Retention for `config`, reporting to `stats`; `shutdown` ends a wait for room.
    pub fn new(
        config: &RetentionConfig,
        stats: Arc<Stats>,
        shutdown: CancellationToken,
    ) -> Retention {
        Retention {
            policy: config.policy,
            ledgers: config.ledger_names.clone(),
            stats,
            gap: None,
            shutdown,
            last_alarm_log: None,
        }
    }

    /// No quota: the store is only measured.
    pub fn measure_only() -> Retention {
        Retention::new(
            &RetentionConfig::default(),
            Arc::new(Stats::new(None, &[])),
            CancellationToken::new(),
        )
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// At start: measures the store, and takes back a gap whose carrying block was never
    /// written (a crash between the prune and the next append).
    pub fn open<S: Store + ?Sized>(&mut self, store: &S) {
        self.measure(store);
        match store.pruned_below() {
            Ok(p) => self.stats.pruned_below.store(p, Ordering::Relaxed),
            Err(e) => tracing::error!(error = %e, "retention: reading pruned_below"),
        }
        match store.prune_note() {
            Ok(Some(note)) => match Gap::from_note(&note) {
                Ok((at, gap)) if at == store.size() => {
                    tracing::warn!(
                        from = gap.from,
                        to = gap.to,
                        "retention: the gap record of an earlier prune was not yet in the log; the next block carries it"
                    );
                    self.gap = Some(gap);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "retention: the stored prune note is unreadable")
                }
            },
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "retention: reading the prune note"),
        }
    }

    /// The gap the next block must carry, if any.
    pub fn gap(&self) -> Option<&Gap> {
        self.gap.as_ref()
    }

    /// Called once a block carrying [`Retention::gap`] is durable.
    pub fn gap_carried(&mut self) {
        self.gap = None;
    }

    pub fn refusing(&self) -> bool {
        self.stats.refusing()
    }

    fn measure<S: Store + ?Sized>(&mut self, store: &S) -> Option<u64> {
        match store.usage_bytes() {
            Ok(u) => {
                self.stats.set_measured(u);
                u
            }
            Err(e) => {
                self.raise(&format!("cannot measure the store: {e}"));
                None
            }
        }
    }

    /// Raises the alarm and logs `why`, at most once per [`ALARM_LOG_INTERVAL`] unless it was
    /// not raised before.
    fn raise(&mut self, why: &str) {
        let was = self.stats.alarm.swap(true, Ordering::Relaxed);
        let due = self.last_alarm_log.is_none_or(|t| t.elapsed() >= ALARM_LOG_INTERVAL);
        if !was || due {
            let (acked, unsynced) = self.stats.pruned_blocks();
            tracing::warn!(
                store_bytes = self.stats.store_bytes(),
                quota = self.stats.quota,
                pruned_acked = acked,
                pruned_unsynced = unsynced,
                dropped_quota = self.stats.dropped_quota_total(),
                "retention alarm: {why}"
            );
            self.last_alarm_log = Some(Instant::now());
        }
    }

    fn clear(&mut self, why: &str) {
        if self.stats.alarm.swap(false, Ordering::Relaxed) {
            tracing::info!(
                store_bytes = self.stats.store_bytes(),
                "retention alarm cleared: {why}"
            );
            self.last_alarm_log = None;
        }
    }

    fn set_refusing(&self, on: bool) {
        if self.stats.refusing.swap(on, Ordering::AcqRel) != on {
            if on {
                tracing::warn!(
                    "retention: store over its quota; refusing new input (when_full = \"stop\")"
                );
            } else {
                tracing::info!("retention: store back under its quota; accepting input again");
            }
        }
    }

    /// Prunes `span`, counts it and publishes the new `pruned_below`. A failure is fatal.
    fn prune<S: Store + ?Sized>(
        &mut self,
        store: &mut S,
        span: Span,
        unsynced: bool,
        note: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let done = store.prune_lanes(span.below, note)?;
        let counter = if unsynced { &self.stats.pruned_unsynced } else { &self.stats.pruned_acked };
        counter.fetch_add(done.blocks(), Ordering::Relaxed);
        self.stats.pruned_below.store(done.below, Ordering::Relaxed);
        tracing::info!(
            from = done.from,
            below = done.below,
            lane_bytes = span.bytes,
            kind = if unsynced { "unsynced" } else { "acked" },
            "retention: pruned lanes"
        );
        Ok(())
    }

    /// What every ledger acknowledged; a cursor that cannot be read counts as nothing.
    fn acked<S: Store + ?Sized>(&mut self, store: &S) -> u64 {
        let names: Vec<&str> = self.ledgers.iter().map(String::as_str).collect();
        match ledger::store::cursor::acked_by_all(store, &names) {
            Ok(a) => a.unwrap_or(0).min(store.size()),
            Err(e) => {
                tracing::error!(error = %e, "retention: reading sync cursors; treating nothing as acknowledged");
                0
            }
        }
    }

    /// The retention step after an append. Only a failed prune (a write) is an error.
    pub fn after_append<S: Store + ?Sized>(&mut self, store: &mut S) -> Result<(), StoreError> {
        let Some(policy) = self.policy else {
            self.measure(store);
            return Ok(());
        };
        let Some(usage) = self.measure(store) else { return Ok(()) };
        if usage <= policy.quota {
            if policy.when_full == WhenFull::Stop {
                self.set_refusing(false);
                self.clear("the store is under its quota");
            }
            return Ok(());
        }
        // 1. Acknowledged blocks, oldest first.
        let Some(usage) = self.prune_acked(store, &policy, usage)? else { return Ok(()) };
        if usage <= policy.quota {
            self.set_refusing(false);
            self.clear("acknowledged blocks were enough");
            return Ok(());
        }
        // 2. The policy.
        match policy.when_full {
            WhenFull::Stop => {
                self.set_refusing(true);
                self.raise("over the quota with nothing more acknowledged: refusing new input");
            }
            WhenFull::DropOldest => self.drop_oldest(store, &policy, usage)?,
        }
        Ok(())
    }

    /// Prunes acknowledged lanes down towards the low watermark; returns the usage after (or
    /// `None` when a read failed and the round was skipped).
    fn prune_acked<S: Store + ?Sized>(
        &mut self,
        store: &mut S,
        policy: &RetentionPolicy,
        usage: u64,
    ) -> Result<Option<u64>, StoreError> {
        let acked = self.acked(store);
        let start = match store.pruned_below() {
            Ok(p) => p,
            Err(e) => {
                self.raise(&format!("reading pruned_below: {e}"));
                return Ok(None);
            }
        };
        let need = usage.saturating_sub(policy.low_watermark);
        let span = match span_to_free(start, acked, need, |h| lane_bytes(store, h)) {
            Ok(s) => s,
            Err(e) => {
                self.raise(&format!("planning a prune: {e}"));
                return Ok(None);
            }
        };
        match span {
            None => Ok(Some(usage)),
            Some(span) => {
                self.prune(store, span, false, None)?;
                Ok(self.measure(store))
            }
        }
    }

    /// `drop-oldest`: prunes the oldest unsynced lanes (never the newest block's) and stores the
    /// gap for the next block.
    fn drop_oldest<S: Store + ?Sized>(
        &mut self,
        store: &mut S,
        policy: &RetentionPolicy,
        usage: u64,
    ) -> Result<(), StoreError> {
        let start = match store.pruned_below() {
            Ok(p) => p,
            Err(e) => {
                self.raise(&format!("reading pruned_below: {e}"));
                return Ok(());
            }
        };
        let need = usage.saturating_sub(policy.low_watermark);
        let size = store.size();
        let span = match span_to_free(start, size.saturating_sub(1), need, |h| lane_bytes(store, h))
        {
            Ok(s) => s,
            Err(e) => {
                self.raise(&format!("planning a prune: {e}"));
                return Ok(());
            }
        };
        let Some(span) = span else {
            self.raise("over the quota and only the newest block is left: nothing more to drop");
            return Ok(());
        };
        // One gap per next block: merge with one not yet carried (not expected: every append
        // carries the pending gap before the next retention step).
        let gap = match self.gap.take() {
            Some(g) => Gap {
                from: g.from.min(span.from),
                to: g.to.max(span.below),
                bytes: g.bytes + span.bytes,
                t_ns: now_ns(),
                reason: "quota".into(),
            },
            None => Gap {
                from: span.from,
                to: span.below,
                bytes: span.bytes,
                t_ns: now_ns(),
                reason: "quota".into(),
            },
        };
        self.prune(store, span, true, Some(&gap.note(size)))?;
        self.gap = Some(gap);
        self.measure(store);
        self.raise(&format!(
            "over the quota with nothing more acknowledged: dropped the unsynced lanes of heights {}..{} (the next block records the gap)",
            span.from, span.below
        ));
        Ok(())
    }

    /// Whether the writer must hold blocks: refusing input, and shutdown has not started (at
    /// shutdown the held blocks are written even over the quota).
    pub fn holding(&self) -> bool {
        self.refusing() && !self.shutdown.is_cancelled()
    }

    /// While holding: waits one `recheck` period (cut short by shutdown), then checks again,
    /// pruning what became acknowledged, and stops refusing once the store is under its quota.
    pub fn recheck<S: Store + ?Sized>(&mut self, store: &mut S) -> Result<(), StoreError> {
        let Some(policy) = self.policy else { return Ok(()) };
        if !self.holding() {
            return Ok(());
        }
        let until = Instant::now() + policy.recheck;
        while Instant::now() < until && !self.shutdown.is_cancelled() {
            std::thread::sleep(
                until.saturating_duration_since(Instant::now()).min(Duration::from_millis(50)),
            );
        }
        if self.shutdown.is_cancelled() {
            tracing::warn!("retention: shutting down over the quota: writing the blocks held");
            return Ok(());
        }
        let Some(usage) = self.measure(store) else { return Ok(()) };
        let usage = if usage > policy.quota {
            match self.prune_acked(store, &policy, usage)? {
                Some(u) => u,
                None => return Ok(()),
            }
        } else {
            usage
        };
        if usage <= policy.quota {
            self.set_refusing(false);
            self.clear("space freed");
        } else {
            self.raise("still over the quota: refusing new input");
        }
        Ok(())
    }

    /// Rechecks until the writer may append again (room, or shutdown).
    pub fn wait_for_room<S: Store + ?Sized>(&mut self, store: &mut S) -> Result<(), StoreError> {
        while self.holding() {
            self.recheck(store)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::store::cursor::{write_cursor, LedgerCursor};
    use ledger::store::memory::Memory;
    use ledger::store::{append_blocks, testing};

    fn signer() -> ledger::note::Ed25519Signer {
        ledger::keys::generate_signer("iov.example/gw/ret").expect("signer")
    }

    /// A memory store of `n` blocks with one 1,000-byte lane each.
    fn store(n: u64) -> (Memory, ledger::note::Ed25519Signer) {
        let s = signer();
        let gw = s.verifier().public_key().to_bytes();
        let mut m = Memory::new(s.name());
        let blocks =
            testing::next_blocks(&m, gw, n, |h| vec![vec![h as u8; 1000]]).expect("blocks");
        append_blocks(&mut m, &s, blocks).expect("append");
        (m, s)
    }

    fn retention(quota: u64, low: u64, when_full: WhenFull, ledgers: &[&str]) -> Retention {
        let cfg = RetentionConfig {
            policy: Some(RetentionPolicy {
                quota,
                low_watermark: low,
                when_full,
                recheck: Duration::from_millis(1),
            }),
            ledger_names: ledgers.iter().map(|s| s.to_string()).collect(),
        };
        Retention::new(&cfg, Arc::new(Stats::new(Some(quota), &[])), CancellationToken::new())
    }

    #[test]
    fn span_to_free_takes_the_oldest_heights_until_enough() {
        let bytes = |h: u64| -> Result<u64, ()> { Ok(100 + h) };
        assert_eq!(
            span_to_free(3, 10, 250, bytes),
            Ok(Some(Span { from: 3, below: 6, bytes: 312 }))
        );
        assert_eq!(
            span_to_free(3, 5, 10_000, bytes),
            Ok(Some(Span { from: 3, below: 5, bytes: 207 }))
        );
        assert_eq!(span_to_free(5, 5, 10, bytes), Ok(None));
        assert_eq!(span_to_free(0, 10, 0, bytes), Ok(None));
    }

    #[test]
    fn the_gap_payload_is_canonical_cbor_and_round_trips() {
        let g = Gap { from: 3, to: 300, bytes: 65_536, t_ns: 1, reason: "quota".into() };
        let b = g.to_cbor();
        // a6: map(6); "v" 1; "to" 300; "from" 3; "t_ns" 1; "bytes" 65536; "reason" "quota"
        assert_eq!(
            hex(&b),
            "a661760162746f19012c6466726f6d0364745f6e7301656279746573\
             1a0001000066726561736f6e6571756f7461"
        );
        assert_eq!(Gap::from_cbor(&b), Ok(g.clone()));
        let (at, back) = Gap::from_note(&g.note(301)).expect("note");
        assert_eq!((at, back), (301, g));
        assert!(Gap::from_cbor(b"\xa0").is_err());
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn acknowledged_blocks_are_pruned_first_down_to_the_low_watermark() {
        let (mut m, _) = store(40);
        write_cursor(&mut m, "factory", LedgerCursor { witnessed: 40, acked: 30 }).expect("cursor");
        write_cursor(&mut m, "city", LedgerCursor { witnessed: 40, acked: 25 }).expect("cursor");
        let usage = m.usage_bytes().expect("usage").expect("known");
        // Over by a byte, low watermark 10,000 below: 10 blocks of 1,010 lane bytes go.
        let mut r = retention(usage - 1, usage - 10_000, WhenFull::Stop, &["factory", "city"]);
        r.after_append(&mut m).expect("retention");
        assert_eq!(m.pruned_below().expect("pruned"), 10);
        assert_eq!(r.stats().pruned_blocks(), (10, 0));
        assert_eq!(r.stats().pruned_below(), 10);
        assert!(!r.stats().alarm() && !r.refusing());
        // Far over: only what both ledgers acknowledged (25) goes, then `stop` refuses.
        let mut r = retention(5000, 1000, WhenFull::Stop, &["factory", "city"]);
        r.after_append(&mut m).expect("retention");
        assert_eq!(m.pruned_below().expect("pruned"), 25);
        assert_eq!(r.stats().pruned_blocks(), (15, 0));
        assert!(r.stats().alarm() && r.refusing());
        assert_eq!(r.gap(), None, "stop never drops unsynced lanes");
    }

    #[test]
    fn without_ledgers_nothing_is_acknowledged_and_drop_oldest_records_the_gap() {
        let (mut m, _) = store(40);
        let mut r = retention(20_000, 10_000, WhenFull::DropOldest, &[]);
        r.after_append(&mut m).expect("retention");
        let below = m.pruned_below().expect("pruned");
        assert!(below > 20 && below < 40, "pruned below {below}");
        assert_eq!(r.stats().pruned_blocks(), (0, below));
        assert!(r.stats().alarm());
        let gap = r.gap().expect("gap").clone();
        assert_eq!((gap.from, gap.to, gap.reason.as_str()), (0, below, "quota"));
        assert_eq!(gap.bytes, below * 1010);
        // The gap survives a restart before the next block: the note names height 40.
        let mut again = retention(20_000, 10_000, WhenFull::DropOldest, &[]);
        again.open(&m);
        assert_eq!(again.gap(), Some(&gap));
    }

    #[test]
    fn a_stopped_writer_resumes_once_a_ledger_acknowledges() {
        let (mut m, _) = store(40);
        let mut r = retention(20_000, 10_000, WhenFull::Stop, &["factory"]);
        r.after_append(&mut m).expect("retention");
        assert!(r.refusing());
        write_cursor(&mut m, "factory", LedgerCursor { witnessed: 40, acked: 40 }).expect("cursor");
        r.wait_for_room(&mut m).expect("wait");
        assert!(!r.refusing() && !r.stats().alarm());
        assert!(m.pruned_below().expect("pruned") > 0);
        assert_eq!(r.stats().pruned_blocks().1, 0);
    }

    #[test]
    fn a_stopped_writer_stops_waiting_at_shutdown() {
        let (mut m, _) = store(40);
        let mut r = retention(20_000, 10_000, WhenFull::Stop, &[]);
        r.after_append(&mut m).expect("retention");
        assert!(r.refusing());
        r.shutdown.cancel();
        r.wait_for_room(&mut m).expect("returns at shutdown");
        assert!(r.refusing(), "still over the quota");
    }
}
