//! Experiment files (the typed `ect_config::ExperimentConfig`: an `ect train` configuration plus an
//! `[experiment]` table) and the cache key of a pretraining run.

use anyhow::Context;
use ect_config::TrainConfig;
use sha2::{Digest, Sha256};

/// The default experiment of `cargo xtask train-ect`: the Fashion-MNIST quick preset.
pub const DEFAULT_EXPERIMENT: &str = include_str!("../../../configs/fmnist-quick.toml");
/// Where the default experiment lives in the repository (for messages).
pub const DEFAULT_EXPERIMENT_PATH: &str = "configs/fmnist-quick.toml";

/// A short content hash of a training configuration's [`weight_relevant`] part: the cache key of a
/// pretrained model.
pub fn config_hash(cfg: &TrainConfig) -> anyhow::Result<String> {
    let text = toml::to_string(&weight_relevant(cfg)?).context("serializing a configuration")?;
    let digest = Sha256::digest(text.as_bytes());
    Ok(digest.iter().take(6).map(|b| format!("{b:02x}")).collect())
}

/// The part of a training configuration that can change the trained weights: everything except the
/// thread count, `output` (paths and cadences), `sampling` (the sample grids), `eval` (periodic FD,
/// which leaves the weights alone) and, for an EDM run, the ECT stage `schedule`. Two runs with equal
/// weight-relevant parts are interchangeable (up to the float rounding of another thread count).
pub fn weight_relevant(cfg: &TrainConfig) -> anyhow::Result<toml::Table> {
    let mut kept = cfg.to_toml_table()?;
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
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ect_config::ExperimentConfig;

    const TEXT: &str = r#"
iterations = 10
batch_size = 8
[data]
path = "data"
[network]
network = "ECMPrecond"
img_resolution = 8
img_channels = 1
model_type = "SongUNet"
model_channels = 8
channel_mult = [1, 2]
num_blocks = 1
attn_resolutions = [4]
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

    fn parse(sets: &[&str]) -> ExperimentConfig {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        ExperimentConfig::parse(TEXT, "tiny.toml", &sets).unwrap()
    }

    fn dropout(cfg: &TrainConfig) -> f64 {
        cfg.network.model().unwrap().dropout()
    }

    #[test]
    fn splits_experiment_table_and_merges_pretrain() {
        let spec = parse(&[]);
        assert_eq!(spec.name, "tiny");
        assert_eq!(spec.tune.iterations, 10);
        let pre = spec.pretrain.unwrap();
        assert_eq!(pre.iterations, 30);
        assert_eq!(pre.batch_size, 8, "inherited from the tuning config");
        assert_eq!(
            pre.network.class_name(),
            "ECMPrecond",
            "merged, not replaced"
        );
        assert_eq!(dropout(&pre), 0.1);
        assert_eq!(pre.objective.name(), "edm");
        assert_eq!(spec.eval.samples, 100);
        assert_eq!(spec.eval.steps, vec![2]);
        assert_eq!(spec.eval.heun_samples, 2000, "default kept");
    }

    #[test]
    fn overrides_reach_tune_and_pretrain() {
        let spec = parse(&["iterations=99", "experiment.pretrain.iterations=7"]);
        assert_eq!(spec.tune.iterations, 99);
        assert_eq!(spec.pretrain.unwrap().iterations, 7);
    }

    #[test]
    fn unknown_experiment_fields_are_named() {
        let err = ExperimentConfig::parse(TEXT, "bad.toml", &["experiment.nmae=x".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("nmae"), "{err}");
        let err = ExperimentConfig::parse(TEXT, "bad.toml", &["experiment.eval.steps=[3]".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("steps may only hold 1 and 2"), "{err}");
    }

    #[test]
    fn hash_changes_with_content() {
        let a = parse(&[]);
        let b = parse(&["experiment.pretrain.iterations=31"]);
        assert_ne!(
            config_hash(a.pretrain.as_ref().unwrap()).unwrap(),
            config_hash(b.pretrain.as_ref().unwrap()).unwrap()
        );
        assert_eq!(config_hash(&a.tune).unwrap(), config_hash(&b.tune).unwrap());
    }

    #[test]
    fn hash_ignores_fields_that_leave_the_weights_alone() {
        let key = config_hash(parse(&[]).pretrain.as_ref().unwrap()).unwrap();
        for set in [
            "threads=1",
            "schedule.iters_per_stage=70",
            "output.checkpoint_every=7",
            "sampling.grid_images=16",
            "eval.samples=5",
        ] {
            let other = parse(&[set]);
            assert_eq!(
                config_hash(other.pretrain.as_ref().unwrap()).unwrap(),
                key,
                "{set}"
            );
        }
        for set in ["seed=3", "batch_size=16", "network.model_channels=16"] {
            let other = parse(&[set]);
            assert_ne!(
                config_hash(other.pretrain.as_ref().unwrap()).unwrap(),
                key,
                "{set}"
            );
        }
        // The stage schedule is part of an ECT run.
        let ect_a = parse(&[]).tune;
        let ect_b = parse(&["schedule.iters_per_stage=70"]).tune;
        assert_ne!(config_hash(&ect_a).unwrap(), config_hash(&ect_b).unwrap());
    }

    #[test]
    fn default_experiment_parses() {
        let spec =
            ExperimentConfig::parse(DEFAULT_EXPERIMENT, DEFAULT_EXPERIMENT_PATH, &[]).unwrap();
        assert!(spec.pretrain.is_some());
    }
}
