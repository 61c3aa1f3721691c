//! Experiment files: an `ect train` configuration (the ECT tuning run) plus an `[experiment]` table that
//! says what else the pipeline does (diffusion pretraining, evaluation). The `ect` binary never sees the
//! `[experiment]` table: xtask splits it off and hands `ect` plain training configurations.
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

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};
use std::path::Path;

/// The default experiment of `cargo xtask train-ect`: the Fashion-MNIST quick preset.
pub const DEFAULT_EXPERIMENT: &str = include_str!("../../../configs/fmnist-quick.toml");
/// Where the default experiment lives in the repository (for messages).
pub const DEFAULT_EXPERIMENT_PATH: &str = "configs/fmnist-quick.toml";

/// What the evaluation step does.
#[derive(Debug, Clone, PartialEq)]
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

/// A parsed experiment file.
#[derive(Debug, Clone)]
pub struct ExperimentSpec {
    /// Short name; the run directory defaults to `runs/<name>`.
    pub name: String,
    /// The tuning run's configuration (without `[experiment]`), overrides applied.
    pub tune: toml::Table,
    /// The pretraining run's configuration (tuning config merged with `[experiment.pretrain]`), if any.
    pub pretrain: Option<toml::Table>,
    /// Evaluation settings.
    pub eval: EvalSpec,
    /// The `[experiment]` table as written (overrides applied), to record the experiment.
    pub experiment_table: toml::Table,
}

impl ExperimentSpec {
    /// Parses experiment text; `origin` names it in errors. `overrides` (`key.path=value`) apply to the
    /// tuning run; `experiment.pretrain.key=value` and `experiment.eval.key=value` reach those tables.
    pub fn parse(text: &str, origin: &str, overrides: &[String]) -> anyhow::Result<Self> {
        let mut doc: toml::Table =
            toml::from_str(text).with_context(|| format!("parsing {origin}"))?;
        for item in overrides {
            apply_override(&mut doc, item).with_context(|| format!("applying --set {item}"))?;
        }
        let exp = match doc.remove("experiment") {
            Some(toml::Value::Table(t)) => t,
            Some(_) => bail!("{origin}: `experiment` must be a table"),
            None => toml::Table::new(),
        };
        let mut exp = exp;
        let name = match exp.get("name") {
            Some(toml::Value::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => bail!("{origin}: experiment.name must be a non-empty string"),
            None => Path::new(origin)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or("run".into()),
        };
        exp.insert("name".into(), name.clone().into());
        for key in exp.keys() {
            if !matches!(key.as_str(), "name" | "pretrain" | "eval") {
                bail!("{origin}: unknown field experiment.{key} (expected name, pretrain, eval)");
            }
        }
        let pretrain = match exp.get("pretrain") {
            Some(toml::Value::Table(p)) => Some(merge(doc.clone(), p)),
            Some(_) => bail!("{origin}: experiment.pretrain must be a table"),
            None => None,
        };
        let eval = match exp.get("eval") {
            Some(toml::Value::Table(e)) => {
                parse_eval(e).with_context(|| format!("{origin}: experiment.eval"))?
            }
            Some(_) => bail!("{origin}: experiment.eval must be a table"),
            None => EvalSpec::default(),
        };
        Ok(Self {
            name,
            tune: doc,
            pretrain,
            eval,
            experiment_table: exp,
        })
    }

    /// Reads an experiment file.
    pub fn load(path: &Path, overrides: &[String]) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text, &path.display().to_string(), overrides)
    }
}

