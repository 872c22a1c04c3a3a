//! MQTT end to end against a real Mosquitto broker started by the test on a free loopback port
//! with its own config file: QoS 1 messages land in sealed blocks exactly once and are
//! acknowledged only then; a gateway killed between receipt and seal gets them redelivered.

// They need the RocksDB store (the default feature `rocks`).
#![cfg(feature = "rocks")]

mod common;

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use ledger::block::BlockHeader;
use ledger::lane::Limits;
use ledger::record::Record;
use ledger::seal::open_lane_bytes;
use ledger::store::rocks::{Mode, Rocks};
use ledger::store::Store as _;

struct Broker {
    child: Child,
    port: u16,
}

impl Broker {
    fn start(dir: &Path) -> Result<Broker> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        Broker::start_on(dir, port)
    }

    fn start_on(dir: &Path, port: u16) -> Result<Broker> {
        Broker::start_with(dir, port, "allow_anonymous true\n")
    }

    /// A broker on `port` with `extra` config lines (authentication).
    fn start_with(dir: &Path, port: u16, extra: &str) -> Result<Broker> {
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            // `user root`: a broker started as root keeps that identity to read the test's key
            // files in its 0700 temp dir (ignored when not started as root).
            // `max_queued_messages 0`: no queue limit; Mosquitto's default (1000) drops QoS 1
            // messages for a client that backpressure slows down.
            format!(
                "listener {port} 127.0.0.1\nuser root\n{extra}persistence false\nmax_inflight_messages 100\nmax_queued_messages 0\n"
            ),
        )?;
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting mosquitto (scripts/deps.sh system installs it)")?;
        let b = Broker { child, port };
        let end = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            ensure!(Instant::now() < end, "mosquitto did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(b)
    }

    /// Publishes each payload as one QoS 1 message (mosquitto_pub -l: one message per line).
    fn publish(&self, topic: &str, payloads: &[String]) -> Result<()> {
        let mut p = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q", "1", "-t", topic, "-l"])
            .stdin(Stdio::piped())
            .spawn()?;
        {
            let mut stdin = p.stdin.take().context("stdin")?;
            for m in payloads {
                writeln!(stdin, "{m}")?;
            }
        }
        ensure!(p.wait()?.success(), "mosquitto_pub failed");
        Ok(())
    }

    /// The first message the broker delivers to `client_id`'s persistent session.
    fn first_for_session(&self, client_id: &str) -> Result<String> {
        self.first_for_session_v(client_id, &[])
    }

    /// The same with extra mosquitto_sub options (`-V mqttv5 -x SECONDS`).
    fn first_for_session_v(&self, client_id: &str, version: &[&str]) -> Result<String> {
        let out = Command::new("mosquitto_sub")
            .args(version)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-q",
                "1",
                "-c",
                "-i",
                client_id,
            ])
            .args(["-t", "v/#", "-C", "1", "-W", "20"])
            .output()?;
        ensure!(out.status.success(), "mosquitto_sub: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(d: &Path, port: u16, max_age: &str) -> Result<std::path::PathBuf> {
    write_config_auth(d, port, max_age, "")
}

fn write_config_auth(d: &Path, port: u16, max_age: &str, auth: &str) -> Result<std::path::PathBuf> {
    write_config_full(d, port, max_age, auth, "")
}

fn write_config_full(
    d: &Path,
    port: u16,
    max_age: &str,
    auth: &str,
    gateway: &str,
) -> Result<std::path::PathBuf> {
    let config = d.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[gateway]
signing_key = "signing.key"
store = "store"
shutdown_grace = "5s"
{gateway}
[block]
max_age = "{max_age}"
[recipients]
factory = "factory.pub"
city = "city.pub"
[sources.broker]
kind = "mqtt"
host = "127.0.0.1"
port = {port}
client_id = "gw-e2e"
{auth}
reconnect_min = "50ms"
reconnect_max = "1s"
topics = [{{ filter = "v/+/t", qos = 1 }}]
[[sources.broker.layouts]]
topic = "v/+/t"
format = "json"
fields = {{ "t.speed" = "speed" }}
[lanes.factory]
carries = "raw"
recipients = ["factory"]
[lanes.city]
carries = "signals"
recipients = ["city"]
signals = [{{ name = "t.speed" }}]
"#
        ),
    )?;
    Ok(config)
}

