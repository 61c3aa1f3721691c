//! Generating samples from a trained run, a checkpoint, or a bare weights file (the `ect sample` entry
//! point), in one process or shared by the processes of a launcher. A `.npy` output is streamed: memory
//! stays flat however many images are asked for, and the destination is created before the first image
//! is drawn.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ect_config::{DeviceSpec, NetworkConfig, TrainConfig, ValidNetworkConfig};
use ect_dist::ReduceOp;
use ect_metrics::score::Share;
use serde::Serialize;
use tch::{Kind, Tensor};

use crate::checkpoint;
use crate::error::{Result, TrainError};
use crate::images::{to_u8, write_png_grid};
use crate::labels;
use crate::net::Network;
use crate::npy::NpyWriter;
use crate::parallel;
use crate::rng::{self, Stream};
use crate::run_dir::{self, CONFIG_FILE};
use crate::sampler::Sampler;

/// The most images a PNG grid may hold (it is assembled in memory).
pub const MAX_PNG_IMAGES: usize = 4096;

/// Where the weights come from.
#[derive(Debug, Clone, PartialEq)]
pub enum WeightsChoice {
    /// An EMA track by index (0: the first, the default for sampling).
    Ema(usize),
    /// The raw (non-averaged) weights.
    Raw,
}

/// A sampling request.
#[derive(Debug, Clone)]
pub struct SampleSpec {
    /// A run directory (its latest checkpoint), a checkpoint directory, a `.safetensors` file, or a
    /// published snapshot (`.pkl` / `.pt`, converted once without Python and cached).
    pub source: PathBuf,
    /// For a bare `.safetensors` file: a JSON file with the network config (reference names).
    pub network_config: Option<PathBuf>,
    /// The sampler.
    pub sampler: Sampler,
    /// Number of images.
    pub n: usize,
    /// Images per forward pass.
    pub batch: usize,
    /// Seed of the noise (batch `b` uses a seed derived from `(seed, b)`, so `n` does not change the first
    /// images).
    pub seed: u64,
    /// Output: `.npy` (u8 NCHW) or `.png` (a grid).
    pub out: PathBuf,
    /// Which weights of a checkpoint.
    pub weights: WeightsChoice,
    /// The device.
    pub device: DeviceSpec,
    /// For class-conditional networks: one class for every image; `None` cycles through the classes.
    pub class: Option<i64>,
}

/// What a sampling run reports.
#[derive(Debug, Clone, Serialize)]
pub struct SampleSummary {
    /// The file written.
    pub out: PathBuf,
    /// Its shape `[N, C, H, W]`.
    pub shape: [i64; 4],
    /// Network evaluations per image.
    pub evaluations_per_image: usize,
    /// Seconds spent generating (loading the network excluded).
    pub seconds: f64,
    /// Images generated per second (by all the processes).
    pub images_per_second: f64,
    /// Processes that generated them.
    pub processes: usize,
}

/// A published snapshot (`.pkl`) or `torch.save` file (`.pt`, `.pth`), converted before sampling.
fn is_snapshot(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e, "pkl" | "pt" | "pth"))
}

/// Finds (network config, weights file) for a source.
fn resolve(spec: &SampleSpec) -> Result<(ValidNetworkConfig, PathBuf)> {
    let src = &spec.source;
    if !src.exists() {
        return Err(TrainError::invalid(
            "from",
            format!("{} does not exist", src.display()),
        ));
    }
    let pick = |ckpt: &Path, cfg: &TrainConfig| -> Result<PathBuf> {
        Ok(match spec.weights {
            WeightsChoice::Raw => ckpt.join(checkpoint::MODEL_FILE),
            WeightsChoice::Ema(i) => {
                let labels = cfg.ema.labels();
                let label = labels.get(i).ok_or_else(|| {
                    TrainError::invalid(
                        "ema",
                        format!("track {i} requested, the run keeps {}", labels.len()),
                    )
                })?;
                ckpt.join(format!("{label}.safetensors"))
            }
        })
    };
    if src.is_dir() && src.join(CONFIG_FILE).exists() {
        let cfg = run_dir::read_config(src)?;
        let ckpt = checkpoint::latest_checkpoint(src)?.ok_or_else(|| TrainError::Checkpoint {
            path: src.clone(),
            message: "the run has no checkpoint yet".into(),
        })?;
        let file = pick(&ckpt, &cfg)?;
        return Ok((cfg.network, file));
    }
    if src.is_dir() && src.join(checkpoint::STATE_FILE).exists() {
        let run = src
            .parent()
            .and_then(Path::parent)
            .ok_or_else(|| TrainError::Checkpoint {
                path: src.clone(),
                message: "a checkpoint directory must sit in <run>/checkpoints/".into(),
            })?;
        let cfg = run_dir::read_config(run)?;
        let file = pick(src, &cfg)?;
        return Ok((cfg.network, file));
    }
    if src.is_dir() {
        return Err(TrainError::invalid(
            "from",
            format!(
                "{} is neither a run directory (no {CONFIG_FILE}) nor a checkpoint (no {})",
                src.display(),
                checkpoint::STATE_FILE
            ),
        ));
    }
    if is_snapshot(src) {
        if spec.network_config.is_some() {
            return Err(TrainError::invalid(
                "network_config",
                format!(
                    "{} is a snapshot, which names its own network",
                    src.display()
                ),
            ));
        }
        let converted =
            crate::init::converted_snapshot(src, "ema", &crate::init::snapshot_cache_dir())?;
        return Ok((converted.config, converted.weights));
    }
    let cfg_path = spec.network_config.as_ref().ok_or_else(|| {
        TrainError::invalid(
            "network_config",
            format!(
                "{} is a weights file; give its network config",
                src.display()
            ),
        )
    })?;
    let text = std::fs::read_to_string(cfg_path).map_err(|e| TrainError::io(cfg_path, e))?;
    let cfg = NetworkConfig::from_json_str(&text)
        .map_err(|e| TrainError::external(format!("network config {}", cfg_path.display()), e))?;
    Ok((cfg, src.clone()))
}