fn parse_eval(t: &toml::Table) -> anyhow::Result<EvalSpec> {
    let mut e = EvalSpec::default();
    for (key, value) in t {
        let int = || -> anyhow::Result<u64> {
            value
                .as_integer()
                .filter(|v| *v >= 0)
                .map(|v| v as u64)
                .with_context(|| format!("{key} must be a non-negative integer"))
        };
        match key.as_str() {
            "samples" => e.samples = int()?,
            "heun_samples" => e.heun_samples = int()?,
            "heun_steps" => e.heun_steps = int()?,
            "seed" => e.seed = int()?,
            "grid_images" => e.grid_images = int()?,
            "fd_every" => e.fd_every = int()?,
            "fd_samples" => e.fd_samples = int()?,
            "steps" => {
                let arr = value.as_array().context("steps must be an array such as [1, 2]")?;
                e.steps = arr
                    .iter()
                    .map(|v| v.as_integer().filter(|s| (1..=2).contains(s)).map(|s| s as u64))
                    .collect::<Option<Vec<_>>>()
                    .context("steps may only hold 1 and 2")?;
            }
            other => bail!("unknown field {other} (expected samples, heun_samples, heun_steps, seed, steps, grid_images, fd_every, fd_samples)"),
        }
    }
    Ok(e)
}

