//! The experiment pipeline behind `cargo xtask train-ect`, `pretrain-dm`, `eval` and `sample`: find the
//! data, pretrain a diffusion model (cached), tune it with ECT, sample, score, report.
//!
//! A run root (`runs/<name>/` by default) holds `experiment.toml` (the resolved experiment), `pretrain`
//! (a link to the cached pretraining run), `tune/` (the ECT run), `eval/` (samples and scores),
//! `provenance.json`, `timings.json` and `report.md` with its PNGs. Every phase is resumable: a finished
//! training run is skipped, an interrupted one resumes from its checkpoint.

pub mod data;
pub mod provenance;
pub mod report;
pub mod spec;
pub mod sweep;

use crate::ect::{args, p, Ect};
use crate::libtorch;
use anyhow::{bail, Context};
use ect_config::train::{EvalConfig, ExtractorChoice, InitConfig};
use ect_config::{ExperimentConfig, TrainConfig};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Options shared by the experiment commands.
#[derive(Debug, Clone, clap::Args)]
pub struct ExperimentArgs {
    /// Experiment file (default: the embedded configs/fmnist-quick.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override a field, `key.path=value` (repeatable); `experiment.pretrain.*` and `experiment.eval.*`
    /// reach those tables.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Run root (default: `runs/<experiment name>`).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Train in N local processes (`ect train --nproc-per-node N`; `batch_size` stays the global batch).
    #[arg(long, value_name = "N")]
    pub nproc: Option<usize>,
}

/// Where caches go: `.cache/` in the workspace.
pub fn cache_dir() -> PathBuf {
    libtorch::workspace_root().join(".cache")
}

/// What scores samples: the feature network and the reference statistics.
#[derive(Debug, Clone)]
pub struct Scorer {
    /// The feature network (safetensors).
    pub net: PathBuf,
    /// Reference statistics (`.npz`, `mu`/`sigma`) of the test split.
    pub reference: PathBuf,
}

/// A prepared experiment: spec resolved, `ect` built, run root created.
pub struct Session {
    /// The experiment.
    pub spec: ExperimentConfig,
    /// The `ect` binary.
    pub ect: Ect,
    /// The run root.
    pub root: PathBuf,
    /// The dataset folder the runs read.
    pub data_path: PathBuf,
    /// Local processes per training run (`--nproc`).
    pub nproc: Option<usize>,
    timings: Vec<(String, f64)>,
}

impl Session {
    /// Loads the experiment, resolves its data, builds `ect`, creates the run root and writes the
    /// provenance record.
    pub fn open(a: &ExperimentArgs) -> anyhow::Result<Self> {
        let mut spec = match &a.config {
            Some(path) => ExperimentConfig::load(path, &a.set)?,
            None => ExperimentConfig::parse(
                spec::DEFAULT_EXPERIMENT,
                spec::DEFAULT_EXPERIMENT_PATH,
                &a.set,
            )?,
        };
        let ws = libtorch::workspace_root();
        let root = a
            .run_dir
            .clone()
            .unwrap_or_else(|| ws.join("runs").join(&spec.name));
        std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        let data_path = data::resolve(&mut spec.tune, &cache_dir().join("datasets"))?;
        if let Some(pre) = spec.pretrain.as_mut() {
            data::resolve(pre, &cache_dir().join("datasets"))?;
        }
        let ect = Ect::build(&libtorch::ensure()?)?;
        let info = ect.run_json(&args(["info", "--json"]))?;
        let record = provenance::record(&ws, &info, spec.tune.seed);
        write_json(&root.join("provenance.json"), &record)?;
        ect_config::atomic::write_atomic(
            &root.join("experiment.toml"),
            spec.to_toml_string()?.as_bytes(),
        )?;
        Ok(Self {
            spec,
            ect,
            root,
            data_path,
            nproc: a.nproc,
            timings: Vec::new(),
        })
    }

