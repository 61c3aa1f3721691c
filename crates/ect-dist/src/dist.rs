//! [`Dist`]: this process's membership in a data-parallel run, and the collectives over it.
//!
//! Gloo carries CPU tensors and the scalar statistics; NCCL (when requested and built) carries CUDA
//! tensors. Every collective is blocking, in place, and bounded by the timeout given at start-up; a peer
//! that dies or stalls makes it return [`DistError::PeerLost`] or [`DistError::Collective`], after which
//! the group refuses further collectives ([`DistError::Broken`]).

use crate::env::{DistEnv, EnvError, StoreHost};
use crate::ffi;
use crate::handle::{millis, BackendHandle, Store};
use crate::heartbeat::{self, Heartbeat};
use std::cell::RefCell;
use std::time::Duration;
use tch::{Device, Kind, Tensor};

/// DDP's default bucket size: 25 MiB.
pub const DEFAULT_BUCKET_BYTES: usize = 25 * 1024 * 1024;

/// The key prefix of everything this crate puts in the store (inside torchrun's attempt prefix).
const STORE_PREFIX: &str = "ect_dist";

/// Whether this build has the NCCL backend, and if not, why (set by `build.rs`).
pub const NCCL_STATUS: &str = env!("ECT_DIST_NCCL_STATUS");

/// Whether this build of the crate can create NCCL process groups.
pub fn nccl_available() -> bool {
    cfg!(ect_nccl)
}

/// The communication backend for tensors on the training device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Gloo only: CPU tensors (CUDA tensors would be staged through host memory).
    Gloo,
    /// NCCL for CUDA tensors (device = local rank), plus Gloo for CPU tensors and scalars.
    Nccl,
}

/// A reduction over ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    /// Elementwise sum.
    Sum,
    /// Elementwise mean (sum divided by the world size; floating-point tensors only).
    Mean,
    /// Elementwise maximum.
    Max,
    /// Elementwise minimum.
    Min,
}

impl ReduceOp {
    /// The shim's code; a mean is a sum followed by a division.
    fn code(self) -> i32 {
        match self {
            ReduceOp::Sum | ReduceOp::Mean => 0,
            ReduceOp::Max => 1,
            ReduceOp::Min => 2,
        }
    }
}

/// A failure of the distributed layer. Messages name the rank, the operation and, for a lost peer, the
/// peer's rank.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    /// The launcher's variables are missing or malformed.
    #[error(transparent)]
    Env(#[from] EnvError),
    /// The rendezvous store could not be hosted or reached.
    #[error("rank {rank}: the rendezvous store at {addr}:{port} ({role}) failed within {timeout:?}: {message}")]
    Store {
        /// This rank.
        rank: usize,
        /// `MASTER_ADDR`.
        addr: String,
        /// `MASTER_PORT`.
        port: u16,
        /// "hosted here" or "client".
        role: &'static str,
        /// The timeout used.
        timeout: Duration,
        /// c10d's message.
        message: String,
    },
    /// Creating a process group failed (a peer that never arrived, a network interface, a GPU).
    #[error("rank {rank} of {world_size}: creating the {backend} process group failed: {message}")]
    Backend {
        /// This rank.
        rank: usize,
        /// The world size.
        world_size: usize,
        /// "gloo" or "nccl".
        backend: &'static str,
        /// c10d's message.
        message: String,
    },
    /// NCCL was requested but this build has none.
    #[error("Backend::Nccl is unavailable: ect-dist was built without NCCL because {0}")]
    NcclUnavailable(String),
    /// CUDA was requested for a local rank without a CUDA device.
    #[error("Backend::Nccl puts local rank {local_rank} on cuda:{local_rank}, but libtorch sees {available} CUDA device(s)")]
    NoCudaDevice {
        /// This local rank.
        local_rank: usize,
        /// The CUDA devices libtorch sees.
        available: usize,
    },
    /// A collective failed and the heartbeats show which peers are gone.
    #[error("rank {rank}: {op} failed: lost peer rank {lost} ({how}); {backend}: {message}", lost = join(lost))]
    PeerLost {
        /// This rank.
        rank: usize,
        /// The collective.
        op: &'static str,
        /// The ranks found dead.
        lost: Vec<usize>,
        /// How they were found dead.
        how: String,
        /// The backend that reported the failure.
        backend: &'static str,
        /// The backend's message.
        message: String,
    },
    /// A collective failed while no peer was found dead (a peer stalled, or a usage error).
    #[error("rank {rank}: {op} failed ({backend}; {diagnosis}): {message}")]
    Collective {
        /// This rank.
        rank: usize,
        /// The collective.
        op: &'static str,
        /// The backend.
        backend: &'static str,
        /// What the heartbeats showed.
        diagnosis: String,
        /// The backend's message.
        message: String,
    },
    /// An earlier collective failed; the group cannot be used again.
    #[error("rank {rank}: {op} refused: the process group failed earlier ({first})")]
    Broken {
        /// This rank.
        rank: usize,
        /// The refused collective.
        op: &'static str,
        /// The first failure.
        first: String,
    },
    /// A tensor that cannot take part in a collective.
    #[error("{op}: {reason}")]
    InvalidTensor {
        /// The collective.
        op: &'static str,
        /// What is wrong.
        reason: String,
    },
}

