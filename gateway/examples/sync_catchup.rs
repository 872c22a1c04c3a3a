//! Catch-up after an hour offline, and query latency for that hour.
//!
//! A gateway's backlog: MINUTES of CAN traffic at FPS frames/s, made from the real GPS trace
//! replayed over and over with its frames re-timed FPS per second (real payloads and id mix,
//! synthetic timing), through the gateway's own pipeline and writer (factory: raw frames,
//! city: coarsened signals; one block per second) into a RocksDB store. Then, per link rate
//! (Mbit/s; 0 = no cap), a fresh `iov-ledger` process and an in-process fault proxy with that
//! rate cap, and the daemon's sync agent catching up through it. Printed per rate: time, bytes
//! on the wire, and the CPU time of the agent, the proxy and the ledger process (from /proc),
//! so one can see whether the link or a CPU is the bottleneck. A run that would take longer
//! than LIMIT_S stops there and the full catch-up time is extrapolated from its rate.
//!
//! After the last complete run: a fleet tool's query for the whole hour of this vehicle by
//! time, paged, each page checked (completeness proof, gateway signature and ledger
//! cosignature, every lane against its header), then every lane opened with the factory key.
//!
//! `cargo run --release -p gateway --example sync_catchup [-- MINUTES FPS RATES LIMIT_S]`
//! (defaults 60, 25000, `1,10,100,0`, 240).

#[path = "../tests/load/mod.rs"]
mod load;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};
use ledger::block::BlockHeader;
use ledger::note::Note;
use ledger::sync_wire::{self, QueryBlocks};
use load::{Enrollment, Gateway, Ledger, Route};

