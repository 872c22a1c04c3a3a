//! Load: 200 gateways at once, each with its own key and RocksDB store holding blocks made by
//! the gateway's pipeline and writer from its own slice of the real GPS trace, each running
//! the daemon's sync agent to two real `iov-ledger` processes (factory: raw frames, city:
//! coarsened signals) through a fault proxy per ledger: connections cut every 300 ms, random
//! resets, a rate cap and latency. After the links heal, every ledger must hold every
//! gateway's full log (headers byte-equal to the gateway's, its own lanes only), prove over
//! its query API as many frames as each gateway sent, and hold no fork evidence
//! ([`load::fleet`] checks all of it).
//!
//! The CI-sized run; `examples/sync_load.rs` is the bigger one with figures. Waits poll the
//! agents' own counters with a deadline. Needs about 3.6 GB of free disk while it runs (each
//! open gateway store's WAL and files, D187, D252); it says so up front when short.

#![cfg(feature = "rocks")]

mod load;

use std::time::Duration;

use anyhow::{ensure, Result};

#[test]
fn two_hundred_gateways_through_faults_end_with_every_log_at_both_ledgers() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let r = load::fleet(
        tmp.path(),
        &load::FleetParams {
            gateways: 200,
            frames_per_gateway: 1000,
            // 10 blocks per gateway: 2,000 per ledger.
            max_records: 100,
            cut_every: Some(Duration::from_millis(300)),
            deadline: Duration::from_secs(90),
        },
    )?;
    println!("{r}");
    ensure!(r.blocks == 2000 && r.frames == 200_000, "{} blocks, {} frames", r.blocks, r.frames);
    // The faults took effect: connections were reset and agents saw broken links.
    ensure!(r.ledgers.iter().all(|l| l.2.resets > 0), "a proxy never reset a connection");
    let link = r.totals.errors.iter().find(|(k, _)| k.label() == "link").map_or(0, |e| e.1);
    ensure!(link > 0, "no agent ever saw a broken link");
    Ok(())
}
