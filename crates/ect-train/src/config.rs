//! The one typed training configuration (TOML), `--set key.path=value` overrides, and validation whose
//! messages name the field. Every default is the ECT CIFAR-10 recipe of the public code (SPEC-ECT section 6).

use std::path::{Path, PathBuf};

use ect_schedule::{mapping::Mapping, weighting::Weighting};
use serde::{Deserialize, Serialize};

use crate::ema::EmaConfig;
use crate::error::{Result, TrainError};
use crate::optim::OptimizerConfig;

/// The complete configuration of a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Seed of every random draw (times, noise, dropout, data order, initialisation).
    pub seed: u64,
    /// `"auto"` (CUDA when available), `"cpu"`, `"cuda"` or `"cuda:N"`.
    pub device: String,
    /// libtorch intra-op CPU threads; 0 keeps libtorch's default (one per core). On a machine shared with
    /// other jobs, fewer threads than cores avoids OpenMP spin-waiting (measured here: 25x faster steps
    /// with 1 thread than with 2 on 2 busy cores).
    pub threads: usize,
    /// Total optimizer steps.
    pub iterations: u64,
    /// Images per optimizer step.
    pub batch_size: u64,
    /// Images per forward/backward pass (gradients accumulate); 0 means the whole batch at once.
    pub micro_batch: u64,
    /// Training data.
    pub data: DataConfig,
    /// The network and its preconditioning, in `ect-unet`'s format (table with tag `network`).
    pub network: toml::Table,
    /// Where the initial weights come from.
    pub init: InitConfig,
    /// What is optimised.
    pub objective: ObjectiveConfig,
    /// ECT's mapping function and stages.
    pub schedule: ScheduleConfig,
    /// Optimizer and learning-rate schedule.
    pub optimizer: OptimizerConfig,
    /// Weight averaging.
    pub ema: EmaConfig,
    /// Sample grids written during training.
    pub sampling: SamplingConfig,
    /// Output directory and intervals.
    pub output: OutputConfig,
    /// `"fp32"` (default) or `"fp16"`: CUDA float16 autocast with dynamic loss scaling.
    pub precision: crate::amp::Precision,
    /// Dynamic loss scaling of `precision = "fp16"`.
    pub loss_scale: crate::amp::LossScaleConfig,
    /// Periodic Fréchet distance during training (off by default).
    pub eval: crate::periodic_eval::EvalConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            device: "auto".to_owned(),
            threads: 0,
            iterations: 200_000,
            batch_size: 128,
            micro_batch: 0,
            data: DataConfig::default(),
            network: toml::Table::new(),
            init: InitConfig::default(),
            objective: ObjectiveConfig::default(),
            schedule: ScheduleConfig::default(),
            optimizer: OptimizerConfig::default(),
            ema: EmaConfig::default(),
            sampling: SamplingConfig::default(),
            output: OutputConfig::default(),
            eval: crate::periodic_eval::EvalConfig::default(),
            precision: crate::amp::Precision::Fp32,
            loss_scale: crate::amp::LossScaleConfig::default(),
        }
    }
}

/// Training data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Dataset file or directory.
    pub path: PathBuf,
    /// `ect-data` format name (`auto`, `cifar-python`, `cifar-binary`, `edm-archive`, `image-folder`, `idx`).
    pub format: String,
    /// Which split (`train` or `test`).
    pub split: String,
    /// Random horizontal flips.
    pub xflip: bool,
    /// Feed class labels to the network (needs a class-conditional network).
    pub conditional: bool,
    /// Resize to this resolution where the format allows it (ImageNet folders); `None`: the format's default.
    pub resolution: Option<usize>,
    /// Loader worker threads (0: automatic).
    pub threads: usize,
    /// Batches prepared ahead.
    pub prefetch: usize,
    /// Keep decoded images in memory.
    pub cache: bool,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::new(),
            format: "auto".to_owned(),
            split: "train".to_owned(),
            xflip: false,
            conditional: false,
            resolution: None,
            threads: 0,
            prefetch: 2,
            cache: true,
        }
    }
}

/// Where the initial weights come from.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum InitConfig {
    /// The network's own initialisation (seeded).
    #[default]
    Random,
    /// The EMA weights of one of our runs (its `latest` checkpoint), e.g. a diffusion pretraining run.
    Run {
        /// The run directory.
        path: PathBuf,
    },
    /// A safetensors file with reference parameter names (e.g. a converted EDM checkpoint).
    Weights {
        /// The file.
        path: PathBuf,
    },
}

