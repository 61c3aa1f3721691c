//! Improved consistency training from scratch, iCT (docs/method.md §7): adjacent Karras times of
//! a curriculum `N(k)`, pseudo-Huber metric, `1/(t - r)` weighting, teacher = the same weights without
//! gradient.

use ect_config::train::SamplingConfig;
use ect_schedule::ict;
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

use super::consistency::{adaptive, consistency_d2, vec_tensor};
use super::{NoiseLevels, Objective};
use crate::denoiser::Denoiser;
use crate::sampler::Sampler;

/// iCT: consistency between adjacent Karras times `r = s_i < t = s_{i+1}` (indices drawn by the caller),
/// pseudo-Huber `sqrt(d2 + c^2) - c`, weight `1 / (t - r)`; teacher = same weights without gradient and
/// with the student's dropout masks.
///
/// # Shapes
/// x0: [N, C, H, W]; t, r: N values with 0 < r < t; eps: like x0; output: `[N]` per-sample losses.
pub fn ict_loss(
    net: &dyn Denoiser,
    x0: &Tensor,
    labels: Option<&Tensor>,
    t: &[f64],
    r: &[f64],
    eps: &Tensor,
    c: f64,
) -> Tensor {
    let d2 = consistency_d2(net, x0, labels, t, r, eps);
    let w: Vec<f64> = t.iter().zip(r).map(|(&t, &r)| 1.0 / (t - r)).collect();
    adaptive(&d2, c) * vec_tensor(&w, x0)
}

/// The curriculum's Karras times (ascending, without the trailing 0) at one `N`, and the probability of
/// each adjacent pair.
#[derive(Debug, Clone)]
struct Grid {
    n: u64,
    sigmas: Vec<f64>,
    probs: Vec<f64>,
}

/// The iCT objective of a run.
#[derive(Debug, Clone)]
pub struct Ict {
    /// Index-distribution lognormal mean and std.
    pub p_mean: f64,
    /// See `p_mean`.
    pub p_std: f64,
    /// Initial and final discretization steps.
    pub s0: u64,
    /// See `s0`.
    pub s1: u64,
    /// Karras range and exponent.
    pub sigma_min: f64,
    /// See `sigma_min`.
    pub sigma_max: f64,
    /// See `sigma_min`.
    pub rho: f64,
    /// Pseudo-Huber constant.
    pub c: f64,
    /// Total iterations (the curriculum's `K`).
    pub iterations: u64,
    grid: Option<Grid>,
}

impl Ict {
    /// The objective with no grid computed yet.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        p_mean: f64,
        p_std: f64,
        s0: u64,
        s1: u64,
        sigma_min: f64,
        sigma_max: f64,
        rho: f64,
        c: f64,
        iterations: u64,
    ) -> Self {
        Self {
            p_mean,
            p_std,
            s0,
            s1,
            sigma_min,
            sigma_max,
            rho,
            c,
            iterations,
            grid: None,
        }
    }

    /// The grid at iteration `step` (cached while `N` stays the same).
    fn grid(&mut self, step: u64) -> &Grid {
        let n = ict::discretization_steps(step, self.iterations, self.s0, self.s1);
        if self.grid.as_ref().map(|g| g.n) != Some(n) {
            let sigmas =
                ict::karras_ascending(n as usize, self.sigma_min, self.sigma_max, self.rho);
            let probs = ict::index_probabilities(&sigmas, self.p_mean, self.p_std);
            self.grid = Some(Grid { n, sigmas, probs });
        }
        self.grid.as_ref().expect("set above")
    }
}

impl Objective for Ict {
    fn name(&self) -> &'static str {
        "ict"
    }

    fn draw(&mut self, step: u64, n: usize, rng: &mut ChaCha8Rng) -> NoiseLevels {
        let grid = self.grid(step);
        let (mut t, mut r) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for _ in 0..n {
            let i = ict::sample_index(&grid.probs, rng);
            r.push(grid.sigmas[i]);
            t.push(grid.sigmas[i + 1]);
        }
        NoiseLevels { t, r }
    }

    fn loss(
        &self,
        net: &dyn Denoiser,
        x0: &Tensor,
        labels: Option<&Tensor>,
        levels: &NoiseLevels,
        eps: &Tensor,
    ) -> Tensor {
        ict_loss(net, x0, labels, &levels.t, &levels.r, eps, self.c)
    }

    fn samplers(&self, sampling: &SamplingConfig) -> Vec<Sampler> {
        Sampler::consistency_grids(sampling)
    }
}
