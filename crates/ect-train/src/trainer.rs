//! The training loop: run directory, gradient accumulation, EMA, statistics, sample grids, checkpoints,
//! Ctrl-C, and exact resume (every random draw derives from `(seed, step)`; see [`crate::rng`]).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ect_schedule::{noise::LogNormal, stage::StageSchedule};
use rand::Rng;
use rand_distr::StandardNormal;
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::amp::{self, LossScaler, Precision};
use crate::checkpoint::{self, TrainState};
use crate::config::{parse_device, ObjectiveConfig, TrainConfig};
use crate::ema::Ema;
use crate::error::{Result, TrainError};
use crate::feeder::Feeder;
use crate::loss::{self, EctLoss, LossOutput};
use crate::net::Network;
use crate::optim::Optimizer;
use crate::periodic_eval::{EvalSampler, PeriodicEval};
use crate::rng::{self, Stream};
use crate::sample;

/// File of the resolved configuration in a run directory.
pub const CONFIG_FILE: &str = "config.json";
/// File of the per-interval statistics in a run directory.
pub const STATS_FILE: &str = "stats.jsonl";

/// Knobs of one invocation that are not part of the experiment (they do not change the results).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stop (with a checkpoint) once this many steps are done, as if interrupted; for tests and for
    /// splitting a run across sessions.
    pub stop_at_step: Option<u64>,
    /// Install a Ctrl-C handler that checkpoints and exits cleanly.
    pub handle_ctrl_c: bool,
    /// No progress bar or log lines.
    pub quiet: bool,
    /// A flag another thread may set to stop the run the same way Ctrl-C does.
    pub stop_flag: Option<Arc<AtomicBool>>,
}

/// What a finished (or interrupted) run reports.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Steps completed.
    pub steps: u64,
    /// Images drawn.
    pub images_seen: u64,
    /// Whether the run stopped before `iterations` (Ctrl-C or `stop_at_step`).
    pub interrupted: bool,
    /// Mean loss over the last logging interval.
    pub last_loss: f64,
    /// Steps skipped for a non-finite loss.
    pub nonfinite_steps: u64,
    /// Training images per second in this invocation.
    pub images_per_second: f64,
    /// The last checkpoint written.
    pub checkpoint: Option<PathBuf>,
}

static CTRL_C: AtomicBool = AtomicBool::new(false);
static CTRL_C_INSTALLED: std::sync::Once = std::sync::Once::new();

fn install_ctrl_c() {
    CTRL_C_INSTALLED.call_once(|| {
        // A second Ctrl-C while the checkpoint is written falls through to the default (kill) only if the
        // handler cannot be installed; then the user simply gets the default behaviour.
        let _ = ctrlc::set_handler(|| CTRL_C.store(true, Ordering::SeqCst));
    });
}

/// Starts a new run from `cfg` with `--set` style `overrides` already applied and validated. Refuses a run
/// directory that already holds checkpoints (use [`resume`]).
pub fn train(cfg: &TrainConfig, opts: &RunOptions) -> Result<RunSummary> {
    cfg.validate()?;
    let run_dir = cfg.output.run_dir.clone();
    if checkpoint::latest_checkpoint(&run_dir)?.is_some() {
        return Err(TrainError::invalid(
            "output.run_dir",
            format!(
                "{} already holds checkpoints; resume it or choose another directory",
                run_dir.display()
            ),
        ));
    }
    std::fs::create_dir_all(&run_dir).map_err(|e| TrainError::io(&run_dir, e))?;
    let json = serde_json::to_vec_pretty(cfg).expect("config serializes");
    sample::write_atomic(&run_dir.join(CONFIG_FILE), &json)?;
    let trainer = Trainer::new(cfg.clone(), run_dir.clone(), None)?;
    let meta = RunMeta::collect(cfg, &trainer.device, trainer.net.num_parameters());
    let json = serde_json::to_vec_pretty(&meta).expect("run metadata serializes");
    sample::write_atomic(&run_dir.join(META_FILE), &json)?;
    trainer.run(opts)
}

/// File of the provenance record in a run directory.
pub const META_FILE: &str = "run.json";

