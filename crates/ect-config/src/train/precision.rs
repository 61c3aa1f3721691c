//! Arithmetic of the training passes: float32, or CUDA float16 autocast with dynamic loss scaling
//! (`torch.cuda.amp.GradScaler`'s rule and defaults).

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, Result};

/// Arithmetic of the forward and backward passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Float32 everywhere (the default; the only choice on the CPU).
    #[default]
    Fp32,
    /// CUDA float16 autocast with dynamic loss scaling.
    Fp16,
}

/// Dynamic loss-scale settings (`torch.cuda.amp.GradScaler`'s defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LossScaleConfig {
    /// Initial scale.
    pub init: f64,
    /// Factor applied after `growth_interval` consecutive steps without overflow.
    pub growth_factor: f64,
    /// Factor applied after a step whose gradients overflowed.
    pub backoff_factor: f64,
    /// Consecutive finite steps before the scale grows.
    pub growth_interval: u64,
}

impl Default for LossScaleConfig {
    fn default() -> Self {
        Self {
            init: 65536.0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
        }
    }
}

impl LossScaleConfig {
    /// Checks the factors (a scale must be able to grow and to back off).
    pub fn validate(&self) -> Result<()> {
        let bad = |f: &str, m: String| Err(ConfigError::invalid(format!("loss_scale.{f}"), m));
        if !(self.init.is_finite() && self.init > 0.0) {
            return bad(
                "init",
                format!("must be a positive number, got {}", self.init),
            );
        }
        if !(self.growth_factor > 1.0 && self.growth_factor.is_finite()) {
            return bad(
                "growth_factor",
                format!("must be > 1, got {}", self.growth_factor),
            );
        }
        if !(self.backoff_factor > 0.0 && self.backoff_factor < 1.0) {
            return bad(
                "backoff_factor",
                format!("must be in (0, 1), got {}", self.backoff_factor),
            );
        }
        if self.growth_interval == 0 {
            return bad("growth_interval", "must be > 0".into());
        }
        Ok(())
    }
}
