//! The improved Consistency Training (iCT) curriculum: the from-scratch baseline ECT is compared to.
//!
//! docs/method.md §7; Song & Dhariwal, "Improved Techniques for Training Consistency Models"
//! (ICLR 2024), sections 3.3-3.5. Discretization `N(k) = min(s0 2^floor(k/K'), s1) + 1` with
//! `K' = floor(K / (log2 floor(s1/s0) + 1))`; Karras noise levels of that `N` (ascending, no 0);
//! the pair index `i` drawn with probability proportional to
//! `erf((ln s_{i+1} - Pm)/(sqrt2 Ps)) - erf((ln s_i - Pm)/(sqrt2 Ps))`; the pair `(r, t) =
//! (s_i, s_{i+1})` weighted by `1/(s_{i+1} - s_i)`; pseudo-Huber `c = 0.00054 sqrt(d)`.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{ensure, Result, ScheduleError};
use crate::special::{erf, erfc};

/// iCT's initial discretization `s0`.
pub const ICT_S0: u64 = 10;
/// iCT's final discretization `s1`.
pub const ICT_S1: u64 = 1280;

/// `K' = floor(K / (log2 floor(s1/s0) + 1))`, the iterations between doublings of `N`
/// (0 when `s0 = 0` or `s1 < s0`, which [`discretization_steps`] treats as "already at `s1`").
pub fn stage_length(total_k: u64, s0: u64, s1: u64) -> u64 {
    if s0 == 0 || s1 < s0 {
        return 0;
    }
    let doublings = ((s1 / s0) as f64).log2() + 1.0;
    (total_k as f64 / doublings).floor() as u64
}

/// `N(k) = min(s0 2^floor(k/K'), s1) + 1` at iteration `k` of `total_k`.
pub fn discretization_steps(k: u64, total_k: u64, s0: u64, s1: u64) -> u64 {
    let kp = stage_length(total_k, s0, s1);
    // K' = 0 (a run too short for the doublings) means N is at s1 from the start.
    let n = match k.checked_div(kp) {
        None => s1,
        Some(doublings) => {
            let scaled = u32::try_from(doublings)
                .ok()
                .filter(|&d| d < 64)
                .and_then(|d| s0.checked_mul(1u64 << d))
                .unwrap_or(u64::MAX);
            scaled.min(s1)
        }
    };
    n.saturating_add(1)
}

/// `n` Karras noise levels in **ascending** order, no trailing 0:
/// `s_i = (smin^(1/rho) + i/(n-1) (smax^(1/rho) - smin^(1/rho)))^rho`. `n = 1` gives `[sigma_min]`.
pub fn karras_ascending(n: usize, sigma_min: f64, sigma_max: f64, rho: f64) -> Vec<f64> {
    if n == 1 {
        return vec![sigma_min];
    }
    let inv_rho = 1.0 / rho;
    let lo = sigma_min.powf(inv_rho);
    let hi = sigma_max.powf(inv_rho);
    let last = (n.max(2) - 1) as f64;
    (0..n)
        .map(|i| (lo + i as f64 / last * (hi - lo)).powf(rho))
        .collect()
}

/// `erf(b) - erf(a)` for `a < b`, computed from `erfc` in a tail so that it keeps relative accuracy.
fn erf_diff(a: f64, b: f64) -> f64 {
    if a >= 0.0 {
        erfc(a) - erfc(b)
    } else if b <= 0.0 {
        erfc(-b) - erfc(-a)
    } else {
        erf(b) - erf(a)
    }
}

/// The probabilities of the `sigmas.len() - 1` adjacent pairs of ascending `sigmas` under the
/// lognormal `(p_mean, p_std)`, normalized to sum to 1. Returns an empty vector for invalid input;
/// [`try_index_probabilities`] says why.
pub fn index_probabilities(sigmas: &[f64], p_mean: f64, p_std: f64) -> Vec<f64> {
    try_index_probabilities(sigmas, p_mean, p_std).unwrap_or_default()
}

