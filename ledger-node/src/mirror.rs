//! The upload check, pure: given an [`Upload`], what the ledger holds and the checkpoint it
//! cosigned, decide which blocks to add or why to refuse (`docs/sync-protocol.md`, the table of
//! `POST /v1/gateways/{origin}/blocks`). The caller reads the store, calls [`check`], then
//! writes; the clock is a parameter.

use std::collections::BTreeSet;

use ledger::block::BlockHeader;
use ledger::checkpoint::Checkpoint;
use ledger::sync_wire::{ErrorCode, Upload};
use ledger::verify;

use crate::store::{BlockMeta, MirrorBlock};

/// What the ledger knows when an upload arrives.
#[derive(Clone, Copy)]
pub struct Held<'a> {
    /// The enrolled gateway's Ed25519 public key (headers must name it).
    pub gateway: [u8; 32],
    /// Lane names this organisation receives.
    pub lanes: &'a [String],
    pub mirrored: u64,
    /// The cosigned checkpoint of the upload's `checkpoint_size`, if this ledger cosigned it.
    pub cosigned: Option<&'a Checkpoint>,
    /// Held header bytes at a height below `mirrored` (`Err`: the store failed).
    pub header: &'a dyn Fn(u64) -> Result<Option<Vec<u8>>, String>,
    /// Receipt time, ns since the Unix epoch.
    pub now_ns: u64,
    /// How far past `now_ns` a block's last record time may lie before it is flagged.
    pub future_tolerance_ns: u64,
}

/// A refusal: code (HTTP status from it), reason, and whether to keep the request as evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub reason: String,
    /// `Some(kind)`: store the request verbatim as evidence of that kind.
    pub evidence: Option<&'static str>,
}

fn refuse(code: ErrorCode, reason: impl Into<String>) -> Refusal {
    Refusal { code, reason: reason.into(), evidence: None }
}

/// The blocks an accepted upload adds (possibly none: everything was already held).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub new_blocks: Vec<MirrorBlock>,
    /// Blocks of the batch that were already held with identical headers.
    pub already_held: usize,
}

/// Checks an upload against what is held. See the module docs.
pub fn check(upload: &Upload, held: &Held<'_>) -> Result<Accepted, Refusal> {
    let (Some(first), Some(last)) = (upload.blocks.first(), upload.blocks.last()) else {
        return Err(refuse(ErrorCode::Malformed, "the batch has no blocks"));
    };
    let Some(cp) = held.cosigned else {
        return Err(refuse(
            ErrorCode::NotWitnessed,
            format!(
                "this ledger has not cosigned a checkpoint of size {} for this gateway; \
                 add-checkpoint first",
                upload.checkpoint_size
            ),
        ));
    };
    if first.height > held.mirrored {
        return Err(refuse(
            ErrorCode::Gap,
            format!(
                "batch starts at height {}, this ledger holds 0..{}: resend from {}",
                first.height, held.mirrored, held.mirrored
            ),
        ));
    }
    let read = |h: u64| -> Result<Option<Vec<u8>>, Refusal> {
        (held.header)(h).map_err(|e| refuse(ErrorCode::Internal, e))
    };

    // Shape: consecutive heights, headers that decode, at their height, of this gateway.
    let mut headers = Vec::with_capacity(upload.blocks.len());
    for (i, b) in upload.blocks.iter().enumerate() {
        let want = first.height.checked_add(i as u64);
        if want != Some(b.height) {
            let expected = want.map_or_else(|| "beyond u64".to_owned(), |w| w.to_string());
            return Err(refuse(
                ErrorCode::BadChain,
                format!("blocks[{i}] has height {}, expected {expected}", b.height),
            ));
        }
        let h = BlockHeader::from_bytes(&b.header).map_err(|e| {
            refuse(ErrorCode::BadChain, format!("header at height {}: {e}", b.height))
        })?;
        if h.height != b.height {
            return Err(refuse(
                ErrorCode::BadChain,
                format!("blocks[{i}] is sent as height {}, its header says {}", b.height, h.height),
            ));
        }
        if h.gateway != held.gateway {
            return Err(refuse(
                ErrorCode::BadChain,
                format!("header at height {} names another gateway key", b.height),
            ));
        }
        headers.push(h);
    }
    if last.height >= cp.size() {
        return Err(refuse(
            ErrorCode::BeyondCheckpoint,
            format!(
                "batch ends at height {}, the cosigned checkpoint has size {}",
                last.height,
                cp.size()
            ),
        ));
    }

    // Chain from the held header below the batch, then the proof of the last header.
    let prev_header = match first.height {
        0 => None,
        h => Some(read(h - 1)?.ok_or_else(|| {
            refuse(ErrorCode::Internal, format!("held header at height {} is missing", h - 1))
        })?),
    };
    let expected_prev = prev_header.as_deref().map(ledger::block::hash_header_bytes);
    verify::chain_segment(&headers, expected_prev)
        .map_err(|e| refuse(ErrorCode::BadChain, e.to_string()))?;
    let last_header = headers.last().ok_or_else(|| refuse(ErrorCode::Malformed, "empty"))?;
    verify::header_inclusion(last_header, cp, &upload.proof)
        .map_err(|e| refuse(ErrorCode::BadProof, format!("{e} (checkpoint size {})", cp.size())))?;

    // The batch is authenticated. Held heights must be identical.
    let mut already_held = 0;
    for b in upload.blocks.iter().take_while(|b| b.height < held.mirrored) {
        let mine = read(b.height)?.ok_or_else(|| {
            refuse(ErrorCode::Internal, format!("held header at height {} is missing", b.height))
        })?;
        if mine != b.header {
            return Err(Refusal {
                code: ErrorCode::Fork,
                reason: format!(
                    "height {}: the gateway proved header {} in its cosigned checkpoint of size {}, \
                     this ledger holds header {} at that height",
                    b.height,
                    ledger::block::hash_header_bytes(&b.header),
                    cp.size(),
                    ledger::block::hash_header_bytes(&mine),
                ),
                evidence: Some("fork"),
            });
        }
        already_held += 1;
    }

    // New blocks: exactly this organisation's lanes, each matching its header.
    let mut prev_last_ns = match (already_held, prev_header) {
        (0, Some(p)) => BlockHeader::from_bytes(&p).ok().map(|h| h.last_ns),
        (0, None) => None,
        (n, _) => headers.get(n - 1).map(|h| h.last_ns),
    };
    let mut new_blocks = Vec::new();
    for (b, h) in upload.blocks.iter().zip(&headers).skip(already_held) {
        check_lanes(b, h, held.lanes)?;
        let meta = BlockMeta {
            received_at_ns: held.now_ns,
            time_backwards: prev_last_ns.is_some_and(|p| h.first_ns < p),
            time_future: h.last_ns > held.now_ns.saturating_add(held.future_tolerance_ns),
        };
        prev_last_ns = Some(h.last_ns);
        new_blocks.push(MirrorBlock {
            height: b.height,
            header: b.header.clone(),
            first_ns: h.first_ns,
            last_ns: h.last_ns,
            lanes: b.lanes.clone(),
            meta,
        });
    }
    Ok(Accepted { new_blocks, already_held })
}

