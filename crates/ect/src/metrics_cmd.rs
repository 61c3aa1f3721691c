//! `ect metrics ...`: Fréchet distances, feature statistics and scores of samples (through
//! `ect-metrics`), and the built-in Fashion-MNIST feature network.

use anyhow::{bail, Context};
use clap::Subcommand;
use ect_metrics::samples::{load_samples_npy, SampleOptions};
use ect_metrics::score::{
    accumulate_dataset, accumulate_images, compare_images, images_of_dataset, open_extractor,
    stats_of_dataset, stats_of_images_with, ExtractorChoice, Share,
};
use ect_metrics::{FeatureExtractor, FeatureStats, StatsAccumulator};
use serde_json::json;
use std::path::{Path, PathBuf};

/// `ect metrics` subcommands.
#[derive(Debug, Subcommand)]
pub enum MetricsCommand {
    /// Print the Fréchet distance between two statistics files (EDM `.npz` with `mu` and `sigma`).
    Fd {
        /// First statistics file.
        a: PathBuf,
        /// Second statistics file.
        b: PathBuf,
    },
    /// Compute feature statistics (`.npz`, EDM's format) of a dataset or of a samples file.
    Stats {
        #[command(flatten)]
        extractor: ExtractorArgs,
        #[command(flatten)]
        input: InputArgs,
        /// Output `.npz` (`mu`, `sigma`).
        #[arg(long)]
        out: PathBuf,
        /// Share the extraction among N local processes (like `torchrun --standalone --nproc-per-node
        /// N`; one GPU each with CUDA): each extracts every N-th batch and the statistics are pooled.
        /// Under torchrun or srun, leave this out.
        #[arg(long, value_name = "N")]
        nproc_per_node: Option<usize>,
    },
    /// Score a samples file against a reference: FD (plus class entropy with a classifier extractor).
    /// Prints one JSON object with the number of samples scored.
    Score {
        /// Samples `.npy` (u8, or float in the --range; NCHW or NHWC).
        #[arg(long)]
        samples: PathBuf,
        /// Layout of the samples array.
        #[arg(long, default_value = "auto")]
        layout: String,
        /// Range of float samples: -1,1 (quantized as EDM's generate.py) or 0,1 (as torchvision's
        /// save_image). Values outside it are an error, not clipped; u8 samples are pixels as they are.
        #[arg(long, default_value = "-1,1", allow_hyphen_values = true)]
        range: String,
        #[command(flatten)]
        extractor: ExtractorArgs,
        /// The reference: a dataset (any format `ect data` reads) or a statistics `.npz`.
        #[arg(long)]
        reference: PathBuf,
        /// Split of a reference dataset.
        #[arg(long, default_value = "test")]
        split: String,
    },
    /// Compare samples with reference images in one extractor's feature space: FD, KID, precision and
    /// recall (and the Inception Score with a classifier extractor). Prints one JSON object.
    Compare {
        /// Samples `.npy` (u8, or float in the --range; NCHW or NHWC).
        #[arg(long)]
        samples: PathBuf,
        /// Layout of the samples arrays (both `.npy` files): auto, nchw or nhwc.
        #[arg(long, default_value = "auto")]
        layout: String,
        /// Range of float samples (both `.npy` files): -1,1 (quantized as EDM's generate.py) or 0,1 (as torchvision's
        /// save_image). Values outside it are an error, not clipped; u8 samples are pixels as they are.
        #[arg(long, default_value = "-1,1", allow_hyphen_values = true)]
        range: String,
        #[command(flatten)]
        extractor: ExtractorArgs,
        /// The reference images: a samples `.npy` or a dataset (any format `ect data` reads).
        #[arg(long)]
        reference: PathBuf,
        /// Split of a reference dataset.
        #[arg(long, default_value = "test")]
        split: String,
        /// At most this many images of a reference dataset (all are held in memory).
        #[arg(long)]
        max_images: Option<usize>,
        /// KID subsets.
        #[arg(long, default_value_t = 100)]
        kid_subsets: usize,
        /// Largest KID subset (capped at the smaller set's size).
        #[arg(long, default_value_t = 1000)]
        kid_subset_size: usize,
        /// Seed of the KID subsets.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Neighbourhood size of precision/recall.
        #[arg(long, default_value_t = 3)]
        k: usize,
    },
    /// Train the built-in feature network on Fashion-MNIST and report its test accuracy.
    TrainFeatureNet {
        /// Folder with the Fashion-MNIST IDX files (default: found like `ect data` does).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Output weights (`.safetensors`).
        #[arg(long)]
        out: PathBuf,
        /// Passes over the training set.
        #[arg(long, default_value_t = 2)]
        epochs: usize,
        /// Seed of the initialization and the shuffles.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

/// Which feature extractor (exactly one).
#[derive(Debug, clap::Args)]
pub struct ExtractorArgs {
    /// The built-in Fashion-MNIST feature net weights (from `train-feature-net`); 28x28 grayscale.
    #[arg(long, conflicts_with_all = ["inception", "dinov2"])]
    pub feature_net: Option<PathBuf>,
    /// EDM's Inception-v3 detector as TorchScript (scripts/export_inception.py): FID.
    #[arg(long, conflicts_with = "dinov2")]
    pub inception: Option<PathBuf>,
    /// DINOv2 ViT-L/14 as TorchScript (scripts/export_dinov2.py): FD_DINOv2.
    #[arg(long)]
    pub dinov2: Option<PathBuf>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 250)]
    pub batch: usize,
}

