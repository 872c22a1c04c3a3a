//! End to end: the real `iov-gateway` replays the GPS trace (`pace = "fast"`, `at_end =
//! "continue"` so it stays up) into RocksDB with a lane sealed for its own key, and serves the
//! local API on a Unix socket. `iovctl status` and `iovctl history --local` (the real binary)
//! read it; history is compared frame for frame with `can_decoders` decoding the same window
//! of the trace.

#![cfg(feature = "rocks")]

mod common;

use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use can_decoders::decode::{Decoded, Decoder};
use can_decoders::trace::{self, ErrorPolicy};
use serde_json::Value;

const TRACE: &str = "traces/canmod_gps_3BA199E2.log.gz";
const DBC: &str = "dbc/css-electronics/canmod-gps.dbc";

/// One history row reduced to what is compared: time, interface, message, signal, value bits.
type Row = (u64, String, Option<String>, Option<String>, Option<u64>);

/// The trace decoded the way cantools would (our differential-tested decoder), frames in
/// `[from, to]`, one row per signal, undecodable frames as one row without a signal; stable
/// sort by time (ties keep trace order, as the gateway's log does).
fn expected(from: u64, to: u64) -> Result<(Vec<Row>, u64, u64, u64)> {
    let db = can_decoders::dbc::load_file(&common::fixtures().join(DBC))?;
    let mut b = Decoder::builder();
    b.add_database(&db, &[]);
    let (decoder, _) = b.build()?;
    let mut r = trace::open(&common::fixtures().join(TRACE), ErrorPolicy::Strict)?;
    let mut out = Vec::new();
    let mut d = Decoded::new();
    let (mut frames, mut first, mut last) = (0u64, u64::MAX, 0u64);
    while let Some(f) = r.next() {
        let f = f?;
        frames += 1;
        first = first.min(f.t_ns);
        last = last.max(f.t_ns);
        if f.t_ns < from || f.t_ns > to {
            continue;
        }
        let iface = r.channels()[usize::from(f.channel.0)].clone();
        match decoder.decode(decoder.bus(&iface), &f.frame, &mut d) {
            None => out.push((f.t_ns, iface, None, None, None)),
            Some(k) => {
                let m = decoder.message(k);
                for v in &d.values {
                    let s = &m.signals()[v.signal];
                    out.push((
                        f.t_ns,
                        iface.clone(),
                        Some(m.name().to_owned()),
                        Some(s.name().to_owned()),
                        Some(v.value.to_bits()),
                    ));
                }
            }
        }
    }
    out.sort_by_key(|r| r.0);
    Ok((out, frames, first, last))
}

fn rows_of_jsonl(text: &str) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).with_context(|| format!("line {line}"))?;
        ensure!(v["kind"] == "row", "jsonl output holds rows only: {line}");
        let s = |k: &str| v[k].as_str().map(str::to_owned);
        rows.push((
            v["t_ns"].as_u64().context("t_ns")?,
            s("source").context("source")?,
            s("message"),
            s("signal"),
            v["value"].as_f64().map(f64::to_bits),
        ));
    }
    Ok(rows)
}

fn iovctl(args: &[&str]) -> Result<Output> {
    Ok(Command::new(common::iovctl()?).args(args).output()?)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A raw HTTP/1.1 GET over the Unix socket: (status, body) for small, non-chunked answers.
fn raw_get(socket: &Path, target: &str) -> Result<(u16, String)> {
    let mut s = std::os::unix::net::UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    // One write: the server may close as soon as it has seen too much of a request.
    s.write_all(
        format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => {}
        // A refused oversized request: the server closes with our unread bytes in its queue,
        // which resets the connection after its answer arrived.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !raw.is_empty() => {}
        Err(e) => return Err(e.into()),
    }
    let all = text(&raw);
    let (head, body) = all.split_once("\r\n\r\n").context("response head")?;
    let status = head.split_whitespace().nth(1).context("status")?.parse()?;
    Ok((status, body.to_owned()))
}

fn replay(st: &Value) -> Value {
    st["sources"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == "replay"))
        .cloned()
        .unwrap_or(Value::Null)
}

