//! The Debian packages on a booted Debian system with systemd as PID 1.
//!
//! The test builds the three packages (`packaging/build-deb.sh`: iovctl, iov-gateway,
//! iov-ledger), makes sure the systemd test VM is prepared (`scripts/vm/sysimage.sh`: a
//! debootstrapped bookworm, cached in `$IOV_CACHE/sysvm`, rebuilt only when missing or when its
//! scripts changed), boots it (`scripts/vm/sysboot.sh`: Debian's kernel under qemu TCG, vcan
//! available, the cached image copy-on-write) and has the guest:
//!
//! 1. `dpkg -i` the packages: the user exists, nothing is enabled or started;
//! 2. configure the gateway (a socketcan source on vcan0, `key_provisioning = "generate"`);
//!    `check-config` says the keys will be generated;
//! 3. `systemctl start iov-gateway`: returns once the daemon sent READY=1 (Type=notify), the unit
//!    is active with a STATUS= text; the keys were generated 0600 in the state directory, the
//!    journal has the fingerprint (and not the private key) and the daemon's own entries;
//! 4. replay a slice of the real GPS trace into vcan0 with `canplayer`, wait (bounded) until the
//!    gateway's local API counts every frame, stop it (SIGTERM: seals), and `iovctl store verify`
//!    the store; the store and the generated vkey are copied to the share;
//! 5. start it again and SIGKILL it: systemd restarts it (a new PID, active again); install the
//!    packages again over themselves (an upgrade): the running gateway is restarted, the stopped
//!    ledger stays stopped, the operator's config and the keys are kept;
//! 6. with a drop-in (WatchdogSec=6s and the test-only stall trigger) make its pipeline stall:
//!    the watchdog kills it and systemd restarts it;
//! 7. start the ledger with its packaged default config and keys from `iovctl keygen`: active
//!    via READY=1;
//! 8. `dpkg --purge` all three: no file is left that was not there before, except what
//!    docs/INSTALL.md says stays (the system users, the journal).
//!
//! Each step writes `PASS name` or `FAIL name: why` to the share's `results.txt`; the host
//! requires every step to pass, then verifies the store with its own `iovctl` and opens the raw
//! lane with the test's recipient key: every replayed frame, in order.
//!
//! Never skips: without the VM it fails and names the script to run (`make deps` runs it).

#![cfg(feature = "rocks")]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use can_decoders::trace::{self, ErrorPolicy};
use can_decoders::{CanFrame, ChannelId, Direction, TimedFrame};
use ledger::block::BlockHeader;
use ledger::lane::Limits;
use ledger::record::Record;
use ledger::seal::open_lane_bytes;
use ledger::store::rocks::{Mode, Rocks};
use ledger::store::Store as _;

/// GPS trace frames replayed into vcan0 (`canplayer` at the slice's recorded pace, 1,000/s).
const REPLAYED: usize = 3_000;

/// The guest's steps, in order; each must report PASS.
const STEPS: &[&str] = &[
    "install",
    "user-and-dirs",
    "nothing-enabled",
    "check-config",
    "start-ready",
    "keys-generated",
    "journal",
    "socketcan-frames",
    "graceful-stop",
    "store-verify",
    "sigkill-restart",
    "upgrade",
    "watchdog-restart",
    "ledger-ready",
    "purge",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `target/` of this build (the test binary is in `target/release/deps/`).
fn target_root() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let release = exe.parent().and_then(Path::parent).context("target dir")?;
    Ok(release.parent().context("target root")?.to_path_buf())
}

fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    ensure!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A scratch directory the guest sees as /share; kept (and named) when the test fails.
struct Share {
    dir: PathBuf,
    keep: bool,
}