fn join(ranks: &[usize]) -> String {
    ranks
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The process group of a multi-process run.
struct Group {
    // Field order is drop order: the backends before the heartbeat and the store they were made from.
    nccl: Option<BackendHandle>,
    gloo: BackendHandle,
    heartbeat: RefCell<Heartbeat>,
    _store: Store,
}

/// This process's membership in a data-parallel run; see the module docs.
///
/// `Send` but not `Sync`: collectives must be issued in the same order on every rank, so one thread at
/// a time issues them.
pub struct Dist {
    env: DistEnv,
    backend: Backend,
    timeout: Duration,
    group: Option<Group>,
    broken: RefCell<Option<String>>,
}

impl std::fmt::Debug for Dist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dist")
            .field("env", &self.env)
            .field("backend", &self.backend)
            .field("timeout", &self.timeout)
            .field("has_group", &self.group.is_some())
            .finish()
    }
}

impl Dist {
    /// Joins the run described by the process environment (torchrun, `srun`, or none) with Gloo.
    /// `timeout` bounds the rendezvous and every collective.
    pub fn from_env(timeout: Duration) -> Result<Self, DistError> {
        Self::new(DistEnv::from_process_env()?, Backend::Gloo, timeout)
    }

    /// Joins the run described by `env`. Without a rendezvous (a single process and no launcher) no process
    /// group is created and every collective is the identity. With one, rank 0 (or torchrun's agent) hosts
    /// the store, every rank connects within `timeout`, and the Gloo group (plus NCCL on the CUDA device
    /// of this local rank for [`Backend::Nccl`]) is created.
    pub fn new(env: DistEnv, backend: Backend, timeout: Duration) -> Result<Self, DistError> {
        if backend == Backend::Nccl {
            let available = usize::try_from(tch::Cuda::device_count()).unwrap_or(0);
            if env.local_rank >= available {
                return Err(DistError::NoCudaDevice {
                    local_rank: env.local_rank,
                    available,
                });
            }
        }
        if i32::try_from(env.world_size).is_err() {
            return Err(DistError::Env(EnvError::Invalid {
                var: "WORLD_SIZE",
                value: env.world_size.to_string(),
                reason: "larger than c10d supports".to_owned(),
            }));
        }
        let group = match &env.rendezvous {
            None => None,
            Some(rdzv) => {
                if backend == Backend::Nccl && !nccl_available() {
                    return Err(DistError::NcclUnavailable(NCCL_STATUS.to_owned()));
                }
                let is_server = rdzv.store == StoreHost::Rank0 && env.rank == 0;
                let store_error = |message: String| DistError::Store {
                    rank: env.rank,
                    addr: rdzv.addr.clone(),
                    port: rdzv.port,
                    role: if is_server { "hosted here" } else { "client" },
                    timeout,
                    message,
                };
                let tcp = Store::tcp(&rdzv.addr, rdzv.port, is_server, env.world_size, timeout)
                    .map_err(store_error)?;
                let root = match rdzv.attempt_prefix() {
                    Some(prefix) => tcp.prefixed(&prefix).map_err(store_error)?,
                    None => tcp,
                };
                let store = root.prefixed(STORE_PREFIX).map_err(store_error)?;
                let heartbeat = Heartbeat::start(
                    &store,
                    env.rank,
                    env.world_size,
                    heartbeat::period_for(timeout),
                )
                .map_err(store_error)?;
                let backend_error = |backend: &'static str| {
                    move |message: String| DistError::Backend {
                        rank: env.rank,
                        world_size: env.world_size,
                        backend,
                        message,
                    }
                };
                let gloo_store = store.prefixed("gloo").map_err(store_error)?;
                let gloo = BackendHandle::gloo(&gloo_store, env.rank, env.world_size, timeout)
                    .map_err(backend_error("gloo"))?;
                let nccl = match backend {
                    Backend::Gloo => None,
                    Backend::Nccl => Some(nccl_backend(&store, &env, timeout)?),
                };
                Some(Group {
                    nccl,
                    gloo,
                    heartbeat: RefCell::new(heartbeat),
                    _store: store,
                })
            }
        };
        Ok(Self {
            env,
            backend,
            timeout,
            group,
            broken: RefCell::new(None),
        })
    }

    /// Where this process sits in the run.
    pub fn env(&self) -> &DistEnv {
        &self.env
    }

    /// Global rank.
    pub fn rank(&self) -> usize {
        self.env.rank
    }

    /// Number of processes.
    pub fn world_size(&self) -> usize {
        self.env.world_size
    }

    /// Rank on this node.
    pub fn local_rank(&self) -> usize {
        self.env.local_rank
    }

    /// Processes on this node.
    pub fn local_world_size(&self) -> usize {
        self.env.local_world_size
    }

    /// Whether this is rank 0, the one process that writes files.
    pub fn is_main(&self) -> bool {
        self.env.is_main()
    }

    /// Whether a process group exists (false for a single process without launcher variables).
    pub fn is_distributed(&self) -> bool {
        self.group.is_some()
    }

    /// The backend chosen at start-up.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The timeout of the rendezvous and of every collective.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The training device of this process: `cuda:<local rank>` for [`Backend::Nccl`], the CPU otherwise.
    pub fn device(&self) -> Device {
        device_for(self.env.local_rank, self.backend == Backend::Nccl)
    }

    /// In-place reduction of one tensor over all ranks.
    pub fn all_reduce(&self, tensor: &mut Tensor, op: ReduceOp) -> Result<(), DistError> {
        self.all_reduce_many(std::slice::from_mut(tensor), op)
    }

    /// In-place sum over all ranks.
    pub fn all_reduce_sum(&self, tensor: &mut Tensor) -> Result<(), DistError> {
        self.all_reduce(tensor, ReduceOp::Sum)
    }

    /// In-place mean over all ranks.
    pub fn all_reduce_mean(&self, tensor: &mut Tensor) -> Result<(), DistError> {
        self.all_reduce(tensor, ReduceOp::Mean)
    }

    /// In-place reduction of each tensor (one collective per tensor, all issued before waiting). Tensors
    /// must be defined, dense and contiguous.
    pub fn all_reduce_many(&self, tensors: &mut [Tensor], op: ReduceOp) -> Result<(), DistError> {
        const OP: &str = "all_reduce";
        validate(OP, tensors, op)?;
        let Some(group) = self.live_group(OP)? else {
            return Ok(());
        };
        self.run_collective(group, OP, tensors, |backend, ptrs| {
            // SAFETY: live backend; `ptrs` point at tensors borrowed mutably for the call.
            unsafe {
                ffi::ect_allreduce(
                    backend,
                    ptrs.as_ptr(),
                    ptrs.len(),
                    op.code(),
                    millis(self.timeout),
                )
            }
        })?;
        if op == ReduceOp::Mean {
            let world = self.world_size() as f64;
            tch::no_grad(|| {
                tensors
                    .iter_mut()
                    .try_for_each(|t| t.f_div_scalar_(world).map(drop))
            })
            .map_err(|e| DistError::InvalidTensor {
                op: OP,
                reason: format!("dividing the sum by the world size: {e}"),
            })?;
        }
        Ok(())
    }

    /// In-place reduction of many tensors through flat buffers of about `bucket_bytes` (DDP's buckets,
    /// [`DEFAULT_BUCKET_BYTES`]): consecutive tensors of one device and dtype are concatenated, each buffer
    /// is reduced in one collective (all issued before waiting), and the results are copied back. A tensor
    /// larger than a bucket is reduced on its own, without a copy when it is contiguous.
    pub fn all_reduce_bucketed(
        &self,
        tensors: &mut [Tensor],
        op: ReduceOp,
        bucket_bytes: usize,
    ) -> Result<(), DistError> {
        const OP: &str = "all_reduce_bucketed";
        validate_defined(OP, tensors)?;
        if op == ReduceOp::Mean {
            check_float(OP, tensors)?;
        }
        if self.live_group(OP)?.is_none() {
            return Ok(());
        }
        let buckets = plan_buckets(tensors, bucket_bytes);
        let mut flats = gather(tensors, &buckets);
        self.all_reduce_many(&mut flats, op)?;
        scatter(tensors, &buckets, &flats);
        Ok(())
    }

    /// In-place broadcast of `tensor` from rank `root` to all ranks.
    pub fn broadcast(&self, tensor: &mut Tensor, root: usize) -> Result<(), DistError> {
        self.broadcast_bucketed(std::slice::from_mut(tensor), root, DEFAULT_BUCKET_BYTES)
    }

    /// In-place broadcast of many tensors (e.g. the initial weights) from `root`, through flat buffers of
    /// about `bucket_bytes` as in [`Dist::all_reduce_bucketed`].
    pub fn broadcast_bucketed(
        &self,
        tensors: &mut [Tensor],
        root: usize,
        bucket_bytes: usize,
    ) -> Result<(), DistError> {
        const OP: &str = "broadcast";
        validate_defined(OP, tensors)?;
        if root >= self.world_size() {
            return Err(DistError::InvalidTensor {
                op: OP,
                reason: format!(
                    "root rank {root} is not below the world size {}",
                    self.world_size()
                ),
            });
        }
        let Some(group) = self.live_group(OP)? else {
            return Ok(());
        };
        let buckets = plan_buckets(tensors, bucket_bytes);
        let mut flats = gather(tensors, &buckets);
        self.run_collective(group, OP, &mut flats, |backend, ptrs| {
            // SAFETY: live backend; `ptrs` point at buffers owned for the call.
            unsafe {
                ffi::ect_broadcast(
                    backend,
                    ptrs.as_ptr(),
                    ptrs.len(),
                    root as i32,
                    millis(self.timeout),
                )
            }
        })?;
        scatter(tensors, &buckets, &flats);
        Ok(())
    }

    /// Reduces a host array of float64 values over all ranks, in place, in one Gloo collective: logged
    /// statistics, agreement flags, or feature sums and scatter matrices of any length (the pooled FD's
    /// d x d matrix is 33 MB for Inception). A no-op in a one-process run.
    pub fn all_reduce_f64(&self, values: &mut [f64], op: ReduceOp) -> Result<(), DistError> {
        if values.is_empty() || self.group.is_none() {
            return Ok(());
        }
        let mut t = Tensor::from_slice(values);
        self.all_reduce(&mut t, op)?;
        let reduced = Vec::<f64>::try_from(&t).map_err(|e| DistError::InvalidTensor {
            op: "all_reduce_f64",
            reason: e.to_string(),
        })?;
        values.copy_from_slice(&reduced);
        Ok(())
    }

    /// Waits until every rank has called `barrier`.
    pub fn barrier(&self) -> Result<(), DistError> {
        const OP: &str = "barrier";
        let Some(group) = self.live_group(OP)? else {
            return Ok(());
        };
        // SAFETY: live backend.
        let result =
            ffi::take_error(unsafe { ffi::ect_barrier(group.gloo.as_ptr(), millis(self.timeout)) });
        result.map_err(|message| self.fail(OP, "gloo", message))
    }

    /// Ends the run in order: heartbeats stop, a last barrier (so that rank 0 keeps the store up until
    /// every rank is done with it), then the group is destroyed. Dropping a `Dist` destroys it without the
    /// barrier; at the end of a successful run call this instead, or the other ranks' heartbeats may find
    /// rank 0's store gone and c10d logs a warning.
    pub fn shutdown(self) -> Result<(), DistError> {
        if let Some(group) = &self.group {
            group.heartbeat.borrow_mut().stop();
        }
        self.barrier()
    }

    fn live_group(&self, op: &'static str) -> Result<Option<&Group>, DistError> {
        if let Some(first) = self.broken.borrow().as_ref() {
            return Err(DistError::Broken {
                rank: self.rank(),
                op,
                first: first.clone(),
            });
        }
        Ok(self.group.as_ref())
    }

    /// Issues `call` on the backend of each device present in `tensors` (CPU first, then CUDA), in the
    /// same order on every rank.
    fn run_collective(
        &self,
        group: &Group,
        op: &'static str,
        tensors: &mut [Tensor],
        call: impl Fn(*mut ffi::EctBackend, &[*mut torch_sys::C_tensor]) -> *mut std::ffi::c_char,
    ) -> Result<(), DistError> {
        let mut cpu = Vec::new();
        let mut cuda = Vec::new();
        for t in tensors.iter_mut() {
            match t.device() {
                Device::Cuda(_) => cuda.push(t.as_mut_ptr()),
                _ => cpu.push(t.as_mut_ptr()),
            }
        }
        let mut parts = vec![(&group.gloo, "gloo", cpu)];
        match &group.nccl {
            Some(nccl) => parts.push((nccl, "nccl", cuda)),
            None => parts[0].2.extend(cuda),
        }
        for (backend, name, ptrs) in parts {
            if ptrs.is_empty() {
                continue;
            }
            ffi::take_error(call(backend.as_ptr(), &ptrs))
                .map_err(|message| self.fail(op, name, message))?;
        }
        Ok(())
    }

    /// Records the failure (the group is unusable from now on) and names the lost peers if any.
    fn fail(&self, op: &'static str, backend: &'static str, message: String) -> DistError {
        *self.broken.borrow_mut() = Some(format!("{op}: {message}"));
        let rank = self.rank();
        let collective = |diagnosis: String, message: String| DistError::Collective {
            rank,
            op,
            backend,
            diagnosis,
            message,
        };
        let Some(group) = self.group.as_ref() else {
            return collective("no process group".into(), message);
        };
        let mut heartbeat = group.heartbeat.borrow_mut();
        if heartbeat.is_stopped() {
            return collective(
                "during shutdown, when heartbeats have stopped and cannot tell which peer failed"
                    .into(),
                message,
            );
        }
        let probe = heartbeat.lost_peers();
        match probe {
            Ok(lost) if lost.is_empty() => collective(
                format!(
                    "every peer's heartbeat is alive, so a peer is stalled or not calling {op}"
                ),
                message,
            ),
            Ok(lost) => DistError::PeerLost {
                rank,
                op,
                lost,
                how: "its process stopped: no heartbeat in the store".to_owned(),
                backend,
                message,
            },
            Err(store_message) => {
                let (lost, host) = match self.env.rendezvous.as_ref().map(|r| &r.store) {
                    Some(StoreHost::Agent { .. }) => (vec![], "torchrun's agent"),
                    _ => (vec![0], "rank 0"),
                };
                DistError::PeerLost {
                    rank,
                    op,
                    lost,
                    how: format!(
                        "the rendezvous store hosted by {host} is unreachable: {store_message}"
                    ),
                    backend,
                    message,
                }
            }
        }
    }
}

