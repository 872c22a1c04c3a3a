//! The real daemon on real SocketCAN: the test boots the test VM (`scripts/vm/run.sh`, Debian's
//! kernel under qemu with vcan0), runs the host-built `iov-gateway run` there with a socketcan
//! source on vcan0 and its RocksDB store in the share, replays a slice of the real GPS trace with
//! `canplayer` while `cangen` adds load, waits until the gateway has read (or counted as lost)
//! every frame, stops it with SIGTERM and powers off. On the host, `iovctl store verify` must
//! pass, and the raw lane, opened with the test's recipient key, must hold every `canplayer`
//! frame in order and every `cangen` frame in its send order, with anything missing exactly
//! accounted for by the gateway's drop counters.
//!
//! Never skips: without the VM (`scripts/vm/prepare.sh`) it fails and says what to run.

#![cfg(feature = "rocks")]

mod common;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use can_decoders::trace::{self, ErrorPolicy};
use can_decoders::{CanFrame, ChannelId, Direction, TimedFrame};
use ledger::block::BlockHeader;
use ledger::lane::Limits;
use ledger::record::Record;
use ledger::seal::open_lane_bytes;
use ledger::store::rocks::{Mode, Rocks};
use ledger::store::Store as _;

/// GPS trace frames `canplayer` replays (`-g 1`: as fast as the guest's one emulated CPU allows,
/// about 16,000 frames/s alone).
const REPLAYED: usize = 20_000;
/// Frames `cangen` sends meanwhile (id 0x123, not in the trace; an 8-byte little-endian counter).
const GENERATED: u64 = 6_000;
const CANGEN_ID: u32 = 0x123;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Fails with the command to run when the VM has not been prepared.
fn check_vm_prepared() -> Result<()> {
    let cache = std::env::var_os("IOV_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/iov-gateway")
    });
    let env = cache.join("vm/env");
    if !env.is_file() {
        bail!(
            "the test VM is not prepared ({} is missing): run `scripts/vm/prepare.sh` \
             (or `make deps`) from the repository root",
            env.display()
        );
    }
    for tool in ["qemu-system-x86_64", "canplayer", "cangen", "curl"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
        ensure!(found, "{tool} is not installed: run `scripts/vm/prepare.sh`");
    }
    Ok(())
}

/// A scratch directory the guest writes into; kept (and named) when the test fails.
struct Share {
    dir: PathBuf,
    keep: bool,
}