/// Provenance of a run: enough to reproduce it.
#[derive(Debug, Clone, Serialize)]
pub struct RunMeta {
    /// The seed.
    pub seed: u64,
    /// The device trained on, as libtorch names it.
    pub device: String,
    /// Number of trainable parameters.
    pub parameters: u64,
    /// This crate's version.
    pub ect_train_version: &'static str,
    /// `git rev-parse HEAD` of the working directory, when it is a git checkout.
    pub git_revision: Option<String>,
    /// Whether that checkout had uncommitted changes.
    pub git_dirty: Option<bool>,
    /// libtorch CPU threads in use.
    pub torch_threads: i32,
    /// Whether CUDA was available.
    pub cuda_available: bool,
}

impl RunMeta {
    fn collect(cfg: &TrainConfig, device: &Device, parameters: u64) -> Self {
        let git = |args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        };
        let git_revision = git(&["rev-parse", "HEAD"]);
        let git_dirty = git_revision
            .as_ref()
            .and(git(&["status", "--porcelain", "--untracked-files=no"]))
            .map(|s| !s.is_empty());
        Self {
            seed: cfg.seed,
            device: format!("{device:?}"),
            parameters,
            ect_train_version: env!("CARGO_PKG_VERSION"),
            git_revision,
            git_dirty,
            torch_threads: tch::get_num_threads(),
            cuda_available: tch::Cuda::is_available(),
        }
    }
}

/// Loads the TOML config at `path` with `overrides` and trains (the `ect train --config FILE --set ...`
/// entry point).
pub fn train_from_file(path: &Path, overrides: &[String], opts: &RunOptions) -> Result<RunSummary> {
    let cfg = TrainConfig::load(path, overrides)?;
    train(&cfg, opts)
}

/// Reads the resolved configuration of a run directory.
pub fn read_run_config(run_dir: &Path) -> Result<TrainConfig> {
    let path = run_dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    let cfg: TrainConfig = serde_json::from_str(&text).map_err(|e| TrainError::ConfigParse {
        origin: path.display().to_string(),
        message: e.to_string(),
    })?;
    cfg.validate()?;
    Ok(cfg)
}

/// Continues a run from its latest checkpoint (or from the start when it has none), with the
/// configuration recorded in the run directory; `iterations` may be raised to extend a finished run.
pub fn resume(run_dir: &Path, iterations: Option<u64>, opts: &RunOptions) -> Result<RunSummary> {
    let mut cfg = read_run_config(run_dir)?;
    if let Some(it) = iterations {
        cfg.iterations = it;
        cfg.validate()?;
        let json = serde_json::to_vec_pretty(&cfg).expect("config serializes");
        sample::write_atomic(&run_dir.join(CONFIG_FILE), &json)?;
    }
    let ckpt = checkpoint::latest_checkpoint(run_dir)?;
    Trainer::new(cfg, run_dir.to_path_buf(), ckpt.as_deref())?.run(opts)
}

/// Opens the configured dataset.
pub fn open_dataset(cfg: &TrainConfig) -> Result<Box<dyn ect_data::Dataset>> {
    let format = cfg
        .data
        .format
        .parse()
        .map_err(|e| TrainError::invalid("data.format", format!("{e}")))?;
    let split = cfg
        .data
        .split
        .parse()
        .map_err(|e| TrainError::invalid("data.split", format!("{e}")))?;
    let spec = ect_data::DatasetSpec {
        path: cfg.data.path.clone(),
        format,
        split,
        require_labels: cfg.data.conditional,
        resolution: cfg.data.resolution,
    };
    ect_data::open(&spec).map_err(|e| {
        TrainError::external(format!("opening data.path {}", cfg.data.path.display()), e)
    })
}

/// Sigma/time draws of one micro-batch.
enum Draw {
    Ect(Vec<f64>),
    Edm(Vec<f64>),
    Ict { t: Vec<f64>, r: Vec<f64> },
}

/// The iCT time grid for an iteration: Karras times (ascending, without the trailing 0) and the
/// probability of each adjacent pair.
struct IctGrid {
    n: u64,
    sigmas: Vec<f64>,
    probs: Vec<f64>,
}

struct Trainer {
    cfg: TrainConfig,
    run_dir: PathBuf,
    device: Device,
    net: Network,
    sampler_net: Network,
    opt: Optimizer,
    ema: Ema,
    feeder: Feeder,
    state: TrainState,
    stages: StageSchedule,
    label_dim: i64,
    ict: Option<IctGrid>,
    ict_c: f64,
    evaluator: Option<PeriodicEval>,
    scaler: Option<LossScaler>,
}

