//! The pure pipeline core: records in, lanes by policy, blocks out.
//!
//! [`Pipeline`] does no I/O and reads no clock: the caller passes `now` (a monotonic
//! [`Duration`]) with every call. Each input record goes to every lane whose policy takes it:
//!
//! - a **raw** lane keeps the CAN frame (optionally only the ids of listed DBC messages) or the
//!   MQTT message as it arrived;
//! - a **signal** lane keeps decoded samples of its signals (CAN frames decoded with the DBCs
//!   configured for the frame's interface; MQTT payloads with the source's field layouts),
//!   thinned and coarsened per signal ([`signal::SignalState`]).
//!
//! The open block is sealed (handed out as a [`Pending`] block) when it reaches
//! `block.max_records` input records, `block.max_bytes` approximate plaintext bytes, or
//! `block.max_age` after its first record, whichever comes first, and on [`Pipeline::flush`].
//! [`seal`] turns a `Pending` into the store's [`BlockData`] with `ledger::seal::seal_block`.
//!
//! MQTT messages carry a per-source sequence number; a `Pending` block remembers the highest
//! one per source it covers (`marks`), so the writer can tell the MQTT source which messages
//! are durable and may be acknowledged.

pub mod payload;
pub mod signal;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use can_decoders::decode::{Decoded, Decoder};
use can_decoders::{CanId, Direction, FrameKind, TimedFrame};
use ledger::block::{BlockHash, SealedBlock};
use ledger::record::{CanFlags, CanRecord, MqttRecord, Record, SignalRecord};
use ledger::seal::{LaneSpec, SealError, SealOptions};
use ledger::store::BlockData;

use crate::config::{BlockPolicy, Config, LaneContent, Layout, SignalRule, SourceKind};
use signal::SignalState;

/// One MQTT message as a source hands it to the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttMessage {
    /// Index of the source in the config.
    pub source: usize,
    /// Per-source sequence number, increasing by one per message.
    pub seq: u64,
    pub t_ns: u64,
    pub topic: Arc<str>,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
}

/// A block ready to seal: each lane's records, and how far each MQTT source is covered.
#[derive(Debug, Clone, Default)]
pub struct Pending {
    pub lanes: Vec<LaneSpec>,
    /// `(source index, highest sequence number)` of the MQTT messages this block covers.
    pub marks: Vec<(usize, u64)>,
    /// Input records (frames and messages) that went into this block.
    pub inputs: u64,
}

impl Pending {
    /// Whether any lane holds a record (a block with none is not sealed; its marks still count).
    pub fn has_records(&self) -> bool {
        self.lanes.iter().any(|l| !l.records.is_empty())
    }

    pub fn record_count(&self) -> usize {
        self.lanes.iter().map(|l| l.records.len()).sum()
    }
}

/// Counters of the pipeline (plain values: the pipeline is single-threaded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub frames_in: u64,
    pub mqtt_in: u64,
    /// Frames or messages that could not become records (e.g. an id wider than its flags).
    pub rejected: u64,
    /// Frames whose id no DBC of their interface knows (kept raw, no signals).
    pub unknown_ids: u64,
    pub signals_kept: u64,
    /// MQTT payloads that did not parse as their layout's format.
    pub payload_errors: u64,
    /// Layout fields absent from a payload or not numbers.
    pub fields_missing: u64,
    pub blocks: u64,
}

struct SignalLane {
    /// Signal name -> rule index (MQTT samples come by name).
    by_name: HashMap<Arc<str>, usize>,
    /// Per DBC message key, per signal index: the rule index. Resolved once, so a decoded CAN
    /// value finds its rule by two indexings instead of hashing its name per frame.
    rule_of: Vec<Vec<Option<usize>>>,
    rules: Vec<SignalRule>,
    state: Vec<SignalState>,
}

enum Content {
    Raw { can_ids: Option<Vec<CanId>> },
    Signals(SignalLane),
}

struct Lane {
    spec: LaneSpec,
    sources: Option<Vec<usize>>,
    content: Content,
}

