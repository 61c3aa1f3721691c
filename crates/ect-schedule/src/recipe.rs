//! The ECT loss schedule as one config value, with the reference recipes as presets.
//!
//! docs/method.md §3, §4 and §6 (recipe table). Bundles what decides `t`, `r` and the per-sample
//! weight at an iteration; the tensor work (the two network passes and `d2`) belongs to the
//! training crate. Presets follow the authors' launch scripts (`run_ecm.sh`, `run_ecm_1hour.sh`,
//! `run_imgnet_ecm.sh`) and their `ECMLoss` defaults.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::mapping::{validate_q, Mapping};
use crate::noise::LogNormal;
use crate::stage::StageSchedule;
use crate::weighting::{adaptive_loss, validate_c, validate_sigma_data, Weighting, SIGMA_DATA};

/// Everything that fixes `t`, `r(t)` and the per-sample ECT loss weight at an iteration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EctLossConfig {
    /// Distribution of `t`.
    pub noise: LogNormal,
    /// The mapping function `t -> r`.
    pub mapping: Mapping,
    /// Stage base `q` (`dt / t` shrinks by `q` per stage).
    pub q: f64,
    /// When the stage advances.
    pub stages: StageSchedule,
    /// Timestep weighting.
    pub weighting: Weighting,
    /// Pseudo-Huber constant (`0`: plain L2 norm).
    pub c: f64,
    /// Data standard deviation (for `snrpk`/`edm_lambda`).
    pub sigma_data: f64,
}

impl Default for EctLossConfig {
    /// The CIFAR-10 recipe.
    fn default() -> Self {
        Self::cifar10()
    }
}

impl EctLossConfig {
    /// CIFAR-10 (`run_ecm.sh`): lognormal(-1.1, 2.0), sigmoid(8, 1), `q = 2`, a stage every 25,000
    /// iterations (`--tick=12.8 --double=250 --batch=128`), `1/(t-r)`, `c = 0`.
    pub fn cifar10() -> Self {
        Self {
            noise: LogNormal::ECT_CIFAR,
            mapping: Mapping::SIGMOID_DEFAULT,
            q: 2.0,
            stages: StageSchedule {
                iters_per_stage: Some(25_000),
            },
            weighting: Weighting::InvDt,
            c: 0.0,
            sigma_data: SIGMA_DATA,
        }
    }

    /// CIFAR-10 "1 hour" (`run_ecm_1hour.sh`): as [`cifar10`](Self::cifar10) with `q = 256` and one
    /// stage (`--double 10000` never triggers within the run).
    pub fn cifar10_1hour() -> Self {
        Self {
            q: 256.0,
            stages: StageSchedule::SINGLE,
            ..Self::cifar10()
        }
    }

    /// ImageNet 64 (`run_imgnet_ecm.sh`, `ECMLoss` defaults): lognormal(-0.8, 1.6), sigmoid(8, 1),
    /// `q = 4`, a stage every 25,000 iterations (`--tick=6.4 --double=500 --batch=128`), snrpk,
    /// `c = 0.06`.
    pub fn imagenet64() -> Self {
        Self {
            noise: LogNormal::ECT_IMAGENET,
            mapping: Mapping::SIGMOID_DEFAULT,
            q: 4.0,
            stages: StageSchedule {
                iters_per_stage: Some(25_000),
            },
            weighting: Weighting::Snrpk,
            c: 0.06,
            sigma_data: SIGMA_DATA,
        }
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        self.noise.validate()?;
        self.mapping.validate()?;
        validate_q(self.q)?;
        validate_c(self.c)?;
        validate_sigma_data(self.sigma_data)
    }

    /// The stage at the step with 0-based index `iter`.
    pub fn stage_at(&self, iter: u64) -> u32 {
        self.stages.stage_at(iter)
    }

    /// `r(t)` at the step with 0-based index `iter`.
    pub fn r(&self, t: f64, iter: u64) -> f64 {
        self.mapping.r(t, self.stage_at(iter), self.q)
    }

    /// Draws `(t, r)` for one sample at iteration `iter`.
    pub fn sample_pair<R: Rng + ?Sized>(&self, rng: &mut R, iter: u64) -> (f64, f64) {
        let t = self.noise.sample(rng);
        (t, self.r(t, iter))
    }

    /// The per-sample loss from the squared distance `d2` between `f(x_t, t)` and `f(x_r, r)`:
    /// `adaptive_loss(d2, c) * w(t, r)`.
    pub fn sample_loss(&self, d2: f64, t: f64, r: f64) -> f64 {
        adaptive_loss(d2, self.c) * self.weighting.weight(t, r, self.sigma_data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::TickSchedule;

    #[test]
    fn presets_match_the_launch_scripts() {
        let cifar = TickSchedule::new(12.8, 250, 128).unwrap();
        assert_eq!(
            EctLossConfig::cifar10().stages,
            cifar.to_stage_schedule().unwrap()
        );
        let imagenet = TickSchedule::new(6.4, 500, 128).unwrap();
        assert_eq!(
            EctLossConfig::imagenet64().stages,
            imagenet.to_stage_schedule().unwrap()
        );
        for p in [
            EctLossConfig::cifar10(),
            EctLossConfig::cifar10_1hour(),
            EctLossConfig::imagenet64(),
        ] {
            p.validate().unwrap();
        }
        assert_eq!(EctLossConfig::cifar10_1hour().stage_at(10_000_000), 0);
    }

    #[test]
    fn serde_round_trip_and_partial_configs() {
        let p = EctLossConfig::imagenet64();
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<EctLossConfig>(&json).unwrap(), p);
        // Missing fields take the CIFAR-10 defaults.
        let q: EctLossConfig = serde_json::from_str(r#"{"q": 256.0}"#).unwrap();
        assert_eq!(q.q, 256.0);
        assert_eq!(q.weighting, Weighting::InvDt);
        let bad: EctLossConfig = serde_json::from_str(r#"{"q": 1.0}"#).unwrap();
        assert!(bad.validate().unwrap_err().to_string().contains("`q`"));
        assert!(serde_json::from_str::<EctLossConfig>(r#"{"qq": 2.0}"#).is_err());
    }

    #[test]
    fn pair_and_loss() {
        let p = EctLossConfig::cifar10();
        let mut rng = crate::noise::seeded_rng(11);
        for iter in [0, 30_000, 1_000_000] {
            let (t, r) = p.sample_pair(&mut rng, iter);
            assert!(t > 0.0 && r >= 0.0 && r < t, "t {t} r {r}");
        }
        // d2 = 0.37, t = 2, r = 1.5: sqrt(0.37) / 0.5.
        assert!((p.sample_loss(0.37, 2.0, 1.5) - 0.37_f64.sqrt() * 2.0).abs() < 1e-15);
    }
}
