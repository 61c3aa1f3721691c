//! Weight-averaging settings: a fixed per-step beta (ECT CIFAR-10: 0.9999), EDM's half-life in thousands
//! of images with ramp-up, and EDM2's power-function EMA (several profiles at once). The rates themselves
//! come from `ect_schedule::ema`.

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, Result};

/// How the averaging rate is chosen each step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum EmaConfig {
    /// `ema = beta * ema + (1 - beta) * weights` every step.
    Beta {
        /// The per-step decay.
        beta: f64,
    },
    /// EDM: beta from a half-life in thousands of images, optionally capped by `rampup_ratio * images_seen`.
    Halflife {
        /// Half-life in kimg.
        halflife_kimg: f64,
        /// EDM's ramp-up ratio (0.05 in EDM's CIFAR recipe); `None` disables it.
        rampup_ratio: Option<f64>,
    },
    /// EDM2's power-function EMA; one average per relative standard deviation.
    Power {
        /// The `sigma_rel` values (EDM2 trains with 0.05 and 0.10).
        sigma_rels: Vec<f64>,
    },
}

impl Default for EmaConfig {
    fn default() -> Self {
        Self::Beta { beta: 0.9999 }
    }
}

impl EmaConfig {
    /// Checks ranges; errors name the field under `prefix`.
    pub fn validate(&self, prefix: &str) -> Result<()> {
        match self {
            Self::Beta { beta } => {
                if !(0.0..=1.0).contains(beta) {
                    return Err(ConfigError::invalid(
                        format!("{prefix}.beta"),
                        format!("must be in [0, 1], got {beta}"),
                    ));
                }
            }
            Self::Halflife {
                halflife_kimg,
                rampup_ratio,
            } => {
                if !(halflife_kimg.is_finite() && *halflife_kimg > 0.0) {
                    return Err(ConfigError::invalid(
                        format!("{prefix}.halflife_kimg"),
                        format!("must be > 0, got {halflife_kimg}"),
                    ));
                }
                if let Some(r) = rampup_ratio {
                    if !(r.is_finite() && *r > 0.0) {
                        return Err(ConfigError::invalid(
                            format!("{prefix}.rampup_ratio"),
                            format!("must be > 0 (omit it to disable), got {r}"),
                        ));
                    }
                }
            }
            Self::Power { sigma_rels } => {
                if sigma_rels.is_empty() {
                    return Err(ConfigError::invalid(
                        format!("{prefix}.sigma_rels"),
                        "needs at least one value",
                    ));
                }
                for s in sigma_rels {
                    let max = ect_schedule::ema::SIGMA_REL_MAX;
                    if !(s.is_finite() && *s > 0.0 && *s <= max) {
                        return Err(ConfigError::invalid(
                            format!("{prefix}.sigma_rels"),
                            format!("each value must be in (0, {max:.4}], got {s}"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Names of the averages this config keeps (`ema` or `ema-<sigma_rel>`), in order; the first one is
    /// the one sampled by default.
    pub fn labels(&self) -> Vec<String> {
        match self {
            Self::Power { sigma_rels } => {
                sigma_rels.iter().map(|s| format!("ema-{s:.3}")).collect()
            }
            _ => vec!["ema".to_owned()],
        }
    }
}