/// Every MQTT payload in the store's factory lanes, in order.
fn stored_payloads(d: &Path, k: &common::Keys) -> Result<Vec<String>> {
    let store = Rocks::open(&d.join("store"), &k.signer.verifier(), Mode::Verify)?;
    let mut out = Vec::new();
    for h in 0..store.size() {
        let header = BlockHeader::from_bytes(&store.header(h)?.context("header")?)?;
        let i = header.lanes.iter().position(|l| l.name == "factory").context("factory lane")?;
        let lanes = store.lanes(h)?;
        for r in open_lane_bytes(&header, i, &lanes[i], &k.factory, &Limits::default())? {
            match r {
                Record::Mqtt(m) => out.push(String::from_utf8(m.payload)?),
                other => bail!("unexpected record {other:?}"),
            }
        }
    }
    Ok(out)
}

fn messages(n: usize, tag: &str) -> Vec<String> {
    (0..n).map(|i| format!(r#"{{"speed": {i}, "tag": "{tag}-{i}"}}"#)).collect()
}

#[test]
fn qos1_messages_are_sealed_exactly_once_and_acknowledged_after_durability() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    let k = common::keys(d)?;
    let broker = Broker::start(d)?;
    let config = write_config(d, broker.port, "200ms")?;
    let mut gw = common::Gateway::start(&config)?;
    gw.wait_for(Duration::from_secs(20), |l| l.contains("MQTT subscribed"))?;

    let sent = messages(500, "a");
    broker.publish("v/7/t", &sent)?;
    // Synchronise on the writer's log: every message is in a durable block.
    let mut durable = 0;
    gw.wait_for(Duration::from_secs(60), |l| {
        if l.contains("block durable") {
            durable += common::durable_records(&[l.to_owned()]);
        }
        // Each message gives one raw record and one signal sample.
        durable >= 2 * sent.len() as u64
    })?;
    gw.signal("-TERM")?;
    let (status, stdout) = gw.wait_exit(Duration::from_secs(30))?;
    ensure!(status.success(), "gateway exited {status}:\n{}", gw.seen.join("\n"));
    println!("{}", stdout.trim());

    let got = stored_payloads(d, &k)?;
    ensure!(
        got == sent,
        "stored {} payloads, sent {}; first differing: {:?}",
        got.len(),
        sent.len(),
        got.iter().zip(&sent).position(|(a, b)| a != b)
    );

    // Nothing is left unacknowledged in the gateway's session: the first message the broker
    // delivers to it now is one published after the gateway stopped.
    broker.publish("v/7/t", &["sentinel".to_owned()])?;
    let first = broker.first_for_session("gw-e2e")?;
    ensure!(first == "sentinel", "the broker redelivered {first:?}: it was not acknowledged");
    Ok(())
}

/// A gateway that has received 50 QoS 1 messages (payloads tagged `tag`) and sealed none of
/// them: blocks are sealed only by the shutdown (block age 1 h).
fn holding_50_unsealed(
    d: &Path,
    broker: &Broker,
    tag: &str,
) -> Result<(common::Gateway, Vec<String>)> {
    let config = write_config(d, broker.port, "1h")?;
    let mut gw = common::Gateway::start(&config)?;
    gw.wait_for(Duration::from_secs(20), |l| l.contains("MQTT subscribed"))?;
    let sent = messages(50, tag);
    broker.publish("v/7/t", &sent)?;
    gw.wait_for(Duration::from_secs(30), |l| {
        l.contains("MQTT message received") && l.contains("seq=50")
    })?;
    ensure!(common::durable_records(&gw.seen) == 0, "a block was sealed before the test's signal");
    Ok((gw, sent))
}

#[test]
fn messages_received_but_not_sealed_are_redelivered_after_a_kill() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    let k = common::keys(d)?;
    let broker = Broker::start(d)?;
    let (mut gw, sent) = holding_50_unsealed(d, &broker, "k")?;
    gw.signal("-KILL")?;
    let (status, _) = gw.wait_exit(Duration::from_secs(10))?;
    ensure!(!status.success(), "killed gateway exited {status}");

    // Restart with a short block age: the broker redelivers the unacknowledged messages.
    let config = write_config(d, broker.port, "200ms")?;
    let mut gw = common::Gateway::start(&config)?;
    let mut durable = 0;
    gw.wait_for(Duration::from_secs(60), |l| {
        if l.contains("block durable") {
            durable += common::durable_records(&[l.to_owned()]);
        }
        durable >= 2 * sent.len() as u64
    })?;
    gw.signal("-TERM")?;
    let (status, _) = gw.wait_exit(Duration::from_secs(30))?;
    ensure!(status.success(), "gateway exited {status}:\n{}", gw.seen.join("\n"));
    let got = stored_payloads(d, &k)?;
    ensure!(got == sent, "after the kill: stored {:?}, sent {} messages", got.len(), sent.len());
    Ok(())
}

