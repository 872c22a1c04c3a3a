//! The client's use of the sync wire protocol (`docs/sync-protocol.md`, `ledger::sync_wire`):
//! request bodies built and answers parsed and classified here, nowhere else. The message
//! types themselves are the ledger crate's, shared with the server.

use ledger::merkle::Hash;
use ledger::sync_wire::{self, ErrorBody, ErrorCode};

use super::client::{Fail, Response};
use super::core::FailKind;

pub use ledger::sync_wire::{GatewayState, Link, Upload, UploadAck, UploadBlock};

/// Content type of add-checkpoint requests.
pub const TEXT_TYPE: &str = sync_wire::TEXT_TYPE;
/// Content type of `/v1/` requests.
pub const CBOR_TYPE: &str = sync_wire::CBOR_TYPE;

/// The C2SP tlog-witness add-checkpoint request body.
pub fn add_checkpoint_body(old: u64, proof: &[Hash], note: &[u8]) -> Vec<u8> {
    sync_wire::AddCheckpoint { old_size: old, proof: proof.to_vec(), checkpoint: note.to_vec() }
        .to_bytes()
}

/// Classifies a refusal by its status and error code (the doc's "what a client does" table).
pub fn refusal(what: &str, r: &Response) -> Fail {
    let body = if r.content_type.starts_with(CBOR_TYPE) {
        ErrorBody::from_cbor(&r.body).unwrap_or_else(|_| ErrorBody::from_text(&r.body))
    } else {
        ErrorBody::from_text(&r.body)
    };
    let kind = match (&body.code, r.status.as_u16()) {
        (ErrorCode::Fork, _) => FailKind::Diverged,
        (c, _) if c.is_retryable() => FailKind::Server,
        (_, s) if s >= 500 => FailKind::Server,
        _ => FailKind::Rejected,
    };
    Fail::new(kind, format!("{what}: HTTP {}: {body}", r.status))
}

/// Checks a link answer: our protocol, and the cosigner key we pinned.
pub fn check_link(body: &[u8], pinned_vkey: &str) -> Result<Link, Fail> {
    let link = Link::from_cbor(body)
        .map_err(|e| Fail::new(FailKind::Protocol, format!("GET /v1/link: {e}")))?;
    let major = |p: &str| {
        p.rsplit_once('/')
            .map(|(name, v)| (name.to_owned(), v.split('.').next().map(str::to_owned)))
    };
    if major(&link.protocol) != major(sync_wire::PROTOCOL) {
        return Err(Fail::new(
            FailKind::Protocol,
            format!("ledger speaks {:?}, this gateway {:?}", link.protocol, sync_wire::PROTOCOL),
        ));
    }
    if link.cosigner.trim() != pinned_vkey {
        return Err(Fail::new(
            FailKind::Rejected,
            format!(
                "ledger {:?} cosigns with {}, the config pins {pinned_vkey}: wrong URL or wrong key",
                link.ledger, link.cosigner
            ),
        ));
    }
    Ok(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, ctype: &str, body: Vec<u8>) -> Response {
        Response {
            status: reqwest::StatusCode::from_u16(status).expect("status"),
            content_type: ctype.into(),
            body,
        }
    }

    #[test]
    fn refusals_are_classified_by_code_then_status() {
        let cbor = |code: ErrorCode| ErrorBody::new(code, "why").to_cbor();
        let k = |s, b| refusal("x", &resp(s, CBOR_TYPE, b)).kind;
        assert_eq!(k(409, cbor(ErrorCode::Fork)), FailKind::Diverged);
        assert_eq!(k(503, cbor(ErrorCode::Unavailable)), FailKind::Server);
        assert_eq!(k(422, cbor(ErrorCode::BadLane)), FailKind::Rejected);
        assert_eq!(k(502, b"bad gateway".to_vec()), FailKind::Server);
        let f = refusal("add-checkpoint", &resp(403, TEXT_TYPE, b"bad_signature: no\n".to_vec()));
        assert_eq!(f.kind, FailKind::Rejected);
        assert!(f.detail.contains("bad_signature"), "{}", f.detail);
    }

    #[test]
    fn a_link_with_another_cosigner_or_protocol_is_refused() {
        let link = |p: &str, c: &str| {
            Link { protocol: p.into(), ledger: "factory.example".into(), cosigner: c.into() }
                .to_cbor()
        };
        assert!(check_link(&link("iov-sync/1", "K"), "K").is_ok());
        assert_eq!(
            check_link(&link("iov-sync/1", "J"), "K").map(|_| ()).expect_err("refused").kind,
            FailKind::Rejected
        );
        assert_eq!(
            check_link(&link("iov-sync/2", "K"), "K").map(|_| ()).expect_err("refused").kind,
            FailKind::Protocol
        );
        assert_eq!(
            check_link(b"junk", "K").map(|_| ()).expect_err("refused").kind,
            FailKind::Protocol
        );
    }
}