const TUNING: &str = "batch_blocks = 64\nbatch_bytes = \"2 MiB\"\nbackoff_min = \"100ms\"\n\
                      backoff_max = \"2s\"\ntimeout = \"120s\"\n";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let minutes: u64 = args.first().map_or(Ok(60), |a| a.parse())?;
    let fps: u64 = args.get(1).map_or(Ok(25_000), |a| a.parse())?;
    let rates: Vec<u64> = args
        .get(2)
        .map_or("1,10,100,0", String::as_str)
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let limit = Duration::from_secs(args.get(3).map_or(Ok(240), |a| a.parse())?);

    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let (iface, trace) = load::read_trace(&load::gps_trace(), usize::MAX)?;
    let n = minutes * 60 * fps;
    let t0 = trace[0].t_ns;
    let frames = (0..n).map(|k| {
        let mut f = trace[(k % trace.len() as u64) as usize];
        f.t_ns = t0 + k * 1_000_000_000 / fps;
        f
    });
    let build_dir = dir.join("build");
    std::fs::create_dir_all(&build_dir)?;
    let cfg = load::gateway_config(&build_dir, &[], fps as usize, "")?;
    let key = Gateway::key("catchup")?;
    let t = Instant::now();
    let gw = Gateway::build(&cfg, key, &dir.join("gw"), &iface, frames)?;
    drop(trace);
    let build = t.elapsed();
    let store = gw.reader();
    let (mut header_bytes, mut factory_bytes, mut city_bytes) = (0u64, 0u64, 0u64);
    for h in 0..gw.size {
        let hb = ledger::store::Store::header(&store, h)?.context("header")?;
        header_bytes += hb.len() as u64;
        for l in BlockHeader::from_bytes(&hb)?.lanes {
            match l.name.as_str() {
                "factory" => factory_bytes += l.size,
                _ => city_bytes += l.size,
            }
        }
    }
    println!(
        "backlog: {minutes} min at {fps} frames/s = {} frames in {} blocks, built in {:.1} s \
         ({:.0} frames/s: pipeline, seal, fsync'd append); headers {:.1} MB, factory lane {:.1} MB \
         ({:.2} B/frame), city lane {:.2} MB",
        gw.frames,
        gw.size,
        build.as_secs_f64(),
        gw.frames as f64 / build.as_secs_f64(),
        header_bytes as f64 / 1e6,
        factory_bytes as f64 / 1e6,
        factory_bytes as f64 / gw.frames as f64,
        city_bytes as f64 / 1e6
    );
    let to_send = header_bytes + factory_bytes;
    println!(
        "to the factory ledger: {:.1} MB (headers + its lane): at least {:.0} s at 1 Mbit/s, \
         {:.0} s at 10, {:.1} s at 100",
        to_send as f64 / 1e6,
        to_send as f64 * 8.0 / 1e6,
        to_send as f64 * 8.0 / 1e7,
        to_send as f64 * 8.0 / 1e8
    );

    let agents_rt = load::runtime("agents", 2)?;
    let proxy_rt = load::runtime("proxies", 1)?;
    let stop = tokio_util::sync::CancellationToken::new();
    let enrolled =
        [Enrollment { vkey: gw.signer.verifier().to_vkey(), unit: "VIN-CATCHUP".into() }];
    let mut last_complete: Option<(Ledger, std::path::PathBuf)> = None;
    for rate in rates {
        let run = dir.join(format!("run-{rate}"));
        std::fs::create_dir_all(&run)?;
        let ledger = Ledger::start(&run, "factory", "factory", &enrolled, None)?;
        let (px, addr) = load::proxy(&proxy_rt, ledger.addr, 1, &stop)?;
        if rate > 0 {
            px.apply(&faultproxy::Command::Rate(Some(rate * 1_000_000 / 8)));
        }
        let name = format!("factory{rate}");
        let route = Route {
            name: name.clone(),
            lane: "factory".into(),
            url: format!("http://{addr}/"),
            cosigner_vkey: ledger.vkey(),
            ca_file: None,
        };
        let cfg = load::gateway_config(&run, &[route], fps as usize, TUNING)?;
        let agent = gw.agent(&cfg, &name, 7)?;
        let stats = agent.stats.clone();
        let run_stop = stop.child_token();
        let (l0, a0, p0) = (
            ledger.cpu_seconds()?,
            process_metrics::threads_cpu_seconds("agents")?,
            process_metrics::threads_cpu_seconds("proxies")?,
        );
        let t = Instant::now();
        let task = agents_rt.spawn(agent.run(run_stop.clone(), Duration::from_secs(1)));
        let done = || stats.acked.load(Ordering::Relaxed) == gw.size;
        while !done() && t.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(20));
        }
        let el = t.elapsed().as_secs_f64();
        let (lc, ac, pc) = (
            ledger.cpu_seconds()? - l0,
            process_metrics::threads_cpu_seconds("agents")? - a0,
            process_metrics::threads_cpu_seconds("proxies")? - p0,
        );
        let acked = stats.acked.load(Ordering::Relaxed);
        let complete = done();
        run_stop.cancel();
        agents_rt.block_on(task)?;
        let ps = px.stats();
        let wire = ps.bytes_up + ps.bytes_down;
        let mbit = wire as f64 * 8.0 / el / 1e6;
        let full = if complete { el } else { el * gw.size as f64 / acked.max(1) as f64 };
        let frames_done = gw.frames as f64 * acked as f64 / gw.size as f64;
        println!(
            "link {}: {} {acked}/{} blocks in {el:.1} s{}; wire {:.1} MB = {mbit:.2} Mbit/s{}; \
             CPU s (cores busy): agent {ac:.1} ({:.2}), proxy {pc:.1} ({:.2}), ledger {lc:.1} \
             ({:.2}); ledger ingest {:.0} blocks, {:.0} frames per CPU second; errors {}",
            if rate > 0 { format!("{rate} Mbit/s") } else { "uncapped".into() },
            if complete { "caught up" } else { "stopped at" },
            gw.size,
            if complete { String::new() } else { format!(" (full catch-up ~{full:.0} s)") },
            wire as f64 / 1e6,
            if rate > 0 {
                format!(" ({:.0}% of the cap)", mbit / rate as f64 * 100.0)
            } else {
                String::new()
            },
            ac / el,
            pc / el,
            lc / el,
            acked as f64 / lc.max(1e-9),
            frames_done / lc.max(1e-9),
            load::error_line(&load::totals(std::slice::from_ref(&stats)))
        );
        if complete {
            if let Some((mut old, _)) = last_complete.take() {
                old.stop()?;
            }
            last_complete = Some((ledger, run));
        }
    }

    // A fleet tool's query for the whole hour, by time, with proofs checked and lanes opened.
    let Some((ledger, run)) = last_complete else {
        println!("no run caught up: no query figures");
        return Ok(());
    };
    drop(run);
    let key = load::lane_key(&build_dir, "factory")?;
    let http: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let origin = gw.signer.name().to_owned();
    let (gv, cv) = (gw.signer.verifier(), ledger.cosigner.verifier());
    let until = t0 + minutes * 60 * 1_000_000_000;
    let t = Instant::now();
    let (mut fetch, mut check, mut open) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let (mut pages, mut blocks, mut bytes, mut records) = (0u64, 0u64, 0u64, 0u64);
    let mut path = sync_wire::path::query_times(&origin, t0, until);
    loop {
        let tf = Instant::now();
        let mut r = http
            .get(&format!("http://{}{path}", ledger.addr))
            .header("authorization", &format!("Bearer {}", load::QUERY_SECRET))
            .call()?;
        ensure!(r.status() == 200, "query {path}: {}", r.status());
        let body = r.body_mut().with_config().limit(1 << 30).read_to_vec()?;
        let q = QueryBlocks::from_cbor(&body, 1 << 30)?;
        fetch += tf.elapsed();
        let tc = Instant::now();
        let headers: Vec<BlockHeader> = q
            .blocks
            .iter()
            .map(|b| BlockHeader::from_bytes(&b.header))
            .collect::<Result<_, _>>()?;
        ledger::verify::complete_range_signed(&headers, &q.checkpoint, &gv, &q.range_proof)?;
        ensure!(Note::parse(&q.checkpoint)?.verify(&[&gv, &cv])?.len() == 2, "cosignature");
        for (b, h) in q.blocks.iter().zip(&headers) {
            for (i, lane) in &b.lanes {
                ledger::verify::lane_against_header(h, usize::from(*i), lane)?;
            }
        }
        check += tc.elapsed();
        let to = Instant::now();
        for (b, h) in q.blocks.iter().zip(&headers) {
            for (i, lane) in &b.lanes {
                let recs = ledger::seal::open_lane_bytes(
                    h,
                    usize::from(*i),
                    lane,
                    &key,
                    &ledger::lane::Limits::DEFAULT,
                )?;
                records += recs.len() as u64;
            }
        }
        open += to.elapsed();
        pages += 1;
        blocks += q.blocks.len() as u64;
        bytes += body.len() as u64;
        if q.end >= q.requested_end {
            break;
        }
        path = sync_wire::path::query_blocks(&origin, q.end, q.requested_end);
    }
    let total = t.elapsed();
    ensure!(blocks == gw.size && records == gw.frames, "{blocks} blocks, {records} records");
    println!(
        "query of the hour ({minutes} min) by time: {pages} pages, {blocks} blocks, {:.1} MB in \
         {:.2} s: fetch {:.2} s, proofs and lane digests checked {:.2} s, lanes opened ({records} \
         frames) {:.2} s; {:.1} ms per page fetched and checked",
        bytes as f64 / 1e6,
        total.as_secs_f64(),
        fetch.as_secs_f64(),
        check.as_secs_f64(),
        open.as_secs_f64(),
        (fetch + check).as_secs_f64() * 1e3 / pages as f64
    );
    let mut ledger = ledger;
    ledger.stop()?;
    Ok(())
}
