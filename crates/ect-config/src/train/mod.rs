//! The one typed training configuration (TOML in, JSON in a run directory), with validation whose
//! messages name the field. Every default is the ECT CIFAR-10 recipe of the public code (docs/method.md §6).

pub mod advice;
pub mod backend;
pub mod data;
pub mod distributed;
pub mod ema;
pub mod eval;
pub mod init;
pub mod objective;
pub mod optimizer;
pub mod output;
pub mod precision;
pub mod sampling;
pub mod schedule;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::device::DeviceSpec;
use crate::error::{ConfigError, Result};
use crate::network::ValidNetworkConfig;

pub use backend::BackendConfig;
pub use data::DataConfig;
pub use distributed::DistributedConfig;
pub use ema::EmaConfig;
pub use eval::{EvalConfig, ExtractorChoice};
pub use init::InitConfig;
pub use objective::ObjectiveConfig;
pub use optimizer::{OptimizerConfig, OptimizerKind};
pub use output::OutputConfig;
pub use precision::{LossScaleConfig, Precision};
pub use sampling::SamplingConfig;
pub use schedule::ScheduleConfig;

/// The most libtorch CPU threads a configuration may ask for: more threads than any machine this runs on
/// has cores only make libtorch's pool spin (4,096 threads had not finished two steps in two minutes).
/// `ect-train` further refuses more threads than the process may use.
pub const MAX_TORCH_THREADS: usize = 1024;

/// The largest batch (and micro-batch) a configuration may ask for: libtorch indexes a batch with 32-bit
/// sizes in places, and a larger batch cannot fit any machine's memory for the networks here.
pub const MAX_BATCH: u64 = 1 << 24;

/// The complete configuration of a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Seed of every random draw (times, noise, dropout, data order, initialisation).
    pub seed: u64,
    /// `"auto"` (CUDA when available), `"cpu"`, `"cuda"` or `"cuda:N"`.
    pub device: DeviceSpec,
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
    /// The network and its preconditioning (reference constructor-argument names, tag `network`).
    /// Required in a file; the default (used only when a config is built in code) is DDPM++ for
    /// CIFAR-10 with dropout 0.2, the recipe's network.
    pub network: ValidNetworkConfig,
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
    /// `"fp32"` (default), `"fp16"` (CUDA float16 autocast with dynamic loss scaling) or `"bf16"`
    /// (bfloat16 autocast on CUDA or the CPU, no loss scaling).
    pub precision: Precision,
    /// Dynamic loss scaling of `precision = "fp16"`.
    pub loss_scale: LossScaleConfig,
    /// Periodic Fréchet distance during training (off by default).
    pub eval: EvalConfig,
    /// Data-parallel runs: how long ranks wait for each other.
    pub distributed: DistributedConfig,
    /// libtorch switches: cuDNN autotuning (on) and TF32 (off), applied once at the start of a run.
    pub backend: BackendConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            device: DeviceSpec::Auto,
            threads: 0,
            iterations: 200_000,
            batch_size: 128,
            micro_batch: 0,
            data: DataConfig::default(),
            network: ValidNetworkConfig::ddpmpp_cifar10(0.2),
            init: InitConfig::default(),
            objective: ObjectiveConfig::default(),
            schedule: ScheduleConfig::default(),
            optimizer: OptimizerConfig::default(),
            ema: EmaConfig::default(),
            sampling: SamplingConfig::default(),
            output: OutputConfig::default(),
            eval: EvalConfig::default(),
            precision: Precision::Fp32,
            loss_scale: LossScaleConfig::default(),
            distributed: DistributedConfig::default(),
            backend: BackendConfig::default(),
        }
    }
}