#[test]
fn sigterm_seals_the_partial_block_and_acknowledges_it_before_exit() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    let k = common::keys(d)?;
    let broker = Broker::start(d)?;
    let (mut gw, sent) = holding_50_unsealed(d, &broker, "t")?;
    gw.signal("-TERM")?;
    let (status, _) = gw.wait_exit(Duration::from_secs(30))?;
    ensure!(status.success(), "gateway exited {status}:\n{}", gw.seen.join("\n"));
    ensure!(gw.seen.iter().any(|l| l.contains("sealing the partial block")), "no partial block");
    ensure!(stored_payloads(d, &k)? == sent, "the partial block does not hold every message");
    broker.publish("v/7/t", &["sentinel".to_owned()])?;
    let first = broker.first_for_session("gw-e2e")?;
    ensure!(
        first == "sentinel",
        "the broker redelivered {first:?}: the last block was not acknowledged"
    );
    Ok(())
}

#[test]
fn the_gateway_reconnects_after_the_broker_restarts_and_resubscribes() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    let k = common::keys(d)?;
    let broker = Broker::start(d)?;
    let port = broker.port;
    let config = write_config(d, port, "200ms")?;
    let mut gw = common::Gateway::start(&config)?;
    gw.wait_for(Duration::from_secs(20), |l| l.contains("MQTT subscribed"))?;
    let first = messages(20, "before");
    broker.publish("v/7/t", &first)?;
    let mut durable = 0;
    gw.wait_for(Duration::from_secs(30), |l| {
        durable += common::durable_records(&[l.to_owned()]);
        durable >= 2 * first.len() as u64
    })?;
    drop(broker);
    gw.wait_for(Duration::from_secs(20), |l| l.contains("MQTT connection lost"))?;
    let broker = Broker::start_on(d, port)?;
    gw.wait_for(Duration::from_secs(30), |l| l.contains("MQTT subscribed"))?;
    let second = messages(20, "after");
    broker.publish("v/7/t", &second)?;
    gw.wait_for(Duration::from_secs(30), |l| {
        l.contains("MQTT message received") && l.contains("seq=40")
    })?;
    gw.signal("-TERM")?;
    let (status, stdout) = gw.wait_exit(Duration::from_secs(30))?;
    ensure!(status.success(), "gateway exited {status}:\n{}", gw.seen.join("\n"));
    ensure!(stdout.contains("reconnects=") && !stdout.contains("reconnects=0"), "{stdout}");
    let got = stored_payloads(d, &k)?;
    let want: Vec<String> = first.into_iter().chain(second).collect();
    ensure!(got == want, "stored {} payloads, want {}", got.len(), want.len());
    Ok(())
}

