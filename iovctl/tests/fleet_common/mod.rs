//! Shared by the fleet tests: a real `iov-ledger` process, a real `iov-gateway` replaying the
//! first frames of the real GPS trace and syncing them to it, the keys and tokens, `iovctl`
//! as a subprocess, and a small HTTP proxy that can tamper with answers.
//!
//! Every wait polls a condition with a deadline (the ledger's `/state`, the gateway's metrics).

#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use ledger::keys::X25519Key;
use ledger::note::Ed25519Signer;
use ledger::sync_wire::{self, GatewayState};

pub const VEHICLE: &str = "VIN-FLEET-1";
/// Frames of the real trace replayed (the first ones): enough for tens of blocks.
pub const FRAMES: usize = 12_000;
pub const ADMIN_SECRET: &str = "admin-secret-for-tests";
pub const QUERY_SECRET: &str = "query-secret-for-tests";
pub const OTHER_SECRET: &str = "other-unit-secret";
const DEADLINE: Duration = Duration::from_secs(300);

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

pub fn dbc() -> PathBuf {
    fixtures().join("dbc/css-electronics/canmod-gps.dbc")
}

/// A binary of another workspace package next to the test's target dir; built when missing.
pub fn workspace_bin(package: &str, bin: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().and_then(Path::parent).context("target dir")?;
    let path = dir.join(bin);
    if !path.exists() {
        let target = dir.parent().context("target root")?;
        let st = Command::new(env!("CARGO"))
            .args(["build", "--release", "-p", package, "--bin", bin])
            .env("CARGO_TARGET_DIR", target)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .with_context(|| format!("cargo build -p {package}"))?;
        ensure!(st.success(), "building {bin} failed");
    }
    Ok(path)
}

