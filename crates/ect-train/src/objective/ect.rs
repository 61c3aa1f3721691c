//! Easy Consistency Tuning (docs/method.md §3): lognormal `t`, `r` from the mapping function at
//! the current stage, the consistency pair with the student's dropout masks replayed in the teacher, the
//! adaptive metric and the `1/(t - r)` or snrpk weighting.

use ect_config::train::SamplingConfig;
use ect_schedule::recipe::EctLossConfig;
use ect_schedule::{mapping::Mapping, weighting::Weighting};
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

use super::consistency::{adaptive, consistency_d2, vec_tensor};
use super::{standard_normals, NoiseLevels, Objective};
use crate::denoiser::Denoiser;
use crate::sampler::Sampler;

/// ECT's loss parameters (defaults: the CIFAR-10 recipe).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EctLoss {
    /// The mapping `t -> r`.
    pub mapping: Mapping,
    /// The stage base `q`.
    pub q: f64,
    /// Timestep weighting.
    pub weighting: Weighting,
    /// Adaptive-loss constant `c` (0: plain L2 norm).
    pub c: f64,
    /// Data standard deviation (for snrpk).
    pub sigma_data: f64,
}

impl Default for EctLoss {
    fn default() -> Self {
        Self {
            mapping: Mapping::default(),
            q: 2.0,
            weighting: Weighting::InvDt,
            c: 0.0,
            sigma_data: 0.5,
        }
    }
}

impl EctLoss {
    /// `r` for each `t` at `stage`.
    pub fn r_of(&self, t: &[f64], stage: u32) -> Vec<f64> {
        t.iter()
            .map(|&t| self.mapping.r(t, stage, self.q))
            .collect()
    }

    /// The ECT loss at times `t` (drawn by the caller from the lognormal), stage `stage`, with the shared
    /// noise `eps` (like `x0`).
    ///
    /// # Shapes
    /// x0: [N, C, H, W] in [-1, 1]; t: N values; eps: like x0; output: `[N]` per-sample losses.
    pub fn compute(
        &self,
        net: &dyn Denoiser,
        x0: &Tensor,
        labels: Option<&Tensor>,
        t: &[f64],
        stage: u32,
        eps: &Tensor,
    ) -> Tensor {
        let r = self.r_of(t, stage);
        self.compute_pairs(net, x0, labels, t, &r, eps)
    }

    /// The ECT loss for explicit pairs `(t, r)` with `0 <= r < t` (what [`EctLoss::compute`] does after
    /// the mapping).
    ///
    /// # Shapes
    /// As [`EctLoss::compute`]; r: N values.
    pub fn compute_pairs(
        &self,
        net: &dyn Denoiser,
        x0: &Tensor,
        labels: Option<&Tensor>,
        t: &[f64],
        r: &[f64],
        eps: &Tensor,
    ) -> Tensor {
        let d2 = consistency_d2(net, x0, labels, t, r, eps);
        let w: Vec<f64> = t
            .iter()
            .zip(r)
            .map(|(&t, &r)| self.weighting.weight(t, r, self.sigma_data))
            .collect();
        adaptive(&d2, self.c) * vec_tensor(&w, x0)
    }
}

/// The ECT objective of a run: its loss schedule (`ect_schedule::recipe`), which decides `t`, the stage,
/// `r(t)` and the weights.
#[derive(Debug, Clone)]
pub struct Ect {
    /// The loss schedule.
    pub recipe: EctLossConfig,
}

impl Ect {
    /// The tensor loss of the recipe.
    pub fn loss(&self) -> EctLoss {
        EctLoss {
            mapping: self.recipe.mapping,
            q: self.recipe.q,
            weighting: self.recipe.weighting,
            c: self.recipe.c,
            sigma_data: self.recipe.sigma_data,
        }
    }
}

impl Objective for Ect {
    fn name(&self) -> &'static str {
        "ect"
    }

    fn stage_at(&self, step: u64) -> u32 {
        self.recipe.stage_at(step)
    }

    fn draw(&mut self, step: u64, n: usize, rng: &mut ChaCha8Rng) -> NoiseLevels {
        let t: Vec<f64> = standard_normals(n, rng)
            .into_iter()
            .map(|z| self.recipe.noise.t_from_normal(z))
            .collect();
        let r = t.iter().map(|&t| self.recipe.r(t, step)).collect();
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
        self.loss()
            .compute_pairs(net, x0, labels, &levels.t, &levels.r, eps)
    }

    fn samplers(&self, sampling: &SamplingConfig) -> Vec<Sampler> {
        Sampler::consistency_grids(sampling)
    }
}
