//! Sampling time grids: consistency few-step grids and EDM's Karras times for the Heun sampler.
//!
//! docs/method.md §5; ECT's `generator_fn` (few-step consistency sampling) and EDM's
//! `edm_sampler` (Karras et al. 2022, eq. 5 and algorithm 2).
//!
//! A consistency grid is `[t0 > t1 > ... > 0]`: `x = z t0`; for each step `x = f(x, t_i)` and, if
//! `t_{i+1} > 0`, `x = x + t_{i+1} * randn`. [`TimeGrid`] validates such grids.

use serde::{Deserialize, Serialize};

use crate::error::{ensure, Result, ScheduleError};

/// The largest noise level the ECT samplers start from.
pub const T_MAX: f64 = 80.0;
/// The CIFAR-10 2-step intermediate time.
pub const CIFAR_TWO_STEP_MID: f64 = 0.821;
/// The ImageNet 64 2-step intermediate time.
pub const IMAGENET_TWO_STEP_MID: f64 = 1.526;
/// EDM sampler defaults: `sigma_min`.
pub const EDM_SIGMA_MIN: f64 = 0.002;
/// EDM sampler defaults: `sigma_max`.
pub const EDM_SIGMA_MAX: f64 = 80.0;
/// EDM sampler defaults: `rho`.
pub const EDM_RHO: f64 = 7.0;

/// The 1-step grid `[80, 0]`.
pub fn one_step() -> Vec<f64> {
    vec![T_MAX, 0.0]
}

/// The 2-step grid `[80, mid, 0]` (unvalidated; see [`few_step`]).
pub fn two_step(mid: f64) -> Vec<f64> {
    vec![T_MAX, mid, 0.0]
}

/// `[t_max, mid..., 0]`, validated as a [`TimeGrid`] (the reference's `generator_fn(t_max, mid_t)`).
pub fn few_step(t_max: f64, mid: &[f64]) -> Result<Vec<f64>> {
    let mut times = Vec::with_capacity(mid.len() + 2);
    times.push(t_max);
    times.extend_from_slice(mid);
    times.push(0.0);
    Ok(TimeGrid::new(times)?.into_vec())
}

/// A validated sampling grid: at least two finite times, strictly decreasing, the last one 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Vec<f64>", into = "Vec<f64>")]
pub struct TimeGrid(Vec<f64>);

impl TimeGrid {
    /// Validates `times`; the error names the grid and the first problem.
    pub fn new(times: Vec<f64>) -> Result<Self> {
        let fail =
            |times: Vec<f64>, reason: String| Err(ScheduleError::InvalidGrid { times, reason });
        if times.len() < 2 {
            return fail(times, "needs at least two times (start and 0)".into());
        }
        if let Some(i) = times.iter().position(|t| !t.is_finite()) {
            return fail(
                times.clone(),
                format!("time {i} ({}) is not finite", times[i]),
            );
        }
        if let Some(i) = (1..times.len()).find(|&i| times[i] >= times[i - 1]) {
            let reason = format!(
                "not strictly decreasing at index {i} ({} after {})",
                times[i],
                times[i - 1]
            );
            return fail(times, reason);
        }
        let last = times[times.len() - 1];
        if last != 0.0 {
            return fail(times, format!("must end at 0, ends at {last}"));
        }
        Ok(Self(times))
    }

    /// The times, first to last.
    pub fn as_slice(&self) -> &[f64] {
        &self.0
    }

    /// The times as an owned vector.
    pub fn into_vec(self) -> Vec<f64> {
        self.0
    }

    /// `(t_cur, t_next)` for each step.
    pub fn steps(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.0.windows(2).map(|w| (w[0], w[1]))
    }

    /// Network evaluations of consistency sampling on this grid (one per step).
    pub fn consistency_nfe(&self) -> usize {
        self.0.len() - 1
    }
}

impl TryFrom<Vec<f64>> for TimeGrid {
    type Error = ScheduleError;
    fn try_from(v: Vec<f64>) -> Result<Self> {
        Self::new(v)
    }
}

impl From<TimeGrid> for Vec<f64> {
    fn from(g: TimeGrid) -> Self {
        g.0
    }
}

