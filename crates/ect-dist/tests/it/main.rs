//! ect-dist's integration tests, one binary (see the workspace's test layout).

mod collectives;
mod common;
mod context;
mod env;
mod faults;
mod launcher;

/// Held by tests that draw from libtorch's global RNG.
pub static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