impl Trainer {
    fn new(cfg: TrainConfig, run_dir: PathBuf, ckpt: Option<&Path>) -> Result<Self> {
        let device = parse_device(&cfg.device)?;
        if cfg.threads > 0 {
            tch::set_num_threads(cfg.threads as i32);
        }
        let net_cfg = Network::parse_config(&cfg.network)?;
        rng::seed_torch(cfg.seed, 0, Stream::Init);
        let net = Network::new(&net_cfg, device)?;
        let sampler_net = Network::new(&net_cfg, device)?;
        let dataset = open_dataset(&cfg)?;
        let (c, h, w) = (
            dataset.channels() as i64,
            dataset.height() as i64,
            dataset.width() as i64,
        );
        if (c, h, w)
            != (
                net_cfg.img_channels(),
                net_cfg.img_resolution(),
                net_cfg.img_resolution(),
            )
        {
            return Err(TrainError::invalid(
                "network.img_resolution",
                format!(
                    "the network takes {}x{}x{} images, data.path holds {c}x{h}x{w}",
                    net_cfg.img_channels(),
                    net_cfg.img_resolution(),
                    net_cfg.img_resolution()
                ),
            ));
        }
        let label_dim = net_cfg.label_dim();
        if cfg.data.conditional && dataset.label_dim() as i64 > label_dim {
            return Err(TrainError::invalid(
                "network.label_dim",
                format!(
                    "is {label_dim}, the data has {} classes",
                    dataset.label_dim()
                ),
            ));
        }
        let mut state = TrainState {
            step: 0,
            optim_steps: 0,
            images_seen: 0,
            seed: cfg.seed,
            nonfinite_total: 0,
            nonfinite_run: 0,
            train_seconds: 0.0,
            loss_scale: None,
            overflow_total: 0,
        };
        let mut opt = Optimizer::new(&net.vs, &cfg.optimizer);
        let mut ema;
        match ckpt {
            Some(dir) => {
                state = checkpoint::read_state(dir)?;
                if state.seed != cfg.seed {
                    return Err(TrainError::Checkpoint {
                        path: dir.to_path_buf(),
                        message: format!(
                            "was written with seed {}, the config says {}",
                            state.seed, cfg.seed
                        ),
                    });
                }
                checkpoint::load_vars(&net.vs, &dir.join(checkpoint::MODEL_FILE))?;
                opt.load(&dir.join(checkpoint::OPTIM_FILE), state.optim_steps)?;
                ema = Ema::new(&net.vs, &cfg.ema);
                ema.load(dir)?;
            }
            None => {
                init_weights(&net, &cfg)?;
                ema = Ema::new(&net.vs, &cfg.ema);
            }
        }
        let feeder = Feeder::new(
            dataset,
            &cfg.data,
            cfg.seed,
            cfg.micro_batch_size() as usize,
            state.images_seen,
        )?;
        let stages = cfg.schedule.stages();
        let ict_c = match &cfg.objective {
            ObjectiveConfig::Ict { c: Some(c), .. } => *c,
            _ => ect_schedule::ict::pseudo_huber_c((c * h * w) as usize),
        };
        let evaluator = PeriodicEval::open(&cfg.eval, &run_dir, device)?;
        let scaler = match cfg.precision {
            Precision::Fp32 => None,
            Precision::Fp16 if !device.is_cuda() => {
                return Err(TrainError::invalid(
                    "precision",
                    format!("\"fp16\" is CUDA float16 autocast; the run's device is {device:?} (use \"fp32\")"),
                ))
            }
            Precision::Fp16 => Some(match state.loss_scale {
                Some(s) => LossScaler::with_state(&cfg.loss_scale, s),
                None => LossScaler::new(&cfg.loss_scale),
            }),
        };
        Ok(Self {
            evaluator,
            scaler,
            cfg,
            run_dir,
            device,
            net,
            sampler_net,
            opt,
            ema,
            feeder,
            state,
            stages,
            label_dim,
            ict: None,
            ict_c,
        })
    }

    fn labels(&self, classes: Option<&[i64]>) -> Option<Tensor> {
        if self.label_dim == 0 {
            return None;
        }
        classes
            .filter(|_| self.cfg.data.conditional)
            .map(|c| sample::one_hot(c, self.label_dim, self.device))
    }