fn status(socket: &Path) -> Result<Value> {
    let out = iovctl(&["status", "--format", "json", "--socket", &socket.display().to_string()])?;
    ensure!(out.status.success(), "iovctl status: {}", text(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

struct Setup {
    _tmp: tempfile::TempDir,
    socket: PathBuf,
    gw: common::Gateway,
    signer_name: String,
    signer_id: u32,
}

fn start() -> Result<Setup> {
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    let k = common::keys(d)?;
    let own = ledger::keys::X25519Key::generate("iov.example/gw/e2e")?;
    ledger::keys::save_x25519(&d.join("x25519.key"), &own)?;
    let socket = d.join("api.sock");
    let config = d.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[gateway]
signing_key = "signing.key"
store = "store"
history_key = "x25519.key"
[block]
max_records = 20000
max_age = "1s"
[[dbc]]
file = "{dbc}"
[recipients]
factory = "factory.pub"
[sources.replay]
kind = "trace"
file = "{trace}"
pace = "fast"
at_end = "continue"
# The pipeline ends when every source has ended; this one keeps retrying a closed port, so the
# gateway stays up after the trace.
[sources.idle]
kind = "mqtt"
host = "127.0.0.1"
port = 9
client_id = "iov-api-test"
topics = [{{ filter = "nothing/#", qos = 0 }}]
[lanes.factory]
carries = "raw"
recipients = ["factory"]
[lanes.local]
carries = "raw"
recipients = ["self", "factory"]
[api]
socket = "{socket}"
max_rows = 5000
max_blocks = 2
max_concurrent = 1
listen = "127.0.0.1:0"
"#,
            dbc = common::fixtures().join(DBC).display(),
            trace = common::fixtures().join(TRACE).display(),
            socket = socket.display(),
        ),
    )?;
    let check = Command::new(env!("CARGO_BIN_EXE_iov-gateway"))
        .args(["check-config", "--config"])
        .arg(&config)
        .output()?;
    let said = text(&check.stdout);
    ensure!(check.status.success(), "check-config: {}", text(&check.stderr));
    ensure!(said.contains(&format!("local API: {}", socket.display())), "{said}");
    ensure!(
        said.contains("local history: key iov.example/gw/e2e+") && said.contains("lanes local"),
        "{said}"
    );
    let gw = common::Gateway::start(&config)?;
    Ok(Setup {
        _tmp: tmp,
        socket,
        gw,
        signer_name: k.signer.name().to_owned(),
        signer_id: k.signer.key_id(),
    })
}

#[test]
fn status_and_local_history_over_the_unix_socket_match_the_trace() -> Result<()> {
    let (_, frames, first, last) = expected(0, 0)?;
    let mut s = start()?;
    s.gw.wait_for(Duration::from_secs(60), |l| l.contains("local API listening socket="))?;
    let tcp_line = s
        .gw
        .wait_for(Duration::from_secs(60), |l| l.contains("local API listening (loopback TCP)"))?;
    let tcp_addr = tcp_line.split("addr=").nth(1).context("addr")?.trim().to_owned();
    let sock = s.socket.display().to_string();
    let mode = std::fs::metadata(&s.socket)?.permissions().mode() & 0o777;
    ensure!(mode == 0o660, "socket mode {mode:o}");

    // Wait (bounded) until the whole trace is durable: every frame received and sealed.
    let deadline = Instant::now() + Duration::from_secs(300);
    let st = loop {
        let st = status(&s.socket)?;
        let received = replay(&st)["received"].as_u64().unwrap_or(0);
        let local = st["lanes"].as_array().and_then(|a| {
            a.iter().find(|l| l["name"] == "local").and_then(|l| l["records"].as_u64())
        });
        if received == frames && local == Some(frames) {
            break st;
        }
        if Instant::now() > deadline {
            bail!("not all frames became durable: {st:#}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    println!("status: {st}");
    ensure!(st["origin"] == s.signer_name.as_str());
    ensure!(st["key_id"] == format!("{:08x}", s.signer_id).as_str());
    ensure!(st["clock"] == "gateway");
    ensure!(replay(&st)["dropped_full"] == 0 && replay(&st)["delivered"] == frames);
    let size = st["store"]["size"].as_u64().context("size")?;
    ensure!(size >= frames.div_ceil(20_000), "{size} blocks for {frames} frames");
    ensure!(st["blocks_sealed"] == size, "every block was sealed by this process");
    ensure!(st["store"]["checkpoint"]["size"] == size);
    ensure!(st["store"]["last_block"]["height"] == size - 1);
    ensure!(st["store"]["last_block"]["last_ns"] == last, "the last block ends at the last frame");
    ensure!(st["pipeline"]["state"] == "healthy");
    ensure!(st["history"]["lanes"] == serde_json::json!(["local"]));
    // The same API on loopback TCP, for tools without Unix sockets.
    let mut t = std::net::TcpStream::connect(&tcp_addr)?;
    t.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(t, "GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    let mut answer = String::new();
    t.read_to_string(&mut answer)?;
    let (head, body) = answer.split_once("\r\n\r\n").context("tcp answer")?;
    ensure!(head.starts_with("HTTP/1.1 200"), "{head}");
    let over_tcp: Value = serde_json::from_str(body)?;
    ensure!(over_tcp["store"]["size"] == size && over_tcp["origin"] == st["origin"]);
    let table = iovctl(&["status", "--socket", &sock])?;
    ensure!(table.status.success());
    let t = text(&table.stdout);
    ensure!(t.contains("pipeline  healthy") && t.contains("replay"), "{t}");

    // A five-second window a minute into the trace, frame for frame.
    let (from, to) = (first + 60_000_000_000, first + 65_000_000_000);
    let (want, _, _, _) = expected(from, to)?;
    let (fs, ts) = (from.to_string(), to.to_string());
    let base = ["history", "--local", "--socket", &sock, "--from", &fs, "--to", &ts];
    let run = |extra: &[&str]| -> Result<Output> {
        let mut a: Vec<&str> = base.to_vec();
        a.extend_from_slice(extra);
        iovctl(&a)
    };
    let jsonl = run(&["--format", "jsonl"])?;
    ensure!(jsonl.status.success(), "history: {}", text(&jsonl.stderr));
    let got = rows_of_jsonl(&text(&jsonl.stdout))?;
    println!("window: {} rows ({} expected)", got.len(), want.len());
    ensure!(!want.is_empty() && want.iter().any(|r| r.3.is_some()), "the window has signals");
    if let Some(i) = got.iter().zip(&want).position(|(a, b)| a != b) {
        bail!("row {i} differs: got {:?}, want {:?}", got[i], want[i]);
    }
    ensure!(got.len() == want.len(), "{} rows, want {}", got.len(), want.len());

    // Pages of 700 rows (the gateway's cursor, several requests) give the same rows.
    let paged = run(&["--format", "jsonl", "--page", "700"])?;
    ensure!(paged.status.success());
    ensure!(rows_of_jsonl(&text(&paged.stdout))? == got, "paging changes nothing");
    // --limit stops after N rows, across pages.
    let limited = run(&["--format", "jsonl", "--page", "100", "--limit", "250"])?;
    ensure!(rows_of_jsonl(&text(&limited.stdout))? == got[..250]);

    // The raw API: limit and continuation.
    let (code, body) = raw_get(&s.socket, &format!("/v1/history?from={fs}&to={ts}&limit=3"))?;
    ensure!(code == 200, "{code}: {body}");
    // The streamed body is chunked: take the JSON objects out of it (chunk sizes are hex).
    let objects = |body: &str| -> Vec<Value> {
        body.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(Value::is_object)
            .collect()
    };
    let lines = objects(&body);
    ensure!(lines.first().is_some_and(|h| h["kind"] == "head" && h["clock"] == "gateway"));
    let end = lines.last().context("end line")?;
    ensure!(end["kind"] == "end" && end["rows"] == 3, "{end}");
    let next = end["next"].as_str().context("a next cursor")?;
    let (_, body2) =
        raw_get(&s.socket, &format!("/v1/history?from={fs}&to={ts}&limit=3&after={next}"))?;
    let rows2: Vec<Value> = objects(&body2).into_iter().filter(|v| v["kind"] == "row").collect();
    ensure!(rows2.len() == 3 && rows2[0]["t_ns"] == got[3].0, "continues at row 3: {rows2:?}");

    // Signals filter, csv and table.
    let lat = run(&["--format", "jsonl", "--signals", "gnss_pos.Latitude,Speed"])?;
    let lat = rows_of_jsonl(&text(&lat.stdout))?;
    let want_lat: Vec<Row> = want
        .iter()
        .filter(|r| {
            r.3.as_deref() == Some("Speed")
                || (r.2.as_deref() == Some("gnss_pos") && r.3.as_deref() == Some("Latitude"))
        })
        .cloned()
        .collect();
    ensure!(
        !lat.is_empty() && lat == want_lat,
        "{} filtered rows, want {}",
        lat.len(),
        want_lat.len()
    );
    let csv = run(&["--format", "csv"])?;
    ensure!(csv.status.success());
    let csv = text(&csv.stdout);
    let mut csv_lines = csv.lines();
    ensure!(csv_lines.next() == Some("ts,t_ns,source,message,signal,value,unit,label,id,data"));
    ensure!(csv_lines.count() == got.len());
    let table = run(&["--format", "table"])?;
    ensure!(table.status.success());
    ensure!(text(&table.stdout).lines().count() == got.len() + 1);
    ensure!(text(&table.stderr).contains("gateway's own clock"));

    // An hour spans several 20,000-frame blocks: answers stop after two blocks with a cursor
    // at a block's end, and iovctl follows it to the end of the range.
    let (hf, ht) =
        ((first + 1_800_000_000_000).to_string(), (first + 5_400_000_000_000).to_string());
    let (_, body) = raw_get(&s.socket, &format!("/v1/history?from={hf}&to={ht}&signals=Speed"))?;
    let end = objects(&body).pop().context("end")?;
    ensure!(end["kind"] == "end" && end["blocks"] == 2, "{end}");
    ensure!(
        end["next"].as_str().is_some_and(
            |n| n.ends_with(".18446744073709551615.18446744073709551615.18446744073709551615")
        ),
        "{end}"
    );
    let (want_hour, _, _, _) = expected(first + 1_800_000_000_000, first + 5_400_000_000_000)?;
    let started = Instant::now();
    let hour = iovctl(&[
        "history", "--local", "--socket", &sock, "--from", &hf, "--to", &ht, "--format", "jsonl",
    ])?;
    let took = started.elapsed();
    ensure!(hour.status.success(), "{}", text(&hour.stderr));
    let hour = rows_of_jsonl(&text(&hour.stdout))?;
    ensure!(hour == want_hour, "{} rows over the hour, want {}", hour.len(), want_hour.len());
    println!(
        "one hour of the trace: {} rows in {:.2} s through iovctl ({:.0} rows/s, answers of at most 2 blocks / 5000 rows)",
        hour.len(),
        took.as_secs_f64(),
        hour.len() as f64 / took.as_secs_f64()
    );
    let speed = iovctl(&[
        "history",
        "--local",
        "--socket",
        &sock,
        "--from",
        &hf,
        "--to",
        &ht,
        "--format",
        "jsonl",
        "--signals",
        "Speed",
    ])?;
    let speed = rows_of_jsonl(&text(&speed.stdout))?;
    let want_speed: Vec<Row> =
        want_hour.iter().filter(|r| r.3.as_deref() == Some("Speed")).cloned().collect();
    ensure!(
        !speed.is_empty() && speed == want_speed,
        "{} Speed rows, want {}",
        speed.len(),
        want_speed.len()
    );

    // A lane not sealed for the gateway's key; a bad time on the API.
    let fac = run(&["--lane", "factory"])?;
    ensure!(fac.status.code() == Some(1), "exit {:?}", fac.status);
    ensure!(text(&fac.stderr).contains("lane_not_sealed_for_gateway"), "{}", text(&fac.stderr));
    let (code, body) = raw_get(&s.socket, "/v1/history?from=yesterday&to=1")?;
    ensure!(code == 400 && body.contains("\"bad_time\""), "{code} {body}");
    let (code, body) = raw_get(&s.socket, "/v1/history?from=1&to=2&colour=red")?;
    ensure!(code == 400 && body.contains("\"unknown_parameter\""), "{code} {body}");
    let long = format!("/v1/status?pad={}", "a".repeat(20_000));
    let (code, _) = raw_get(&s.socket, &long)?;
    ensure!(code == 431, "a 20 kB request head is refused: {code}");
    let (code, _) = raw_get(&s.socket, "/v2/nothing")?;
    ensure!(code == 404);

    // One slot: an idle connection that sends nothing holds it only until the 5 s head
    // timeout, then the next client is served (bounded wait, no idle hog).
    let mut idle = std::os::unix::net::UnixStream::connect(&s.socket)?;
    idle.set_read_timeout(Some(Duration::from_secs(60)))?;
    ensure!(status(&s.socket)?["clock"] == "gateway", "served after the idle one was dropped");
    let mut rest = Vec::new();
    idle.read_to_end(&mut rest)?;
    println!("the idle connection got {:?} and was closed", text(&rest).lines().next());

    // SIGTERM: a clean stop removes the socket.
    s.gw.signal("-TERM")?;
    let (st, _) = s.gw.wait_exit(Duration::from_secs(60))?;
    ensure!(st.success(), "exit {st}");
    ensure!(!s.socket.exists(), "the socket file is removed on shutdown");
    Ok(())
}

/// Journal entries of the systemd native protocol: `NAME=value\n` or `NAME\n<u64 le len>value\n`.
fn journal_fields(mut d: &[u8]) -> Result<std::collections::BTreeMap<String, Vec<u8>>> {
    let mut out = std::collections::BTreeMap::new();
    while !d.is_empty() {
        let nl = d.iter().position(|&b| b == b'\n').context("field without newline")?;
        let line = &d[..nl];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            out.insert(text(&line[..eq]), line[eq + 1..].to_vec());
            d = &d[nl + 1..];
        } else {
            let name = text(line);
            let rest = &d[nl + 1..];
            let len = u64::from_le_bytes(rest.get(..8).context("length")?.try_into()?) as usize;
            let value = rest.get(8..8 + len).context("value")?.to_vec();
            ensure!(rest.get(8 + len) == Some(&b'\n'), "value of {name} not newline-terminated");
            out.insert(name, value);
            d = &rest[9 + len..];
        }
    }
    Ok(out)
}

/// `--log-format journald` (and `auto` when `JOURNAL_STREAM` names stderr) sends entries in the
/// journal's native protocol to /run/systemd/journal/socket. tracing-journald has no way to
/// choose that path, so the gateway runs in a private mount namespace (`unshare -m`, root) whose
/// /run/systemd/journal is a directory holding a datagram socket this test reads.
#[test]
fn journald_entries_carry_the_event_fields_priority_and_identifier() -> Result<()> {
    if !Command::new("unshare").args(["-m", "true"]).status().is_ok_and(|s| s.success()) {
        println!("SKIPPED: needs `unshare -m` (root) to give the gateway its own journal socket");
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    common::keys(d)?;
    let jdir = d.join("journal");
    std::fs::create_dir(&jdir)?;
    let journal = std::os::unix::net::UnixDatagram::bind(jdir.join("socket"))?;
    journal.set_read_timeout(Some(Duration::from_millis(200)))?;
    let config = d.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nsigning_key = \"signing.key\"\nstore = \"store\"\n[block]\nmax_records = 200000\n\
             [recipients]\nfactory = \"factory.pub\"\n[sources.replay]\nkind = \"trace\"\nfile = \"{}\"\n\
             pace = \"fast\"\nat_end = \"shutdown\"\n[lanes.factory]\ncarries = \"raw\"\nrecipients = [\"factory\"]\n",
            common::fixtures().join(TRACE).display()
        ),
    )?;
    // Run the gateway with its own /run: returns its stderr and the entries received.
    let run = |format: &str, journal_stream: bool| -> Result<(String, Vec<_>)> {
        let err_path = d.join(format!("stderr-{format}-{journal_stream}"));
        let err_file = std::fs::File::create(&err_path)?;
        let mut cmd = Command::new("unshare");
        cmd.args(["-m", "sh", "-c"])
            .arg(
                "mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal && \
                 mount --bind \"$0\" /run/systemd/journal && exec \"$1\" --log-format \"$2\" run --config \"$3\"",
            )
            .arg(&jdir)
            .arg(env!("CARGO_BIN_EXE_iov-gateway"))
            .arg(format)
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null());
        if journal_stream {
            use std::os::unix::fs::MetadataExt as _;
            let m = err_file.metadata()?;
            cmd.env("JOURNAL_STREAM", format!("{}:{}", m.dev(), m.ino()));
        } else {
            cmd.env_remove("JOURNAL_STREAM");
        }
        let _ = std::fs::remove_dir_all(d.join("store"));
        let mut child = cmd.stderr(err_file).spawn()?;
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut entries = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match journal.recv(&mut buf) {
                Ok(n) => entries.push(journal_fields(&buf[..n])?),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if child.try_wait()?.is_some() {
                        break;
                    }
                }
                Err(e) => return Err(e.into()),
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("the gateway did not finish");
            }
        }
        ensure!(child.wait()?.success(), "gateway failed: {}", std::fs::read_to_string(&err_path)?);
        Ok((std::fs::read_to_string(&err_path)?, entries))
    };

    let (stderr, entries) = run("journald", false)?;
    let durable = entries
        .iter()
        .find(|e| e.get("MESSAGE").is_some_and(|m| m == b"block durable"))
        .with_context(|| format!("no 'block durable' entry among {} entries", entries.len()))?;
    println!(
        "journal entry: {:?}",
        durable.iter().map(|(k, v)| (k.clone(), text(v))).collect::<Vec<_>>()
    );
    ensure!(durable.get("HEIGHT").map(|v| text(v)) == Some("0".into()));
    ensure!(durable.get("RECORDS").map(|v| text(v)) == Some("200000".into()));
    ensure!(durable.get("PRIORITY").map(|v| text(v)) == Some("5".into()), "info is notice (5)");
    ensure!(durable.get("SYSLOG_IDENTIFIER").map(|v| text(v)) == Some("iov-gateway".into()));
    ensure!(durable.get("TARGET").map(|v| text(v)) == Some("gateway::writer".into()));
    ensure!(!stderr.contains("block durable"), "journald output leaves stderr: {stderr}");

    // auto: the journal when JOURNAL_STREAM names our stderr, text when it names something else.
    let (stderr, entries) = run("auto", true)?;
    ensure!(entries.iter().any(|e| e.get("MESSAGE").is_some_and(|m| m == b"block durable")));
    ensure!(!stderr.contains("block durable"), "{stderr}");
    let (stderr, entries) = run("auto", false)?;
    ensure!(entries.is_empty(), "text mode sent {} journal entries", entries.len());
    ensure!(stderr.contains("block durable height=0 records=200000"), "{stderr}");
    let (stderr, _) = run("json", false)?;
    let line = stderr.lines().find(|l| l.contains("block durable")).context("json line")?;
    let v: Value = serde_json::from_str(line)?;
    ensure!(v["height"] == 0 && v["level"] == "INFO" && v["target"] == "gateway::writer", "{line}");
    Ok(())
}
