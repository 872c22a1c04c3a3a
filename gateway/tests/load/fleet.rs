//! The load run: many gateways, two ledgers, faults, then everything checked.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use tokio_util::sync::CancellationToken;

use super::{
    error_line, free_bytes, gateway_config, gps_trace, proxy, read_trace, runtime, spawn_agents,
    totals, wait_until, Enrollment, Gateway, Ledger, Route, Totals, LOAD_TUNING,
};

/// A fleet run's shape.
pub struct FleetParams {
    pub gateways: usize,
    pub frames_per_gateway: usize,
    /// Frames per block.
    pub max_records: usize,
    /// Cut every connection every this often until half is acknowledged (`None`: no faults).
    pub cut_every: Option<Duration>,
    /// For every wait.
    pub deadline: Duration,
}

/// What a fleet run measured (everything checked already).
#[derive(Debug)]
pub struct FleetReport {
    pub blocks: u64,
    pub frames: u64,
    pub build: Duration,
    /// From the agents' start until every ledger acknowledged every log.
    pub sync: Duration,
    /// Until the faults were lifted (`None`: a clean link).
    pub faults: Option<Duration>,
    pub totals: Totals,
    /// Per ledger: name, CPU seconds during the sync, proxy counters, refusals by reason.
    pub ledgers: Vec<(String, f64, faultproxy::StatsSnapshot, String)>,
    /// CPU seconds of the agents' runtime (all gateways) and of the proxies' during the sync.
    pub agents_cpu: f64,
    pub proxies_cpu: f64,
}

impl std::fmt::Display for FleetReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.sync.as_secs_f64();
        writeln!(
            f,
            "stores built: {} blocks, {} frames in {:.1} s",
            self.blocks,
            self.frames,
            self.build.as_secs_f64()
        )?;
        writeln!(
            f,
            "synced to 2 ledgers in {s:.2} s ({}): {:.0} blocks/s, {:.0} frames/s into each \
             ledger ({:.0} blocks/s, {:.0} frames/s both together); {} request bytes ({:.2} \
             MB/s); agent errors: {}",
            self.faults.map_or("clean links".into(), |d| format!(
                "faults for the first {:.2} s",
                d.as_secs_f64()
            )),
            self.blocks as f64 / s,
            self.frames as f64 / s,
            2.0 * self.blocks as f64 / s,
            2.0 * self.frames as f64 / s,
            self.totals.bytes_sent,
            self.totals.bytes_sent as f64 / s / 1e6,
            error_line(&self.totals)
        )?;
        for (name, cpu, p, refusals) in &self.ledgers {
            writeln!(
                f,
                "{name}: {cpu:.2} CPU s ({:.0} blocks, {:.0} frames per CPU second); proxy: {} \
                 connections, {} resets, {} bytes up, {} down; refusals: {refusals}",
                self.blocks as f64 / cpu.max(1e-9),
                self.frames as f64 / cpu.max(1e-9),
                p.accepted,
                p.resets,
                p.bytes_up,
                p.bytes_down
            )?;
        }
        write!(
            f,
            "CPU during the sync: agents {:.2} s, proxies {:.2} s (wall {s:.2} s, 2 cores)",
            self.agents_cpu, self.proxies_cpu
        )
    }
}

