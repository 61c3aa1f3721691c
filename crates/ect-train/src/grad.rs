//! The gradient path: everything that happens to the gradients between the last backward pass of a step
//! and the optimizer update, in one place and in this order:
//!
//! 1. mixed precision: divide by the loss scale and check for overflow (a step whose scaled gradients
//!    overflowed is skipped and the scale backs off, `torch.cuda.amp.GradScaler`'s rule);
//! 2. sanitise: NaN -> 0, +-inf -> +-1e5 (the reference's `nan_to_num` before the step);
//! 3. clip the global norm when configured.
//!
//! Data-parallel training averages the gradients across processes before step 1, so every rank takes
//! the same decisions.

use crate::amp::{LossScaler, ScalerState};
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
}

impl GradientPath {
    /// A path with optional dynamic loss scaling and global-norm clipping.
    pub fn new(scaler: Option<LossScaler>, clip: Option<f64>) -> Self {
        Self { scaler, clip }
    }

    /// The factor the loss is multiplied by before backward (1 without loss scaling).
    pub fn loss_scale(&self) -> f64 {
        self.scaler.as_ref().map_or(1.0, LossScaler::scale)
    }

    /// The loss scaler's state to checkpoint (`None` without loss scaling).
    pub fn scaler_state(&self) -> Option<ScalerState> {
        self.scaler.as_ref().map(LossScaler::state)
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
