//! The mapping function `t -> r`: how far behind `t` the consistency condition's second point lies.
//!
//! docs/method.md §4; paper "Consistency Models Made Easy", section 3 ("mapping function" and
//! "dt schedule"). `r = max(0, t (1 - n(t) / q^(s+1)))` with stage index `s = 0, 1, ...`:
//! `n(t) = 1` (`const`) or `n(t) = 1 + k sigmoid(-b t)` (`sigmoid`, the default with `k = 8, b = 1`).
//! The reference code (`ECMLoss.t_to_r_*`) uses the exponent `s + 1`; the paper's stage `a = 0`
//! (pure diffusion) is therefore never run. The evaluation order here follows that code.

use serde::{Deserialize, Serialize};

use crate::error::{ensure, Result};

/// Which `n(t)` the mapping function uses. Serialized with the tag `kind`
/// (`{"kind": "sigmoid", "k": 8.0, "b": 1.0}` or `{"kind": "const"}`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Mapping {
    /// `n(t) = 1`: `r = t (1 - 1/q^(s+1))`.
    #[serde(alias = "Const")]
    Const,
    /// `n(t) = 1 + k sigmoid(-b t)`: smaller `dt` at small `t`, larger near `t = 0`.
    #[serde(alias = "Sigmoid")]
    Sigmoid {
        /// Height of the sigmoid bump (`k`, 8 in the reference and when omitted).
        #[serde(default = "default_k")]
        k: f64,
        /// Inverse width of the bump (`b`, 1 in the reference and when omitted).
        #[serde(default = "default_b")]
        b: f64,
    },
}

fn default_k() -> f64 {
    8.0
}

fn default_b() -> f64 {
    1.0
}

impl Default for Mapping {
    /// The reference default: `sigmoid` with `k = 8`, `b = 1`.
    fn default() -> Self {
        Self::SIGMOID_DEFAULT
    }
}

impl Mapping {
    /// `sigmoid` with the reference parameters `k = 8`, `b = 1`.
    pub const SIGMOID_DEFAULT: Self = Self::Sigmoid { k: 8.0, b: 1.0 };

    /// Checks the parameters: `k >= 0` and `b` finite (so `n(t) >= 1`, which keeps `r <= t`).
    pub fn validate(&self) -> Result<()> {
        match *self {
            Self::Const => Ok(()),
            Self::Sigmoid { k, b } => {
                ensure(k.is_finite() && k >= 0.0, "k", k, "finite and >= 0")?;
                ensure(b.is_finite(), "b", b, "finite")
            }
        }
    }

    /// `n(t)`: 1 for `const`, `1 + k / (1 + exp(b t))` for `sigmoid`.
    pub fn n(&self, t: f64) -> f64 {
        match *self {
            Self::Const => 1.0,
            // torch.sigmoid(-b t) = 1 / (1 + exp(b t)).
            Self::Sigmoid { k, b } => 1.0 + k * (1.0 / (1.0 + (b * t).exp())),
        }
    }

    /// `r(t; stage, q) = max(0, t (1 - n(t) / q^(stage+1)))`.
    ///
    /// For `q > 1`, `t >= 0` and valid parameters: `0 <= r <= t`, `r` is nondecreasing in `stage`
    /// and tends to `t`; `sigmoid` never gives a larger `r` than `const`.
    pub fn r(&self, t: f64, stage: u32, q: f64) -> f64 {
        let decay = decay(stage, q);
        let ratio = match self {
            Self::Const => 1.0 - decay,
            Self::Sigmoid { .. } => 1.0 - decay * self.n(t),
        };
        // torch.clamp(min=0): max, which also maps -0.0 results to 0 in comparisons.
        let r = t * ratio;
        if r < 0.0 {
            0.0
        } else {
            r
        }
    }

    /// `r` for each of `ts` (one stage and `q` for the batch).
    pub fn r_batch(&self, ts: &[f64], stage: u32, q: f64) -> Vec<f64> {
        ts.iter().map(|&t| self.r(t, stage, q)).collect()
    }
}

/// `1 / q^(stage+1)`, the shrink factor of `dt / t` at a stage.
pub fn decay(stage: u32, q: f64) -> f64 {
    // powi keeps integer powers exact where representable, as Python's int ** int then 1/x does.
    let exp = i32::try_from(u64::from(stage) + 1).unwrap_or(i32::MAX);
    1.0 / q.powi(exp)
}

/// The reference's logged `ECMLoss.ratio = 1 - 1/q^(stage+1)` (the `const` mapping's `r / t`).
pub fn ratio(stage: u32, q: f64) -> f64 {
    1.0 - decay(stage, q)
}

/// Checks the stage base `q` (`> 1` and finite; `q <= 1` would not shrink `dt` with the stages).
pub fn validate_q(q: f64) -> Result<()> {
    ensure(q.is_finite() && q > 1.0, "q", q, "finite and > 1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn const_stage0_q2_halves_t() {
        assert_eq!(Mapping::Const.r(1.0, 0, 2.0), 0.5);
        assert_eq!(ratio(0, 2.0), 0.5);
        assert_eq!(ratio(1, 4.0), 1.0 - 1.0 / 16.0);
    }

    #[test]
    fn sigmoid_clamps_small_t_to_zero() {
        // n(0.002) ~ 5 > q = 2 at stage 0, so t (1 - n/2) < 0 -> 0.
        assert_eq!(Mapping::default().r(0.002, 0, 2.0), 0.0);
        assert!(Mapping::default().r(80.0, 0, 2.0) > 39.9);
    }

    #[test]
    fn huge_stage_gives_r_equal_t() {
        assert_eq!(Mapping::Const.r(3.0, u32::MAX, 2.0), 3.0);
    }

    #[test]
    fn serde_round_trip_with_tag() {
        let json = serde_json::to_string(&Mapping::default()).unwrap();
        assert_eq!(json, r#"{"kind":"sigmoid","k":8.0,"b":1.0}"#);
        let back: Mapping = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Mapping::default());
        let c: Mapping = serde_json::from_str(r#"{"kind":"Const"}"#).unwrap();
        assert_eq!(c, Mapping::Const);
        assert!(serde_json::from_str::<Mapping>(r#"{"kind":"linear"}"#).is_err());
        let s: Mapping = serde_json::from_str(r#"{"kind":"sigmoid","b":2.0}"#).unwrap();
        assert_eq!(s, Mapping::Sigmoid { k: 8.0, b: 2.0 });
        assert!(serde_json::from_str::<Mapping>(r#"{"kind":"sigmoid","kk":2.0}"#).is_err());
    }

    #[test]
    fn validation() {
        assert!(validate_q(1.0).is_err());
        assert!(validate_q(2.0).is_ok());
        assert!(Mapping::Sigmoid { k: -1.0, b: 1.0 }.validate().is_err());
        assert!(Mapping::Sigmoid {
            k: 8.0,
            b: f64::NAN
        }
        .validate()
        .is_err());
    }
}