#[test]
fn username_and_password_from_the_config_are_used_and_a_wrong_password_is_refused() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    let k = common::keys(d)?;
    let passwd = d.join("mosquitto.passwd");
    let st = Command::new("mosquitto_passwd")
        .args(["-c", "-b"])
        .arg(&passwd)
        .args(["gateway", "s3cret"])
        .status()?;
    ensure!(st.success(), "mosquitto_passwd failed");
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let extra = format!("allow_anonymous false\npassword_file {}\n", passwd.display());
    let broker = Broker::start_with(d, port, &extra)?;
    let pw = d.join("mqtt.password");
    std::fs::write(&pw, "wrong\n")?;
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let auth = "username = \"gateway\"\npassword_file = \"mqtt.password\"";
    let config = write_config_auth(d, port, "200ms", auth)?;
    let mut gw = common::Gateway::start(&config)?;
    let refused = gw.wait_for(Duration::from_secs(20), |l| l.contains("MQTT connection lost"))?;
    ensure!(
        !gw.seen.iter().any(|l| l.contains("MQTT subscribed")),
        "connected with a wrong password"
    );
    println!("wrong password: {refused}");
    gw.signal("-TERM")?;
    let (status, _) = gw.wait_exit(Duration::from_secs(30))?;
    ensure!(status.success(), "gateway exited {status}");

    std::fs::remove_file(&pw)?;
    std::fs::write(&pw, "s3cret\n")?;
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let mut gw = common::Gateway::start(&config)?;
    gw.wait_for(Duration::from_secs(20), |l| l.contains("MQTT subscribed"))?;
    let sent = messages(10, "auth");
    let mut p = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-u", "gateway", "-P", "s3cret"])
        .args(["-q", "1", "-t", "v/7/t", "-l"])
        .stdin(Stdio::piped())
        .spawn()?;
    {
        let mut stdin = p.stdin.take().context("stdin")?;
        for m in &sent {
            writeln!(stdin, "{m}")?;
        }
    }
    ensure!(p.wait()?.success());
    let mut durable = 0;
    gw.wait_for(Duration::from_secs(30), |l| {
        durable += common::durable_records(&[l.to_owned()]);
        durable >= 2 * sent.len() as u64
    })?;
    gw.signal("-TERM")?;
    let (status, _) = gw.wait_exit(Duration::from_secs(30))?;
    ensure!(status.success(), "gateway exited {status}");
    ensure!(stored_payloads(d, &k)? == sent);
    drop(broker);
    Ok(())
}

/// A CA and a server certificate for 127.0.0.1, made with openssl.
fn make_certs(d: &Path) -> Result<()> {
    let run = |args: &[&str]| -> Result<()> {
        let out = Command::new("openssl").args(args).current_dir(d).output()?;
        ensure!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(())
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=iov test CA",
    ])?;
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ])?;
    std::fs::write(d.join("san.ext"), "subjectAltName=IP:127.0.0.1\n")?;
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ])?;
    Ok(())
}

#[test]
fn tls_to_the_broker_with_the_configured_ca() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    let k = common::keys(d)?;
    make_certs(d)?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let extra = format!(
        "allow_anonymous true\ncafile {0}/ca.pem\ncertfile {0}/server.pem\nkeyfile {0}/server.key\n",
        d.display()
    );
    let broker = Broker::start_with(d, port, &extra)?;
    let config = write_config_auth(d, port, "200ms", "tls = { ca_file = \"ca.pem\" }")?;
    let mut gw = common::Gateway::start(&config)?;
    gw.wait_for(Duration::from_secs(20), |l| l.contains("MQTT subscribed"))?;
    let sent = messages(10, "tls");
    let mut p = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--cafile"])
        .arg(d.join("ca.pem"))
        .args(["-q", "1", "-t", "v/7/t", "-l"])
        .stdin(Stdio::piped())
        .spawn()?;
    {
        let mut stdin = p.stdin.take().context("stdin")?;
        for m in &sent {
            writeln!(stdin, "{m}")?;
        }
    }
    ensure!(p.wait()?.success(), "mosquitto_pub over TLS failed");
    let mut durable = 0;
    gw.wait_for(Duration::from_secs(30), |l| {
        durable += common::durable_records(&[l.to_owned()]);
        durable >= 2 * sent.len() as u64
    })?;
    gw.signal("-TERM")?;
    let (status, _) = gw.wait_exit(Duration::from_secs(30))?;
    ensure!(status.success(), "gateway exited {status}");
    ensure!(stored_payloads(d, &k)? == sent);

    // A CA that did not sign the broker's certificate: the handshake is refused.
    std::fs::rename(d.join("ca.pem"), d.join("real-ca.pem"))?;
    let other = tempfile::tempdir()?;
    make_certs(other.path())?;
    std::fs::copy(other.path().join("ca.pem"), d.join("ca.pem"))?;
    let mut gw = common::Gateway::start(&config)?;
    let line = gw.wait_for(Duration::from_secs(20), |l| l.contains("MQTT connection lost"))?;
    ensure!(!gw.seen.iter().any(|l| l.contains("MQTT subscribed")), "connected with a wrong CA");
    println!("wrong CA: {line}");
    gw.signal("-TERM")?;
    let (status, _) = gw.wait_exit(Duration::from_secs(30))?;
    ensure!(status.success(), "gateway exited {status}");
    drop(broker);
    Ok(())
}

