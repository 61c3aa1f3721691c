//! Exponential moving averages of the network weights: a fixed per-step beta (ECT CIFAR-10: 0.9999), EDM's
//! half-life in thousands of images with ramp-up, and EDM2's power-function EMA (several profiles at once).
//! The decay rates come from `ect_schedule::ema`.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Tensor};

use crate::error::{Result, TrainError};

/// How the averaging rate is chosen each step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum EmaConfig {
    /// `ema = beta * ema + (1 - beta) * weights` every step.
    Beta {
        /// The per-step decay.
        beta: f64,
    },
    /// EDM: beta from a half-life in thousands of images, optionally capped by `rampup_ratio * images_seen`.
    Halflife {
        /// Half-life in kimg.
        halflife_kimg: f64,
        /// EDM's ramp-up ratio (0.05 in EDM's CIFAR recipe); `None` disables it.
        rampup_ratio: Option<f64>,
    },
    /// EDM2's power-function EMA; one average per relative standard deviation.
    Power {
        /// The `sigma_rel` values (EDM2 trains with 0.05 and 0.10).
        sigma_rels: Vec<f64>,
    },
}

impl Default for EmaConfig {
    fn default() -> Self {
        Self::Beta { beta: 0.9999 }
    }
}

impl EmaConfig {
    /// Checks ranges; errors name the field under `prefix`.
    pub fn validate(&self, prefix: &str) -> Result<()> {
        match self {
            Self::Beta { beta } => {
                if !(0.0..=1.0).contains(beta) {
                    return Err(TrainError::invalid(
                        format!("{prefix}.beta"),
                        format!("must be in [0, 1], got {beta}"),
                    ));
                }
            }
            Self::Halflife {
                halflife_kimg,
                rampup_ratio,
            } => {
                if !(halflife_kimg.is_finite() && *halflife_kimg > 0.0) {
                    return Err(TrainError::invalid(
                        format!("{prefix}.halflife_kimg"),
                        format!("must be > 0, got {halflife_kimg}"),
                    ));
                }
                if let Some(r) = rampup_ratio {
                    if !(r.is_finite() && *r > 0.0) {
                        return Err(TrainError::invalid(
                            format!("{prefix}.rampup_ratio"),
                            format!("must be > 0 (omit it to disable), got {r}"),
                        ));
                    }
                }
            }
            Self::Power { sigma_rels } => {
                if sigma_rels.is_empty() {
                    return Err(TrainError::invalid(
                        format!("{prefix}.sigma_rels"),
                        "needs at least one value",
                    ));
                }
                for s in sigma_rels {
                    let max = ect_schedule::ema::SIGMA_REL_MAX;
                    if !(s.is_finite() && *s > 0.0 && *s <= max) {
                        return Err(TrainError::invalid(
                            format!("{prefix}.sigma_rels"),
                            format!("each value must be in (0, {max:.4}], got {s}"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Names of the averages this config keeps (`ema` or `ema-<sigma_rel>`), in order; the first one is
    /// the one sampled by default.
    pub fn labels(&self) -> Vec<String> {
        match self {
            Self::Power { sigma_rels } => {
                sigma_rels.iter().map(|s| format!("ema-{s:.3}")).collect()
            }
            _ => vec!["ema".to_owned()],
        }
    }
}

/// One or more shadow copies of the network variables.
pub struct Ema {
    cfg: EmaConfig,
    labels: Vec<String>,
    /// Per track, the shadow of every variable (buffers too, so a track loads as a complete network).
    tracks: Vec<Vec<(String, Tensor)>>,
}

impl Ema {
    /// Shadows initialised to the current weights of `vs` (as EDM does with `copy.deepcopy(net)`).
    pub fn new(vs: &VarStore, cfg: &EmaConfig) -> Self {
        let labels = cfg.labels();
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let tracks = labels
            .iter()
            .map(|_| {
                vars.iter()
                    .map(|(n, t)| (n.clone(), t.detach().copy()))
                    .collect()
            })
            .collect();
        Self {
            cfg: cfg.clone(),
            labels,
            tracks,
        }
    }

    /// The decay used by track `index` at the update after `step` optimizer steps (`step >= 1`), with
    /// `images_seen = step * batch_size`.
    pub fn beta(&self, index: usize, step: u64, batch_size: u64) -> f64 {
        match &self.cfg {
            EmaConfig::Beta { beta } => *beta,
            EmaConfig::Halflife {
                halflife_kimg,
                rampup_ratio,
            } => ect_schedule::ema::beta_from_halflife(
                *halflife_kimg,
                *rampup_ratio,
                batch_size,
                step * batch_size,
            ),
            EmaConfig::Power { sigma_rels } => {
                let exponent = ect_schedule::ema::power_function_exponent(sigma_rels[index]);
                ect_schedule::ema::power_function_beta(step, exponent)
            }
        }
    }

    /// Moves every track toward the current weights of `vs`, after optimizer step number `step` (1-based).
    pub fn update(&mut self, vs: &VarStore, step: u64, batch_size: u64) {
        let vars = vs.variables();
        let betas: Vec<f64> = (0..self.tracks.len())
            .map(|i| self.beta(i, step, batch_size))
            .collect();
        tch::no_grad(|| {
            for (track, beta) in self.tracks.iter_mut().zip(betas) {
                for (name, shadow) in track.iter_mut() {
                    if let Some(p) = vars.get(name) {
                        // torch: p_ema.copy_(p_net.detach().lerp(p_ema, beta))
                        shadow.copy_(&p.detach().lerp(shadow, beta));
                    }
                }
            }
        });
    }

    /// Track labels, in order.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The shadow variables of track `index`, by reference name.
    pub fn track(&self, index: usize) -> &[(String, Tensor)] {
        &self.tracks[index]
    }

    /// Copies track `index` into the variables of `vs` (for sampling or evaluation).
    pub fn copy_into(&self, index: usize, vs: &VarStore) -> Result<()> {
        copy_named_into(&self.tracks[index], vs, Path::new("<ema>"))
    }

    /// Writes each track to `<dir>/<label>.safetensors`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        for (label, track) in self.labels.iter().zip(&self.tracks) {
            Tensor::write_safetensors(track, dir.join(format!("{label}.safetensors")))?;
        }
        Ok(())
    }

    /// Reads every track back from `dir` (written by [`Ema::save`]).
    pub fn load(&mut self, dir: &Path) -> Result<()> {
        for (label, track) in self.labels.iter().zip(&mut self.tracks) {
            let path = dir.join(format!("{label}.safetensors"));
            if !path.exists() {
                return Err(TrainError::Checkpoint {
                    path,
                    message: "EMA file missing".to_owned(),
                });
            }
            let loaded: std::collections::HashMap<String, Tensor> =
                Tensor::read_safetensors(&path)?.into_iter().collect();
            for (name, shadow) in track.iter_mut() {
                let src = loaded.get(name).ok_or_else(|| TrainError::Checkpoint {
                    path: path.clone(),
                    message: format!("lacks `{name}`"),
                })?;
                tch::no_grad(|| shadow.f_copy_(src))?;
            }
        }
        Ok(())
    }
}

/// Copies named tensors into the same-named variables of `vs`, strictly (every variable must be given, with
/// its shape). `origin` names the source in errors.
pub fn copy_named_into(named: &[(String, Tensor)], vs: &VarStore, origin: &Path) -> Result<()> {
    let vars = vs.variables();
    let given: std::collections::HashMap<&str, &Tensor> =
        named.iter().map(|(n, t)| (n.as_str(), t)).collect();
    for (name, var) in &vars {
        let src = given
            .get(name.as_str())
            .ok_or_else(|| TrainError::Checkpoint {
                path: origin.to_path_buf(),
                message: format!("lacks variable `{name}`"),
            })?;
        if src.size() != var.size() {
            return Err(TrainError::Checkpoint {
                path: origin.to_path_buf(),
                message: format!(
                    "`{name}` has shape {:?}, the network has {:?}",
                    src.size(),
                    var.size()
                ),
            });
        }
        let mut var = var.shallow_clone();
        tch::no_grad(|| var.f_copy_(src))?;
    }
    Ok(())
}
