//! Any bytes as a block header: refused with an error or accepted, never a panic; whatever is
//! accepted is canonical (re-encodes to exactly the input).
#![no_main]
use ledger::block::BlockHeader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = BlockHeader::from_bytes(data) {
        assert_eq!(h.to_bytes(), data, "accepted header is not canonical");
        let _ = h.hash();
    }
});
