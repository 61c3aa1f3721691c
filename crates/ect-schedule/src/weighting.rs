//! Timestep weightings and the adaptive (pseudo-Huber) per-sample loss.
//!
//! docs/method.md §3 (steps 6-7) and §8; paper "Consistency Models Made Easy", section 3
//! ("weighting function"). The ECT per-sample loss is
//! `w(t, r) * (sqrt(d2 + c^2) - c)` (or `w(t, r) * sqrt(d2)` when `c = 0`), where `d2` is the squared
//! L2 distance between the two consistency outputs. Its derivative with respect to `d2` is
//! `1 / (2 sqrt(d2 + c^2))`: squared L2 with an adaptive weight (see [`adaptive_weight`]).
//!
//! The weightings and the final product `loss * w` are evaluated in the reference's order (`ECMLoss`
//! and EDM's `lambda`). [`adaptive_loss`] with `c > 0` is not: it computes the algebraically equal
//! `d2 / (sqrt(d2 + c^2) + c)`, because the reference's `sqrt(d2 + c^2) - c` loses most of its digits
//! to cancellation when `d2 << c^2`. On the reference fixture the two forms agree within 1e-12 relative
//! (`tests/golden.rs`); for `c = 0` both are `sqrt(d2)`.

use serde::{Deserialize, Serialize};

use crate::error::{ensure, Result};

/// The reference's `sigma_data` for images scaled to [-1, 1].
pub const SIGMA_DATA: f64 = 0.5;

/// A timestep weighting `w(t, r)`. Serialized as a plain string: `"inv_dt"`, `"snrpk"`,
/// `"uniform"`, `"edm_lambda"` (the Rust variant names are accepted too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Weighting {
    /// `1 / (t - r)` (ECT CIFAR-10; infinite when `r = t`).
    #[default]
    #[serde(alias = "InvDt")]
    InvDt,
    /// "SNR plus k": `(t^2 + sd^2) / (t sd)^2 = 1/t^2 + 1/sd^2` (ECT ImageNet 64).
    #[serde(alias = "Snrpk")]
    Snrpk,
    /// `1`.
    #[serde(alias = "Uniform")]
    Uniform,
    /// EDM's `lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2`, with `sigma = t` (`r` unused);
    /// the same formula as [`Weighting::Snrpk`], named for diffusion pretraining.
    #[serde(alias = "EdmLambda")]
    EdmLambda,
}

impl Weighting {
    /// `w(t, r)` with data standard deviation `sigma_data`.
    pub fn weight(&self, t: f64, r: f64, sigma_data: f64) -> f64 {
        match self {
            Self::InvDt => 1.0 / (t - r),
            Self::Snrpk | Self::EdmLambda => edm_lambda(t, sigma_data),
            Self::Uniform => 1.0,
        }
    }
}

/// EDM's loss weight `(sigma^2 + sd^2) / (sigma sd)^2`.
pub fn edm_lambda(sigma: f64, sigma_data: f64) -> f64 {
    let ts = sigma * sigma_data;
    (sigma * sigma + sigma_data * sigma_data) / (ts * ts)
}

/// The adaptive per-sample loss from a squared distance `d2`:
/// `sqrt(d2 + c^2) - c` if `c > 0`, else `sqrt(d2)`.
pub fn adaptive_loss(d2: f64, c: f64) -> f64 {
    if c > 0.0 {
        // Equal to sqrt(d2 + c^2) - c, without its cancellation when d2 << c^2.
        d2 / ((d2 + c * c).sqrt() + c)
    } else {
        d2.sqrt()
    }
}

/// The adaptive weight that turns squared L2 into [`adaptive_loss`]'s gradient:
/// `d/d(d2) adaptive_loss = 1 / (2 sqrt(d2 + c^2))`.
pub fn adaptive_weight(d2: f64, c: f64) -> f64 {
    let c = c.max(0.0);
    0.5 / (d2 + c * c).sqrt()
}

/// The weighted ECT per-sample loss: `adaptive_loss(d2, c) * weighting.weight(t, r, sigma_data)`.
pub fn ect_sample_loss(
    d2: f64,
    c: f64,
    t: f64,
    r: f64,
    weighting: Weighting,
    sigma_data: f64,
) -> f64 {
    adaptive_loss(d2, c) * weighting.weight(t, r, sigma_data)
}

/// Checks a pseudo-Huber constant (`c >= 0`, finite).
pub fn validate_c(c: f64) -> Result<()> {
    ensure(c.is_finite() && c >= 0.0, "c", c, "finite and >= 0")
}

/// Checks a data standard deviation (`> 0`, finite).
pub fn validate_sigma_data(sigma_data: f64) -> Result<()> {
    ensure(
        sigma_data.is_finite() && sigma_data > 0.0,
        "sigma_data",
        sigma_data,
        "finite and > 0",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_by_hand() {
        assert_eq!(Weighting::InvDt.weight(2.0, 1.5, 0.5), 2.0);
        // 1/t^2 + 1/sd^2 = 1 + 4.
        assert_eq!(Weighting::Snrpk.weight(1.0, 0.3, 0.5), 5.0);
        assert_eq!(Weighting::EdmLambda.weight(1.0, 0.0, 0.5), 5.0);
        assert_eq!(Weighting::Uniform.weight(7.0, 1.0, 0.5), 1.0);
        assert!(Weighting::InvDt.weight(1.0, 1.0, 0.5).is_infinite());
    }

    #[test]
    fn adaptive_loss_limits() {
        assert_eq!(adaptive_loss(9.0, 0.0), 3.0);
        assert_eq!(adaptive_loss(0.0, 0.06), 0.0);
        // Small d2: ~ d2 / (2c); large d2: ~ sqrt(d2) - c.
        let (d, c) = (1e-8_f64, 0.06_f64);
        let series = d / (2.0 * c) - d * d / (8.0 * c * c * c);
        assert!(((adaptive_loss(d, c) - series) / series).abs() < 1e-11);
        // 1000.0000018 - 0.06 (the 1/(2 sqrt d2) c^2 correction is 1.8e-6).
        assert!((adaptive_loss(1e6, 0.06) - 999.9400018).abs() < 1e-9);
        assert!((adaptive_weight(3.0, 1.0) - 0.25).abs() < 1e-16);
    }

    #[test]
    fn serde_names() {
        assert_eq!(
            serde_json::to_string(&Weighting::InvDt).unwrap(),
            "\"inv_dt\""
        );
        let w: Weighting = serde_json::from_str("\"Snrpk\"").unwrap();
        assert_eq!(w, Weighting::Snrpk);
        let w: Weighting = serde_json::from_str("\"edm_lambda\"").unwrap();
        assert_eq!(w, Weighting::EdmLambda);
        assert!(serde_json::from_str::<Weighting>("\"sqrt\"").is_err());
    }

    #[test]
    fn validation() {
        assert!(validate_c(-0.1).is_err());
        assert!(validate_c(0.0).is_ok());
        assert!(validate_sigma_data(0.0).is_err());
    }
}