    /// The iCT grid for iteration `step` (cached while `N` stays the same).
    fn ict_grid(&mut self, step: u64) -> &IctGrid {
        let ObjectiveConfig::Ict {
            p_mean,
            p_std,
            s0,
            s1,
            sigma_min,
            sigma_max,
            rho,
            ..
        } = self.cfg.objective
        else {
            unreachable!("only called for iCT")
        };
        let n = ect_schedule::ict::discretization_steps(step, self.cfg.iterations, s0, s1);
        if self.ict.as_ref().map(|g| g.n) != Some(n) {
            let sigmas = ect_schedule::ict::karras_ascending(n as usize, sigma_min, sigma_max, rho);
            let probs = ect_schedule::ict::index_probabilities(&sigmas, p_mean, p_std);
            self.ict = Some(IctGrid { n, sigmas, probs });
        }
        self.ict.as_ref().expect("set above")
    }

    fn draw(&mut self, step: u64, n: usize, rng: &mut rand_chacha::ChaCha8Rng) -> Draw {
        let normals = |rng: &mut rand_chacha::ChaCha8Rng| -> Vec<f64> {
            (0..n)
                .map(|_| rng.sample::<f64, _>(StandardNormal))
                .collect()
        };
        match self.cfg.objective.clone() {
            ObjectiveConfig::Ect { p_mean, p_std, .. } => {
                let ln = LogNormal { p_mean, p_std };
                Draw::Ect(
                    normals(rng)
                        .into_iter()
                        .map(|z| ln.t_from_normal(z))
                        .collect(),
                )
            }
            ObjectiveConfig::Edm { p_mean, p_std, .. } => {
                let ln = LogNormal { p_mean, p_std };
                Draw::Edm(
                    normals(rng)
                        .into_iter()
                        .map(|z| ln.t_from_normal(z))
                        .collect(),
                )
            }
            ObjectiveConfig::Ict { .. } => {
                let grid = self.ict_grid(step);
                let (mut t, mut r) = (Vec::with_capacity(n), Vec::with_capacity(n));
                for _ in 0..n {
                    let i = ect_schedule::ict::sample_index(&grid.probs, rng);
                    r.push(grid.sigmas[i]);
                    t.push(grid.sigmas[i + 1]);
                }
                Draw::Ict { t, r }
            }
        }
    }

    /// The ECT stage at `step`; 0 for the other objectives, which have no stages (iCT's curriculum
    /// is its own).
    fn stage_at(&self, step: u64) -> u32 {
        match self.cfg.objective {
            ObjectiveConfig::Ect { .. } => self.stages.stage_at(step),
            _ => 0,
        }
    }

    fn loss(&self, draw: &Draw, x0: &Tensor, labels: Option<&Tensor>, stage: u32) -> LossOutput {
        let eps = x0.randn_like();
        match (&self.cfg.objective, draw) {
            (
                ObjectiveConfig::Ect {
                    weighting,
                    c,
                    sigma_data,
                    ..
                },
                Draw::Ect(t),
            ) => EctLoss {
                mapping: self.cfg.schedule.mapping,
                q: self.cfg.schedule.q,
                weighting: *weighting,
                c: *c,
                sigma_data: *sigma_data,
            }
            .compute(&self.net, x0, labels, t, stage, &eps),
            (ObjectiveConfig::Edm { sigma_data, .. }, Draw::Edm(s)) => {
                loss::edm_loss(&self.net, x0, labels, s, &eps, *sigma_data)
            }
            (ObjectiveConfig::Ict { .. }, Draw::Ict { t, r }) => {
                loss::ict_loss(&self.net, x0, labels, t, r, &eps, self.ict_c)
            }
            _ => unreachable!("draw matches the objective"),
        }
    }

    fn checkpoint(&self) -> Result<PathBuf> {
        let net = &self.net;
        checkpoint::write_checkpoint(
            &self.run_dir,
            &self.state,
            self.cfg.output.keep_last,
            |dir| {
                checkpoint::save_vars(&net.vs, &dir.join(checkpoint::MODEL_FILE))?;
                self.opt.save(&dir.join(checkpoint::OPTIM_FILE))?;
                self.ema.save(dir)
            },
        )
    }

