//! Training objectives: what differs between ECT tuning ([`ect`]), EDM diffusion pretraining ([`edm`])
//! and iCT from scratch ([`ict`]): how a step draws its noise levels, the per-sample loss, the stage at a
//! step, and the samplers a run of it is evaluated with. The trainer only calls the [`Objective`] trait;
//! [`from_config`] is the one place that looks at the configured kind, so a new objective is one new file
//! here plus one variant of `ect_config::train::ObjectiveConfig`.
//!
//! Every objective takes the network as a [`Denoiser`] and its random draws explicitly, so the plumbing
//! is testable with analytic denoisers and the trainer controls every random number (exact resume).
//! Losses are per sample; the trainer sums them and divides by the full batch size, as the reference's
//! training loop does, so micro-batches accumulate to the batch mean.

mod consistency;
pub mod ect;
pub mod edm;
pub mod ict;

use ect_config::train::{ObjectiveConfig, SamplingConfig};
use ect_config::TrainConfig;
use ect_schedule::noise::LogNormal;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use tch::Tensor;

pub use consistency::{adaptive, per_sample_d2, repair_teacher};
pub use ect::{Ect, EctLoss};
pub use edm::{edm_loss, Edm};
pub use ict::{ict_loss, Ict};

use crate::denoiser::Denoiser;
use crate::sampler::Sampler;

/// The noise levels of one micro-batch: `t` per sample and its partner `r < t` (0 for diffusion
/// objectives, which have none).
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseLevels {
    /// The larger time of each pair (the diffusion noise level).
    pub t: Vec<f64>,
    /// The smaller time of each pair.
    pub r: Vec<f64>,
}

impl NoiseLevels {
    /// Mean of `r / t` over the batch (0 when empty).
    pub fn mean_r_over_t(&self) -> f64 {
        if self.t.is_empty() {
            return 0.0;
        }
        self.t.iter().zip(&self.r).map(|(t, r)| r / t).sum::<f64>() / self.t.len() as f64
    }
}

/// What a training objective decides; the trainer does the rest (data, micro-batches, noise `eps`,
/// backward, gradients, optimizer, EMA, cadence).
pub trait Objective: Send {
    /// Short name (`ect`, `edm`, `ict`).
    fn name(&self) -> &'static str;

    /// The stage at `step` for logs (ECT's `dt` halves each stage); 0 for objectives without stages.
    fn stage_at(&self, _step: u64) -> u32 {
        0
    }

    /// Draws the noise levels of the `n` images of a step's global batch at `step` from `rng` (on the
    /// CPU, so every device and every rank draws the same; each micro-batch takes its rows).
    fn draw(&mut self, step: u64, n: usize, rng: &mut ChaCha8Rng) -> NoiseLevels;

    /// Per-sample losses of `x0` at `levels` with the noise `eps`, differentiable in the network.
    ///
    /// # Shapes
    /// x0, eps: [N, C, H, W]; labels: `[N, label_dim]` or `None`; output: `[N]`.
    fn loss(
        &self,
        net: &dyn Denoiser,
        x0: &Tensor,
        labels: Option<&Tensor>,
        levels: &NoiseLevels,
        eps: &Tensor,
    ) -> Tensor;

    /// The samplers a run of this objective is looked at with (sample grids, periodic FD).
    fn samplers(&self, sampling: &SamplingConfig) -> Vec<Sampler>;

    /// Forward passes' worth of compute per image in one training step, for compute budgets: the
    /// backward pass costs about two forwards, and a consistency objective adds a teacher forward
    /// without gradients (4, the default); a diffusion objective has no teacher (3).
    fn forward_equivalents(&self) -> f64 {
        4.0
    }
}

/// `n` standard normal draws from `rng`.
pub(crate) fn standard_normals(n: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    (0..n)
        .map(|_| rng.sample::<f64, _>(StandardNormal))
        .collect()
}

/// The objective `cfg` configures.
pub fn from_config(cfg: &TrainConfig) -> Box<dyn Objective> {
    match &cfg.objective {
        ObjectiveConfig::Ect { .. } => Box::new(Ect {
            recipe: cfg.ect_recipe().expect("an ECT objective has a recipe"),
        }),
        ObjectiveConfig::Edm {
            p_mean,
            p_std,
            sigma_data,
        } => Box::new(Edm {
            noise: LogNormal {
                p_mean: *p_mean,
                p_std: *p_std,
            },
            sigma_data: *sigma_data,
        }),
        ObjectiveConfig::Ict {
            p_mean,
            p_std,
            s0,
            s1,
            sigma_min,
            sigma_max,
            rho,
            c,
        } => {
            let net = &cfg.network;
            let dims = net.img_channels() * net.img_resolution() * net.img_resolution();
            Box::new(Ict::new(
                *p_mean,
                *p_std,
                *s0,
                *s1,
                *sigma_min,
                *sigma_max,
                *rho,
                c.unwrap_or_else(|| ect_schedule::ict::pseudo_huber_c(dims as usize)),
                cfg.iterations,
            ))
        }
    }
}
