//! `GET /v1/history`: the gateway's own history over a time range, decoded, from a lane sealed
//! for the gateway's own X25519 key (`gateway.history_key`, recipient `self`).
//!
//! Parameters: `from`, `to` (RFC 3339 in UTC, e.g. `2021-07-26T04:40:55Z`, or ns since the
//! Unix epoch; inclusive), `lane` (default: the one lane sealed for `self`), `signals`
//! (comma separated; `Message.Signal` or just `Signal`), `limit` (rows, capped by
//! `api.max_rows`), `after` (the `next` cursor of the previous answer).
//!
//! The answer is JSON lines (`application/x-ndjson`), streamed:
//!
//! ```text
//! {"kind":"head","clock":"gateway","note":"...","origin":"...","lane":"local","from":"...","to":"...",...}
//! {"kind":"row","ts":"2021-07-26T04:40:55.012500000Z","t_ns":...,"source":"can1","message":"gnss_pos","signal":"Latitude","value":51.5,"unit":"deg","height":3}
//! {"kind":"end","rows":2,"blocks":1,"skipped_blocks":0,"next":null}
//! ```
//!
//! Times are the record timestamps as the gateway sealed them: the gateway's own clock (or the
//! trace's recorded time for a replay), not a ledger's. Rows are in time order; ties keep the
//! order of the log (height, then position in the lane). A raw CAN frame becomes one row per
//! signal its DBC decodes (the same decoder the pipeline runs); a frame no DBC describes, a
//! remote or an error frame becomes one row with `id` and `data` (hex) and no signal (left out
//! when `signals` is given). A signal lane's samples become rows as stored (already thinned and
//! coarsened by the lane's policy). An MQTT message becomes one row per field of every layout
//! whose topic filter matches, or one row with its `payload` (UTF-8 text, else hex `data`).
//!
//! How (D103): an in-memory index of every block's time range (16 bytes per block, filled from
//! the headers on first use and extended as the log grows) finds the blocks that overlap the
//! range. Blocks whose ranges overlap each other (two sources with different clocks) form one
//! group whose records are merged by time; groups are disjoint in time and read in order. The
//! position reached is the cursor `t_ns.height.index.sub` of the last row sent (or the end of a
//! group), so continuation is stateless: the next request skips everything at or before it.
//! An answer ends after `limit` rows or `max_blocks` opened blocks with a `next` cursor; a
//! block whose lane is not sealed for the gateway's key (e.g. sealed before `self` was added)
//! is skipped and counted in `skipped_blocks`. An error after the head is sent arrives as a
//! final `{"kind":"error",...}` line instead of the `end` line.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, PoisonError};

use axum::body::Body;
use axum::extract::{Query, State as AxState};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use can_decoders::decode::{Decoded, Decoder};
use ledger::block::BlockHeader;
use ledger::keys::X25519Key;
use ledger::lane::Limits;
use ledger::record::{CanFlags, CanRecord, MqttRecord, Record, SignalRecord};
use ledger::store::Store;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::status::rfc3339;
use super::{ApiError, State};
use crate::config::{Config, Layout, SourceKind};
use crate::pipeline::payload;

/// Rows per answer when the request gives no `limit`.
pub const DEFAULT_ROWS: usize = 10_000;
/// What the head line says about time.
pub const CLOCK_NOTE: &str =
    "times are the gateway's own clock (record timestamps as sealed), not a ledger's";

/// What the history endpoint needs from the config, prepared once.
pub struct Context {
    key: X25519Key,
    public: [u8; 32],
    decoder: Arc<Decoder>,
    layouts: Vec<Layout>,
    /// Every configured lane and whether it is sealed for the gateway's key.
    lanes: Vec<(String, bool)>,
}

