//! EDM diffusion pretraining (docs/method.md §8): `sigma = exp(P_mean + P_std z)`, loss
//! `lambda(sigma) |D(x0 + sigma eps, sigma) - x0|^2`; sampled with EDM's Heun sampler.

use ect_config::train::SamplingConfig;
use ect_schedule::noise::LogNormal;
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

use super::consistency::{per_sample, per_sample_d2, vec_tensor};
use super::{standard_normals, NoiseLevels, Objective};
use crate::denoiser::{Denoiser, Pass};
use crate::sampler::Sampler;

/// EDM pretraining: `lambda(s) * sum over C,H,W of (D(x0 + s eps, s) - x0)^2`,
/// `lambda(s) = (s^2 + sd^2) / (s sd)^2`, at noise levels `sigma` drawn by the caller
/// (`exp(-1.2 + 1.2 z)`).
///
/// # Shapes
/// x0: [N, C, H, W]; sigma: N values; eps: like x0; output: `[N]` per-sample losses.
pub fn edm_loss(
    net: &dyn Denoiser,
    x0: &Tensor,
    labels: Option<&Tensor>,
    sigma: &[f64],
    eps: &Tensor,
    sigma_data: f64,
) -> Tensor {
    let s = vec_tensor(sigma, x0);
    let x = x0 + eps * per_sample(&s);
    net.normalize_weights();
    let d = net.denoise(&x, &s, labels, Pass::Train);
    let w: Vec<f64> = sigma
        .iter()
        .map(|&s| ect_schedule::weighting::edm_lambda(s, sigma_data))
        .collect();
    per_sample_d2(&d, x0) * vec_tensor(&w, x0)
}

/// The EDM objective of a run.
#[derive(Debug, Clone)]
pub struct Edm {
    /// Distribution of `sigma`.
    pub noise: LogNormal,
    /// Data standard deviation.
    pub sigma_data: f64,
}

impl Objective for Edm {
    fn name(&self) -> &'static str {
        "edm"
    }

    fn draw(&mut self, _step: u64, n: usize, rng: &mut ChaCha8Rng) -> NoiseLevels {
        let t: Vec<f64> = standard_normals(n, rng)
            .into_iter()
            .map(|z| self.noise.t_from_normal(z))
            .collect();
        NoiseLevels {
            r: vec![0.0; t.len()],
            t,
        }
    }

    fn loss(
        &self,
        net: &dyn Denoiser,
        x0: &Tensor,
        labels: Option<&Tensor>,
        levels: &NoiseLevels,
        eps: &Tensor,
    ) -> Tensor {
        edm_loss(net, x0, labels, &levels.t, eps, self.sigma_data)
    }

    fn samplers(&self, sampling: &SamplingConfig) -> Vec<Sampler> {
        vec![Sampler::heun_of(sampling)]
    }

    fn forward_equivalents(&self) -> f64 {
        3.0
    }
}
