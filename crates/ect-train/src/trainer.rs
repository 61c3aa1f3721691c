//! The training loop: [`Trainer::step`] is one optimizer step (micro-batches, the objective's loss,
//! backward, the gradient path, optimizer, EMA); [`Trainer::run`] is only the cadence around it (logs,
//! sample grids, periodic evaluation, checkpoints, stopping). Every random draw derives from
//! `(seed, step)` (see [`crate::rng`]), so a resumed run draws exactly what an uninterrupted one would.
//!
//! Data-parallel runs ([`crate::parallel`]): each step draws the noise levels and the noise `eps` of the
//! whole global batch on every rank, and each rank computes the samples of its shard, so every sample
//! gets the same data, levels and noise whatever the number of processes; only dropout masks differ
//! per rank (seeded from `(seed, step, rank)`). Gradients are summed over the ranks in the gradient
//! path; rank 0 alone writes (stats, grids, evaluations, checkpoints) while the others wait for it.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use ect_config::TrainConfig;
use ect_dist::{Dist, DEFAULT_BUCKET_BYTES};
use tch::{Device, Kind, Tensor};

use crate::amp::{self, LossScaler, Precision};
use crate::checkpoint::{self, TrainState};
use crate::ema::Ema;
use crate::error::{Result, TrainError};
use crate::feeder::{open_dataset, Feeder, Shard};
use crate::grad::{GradOutcome, GradientPath};
use crate::images::{to_u8, write_png_grid};
use crate::net::Network;
use crate::objective::{self, NoiseLevels, Objective};
use crate::optim::Optimizer;
use crate::periodic_eval::PeriodicEval;
use crate::progress::Progress;
use crate::rng::{self, Stream};
use crate::session::{RunOptions, RunSummary};
use crate::stats::{Interval, StatsLog, StepOutcome, StepReport};
use crate::{labels, parallel, signals};

/// A run in progress: the network, its optimizer and averages, the data, the objective and the counters.
pub struct Trainer {
    cfg: TrainConfig,
    run_dir: PathBuf,
    device: Device,
    net: Network,
    sampler_net: Network,
    opt: Optimizer,
    ema: Ema,
    feeder: Feeder,
    state: TrainState,
    objective: Box<dyn Objective>,
    grads: GradientPath,
    evaluator: Option<PeriodicEval>,
    dist: Dist,
    shard: Shard,
    micro: usize,
}

impl Trainer {
    /// The trainer of `cfg` writing to `run_dir`, continuing from the checkpoint `ckpt` when given.
    pub fn new(cfg: TrainConfig, run_dir: PathBuf, ckpt: Option<&Path>) -> Result<Self> {
        let objective = objective::from_config(&cfg);
        Self::with_objective(cfg, run_dir, ckpt, objective)
    }

    /// As [`Trainer::new`] with an explicit objective (how a new objective is tried before it has a
    /// configuration variant).
    pub fn with_objective(
        cfg: TrainConfig,
        run_dir: PathBuf,
        ckpt: Option<&Path>,
        objective: Box<dyn Objective>,
    ) -> Result<Self> {
        let device = crate::device::resolve(cfg.device)?;
        let dist = parallel::single(&cfg)?;
        Self::build(cfg, run_dir, ckpt, objective, dist, device)
    }

    /// The trainer of one rank of a data-parallel run joined with [`parallel::join`] (which chose
    /// `device`). Every rank builds its trainer; they agree that all succeeded, then the weights, the
    /// optimizer state and the EMA come from rank 0 by broadcast.
    pub fn in_group(
        cfg: TrainConfig,
        run_dir: PathBuf,
        ckpt: Option<&Path>,
        dist: Dist,
        device: Device,
    ) -> Result<Self> {
        let objective = objective::from_config(&cfg);
        Self::build(cfg, run_dir, ckpt, objective, dist, device)
    }

