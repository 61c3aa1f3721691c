//! `ect train`, `ect resume` and `ect sample`: the training loop and the samplers of `ect-train`.
//!
//! Exit statuses: 0 when the run finished, [`EXIT_STOPPED`] when it stopped early with a checkpoint
//! written (SIGINT, SIGTERM, SIGHUP or `--stop-at-step`; `ect resume` continues it), 1 on an error.

use anyhow::{bail, Context};
use ect_config::{DeviceSpec, TrainConfig};
use ect_train::{ResumeOptions, RunOptions, RunSummary, SampleSpec, Sampler, WeightsChoice};
use std::path::{Path, PathBuf};

/// Exit status of a run that stopped before its last step with a checkpoint written.
pub const EXIT_STOPPED: u8 = 3;

/// Options of `ect train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Training configuration (TOML; see configs/).
    #[arg(long)]
    pub config: PathBuf,
    /// Override a field, `key.path=value` (repeatable), e.g. `--set optimizer.lr=2e-4`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    #[command(flatten)]
    pub run: RunFlags,
    /// Profile this many steps with libtorch's profiler instead of training (after one warm-up step;
    /// nothing is written to the run directory) and print where the time went.
    #[arg(long, value_name = "STEPS")]
    pub profile: Option<u64>,
    /// The Chrome trace `--profile` writes (open it in <https://ui.perfetto.dev> or `chrome://tracing`).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "ect-profile.json",
        requires = "profile"
    )]
    pub profile_trace: PathBuf,
}

/// Options of `ect resume`.
#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Raise the total number of iterations (extend a finished run); it cannot go below the steps done.
    #[arg(long)]
    pub iterations: Option<u64>,
    /// Continue even though `config.json` was edited in ways that change the training (learning rate,
    /// batch size, ...); the run then no longer equals an uninterrupted one.
    #[arg(long)]
    pub allow_config_changes: bool,
    #[command(flatten)]
    pub run: RunFlags,
}

/// Flags of one invocation of a run (they do not change its results).
#[derive(Debug, clap::Args)]
pub struct RunFlags {
    /// Also write the run summary (JSON) to this file when the run ends or is interrupted.
    #[arg(long)]
    pub summary: Option<PathBuf>,
    /// Stop with a checkpoint after this many steps, as if interrupted (split a run across sessions).
    #[arg(long)]
    pub stop_at_step: Option<u64>,
    /// No progress bar or log lines.
    #[arg(long)]
    pub quiet: bool,
    /// Data-parallel training in N local processes (like `torchrun --standalone --nproc-per-node N`):
    /// `batch_size` stays the global batch, each process computes its share. Under torchrun or srun, leave
    /// this out: each process joins the run from the launcher's environment.
    #[arg(long, value_name = "N")]
    pub nproc_per_node: Option<usize>,
}

impl RunFlags {
    fn options(&self) -> RunOptions {
        RunOptions {
            stop_at_step: self.stop_at_step,
            handle_signals: true,
            quiet: self.quiet,
            stop_flag: None,
        }
    }
}

/// Options of `ect sample`.
#[derive(Debug, clap::Args)]
pub struct SampleArgs {
    /// A run directory (its latest checkpoint), a checkpoint directory, a `.safetensors` file, or a
    /// published snapshot (EDM/EDM2/ECT `.pkl`, `torch.save` `.pt`; converted once, cached, never run).
    #[arg(long)]
    pub from: PathBuf,
    /// For a bare `.safetensors` file: the network's `config.json` (reference names).
    #[arg(long)]
    pub network_config: Option<PathBuf>,
    /// Consistency sampling with this many steps: 1 is [80, 0], 2 is [80, 0.821, 0].
    #[arg(long, conflicts_with_all = ["grid", "heun"])]
    pub steps: Option<u32>,
    /// Consistency sampling on this time grid, decreasing to 0, e.g. `80,1.526,0`.
    #[arg(long, value_delimiter = ',', conflicts_with = "heun")]
    pub grid: Option<Vec<f64>>,
    /// EDM's Heun sampler with this many Karras times (18 = 35 evaluations), for diffusion models.
    #[arg(long)]
    pub heun: Option<usize>,
    /// Number of images.
    #[arg(long, default_value_t = 64)]
    pub n: usize,
    /// Images per forward pass.
    #[arg(long, default_value_t = 250)]
    pub batch: usize,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Use the raw weights instead of the (first) EMA.
    #[arg(long)]
    pub raw: bool,
    /// For class-conditional networks: generate only this class (default: cycle through classes).
    #[arg(long)]
    pub class: Option<i64>,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "auto")]
    pub device: DeviceSpec,
    /// Output: `.npy` (u8, N,C,H,W; written as images are generated) or `.png` (a grid).
    #[arg(long)]
    pub out: PathBuf,
    /// Share the work among N local processes (like `torchrun --standalone --nproc-per-node N`; one
    /// GPU each with CUDA): each generates every N-th batch into the same `.npy`, which holds the images
    /// of a 1-process run. Under torchrun or srun, leave this out.
    #[arg(long, value_name = "N")]
    pub nproc_per_node: Option<usize>,
}

