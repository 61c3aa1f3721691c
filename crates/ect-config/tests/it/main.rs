//! Integration tests of `ect-config`: parsing, overrides and validation messages of training
//! configurations.

mod fuzz_overrides;
mod train_config;
