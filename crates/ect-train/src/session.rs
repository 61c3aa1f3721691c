//! The entry points of a run: start one from a configuration ([`train`]), continue one from its run
//! directory ([`resume`]), and the checks both make before anything is written (devices, threads, data
//! that fits the network, one writer per run directory, configuration changes on resume).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use ect_config::TrainConfig;
use serde::Serialize;

use crate::checkpoint;
use crate::error::{Result, TrainError};
use crate::parallel;
use crate::run_dir::{self, RunLock, RunMeta};
use crate::trainer::Trainer;

/// Knobs of one invocation that are not part of the experiment (they do not change the results).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stop (with a checkpoint) once this many steps are done, as if interrupted; for tests and for
    /// splitting a run across sessions.
    pub stop_at_step: Option<u64>,
    /// Install the SIGINT/SIGTERM/SIGHUP handler that checkpoints and stops cleanly.
    pub handle_signals: bool,
    /// No progress bar or log lines.
    pub quiet: bool,
    /// A flag another thread may set to stop the run the same way a signal does.
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
    /// Whether the run stopped before `iterations` (a signal or `stop_at_step`).
    pub interrupted: bool,
    /// Mean loss over the last logging interval.
    pub last_loss: f64,
    /// Steps skipped for a non-finite loss.
    pub nonfinite_steps: u64,
    /// Training images per second in this invocation.
    pub images_per_second: f64,
    /// The last checkpoint written (rank 0; `None` on the other ranks of a data-parallel run).
    pub checkpoint: Option<PathBuf>,
    /// The rank of the process that reports (0 in a single process); only rank 0's summary is printed.
    #[serde(skip)]
    pub rank: usize,
}

/// Starts a new run from a validated `cfg`. Refuses a run directory that already holds a run (use
/// [`resume`]) or that another process is writing.
///
/// In a data-parallel run (launched by `ect train --nproc-per-node N`, torchrun or srun) every process
/// calls this; rank 0 alone locks and writes the run directory.
pub fn train(cfg: &TrainConfig, opts: &RunOptions) -> Result<RunSummary> {
    let run_dir = cfg.output.run_dir.clone();
    let (dist, device) = parallel::join(cfg)?;
    let _lock = parallel::on_main(&dist, || {
        let lock = RunLock::acquire(&run_dir)?;
        if checkpoint::latest_checkpoint(&run_dir)?.is_some()
            || run_dir.join(run_dir::CONFIG_FILE).exists()
        {
            return Err(TrainError::invalid(
                "output.run_dir",
                format!(
                    "{} already holds a run; continue it with `ect resume {0}` or choose another \
                     directory",
                    run_dir.display()
                ),
            ));
        }
        Ok(lock)
    })?;
    let trainer = Trainer::in_group(cfg.clone(), run_dir.clone(), None, dist, device)?;
    parallel::on_main(trainer.dist(), || {
        for warning in ect_config::train::advice::advice(cfg) {
            eprintln!("warning: {warning}");
        }
        run_dir::write_config(&run_dir, cfg)?;
        RunMeta::collect(
            cfg,
            trainer.network().vs.device(),
            trainer.network().num_parameters(),
            trainer.dist().world_size(),
        )
        .write(&run_dir)
    })?;
    trainer.run(opts)
}

/// Loads the TOML config at `path` with `overrides` and trains (the `ect train --config FILE --set ...`
/// entry point).
pub fn train_from_file(path: &Path, overrides: &[String], opts: &RunOptions) -> Result<RunSummary> {
    let cfg = TrainConfig::load(path, overrides)?;
    train(&cfg, opts)
}

/// What `ect resume` may change.
#[derive(Debug, Clone, Default)]
pub struct ResumeOptions {
    /// Raise the total number of iterations (extend a finished run); lowering it below the steps
    /// already done is an error.
    pub iterations: Option<u64>,
    /// Accept edits of `config.json` that change the training itself (learning rate, batch size, ...):
    /// the run then no longer equals an uninterrupted one.
    pub allow_config_changes: bool,
}

/// Fields of a run's configuration that may change between invocations without changing what is
/// trained: lengths, cadences, outputs, evaluation, threads and the data loader's machinery.
const HARMLESS_CHANGES: &[&str] = &[
    "iterations",
    "threads",
    "device",
    "output",
    "sampling",
    "eval",
    "data.threads",
    "data.prefetch",
    "data.cache",
    "data.path",
    "distributed",
    "backend",
];