impl Share {
    fn new() -> Result<Share> {
        let dir = std::env::temp_dir().join(format!("iov-deb-vm-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("debs"))?;
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

/// The first `REPLAYED` frames of the GPS trace, as a candump log on `can1`.
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

/// What an operator writes into /etc/iov/gateway.toml for this box.
const GATEWAY_TOML: &str = r#"# iov-gateway on the test VM (written over the packaged default by the test).
[gateway]
signing_key = "/var/lib/iov-gateway/keys/signing.key"
key_provisioning = "generate"
key_name = "gw-vmtest.example/log"
store = "/var/lib/iov-gateway/store"
shutdown_grace = "10s"

[block]
max_records = 1000
max_age = "2s"

[[dbc]]
file = "/etc/iov/dbc/canmod-gps.dbc"

[recipients]
factory = "/etc/iov/keys/factory.x25519.pub"
city = "/etc/iov/keys/city.x25519.pub"

[api]
socket = "/run/iov-gateway/api.sock"

[sources.vcan]
kind = "socketcan"
interface = "vcan0"

[lanes.factory]
carries = "raw"
recipients = ["factory"]

[lanes.city]
carries = "signals"
recipients = ["city"]
signals = [{ name = "gnss_speed.Speed", min_interval = "1s" }]
"#;

/// The guest script (POSIX sh, run by the image's runner after multi-user.target).
fn guest_script() -> String {
    format!(
        r#"set -u
S=/share
R=$S/results.txt
: >$R
pass() {{ echo "PASS $1" >>$R; echo "guest: PASS $1"; }}
fail() {{ echo "FAIL $1: $2" >>$R; echo "guest: FAIL $1: $2"; }}
# wait_until CONDITION TENTHS: polls a shell condition every 0.1 s, at most TENTHS times.
wait_until() {{
  i=0
  until eval "$1" >/dev/null 2>&1; do
    i=$((i+1)); [ $i -ge "$2" ] && return 1
    sleep 0.1
  done
}}
# jhas 'JOURNALCTL ARGS' PATTERN: the journal holds PATTERN. journald reads its sockets on its
# own time, so an entry logged just before systemctl returned may not be in the files yet:
# --sync makes journald write what was logged before the call, and the query is repeated for
# at most 5 s.
jhas() {{
  i=0
  until journalctl --sync >/dev/null 2>&1; journalctl $1 --no-pager 2>/dev/null | grep -q -- "$2"; do
    i=$((i+1)); [ $i -ge 50 ] && return 1
    sleep 0.1
  done
}}
prop() {{ systemctl show -P "$2" "$1"; }}
now() {{ cut -d' ' -f1 /proc/uptime; }}
# Every path on the root filesystem, except logs, package and systemd bookkeeping, caches and
# API filesystems (what purge may leave is then exactly the difference).
snapshot() {{
  find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /tmp \
    -o -path /share -o -path /var/log -o -path /var/lib/dpkg -o -path /var/cache \
    -o -path /var/lib/systemd -o -path /var/tmp -o -path /etc/ld.so.cache \) -prune -o -print | sort
}}
snapshot >$S/fs-before.txt

# 1. install
if dpkg -i $S/debs/iovctl_*.deb $S/debs/iov-gateway_*.deb $S/debs/iov-ledger_*.deb >$S/dpkg-install.log 2>&1; then
  pass install
else
  fail install "$(tail -n 5 $S/dpkg-install.log | tr '\n' ' ')"
  exit 1
fi
u=$(getent passwd iov-gateway | cut -d: -f6,7)
d=$(stat -c '%U:%G %a' /var/lib/iov-gateway)
k=$(stat -c '%U:%G %a' /etc/iov/keys/gateway)
c=$(stat -c '%U %a' /etc/iov/gateway.toml)
if [ "${{u%%:*}}" = /var/lib/iov-gateway ] && [ "${{u##*/}}" = nologin ] && [ "$d" = "iov-gateway:iov-gateway 750" ] \
   && [ "$k" = "root:iov-gateway 750" ] && [ "$c" = "root 644" ] && getent passwd iov-ledger >/dev/null \
   && dpkg-query -W -f='${{Conffiles}}' iov-gateway | grep -q /etc/iov/gateway.toml; then
  pass user-and-dirs
else
  fail user-and-dirs "user [$u] state [$d] keys [$k] config [$c]"
fi
e1=$(systemctl is-enabled iov-gateway); a1=$(systemctl is-active iov-gateway)
e2=$(systemctl is-enabled iov-ledger); a2=$(systemctl is-active iov-ledger)
if [ "$e1 $a1 $e2 $a2" = "disabled inactive disabled inactive" ]; then
  pass nothing-enabled
else
  fail nothing-enabled "gateway $e1 $a1, ledger $e2 $a2"
fi

# 2. configure: vcan0, the operator's config, recipients' public keys, the DBC
ip link add dev vcan0 type vcan && ip link set vcan0 up
cp $S/gateway.toml /etc/iov/gateway.toml
install -d /etc/iov/dbc
cp $S/canmod-gps.dbc /etc/iov/dbc/
cp $S/factory.pub /etc/iov/keys/factory.x25519.pub
cp $S/city.pub /etc/iov/keys/city.x25519.pub
if iov-gateway check-config >$S/check.txt 2>&1 && grep -q "signing.key: generated on first start (key name gw-vmtest.example/log)" $S/check.txt; then
  pass check-config
else
  fail check-config "$(cat $S/check.txt | tr '\n' ' ')"
fi

# 3. start: systemctl returns once READY=1 arrived
t0=$(now)
if systemctl start iov-gateway; then
  t1=$(now)
  st=$(prop iov-gateway ActiveState); sub=$(prop iov-gateway SubState); txt=$(prop iov-gateway StatusText)
  if [ "$st $sub" = "active running" ] && [ -n "$txt" ] && [ "$(prop iov-gateway Type)" = notify ]; then
    pass start-ready
    echo "start $(awk -v a=$t0 -v b=$t1 'BEGIN {{ printf "%.2f", b - a }}') s" >>$S/timing.txt
  else
    fail start-ready "state $st/$sub status [$txt]"
  fi
else
  fail start-ready "systemctl start failed: $(journalctl -u iov-gateway --no-pager -n 20 | tr '\n' ' ')"
fi
kd=$(stat -c '%U %a' /var/lib/iov-gateway/keys 2>&1)
kf=$(stat -c '%U %a' /var/lib/iov-gateway/keys/signing.key 2>&1)
fp=$(cut -d+ -f2 /var/lib/iov-gateway/keys/signing.vkey 2>/dev/null)
secret=$(cut -d+ -f5 /var/lib/iov-gateway/keys/signing.key 2>/dev/null)
cp /var/lib/iov-gateway/keys/signing.vkey $S/signing.vkey 2>/dev/null
why=""
[ "$kd" = "iov-gateway 700" ] || why="$why dir [$kd]"
[ "$kf" = "iov-gateway 600" ] || why="$why key [$kf]"
[ -n "$fp" ] || why="$why no fingerprint in signing.vkey"
jhas "-u iov-gateway -o cat" "generated a new key" || why="$why no 'generated a new key' in the journal"
jhas "-t iov-gateway -o verbose" "FINGERPRINT=$fp" || why="$why no FINGERPRINT=$fp field in the journal"
if [ -z "$secret" ]; then
  why="$why no secret in signing.key"
elif journalctl --no-pager -o verbose | grep -qF "$secret"; then
  why="$why the secret key is in the journal"
fi
journalctl -u iov-gateway -o cat --no-pager >$S/journal-start.txt
if [ -z "$why" ]; then
  pass keys-generated
else
  fail keys-generated "$why"
fi
# The daemon's own entries, through the journal's native protocol (structured fields).
if jhas "-t iov-gateway -o verbose" "MESSAGE=ready" \
   && jhas "-t iov-gateway -o verbose" "PRIORITY=5" \
   && jhas "-t iov-gateway -o verbose" "STORE=/var/lib/iov-gateway/store"; then
  pass journal
else
  fail journal "$(journalctl -t iov-gateway -o verbose --no-pager | tail -n 20 | tr '\n' ' ')"
fi

# 4. real SocketCAN frames from vcan0, counted by the local API, then a graceful stop
received() {{ iovctl status --format json 2>/dev/null | grep -o '"received":[0-9]*' | head -n1 | cut -d: -f2; }}
canplayer -I $S/slice.log vcan0=can1
if wait_until '[ "$(received)" -ge {REPLAYED} ]' 600; then
  pass socketcan-frames
else
  fail socketcan-frames "received [$(received)] of {REPLAYED}: $(iovctl status 2>&1 | tr '\n' ' ')"
fi
iovctl status >$S/status.txt 2>&1
systemctl stop iov-gateway
r=$(prop iov-gateway Result); x=$(prop iov-gateway ExecMainStatus)
if [ "$r $x" = "success 0" ] && jhas "-u iov-gateway -o cat" "iov-gateway: stopped: frames_in={REPLAYED} "; then
  pass graceful-stop
else
  fail graceful-stop "result $r status $x"
fi
if iovctl store verify --store /var/lib/iov-gateway/store --key /var/lib/iov-gateway/keys/signing.vkey >$S/verify.txt 2>&1 \
   && grep -q ": intact" $S/verify.txt; then
  pass store-verify
else
  fail store-verify "$(cat $S/verify.txt | tr '\n' ' ')"
fi
cp -a /var/lib/iov-gateway/store $S/store

# 5. SIGKILL: restarted by systemd (Restart=on-failure)
systemctl start iov-gateway
p1=$(prop iov-gateway MainPID); n1=$(prop iov-gateway NRestarts)
kill -KILL "$p1"
if wait_until '[ "$(prop iov-gateway MainPID)" != "$p1" ] && [ "$(prop iov-gateway MainPID)" != 0 ] && [ "$(prop iov-gateway ActiveState)" = active ]' 300 \
   && [ "$(prop iov-gateway NRestarts)" -eq $((n1 + 1)) ]; then
  pass sigkill-restart
else
  fail sigkill-restart "pid $p1 -> $(prop iov-gateway MainPID), restarts $n1 -> $(prop iov-gateway NRestarts), $(prop iov-gateway ActiveState)"
fi

# 5b. upgrade (the packages over themselves): a running service is restarted, a stopped one
# stays stopped, the operator's config and the generated keys are kept
p1=$(prop iov-gateway MainPID)
kh=$(md5sum </var/lib/iov-gateway/keys/signing.key)
if dpkg -i $S/debs/iovctl_*.deb $S/debs/iov-gateway_*.deb $S/debs/iov-ledger_*.deb >$S/dpkg-upgrade.log 2>&1 \
   && wait_until '[ "$(prop iov-gateway ActiveState)" = active ] && [ "$(prop iov-gateway MainPID)" != "$p1" ] && [ "$(prop iov-gateway MainPID)" != 0 ]' 300 \
   && grep -q gw-vmtest /etc/iov/gateway.toml && [ ! -e /etc/iov/gateway.toml.dpkg-dist ] \
   && [ "$(md5sum </var/lib/iov-gateway/keys/signing.key)" = "$kh" ] \
   && [ "$(systemctl is-active iov-ledger)" = inactive ]; then
  pass upgrade
else
  fail upgrade "pid $p1 -> $(prop iov-gateway MainPID) $(prop iov-gateway ActiveState), ledger $(systemctl is-active iov-ledger): $(tail -n 5 $S/dpkg-upgrade.log | tr '\n' ' ')"
fi

# 6. watchdog: a stalled pipeline stops the pings; systemd kills and restarts the daemon
mkdir -p /etc/systemd/system/iov-gateway.service.d
cat >/etc/systemd/system/iov-gateway.service.d/test-watchdog.conf <<CONF
[Service]
WatchdogSec=6s
Environment=IOV_GATEWAY_TEST_STALL_FILE=/run/iov-gateway/stall
CONF
systemctl daemon-reload
systemctl restart iov-gateway
p1=$(prop iov-gateway MainPID); n1=$(prop iov-gateway NRestarts)
ts=$(now)
touch /run/iov-gateway/stall
if wait_until '[ "$(prop iov-gateway MainPID)" != "$p1" ] && [ "$(prop iov-gateway MainPID)" != 0 ] && [ "$(prop iov-gateway ActiveState)" = active ]' 600 \
   && jhas "-u iov-gateway" "Watchdog timeout" \
   && jhas "-u iov-gateway -o cat" "TEST ONLY: stall trigger" \
   && [ "$(prop iov-gateway NRestarts)" -eq $((n1 + 1)) ]; then
  pass watchdog-restart
  echo "watchdog restart $(awk -v a=$ts -v b=$(now) 'BEGIN {{ printf "%.1f", b - a }}') s after the stall" >>$S/timing.txt
else
  fail watchdog-restart "pid $p1 -> $(prop iov-gateway MainPID), restarts $n1 -> $(prop iov-gateway NRestarts): $(journalctl -u iov-gateway --no-pager -n 15 | tr '\n' ' ')"
fi
journalctl -u iov-gateway --no-pager >$S/journal-gateway.txt
systemctl stop iov-gateway
rm -rf /etc/systemd/system/iov-gateway.service.d
systemctl daemon-reload

# 7. the ledger with its packaged default config
iovctl keygen --out /etc/iov/keys/ledger --name factory.example/ledger --kind org >$S/ledger-keygen.txt 2>&1
chown iov-ledger /etc/iov/keys/ledger/*
if systemctl start iov-ledger && [ "$(prop iov-ledger ActiveState)" = active ] && [ -n "$(prop iov-ledger StatusText)" ] \
   && [ "$(prop iov-ledger WatchdogUSec)" != 0 ] && systemctl stop iov-ledger && [ "$(prop iov-ledger Result)" = success ]; then
  pass ledger-ready
else
  fail ledger-ready "$(journalctl -u iov-ledger --no-pager -n 20 | tr '\n' ' ')"
fi
# The operator's files in /etc/iov are theirs: they go first, as an operator would remove them.
rm -rf /etc/iov/dbc /etc/iov/keys/factory.x25519.pub /etc/iov/keys/city.x25519.pub /etc/iov/keys/ledger/*

# 8. purge: nothing left that was not there before
dpkg --purge iov-gateway iov-ledger iovctl >$S/dpkg-purge.log 2>&1
ip link del vcan0
snapshot >$S/fs-after.txt
left=$(diff $S/fs-before.txt $S/fs-after.txt | grep '^[<>]' | tr '\n' ' ')
if [ -z "$left" ] && getent passwd iov-gateway >/dev/null && [ ! -e /var/lib/iov-gateway ] && [ ! -e /etc/iov ]; then
  pass purge
else
  fail purge "difference: [$left] $(tail -n 5 $S/dpkg-purge.log | tr '\n' ' ')"
fi
grep -c '^PASS' $R
! grep -q '^FAIL' $R
"#
    )
}

#[test]
fn the_packages_install_run_under_systemd_and_purge_cleanly() -> Result<()> {
    let started = Instant::now();
    let root = repo_root();
    let target = target_root()?;
    let cache = std::env::var_os("IOV_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/iov-gateway")
    });
    let mut share = Share::new()?;

    // The VM image: built when missing (debootstrap, the slow part), else a quick check.
    let t = Instant::now();
    let prep = Command::new(root.join("scripts/vm/sysimage.sh"))
        .env("IOV_CACHE", &cache)
        .output()
        .context("running scripts/vm/sysimage.sh")?;
    ensure!(
        prep.status.success(),
        "scripts/vm/sysimage.sh failed (run it, or `make deps`, from the repository root):\n{}",
        String::from_utf8_lossy(&prep.stderr)
    );
    let prep_s = t.elapsed().as_secs_f64();

    // The packages, exactly as `make package` builds them (the script's own cargo build: the
    // same feature set every time, so after the first run it is a no-op).
    let t = Instant::now();
    let debs = run(
        Command::new(root.join("packaging/build-deb.sh"))
            .args(["--fast", "--out"])
            .arg(share.path("debs"))
            .env("CARGO", env!("CARGO"))
            .env("CARGO_TARGET_DIR", &target),
        "packaging/build-deb.sh",
    )?;
    let debs: Vec<&str> = debs.lines().collect();
    ensure!(debs.len() == 3, "three packages expected: {debs:?}");
    let package_s = t.elapsed().as_secs_f64();
    let gw_deb = debs.iter().find(|d| d.contains("/iov-gateway_")).context("iov-gateway deb")?;
    let contents = run(Command::new("dpkg-deb").args(["-c", gw_deb]), "dpkg-deb -c")?;
    for f in [
        "./usr/bin/iov-gateway",
        "./lib/systemd/system/iov-gateway.service",
        "./usr/lib/sysusers.d/iov-gateway.conf",
        "./usr/lib/tmpfiles.d/iov-gateway.conf",
        "./etc/iov/gateway.toml",
        "./usr/share/doc/iov-gateway/INSTALL.md",
    ] {
        ensure!(contents.contains(f), "{gw_deb} lacks {f}:\n{contents}");
    }

    // The guest's inputs.
    let k = common::keys(&share.dir)?;
    let expected = replay_slice(&share.path("slice.log"))?;
    fs::copy(
        common::fixtures().join("dbc/css-electronics/canmod-gps.dbc"),
        share.path("canmod-gps.dbc"),
    )?;
    fs::write(share.path("gateway.toml"), GATEWAY_TOML)?;
    fs::write(share.path("guest.sh"), guest_script())?;
    // common::keys wrote a signing key for host-side gateways; the guest generates its own.
    fs::remove_file(share.path("signing.key"))?;
    fs::remove_file(share.path("signing.vkey"))?;

    let t = Instant::now();
    let out = Command::new(root.join("scripts/vm/sysboot.sh"))
        .arg("--share")
        .arg(&share.dir)
        .args(["--timeout", "900"])
        .env("IOV_CACHE", &cache)
        .output()
        .context("running scripts/vm/sysboot.sh")?;
    let boot_s = t.elapsed().as_secs_f64();
    let console =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    fs::write(share.path("console.txt"), &console)?;
    let results = share.read("results.txt");
    let failed: Vec<&str> = results.lines().filter(|l| l.starts_with("FAIL")).collect();
    let missing: Vec<&&str> =
        STEPS.iter().filter(|s| !results.lines().any(|l| l == format!("PASS {s}"))).collect();
    ensure!(
        failed.is_empty() && missing.is_empty() && out.status.code() == Some(0),
        "guest exit {:?}; failed: {failed:#?}; not passed: {missing:?}\nconsole tail:\n{}",
        out.status.code(),
        tail(&console, 40)
    );

    // The host checks the store the packaged gateway wrote from real SocketCAN frames.
    let iovctl = common::iovctl()?;
    run(
        Command::new(&iovctl)
            .args(["store", "verify", "--store"])
            .arg(share.path("store"))
            .arg("--key")
            .arg(share.path("signing.vkey")),
        "iovctl store verify (host)",
    )?;
    let vkey = fs::read_to_string(share.path("signing.vkey"))?;
    let verifier = ledger::note::Ed25519Verifier::from_vkey(vkey.trim())
        .context("the generated signing.vkey")?;
    ensure!(vkey.starts_with("gw-vmtest.example/log+"), "key name: {vkey}");
    let store = Rocks::open(&share.path("store"), &verifier, Mode::Verify)?;
    let mut raw = Vec::new();
    for h in 0..store.size() {
        let header = BlockHeader::from_bytes(&store.header(h)?.context("header")?)?;
        let lanes = store.lanes(h)?;
        for (i, l) in header.lanes.iter().enumerate() {
            if l.name == "factory" {
                let bytes = lanes.get(i).with_context(|| format!("block {h} lane {i}"))?;
                raw.extend(open_lane_bytes(&header, i, bytes, &k.factory, &Limits::default())?);
            }
        }
    }
    let vcan0: Arc<str> = Arc::from("vcan0");
    let essence = |r: &Record| match r {
        Record::Can(c) => Some((c.interface.to_string(), c.id, c.flags.bits(), c.data().to_vec())),
        _ => None,
    };
    let want: Vec<_> = expected
        .iter()
        .map(|f| {
            let t =
                TimedFrame { t_ns: 0, channel: ChannelId(0), direction: Direction::Rx, frame: *f };
            gateway::pipeline::can_record(&vcan0, &t).map(|r| essence(&Record::Can(r)))
        })
        .collect::<std::result::Result<_, _>>()?;
    let got: Vec<_> = raw.iter().map(essence).collect();
    ensure!(got.len() == want.len(), "{} of {REPLAYED} frames stored", got.len());
    if let Some(i) = got.iter().zip(&want).position(|(a, b)| a != b) {
        bail!("stored frame {i} differs: {:?} != sent {:?}", got[i], want[i]);
    }

    let multi_user = console
        .lines()
        .find_map(|l| l.split("multi-user reached after ").nth(1))
        .unwrap_or("?")
        .trim()
        .to_owned();
    eprintln!(
        "deb VM: image check/build {prep_s:.1} s, packages {package_s:.1} s, boot + test + \
         poweroff {boot_s:.1} s (multi-user after {multi_user}), total {:.1} s; {} frames from \
         vcan0 stored in order in {} blocks\n{}",
        started.elapsed().as_secs_f64(),
        got.len(),
        store.size(),
        share.read("timing.txt")
    );
    share.keep = false;
    Ok(())
}
