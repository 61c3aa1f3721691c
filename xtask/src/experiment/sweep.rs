//! `cargo xtask scaling-sweep`: ECT tuning over a grid of training budgets x model sizes, FD against
//! training compute, and a power-law fit `FD = a * C^(-b)` per size and sampler.
//!
//! A sweep file names a base experiment (an `fmnist-quick.toml`-style file: the ECT run, its
//! `[experiment.pretrain]` and evaluation), the budgets (ECT iterations) and the sizes (each a list of
//! `--set` overrides applied to both the pretraining and the tuning run). Each size gets one pretrained
//! diffusion model (cached like `train-ect`'s); each point (size, budget) is one ECT run started from
//! it, sampled at 1 and 2 steps and scored. Results go to `runs/<name>/`:
//! - `<size>/b<budget>/tune/`: the run; `samples_<k>step.npy`: its samples (kept, so other evaluators
//!   can re-score them); `point.json`: the point's record (written last: its presence means "done");
//! - `sweep.csv`, `sweep.md`, `sweep.png` (log-log FD against FLOPs) and `fits.json`.
//!
//! Resumable: finished points are skipped; an interrupted point resumes from its checkpoint.

use super::{train_or_resume, write_json, ExperimentArgs, Scorer, Session};
use crate::plot::{self, Axes, Series};
use crate::powerlaw::{self, PowerLaw};
use anyhow::{bail, ensure, Context};
use ect_config::train::InitConfig;
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The embedded default sweep.
pub const DEFAULT_SWEEP: &str = include_str!("../../../configs/sweep-fmnist.toml");
/// Where the default sweep lives in the repository.
pub const DEFAULT_SWEEP_PATH: &str = "configs/sweep-fmnist.toml";

/// Options of `cargo xtask scaling-sweep`.
#[derive(Debug, Clone, clap::Args)]
pub struct SweepArgs {
    /// Sweep file (default: configs/sweep-fmnist.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override a field of the base experiment for every point, `key.path=value` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Run root (default: `runs/<sweep name>`).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Only these budgets (ECT iterations), comma-separated; the others of the file are skipped.
    #[arg(long, value_delimiter = ',')]
    pub budgets: Vec<u64>,
}

/// A sweep file's `[sweep]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// Name; the run root defaults to `runs/<name>`.
    pub name: String,
    /// The base experiment file, relative to the sweep file.
    pub experiment: PathBuf,
    /// ECT iterations of each point.
    pub budgets: Vec<u64>,
    /// Model sizes.
    pub sizes: Vec<SizeSpec>,
    /// Scale the stage period with the budget (`iters_per_stage * budget / iterations` of the base),
    /// so every point runs the whole schedule; otherwise every point uses the base's period.
    #[serde(default = "yes")]
    pub scale_stages: bool,
    /// Samples per sampler and point.
    #[serde(default = "default_samples")]
    pub samples: u64,
    /// Seed of the sampling noise.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Few-step samplers to score, by number of steps.
    #[serde(default = "default_steps")]
    pub steps: Vec<u64>,
}

/// One model size of a sweep.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeSpec {
    /// Short name (a folder name).
    pub name: String,
    /// `key.path=value` overrides of the base experiment (e.g. `network.model_channels=16`).
    #[serde(default)]
    pub set: Vec<String>,
}

