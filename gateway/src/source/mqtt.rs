//! The MQTT source: one task per broker connection (rumqttc, MQTT 3.1.1 or 5, plain TCP or TLS with
//! rustls), subscribed to the
//! configured topic filters with QoS 0 or 1, handing every message to the pipeline raw (the
//! pipeline also decodes payloads whose topic has a field layout).
//!
//! # At-least-once, end to end
//! Manual acks: a QoS 1 message is acknowledged to the broker (PUBACK) only after the block
//! that holds it is durable. Each message gets a sequence number; the writer publishes, per
//! source, the highest sequence number covered by a durable block ([`Durable::mqtt_seq`]), and
//! this task then acknowledges every held message up to it. The session is persistent
//! (`clean_session = false`, fixed client id), so after a crash or a lost connection the broker
//! redelivers what was not acknowledged. Duplicates are possible (a block made durable just
//! before a crash whose acks never left); losses are not.
//!
//! # Backpressure
//! The source **awaits** room in the pipeline channel; while it waits it does not read the
//! socket, so the broker holds further messages (and its in-flight window fills, as nothing is
//! acknowledged). MQTT is slowed, never dropped.
//!
//! # Reconnects
//! A connection error is logged and retried after a capped exponential backoff
//! (`reconnect_min` doubling to `reconnect_max`), reset after a successful CONNACK; the
//! subscriptions are renewed on every CONNACK.
//!
//! # Shutdown
//! On cancellation the task stops taking messages (their sender is dropped so the pipeline
//! can seal the last block), keeps the connection only to send the acks of that last block
//! once it is durable (until the writer ends or the grace period passes), then disconnects.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{Backoff, SourceStats};
use crate::config::{MqttConfig, MqttProtocol};
use crate::pipeline::MqttMessage;
use crate::writer::Durable;

/// MQTT 5 session expiry: how long the broker keeps the session (and unacknowledged messages)
/// while the gateway is away. One week.
pub const SESSION_EXPIRY_S: u32 = 7 * 24 * 3600;

/// Requests the client may queue for the event loop (acks, subscribes).
const REQUEST_CAPACITY: usize = 1024;

/// How long the last acks and the DISCONNECT may take at shutdown.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the MQTT source stopped on its own.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MqttError {
    #[error("MQTT source {source_name}: the pipeline closed")]
    PipelineClosed { source_name: String },
}

/// One MQTT broker connection as a source.
pub struct MqttSource {
    pub name: String,
    pub index: usize,
    pub config: MqttConfig,
    /// The pipeline channel; taken by [`MqttSource::run`] and dropped at shutdown.
    pub tx: Option<mpsc::Sender<MqttMessage>>,
    pub durable: watch::Receiver<Durable>,
    pub stats: Arc<SourceStats>,
    /// How long, after cancellation, to wait for the last block's acks.
    pub grace: Duration,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_nanos()).ok())
        .unwrap_or(0)
}