impl Share {
    fn new(name: &str) -> Result<Share> {
        let dir = std::env::temp_dir().join(format!("iov-vcan-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Share { dir, keep: true })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn read(&self, name: &str) -> String {
        fs::read_to_string(self.path(name)).unwrap_or_default()
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("guest files kept in {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The guest script. `wait_until` polls a shell condition every 0.1 s for at most `$2` tenths of
/// a second and fails the script (exit 90) otherwise.
fn guest_script(share: &Path, port: u16) -> String {
    let total = REPLAYED as u64 + GENERATED;
    format!(
        r#"set -u
S={share}
GW={gw}
wait_until() {{
  i=0
  until eval "$1"; do
    i=$((i+1))
    if [ $i -ge "$2" ]; then echo "guest: timed out waiting for: $1"; tail -n 20 $S/gw.err; exit 90; fi
    sleep 0.1
  done
}}
# Frames the gateway read or the kernel dropped before it could (every frame sent is one of them).
seen() {{
  curl -s http://127.0.0.1:{port}/metrics >$S/metrics.txt 2>/dev/null || {{ echo 0; return; }}
  awk '/^iov_frames_received_total\{{iface="vcan0"\}}/ {{ r = $2 }}
       /^iov_frames_dropped_total\{{iface="vcan0",reason="kernel"\}}/ {{ k = $2 }}
       END {{ print r + k }}' $S/metrics.txt
}}
RUST_LOG=info $GW run --config $S/gateway.toml >$S/gw.out 2>$S/gw.err &
GWPID=$!
wait_until 'grep -q " ready" $S/gw.err' 1200
t0=$(date +%s.%N)
cangen -n {GENERATED} -g 0.2 -p 10 -I {CANGEN_ID:X} -L 8 -D i vcan0 &
GEN=$!
canplayer -t -g 1 -I $S/slice.log vcan0=can1 || exit 91
tp=$(date +%s.%N)
wait $GEN || exit 92
t1=$(date +%s.%N)
wait_until '[ "$(seen)" -ge {total} ]' 1200
t2=$(date +%s.%N)
awk -v a=$t0 -v p=$tp -v b=$t1 -v c=$t2 'BEGIN {{ printf "guest: canplayer %.1f s, cangen %.1f s, the last frame read %.1f s after the last sent\n", p - a, b - a, c - b }}' | tee $S/timing.txt
kill -TERM $GWPID
wait $GWPID
status=$?
echo "guest: iov-gateway exited $status"
exit $status
"#,
        share = share.display(),
        gw = env!("CARGO_BIN_EXE_iov-gateway"),
    )
}

fn write_config(share: &Share, port: u16) -> Result<()> {
    // The DBC goes into the share: the guest sees the host's root read-only but mounts its own
    // /tmp, so a checkout under /tmp (a CI clone) is not visible to it.
    fs::copy(
        common::fixtures().join("dbc/css-electronics/canmod-gps.dbc"),
        share.path("canmod-gps.dbc"),
    )?;
    fs::write(
        share.path("gateway.toml"),
        format!(
            r#"
[gateway]
signing_key = "signing.key"
store = "store"
pipeline_capacity = 32768
[block]
max_records = 4000
max_age = "2s"
[[dbc]]
file = "canmod-gps.dbc"
[recipients]
factory = "factory.pub"
city = "city.pub"
[metrics]
listen = "127.0.0.1:{port}"
[sources.vcan]
kind = "socketcan"
interface = "vcan0"
[lanes.factory]
carries = "raw"
recipients = ["factory"]
[lanes.city]
carries = "signals"
recipients = ["city"]
signals = [
  {{ name = "gnss_speed.Speed", min_interval = "1s" }},
  {{ name = "gnss_pos.Latitude", min_interval = "1s", grid = 0.001 }},
]
"#,
        ),
    )?;
    Ok(())
}

/// The first `REPLAYED` frames of the GPS trace, written as a candump log on `can1`.
fn replay_slice(path: &Path) -> Result<Vec<CanFrame>> {
    let trace_path = common::fixtures().join("traces/canmod_gps_3BA199E2.log.gz");
    let frames: Vec<CanFrame> = trace::open(&trace_path, ErrorPolicy::Strict)?
        .take(REPLAYED)
        .map(|r| r.map(|t| t.frame))
        .collect::<std::result::Result<_, _>>()
        .context("reading the GPS trace")?;
    ensure!(frames.len() == REPLAYED);
    let file = fs::File::create(path)?;
    let mut w = trace::CandumpWriter::new(std::io::BufWriter::new(file));
    for (i, frame) in frames.iter().enumerate() {
        let t = TimedFrame {
            t_ns: 1_700_000_000_000_000_000 + i as u64 * 1_000_000,
            channel: ChannelId(0),
            direction: Direction::Rx,
            frame: *frame,
        };
        w.write(&t, "can1")?;
    }
    w.into_inner()?;
    Ok(frames)
}

/// What identifies a stored CAN record apart from its timestamp (the kernel's receive time).
fn essence(r: &Record) -> Option<(u32, u8, Vec<u8>)> {
    match r {
        Record::Can(c) => Some((c.id, c.flags.bits(), c.data().to_vec())),
        _ => None,
    }
}

/// A metric's value from the scrape the guest saved last.
fn metric(text: &str, line_prefix: &str) -> Result<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .with_context(|| format!("no {line_prefix} in the metrics:\n{text}"))
}

#[test]
fn the_daemon_stores_every_replayed_frame_from_real_socketcan_under_load() -> Result<()> {
    check_vm_prepared()?;
    let mut share = Share::new("daemon")?;
    let k = common::keys(&share.dir)?;
    let port = 9187;
    write_config(&share, port)?;
    let expected = replay_slice(&share.path("slice.log"))?;
    fs::write(share.path("guest.sh"), guest_script(&share.dir, port))?;
    let iovctl = common::iovctl()?;

    let out = Command::new(repo_root().join("scripts/vm/run.sh"))
        .args(["--share"])
        .arg(&share.dir)
        .args(["--timeout", "500", "--", "/bin/sh"])
        .arg(share.path("guest.sh"))
        .current_dir(&share.dir)
        .output()
        .context("running scripts/vm/run.sh")?;
    let console =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    fs::write(share.path("console.txt"), &console)?;
    ensure!(
        out.status.code() == Some(0),
        "guest failed ({:?}); gateway stdout:\n{}\nstderr tail:\n{}\nconsole tail:\n{}",
        out.status.code(),
        share.read("gw.out"),
        tail(&share.read("gw.err"), 30),
        tail(&console, 30)
    );

    // The host verifies what the guest left in the share.
    let v = Command::new(&iovctl)
        .args(["store", "verify", "--store"])
        .arg(share.path("store"))
        .arg("--key")
        .arg(share.path("signing.vkey"))
        .output()?;
    ensure!(
        v.status.success(),
        "iovctl store verify: {}{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );

    let store = Rocks::open(&share.path("store"), &k.signer.verifier(), Mode::Verify)?;
    let (mut raw, mut city) = (Vec::new(), 0usize);
    for h in 0..store.size() {
        let header = BlockHeader::from_bytes(&store.header(h)?.context("header")?)?;
        let lanes = store.lanes(h)?;
        for (i, l) in header.lanes.iter().enumerate() {
            let key = if l.name == "factory" { &k.factory } else { &k.city };
            let bytes = lanes.get(i).with_context(|| format!("block {h} lane {i}"))?;
            let recs = open_lane_bytes(&header, i, bytes, key, &Limits::default())?;
            if l.name == "factory" {
                raw.extend(recs);
            } else {
                city += recs.len();
            }
        }
    }
    let ifaces: HashMap<String, usize> = raw.iter().fold(HashMap::new(), |mut m, r| {
        if let Record::Can(c) = r {
            *m.entry(c.interface.to_string()).or_default() += 1;
        }
        m
    });
    ensure!(ifaces.keys().all(|i| i == "vcan0"), "interfaces in the raw lane: {ifaces:?}");

    // Split the raw lane: cangen's id vs the replayed trace (whose ids never include it).
    let vcan0: Arc<str> = Arc::from("vcan0");
    let want_replayed: Vec<_> = expected
        .iter()
        .map(|f| {
            let t =
                TimedFrame { t_ns: 0, channel: ChannelId(0), direction: Direction::Rx, frame: *f };
            gateway::pipeline::can_record(&vcan0, &t).map(|r| essence(&Record::Can(r)))
        })
        .collect::<std::result::Result<_, _>>()?;
    ensure!(want_replayed.iter().flatten().all(|e| e.0 != CANGEN_ID), "the slice has id 0x123");
    let (mut replayed, mut generated) = (Vec::new(), Vec::new());
    for r in &raw {
        let e = essence(r).context("a non-CAN record in the raw lane")?;
        if e.0 == CANGEN_ID {
            let mut b = [0u8; 8];
            b[..e.2.len().min(8)].copy_from_slice(&e.2[..e.2.len().min(8)]);
            generated.push(u64::from_le_bytes(b));
        } else {
            replayed.push(Some(e));
        }
    }

    let metrics = share.read("metrics.txt");
    let received = metric(&metrics, "iov_frames_received_total{iface=\"vcan0\"}")?;
    let dropped_full =
        metric(&metrics, "iov_frames_dropped_total{iface=\"vcan0\",reason=\"pipeline_full\"}")?;
    let kernel = metric(&metrics, "iov_frames_dropped_total{iface=\"vcan0\",reason=\"kernel\"}")?;
    let gw_out = share.read("gw.out");
    let summary = gw_out.lines().find(|l| l.contains("stopped:")).context("no summary line")?;
    eprintln!(
        "vcan daemon: sent {} (canplayer {REPLAYED}, cangen {GENERATED}); stored {} raw \
         ({} replayed, {} generated), {city} city samples in {} blocks; received {received}, \
         dropped pipeline_full {dropped_full}, kernel {kernel}\n{}{summary}",
        REPLAYED as u64 + GENERATED,
        raw.len(),
        replayed.len(),
        generated.len(),
        store.size(),
        share.read("timing.txt"),
    );
    // Every frame sent is stored or counted as dropped, exactly.
    ensure!(
        raw.len() as u64 + dropped_full + kernel == REPLAYED as u64 + GENERATED,
        "stored {} + dropped {dropped_full} + kernel {kernel} != sent",
        raw.len()
    );
    ensure!(received == raw.len() as u64 + dropped_full, "received {received} != stored + dropped");
    // cangen's frames in send order, no duplicates.
    ensure!(generated.windows(2).all(|w| w[0] < w[1]), "cangen frames out of order");
    ensure!(generated.iter().all(|&c| c < GENERATED), "a cangen counter out of range");
    if dropped_full + kernel == 0 {
        ensure!(generated.len() as u64 == GENERATED, "{} cangen frames stored", generated.len());
        ensure!(replayed.len() == REPLAYED, "{} of {REPLAYED} replayed frames", replayed.len());
        if let Some(i) = replayed.iter().zip(&want_replayed).position(|(a, b)| a != b) {
            bail!(
                "replayed frame {i} differs: stored {:?}, sent {:?}",
                replayed[i],
                want_replayed[i]
            );
        }
    } else {
        // With drops: what was kept is the sent sequence with some frames left out, in order.
        let mut it = want_replayed.iter();
        for (i, r) in replayed.iter().enumerate() {
            ensure!(it.any(|w| w == r), "stored replayed frame {i} is out of order or not sent");
        }
    }
    ensure!(city > 0, "the city lane is empty");
    share.keep = false;
    Ok(())
}