impl Drop for Dist {
    fn drop(&mut self) {
        if let Some(group) = self.group.take() {
            if self.broken.borrow().is_some() {
                // After a failure, Gloo's destructor waits for every queued collective, each of which may
                // wait for its own timeout; the process is about to report the error and exit, so the
                // backends are left to the operating system instead.
                if let Some(nccl) = group.nccl {
                    nccl.leak();
                }
                group.gloo.leak();
            }
        }
    }
}

/// The training device for a local rank: `cuda:<local_rank>` when CUDA is used, else the CPU.
pub fn device_for(local_rank: usize, cuda: bool) -> Device {
    if cuda {
        Device::Cuda(local_rank)
    } else {
        Device::Cpu
    }
}

#[cfg(ect_nccl)]
fn nccl_backend(
    store: &Store,
    env: &DistEnv,
    timeout: Duration,
) -> Result<BackendHandle, DistError> {
    let backend_error = |message: String| DistError::Backend {
        rank: env.rank,
        world_size: env.world_size,
        backend: "nccl",
        message,
    };
    let nccl_store = store.prefixed("nccl").map_err(backend_error)?;
    BackendHandle::nccl(
        &nccl_store,
        env.rank,
        env.world_size,
        env.local_rank,
        timeout,
    )
    .map_err(backend_error)
}

