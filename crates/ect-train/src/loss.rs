//! The training objectives as functions over tensors: ECT (SPEC-ECT section 3), EDM diffusion pretraining
//! (section 8) and improved consistency training, iCT (section 7).
//!
//! Each objective takes the network as a [`Denoiser`] and the random draws (times, noise) explicitly, so the
//! plumbing is testable with analytic denoisers and the trainer controls every random number (exact
//! resume). Each returns per-sample losses; the trainer sums them and divides by the full batch size, as the
//! reference's training loop does, so micro-batches accumulate to the batch mean.

use ect_schedule::{mapping::Mapping, weighting::Weighting};
use tch::{Kind, Tensor};

/// What a forward pass is for; the network adapter maps it to coefficient and dropout modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Consistency student `f(x_t, t)`: training coefficients, fresh dropout masks recorded.
    Student,
    /// Consistency teacher `f(x_r, r)`: training coefficients, the student's dropout masks replayed. The
    /// caller runs it under `no_grad`.
    Teacher,
    /// Diffusion training: training coefficients, fresh dropout masks.
    Train,
    /// Consistency sampling and evaluation: evaluation coefficients (ECM's `sigma_min` shift), no dropout.
    Eval,
    /// Diffusion sampling (Heun): the training coefficients the denoiser was fitted with, no dropout. ECM's
    /// evaluation shift would make `c_out` negative below its `sigma_min` (0.003), inside Karras grids
    /// that reach 0.002.
    Denoise,
}

/// A preconditioned network `D(x; sigma)`.
pub trait Denoiser {
    /// # Shapes
    /// x: [N, C, H, W] f32; sigma: [N] f32; labels: `[N, label_dim]` one-hot or `None`; output like `x`.
    fn denoise(&self, x: &Tensor, sigma: &Tensor, labels: Option<&Tensor>, pass: Pass) -> Tensor;

    /// EDM2's forced weight normalization, called once before each student pass (no-op by default).
    fn normalize_weights(&self) {}
}

impl<F> Denoiser for F
where
    F: Fn(&Tensor, &Tensor, Option<&Tensor>, Pass) -> Tensor,
{
    fn denoise(&self, x: &Tensor, sigma: &Tensor, labels: Option<&Tensor>, pass: Pass) -> Tensor {
        self(x, sigma, labels, pass)
    }
}

/// Per-sample losses and what the statistics report.
pub struct LossOutput {
    /// Per-sample loss, shape [N], differentiable.
    pub per_sample: Tensor,
    /// The times `t` used.
    pub t: Vec<f64>,
    /// The times `r` used (0 for diffusion pretraining).
    pub r: Vec<f64>,
}

impl LossOutput {
    /// Mean of `r / t` over the batch (0 when empty).
    pub fn mean_r_over_t(&self) -> f64 {
        if self.t.is_empty() {
            return 0.0;
        }
        self.t.iter().zip(&self.r).map(|(t, r)| r / t).sum::<f64>() / self.t.len() as f64
    }
}

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

/// A `[N]` f32 tensor on `like`'s device from f64 values.
fn vec_tensor(values: &[f64], like: &Tensor) -> Tensor {
    Tensor::from_slice(values)
        .to_kind(Kind::Float)
        .to_device(like.device())
}

/// Broadcasts a `[N]` tensor against `[N, C, H, W]`.
fn per_sample(v: &Tensor) -> Tensor {
    v.view([-1, 1, 1, 1])
}

/// Per-sample squared L2 distance `sum over C,H,W of (a - b)^2`, shape [N].
pub fn per_sample_d2(a: &Tensor, b: &Tensor) -> Tensor {
    (a - b)
        .square()
        .flatten(1, -1)
        .sum_dim_intlist(-1, false, Kind::Float)
}

/// `sqrt(d2 + c^2) - c` for `c > 0`, else `sqrt(d2)`, elementwise (the reference's order of operations).
pub fn adaptive(d2: &Tensor, c: f64) -> Tensor {
    if c > 0.0 {
        (d2 + c * c).sqrt() - c
    } else {
        d2.sqrt()
    }
}

/// The teacher output with the reference's repairs: `nan_to_num` (NaN -> 0, +-inf -> largest finite), then
/// `x0` wherever `r == 0` (the boundary condition; `ln 0` makes those rows NaN).
pub fn repair_teacher(d_r: &Tensor, x0: &Tensor, r: &Tensor) -> Tensor {
    let d_r = d_r.nan_to_num(0.0, None, None);
    let mask = per_sample(&r.gt(0.0));
    d_r.where_self(&mask, x0)
}