impl Context {
    /// `None` without `gateway.history_key`.
    pub fn new(config: &Config) -> Option<Context> {
        let key = config.history_key.clone()?;
        let public = key.public();
        let lanes =
            config.lanes.iter().map(|l| (l.name.clone(), l.recipients.contains(&public))).collect();
        let layouts = config
            .sources
            .iter()
            .filter_map(|s| match &s.kind {
                SourceKind::Mqtt(m) => Some(m.layouts.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        Some(Context {
            public: *public.as_bytes(),
            key,
            decoder: config.decoder.clone(),
            layouts,
            lanes,
        })
    }

    /// The key's public name and id, `name+1a2b3c4d`.
    pub fn key_label(&self) -> String {
        format!("{}+{}", self.key.name(), ledger::keys::fingerprint(self.key.key_id()))
    }

    /// Lanes sealed for the gateway's key.
    pub fn self_lanes(&self) -> Vec<&str> {
        self.lanes.iter().filter(|(_, s)| *s).map(|(n, _)| n.as_str()).collect()
    }

    fn resolve_lane(&self, asked: Option<&str>) -> Result<String, ApiError> {
        let own = self.self_lanes();
        match asked {
            Some(name) => match self.lanes.iter().find(|(n, _)| n == name) {
                Some((_, true)) => Ok(name.to_owned()),
                Some((_, false)) => Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "lane_not_sealed_for_gateway",
                    format!(
                        "lane {name:?} is not sealed for the gateway's own key, so the gateway \
                         cannot read it; add \"self\" to lanes.{name}.recipients (blocks sealed \
                         from then on become readable); lanes sealed for it: {own:?}"
                    ),
                )),
                None => Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "unknown_lane",
                    format!("no lane {name:?} is configured; lanes sealed for the gateway: {own:?}"),
                )),
            },
            None => match own.as_slice() {
                [one] => Ok((*one).to_owned()),
                [] => Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "no_local_lane",
                    "no lane is sealed for the gateway's own key: add a lane with recipients = \
                     [\"self\"] (see iov-gateway print-default-config, [lanes.local])",
                )),
                many => Err(ApiError::bad_request(
                    "lane_required",
                    format!("several lanes are sealed for the gateway: choose one with lane= ({many:?})"),
                )),
            },
        }
    }
}

/// Where an answer stopped: the last row sent, or the end of a time group. Ordered like the
/// rows: time, height, record index in the lane, row index within the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub t_ns: u64,
    pub height: u64,
    pub index: u64,
    pub sub: u64,
}

impl Cursor {
    pub fn to_text(self) -> String {
        format!("{}.{}.{}.{}", self.t_ns, self.height, self.index, self.sub)
    }

    pub fn parse(text: &str) -> Option<Cursor> {
        let mut p = text.split('.').map(|x| x.parse::<u64>().ok());
        let c = Cursor { t_ns: p.next()??, height: p.next()??, index: p.next()??, sub: p.next()?? };
        p.next().is_none().then_some(c)
    }
}

/// Time ranges of the log's blocks, by height (`None`: no records, or not readable).
#[derive(Debug, Default)]
pub struct Index {
    blocks: Vec<Option<(u64, u64)>>,
}

impl Index {
    /// Reads the headers of blocks appended since the last call.
    pub fn refresh(&mut self, store: &dyn Store) -> Result<(), ApiError> {
        let size = store.size();
        let start = self.blocks.len() as u64;
        for h in start..size {
            let entry = match store.header(h).map_err(store_error)? {
                // Pruned (retention): nothing to read there.
                None => None,
                Some(bytes) => {
                    let hd = BlockHeader::from_bytes(&bytes).map_err(|e| {
                        ApiError::internal("store_damaged", format!("header at height {h}: {e}"))
                    })?;
                    let records: u64 = hd.lanes.iter().map(|l| l.record_count).sum();
                    (records > 0).then_some((hd.first_ns, hd.last_ns))
                }
            };
            self.blocks.push(entry);
        }
        Ok(())
    }

    /// Heights whose range meets `[lo, hi]`, grouped: blocks that overlap each other are in
    /// one group; groups are in time order and disjoint. Each group comes with its end time.
    fn groups(&self, lo: u64, hi: u64) -> Vec<(Vec<u64>, u64)> {
        let mut hits: Vec<(u64, u64, u64)> = self
            .blocks
            .iter()
            .enumerate()
            .filter_map(|(h, r)| r.map(|(f, l)| (f, l, h as u64)))
            .filter(|&(f, l, _)| l >= lo && f <= hi)
            .collect();
        hits.sort_unstable();
        let mut groups: Vec<(Vec<u64>, u64)> = Vec::new();
        for (f, l, h) in hits {
            match groups.last_mut() {
                Some((hs, end)) if f <= *end => {
                    hs.push(h);
                    *end = (*end).max(l);
                }
                _ => groups.push((vec![h], l)),
            }
        }
        groups
    }
}

fn store_error(e: ledger::store::StoreError) -> ApiError {
    ApiError::internal("store", e.to_string())
}

/// A validated history request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub from_ns: u64,
    pub to_ns: u64,
    pub lane: String,
    pub signals: Option<Vec<String>>,
    pub limit: usize,
    pub after: Option<Cursor>,
}

/// `from`/`to`: RFC 3339 in UTC, or an integer of ns since the Unix epoch.
pub fn parse_time(key: &str, text: &str) -> Result<u64, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "bad_time",
            format!(
                "{key}: {text:?} is not an RFC 3339 time in UTC (2021-07-26T04:40:55Z, fractions \
                 allowed) nor nanoseconds since the Unix epoch"
            ),
        )
    };
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse::<u64>().map_err(|_| bad());
    }
    let st = humantime::parse_rfc3339(t).map_err(|_| bad())?;
    let d = st.duration_since(std::time::UNIX_EPOCH).map_err(|_| bad())?;
    u64::try_from(d.as_nanos()).map_err(|_| bad())
}

