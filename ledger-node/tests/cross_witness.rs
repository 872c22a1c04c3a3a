//! Cross-witnessing end to end: two real `iov-ledger` processes (factory, city) on loopback,
//! each the other's peer (ledger-node/README.md, "Cross-witnessing"). `iovctl` is run from the
//! same target directory (a workspace build builds it).

#[path = "support/pair.rs"]
mod pair;

use std::io::{Read as _, Write as _};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Result};
use ledger::checkpoint::{Checkpoint, SignedCheckpoint};
use ledger::merkle::Hash;
use ledger::note::{Note, Verifier};
use ledger::sync_wire::AddCheckpoint;
use pair::*;

const T: Duration = Duration::from_secs(30);

/// Waits until `node` publishes a checkpoint of `size`; returns the note.
fn published(node: &Node, size: u64) -> Result<Vec<u8>> {
    wait_for(&format!("{} to publish size {size}", node.base), T, || {
        let b = node.checkpoint()?;
        Ok((size_of(&b) == size).then_some(b))
    })
}

fn iovctl(args: &[&str]) -> Result<(i32, String, String)> {
    let out = Command::new(sibling("iovctl")).args(args).output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// A checkpoint of `origin` at `size` with an arbitrary root, signed with the org's real key.
fn forged(org: &Org, size: u64, root_byte: u8) -> Result<Vec<u8>> {
    let cp = Checkpoint::new(org.log.name(), size, Hash([root_byte; 32]))?;
    Ok(SignedCheckpoint::sign(cp, &org.log)?.to_bytes())
}

#[test]
fn each_ledger_publishes_checkpoints_cosigned_by_the_other_and_audit_passes() -> Result<()> {
    let mut p = Pair::new(FAST)?;
    let f = p.factory.start()?;
    let c = p.city.start()?;
    p.gf.grow(3);
    assert_eq!(f.add_checkpoint(&p.gf.add_checkpoint(0))?.0, 200);
    p.gc.grow(2);
    assert_eq!(c.add_checkpoint(&p.gc.add_checkpoint(0))?.0, 200);
    p.gf.grow(2);
    assert_eq!(f.add_checkpoint(&p.gf.add_checkpoint(3))?.0, 200);

    // The factory's /checkpoint: size 2, its log signature and the city's cosignature.
    let note = published(&f, 2)?;
    let n = Note::parse(&note)?;
    let city_cosigner = p.city.cosigner.verifier();
    let flog = p.factory.log.verifier();
    let ok = n.verify(&[&flog as &dyn Verifier, &city_cosigner])?;
    assert_eq!(ok.len(), 2, "log signature and the city's cosignature: {note:?}");
    // And the city's, cosigned by the factory.
    let note = published(&c, 1)?;
    let count = Note::parse(&note)?
        .verify(&[&p.city.log.verifier() as &dyn Verifier, &p.factory.cosigner.verifier()])?
        .len();
    assert_eq!(count, 2);

    // Each witness exposes its view of the other (C2SP monitor retrieval).
    let h = sha_hex(p.factory.log.name());
    let (s, view) = c.get(&format!("/{h}/checkpoint"))?;
    assert_eq!(s, 200);
    assert_eq!(size_of(&view), 2);
    let info = c.peers()?;
    assert_eq!(info["peers"][0]["witnessed_size"], 2);
    assert_eq!(info["peers"][0]["cosigned_our_size"], 1);

    // The published log verifies as a plain C2SP log, and the pair audits clean.
    let (code, out, err) =
        iovctl(&["tlog", "verify", "--log", &f.base, "--key", &p.factory.log_vkey()])?;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = iovctl(&["audit", "--ledger", &f.base, "--peer", &c.base])?;
    assert_eq!(code, 0, "{out}{err}");
    let token = p.factory.dir.path().join("token");
    std::fs::write(&token, ADMIN_SECRET)?;
    let (code, out, err) = iovctl(&[
        "audit",
        "--ledger",
        &f.base,
        "--peer",
        &c.base,
        "--token-file",
        token.to_str().unwrap_or_default(),
        "--log-key",
        &p.factory.log_vkey(),
        "--peer-key",
        &p.city.cosigner_vkey(),
        "--format",
        "json",
    ])?;
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(v["ok"], true, "{out}");
    assert_eq!(f.metric("iov_ledger_split_views ")?, 0);
    assert_eq!(c.metric("iov_ledger_split_views ")?, 0);
    Ok(())
}

#[test]
fn without_the_peer_new_checkpoints_wait_and_publication_resumes_when_it_returns() -> Result<()> {
    let mut p = Pair::new(FAST)?;
    let f = p.factory.start()?;
    p.gf.grow(2);
    assert_eq!(f.add_checkpoint(&p.gf.add_checkpoint(0))?.0, 200);
    // Nothing is cosigned yet: the empty tree is what is published.
    wait_for("a failed push", T, || {
        Ok((f.metric("iov_ledger_peer_push_failures_total{peer=\"city\"}")? >= 1).then_some(()))
    })?;
    assert_eq!(size_of(&f.checkpoint()?), 0);
    assert_eq!(f.peers()?["aggregate_size"], 1);

    let c = p.city.start()?;
    published(&f, 1)?;
    drop(c);
    p.gf.grow(1);
    assert_eq!(f.add_checkpoint(&p.gf.add_checkpoint(2))?.0, 200);
    let before = f.metric("iov_ledger_peer_push_failures_total{peer=\"city\"}")?;
    wait_for("two more failed pushes", T, || {
        Ok((f.metric("iov_ledger_peer_push_failures_total{peer=\"city\"}")? >= before + 2)
            .then_some(()))
    })?;
    // The pusher tried and failed: size 2 is signed but not published.
    assert_eq!(size_of(&f.checkpoint()?), 1);
    assert_eq!(f.peers()?["aggregate_size"], 2);
    assert_eq!(f.peers()?["published_size"], 1);

    let _c = p.city.start()?;
    let note = published(&f, 2)?;
    let count = Note::parse(&note)?
        .verify(&[&p.factory.log.verifier() as &dyn Verifier, &p.city.cosigner.verifier()])?
        .len();
    assert_eq!(count, 2);
    Ok(())
}

#[test]
fn a_split_view_is_refused_kept_as_evidence_survives_a_restart_and_fails_the_audit() -> Result<()> {
    let mut p = Pair::new(FAST)?;
    let f = p.factory.start()?;
    let c = p.city.start()?;
    p.gf.grow(1);
    assert_eq!(f.add_checkpoint(&p.gf.add_checkpoint(0))?.0, 200);
    published(&f, 1)?;
    let (_, honest) = c.get(&format!("/{}/checkpoint", sha_hex(p.factory.log.name())))?;
    assert_eq!(size_of(&honest), 1);

    // The city restarts: what it cosigned is on disk.
    drop(c);
    let c = p.city.start()?;

    // A rogue factory (its real key) signs another tree of the same size for the city.
    let b = AddCheckpoint { old_size: 1, proof: Vec::new(), checkpoint: forged(&p.factory, 1, 7)? };
    let (s, body) = c.add_checkpoint(&b.to_bytes())?;
    assert_eq!(s, 422, "{}", String::from_utf8_lossy(&body));
    assert_eq!(c.metric("iov_ledger_split_views ")?, 1);
    let (s, ev) = c.admin_get("/v1/admin/peers/evidence")?;
    assert_eq!(s, 200);
    let ev: serde_json::Value = serde_json::from_slice(&ev)?;
    assert_eq!(ev[0]["kind"], "peer_fork", "{ev}");
    assert_eq!(ev[0]["peer"], "factory");
    // The two conflicting signed checkpoints are both in the record and both verify.
    let held = ev[0]["held"].as_str().unwrap_or_default();
    let received = ev[0]["received"].as_str().unwrap_or_default();
    let flog = p.factory.log.verifier();
    let (a, _) = SignedCheckpoint::verify(held.as_bytes(), &[&flog])?;
    let req = AddCheckpoint::parse(received.as_bytes())?;
    let (bb, _) = SignedCheckpoint::verify(&req.checkpoint, &[&flog])?;
    assert_eq!(a.checkpoint().size(), bb.checkpoint().size());
    assert_ne!(a.checkpoint().root(), bb.checkpoint().root());
    // Nothing changed: the city's view is still the honest one.
    let (_, view) = c.get(&format!("/{}/checkpoint", sha_hex(p.factory.log.name())))?;
    assert_eq!(view, honest);

    // A rollback is refused too, whichever old size it claims.
    p.gf.grow(1);
    assert_eq!(f.add_checkpoint(&p.gf.add_checkpoint(1))?.0, 200);
    published(&f, 2)?;
    let old_one = AddCheckpoint { old_size: 2, proof: Vec::new(), checkpoint: honest.clone() };
    assert_eq!(c.add_checkpoint(&old_one.to_bytes())?.0, 400);
    let old_one = AddCheckpoint { old_size: 1, proof: Vec::new(), checkpoint: honest.clone() };
    let (s, body) = c.add_checkpoint(&old_one.to_bytes())?;
    assert_eq!((s, body), (409, b"2\n".to_vec()));
    assert_eq!(c.peers()?["peers"][0]["witnessed_size"], 2);

    // The audit names the conflict and fails.
    let token = p.city.dir.path().join("token");
    std::fs::write(&token, ADMIN_SECRET)?;
    let (code, out, err) = iovctl(&[
        "audit",
        "--ledger",
        &f.base,
        "--peer",
        &c.base,
        "--token-file",
        token.to_str().unwrap_or_default(),
    ])?;
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("peer_fork") && out.contains("factory"), "{out}{err}");
    Ok(())
}