#[test]
fn a_slow_pipeline_slows_mqtt_without_losing_or_duplicating() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    let k = common::keys(d)?;
    let broker = Broker::start(d)?;
    // One-slot channels and tiny blocks: the MQTT task waits on the pipeline, the pipeline on
    // the writer (one synced append per 50 records), the broker on unacknowledged messages.
    let gw_extra = "pipeline_capacity = 1\nwriter_capacity = 1";
    let config = write_config_full(d, broker.port, "1h", "", gw_extra)?;
    let text =
        std::fs::read_to_string(&config)?.replace("[block]\n", "[block]\nmax_records = 25\n");
    std::fs::write(&config, text)?;
    let mut gw = common::Gateway::start(&config)?;
    gw.wait_for(Duration::from_secs(20), |l| l.contains("MQTT subscribed"))?;
    let sent = messages(2000, "slow");
    broker.publish("v/7/t", &sent)?;
    let mut durable = 0;
    gw.wait_for(Duration::from_secs(120), |l| {
        durable += common::durable_records(&[l.to_owned()]);
        durable >= 2 * sent.len() as u64
    })?;
    gw.signal("-TERM")?;
    let (status, _) = gw.wait_exit(Duration::from_secs(30))?;
    ensure!(status.success(), "gateway exited {status}");
    let got = stored_payloads(d, &k)?;
    ensure!(got == sent, "stored {} payloads, sent {}", got.len(), sent.len());
    broker.publish("v/7/t", &["sentinel".to_owned()])?;
    let first = broker.first_for_session("gw-e2e")?;
    let warnings: Vec<&String> = gw.seen.iter().filter(|l| l.contains("WARN")).collect();
    ensure!(first == "sentinel", "redelivered {first:?}; warnings: {warnings:#?}");
    Ok(())
}

#[test]
fn mqtt5_session_survives_a_kill_and_everything_is_sealed_once_and_acknowledged() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    let k = common::keys(d)?;
    let broker = Broker::start(d)?;
    let config = write_config_auth(d, broker.port, "1h", "protocol = \"5\"")?;
    let mut gw = common::Gateway::start(&config)?;
    gw.wait_for(Duration::from_secs(20), |l| l.contains("MQTT subscribed"))?;
    let sent = messages(50, "v5");
    broker.publish("v/7/t", &sent)?;
    gw.wait_for(Duration::from_secs(30), |l| {
        l.contains("MQTT message received") && l.contains("seq=50")
    })?;
    gw.signal("-KILL")?;
    let (status, _) = gw.wait_exit(Duration::from_secs(10))?;
    ensure!(!status.success(), "killed gateway exited {status}");

    let config = write_config_auth(d, broker.port, "200ms", "protocol = \"5\"")?;
    let mut gw = common::Gateway::start(&config)?;
    let resumed = gw.wait_for(Duration::from_secs(20), |l| l.contains("MQTT connected"))?;
    ensure!(resumed.contains("session_present=true"), "MQTT 5 session not kept: {resumed}");
    let mut durable = 0;
    gw.wait_for(Duration::from_secs(60), |l| {
        durable += common::durable_records(&[l.to_owned()]);
        durable >= 2 * sent.len() as u64
    })?;
    gw.signal("-TERM")?;
    let (status, _) = gw.wait_exit(Duration::from_secs(30))?;
    ensure!(status.success(), "gateway exited {status}:\n{}", gw.seen.join("\n"));
    ensure!(stored_payloads(d, &k)? == sent, "MQTT 5: stored payloads differ from the sent ones");
    broker.publish("v/7/t", &["sentinel".to_owned()])?;
    let first = broker.first_for_session_v("gw-e2e", &["-V", "mqttv5", "-x", "600"])?;
    ensure!(first == "sentinel", "the broker redelivered {first:?}");
    Ok(())
}
