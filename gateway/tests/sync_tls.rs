//! The sync agent over HTTPS: a real `iov-ledger` serving TLS with a certificate issued by a
//! private CA (made here with rcgen), the gateway pinning that CA in `[ledgers.NAME] ca_file`.
//!
//! - Through a fault proxy that cuts every connection (mid-handshake too) and caps the rate,
//!   the ledger ends holding exactly the gateway's log, and the gateway's receipt verifies.
//! - The `iov-gateway` daemon refuses a ledger whose certificate another CA issued, or that
//!   is not valid for the name in the url: nothing is sent, the log names the cause, the
//!   metrics show the link down with link errors, and the ledger holds nothing.

#![cfg(feature = "rocks")]

mod common;
mod load;

use std::io::{BufRead as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use ledger::note::Note;
use ledger::store::cursor::{read_cursor, LedgerCursor};
use ledger::store::Store as _;
use ledger::sync_wire::{self, GatewayState};
use load::{Enrollment, Gateway, Ledger, Route, TlsFiles};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// A private CA: its certificate (PEM file and DER) and the issuer that signs leaves.
struct Ca {
    pem: PathBuf,
    der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(dir: &Path, name: &str) -> Result<Ca> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let pem = dir.join(format!("{name}.pem"));
    std::fs::write(&pem, cert.pem())?;
    Ok(Ca { pem, der: cert.der().to_vec(), issuer: Issuer::new(params, key) })
}

/// A server certificate for `names` issued by `ca`: chain (leaf, CA) and key (0600) files.
fn leaf(dir: &Path, ca: &Ca, names: &[&str]) -> Result<TlsFiles> {
    let mut params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())?;
    params.distinguished_name.push(rcgen::DnType::CommonName, names[0]);
    params.use_authority_key_identifier_extension = true;
    params.extended_key_usages.push(rcgen::ExtendedKeyUsagePurpose::ServerAuth);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca.issuer)?;
    let chain = dir.join("ledger-chain.pem");
    std::fs::write(&chain, format!("{}{}", cert.pem(), std::fs::read_to_string(&ca.pem)?))?;
    let key_file = dir.join("ledger-key.pem");
    std::fs::write(&key_file, key.serialize_pem())?;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600))?;
    Ok(TlsFiles { cert: chain, key: key_file })
}

/// A ureq client that trusts only `ca`.
fn https_client(ca: &Ca) -> ureq::Agent {
    let root = ureq::tls::Certificate::from_der(&ca.der).to_owned();
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![root])))
        .build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// Frames of the GPS trace in the TLS gateway's log (500 per block).
const FRAMES: u64 = 100_000;