pub fn iovctl(args: &[&str]) -> Result<Output> {
    let out = Command::new(env!("CARGO_BIN_EXE_iovctl"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running iovctl")?;
    Ok(out)
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn secret_file(path: &Path, secret: &str) -> Result<()> {
    ledger::keys::write_secret_file(path, format!("{secret}\n").as_bytes())?;
    Ok(())
}

/// A running `iov-ledger`.
pub struct LedgerProc {
    pub dir: PathBuf,
    pub addr: SocketAddr,
    child: Option<Child>,
}

impl LedgerProc {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            let st = Command::new("kill").args(["-TERM", &c.id().to_string()]).status()?;
            ensure!(st.success(), "kill -TERM");
            let end = Instant::now() + Duration::from_secs(60);
            while c.try_wait()?.is_none() {
                if Instant::now() > end {
                    let _ = c.kill();
                    bail!("iov-ledger did not stop");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }
}

impl Drop for LedgerProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `iov-ledger run` in `dir` (which holds `ledger.toml`) and reads its address.
pub fn start_ledger(dir: &Path) -> Result<LedgerProc> {
    let mut child = Command::new(workspace_bin("ledger-node", "iov-ledger")?)
        .args(["run", "--config"])
        .arg(dir.join("ledger.toml"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting iov-ledger")?;
    let up = ledger_node::launch::wait_child_listening(&mut child, Duration::from_secs(60))?;
    Ok(LedgerProc { dir: dir.to_path_buf(), addr: up.addr, child: Some(child) })
}

/// Gateway keys, one ledger, the gateway's run finished and synced.
pub struct World {
    pub _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub signer: Ed25519Signer,
    pub org: X25519Key,
    pub ledger: LedgerProc,
    /// The ledger's cosigner vkey.
    pub ledger_vkey: String,
    /// Log size once synced.
    pub head: u64,
    /// The trace the gateway replayed.
    pub trace: PathBuf,
}

impl World {
    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    pub fn gateway_vkey(&self) -> String {
        self.signer.verifier().to_vkey()
    }

    /// Common arguments of a ledger query with the query token and the org key.
    pub fn query_args(&self, url: &str) -> Vec<String> {
        vec![
            "--ledger".into(),
            url.into(),
            "--vehicle".into(),
            VEHICLE.into(),
            "--key".into(),
            self.path("org.key"),
            "--token-file".into(),
            self.path("query.token"),
            "--ledger-key".into(),
            self.ledger_vkey.clone(),
            "--dbc".into(),
            dbc().display().to_string(),
        ]
    }

    /// `max_blocks_per_batch` of the ledger: small so a range takes several pages.
    pub fn new(max_blocks_per_batch: usize) -> Result<World> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().to_path_buf();
        let signer = ledger::keys::generate_signer("iov.example/gw/fleet-test")?;
        ledger::keys::save_signer(&dir.join("signing.key"), &signer)?;
        std::fs::write(dir.join("signing.vkey"), signer.verifier().to_vkey())?;
        let org = X25519Key::generate("factory")?;
        ledger::keys::save_x25519(&dir.join("org.key"), &org)?;
        std::fs::write(dir.join("factory.pub"), org.public_text())?;
        secret_file(&dir.join("admin.token"), ADMIN_SECRET)?;
        secret_file(&dir.join("query.token"), QUERY_SECRET)?;
        secret_file(&dir.join("other.token"), OTHER_SECRET)?;

        // The first FRAMES frames of the real trace.
        let mut text = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(
            fixtures().join("traces/canmod_gps_3BA199E2.log.gz"),
        )?)
        .read_to_string(&mut text)?;
        let subset: Vec<&str> = text.lines().take(FRAMES).collect();
        let trace = dir.join("trace.log");
        std::fs::write(&trace, subset.join("\n") + "\n")?;

        // The ledger.
        let ldir = dir.join("ledger");
        std::fs::create_dir_all(&ldir)?;
        let cosigner = ledger::keys::generate_cosigner("factory.example/ledger")?;
        ledger::keys::save_cosigner(&ldir.join("witness.key"), &cosigner)?;
        let ledger_vkey = cosigner.verifier().to_vkey();
        let b3 = |s: &str| blake3::hash(s.as_bytes()).to_hex().to_string();
        std::fs::write(
            ldir.join("ledger.toml"),
            format!(
                "[ledger]\nname = \"factory.example\"\ncosigner_key = \"witness.key\"\nstore = \"store\"\n\
                 [listen]\naddress = \"127.0.0.1:0\"\n\
                 [limits]\nmax_blocks_per_batch = {max_blocks_per_batch}\n\
                 [[tokens]]\nname = \"ops\"\nblake3 = \"{}\"\nscopes = [\"admin\"]\n\
                 [[tokens]]\nname = \"analyst\"\nblake3 = \"{}\"\nscopes = [\"query:{VEHICLE}\"]\n\
                 [[tokens]]\nname = \"other\"\nblake3 = \"{}\"\nscopes = [\"query:SOMEONE-ELSE\"]\n",
                b3(ADMIN_SECRET),
                b3(QUERY_SECRET),
                b3(OTHER_SECRET)
            ),
        )?;
        let ledger = start_ledger(&ldir)?;

        // Enroll the gateway through iovctl (the enroll round trip is checked by the tests).
        let o = iovctl(&[
            "enroll",
            "--ledger",
            &ledger.url(),
            "--token-file",
            &dir.join("admin.token").display().to_string(),
            "--gateway-key",
            &dir.join("signing.vkey").display().to_string(),
            "--vehicle",
            VEHICLE,
            "--lanes",
            "factory",
        ])?;
        ensure!(o.status.success(), "enroll failed: {}", stderr(&o));

        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let config = format!(
            r#"
[gateway]
signing_key = "signing.key"
store = "store"
shutdown_grace = "5s"
[block]
max_records = 400
max_age = "1s"
[[dbc]]
file = "{dbc}"
[recipients]
factory = "factory.pub"
[sources.replay]
kind = "trace"
file = "trace.log"
pace = "fast"
at_end = "continue"
[lanes.factory]
carries = "raw"
recipients = ["factory"]
[metrics]
listen = "{metrics}"
[ledgers.factory]
url = "{url}/"
lanes = ["factory"]
cosigner = "{vkey}"
batch_blocks = 16
backoff_min = "50ms"
backoff_max = "400ms"
timeout = "5s"
"#,
            dbc = dbc().display(),
            url = ledger.url(),
            vkey = ledger_vkey,
        );
        std::fs::write(dir.join("gateway.toml"), config)?;
        let mut gw = Command::new(workspace_bin("gateway", "iov-gateway")?)
            .args(["run", "--config"])
            .arg(dir.join("gateway.toml"))
            .current_dir(&dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting iov-gateway")?;
        let r = (|| {
            wait(DEADLINE, "every frame durable", || {
                ensure!(gw.try_wait()?.is_none(), "the gateway exited");
                Ok(metric(metrics, "iov_records_total", "lane=\"factory\"")? == Some(FRAMES as f64))
            })?;
            // Sealed blocks keep coming until the partial block is sealed by age.
            let mut head = 0;
            wait(DEADLINE, "the store height to settle and sync", || {
                let h = metric(metrics, "iov_store_height", "")?.unwrap_or(0.0) as u64;
                let s = state(&ledger.url(), signer.name())?;
                let ok = h > 0 && s.mirrored == h && s.witnessed.map(|w| w.size) == Some(h);
                if ok && h == head {
                    return Ok(true);
                }
                head = h;
                Ok(false)
            })?;
            Ok::<_, anyhow::Error>(head)
        })();
        let _ = Command::new("kill").args(["-TERM", &gw.id().to_string()]).status();
        let end = Instant::now() + Duration::from_secs(60);
        while gw.try_wait()?.is_none() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = gw.kill();
        let _ = gw.wait();
        let head = r?;
        Ok(World { _tmp: tmp, dir, signer, org, ledger, ledger_vkey, head, trace })
    }
}

pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub fn wait(timeout: Duration, what: &str, mut f: impl FnMut() -> Result<bool>) -> Result<()> {
    let end = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match f() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() > end {
            bail!("timed out after {timeout:?} waiting for {what} (last error: {last_err:?})");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A plain HTTP GET on loopback (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let (status, _, body) = split_response(&buf)?;
    Ok((status, body))
}

fn state(url: &str, origin: &str) -> Result<GatewayState> {
    let addr: SocketAddr = url.trim_start_matches("http://").parse()?;
    let (st, body) = http_get(addr, &sync_wire::path::state(origin))?;
    ensure!(st == 200, "state: HTTP {st}");
    Ok(GatewayState::from_cbor(&body)?)
}

fn metric(addr: SocketAddr, name: &str, label: &str) -> Result<Option<f64>> {
    let (_, body) = http_get(addr, "/metrics")?;
    let text = String::from_utf8_lossy(&body).into_owned();
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name) && l.contains(label))
        .find_map(|l| l.rsplit(' ').next().and_then(|v| v.parse().ok())))
}

/// Splits a whole HTTP/1.1 response (Content-Length or chunked) into status, head, body.
pub fn split_response(buf: &[u8]) -> Result<(u16, String, Vec<u8>)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").context("no end of head")?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status: u16 = head.split_whitespace().nth(1).context("status")?.parse()?;
    let rest = &buf[end + 4..];
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked {
        let mut out = Vec::new();
        let mut r = rest;
        loop {
            let nl = r.windows(2).position(|w| w == b"\r\n").context("chunk size")?;
            let n = usize::from_str_radix(std::str::from_utf8(&r[..nl])?.trim(), 16)?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&r[nl + 2..nl + 2 + n]);
            r = &r[nl + 2 + n + 2..];
        }
        out
    } else {
        rest.to_vec()
    };
    Ok((status, head, body))
}

/// How the proxy changes query answers.
pub type Tamper = Arc<dyn Fn(&str, Vec<u8>) -> Vec<u8> + Send + Sync>;

/// A one-request-per-connection HTTP proxy in front of the ledger that passes every answer
/// through `tamper(path, body)` (`Content-Length` fixed up). Bounded: one thread per
/// connection, stops when dropped.
pub struct Proxy {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    pub tamper: Arc<Mutex<Option<Tamper>>>,
}

impl Proxy {
    pub fn start(upstream: SocketAddr) -> Result<Proxy> {
        let l = TcpListener::bind("127.0.0.1:0")?;
        l.set_nonblocking(true)?;
        let addr = l.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let tamper: Arc<Mutex<Option<Tamper>>> = Arc::new(Mutex::new(None));
        let (s2, t2) = (stop.clone(), tamper.clone());
        std::thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        let t = t2.lock().map(|g| g.clone()).unwrap_or(None);
                        std::thread::spawn(move || {
                            let _ = serve(c, upstream, t);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(Proxy { addr, stop, tamper })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, t: Option<Tamper>) {
        if let Ok(mut g) = self.tamper.lock() {
            *g = t;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(mut c: TcpStream, upstream: SocketAddr, tamper: Option<Tamper>) -> Result<()> {
    c.set_nonblocking(false)?;
    c.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = c.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        req.extend_from_slice(&buf[..n]);
    }
    let head_end = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0);
    let head = String::from_utf8_lossy(&req[..head_end]).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while req.len() < head_end + 4 + len {
        let n = c.read(&mut buf)?;
        if n == 0 {
            break;
        }
        req.extend_from_slice(&buf[..n]);
    }
    // Forward with Connection: close so the upstream answer ends at EOF.
    let mut lines: Vec<&str> =
        head.lines().filter(|l| !l.to_ascii_lowercase().starts_with("connection:")).collect();
    lines.push("Connection: close");
    let mut up = TcpStream::connect(upstream)?;
    up.set_read_timeout(Some(Duration::from_secs(30)))?;
    up.write_all(lines.join("\r\n").as_bytes())?;
    up.write_all(b"\r\n\r\n")?;
    up.write_all(&req[head_end + 4..])?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp)?;
    let (status, rhead, body) = split_response(&resp)?;
    let body = match &tamper {
        Some(t) if status == 200 => t(&path, body),
        _ => body,
    };
    let mut out = String::new();
    for (i, l) in rhead.lines().enumerate() {
        let low = l.to_ascii_lowercase();
        if i > 0
            && (low.starts_with("content-length:")
                || low.starts_with("transfer-encoding:")
                || low.starts_with("connection:"))
        {
            continue;
        }
        out.push_str(l);
        out.push_str("\r\n");
    }
    out.push_str(&format!("content-length: {}\r\nconnection: close\r\n\r\n", body.len()));
    c.write_all(out.as_bytes())?;
    c.write_all(&body)?;
    let _ = status;
    Ok(())
}

/// The expected rows: every frame of the trace decoded with the DBC, as
/// `(t_ns, "Message.Signal", value)`, sorted.
pub fn expected_rows(trace: &Path) -> Result<Vec<(u64, String, f64)>> {
    let db = can_decoders::dbc::load_file_with(&dbc(), &can_decoders::dbc::LoadOptions::default())?;
    let mut b = can_decoders::decode::Decoder::builder();
    b.add_database(&db, &[]);
    let (d, _) = b.build()?;
    let mut reader = can_decoders::trace::open(trace, can_decoders::trace::ErrorPolicy::Skip)?;
    let mut decoded = can_decoders::decode::Decoded::default();
    let mut out = Vec::new();
    while let Some(r) = reader.next() {
        let r = r?;
        let bus = d.bus(reader.channels().get(usize::from(r.channel.0)).map_or("", String::as_str));
        if let Some(k) = d.decode(bus, &r.frame, &mut decoded) {
            let m = d.message(k);
            for v in &decoded.values {
                if let Some(sig) = m.signals().get(v.signal) {
                    out.push((r.t_ns, format!("{}.{}", m.name(), sig.name()), v.value));
                }
            }
        }
    }
    out.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    Ok(out)
}

/// Rows of `iovctl history --format jsonl` as `(t_ns, "Message.Signal", value)`, sorted.
pub fn jsonl_rows(text: &str) -> Result<Vec<(u64, String, f64)>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("line {line:?}"))?;
        ensure!(v["kind"] == "row", "not a row: {line}");
        let (Some(m), Some(s)) = (v["message"].as_str(), v["signal"].as_str()) else { continue };
        out.push((
            v["t_ns"].as_u64().context("t_ns")?,
            format!("{m}.{s}"),
            match v["value"].as_f64() {
                Some(x) => x,
                None => continue,
            },
        ));
    }
    out.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    Ok(out)
}
