//! Integration tests of the `ect` binary, run as a user runs it.

mod cli_data;
mod cli_flops;
mod cli_info;
mod cli_metrics;
mod cli_parity;
mod cli_profile;
mod cli_train;
mod common;
mod presets;