    fn timed<T>(
        &mut self,
        phase: &str,
        f: impl FnOnce(&Self) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let start = Instant::now();
        let out = f(self)?;
        self.timings
            .push((phase.to_owned(), start.elapsed().as_secs_f64()));
        let timings: serde_json::Map<String, Value> = self
            .timings
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        write_json(&self.root.join("timings.json"), &Value::Object(timings))?;
        Ok(out)
    }

    /// The pretraining run's directory (cached by content hash), when the experiment has one.
    pub fn pretrain_dir(&self) -> anyhow::Result<Option<PathBuf>> {
        let Some(pre) = self.spec.pretrain.as_ref() else {
            return Ok(None);
        };
        Ok(Some(cache_dir().join("pretrained").join(format!(
            "{}-{}",
            self.spec.name,
            spec::config_hash(pre)?
        ))))
    }

    /// Runs (or resumes, or reuses) the diffusion pretraining; returns its run directory.
    pub fn pretrain(&mut self) -> anyhow::Result<Option<PathBuf>> {
        let Some(dir) = self.pretrain_dir()? else {
            return Ok(None);
        };
        let cfg = self
            .spec
            .pretrain
            .clone()
            .expect("pretrain_dir implies a pretraining config");
        self.timed("pretrain", |s| train_or_resume(&s.ect, cfg, &dir, s.nproc))?;
        let link = self.root.join("pretrain");
        let _ = std::fs::remove_file(&link);
        #[cfg(unix)]
        std::os::unix::fs::symlink(&dir, &link)
            .with_context(|| format!("linking {}", link.display()))?;
        Ok(Some(dir))
    }

    /// Runs (or resumes) the ECT tuning, starting from `init` when given; returns its run directory.
    pub fn tune(&mut self, init: Option<&Path>) -> anyhow::Result<PathBuf> {
        let dir = self.root.join("tune");
        let mut cfg = self.spec.tune.clone();
        if let Some(init) = init {
            cfg.init = InitConfig::Run {
                path: init.to_path_buf(),
            };
        }
        if self.spec.eval.fd_every > 0 && cfg.eval.every == 0 {
            if let Some(scorer) = self.scorer(&self.root.join("eval"))? {
                cfg.eval = EvalConfig {
                    every: self.spec.eval.fd_every,
                    samples: self.spec.eval.fd_samples as usize,
                    extractor: Some(ExtractorChoice::FeatureNet {
                        weights: scorer.net.clone(),
                    }),
                    reference: Some(scorer.reference.clone()),
                    ..EvalConfig::default()
                };
            }
        }
        self.timed("tune", |s| train_or_resume(&s.ect, cfg, &dir, s.nproc))?;
        Ok(dir)
    }

    /// Samples and scores the tuned model (and the pretrained model, when there is one), then writes
    /// the report.
    pub fn evaluate(&mut self, tune: &Path, pretrain: Option<&Path>) -> anyhow::Result<Value> {
        let eval_dir = self.root.join("eval");
        std::fs::create_dir_all(&eval_dir)?;
        let e = self.spec.eval.clone();
        let mut jobs: Vec<(String, PathBuf, Vec<String>, u64)> = Vec::new();
        // Samples are named by the tuning run's objective: `ect_1step`, or `ict_1step` for a baseline.
        let objective = self.spec.tune.objective.name();
        for s in &e.steps {
            jobs.push((
                format!("{objective}_{s}step"),
                tune.to_path_buf(),
                args(["--steps".to_owned(), s.to_string()]),
                e.samples,
            ));
        }
        if let Some(pre) = pretrain {
            for s in &e.steps {
                let sampler = args(["--steps".to_owned(), s.to_string()]);
                jobs.push((
                    format!("pretrained_{s}step"),
                    pre.to_path_buf(),
                    sampler,
                    e.samples,
                ));
            }
            if e.heun_samples > 0 {
                let sampler = args(["--heun".to_owned(), e.heun_steps.to_string()]);
                jobs.push((
                    "pretrained_heun".to_owned(),
                    pre.to_path_buf(),
                    sampler,
                    e.heun_samples,
                ));
            }
        }
        let scorer = self.timed("feature_net", |s| s.scorer(&eval_dir))?;
        let mut scores = serde_json::Map::new();
        for (name, source, sampler, n) in jobs {
            let npy = eval_dir.join(format!("{name}.npy"));
            let png = eval_dir.join(format!("{name}.png"));
            let score = self.timed(&format!("sample_{name}"), |s| {
                s.sample_to(&source, &sampler, e.grid_images, e.seed, &png)?;
                s.sample_and_score(&source, &sampler, n, e.seed, &npy, scorer.as_ref())
            })?;
            scores.insert(name, score.unwrap_or(Value::Null));
        }
        let scores = Value::Object(scores);
        write_json(&eval_dir.join("scores.json"), &scores)?;
        report::write(&self.root, &self.data_path, tune, pretrain, &scores)?;
        Ok(scores)
    }