fn yes() -> bool {
    true
}
fn default_samples() -> u64 {
    5000
}
fn default_seed() -> u64 {
    1
}
fn default_steps() -> Vec<u64> {
    vec![1, 2]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepFile {
    sweep: SweepSpec,
}

impl SweepSpec {
    /// Parses and validates sweep text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Self> {
        let file: SweepFile = toml::from_str(text).with_context(|| format!("parsing {origin}"))?;
        let s = file.sweep;
        ensure!(!s.budgets.is_empty(), "{origin}: sweep.budgets is empty");
        ensure!(
            s.budgets.iter().all(|&b| b > 0),
            "{origin}: sweep.budgets must be positive iteration counts, got {:?}",
            s.budgets
        );
        ensure!(!s.sizes.is_empty(), "{origin}: sweep.sizes is empty");
        let mut names: Vec<&str> = s.sizes.iter().map(|z| z.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        ensure!(
            names.len() == s.sizes.len(),
            "{origin}: sweep.sizes names must be unique"
        );
        for z in &s.sizes {
            ensure!(
                !z.name.is_empty()
                    && z.name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "{origin}: size name {:?} must be a plain folder name (letters, digits, - and _)",
                z.name
            );
        }
        ensure!(
            !s.steps.is_empty() && s.steps.iter().all(|k| (1..=2).contains(k)),
            "{origin}: sweep.steps may only hold 1 and 2, got {:?}",
            s.steps
        );
        ensure!(s.samples > 0, "{origin}: sweep.samples must be positive");
        Ok(s)
    }
}

/// One finished point of the sweep.
#[derive(Debug, Clone)]
pub struct Point {
    /// Size name.
    pub size: String,
    /// ECT iterations.
    pub budget: u64,
    /// Trainable parameters.
    pub parameters: u64,
    /// Images seen by the tuning run.
    pub images: u64,
    /// Training FLOPs of the tuning run.
    pub tune_flops: f64,
    /// Training FLOPs of the size's pretraining run (shared by its points).
    pub pretrain_flops: f64,
    /// FD by number of sampling steps.
    pub fd: Vec<(u64, f64)>,
    /// Seconds the tuning run trained.
    pub train_seconds: f64,
}

impl Point {
    fn from_json(v: &Value) -> anyhow::Result<Self> {
        let num = |k: &str| {
            v[k].as_f64()
                .with_context(|| format!("point.json: `{k}` missing"))
        };
        let fd = v["fd"]
            .as_object()
            .context("point.json: `fd` missing")?
            .iter()
            .map(|(k, x)| {
                let steps = k.trim_end_matches("step").parse::<u64>()?;
                Ok((steps, x.as_f64().context("fd must be a number")?))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            size: v["size"].as_str().context("point.json: `size`")?.into(),
            budget: num("budget")? as u64,
            parameters: num("parameters")? as u64,
            images: num("images")? as u64,
            tune_flops: num("tune_flops")?,
            pretrain_flops: num("pretrain_flops")?,
            fd,
            train_seconds: num("train_seconds")?,
        })
    }

    fn to_json(&self) -> Value {
        let fd: serde_json::Map<String, Value> = self
            .fd
            .iter()
            .map(|(k, x)| (format!("{k}step"), json!(x)))
            .collect();
        json!({
            "size": self.size, "budget": self.budget, "parameters": self.parameters,
            "images": self.images, "tune_flops": self.tune_flops,
            "pretrain_flops": self.pretrain_flops, "fd": fd, "train_seconds": self.train_seconds,
        })
    }

    /// FD at `steps` sampling steps, if scored.
    pub fn fd_at(&self, steps: u64) -> Option<f64> {
        self.fd.iter().find(|(k, _)| *k == steps).map(|p| p.1)
    }
}

/// `cargo xtask scaling-sweep`.
pub fn run(a: &SweepArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let (text, origin, base_dir) = match &a.config {
        Some(path) => (
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
            path.display().to_string(),
            path.parent().map(Path::to_path_buf).unwrap_or_default(),
        ),
        None => (
            DEFAULT_SWEEP.to_owned(),
            DEFAULT_SWEEP_PATH.to_owned(),
            crate::libtorch::workspace_root().join("configs"),
        ),
    };
    let sweep = SweepSpec::parse(&text, &origin)?;
    let budgets: Vec<u64> = if a.budgets.is_empty() {
        sweep.budgets.clone()
    } else {
        for b in &a.budgets {
            ensure!(
                sweep.budgets.contains(b),
                "--budgets {b} is not a budget of {origin} ({:?})",
                sweep.budgets
            );
        }
        a.budgets.clone()
    };
    let experiment = base_dir.join(&sweep.experiment);
    ensure!(
        experiment.exists(),
        "{origin}: sweep.experiment {} does not exist",
        experiment.display()
    );
    let root = a.run_dir.clone().unwrap_or_else(|| {
        crate::libtorch::workspace_root()
            .join("runs")
            .join(&sweep.name)
    });
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    write_atomic(&root.join("sweep.toml"), &text)?;
    let total = sweep.sizes.len() * budgets.len();
    let mut done = 0;
    for size in &sweep.sizes {
        let mut set = size.set.clone();
        set.extend(a.set.iter().cloned());
        let mut session = Session::open(&ExperimentArgs {
            config: Some(experiment.clone()),
            set,
            run_dir: Some(root.join(&size.name)),
            nproc: None,
        })?;
        let pretrain = session.pretrain()?;
        let scorer = session.scorer(&root)?;
        for &budget in &budgets {
            done += 1;
            let dir = root.join(&size.name).join(format!("b{budget}"));
            if dir.join("point.json").exists() {
                eprintln!(
                    "xtask: sweep point {done}/{total} ({}, {budget} iterations) is done; skipping",
                    size.name
                );
                continue;
            }
            eprintln!(
                "xtask: sweep point {done}/{total}: {}, {budget} ECT iterations ({:.1} min so far)",
                size.name,
                start.elapsed().as_secs_f64() / 60.0
            );
            let point = run_point(
                &session,
                &sweep,
                &size.name,
                budget,
                &dir,
                pretrain.as_deref(),
                scorer.as_ref(),
            )?;
            write_json(&dir.join("point.json"), &point.to_json())?;
        }
    }
    let points = collect_points(&root, &sweep)?;
    let fits = write_results(&root, &sweep, &points)?;
    println!("{}", serde_json::to_string_pretty(&fits)?);
    eprintln!(
        "xtask: sweep done in {:.1} min; {}",
        start.elapsed().as_secs_f64() / 60.0,
        root.join("sweep.md").display()
    );
    Ok(())
}

/// Trains, samples and scores one point.
fn run_point(
    session: &Session,
    sweep: &SweepSpec,
    size: &str,
    budget: u64,
    dir: &Path,
    pretrain: Option<&Path>,
    scorer: Option<&Scorer>,
) -> anyhow::Result<Point> {
    let mut cfg = session.spec.tune.clone();
    let base_iterations = cfg.iterations;
    cfg.iterations = budget;
    if sweep.scale_stages {
        if let Some(period) = cfg.schedule.iters_per_stage.filter(|p| *p > 0) {
            let scaled = ((period as f64) * budget as f64 / base_iterations as f64)
                .round()
                .max(1.0);
            cfg.schedule.iters_per_stage = Some(scaled as u64);
        }
    }
    // Checkpoints every tenth of the run, so an interrupted point loses little.
    cfg.output.checkpoint_every = (budget / 10).max(1);
    cfg.output.sample_every = 0;
    if let Some(init) = pretrain {
        cfg.init = InitConfig::Run {
            path: init.to_path_buf(),
        };
    }
    let tune = dir.join("tune");
    train_or_resume(&session.ect, cfg.clone(), &tune, session.nproc)?;
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(tune.join("summary.json"))
            .with_context(|| format!("reading {}/summary.json", tune.display()))?,
    )?;
    let images = summary["images_seen"]
        .as_u64()
        .context("summary: images_seen")?;
    let train_seconds = last_train_seconds(&tune).unwrap_or(f64::NAN);
    let flops = network_flops(session, &tune.with_extension("toml"))?;
    let pretrain_flops = match (pretrain, session.spec.pretrain.as_ref()) {
        (Some(_), Some(pre)) => {
            (pre.iterations * pre.batch_size) as f64 * flops.pretrain_step_per_image
        }
        _ => 0.0,
    };
    let mut fd = Vec::new();
    for &steps in &sweep.steps {
        let npy = dir.join(format!("samples_{steps}step.npy"));
        let sampler = vec!["--steps".to_owned(), steps.to_string()];
        let score =
            session.sample_and_score(&tune, &sampler, sweep.samples, sweep.seed, &npy, scorer)?;
        if let Some(v) = score.and_then(|s| s["fd"].as_f64()) {
            fd.push((steps, v));
        }
    }
    Ok(Point {
        size: size.to_owned(),
        budget,
        parameters: flops.parameters,
        images,
        tune_flops: images as f64 * flops.tune_step_per_image,
        pretrain_flops,
        fd,
        train_seconds,
    })
}

