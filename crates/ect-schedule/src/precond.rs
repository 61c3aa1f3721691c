//! Preconditioning coefficients: `f(x, s) = c_skip(s) x + c_out(s) F(c_in(s) x, c_noise(s))`.
//!
//! docs/method.md §2; EDM paper (Karras et al. 2022) table 1; ECT's `ECMPrecond` (CIFAR-10 code) and
//! EDM2's `Precond` (ImageNet code). ECM in evaluation mode shifts `c_skip`/`c_out` by `sigma_min`
//! so that `f(x, sigma_min) = x` exactly; in training mode, and for EDM and EDM2 always, the EDM
//! coefficients apply. The formulas keep the reference's evaluation order.

use serde::{Deserialize, Serialize};

use crate::error::{ensure, Result};

/// ECM's default `sigma_min` (the evaluation-mode boundary).
pub const ECM_SIGMA_MIN: f64 = 0.003;

/// The four scalars of the preconditioning at one noise level.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Coefficients {
    /// Weight of the skip connection `x`.
    pub c_skip: f64,
    /// Weight of the network output.
    pub c_out: f64,
    /// Input scale.
    pub c_in: f64,
    /// Noise conditioning fed to the network.
    pub c_noise: f64,
}

impl Coefficients {
    /// `c_skip x + c_out f` for one element (`f` is the raw network output).
    pub fn combine(&self, x: f64, f: f64) -> f64 {
        self.c_skip * x + self.c_out * f
    }
}

/// Training or evaluation behaviour (only ECM distinguishes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Training mode (EDM coefficients).
    #[default]
    #[serde(alias = "Train")]
    Train,
    /// Evaluation mode (ECM: `sigma_min`-shifted `c_skip` and `c_out`).
    #[serde(alias = "Eval")]
    Eval,
}

/// ECM training mode: EDM's coefficients.
pub fn ecm_train(sigma: f64, sigma_data: f64) -> Coefficients {
    edm(sigma, sigma_data)
}

/// ECM evaluation mode: `c_skip = sd^2/((s - smin)^2 + sd^2)`,
/// `c_out = (s - smin) sd / sqrt(s^2 + sd^2)`; `c_in`, `c_noise` as in EDM.
pub fn ecm_eval(sigma: f64, sigma_data: f64, sigma_min: f64) -> Coefficients {
    let sd2 = sigma_data * sigma_data;
    let shifted = sigma - sigma_min;
    Coefficients {
        c_skip: sd2 / (shifted * shifted + sd2),
        c_out: shifted * sigma_data / (sigma * sigma + sd2).sqrt(),
        c_in: c_in(sigma, sigma_data),
        c_noise: c_noise(sigma),
    }
}

/// EDM: `c_skip = sd^2/(s^2+sd^2)`, `c_out = s sd/sqrt(s^2+sd^2)`, `c_in = 1/sqrt(sd^2+s^2)`,
/// `c_noise = ln(s)/4`.
pub fn edm(sigma: f64, sigma_data: f64) -> Coefficients {
    let sd2 = sigma_data * sigma_data;
    let s2 = sigma * sigma;
    Coefficients {
        c_skip: sd2 / (s2 + sd2),
        c_out: sigma * sigma_data / (s2 + sd2).sqrt(),
        c_in: c_in(sigma, sigma_data),
        c_noise: c_noise(sigma),
    }
}

/// EDM2 (ImageNet ECT network): the EDM coefficients, in both modes.
pub fn edm2(sigma: f64, sigma_data: f64) -> Coefficients {
    edm(sigma, sigma_data)
}

fn c_in(sigma: f64, sigma_data: f64) -> f64 {
    1.0 / (sigma_data * sigma_data + sigma * sigma).sqrt()
}

fn c_noise(sigma: f64) -> f64 {
    sigma.ln() / 4.0
}