#[test]
fn https_through_a_faulty_proxy_ends_with_the_ledger_holding_exactly_the_log() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let ca = ca(dir, "iov-test-ca")?;
    let key = Gateway::key("tls-1")?;
    let enrolled = [Enrollment { vkey: key.verifier().to_vkey(), unit: "VIN-TLS".into() }];
    let mut factory =
        Ledger::start(dir, "factory", "factory", &enrolled, Some(leaf(dir, &ca, &["localhost"])?))?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let stop = tokio_util::sync::CancellationToken::new();
    let (proxy, paddr) = load::proxy(&rt, factory.addr, 3, &stop)?;
    let route = Route {
        name: "factory".into(),
        lane: "factory".into(),
        url: format!("https://localhost:{}/", paddr.port()),
        cosigner_vkey: factory.vkey(),
        ca_file: Some(ca.pem.clone()),
    };
    let cfg = load::gateway_config(dir, &[route], 500, load::LOAD_TUNING)?;
    ensure!(cfg.ledgers[0].ca_pem.is_some(), "the CA is not in the parsed config");
    let (iface, frames) = load::read_trace(&load::gps_trace(), FRAMES as usize)?;
    let gw = Gateway::build(&cfg, key, &dir.join("gw"), &iface, frames)?;
    ensure!(gw.size == FRAMES / 500, "log of {} blocks", gw.size);

    // Every connection is cut every 250 ms (handshakes included), 128 KiB/s: about 650 KB to
    // send, so several seconds of cuts.
    proxy.apply(&faultproxy::Command::Rate(Some(128 * 1024)));
    let cuts = stop.child_token();
    let cutter = {
        let (proxy, cuts) = (proxy.clone(), cuts.clone());
        rt.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tokio::select! {
                    () = cuts.cancelled() => return,
                    _ = tick.tick() => proxy.apply(&faultproxy::Command::Cut),
                }
            }
        })
    };
    let agent = gw.agent(&cfg, "factory", 5)?;
    let stats = agent.stats.clone();
    let task = rt.spawn(agent.run(stop.clone(), Duration::from_secs(1)));
    load::wait_until(Duration::from_secs(90), "half the log acknowledged over TLS", || {
        Ok(stats.acked.load(Ordering::Relaxed) * 2 >= gw.size)
    })?;
    cuts.cancel();
    rt.block_on(cutter)?;
    proxy.apply(&faultproxy::Command::Clear);
    load::wait_until(Duration::from_secs(90), "the whole log acknowledged over TLS", || {
        Ok(stats.acked.load(Ordering::Relaxed) == gw.size
            && stats.witnessed.load(Ordering::Relaxed) == gw.size)
    })?;
    stop.cancel();
    rt.block_on(task)?;
    let t = load::totals(std::slice::from_ref(&stats));
    println!(
        "TLS: {} blocks, {} bytes, errors {}; proxy {:?}",
        gw.size,
        t.bytes_sent,
        load::error_line(&t),
        proxy.stats()
    );
    ensure!(proxy.stats().resets >= 3, "the proxy cut {} connections", proxy.stats().resets);
    let link = t.errors.iter().find(|(k, _)| k.label() == "link").map_or(0, |e| e.1);
    ensure!(link >= 3, "the agent saw {link} broken links");

    // The ledger answers the fleet tool over TLS too, with proofs; then its store is exact.
    let (frames, _) = factory.check_query(&https_client(&ca), &gw)?;
    ensure!(frames == gw.frames && frames == FRAMES, "{frames} frames provable");
    let store = gw.reader();
    let c = read_cursor(&store, "factory")?;
    ensure!(c == LedgerCursor { witnessed: gw.size, acked: gw.size }, "cursor {c:?}");
    let receipt = Note::parse(&store.receipt("factory")?.context("receipt")?)?;
    let (gv, cv) = (gw.signer.verifier(), factory.cosigner.verifier());
    ensure!(receipt.verify(&[&gv, &cv])?.len() == 2, "the receipt does not verify with both keys");
    factory.stop()?;
    factory.check_store(std::slice::from_ref(&gw))
}

/// The first `n` lines of the GPS trace as a plain candump file.
fn small_trace(dir: &Path, n: usize) -> Result<PathBuf> {
    let gz = std::fs::File::open(load::gps_trace())?;
    let lines = std::io::BufReader::new(flate2::read::MultiGzDecoder::new(gz)).lines();
    let path = dir.join("small.log");
    let mut out = std::fs::File::create(&path)?;
    for l in lines.take(n) {
        writeln!(out, "{}", l?)?;
    }
    Ok(path)
}

