//! Data-parallel building blocks for ECT on libtorch, through the project's one C++ shim over the
//! libtorch APIs tch does not bind.
//!
//! - [`Dist`]: join a run started by torchrun, `srun` or [`launch`] (or run alone) and reduce, broadcast
//!   and synchronise tensors over PyTorch's own c10d process groups: Gloo for CPU tensors, NCCL for CUDA
//!   tensors. Timeouts come from the caller; a lost peer is an error naming its rank, never a hang.
//! - [`DistEnv`]: where this process sits, read from torchrun's or Slurm's variables.
//! - [`launch`]: start N local workers like `torchrun --standalone --nproc-per-node N`.
//! - [`context`]: autocast with a chosen dtype (bfloat16 on CPU and CUDA), cuDNN benchmark and TF32
//!   switches, and the Kineto profiler written as a Chrome trace.
//!
//! No C++ exception crosses into Rust: the shim catches them and returns their first line, which becomes
//! a [`DistError`] or [`context::ContextError`].

pub mod context;
mod dist;
pub mod env;
mod ffi;
mod handle;
mod heartbeat;
pub mod launch;

pub use dist::{
    device_for, nccl_available, Backend, Dist, DistError, ReduceOp, DEFAULT_BUCKET_BYTES,
    NCCL_STATUS,
};
pub use env::{DistEnv, EnvError, Launcher, Rendezvous, StoreHost};
