//! Pickles and `torch.save` archives of arbitrary bytes: loading and walking the result
//! (`ect_pickle::fuzz_one`) must return, never panic, hang or exhaust memory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ect_pickle::fuzz_one(data);
});