    /// The feature network and the reference statistics of the test split (computed once into
    /// `dir/reference_test.npz`), when the data has a built-in feature network.
    pub fn scorer(&self, dir: &Path) -> anyhow::Result<Option<Scorer>> {
        let Some(net) = self.feature_net()? else {
            return Ok(None);
        };
        let reference = dir.join("reference_test.npz");
        if !reference.exists() {
            std::fs::create_dir_all(dir)?;
            let mut a = args(["metrics", "stats", "--dataset"]);
            a.extend([
                p(&self.data_path),
                "--split".into(),
                "test".into(),
                "--feature-net".into(),
                p(&net),
            ]);
            let tmp = dir.join("reference_test.tmp.npz");
            a.extend(["--out".into(), p(&tmp)]);
            self.ect.run_json(&a)?;
            std::fs::rename(&tmp, &reference)
                .with_context(|| format!("writing {}", reference.display()))?;
        }
        Ok(Some(Scorer { net, reference }))
    }

    /// `ect sample` from the run `source` with `sampler` (e.g. `--steps 2`) into `out` (`.npy` or
    /// `.png`).
    pub fn sample_to(
        &self,
        source: &Path,
        sampler: &[String],
        n: u64,
        seed: u64,
        out: &Path,
    ) -> anyhow::Result<()> {
        let mut a = args(["sample", "--from"]);
        a.push(p(source));
        a.extend(sampler.iter().cloned());
        a.extend(args([
            "--n".to_owned(),
            n.to_string(),
            "--seed".to_owned(),
            seed.to_string(),
        ]));
        a.extend(args(["--out".to_owned(), p(out)]));
        self.ect.run(&a)
    }

    /// Samples `n` images into `npy` and scores them (`ect metrics score`) when there is a scorer.
    pub fn sample_and_score(
        &self,
        source: &Path,
        sampler: &[String],
        n: u64,
        seed: u64,
        npy: &Path,
        scorer: Option<&Scorer>,
    ) -> anyhow::Result<Option<Value>> {
        self.sample_to(source, sampler, n, seed, npy)?;
        let Some(scorer) = scorer else {
            return Ok(None);
        };
        let mut a = args(["metrics", "score", "--samples"]);
        a.extend([
            p(npy),
            "--feature-net".into(),
            p(&scorer.net),
            "--reference".into(),
            p(&scorer.reference),
        ]);
        self.ect.run_json(&a).map(Some)
    }

    /// The built-in Fashion-MNIST feature network (trained once, cached), when the data is 28x28
    /// grayscale; `None` for other data (score those with an Inception or DINOv2 detector: README).
    pub fn feature_net(&self) -> anyhow::Result<Option<PathBuf>> {
        if !ect_data::fmnist::is_fashion_mnist_dir(&self.data_path) {
            eprintln!(
                "xtask: no built-in feature network for {}: samples are written but not scored",
                self.data_path.display()
            );
            return Ok(None);
        }
        let path = cache_dir().join("feature-net/fmnist-featnet.safetensors");
        if !path.exists() {
            let mut a = args(["metrics", "train-feature-net", "--data"]);
            a.extend([p(&self.data_path), "--out".into(), p(&path)]);
            self.ect.run(&a)?;
        }
        Ok(Some(path))
    }
}

