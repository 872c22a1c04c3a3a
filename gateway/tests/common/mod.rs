//! Shared by the end-to-end tests: keys in a temp dir, the gateway binary as a child process
//! whose log lines the test waits on, and the workspace's `iovctl`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ledger::keys::X25519Key;
use ledger::note::Ed25519Signer;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

pub struct Keys {
    pub signer: Ed25519Signer,
    pub factory: X25519Key,
    pub city: X25519Key,
    /// `signing.key` (0600), `signing.vkey`, `factory.pub`, `city.pub`.
    pub dir: PathBuf,
}

pub fn keys(dir: &Path) -> Result<Keys> {
    let signer = ledger::keys::generate_signer("iov.example/gw/e2e")?;
    ledger::keys::save_signer(&dir.join("signing.key"), &signer)?;
    std::fs::write(dir.join("signing.vkey"), signer.verifier().to_vkey())?;
    let factory = X25519Key::generate("factory")?;
    let city = X25519Key::generate("city")?;
    std::fs::write(dir.join("factory.pub"), factory.public_text())?;
    std::fs::write(dir.join("city.pub"), city.public_text())?;
    Ok(Keys { signer, factory, city, dir: dir.to_path_buf() })
}

/// A running `iov-gateway run`, its stderr lines arriving on a channel.
pub struct Gateway {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
    stdout: Option<std::thread::JoinHandle<String>>,
}

impl Gateway {
    pub fn start(config: &Path) -> Result<Gateway> {
        Gateway::start_env(config, &[])
    }

    /// [`Gateway::start`] with extra environment variables (e.g. `NOTIFY_SOCKET`).
    pub fn start_env(config: &Path, env: &[(&str, &std::ffi::OsStr)]) -> Result<Gateway> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_iov-gateway"))
            .args(["run", "--config"])
            .arg(config)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info,gateway=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting iov-gateway")?;
        let stderr = child.stderr.take().context("stderr")?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdout = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut BufReader::new(stdout), &mut s);
            s
        });
        Ok(Gateway { child, lines, seen: Vec::new(), stdout: Some(stdout) })
    }

    /// Waits for a log line for which `f` is true; fails after `timeout` or if the process ends.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        mut f: impl FnMut(&str) -> bool,
    ) -> Result<String> {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = f(&line);
                    self.seen.push(line.clone());
                    if hit {
                        return Ok(line);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!("timed out after {timeout:?}; log so far:\n{}", self.seen.join("\n"))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("the gateway exited; log:\n{}", self.seen.join("\n"))
                }
            }
        }
    }

    pub fn signal(&self, sig: &str) -> Result<()> {
        let st = Command::new("kill").args([sig, &self.child.id().to_string()]).status()?;
        if !st.success() {
            bail!("kill {sig} failed");
        }
        Ok(())
    }

    /// Waits (bounded) for the process to exit; returns its status and stdout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<(std::process::ExitStatus, String)> {
        let end = Instant::now() + timeout;
        loop {
            // Keep draining stderr so the child never blocks on a full pipe.
            while let Ok(l) = self.lines.try_recv() {
                self.seen.push(l);
            }
            if let Some(st) = self.child.try_wait()? {
                while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(l);
                }
                let out =
                    self.stdout.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
                return Ok((st, out));
            }
            if Instant::now() >= end {
                let _ = self.child.kill();
                bail!(
                    "the gateway did not exit within {timeout:?}; log:\n{}",
                    self.seen.join("\n")
                );
            }
            if let Ok(l) = self.lines.recv_timeout(Duration::from_millis(50)) {
                self.seen.push(l);
            }
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sum of `records=N` over the "block durable" lines seen so far.
pub fn durable_records(lines: &[String]) -> u64 {
    lines
        .iter()
        .filter(|l| l.contains("block durable"))
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("records=")))
        .filter_map(|n| n.parse::<u64>().ok())
        .sum()
}

/// The workspace's `iovctl`, next to the test binary's target dir; built when missing.
pub fn iovctl() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/release/deps/<test> -> target/release/iovctl
    let dir = exe.parent().and_then(Path::parent).context("target dir")?;
    let bin = dir.join("iovctl");
    if !bin.exists() {
        let target = dir.parent().context("target root")?;
        let st = Command::new(env!("CARGO"))
            .args(["build", "--release", "-p", "iovctl"])
            .env("CARGO_TARGET_DIR", target)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .context("cargo build -p iovctl")?;
        if !st.success() {
            bail!("building iovctl failed");
        }
    }
    Ok(bin)
}