impl Lane {
    fn takes(&self, source: usize) -> bool {
        self.sources.as_ref().is_none_or(|s| s.contains(&source))
    }
}

/// Approximate plaintext bytes of a record, for the size trigger.
fn approx_bytes(r: &Record) -> usize {
    match r {
        Record::Can(c) => 12 + c.data().len(),
        Record::Mqtt(m) => 12 + m.topic.len() + m.payload.len(),
        Record::Signal(s) => 16 + s.name.len(),
    }
}

/// Our ledger record for a frame from interface `iface`.
pub fn can_record(
    iface: &Arc<str>,
    f: &TimedFrame,
) -> Result<CanRecord, ledger::record::RecordError> {
    let fr = &f.frame;
    let mut flags = CanFlags::default();
    if fr.id.is_extended() {
        flags = flags.with(CanFlags::EXTENDED);
    }
    if f.direction == Direction::Tx {
        flags = flags.with(CanFlags::TX);
    }
    let mut remote_len = 0;
    match fr.kind {
        FrameKind::Data => {}
        FrameKind::Remote => {
            flags = flags.with(CanFlags::REMOTE);
            remote_len = u8::try_from(fr.len()).unwrap_or(u8::MAX);
        }
        FrameKind::Fd { brs, esi } => {
            flags = flags.with(CanFlags::FD);
            if brs {
                flags = flags.with(CanFlags::BRS);
            }
            if esi {
                flags = flags.with(CanFlags::ESI);
            }
        }
        FrameKind::Error => flags = flags.with(CanFlags::ERROR),
    }
    let data = if fr.kind == FrameKind::Remote { &[][..] } else { fr.data() };
    CanRecord::new(f.t_ns, iface.clone(), fr.id.raw(), flags, data, remote_len)
}

/// The pipeline core. See the module docs.
pub struct Pipeline {
    decoder: Arc<Decoder>,
    decoded: Decoded,
    /// `Message.Signal` names per message key and signal index.
    signal_names: Vec<Vec<Arc<str>>>,
    /// Per source index: MQTT layouts (field names interned).
    layouts: Vec<Vec<(Layout, Vec<Arc<str>>)>>,
    lanes: Vec<Lane>,
    policy: BlockPolicy,
    inputs: u64,
    bytes: usize,
    opened_at: Option<Duration>,
    marks: Vec<Option<u64>>,
    counters: Counters,
}

