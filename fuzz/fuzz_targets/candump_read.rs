//! Any bytes as a candump log: every line is a frame or a located error, never a panic.
#![no_main]
use can_decoders::trace::{CandumpReader, ErrorPolicy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for item in CandumpReader::new(data, ErrorPolicy::Skip) {
        let _ = item;
    }
});
