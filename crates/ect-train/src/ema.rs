//! Exponential moving averages of the network weights: a fixed per-step beta (ECT CIFAR-10: 0.9999), EDM's
//! half-life in thousands of images with ramp-up, and EDM2's power-function EMA (several profiles at once).
//! The decay rates come from `ect_schedule::ema`.

use std::path::Path;

pub use ect_config::train::EmaConfig;
use tch::{nn::VarStore, Tensor};

use crate::error::{Result, TrainError};

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
                check_tensor(name, src, shadow, &path)?;
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
        check_tensor(name, src, var, origin)?;
        let mut var = var.shallow_clone();
        tch::no_grad(|| var.f_copy_(src))?;
    }
    Ok(())
}

/// A tensor read from a file must have the shape of the variable it replaces and finite values: weights
/// with NaN or infinity would sample blank images or train nothing, silently.
fn check_tensor(name: &str, src: &Tensor, dst: &Tensor, origin: &Path) -> Result<()> {
    let bad = |message: String| TrainError::Checkpoint {
        path: origin.to_path_buf(),
        message,
    };
    if src.size() != dst.size() {
        return Err(bad(format!(
            "`{name}` has shape {:?}, the network has {:?}",
            src.size(),
            dst.size()
        )));
    }
    if src.is_floating_point() {
        let finite = tch::no_grad(|| src.isfinite().all().int64_value(&[]) != 0);
        if !finite {
            let count = |t: Tensor| tch::no_grad(|| t.sum(tch::Kind::Int64).int64_value(&[]));
            let nan = count(src.isnan());
            let inf = count(src.isinf());
            return Err(bad(format!(
                "`{name}` holds non-finite values ({nan} NaN, {inf} infinite of {}); the file is \
                 corrupt or comes from a run that diverged",
                src.numel()
            )));
        }
    }
    Ok(())
}
