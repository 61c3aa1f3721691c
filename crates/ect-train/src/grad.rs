//! The gradient path: everything that happens to the gradients between the last backward pass of a step
//! and the optimizer update, in one place and in this order, on the optimizer's flat gradient buffers
//! ([`crate::flat`]), so each stage is a few tensor ops:
//!
//! 0. data-parallel runs: sum the gradients (and the step's loss) over the ranks
//!    ([`GradientPath::all_reduce`]); each rank's loss is already divided by the global batch size, so
//!    the sum is the global batch mean and every rank takes the same decisions below;
//! 1. mixed precision: divide by the loss scale and check for overflow (a step whose scaled gradients
//!    overflowed is skipped and the scale backs off, `torch.cuda.amp.GradScaler`'s rule);
//! 2. sanitise: NaN -> 0, +-inf -> +-1e5 (the reference's `nan_to_num` before the step);
//! 3. clip the global norm when configured.

use ect_dist::{Dist, ReduceOp, DEFAULT_BUCKET_BYTES};
use tch::Tensor;

use crate::amp::{LossScaler, ScalerState};
use crate::error::{Result, TrainError};
use crate::optim::Optimizer;

/// Whether the step's update may be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GradOutcome {
    /// Gradients are ready for the optimizer.
    Ready,
    /// Mixed precision: the scaled gradients overflowed; skip the update.
    Overflowed,
}

/// Loss scaling, sanitising and clipping of a run's gradients.
#[derive(Debug, Clone)]
pub struct GradientPath {
    scaler: Option<LossScaler>,
    clip: Option<f64>,
    bucket_bytes: usize,
}

impl GradientPath {
    /// A path with optional dynamic loss scaling and global-norm clipping.
    pub fn new(scaler: Option<LossScaler>, clip: Option<f64>) -> Self {
        Self {
            scaler,
            clip,
            bucket_bytes: DEFAULT_BUCKET_BYTES,
        }
    }

    /// The factor the loss is multiplied by before backward (1 without loss scaling).
    pub fn loss_scale(&self) -> f64 {
        self.scaler.as_ref().map_or(1.0, LossScaler::scale)
    }

    /// The loss scaler's state to checkpoint (`None` without loss scaling).
    pub fn scaler_state(&self) -> Option<ScalerState> {
        self.scaler.as_ref().map(LossScaler::state)
    }

    /// Step 0: sums the flat gradients of `opt` and `loss` (a scalar on the training device) over the
    /// ranks of `dist`, in place: the gradient buffers in slices of about 25 MiB (DDP's buckets, all
    /// issued before waiting), the loss in the same call. Nothing is read back to the host. A no-op in a
    /// single process.
    pub fn all_reduce(&self, opt: &Optimizer, loss: &mut Tensor, dist: &Dist) -> Result<()> {
        if !dist.is_distributed() {
            return Ok(());
        }
        let mut parts = Vec::new();
        for g in opt.grads() {
            let numel = g.numel() as i64;
            let per = (self.bucket_bytes / g.kind().elt_size_in_bytes()).max(1) as i64;
            let mut start = 0;
            while start < numel {
                let n = per.min(numel - start);
                parts.push(g.narrow(0, start, n));
                start += n;
            }
        }
        parts.push(loss.shallow_clone());
        dist.all_reduce_many(&mut parts, ReduceOp::Sum)
            .map_err(|e| TrainError::external("summing the gradients over the ranks", e))
    }

    /// Prepares the accumulated gradients of `opt` for the update (steps 1-3 above).
    pub fn prepare(&mut self, opt: &mut Optimizer) -> GradOutcome {
        if let Some(scaler) = &mut self.scaler {
            let finite = scaler.unscale(&mut opt.grads());
            scaler.update(finite);
            if !finite {
                return GradOutcome::Overflowed;
            }
        }
        opt.sanitize_grads(self.clip);
        GradOutcome::Ready
    }
}