/// Validates the query parameters.
pub fn parse_request(
    params: &[(String, String)],
    ctx: &Context,
    max_rows: usize,
) -> Result<Request, ApiError> {
    let mut got: HashMap<&str, &str> = HashMap::new();
    for (k, v) in params {
        if !matches!(k.as_str(), "from" | "to" | "lane" | "signals" | "limit" | "after") {
            return Err(ApiError::bad_request(
                "unknown_parameter",
                format!("unknown parameter {k:?}: from, to, lane, signals, limit, after"),
            ));
        }
        if got.insert(k, v).is_some() {
            return Err(ApiError::bad_request("repeated_parameter", format!("{k} given twice")));
        }
    }
    let need = |k: &str| {
        got.get(k).copied().ok_or_else(|| {
            ApiError::bad_request("missing_parameter", format!("{k} is required (RFC 3339 or ns)"))
        })
    };
    let from_ns = parse_time("from", need("from")?)?;
    let to_ns = parse_time("to", need("to")?)?;
    if from_ns > to_ns {
        return Err(ApiError::bad_request(
            "bad_range",
            format!("from ({}) is after to ({})", rfc3339(from_ns), rfc3339(to_ns)),
        ));
    }
    let limit = match got.get("limit") {
        None => DEFAULT_ROWS.min(max_rows),
        Some(l) => match l.parse::<usize>() {
            Ok(n) if n > 0 => n.min(max_rows),
            _ => {
                return Err(ApiError::bad_request(
                    "bad_limit",
                    format!("limit: {l:?} is not a positive integer"),
                ))
            }
        },
    };
    let after = match got.get("after") {
        None => None,
        Some(a) => Some(Cursor::parse(a).ok_or_else(|| {
            ApiError::bad_request(
                "bad_cursor",
                format!("after: {a:?} is not a cursor from a `next`"),
            )
        })?),
    };
    let signals = got.get("signals").map(|s| {
        s.split(',').map(str::trim).filter(|x| !x.is_empty()).map(str::to_owned).collect()
    });
    let lane = ctx.resolve_lane(got.get("lane").copied())?;
    Ok(Request { from_ns, to_ns, lane, signals, limit, after })
}

pub async fn handler(
    AxState(state): AxState<Arc<State>>,
    params: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let params = match params {
        Ok(Query(p)) => p,
        Err(e) => return ApiError::bad_request("bad_query", e.body_text()).into_response(),
    };
    let Some(ctx) = &state.history else {
        return ApiError::new(
            StatusCode::CONFLICT,
            "no_history_key",
            "the gateway has no history key: set gateway.history_key and seal a lane for \"self\"",
        )
        .into_response();
    };
    let req = match parse_request(&params, ctx, state.limits.max_rows.get()) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    // Small: with one 64 KiB chunk per message, at most about half a MiB waits per answer.
    let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(8);
    let (ready_tx, ready_rx) = oneshot::channel::<Result<(), ApiError>>();
    let st = state.clone();
    tokio::task::spawn_blocking(move || produce(&st, &req, ready_tx, tx));
    match ready_rx.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return e.into_response(),
        Err(_) => return ApiError::internal("internal", "history task ended").into_response(),
    }
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    (
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::HeaderName::from_static("x-iov-clock"), "gateway"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// Collects lines into chunks for the body channel; `false` once the client is gone.
struct Sink {
    buf: Vec<u8>,
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
    open: bool,
}

impl Sink {
    const CHUNK: usize = 64 * 1024;

    fn line(&mut self, v: &Value) -> bool {
        // Serializing a Value into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.buf, v);
        self.buf.push(b'\n');
        if self.buf.len() >= Self::CHUNK {
            self.flush();
        }
        self.open
    }

    fn flush(&mut self) {
        if self.open && !self.buf.is_empty() {
            let chunk = Bytes::from(std::mem::take(&mut self.buf));
            // Waits while the client is slow: the bounded channel is the backpressure.
            self.open = self.tx.blocking_send(Ok(chunk)).is_ok();
        }
    }
}

fn produce(
    state: &State,
    req: &Request,
    ready: oneshot::Sender<Result<(), ApiError>>,
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
) {
    let Some(ctx) = &state.history else { return };
    let refreshed = {
        let mut index = state.index.lock().unwrap_or_else(PoisonError::into_inner);
        index.refresh(state.reader.as_ref())
    };
    if let Err(e) = refreshed {
        let _ = ready.send(Err(e));
        return;
    }
    if ready.send(Ok(())).is_err() {
        return;
    }
    let mut sink = Sink { buf: Vec::with_capacity(Sink::CHUNK + 4096), tx, open: true };
    sink.line(&json!({
        "kind": "head",
        "clock": "gateway",
        "note": CLOCK_NOTE,
        "origin": state.origin,
        "lane": req.lane,
        "from": rfc3339(req.from_ns),
        "to": rfc3339(req.to_ns),
        "from_ns": req.from_ns,
        "to_ns": req.to_ns,
        "limit": req.limit,
        "after": req.after.map(Cursor::to_text),
    }));
    let mut groups = {
        let index = state.index.lock().unwrap_or_else(PoisonError::into_inner);
        index.groups(req.after.map_or(req.from_ns, |c| c.t_ns.max(req.from_ns)), req.to_ns)
    };
    // A cursor at a group's end: that group is done, don't open it again.
    if let Some(a) = req.after.filter(|a| a.height == u64::MAX) {
        groups.retain(|(_, end)| *end > a.t_ns);
    }
    let end =
        answer(ctx, state.reader.as_ref(), &groups, req, state.limits.max_blocks.get(), &mut |v| {
            sink.line(v)
        });
    match end {
        Ok(e) => {
            sink.line(&json!({
                "kind": "end",
                "rows": e.rows,
                "blocks": e.blocks,
                "skipped_blocks": e.skipped,
                "next": e.next.map(Cursor::to_text),
            }));
        }
        Err(e) => {
            tracing::warn!(code = e.code, error = %e.message, "history answer failed");
            sink.line(&json!({ "kind": "error", "code": e.code, "message": e.message }));
        }
    }
    sink.flush();
}

/// How an answer ended.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct End {
    pub rows: u64,
    pub blocks: u64,
    /// Blocks whose lane is not sealed for the gateway's key (or that lack the lane).
    pub skipped: u64,
    pub next: Option<Cursor>,
}

