//! IDX parsing of arbitrary bytes must return, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ect_data::idx::parse(data, std::path::Path::new("fuzz-idx"));
});