impl ExtractorArgs {
    fn choice(&self) -> anyhow::Result<ExtractorChoice> {
        Ok(match (&self.feature_net, &self.inception, &self.dinov2) {
            (Some(w), None, None) => ExtractorChoice::FeatureNet { weights: w.clone() },
            (None, Some(p), None) => ExtractorChoice::Inception { path: p.clone() },
            (None, None, Some(p)) => ExtractorChoice::Dinov2 { path: p.clone() },
            _ => bail!("choose one feature extractor: --feature-net, --inception or --dinov2"),
        })
    }
}

/// What `stats` reads (exactly one).
#[derive(Debug, clap::Args)]
pub struct InputArgs {
    /// A dataset (any format `ect data` reads).
    #[arg(long, conflicts_with = "samples")]
    pub dataset: Option<PathBuf>,
    /// Layout of a dataset's files (default: detected).
    #[arg(long, default_value = "auto")]
    pub format: String,
    /// Split of a dataset.
    #[arg(long, default_value = "train")]
    pub split: String,
    /// At most this many images of a dataset.
    #[arg(long)]
    pub max_images: Option<usize>,
    /// A samples `.npy` (u8, or float in the --range; NCHW or NHWC).
    #[arg(long)]
    pub samples: Option<PathBuf>,
    /// Layout of the samples array: auto, nchw or nhwc.
    #[arg(long, default_value = "auto")]
    pub layout: String,
    /// Range of float samples: -1,1 (quantized as EDM's generate.py) or 0,1 (as torchvision's
    /// save_image). Values outside it are an error, not clipped; u8 samples are pixels as they are.
    #[arg(long, default_value = "-1,1", allow_hyphen_values = true)]
    pub range: String,
}

/// The layout and value range of a samples file, from their command-line words.
fn sample_options(layout: &str, range: &str) -> anyhow::Result<SampleOptions> {
    Ok(SampleOptions {
        layout: layout.parse()?,
        range: range.parse()?,
    })
}

fn device() -> tch::Device {
    tch::Device::cuda_if_available()
}

fn dataset_stats(
    path: &Path,
    format: &str,
    split: &str,
    extractor: &dyn FeatureExtractor,
    batch: usize,
    max: Option<usize>,
) -> anyhow::Result<FeatureStats> {
    let ds = crate::data_cmd::open_dataset(path, format, split)?;
    Ok(stats_of_dataset(ds.as_ref(), extractor, batch, max)?)
}

