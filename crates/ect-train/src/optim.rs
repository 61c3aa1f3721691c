//! Adam and RAdam over the trainable variables of a `VarStore`, written by hand because tch has neither
//! RAdam nor optimizer-state save/load.
//!
//! The update rules follow `torch.optim.Adam` and `torch.optim.RAdam` (single-tensor path, no weight decay)
//! operation for operation, so float32 results agree with PyTorch to rounding; the golden test
//! `tests/it/optim_golden.rs` checks 20 steps of each against numbers from torch 2.11.0. The update runs
//! on flat buffers ([`crate::flat`]); saved state is keyed by parameter name so that it survives a
//! checkpoint round trip independently of variable order and of the layout.

use std::collections::BTreeMap;
use std::path::Path;

pub use ect_config::train::{OptimizerConfig, OptimizerKind};
use tch::{nn::VarStore, Kind, Tensor};

use crate::error::{Result, TrainError};
use crate::flat::{FlatGroup, FlatParams};

/// Adam or RAdam over named trainable variables, on flat buffers ([`crate::flat`]): the parameters,
/// their gradients and both moment estimates each live in one tensor per (device, dtype), so a step is a
/// handful of tensor ops whatever the number of parameters. Every parameter is updated at every step; a
/// parameter that got no gradient in a step counts as gradient zero (as with
/// `zero_grad(set_to_none=False)` in PyTorch).
pub struct Optimizer {
    kind: OptimizerKind,
    beta1: f64,
    beta2: f64,
    eps: f64,
    flat: FlatParams,
    /// First moments, one flat buffer per group.
    exp_avg: Vec<Tensor>,
    /// Second moments, one flat buffer per group.
    exp_avg_sq: Vec<Tensor>,
    step: u64,
}

/// Elements per slice of a flat buffer that one round of the update's ops covers. On a GPU the whole
/// buffer at once (a handful of kernel launches per step); on the CPU slices of 1 MiB of float32, so that
/// the update's temporaries stay in cache: over whole 224 MB buffers each of the ~10 ops streams through
/// memory and the step was measured 2.4x slower than per-tensor loops (crate README, `bench_flat`).
fn chunk_len(device: tch::Device, numel: i64) -> i64 {
    if device.is_cuda() {
        numel.max(1)
    } else {
        1 << 18
    }
}

/// `torch.optim.Adam`/`RAdam`'s single-tensor update of `p` from `grad`, op for op.
#[allow(clippy::too_many_arguments)]
fn update(
    kind: OptimizerKind,
    (beta1, beta2, eps, lr, step): (f64, f64, f64, f64, f64),
    (bias_correction1, bias_correction2): (f64, f64),
    p: &mut Tensor,
    grad: &Tensor,
    exp_avg: &mut Tensor,
    exp_avg_sq: &mut Tensor,
) {
    let _ = exp_avg.lerp_(grad, 1.0 - beta1);
    // addcmul_(grad, grad, value = 1 - beta2) evaluates `value * g * g` left to right.
    let _ = exp_avg_sq.g_mul_scalar_(beta2);
    let _ = exp_avg_sq.g_add_(&(grad * (1.0 - beta2) * grad));
    match kind {
        OptimizerKind::Adam => {
            let step_size = lr / bias_correction1;
            let denom = exp_avg_sq.sqrt() / bias_correction2.sqrt() + eps;
            let _ = p.g_add_(&(&*exp_avg * (-step_size) / denom));
        }
        OptimizerKind::Radam => {
            let bias_corrected = &*exp_avg / bias_correction1;
            let rho_inf = 2.0 / (1.0 - beta2) - 1.0;
            let rho_t = rho_inf - 2.0 * step * beta2.powf(step) / bias_correction2;
            if rho_t > 5.0 {
                let rect = ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf
                    / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
                    .sqrt();
                let adaptive = (exp_avg_sq.sqrt() + eps).reciprocal() * bias_correction2.sqrt();
                let _ = p.g_sub_(&(bias_corrected * lr * adaptive * rect));
            } else {
                let _ = p.g_sub_(&(bias_corrected * lr));
            }
        }
    }
}

impl Optimizer {
    /// An optimizer over the variables of `vs` that require gradients (buffers are left alone), which
    /// it moves into flat buffers ([`FlatParams::new`]).
    pub fn new(vs: &VarStore, cfg: &OptimizerConfig) -> Result<Self> {
        let mut params: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        Self::from_params(params, cfg)
    }

    /// An optimizer over explicitly named tensors (each must be a floating-point leaf that requires
    /// gradients); they are moved into flat buffers, keeping their values and gradients.
    pub fn from_params(params: Vec<(String, Tensor)>, cfg: &OptimizerConfig) -> Result<Self> {
        let flat = FlatParams::new(params)?;
        let zeros = |flat: &FlatParams| -> Vec<Tensor> {
            flat.groups()
                .iter()
                .map(|g| g.params.zeros_like())
                .collect()
        };
        Ok(Self {
            kind: cfg.kind,
            beta1: cfg.beta1,
            beta2: cfg.beta2,
            eps: cfg.eps,
            exp_avg: zeros(&flat),
            exp_avg_sq: zeros(&flat),
            flat,
            step: 0,
        })
    }

    /// How many updates have been applied.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// The parameters, by name.
    pub fn params(&self) -> &[(String, Tensor)] {
        self.flat.params()
    }

    /// The flat parameter and gradient buffers.
    pub fn flat(&self) -> &FlatParams {
        &self.flat
    }

    /// The flat gradient buffers, one per (device, dtype): in-place changes reach every gradient.
    pub fn grads(&self) -> Vec<Tensor> {
        self.flat.flat_grads()
    }

