//! Integration tests of `ect-unet`: parity with the reference fixtures, configs, weights, dropout
//! record/replay, gradients, initialisation, FLOP counts.

use std::sync::{Mutex, MutexGuard};

/// libtorch's random generator (and its CPU thread pool) are process-wide: tests that seed it and
/// compare draws, or train and compare weights, must not interleave with other tests' torch work.
pub static TORCH_RNG: Mutex<()> = Mutex::new(());

/// Takes [`TORCH_RNG`] for the rest of a test (a failed test poisons nothing for the others).
pub fn torch() -> MutexGuard<'static, ()> {
    TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner())
}

mod common;
mod config;
mod dropout;
mod flops;
mod grad;
mod init;
mod params;
mod parity;
mod precond;
mod snapshot;
mod weights;
