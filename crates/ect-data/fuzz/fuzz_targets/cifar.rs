//! CIFAR python (pickle) and binary batch parsing of arbitrary bytes must return, never panic.
#![no_main]

use ect_data::cifar::{parse_binary_batch, parse_python_batch, Variant};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = std::path::Path::new("fuzz-cifar");
    let _ = parse_python_batch(data, p);
    let _ = parse_binary_batch(data, Variant::Cifar10, p);
    let _ = parse_binary_batch(data, Variant::Cifar100, p);
});