/// The fleet run: `gateways` stores built from consecutive slices of the GPS trace, two real
/// ledgers (each enrolls every gateway), a proxy each (faults: cuts every `cut_every` on both,
/// random resets after 4..64 KiB upstream on the factory link, 512 KiB/s and 20 ms latency on
/// the city link) until half is acknowledged, then healed. Checks, before it returns: every
/// agent's cursor at its log's size, at each ledger every log complete (query API: proofs,
/// signatures, lanes, frames provable = frames sent; store: headers byte-equal, own lanes
/// only), no fork evidence.
pub fn fleet(dir: &Path, p: &FleetParams) -> Result<FleetReport> {
    let n = p.gateways;
    // Each open store writes WAL and memtable flushes of up to a few memtables (D187, D252):
    // say plainly when the disk is short instead of failing half-way with ENOSPC.
    let per_store = 4 * ledger::store::rocks::MEMTABLE_BYTES as u64 + (2 << 20);
    let need = (n as u64 + 2) * per_store;
    let free = free_bytes(dir)?;
    ensure!(
        free > need + (2 << 30),
        "{n} gateway stores need about {} MB of free disk in {} (WAL and files of each store \
         while open), {} GB free",
        need >> 20,
        dir.display(),
        free >> 30
    );
    let (iface, frames) = read_trace(&gps_trace(), n * p.frames_per_gateway)?;
    ensure!(frames.len() == n * p.frames_per_gateway, "the trace has {} frames", frames.len());
    let keys: Vec<_> =
        (0..n).map(|i| Gateway::key(&format!("load-{i:04}"))).collect::<Result<_>>()?;
    let enrolled: Vec<Enrollment> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| Enrollment { vkey: k.verifier().to_vkey(), unit: format!("VIN{i:04}") })
        .collect();
    let mut ledgers = vec![
        Ledger::start(dir, "factory", "factory", &enrolled, None)?,
        Ledger::start(dir, "city", "city", &enrolled, None)?,
    ];
    let agents_rt = runtime("agents", 2)?;
    let proxy_rt = runtime("proxies", 1)?;
    let stop = CancellationToken::new();
    let mut proxies = Vec::new();
    let mut routes = Vec::new();
    for (i, l) in ledgers.iter().enumerate() {
        let (h, addr) = proxy(&proxy_rt, l.addr, 11 + i as u64, &stop)?;
        proxies.push(h);
        routes.push(Route {
            name: l.name.clone(),
            lane: l.lane.clone(),
            url: format!("http://{addr}/"),
            cosigner_vkey: l.vkey(),
            ca_file: None,
        });
    }
    let cfg = gateway_config(dir, &routes, p.max_records, LOAD_TUNING)?;

    // Each gateway's store from its own slice of the trace, on two builder threads.
    let t = Instant::now();
    let half = n.div_ceil(2);
    let mut gws: Vec<Option<Gateway>> = (0..n).map(|_| None).collect();
    std::thread::scope(|s| -> Result<()> {
        let mut handles = Vec::new();
        for (part, slots) in gws.chunks_mut(half).enumerate() {
            let (cfg, iface, frames, keys) = (&cfg, &iface, &frames, &keys);
            let per = p.frames_per_gateway;
            handles.push(s.spawn(move || -> Result<()> {
                for (j, slot) in slots.iter_mut().enumerate() {
                    let i = part * half + j;
                    *slot = Some(Gateway::build(
                        cfg,
                        keys[i].clone(),
                        &dir.join(format!("gw-{i:04}")),
                        iface,
                        frames[i * per..(i + 1) * per].iter().cloned(),
                    )?);
                }
                Ok(())
            }));
        }
        for h in handles {
            h.join().map_err(|_| anyhow::anyhow!("a store builder panicked"))??;
        }
        Ok(())
    })?;
    let gws: Vec<Gateway> = gws.into_iter().flatten().collect();
    let build = t.elapsed();
    eprintln!("{n} stores built in {build:?}");
    let blocks: u64 = gws.iter().map(|g| g.size).sum();
    let sent: u64 = gws.iter().map(|g| g.frames).sum();
    ensure!(sent == frames.len() as u64, "{sent} of {} frames in the stores", frames.len());
    drop(frames);

    let cuts = stop.child_token();
    let mut cutter = None;
    if let Some(every) = p.cut_every {
        proxies[0].apply(&faultproxy::Command::ResetRandom(Some((4096, 65536))));
        proxies[1].apply(&faultproxy::Command::Rate(Some(512 * 1024)));
        proxies[1].apply(&faultproxy::Command::Latency(Some(Duration::from_millis(20))));
        let (proxies, cuts) = (proxies.clone(), cuts.clone());
        cutter = Some(proxy_rt.spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    () = cuts.cancelled() => return,
                    _ = tick.tick() => {}
                }
                for p in &proxies {
                    p.apply(&faultproxy::Command::Cut);
                }
            }
        }));
    }
    let mut agents = Vec::new();
    for (i, g) in gws.iter().enumerate() {
        for r in &routes {
            agents.push(g.agent(&cfg, &r.name, 1000 + i as u64)?);
        }
    }
    let cpu0: Vec<f64> = ledgers.iter().map(Ledger::cpu_seconds).collect::<Result<_>>()?;
    let (a0, p0) = (
        process_metrics::threads_cpu_seconds("agents")?,
        process_metrics::threads_cpu_seconds("proxies")?,
    );
    let t = Instant::now();
    let (stats, tasks) = spawn_agents(&agents_rt, agents, &stop);
    // Faults until half of everything (2 x blocks) is acknowledged, then the links heal.
    wait_until(p.deadline, "half the blocks acknowledged through the faults", || {
        Ok(totals(&stats).acked >= blocks)
    })?;
    eprintln!("half acknowledged after {:?}: {:?}", t.elapsed(), totals(&stats));
    cuts.cancel();
    if let Some(c) = cutter {
        proxy_rt.block_on(c)?;
    }
    for px in &proxies {
        px.apply(&faultproxy::Command::Clear);
    }
    let faults = p.cut_every.map(|_| t.elapsed());
    // Agents are pushed per gateway, one per ledger, in route order.
    let sizes: Vec<u64> = gws.iter().flat_map(|g| [g.size, g.size]).collect();
    let behind = || {
        stats
            .iter()
            .zip(&sizes)
            .filter(|(s, size)| {
                s.acked.load(Ordering::Relaxed) != **size
                    || s.witnessed.load(Ordering::Relaxed) != **size
            })
            .map(|(s, size)| {
                format!(
                    "{} acked {} witnessed {} of {size}, link {}, errors {}",
                    s.ledger,
                    s.acked.load(Ordering::Relaxed),
                    s.witnessed.load(Ordering::Relaxed),
                    s.link_up.load(Ordering::Relaxed),
                    error_line(&totals(std::slice::from_ref(s)))
                )
            })
            .collect::<Vec<_>>()
    };
    if let Err(e) =
        wait_until(p.deadline, "every log acknowledged by both ledgers", || Ok(behind().is_empty()))
    {
        let b = behind();
        bail!(
            "{e}: {} agents behind, e.g.\n{}\nall agents: {}",
            b.len(),
            b.iter().take(10).cloned().collect::<Vec<_>>().join("\n"),
            error_line(&totals(&stats))
        );
    }
    let sync = t.elapsed();
    let cpu: Vec<f64> =
        ledgers.iter().zip(&cpu0).map(|(l, c)| Ok(l.cpu_seconds()? - c)).collect::<Result<_>>()?;
    let agents_cpu = process_metrics::threads_cpu_seconds("agents")? - a0;
    let proxies_cpu = process_metrics::threads_cpu_seconds("proxies")? - p0;
    stop.cancel();
    for task in tasks {
        agents_rt.block_on(task)?;
    }
    let tot = totals(&stats);
    ensure!(tot.acked == 2 * blocks && tot.witnessed == 2 * blocks, "cursors {tot:?}");

    // What each ledger proves and holds.
    let http: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let mut rows = Vec::new();
    for (l, (c, px)) in ledgers.iter().zip(cpu.iter().zip(&proxies)) {
        ensure!(l.metric_sum("iov_ledger_forks")? == 0.0, "{}: fork evidence", l.name);
        let mut provable = 0;
        for g in &gws {
            let (f, _) = l.check_query(&http, g)?;
            ensure!(
                f == g.frames,
                "{}: {} proves {f} of {} frames",
                l.name,
                g.signer.name(),
                g.frames
            );
            provable += f;
        }
        ensure!(provable == sent, "{}: {provable} frames provable, {sent} sent", l.name);
        rows.push((l.name.clone(), *c, px.stats(), l.refusals()?));
    }
    for l in &mut ledgers {
        l.stop()?;
        l.check_store(&gws)?;
    }
    Ok(FleetReport {
        blocks,
        frames: sent,
        build,
        sync,
        faults,
        totals: tot,
        ledgers: rows,
        agents_cpu,
        proxies_cpu,
    })
}
