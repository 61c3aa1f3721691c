//! The network as the objectives and samplers see it: a preconditioned denoiser `D(x; sigma)` evaluated
//! for a purpose ([`Pass`]), which decides the coefficient mode and what dropout does.

use tch::Tensor;

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
    /// x: [N, C, H, W] f32; sigma: `[N]` f32; labels: `[N, label_dim]` one-hot or `None`; output like `x`.
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