    fn build(
        cfg: TrainConfig,
        run_dir: PathBuf,
        ckpt: Option<&Path>,
        objective: Box<dyn Objective>,
        dist: Dist,
        device: Device,
    ) -> Result<Self> {
        let built = Self::prepare(cfg, run_dir, ckpt, objective, &dist, device);
        if !parallel::all_ok(&dist, built.is_ok())? {
            drop(built?);
            return Err(TrainError::external(
                format!("rank {}", dist.rank()),
                "another rank failed while preparing the run (its error says why); stopping",
            ));
        }
        let trainer = built?(dist);
        let dist = &trainer.dist;
        if dist.is_distributed() {
            let mut buffers = trainer.opt.replicated_buffers();
            buffers.extend(trainer.ema.replicated_buffers());
            // Non-trainable variables by name: every rank must list the same tensors in the same order
            // (a `HashMap`'s order differs between processes).
            let mut fixed: Vec<(String, Tensor)> = trainer
                .net
                .vs
                .variables()
                .into_iter()
                .filter(|(_, t)| !t.requires_grad())
                .collect();
            fixed.sort_by(|a, b| a.0.cmp(&b.0));
            buffers.extend(fixed.into_iter().map(|(_, t)| t));
            dist.broadcast_bucketed(&mut buffers, 0, DEFAULT_BUCKET_BYTES)
                .map_err(|e| TrainError::external("broadcasting rank 0's weights", e))?;
        }
        Ok(trainer)
    }

    /// Everything of [`Trainer::build`] that each rank does on its own; the trainer is completed with
    /// its process group.
    fn prepare(
        cfg: TrainConfig,
        run_dir: PathBuf,
        ckpt: Option<&Path>,
        objective: Box<dyn Objective>,
        dist: &Dist,
        device: Device,
    ) -> Result<impl FnOnce(Dist) -> Self> {
        crate::session::apply_threads(cfg.threads)?;
        let (_, micro) = parallel::shard_sizes(&cfg, dist.world_size())?;
        let shard = Shard {
            rank: dist.rank(),
            world: dist.world_size(),
            global_batch: cfg.batch_size as usize,
            processes_on_node: dist.local_world_size(),
        };
        crate::session::apply_backend(&cfg.backend)?;
        rng::seed_torch(cfg.seed, 0, Stream::Init);
        let net = Network::new(&cfg.network, device)?;
        let sampler_net = Network::new(&cfg.network, device)?;
        let dataset = open_dataset(&cfg.data)?;
        let label_dim = crate::session::check_data_fits(&cfg, dataset.as_ref())?;
        let mut opt = Optimizer::new(&net.vs, &cfg.optimizer)?;
        let mut ema = Ema::new(&net.vs, &cfg.ema);
        let state = match ckpt {
            Some(dir) => {
                let state = checkpoint::read_state(dir)?;
                if state.seed != cfg.seed {
                    return Err(TrainError::Checkpoint {
                        path: dir.to_path_buf(),
                        message: format!(
                            "was written with seed {}, the config says {}",
                            state.seed, cfg.seed
                        ),
                    });
                }
                if state.images_seen % cfg.batch_size != 0 && shard.world > 1 {
                    return Err(TrainError::Checkpoint {
                        path: dir.to_path_buf(),
                        message: format!(
                            "stopped {} images into the data stream, not at a multiple of batch_size \
                             {}: it can only be continued in one process",
                            state.images_seen, cfg.batch_size
                        ),
                    });
                }
                checkpoint::load_vars(&net.vs, &dir.join(checkpoint::MODEL_FILE))?;
                opt.load(&dir.join(checkpoint::OPTIM_FILE), state.optim_steps)?;
                ema.load(dir)?;
                state
            }
            None => {
                crate::init::load_initial_weights(&net, &cfg.init)?;
                ema = Ema::new(&net.vs, &cfg.ema);
                TrainState::new(cfg.seed)
            }
        };
        let feeder = Feeder::new(
            dataset,
            &cfg.data,
            cfg.seed,
            micro,
            state.images_seen,
            label_dim,
            shard,
        )?;
        let evaluator = PeriodicEval::open(&cfg.eval, &run_dir, device)?;
        let scaler = match cfg.precision {
            Precision::Fp32 | Precision::Bf16 => None,
            Precision::Fp16 if !device.is_cuda() => {
                return Err(TrainError::invalid(
                    "precision",
                    format!("\"fp16\" is CUDA float16 autocast; the run's device is {device:?} (use \"fp32\" or \"bf16\")"),
                ))
            }
            Precision::Fp16 => Some(match state.loss_scale {
                Some(s) => LossScaler::with_state(&cfg.loss_scale, s),
                None => LossScaler::new(&cfg.loss_scale),
            }),
        };
        Ok(move |dist| Self {
            grads: GradientPath::new(scaler, cfg.optimizer.grad_clip),
            evaluator,
            objective,
            cfg,
            run_dir,
            device,
            net,
            sampler_net,
            opt,
            ema,
            feeder,
            state,
            dist,
            shard,
            micro,
        })
    }

