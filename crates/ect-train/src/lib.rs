//! Easy Consistency Tuning: the objectives (ECT, EDM pretraining, iCT), hand-written optimizers, EMA,
//! samplers, and the training loop with run directories, checkpoints and exact resume.
//!
//! The method is described in "Consistency Models Made Easy" (Geng et al., ICLR 2025) and, in this
//! project's words, in `docs/method.md`; where the paper and the authors' public code differ, this crate
//! follows the code. Configurations are `ect_config::TrainConfig` values, parsed and validated before they
//! get here.
//!
//! | module | job |
//! |---|---|
//! | [`session`] | start ([`train`]) or continue ([`resume`]) a run: the checks before anything is written |
//! | [`trainer`] | [`trainer::Trainer::step`] (one optimizer step) and `run` (the cadence around it) |
//! | [`objective`] | what differs between ECT, EDM and iCT: noise levels, loss, stages, samplers |
//! | [`grad`] | the gradient path between backward and the update (all-reduce, loss scale, sanitise, clip) |
//! | [`flat`] | parameters and gradients as views of a few flat buffers |
//! | [`parallel`] | joining a data-parallel run (c10d via `ect-dist`), agreement between ranks |
//! | [`optim`], [`ema`], [`amp`] | RAdam/Adam, weight averages, mixed-precision loss scaling |
//! | [`feeder`], [`labels`], [`transfer`] | batches and labels as tensors from `ect-data`'s loader; host-device copies |
//! | [`sampler`], [`generate`], [`periodic_eval`] | samplers, `ect sample`, periodic FD |
//! | [`checkpoint`], [`run_dir`], [`stats`], [`progress`], [`signals`] | what a run writes and shows |

pub mod amp;
pub mod checkpoint;
pub mod denoiser;
pub mod device;
pub mod ema;
pub mod error;
pub mod feature_pool;
pub mod feeder;
pub mod flat;
pub mod generate;
pub mod grad;
pub mod images;
pub mod init;
pub mod labels;
pub mod net;
pub mod npy;
pub mod objective;
pub mod optim;
pub mod parallel;
pub mod periodic_eval;
pub mod progress;
pub mod rng;
pub mod run_dir;
pub mod sampler;
pub mod session;
pub mod signals;
pub mod stats;
pub mod trainer;
pub mod transfer;

pub use ect_config::TrainConfig;
pub use generate::{sample, SampleSpec, SampleSummary, WeightsChoice};
pub use sampler::Sampler;
pub use session::{resume, train, train_from_file, ResumeOptions, RunOptions, RunSummary};

pub use error::{Result, TrainError};
