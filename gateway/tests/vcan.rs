//! The SocketCAN source on real SocketCAN: each test boots the test VM (`scripts/vm/run.sh`:
//! Debian's kernel under qemu with vcan0), runs the host-built `can_capture` example there against
//! `canplayer` or `cangen`, and checks on the host, after the guest powered off, what arrived.
//!
//! These tests never skip: without the VM (`scripts/vm/prepare.sh`) they fail and say what to run.
//! VM boots are serialised (one at a time on a shared machine keeps their timing sane).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{bail, ensure, Context};
use can_decoders::trace::{self, CandumpReader, CandumpWriter, ErrorPolicy};
use can_decoders::{CanFrame, CanId, ChannelId, Direction, FrameKind, TimedFrame};

static VM: Mutex<()> = Mutex::new(());

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Fails with the command to run when the VM has not been prepared.
fn check_vm_prepared() -> anyhow::Result<()> {
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
    for tool in ["qemu-system-x86_64", "canplayer", "cangen"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
        ensure!(found, "{tool} is not installed: run `scripts/vm/prepare.sh`");
    }
    Ok(())
}

/// The `can_capture` example, built (release, this target dir) if it is not yet.
fn capture_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the test binary")?;
    // target/<profile>/deps/vcan-<hash> -> target/<profile>/examples/can_capture
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test binary is not in <target>/<profile>/deps")?;
    let bin = profile_dir.join("examples/can_capture");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "-q", "-p", "gateway", "--example", "can_capture"])
        .current_dir(repo_root())
        .status()
        .context("running cargo build for can_capture")?;
    ensure!(status.success(), "building can_capture failed ({status})");
    ensure!(bin.is_file(), "{} missing after the build", bin.display());
    Ok(bin)
}

/// A scratch directory the guest writes into; kept (and named in the failure) when a test fails.
struct Share {
    dir: PathBuf,
}