    /// Forces dynamic loss scaling with `scaler` (what `precision = "fp16"` configures on CUDA). On a
    /// float32 run a power-of-two scale leaves the weights unchanged, which the tests check on the CPU.
    pub fn with_loss_scaler(mut self, scaler: LossScaler) -> Self {
        self.grads = GradientPath::new(Some(scaler), self.cfg.optimizer.grad_clip);
        self
    }

    /// The counters (step, images seen, ...).
    pub fn state(&self) -> &TrainState {
        &self.state
    }

    /// The network being trained.
    pub fn network(&self) -> &Network {
        &self.net
    }

    /// The process group (of one in a single-process run).
    pub fn dist(&self) -> &Dist {
        &self.dist
    }

    /// The optimizer (its flat parameter and gradient buffers).
    pub fn optimizer(&self) -> &Optimizer {
        &self.opt
    }

    /// One optimizer step: this rank's shard of the global batch in micro-batches (gradients
    /// accumulate), the objective's loss, backward, the gradient path (sum over the ranks first), the
    /// update and the EMA. The loss stays on the device until the end of the step, where one read decides
    /// whether the update is applied.
    pub fn step(&mut self) -> Result<StepReport> {
        let (cfg, device) = (&self.cfg, self.device);
        let step = self.state.step;
        let (batch, micro) = (cfg.batch_size as usize, self.micro);
        let stage = self.objective.stage_at(step);
        let lr = cfg.optimizer.lr_at(step);
        // The levels and the noise of the whole global batch, the same on every rank; this rank uses
        // the rows of its shard.
        let levels = self
            .objective
            .draw(step, batch, &mut rng::rng(cfg.seed, step, Stream::Times));
        let net = self.net.precond.config();
        let (c, res) = (net.img_channels(), net.img_resolution());
        rng::seed_torch(cfg.seed, step, Stream::Torch);
        let eps_all = Tensor::randn([batch as i64, c, res, res], (Kind::Float, device));
        rng::seed_torch_rank(cfg.seed, step, Stream::Dropout, self.shard.rank);
        let wait_before = self.feeder.wait_seconds();
        let started = Instant::now();
        self.opt.zero_grad();
        let mut loss_sum = Tensor::zeros([], (Kind::Double, device));
        for k in 0..self.shard.size() / micro {
            let start = self.shard.start() + k * micro;
            let b = self.feeder.next_batch(device)?;
            let part = NoiseLevels {
                t: levels.t[start..start + micro].to_vec(),
                r: levels.r[start..start + micro].to_vec(),
            };
            let eps = eps_all.narrow(0, start as i64, micro as i64);
            let per_sample = amp::forward_in(cfg.precision, device, || {
                self.objective
                    .loss(&self.net, &b.images, b.labels.as_ref(), &part, &eps)
            })?;
            let l = amp::to_f32(&per_sample).sum(Kind::Float) / batch as f64;
            loss_sum += l.detach().to_kind(Kind::Double);
            let scale = self.grads.loss_scale();
            if scale == 1.0 {
                l.backward();
            } else {
                (&l * scale).backward();
            }
        }
        self.grads
            .all_reduce(&self.opt, &mut loss_sum, &self.dist)?;
        // The one read-back of the step: whether to apply the update depends on it.
        let loss = crate::transfer::read_scalar(&loss_sum);
        self.state.step += 1;
        self.state.images_seen = self.feeder.images_seen();
        let outcome = self.apply_update(loss, lr)?;
        let n = batch as f64;
        Ok(StepReport {
            step: self.state.step,
            outcome,
            loss,
            mean_t: levels.t.iter().sum::<f64>() / n,
            mean_r: levels.r.iter().sum::<f64>() / n,
            mean_r_over_t: levels.mean_r_over_t(),
            stage,
            lr,
            images: batch as u64,
            seconds: started.elapsed().as_secs_f64(),
            data_wait: self.feeder.wait_seconds() - wait_before,
        })
    }