/// Writes the rows of `groups` that `req` asks for to `out` (which returns `false` when the
/// client is gone).
fn answer(
    ctx: &Context,
    store: &dyn Store,
    groups: &[(Vec<u64>, u64)],
    req: &Request,
    max_blocks: usize,
    out: &mut dyn FnMut(&Value) -> bool,
) -> Result<End, ApiError> {
    let mut end = End::default();
    let mut decoded = Decoded::new();
    let mut last: Option<Cursor> = None;
    for (gi, (heights, group_end)) in groups.iter().enumerate() {
        if end.blocks > 0 && end.blocks + heights.len() as u64 > max_blocks as u64 {
            end.next = last;
            return Ok(end);
        }
        // Open the group's lanes.
        let mut lanes: Vec<(u64, Vec<Record>)> = Vec::with_capacity(heights.len());
        for &h in heights {
            end.blocks += 1;
            match open(ctx, store, h, &req.lane)? {
                Some(records) => lanes.push((h, records)),
                None => end.skipped += 1,
            }
        }
        // Merge by time: (t, height, index, lane position).
        let lo = req.from_ns;
        let mut order: Vec<(u64, u64, u64, usize)> = Vec::new();
        for (pos, (h, recs)) in lanes.iter().enumerate() {
            for (i, r) in recs.iter().enumerate() {
                let t = r.t_ns();
                if t >= lo && t <= req.to_ns && req.after.is_none_or(|a| t >= a.t_ns) {
                    order.push((t, *h, i as u64, pos));
                }
            }
        }
        order.sort_unstable();
        for (t, h, i, pos) in order {
            let rec = &lanes[pos].1[i as usize];
            let rows = rows_of(ctx, rec, &mut decoded, req.signals.as_deref());
            for (sub, row) in rows.into_iter().enumerate() {
                let key = Cursor { t_ns: t, height: h, index: i, sub: sub as u64 };
                if req.after.is_some_and(|a| key <= a) {
                    continue;
                }
                if end.rows as usize >= req.limit {
                    end.next = last;
                    return Ok(end);
                }
                let v = row.to_json(t, h);
                if !out(&v) {
                    return Ok(end);
                }
                end.rows += 1;
                last = Some(key);
            }
        }
        // Everything at or before the group's end is done.
        if gi + 1 < groups.len() {
            last =
                Some(Cursor { t_ns: *group_end, height: u64::MAX, index: u64::MAX, sub: u64::MAX });
        }
    }
    Ok(end)
}

