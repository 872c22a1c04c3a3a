//! Any bytes as every message of the sync protocol (`ledger::sync_wire`): an error or a value,
//! never a panic. The add-checkpoint body has one encoding (a parsed body formats back to the
//! same bytes); every CBOR message that decodes encodes to bytes that decode to the same value;
//! origins survive escaping.
#![no_main]
use ledger::sync_wire::{
    escape_origin, parse_cosignature_lines, parse_size_body, unescape_origin, AddCheckpoint,
    ErrorBody, GatewayState, Link, QueryBlocks, Upload, UploadAck, MAX_BLOCKS_PER_BATCH,
};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = AddCheckpoint::parse(data) {
        assert_eq!(a.to_bytes(), data, "add-checkpoint body has a second encoding");
        let _ = a.claimed_checkpoint();
    }
    let _ = parse_size_body(data);
    let _ = parse_cosignature_lines(data);
    let _ = ErrorBody::from_text(data);

    if let Ok(u) = Upload::from_cbor(data, MAX, MAX_BLOCKS_PER_BATCH) {
        assert_eq!(
            Upload::from_cbor(&u.to_cbor(), usize::MAX, MAX_BLOCKS_PER_BATCH).as_ref(),
            Ok(&u)
        );
    }
    if let Ok(m) = ErrorBody::from_cbor(data) {
        assert_eq!(ErrorBody::from_cbor(&m.to_cbor()).as_ref(), Ok(&m));
    }
    if let Ok(m) = Link::from_cbor(data) {
        assert_eq!(Link::from_cbor(&m.to_cbor()).as_ref(), Ok(&m));
    }
    if let Ok(m) = UploadAck::from_cbor(data) {
        assert_eq!(UploadAck::from_cbor(&m.to_cbor()), Ok(m));
    }
    if let Ok(m) = GatewayState::from_cbor(data) {
        assert_eq!(GatewayState::from_cbor(&m.to_cbor()).as_ref(), Ok(&m));
    }
    if let Ok(m) = QueryBlocks::from_cbor(data, MAX) {
        assert_eq!(QueryBlocks::from_cbor(&m.to_cbor(), usize::MAX).as_ref(), Ok(&m));
    }

    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(origin) = unescape_origin(text) {
            assert_eq!(unescape_origin(&escape_origin(&origin)).as_ref(), Ok(&origin));
        }
        assert_eq!(unescape_origin(&escape_origin(text)).as_deref(), Ok(text));
    }
});
