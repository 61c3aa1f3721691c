//! Exponential moving averages of the weights: constant `beta`, EDM's half-life with ramp-up, and
//! EDM2's power-function EMA.
//!
//! docs/method.md §6 (EMA row of the recipe table); EDM's `training_loop.py` (half-life, ramp-up);
//! EDM2 paper "Analyzing and Improving the Training Dynamics of Diffusion Models" (Karras et al.
//! 2024), section 3.1 and Algorithm 2 (`sigma_rel_to_gamma`, eq. 127 for the per-step beta).
//!
//! The update is the reference's `ema = net.lerp(ema, beta) = net + beta (ema - net)` ([`lerp`]).

use serde::{Deserialize, Serialize};

use crate::error::{ensure, Result};

/// ECT CIFAR-10's per-step beta.
pub const ECT_CIFAR_BETA: f64 = 0.9999;
/// ECT CIFAR-10 "1 hour" recipe's per-step beta.
pub const ECT_CIFAR_1HOUR_BETA: f64 = 0.9993;

/// The largest `sigma_rel` a power-function EMA can have: `exponent_to_sigma_rel` peaks at
/// `gamma = (sqrt 5 - 3)/2`; above this the cubic has no real root there.
pub const SIGMA_REL_MAX: f64 = 0.300_283_106_000_777_6;

/// `ema + (1 - beta) (net - ema)` written as the reference's `net.lerp(ema, beta)`.
pub fn lerp(ema: f64, net: f64, beta: f64) -> f64 {
    net + beta * (ema - net)
}

/// EDM's EMA beta from a half-life (as EDM's training loop computes it):
/// `halflife_nimg = halflife_kimg * 1000`, capped by `images_seen * rampup_ratio` when a ramp-up is
/// given, and `beta = 0.5 ^ (batch_size / max(halflife_nimg, 1e-8))`.
///
/// `images_seen` is the reference's `cur_nimg` at the EMA update: the images of all **earlier**
/// steps, not counting this step's batch (so with a ramp-up the first update gives `beta = 0`).
pub fn beta_from_halflife(
    halflife_kimg: f64,
    rampup_ratio: Option<f64>,
    batch_size: u64,
    images_seen: u64,
) -> f64 {
    let mut halflife_nimg = halflife_kimg * 1000.0;
    if let Some(ratio) = rampup_ratio {
        halflife_nimg = halflife_nimg.min(images_seen as f64 * ratio);
    }
    0.5_f64.powf(batch_size as f64 / halflife_nimg.max(1e-8))
}

/// EDM2's `sigma_rel_to_gamma`: the largest real root `gamma` of
/// `gamma^3 + 7 gamma^2 + (16 - t) gamma + (12 - t) = 0` with `t = sigma_rel^-2`.
///
/// Defined for `0 < sigma_rel <= SIGMA_REL_MAX` (`sigma_rel < 12^-1/2` gives `gamma > 0`); NaN
/// otherwise (use [`EmaConfig::validate`] for user input). Newton's method from an upper bound of
/// all roots converges monotonically to the largest one, because the cubic is convex right of
/// `-7/3` and that root lies there.
pub fn sigma_rel_to_gamma(sigma_rel: f64) -> f64 {
    if !(sigma_rel > 0.0 && sigma_rel <= SIGMA_REL_MAX) {
        return f64::NAN;
    }
    let t = sigma_rel.powi(-2);
    let (c1, c0) = (16.0 - t, 12.0 - t);
    let p = |x: f64| ((x + 7.0) * x + c1) * x + c0;
    let dp = |x: f64| (3.0 * x + 14.0) * x + c1;
    // Cauchy's bound: every root has |x| < 1 + max |coefficient|.
    let mut x = 1.0 + 7.0_f64.max(c1.abs()).max(c0.abs());
    for _ in 0..1000 {
        let d = dp(x);
        if d <= 0.0 {
            break;
        }
        let next = x - p(x) / d;
        // Monotone from the right: stop once rounding stops the descent.
        if next >= x {
            break;
        }
        x = next;
    }
    x
}

