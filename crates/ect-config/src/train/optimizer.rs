//! Optimizer and learning-rate schedule settings (docs/method.md §6: RAdam for CIFAR-10, Adam with
//! inverse-square-root decay for ImageNet 64).

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, Result};

/// Which update rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Adam (Kingma & Ba), as `torch.optim.Adam`.
    Adam,
    /// Rectified Adam (Liu et al.), as `torch.optim.RAdam`; the ECT CIFAR-10 recipe.
    Radam,
}

/// Optimizer settings; defaults are the ECT CIFAR-10 recipe (RAdam, lr 1e-4, betas (0.9, 0.999)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerConfig {
    /// The update rule.
    pub kind: OptimizerKind,
    /// Peak learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
    /// Linear learning-rate warm-up length in iterations (0: none). As in EDM, the rate at iteration `i`
    /// (0-based) is scaled by `min(i / warmup_iters, 1)`.
    pub warmup_iters: u64,
    /// EDM2's inverse-square-root decay: `lr / sqrt(max(i / decay_ref_iters, 1))`; `None` keeps it constant.
    pub decay_ref_iters: Option<u64>,
    /// Clip the global gradient norm to this value (after `nan_to_num`); `None` disables clipping.
    pub grad_clip: Option<f64>,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            kind: OptimizerKind::Radam,
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            warmup_iters: 0,
            decay_ref_iters: None,
            grad_clip: None,
        }
    }
}

impl OptimizerConfig {
    /// Checks ranges; errors name the field under `prefix` (e.g. `optimizer`).
    pub fn validate(&self, prefix: &str) -> Result<()> {
        let field = |f: &str| format!("{prefix}.{f}");
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(ConfigError::invalid(
                field("lr"),
                format!("must be finite and > 0, got {}", self.lr),
            ));
        }
        for (name, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(ConfigError::invalid(
                    field(name),
                    format!("must be in [0, 1), got {b}"),
                ));
            }
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(ConfigError::invalid(
                field("eps"),
                format!("must be > 0, got {}", self.eps),
            ));
        }
        if self.decay_ref_iters == Some(0) {
            return Err(ConfigError::invalid(
                field("decay_ref_iters"),
                "must be > 0 (omit it to disable decay)",
            ));
        }
        if let Some(c) = self.grad_clip {
            if !(c.is_finite() && c > 0.0) {
                return Err(ConfigError::invalid(
                    field("grad_clip"),
                    format!("must be > 0, got {c}"),
                ));
            }
        }
        Ok(())
    }

    /// The learning rate for iteration `iter` (0-based), with warm-up and inverse-sqrt decay
    /// ([`ect_schedule::lr::learning_rate`]).
    pub fn lr_at(&self, iter: u64) -> f64 {
        ect_schedule::lr::learning_rate(self.lr, iter, self.warmup_iters, self.decay_ref_iters)
    }
}
