//! `iovctl keygen` as a user runs it: the real binary, real files, loaded back with `ledger::keys`.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

use anyhow::Context;
use ledger::keys;

fn keygen(out: &Path, name: &str, kind: &str) -> anyhow::Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_iovctl"))
        .args(["keygen", "--out"])
        .arg(out)
        .args(["--name", name, "--kind", kind])
        .output()
        .context("running iovctl keygen")
}

fn mode(p: &Path) -> anyhow::Result<u32> {
    Ok(fs::metadata(p).with_context(|| p.display().to_string())?.permissions().mode() & 0o7777)
}

/// The base64 part of a private key line: what must never be printed.
fn secret_part(p: &Path) -> anyhow::Result<String> {
    let text = fs::read_to_string(p)?;
    Ok(text.trim_end().rsplit('+').next().context("key line has '+' parts")?.to_owned())
}

#[test]
fn gateway_keys_have_0600_private_0644_public_modes_and_load_back() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("keys");
    let o = keygen(&out, "gw-0042.fleet.example/log", "gateway")?;
    assert!(o.status.success(), "stderr: {}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8(o.stdout)?;

    for f in ["signing.key", "x25519.key"] {
        assert_eq!(mode(&out.join(f))?, 0o600, "{f}");
    }
    for f in ["signing.vkey", "x25519.pub"] {
        assert_eq!(mode(&out.join(f))?, 0o644, "{f}");
    }
    assert!(!out.join("witness.key").exists(), "a gateway gets no witness key");
    assert_eq!(mode(&out)?, 0o700);

    let signer = keys::load_signer(&out.join("signing.key"))?;
    let vkey = signer.verifier().to_vkey();
    assert_eq!(fs::read_to_string(out.join("signing.vkey"))?, format!("{vkey}\n"));
    assert!(vkey.starts_with("gw-0042.fleet.example/log+"), "{vkey}");
    let x = keys::load_x25519(&out.join("x25519.key"))?;
    assert_eq!(fs::read_to_string(out.join("x25519.pub"))?, format!("{}\n", x.public_text()));

    assert!(stdout.contains(&vkey), "{stdout}");
    assert!(stdout.contains(&x.public_text()), "{stdout}");
    assert!(stdout.contains(&keys::fingerprint(signer.key_id())), "{stdout}");
    assert!(stdout.contains(&keys::fingerprint(x.key_id())), "{stdout}");
    for f in ["signing.key", "x25519.key"] {
        let secret = secret_part(&out.join(f))?;
        assert!(!stdout.contains(&secret), "{f} secret printed");
    }
    Ok(())
}

#[test]
fn org_keys_add_a_witness_cosigner_key() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let o = keygen(dir.path(), "factory.example/ledger", "org")?;
    assert!(o.status.success(), "stderr: {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(mode(&dir.path().join("witness.key"))?, 0o600);
    assert_eq!(mode(&dir.path().join("witness.vkey"))?, 0o644);
    let w = keys::load_cosigner(&dir.path().join("witness.key"))?;
    let wvkey = fs::read_to_string(dir.path().join("witness.vkey"))?;
    assert_eq!(wvkey.trim_end(), w.verifier().to_vkey());
    assert!(!String::from_utf8(o.stdout)?.contains(&secret_part(&dir.path().join("witness.key"))?));
    Ok(())
}

#[test]
fn existing_keys_are_never_overwritten_and_nothing_is_written() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let o = keygen(dir.path(), "gw1", "gateway")?;
    assert!(o.status.success());
    let before = fs::read(dir.path().join("signing.key"))?;
    // An org run would add witness files; it must refuse before writing any of them.
    let o = keygen(dir.path(), "gw1", "org")?;
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8(o.stderr)?;
    assert!(stderr.contains("signing.key already exists; refusing to overwrite"), "{stderr}");
    assert_eq!(fs::read(dir.path().join("signing.key"))?, before);
    assert!(!dir.path().join("witness.key").exists());
    Ok(())
}

#[test]
fn a_private_key_made_0644_is_refused_by_the_loader_naming_file_and_mode() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    assert!(keygen(dir.path(), "gw1", "gateway")?.status.success());
    for f in ["signing.key", "x25519.key"] {
        let p = dir.path().join(f);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644))?;
        let err = match f {
            "signing.key" => keys::load_signer(&p).map(|_| ()),
            _ => keys::load_x25519(&p).map(|_| ()),
        }
        .expect_err("a group/world-readable key must be refused");
        let msg = err.to_string();
        assert!(matches!(err, keys::KeyError::InsecurePermissions { mode: 0o644, .. }), "{msg}");
        assert!(msg.contains(f) && msg.contains("0644") && msg.contains("chmod 600"), "{msg}");
    }
    Ok(())
}

#[test]
fn a_bad_key_name_is_a_usage_error() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let o = keygen(dir.path(), "has space", "gateway")?;
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8(o.stderr)?.contains("contains a space or '+'"));
    assert_eq!(fs::read_dir(dir.path())?.count(), 0);
    Ok(())
}