/// The source's event loop, written once and expanded for each protocol version's rumqttc
/// types (`rumqttc` for 3.1.1, `rumqttc::v5` for 5): the names `AsyncClient`, `EventLoop`,
/// `Event`, `Packet`, `Publish`, `QoS` and `topic_of` resolve in the module that expands it.
macro_rules! event_loop {
    () => {
        /// The event loop (one source of truth for both protocol versions).
        pub(super) async fn run(
            mut src: MqttSource,
            client: AsyncClient,
            mut events: EventLoop,
            shutdown: CancellationToken,
        ) -> Result<(), MqttError> {
        let mut backoff = Backoff::new(src.config.reconnect_min, src.config.reconnect_max);
        let mut durable = src.durable.clone();
        let mut tx = src.tx.take();
        // Messages awaiting durability: (seq, publish to ack; None for QoS 0).
        let mut held: VecDeque<(u64, Option<Publish>)> = VecDeque::new();
        // Acks of durable messages not yet taken by the client's bounded request queue (it
        // drains one request per event-loop poll); retried after every poll, never dropped.
        let mut unsent: VecDeque<Publish> = VecDeque::new();
        let mut seq: u64 = 0;
        let mut draining_since: Option<tokio::time::Instant> = None;
        let mut writer_done = false;
        loop {
            if draining_since.is_none() && shutdown.is_cancelled() {
                draining_since = Some(tokio::time::Instant::now());
                tx = None; // lets the pipeline seal the last block
            }
            if let Some(t) = draining_since {
                let acked_all = held.is_empty();
                if acked_all || writer_done || t.elapsed() >= src.grace {
                    if !held.is_empty() {
                        tracing::warn!(source = %src.name, unacked = held.len(), "MQTT messages left unacknowledged at shutdown; the broker will redeliver them");
                    }
                    // The acks are queued requests: poll the event loop until it has written
                    // them and the DISCONNECT after them (bounded).
                    let flush = async {
                        let mut disconnecting = false;
                        loop {
                            push_acks(&client, &mut unsent);
                            if unsent.is_empty() && !disconnecting {
                                disconnecting = client.try_disconnect().is_ok();
                            }
                            match events.poll().await {
                                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => {
                                    break
                                }
                                Ok(_) => {}
                            }
                        }
                    };
                    if tokio::time::timeout(DISCONNECT_TIMEOUT, flush).await.is_err() {
                        tracing::warn!(source = %src.name, "MQTT disconnect timed out; unsent acks will be redelivered");
                    }
                    return Ok(());
                }
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled(), if draining_since.is_none() => continue,
                changed = durable.changed(), if !writer_done => {
                    if changed.is_err() {
                        writer_done = true;
                    }
                    let upto = durable.borrow_and_update().mqtt_seq.get(src.index).copied().flatten();
                    if let Some(upto) = upto {
                        while held.front().is_some_and(|(s, _)| *s <= upto) {
                            let Some((_, p)) = held.pop_front() else { break };
                            unsent.extend(p);
                        }
                        push_acks(&client, &mut unsent);
                    }
                }
                () = tokio::time::sleep(Duration::from_millis(100)), if draining_since.is_some() => {}
                ev = events.poll() => match after_poll(ev, &client, &mut unsent) {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        backoff.reset();
                        tracing::info!(source = %src.name, host = %src.config.host, port = src.config.port, session_present = ack.session_present, "MQTT connected");
                        for (filter, q) in &src.config.topics {
                            if let Err(e) = client.try_subscribe(filter.clone(), qos(*q)) {
                                tracing::warn!(source = %src.name, filter, error = %e, "MQTT subscribe not queued");
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        tracing::info!(source = %src.name, "MQTT subscribed");
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        src.stats.received.fetch_add(1, Ordering::Relaxed);
                        let Some(sender) = &tx else {
                            // Draining: not taken, not acknowledged; redelivered later.
                            continue;
                        };
                        seq += 1;
                        let msg = MqttMessage {
                            source: src.index,
                            seq,
                            t_ns: now_ns(),
                            topic: topic_of(&p),
                            payload: p.payload.to_vec(),
                            qos: match p.qos { QoS::AtMostOnce => 0, QoS::AtLeastOnce => 1, QoS::ExactlyOnce => 2 },
                            retain: p.retain,
                        };
                        tracing::debug!(source = %src.name, seq, topic = %topic_of(&p), dup = p.dup, "MQTT message received");
                        let ack = (p.qos != QoS::AtMostOnce).then_some(p);
                        held.push_back((seq, ack));
                        // Backpressure: wait for room; the socket is not read meanwhile.
                        tokio::select! {
                            biased;
                            r = sender.send(msg) => {
                                if r.is_err() {
                                    return Err(MqttError::PipelineClosed { source_name: src.name.clone() });
                                }
                                src.stats.delivered.fetch_add(1, Ordering::Relaxed);
                            }
                            () = shutdown.cancelled() => {
                                // Not handed over: forget it (unacked, so redelivered).
                                held.pop_back();
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        src.stats.link_down.fetch_add(1, Ordering::Relaxed);
                        let delay = backoff.next_delay();
                        tracing::warn!(source = %src.name, error = %e, ?delay, "MQTT connection lost; reconnecting");
                        // Publishes held from the old connection are acked on the new one
                        // by packet id only if still pending there; the broker redelivers
                        // anything else (persistent session).
                        tokio::select! {
                            () = tokio::time::sleep(delay) => { src.stats.reconnects.fetch_add(1, Ordering::Relaxed); }
                            () = shutdown.cancelled() => {}
                        }
                    }
                },
            }
        }
    }

        /// Hands held acks to the client until its request queue is full.
        fn push_acks(client: &AsyncClient, unsent: &mut VecDeque<Publish>) {
            while let Some(p) = unsent.front() {
                if client.try_ack(p).is_err() {
                    break;
                }
                unsent.pop_front();
            }
        }

        /// A poll made room in the request queue: hand over more acks, then handle the event.
        fn after_poll<T>(event: T, client: &AsyncClient, unsent: &mut VecDeque<Publish>) -> T {
            push_acks(client, unsent);
            event
        }

        fn qos(q: u8) -> QoS {
            if q == 0 {
                QoS::AtMostOnce
            } else {
                QoS::AtLeastOnce
            }
        }
    };
}

impl MqttSource {
    /// Runs until `shutdown` is cancelled and the last acks are out.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), MqttError> {
        match self.config.protocol {
            MqttProtocol::V311 => {
                let (client, events) = v4::connect(&self.config);
                v4::run(self, client, events, shutdown).await
            }
            MqttProtocol::V5 => {
                let (client, events) = v5::connect(&self.config);
                v5::run(self, client, events, shutdown).await
            }
        }
    }
}

fn transport(c: &MqttConfig) -> Option<rumqttc::Transport> {
    c.tls.as_ref().map(|t| {
        rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Simple {
            ca: t.ca_pem.clone(),
            alpn: None,
            client_auth: t.client.clone(),
        })
    })
}

fn credentials(c: &MqttConfig) -> Option<(String, String)> {
    c.username.as_ref().map(|u| (u.clone(), c.password.clone().unwrap_or_default()))
}

/// MQTT 3.1.1: persistent session (`clean_session = false`).
mod v4 {
    use super::*;
    use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS};

    pub(super) fn connect(c: &MqttConfig) -> (AsyncClient, EventLoop) {
        let mut o = MqttOptions::new(c.client_id.clone(), c.host.clone(), c.port);
        o.set_keep_alive(c.keep_alive.max(Duration::from_secs(1)));
        o.set_clean_session(false);
        o.set_manual_acks(true);
        o.set_request_channel_capacity(REQUEST_CAPACITY);
        o.set_max_packet_size(c.max_payload + 64 * 1024, 64 * 1024);
        if let Some(t) = transport(c) {
            o.set_transport(t);
        }
        if let Some((u, p)) = credentials(c) {
            o.set_credentials(u, p);
        }
        AsyncClient::new(o, REQUEST_CAPACITY)
    }

    fn topic_of(p: &Publish) -> Arc<str> {
        Arc::from(p.topic.as_str())
    }

    event_loop!();
}

