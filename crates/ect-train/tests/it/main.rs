//! Integration tests of `ect-train`: configuration, losses, optimizers against torch, EMA, samplers,
//! periodic evaluation, end-to-end training with exact resume, and the step benchmark (ignored).

use std::sync::{Mutex, MutexGuard};

/// libtorch's random generator (and its CPU thread pool) are process-wide: tests that seed it and
/// compare draws, or train and compare weights, must not interleave with other tests' torch work.
pub static TORCH_RNG: Mutex<()> = Mutex::new(());

/// Takes [`TORCH_RNG`] for the rest of a test (a failed test poisons nothing for the others).
pub fn torch() -> MutexGuard<'static, ()> {
    TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner())
}

mod bench_flat;
mod bench_steps;
mod ema;
mod end_to_end;
mod loss;
mod optim_golden;
mod periodic_eval;
mod precision;
mod sample;
mod snapshot_init;
mod trainer;
