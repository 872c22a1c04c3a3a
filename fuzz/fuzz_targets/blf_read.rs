//! Any bytes as a Vector BLF file: frames or errors, never a panic or a huge allocation.
#![no_main]
use can_decoders::trace::{BlfReader, ErrorPolicy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(reader) = BlfReader::new(data, ErrorPolicy::Skip) {
        for item in reader.take(100_000) {
            let _ = item;
        }
    }
});