/// Training FLOPs per image from `ect flops`.
struct NetworkFlops {
    parameters: u64,
    tune_step_per_image: f64,
    pretrain_step_per_image: f64,
}

fn network_flops(session: &Session, config: &Path) -> anyhow::Result<NetworkFlops> {
    let v = session.ect.run_json(&crate::ect::args([
        "flops",
        "--config",
        &crate::ect::p(config),
    ]))?;
    let get = |k: &str| {
        v[k].as_f64()
            .with_context(|| format!("`ect flops` printed no `{k}`: {v}"))
    };
    Ok(NetworkFlops {
        parameters: get("parameters")? as u64,
        tune_step_per_image: get("train_step_flops_per_image")?,
        pretrain_step_per_image: get("diffusion_step_flops_per_image")?,
    })
}

/// `train_seconds` of the last line of a run's `stats.jsonl`.
fn last_train_seconds(run: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(run.join("stats.jsonl")).ok()?;
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?;
    serde_json::from_str::<Value>(line).ok()?["train_seconds"].as_f64()
}

/// Every finished point under `root` for the sweep's sizes and budgets, in sweep order.
fn collect_points(root: &Path, sweep: &SweepSpec) -> anyhow::Result<Vec<Point>> {
    let mut points = Vec::new();
    for size in &sweep.sizes {
        for budget in &sweep.budgets {
            let path = root.join(&size.name).join(format!("b{budget}/point.json"));
            if let Ok(text) = std::fs::read_to_string(&path) {
                let v: Value = serde_json::from_str(&text)
                    .with_context(|| format!("parsing {}", path.display()))?;
                points.push(Point::from_json(&v).with_context(|| path.display().to_string())?);
            }
        }
    }
    Ok(points)
}