    /// The end of a step: skip a non-finite loss (stopping after `output.max_nonfinite` in a row), send
    /// the gradients down the gradient path, update and average.
    fn apply_update(&mut self, loss: f64, lr: f64) -> Result<StepOutcome> {
        if !loss.is_finite() {
            self.opt.zero_grad();
            self.state.nonfinite_total += 1;
            self.state.nonfinite_run += 1;
            if self.state.nonfinite_run >= self.cfg.output.max_nonfinite {
                return Err(TrainError::Diverged {
                    count: self.state.nonfinite_run,
                    step: self.state.step,
                });
            }
            return Ok(StepOutcome::NonFinite);
        }
        let outcome = self.grads.prepare(&mut self.opt);
        self.state.loss_scale = self.grads.scaler_state();
        if outcome == GradOutcome::Overflowed {
            self.opt.zero_grad();
            self.state.overflow_total += 1;
            return Ok(StepOutcome::Overflowed);
        }
        self.opt.step(lr);
        self.state.optim_steps = self.opt.step_count();
        self.ema
            .update(&self.net.vs, self.state.step, self.cfg.batch_size);
        self.state.nonfinite_run = 0;
        Ok(StepOutcome::Applied)
    }

    /// Writes a checkpoint of the current state.
    pub fn checkpoint(&self) -> Result<PathBuf> {
        checkpoint::write_checkpoint(
            &self.run_dir,
            &self.state,
            self.cfg.output.keep_last,
            |dir| {
                checkpoint::save_vars(&self.net.vs, &dir.join(checkpoint::MODEL_FILE))?;
                self.opt.save(&dir.join(checkpoint::OPTIM_FILE))?;
                self.ema.save(dir)?;
                crate::run_dir::write_config(dir, &self.cfg)
            },
        )
    }

    /// Periodic FD of the first EMA track with every sampler of the objective (`[eval]`), on every rank
    /// (each scores its share of the samples): appends to `fd.jsonl` and returns a short summary for
    /// the log on rank 0, `None` elsewhere.
    fn run_eval(&self) -> Result<Option<String>> {
        let Some(evaluator) = &self.evaluator else {
            return Ok(self.dist.is_main().then(String::new));
        };
        let copied = self.ema.copy_into(0, &self.sampler_net.vs);
        parallel::agree(&self.dist, copied, "loading the EMA weights to evaluate")?;
        let samplers = self.objective.samplers(&self.cfg.sampling);
        let records = evaluator.evaluate(
            &self.sampler_net,
            &samplers,
            self.cfg.seed,
            &self.state,
            &self.dist,
        )?;
        Ok(records.map(|records| {
            records
                .iter()
                .map(|r| format!("{} {} {:.2}", r.metric, r.sampler, r.fd))
                .collect::<Vec<_>>()
                .join(", ")
        }))
    }

    /// Sample grids from fixed noise with the first EMA track, one PNG per sampler, named by step.
    fn write_samples(&self) -> Result<()> {
        self.ema.copy_into(0, &self.sampler_net.vs)?;
        let net = self.sampler_net.precond.config();
        let n = self.cfg.sampling.grid_images as i64;
        let shape = [
            n,
            net.img_channels(),
            net.img_resolution(),
            net.img_resolution(),
        ];
        let labels = labels::cycling(0, n, net.label_dim(), self.device);
        rng::seed_torch(self.cfg.seed, 0, Stream::Samples);
        let z = Tensor::randn(shape, (Kind::Float, self.device));
        let dir = self.run_dir.join("samples");
        for sampler in self.objective.samplers(&self.cfg.sampling) {
            let x = sampler.sample(&self.sampler_net, &z, labels.as_ref(), || z.randn_like());
            let file = format!("{}-{:09}.png", sampler.name(), self.state.step);
            write_png_grid(&dir.join(file), &to_u8(&x))?;
        }
        Ok(())
    }

    fn stop_requested(&self, opts: &RunOptions) -> bool {
        signals::stop_requested()
            || opts
                .stop_flag
                .as_ref()
                .is_some_and(|f| f.load(Ordering::SeqCst))
            || opts.stop_at_step.is_some_and(|s| self.state.step >= s)
    }