/// The training objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ObjectiveConfig {
    /// Easy Consistency Tuning (SPEC-ECT section 3).
    Ect {
        /// Lognormal mean of `t` (CIFAR -1.1, ImageNet -0.8).
        #[serde(default = "default_ect_p_mean")]
        p_mean: f64,
        /// Lognormal std of `t` (CIFAR 2.0, ImageNet 1.6).
        #[serde(default = "default_ect_p_std")]
        p_std: f64,
        /// Timestep weighting (`inv_dt` for CIFAR, `snrpk` for ImageNet).
        #[serde(default)]
        weighting: Weighting,
        /// Adaptive-loss constant (CIFAR 0, ImageNet 0.06).
        #[serde(default)]
        c: f64,
        /// Data standard deviation.
        #[serde(default = "default_sigma_data")]
        sigma_data: f64,
    },
    /// EDM diffusion pretraining (SPEC-ECT section 8).
    Edm {
        /// Lognormal mean of sigma.
        #[serde(default = "default_edm_p_mean")]
        p_mean: f64,
        /// Lognormal std of sigma.
        #[serde(default = "default_edm_p_std")]
        p_std: f64,
        /// Data standard deviation.
        #[serde(default = "default_sigma_data")]
        sigma_data: f64,
    },
    /// Improved consistency training from scratch (SPEC-ECT section 7).
    Ict {
        /// Index-distribution lognormal mean.
        #[serde(default = "default_ect_p_mean")]
        p_mean: f64,
        /// Index-distribution lognormal std.
        #[serde(default = "default_ect_p_std")]
        p_std: f64,
        /// Initial discretization steps.
        #[serde(default = "default_ict_s0")]
        s0: u64,
        /// Final discretization steps.
        #[serde(default = "default_ict_s1")]
        s1: u64,
        /// Smallest Karras time.
        #[serde(default = "default_sigma_min")]
        sigma_min: f64,
        /// Largest Karras time.
        #[serde(default = "default_sigma_max")]
        sigma_max: f64,
        /// Karras exponent.
        #[serde(default = "default_rho")]
        rho: f64,
        /// Pseudo-Huber constant; `None`: `0.00054 sqrt(C H W)`.
        #[serde(default)]
        c: Option<f64>,
    },
}

fn default_ect_p_mean() -> f64 {
    -1.1
}
fn default_ect_p_std() -> f64 {
    2.0
}
fn default_edm_p_mean() -> f64 {
    -1.2
}
fn default_edm_p_std() -> f64 {
    1.2
}
fn default_sigma_data() -> f64 {
    0.5
}
fn default_ict_s0() -> u64 {
    10
}
fn default_ict_s1() -> u64 {
    1280
}
fn default_sigma_min() -> f64 {
    0.002
}
fn default_sigma_max() -> f64 {
    80.0
}
fn default_rho() -> f64 {
    7.0
}

impl Default for ObjectiveConfig {
    fn default() -> Self {
        Self::Ect {
            p_mean: default_ect_p_mean(),
            p_std: default_ect_p_std(),
            weighting: Weighting::InvDt,
            c: 0.0,
            sigma_data: default_sigma_data(),
        }
    }
}

impl ObjectiveConfig {
    /// `ect`, `edm` or `ict`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ect { .. } => "ect",
            Self::Edm { .. } => "edm",
            Self::Ict { .. } => "ict",
        }
    }
}

/// ECT's mapping function and stage schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// The mapping `t -> r`.
    pub mapping: Mapping,
    /// Stage base `q` (CIFAR 2, ImageNet 4, "1 hour" 256).
    pub q: f64,
    /// Iterations per stage; `0` (or `None` from Rust): one stage for the whole run, as the "1 hour" recipe.
    /// A missing field keeps the CIFAR-10 default of 25k: TOML has no null, so a single stage is written
    /// `iters_per_stage = 0`. The public code advances the stage every
    /// `double` ticks of `kimg_per_tick` thousand images, i.e. every `double * kimg_per_tick * 1000 /
    /// batch_size` iterations (`ect_schedule::stage::StageSchedule::from_ticks` converts); the CIFAR-10
    /// recipe's period is 25k iterations at batch 128.
    pub iters_per_stage: Option<u64>,
}

impl ScheduleConfig {
    /// The stage schedule: `iters_per_stage = 0` means a single stage.
    pub fn stages(&self) -> ect_schedule::stage::StageSchedule {
        ect_schedule::stage::StageSchedule {
            iters_per_stage: self.iters_per_stage.filter(|&n| n > 0),
        }
    }
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            mapping: Mapping::default(),
            q: 2.0,
            iters_per_stage: Some(25_000),
        }
    }
}