/// `ect metrics stats`, in one process or shared by the processes of a launcher: rank `r` of `W`
/// extracts batches `r, r + W, ...` on its device, the statistics are pooled over the ranks
/// (`ect_train::feature_pool`), and rank 0 writes the `.npz` and prints the summary. The ranks agree
/// before pooling, so one rank's failure (an unreadable file, a bad extractor) stops all of them.
fn stats_command(extractor: &ExtractorArgs, input: &InputArgs, out: &Path) -> anyhow::Result<()> {
    use ect_train::parallel;
    let (dist, device) = parallel::join_with(
        ect_config::DeviceSpec::Auto,
        std::time::Duration::from_secs(1800),
    )?;
    let share = Share::of_rank(dist.rank(), dist.world_size());
    let local = (|| -> anyhow::Result<(String, StatsAccumulator)> {
        let ex = open_extractor(&extractor.choice()?, device)?;
        let acc = match (&input.dataset, &input.samples) {
            (Some(d), None) => {
                let ds = crate::data_cmd::open_dataset(d, &input.format, &input.split)?;
                accumulate_dataset(
                    ds.as_ref(),
                    ex.as_ref(),
                    extractor.batch,
                    input.max_images,
                    share,
                )?
            }
            (None, Some(s)) => accumulate_images(
                &load_samples_npy(s, &sample_options(&input.layout, &input.range)?)?,
                ex.as_ref(),
                extractor.batch,
                share,
                &mut |_| Ok(()),
            )?,
            _ => bail!("give --dataset PATH or --samples FILE.npy"),
        };
        Ok((ex.name().to_owned(), acc))
    })()
    .map_err(|e| ect_train::TrainError::external("extracting features", format!("{e:#}")));
    let (name, local) = parallel::agree(&dist, local, "extracting features")?;
    let pooled = ect_train::feature_pool::pool_stats(local, &dist)?;
    parallel::on_main(&dist, || {
        let stats = pooled
            .finish()
            .map_err(|e| ect_train::TrainError::invalid("features", e.to_string()))?;
        ect_metrics::save_stats_npz(out, &stats).map_err(|e| {
            ect_train::TrainError::external(format!("writing {}", out.display()), e)
        })?;
        println!(
            "{}",
            json!({"out": out, "num_samples": stats.num_samples(), "extractor": name, "dim": stats.dim(), "processes": dist.world_size()})
        );
        Ok(())
    })?;
    Ok(())
}

/// Histogram of the predicted classes (arg-max of the logits) over the batches of one extraction pass.
#[derive(Debug, Default)]
struct ClassHistogram {
    counts: Vec<u64>,
    /// False once a batch comes without logits.
    complete: bool,
}

impl ClassHistogram {
    fn new(classes: usize) -> Self {
        Self {
            counts: vec![0; classes],
            complete: classes > 0,
        }
    }

    fn add(&mut self, f: &ect_metrics::Features) {
        let Some(logits) = f.logits.as_ref().filter(|_| self.complete) else {
            self.complete = false;
            return;
        };
        if f.classes != self.counts.len() {
            self.complete = false;
            return;
        }
        for row in logits.chunks(f.classes) {
            let best = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i)
                .unwrap_or(0);
            self.counts[best] += 1;
        }
    }

    /// Entropy (nats) of the histogram: mode coverage, ln(classes) when balanced; `None` without logits.
    fn entropy(&self) -> Option<f64> {
        let n = self.counts.iter().sum::<u64>() as f64;
        if !self.complete || n == 0.0 {
            return None;
        }
        Some(
            self.counts
                .iter()
                .filter(|&&c| c > 0)
                .map(|&c| c as f64 / n)
                .map(|p| -p * p.ln())
                .sum::<f64>()
                // A single class gives -0.0; print it as 0.
                .abs(),
        )
    }
}