/// [`index_probabilities`] with validation: at least two sigmas, positive, finite, strictly
/// ascending; `p_mean` finite; `p_std > 0` finite; some probability mass in range.
pub fn try_index_probabilities(sigmas: &[f64], p_mean: f64, p_std: f64) -> Result<Vec<f64>> {
    validate_ascending(sigmas)?;
    ensure(p_mean.is_finite(), "p_mean", p_mean, "finite")?;
    ensure(
        p_std.is_finite() && p_std > 0.0,
        "p_std",
        p_std,
        "finite and > 0",
    )?;
    let scale = std::f64::consts::SQRT_2 * p_std;
    let z: Vec<f64> = sigmas.iter().map(|s| (s.ln() - p_mean) / scale).collect();
    let mut p: Vec<f64> = z
        .windows(2)
        .map(|w| erf_diff(w[0], w[1]).max(0.0))
        .collect();
    let total: f64 = p.iter().sum();
    if !(total > 0.0 && total.is_finite()) {
        return Err(ScheduleError::InvalidGrid {
            times: sigmas.to_vec(),
            reason: format!("no probability mass under lognormal({p_mean}, {p_std})"),
        });
    }
    for v in &mut p {
        *v /= total;
    }
    Ok(p)
}

/// `1 / (s_{i+1} - s_i)` for each adjacent pair of ascending `sigmas`.
pub fn step_weights(sigmas: &[f64]) -> Vec<f64> {
    sigmas.windows(2).map(|w| 1.0 / (w[1] - w[0])).collect()
}

/// iCT's pseudo-Huber constant `c = 0.00054 sqrt(d)` for data of `dim = C H W` values.
pub fn pseudo_huber_c(dim: usize) -> f64 {
    0.00054 * (dim as f64).sqrt()
}

/// Draws an index with the given probabilities (inverse CDF of one uniform draw). Zero-probability
/// entries are never returned; an empty or all-zero slice returns 0.
pub fn sample_index<R: Rng + ?Sized>(probs: &[f64], rng: &mut R) -> usize {
    let u: f64 = rng.gen::<f64>();
    let total: f64 = probs.iter().sum();
    let target = u * total;
    let mut acc = 0.0;
    let mut last_positive = 0;
    for (i, &p) in probs.iter().enumerate() {
        if p > 0.0 {
            acc += p;
            last_positive = i;
            if target < acc {
                return i;
            }
        }
    }
    // Rounding can leave target >= the running sum; the last positive entry takes it.
    last_positive
}

fn validate_ascending(sigmas: &[f64]) -> Result<()> {
    let fail = |reason: String| {
        Err(ScheduleError::InvalidGrid {
            times: sigmas.to_vec(),
            reason,
        })
    };
    if sigmas.len() < 2 {
        return fail("needs at least two noise levels".into());
    }
    if let Some(i) = sigmas.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
        return fail(format!(
            "noise level {i} ({}) is not finite and > 0",
            sigmas[i]
        ));
    }
    if let Some(i) = (1..sigmas.len()).find(|&i| sigmas[i] <= sigmas[i - 1]) {
        return fail(format!("not strictly ascending at index {i}"));
    }
    Ok(())
}

/// The whole iCT curriculum as a config value (defaults: iCT's CIFAR-10 settings with
/// `total_iters = 400_000`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IctConfig {
    /// Total training iterations `K`.
    pub total_iters: u64,
    /// Initial discretization `s0`.
    pub s0: u64,
    /// Final discretization `s1`.
    pub s1: u64,
    /// Smallest noise level.
    pub sigma_min: f64,
    /// Largest noise level.
    pub sigma_max: f64,
    /// Karras spacing exponent.
    pub rho: f64,
    /// Lognormal mean of `ln sigma` for the index distribution.
    pub p_mean: f64,
    /// Lognormal standard deviation of `ln sigma`.
    pub p_std: f64,
}

impl Default for IctConfig {
    fn default() -> Self {
        Self {
            total_iters: 400_000,
            s0: ICT_S0,
            s1: ICT_S1,
            sigma_min: 0.002,
            sigma_max: 80.0,
            rho: 7.0,
            p_mean: -1.1,
            p_std: 2.0,
        }
    }
}

impl IctConfig {
    /// Checks the fields.
    pub fn validate(&self) -> Result<()> {
        ensure(self.s0 >= 1, "s0", self.s0 as f64, ">= 1")?;
        ensure(self.s1 >= self.s0, "s1", self.s1 as f64, ">= s0")?;
        ensure(
            self.sigma_min.is_finite() && self.sigma_min > 0.0,
            "sigma_min",
            self.sigma_min,
            "finite and > 0",
        )?;
        ensure(
            self.sigma_max.is_finite() && self.sigma_max > self.sigma_min,
            "sigma_max",
            self.sigma_max,
            "finite and > sigma_min",
        )?;
        ensure(
            self.rho.is_finite() && self.rho > 0.0,
            "rho",
            self.rho,
            "finite and > 0",
        )?;
        ensure(self.p_mean.is_finite(), "p_mean", self.p_mean, "finite")?;
        ensure(
            self.p_std.is_finite() && self.p_std > 0.0,
            "p_std",
            self.p_std,
            "finite and > 0",
        )
    }