    /// Periodic FD of the first EMA track with every sampler of the run (`[eval]`): appends to
    /// `fd.jsonl` and returns a short summary for the log.
    fn run_eval(&mut self) -> Result<String> {
        let Some(evaluator) = &self.evaluator else {
            return Ok(String::new());
        };
        self.ema.copy_into(0, &self.sampler_net.vs)?;
        let s = &self.cfg.sampling;
        let samplers: Vec<EvalSampler> = match self.cfg.objective {
            ObjectiveConfig::Edm { .. } => vec![EvalSampler {
                name: "heun".into(),
                grid: sample::karras_grid(s.heun_steps, s.sigma_min, s.sigma_max, s.rho),
                heun: true,
            }],
            _ => s
                .grids
                .iter()
                .map(|g| EvalSampler {
                    name: format!("{}step", g.len() - 1),
                    grid: g.clone(),
                    heun: false,
                })
                .collect(),
        };
        let cfg = self.sampler_net.precond.config().clone();
        let shape = [
            cfg.img_channels(),
            cfg.img_resolution(),
            cfg.img_resolution(),
        ];
        let (label_dim, device) = (self.label_dim, self.device);
        let labels = move |first: i64, n: i64| {
            (label_dim > 0).then(|| {
                let classes: Vec<i64> = (first..first + n).map(|i| i % label_dim).collect();
                sample::one_hot(&classes, label_dim, device)
            })
        };
        let records = evaluator.evaluate(
            &self.sampler_net,
            &samplers,
            shape,
            &labels,
            self.cfg.seed,
            self.state.step,
            self.state.images_seen,
            self.device,
        )?;
        Ok(records
            .iter()
            .map(|r| format!("{} {} {:.2}", r.metric, r.sampler, r.fd))
            .collect::<Vec<_>>()
            .join(", "))
    }

    /// Sample grids from fixed noise with the first EMA track, named by step.
    fn write_samples(&mut self) -> Result<()> {
        self.ema.copy_into(0, &self.sampler_net.vs)?;
        let dir = self.run_dir.join("samples");
        let n = self.cfg.sampling.grid_images as i64;
        let cfg = self.sampler_net.precond.config().clone();
        let shape = [
            n,
            cfg.img_channels(),
            cfg.img_resolution(),
            cfg.img_resolution(),
        ];
        let classes: Vec<i64> = (0..n)
            .map(|i| {
                if self.label_dim > 0 {
                    i % self.label_dim
                } else {
                    0
                }
            })
            .collect();
        let labels =
            (self.label_dim > 0).then(|| sample::one_hot(&classes, self.label_dim, self.device));
        let step = self.state.step;
        rng::seed_torch(self.cfg.seed, 0, Stream::Samples);
        let z = Tensor::randn(shape, (Kind::Float, self.device));
        let outputs: Vec<(String, Tensor)> = match self.cfg.objective {
            ObjectiveConfig::Edm { .. } => {
                let s = &self.cfg.sampling;
                let grid = sample::karras_grid(s.heun_steps, s.sigma_min, s.sigma_max, s.rho);
                vec![(
                    "heun".to_owned(),
                    sample::heun_sample(&self.sampler_net, &z, labels.as_ref(), &grid),
                )]
            }
            _ => self
                .cfg
                .sampling
                .grids
                .iter()
                .map(|g| {
                    let name = format!("{}step", g.len() - 1);
                    let x = sample::consistency_sample(
                        &self.sampler_net,
                        &z,
                        labels.as_ref(),
                        g,
                        || z.randn_like(),
                    );
                    (name, x)
                })
                .collect(),
        };
        for (name, x) in outputs {
            sample::write_png_grid(
                &dir.join(format!("{name}-{step:09}.png")),
                &sample::to_u8(&x),
            )?;
        }
        Ok(())
    }

