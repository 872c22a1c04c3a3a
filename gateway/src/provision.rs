//! Key provisioning on first start: with `gateway.key_provisioning = "generate"` (the default),
//! `iov-gateway run` creates the gateway's missing key files before it loads the config, so a
//! freshly installed gateway starts without an operator generating keys by hand.
//!
//! - `gateway.signing_key` missing: a new Ed25519 log signing key named `gateway.key_name`
//!   (default `<hostname>/log`), written with mode 0600 (`ledger::keys`: atomic, never over an
//!   existing file); its verifier key goes next to it as `<stem>.vkey` (0644): what the ledgers
//!   enroll.
//! - `gateway.history_key` set and missing: a new X25519 key of the same name, 0600; its public
//!   key next to it as `<stem>.pub`.
//! - A missing parent directory is created with mode 0700 (the unit's state directory holds
//!   `keys/`).
//!
//! Only public material is returned for the log (fingerprints, the vkey, the X25519 public key);
//! private keys never leave `ledger::keys`. With `"provisioned"` nothing is created here and
//! loading the config refuses the missing key.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use crate::config::{key_absent, KeyPlan, KeyProvisioning};

/// A key this start generated: only public facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// `gateway.signing_key` or `gateway.history_key`.
    pub key: &'static str,
    /// The private key file (0600).
    pub path: PathBuf,
    /// The public half's file (0644).
    pub public_path: PathBuf,
    /// 8 hex digits, the key ID as in vkeys and signature lines.
    pub fingerprint: String,
    /// The public key text (`NAME+ID+BASE64`).
    pub public: String,
}

/// Why provisioning failed; names the config key and the file, never key material.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ProvisionError {
    pub key: &'static str,
    pub reason: String,
}

/// Creates the key files `plan` names that do not exist yet (only with
/// [`KeyProvisioning::Generate`]); returns what it created, in the order signing, history.
pub fn ensure_keys(plan: &KeyPlan) -> Result<Vec<Generated>, ProvisionError> {
    let mut out = Vec::new();
    if plan.provisioning != KeyProvisioning::Generate {
        return Ok(out);
    }
    const SIGNING: &str = "gateway.signing_key";
    const HISTORY: &str = "gateway.history_key";
    if key_absent(&plan.signing_key) {
        let err = |reason: String| ProvisionError { key: SIGNING, reason };
        make_parent(&plan.signing_key).map_err(err)?;
        let signer = ledger::keys::generate_signer(&plan.name).map_err(|e| err(e.to_string()))?;
        ledger::keys::save_signer(&plan.signing_key, &signer).map_err(|e| err(e.to_string()))?;
        let vkey = signer.verifier().to_vkey();
        let public_path = plan.signing_key.with_extension("vkey");
        write_public(&public_path, &vkey).map_err(err)?;
        out.push(Generated {
            key: SIGNING,
            path: plan.signing_key.clone(),
            public_path,
            fingerprint: ledger::keys::fingerprint(signer.key_id()),
            public: vkey,
        });
    }
    if let Some(h) = plan.history_key.as_ref().filter(|h| key_absent(h)) {
        let err = |reason: String| ProvisionError { key: HISTORY, reason };
        make_parent(h).map_err(err)?;
        let k = ledger::keys::X25519Key::generate(&plan.name).map_err(|e| err(e.to_string()))?;
        ledger::keys::save_x25519(h, &k).map_err(|e| err(e.to_string()))?;
        let public_path = h.with_extension("pub");
        write_public(&public_path, &k.public_text()).map_err(err)?;
        out.push(Generated {
            key: HISTORY,
            path: h.clone(),
            public_path,
            fingerprint: ledger::keys::fingerprint(k.key_id()),
            public: k.public_text(),
        });
    }
    Ok(out)
}

fn make_parent(key: &Path) -> Result<(), String> {
    let Some(dir) = key.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("creating {}: {e}", dir.display()))
}

/// Writes a public key file (0644), replacing a stale one left beside a key that is gone.
fn write_public(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("tmp-public");
    let _ = fs::remove_file(&tmp);
    let write = || -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| format!("writing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn plan(dir: &Path, provisioning: KeyProvisioning, history: bool) -> KeyPlan {
        KeyPlan {
            provisioning,
            name: "gw-test.example/log".into(),
            signing_key: dir.join("keys/signing.key"),
            history_key: history.then(|| dir.join("keys/x25519.key")),
        }
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).expect("exists").permissions().mode() & 0o7777
    }

    #[test]
    fn missing_keys_are_generated_0600_in_a_0700_dir_with_public_halves() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = plan(d.path(), KeyProvisioning::Generate, true);
        let got = ensure_keys(&p).expect("provisioned");
        assert_eq!(got.len(), 2);
        assert_eq!(mode(&d.path().join("keys")), 0o700);
        assert_eq!(mode(&p.signing_key), 0o600);
        assert_eq!(mode(p.history_key.as_ref().expect("history")), 0o600);
        assert_eq!(mode(&got[0].public_path), 0o644);
        // The files load back, and the public halves match them.
        let signer = ledger::keys::load_signer(&p.signing_key).expect("signer loads");
        assert_eq!(signer.name(), "gw-test.example/log");
        let vkey = fs::read_to_string(d.path().join("keys/signing.vkey")).expect("vkey");
        assert_eq!(vkey.trim_end(), signer.verifier().to_vkey());
        assert_eq!(got[0].fingerprint, format!("{:08x}", signer.key_id()));
        let x = ledger::keys::load_x25519(&d.path().join("keys/x25519.key")).expect("x25519");
        let public = fs::read_to_string(d.path().join("keys/x25519.pub")).expect("pub");
        assert_eq!(public.trim_end(), x.public_text());
        // Nothing returned for the log is private: the private key file's text appears nowhere.
        let secret = fs::read_to_string(&p.signing_key).expect("key text");
        let shown = format!("{got:?}");
        assert!(!shown.contains(secret.trim_end()), "{shown}");
        assert!(!shown.contains("PRIVATE"), "{shown}");
    }

    #[test]
    fn existing_keys_are_kept_and_provisioned_mode_creates_nothing() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = plan(d.path(), KeyProvisioning::Generate, false);
        ensure_keys(&p).expect("first start");
        let before = fs::read(&p.signing_key).expect("key");
        assert!(ensure_keys(&p).expect("second start").is_empty());
        assert_eq!(fs::read(&p.signing_key).expect("key"), before);

        let e = tempfile::tempdir().expect("tempdir");
        let q = plan(e.path(), KeyProvisioning::Provisioned, true);
        assert!(ensure_keys(&q).expect("nothing to do").is_empty());
        assert!(!e.path().join("keys").exists());
    }

    #[test]
    fn a_key_directory_that_cannot_be_made_names_the_key() {
        // Nobody, not even root, can make a directory in /proc.
        let d = tempfile::tempdir().expect("tempdir");
        let mut p = plan(d.path(), KeyProvisioning::Generate, false);
        p.signing_key = PathBuf::from(format!("/proc/iov-test-{}/signing.key", std::process::id()));
        let e = ensure_keys(&p).expect_err("cannot create");
        assert_eq!(e.key, "gateway.signing_key");
        assert!(e.to_string().contains("/proc/iov-test-"), "{e}");
    }
}
