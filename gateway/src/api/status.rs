//! `GET /v1/status`: one JSON object about the running gateway, read from the live counters
//! ([`Health`](crate::health::Health)) and the store's read handle. The store reads run on a
//! blocking thread (RocksDB).
//!
//! ```json
//! {"version":"0.1.0","origin":"gw-1.example/log","key_id":"1a2b3c4d","vkey":"...",
//!  "clock":"gateway","now":"2026-...Z","uptime_s":12.5,
//!  "store":{"size":641,"checkpoint":{"size":641,"root":"base64"},
//!           "last_block":{"height":640,"first":"...Z","last":"...Z","first_ns":..,"last_ns":..}},
//!  "sources":[{"name":"replay","label":"replay","kind":"frames","received":..,"delivered":..,
//!              "dropped_full":0,"kernel_drops":0,"error_frames":0,"malformed":0,"reconnects":0}],
//!  "lanes":[{"name":"local","records":..}],"records_sealed":..,"blocks_sealed":..,
//!  "pipeline":{"heartbeat":..,"heartbeat_age_ms":..,"state":"healthy"},
//!  "history":{"key":"gw+1a2b3c4d","lanes":["local"]},"ledgers":[]}
//! ```

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State as AxState;
use axum::response::{IntoResponse, Response};
use ledger::block::BlockHeader;
use ledger::checkpoint::Checkpoint;
use ledger::note::Note;
use serde_json::{json, Value};

use super::{ApiError, State};
use crate::health::SourceKindLabel;

pub async fn handler(AxState(state): AxState<Arc<State>>) -> Response {
    let s = state.clone();
    let store = tokio::task::spawn_blocking(move || store_status(&s)).await;
    match store {
        Ok(Ok(store)) => axum::Json(status(&state, store)).into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(e) => {
            ApiError::internal("internal", format!("status task failed: {e}")).into_response()
        }
    }
}

/// RFC 3339 with nanoseconds, UTC, for a time in ns since the Unix epoch.
pub fn rfc3339(t_ns: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(t_ns);
    humantime::format_rfc3339_nanos(t).to_string()
}

fn store_status(state: &State) -> Result<Value, ApiError> {
    let r = &state.reader;
    let damaged = |e: ledger::store::StoreError| ApiError::internal("store", e.to_string());
    let size = r.size();
    let checkpoint = match r.checkpoint().map_err(damaged)? {
        None => Value::Null,
        Some(bytes) => match Note::parse(&bytes).map(|n| Checkpoint::parse(n.text())) {
            Ok(Ok(c)) => json!({ "size": c.size(), "root": c.root().to_base64() }),
            Ok(Err(e)) => json!({ "error": e.to_string() }),
            Err(e) => json!({ "error": e.to_string() }),
        },
    };
    let last_block = match size.checked_sub(1) {
        None => Value::Null,
        Some(h) => match r.header(h).map_err(damaged)? {
            None => Value::Null,
            Some(bytes) => match BlockHeader::from_bytes(&bytes) {
                Ok(hd) => json!({
                    "height": h,
                    "first": rfc3339(hd.first_ns),
                    "last": rfc3339(hd.last_ns),
                    "first_ns": hd.first_ns,
                    "last_ns": hd.last_ns,
                    "records": hd.lanes.iter().map(|l| l.record_count).sum::<u64>(),
                }),
                Err(e) => json!({ "height": h, "error": e.to_string() }),
            },
        },
    };
    let mut ledgers = Vec::new();
    for name in &state.ledgers {
        let c = ledger::store::cursor::read_cursor(r.as_ref(), name).map_err(damaged)?;
        ledgers.push(json!({ "name": name, "witnessed": c.witnessed, "acked": c.acked }));
    }
    Ok(json!({
        "size": size,
        "checkpoint": checkpoint,
        "last_block": last_block,
        "ledgers": ledgers,
    }))
}

fn status(state: &State, mut store: Value) -> Value {
    let now = Instant::now();
    let sources: Vec<Value> = state
        .health
        .sources()
        .iter()
        .map(|s| {
            let st = s.stats.snapshot();
            json!({
                "name": s.name,
                "label": s.label,
                "kind": match s.kind { SourceKindLabel::Frames => "frames", SourceKindLabel::Mqtt => "mqtt" },
                "received": st.received,
                "delivered": st.delivered,
                "dropped_full": st.dropped_full,
                "kernel_drops": st.kernel_drops,
                "error_frames": st.error_frames,
                "malformed": st.malformed,
                "reconnects": st.reconnects,
            })
        })
        .collect();
    let (lanes, records, blocks) = match state.health.durable() {
        None => (Vec::new(), 0, 0),
        Some((start, d)) => (
            d.lane_records.iter().map(|(n, r)| json!({ "name": n, "records": r })).collect(),
            d.records,
            d.size.saturating_sub(start),
        ),
    };
    state.beat.observe(state.health.heartbeat(), now);
    let (beat, age) = state.beat.age(now);
    let ledgers = store.get_mut("ledgers").map(Value::take).unwrap_or(Value::Null);
    if let Some(o) = store.as_object_mut() {
        o.remove("ledgers");
    }
    let history =
        state.history.as_ref().map(|h| json!({ "key": h.key_label(), "lanes": h.self_lanes() }));
    let wall_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "origin": state.origin,
        "key_id": ledger::keys::fingerprint(state.key_id),
        "vkey": state.vkey,
        "clock": "gateway",
        "now": rfc3339(wall_ns),
        "uptime_s": now.saturating_duration_since(state.started).as_secs_f64(),
        "store": store,
        "sources": sources,
        "lanes": lanes,
        "records_sealed": records,
        "blocks_sealed": blocks,
        "pipeline": {
            "heartbeat": beat,
            "heartbeat_age_ms": u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
            "state": if age > state.stall_after { "stalled" } else { "healthy" },
            "stalled_after_ms": u64::try_from(state.stall_after.as_millis()).unwrap_or(u64::MAX),
        },
        "history": history,
        "ledgers": ledgers,
    })
}