fn write_json(path: &Path, value: &Value) -> anyhow::Result<()> {
    ect_config::atomic::write_atomic(path, &serde_json::to_vec_pretty(value)?)?;
    Ok(())
}

/// Trains `cfg` into `dir`: skipped when a finished run of the same [`spec::weight_relevant`]
/// configuration is there, resumed when an interrupted one is, refused when `dir` holds a run of
/// another configuration. `nproc` local processes train it (`--nproc-per-node`) when given.
pub fn train_or_resume(
    ect: &Ect,
    mut cfg: TrainConfig,
    dir: &Path,
    nproc: Option<usize>,
) -> anyhow::Result<()> {
    let nproc: Vec<String> = nproc
        .map(|n| vec!["--nproc-per-node".to_owned(), n.to_string()])
        .unwrap_or_default();
    cfg.output.run_dir = dir.to_path_buf();
    let text = toml::to_string(&cfg.to_toml_table()?)?;
    let cfg_file = dir.with_extension("toml");
    let summary = dir.join("summary.json");
    if dir.join("config.json").exists() {
        let previous = TrainConfig::load(&cfg_file, &[])
            .ok()
            .and_then(|t| spec::weight_relevant(&t).ok());
        if previous.as_ref() != Some(&spec::weight_relevant(&cfg)?) {
            bail!(
                "{} holds a run of another configuration (see {}); remove it or pass --run-dir",
                dir.display(),
                cfg_file.display()
            );
        }
        if let Ok(s) = std::fs::read_to_string(&summary) {
            let v: Value = serde_json::from_str(&s).unwrap_or(Value::Null);
            if v["interrupted"] == Value::Bool(false) {
                eprintln!("xtask: {} is finished; reusing it", dir.display());
                return Ok(());
            }
        }
        let mut a = args(["resume"]);
        a.extend([p(dir), "--summary".into(), p(&summary)]);
        a.extend(nproc.iter().map(Into::into));
        return ect.run(&a);
    }
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    ect_config::atomic::write_atomic(&cfg_file, text.as_bytes())?;
    let mut a = args(["train", "--config"]);
    a.extend([p(&cfg_file), "--summary".into(), p(&summary)]);
    a.extend(nproc.iter().map(Into::into));
    ect.run(&a)
}

/// `cargo xtask train-ect`: the whole pipeline.
pub fn train_ect(a: &ExperimentArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut s = Session::open(a)?;
    let pre = s.pretrain()?;
    let tune = s.tune(pre.as_deref())?;
    let scores = s.evaluate(&tune, pre.as_deref())?;
    println!("{}", serde_json::to_string_pretty(&scores)?);
    eprintln!(
        "xtask: done in {:.1} min; report: {}",
        start.elapsed().as_secs_f64() / 60.0,
        s.root.join("report.md").display()
    );
    Ok(())
}

/// `cargo xtask pretrain-dm`: only the diffusion pretraining of an experiment.
pub fn pretrain_dm(a: &ExperimentArgs) -> anyhow::Result<()> {
    let mut s = Session::open(a)?;
    match s.pretrain()? {
        Some(dir) => {
            eprintln!("xtask: pretrained model: {}", dir.display());
            Ok(())
        }
        None => bail!("the experiment has no [experiment.pretrain] table"),
    }
}

/// `cargo xtask eval RUN_DIR`: samples, scores and the report of an existing run root.
pub fn eval(run_root: &Path, set: &[String]) -> anyhow::Result<()> {
    let config = run_root.join("experiment.toml");
    if !config.exists() {
        bail!(
            "{} is not a run root of `cargo xtask train-ect` (no experiment.toml)",
            run_root.display()
        );
    }
    let a = ExperimentArgs {
        config: Some(config),
        set: set.to_vec(),
        run_dir: Some(run_root.to_path_buf()),
        nproc: None,
    };
    let mut s = Session::open(&a)?;
    let tune = run_root.join("tune");
    let pre = s.pretrain_dir()?.filter(|d| d.exists());
    let scores = s.evaluate(&tune, pre.as_deref())?;
    println!("{}", serde_json::to_string_pretty(&scores)?);
    Ok(())
}
