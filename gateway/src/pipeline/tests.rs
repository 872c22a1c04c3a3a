//! Pipeline tests on real data: the CSS Electronics GPS trace decoded with its DBC.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use can_decoders::trace::{self, ErrorPolicy};
use can_decoders::TimedFrame;
use ledger::block::BlockHeader;
use ledger::keys::X25519Key;
use ledger::lane::Limits;
use ledger::record::Record;
use ledger::seal::{open_lane_bytes, SealOptions};
use ledger::store::memory::Memory;
use ledger::store::Store as _;

use super::*;
use crate::config::Config;
use crate::writer::Writer;

pub(crate) fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

pub(crate) struct Keys {
    pub dir: tempfile::TempDir,
    pub factory: X25519Key,
    pub city: X25519Key,
}

/// A signing key and two recipients in a temp dir, as `iovctl keygen` lays them out.
pub(crate) fn keys() -> Keys {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = ledger::keys::generate_signer("iov.example/gw/test").expect("signer");
    ledger::keys::save_signer(&dir.path().join("signing.key"), &s).expect("save");
    let factory = X25519Key::generate("factory").expect("x25519");
    let city = X25519Key::generate("city").expect("x25519");
    std::fs::write(dir.path().join("factory.pub"), factory.public_text()).expect("write");
    std::fs::write(dir.path().join("city.pub"), city.public_text()).expect("write");
    Keys { dir, factory, city }
}

fn config(k: &Keys, block: &str) -> Config {
    let dbc = fixtures().join("dbc/css-electronics/canmod-gps.dbc");
    let trace = fixtures().join("traces/canmod_gps_3BA199E2.log.gz");
    let text = format!(
        r#"
[gateway]
signing_key = "signing.key"
store = "store"
[block]
{block}
[[dbc]]
file = "{dbc}"
[recipients]
factory = "factory.pub"
city = "city.pub"
[sources.replay]
kind = "trace"
file = "{trace}"
pace = "fast"
[lanes.factory]
carries = "raw"
recipients = ["factory"]
[lanes.city]
carries = "signals"
recipients = ["city"]
signals = [
  {{ name = "gnss_speed.Speed", min_interval = "1s" }},
  {{ name = "gnss_pos.Latitude", min_interval = "1s", grid = 0.001 }},
  {{ name = "gnss_pos.Longitude", min_interval = "1s", grid = 0.001 }},
]
"#,
        dbc = dbc.display(),
        trace = trace.display()
    );
    Config::from_toml(&text, &k.dir.path().join("gateway.toml")).expect("config validates")
}

fn lane<'a>(b: &'a Pending, name: &str) -> &'a LaneSpec {
    b.lanes.iter().find(|l| l.name == name).expect("lane")
}

fn lane_index(b: &BlockHeader, name: &str) -> usize {
    b.lanes.iter().position(|l| l.name == name).expect("lane")
}

fn gps_frames(n: usize) -> (Vec<TimedFrame>, Vec<String>) {
    let mut r =
        trace::open(&fixtures().join("traces/canmod_gps_3BA199E2.log.gz"), ErrorPolicy::Strict)
            .expect("trace opens");
    let frames: Vec<TimedFrame> = r.by_ref().take(n).map(|f| f.expect("frame")).collect();
    (frames, r.channels().to_vec())
}

#[test]
fn gps_trace_goes_to_the_raw_lane_whole_and_to_the_city_lane_thinned_and_coarsened() {
    let k = keys();
    let cfg = config(&k, "max_records = 50000\nmax_age = \"1h\"");
    let (frames, chans) = gps_frames(200_000);
    let names: Vec<Arc<str>> = chans.iter().map(|c| Arc::from(c.as_str())).collect();
    let mut p = Pipeline::new(&cfg);
    let mut blocks = Vec::new();
    for f in &frames {
        if let Some(b) = p.push_can(0, &names[usize::from(f.channel.0)], f, Duration::ZERO) {
            blocks.push(b);
        }
    }
    blocks.extend(p.flush());
    assert_eq!(blocks.len(), 4, "200,000 frames in blocks of 50,000 input records");
    assert!(blocks.iter().all(|b| b.inputs == 50_000));

    // Raw lane: every frame, in order, bit for bit.
    let raw: Vec<&Record> = blocks.iter().flat_map(|b| lane(b, "factory").records.iter()).collect();
    assert_eq!(raw.len(), frames.len());
    for (r, f) in raw.iter().zip(&frames) {
        let want = can_record(&names[usize::from(f.channel.0)], f).expect("record");
        assert_eq!(**r, Record::Can(want));
    }

    // City lane: three signals, each at most 1 Hz (record time), positions on a 0.001 grid.
    let city: Vec<&Record> = blocks.iter().flat_map(|b| lane(b, "city").records.iter()).collect();
    let mut per: std::collections::BTreeMap<String, Vec<(u64, f64)>> = Default::default();
    for r in &city {
        let Record::Signal(s) = r else { panic!("city lane holds a non-signal {r:?}") };
        per.entry(s.name.to_string()).or_default().push((s.t_ns, s.value));
    }
    assert_eq!(
        per.keys().cloned().collect::<Vec<_>>(),
        ["gnss_pos.Latitude", "gnss_pos.Longitude", "gnss_speed.Speed"]
    );
    for (name, samples) in &per {
        assert!(samples.len() > 10, "{name}: {} samples", samples.len());
        for w in samples.windows(2) {
            assert!(w[1].0 - w[0].0 >= 1_000_000_000, "{name}: samples {w:?} closer than 1 s");
        }
        if name.starts_with("gnss_pos") {
            for (_, v) in samples {
                let steps = v / 0.001;
                assert!((steps - steps.round()).abs() < 1e-6, "{name}: {v} is not on the grid");
            }
        }
    }
    // Thinned: far fewer city samples than decoded position frames.
    assert!(city.len() * 5 < frames.len() / 10, "city lane has {} samples", city.len());
    let c = p.counters();
    assert_eq!(c.frames_in, 200_000);
    assert_eq!(c.rejected, 0);
}