/// A fit of one size and sampler.
#[derive(Debug, Clone)]
pub struct Fit {
    /// Size name.
    pub size: String,
    /// Sampling steps.
    pub steps: u64,
    /// The law.
    pub law: PowerLaw,
}

/// Fits `FD = a * C^(-b)` (C: tuning FLOPs) per size and sampler; sizes with fewer than two points
/// are left out.
pub fn fit_points(points: &[Point], sweep: &SweepSpec) -> Vec<Fit> {
    let mut fits = Vec::new();
    for size in &sweep.sizes {
        for &steps in &sweep.steps {
            let xy: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.size == size.name)
                .filter_map(|p| Some((p.tune_flops, p.fd_at(steps)?)))
                .collect();
            if let Ok(law) = powerlaw::fit(&xy) {
                fits.push(Fit {
                    size: size.name.clone(),
                    steps,
                    law,
                });
            }
        }
    }
    fits
}

/// Writes `sweep.csv`, `sweep.md`, `sweep.png` and `fits.json`; returns the fits as JSON.
pub fn write_results(root: &Path, sweep: &SweepSpec, points: &[Point]) -> anyhow::Result<Value> {
    if points.is_empty() {
        bail!("no finished sweep point under {}", root.display());
    }
    let mut csv = String::from(
        "size,budget_iterations,parameters,images_seen,tune_flops,pretrain_flops,fd_1step,fd_2step,train_seconds\n",
    );
    let fmt = |x: Option<f64>| x.map(|v| format!("{v:.4}")).unwrap_or_default();
    for p in points {
        csv.push_str(&format!(
            "{},{},{},{},{:.0},{:.0},{},{},{:.1}\n",
            p.size,
            p.budget,
            p.parameters,
            p.images,
            p.tune_flops,
            p.pretrain_flops,
            fmt(p.fd_at(1)),
            fmt(p.fd_at(2)),
            p.train_seconds
        ));
    }
    write_atomic(&root.join("sweep.csv"), &csv)?;
    let fits = fit_points(points, sweep);
    let mut md = format!(
        "# Scaling sweep `{}`\n\nECT tuning FD against training compute (FLOPs = 2 x multiply-accumulates of the \
         network's convolutions, linear layers and attention, per training step and image, times images seen; \
         pretraining compute listed separately).\n\n\
         | size | params | ECT iterations | images | tuning FLOPs | pretraining FLOPs | FD 1-step | FD 2-step | train s |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        sweep.name
    );
    for p in points {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {:.3e} | {:.3e} | {} | {} | {:.0} |\n",
            p.size,
            p.parameters,
            p.budget,
            p.images,
            p.tune_flops,
            p.pretrain_flops,
            fmt(p.fd_at(1)),
            fmt(p.fd_at(2)),
            p.train_seconds
        ));
    }
    md.push_str("\n## Fits `FD = a * C^(-b)` (least squares in log-log space)\n\n| size | steps | a | b | R^2 | points |\n|---|---|---|---|---|---|\n");
    for f in &fits {
        md.push_str(&format!(
            "| {} | {} | {:.4e} | {:.4} | {:.4} | {} |\n",
            f.size, f.steps, f.law.a, f.law.b, f.law.r2, f.law.n
        ));
    }
    md.push_str("\n![FD against compute](sweep.png)\n");
    write_atomic(&root.join("sweep.md"), &md)?;
    let mut series = Vec::new();
    for size in &sweep.sizes {
        for &steps in &sweep.steps {
            let pts: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.size == size.name)
                .filter_map(|p| Some((p.tune_flops, p.fd_at(steps)?)))
                .collect();
            if pts.is_empty() {
                continue;
            }
            // A measured series and its fit share a colour.
            let color = Some(series.iter().filter(|s: &&Series| s.markers).count());
            series.push(Series {
                label: format!("{} {steps}-step", size.name),
                points: pts.clone(),
                markers: true,
                color,
            });
            if let Some(f) = fits
                .iter()
                .find(|f| f.size == size.name && f.steps == steps)
            {
                let (lo, hi) = pts.iter().fold((f64::INFINITY, 0f64), |(lo, hi), p| {
                    (lo.min(p.0), hi.max(p.0))
                });
                let line: Vec<(f64, f64)> = (0..=20)
                    .map(|i| {
                        let c = lo * (hi / lo).powf(i as f64 / 20.0);
                        (c, f.law.predict(c))
                    })
                    .collect();
                series.push(Series {
                    label: format!("fit: b = {:.3}, R^2 = {:.3}", f.law.b, f.law.r2),
                    points: line,
                    markers: false,
                    color,
                });
            }
        }
    }
    plot::line_plot(
        &root.join("sweep.png"),
        &Axes {
            title: format!("{}: FD against ECT training compute", sweep.name),
            x_label: "tuning compute (FLOPs)".into(),
            y_label: "FD (feature net, lower is better)".into(),
            log_x: true,
            log_y: true,
        },
        &series,
    )?;
    let fits_json = Value::Array(
        fits.iter()
            .map(|f| {
                json!({"size": f.size, "steps": f.steps, "a": f.law.a, "b": f.law.b, "r2": f.law.r2, "points": f.law.n})
            })
            .collect(),
    );
    write_json(&root.join("fits.json"), &fits_json)?;
    Ok(fits_json)
}

fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    Ok(ect_config::atomic::write_atomic(path, text.as_bytes())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sweep() -> SweepSpec {
        SweepSpec::parse(DEFAULT_SWEEP, DEFAULT_SWEEP_PATH).unwrap()
    }

    #[test]
    fn default_sweep_has_at_least_four_budgets_and_two_sizes() {
        let s = sweep();
        assert!(s.budgets.len() >= 4, "{:?}", s.budgets);
        assert!(s.sizes.len() >= 2);
        let base = crate::libtorch::workspace_root()
            .join("configs")
            .join(&s.experiment);
        assert!(base.exists(), "{}", base.display());
    }

    #[test]
    fn bad_sweeps_name_the_problem() {
        let err = |text: &str| SweepSpec::parse(text, "s.toml").unwrap_err().to_string();
        let base = "[sweep]\nname = \"s\"\nexperiment = \"e.toml\"\n";
        let sizes = "[[sweep.sizes]]\nname = \"a\"\n";
        assert!(err(&format!("{base}budgets = []\n{sizes}")).contains("budgets is empty"));
        assert!(err(&format!("{base}budgets = [0]\n{sizes}")).contains("positive"));
        assert!(err(&format!("{base}budgets = [1]\nsizes = []\n")).contains("sizes is empty"));
        assert!(err(&format!("{base}budgets = [1]\nsteps = [3]\n{sizes}")).contains("steps"));
        assert!(err(&format!(
            "{base}budgets = [1]\n[[sweep.sizes]]\nname = \"../x\"\n"
        ))
        .contains("folder name"));
        assert!(err(&format!("{base}budgets = [1]\n{sizes}{sizes}")).contains("unique"));
        let unknown = SweepSpec::parse(
            &format!("{base}budgets = [1]\nbudget = 3\n{sizes}"),
            "s.toml",
        )
        .unwrap_err();
        assert!(format!("{unknown:#}").contains("budget"), "{unknown:#}");
    }

    fn point(size: &str, budget: u64, c: f64, fd1: f64, fd2: f64) -> Point {
        Point {
            size: size.into(),
            budget,
            parameters: 10,
            images: budget * 64,
            tune_flops: c,
            pretrain_flops: 1e12,
            fd: vec![(1, fd1), (2, fd2)],
            train_seconds: 1.0,
        }
    }

    #[test]
    fn results_fit_exact_power_laws_and_round_trip() {
        let text = "[sweep]\nname = \"t\"\nexperiment = \"e.toml\"\nbudgets = [1, 2, 4, 8]\n\
                    [[sweep.sizes]]\nname = \"small\"\n[[sweep.sizes]]\nname = \"big\"\n";
        let s = SweepSpec::parse(text, "t.toml").unwrap();
        let mut points = Vec::new();
        for (i, budget) in [1u64, 2, 4, 8].into_iter().enumerate() {
            let c = 1e12 * 2f64.powi(i as i32);
            // small: FD = 3e3 C^-0.1 (1-step), 2e3 C^-0.2 (2-step); big: 5e4 C^-0.25.
            points.push(point(
                "small",
                budget,
                c,
                3e3 * c.powf(-0.1),
                2e3 * c.powf(-0.2),
            ));
            points.push(point(
                "big",
                budget,
                c,
                5e4 * c.powf(-0.25),
                5e4 * c.powf(-0.25),
            ));
        }
        let fits = fit_points(&points, &s);
        assert_eq!(fits.len(), 4);
        let get = |size: &str, steps| {
            fits.iter()
                .find(|f| f.size == size && f.steps == steps)
                .unwrap()
                .law
        };
        assert!((get("small", 1).b - 0.1).abs() < 1e-12);
        assert!((get("small", 2).b - 0.2).abs() < 1e-12);
        assert!((get("big", 2).a / 5e4 - 1.0).abs() < 1e-9);
        assert!((get("big", 1).r2 - 1.0).abs() < 1e-12);
        let dir = tempfile::tempdir().unwrap();
        write_results(dir.path(), &s, &points).unwrap();
        let csv = std::fs::read_to_string(dir.path().join("sweep.csv")).unwrap();
        assert_eq!(csv.lines().count(), 9);
        assert!(csv.starts_with("size,budget_iterations"));
        let md = std::fs::read_to_string(dir.path().join("sweep.md")).unwrap();
        assert!(
            md.contains("| small | 2 | 2.0000e3 | 0.2000 | 1.0000 | 4 |"),
            "{md}"
        );
        let png = std::fs::read(dir.path().join("sweep.png")).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        // point.json round trip
        let p = &points[3];
        let back = Point::from_json(&p.to_json()).unwrap();
        assert_eq!(
            (back.size.as_str(), back.budget),
            (p.size.as_str(), p.budget)
        );
        assert_eq!(back.fd_at(2), p.fd_at(2));
    }
}
