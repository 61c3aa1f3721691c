//! `ect data ...`: inspect and prepare datasets (through `ect-data`).

use anyhow::Context;
use clap::Subcommand;
use std::path::{Path, PathBuf};

/// `ect data` subcommands.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Print one JSON object describing a dataset: count, channels, height, width, label_counts,
    /// pixel_sha256 (every image's u8 pixels in index order, C,H,W) and pixel_mean.
    Stats {
        /// Dataset file or folder.
        #[arg(long)]
        dataset: PathBuf,
        /// Layout of the files (default: detected from the path).
        #[arg(long, default_value = "auto")]
        format: String,
        /// Which split.
        #[arg(long, default_value = "train")]
        split: String,
    },
    /// Download a dataset with public URLs (cifar10, cifar10-binary, cifar100, cifar100-binary, mnist,
    /// fashion-mnist) into the cache, verifying the published checksums; prints the path to use.
    /// Fashion-MNIST comes from Debian's /usr/share/datasets/fashion-mnist instead when that copy is
    /// present and verified.
    Fetch {
        /// Dataset name.
        name: String,
        /// Cache folder (default: $ECT_DATA_CACHE, else $XDG_CACHE_HOME/ect/datasets, else
        /// ~/.cache/ect/datasets).
        #[arg(long)]
        cache: Option<PathBuf>,
    },
    /// Convert ImageNet (`train/<wnid>/*.JPEG`) once to an EDM zip at a resolution (center-crop-dhariwal).
    /// The destination's folder is created; on an error no partial zip is left.
    ConvertImagenet {
        /// The ImageNet folder (with `train/` and/or `val/`).
        #[arg(long)]
        source: PathBuf,
        /// Output resolution (64 or 32).
        #[arg(long, default_value_t = 64)]
        resolution: usize,
        /// Which split.
        #[arg(long, default_value = "train")]
        split: String,
        /// Output `.zip`.
        #[arg(long)]
        dest: PathBuf,
    },
    /// Convert any dataset `ect data` reads to an EDM zip (PNGs + dataset.json), as EDM's dataset_tool.
    /// The destination's folder is created; on an error no partial zip is left.
    Convert {
        /// Dataset file or folder.
        #[arg(long)]
        dataset: PathBuf,
        /// Layout of the files (default: detected from the path).
        #[arg(long, default_value = "auto")]
        format: String,
        /// Which split.
        #[arg(long, default_value = "train")]
        split: String,
        /// Output `.zip`.
        #[arg(long)]
        dest: PathBuf,
    },
}

/// Progress on standard error every 5% (and at the end).
fn progress_printer(what: &'static str) -> impl FnMut(usize, usize) {
    let start = std::time::Instant::now();
    let mut last = usize::MAX;
    move |done, total| {
        let pct = (done * 100).checked_div(total).unwrap_or(100);
        if pct / 5 != last / 5 || done == total {
            last = pct;
            let rate = done as f64 / start.elapsed().as_secs_f64().max(1e-9);
            let eta = (total.saturating_sub(done)) as f64 / rate.max(1e-9);
            eprintln!("{what}: {done}/{total} images ({pct}%), {rate:.0} images/s, ETA {eta:.0} s");
        }
    }
}

/// Opens a dataset given on the command line (format and split as their CLI words).
///
/// Every command that reads a dataset here (`data stats`, `data convert`, the `metrics` commands) reads
/// its images once in index order, which meets a bad image as early as the check at open would, so the
/// check is skipped ([`ect_data::ImageCheck::Skip`]) instead of decoding everything twice.
pub fn open_dataset(
    path: &Path,
    format: &str,
    split: &str,
) -> anyhow::Result<Box<dyn ect_data::Dataset>> {
    let mut spec = ect_data::DatasetSpec::new(path.to_path_buf());
    spec.format = format.parse()?;
    spec.split = split.parse()?;
    ect_data::open_with(&spec, ect_data::ImageCheck::Skip)
        .with_context(|| format!("opening dataset {}", path.display()))
}

/// Runs an `ect data` subcommand.
pub fn run(cmd: &DataCommand) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Stats {
            dataset,
            format,
            split,
        } => {
            let ds = open_dataset(dataset, format, split)?;
            let stats = ect_data::stats::dataset_stats(ds.as_ref())?;
            println!("{}", serde_json::to_string(&stats)?);
            Ok(())
        }
        DataCommand::Fetch { name, cache } => {
            if name == "fashion-mnist" {
                // Debian's `dataset-fashion-mnist` package holds the same data (recompressed), so
                // a verified copy there makes the download unnecessary.
                let debian = Path::new(ect_data::fmnist::DEBIAN_DIR);
                if ect_data::fmnist::is_fashion_mnist_dir(debian) {
                    match ect_data::fmnist::verify(debian) {
                        Ok(()) => {
                            eprintln!(
                                "{name}: using the Debian package's copy in {} (contents verified \
                                 against the published SHA-256s); nothing downloaded",
                                debian.display()
                            );
                            println!("{}", debian.display());
                            return Ok(());
                        }
                        Err(e) => eprintln!(
                            "{name}: not using the copy in {} ({e}); downloading instead",
                            debian.display()
                        ),
                    }
                }
            }
            let cache = cache
                .clone()
                .unwrap_or_else(ect_data::fetch::default_cache_dir);
            let mut last = 0u64;
            let mut progress = |done: u64, total: Option<u64>| {
                if done >= last + (8 << 20) || Some(done) == total {
                    last = done;
                    let total = total
                        .map(|t| format!(" of {:.1}", t as f64 / 1e6))
                        .unwrap_or_default();
                    eprintln!("{name}: {:.1}{total} MB", done as f64 / 1e6);
                }
            };
            let path = ect_data::fetch::fetch(name, &cache, &mut progress)
                .with_context(|| format!("fetching {name}"))?;
            eprintln!(
                "{name}: using the checksum-verified files in {}",
                cache.display()
            );
            println!("{}", path.display());
            Ok(())
        }
        DataCommand::ConvertImagenet {
            source,
            resolution,
            split,
            dest,
        } => {
            let mut progress = progress_printer("convert-imagenet");
            let out = ect_data::imagenet::convert_to_zip(
                source,
                split.parse()?,
                *resolution,
                dest,
                &mut progress,
            )?;
            println!("{}", out.display());
            Ok(())
        }
        DataCommand::Convert {
            dataset,
            format,
            split,
            dest,
        } => {
            let ds = open_dataset(dataset, format, split)?;
            let mut progress = progress_printer("convert");
            let out = ect_data::edm::write_zip_with_progress(ds.as_ref(), dest, &mut progress)?;
            println!("{}", out.display());
            Ok(())
        }
    }
}