/// EDM's Karras times, **with the trailing 0**: `n + 1` values
/// `s_i = (smax^(1/rho) + i/(n-1) (smin^(1/rho) - smax^(1/rho)))^rho` for `i < n`, then 0.
///
/// `n = 1` gives `[sigma_max, 0]`, `n = 0` gives `[0]`. Unvalidated: use [`try_karras_sigmas`] for
/// user input.
pub fn karras_sigmas(n: usize, sigma_min: f64, sigma_max: f64, rho: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(n + 1);
    if n == 1 {
        out.push(sigma_max);
    } else if n > 1 {
        let inv_rho = 1.0 / rho;
        let hi = sigma_max.powf(inv_rho);
        let lo = sigma_min.powf(inv_rho);
        let last = (n - 1) as f64;
        for i in 0..n {
            out.push((hi + i as f64 / last * (lo - hi)).powf(rho));
        }
    }
    out.push(0.0);
    out
}

/// [`karras_sigmas`] after checking `n >= 1`, `0 < sigma_min <= sigma_max` (finite) and `rho > 0`.
pub fn try_karras_sigmas(n: usize, sigma_min: f64, sigma_max: f64, rho: f64) -> Result<Vec<f64>> {
    KarrasConfig {
        num_steps: n,
        sigma_min,
        sigma_max,
        rho,
    }
    .sigmas()
}

/// Function evaluations of EDM's Heun sampler with `n` Karras times: 2 per step except the last
/// (Euler) one, so `2n - 1` (`n = 18` gives 35); 0 for `n = 0`.
pub fn heun_nfe(n: usize) -> usize {
    (2 * n).saturating_sub(1)
}

/// Karras-time parameters (EDM sampler defaults: 18 steps, 0.002, 80, rho 7).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KarrasConfig {
    /// Number of noise levels before the final 0 (EDM's `num_steps`).
    pub num_steps: usize,
    /// Smallest nonzero noise level.
    pub sigma_min: f64,
    /// Largest noise level.
    pub sigma_max: f64,
    /// Spacing exponent.
    pub rho: f64,
}

impl Default for KarrasConfig {
    fn default() -> Self {
        Self {
            num_steps: 18,
            sigma_min: EDM_SIGMA_MIN,
            sigma_max: EDM_SIGMA_MAX,
            rho: EDM_RHO,
        }
    }
}

impl KarrasConfig {
    /// Checks the fields.
    pub fn validate(&self) -> Result<()> {
        ensure(
            self.num_steps >= 1,
            "num_steps",
            self.num_steps as f64,
            ">= 1",
        )?;
        ensure(
            self.sigma_min.is_finite() && self.sigma_min > 0.0,
            "sigma_min",
            self.sigma_min,
            "finite and > 0",
        )?;
        ensure(
            self.sigma_max.is_finite() && self.sigma_max >= self.sigma_min,
            "sigma_max",
            self.sigma_max,
            "finite and >= sigma_min",
        )?;
        ensure(
            self.rho.is_finite() && self.rho > 0.0,
            "rho",
            self.rho,
            "finite and > 0",
        )
    }

    /// The validated times with the trailing 0 (see [`karras_sigmas`]).
    pub fn sigmas(&self) -> Result<Vec<f64>> {
        self.validate()?;
        Ok(karras_sigmas(
            self.num_steps,
            self.sigma_min,
            self.sigma_max,
            self.rho,
        ))
    }

    /// Heun function evaluations ([`heun_nfe`]).
    pub fn nfe(&self) -> usize {
        heun_nfe(self.num_steps)
    }
}

/// A sampling grid as a config value (tag `kind`): `{"kind": "one_step"}`,
/// `{"kind": "few_step", "t_max": 80.0, "mid": [0.821]}`, `{"kind": "custom", "times": [...]}`,
/// `{"kind": "karras", "num_steps": 18, ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum GridSpec {
    /// `[80, 0]`.
    OneStep,
    /// `[t_max, mid..., 0]`.
    FewStep {
        /// First time.
        t_max: f64,
        /// Intermediate times, decreasing.
        mid: Vec<f64>,
    },
    /// Any grid given explicitly.
    Custom {
        /// The times, strictly decreasing, ending at 0.
        times: Vec<f64>,
    },
    /// Karras times with the trailing 0 (for the Heun diffusion sampler).
    Karras(KarrasConfig),
}