#[cfg(not(ect_nccl))]
fn nccl_backend(_: &Store, _: &DistEnv, _: Duration) -> Result<BackendHandle, DistError> {
    Err(DistError::NcclUnavailable(NCCL_STATUS.to_owned()))
}

fn validate_defined(op: &'static str, tensors: &[Tensor]) -> Result<(), DistError> {
    match tensors.iter().position(|t| !t.defined()) {
        Some(i) => Err(DistError::InvalidTensor {
            op,
            reason: format!("tensor {i} is undefined (a parameter without a gradient?)"),
        }),
        None => Ok(()),
    }
}

fn check_float(op: &'static str, tensors: &[Tensor]) -> Result<(), DistError> {
    for (i, t) in tensors.iter().enumerate() {
        if !t.is_floating_point() {
            return Err(DistError::InvalidTensor {
                op,
                reason: format!(
                    "a mean needs floating-point tensors; tensor {i} is {:?}",
                    t.kind()
                ),
            });
        }
    }
    Ok(())
}

fn validate(op: &'static str, tensors: &[Tensor], reduce: ReduceOp) -> Result<(), DistError> {
    validate_defined(op, tensors)?;
    if reduce == ReduceOp::Mean {
        check_float(op, tensors)?;
    }
    match tensors.iter().position(|t| !t.is_contiguous()) {
        Some(i) => Err(DistError::InvalidTensor {
            op,
            reason: format!(
                "tensor {i} is not contiguous (use all_reduce_bucketed, which copies through flat buffers)"
            ),
        }),
        None => Ok(()),
    }
}

