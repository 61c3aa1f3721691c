//! Exponential moving averages of the network weights: a fixed per-step beta (ECT CIFAR-10: 0.9999), EDM's
//! half-life in thousands of images with ramp-up, and EDM2's power-function EMA (several profiles at once).
//! The decay rates come from `ect_schedule::ema`.

use std::path::Path;

pub use ect_config::train::EmaConfig;
use tch::{nn::VarStore, Device, Kind, Tensor};

use crate::error::{Result, TrainError};

/// `vars` (in `layout`'s order) copied into one flat buffer per group: one `cat` per group.
fn gather(
    vars: &[(String, Tensor)],
    layout: &[(String, usize, i64, i64)],
    groups: usize,
) -> Vec<Tensor> {
    (0..groups)
        .map(|g| {
            let parts: Vec<Tensor> = vars
                .iter()
                .zip(layout)
                .filter(|(_, l)| l.1 == g)
                .map(|((_, t), _)| t.detach().reshape([-1]))
                .collect();
            Tensor::cat(&parts, 0)
        })
        .collect()
}

/// One or more shadow copies of the network variables, each track in one flat buffer per
/// (device, dtype) so that an update is a few tensor ops whatever the number of variables.
pub struct Ema {
    cfg: EmaConfig,
    labels: Vec<String>,
    /// Variable names, sorted, and where each lies: (group, offset, numel).
    layout: Vec<(String, usize, i64, i64)>,
    /// Per track, one flat buffer per group.
    flats: Vec<Vec<Tensor>>,
    /// Per track, the shadow of every variable (buffers too, so a track loads as a complete network):
    /// views of `flats`, by reference name.
    tracks: Vec<Vec<(String, Tensor)>>,
}

impl Ema {
    /// Shadows initialised to the current weights of `vs` (as EDM does with `copy.deepcopy(net)`).
    pub fn new(vs: &VarStore, cfg: &EmaConfig) -> Self {
        let labels = cfg.labels();
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let mut keys: Vec<(Device, Kind)> = Vec::new();
        let mut sizes: Vec<i64> = Vec::new();
        let mut layout = Vec::with_capacity(vars.len());
        for (name, t) in &vars {
            let key = (t.device(), t.kind());
            let g = keys.iter().position(|k| *k == key).unwrap_or_else(|| {
                keys.push(key);
                sizes.push(0);
                keys.len() - 1
            });
            let n = t.numel() as i64;
            layout.push((name.clone(), g, sizes[g], n));
            sizes[g] += n;
        }
        let mut flats = Vec::with_capacity(labels.len());
        let mut tracks = Vec::with_capacity(labels.len());
        for _ in &labels {
            let flat = gather(&vars, &layout, keys.len());
            let views = vars
                .iter()
                .zip(&layout)
                .map(|((name, t), &(_, g, off, n))| {
                    (
                        name.clone(),
                        flat[g].narrow(0, off, n).view(t.size().as_slice()),
                    )
                })
                .collect();
            flats.push(flat);
            tracks.push(views);
        }
        Self {
            cfg: cfg.clone(),
            labels,
            layout,
            flats,
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
    /// On a GPU the weights are gathered into one flat copy per group and each track is one `lerp`; on
    /// the CPU each variable is updated in turn (see the crate's benchmark).
    pub fn update(&mut self, vs: &VarStore, step: u64, batch_size: u64) {
        if self.tracks.is_empty() {
            return;
        }
        let vars = vs.variables();
        let betas: Vec<f64> = (0..self.tracks.len())
            .map(|i| self.beta(i, step, batch_size))
            .collect();
        tch::no_grad(|| {
            if !self.flats[0].iter().any(|f| f.device().is_cuda()) {
                // CPU: one variable at a time, which keeps the operands in cache (faster here than
                // streaming whole flat buffers through memory several times).
                for (track, beta) in self.tracks.iter_mut().zip(&betas) {
                    for (name, shadow) in track.iter_mut() {
                        if let Some(p) = vars.get(name) {
                            // torch: p_ema.copy_(p_net.detach().lerp(p_ema, beta))
                            shadow.copy_(&p.detach().lerp(shadow, *beta));
                        }
                    }
                }
                return;
            }
            // GPU: gather the weights once, then one lerp per track and group (a few launches).
            // A variable missing from `vs` keeps its shadow (the first track's value is used for it).
            let current: Vec<(String, Tensor)> = self.tracks[0]
                .iter()
                .map(|(name, shadow)| {
                    let t = vars
                        .get(name)
                        .map_or_else(|| shadow.detach(), Tensor::detach);
                    (name.clone(), t)
                })
                .collect();
            let src = gather(&current, &self.layout, self.flats[0].len());
            for (flat, beta) in self.flats.iter_mut().zip(betas) {
                for (shadow, p) in flat.iter_mut().zip(&src) {
                    // torch: p_ema.copy_(p_net.detach().lerp(p_ema, beta))
                    shadow.copy_(&p.lerp(shadow, beta));
                }
            }
        });
    }

    /// Every flat buffer of every track (shallow clones: a broadcast into them updates the tracks).
    pub fn replicated_buffers(&self) -> Vec<Tensor> {
        self.flats
            .iter()
            .flatten()
            .map(Tensor::shallow_clone)
            .collect()
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