#[test]
fn sealed_blocks_open_with_the_lane_keys_and_give_back_every_frame() {
    let k = keys();
    let cfg = config(&k, "max_records = 20000\nmax_age = \"1h\"");
    let (frames, chans) = gps_frames(60_000);
    let names: Vec<Arc<str>> = chans.iter().map(|c| Arc::from(c.as_str())).collect();
    let mut p = Pipeline::new(&cfg);
    let store = Box::new(Memory::new(cfg.signer.name()));
    let (mut w, durable) =
        Writer::new(store, cfg.signer.clone(), SealOptions::default(), 1).expect("writer");
    for f in &frames {
        if let Some(b) = p.push_can(0, &names[usize::from(f.channel.0)], f, Duration::ZERO) {
            w.write(&b).expect("write");
        }
    }
    if let Some(b) = p.flush() {
        w.write(&b).expect("write");
    }
    assert_eq!(durable.borrow().size, 3);
    let store = w.store();
    let mut got = Vec::new();
    let mut city = 0;
    let mut prev = ledger::block::BlockHash([0; 32]);
    for h in 0..store.size() {
        let bytes = store.header(h).expect("read").expect("header");
        let header = BlockHeader::from_bytes(&bytes).expect("header parses");
        assert_eq!(header.prev, prev, "block {h} links to its predecessor");
        prev = header.hash();
        let lanes = store.lanes(h).expect("lanes");
        let (fi, ci) = (lane_index(&header, "factory"), lane_index(&header, "city"));
        got.extend(
            open_lane_bytes(&header, fi, &lanes[fi], &k.factory, &Limits::default())
                .expect("factory opens"),
        );
        city += open_lane_bytes(&header, ci, &lanes[ci], &k.city, &Limits::default())
            .expect("city opens")
            .len();
        assert!(
            open_lane_bytes(&header, fi, &lanes[fi], &k.city, &Limits::default()).is_err(),
            "the city key does not open the factory lane"
        );
    }
    assert_eq!(got.len(), frames.len());
    for (r, f) in got.iter().zip(&frames) {
        assert_eq!(
            *r,
            Record::Can(can_record(&names[usize::from(f.channel.0)], f).expect("record"))
        );
    }
    assert!(city > 0);
    // The log is verifiable as stored.
    let v = ledger::verify_store::verify(store, &cfg.signer.verifier());
    assert!(v.is_ok(), "{v:?}");
}

#[test]
fn a_block_is_sealed_by_age_with_time_as_a_parameter() {
    let k = keys();
    let cfg = config(&k, "max_records = 1000\nmax_age = \"2s\"");
    let (frames, chans) = gps_frames(3);
    let name: Arc<str> = Arc::from(chans[0].as_str());
    let mut p = Pipeline::new(&cfg);
    assert_eq!(p.deadline(), None);
    assert!(p.poll(Duration::from_secs(100)).is_none(), "an empty block is never sealed");
    assert!(p.push_can(0, &name, &frames[0], Duration::from_secs(10)).is_none());
    assert!(p.push_can(0, &name, &frames[1], Duration::from_secs(11)).is_none());
    assert_eq!(p.deadline(), Some(Duration::from_secs(12)));
    assert!(p.poll(Duration::from_millis(11_999)).is_none());
    let b = p.poll(Duration::from_secs(12)).expect("sealed at its age");
    assert_eq!(b.inputs, 2);
    assert_eq!(p.deadline(), None);
}