impl Pipeline {
    /// A pipeline for `config`'s lanes, decoder and block policy.
    pub fn new(config: &Config) -> Pipeline {
        let decoder = config.decoder.clone();
        let signal_names: Vec<Vec<Arc<str>>> = decoder
            .messages()
            .map(|(_, m)| {
                m.signals()
                    .iter()
                    .map(|s| Arc::<str>::from(format!("{}.{}", m.name(), s.name())))
                    .collect()
            })
            .collect();
        let layouts = config
            .sources
            .iter()
            .map(|s| match &s.kind {
                SourceKind::Mqtt(m) => m
                    .layouts
                    .iter()
                    .map(|l| {
                        let names =
                            l.fields.iter().map(|(n, _)| Arc::<str>::from(n.as_str())).collect();
                        (l.clone(), names)
                    })
                    .collect(),
                _ => Vec::new(),
            })
            .collect();
        let lanes = config
            .lanes
            .iter()
            .map(|l| Lane {
                spec: LaneSpec {
                    name: l.name.clone(),
                    recipients: l.recipients.clone(),
                    records: Vec::new(),
                },
                sources: l.sources.clone(),
                content: match &l.content {
                    LaneContent::Raw { can_ids } => Content::Raw {
                        can_ids: can_ids.as_ref().map(|s| s.iter().copied().collect()),
                    },
                    LaneContent::Signals(rules) => {
                        let by_name: HashMap<Arc<str>, usize> = rules
                            .iter()
                            .enumerate()
                            .map(|(i, r)| (Arc::<str>::from(r.name.as_str()), i))
                            .collect();
                        let rule_of = signal_names
                            .iter()
                            .map(|names| names.iter().map(|n| by_name.get(n).copied()).collect())
                            .collect();
                        Content::Signals(SignalLane {
                            by_name,
                            rule_of,
                            state: vec![SignalState::default(); rules.len()],
                            rules: rules.clone(),
                        })
                    }
                },
            })
            .collect();
        Pipeline {
            decoder,
            decoded: Decoded::new(),
            signal_names,
            layouts,
            lanes,
            policy: config.block,
            inputs: 0,
            bytes: 0,
            opened_at: None,
            marks: vec![None; config.sources.len()],
            counters: Counters::default(),
        }
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// When the open block must be sealed by age (`None` while it is empty).
    pub fn deadline(&self) -> Option<Duration> {
        self.opened_at.map(|t| t + self.policy.max_age)
    }

    /// One CAN frame from source `source` on interface `iface`.
    pub fn push_can(
        &mut self,
        source: usize,
        iface: &Arc<str>,
        frame: &TimedFrame,
        now: Duration,
    ) -> Option<Pending> {
        self.counters.frames_in += 1;
        let rec = match can_record(iface, frame) {
            Ok(r) => r,
            Err(e) => {
                self.counters.rejected += 1;
                tracing::debug!(iface = %iface, error = %e, "frame rejected");
                return None;
            }
        };
        self.open(now);
        self.inputs += 1;
        let wants_signals =
            self.lanes.iter().any(|l| matches!(l.content, Content::Signals(_)) && l.takes(source));
        let key = if wants_signals
            && matches!(frame.frame.kind, FrameKind::Data | FrameKind::Fd { .. })
        {
            let bus = self.decoder.bus(iface);
            let k = self.decoder.decode(bus, &frame.frame, &mut self.decoded);
            if k.is_none() {
                self.counters.unknown_ids += 1;
            }
            k
        } else {
            None
        };
        let record = Record::Can(rec);
        let rb = approx_bytes(&record);
        for lane in &mut self.lanes {
            if !lane.takes(source) {
                continue;
            }
            match &mut lane.content {
                Content::Raw { can_ids } => {
                    if can_ids.as_ref().is_none_or(|ids| ids.contains(&frame.frame.id)) {
                        lane.spec.records.push(record.clone());
                        self.bytes += rb;
                    }
                }
                Content::Signals(sl) => {
                    let Some(k) = key else { continue };
                    let names = &self.signal_names[k.index()];
                    let Some(rules_of) = sl.rule_of.get(k.index()) else { continue };
                    for v in &self.decoded.values {
                        let Some(&Some(ri)) = rules_of.get(v.signal) else { continue };
                        let Some(name) = names.get(v.signal) else { continue };
                        if let Some(value) = sl.state[ri].keep(&sl.rules[ri], frame.t_ns, v.value) {
                            let r = Record::Signal(SignalRecord {
                                t_ns: frame.t_ns,
                                name: name.clone(),
                                value,
                            });
                            self.bytes += approx_bytes(&r);
                            lane.spec.records.push(r);
                            self.counters.signals_kept += 1;
                        }
                    }
                }
            }
        }
        self.check_full()
    }

    /// One MQTT message.
    pub fn push_mqtt(&mut self, msg: MqttMessage, now: Duration) -> Option<Pending> {
        self.counters.mqtt_in += 1;
        if let Some(m) = self.marks.get_mut(msg.source) {
            *m = Some(m.map_or(msg.seq, |x| x.max(msg.seq)));
        }
        self.open(now);
        self.inputs += 1;
        // Signals from the source's layouts whose topic filter matches.
        let mut samples: Vec<(Arc<str>, f64)> = Vec::new();
        if let Some(layouts) = self.layouts.get(msg.source) {
            for (layout, names) in layouts {
                if !payload::topic_matches(&layout.topic, &msg.topic) {
                    continue;
                }
                match payload::extract(layout, &msg.payload) {
                    Ok(x) => {
                        self.counters.fields_missing += x.missing;
                        samples.extend(
                            x.values
                                .into_iter()
                                .filter_map(|(i, v)| names.get(i).map(|n| (n.clone(), v))),
                        );
                    }
                    Err(e) => {
                        self.counters.payload_errors += 1;
                        tracing::debug!(topic = %msg.topic, error = %e, "MQTT payload kept raw only");
                    }
                }
            }
        }
        let (source, t_ns) = (msg.source, msg.t_ns);
        let rec = match MqttRecord::new(msg.t_ns, msg.topic, msg.payload, msg.qos, msg.retain) {
            Ok(r) => Some(Record::Mqtt(r)),
            Err(e) => {
                self.counters.rejected += 1;
                tracing::warn!(error = %e, "MQTT message cannot be a record");
                None
            }
        };
        for lane in &mut self.lanes {
            if !lane.takes(source) {
                continue;
            }
            match &mut lane.content {
                Content::Raw { .. } => {
                    if let Some(r) = &rec {
                        self.bytes += approx_bytes(r);
                        lane.spec.records.push(r.clone());
                    }
                }
                Content::Signals(sl) => {
                    for (name, v) in &samples {
                        let Some(&ri) = sl.by_name.get(name) else { continue };
                        if let Some(value) = sl.state[ri].keep(&sl.rules[ri], t_ns, *v) {
                            let r =
                                Record::Signal(SignalRecord { t_ns, name: name.clone(), value });
                            self.bytes += approx_bytes(&r);
                            lane.spec.records.push(r);
                            self.counters.signals_kept += 1;
                        }
                    }
                }
            }
        }
        self.check_full()
    }

    /// Seals the open block if it is older than `block.max_age` at `now`.
    pub fn poll(&mut self, now: Duration) -> Option<Pending> {
        match self.deadline() {
            Some(d) if now >= d => self.take(),
            _ => None,
        }
    }

    /// Seals whatever is open (shutdown, end of input).
    pub fn flush(&mut self) -> Option<Pending> {
        self.take()
    }

    fn open(&mut self, now: Duration) {
        if self.opened_at.is_none() {
            self.opened_at = Some(now);
        }
    }

    fn check_full(&mut self) -> Option<Pending> {
        let full = self.inputs >= self.policy.max_records.get() as u64
            || self.bytes >= self.policy.max_bytes.get();
        if full {
            self.take()
        } else {
            None
        }
    }

    fn take(&mut self) -> Option<Pending> {
        self.opened_at?;
        let marks: Vec<(usize, u64)> = self
            .marks
            .iter_mut()
            .enumerate()
            .filter_map(|(i, m)| m.take().map(|s| (i, s)))
            .collect();
        let lanes = self
            .lanes
            .iter_mut()
            .map(|l| {
                // The next block starts with this one's length as capacity: no regrowth by
                // doubling (whose copies briefly hold both buffers) on steady traffic.
                let next = Vec::with_capacity(l.spec.records.len());
                LaneSpec {
                    name: l.spec.name.clone(),
                    recipients: l.spec.recipients.clone(),
                    records: std::mem::replace(&mut l.spec.records, next),
                }
            })
            .collect();
        let p = Pending { lanes, marks, inputs: std::mem::take(&mut self.inputs) };
        self.bytes = 0;
        self.opened_at = None;
        if p.has_records() {
            self.counters.blocks += 1;
        }
        Some(p)
    }
}

/// Seals `pending` as block `height` of the gateway with Ed25519 public key `gateway`, linked to
/// `prev`: the header bytes and lane ciphertexts the store appends. `hints` carries the lanes'
/// bit-field layouts from block to block (D254).
pub fn seal(
    pending: &Pending,
    gateway: [u8; 32],
    height: u64,
    prev: BlockHash,
    opts: &SealOptions,
    hints: &mut ledger::seal::BlockHints,
    rng: &mut impl rand_core::CryptoRng,
) -> Result<(SealedBlock, BlockData), SealError> {
    let sealed =
        ledger::seal::seal_block_hinted(gateway, height, prev, &pending.lanes, opts, hints, rng)?;
    let data = BlockData { header: sealed.header_bytes.clone(), lanes: sealed.lanes.clone() };
    Ok((sealed, data))
}

#[cfg(test)]
pub(crate) mod tests;