/// Served files: path -> body.
type Files = std::collections::HashMap<String, Vec<u8>>;

/// A stand-in for a rogue factory's HTTP API: answers `files` (path -> body) to GETs, 404 else.
fn rogue_server(files: Files) -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = l.local_addr()?.port();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut s) = conn else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&head).lines().next().unwrap_or("").to_owned();
            let path = line.strip_prefix("GET ").and_then(|r| r.split(' ').next()).unwrap_or("");
            let (status, body) = match files.get(path) {
                Some(b) => ("200 OK", b.clone()),
                None => ("404 Not Found", b"not here\n".to_vec()),
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(&body);
        }
    });
    Ok(port)
}

/// A log of `n` leaves (`tag` makes different histories), its signed checkpoint at `size`, and
/// its tiles at `size` as served files.
fn rogue_log(org: &Org, tag: &str, n: u64, size: u64) -> Result<(Vec<u8>, Files)> {
    let mut t = ledger::merkle::MemoryTree::new();
    for i in 0..n {
        t.push(format!("{tag} {i}").as_bytes());
    }
    let root = ledger::merkle::root(&t, size)?;
    let note =
        SignedCheckpoint::sign(Checkpoint::new(org.log.name(), size, root)?, &org.log)?.to_bytes();
    let mut files = std::collections::HashMap::new();
    for (tile, bytes) in ledger::tile::build_tiles(&t, size)? {
        files.insert(format!("/{}", tile.path()), bytes);
    }
    files.insert("/checkpoint".to_owned(), note.clone());
    Ok((note, files))
}