/// Continues a run from its latest checkpoint with the configuration recorded in the run directory, in
/// any number of processes (the checkpoint does not depend on how many wrote it). In a data-parallel run
/// every process calls this and reads the run directory; rank 0 alone locks it, recovers an interrupted
/// checkpoint write, and writes.
pub fn resume(run_dir: &Path, resume: &ResumeOptions, opts: &RunOptions) -> Result<RunSummary> {
    let mut cfg = run_dir::read_config(run_dir)?;
    let (dist, device) = parallel::join(&cfg)?;
    let _lock = parallel::on_main(&dist, || {
        let lock = RunLock::acquire(run_dir)?;
        // Recovers a checkpoint stranded by a kill before the other ranks look.
        checkpoint::latest_checkpoint(run_dir)?;
        Ok(lock)
    })?;
    let Some(ckpt) = checkpoint::latest_checkpoint(run_dir)? else {
        if dist.is_distributed() {
            return Err(TrainError::Checkpoint {
                path: checkpoint::checkpoints_dir(run_dir),
                message: "holds no checkpoint yet; start the run again in one process with \
                          `ect resume` (it restarts from step 0)"
                    .to_owned(),
            });
        }
        return restart_without_checkpoint(run_dir, cfg, resume, opts);
    };
    let state = checkpoint::read_state(&ckpt)?;
    if let Some(it) = resume.iterations {
        if it < state.step {
            return Err(TrainError::invalid(
                "iterations",
                format!(
                    "--iterations {it} is below the {} steps the run has done",
                    state.step
                ),
            ));
        }
        cfg.iterations = it;
    }
    check_config_changes(&ckpt, &cfg, resume.allow_config_changes)?;
    let trainer = Trainer::in_group(
        cfg.clone(),
        run_dir.to_path_buf(),
        Some(&ckpt),
        dist,
        device,
    )?;
    if resume.iterations.is_some() {
        parallel::on_main(trainer.dist(), || run_dir::write_config(run_dir, &cfg))?;
    }
    trainer.run(opts)
}

/// A run directory with a configuration but no checkpoint at all (the run was killed before its first
/// one): nothing can be recovered, so it starts again from step 0 and says so. Leftovers that cannot be
/// read (an interrupted write without its `state.json`) are an error naming them, so that nothing is
/// thrown away silently.
fn restart_without_checkpoint(
    run_dir: &Path,
    mut cfg: TrainConfig,
    resume: &ResumeOptions,
    opts: &RunOptions,
) -> Result<RunSummary> {
    let dir = checkpoint::checkpoints_dir(run_dir);
    let leftovers: Vec<String> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("ckpt-"))
        .collect();
    if !leftovers.is_empty() {
        return Err(TrainError::Checkpoint {
            path: dir,
            message: format!(
                "holds no readable checkpoint, only incomplete writes ({}); the run cannot continue \
                 where it was: start it again with `ect train` into a new directory (or remove \
                 this one)",
                leftovers.join(", ")
            ),
        });
    }
    if let Some(it) = resume.iterations {
        cfg.iterations = it;
        run_dir::write_config(run_dir, &cfg)?;
    }
    eprintln!(
        "{} has no checkpoint yet (the run stopped before its first): starting it again from step 0",
        run_dir.display()
    );
    let trainer = Trainer::new(cfg, run_dir.to_path_buf(), None)?;
    trainer.run(opts)
}

/// Compares `cfg` with the configuration saved in checkpoint `ckpt` (checkpoints written before this
/// check existed have none): changes outside [`HARMLESS_CHANGES`] are refused unless `allow` is set,
/// and named either way.
fn check_config_changes(ckpt: &Path, cfg: &TrainConfig, allow: bool) -> Result<()> {
    let saved_path = ckpt.join(checkpoint::CONFIG_FILE);
    let Ok(text) = std::fs::read_to_string(&saved_path) else {
        return Ok(());
    };
    let saved: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint {
            path: saved_path.clone(),
            message: e.to_string(),
        })?;
    let now = serde_json::to_value(cfg).expect("config serializes");
    let mut changed = Vec::new();
    diff("", &saved, &now, &mut changed);
    let harmful: Vec<&String> = changed
        .iter()
        .filter(|f| {
            !HARMLESS_CHANGES
                .iter()
                .any(|h| *f == h || f.starts_with(&format!("{h}.")))
        })
        .collect();
    if harmful.is_empty() {
        return Ok(());
    }
    let list = harmful
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if allow {
        eprintln!(
            "warning: continuing with changed {list}: the run no longer equals an uninterrupted one"
        );
        return Ok(());
    }
    Err(TrainError::invalid(
        list.clone(),
        format!(
            "config.json differs from the configuration the checkpoint was trained with ({}); a \
             resumed run would no longer equal an uninterrupted one. Undo the edit, or pass \
             --allow-config-changes to continue with it",
            saved_path.display()
        ),
    ))
}

/// Dotted paths of the leaves where `a` and `b` differ.
fn diff(prefix: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    match (a, b) {
        (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                let null = serde_json::Value::Null;
                diff(
                    &p,
                    x.get(k).unwrap_or(&null),
                    y.get(k).unwrap_or(&null),
                    out,
                );
            }
        }
        _ if a != b => out.push(prefix.to_owned()),
        _ => {}
    }
}