/// Deep merge of `over` into `base`. A table with a `kind` key (a tagged choice such as the objective or
/// the optimizer) replaces the base table when the kinds differ, since fields of one kind are unknown to
/// another.
pub fn merge(mut base: toml::Table, over: &toml::Table) -> toml::Table {
    for (key, value) in over {
        match (base.get_mut(key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o))
                if b.get("kind") == o.get("kind") || o.get("kind").is_none() =>
            {
                let merged = merge(std::mem::take(b), o);
                *b = merged;
            }
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
    base
}

/// Applies one `key.path=value` override (value parsed as TOML, else taken as a string).
pub fn apply_override(doc: &mut toml::Table, item: &str) -> anyhow::Result<()> {
    let (key, value) = item.split_once('=').context("expected key.path=value")?;
    let path: Vec<&str> = key.trim().split('.').map(str::trim).collect();
    if path.iter().any(|s| s.is_empty()) {
        bail!("empty key segment in {key:?}");
    }
    let value = value.trim();
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    let mut table = doc;
    for seg in &path[..path.len() - 1] {
        let entry = table
            .entry(seg.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry
            .as_table_mut()
            .with_context(|| format!("`{seg}` is not a table"))?;
    }
    table.insert(path[path.len() - 1].to_owned(), parsed);
    Ok(())
}

/// A short content hash of a training configuration's [`weight_relevant`] part: the cache key of a
/// pretrained model.
pub fn config_hash(table: &toml::Table) -> String {
    let text = toml::to_string(&weight_relevant(table)).expect("a parsed TOML table serializes");
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// The part of a training configuration that can change the trained weights: everything except the
/// thread count, `output` (paths and cadences), `sampling` (the sample grids), `eval` (periodic FD,
/// which leaves the weights alone) and, for an EDM run, the ECT stage `schedule`. Two runs with equal
/// weight-relevant parts are interchangeable (up to the float rounding of another thread count).
pub fn weight_relevant(table: &toml::Table) -> toml::Table {
    let mut kept = table.clone();
    for key in ["threads", "output", "sampling", "eval"] {
        kept.remove(key);
    }
    let objective = kept
        .get("objective")
        .and_then(|o| o.get("kind"))
        .and_then(toml::Value::as_str);
    if objective == Some("edm") {
        kept.remove("schedule");
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
iterations = 10
batch_size = 8
[network]
network = "ECMPrecond"
dropout = 0.2
[objective]
kind = "ect"
weighting = "inv_dt"
[experiment]
name = "tiny"
[experiment.pretrain]
iterations = 30
network = { dropout = 0.1 }
objective = { kind = "edm" }
[experiment.eval]
samples = 100
steps = [2]
"#;

    #[test]
    fn splits_experiment_table_and_merges_pretrain() {
        let spec = ExperimentSpec::parse(TEXT, "tiny.toml", &[]).unwrap();
        assert_eq!(spec.name, "tiny");
        assert!(spec.tune.get("experiment").is_none());
        assert_eq!(spec.tune["iterations"].as_integer(), Some(10));
        let pre = spec.pretrain.unwrap();
        assert_eq!(pre["iterations"].as_integer(), Some(30));
        assert_eq!(
            pre["batch_size"].as_integer(),
            Some(8),
            "inherited from the tuning config"
        );
        assert_eq!(
            pre["network"]["network"].as_str(),
            Some("ECMPrecond"),
            "merged, not replaced"
        );
        assert_eq!(pre["network"]["dropout"].as_float(), Some(0.1));
        // A different objective kind replaces the table: no stray `weighting` for EDM.
        assert!(pre["objective"].get("weighting").is_none());
        assert_eq!(spec.eval.samples, 100);
        assert_eq!(spec.eval.steps, vec![2]);
        assert_eq!(spec.eval.heun_samples, 2000, "default kept");
    }

    #[test]
    fn overrides_reach_tune_and_pretrain() {
        let sets = [
            "iterations=99".to_owned(),
            "experiment.pretrain.iterations=7".to_owned(),
        ];
        let spec = ExperimentSpec::parse(TEXT, "tiny.toml", &sets).unwrap();
        assert_eq!(spec.tune["iterations"].as_integer(), Some(99));
        assert_eq!(spec.pretrain.unwrap()["iterations"].as_integer(), Some(7));
    }

    #[test]
    fn unknown_experiment_fields_are_named() {
        let err = ExperimentSpec::parse("[experiment]\nnmae = 'x'\n", "bad.toml", &[]).unwrap_err();
        assert!(format!("{err:#}").contains("experiment.nmae"), "{err:#}");
        let err =
            ExperimentSpec::parse("[experiment.eval]\nsteps = [3]\n", "bad.toml", &[]).unwrap_err();
        assert!(
            format!("{err:#}").contains("steps may only hold 1 and 2"),
            "{err:#}"
        );
    }

    #[test]
    fn hash_changes_with_content() {
        let a = ExperimentSpec::parse(TEXT, "t", &[]).unwrap();
        let b = ExperimentSpec::parse(TEXT, "t", &["experiment.pretrain.iterations=31".into()])
            .unwrap();
        assert_ne!(
            config_hash(a.pretrain.as_ref().unwrap()),
            config_hash(b.pretrain.as_ref().unwrap())
        );
        assert_eq!(config_hash(&a.tune), config_hash(&b.tune));
    }

    #[test]
    fn hash_ignores_fields_that_leave_the_weights_alone() {
        let base = ExperimentSpec::parse(TEXT, "t", &[]).unwrap();
        let key = config_hash(base.pretrain.as_ref().unwrap());
        for set in [
            "threads=1",
            "schedule.iters_per_stage=70",
            "output.checkpoint_every=7",
            "sampling.grid_images=16",
            "eval.every=5",
        ] {
            let other = ExperimentSpec::parse(TEXT, "t", &[set.into()]).unwrap();
            assert_eq!(config_hash(other.pretrain.as_ref().unwrap()), key, "{set}");
        }
        for set in ["seed=3", "batch_size=16", "network.model_channels=16"] {
            let other = ExperimentSpec::parse(TEXT, "t", &[set.into()]).unwrap();
            assert_ne!(config_hash(other.pretrain.as_ref().unwrap()), key, "{set}");
        }
        // The stage schedule is part of an ECT run.
        let ect_a = ExperimentSpec::parse(TEXT, "t", &[]).unwrap().tune;
        let ect_b = ExperimentSpec::parse(TEXT, "t", &["schedule.iters_per_stage=70".into()])
            .unwrap()
            .tune;
        assert_ne!(config_hash(&ect_a), config_hash(&ect_b));
    }

    #[test]
    fn default_experiment_parses() {
        let spec = ExperimentSpec::parse(DEFAULT_EXPERIMENT, DEFAULT_EXPERIMENT_PATH, &[]).unwrap();
        assert!(spec.pretrain.is_some());
    }
}
