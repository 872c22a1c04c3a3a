//! Any bytes given to the DBC loader: an error or a database, never a panic.
#![no_main]
use can_decoders::dbc::{parse_bytes, LoadOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for strict in [false, true] {
        let _ = parse_bytes(data, None, &LoadOptions { strict });
    }
});