/// Which preconditioning a network uses, as a config value (tag `kind`:
/// `{"kind": "ecm", "sigma_data": 0.5, "sigma_min": 0.003}`, `{"kind": "edm", ...}`,
/// `{"kind": "edm2", ...}`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Preconditioning {
    /// ECT's `ECMPrecond` (CIFAR-10).
    #[serde(alias = "Ecm")]
    Ecm {
        /// Data standard deviation.
        sigma_data: f64,
        /// Evaluation-mode boundary where `f(x, sigma_min) = x`.
        sigma_min: f64,
    },
    /// EDM's `EDMPrecond`.
    #[serde(alias = "Edm")]
    Edm {
        /// Data standard deviation.
        sigma_data: f64,
    },
    /// EDM2's `Precond`.
    #[serde(alias = "Edm2")]
    Edm2 {
        /// Data standard deviation.
        sigma_data: f64,
    },
}

impl Default for Preconditioning {
    /// ECM with `sigma_data = 0.5`, `sigma_min = 0.003`.
    fn default() -> Self {
        Self::Ecm {
            sigma_data: crate::weighting::SIGMA_DATA,
            sigma_min: ECM_SIGMA_MIN,
        }
    }
}

impl Preconditioning {
    /// The coefficients at `sigma` in `mode`.
    pub fn coefficients(&self, sigma: f64, mode: Mode) -> Coefficients {
        match (*self, mode) {
            (
                Self::Ecm {
                    sigma_data,
                    sigma_min,
                },
                Mode::Eval,
            ) => ecm_eval(sigma, sigma_data, sigma_min),
            (Self::Ecm { sigma_data, .. }, Mode::Train) => ecm_train(sigma, sigma_data),
            (Self::Edm { sigma_data }, _) => edm(sigma, sigma_data),
            (Self::Edm2 { sigma_data }, _) => edm2(sigma, sigma_data),
        }
    }

    /// The data standard deviation.
    pub fn sigma_data(&self) -> f64 {
        match *self {
            Self::Ecm { sigma_data, .. } | Self::Edm { sigma_data } | Self::Edm2 { sigma_data } => {
                sigma_data
            }
        }
    }

    /// Checks the fields (`sigma_data > 0`, `sigma_min >= 0`, all finite).
    pub fn validate(&self) -> Result<()> {
        crate::weighting::validate_sigma_data(self.sigma_data())?;
        if let Self::Ecm { sigma_min, .. } = *self {
            ensure(
                sigma_min.is_finite() && sigma_min >= 0.0,
                "sigma_min",
                sigma_min,
                "finite and >= 0",
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eval_mode_is_identity_at_sigma_min() {
        let c = ecm_eval(0.003, 0.5, 0.003);
        assert_eq!((c.c_skip, c.c_out), (1.0, 0.0));
        assert_eq!(c.combine(0.7, 123.0), 0.7);
    }

    #[test]
    fn edm_at_sigma_data() {
        let c = edm(0.5, 0.5);
        assert_eq!(c.c_skip, 0.5);
        assert!((c.c_out - 0.5_f64.sqrt() / 2.0).abs() < 1e-16);
        assert!((c.c_in - 2.0_f64.sqrt()).abs() < 1e-15);
    }

    #[test]
    fn config_dispatch_and_serde() {
        let p = Preconditioning::default();
        assert_eq!(p.coefficients(1.0, Mode::Train), edm(1.0, 0.5));
        assert_eq!(p.coefficients(1.0, Mode::Eval), ecm_eval(1.0, 0.5, 0.003));
        let e2 = Preconditioning::Edm2 { sigma_data: 0.5 };
        assert_eq!(e2.coefficients(1.0, Mode::Eval), edm(1.0, 0.5));
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, r#"{"kind":"ecm","sigma_data":0.5,"sigma_min":0.003}"#);
        assert_eq!(serde_json::from_str::<Preconditioning>(&json).unwrap(), p);
        assert!(Preconditioning::Edm { sigma_data: -1.0 }
            .validate()
            .is_err());
    }
}
