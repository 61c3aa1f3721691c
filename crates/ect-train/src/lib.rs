//! Easy Consistency Tuning: losses (ECT, EDM pretraining, iCT), hand-written optimizers, EMA, samplers, the
//! training loop with run directories, checkpoints and exact resume.
//!
//! The method is described in "Consistency Models Made Easy" (Geng et al., ICLR 2025); where the paper and
//! the authors' public code differ, this crate follows the code.

pub mod amp;
pub mod checkpoint;
pub mod config;
pub mod ema;
pub mod error;
pub mod feeder;
pub mod generate;
pub mod loss;
pub mod net;
pub mod optim;
pub mod periodic_eval;
pub mod rng;
pub mod sample;
pub mod trainer;

pub use config::TrainConfig;
pub use generate::{sample, SampleSpec, Sampler, WeightsChoice};
pub use trainer::{resume, train, train_from_file, RunOptions, RunSummary};

pub use error::{Result, TrainError};
