//! Figures for many gateways syncing at once: in-process gateways (own key, own RocksDB store
//! built from a slice of the real GPS trace, the daemon's sync agents) to two real
//! `iov-ledger` processes through fault proxies, then every log checked at both ledgers (as
//! `tests/sync_load.rs`, bigger). Prints throughput, CPU per process and errors.
//!
//! `cargo run --release -p gateway --example sync_load [-- GATEWAYS FRAMES_PER_GATEWAY
//! FRAMES_PER_BLOCK CUT_MS]` (defaults 250, 2560, 100, 300; CUT_MS 0 = a clean link). The
//! whole trace is 640,067 frames: GATEWAYS x FRAMES_PER_GATEWAY must fit in it. Disk: about
//! 70 MB per gateway while it runs (each open RocksDB store preallocates its WAL).

#[path = "../tests/load/mod.rs"]
mod load;

use std::time::Duration;

fn main() -> anyhow::Result<()> {
    let args: Vec<u64> = std::env::args().skip(1).map(|a| a.parse()).collect::<Result<_, _>>()?;
    let arg = |i: usize, d: u64| args.get(i).copied().unwrap_or(d);
    let p = load::FleetParams {
        gateways: arg(0, 250) as usize,
        frames_per_gateway: arg(1, 2560) as usize,
        max_records: arg(2, 100) as usize,
        cut_every: Some(arg(3, 300)).filter(|&ms| ms > 0).map(Duration::from_millis),
        deadline: Duration::from_secs(600),
    };
    println!(
        "{} gateways x {} frames, {} frames per block, faults: {}",
        p.gateways,
        p.frames_per_gateway,
        p.max_records,
        p.cut_every.map_or("none".into(), |d| format!("cuts every {d:?} + resets + 512 KiB/s"))
    );
    let tmp = tempfile::tempdir()?;
    let r = load::fleet(tmp.path(), &p)?;
    println!("{r}");
    println!("checked: every log complete at both ledgers, frames provable = frames sent");
    Ok(())
}
