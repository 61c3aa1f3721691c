//! Joining a data-parallel run: the process group of `ect-dist` (PyTorch's c10d: Gloo on the CPU, NCCL
//! for CUDA), the training device of this rank, and agreement between ranks on whether to go on.
//!
//! The run is data-parallel in the way of PyTorch's DDP: every rank holds the whole model, reads its
//! shard of each global batch ([`crate::feeder::Shard`]), and the gradients are summed over the ranks in
//! the gradient path ([`crate::grad`]); rank 0 alone writes files: one writer per run directory.

use std::time::Duration;

use ect_config::{DeviceSpec, TrainConfig};
use ect_dist::{Backend, Dist, DistEnv, ReduceOp};
use tch::Device;

use crate::error::{Result, TrainError};

/// Joins the run the process environment describes (torchrun, `srun`, `ect train --nproc-per-node`,
/// or none: a single process) with the timeout of `cfg.distributed`, and returns the process group and
/// this rank's training device: the configured one in a single process; with several, the CPU with Gloo,
/// or `cuda:<local rank>` with NCCL when the configuration asks for CUDA (`auto` on a CUDA machine).
pub fn join(cfg: &TrainConfig) -> Result<(Dist, Device)> {
    join_with(cfg.device, Duration::from_secs(cfg.distributed.timeout_s))
}

/// [`join`] for work other than a training run (`ect sample`): the configured `device` and the
/// collectives' `timeout`.
pub fn join_with(device: DeviceSpec, timeout: Duration) -> Result<(Dist, Device)> {
    let env = DistEnv::from_process_env()
        .map_err(|e| TrainError::external("reading the distributed environment", e))?;
    let spec = device;
    let device = crate::device::resolve(spec)?;
    if env.world_size == 1 && env.rendezvous.is_none() {
        return Ok((single_with(timeout)?, device));
    }
    if let DeviceSpec::Cuda(i) = spec {
        if i != env.local_rank {
            return Err(TrainError::invalid(
                "device",
                format!(
                    "is \"cuda:{i}\", but in a data-parallel run each process uses the CUDA device \
                     of its local rank (this is local rank {}): use \"cuda\" or \"auto\"",
                    env.local_rank
                ),
            ));
        }
    }
    let backend = if device.is_cuda() {
        Backend::Nccl
    } else {
        Backend::Gloo
    };
    let dist = Dist::new(env, backend, timeout)
        .map_err(|e| TrainError::external("joining the data-parallel run", e))?;
    let device = dist.device();
    Ok((dist, device))
}

/// A process group of one (every collective is the identity).
pub fn single(cfg: &TrainConfig) -> Result<Dist> {
    single_with(Duration::from_secs(cfg.distributed.timeout_s))
}

fn single_with(timeout: Duration) -> Result<Dist> {
    Dist::new(DistEnv::single(), Backend::Gloo, timeout)
        .map_err(|e| TrainError::external("starting a single-process run", e))
}

/// Whether every rank is `ok` (a minimum over the ranks, one scalar collective): ranks that prepared
/// a step of a run on their own (checks, loading) agree before going on, so one rank's failure stops
/// all of them with a message instead of leaving the others waiting for it.
pub fn all_ok(dist: &Dist, ok: bool) -> Result<bool> {
    let mut v = [if ok { 1.0 } else { 0.0 }];
    dist.all_reduce_f64(&mut v, ReduceOp::Min)
        .map_err(|e| TrainError::external("agreeing with the other ranks", e))?;
    Ok(v[0] > 0.5)
}

/// Agrees on `local`, the outcome of work every rank did on its own part: `Ok` on every rank when all
/// succeeded; otherwise each failed rank returns its own error and the others an error saying that
/// another rank failed in `what`, so no rank is left waiting for a collective the others never join.
pub fn agree<T>(dist: &Dist, local: Result<T>, what: &str) -> Result<T> {
    if all_ok(dist, local.is_ok())? {
        return local;
    }
    Err(local.err().unwrap_or_else(|| {
        TrainError::external(
            format!("rank {}", dist.rank()),
            format!("another rank failed in {what} (its error says why); stopping"),
        )
    }))
}

/// Whether any rank asks for `flag` (a maximum over the ranks): how every rank learns of a stop request
/// (a signal) that reached only some of them, at the same step boundary.
pub fn any(dist: &Dist, flag: bool) -> Result<bool> {
    let mut v = [if flag { 1.0 } else { 0.0 }];
    dist.all_reduce_f64(&mut v, ReduceOp::Max)
        .map_err(|e| TrainError::external("agreeing on a stop with the other ranks", e))?;
    Ok(v[0] > 0.5)
}

/// Runs `f` on rank 0 only (the one writer), then agrees: the other ranks learn whether it succeeded
/// and return an error naming rank 0 if not; rank 0 returns its own error.
pub fn on_main<T>(dist: &Dist, f: impl FnOnce() -> Result<T>) -> Result<Option<T>> {
    let out = if dist.is_main() { Some(f()) } else { None };
    let ok = out.as_ref().is_none_or(|r| r.is_ok());
    let all = all_ok(dist, ok)?;
    match out {
        Some(r) => r.map(Some),
        None if all => Ok(None),
        None => Err(TrainError::external(
            format!("rank {}", dist.rank()),
            "rank 0 failed (its error says why); stopping",
        )),
    }
}

/// The share of a global batch of `batch` images each of `world` ranks computes, and the micro-batch it
/// does so in (the configured micro-batch, at most the share); errors name the field.
pub fn shard_sizes(cfg: &TrainConfig, world: usize) -> Result<(usize, usize)> {
    let batch = cfg.batch_size as usize;
    if batch % world != 0 {
        return Err(TrainError::invalid(
            "batch_size",
            format!("{batch} (the global batch) must be a multiple of the {world} processes"),
        ));
    }
    let share = batch / world;
    let micro = (cfg.micro_batch_size() as usize).min(share);
    if share % micro != 0 {
        return Err(TrainError::invalid(
            "micro_batch",
            format!(
                "{micro} must divide the {share} images each of the {world} processes computes per step"
            ),
        ));
    }
    Ok((share, micro))
}