impl Share {
    fn new(name: &str) -> anyhow::Result<Share> {
        let dir = std::env::temp_dir().join(format!("iov-vcan-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Share { dir })
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
        if std::thread::panicking() {
            eprintln!("guest files kept in {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Shell helpers every guest script starts with. `wait_for PATTERN FILE` waits (at most 30 s)
/// for a line of FILE to match, and fails the script otherwise.
const PRELUDE: &str = r#"set -u
wait_for() {
  i=0
  until grep -q "$1" "$2" 2>/dev/null; do
    i=$((i+1))
    if [ $i -ge 600 ]; then echo "guest: timed out waiting for '$1' in $2"; cat "$2"; exit 90; fi
    sleep 0.05
  done
}
"#;

/// Boots the VM on `script` (run with /bin/sh in the guest, in the share) and returns its status
/// and console output. `CAP` in the script is the capture binary, `S` the share directory.
fn run_guest(share: &Share, script: &str) -> anyhow::Result<(i32, String)> {
    check_vm_prepared()?;
    let bin = capture_binary()?;
    let body = format!("{PRELUDE}CAP={}\nS={}\n{script}", bin.display(), share.dir.display());
    fs::write(share.path("guest.sh"), body).context("writing the guest script")?;
    let _one_vm_at_a_time = VM.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new(repo_root().join("scripts/vm/run.sh"))
        .args(["--share"])
        .arg(&share.dir)
        .args(["--timeout", "400", "--", "/bin/sh"])
        .arg(share.path("guest.sh"))
        .output()
        .context("running scripts/vm/run.sh")?;
    let console =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    fs::write(share.path("console.txt"), &console).context("saving the console")?;
    Ok((out.status.code().unwrap_or(-1), console))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The `stats k=v ...` line `can_capture` prints last.
fn stats(share: &Share) -> anyhow::Result<HashMap<String, String>> {
    stats_in(share, "cap.out")
}

/// The `stats k=v ...` line of the capture whose stdout went to `file` in the share.
fn stats_in(share: &Share, file: &str) -> anyhow::Result<HashMap<String, String>> {
    let out = share.read(file);
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with("stats "))
        .with_context(|| format!("no stats line in cap.out:\n{out}"))?;
    Ok(line
        .split_whitespace()
        .skip(1)
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

fn num(stats: &HashMap<String, String>, key: &str) -> u64 {
    stats.get(key).and_then(|v| v.parse().ok()).unwrap_or(u64::MAX)
}

fn read_log(path: &Path) -> anyhow::Result<Vec<TimedFrame>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    CandumpReader::new(BufReader::new(file), ErrorPolicy::Strict)
        .map(|r| r.with_context(|| format!("reading {}", path.display())))
        .collect()
}

fn write_log(path: &Path, channel: &str, frames: &[CanFrame]) -> anyhow::Result<()> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = CandumpWriter::new(std::io::BufWriter::new(file));
    for (i, frame) in frames.iter().enumerate() {
        let t = TimedFrame {
            t_ns: 1_700_000_000_000_000_000 + i as u64 * 1_000_000,
            channel: ChannelId(0),
            direction: Direction::Rx,
            frame: *frame,
        };
        w.write(&t, channel)?;
    }
    w.into_inner()?;
    Ok(())
}

/// Frame by frame: ids, kinds (flags), data and raw DLC equal; timestamps not compared.
fn assert_same_frames(expected: &[CanFrame], got: &[TimedFrame]) {
    for (i, (e, g)) in expected.iter().zip(got).enumerate() {
        assert_eq!(
            (e.id, e.kind, e.data(), e.len(), e.len8_dlc),
            (g.frame.id, g.frame.kind, g.frame.data(), g.frame.len(), g.frame.len8_dlc),
            "frame {i} differs"
        );
    }
    assert_eq!(expected.len(), got.len(), "frame counts differ");
}

fn assert_guest_ok(status: i32, console: &str, share: &Share) {
    assert_eq!(
        status,
        0,
        "guest script failed ({status}); capture stdout:\n{}\nstderr:\n{}\nconsole tail:\n{}",
        share.read("cap.out"),
        tail(&share.read("cap.err"), 20),
        tail(console, 30)
    );
}

const GPS_FRAMES: usize = 20_000;

#[test]
fn replayed_real_trace_arrives_complete_and_in_order() -> anyhow::Result<()> {
    let share = Share::new("replay")?;
    let trace_path = repo_root().join("fixtures/traces/canmod_gps_3BA199E2.log.gz");
    let reader = trace::open(&trace_path, ErrorPolicy::Strict)?;
    let expected: Vec<CanFrame> = reader
        .take(GPS_FRAMES)
        .map(|r| r.map(|t| t.frame))
        .collect::<Result<_, _>>()
        .context("reading the GPS trace")?;
    assert_eq!(expected.len(), GPS_FRAMES);
    write_log(&share.path("slice.log"), "can1", &expected)?;

    // canplayer without timing (-t), `-g 1`: measured about 16,000 frames/s in the guest (the
    // gap is not honoured that finely under TCG), far more than a busy 500 kbit/s bus carries.
    let script = format!(
        "$CAP --iface vcan0 --out $S/cap.log --count {GPS_FRAMES} --seconds 240 \
           --rcvbuf 4194304 >$S/cap.out 2>$S/cap.err &\n\
         wait_for '^ready' $S/cap.out\n\
         canplayer -t -g 1 -I $S/slice.log vcan0=can1 || exit 91\n\
         wait $!\n"
    );
    let (status, console) = run_guest(&share, &script)?;
    assert_guest_ok(status, &console, &share);
    let got = read_log(&share.path("cap.log"))?;
    assert_same_frames(&expected, &got);
    let s = stats(&share)?;
    assert_eq!(num(&s, "delivered"), GPS_FRAMES as u64, "{s:?}");
    assert_eq!((num(&s, "dropped_full"), num(&s, "kernel_drops")), (0, 0), "{s:?}");
    assert_eq!(s.get("clock").map(String::as_str), Some("kernel"), "{s:?}");
    assert!(got.windows(2).all(|w| w[0].t_ns <= w[1].t_ns), "kernel timestamps go backwards");
    if let (Some(first), Some(last)) = (got.first(), got.last()) {
        let secs = (last.t_ns - first.t_ns) as f64 / 1e9;
        eprintln!(
            "replay: {GPS_FRAMES} frames in {secs:.2} s ({:.0} frames/s)",
            GPS_FRAMES as f64 / secs
        );
    }
    Ok(())
}

/// CAN FD of every length and flag, extended ids, remote frames and error frames, replayed
/// through a CAN FD capable vcan (MTU 72).
#[test]
fn fd_remote_and_error_frames_arrive_intact() -> anyhow::Result<()> {
    let share = Share::new("fd")?;
    let id = |raw: u32| CanId::standard(raw).context("11-bit");
    let ext = |raw: u32| CanId::extended(raw).context("29-bit");
    let mut expected = Vec::new();
    for (i, len) in [0usize, 1, 5, 8, 12, 16, 20, 24, 32, 48, 64].into_iter().enumerate() {
        for (brs, esi) in [(false, false), (true, false), (false, true), (true, true)] {
            let data: Vec<u8> = (0..len).map(|b| (b * 7 + i) as u8).collect();
            let kind = FrameKind::Fd { brs, esi };
            expected.push(CanFrame::new(id(0x100 + i as u32)?, kind, &data)?);
            expected.push(CanFrame::new(ext(0x1234_5600 + i as u32)?, kind, &data)?);
        }
        expected.push(CanFrame::new(id(0x7FF)?, FrameKind::Data, &[i as u8; 8])?);
        expected.push(CanFrame::remote(id(0x321)?, (i % 9) as u8)?);
        expected.push(CanFrame::remote(ext(0x0ABC_DEF0)?, 8)?);
        // Bus-off (CAN_ERR_BUSOFF) and controller problems (CAN_ERR_CRTL, RX warning level).
        expected.push(CanFrame::new(ext(0x40)?, FrameKind::Error, &[0; 8])?);
        expected.push(CanFrame::new(ext(0x04)?, FrameKind::Error, &[0, 0x04, 0, 0, 0, 0, 0, 0])?);
    }
    write_log(&share.path("fd.log"), "can0", &expected)?;
    let n = expected.len();
    let script = format!(
        "$CAP --iface vcan0 --out $S/cap.log --count {n} --seconds 120 >$S/cap.out 2>$S/cap.err &\n\
         wait_for '^ready' $S/cap.out\n\
         canplayer -t -g 1 -I $S/fd.log vcan0=can0 || exit 91\n\
         wait $!\n"
    );
    let (status, console) = run_guest(&share, &script)?;
    assert_guest_ok(status, &console, &share);
    assert_same_frames(&expected, &read_log(&share.path("cap.log"))?);
    let s = stats(&share)?;
    assert_eq!(num(&s, "error_frames"), 22, "{s:?}");
    assert_eq!(num(&s, "dropped_full") + num(&s, "kernel_drops"), 0, "{s:?}");
    Ok(())
}

/// cangen's `-D i` payload: a little-endian counter.
fn counter(frame: &TimedFrame) -> u64 {
    let mut b = [0u8; 8];
    b[..frame.frame.len().min(8)].copy_from_slice(&frame.frame.data()[..frame.frame.len().min(8)]);
    u64::from_le_bytes(b)
}

#[test]
fn receive_coalescing_reads_in_batches_and_loses_nothing() -> anyhow::Result<()> {
    const SENT: u64 = 3_000;
    let share = Share::new("coalesce")?;
    // The same load (cangen, a frame per millisecond) read once frame by frame (coalescing off)
    // and once with the default 20 ms coalescing.
    let script = format!(
        "for c in 0 20; do\n\
           $CAP --iface vcan0 --out $S/cap$c.log --count {SENT} --seconds 200 --coalesce-ms $c \
             >$S/cap$c.out 2>$S/cap$c.err &\n\
           wait_for '^ready' $S/cap$c.out\n\
           cangen -n {SENT} -g 1 -p 10 -I 123 -L 8 -D i vcan0 || exit 91\n\
           wait $! || exit 92\n\
         done\n"
    );
    let (status, console) = run_guest(&share, &script)?;
    assert_guest_ok(status, &console, &share);
    let mut batch = Vec::new();
    for c in [0, 20] {
        let s = stats_in(&share, &format!("cap{c}.out"))?;
        let got = read_log(&share.path(&format!("cap{c}.log")))?;
        assert_eq!(num(&s, "delivered"), SENT, "coalesce {c} ms: {s:?}");
        assert_eq!((num(&s, "dropped_full"), num(&s, "kernel_drops")), (0, 0), "{s:?}");
        assert_eq!(got.len() as u64, SENT);
        assert!(got.windows(2).all(|w| counter(&w[0]) < counter(&w[1])), "order broken");
        assert!(got.windows(2).all(|w| w[0].t_ns <= w[1].t_ns), "kernel timestamps go backwards");
        let wakeups = num(&s, "wakeups");
        assert!(wakeups > 0 && wakeups <= SENT, "{s:?}");
        let per_wakeup = SENT as f64 / wakeups as f64;
        eprintln!(
            "coalesce {c} ms: {SENT} frames in {wakeups} wake-ups ({per_wakeup:.1} frames each), \
             capture process CPU {} ms",
            num(&s, "cpu_ms")
        );
        batch.push(per_wakeup);
    }
    // At about 1,000 frames/s, 20 ms holds about 20 frames; TCG's timing is loose, so the bound
    // is well below that, and relative to the uncoalesced read of the same load.
    assert!(batch[1] >= 5.0, "coalescing read {:.1} frames per wake-up", batch[1]);
    assert!(batch[1] >= 3.0 * batch[0], "coalesced {:.1} vs plain {:.1}", batch[1], batch[0]);
    Ok(())
}

#[test]
fn a_full_pipeline_drops_new_frames_and_counts_every_one() -> anyhow::Result<()> {
    const SENT: u64 = 20_000;
    let share = Share::new("overload")?;
    // A 16-frame channel and a consumer that takes 1 ms per frame, against cangen at full speed.
    let script = format!(
        "$CAP --iface vcan0 --out $S/cap.log --count {SENT} --seconds 240 --capacity 16 \
           --consumer-delay-ms 1 --rcvbuf 4194304 >$S/cap.out 2>$S/cap.err &\n\
         wait_for '^ready' $S/cap.out\n\
         cangen -n {SENT} -g 0 -p 10 -I 123 -L 8 -D i vcan0 || exit 91\n\
         wait $!\n"
    );
    let (status, console) = run_guest(&share, &script)?;
    assert_guest_ok(status, &console, &share);
    let s = stats(&share)?;
    let got = read_log(&share.path("cap.log"))?;
    let (delivered, dropped, kernel) =
        (num(&s, "delivered"), num(&s, "dropped_full"), num(&s, "kernel_drops"));
    eprintln!("overload: sent {SENT}, delivered {delivered}, dropped_full {dropped}, kernel_drops {kernel}");
    assert_eq!(delivered + dropped + kernel, SENT, "every frame is delivered or counted: {s:?}");
    assert_eq!(num(&s, "received"), delivered + dropped, "{s:?}");
    assert!(dropped > 0, "the pipeline never filled: {s:?}");
    assert_eq!(got.len() as u64, delivered, "the log holds what was delivered");
    // What was kept is in send order, without duplicates, starting with the first frame.
    assert_eq!(got.first().map(counter), Some(0));
    assert!(got.windows(2).all(|w| counter(&w[0]) < counter(&w[1])), "order broken");
    assert!(got.iter().all(|f| counter(f) < SENT));
    Ok(())
}

#[test]
fn a_full_socket_queue_is_counted_as_kernel_drops() -> anyhow::Result<()> {
    const SENT: u64 = 20_000;
    let share = Share::new("kernel-drops")?;
    // The smallest receive buffer the kernel allows (a few frames) against cangen at full speed:
    // the kernel drops frames before the source reads them, and SO_MEMINFO must count each one.
    let script = format!(
        "$CAP --iface vcan0 --out $S/cap.log --count {SENT} --seconds 240 --rcvbuf 1 \
           >$S/cap.out 2>$S/cap.err &\n\
         wait_for '^ready' $S/cap.out\n\
         cangen -n {SENT} -g 0 -p 10 -I 123 -L 8 -D i vcan0 || exit 91\n\
         wait $!\n"
    );
    let (status, console) = run_guest(&share, &script)?;
    assert_guest_ok(status, &console, &share);
    let s = stats(&share)?;
    let (received, delivered, dropped, kernel) = (
        num(&s, "received"),
        num(&s, "delivered"),
        num(&s, "dropped_full"),
        num(&s, "kernel_drops"),
    );
    eprintln!("kernel drops: sent {SENT}, received {received}, kernel_drops {kernel}");
    assert!(kernel > 0, "the tiny socket queue never overflowed: {s:?}");
    assert_eq!(received + kernel, SENT, "{s:?}");
    assert_eq!(delivered + dropped, received, "{s:?}");
    let got = read_log(&share.path("cap.log"))?;
    assert_eq!(got.len() as u64, delivered);
    assert!(got.windows(2).all(|w| counter(&w[0]) < counter(&w[1])), "order broken");
    Ok(())
}

#[test]
fn the_source_survives_the_interface_going_down_and_being_recreated() -> anyhow::Result<()> {
    let share = Share::new("reconnect")?;
    // Phase 1: 100 frames. Down (the source must notice and wait), up: 100 more. Then the
    // interface is deleted and created again (new ifindex): 100 more.
    let script = "$CAP --iface vcan0 --out $S/cap.log --count 300 --seconds 120 >$S/cap.out 2>$S/cap.err &\n\
         wait_for '^ready' $S/cap.out\n\
         cangen -n 100 -g 0 -I 101 -L 8 -D i vcan0 || exit 91\n\
         wait_for '^progress received=100$' $S/cap.out\n\
         ip link set vcan0 down || exit 92\n\
         wait_for '^link-down' $S/cap.out\n\
         sleep 0.5\n\
         ip link set vcan0 up || exit 93\n\
         wait_for '^reopened reconnects=1 ' $S/cap.out\n\
         cangen -n 100 -g 0 -I 102 -L 8 -D i vcan0 || exit 94\n\
         wait_for '^progress received=200$' $S/cap.out\n\
         ip link del vcan0 || exit 95\n\
         sleep 0.5\n\
         ip link add dev vcan0 type vcan && ip link set vcan0 mtu 72 && ip link set vcan0 up || exit 96\n\
         wait_for '^reopened reconnects=2 ' $S/cap.out\n\
         cangen -n 100 -g 0 -I 103 -L 8 -D i vcan0 || exit 97\n\
         wait $!\n";
    let (status, console) = run_guest(&share, script)?;
    assert_guest_ok(status, &console, &share);
    let got = read_log(&share.path("cap.log"))?;
    let seen: Vec<(u32, u64)> = got.iter().map(|f| (f.frame.id.raw(), counter(f))).collect();
    let want: Vec<(u32, u64)> =
        [0x101, 0x102, 0x103].iter().flat_map(|&id| (0..100).map(move |c| (id, c))).collect();
    assert_eq!(seen, want);
    let s = stats(&share)?;
    assert_eq!((num(&s, "link_down"), num(&s, "reconnects")), (2, 2), "{s:?}");
    assert_eq!(num(&s, "dropped_full") + num(&s, "kernel_drops"), 0, "{s:?}");
    Ok(())
}

#[test]
fn the_kernel_filter_passes_only_the_listed_ids() -> anyhow::Result<()> {
    let share = Share::new("filter")?;
    let std_id = |raw: u32| CanId::standard(raw).context("11-bit");
    let ext_id = |raw: u32| CanId::extended(raw).context("29-bit");
    let ids = [
        std_id(0x100)?,
        std_id(0x123)?,
        ext_id(0x123)?,
        std_id(0x7FF)?,
        ext_id(0x1ABC_DEF0)?,
        ext_id(0x1ABC_DEF1)?,
    ];
    let wanted = |id: CanId| id == ids[1] || id == ids[4];
    let mut sent = Vec::new();
    for round in 0..50u8 {
        for &id in &ids {
            sent.push(CanFrame::new(id, FrameKind::Data, &[round, 1, 2])?);
        }
        sent.push(CanFrame::remote(ids[1], 2)?);
    }
    // End on a wanted frame, so an unwanted one that slipped through would shift the count.
    sent.push(CanFrame::new(ids[4], FrameKind::Data, &[0xEE])?);
    let expected: Vec<CanFrame> = sent.iter().copied().filter(|f| wanted(f.id)).collect();
    write_log(&share.path("mixed.log"), "can0", &sent)?;
    let script = format!(
        "$CAP --iface vcan0 --out $S/cap.log --count {} --seconds 120 --ids 123,1ABCDEF0 \
           >$S/cap.out 2>$S/cap.err &\n\
         wait_for '^ready' $S/cap.out\n\
         canplayer -t -g 1 -I $S/mixed.log vcan0=can0 || exit 91\n\
         wait $!\n",
        expected.len()
    );
    let (status, console) = run_guest(&share, &script)?;
    assert_guest_ok(status, &console, &share);
    assert_same_frames(&expected, &read_log(&share.path("cap.log"))?);
    Ok(())
}

#[test]
fn a_source_started_before_its_interface_exists_opens_when_it_appears() -> anyhow::Result<()> {
    let share = Share::new("late")?;
    // vcan2 does not exist when the capture starts: the source must wait for it, not fail.
    let script =
        "$CAP --iface vcan2 --out $S/cap.log --count 10 --seconds 60 >$S/cap.out 2>$S/cap.err &\n\
         sleep 0.5\n\
         grep -q '^ready' $S/cap.out && exit 92\n\
         ip link add dev vcan2 type vcan && ip link set vcan2 up || exit 93\n\
         wait_for '^ready' $S/cap.out\n\
         cangen -n 10 -g 0 -I 42 -L 8 -D i vcan2 || exit 91\n\
         wait $!\n";
    let (status, console) = run_guest(&share, script)?;
    assert_guest_ok(status, &console, &share);
    let got = read_log(&share.path("cap.log"))?;
    let seen: Vec<(u32, u64)> = got.iter().map(|f| (f.frame.id.raw(), counter(f))).collect();
    assert_eq!(seen, (0..10).map(|c| (0x42, c)).collect::<Vec<_>>());
    let s = stats(&share)?;
    assert_eq!((num(&s, "link_down"), num(&s, "reconnects")), (0, 0), "{s:?}");
    Ok(())
}
