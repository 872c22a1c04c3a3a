//! Any bytes as a Vector ASC file: frames or located errors, never a panic.
#![no_main]
use can_decoders::trace::{AscReader, ErrorPolicy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for item in AscReader::new(data, ErrorPolicy::Skip) {
        let _ = item;
    }
});