/// MQTT 5: `clean_start = false` and a session expiry ([`SESSION_EXPIRY_S`]), so the broker keeps
/// the session (and the unacknowledged messages) across restarts.
mod v5 {
    use super::*;
    use rumqttc::v5::mqttbytes::v5::{Packet, Publish};
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};

    pub(super) fn connect(c: &MqttConfig) -> (AsyncClient, EventLoop) {
        let mut o = MqttOptions::new(c.client_id.clone(), c.host.clone(), c.port);
        o.set_keep_alive(c.keep_alive.max(Duration::from_secs(1)));
        o.set_clean_start(false);
        o.set_session_expiry_interval(Some(SESSION_EXPIRY_S));
        o.set_manual_acks(true);
        o.set_request_channel_capacity(REQUEST_CAPACITY);
        o.set_max_packet_size(u32::try_from(c.max_payload + 64 * 1024).ok());
        if let Some(t) = transport(c) {
            o.set_transport(t);
        }
        if let Some((u, p)) = credentials(c) {
            o.set_credentials(u, p);
        }
        AsyncClient::new(o, REQUEST_CAPACITY)
    }

    /// MQTT 5 topics are UTF-8 by the spec; anything else is kept with replacement characters.
    fn topic_of(p: &Publish) -> Arc<str> {
        Arc::from(String::from_utf8_lossy(&p.topic).as_ref())
    }

    event_loop!();
}