/// Checks what can be checked before the network is loaded: sizes and the output's kind.
fn check_request(spec: &SampleSpec) -> Result<bool> {
    if spec.n == 0 || spec.batch == 0 {
        return Err(TrainError::invalid("n", "n and batch must be > 0"));
    }
    if spec.n > i64::MAX as usize / (1 << 20) {
        return Err(TrainError::invalid(
            "n",
            format!("{} images is beyond any disk", spec.n),
        ));
    }
    let ext = spec
        .out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("npy") => Ok(true),
        Some("png") if spec.n <= MAX_PNG_IMAGES => Ok(false),
        Some("png") => Err(TrainError::invalid(
            "n",
            format!(
                "a PNG grid holds at most {MAX_PNG_IMAGES} images, got {}; write a .npy",
                spec.n
            ),
        )),
        _ => Err(TrainError::invalid(
            "out",
            format!("{} must end in .npy or .png", spec.out.display()),
        )),
    }
}

/// Refuses an output that cannot fit: `bytes` of images against the space free where `out` goes.
fn check_disk_space(out: &Path, bytes: f64) -> Result<()> {
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let existing = dir
        .ancestors()
        .find(|a| a.exists())
        .unwrap_or(Path::new("."));
    let Some(free) = free_bytes(existing) else {
        return Ok(());
    };
    if bytes > free as f64 {
        return Err(TrainError::invalid(
            "n",
            format!(
                "the images need {:.1} GB but {} has {:.1} GB free",
                bytes / 1e9,
                existing.display(),
                free as f64 / 1e9
            ),
        ));
    }
    Ok(())
}

/// Bytes available to this user on the file system holding `path` (`statvfs`).
fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: `statvfs` is plain old data, for which all-zero bytes are a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

/// How long the processes of a multi-process `ect sample` wait for each other (the training default).
const SAMPLING_TIMEOUT: Duration = Duration::from_secs(1800);

/// Checks the request against the network and the machine: the class, the memory a batch needs, the
/// disk the images need. Returns the network config, its weights file and the array's shape.
fn prepare(spec: &SampleSpec) -> Result<(ValidNetworkConfig, PathBuf, [i64; 4])> {
    let (net_cfg, weights) = resolve(spec)?;
    let (c, res, label_dim) = (
        net_cfg.img_channels(),
        net_cfg.img_resolution(),
        net_cfg.label_dim(),
    );
    if let Some(k) = spec.class {
        if label_dim == 0 || !(0..label_dim).contains(&k) {
            return Err(TrainError::invalid(
                "class",
                format!("{k} is not a class of this network ({label_dim} classes)"),
            ));
        }
    }
    let image_bytes = (c * res * res) as f64;
    // The noise, the state and the network's activations of one batch in float32: refuse what cannot fit.
    if let Some(total) = crate::session::total_memory_bytes() {
        let need = spec.batch.min(spec.n) as f64 * image_bytes * 4.0 * 8.0;
        if need > total as f64 {
            return Err(TrainError::invalid(
                "batch",
                format!(
                    "{} images of {c}x{res}x{res} per pass need at least {:.1} GiB, more than this \
                     machine's {:.1} GiB; lower --batch",
                    spec.batch,
                    need / f64::from(1u32 << 30),
                    total as f64 / f64::from(1u32 << 30)
                ),
            ));
        }
    }
    check_disk_space(&spec.out, spec.n as f64 * image_bytes)?;
    Ok((net_cfg, weights, [spec.n as i64, c, res, res]))
}