    /// Every buffer that must be identical on all ranks of a data-parallel run: the parameters and both
    /// moment estimates (shallow clones; a broadcast into them updates the optimizer).
    pub fn replicated_buffers(&self) -> Vec<Tensor> {
        let mut out = self.flat.flat_params();
        out.extend(self.exp_avg.iter().map(Tensor::shallow_clone));
        out.extend(self.exp_avg_sq.iter().map(Tensor::shallow_clone));
        out
    }

    /// Sets every gradient to zero (gradients accumulate over micro-batches between calls).
    pub fn zero_grad(&mut self) {
        self.flat.zero_grads();
    }

    /// Replaces NaN gradients by 0 and +-inf by +-1e5 (the reference's `nan_to_num` before the step), then
    /// clips the global L2 norm to `clip` when given (as `torch.nn.utils.clip_grad_norm_`). Returns the
    /// global norm before clipping when clipping is on; without clipping nothing is read back from the
    /// device, so a GPU step never waits here.
    pub fn sanitize_grads(&mut self, clip: Option<f64>) -> Option<f64> {
        tch::no_grad(|| {
            let mut grads = self.flat.flat_grads();
            for g in &mut grads {
                let _ = g.nan_to_num_(0.0, 1e5, -1e5);
            }
            let max_norm = clip?;
            if grads.is_empty() {
                return Some(0.0);
            }
            let norms: Vec<Tensor> = grads
                .iter()
                .map(|g| g.to_kind(Kind::Double).square().sum(Kind::Double))
                .collect();
            let norm = Tensor::stack(&norms, 0)
                .sum(Kind::Double)
                .sqrt()
                .double_value(&[]);
            let coef = max_norm / (norm + 1e-6);
            if coef < 1.0 {
                for g in &mut grads {
                    let _ = g.g_mul_scalar_(coef);
                }
            }
            Some(norm)
        })
    }

    /// Applies one update with learning rate `lr` from the current gradients.
    pub fn step(&mut self, lr: f64) {
        self.step += 1;
        let step = self.step as f64;
        let (beta1, beta2, eps) = (self.beta1, self.beta2, self.eps);
        let bias_correction1 = 1.0 - beta1.powf(step);
        let bias_correction2 = 1.0 - beta2.powf(step);
        let kind = self.kind;
        tch::no_grad(|| {
            for (i, g) in self.flat.groups().iter().enumerate() {
                let chunk = chunk_len(g.device, g.params.numel() as i64);
                let mut start = 0;
                while start < g.params.numel() as i64 {
                    let n = chunk.min(g.params.numel() as i64 - start);
                    let part = |t: &Tensor| t.narrow(0, start, n);
                    update(
                        kind,
                        (beta1, beta2, eps, lr, step),
                        (bias_correction1, bias_correction2),
                        &mut part(&g.params),
                        &part(&g.grads),
                        &mut part(&self.exp_avg[i]),
                        &mut part(&self.exp_avg_sq[i]),
                    );
                    start += n;
                }
            }
        });
    }

    /// Each parameter's name and its views of the two moment buffers.
    fn named_state(&self) -> Vec<(&str, Tensor, Tensor)> {
        let mut out = Vec::with_capacity(self.flat.params().len());
        for (i, g) in self.flat.groups().iter().enumerate() {
            for m in &g.members {
                out.push((
                    self.flat.params()[m.index].0.as_str(),
                    FlatGroup::view(&self.exp_avg[i], m),
                    FlatGroup::view(&self.exp_avg_sq[i], m),
                ));
            }
        }
        out.sort_by(|a, b| a.0.cmp(b.0));
        out
    }

    /// The state as named tensors (`exp_avg.<param>`, `exp_avg_sq.<param>`) plus the step count.
    pub fn state_tensors(&self) -> (Vec<(String, Tensor)>, u64) {
        let mut out = Vec::with_capacity(2 * self.flat.params().len());
        for (name, exp_avg, exp_avg_sq) in self.named_state() {
            out.push((format!("exp_avg.{name}"), exp_avg));
            out.push((format!("exp_avg_sq.{name}"), exp_avg_sq));
        }
        (out, self.step)
    }

    /// Writes the state to a safetensors file (the step count goes in the checkpoint's metadata).
    pub fn save(&self, path: &Path) -> Result<()> {
        let (tensors, _) = self.state_tensors();
        Tensor::write_safetensors(&tensors, path)?;
        Ok(())
    }

    /// Restores the state from a file written by [`Optimizer::save`] and the saved step count. Every
    /// parameter must be present with its shape.
    pub fn load(&mut self, path: &Path, step: u64) -> Result<()> {
        let mut loaded: BTreeMap<String, Tensor> =
            Tensor::read_safetensors(path)?.into_iter().collect();
        let bad = |message: String| TrainError::Checkpoint {
            path: path.to_path_buf(),
            message,
        };
        for (name, exp_avg, exp_avg_sq) in self.named_state() {
            for (key, mut dst) in [
                (format!("exp_avg.{name}"), exp_avg),
                (format!("exp_avg_sq.{name}"), exp_avg_sq),
            ] {
                let src = loaded
                    .remove(&key)
                    .ok_or_else(|| bad(format!("optimizer state lacks `{key}`")))?;
                if src.size() != dst.size() {
                    return Err(bad(format!(
                        "`{key}` has shape {:?}, parameter has {:?}",
                        src.size(),
                        dst.size()
                    )));
                }
                tch::no_grad(|| dst.f_copy_(&src))?;
            }
        }
        if let Some(extra) = loaded.keys().next() {
            return Err(bad(format!(
                "optimizer state has unexpected entry `{extra}`"
            )));
        }
        self.step = step;
        Ok(())
    }
}