/// Prints the summary (and writes it to `path`) on rank 0; the exit status says whether the run
/// finished.
fn finish(summary: &RunSummary, path: Option<&Path>) -> anyhow::Result<u8> {
    if summary.rank == 0 {
        let json = serde_json::to_string(summary)?;
        if let Some(path) = path {
            ect_config::atomic::write_atomic(path, json.as_bytes())?;
        }
        println!("{json}");
    }
    Ok(if summary.interrupted { EXIT_STOPPED } else { 0 })
}

/// `ect train`. An `[experiment]` table (read by `cargo xtask train-ect`: pretraining and evaluation
/// settings) is ignored, so experiment presets also work here as plain training configurations.
pub fn train(a: &TrainArgs) -> anyhow::Result<u8> {
    if let Some(n) = a.run.nproc_per_node {
        return crate::launcher::run_workers(n);
    }
    let opts = a.run.options();
    let cfg = TrainConfig::load(&a.config, &a.set)?;
    if let Some(steps) = a.profile {
        crate::profile::profile_steps(&cfg, steps, &a.profile_trace)?;
        return Ok(0);
    }
    let origin = a.config.display().to_string();
    let summary =
        ect_train::train(&cfg, &opts).with_context(|| format!("training with {origin}"))?;
    finish(&summary, a.run.summary.as_deref())
}

/// `ect resume`.
pub fn resume(a: &ResumeArgs) -> anyhow::Result<u8> {
    if let Some(n) = a.run.nproc_per_node {
        return crate::launcher::run_workers(n);
    }
    let opts = a.run.options();
    let resume = ResumeOptions {
        iterations: a.iterations,
        allow_config_changes: a.allow_config_changes,
    };
    let summary = ect_train::resume(&a.run_dir, &resume, &opts)
        .with_context(|| format!("resuming {}", a.run_dir.display()))?;
    finish(&summary, a.run.summary.as_deref())
}

/// The sampler the flags choose.
fn sampler(a: &SampleArgs) -> anyhow::Result<Sampler> {
    use ect_schedule::sampling::{self, EDM_RHO, EDM_SIGMA_MAX, EDM_SIGMA_MIN};
    Ok(match (a.steps, &a.grid, a.heun) {
        (Some(1), None, None) => Sampler::consistency(sampling::one_step())?,
        (Some(2), None, None) => {
            Sampler::consistency(sampling::two_step(sampling::CIFAR_TWO_STEP_MID))?
        }
        (Some(s), None, None) => {
            bail!("--steps {s}: the presets are 1 and 2; give other grids with --grid")
        }
        (None, Some(g), None) => Sampler::consistency(g.clone())?,
        (None, None, Some(n)) => Sampler::heun(n, EDM_SIGMA_MIN, EDM_SIGMA_MAX, EDM_RHO)?,
        (None, None, None) => bail!("choose a sampler: --steps 1|2, --grid T0,...,0 or --heun N"),
        _ => bail!("choose one sampler: --steps, --grid or --heun"),
    })
}

/// `ect sample`: prints a JSON summary (file, shape, images/s).
pub fn sample(a: &SampleArgs) -> anyhow::Result<u8> {
    if let Some(n) = a.nproc_per_node {
        return crate::launcher::run_workers(n);
    }
    let spec = SampleSpec {
        source: a.from.clone(),
        network_config: a.network_config.clone(),
        sampler: sampler(a)?,
        n: a.n,
        batch: a.batch,
        seed: a.seed,
        out: a.out.clone(),
        weights: if a.raw {
            WeightsChoice::Raw
        } else {
            WeightsChoice::Ema(0)
        },
        device: a.device,
        class: a.class,
    };
    let Some(summary) =
        ect_train::sample(&spec).with_context(|| format!("sampling from {}", a.from.display()))?
    else {
        // Another rank of a multi-process run: rank 0 reports.
        return Ok(0);
    };
    eprintln!(
        "wrote {} images {:?} to {} ({:.1} images/s)",
        summary.shape[0],
        summary.shape,
        a.out.display(),
        summary.images_per_second
    );
    println!("{}", serde_json::to_string(&summary)?);
    Ok(0)
}