/// Sample grids and samplers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplingConfig {
    /// Consistency time grids sampled during training (each ends with 0).
    pub grids: Vec<Vec<f64>>,
    /// Heun steps (Karras times) for diffusion models; 18 gives 35 evaluations.
    pub heun_steps: usize,
    /// Images per grid (a square number looks best).
    pub grid_images: usize,
    /// Largest sampling time.
    pub sigma_max: f64,
    /// Smallest Karras time for Heun.
    pub sigma_min: f64,
    /// Karras exponent.
    pub rho: f64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            grids: vec![vec![80.0, 0.0], vec![80.0, 0.821, 0.0]],
            heun_steps: 18,
            grid_images: 64,
            sigma_max: 80.0,
            sigma_min: 0.002,
            rho: 7.0,
        }
    }
}

/// Run directory and intervals (in iterations; 0 disables).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// The run directory (created; an existing one with checkpoints is refused unless resuming).
    pub run_dir: PathBuf,
    /// Checkpoint interval.
    pub checkpoint_every: u64,
    /// Sample-grid interval.
    pub sample_every: u64,
    /// `stats.jsonl` / log-line interval.
    pub log_every: u64,
    /// Checkpoints kept (the newest ones); `latest` always points at the newest.
    pub keep_last: usize,
    /// Consecutive non-finite losses that stop the run.
    pub max_nonfinite: u64,
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self {
            run_dir: PathBuf::from("runs/ect"),
            checkpoint_every: 5000,
            sample_every: 5000,
            log_every: 100,
            keep_last: 3,
            max_nonfinite: 20,
        }
    }
}

/// Parses `key.path=value`: the value is read as a TOML value (`1e-4`, `true`, `"text"`, `[80, 0]`,
/// `{ kind = "const" }`), and as a bare string when it is not valid TOML.
fn parse_override(item: &str) -> Result<(Vec<String>, toml::Value)> {
    let bad = |m: &str| TrainError::Override {
        item: item.to_owned(),
        message: m.to_owned(),
    };
    let (key, value) = item
        .split_once('=')
        .ok_or_else(|| bad("expected key.path=value"))?;
    let path: Vec<String> = key.trim().split('.').map(|s| s.trim().to_owned()).collect();
    if path.iter().any(|s| s.is_empty()) {
        return Err(bad("empty key segment"));
    }
    let value = value.trim();
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    Ok((path, parsed))
}

