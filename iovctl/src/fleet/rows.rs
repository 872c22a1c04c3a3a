//! Opened records to rows, the shape the gateway's local history API uses
//! (`gateway/src/api/history.rs`): a raw CAN frame becomes one row per signal the DBC decodes
//! (a frame no DBC describes, a remote or error frame: one row with `id` and `data` in hex, left
//! out when signals are selected); a signal-lane sample becomes one row (`Message.Signal`
//! split, with its unit when the DBC knows the signal); an MQTT message becomes one row with
//! its `payload` (UTF-8 text, else `data` in hex), as iovctl has no MQTT layouts.

use std::sync::Arc;

use can_decoders::decode::{Decoded, Decoder};
use ledger::record::{CanFlags, CanRecord, MqttRecord, Record, SignalRecord};
use serde_json::{Map, Value};

/// One output row.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub t_ns: u64,
    pub origin: Arc<str>,
    pub height: u64,
    pub lane: Arc<str>,
    pub source: Option<Arc<str>>,
    pub message: Option<String>,
    pub signal: Option<String>,
    pub value: Option<f64>,
    pub unit: Option<String>,
    pub label: Option<String>,
    pub id: Option<String>,
    pub data: Option<String>,
    pub payload: Option<String>,
}

impl Row {
    fn new(t_ns: u64, ctx: &Where, source: Option<Arc<str>>) -> Row {
        Row {
            t_ns,
            origin: ctx.origin.clone(),
            height: ctx.height,
            lane: ctx.lane.clone(),
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

    /// `Message.Signal`, `Signal`, or `id <hex>`.
    pub fn name(&self) -> String {
        match (&self.message, &self.signal) {
            (Some(m), Some(s)) => format!("{m}.{s}"),
            (None, Some(s)) => s.clone(),
            (Some(m), None) => m.clone(),
            (None, None) => format!("id {}", self.id.as_deref().unwrap_or("?")),
        }
    }

    /// The JSON line `iovctl history --format jsonl` prints (the local API's row, plus
    /// `origin` and `lane`).
    pub fn to_json(&self) -> Value {
        let mut o = Map::new();
        o.insert("kind".into(), "row".into());
        o.insert("ts".into(), rfc3339(self.t_ns).into());
        o.insert("t_ns".into(), self.t_ns.into());
        o.insert("source".into(), self.source.as_deref().into());
        o.insert("message".into(), self.message.as_deref().into());
        o.insert("signal".into(), self.signal.as_deref().into());
        o.insert("value".into(), self.value.filter(|v| v.is_finite()).into());
        o.insert("unit".into(), self.unit.as_deref().filter(|u| !u.is_empty()).into());
        for (k, v) in [
            ("label", &self.label),
            ("id", &self.id),
            ("data", &self.data),
            ("payload", &self.payload),
        ] {
            if let Some(v) = v {
                o.insert(k.into(), v.as_str().into());
            }
        }
        o.insert("origin".into(), (*self.origin).into());
        o.insert("lane".into(), (*self.lane).into());
        o.insert("height".into(), self.height.into());
        Value::Object(o)
    }
}

/// RFC 3339 in UTC with nanoseconds (`2021-07-26T04:40:55.012500000Z`).
pub fn rfc3339(t_ns: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(t_ns);
    humantime::format_rfc3339_nanos(t).to_string()
}

/// Where rows come from (copied into each row).
pub struct Where {
    pub origin: Arc<str>,
    pub height: u64,
    pub lane: Arc<str>,
}

/// Turns records into rows with one decoder and one signal selection.
pub struct Rows<'a> {
    decoder: Option<&'a Decoder>,
    /// `Message.Signal` or bare `Signal` names; `None`: everything.
    signals: Option<Vec<String>>,
    decoded: Decoded,
}

impl<'a> Rows<'a> {
    pub fn new(decoder: Option<&'a Decoder>, signals: Option<Vec<String>>) -> Rows<'a> {
        Rows { decoder, signals, decoded: Decoded::default() }
    }

    fn wanted(&self, message: Option<&str>, signal: &str) -> bool {
        match &self.signals {
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

    /// The rows of one record, appended to `out`.
    pub fn record(&mut self, at: &Where, rec: &Record, out: &mut Vec<Row>) {
        match rec {
            Record::Can(c) => self.can(at, c, out),
            Record::Mqtt(m) => self.mqtt(at, m, out),
            Record::Signal(s) => self.signal(at, s, out),
        }
    }

    fn can(&mut self, at: &Where, c: &CanRecord, out: &mut Vec<Row>) {
        let source = Some(c.interface.clone());
        let key = match (self.decoder, c.to_can_frame()) {
            (Some(d), Some(f)) => d.decode(d.bus(&c.interface), &f, &mut self.decoded),
            _ => None,
        };
        let (Some(k), Some(d)) = (key, self.decoder) else {
            if self.signals.is_some() {
                return;
            }
            let mut r = Row::new(c.t_ns, at, source);
            let width = if c.flags.has(CanFlags::EXTENDED) { 8 } else { 3 };
            r.id = Some(format!("{:0width$X}", c.id));
            r.data = Some(hex(c.data()));
            out.push(r);
            return;
        };
        let m = d.message(k);
        for v in &self.decoded.values {
            let Some(sig) = m.signals().get(v.signal) else { continue };
            if !self.wanted(Some(m.name()), sig.name()) {
                continue;
            }
            let mut r = Row::new(c.t_ns, at, source.clone());
            r.message = Some(m.name().to_owned());
            r.signal = Some(sig.name().to_owned());
            r.value = Some(v.value);
            r.unit = Some(sig.unit().to_owned());
            r.label = sig.label(&v.raw).map(str::to_owned);
            out.push(r);
        }
    }

    fn mqtt(&mut self, at: &Where, m: &MqttRecord, out: &mut Vec<Row>) {
        if self.signals.is_some() {
            return;
        }
        let mut r = Row::new(m.t_ns, at, Some(m.topic.clone()));
        r.message = Some(m.topic.to_string());
        match std::str::from_utf8(&m.payload) {
            Ok(text) => r.payload = Some(text.to_owned()),
            Err(_) => r.data = Some(hex(&m.payload)),
        }
        out.push(r);
    }

    fn signal(&mut self, at: &Where, s: &SignalRecord, out: &mut Vec<Row>) {
        let split = s.name.split_once('.');
        let (message, signal) = match split {
            Some((m, sig)) => (Some(m), sig),
            None => (None, &*s.name),
        };
        if !self.wanted(message, signal) {
            return;
        }
        let unit = self.decoder.zip(message).and_then(|(d, m)| {
            let k = d.message_by_name(m)?;
            let (_, cs) = d.message(k).signal(signal)?;
            Some(cs.unit().to_owned())
        });
        let mut r = Row::new(s.t_ns, at, None);
        r.message = message.map(str::to_owned);
        r.signal = Some(signal.to_owned());
        r.value = Some(s.value);
        r.unit = unit;
        out.push(r);
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> Where {
        Where { origin: "o".into(), height: 3, lane: "l".into() }
    }

    #[test]
    fn undecoded_frames_show_id_and_data_and_are_dropped_when_signals_are_selected() {
        let c = CanRecord::new(5, "can0".into(), 0x123, CanFlags::default(), &[1, 0xAB], 0)
            .expect("frame");
        let mut out = Vec::new();
        Rows::new(None, None).record(&at(), &Record::Can(c.clone()), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].id.as_deref(), Some("123"));
        assert_eq!(out[0].data.as_deref(), Some("01AB"));
        assert_eq!(out[0].to_json()["height"], 3);
        let mut none = Vec::new();
        Rows::new(None, Some(vec!["Speed".into()])).record(&at(), &Record::Can(c), &mut none);
        assert!(none.is_empty());
    }

    #[test]
    fn signal_filters_take_full_or_bare_names() {
        let r = Rows::new(None, Some(vec!["gnss_pos.Latitude".into(), "Speed".into()]));
        assert!(r.wanted(Some("gnss_pos"), "Latitude"));
        assert!(r.wanted(Some("gnss_speed"), "Speed"));
        assert!(!r.wanted(Some("gnss_pos"), "Longitude"));
        assert!(!r.wanted(Some("other"), "Latitude"));
    }
}