    /// Trains until `iterations` (or a stop request): the cadence of logs, sample grids, evaluations and
    /// checkpoints around [`Trainer::step`]. In a data-parallel run the ranks agree on stopping at each
    /// step boundary (a stop request that reached any rank stops all of them at the same step), and rank 0
    /// alone writes while the others wait for it.
    pub fn run(mut self, opts: &RunOptions) -> Result<RunSummary> {
        if opts.handle_signals {
            signals::install();
        }
        let main = self.dist.is_main();
        let mut stats = match main {
            true => Some(StatsLog::open(&self.run_dir, self.state.step)?),
            false => None,
        };
        let progress = Progress::new(self.cfg.iterations, self.state.step, opts.quiet || !main);
        let (start_step, started) = (self.state.step, Instant::now());
        let seconds_before = self.state.train_seconds;
        let mut interval = Interval::default();
        let mut cadence = Cadence::default();
        while self.state.step < self.cfg.iterations {
            if parallel::any(&self.dist, self.stop_requested(opts))? {
                cadence.interrupted = true;
                break;
            }
            let report = self.step().inspect_err(|_| progress.abandon())?;
            self.state.train_seconds = seconds_before + started.elapsed().as_secs_f64();
            interval.add(&report);
            let (s, out) = (report.step, self.cfg.output.clone());
            let every = |n: u64| n > 0 && s % n == 0;
            if every(out.log_every) || s == self.cfg.iterations {
                let rec = interval.take_record(&self.state);
                cadence.last_loss = rec.loss;
                if let Some(stats) = &mut stats {
                    stats.append(&rec)?;
                }
                progress.record(&rec);
            }
            progress.position(s);
            if every(out.sample_every) {
                parallel::on_main(&self.dist, || self.write_samples())?;
            }
            if every(self.cfg.eval.every) {
                if let Some(summary) = self.run_eval()? {
                    progress.line(s, &summary);
                }
            }
            if every(out.checkpoint_every) && s < self.cfg.iterations {
                if let Some(path) = parallel::on_main(&self.dist, || self.checkpoint())? {
                    cadence.checkpoint = Some((s, path));
                }
            }
        }
        self.finish(
            cadence,
            interval,
            stats.as_mut(),
            &progress,
            start_step,
            started,
        )
    }

    /// The end of an invocation: the last interval's record, a checkpoint of the last step, the final
    /// samples and evaluation of a finished run (rank 0), the summary, and the orderly end of the process
    /// group.
    fn finish(
        self,
        mut cadence: Cadence,
        mut interval: Interval,
        stats: Option<&mut StatsLog>,
        progress: &Progress,
        start_step: u64,
        started: Instant,
    ) -> Result<RunSummary> {
        if !interval.is_empty() {
            let rec = interval.take_record(&self.state);
            if rec.loss.is_finite() {
                cadence.last_loss = rec.loss;
            }
            if let Some(stats) = stats {
                stats.append(&rec)?;
            }
        }
        let step = self.state.step;
        let saved = cadence.checkpoint.as_ref().is_some_and(|(s, _)| *s == step);
        let last = cadence.checkpoint.take();
        let checkpoint = parallel::on_main(&self.dist, || {
            if saved || step == start_step {
                // Nothing new since the last checkpoint (or since the one this invocation started from).
                match (last, checkpoint::latest_checkpoint(&self.run_dir)?) {
                    (Some((_, path)), _) | (None, Some(path)) => Ok(path),
                    (None, None) => self.checkpoint(),
                }
            } else {
                self.checkpoint()
            }
        })?;
        let (out, eval_every) = (&self.cfg.output, self.cfg.eval.every);
        if !cadence.interrupted && out.sample_every > 0 && step % out.sample_every != 0 {
            parallel::on_main(&self.dist, || self.write_samples())?;
        }
        if !cadence.interrupted && eval_every > 0 && step % eval_every != 0 {
            if let Some(summary) = self.run_eval()? {
                progress.line(step, &summary);
            }
        }
        progress.finish();
        if cadence.interrupted && !progress.is_quiet() {
            eprintln!(
                "stopped at step {step}; checkpoint written, resume with `ect resume {}`",
                self.run_dir.display()
            );
        }
        let elapsed = started.elapsed().as_secs_f64();
        let summary = RunSummary {
            run_dir: self.run_dir.clone(),
            steps: step,
            images_seen: self.state.images_seen,
            interrupted: cadence.interrupted,
            last_loss: cadence.last_loss,
            nonfinite_steps: self.state.nonfinite_total,
            images_per_second: if elapsed > 0.0 {
                ((step - start_step) * self.cfg.batch_size) as f64 / elapsed
            } else {
                0.0
            },
            checkpoint,
            rank: self.dist.rank(),
        };
        self.dist
            .shutdown()
            .map_err(|e| TrainError::external("ending the data-parallel run", e))?;
        Ok(summary)
    }
}

/// What the cadence of one invocation has seen.
struct Cadence {
    last_loss: f64,
    /// The last periodic checkpoint: its step and directory.
    checkpoint: Option<(u64, PathBuf)>,
    interrupted: bool,
}

impl Default for Cadence {
    fn default() -> Self {
        Self {
            last_loss: f64::NAN,
            checkpoint: None,
            interrupted: false,
        }
    }
}