/// A run of consecutive tensors reduced as one buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bucket {
    /// Index of the first tensor.
    start: usize,
    /// One past the last tensor.
    end: usize,
    /// Whether the single tensor of this bucket is reduced in place (no flat copy).
    in_place: bool,
}

/// Groups consecutive tensors of one device and dtype into buckets of at most `bucket_bytes` (a larger
/// tensor gets its own bucket).
fn plan_buckets(tensors: &[Tensor], bucket_bytes: usize) -> Vec<Bucket> {
    let sizes: Vec<(usize, (Device, Kind), bool)> = tensors
        .iter()
        .map(|t| {
            let bytes = t.numel() * t.kind().elt_size_in_bytes();
            (bytes, (t.device(), t.kind()), t.is_contiguous())
        })
        .collect();
    plan(&sizes, bucket_bytes)
}

/// [`plan_buckets`] on (bytes, group key, contiguous) triples.
pub(crate) fn plan<K: PartialEq>(items: &[(usize, K, bool)], bucket_bytes: usize) -> Vec<Bucket> {
    let mut buckets = Vec::new();
    let mut start = 0;
    while start < items.len() {
        let mut end = start + 1;
        let mut bytes = items[start].0;
        while end < items.len()
            && items[end].1 == items[start].1
            && bytes + items[end].0 <= bucket_bytes
        {
            bytes += items[end].0;
            end += 1;
        }
        buckets.push(Bucket {
            start,
            end,
            in_place: end == start + 1 && items[start].2,
        });
        start = end;
    }
    buckets
}