/// The interface name for [`sigma_rel_to_gamma`]: the power-function exponent for `sigma_rel`.
pub fn power_function_exponent(sigma_rel: f64) -> f64 {
    sigma_rel_to_gamma(sigma_rel)
}

/// The inverse map (EDM2 eq. 123): `sigma_rel = sqrt((g+1) / ((g+2)^2 (g+3)))`.
pub fn gamma_to_sigma_rel(gamma: f64) -> f64 {
    ((gamma + 1.0) / (gamma + 2.0).powi(2) / (gamma + 3.0)).sqrt()
}

/// The power-function EMA beta at step `step`: `(1 - 1/step)^(gamma + 1)`.
///
/// `step` counts optimizer steps **including** the one just taken (1 for the first update, which
/// gives `beta = 0`: the average starts as the weights); `step = 0` also gives 0.
pub fn power_function_beta(step: u64, exponent: f64) -> f64 {
    if step == 0 {
        return 0.0;
    }
    (1.0 - 1.0 / step as f64).powf(exponent + 1.0)
}

/// The same beta in images, as EDM2's (and ECT ImageNet's) `PowerFunctionEMA.update` computes it:
/// `(1 - batch_size / nimg_after)^(gamma + 1)`, `nimg_after` = images seen including this step.
pub fn power_function_beta_nimg(nimg_after: u64, batch_size: u64, exponent: f64) -> f64 {
    if nimg_after == 0 {
        return 0.0;
    }
    (1.0 - batch_size as f64 / nimg_after as f64).powf(exponent + 1.0)
}

/// How the EMA beta is chosen, as a config value (tag `kind`):
/// `{"kind": "constant", "beta": 0.9999}`,
/// `{"kind": "half_life", "halflife_kimg": 500.0, "rampup_ratio": 0.05}`,
/// `{"kind": "power_function", "sigma_rel": 0.05}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum EmaConfig {
    /// The same beta every step (ECT CIFAR-10: 0.9999).
    Constant {
        /// Per-step decay in [0, 1].
        beta: f64,
    },
    /// EDM's half-life in thousands of images, optionally ramped up.
    HalfLife {
        /// Half-life in kimg.
        halflife_kimg: f64,
        /// Cap the half-life at this fraction of the images seen (`None`: no ramp-up).
        #[serde(default)]
        rampup_ratio: Option<f64>,
    },
    /// EDM2's power-function EMA with relative standard deviation `sigma_rel`.
    PowerFunction {
        /// Relative width of the averaging window, in `(0, SIGMA_REL_MAX]`.
        sigma_rel: f64,
    },
}

impl Default for EmaConfig {
    /// ECT CIFAR-10: constant 0.9999.
    fn default() -> Self {
        Self::Constant {
            beta: ECT_CIFAR_BETA,
        }
    }
}

