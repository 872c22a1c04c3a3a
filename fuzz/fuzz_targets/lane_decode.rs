//! Any bytes as lane plaintext (codec v1) and as a compressed lane: decoding is bounded and
//! never panics; whatever decodes re-encodes to records that decode the same.
#![no_main]
use ledger::lane::{self, Limits, PayloadDelta};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits { max_plain_bytes: 1 << 20, max_records: 1 << 16 };

fuzz_target!(|data: &[u8]| {
    if let Ok(records) = lane::decode(data, &LIMITS) {
        let again = lane::encode(&records, PayloadDelta::Auto);
        assert!(lane::decode(&again, &Limits::DEFAULT).ok() == Some(records), "re-encode differs");
    }
    let _ = lane::unpack(data, &LIMITS);
});