    fn run(mut self, opts: &RunOptions) -> Result<RunSummary> {
        if opts.handle_ctrl_c {
            install_ctrl_c();
        }
        let cfg = self.cfg.clone();
        let batch = cfg.batch_size as usize;
        let micro = cfg.micro_batch_size() as usize;
        let stats_path = self.run_dir.join(STATS_FILE);
        let mut stats_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stats_path)
            .map_err(|e| TrainError::io(&stats_path, e))?;
        let bar = (!opts.quiet && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(cfg.iterations);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
                )
                .expect("valid template"),
            );
            b.set_position(self.state.step);
            b
        });
        let start_step = self.state.step;
        let started = Instant::now();
        let seconds_before = self.state.train_seconds;
        let mut interval = Interval::default();
        let mut last_loss = f64::NAN;
        let mut last_ckpt = None;
        let mut interrupted = false;
        while self.state.step < cfg.iterations {
            let stop_requested = CTRL_C.load(Ordering::SeqCst)
                || opts
                    .stop_flag
                    .as_ref()
                    .is_some_and(|f| f.load(Ordering::SeqCst))
                || opts.stop_at_step.is_some_and(|s| self.state.step >= s);
            if stop_requested {
                interrupted = true;
                break;
            }
            let step = self.state.step;
            let stage = self.stage_at(step);
            let lr = cfg.optimizer.lr_at(step);
            let mut trng = rng::rng(cfg.seed, step, Stream::Times);
            rng::seed_torch(cfg.seed, step, Stream::Torch);
            let wait_before = self.feeder.wait_seconds();
            let step_start = Instant::now();
            self.opt.zero_grad();
            let mut loss_sum = 0f64;
            let (mut t_sum, mut r_sum, mut rt_sum) = (0f64, 0f64, 0f64);
            for _ in 0..batch / micro {
                let b = self.feeder.next_batch(self.device)?;
                let labels = self.labels(b.classes.as_deref());
                let draw = self.draw(step, micro, &mut trng);
                let out = amp::forward_in(cfg.precision, || {
                    self.loss(&draw, &b.images, labels.as_ref(), stage)
                });
                let l = amp::to_f32(&out.per_sample).sum(Kind::Float) / batch as f64;
                loss_sum += l.double_value(&[]);
                if loss_sum.is_finite() {
                    match &self.scaler {
                        Some(scaler) => (&l * scaler.scale()).backward(),
                        None => l.backward(),
                    }
                }
                t_sum += out.t.iter().sum::<f64>();
                r_sum += out.r.iter().sum::<f64>();
                rt_sum += out.mean_r_over_t() * micro as f64;
            }
            self.state.step += 1;
            self.state.images_seen = self.feeder.images_seen();
            // Mixed precision: a step whose scaled gradients overflowed is skipped and the scale backs
            // off; that is the scaler's normal operation, not divergence.
            let overflowed = loss_sum.is_finite()
                && match &mut self.scaler {
                    Some(scaler) => {
                        let finite = scaler.unscale(&mut self.opt.grads());
                        scaler.update(finite);
                        self.state.loss_scale = Some(scaler.state());
                        !finite
                    }
                    None => false,
                };
            if overflowed {
                self.opt.zero_grad();
                self.state.overflow_total += 1;
            } else if loss_sum.is_finite() {
                self.opt.sanitize_grads(cfg.optimizer.grad_clip);
                self.opt.step(lr);
                self.state.optim_steps = self.opt.step_count();
                self.ema
                    .update(&self.net.vs, self.state.step, cfg.batch_size);
                self.state.nonfinite_run = 0;
                interval.add(
                    loss_sum,
                    t_sum / batch as f64,
                    r_sum / batch as f64,
                    rt_sum / batch as f64,
                );
            } else {
                self.opt.zero_grad();
                self.state.nonfinite_total += 1;
                self.state.nonfinite_run += 1;
                if self.state.nonfinite_run >= cfg.output.max_nonfinite {
                    if let Some(b) = &bar {
                        b.abandon();
                    }
                    return Err(TrainError::Diverged {
                        count: self.state.nonfinite_run,
                        step: self.state.step,
                    });
                }
            }
            interval.seconds += step_start.elapsed().as_secs_f64();
            interval.wait += self.feeder.wait_seconds() - wait_before;
            interval.images += batch as u64;
            self.state.train_seconds = seconds_before + started.elapsed().as_secs_f64();

            let s = self.state.step;
            let every = |n: u64| n > 0 && s % n == 0;
            if every(cfg.output.log_every) || s == cfg.iterations {
                let rec = interval.record(&self.state, stage, lr);
                last_loss = rec.loss;
                let mut line = serde_json::to_string(&rec).expect("stats serialize");
                line.push('\n');
                stats_file
                    .write_all(line.as_bytes())
                    .map_err(|e| TrainError::io(&stats_path, e))?;
                let msg = format!(
                    "loss {:.4} stage {} r/t {:.3} lr {:.2e} {:.1} img/s",
                    rec.loss, rec.stage, rec.mean_r_over_t, rec.lr, rec.images_per_sec
                );
                match &bar {
                    Some(b) => b.set_message(msg),
                    None if !opts.quiet => eprintln!("step {s}/{} {msg}", cfg.iterations),
                    None => {}
                }
                interval = Interval::default();
            }
            if let Some(b) = &bar {
                b.set_position(s);
            }
            if every(cfg.output.sample_every) {
                self.write_samples()?;
            }
            if every(cfg.eval.every) {
                let summary = self.run_eval()?;
                match &bar {
                    Some(b) => b.println(format!("step {s}: {summary}")),
                    None if !opts.quiet => eprintln!("step {s}/{} {summary}", cfg.iterations),
                    None => {}
                }
            }
            if every(cfg.output.checkpoint_every) && s < cfg.iterations {
                last_ckpt = Some(self.checkpoint()?);
            }
        }
        if interval.images > 0 {
            let rec = interval.record(
                &self.state,
                self.stage_at(self.state.step),
                cfg.optimizer.lr_at(self.state.step),
            );
            last_loss = if rec.loss.is_finite() {
                rec.loss
            } else {
                last_loss
            };
            let mut line = serde_json::to_string(&rec).expect("stats serialize");
            line.push('\n');
            stats_file
                .write_all(line.as_bytes())
                .map_err(|e| TrainError::io(&stats_path, e))?;
        }
        if self.state.step > start_step || last_ckpt.is_none() {
            last_ckpt = Some(self.checkpoint()?);
        }
        let sampled_now =
            cfg.output.sample_every > 0 && self.state.step % cfg.output.sample_every == 0;
        if !interrupted && cfg.output.sample_every > 0 && !sampled_now {
            self.write_samples()?;
        }
        if !interrupted && cfg.eval.every > 0 && self.state.step % cfg.eval.every != 0 {
            let summary = self.run_eval()?;
            if !opts.quiet {
                eprintln!("step {} {summary}", self.state.step);
            }
        }
        if let Some(b) = &bar {
            b.finish();
        }
        let elapsed = started.elapsed().as_secs_f64();
        let done = self.state.step - start_step;
        if interrupted && !opts.quiet {
            eprintln!(
                "stopped at step {}; checkpoint written, resume with `ect resume {}`",
                self.state.step,
                self.run_dir.display()
            );
        }
        Ok(RunSummary {
            run_dir: self.run_dir.clone(),
            steps: self.state.step,
            images_seen: self.state.images_seen,
            interrupted,
            last_loss,
            nonfinite_steps: self.state.nonfinite_total,
            images_per_second: if elapsed > 0.0 {
                (done * cfg.batch_size) as f64 / elapsed
            } else {
                0.0
            },
            checkpoint: last_ckpt,
        })
    }
}