/// The consistency pair step shared by ECT and iCT: student with gradients, teacher without (same masks),
/// repaired teacher, per-sample `d2`.
fn consistency_d2(
    net: &dyn Denoiser,
    x0: &Tensor,
    labels: Option<&Tensor>,
    t: &[f64],
    r: &[f64],
    eps: &Tensor,
) -> Tensor {
    let t_t = vec_tensor(t, x0);
    let r_t = vec_tensor(r, x0);
    let x_t = x0 + eps * per_sample(&t_t);
    net.normalize_weights();
    let d_t = net.denoise(&x_t, &t_t, labels, Pass::Student);
    let d_r = if r.iter().any(|&r| r > 0.0) {
        let x_r = x0 + eps * per_sample(&r_t);
        let raw = tch::no_grad(|| net.denoise(&x_r, &r_t, labels, Pass::Teacher));
        repair_teacher(&raw, x0, &r_t)
    } else {
        x0.shallow_clone()
    };
    per_sample_d2(&d_t, &d_r.detach())
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
    /// x0: [N, C, H, W] in [-1, 1]; t: N values; eps: like x0; output per_sample: [N].
    pub fn compute(
        &self,
        net: &dyn Denoiser,
        x0: &Tensor,
        labels: Option<&Tensor>,
        t: &[f64],
        stage: u32,
        eps: &Tensor,
    ) -> LossOutput {
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
    ) -> LossOutput {
        let d2 = consistency_d2(net, x0, labels, t, r, eps);
        let w: Vec<f64> = t
            .iter()
            .zip(r)
            .map(|(&t, &r)| self.weighting.weight(t, r, self.sigma_data))
            .collect();
        let per_sample = adaptive(&d2, self.c) * vec_tensor(&w, x0);
        LossOutput {
            per_sample,
            t: t.to_vec(),
            r: r.to_vec(),
        }
    }
}

/// EDM pretraining: `lambda(s) * sum over C,H,W of (D(x0 + s eps, s) - x0)^2`,
/// `lambda(s) = (s^2 + sd^2) / (s sd)^2`, at noise levels `sigma` drawn by the caller
/// (`exp(-1.2 + 1.2 z)`).
///
/// # Shapes
/// x0: [N, C, H, W]; sigma: N values; eps: like x0; output per_sample: [N].
pub fn edm_loss(
    net: &dyn Denoiser,
    x0: &Tensor,
    labels: Option<&Tensor>,
    sigma: &[f64],
    eps: &Tensor,
    sigma_data: f64,
) -> LossOutput {
    let s = vec_tensor(sigma, x0);
    let x = x0 + eps * per_sample(&s);
    net.normalize_weights();
    let d = net.denoise(&x, &s, labels, Pass::Train);
    let w: Vec<f64> = sigma
        .iter()
        .map(|&s| ect_schedule::weighting::edm_lambda(s, sigma_data))
        .collect();
    let per_sample = per_sample_d2(&d, x0) * vec_tensor(&w, x0);
    LossOutput {
        per_sample,
        t: sigma.to_vec(),
        r: vec![0.0; sigma.len()],
    }
}

/// iCT: consistency between adjacent Karras times `r = s_i < t = s_{i+1}` (indices drawn by the caller),
/// pseudo-Huber `sqrt(d2 + c^2) - c`, weight `1 / (t - r)`; teacher = same weights without gradient and
/// with the student's dropout masks.
///
/// # Shapes
/// x0: [N, C, H, W]; t, r: N values with 0 < r < t; eps: like x0; output per_sample: [N].
pub fn ict_loss(
    net: &dyn Denoiser,
    x0: &Tensor,
    labels: Option<&Tensor>,
    t: &[f64],
    r: &[f64],
    eps: &Tensor,
    c: f64,
) -> LossOutput {
    let d2 = consistency_d2(net, x0, labels, t, r, eps);
    let w: Vec<f64> = t.iter().zip(r).map(|(&t, &r)| 1.0 / (t - r)).collect();
    let per_sample = adaptive(&d2, c) * vec_tensor(&w, x0);
    LossOutput {
        per_sample,
        t: t.to_vec(),
        r: r.to_vec(),
    }
}
