//! Mixed precision: the forward passes run under autocast (weights, optimizer state and EMA stay
//! float32).
//!
//! - `precision = "fp16"` (CUDA): PyTorch's classic recipe: float16 autocast, the loss is multiplied by a
//!   scale before backward so small gradients do not flush to zero, gradients are divided by the scale
//!   before the step, and a step whose gradients overflowed is skipped while the scale backs off
//!   (`torch.cuda.amp.GradScaler`'s rule and defaults).
//! - `precision = "bf16"` (CUDA or CPU): bfloat16 autocast, which has float32's range, so no loss scaling.
//!   tch 0.24 can only switch autocast on and off (float16 on CUDA); the dtype is set through
//!   `ect_dist::context` (per thread: the forward runs on the thread that set it).

pub use ect_config::train::{LossScaleConfig, Precision};
use ect_dist::context::{with_autocast, AutocastDevice, AutocastDtype};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::error::{Result, TrainError};

/// The scale and its growth counter; saved in checkpoints so a resumed run scales as the original.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScalerState {
    /// Current loss scale.
    pub scale: f64,
    /// Consecutive steps without overflow since the last change.
    pub good_steps: u64,
}

/// Dynamic loss scaling.
#[derive(Debug, Clone)]
pub struct LossScaler {
    cfg: LossScaleConfig,
    state: ScalerState,
}

impl LossScaler {
    /// A scaler at its initial scale.
    pub fn new(cfg: &LossScaleConfig) -> Self {
        Self {
            cfg: cfg.clone(),
            state: ScalerState {
                scale: cfg.init,
                good_steps: 0,
            },
        }
    }

    /// A scaler continuing from a saved state.
    pub fn with_state(cfg: &LossScaleConfig, state: ScalerState) -> Self {
        Self {
            cfg: cfg.clone(),
            state,
        }
    }

    /// The state to save.
    pub fn state(&self) -> ScalerState {
        self.state
    }

    /// The factor the loss is multiplied by before backward.
    pub fn scale(&self) -> f64 {
        self.state.scale
    }

    /// Divides every defined gradient by the scale, in place, and reports whether all of them are
    /// finite (one read-back from the device for all gradients).
    pub fn unscale(&self, grads: &mut [Tensor]) -> bool {
        tch::no_grad(|| {
            let inv = 1.0 / self.state.scale;
            let mut flags = Vec::with_capacity(grads.len());
            for g in grads.iter_mut().filter(|g| g.defined()) {
                let _ = g.g_mul_scalar_(inv);
                flags.push(g.isfinite().all());
            }
            flags.is_empty() || Tensor::stack(&flags, 0).all().int64_value(&[]) != 0
        })
    }

    /// Adjusts the scale after a step: back off on overflow, grow after `growth_interval` good steps.
    /// Returns whether the step's update may be applied (`false` after an overflow).
    pub fn update(&mut self, finite: bool) -> bool {
        if finite {
            self.state.good_steps += 1;
            if self.state.good_steps >= self.cfg.growth_interval {
                self.state.scale *= self.cfg.growth_factor;
                self.state.good_steps = 0;
            }
        } else {
            self.state.scale *= self.cfg.backoff_factor;
            self.state.good_steps = 0;
        }
        finite
    }
}

/// Runs `f` under the autocast of `precision` on `device`'s type: CUDA float16 for `Fp16` (a no-op
/// without CUDA, as tch's `autocast`), bfloat16 for `Bf16`, plainly for `Fp32`. Outputs of autocast ops
/// are in the lower precision; see [`to_f32`].
pub fn forward_in<T>(precision: Precision, device: Device, f: impl FnOnce() -> T) -> Result<T> {
    match precision {
        Precision::Fp32 => Ok(f()),
        Precision::Fp16 => Ok(tch::autocast(true, f)),
        Precision::Bf16 => {
            let on = if device.is_cuda() {
                AutocastDevice::Cuda
            } else {
                AutocastDevice::Cpu
            };
            with_autocast(on, AutocastDtype::BFloat16, f)
                .map_err(|e| TrainError::external("bfloat16 autocast", e))
        }
    }
}

