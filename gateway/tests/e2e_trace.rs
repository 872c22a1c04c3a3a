//! End to end: `iov-gateway run` replays the real GPS trace as fast as possible into a RocksDB
//! store (raw `factory` lane, 1 Hz coarsened `city` lane), stops at the end of the trace, and
//! the store verifies with `iovctl store verify` and gives back every frame, in order.

// They need the RocksDB store (the default feature `rocks`).
#![cfg(feature = "rocks")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use can_decoders::trace::{self, ErrorPolicy};
use ledger::block::BlockHeader;
use ledger::lane::Limits;
use ledger::record::Record;
use ledger::seal::open_lane_bytes;
use ledger::store::rocks::{Mode, Rocks};
use ledger::store::Store as _;

#[test]
fn gps_trace_replayed_fast_is_stored_verifiable_and_complete() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    let k = common::keys(d)?;
    let trace_path = common::fixtures().join("traces/canmod_gps_3BA199E2.log.gz");
    let config = d.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[gateway]
signing_key = "signing.key"
store = "store"
[block]
max_records = 100000
max_age = "10s"
[[dbc]]
file = "{dbc}"
[recipients]
factory = "factory.pub"
city = "city.pub"
[sources.replay]
kind = "trace"
file = "{trace}"
pace = "fast"
at_end = "shutdown"
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
            dbc = common::fixtures().join("dbc/css-electronics/canmod-gps.dbc").display(),
            trace = trace_path.display()
        ),
    )?;

    let check = std::process::Command::new(env!("CARGO_BIN_EXE_iov-gateway"))
        .args(["check-config", "--config"])
        .arg(&config)
        .output()?;
    ensure!(check.status.success(), "check-config: {}", String::from_utf8_lossy(&check.stderr));

    let mut gw = common::Gateway::start(&config)?;
    let (status, stdout) = gw.wait_exit(Duration::from_secs(600))?;
    ensure!(status.success(), "gateway exited {status}; log:\n{}", gw.seen.join("\n"));
    let summary = stdout.lines().find(|l| l.contains("stopped:")).context("summary line")?;
    println!("{summary}");
    let rate =
        summary.split_whitespace().find_map(|w| w.strip_prefix("frames_per_s=")).context("rate")?;
    println!("ingest rate (trace, as fast as possible, RocksDB synced appends): {rate} frames/s");

    // iovctl store verify: the real binary.
    let iovctl = common::iovctl()?;
    let out = std::process::Command::new(&iovctl)
        .args(["store", "verify", "--store"])
        .arg(d.join("store"))
        .arg("--key")
        .arg(d.join("signing.vkey"))
        .output()?;
    println!("iovctl store verify: {}", String::from_utf8_lossy(&out.stdout).trim());
    ensure!(
        out.status.success(),
        "iovctl store verify failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Every frame of the trace, in order, from the factory lanes.
    let mut r = trace::open(&trace_path, ErrorPolicy::Strict)?;
    let mut want = Vec::new();
    while let Some(f) = r.next() {
        let f = f?;
        let name: Arc<str> = Arc::from(r.channels()[usize::from(f.channel.0)].as_str());
        want.push(Record::Can(gateway::pipeline::can_record(&name, &f)?));
    }
    let store = Rocks::open(&d.join("store"), &k.signer.verifier(), Mode::Verify)?;
    let mut got = Vec::with_capacity(want.len());
    let mut city = 0usize;
    for h in 0..store.size() {
        let header = BlockHeader::from_bytes(&store.header(h)?.context("header")?)?;
        let lanes = store.lanes(h)?;
        for (i, l) in header.lanes.iter().enumerate() {
            let key = if l.name == "factory" { &k.factory } else { &k.city };
            let recs = open_lane_bytes(&header, i, &lanes[i], key, &Limits::default())?;
            if l.name == "factory" {
                got.extend(recs);
            } else {
                city += recs.len();
            }
        }
    }
    println!(
        "blocks: {}, factory records: {}, city samples: {city}, trace frames: {}",
        store.size(),
        got.len(),
        want.len()
    );
    ensure!(got.len() == want.len(), "{} frames stored, the trace has {}", got.len(), want.len());
    if let Some(i) = got.iter().zip(&want).position(|(a, b)| a != b) {
        anyhow::bail!("frame {i} differs: stored {:?}, trace {:?}", got[i], want[i]);
    }
    ensure!(city > 0, "the city lane is empty");
    Ok(())
}