#[test]
fn gossip_catches_a_published_checkpoint_that_differs_from_the_witnessed_one() -> Result<()> {
    let factory = Org::new("factory")?;
    let city = Org::new("city")?;
    // What the rogue factory publishes to everyone else: size 1, another root.
    let mut files = std::collections::HashMap::new();
    files.insert("/checkpoint".to_owned(), forged(&factory, 1, 9)?);
    let port = rogue_server(files)?;
    city.configure(Some((&factory, &format!("http://127.0.0.1:{port}/"))), &[], FAST)?;
    let c = city.start()?;
    // What it shows the city's witness.
    let a = AddCheckpoint { old_size: 0, proof: Vec::new(), checkpoint: forged(&factory, 1, 1)? };
    let (s, body) = c.add_checkpoint(&a.to_bytes())?;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    wait_for("the split-view alert", T, || {
        Ok((c.metric("iov_ledger_split_views ")? == 1).then_some(()))
    })?;
    let (_, ev) = c.admin_get("/v1/admin/peers/evidence")?;
    let ev: serde_json::Value = serde_json::from_slice(&ev)?;
    assert_eq!(ev.as_array().map(Vec::len), Some(1), "one record, not one per gossip round: {ev}");
    assert_eq!(ev[0]["kind"], "split_view");
    let received = ev[0]["received"].as_str().unwrap_or_default().as_bytes().to_vec();
    assert_eq!(received, forged(&factory, 1, 9)?);
    // Further rounds keep it at one record.
    let rounds = c.metric("iov_ledger_peer_gossip_failures_total{peer=\"factory\"}")?;
    wait_for("two more gossip rounds", T, || {
        Ok((c.metric("iov_ledger_peer_gossip_failures_total{peer=\"factory\"}")? >= rounds + 2)
            .then_some(()))
    })?;
    assert_eq!(c.metric("iov_ledger_split_views ")?, 1);
    Ok(())
}

