//! Integration tests of `ect-metrics`: Fréchet distance against the reference, metrics on known
//! inputs, `.npy`/`.npz` I/O, feature extractors and scoring.

use std::sync::{Mutex, MutexGuard};

/// libtorch's random generator (and its CPU thread pool) are process-wide: tests that seed it and
/// compare draws, or train and compare weights, must not interleave with other tests' torch work.
pub static TORCH_RNG: Mutex<()> = Mutex::new(());

/// Takes [`TORCH_RNG`] for the rest of a test (a failed test poisons nothing for the others).
pub fn torch() -> MutexGuard<'static, ()> {
    TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner())
}

mod covariance;
mod featnet;
mod fmnist_train;
mod frechet_golden;
mod frechet_props;
mod metrics_known;
mod npy_npz;
mod sample_range;
mod scoring;
mod torchscript;
