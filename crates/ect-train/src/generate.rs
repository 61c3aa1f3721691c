//! Generating samples from a trained run, a checkpoint, or a bare weights file (the `ect sample` entry
//! point): consistency sampling on a time grid, or EDM's Heun sampler for diffusion models.

use std::path::{Path, PathBuf};

use tch::{Kind, Tensor};

use crate::checkpoint;
use crate::config::{parse_device, validate_grid, TrainConfig};
use crate::error::{Result, TrainError};
use crate::net::Network;
use crate::rng::{self, Stream};
use crate::sample as samplers;
use crate::trainer::{read_run_config, CONFIG_FILE};

/// Which sampler.
#[derive(Debug, Clone, PartialEq)]
pub enum Sampler {
    /// Consistency sampling on a time grid ending in 0 (`[80, 0]`, `[80, 0.821, 0]`, ...).
    Grid(Vec<f64>),
    /// EDM's Heun sampler on `n` Karras times (`sigma_min` 0.002, `sigma_max` 80, `rho` 7; `2n - 1`
    /// evaluations).
    Heun(usize),
}

/// Where the weights come from.
#[derive(Debug, Clone, PartialEq)]
pub enum WeightsChoice {
    /// An EMA track by index (0: the first, the default for sampling).
    Ema(usize),
    /// The raw (non-averaged) weights.
    Raw,
}

/// A sampling request.
#[derive(Debug, Clone)]
pub struct SampleSpec {
    /// A run directory (its latest checkpoint), a checkpoint directory, or a `.safetensors` file.
    pub source: PathBuf,
    /// For a bare `.safetensors` file: a JSON file with the network config (reference names).
    pub network_config: Option<PathBuf>,
    /// The sampler.
    pub sampler: Sampler,
    /// Number of images.
    pub n: usize,
    /// Images per forward pass.
    pub batch: usize,
    /// Seed of the noise (batch `b` uses a seed derived from `(seed, b)`, so `n` does not change the first
    /// images).
    pub seed: u64,
    /// Output: `.npy` (u8 NCHW) or `.png` (a grid).
    pub out: PathBuf,
    /// Which weights of a checkpoint.
    pub weights: WeightsChoice,
    /// `auto`, `cpu`, `cuda`, `cuda:N`.
    pub device: String,
    /// For class-conditional networks: one class for every image; `None` cycles through the classes.
    pub class: Option<i64>,
}

/// Finds (network config, weights file) for a source.
fn resolve(spec: &SampleSpec) -> Result<(ect_unet::NetworkConfig, PathBuf)> {
    let src = &spec.source;
    let pick = |ckpt: &Path, cfg: &TrainConfig| -> Result<PathBuf> {
        Ok(match spec.weights {
            WeightsChoice::Raw => ckpt.join(checkpoint::MODEL_FILE),
            WeightsChoice::Ema(i) => {
                let labels = cfg.ema.labels();
                let label = labels.get(i).ok_or_else(|| {
                    TrainError::invalid(
                        "ema",
                        format!("track {i} requested, the run keeps {}", labels.len()),
                    )
                })?;
                ckpt.join(format!("{label}.safetensors"))
            }
        })
    };
    if src.is_dir() && src.join(CONFIG_FILE).exists() {
        let cfg = read_run_config(src)?;
        let ckpt = checkpoint::latest_checkpoint(src)?.ok_or_else(|| TrainError::Checkpoint {
            path: src.clone(),
            message: "the run has no checkpoint yet".into(),
        })?;
        let file = pick(&ckpt, &cfg)?;
        return Ok((Network::parse_config(&cfg.network)?, file));
    }
    if src.is_dir() && src.join(checkpoint::STATE_FILE).exists() {
        let run = src
            .parent()
            .and_then(Path::parent)
            .ok_or_else(|| TrainError::Checkpoint {
                path: src.clone(),
                message: "a checkpoint directory must sit in <run>/checkpoints/".into(),
            })?;
        let cfg = read_run_config(run)?;
        let file = pick(src, &cfg)?;
        return Ok((Network::parse_config(&cfg.network)?, file));
    }
    let cfg_path = spec.network_config.as_ref().ok_or_else(|| {
        TrainError::invalid(
            "network_config",
            format!(
                "{} is a weights file; give its network config",
                src.display()
            ),
        )
    })?;
    let text = std::fs::read_to_string(cfg_path).map_err(|e| TrainError::io(cfg_path, e))?;
    let cfg = ect_unet::NetworkConfig::from_json_str(&text)
        .map_err(|e| TrainError::external(format!("network config {}", cfg_path.display()), e))?;
    Ok((cfg, src.clone()))
}

/// Generates `spec.n` images and writes them to `spec.out`; returns the u8 images [N, C, H, W].
pub fn sample(spec: &SampleSpec) -> Result<Tensor> {
    if spec.n == 0 || spec.batch == 0 {
        return Err(TrainError::invalid("n", "n and batch must be > 0"));
    }
    if let Sampler::Grid(g) = &spec.sampler {
        validate_grid(g).map_err(|m| TrainError::invalid("grid", m))?;
    }
    let ext = spec
        .out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if !matches!(ext.as_deref(), Some("npy") | Some("png")) {
        return Err(TrainError::invalid(
            "out",
            format!("{} must end in .npy or .png", spec.out.display()),
        ));
    }
    let device = parse_device(&spec.device)?;
    let (net_cfg, weights) = resolve(spec)?;
    let net = Network::new(&net_cfg, device)?;
    checkpoint::load_vars(&net.vs, &weights)?;
    let (c, res, label_dim) = (
        net_cfg.img_channels(),
        net_cfg.img_resolution(),
        net_cfg.label_dim(),
    );
    if let Some(k) = spec.class {
        if !(0..label_dim.max(1)).contains(&k) || label_dim == 0 {
            return Err(TrainError::invalid(
                "class",
                format!("{k} is not a class of this network ({label_dim} classes)"),
            ));
        }
    }
    let mut chunks = Vec::new();
    let mut done = 0usize;
    for b in 0.. {
        if done >= spec.n {
            break;
        }
        let m = spec.batch.min(spec.n - done);
        rng::seed_torch(spec.seed, b as u64, Stream::Samples);
        let z = Tensor::randn([m as i64, c, res, res], (Kind::Float, device));
        let labels = (label_dim > 0).then(|| {
            let classes: Vec<i64> = (0..m)
                .map(|i| spec.class.unwrap_or(((done + i) as i64) % label_dim))
                .collect();
            samplers::one_hot(&classes, label_dim, device)
        });
        let x = match &spec.sampler {
            Sampler::Grid(g) => {
                samplers::consistency_sample(&net, &z, labels.as_ref(), g, || z.randn_like())
            }
            Sampler::Heun(steps) => {
                let grid = samplers::karras_grid(*steps, 0.002, 80.0, 7.0);
                samplers::heun_sample(&net, &z, labels.as_ref(), &grid)
            }
        };
        chunks.push(samplers::to_u8(&x));
        done += m;
    }
    let images = Tensor::cat(&chunks, 0);
    match ext.as_deref() {
        Some("npy") => samplers::write_npy(&spec.out, &images)?,
        _ => samplers::write_png_grid(&spec.out, &images)?,
    }
    Ok(images)
}