/// A float32 view of a loss computed under autocast (float16 sums overflow and lose precision).
pub fn to_f32(t: &Tensor) -> Tensor {
    if t.kind() == Kind::Float {
        t.shallow_clone()
    } else {
        t.to_kind(Kind::Float)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(interval: u64) -> LossScaleConfig {
        LossScaleConfig {
            growth_interval: interval,
            ..LossScaleConfig::default()
        }
    }

    #[test]
    fn scale_backs_off_on_overflow_and_grows_after_the_interval() {
        let mut s = LossScaler::new(&cfg(3));
        assert_eq!(s.scale(), 65536.0);
        assert!(!s.update(false));
        assert_eq!(s.scale(), 32768.0);
        assert!(s.update(true) && s.update(true));
        assert_eq!(s.scale(), 32768.0);
        assert!(s.update(true));
        assert_eq!((s.scale(), s.state().good_steps), (65536.0, 0));
        // An overflow resets the count of good steps.
        s.update(true);
        s.update(true);
        s.update(false);
        s.update(true);
        s.update(true);
        assert_eq!(s.scale(), 32768.0);
        let resumed = LossScaler::with_state(&cfg(3), s.state());
        assert_eq!(resumed.state(), s.state());
    }

    #[test]
    fn unscale_divides_and_detects_overflow() {
        let s = LossScaler::new(&LossScaleConfig {
            init: 4.0,
            ..LossScaleConfig::default()
        });
        let mut grads = vec![
            Tensor::from_slice(&[4.0f32, -8.0]),
            Tensor::new(), // a parameter without gradient
            Tensor::from_slice(&[2.0f32]),
        ];
        assert!(s.unscale(&mut grads));
        assert_eq!(Vec::<f32>::try_from(&grads[0]).unwrap(), [1.0, -2.0]);
        assert_eq!(Vec::<f32>::try_from(&grads[2]).unwrap(), [0.5]);
        let mut bad = vec![
            Tensor::from_slice(&[1.0f32]),
            Tensor::from_slice(&[f32::INFINITY]),
        ];
        assert!(!s.unscale(&mut bad));
        let mut nan = vec![Tensor::from_slice(&[f32::NAN, 1.0])];
        assert!(!s.unscale(&mut nan));
    }

    #[test]
    fn bf16_autocast_runs_linear_in_bfloat16_on_the_cpu() {
        let x = Tensor::ones([2, 3], (Kind::Float, Device::Cpu));
        let w = Tensor::ones([4, 3], (Kind::Float, Device::Cpu));
        let y = forward_in(Precision::Bf16, Device::Cpu, || {
            x.linear(&w, None::<Tensor>)
        })
        .unwrap();
        assert_eq!(y.kind(), Kind::BFloat16);
        assert_eq!(to_f32(&y).kind(), Kind::Float);
        // Outside the region, float32 again.
        assert_eq!(x.linear(&w, None::<Tensor>).kind(), Kind::Float);
    }

    #[test]
    fn bad_factors_are_named() {
        let check = |c: LossScaleConfig| match c.validate().unwrap_err() {
            ect_config::ConfigError::Invalid { field, .. } => field,
            other => panic!("{other}"),
        };
        assert_eq!(
            check(LossScaleConfig {
                backoff_factor: 1.5,
                ..LossScaleConfig::default()
            }),
            "loss_scale.backoff_factor"
        );
        assert_eq!(
            check(LossScaleConfig {
                growth_factor: 1.0,
                ..LossScaleConfig::default()
            }),
            "loss_scale.growth_factor"
        );
        assert_eq!(
            check(LossScaleConfig {
                init: 0.0,
                ..LossScaleConfig::default()
            }),
            "loss_scale.init"
        );
        assert!(LossScaleConfig::default().validate().is_ok());
    }

    #[test]
    fn fp32_forward_is_plain_and_precision_parses() {
        assert_eq!(forward_in(Precision::Fp32, Device::Cpu, || 3).unwrap(), 3);
        #[derive(Deserialize)]
        struct P {
            p: Precision,
        }
        let p: P = toml::from_str("p = \"fp16\"").unwrap();
        assert_eq!(p.p, Precision::Fp16);
        let p: P = toml::from_str("p = \"bf16\"").unwrap();
        assert_eq!(p.p, Precision::Bf16);
        assert!(toml::from_str::<P>("p = \"fp8\"").is_err());
    }
}