/// Applies `--set` overrides to a parsed TOML document (missing intermediate tables are created).
pub fn apply_overrides(doc: &mut toml::Table, overrides: &[String]) -> Result<()> {
    for item in overrides {
        let (path, value) = parse_override(item)?;
        let mut table = &mut *doc;
        for seg in &path[..path.len() - 1] {
            let entry = table
                .entry(seg.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = entry.as_table_mut().ok_or_else(|| TrainError::Override {
                item: item.clone(),
                message: format!("`{seg}` is not a table"),
            })?;
        }
        table.insert(path[path.len() - 1].clone(), value);
    }
    Ok(())
}

impl TrainConfig {
    /// Parses TOML text, applies overrides, validates. `origin` names the text in errors.
    pub fn from_toml_str(text: &str, origin: &str, overrides: &[String]) -> Result<Self> {
        let mut doc: toml::Table = toml::from_str(text).map_err(|e| TrainError::ConfigParse {
            origin: origin.to_owned(),
            message: e.to_string(),
        })?;
        apply_overrides(&mut doc, overrides)?;
        let cfg: Self = toml::Value::Table(doc)
            .try_into()
            .map_err(|e: toml::de::Error| TrainError::ConfigParse {
                origin: origin.to_owned(),
                message: e.to_string(),
            })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads a TOML file, applies overrides, validates.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| TrainError::ConfigRead {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text, &path.display().to_string(), overrides)
    }

    /// Images per forward pass.
    pub fn micro_batch_size(&self) -> u64 {
        if self.micro_batch == 0 {
            self.batch_size
        } else {
            self.micro_batch
        }
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        fn inv(field: impl Into<String>, message: impl Into<String>) -> TrainError {
            TrainError::invalid(field, message)
        }
        if self.batch_size == 0 {
            return Err(inv("batch_size", "must be > 0"));
        }
        if self.micro_batch > self.batch_size
            || (self.micro_batch > 0 && self.batch_size % self.micro_batch != 0)
        {
            return Err(inv(
                "micro_batch",
                format!(
                    "must divide batch_size ({}), got {}",
                    self.batch_size, self.micro_batch
                ),
            ));
        }
        if self.iterations == 0 {
            return Err(inv("iterations", "must be > 0"));
        }
        parse_device(&self.device)?;
        self.eval.validate()?;
        self.loss_scale
            .validate()
            .map_err(|(field, message)| inv(field, message))?;
        if self.precision == crate::amp::Precision::Fp16 && self.device == "cpu" {
            return Err(inv(
                "precision",
                "\"fp16\" is CUDA float16 autocast; this run's device is \"cpu\" (use \"fp32\")",
            ));
        }
        if self.data.path.as_os_str().is_empty() {
            return Err(inv(
                "data.path",
                "is required (a dataset file or directory)",
            ));
        }
        if !self.network.contains_key("network") {
            return Err(inv(
                "network.network",
                "is required (the preconditioning class: \"ECMPrecond\", \"EDMPrecond\" or \"edm2.Precond\")",
            ));
        }
        crate::net::Network::parse_config(&self.network)?;
        let pos = |field: &str, v: f64| -> Result<()> {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(inv(field, format!("must be finite and > 0, got {v}")))
            }
        };
        match &self.objective {
            ObjectiveConfig::Ect {
                p_std,
                c,
                sigma_data,
                p_mean,
                ..
            } => {
                if !p_mean.is_finite() {
                    return Err(inv("objective.p_mean", "must be finite"));
                }
                pos("objective.p_std", *p_std)?;
                pos("objective.sigma_data", *sigma_data)?;
                if !(c.is_finite() && *c >= 0.0) {
                    return Err(inv("objective.c", format!("must be >= 0, got {c}")));
                }
            }
            ObjectiveConfig::Edm {
                p_mean,
                p_std,
                sigma_data,
            } => {
                if !p_mean.is_finite() {
                    return Err(inv("objective.p_mean", "must be finite"));
                }
                pos("objective.p_std", *p_std)?;
                pos("objective.sigma_data", *sigma_data)?;
            }
            ObjectiveConfig::Ict {
                p_std,
                s0,
                s1,
                sigma_min,
                sigma_max,
                rho,
                c,
                ..
            } => {
                pos("objective.p_std", *p_std)?;
                if *s0 < 1 || s1 < s0 {
                    return Err(inv(
                        "objective.s1",
                        format!("need 1 <= s0 <= s1, got s0 {s0}, s1 {s1}"),
                    ));
                }
                pos("objective.sigma_min", *sigma_min)?;
                if sigma_max <= sigma_min {
                    return Err(inv("objective.sigma_max", "must exceed sigma_min"));
                }
                pos("objective.rho", *rho)?;
                if let Some(c) = c {
                    pos("objective.c", *c)?;
                }
            }
        }
        self.schedule
            .mapping
            .validate()
            .map_err(|e| inv("schedule.mapping", e.to_string()))?;
        if !(self.schedule.q.is_finite() && self.schedule.q > 1.0) {
            return Err(inv(
                "schedule.q",
                format!("must be > 1, got {}", self.schedule.q),
            ));
        }
        self.optimizer.validate("optimizer")?;
        self.ema.validate("ema")?;
        for (i, grid) in self.sampling.grids.iter().enumerate() {
            validate_grid(grid).map_err(|m| inv(format!("sampling.grids[{i}]"), m))?;
        }
        if self.sampling.heun_steps < 2 {
            return Err(inv("sampling.heun_steps", "must be >= 2"));
        }
        pos("sampling.sigma_max", self.sampling.sigma_max)?;
        pos("sampling.sigma_min", self.sampling.sigma_min)?;
        pos("sampling.rho", self.sampling.rho)?;
        if self.output.run_dir.as_os_str().is_empty() {
            return Err(inv("output.run_dir", "is required"));
        }
        if self.output.keep_last == 0 {
            return Err(inv("output.keep_last", "must be >= 1"));
        }
        if self.output.max_nonfinite == 0 {
            return Err(inv("output.max_nonfinite", "must be >= 1"));
        }
        Ok(())
    }
}

/// A consistency time grid must be strictly decreasing, positive, and end with 0.
pub fn validate_grid(grid: &[f64]) -> std::result::Result<(), String> {
    if grid.len() < 2 {
        return Err(format!(
            "needs at least two times (e.g. [80, 0]), got {grid:?}"
        ));
    }
    if grid[grid.len() - 1] != 0.0 {
        return Err(format!("must end with 0, got {grid:?}"));
    }
    if !grid.windows(2).all(|w| w[0].is_finite() && w[0] > w[1]) {
        return Err(format!("must be strictly decreasing, got {grid:?}"));
    }
    Ok(())
}

/// The device a config string names.
pub fn parse_device(s: &str) -> Result<tch::Device> {
    let bad = || {
        TrainError::invalid(
            "device",
            format!("expected auto, cpu, cuda or cuda:N, got `{s}`"),
        )
    };
    match s {
        "auto" => Ok(tch::Device::cuda_if_available()),
        "cpu" => Ok(tch::Device::Cpu),
        "cuda" => Ok(tch::Device::Cuda(0)),
        _ => {
            let n = s.strip_prefix("cuda:").ok_or_else(bad)?;
            n.parse::<usize>().map(tch::Device::Cuda).map_err(|_| bad())
        }
    }
}
