//! What the ledger-facing commands (`history --ledger`, `plot`, `proof export`) share: their
//! options, resolving a vehicle to its gateways and the keys answers are checked against, and
//! collecting verified rows.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use can_decoders::decode::Decoder;
use iovctl::fleet::client::{read_token_file, ClientError, Ledger};
use iovctl::fleet::range::{self, RangeError, Report, Role};
use iovctl::fleet::rows::{Row, Rows, Where};
use iovctl::fleet::verify::{self, Trust, VerifiedPage};
use ledger::cosignature::CosignatureVerifier;
use ledger::keys::X25519Key;
use ledger::note::{Ed25519Verifier, Verifier as _};

/// Options of every command that reads from a ledger.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct LedgerOpts {
    /// The ledger's base URL (http://host:7480 or https://...).
    #[arg(long, value_name = "URL")]
    pub ledger: Option<String>,
    /// The vehicle (unit) id the gateways are enrolled as.
    #[arg(long, value_name = "ID")]
    pub vehicle: Option<String>,
    /// DBC files to decode raw CAN frames with (repeatable).
    #[arg(long = "dbc", value_name = "FILE")]
    pub dbc: Vec<PathBuf>,
    /// This organisation's X25519 key file (0600; `iovctl keygen` writes x25519.key).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// File holding the bearer token (0600; scope query or query:<vehicle>).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Pin the ledger's cosigner vkey (the text or a file holding it). Without it the key is
    /// taken from the ledger's /v1/link (trust on first use, with a warning).
    #[arg(long, value_name = "VKEY")]
    pub ledger_key: Option<String>,
    /// Pin the gateway's log vkey (the text or a file holding it): only that gateway is read.
    #[arg(long, value_name = "VKEY")]
    pub gateway_key: Option<String>,
    /// Per-request timeout in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub timeout: u64,
    /// PEM file of the CA (or the self-signed certificate) an https ledger's certificate must
    /// chain to, instead of the system's roots.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

/// The HTTPS roots of `--ca-file` (`None`: the system's).
pub fn roots(ca: Option<&Path>) -> anyhow::Result<Option<Vec<ureq::tls::Certificate<'static>>>> {
    match ca {
        None => Ok(None),
        Some(p) => {
            Ok(Some(iovctl::fleet::client::read_ca_file(p).map_err(|e| usage(e.to_string()))?))
        }
    }
}

/// A usage or connection problem (exit 2), as opposed to a verification failure (exit 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// A vkey given as text or as a file holding it.
pub fn vkey_text(arg: &str) -> anyhow::Result<String> {
    let p = Path::new(arg);
    if !arg.contains('+') && p.is_file() {
        let t = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        return Ok(t.trim().to_owned());
    }
    Ok(arg.trim().to_owned())
}

/// The session of one command: the ledger client, its cosigner key and the gateways to read.
pub struct Session {
    pub ledger: Ledger,
    pub cosigner: CosignatureVerifier,
    pub gateways: Vec<(Trust, String)>,
    pub key: Option<X25519Key>,
    pub decoder: Option<Decoder>,
}

fn usage(msg: impl Into<String>) -> anyhow::Error {
    Usage(msg.into()).into()
}

fn client_err(e: ClientError) -> anyhow::Error {
    if e.is_connection() || e.status().is_some() {
        usage(e.to_string())
    } else {
        e.into()
    }
}

impl Session {
    /// Connects (`need_key`: an X25519 key is required to read lanes).
    pub fn open(o: &LedgerOpts, need_key: bool) -> anyhow::Result<Session> {
        let url = o.ledger.as_deref().ok_or_else(|| usage("--ledger URL is required"))?;
        let vehicle = o.vehicle.as_deref().ok_or_else(|| usage("--vehicle ID is required"))?;
        let token = match &o.token_file {
            Some(p) => Some(read_token_file(p).map_err(client_err)?),
            None => None,
        };
        let key = match &o.key {
            Some(p) => Some(
                ledger::keys::load_x25519(p)
                    .map_err(|e| usage(format!("--key {}: {e}", p.display())))?,
            ),
            None if need_key => {
                return Err(usage("--key FILE (this organisation's X25519 key) is required"))
            }
            None => None,
        };
        let decoder = decoder(&o.dbc)?;
        let ledger = Ledger::with_roots(
            url,
            token,
            Duration::from_secs(o.timeout.max(1)),
            roots(o.ca_file.as_deref())?,
        );
        let cosigner = match &o.ledger_key {
            Some(k) => {
                let t = vkey_text(k)?;
                CosignatureVerifier::from_vkey(&t)
                    .map_err(|e| usage(format!("--ledger-key {t:?}: {e}")))?
            }
            None => {
                let link = ledger.link().map_err(client_err)?;
                eprintln!(
                    "iovctl: warning: trusting the ledger's cosigner key from its /v1/link: {} (pin it with --ledger-key)",
                    link.cosigner
                );
                CosignatureVerifier::from_vkey(&link.cosigner)
                    .map_err(|e| anyhow::anyhow!("the ledger's /v1/link cosigner key: {e}"))?
            }
        };
        let pin = match &o.gateway_key {
            Some(k) => {
                let t = vkey_text(k)?;
                Some(
                    Ed25519Verifier::from_vkey(&t)
                        .map_err(|e| usage(format!("--gateway-key {t:?}: {e}")))?,
                )
            }
            None => None,
        };
        let listed = ledger.unit_gateways(vehicle).map_err(client_err)?;
        if listed.is_empty() {
            return Err(usage(format!(
                "no gateway is enrolled for vehicle {vehicle:?} at {}",
                ledger.base()
            )));
        }
        let mut gateways = Vec::new();
        for g in &listed {
            let v = Ed25519Verifier::from_vkey(&g.vkey).with_context(|| {
                format!("the ledger lists gateway {} with a bad vkey", g.origin)
            })?;
            if v.name() != g.origin {
                bail!("the ledger lists gateway {} with a vkey named {}", g.origin, v.name());
            }
            if pin.as_ref().is_some_and(|p| p != &v) {
                continue;
            }
            gateways.push((Trust { gateway: v, ledger: cosigner.clone() }, g.vkey.clone()));
        }
        if gateways.is_empty() {
            if let Some(p) = &pin {
                // The ledger does not list the pinned key: still read that origin and let the
                // checks decide (its blocks must be signed by the pinned key).
                gateways
                    .push((Trust { gateway: p.clone(), ledger: cosigner.clone() }, p.to_vkey()));
            }
        }
        Ok(Session { ledger, cosigner, gateways, key, decoder })
    }
}