/// Opens `lane` of block `h` with the gateway's key; `None` when the block has no such lane or
/// it is not sealed for the key.
fn open(
    ctx: &Context,
    store: &dyn Store,
    h: u64,
    lane: &str,
) -> Result<Option<Vec<Record>>, ApiError> {
    let Some(bytes) = store.header(h).map_err(store_error)? else { return Ok(None) };
    let header = BlockHeader::from_bytes(&bytes)
        .map_err(|e| ApiError::internal("store_damaged", format!("header at height {h}: {e}")))?;
    let Some(idx) = header.lanes.iter().position(|l| l.name == lane) else { return Ok(None) };
    if !header.lanes[idx].recipients.contains(&ctx.public) {
        return Ok(None);
    }
    let lane_no = u16::try_from(idx)
        .map_err(|_| ApiError::internal("store_damaged", format!("lane {idx} at height {h}")))?;
    let ct = store.lane(h, lane_no).map_err(store_error)?.ok_or_else(|| {
        ApiError::internal("store_damaged", format!("lane {lane:?} at height {h} is missing"))
    })?;
    ledger::seal::open_lane_bytes(&header, idx, &ct, &ctx.key, &Limits::DEFAULT)
        .map(Some)
        .map_err(|e| ApiError::internal("lane_open_failed", e.to_string()))
}

/// One output row, before it gets its time.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    source: Option<Arc<str>>,
    message: Option<String>,
    signal: Option<String>,
    value: Option<f64>,
    unit: Option<String>,
    label: Option<String>,
    /// Frames no DBC decodes: id (hex) and payload (hex); MQTT payloads that are not text.
    id: Option<String>,
    data: Option<String>,
    payload: Option<String>,
}

impl Row {
    fn empty(source: Option<Arc<str>>) -> Row {
        Row {
            source,
            message: None,
            signal: None,
            value: None,
            unit: None,
            label: None,
            id: None,
            data: None,
            payload: None,
        }
    }