    /// `N(k)`.
    pub fn discretization_steps(&self, k: u64) -> u64 {
        discretization_steps(k, self.total_iters, self.s0, self.s1)
    }

    /// The ascending noise levels at iteration `k`.
    pub fn sigmas(&self, k: u64) -> Vec<f64> {
        let n = usize::try_from(self.discretization_steps(k)).unwrap_or(usize::MAX);
        karras_ascending(n, self.sigma_min, self.sigma_max, self.rho)
    }

    /// The pair probabilities at iteration `k`.
    pub fn probabilities(&self, k: u64) -> Result<Vec<f64>> {
        self.validate()?;
        try_index_probabilities(&self.sigmas(k), self.p_mean, self.p_std)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_length_and_steps() {
        assert_eq!(stage_length(400_000, 10, 1280), 50_000);
        assert_eq!(discretization_steps(0, 400_000, 10, 1280), 11);
        assert_eq!(discretization_steps(u64::MAX, 400_000, 10, 1280), 1281);
        // A run too short for any stage length starts at s1.
        assert_eq!(discretization_steps(0, 3, 10, 1280), 1281);
        assert_eq!(discretization_steps(5, 100, 0, 1280), 1281);
    }

    #[test]
    fn karras_ascending_endpoints() {
        let s = karras_ascending(11, 0.002, 80.0, 7.0);
        assert_eq!(s.len(), 11);
        assert!((s[0] - 0.002).abs() < 1e-17 && (s[10] - 80.0).abs() < 1e-12);
        assert_eq!(karras_ascending(1, 0.002, 80.0, 7.0), vec![0.002]);
    }

    /// Python: `[math.erf((math.log(b)+1.1)/(math.sqrt(2)*2)) - math.erf((math.log(a)+1.1)/
    /// (math.sqrt(2)*2))` for adjacent pairs of [0.002, 0.1, 1.0, 80.0], normalized.
    #[test]
    fn probabilities_match_python() {
        let p = index_probabilities(&[0.002, 0.1, 1.0, 80.0], -1.1, 2.0);
        let want = [0.2708058960947411, 0.4386749034328274, 0.2905192004724315];
        let mut sum = 0.0;
        for (g, w) in p.iter().zip(want) {
            assert!(((g - w) / w).abs() < 1e-13, "{g} vs {w}");
            sum += g;
        }
        assert!((sum - 1.0).abs() < 1e-15);
    }

    #[test]
    fn invalid_inputs_are_errors_not_panics() {
        assert!(index_probabilities(&[1.0], -1.1, 2.0).is_empty());
        assert!(try_index_probabilities(&[2.0, 1.0], -1.1, 2.0).is_err());
        assert!(try_index_probabilities(&[0.0, 1.0], -1.1, 2.0).is_err());
        assert!(try_index_probabilities(&[1.0, 2.0], -1.1, 0.0).is_err());
        // Both points 60 standard deviations into the upper tail: erfc underflows to 0.
        let e = try_index_probabilities(&[1e100, 1e101], -1.1, 2.0).unwrap_err();
        assert!(e.to_string().contains("no probability mass"), "{e}");
        let e = IctConfig {
            s0: 0,
            ..IctConfig::default()
        };
        assert!(e.validate().unwrap_err().to_string().contains("s0"));
    }

    #[test]
    fn weights_c_and_sampling() {
        assert_eq!(step_weights(&[1.0, 1.5, 3.5]), vec![2.0, 0.5]);
        assert!((pseudo_huber_c(3 * 32 * 32) - 0.00054 * 3072_f64.sqrt()).abs() < 1e-18);
        let mut rng = crate::noise::seeded_rng(3);
        let probs = [0.0, 0.25, 0.0, 0.75];
        let mut counts = [0usize; 4];
        for _ in 0..4000 {
            counts[sample_index(&probs, &mut rng)] += 1;
        }
        assert_eq!((counts[0], counts[2]), (0, 0));
        assert!(
            (counts[1] as f64 / 4000.0 - 0.25).abs() < 0.03,
            "{counts:?}"
        );
        assert_eq!(sample_index(&[], &mut rng), 0);
    }
}