impl GridSpec {
    /// ECT CIFAR-10 2-step preset `[80, 0.821, 0]`.
    pub fn cifar_two_step() -> Self {
        Self::FewStep {
            t_max: T_MAX,
            mid: vec![CIFAR_TWO_STEP_MID],
        }
    }

    /// ECT ImageNet 64 2-step preset `[80, 1.526, 0]`.
    pub fn imagenet_two_step() -> Self {
        Self::FewStep {
            t_max: T_MAX,
            mid: vec![IMAGENET_TWO_STEP_MID],
        }
    }

    /// The validated grid.
    pub fn grid(&self) -> Result<TimeGrid> {
        match self {
            Self::OneStep => TimeGrid::new(one_step()),
            Self::FewStep { t_max, mid } => TimeGrid::new(few_step(*t_max, mid)?),
            Self::Custom { times } => TimeGrid::new(times.clone()),
            Self::Karras(k) => TimeGrid::new(k.sigmas()?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets() {
        assert_eq!(one_step(), vec![80.0, 0.0]);
        assert_eq!(two_step(CIFAR_TWO_STEP_MID), vec![80.0, 0.821, 0.0]);
        assert_eq!(
            GridSpec::imagenet_two_step().grid().unwrap().as_slice(),
            &[80.0, 1.526, 0.0]
        );
        assert_eq!(heun_nfe(18), 35);
        assert_eq!(heun_nfe(1), 1);
        assert_eq!(heun_nfe(0), 0);
        assert_eq!(KarrasConfig::default().nfe(), 35);
    }

    #[test]
    fn grid_validation_messages() {
        let e = TimeGrid::new(vec![80.0, 1.0, 1.0, 0.0]).unwrap_err();
        assert!(e.to_string().contains("index 2"), "{e}");
        let e = TimeGrid::new(vec![80.0, 1.0]).unwrap_err();
        assert!(e.to_string().contains("end at 0"), "{e}");
        assert!(TimeGrid::new(vec![0.0]).is_err());
        assert!(TimeGrid::new(vec![f64::NAN, 0.0]).is_err());
        assert!(TimeGrid::new(vec![1.0, 0.5, -0.5]).is_err());
        assert!(few_step(80.0, &[100.0]).is_err());
        let g = TimeGrid::new(vec![80.0, 2.0, 0.5, 0.0]).unwrap();
        assert_eq!(g.consistency_nfe(), 3);
        assert_eq!(g.steps().collect::<Vec<_>>()[1], (2.0, 0.5));
    }

    #[test]
    fn karras_edges() {
        assert_eq!(karras_sigmas(0, 0.002, 80.0, 7.0), vec![0.0]);
        assert_eq!(karras_sigmas(1, 0.002, 80.0, 7.0), vec![80.0, 0.0]);
        let s = karras_sigmas(2, 0.002, 80.0, 7.0);
        assert_eq!(s.len(), 3);
        assert!((s[1] - 0.002).abs() < 1e-17);
        assert!(try_karras_sigmas(0, 0.002, 80.0, 7.0).is_err());
        assert!(try_karras_sigmas(5, 0.0, 80.0, 7.0).is_err());
        assert!(try_karras_sigmas(5, 1.0, 0.5, 7.0).is_err());
    }

    #[test]
    fn serde_grid_spec() {
        let g: GridSpec =
            serde_json::from_str(r#"{"kind":"custom","times":[3.0,1.0,0.0]}"#).unwrap();
        assert_eq!(g.grid().unwrap().as_slice(), &[3.0, 1.0, 0.0]);
        let g: GridSpec = serde_json::from_str(r#"{"kind":"karras","num_steps":5}"#).unwrap();
        assert_eq!(g.grid().unwrap().as_slice().len(), 6);
        let bad: std::result::Result<TimeGrid, _> = serde_json::from_str("[1.0, 2.0, 0.0]");
        assert!(bad.is_err());
    }
}
