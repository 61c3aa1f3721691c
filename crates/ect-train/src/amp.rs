//! Mixed precision on CUDA: float16 autocast with dynamic loss scaling (`precision = "fp16"`).
//!
//! bfloat16 autocast would need no loss scaling, but libtorch's C API as exposed by tch 0.24 only turns
//! CUDA autocast on and off (`at::autocast::set_enabled`), whose dtype is float16; the dtype setter is not
//! reachable. So mixed precision here is PyTorch's classic recipe: the forward passes run under float16
//! autocast (weights, optimizer state and EMA stay float32), the loss is multiplied by a scale before
//! backward so small gradients do not flush to zero, gradients are divided by the scale before the step,
//! and a step whose gradients overflowed is skipped while the scale backs off
//! (`torch.cuda.amp.GradScaler`'s rule and defaults).

pub use ect_config::train::{LossScaleConfig, Precision};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

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

/// Runs `f` under CUDA float16 autocast when `precision` is `Fp16` (a no-op without CUDA, as tch's
/// `autocast`), plainly otherwise; the result is returned in float32.
pub fn forward_in<T>(precision: Precision, f: impl FnOnce() -> T) -> T {
    match precision {
        Precision::Fp32 => f(),
        Precision::Fp16 => tch::autocast(true, f),
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
        assert_eq!(forward_in(Precision::Fp32, || 3), 3);
        #[derive(Deserialize)]
        struct P {
            p: Precision,
        }
        let p: P = toml::from_str("p = \"fp16\"").unwrap();
        assert_eq!(p.p, Precision::Fp16);
        assert!(toml::from_str::<P>("p = \"bf16\"").is_err());
    }
}