#[test]
fn peers_config_errors_name_the_key() -> Result<()> {
    let factory = Org::new("factory")?;
    let city = Org::new("city")?;
    let check = |extra: &str| -> Result<(i32, String)> {
        factory.configure(Some((&city, &city.url())), &[], extra)?;
        let out = Command::new(ledger_bin())
            .args(["check-config", "--config"])
            .arg(factory.dir.path().join("ledger.toml"))
            .output()?;
        Ok((out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned()))
    };
    assert_eq!(check(FAST)?.0, 0);
    for (extra, key) in [
        ("\n[publication]\nquorum = 2\n", "publication.quorum"),
        ("\n[publication]\nwitnesses = [\"port\"]\n", "publication.witnesses[0]"),
        ("\n[cross_witness]\npush_interval = \"soon\"\n", "cross_witness.push_interval"),
        ("\n[cross_witness]\nretries = 3\n", "unknown field `retries`"),
    ] {
        let (code, err) = check(extra)?;
        assert_eq!(code, 2, "{extra}: {err}");
        assert!(err.contains(key), "want {key}: {err}");
    }
    // A peer's log key that is really its cosigner key.
    factory.configure(Some((&city, &city.url())), &[], FAST)?;
    let text = std::fs::read_to_string(factory.dir.path().join("ledger.toml"))?
        .replace(&city.log_vkey(), &city.cosigner_vkey());
    std::fs::write(factory.dir.path().join("ledger.toml"), text)?;
    let out = Command::new(ledger_bin())
        .args(["check-config", "--config"])
        .arg(factory.dir.path().join("ledger.toml"))
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(2) || !err.contains("peers[0].log_vkey") {
        bail!("want peers[0].log_vkey refused: {err}");
    }
    Ok(())
}

fn sha_hex(s: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_peer_over_https_with_a_pinned_ca_is_witnessed_and_gossiped() -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let factory = Org::new("factory")?;
    let city = Org::new("city")?;
    let mut gf = Gateway::new("iov.example/gw/VIN-T");
    // The city serves HTTPS with a self-signed certificate; the factory pins it as the CA.
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    std::fs::write(city.dir.path().join("cert.pem"), ck.cert.pem())?;
    let key = city.dir.path().join("key.pem");
    std::fs::write(&key, ck.signing_key.serialize_pem())?;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    std::fs::write(factory.dir.path().join("city-ca.pem"), ck.cert.pem())?;
    let city_url = format!("https://localhost:{}/", city.port);
    // `ca_file` right after the [[peers]] entry belongs to it.
    factory.configure(
        Some((&city, &city_url)),
        &[&gf],
        &format!("ca_file = \"city-ca.pem\"\n{FAST}"),
    )?;
    city.configure(Some((&factory, &factory.url())), &[], FAST)?;
    let path = city.dir.path().join("ledger.toml");
    let text = std::fs::read_to_string(&path)?.replace(
        &format!("address = \"127.0.0.1:{}\"\n", city.port),
        &format!(
            "address = \"127.0.0.1:{}\"\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n",
            city.port
        ),
    );
    std::fs::write(&path, text)?;
    let f = factory.start()?;
    let _c = city.start()?;
    gf.grow(2);
    assert_eq!(f.add_checkpoint(&gf.add_checkpoint(0))?.0, 200);
    let note = published(&f, 1)?;
    let count = Note::parse(&note)?
        .verify(&[&factory.log.verifier() as &dyn Verifier, &city.cosigner.verifier()])?
        .len();
    assert_eq!(count, 2, "cosigned by the city over HTTPS");
    // Gossip over HTTPS reaches the city's (empty) published checkpoint.
    wait_for("a gossip round over HTTPS", T, || {
        Ok((f.peers()?["peers"][0]["last_gossip"]["ok"] == true).then_some(()))
    })?;
    Ok(())
}