/// Sets libtorch's CPU threads (0 keeps its default), refusing more than the process may use: libtorch's
/// pool spin-waits when oversubscribed, so extra threads only slow a run down.
pub fn apply_threads(threads: usize) -> Result<()> {
    if threads == 0 {
        return Ok(());
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads > cores {
        return Err(TrainError::invalid(
            "threads",
            format!(
                "{threads} exceeds the {cores} CPU(s) this process may use (libtorch's threads \
                 spin-wait when oversubscribed); use at most {cores}, or 0 for libtorch's default"
            ),
        ));
    }
    tch::set_num_threads(threads as i32);
    Ok(())
}

/// Applies the `[backend]` switches to libtorch's global context: cuDNN autotuning and TF32 in float32
/// matmuls and convolutions. They are process-wide, so they are set once when a run starts; on a
/// machine without CUDA they are set all the same (libtorch accepts them) and change nothing.
pub fn apply_backend(backend: &ect_config::train::BackendConfig) -> Result<()> {
    use ect_dist::context::{set_backend_flag, BackendFlag};
    let flags = [
        (BackendFlag::CudnnBenchmark, backend.cudnn_benchmark),
        (BackendFlag::Tf32Matmul, backend.allow_tf32),
        (BackendFlag::Tf32Cudnn, backend.allow_tf32),
    ];
    for (flag, value) in flags {
        set_backend_flag(flag, value)
            .map_err(|e| TrainError::external("applying the [backend] switches", e))?;
    }
    Ok(())
}

/// Checks that the data matches the network (image size, classes) and that a micro-batch can fit in
/// memory; returns the label dimension batches carry (0 for an unconditional run).
pub fn check_data_fits(cfg: &TrainConfig, dataset: &dyn ect_data::Dataset) -> Result<i64> {
    let net = &cfg.network;
    let (c, h, w) = (
        dataset.channels() as i64,
        dataset.height() as i64,
        dataset.width() as i64,
    );
    let (nc, nr) = (net.img_channels(), net.img_resolution());
    if (c, h, w) != (nc, nr, nr) {
        return Err(TrainError::invalid(
            "network.img_resolution",
            format!("the network takes {nc}x{nr}x{nr} images, data.path holds {c}x{h}x{w}"),
        ));
    }
    let label_dim = net.label_dim();
    if cfg.data.conditional && dataset.label_dim() as i64 > label_dim {
        return Err(TrainError::invalid(
            "network.label_dim",
            format!(
                "is {label_dim}, the data has {} classes",
                dataset.label_dim()
            ),
        ));
    }
    // The images of one micro-batch as float32, times the few copies a step keeps of them (noise,
    // noised inputs, outputs) is a floor of what the step needs: refuse what cannot fit at all.
    let bytes = cfg.micro_batch_size() as f64 * (c * h * w) as f64 * 4.0 * 8.0;
    if let Some(total) = total_memory_bytes() {
        if bytes > total as f64 {
            return Err(TrainError::invalid(
                if cfg.micro_batch > 0 { "micro_batch" } else { "batch_size" },
                format!(
                    "a micro-batch of {} {c}x{h}x{w} images needs at least {:.1} GiB, more than this \
                     machine's {:.1} GiB of memory; use micro_batch to split the batch",
                    cfg.micro_batch_size(),
                    bytes / f64::from(1u32 << 30),
                    total as f64 / f64::from(1u32 << 30)
                ),
            ));
        }
    }
    Ok(if cfg.data.conditional { label_dim } else { 0 })
}

/// The memory this process may use: the machine's (Linux `MemTotal`), or less when a container's
/// control group limits it (cgroup v2 `memory.max`, v1 `memory.limit_in_bytes`), as on most clusters.
pub(crate) fn total_memory_bytes() -> Option<u64> {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    memory_limit(
        &read("/proc/meminfo")?,
        &[
            read("/sys/fs/cgroup/memory.max"),
            read("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
        ],
    )
}

/// The smaller of `MemTotal` in `meminfo` and every control-group limit given (a number of bytes;
/// `max`, absent or unreadable: no limit).
fn memory_limit(meminfo: &str, cgroup_limits: &[Option<String>]) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    let limits = cgroup_limits
        .iter()
        .flatten()
        .filter_map(|l| l.trim().parse::<u64>().ok());
    Some(limits.fold(kb * 1024, u64::min))
}

#[cfg(test)]
mod memory_tests {
    use super::memory_limit;

    #[test]
    fn a_container_limit_below_the_machine_memory_is_the_limit() {
        let info = "MemTotal:       24683568 kB\nMemFree:         1000 kB\n";
        let machine = 24_683_568 * 1024;
        assert_eq!(memory_limit(info, &[]), Some(machine));
        let v2 = Some("8589934592\n".to_owned());
        assert_eq!(memory_limit(info, &[v2, None]), Some(8 << 30));
        // No limit: v2 says `max`, v1 a number near 2^63.
        let unlimited = [
            Some("max\n".to_owned()),
            Some("9223372036854771712\n".to_owned()),
        ];
        assert_eq!(memory_limit(info, &unlimited), Some(machine));
        assert_eq!(memory_limit("garbage", &[]), None);
    }
}