fn check_lanes(
    b: &ledger::sync_wire::UploadBlock,
    h: &BlockHeader,
    receives: &[String],
) -> Result<(), Refusal> {
    let bad = |reason: String| refuse(ErrorCode::BadLane, reason);
    let mut sent = BTreeSet::new();
    let mut last: Option<u16> = None;
    for (idx, data) in &b.lanes {
        if last.is_some_and(|l| *idx <= l) {
            return Err(bad(format!(
                "height {}: lane indexes must ascend without repeats, {idx} follows {}",
                b.height,
                last.unwrap_or_default()
            )));
        }
        last = Some(*idx);
        let info = h.lanes.get(usize::from(*idx)).ok_or_else(|| {
            bad(format!(
                "height {}: lane {idx} is not in the header ({} lanes)",
                b.height,
                h.lanes.len()
            ))
        })?;
        if !receives.contains(&info.name) {
            return Err(bad(format!(
                "height {}: lane {idx} ({:?}) is not a lane this organisation receives ({receives:?})",
                b.height, info.name
            )));
        }
        verify::lane_against_header(h, usize::from(*idx), data).map_err(|e| bad(e.to_string()))?;
        sent.insert(*idx);
    }
    for (i, info) in h.lanes.iter().enumerate() {
        if receives.contains(&info.name) && !u16::try_from(i).is_ok_and(|i| sent.contains(&i)) {
            return Err(bad(format!(
                "height {}: lane {i} ({:?}) is one this organisation receives and was not sent",
                b.height, info.name
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::block::{hash_header_bytes, BlockHash, LaneInfo, BLOCK_VERSION};
    use ledger::merkle::{self, MemoryTree};
    use ledger::sync_wire::UploadBlock;

    const NOW: u64 = 1_000_000_000_000;
    const TOL: u64 = 10_000;

    /// Headers with the given (first_ns, last_ns), one "factory" lane each.
    fn chain(times: &[(u64, u64)]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>, MemoryTree) {
        let (mut headers, mut lanes, mut tree) = (Vec::new(), Vec::new(), MemoryTree::new());
        for (h, &(first_ns, last_ns)) in times.iter().enumerate() {
            let lane = vec![h as u8; 10];
            let header = BlockHeader {
                version: BLOCK_VERSION,
                gateway: [1; 32],
                height: h as u64,
                prev: headers.last().map_or(BlockHash::ZERO, |p: &Vec<u8>| hash_header_bytes(p)),
                first_ns,
                last_ns,
                lanes: vec![LaneInfo {
                    name: "factory".into(),
                    record_count: 1,
                    recipients: vec![],
                    digest: *blake3::hash(&lane).as_bytes(),
                    size: 10,
                }],
            }
            .to_bytes();
            tree.push(&header);
            headers.push(header);
            lanes.push(lane);
        }
        (headers, lanes, tree)
    }

    fn upload(headers: &[Vec<u8>], lanes: &[Vec<u8>], tree: &MemoryTree, from: usize) -> Upload {
        let n = headers.len() as u64;
        Upload {
            blocks: (from..headers.len())
                .map(|h| UploadBlock {
                    height: h as u64,
                    header: headers[h].clone(),
                    lanes: vec![(0, lanes[h].clone())],
                })
                .collect(),
            checkpoint_size: n,
            proof: merkle::inclusion_proof(tree, n - 1, n).unwrap(),
        }
    }

    #[test]
    fn block_times_are_flagged_not_refused() {
        let times = [(100, 200), (150, 300), (400, NOW + TOL), (NOW + TOL, NOW + TOL + 1)];
        let (headers, lanes, tree) = chain(&times);
        let cp = Checkpoint::new("o", 4, tree.root()).unwrap();
        let receives = vec!["factory".to_owned()];
        let none = |_: u64| Ok(None);
        let held = Held {
            gateway: [1; 32],
            lanes: &receives,
            mirrored: 0,
            cosigned: Some(&cp),
            header: &none,
            now_ns: NOW,
            future_tolerance_ns: TOL,
        };
        let a = check(&upload(&headers, &lanes, &tree, 0), &held).unwrap();
        let flags: Vec<(bool, bool)> =
            a.new_blocks.iter().map(|b| (b.meta.time_backwards, b.meta.time_future)).collect();
        assert_eq!(flags, [(false, false), (true, false), (false, false), (false, true)]);
        assert!(a.new_blocks.iter().all(|b| b.meta.received_at_ns == NOW));

        // Resuming at height 2: the backwards check looks at the held header 1.
        let times = [(100, 200), (150, 900), (800, 1000)];
        let (headers, lanes, tree) = chain(&times);
        let cp = Checkpoint::new("o", 3, tree.root()).unwrap();
        let stored = headers.clone();
        let read = move |h: u64| Ok(stored.get(h as usize).cloned());
        let held = Held { mirrored: 2, cosigned: Some(&cp), header: &read, ..held };
        let a = check(&upload(&headers, &lanes, &tree, 1), &held).unwrap();
        assert_eq!(a.already_held, 1);
        assert_eq!(a.new_blocks.len(), 1);
        assert!(a.new_blocks[0].meta.time_backwards);
    }

    #[test]
    fn refusals_carry_their_code() {
        let (headers, lanes, tree) = chain(&[(1, 2), (3, 4), (5, 6)]);
        let cp = Checkpoint::new("o", 3, tree.root()).unwrap();
        let receives = vec!["factory".to_owned()];
        let none = |_: u64| Ok(None);
        let held = Held {
            gateway: [1; 32],
            lanes: &receives,
            mirrored: 0,
            cosigned: Some(&cp),
            header: &none,
            now_ns: NOW,
            future_tolerance_ns: TOL,
        };
        let good = upload(&headers, &lanes, &tree, 0);
        let code = |u: &Upload, h: &Held<'_>| check(u, h).unwrap_err().code;
        assert_eq!(code(&Upload { blocks: vec![], ..good.clone() }, &held), ErrorCode::Malformed);
        assert_eq!(code(&good, &Held { cosigned: None, ..held }), ErrorCode::NotWitnessed);
        let mut skip = good.clone();
        skip.blocks.remove(1);
        assert_eq!(code(&skip, &held), ErrorCode::BadChain);
        assert_eq!(code(&good, &Held { gateway: [2; 32], ..held }), ErrorCode::BadChain);
        let small = Checkpoint::new("o", 2, tree.root()).unwrap();
        assert_eq!(
            code(&good, &Held { cosigned: Some(&small), ..held }),
            ErrorCode::BeyondCheckpoint
        );
        let mut swapped = good.clone();
        swapped.blocks.swap(1, 2);
        assert_eq!(code(&swapped, &held), ErrorCode::BadChain);
        let mut twice = good.clone();
        twice.blocks[0].lanes.push((0, lanes[0].clone()));
        assert_eq!(code(&twice, &held), ErrorCode::BadLane);
        assert!(check(&good, &held).is_ok());
    }
}
