//! The invariants, checked on disk after every process stopped: each gateway's store opened
//! read-only with the strictest checks, each ledger's store beside it.
//!
//! - Every block durable at a gateway is at every ledger after the final heal: the same header,
//!   and exactly that ledger's lanes, byte for byte (a frame acknowledged durable and missing
//!   at a ledger breaks the run).
//! - A gateway's cursor never claims more than the ledger holds; its receipt verifies with the
//!   gateway's key and the ledger's cosigner key.
//! - No ledger holds fork evidence for any vehicle.
//! - Every store opens in verification mode.

use anyhow::{Context as _, Result};
use ledger::block::BlockHeader;
use ledger::note::Note;
use ledger::store::cursor::read_cursor;
use ledger::store::Store as _;
use ledger_node::store::LedgerStore as _;

use crate::scenario::LaneKind;
use crate::world::World;

/// What one ledger holds of one vehicle.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct AtLedger {
    pub blocks: u64,
    /// CAN frames in the blocks it holds (the raw lane's record counts, from the headers).
    pub frames_provable: u64,
    /// Records of its own lane (every frame for a raw lane; thinned samples for a coarse one).
    pub lane_records: u64,
    pub lane_bytes: u64,
    pub evidence: Vec<String>,
}

/// What the stores say about one vehicle.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct VehicleCheck {
    pub head: u64,
    /// Frames durable at the gateway (its raw lane's records).
    pub frames_durable: u64,
    pub ledgers: Vec<AtLedger>,
}

/// Checks every store; failures go to `world.failures`.
pub fn check(world: &mut World) -> Result<Vec<VehicleCheck>> {
    let raw_lane =
        world.orgs.iter().find(|o| o.spec.lane == LaneKind::Raw).map(|o| o.spec.name.clone());
    let mut ledger_stores = Vec::new();
    for o in &world.orgs {
        let path = o.dir.join("store");
        ledger_stores.push(
            ledger_node::store::rocks::Rocks::open(&path)
                .with_context(|| format!("opening ledger store {}", path.display()))?,
        );
    }
    let mut out = Vec::new();
    let mut failures = Vec::new();
    for c in &world.cars {
        let mut vc = VehicleCheck {
            ledgers: vec![AtLedger::default(); world.orgs.len()],
            ..Default::default()
        };
        let path = c.dir.join("store");
        if !path.join("CURRENT").exists() {
            out.push(vc);
            continue;
        }
        let store = match ledger::store::rocks::Rocks::open(
            &path,
            &c.signer.verifier(),
            ledger::store::rocks::Mode::Verify,
        ) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("verification failure: {}'s store: {e}", c.id));
                out.push(vc);
                continue;
            }
        };
        vc.head = store.size();
        let mut headers = Vec::new();
        for h in 0..vc.head {
            let bytes =
                store.header(h)?.with_context(|| format!("{}: header {h} missing", c.id))?;
            let parsed = BlockHeader::from_bytes(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: header {h}: {e}", c.id))?;
            if let Some(raw) = &raw_lane {
                vc.frames_durable += parsed
                    .lanes
                    .iter()
                    .filter(|l| &l.name == raw)
                    .map(|l| l.record_count)
                    .sum::<u64>();
            }
            headers.push((bytes, parsed));
        }
        for (l, o) in world.orgs.iter().enumerate() {
            let ls = &ledger_stores[l];
            let at = &mut vc.ledgers[l];
            let name = &o.spec.name;
            at.blocks = ls.mirrored(&c.origin)?;
            if at.blocks < vc.head {
                failures.push(format!(
                    "missing at a ledger after the heal: {name} holds {} of {}'s {} durable blocks",
                    at.blocks, c.id, vc.head
                ));
            }
            if at.blocks > vc.head {
                failures.push(format!(
                    "{name} holds {} blocks of {}, more than its {} ",
                    at.blocks, c.id, vc.head
                ));
            }
            for (h, (bytes, parsed)) in headers.iter().enumerate().take(at.blocks as usize) {
                let h = h as u64;
                if ls.header(&c.origin, h)?.as_deref() != Some(bytes.as_slice()) {
                    failures
                        .push(format!("{name}: header {h} of {} differs from the gateway's", c.id));
                    continue;
                }
                if let Some(raw) = &raw_lane {
                    at.frames_provable += parsed
                        .lanes
                        .iter()
                        .filter(|x| &x.name == raw)
                        .map(|x| x.record_count)
                        .sum::<u64>();
                }
                let got = ls.lanes(&c.origin, h)?;
                let mine: Vec<u16> = parsed
                    .lanes
                    .iter()
                    .enumerate()
                    .filter(|(_, x)| &x.name == name)
                    .map(|(i, _)| i as u16)
                    .collect();
                if got.iter().map(|g| g.0).collect::<Vec<_>>() != mine {
                    failures.push(format!(
                        "{name}: block {h} of {} carries lanes {:?}, want {mine:?}",
                        c.id,
                        got.iter().map(|g| g.0).collect::<Vec<_>>()
                    ));
                    continue;
                }
                for (i, bytes) in &got {
                    if let Some(g) = store.lane(h, *i)? {
                        if &g != bytes {
                            failures
                                .push(format!("{name}: lane {i} of block {h} of {} differs", c.id));
                        }
                    }
                    at.lane_bytes += bytes.len() as u64;
                    at.lane_records += parsed.lanes[usize::from(*i)].record_count;
                }
            }
            let cursor = read_cursor(&store, name)?;
            if cursor.acked > at.blocks {
                failures.push(format!(
                    "{}'s cursor says {name} acknowledged {} blocks, it holds {}",
                    c.id, cursor.acked, at.blocks
                ));
            }
            if vc.head > 0 {
                match store.receipt(name)? {
                    None => failures.push(format!("{}: no receipt from {name}", c.id)),
                    Some(r) => {
                        let gv = c.signer.verifier();
                        let cv = o.cosigner.verifier();
                        let ok = match Note::parse(&r) {
                            Ok(n) => n.verify(&[&gv, &cv]).map(|v| v.len()).ok(),
                            Err(_) => None,
                        };
                        if ok != Some(2) {
                            failures.push(format!("verification failure: {}'s receipt from {name} does not verify with both keys", c.id));
                        }
                    }
                }
            }
            for e in ls.evidence(&c.origin)? {
                if e.kind == "fork" {
                    failures.push(format!(
                        "fork: {name} holds fork evidence for {}: {}",
                        c.id, e.reason
                    ));
                }
                at.evidence.push(format!("{}: {}", e.kind, e.reason));
            }
        }
        out.push(vc);
    }
    world.failures.extend(failures);
    Ok(out)
}
