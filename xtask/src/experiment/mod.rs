//! The experiment pipeline behind `cargo xtask train-ect`, `pretrain-dm`, `eval` and `sample`: find the
//! data, pretrain a diffusion model (cached), tune it with ECT, sample, score, report.
//!
//! A run root (`runs/<name>/` by default) holds `experiment.toml` (the resolved experiment), `pretrain`
//! (a link to the cached pretraining run), `tune/` (the ECT run), `eval/` (samples and scores),
//! `provenance.json`, `timings.json` and `report.md` with its PNGs. Every phase is resumable: a finished
//! training run is skipped, an interrupted one resumes from its checkpoint.

pub mod data;
pub mod ect;
pub mod provenance;
pub mod report;
pub mod spec;
pub mod sweep;

use crate::{ect_bin, libtorch};
use anyhow::{bail, Context};
use ect::{args, p, Ect};
use serde_json::{json, Value};
use spec::ExperimentSpec;
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
    /// Run root (default: runs/<experiment name>).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
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
    pub spec: ExperimentSpec,
    /// The `ect` binary.
    pub ect: Ect,
    /// The run root.
    pub root: PathBuf,
    /// The dataset folder the runs read.
    pub data_path: PathBuf,
    timings: Vec<(String, f64)>,
}

impl Session {
    /// Loads the experiment, resolves its data, builds `ect`, creates the run root and writes the
    /// provenance record.
    pub fn open(a: &ExperimentArgs) -> anyhow::Result<Self> {
        let mut spec = match &a.config {
            Some(path) => ExperimentSpec::load(path, &a.set)?,
            None => ExperimentSpec::parse(
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
        let torch = libtorch::ensure()?;
        let ect = Ect::new(ect_bin::build(&torch)?);
        let info = ect.run_json(&args(["info", "--json"]))?;
        let seed = spec.tune.get("seed").and_then(|v| v.as_integer());
        let record = provenance::record(&ws, &info, seed);
        write_json(&root.join("provenance.json"), &record)?;
        let mut experiment = spec.tune.clone();
        experiment.insert(
            "experiment".into(),
            toml::Value::Table(spec.experiment_table.clone()),
        );
        std::fs::write(root.join("experiment.toml"), toml::to_string(&experiment)?)?;
        Ok(Self {
            spec,
            ect,
            root,
            data_path,
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
    pub fn pretrain_dir(&self) -> Option<PathBuf> {
        let pre = self.spec.pretrain.as_ref()?;
        Some(cache_dir().join("pretrained").join(format!(
            "{}-{}",
            self.spec.name,
            spec::config_hash(pre)
        )))
    }

    /// Runs (or resumes, or reuses) the diffusion pretraining; returns its run directory.
    pub fn pretrain(&mut self) -> anyhow::Result<Option<PathBuf>> {
        let Some(dir) = self.pretrain_dir() else {
            return Ok(None);
        };
        let cfg = self
            .spec
            .pretrain
            .clone()
            .expect("pretrain_dir implies a pretraining config");
        self.timed("pretrain", |s| train_or_resume(&s.ect, cfg, &dir))?;
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
            let mut t = toml::Table::new();
            t.insert("kind".into(), "run".into());
            t.insert("path".into(), p(init).into());
            cfg.insert("init".into(), toml::Value::Table(t));
        }
        if self.spec.eval.fd_every > 0 && !cfg.contains_key("eval") {
            if let Some(scorer) = self.scorer(&self.root.join("eval"))? {
                let mut extractor = toml::Table::new();
                extractor.insert("kind".into(), "feature-net".into());
                extractor.insert("weights".into(), p(&scorer.net).into());
                let mut t = toml::Table::new();
                t.insert("every".into(), (self.spec.eval.fd_every as i64).into());
                t.insert("samples".into(), (self.spec.eval.fd_samples as i64).into());
                t.insert("extractor".into(), toml::Value::Table(extractor));
                t.insert("reference".into(), p(&scorer.reference).into());
                cfg.insert("eval".into(), toml::Value::Table(t));
            }
        }
        self.timed("tune", |s| train_or_resume(&s.ect, cfg, &dir))?;
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
        let objective = self
            .spec
            .tune
            .get("objective")
            .and_then(|o| o.get("kind"))
            .and_then(toml::Value::as_str)
            .unwrap_or("ect")
            .to_owned();
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
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(value)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Trains `cfg` into `dir`: skipped when a finished run of the same [`spec::weight_relevant`]
/// configuration is there, resumed when an interrupted one is, refused when `dir` holds a run of
/// another configuration.
pub fn train_or_resume(ect: &Ect, mut cfg: toml::Table, dir: &Path) -> anyhow::Result<()> {
    let output = cfg
        .entry("output")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    output
        .as_table_mut()
        .context("`output` must be a table")?
        .insert("run_dir".into(), p(dir).into());
    let text = toml::to_string(&cfg)?;
    let cfg_file = dir.with_extension("toml");
    let summary = dir.join("summary.json");
    if dir.join("config.json").exists() {
        let previous = std::fs::read_to_string(&cfg_file)
            .ok()
            .and_then(|t| t.parse::<toml::Table>().ok())
            .map(|t| spec::weight_relevant(&t));
        if previous.as_ref() != Some(&spec::weight_relevant(&cfg)) {
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
        return ect.run(&a);
    }
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&cfg_file, &text).with_context(|| format!("writing {}", cfg_file.display()))?;
    let mut a = args(["train", "--config"]);
    a.extend([p(&cfg_file), "--summary".into(), p(&summary)]);
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
    };
    let mut s = Session::open(&a)?;
    let tune = run_root.join("tune");
    let pre = s.pretrain_dir().filter(|d| d.exists());
    let scores = s.evaluate(&tune, pre.as_deref())?;
    println!("{}", serde_json::to_string_pretty(&scores)?);
    Ok(())
}