/// A decoder over the DBC files (`None` without any).
pub fn decoder(files: &[PathBuf]) -> anyhow::Result<Option<Decoder>> {
    if files.is_empty() {
        return Ok(None);
    }
    let mut dbs = Vec::new();
    for p in files {
        let db = can_decoders::dbc::load_file_with(p, &can_decoders::dbc::LoadOptions::default())
            .map_err(|e| usage(format!("--dbc {}: {e}", p.display())))?;
        dbs.push(db);
    }
    let mut b = Decoder::builder();
    for db in &dbs {
        b.add_database(db, &[]);
    }
    let (d, _warnings) = b.build().context("preparing the decoder")?;
    Ok(Some(d))
}

/// Progress on stderr, only when it is a terminal.
pub struct Progress {
    tty: bool,
    shown: bool,
}

impl Progress {
    pub fn new() -> Progress {
        Progress { tty: std::io::stderr().is_terminal(), shown: false }
    }

    pub fn page(&mut self, origin: &str, done: u64, total: u64) {
        if self.tty {
            eprint!("\r\x1b[Kiovctl: {origin}: verified {done}/{total} blocks");
            self.shown = true;
        }
    }

    pub fn done(&mut self) {
        if self.shown {
            eprint!("\r\x1b[K");
            self.shown = false;
        }
    }
}

/// Fetches and verifies one gateway's range and hands each data page's rows (time order,
/// filtered to `[from, to]`) to `sink`.
#[allow(clippy::too_many_arguments)]
pub fn rows_of_gateway(
    s: &Session,
    trust: &Trust,
    from_ns: u64,
    to_ns: u64,
    signals: Option<Vec<String>>,
    lane: Option<&str>,
    progress: &mut Progress,
    mut sink: impl FnMut(Vec<Row>) -> std::io::Result<()>,
) -> Result<Report, RangeError> {
    let key = s.key.as_ref();
    let mut rows = Rows::new(s.decoder.as_ref(), signals);
    let origin: Arc<str> = trust.gateway.name().into();
    let q = range::Query {
        ledger: &s.ledger,
        trust,
        from_ns,
        to_ns,
        now_s: crate::history::now_ns() / 1_000_000_000,
    };
    let mut first: Option<u64> = None;
    let mut lanes_opened = 0usize;
    let r = range::fetch(&q, |role, page: &VerifiedPage| {
        if role != Role::Data {
            return Ok(());
        }
        let lo = *first.get_or_insert(page.start);
        progress.page(&origin, page.end - lo, page.requested_end - lo);
        let Some(key) = key else { return Ok(()) };
        let opened = verify::open_page(page, key, lane).map_err(|e| RangeError::Verify {
            origin: origin.to_string(),
            what: format!("heights [{}, {})", page.start, page.end),
            source: Box::new(e),
        })?;
        lanes_opened += opened.len();
        let mut out = Vec::new();
        for l in &opened {
            let at =
                Where { origin: origin.clone(), height: l.height, lane: l.lane.as_str().into() };
            for rec in &l.records {
                let t = rec.t_ns();
                if t < from_ns || t > to_ns {
                    continue;
                }
                rows.record(&at, rec, &mut out);
            }
        }
        out.sort_by_key(|r| r.t_ns);
        sink(out)?;
        Ok(())
    });
    progress.done();
    if let (Ok(rep), Some(k)) = (&r, key) {
        if rep.heights.is_some() && lanes_opened == 0 {
            eprintln!(
                "iovctl: warning: {origin}: no lane of the blocks in the range is sealed for key {} ({:08x}){}",
                k.name(),
                k.key_id(),
                lane.map(|l| format!(" with name {l:?}")).unwrap_or_default()
            );
        }
    }
    r
}

/// Exit code and message for an error of a ledger command.
pub fn report_error(e: &anyhow::Error) -> u8 {
    if let Some(u) = e.downcast_ref::<Usage>() {
        eprintln!("iovctl: error: {u}");
        return 2;
    }
    if let Some(r) = e.downcast_ref::<RangeError>() {
        let code = r.exit_code();
        if code == 1 {
            eprintln!("iovctl: VERIFICATION FAILED: {r}");
        } else {
            eprintln!("iovctl: error: {r}");
        }
        return code;
    }
    eprintln!("iovctl: error: {e:#}");
    1
}

/// Notes on stderr about what a report proves.
pub fn note_report(origin: &str, r: &Report) {
    match r.heights {
        None => eprintln!(
            "iovctl: note: {origin}: the ledger holds no block with records in the range (a ledger's \"nothing\" is not provable)"
        ),
        Some((lo, hi)) if r.open_end => eprintln!(
            "iovctl: note: {origin}: blocks {lo}..{hi} verified; the range runs to the end of the cosigned log (size {}): later records may not be cosigned yet",
            r.checkpoint_size
        ),
        Some(_) => {}
    }
}
