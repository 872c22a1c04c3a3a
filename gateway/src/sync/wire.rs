//! The client side of the sync wire protocol (`docs/sync-protocol.md`): request bodies built
//! and response bodies parsed here, nowhere else.
//!
//! `add-checkpoint` is C2SP tlog-witness: `old N\n`, one base64 consistency-proof hash per
//! line, a blank line, then the signed checkpoint note; 200 answers cosignature lines, 409
//! answers (`text/x.tlog.size`) the size the witness last cosigned.

use base64::Engine as _;
use ledger::merkle::Hash;

/// One lane of a block as sent: its index in the header, name and ciphertext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lane {
    pub index: u16,
    pub name: String,
    pub bytes: Vec<u8>,
}

/// One block as sent: height, header bytes, the lanes this ledger receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub height: u64,
    pub header: Vec<u8>,
    pub lanes: Vec<Lane>,
}

/// One upload: consecutive blocks and the inclusion proof of the last header in the tree of
/// `tree_size` (the checkpoint the ledger cosigned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub tree_size: u64,
    pub blocks: Vec<Block>,
    pub proof: Vec<Hash>,
}

/// What `GET /v1/gateways/{origin}/state` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub witnessed: u64,
    pub mirrored: u64,
    pub lanes: Vec<String>,
}

/// The C2SP tlog-witness add-checkpoint request body.
pub fn add_checkpoint_body(old: u64, proof: &[Hash], note: &[u8]) -> Vec<u8> {
    let mut out = format!("old {old}\n").into_bytes();
    for h in proof {
        out.extend_from_slice(h.to_base64().as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(note);
    out
}

/// The body of a 409 (`text/x.tlog.size`): a decimal size and a newline.
pub fn parse_size(body: &[u8]) -> Result<u64, String> {
    let text = std::str::from_utf8(body).map_err(|_| "size is not UTF-8".to_string())?;
    let t = text.strip_suffix('\n').unwrap_or(text);
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) || (t.len() > 1 && t.starts_with('0')) {
        return Err(format!("{t:?} is not a decimal size"));
    }
    t.parse().map_err(|_| format!("{t:?} does not fit in 64 bits"))
}

pub const BLOCKS_CONTENT_TYPE: &str = "application/cbor";

fn int(v: &ciborium::Value) -> Option<u64> {
    v.as_integer()?.try_into().ok()
}

/// Provisional until the protocol lands: a CBOR map `{witnessed, mirrored, lanes}`.
pub fn parse_state(body: &[u8]) -> Result<State, String> {
    let v: ciborium::Value = ciborium::from_reader(body).map_err(|e| format!("not CBOR: {e}"))?;
    let map = v.as_map().ok_or("state is not a CBOR map")?;
    let get = |k: &str| map.iter().find(|(key, _)| key.as_text() == Some(k)).map(|(_, v)| v);
    let witnessed = get("witnessed").and_then(int).ok_or("state: witnessed missing")?;
    let mirrored = get("mirrored").and_then(int).ok_or("state: mirrored missing")?;
    let lanes = get("lanes")
        .and_then(|l| l.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_text().map(str::to_owned)).collect())
        .unwrap_or_default();
    Ok(State { witnessed, mirrored, lanes })
}

/// Provisional until the protocol lands.
pub fn blocks_body(batch: &Batch) -> Result<Vec<u8>, String> {
    use ciborium::Value as V;
    let blocks = batch
        .blocks
        .iter()
        .map(|b| {
            V::Array(vec![
                b.height.into(),
                V::Bytes(b.header.clone()),
                V::Array(
                    b.lanes
                        .iter()
                        .map(|l| V::Array(vec![u64::from(l.index).into(), V::Bytes(l.bytes.clone())]))
                        .collect(),
                ),
            ])
        })
        .collect();
    let v = V::Array(vec![
        batch.tree_size.into(),
        V::Array(blocks),
        V::Array(batch.proof.iter().map(|h| V::Bytes(h.0.to_vec())).collect()),
    ]);
    let mut out = Vec::new();
    ciborium::into_writer(&v, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Provisional: the mirrored size the answer reports (`end` when the answer is empty).
pub fn parse_upload_answer(body: &[u8], end: u64) -> Result<u64, String> {
    if body.is_empty() {
        return Ok(end);
    }
    parse_state(body).map(|s| s.mirrored)
}

/// Base64 of a hash, for tests.
pub fn b64(h: &Hash) -> String {
    base64::engine::general_purpose::STANDARD.encode(h.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_add_checkpoint_body_is_the_c2sp_shape() {
        let h = Hash([7; 32]);
        let body = add_checkpoint_body(3, &[h, h], b"origin\n5\nROOT=\n\n- sig\n");
        let text = String::from_utf8(body).expect("utf-8");
        let want = format!("old 3\n{}\n{}\n\norigin\n5\nROOT=\n\n- sig\n", b64(&h), b64(&h));
        assert_eq!(text, want);
        assert!(add_checkpoint_body(0, &[], b"n").starts_with(b"old 0\n\nn"));
    }

    #[test]
    fn a_409_size_is_strictly_decimal() {
        assert_eq!(parse_size(b"42\n"), Ok(42));
        assert_eq!(parse_size(b"0"), Ok(0));
        for bad in [&b""[..], b"-1\n", b"042\n", b"4 2\n", b"99999999999999999999\n", b"\xff"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }
}