/// Runs an `ect metrics` subcommand.
pub fn run(cmd: &MetricsCommand) -> anyhow::Result<()> {
    match cmd {
        MetricsCommand::Fd { a, b } => {
            let fd = ect_metrics::score::fd_of_files(a, b)?;
            println!("{fd}");
        }
        MetricsCommand::Stats {
            extractor,
            input,
            out,
            nproc_per_node,
        } => {
            if let Some(n) = nproc_per_node {
                let code = crate::launcher::run_workers(*n)?;
                if code != 0 {
                    bail!("the {n} workers stopped early (exit status {code})");
                }
                return Ok(());
            }
            stats_command(extractor, input, out)?;
        }
        MetricsCommand::Score {
            samples,
            layout,
            range,
            extractor,
            reference,
            split,
        } => {
            let choice = extractor.choice()?;
            // The samples first: a bad file is reported before a large extractor is loaded.
            let images = load_samples_npy(samples, &sample_options(layout, range)?)?;
            let ex = open_extractor(&choice, device())?;
            // One extraction pass gives both the statistics and the predicted classes.
            let mut histogram = ClassHistogram::new(ex.num_classes());
            let stats = stats_of_images_with(&images, ex.as_ref(), extractor.batch, &mut |f| {
                histogram.add(f);
                Ok(())
            })?;
            let is_npz = reference
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("npz"));
            let ref_stats = if is_npz {
                ect_metrics::load_stats_npz(reference)?
            } else {
                dataset_stats(reference, "auto", split, ex.as_ref(), extractor.batch, None)?
            };
            let name = reference.display().to_string();
            let score = ect_metrics::score::fd_score(
                &stats,
                &ref_stats,
                choice.fd_metric(),
                ex.name(),
                Some(&name),
            )?;
            let entropy = histogram.entropy();
            println!(
                "{}",
                json!({
                    "metric": score.metric,
                    "fd": score.value,
                    "n": score.num_samples,
                    "class_entropy": entropy,
                    "extractor": score.extractor,
                    "reference": score.reference,
                    "samples": samples,
                })
            );
        }
        MetricsCommand::Compare {
            samples,
            layout,
            range,
            extractor,
            reference,
            split,
            max_images,
            kid_subsets,
            kid_subset_size,
            seed,
            k,
        } => {
            let choice = extractor.choice()?;
            let options = sample_options(layout, range)?;
            let images = load_samples_npy(samples, &options)?;
            let ex = open_extractor(&choice, device())?;
            let is_npy = reference
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
            let reference_images = if is_npy {
                load_samples_npy(reference, &options)?
            } else {
                let ds = crate::data_cmd::open_dataset(reference, "auto", split)?;
                images_of_dataset(ds.as_ref(), *max_images)?
            };
            let kid = ect_metrics::KidConfig {
                num_subsets: *kid_subsets,
                max_subset_size: *kid_subset_size,
                seed: *seed,
            };
            let c = compare_images(
                &images,
                &reference_images,
                ex.as_ref(),
                extractor.batch,
                &kid,
                *k,
            )?;
            println!(
                "{}",
                json!({
                    "metric": choice.fd_metric(),
                    "fd": c.fd,
                    "kid": c.kid.mean,
                    "kid_std": c.kid.std,
                    "kid_subset_size": c.kid.subset_size,
                    "precision": c.precision_recall.precision,
                    "recall": c.precision_recall.recall,
                    "k": c.k,
                    "inception_score": c.inception_score.map(|s| s.mean),
                    "inception_score_std": c.inception_score.map(|s| s.std),
                    "n": c.num_samples,
                    "n_reference": c.num_reference,
                    "extractor": ex.name(),
                    "samples": samples,
                    "reference": reference,
                })
            );
        }
        MetricsCommand::TrainFeatureNet {
            data,
            out,
            epochs,
            seed,
        } => {
            let dir = match data {
                Some(d) => d.clone(),
                None => ect_data::fmnist::locate(Some(&ect_data::fetch::default_cache_dir())).context(
                    "Fashion-MNIST not found: pass --data DIR (or apt-get install dataset-fashion-mnist)",
                )?,
            };
            if let Some(parent) = out.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            let cfg = ect_metrics::extract::featnet::TrainConfig {
                epochs: *epochs,
                seed: *seed,
                ..Default::default()
            };
            let report = ect_metrics::extract::featnet::train_feature_net_on_fashion_mnist(
                &dir,
                out,
                &cfg,
                device(),
            )?;
            eprintln!(
                "feature net: {} steps in {:.0} s, test accuracy {:.4}",
                report.steps,
                report.seconds,
                report.test_accuracy.unwrap_or(f64::NAN)
            );
            println!(
                "{}",
                json!({"out": out, "steps": report.steps, "test_accuracy": report.test_accuracy, "seconds": report.seconds})
            );
        }
    }
    Ok(())
}