/// One buffer per bucket: the tensor itself (a shallow handle) when reduced in place, else the
/// concatenation of the flattened tensors.
fn gather(tensors: &[Tensor], buckets: &[Bucket]) -> Vec<Tensor> {
    tch::no_grad(|| {
        buckets
            .iter()
            .map(|b| {
                if b.in_place {
                    tensors[b.start].shallow_clone()
                } else {
                    let views: Vec<Tensor> = tensors[b.start..b.end]
                        .iter()
                        .map(|t| t.reshape([-1]))
                        .collect();
                    Tensor::cat(&views, 0)
                }
            })
            .collect()
    })
}

/// Copies each flat buffer back into its tensors.
fn scatter(tensors: &mut [Tensor], buckets: &[Bucket], flats: &[Tensor]) {
    tch::no_grad(|| {
        for (b, flat) in buckets.iter().zip(flats) {
            if b.in_place {
                continue;
            }
            let mut offset = 0i64;
            for t in &mut tensors[b.start..b.end] {
                let n = t.numel() as i64;
                let part = flat.narrow(0, offset, n).view(t.size().as_slice());
                t.copy_(&part);
                offset += n;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_split_by_size_and_key_and_keep_big_tensors_alone() {
        let items = [
            (10, 'a', true),
            (10, 'a', true),
            (10, 'a', true),
            (50, 'a', true),
            (5, 'b', true),
            (5, 'b', false),
            (40, 'b', false),
        ];
        let got: Vec<(usize, usize, bool)> = plan(&items, 25)
            .into_iter()
            .map(|b| (b.start, b.end, b.in_place))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 2, false),
                (2, 3, true),
                (3, 4, true),
                (4, 6, false),
                (6, 7, false)
            ]
        );
    }

    #[test]
    fn dist_moves_between_threads() {
        fn assert_send<T: Send>() {}
        assert_send::<Dist>();
    }

    #[test]
    fn device_is_the_local_rank_with_cuda() {
        assert_eq!(device_for(3, true), Device::Cuda(3));
        assert_eq!(device_for(3, false), Device::Cpu);
    }

    #[test]
    fn nccl_without_a_cuda_device_is_a_clear_error() {
        // One local rank more than there are devices, whatever the machine.
        let n = tch::Cuda::device_count() as usize;
        let env = DistEnv {
            local_rank: n,
            local_world_size: n + 1,
            ..DistEnv::single()
        };
        let err = Dist::new(env, Backend::Nccl, Duration::from_secs(1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("Backend::Nccl puts local rank {n} on cuda:{n}, but libtorch sees {n} CUDA device(s)")
        );
    }

    #[test]
    fn single_process_collectives_are_the_identity() {
        let dist = Dist::new(DistEnv::single(), Backend::Gloo, Duration::from_secs(1)).unwrap();
        assert!(!dist.is_distributed());
        let mut t = Tensor::from_slice(&[1.0f32, 2.0]);
        dist.all_reduce_mean(&mut t).unwrap();
        assert_eq!(Vec::<f32>::try_from(&t).unwrap(), vec![1.0, 2.0]);
        let mut s = [3.0, 4.0];
        dist.all_reduce_f64(&mut s, ReduceOp::Sum).unwrap();
        assert_eq!(s, [3.0, 4.0]);
        dist.barrier().unwrap();
    }
}
