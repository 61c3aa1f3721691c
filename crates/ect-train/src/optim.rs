//! Adam and RAdam over the trainable variables of a `VarStore`, written by hand because tch has neither
//! RAdam nor optimizer-state save/load.
//!
//! The update rules follow `torch.optim.Adam` and `torch.optim.RAdam` (single-tensor path, no weight decay)
//! operation for operation, so float32 results agree with PyTorch to rounding; the golden test
//! `tests/optim_golden.rs` checks 20 steps of each against numbers from torch 2.11.0. State is keyed by
//! parameter name so that it survives a checkpoint round trip independently of variable order.

use std::collections::BTreeMap;
use std::path::Path;

pub use ect_config::train::{OptimizerConfig, OptimizerKind};
use tch::{nn::VarStore, Kind, Tensor};

use crate::error::{Result, TrainError};

/// Per-parameter moment estimates.
struct Moments {
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

/// Adam or RAdam over named trainable variables.
pub struct Optimizer {
    kind: OptimizerKind,
    beta1: f64,
    beta2: f64,
    eps: f64,
    params: Vec<(String, Tensor)>,
    state: BTreeMap<String, Moments>,
    step: u64,
}

impl Optimizer {
    /// An optimizer over the variables of `vs` that require gradients (buffers are left alone).
    pub fn new(vs: &VarStore, cfg: &OptimizerConfig) -> Self {
        let mut params: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        Self::from_params(params, cfg)
    }

    /// An optimizer over explicitly named tensors (each must require gradients).
    pub fn from_params(params: Vec<(String, Tensor)>, cfg: &OptimizerConfig) -> Self {
        let state = params
            .iter()
            .map(|(name, p)| {
                let m = Moments {
                    exp_avg: p.zeros_like(),
                    exp_avg_sq: p.zeros_like(),
                };
                (name.clone(), m)
            })
            .collect();
        Self {
            kind: cfg.kind,
            beta1: cfg.beta1,
            beta2: cfg.beta2,
            eps: cfg.eps,
            params,
            state,
            step: 0,
        }
    }

    /// How many updates have been applied.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// The parameters, by name.
    pub fn params(&self) -> &[(String, Tensor)] {
        &self.params
    }

    /// The gradients of the parameters (undefined tensors for parameters without one), sharing storage
    /// with them: in-place changes reach the optimizer.
    pub fn grads(&self) -> Vec<Tensor> {
        self.params.iter().map(|(_, p)| p.grad()).collect()
    }

    /// Sets every gradient to zero (gradients accumulate over micro-batches between calls).
    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            p.zero_grad();
        }
    }

    /// Replaces NaN gradients by 0 and +-inf by +-1e5 (the reference's `nan_to_num` before the step), then
    /// clips the global L2 norm to `clip` when given (as `torch.nn.utils.clip_grad_norm_`). Returns the
    /// global norm before clipping when clipping is on; without clipping nothing is read back from the
    /// device, so a GPU step never waits here.
    pub fn sanitize_grads(&mut self, clip: Option<f64>) -> Option<f64> {
        tch::no_grad(|| {
            let mut grads = Vec::with_capacity(self.params.len());
            for (_, p) in &self.params {
                let mut g = p.grad();
                if g.defined() {
                    let _ = g.nan_to_num_(0.0, 1e5, -1e5);
                    grads.push(g);
                }
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

    /// Applies one update with learning rate `lr` from the current gradients (parameters without a
    /// gradient are skipped, as in PyTorch).
    pub fn step(&mut self, lr: f64) {
        self.step += 1;
        let step = self.step as f64;
        let (beta1, beta2, eps) = (self.beta1, self.beta2, self.eps);
        let bias_correction1 = 1.0 - beta1.powf(step);
        let bias_correction2 = 1.0 - beta2.powf(step);
        tch::no_grad(|| {
            for (name, p) in &mut self.params {
                let grad = p.grad();
                if !grad.defined() {
                    continue;
                }
                let m = self
                    .state
                    .get_mut(name)
                    .expect("state exists for every parameter");
                let _ = m.exp_avg.lerp_(&grad, 1.0 - beta1);
                // addcmul_(grad, grad, value = 1 - beta2) evaluates `value * g * g` left to right.
                let _ = m.exp_avg_sq.g_mul_scalar_(beta2);
                let _ = m.exp_avg_sq.g_add_(&(&grad * (1.0 - beta2) * &grad));
                match self.kind {
                    OptimizerKind::Adam => {
                        let step_size = lr / bias_correction1;
                        let denom = m.exp_avg_sq.sqrt() / bias_correction2.sqrt() + eps;
                        let _ = p.g_add_(&(&m.exp_avg * (-step_size) / denom));
                    }
                    OptimizerKind::Radam => {
                        let bias_corrected = &m.exp_avg / bias_correction1;
                        let rho_inf = 2.0 / (1.0 - beta2) - 1.0;
                        let rho_t = rho_inf - 2.0 * step * beta2.powf(step) / bias_correction2;
                        if rho_t > 5.0 {
                            let rect = ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf
                                / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
                                .sqrt();
                            let adaptive =
                                (m.exp_avg_sq.sqrt() + eps).reciprocal() * bias_correction2.sqrt();
                            let _ = p.g_sub_(&(bias_corrected * lr * adaptive * rect));
                        } else {
                            let _ = p.g_sub_(&(bias_corrected * lr));
                        }
                    }
                }
            }
        });
    }

    /// The state as named tensors (`exp_avg.<param>`, `exp_avg_sq.<param>`) plus the step count.
    pub fn state_tensors(&self) -> (Vec<(String, Tensor)>, u64) {
        let mut out = Vec::with_capacity(2 * self.state.len());
        for (name, m) in &self.state {
            out.push((format!("exp_avg.{name}"), m.exp_avg.shallow_clone()));
            out.push((format!("exp_avg_sq.{name}"), m.exp_avg_sq.shallow_clone()));
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
        for (name, p) in &self.params {
            let m = self
                .state
                .get_mut(name)
                .expect("state exists for every parameter");
            for (key, dst) in [
                (format!("exp_avg.{name}"), &mut m.exp_avg),
                (format!("exp_avg_sq.{name}"), &mut m.exp_avg_sq),
            ] {
                let src = loaded
                    .remove(&key)
                    .ok_or_else(|| bad(format!("optimizer state lacks `{key}`")))?;
                if src.size() != p.size() {
                    return Err(bad(format!(
                        "`{key}` has shape {:?}, parameter has {:?}",
                        src.size(),
                        p.size()
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