impl TrainConfig {
    /// Parses TOML text, applies `--set` overrides, validates. `origin` names the text in errors. An
    /// `[experiment]` table (what `cargo xtask train-ect` does besides this run) is ignored, so
    /// experiment presets also work as plain training configurations.
    pub fn from_toml_str(text: &str, origin: &str, overrides: &[String]) -> Result<Self> {
        let mut doc: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_owned(),
            message: e.to_string(),
        })?;
        doc.remove("experiment");
        crate::overrides::apply_overrides(&mut doc, overrides)?;
        Self::from_table(doc, origin)
    }

    /// Reads a TOML file, applies overrides, validates.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text, &path.display().to_string(), overrides)
    }

    /// A configuration from a parsed TOML document (overrides already applied), validated.
    pub fn from_table(doc: toml::Table, origin: &str) -> Result<Self> {
        let has_network = doc.contains_key("network");
        let cfg: Self = toml::Value::Table(doc)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                origin: origin.to_owned(),
                message: e.to_string(),
            })?;
        cfg.validate()?;
        if !has_network {
            // Checked after the other fields so that their errors come first, as a reader scans a file.
            return Err(ConfigError::invalid(
                "network.network",
                "is required (the preconditioning class: \"ECMPrecond\", \"EDMPrecond\" or \"edm2.Precond\")",
            ));
        }
        Ok(cfg)
    }

    /// Reads the resolved configuration a run directory records (`config.json`), validated.
    pub fn from_json_str(text: &str, origin: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_owned(),
            message: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The configuration as a TOML document (what `ect train --config` reads back unchanged).
    pub fn to_toml_table(&self) -> Result<toml::Table> {
        toml::Table::try_from(self).map_err(|e| ConfigError::Parse {
            origin: "<serializing the configuration>".to_owned(),
            message: e.to_string(),
        })
    }

    /// The ECT loss schedule of an ECT run as one value (`ect_schedule::recipe`): what decides `t`,
    /// `r(t)` and each sample's weight. `None` for the other objectives.
    pub fn ect_recipe(&self) -> Option<ect_schedule::recipe::EctLossConfig> {
        match &self.objective {
            ObjectiveConfig::Ect {
                p_mean,
                p_std,
                weighting,
                c,
                sigma_data,
            } => Some(ect_schedule::recipe::EctLossConfig {
                noise: ect_schedule::noise::LogNormal {
                    p_mean: *p_mean,
                    p_std: *p_std,
                },
                mapping: self.schedule.mapping,
                q: self.schedule.q,
                stages: self.schedule.stages(),
                weighting: *weighting,
                c: *c,
                sigma_data: *sigma_data,
            }),
            _ => None,
        }
    }

    /// Images per forward pass.
    pub fn micro_batch_size(&self) -> u64 {
        if self.micro_batch == 0 {
            self.batch_size
        } else {
            self.micro_batch
        }
    }

    /// Checks every field but the network (a [`ValidNetworkConfig`] is valid by construction); the
    /// error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        fn inv(field: &str, message: impl Into<String>) -> ConfigError {
            ConfigError::invalid(field, message)
        }
        if self.batch_size == 0 || self.batch_size > MAX_BATCH {
            return Err(inv(
                "batch_size",
                format!("must be in 1..={MAX_BATCH}, got {}", self.batch_size),
            ));
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
        if self.threads > MAX_TORCH_THREADS {
            return Err(inv(
                "threads",
                format!(
                    "must be at most {MAX_TORCH_THREADS} (0: libtorch's default), got {}",
                    self.threads
                ),
            ));
        }
        self.eval.validate()?;
        self.loss_scale.validate()?;
        self.distributed.validate()?;
        if self.precision == Precision::Fp16 && self.device == DeviceSpec::Cpu {
            return Err(inv(
                "precision",
                "\"fp16\" is CUDA float16 autocast; this run's device is \"cpu\" (use \"fp32\" or \"bf16\")",
            ));
        }
        if self.data.path.as_os_str().is_empty() {
            return Err(inv(
                "data.path",
                "is required (a dataset file or directory)",
            ));
        }
        self.objective.validate()?;
        self.schedule.validate()?;
        self.optimizer.validate("optimizer")?;
        self.ema.validate("ema")?;
        self.sampling.validate()?;
        self.output.validate()
    }
}