/// Loads the configured initial weights into `net` (random init needs nothing).
fn init_weights(net: &Network, cfg: &TrainConfig) -> Result<()> {
    match &cfg.init {
        crate::config::InitConfig::Random => Ok(()),
        crate::config::InitConfig::Weights { path } => checkpoint::load_vars(&net.vs, path),
        crate::config::InitConfig::Run { path } => {
            let ckpt = checkpoint::latest_checkpoint(path)?.ok_or_else(|| {
                TrainError::invalid(
                    "init.path",
                    format!("{} holds no checkpoint", path.display()),
                )
            })?;
            let other = read_run_config(path)?;
            let label = other
                .ema
                .labels()
                .into_iter()
                .next()
                .expect("at least one EMA track");
            checkpoint::load_vars(&net.vs, &ckpt.join(format!("{label}.safetensors")))
        }
    }
}

/// Accumulates one logging interval.
#[derive(Default)]
struct Interval {
    loss: f64,
    mean_t: f64,
    mean_r: f64,
    mean_rt: f64,
    counted: u64,
    images: u64,
    seconds: f64,
    wait: f64,
}

/// One line of `stats.jsonl`.
#[derive(Debug, Serialize)]
struct StatsRecord {
    step: u64,
    images_seen: u64,
    loss: f64,
    stage: u32,
    mean_t: f64,
    mean_r: f64,
    mean_r_over_t: f64,
    lr: f64,
    images_per_sec: f64,
    data_wait_fraction: f64,
    nonfinite_total: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    loss_scale: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    overflow_total: Option<u64>,
    peak_rss_mib: Option<f64>,
    train_seconds: f64,
}

impl Interval {
    fn add(&mut self, loss: f64, t: f64, r: f64, rt: f64) {
        self.loss += loss;
        self.mean_t += t;
        self.mean_r += r;
        self.mean_rt += rt;
        self.counted += 1;
    }

    fn record(&self, state: &TrainState, stage: u32, lr: f64) -> StatsRecord {
        let k = self.counted.max(1) as f64;
        StatsRecord {
            step: state.step,
            images_seen: state.images_seen,
            loss: if self.counted > 0 {
                self.loss / k
            } else {
                f64::NAN
            },
            stage,
            mean_t: self.mean_t / k,
            mean_r: self.mean_r / k,
            mean_r_over_t: self.mean_rt / k,
            lr,
            images_per_sec: if self.seconds > 0.0 {
                self.images as f64 / self.seconds
            } else {
                0.0
            },
            data_wait_fraction: if self.seconds > 0.0 {
                self.wait / self.seconds
            } else {
                0.0
            },
            nonfinite_total: state.nonfinite_total,
            loss_scale: state.loss_scale.map(|s| s.scale),
            overflow_total: state.loss_scale.map(|_| state.overflow_total),
            peak_rss_mib: peak_rss_mib(),
            train_seconds: state.train_seconds,
        }
    }
}