#[test]
fn a_wrong_ca_or_a_wrong_name_is_refused_with_a_clear_error() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let keys = common::keys(dir)?;
    let right = ca(dir, "iov-test-ca")?;
    let other = ca(dir, "someone-elses-ca")?;
    let enrolled = [Enrollment { vkey: keys.signer.verifier().to_vkey(), unit: "VIN-TLS".into() }];
    let mut factory = Ledger::start(
        dir,
        "factory",
        "factory",
        &enrolled,
        Some(leaf(dir, &right, &["localhost"])?),
    )?;
    let port = factory.addr.port();
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let ledger = |name: &str, url: String, ca: &Path| {
        format!(
            "[ledgers.{name}]\nurl = \"{url}\"\nlanes = [\"factory\"]\ncosigner = \"{v}\"\n\
             ca_file = \"{ca}\"\nbackoff_min = \"100ms\"\nbackoff_max = \"500ms\"\ntimeout = \"5s\"\n",
            v = factory.vkey(),
            ca = ca.display()
        )
    };
    let config = format!(
        "[gateway]\nsigning_key = \"signing.key\"\nstore = \"store\"\nshutdown_grace = \"1s\"\n\
         [[dbc]]\nfile = \"{dbc}\"\n[recipients]\nfactory = \"factory.pub\"\n\
         [sources.replay]\nkind = \"trace\"\nfile = \"{trace}\"\npace = \"fast\"\nat_end = \"continue\"\n\
         [lanes.factory]\ncarries = \"raw\"\nrecipients = [\"factory\"]\n\
         [metrics]\nlisten = \"{metrics}\"\n{a}{b}",
        dbc = load::fixtures().join("dbc/css-electronics/canmod-gps.dbc").display(),
        trace = small_trace(dir, 2000)?.display(),
        a = ledger("wrongca", format!("https://localhost:{port}/"), &other.pem),
        b = ledger("wrongname", format!("https://127.0.0.1:{port}/"), &right.pem),
    );
    std::fs::write(dir.join("gateway.toml"), config)?;
    let mut gw = common::Gateway::start(&dir.join("gateway.toml"))?;
    // Each agent says why, in its own words, and retries.
    let mut wrong_ca = None;
    let mut wrong_name = None;
    let end = Instant::now() + Duration::from_secs(60);
    while wrong_ca.is_none() || wrong_name.is_none() {
        let left = end.saturating_duration_since(Instant::now());
        let line = gw.wait_for(left, |l| l.contains("sync step failed"))?;
        if line.contains("ledger=wrongca") {
            wrong_ca.get_or_insert(line);
        } else if line.contains("ledger=wrongname") {
            wrong_name.get_or_insert(line);
        }
    }
    let (wrong_ca, wrong_name) = (wrong_ca.unwrap_or_default(), wrong_name.unwrap_or_default());
    println!("{wrong_ca}\n{wrong_name}");
    ensure!(
        wrong_ca.contains("error=link: ledger wrongca:") && wrong_ca.contains("UnknownIssuer"),
        "the wrong CA is not named: {wrong_ca}"
    );
    ensure!(
        wrong_name.contains("error=link: ledger wrongname:")
            && wrong_name.contains("not valid for name")
            && wrong_name.contains("127.0.0.1"),
        "the wrong name is not named: {wrong_name}"
    );
    // Its metrics: link down, link errors counted, nothing acknowledged.
    let text = metrics_text(metrics)?;
    for name in ["wrongca", "wrongname"] {
        let l = format!("ledger=\"{name}\"");
        ensure!(sample(&text, "iov_ledger_link_up", &l) == Some(0.0), "{name}: link_up\n{text}");
        ensure!(
            sample(&text, "iov_ledger_sync_errors_total", &format!("{l},kind=\"link\""))
                .is_some_and(|v| v >= 1.0),
            "{name}: no link error counted\n{text}"
        );
        ensure!(sample(&text, "iov_ledger_acked_height", &l) == Some(0.0), "{name}: acked");
    }
    gw.signal("-TERM")?;
    let (st, _) = gw.wait_exit(Duration::from_secs(60))?;
    ensure!(st.success(), "gateway exit {st}");
    // The ledger saw no request that got past TLS: it holds nothing for the gateway.
    let mut r = https_client(&right)
        .get(&format!("{}{}", factory.base(), sync_wire::path::state(keys.signer.name())))
        .call()?;
    ensure!(r.status() == 200, "state: {}", r.status());
    let st = GatewayState::from_cbor(&r.body_mut().read_to_vec()?)?;
    ensure!(st.witnessed.is_none() && st.mirrored == 0, "the ledger holds {st:?}");
    factory.stop()
}

fn metrics_text(addr: std::net::SocketAddr) -> Result<String> {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        match ureq::get(&format!("http://{addr}/metrics")).call() {
            Ok(mut r) => return Ok(r.body_mut().read_to_string()?),
            Err(e) if Instant::now() > end => bail!("metrics: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The value of the sample of `name` whose labels contain `labels`.
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name) && l.contains(labels))
        .find_map(|l| l.rsplit(' ').next().and_then(|v| v.parse().ok()))
}
