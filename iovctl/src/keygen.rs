//! `iovctl keygen`: a new identity for a gateway or an organisation ledger, as key files.
//!
//! Files written into `--out` (see `ledger::keys` for the formats):
//!
//! | file | mode | what |
//! |---|---|---|
//! | `signing.key` | 0600 | Ed25519 note signer (type 0x01): signs this party's log checkpoints |
//! | `signing.vkey` | 0644 | its verifier key `NAME+id+base64`, what `tlog verify --key` takes |
//! | `x25519.key` | 0600 | X25519 secret: data addressed to this party is encrypted to it |
//! | `x25519.pub` | 0644 | X25519 public key `NAME+id+base64` |
//! | `witness.key` | 0600 | org only: Ed25519 cosigner (type 0x04) for cross-witnessing |
//! | `witness.vkey` | 0644 | org only: its verifier key |
//!
//! Nothing is overwritten: if any target exists, nothing is written. Private keys never print.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use ledger::keys::{self, X25519Key};

pub const EXAMPLES: &str = "\
Examples:
  iovctl keygen --out /etc/iov/keys --name gw-0042.fleet.example/log
  iovctl keygen --out keys/factory --name factory.example/ledger --kind org

Exit status: 0 keys written; 1 a key file exists already or could not be written;
2 usage error.";

/// Who the keys are for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// A gateway: a log signing key and an X25519 key.
    Gateway,
    /// An organisation ledger (factory, city): as a gateway, plus a witness cosigning key.
    Org,
}

#[derive(clap::Args)]
pub struct Args {
    /// Directory to write the key files into (created with mode 0700 if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Key name, normally the log origin (no spaces, no '+'), e.g. gw-0042.fleet.example/log.
    #[arg(long)]
    name: String,
    /// Who the keys are for.
    #[arg(long, value_enum, default_value_t = Kind::Gateway)]
    kind: Kind,
}

pub const SIGNING_KEY: &str = "signing.key";
pub const SIGNING_VKEY: &str = "signing.vkey";
pub const X25519_KEY: &str = "x25519.key";
pub const X25519_PUB: &str = "x25519.pub";
pub const WITNESS_KEY: &str = "witness.key";
pub const WITNESS_VKEY: &str = "witness.vkey";

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    if !ledger::note::is_valid_key_name(&args.name) {
        bail!("key name {:?} is empty or contains a space or '+'", args.name);
    }
    let mut names = vec![SIGNING_KEY, SIGNING_VKEY, X25519_KEY, X25519_PUB];
    if args.kind == Kind::Org {
        names.extend([WITNESS_KEY, WITNESS_VKEY]);
    }
    // Check every target first so a refusal leaves no half-written identity behind.
    for n in &names {
        let p = args.out.join(n);
        if p.symlink_metadata().is_ok() {
            bail!(
                "{} already exists; refusing to overwrite a key (nothing was written)",
                p.display()
            );
        }
    }
    if !args.out.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&args.out)
            .with_context(|| format!("creating {}", args.out.display()))?;
    }

    let signer = keys::generate_signer(&args.name)?;
    let x25519 = X25519Key::generate(&args.name)?;
    let out = &args.out;
    keys::save_signer(&out.join(SIGNING_KEY), &signer)?;
    let vkey = signer.verifier().to_vkey();
    write_public(&out.join(SIGNING_VKEY), &vkey)?;
    keys::save_x25519(&out.join(X25519_KEY), &x25519)?;
    write_public(&out.join(X25519_PUB), &x25519.public_text())?;

    println!("wrote {} keys for {:?} to {}", kind_name(args.kind), args.name, out.display());
    println!("log signing key   fingerprint {}", keys::fingerprint(signer.key_id()));
    println!("  verifier key    {vkey}");
    println!("x25519 key        fingerprint {}", keys::fingerprint(x25519.key_id()));
    println!("  public key      {}", x25519.public_text());
    if args.kind == Kind::Org {
        let witness = keys::generate_cosigner(&args.name)?;
        keys::save_cosigner(&out.join(WITNESS_KEY), &witness)?;
        let wvkey = witness.verifier().to_vkey();
        write_public(&out.join(WITNESS_VKEY), &wvkey)?;
        println!("witness key       fingerprint {}", keys::fingerprint(witness.key_id()));
        println!("  verifier key    {wvkey}");
    }
    println!(
        "private keys: {} (mode 0600; back them up, never share them)",
        private_list(args.kind)
    );
    Ok(ExitCode::SUCCESS)
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Gateway => "gateway",
        Kind::Org => "org",
    }
}

fn private_list(kind: Kind) -> String {
    let mut v = vec![SIGNING_KEY, X25519_KEY];
    if kind == Kind::Org {
        v.push(WITNESS_KEY);
    }
    v.join(", ")
}

/// A public key file: one line, mode exactly 0644 (whatever the umask), never overwritten.
fn write_public(path: &Path, line: &str) -> anyhow::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(format!("{line}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644))
        .with_context(|| format!("setting mode 0644 on {}", path.display()))?;
    Ok(())
}
