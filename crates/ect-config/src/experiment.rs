//! Experiment files: an `ect train` configuration (the ECT tuning run) plus an `[experiment]` table that
//! says what else the pipeline of `cargo xtask train-ect` does (diffusion pretraining, evaluation). `ect`
//! ignores the `[experiment]` table; xtask reads it here, as typed values.
//!
//! ```toml
//! iterations = 350            # the ECT run, as `ect train --config` reads it
//! [network]
//! network = "ECMPrecond"
//! # ...
//! [experiment]
//! name = "fmnist-quick"
//! [experiment.pretrain]       # merged over the tuning config for the EDM pretraining run
//! iterations = 2800
//! objective = { kind = "edm" }
//! [experiment.eval]
//! samples = 5000
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, Result};
use crate::overrides::{apply_overrides, merge};
use crate::train::TrainConfig;

/// What the evaluation step of an experiment does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSpec {
    /// Samples per sampler for scoring (1-step, 2-step).
    pub samples: u64,
    /// Samples drawn from the pretrained diffusion model with Heun (fewer: 35 evaluations each).
    pub heun_samples: u64,
    /// Heun steps for the diffusion model (18 = 35 function evaluations).
    pub heun_steps: u64,
    /// Seed of the sampling noise.
    pub seed: u64,
    /// Few-step samplers to score, by number of steps (1 and/or 2).
    pub steps: Vec<u64>,
    /// Images in each PNG grid.
    pub grid_images: u64,
    /// Periodic FD during the tuning run every this many iterations (0: off); written to
    /// `tune/fd.jsonl` and plotted in the report.
    pub fd_every: u64,
    /// Images per sampler for the periodic FD.
    pub fd_samples: u64,
}

impl Default for EvalSpec {
    fn default() -> Self {
        Self {
            samples: 5000,
            heun_samples: 2000,
            heun_steps: 18,
            seed: 1,
            steps: vec![1, 2],
            grid_images: 64,
            fd_every: 0,
            fd_samples: 1000,
        }
    }
}

impl EvalSpec {
    fn validate(&self) -> Result<()> {
        if let Some(s) = self.steps.iter().find(|s| !(1..=2).contains(*s)) {
            return Err(ConfigError::invalid(
                "experiment.eval.steps",
                format!("steps may only hold 1 and 2, got {s}"),
            ));
        }
        if self.heun_samples > 0 && self.heun_steps < 2 {
            return Err(ConfigError::invalid(
                "experiment.eval.heun_steps",
                format!("must be >= 2, got {}", self.heun_steps),
            ));
        }
        Ok(())
    }
}

/// The `[experiment]` table.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExperimentTable {
    name: Option<String>,
    pretrain: Option<toml::Table>,
    eval: Option<EvalSpec>,
}

/// A parsed experiment file.
#[derive(Debug, Clone)]
pub struct ExperimentConfig {
    /// Short name; the run root defaults to `runs/<name>`.
    pub name: String,
    /// The tuning run's configuration.
    pub tune: TrainConfig,
    /// The pretraining run's configuration (the tuning config merged with `[experiment.pretrain]`), if
    /// any.
    pub pretrain: Option<TrainConfig>,
    /// Evaluation settings.
    pub eval: EvalSpec,
    /// The `[experiment]` table as written (overrides applied, `name` filled in), to record the
    /// experiment.
    pub experiment_table: toml::Table,
}

impl ExperimentConfig {
    /// Parses experiment text; `origin` names it in errors. `overrides` (`key.path=value`) apply to the
    /// tuning run; `experiment.pretrain.key=value` and `experiment.eval.key=value` reach those tables.
    pub fn parse(text: &str, origin: &str, overrides: &[String]) -> Result<Self> {
        let parse_err = |message: String| ConfigError::Parse {
            origin: origin.to_owned(),
            message,
        };
        let mut doc: toml::Table = toml::from_str(text).map_err(|e| parse_err(e.to_string()))?;
        apply_overrides(&mut doc, overrides)?;
        let mut table = match doc.remove("experiment") {
            Some(toml::Value::Table(t)) => t,
            Some(_) => return Err(parse_err("`experiment` must be a table".into())),
            None => toml::Table::new(),
        };
        let exp: ExperimentTable = toml::Value::Table(table.clone())
            .try_into()
            .map_err(|e: toml::de::Error| parse_err(format!("[experiment]: {e}")))?;
        let name = match exp.name {
            Some(n) if n.is_empty() => {
                return Err(ConfigError::invalid(
                    "experiment.name",
                    "must be a non-empty string",
                ))
            }
            Some(n) => n,
            None => Path::new(origin)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "run".into()),
        };
        table.insert("name".into(), name.clone().into());
        let eval = exp.eval.unwrap_or_default();
        eval.validate()?;
        let pretrain = exp
            .pretrain
            .map(|p| {
                TrainConfig::from_table(
                    merge(doc.clone(), &p),
                    &format!("{origin} [experiment.pretrain]"),
                )
            })
            .transpose()?;
        let tune = TrainConfig::from_table(doc, origin)?;
        Ok(Self {
            name,
            tune,
            pretrain,
            eval,
            experiment_table: table,
        })
    }

    /// Reads an experiment file.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string(), overrides)
    }

    /// The experiment as a file again: the tuning configuration with the `[experiment]` table.
    pub fn to_toml_string(&self) -> Result<String> {
        let mut doc = self.tune.to_toml_table()?;
        doc.insert(
            "experiment".into(),
            toml::Value::Table(self.experiment_table.clone()),
        );
        toml::to_string(&doc).map_err(|e| ConfigError::Parse {
            origin: "<serializing the experiment>".into(),
            message: e.to_string(),
        })
    }
}
