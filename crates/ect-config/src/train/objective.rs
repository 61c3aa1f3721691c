//! What a run optimises: ECT tuning, EDM diffusion pretraining or iCT from scratch, with their
//! parameters (docs/method.md §3, §7, §8). Each kind has its own module in
//! `ect_train::objective`.

use ect_schedule::weighting::Weighting;
use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, Result};

/// The training objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ObjectiveConfig {
    /// Easy Consistency Tuning (docs/method.md §3).
    Ect {
        /// Lognormal mean of `t` (CIFAR -1.1, ImageNet -0.8).
        #[serde(default = "default_ect_p_mean")]
        p_mean: f64,
        /// Lognormal std of `t` (CIFAR 2.0, ImageNet 1.6).
        #[serde(default = "default_ect_p_std")]
        p_std: f64,
        /// Timestep weighting (`inv_dt` for CIFAR, `snrpk` for ImageNet).
        #[serde(default)]
        weighting: Weighting,
        /// Adaptive-loss constant (CIFAR 0, ImageNet 0.06).
        #[serde(default)]
        c: f64,
        /// Data standard deviation.
        #[serde(default = "default_sigma_data")]
        sigma_data: f64,
    },
    /// EDM diffusion pretraining (docs/method.md §8).
    Edm {
        /// Lognormal mean of sigma.
        #[serde(default = "default_edm_p_mean")]
        p_mean: f64,
        /// Lognormal std of sigma.
        #[serde(default = "default_edm_p_std")]
        p_std: f64,
        /// Data standard deviation.
        #[serde(default = "default_sigma_data")]
        sigma_data: f64,
    },
    /// Improved consistency training from scratch (docs/method.md §7).
    Ict {
        /// Index-distribution lognormal mean.
        #[serde(default = "default_ect_p_mean")]
        p_mean: f64,
        /// Index-distribution lognormal std.
        #[serde(default = "default_ect_p_std")]
        p_std: f64,
        /// Initial discretization steps.
        #[serde(default = "default_ict_s0")]
        s0: u64,
        /// Final discretization steps.
        #[serde(default = "default_ict_s1")]
        s1: u64,
        /// Smallest Karras time.
        #[serde(default = "default_sigma_min")]
        sigma_min: f64,
        /// Largest Karras time.
        #[serde(default = "default_sigma_max")]
        sigma_max: f64,
        /// Karras exponent.
        #[serde(default = "default_rho")]
        rho: f64,
        /// Pseudo-Huber constant; `None`: `0.00054 sqrt(C H W)`.
        #[serde(default)]
        c: Option<f64>,
    },
}

fn default_ect_p_mean() -> f64 {
    -1.1
}
fn default_ect_p_std() -> f64 {
    2.0
}
fn default_edm_p_mean() -> f64 {
    -1.2
}
fn default_edm_p_std() -> f64 {
    1.2
}
fn default_sigma_data() -> f64 {
    0.5
}
fn default_ict_s0() -> u64 {
    10
}
fn default_ict_s1() -> u64 {
    1280
}
fn default_sigma_min() -> f64 {
    0.002
}
fn default_sigma_max() -> f64 {
    80.0
}
fn default_rho() -> f64 {
    7.0
}

impl Default for ObjectiveConfig {
    fn default() -> Self {
        Self::Ect {
            p_mean: default_ect_p_mean(),
            p_std: default_ect_p_std(),
            weighting: Weighting::InvDt,
            c: 0.0,
            sigma_data: default_sigma_data(),
        }
    }
}

impl ObjectiveConfig {
    /// `ect`, `edm` or `ict`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ect { .. } => "ect",
            Self::Edm { .. } => "edm",
            Self::Ict { .. } => "ict",
        }
    }
}

/// `v` finite and `> 0`, else an error naming `field`.
pub(crate) fn positive(field: &str, v: f64) -> Result<()> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            field,
            format!("must be finite and > 0, got {v}"),
        ))
    }
}

impl ObjectiveConfig {
    /// Checks the objective's parameters; errors name `objective.<field>`.
    pub fn validate(&self) -> Result<()> {
        let finite = |field: &str, v: f64| {
            if v.is_finite() {
                Ok(())
            } else {
                Err(ConfigError::invalid(
                    field,
                    format!("must be finite, got {v}"),
                ))
            }
        };
        match self {
            Self::Ect {
                p_mean,
                p_std,
                c,
                sigma_data,
                ..
            } => {
                finite("objective.p_mean", *p_mean)?;
                positive("objective.p_std", *p_std)?;
                positive("objective.sigma_data", *sigma_data)?;
                if !(c.is_finite() && *c >= 0.0) {
                    return Err(ConfigError::invalid(
                        "objective.c",
                        format!("must be >= 0, got {c}"),
                    ));
                }
            }
            Self::Edm {
                p_mean,
                p_std,
                sigma_data,
            } => {
                finite("objective.p_mean", *p_mean)?;
                positive("objective.p_std", *p_std)?;
                positive("objective.sigma_data", *sigma_data)?;
            }
            Self::Ict {
                p_mean,
                p_std,
                s0,
                s1,
                sigma_min,
                sigma_max,
                rho,
                c,
            } => {
                finite("objective.p_mean", *p_mean)?;
                positive("objective.p_std", *p_std)?;
                if *s0 < 1 || s1 < s0 || *s1 > 1 << 20 {
                    return Err(ConfigError::invalid(
                        "objective.s1",
                        format!("need 1 <= s0 <= s1 <= 2^20, got s0 {s0}, s1 {s1}"),
                    ));
                }
                positive("objective.sigma_min", *sigma_min)?;
                if !(sigma_max.is_finite() && sigma_max > sigma_min) {
                    return Err(ConfigError::invalid(
                        "objective.sigma_max",
                        format!(
                            "must be finite and exceed sigma_min ({sigma_min}), got {sigma_max}"
                        ),
                    ));
                }
                positive("objective.rho", *rho)?;
                if let Some(c) = c {
                    positive("objective.c", *c)?;
                }
            }
        }
        Ok(())
    }
}
