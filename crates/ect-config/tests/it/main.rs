//! Integration tests of `ect-config`: parsing, overrides and validation messages of training
//! configurations.

mod train_config;