/// Peak resident memory of this process (Linux `VmHWM`), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    //! The loss-scaling path of mixed precision, exercised on the CPU: without CUDA the autocast is a
    //! no-op, so a scaled float32 run must give exactly the unscaled run's weights (power-of-two scales
    //! commute exactly with every floating-point operation of backprop), and an overflowing scale must
    //! skip steps and back off.
    use super::*;
    use crate::amp::{LossScaleConfig, LossScaler};

    fn write_idx(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        let mut bytes = vec![0, 0, 8, 3, 0, 0, 0, 32, 0, 0, 0, 8, 0, 0, 0, 8];
        let mut state = 7u32;
        for _ in 0..32 * 64 {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            bytes.push((state >> 24) as u8);
        }
        std::fs::write(dir.join("train-images-idx3-ubyte"), bytes).unwrap();
    }

    fn config(data: &Path, run: &Path) -> TrainConfig {
        let text = format!(
            "seed = 1\ndevice = \"cpu\"\nthreads = 1\niterations = 6\nbatch_size = 8\n\
             [data]\npath = \"{}\"\n\
             [network]\nnetwork = \"ECMPrecond\"\nimg_resolution = 8\nimg_channels = 1\n\
             model_type = \"SongUNet\"\nmodel_channels = 8\nchannel_mult = [1]\nnum_blocks = 1\n\
             attn_resolutions = []\ndropout = 0.1\n\
             [schedule]\niters_per_stage = 2\n\
             [output]\nrun_dir = \"{}\"\ncheckpoint_every = 0\nsample_every = 0\nlog_every = 1\n",
            data.display(),
            run.display()
        );
        TrainConfig::from_toml_str(&text, "<test>", &[]).unwrap()
    }

    fn run(data: &Path, run: &Path, scale: Option<LossScaleConfig>) -> (Vec<u8>, TrainState) {
        let cfg = config(data, run);
        std::fs::create_dir_all(run).unwrap();
        let mut trainer = Trainer::new(cfg, run.to_path_buf(), None).unwrap();
        trainer.scaler = scale.as_ref().map(LossScaler::new);
        let opts = RunOptions {
            quiet: true,
            ..RunOptions::default()
        };
        trainer.run(&opts).unwrap();
        let ckpt = checkpoint::latest_checkpoint(run).unwrap().unwrap();
        let state = checkpoint::read_state(&ckpt).unwrap();
        (
            std::fs::read(ckpt.join(checkpoint::MODEL_FILE)).unwrap(),
            state,
        )
    }

    #[test]
    fn loss_scaling_is_exact_and_overflow_backs_off() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        write_idx(&data);
        let (plain, plain_state) = run(&data, &tmp.path().join("plain"), None);
        assert_eq!(plain_state.loss_scale, None);

        let growing = LossScaleConfig {
            growth_interval: 2,
            ..LossScaleConfig::default()
        };
        let (scaled, state) = run(&data, &tmp.path().join("scaled"), Some(growing));
        assert_eq!(
            plain, scaled,
            "a power-of-two loss scale changed the weights"
        );
        let s = state.loss_scale.unwrap();
        // Six good steps with growth every two: 2^16 -> 2^19.
        assert_eq!(
            (s.scale, s.good_steps, state.overflow_total),
            (524_288.0, 0, 0)
        );

        // 2^127 overflows the float32 gradients: steps are skipped until the scale is small enough.
        let huge = LossScaleConfig {
            init: 2f64.powi(127),
            ..LossScaleConfig::default()
        };
        let (_, state) = run(&data, &tmp.path().join("overflow"), Some(huge));
        let s = state.loss_scale.unwrap();
        assert!(state.overflow_total >= 1, "{state:?}");
        assert_eq!(s.scale, 2f64.powi(127 - state.overflow_total as i32));
        assert_eq!(state.step, 6);
        assert_eq!(state.optim_steps, 6 - state.overflow_total);
        assert_eq!(state.nonfinite_total, 0, "overflow is not divergence");
    }
}
