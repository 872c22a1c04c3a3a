//! `iov-sim replay --into vcan`: the trace through real SocketCAN. The test VM
//! (`scripts/vm/run.sh`, Debian's kernel under qemu with vcan0 and vcan1, the host's root
//! mounted read-only) runs the host-built `iov-gateway` with a socketcan source per trace
//! channel, and `canplayer` replays the trace onto vcan0 (and vcan1). The gateway's store and
//! metrics are left in the share (the only folder the guest can write) for the host to check.
//! The same harness as `gateway/tests/vcan_daemon.rs`.
//!
//! Pacing is canplayer's: `--speed 1` keeps the recorded gaps, `--speed max` sends back to
//! back (`-t -g 1`); other multipliers are refused. `--loop N` is canplayer's `-l N`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context as _, Result};

use crate::replay::{Args, Speed};

/// The repository's VM runner.
fn run_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/vm/run.sh")
}

/// Fails with what to run when the VM is not prepared.
pub fn check_prepared() -> Result<()> {
    let cache = std::env::var_os("IOV_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/iov-gateway")
    });
    ensure!(
        cache.join("vm/env").is_file(),
        "the test VM is not prepared: run scripts/vm/prepare.sh (or make deps-vm)"
    );
    for tool in ["qemu-system-x86_64", "canplayer", "curl"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
        ensure!(found, "{tool} is not installed: run scripts/vm/prepare.sh");
    }
    Ok(())
}

/// Runs the replay in the VM with `dir` as the share (it already holds `signing.key`,
/// `replay.pub`); returns the gateway's final metrics text.
pub fn run(a: &Args, dir: &Path, metrics_port: u16) -> Result<String> {
    check_prepared()?;
    let pacing = match a.speed {
        Speed::Max => "-t -g 1",
        Speed::Times(f) if (f - 1.0).abs() < 1e-12 => "",
        Speed::Times(f) => {
            bail!("--into vcan: --speed {f}: canplayer replays at 1 (recorded gaps) or max")
        }
    };
    // The trace as candump in the share, and its channels mapped onto vcan0, vcan1.
    let slice = dir.join("slice.log");
    crate::tracefile::cut(&a.trace, Some(&slice), None, 0)?;
    let text = std::fs::read_to_string(&slice)?;
    let mut channels: Vec<String> = Vec::new();
    for l in text.lines() {
        if let Some(ch) = l.split_whitespace().nth(1) {
            if !channels.iter().any(|c| c == ch) {
                channels.push(ch.to_owned());
            }
        }
    }
    ensure!(
        channels.len() <= 2,
        "--into vcan: the trace uses {} channels, the VM has vcan0 and vcan1",
        channels.len()
    );
    let frames = text.lines().count() as u64 * u64::from(a.loops);
    let mut cfg = format!(
        "[gateway]\nsigning_key = \"signing.key\"\nstore = \"store\"\npipeline_capacity = 32768\n\
         [block]\nmax_age = \"1s\"\n[recipients]\nreplay = \"replay.pub\"\n\
         [lanes.raw]\ncarries = \"raw\"\nrecipients = [\"replay\"]\n\
         [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"
    );
    let mut map = Vec::new();
    for (i, ch) in channels.iter().enumerate() {
        cfg.push_str(&format!(
            "[sources.vcan{i}]\nkind = \"socketcan\"\ninterface = \"vcan{i}\"\n"
        ));
        map.push(format!("vcan{i}={ch}"));
    }
    for (i, d) in a.dbc.iter().enumerate() {
        // The guest sees the host's root, but mounts its own /tmp: DBCs go into the share.
        let name = format!("dbc{i}.dbc");
        std::fs::copy(d, dir.join(&name)).with_context(|| format!("{}", d.display()))?;
        cfg.push_str(&format!("[[dbc]]\nfile = \"{name}\"\nj1939_by_pgn = {}\n", a.j1939));
    }
    std::fs::write(dir.join("gateway.toml"), cfg)?;
    let gw = crate::proc::binary("iov-gateway")?;
    let script = format!(
        r#"set -u
S={share}
wait_until() {{
  i=0
  until eval "$1"; do
    i=$((i+1))
    if [ $i -ge "$2" ]; then echo "guest: timed out waiting for: $1"; tail -n 20 $S/gw.err; exit 90; fi
    sleep 0.1
  done
}}
seen() {{
  curl -s http://127.0.0.1:{port}/metrics >$S/metrics.txt 2>/dev/null || {{ echo 0; return; }}
  awk '/^iov_frames_received_total/ {{ r += $2 }} /^iov_frames_dropped_total.*reason="kernel"/ {{ k += $2 }} END {{ print r + k }}' $S/metrics.txt
}}
cd $S
RUST_LOG=info {gw} run --config $S/gateway.toml >$S/gw.out 2>$S/gw.err &
GWPID=$!
wait_until 'grep -q " ready" $S/gw.err' 1200
canplayer {pacing} -l {loops} -I $S/slice.log {map} || exit 91
wait_until '[ "$(seen)" -ge {frames} ]' 3000
seen >/dev/null
kill -TERM $GWPID
wait $GWPID
exit $?
"#,
        share = dir.display(),
        gw = gw.display(),
        port = metrics_port,
        loops = a.loops,
        map = map.join(" "),
    );
    std::fs::write(dir.join("guest.sh"), script)?;
    let out = Command::new(run_sh())
        .arg("--share")
        .arg(dir)
        .args(["--timeout", "900", "--", "/bin/sh"])
        .arg(dir.join("guest.sh"))
        .current_dir(dir)
        .output()
        .context("running scripts/vm/run.sh")?;
    let console =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    std::fs::write(dir.join("console.txt"), &console)?;
    if out.status.code() != Some(0) {
        let err = std::fs::read_to_string(dir.join("gw.err")).unwrap_or_default();
        let tail: Vec<&str> = err.lines().rev().take(10).collect();
        bail!(
            "the VM run failed ({:?}); console in {}; gateway log tail:\n{}",
            out.status.code(),
            dir.join("console.txt").display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    Ok(std::fs::read_to_string(dir.join("metrics.txt")).unwrap_or_default())
}