#[test]
fn gossip_across_sizes_proves_consistency_from_the_peers_tiles() -> Result<()> {
    let factory = Org::new("factory")?;
    // The city witnessed size 2 of history "a"; the factory publishes size 5.
    let (a2, _) = rogue_log(&factory, "a", 5, 2)?;
    for (tag, honest) in [("a", true), ("b", false)] {
        let city = Org::new("city")?;
        let (_, files) = rogue_log(&factory, tag, 5, 5)?;
        let port = rogue_server(files)?;
        city.configure(Some((&factory, &format!("http://127.0.0.1:{port}/"))), &[], FAST)?;
        let c = city.start()?;
        let req = AddCheckpoint { old_size: 0, proof: Vec::new(), checkpoint: a2.clone() };
        assert_eq!(c.add_checkpoint(&req.to_bytes())?.0, 200);
        if honest {
            // An extension of what was witnessed: consistent, by a proof from the tiles.
            let detail = wait_for("a gossip round", T, || {
                let g = c.peers()?["peers"][0]["last_gossip"].clone();
                Ok((g["ok"] == true
                    && g["detail"].as_str().unwrap_or("").contains("witnessed size 2"))
                .then_some(g))
            })?;
            assert!(
                detail["detail"].as_str().unwrap_or("").contains("published size 5 consistent"),
                "{detail}"
            );
            assert_eq!(c.metric("iov_ledger_split_views ")?, 0);
        } else {
            // Another history of size 5: the proof from the tiles does not verify.
            wait_for("the split-view alert", T, || {
                Ok((c.metric("iov_ledger_split_views ")? == 1).then_some(()))
            })?;
            let (_, ev) = c.admin_get("/v1/admin/peers/evidence")?;
            let ev: serde_json::Value = serde_json::from_slice(&ev)?;
            assert_eq!(ev[0]["kind"], "split_view", "{ev}");
            assert!(ev[0]["reason"].as_str().unwrap_or("").contains("not consistent"), "{ev}");
        }
    }
    Ok(())
}

#[test]
fn a_pusher_that_lost_an_answer_re_proves_from_the_size_the_peer_reports() -> Result<()> {
    let factory = Org::new("factory")?;
    let city = Org::new("city")?;
    let mut gf = Gateway::new("iov.example/gw/VIN-R");
    // The factory's pusher looks once at start, then waits an hour.
    let slow = FAST.replace("push_interval = \"100ms\"", "push_interval = \"1h\"");
    factory.configure(Some((&city, &city.url())), &[&gf], &slow)?;
    city.configure(Some((&factory, &factory.url())), &[], FAST)?;
    let c = city.start()?;
    let f = factory.start()?;
    // Its first look (nothing to push) is over before the log grows.
    wait_for("the first push round", T, || {
        Ok((f.peers()?["peers"][0]["last_push"]["ok"] == true).then_some(()))
    })?;
    gf.grow(1);
    assert_eq!(f.add_checkpoint(&gf.add_checkpoint(0))?.0, 200);
    gf.grow(1);
    assert_eq!(f.add_checkpoint(&gf.add_checkpoint(1))?.0, 200);
    assert_eq!(f.peers()?["aggregate_size"], 2);
    assert_eq!(size_of(&f.checkpoint()?), 0, "nothing pushed yet");
    // The city cosigns the factory's size 1 (as if the factory's push had been answered and
    // the answer lost): the root of one leaf is that leaf's hash, the first of its tile.
    let (s, tile) = f.get("/tile/0/000.p/1")?;
    assert_eq!(s, 200);
    let root = Hash(tile[..32].try_into()?);
    let cp = Checkpoint::new(factory.log.name(), 1, root)?;
    let one = SignedCheckpoint::sign(cp, &factory.log)?.to_bytes();
    let req = AddCheckpoint { old_size: 0, proof: Vec::new(), checkpoint: one };
    assert_eq!(c.add_checkpoint(&req.to_bytes())?.0, 200);
    // The restarted factory believes the city holds nothing: 409 says 1, it proves 1 -> 2.
    drop(f);
    let f = factory.start()?;
    let note = published(&f, 2)?;
    let count = Note::parse(&note)?
        .verify(&[&factory.log.verifier() as &dyn Verifier, &city.cosigner.verifier()])?
        .len();
    assert_eq!(count, 2);
    assert_eq!(c.peers()?["peers"][0]["witnessed_size"], 2);
    assert!(c.metric("iov_ledger_refusals_total{reason=\"size_mismatch\"} ")? >= 1);
    Ok(())
}