#[test]
fn a_block_is_sealed_by_size() {
    let k = keys();
    let cfg = config(&k, "max_records = 1000000\nmax_bytes = \"1000 B\"");
    let (frames, chans) = gps_frames(200);
    let name: Arc<str> = Arc::from(chans[0].as_str());
    let mut p = Pipeline::new(&cfg);
    let at = frames
        .iter()
        .position(|f| p.push_can(0, &name, f, Duration::ZERO).is_some())
        .expect("sealed by size");
    // 8-byte frames cost 20 bytes in the raw lane: the 50th frame reaches 1000.
    assert!((40..=50).contains(&at), "sealed after {} frames", at + 1);
}

#[test]
fn mqtt_messages_are_kept_raw_decoded_by_layout_and_marked_for_acks() {
    let k = keys();
    let text = r#"
[gateway]
signing_key = "signing.key"
store = "store"
[recipients]
factory = "factory.pub"
city = "city.pub"
[sources.broker]
kind = "mqtt"
host = "127.0.0.1"
client_id = "gw-test"
topics = [{ filter = "v/+/t", qos = 1 }]
[[sources.broker.layouts]]
topic = "v/+/t"
format = "json"
fields = { "t.speed" = "speed" }
[lanes.factory]
carries = "raw"
recipients = ["factory"]
[lanes.city]
carries = "signals"
recipients = ["city"]
signals = [{ name = "t.speed", on_change = true }]
"#;
    let cfg = Config::from_toml(text, &k.dir.path().join("g.toml")).expect("config");
    let mut p = Pipeline::new(&cfg);
    let msg = |seq: u64, payload: &str| MqttMessage {
        source: 0,
        seq,
        t_ns: 1_000 + seq,
        topic: Arc::from("v/7/t"),
        payload: payload.as_bytes().to_vec(),
        qos: 1,
        retain: false,
    };
    for (i, pl) in
        [r#"{"speed": 3}"#, r#"{"speed": 3}"#, "garbage", r#"{"speed": 4.5}"#].iter().enumerate()
    {
        assert!(p.push_mqtt(msg(i as u64 + 1, pl), Duration::ZERO).is_none());
    }
    let b = p.flush().expect("block");
    assert_eq!(b.marks, [(0, 4)]);
    assert_eq!(lane(&b, "factory").records.len(), 4, "every message raw, the malformed one too");
    let vals: Vec<f64> = lane(&b, "city")
        .records
        .iter()
        .map(|r| match r {
            Record::Signal(s) => s.value,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(vals, [3.0, 4.5], "on change only");
    assert_eq!(p.counters().payload_errors, 1);
}

#[allow(dead_code)]
pub(crate) fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn a_block_with_an_empty_lane_seals_and_opens_to_nothing() {
    let k = keys();
    let cfg = config(&k, "max_records = 1000");
    // OBD frames on can1 (id 0x7E8) decode to no GPS signal: the city lane stays empty.
    let (frames, chans) = gps_frames(5);
    let name: Arc<str> = Arc::from(chans[0].as_str());
    let mut p = Pipeline::new(&cfg);
    for f in &frames {
        assert!(p.push_can(0, &name, f, Duration::ZERO).is_none());
    }
    let b = p.flush().expect("block");
    assert!(lane(&b, "city").records.is_empty());
    let store = Box::new(Memory::new(cfg.signer.name()));
    let (mut w, _) =
        Writer::new(store, cfg.signer.clone(), SealOptions::default(), 1).expect("writer");
    w.write(&b).expect("a block with an empty lane seals");
    let header = BlockHeader::from_bytes(&w.store().header(0).expect("read").expect("header"))
        .expect("parses");
    let ci = lane_index(&header, "city");
    let lanes = w.store().lanes(0).expect("lanes");
    let city =
        open_lane_bytes(&header, ci, &lanes[ci], &k.city, &Limits::default()).expect("opens");
    assert!(city.is_empty());
}

#[test]
fn a_raw_lane_with_messages_keeps_only_their_ids() {
    let k = keys();
    // gnss_pos is BO_ 3 in canmod-gps.dbc.
    let mut cfg = config(&k, "max_records = 1000000");
    let ids: std::collections::BTreeSet<can_decoders::CanId> =
        [can_decoders::CanId::standard(3).expect("id")].into_iter().collect();
    for l in &mut cfg.lanes {
        if l.name == "factory" {
            l.content = crate::config::LaneContent::Raw { can_ids: Some(ids.clone()) };
        }
    }
    let (frames, chans) = gps_frames(20_000);
    let names: Vec<Arc<str>> = chans.iter().map(|c| Arc::from(c.as_str())).collect();
    let mut p = Pipeline::new(&cfg);
    for f in &frames {
        assert!(p.push_can(0, &names[usize::from(f.channel.0)], f, Duration::ZERO).is_none());
    }
    let b = p.flush().expect("block");
    let raw = &lane(&b, "factory").records;
    let want = frames.iter().filter(|f| f.frame.id.raw() == 3 && !f.frame.id.is_extended()).count();
    assert!(want > 100);
    assert_eq!(raw.len(), want);
    assert!(raw.iter().all(|r| matches!(r, Record::Can(c) if c.id == 3)));
}