impl EmaConfig {
    /// Checks the fields.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Self::Constant { beta } => {
                ensure((0.0..=1.0).contains(&beta), "beta", beta, "in [0, 1]")
            }
            Self::HalfLife {
                halflife_kimg,
                rampup_ratio,
            } => {
                ensure(
                    halflife_kimg.is_finite() && halflife_kimg >= 0.0,
                    "halflife_kimg",
                    halflife_kimg,
                    "finite and >= 0",
                )?;
                if let Some(r) = rampup_ratio {
                    ensure(
                        r.is_finite() && r >= 0.0,
                        "rampup_ratio",
                        r,
                        "finite and >= 0",
                    )?;
                }
                Ok(())
            }
            Self::PowerFunction { sigma_rel } => ensure(
                sigma_rel > 0.0 && sigma_rel <= SIGMA_REL_MAX,
                "sigma_rel",
                sigma_rel,
                "in (0, 0.3002831] (EDM2 uses 0.05-0.15)",
            ),
        }
    }

    /// The beta for the update after the optimizer step with 0-based index `step_index`
    /// (= steps completed before it), at `batch_size` images per step. Half-life: images seen =
    /// `step_index * batch_size` (EDM); power function: `nimg_after = (step_index + 1) *
    /// batch_size` (EDM2).
    pub fn beta(&self, step_index: u64, batch_size: u64) -> f64 {
        match *self {
            Self::Constant { beta } => beta,
            Self::HalfLife {
                halflife_kimg,
                rampup_ratio,
            } => beta_from_halflife(
                halflife_kimg,
                rampup_ratio,
                batch_size,
                step_index.saturating_mul(batch_size),
            ),
            Self::PowerFunction { sigma_rel } => power_function_beta_nimg(
                step_index.saturating_add(1).saturating_mul(batch_size),
                batch_size,
                sigma_rel_to_gamma(sigma_rel),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `np.roots([1, 7, 16 - t, 12 - t]).real.max()` with numpy 2.4 (EDM2's `sigma_rel_to_gamma`).
    const NUMPY_GAMMA: &[(f64, f64)] = &[
        (0.01, 96.99489782370986),
        (0.05, 16.972198602303447),
        (0.1, 6.937203937601809),
        (0.2, 1.8262137798958404),
        (0.28, 0.16934399376949866),
    ];

    #[test]
    fn gamma_matches_numpy_roots() {
        for &(s, g) in NUMPY_GAMMA {
            let got = sigma_rel_to_gamma(s);
            assert!(((got - g) / g).abs() < 1e-12, "sigma_rel {s}: {got} vs {g}");
            assert!(((gamma_to_sigma_rel(got) - s) / s).abs() < 1e-13);
        }
        assert!(sigma_rel_to_gamma(0.0).is_nan());
        assert!(sigma_rel_to_gamma(0.5).is_nan());
        // At the peak the double root is (sqrt 5 - 3)/2.
        let peak = (5.0_f64.sqrt() - 3.0) / 2.0;
        assert!((gamma_to_sigma_rel(peak) - SIGMA_REL_MAX).abs() < 1e-15);
        assert!((sigma_rel_to_gamma(SIGMA_REL_MAX) - peak).abs() < 1e-6);
    }

    #[test]
    fn halflife_with_rampup() {
        // No ramp-up: 0.5^(batch/halflife).
        let b = beta_from_halflife(500.0, None, 512, 0);
        assert!((b - 0.5_f64.powf(512.0 / 500_000.0)).abs() < 1e-16);
        // Ramp-up at the start caps the half-life at images_seen * ratio.
        assert_eq!(beta_from_halflife(500.0, Some(0.05), 512, 0), 0.0);
        let b = beta_from_halflife(500.0, Some(0.05), 512, 1_024_000);
        assert!((b - 0.5_f64.powf(512.0 / 51_200.0)).abs() < 1e-16);
        // Far into training the cap no longer binds.
        assert_eq!(
            beta_from_halflife(500.0, Some(0.05), 512, 100_000_000),
            beta_from_halflife(500.0, None, 512, 0)
        );
    }

    #[test]
    fn power_function_beta_values() {
        assert_eq!(power_function_beta(0, 6.94), 0.0);
        assert_eq!(power_function_beta(1, 6.94), 0.0);
        assert!((power_function_beta(2, 1.0) - 0.25).abs() < 1e-16);
        let g = sigma_rel_to_gamma(0.05);
        let a = power_function_beta(1000, g);
        let b = power_function_beta_nimg(1000 * 64, 64, g);
        assert!((a - b).abs() < 1e-13);
        let cfg = EmaConfig::PowerFunction { sigma_rel: 0.05 };
        assert!((cfg.beta(999, 64) - a).abs() < 1e-13);
    }

    #[test]
    fn config_serde_and_validation() {
        let c: EmaConfig =
            serde_json::from_str(r#"{"kind":"half_life","halflife_kimg":500.0}"#).unwrap();
        assert_eq!(
            c,
            EmaConfig::HalfLife {
                halflife_kimg: 500.0,
                rampup_ratio: None
            }
        );
        assert_eq!(EmaConfig::default().beta(12345, 128), 0.9999);
        assert!(EmaConfig::Constant { beta: 1.5 }.validate().is_err());
        let e = EmaConfig::PowerFunction { sigma_rel: 0.4 }
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("sigma_rel"), "{e}");
        assert_eq!(lerp(1.0, 0.0, 0.9999), 0.9999);
    }
}