    fn to_json(&self, t_ns: u64, height: u64) -> Value {
        let mut o = serde_json::Map::new();
        o.insert("kind".into(), "row".into());
        o.insert("ts".into(), rfc3339(t_ns).into());
        o.insert("t_ns".into(), t_ns.into());
        o.insert("source".into(), self.source.as_deref().into());
        o.insert("message".into(), self.message.as_deref().into());
        o.insert("signal".into(), self.signal.as_deref().into());
        o.insert("value".into(), self.value.into());
        o.insert("unit".into(), self.unit.as_deref().filter(|u| !u.is_empty()).into());
        if let Some(l) = &self.label {
            o.insert("label".into(), l.as_str().into());
        }
        for (k, v) in [("id", &self.id), ("data", &self.data), ("payload", &self.payload)] {
            if let Some(v) = v {
                o.insert(k.into(), v.as_str().into());
            }
        }
        o.insert("height".into(), height.into());
        Value::Object(o)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

fn wanted(filter: Option<&[String]>, message: Option<&str>, signal: &str) -> bool {
    match filter {
        None => true,
        Some(f) => f.iter().any(|n| {
            n == signal
                || message.is_some_and(|m| {
                    n.len() == m.len() + 1 + signal.len()
                        && n.starts_with(m)
                        && n.as_bytes()[m.len()] == b'.'
                        && n.ends_with(signal)
                })
        }),
    }
}

/// The rows one record becomes (see the module docs).
fn rows_of(
    ctx: &Context,
    rec: &Record,
    decoded: &mut Decoded,
    filter: Option<&[String]>,
) -> Vec<Row> {
    match rec {
        Record::Can(c) => can_rows(ctx, c, decoded, filter),
        Record::Mqtt(m) => mqtt_rows(ctx, m, filter),
        Record::Signal(s) => signal_rows(ctx, s, filter),
    }
}

fn can_rows(
    ctx: &Context,
    c: &CanRecord,
    decoded: &mut Decoded,
    filter: Option<&[String]>,
) -> Vec<Row> {
    let source = Some(c.interface.clone());
    let key = c.to_can_frame().and_then(|f| {
        let bus = ctx.decoder.bus(&c.interface);
        ctx.decoder.decode(bus, &f, decoded)
    });
    let Some(k) = key else {
        if filter.is_some() {
            return Vec::new();
        }
        let mut r = Row::empty(source);
        let width = if c.flags.has(CanFlags::EXTENDED) { 8 } else { 3 };
        r.id = Some(format!("{:0width$X}", c.id));
        r.data = Some(hex(c.data()));
        return vec![r];
    };
    let m = ctx.decoder.message(k);
    decoded
        .values
        .iter()
        .filter_map(|v| {
            let sig = m.signals().get(v.signal)?;
            if !wanted(filter, Some(m.name()), sig.name()) {
                return None;
            }
            let mut r = Row::empty(source.clone());
            r.message = Some(m.name().to_owned());
            r.signal = Some(sig.name().to_owned());
            r.value = Some(v.value);
            r.unit = Some(sig.unit().to_owned());
            r.label = sig.label(&v.raw).map(str::to_owned);
            Some(r)
        })
        .collect()
}

fn mqtt_rows(ctx: &Context, m: &MqttRecord, filter: Option<&[String]>) -> Vec<Row> {
    let source: Option<Arc<str>> = Some(m.topic.clone());
    let mut rows = Vec::new();
    let mut matched = false;
    for layout in ctx.layouts.iter().filter(|l| payload::topic_matches(&l.topic, &m.topic)) {
        let Ok(x) = payload::extract(layout, &m.payload) else { continue };
        matched = true;
        for (i, v) in x.values {
            let Some((name, _)) = layout.fields.get(i) else { continue };
            if !wanted(filter, None, name) {
                continue;
            }
            let mut r = Row::empty(source.clone());
            r.message = Some(m.topic.to_string());
            r.signal = Some(name.clone());
            r.value = Some(v);
            rows.push(r);
        }
    }
    if !matched && filter.is_none() {
        let mut r = Row::empty(source);
        r.message = Some(m.topic.to_string());
        match std::str::from_utf8(&m.payload) {
            Ok(text) => r.payload = Some(text.to_owned()),
            Err(_) => r.data = Some(hex(&m.payload)),
        }
        rows.push(r);
    }
    rows
}

fn signal_rows(ctx: &Context, s: &SignalRecord, filter: Option<&[String]>) -> Vec<Row> {
    // `Message.Signal` for DBC signals; an MQTT layout's field name otherwise.
    let dbc = s.name.split_once('.').and_then(|(m, sig)| {
        let k = ctx.decoder.message_by_name(m)?;
        let (_, cs) = ctx.decoder.message(k).signal(sig)?;
        Some((m.to_owned(), sig.to_owned(), cs.unit().to_owned()))
    });
    let mut r = Row::empty(None);
    r.value = Some(s.value);
    match dbc {
        Some((m, sig, unit)) => {
            if !wanted(filter, Some(&m), &sig) {
                return Vec::new();
            }
            r.message = Some(m);
            r.signal = Some(sig);
            r.unit = Some(unit);
        }
        None => {
            if !wanted(filter, None, &s.name) {
                return Vec::new();
            }
            r.signal = Some(s.name.to_string());
        }
    }
    vec![r]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::tests::{fixtures, keys, Keys};
    use crate::pipeline::Pending;
    use crate::writer::Writer;
    use can_decoders::{CanFrame, CanId, FrameKind};
    use ledger::seal::{LaneSpec, SealOptions};
    use ledger::store::memory::Memory;

    /// A config with the gateway's key, a `local` lane for `self`, a DBC and an MQTT layout.
    fn setup() -> (Keys, Config, X25519Key) {
        let k = keys();
        let own = X25519Key::generate("gw").expect("x25519");
        ledger::keys::save_x25519(&k.dir.path().join("x25519.key"), &own).expect("save");
        let text = format!(
            "[gateway]\nsigning_key = \"signing.key\"\nstore = \"store\"\nhistory_key = \"x25519.key\"\n\
             [[dbc]]\nfile = \"{}\"\n[recipients]\nfactory = \"factory.pub\"\n\
             [sources.bus]\nkind = \"socketcan\"\ninterface = \"can0\"\n\
             [sources.telemetry]\nkind = \"mqtt\"\nhost = \"127.0.0.1\"\nclient_id = \"t\"\n\
             topics = [{{ filter = \"v/+/t\", qos = 1 }}]\n\
             [[sources.telemetry.layouts]]\ntopic = \"v/+/t\"\nformat = \"json\"\n\
             fields = {{ \"telemetry.speed\" = \"speed\" }}\n\
             [lanes.local]\ncarries = \"raw\"\nrecipients = [\"self\"]\n\
             [lanes.factory]\ncarries = \"raw\"\nrecipients = [\"factory\"]\n",
            fixtures().join("dbc/css-electronics/canmod-gps.dbc").display()
        );
        let cfg = Config::from_toml(&text, &k.dir.path().join("g.toml")).expect("config");
        (k, cfg, own)
    }

    fn can(t: u64, id: u32, data: &[u8]) -> Record {
        Record::Can(
            CanRecord::new(t, Arc::from("can0"), id, CanFlags::default(), data, 0).expect("frame"),
        )
    }

    fn mqtt(t: u64, topic: &str, payload: &[u8]) -> Record {
        Record::Mqtt(MqttRecord::new(t, Arc::from(topic), payload.to_vec(), 1, false).expect("msg"))
    }

    #[test]
    fn records_become_decoded_rows() {
        let (_k, cfg, _) = setup();
        let ctx = Context::new(&cfg).expect("history key set");
        assert_eq!(ctx.self_lanes(), ["local"]);
        let mut d = Decoded::new();
        // gnss_pos (id 3): the same values as decoding the frame directly.
        let data = [0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xF0];
        let rows = rows_of(&ctx, &can(1, 3, &data), &mut d, None);
        let frame =
            CanFrame::new(CanId::standard(3).expect("id"), FrameKind::Data, &data).expect("frame");
        let k = cfg.decoder.decode(cfg.decoder.bus("can0"), &frame, &mut d).expect("gnss_pos");
        let m = cfg.decoder.message(k);
        let want: Vec<(String, f64)> =
            d.values.iter().map(|v| (m.signals()[v.signal].name().to_owned(), v.value)).collect();
        let got: Vec<(String, f64)> = rows
            .iter()
            .map(|r| (r.signal.clone().expect("signal"), r.value.expect("value")))
            .collect();
        assert!(!want.is_empty());
        assert_eq!(got, want);
        assert!(rows.iter().all(|r| r.message.as_deref() == Some("gnss_pos")));
        let lat = rows_of(&ctx, &can(1, 3, &data), &mut d, Some(&["Latitude".to_owned()]));
        assert_eq!(lat.len(), 1);
        assert_eq!(lat[0].unit.as_deref(), Some(m.signal("Latitude").expect("sig").1.unit()));
        // An id no DBC knows: one row with id and data, none when signals are asked for.
        let raw = rows_of(&ctx, &can(1, 0x7FF, &[1, 2]), &mut d, None);
        assert_eq!((raw[0].id.as_deref(), raw[0].data.as_deref()), (Some("7FF"), Some("0102")));
        assert!(rows_of(&ctx, &can(1, 0x7FF, &[1]), &mut d, Some(&["x".to_owned()])).is_empty());
        // Signal lane samples, DBC and MQTT names.
        let s = Record::Signal(SignalRecord {
            t_ns: 1,
            name: Arc::from("gnss_pos.Latitude"),
            value: 51.5,
        });
        let r = &rows_of(&ctx, &s, &mut d, None)[0];
        assert_eq!(
            (r.message.as_deref(), r.signal.as_deref(), r.value),
            (Some("gnss_pos"), Some("Latitude"), Some(51.5))
        );
        let s = Record::Signal(SignalRecord {
            t_ns: 1,
            name: Arc::from("telemetry.speed"),
            value: 3.0,
        });
        let r = &rows_of(&ctx, &s, &mut d, None)[0];
        assert_eq!((r.message.as_deref(), r.signal.as_deref()), (None, Some("telemetry.speed")));
        // MQTT: by layout, else the payload as text or hex.
        let r = rows_of(&ctx, &mqtt(1, "v/9/t", br#"{"speed":12.5}"#), &mut d, None);
        assert_eq!(
            (r[0].signal.as_deref(), r[0].value, r[0].source.as_deref()),
            (Some("telemetry.speed"), Some(12.5), Some("v/9/t"))
        );
        let r = rows_of(&ctx, &mqtt(1, "other", b"hello"), &mut d, None);
        assert_eq!(r[0].payload.as_deref(), Some("hello"));
        let r = rows_of(&ctx, &mqtt(1, "other", &[0xFF, 0]), &mut d, None);
        assert_eq!(r[0].data.as_deref(), Some("FF00"));
    }

    #[test]
    fn overlapping_blocks_merge_by_time_and_cursors_resume_exactly() {
        let (k, cfg, own) = setup();
        let ctx = Context::new(&cfg).expect("history key set");
        let store = Box::new(Memory::new(cfg.signer.name()));
        let (mut w, _) =
            Writer::new(store, cfg.signer.clone(), SealOptions::default(), 2).expect("writer");
        let block = |recipients: Vec<x25519_dalek::PublicKey>, ts: &[u64]| Pending {
            lanes: vec![LaneSpec {
                name: "local".into(),
                recipients,
                records: ts.iter().map(|&t| can(t, 0x7FF, &[t as u8])).collect(),
            }],
            marks: Vec::new(),
            inputs: ts.len() as u64,
        };
        // Two sources with different clocks: blocks 0 and 1 overlap in time.
        w.write(&block(vec![own.public()], &[10, 30, 50])).expect("block 0");
        w.write(&block(vec![own.public()], &[20, 40])).expect("block 1");
        // Sealed before "self" was added: the gateway cannot open it.
        w.write(&block(vec![k.factory.public()], &[60])).expect("block 2");
        w.write(&block(vec![own.public()], &[70])).expect("block 3");
        let store = w.store();
        let mut index = Index::default();
        index.refresh(store).expect("index");
        let req = |limit: usize, after: Option<Cursor>| Request {
            from_ns: 0,
            to_ns: 100,
            lane: "local".into(),
            signals: None,
            limit,
            after,
        };
        let run = |r: &Request, max_blocks: usize| {
            let mut groups = index.groups(r.after.map_or(0, |a| a.t_ns), r.to_ns);
            if let Some(a) = r.after.filter(|a| a.height == u64::MAX) {
                groups.retain(|(_, end)| *end > a.t_ns);
            }
            let mut rows = Vec::new();
            let end = answer(&ctx, store, &groups, r, max_blocks, &mut |v| {
                rows.push((v["t_ns"].as_u64().expect("t"), v["height"].as_u64().expect("h")));
                true
            })
            .expect("answer");
            (rows, end)
        };
        let (all, end) = run(&req(100, None), 100);
        assert_eq!(all, [(10, 0), (20, 1), (30, 0), (40, 1), (50, 0), (70, 3)]);
        assert_eq!((end.rows, end.blocks, end.skipped, end.next), (6, 4, 1, None));
        // Two rows at a time: every row exactly once, in order.
        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let (rows, end) = run(&req(2, after), 100);
            paged.extend(rows);
            match end.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(paged, all);
        // One block per answer: the overlapping pair is read whole, then a group-end cursor.
        let (rows, end) = run(&req(100, None), 1);
        assert_eq!(rows.len(), 5);
        let next = end.next.expect("more");
        assert_eq!((next.t_ns, next.height), (50, u64::MAX));
        let (rows, end) = run(&req(100, Some(next)), 1);
        assert_eq!((rows.len(), end.skipped, end.next.map(|c| c.t_ns)), (0, 1, Some(60)));
        let (rows, end) = run(&req(100, end.next), 1);
        assert_eq!((rows, end.next), (vec![(70, 3)], None));
    }

    #[test]
    fn cursors_round_trip_and_order_like_rows() {
        let a = Cursor { t_ns: 5, height: 2, index: 9, sub: 1 };
        assert_eq!(Cursor::parse(&a.to_text()), Some(a));
        assert!(Cursor::parse("5.2.9").is_none());
        assert!(Cursor::parse("5.2.9.1.0").is_none());
        assert!(Cursor::parse("x.2.9.1").is_none());
        let b = Cursor { t_ns: 5, height: 3, index: 0, sub: 0 };
        assert!(a < b, "same time: the higher block comes later");
        let end = Cursor { t_ns: 5, height: u64::MAX, index: u64::MAX, sub: u64::MAX };
        assert!(b < end);
    }

    #[test]
    fn times_are_rfc3339_utc_or_nanoseconds() {
        assert_eq!(parse_time("from", "2021-07-26T04:40:55Z"), Ok(1_627_274_455_000_000_000));
        assert_eq!(parse_time("from", "2021-07-26T04:40:55.0125Z"), Ok(1_627_274_455_012_500_000));
        assert_eq!(parse_time("to", "1627274455012500000"), Ok(1_627_274_455_012_500_000));
        let e = parse_time("to", "yesterday").expect_err("not a time");
        assert_eq!((e.status, e.code), (StatusCode::BAD_REQUEST, "bad_time"));
        assert!(e.message.starts_with("to: \"yesterday\""), "{}", e.message);
        assert_eq!(rfc3339(1_627_274_455_012_500_000), "2021-07-26T04:40:55.012500000Z");
    }

    #[test]
    fn groups_merge_overlapping_blocks_and_keep_disjoint_ones_apart() {
        let idx = Index {
            blocks: vec![Some((10, 20)), None, Some((15, 30)), Some((40, 50)), Some((31, 35))],
        };
        assert_eq!(idx.groups(0, 100), vec![(vec![0, 2], 30), (vec![4], 35), (vec![3], 50)]);
        assert_eq!(idx.groups(32, 45), vec![(vec![4], 35), (vec![3], 50)]);
        assert!(idx.groups(51, 60).is_empty());
    }

    #[test]
    fn signal_filters_take_full_or_bare_names() {
        let f = vec!["gnss_pos.Latitude".to_owned(), "Speed".to_owned()];
        assert!(wanted(Some(&f), Some("gnss_pos"), "Latitude"));
        assert!(!wanted(Some(&f), Some("gnss_pos"), "Longitude"));
        assert!(wanted(Some(&f), Some("gnss_speed"), "Speed"));
        assert!(!wanted(Some(&f), Some("gnss_posx"), "Latitude"));
        assert!(wanted(None, None, "anything"));
    }
}