/// Generates batch `b` (images `b * batch ..`, at most `batch`) with the noise of `(seed, b)`.
///
/// # Shapes
/// returns: [m, C, H, W] u8 on the CPU (`m` images of the batch).
fn generate_batch(spec: &SampleSpec, net: &Network, shape: [i64; 4], b: usize) -> Tensor {
    let device = net.vs.device();
    let first = b * spec.batch;
    let m = spec.batch.min(spec.n - first);
    let label_dim = net.precond.label_dim();
    rng::seed_torch(spec.seed, b as u64, Stream::Samples);
    let z = Tensor::randn(
        [m as i64, shape[1], shape[2], shape[3]],
        (Kind::Float, device),
    );
    let labels = match spec.class {
        Some(k) => Some(labels::one_hot(&vec![k; m], label_dim, device)),
        None => labels::cycling(first as i64, m as i64, label_dim, device),
    };
    let x = spec
        .sampler
        .sample(net, &z, labels.as_ref(), || z.randn_like());
    to_u8(&x)
}

/// Generates `spec.n` images into `spec.out`; returns the summary on rank 0 (the only process of a
/// plain run), `None` on the other ranks.
///
/// Under a launcher (`ect sample --nproc-per-node N`, torchrun, srun) the processes share the work:
/// rank `r` of `W` generates batches `r, r + W, ...` on its device and writes them at their places in the
/// `.npy` rank 0 created; rank 0 publishes the file once every rank has written and synced its part.
/// Batch `b`'s noise is seeded by `(seed, b)`, so the file holds the images of a 1-process run. The
/// ranks agree after each phase, so one rank's failure (a bad class, an unwritable output, weights that
/// do not load) stops all of them with its error. A PNG grid is assembled in one process.
pub fn sample(spec: &SampleSpec) -> Result<Option<SampleSummary>> {
    let npy = check_request(spec)?;
    let (dist, device) = parallel::join_with(spec.device, SAMPLING_TIMEOUT)?;
    if !npy && dist.world_size() > 1 {
        return Err(TrainError::invalid(
            "out",
            format!(
                "{} is a PNG grid, which one process assembles; run one process or write a .npy",
                spec.out.display()
            ),
        ));
    }
    // Phase 1: every rank checks the request; rank 0 creates the output.
    let prepared = prepare(spec).and_then(|(net_cfg, weights, shape)| {
        let writer = match (npy, dist.is_main()) {
            (true, true) => Some(NpyWriter::create(&spec.out, shape)?),
            _ => None,
        };
        Ok((net_cfg, weights, shape, writer))
    });
    let (net_cfg, weights, shape, writer) =
        parallel::agree(&dist, prepared, "checking the request")?;
    // Phase 2: the other ranks open the output; every rank loads the network.
    let loaded = (|| {
        let writer = match (npy, writer) {
            (true, None) => Some(NpyWriter::join(&spec.out, shape)?),
            (_, writer) => writer,
        };
        let net = Network::new(&net_cfg, device)?;
        checkpoint::load_vars(&net.vs, &weights)?;
        Ok((writer, net))
    })();
    let (mut writer, net) = parallel::agree(&dist, loaded, "loading the network")?;
    // Phase 3: each rank generates and writes its batches.
    let started = Instant::now();
    let mut grid = Vec::new();
    let generated = (|| {
        let share = Share::of_rank(dist.rank(), dist.world_size());
        for b in share.batches(spec.n, spec.batch) {
            let images = generate_batch(spec, &net, shape, b);
            match &mut writer {
                Some(w) => w.write_at(b * spec.batch, &images)?,
                None => grid.push(images),
            }
        }
        writer.as_ref().map_or(Ok(()), NpyWriter::sync)
    })();
    parallel::agree(&dist, generated, "generating images")?;
    let mut written = [writer.as_ref().map_or(0, |w| w.written()) as f64];
    dist.all_reduce_f64(&mut written, ReduceOp::Sum)
        .map_err(|e| TrainError::external("counting the images of every rank", e))?;
    let seconds = started.elapsed().as_secs_f64();
    // Phase 4: rank 0 publishes the file.
    parallel::on_main(&dist, || match writer {
        Some(w) => w.publish(written[0] as u64),
        None => write_png_grid(&spec.out, &Tensor::cat(&grid, 0)),
    })?;
    Ok(dist.is_main().then(|| SampleSummary {
        out: spec.out.clone(),
        shape,
        evaluations_per_image: spec.sampler.evaluations(),
        seconds,
        images_per_second: if seconds > 0.0 {
            spec.n as f64 / seconds
        } else {
            0.0
        },
        processes: dist.world_size(),
    }))
}
