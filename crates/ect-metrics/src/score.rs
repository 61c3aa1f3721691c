//! Scores as recorded with a run, and the library side of the `ect metrics` commands.
//!
//! The CLI calls:
//! - `metrics fd A.npz B.npz` -> [`fd_of_files`];
//! - `metrics stats` -> [`open_extractor`] then [`accumulate_dataset`] (any dataset `ect-data` opens) or
//!   [`crate::samples::load_samples_npy`] + [`accumulate_images`] over this process's [`Share`] of the
//!   batches, the accumulators pooled over the processes, then [`crate::save_stats_npz`] (one process:
//!   [`stats_of_dataset`] / [`stats_of_images`]);
//! - `metrics compare` -> [`compare_images`] (FD, KID, precision/recall and, with logits, IS of samples
//!   against reference images, from one extraction pass over each);
//! - `metrics train-feature-net` -> [`crate::extract::featnet::train_feature_net_on_fashion_mnist`].

use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::Device;

use crate::error::{MetricsError, Result};
use crate::extract::featnet::FeatureNet;
use crate::extract::torchscript::TorchScriptExtractor;
use crate::extract::{FeatureExtractor, Features, ImageBatch};
use crate::frechet::frechet_distance;
use crate::inception_score::{inception_score, InceptionScore};
use crate::kid::{kernel_inception_distance, Kid, KidConfig};
use crate::npz::load_stats_npz;
use crate::precision_recall::{precision_recall, PrecisionRecall};
use crate::samples::Images;
use crate::stats::{FeatureStats, StatsAccumulator};

/// One metric value with what it was computed from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Metric name: "fid", "fd_dinov2" or "fd_fmnist" (what [`fd_score`] produces).
    pub metric: String,
    /// The value.
    pub value: f64,
    /// Spread over splits or subsets, where the metric has one (IS, KID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<f64>,
    /// The feature extractor's name (see [`FeatureExtractor::name`]).
    pub extractor: String,
    /// Number of generated samples scored.
    pub num_samples: u64,
    /// The reference statistics or dataset compared against, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// Fréchet distance between the statistics in two EDM `.npz` files.
pub fn fd_of_files(a: &Path, b: &Path) -> Result<f64> {
    let (sa, sb) = (load_stats_npz(a)?, load_stats_npz(b)?);
    if sa.dim() != sb.dim() {
        return Err(MetricsError::dim(
            format!("feature dimension of {} (vs {})", b.display(), a.display()),
            sa.dim(),
            sb.dim(),
        ));
    }
    frechet_distance(&sa, &sb)
}

/// A Fréchet-distance [`Score`] of sample statistics against reference statistics.
pub fn fd_score(
    samples: &FeatureStats,
    reference: &FeatureStats,
    metric: &str,
    extractor: &str,
    reference_name: Option<&str>,
) -> Result<Score> {
    let num_samples = samples.num_samples().ok_or_else(|| {
        MetricsError::arg(
            "samples",
            "statistics",
            "the number of samples is unknown (compute them with stats_of_images)",
        )
    })?;
    Ok(Score {
        metric: metric.into(),
        value: frechet_distance(samples, reference)?,
        std: None,
        extractor: extractor.into(),
        num_samples,
        reference: reference_name.map(str::to_string),
    })
}

/// Which feature extractor (defined with the configuration, which names it in `[eval]`).
pub use ect_config::train::ExtractorChoice;

/// Loads the chosen extractor on `device`.
pub fn open_extractor(
    choice: &ExtractorChoice,
    device: Device,
) -> Result<Box<dyn FeatureExtractor>> {
    Ok(match choice {
        ExtractorChoice::Inception { path } => {
            Box::new(TorchScriptExtractor::inception(path, device)?)
        }
        ExtractorChoice::Dinov2 { path } => Box::new(TorchScriptExtractor::dinov2(path, device)?),
        ExtractorChoice::FeatureNet { weights } => Box::new(FeatureNet::load(weights, device)?),
    })
}

/// Which batches of an extraction pass one of several processes takes: batches `index`,
/// `index + count`, `index + 2 count`, ... (round-robin, so uneven counts differ by at most one batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// This process's position, `0..count`.
    pub index: usize,
    /// Number of processes.
    pub count: usize,
}

impl Share {
    /// Every batch, in one process.
    pub const ALL: Share = Share { index: 0, count: 1 };

    /// This share's process: rank `rank` of `world`.
    pub fn of_rank(rank: usize, world: usize) -> Share {
        Share {
            index: rank,
            count: world,
        }
    }

    /// The indices of the batches this share takes of `n` items in batches of `batch_size` (the last
    /// batch may be short).
    pub fn batches(self, n: usize, batch_size: usize) -> impl Iterator<Item = usize> {
        (self.index..n.div_ceil(batch_size.max(1))).step_by(self.count.max(1))
    }

    /// The first image of each batch of `batch_size` images of `n` that this share takes.
    fn batch_starts(self, n: usize, batch_size: usize) -> impl Iterator<Item = usize> {
        self.batches(n, batch_size).map(move |k| k * batch_size)
    }
}

/// Feature statistics of `u8` images, `batch_size` at a time; the sample count is recorded.
pub fn stats_of_images(
    images: &Images,
    extractor: &dyn FeatureExtractor,
    batch_size: usize,
) -> Result<FeatureStats> {
    stats_of_images_with(images, extractor, batch_size, &mut |_| Ok(()))
}

/// [`stats_of_images`], handing each batch's [`Features`] (logits included) to `each_batch` as well, so
/// that other metrics can use the same extraction pass instead of running the network again.
pub fn stats_of_images_with(
    images: &Images,
    extractor: &dyn FeatureExtractor,
    batch_size: usize,
    each_batch: &mut dyn FnMut(&Features) -> Result<()>,
) -> Result<FeatureStats> {
    accumulate_images(images, extractor, batch_size, Share::ALL, each_batch)?.finish()
}

/// The running statistics of `share`'s batches of `images` (all of them with [`Share::ALL`]), handing
/// each batch's [`Features`] to `each_batch`; the processes' accumulators pool into the statistics of
/// every image (`ect_train::feature_pool`).
pub fn accumulate_images(
    images: &Images,
    extractor: &dyn FeatureExtractor,
    batch_size: usize,
    share: Share,
    each_batch: &mut dyn FnMut(&Features) -> Result<()>,
) -> Result<StatsAccumulator> {
    check_batch_size(batch_size)?;
    let size = images.c * images.h * images.w;
    if images.pixels.len() != images.n * size {
        return Err(MetricsError::dim(
            "pixels of the images",
            images.n * size,
            images.pixels.len(),
        ));
    }
    let mut acc = StatsAccumulator::new(extractor.feature_dim())?;
    for start in share.batch_starts(images.n, batch_size) {
        let count = batch_size.min(images.n - start);
        let px = &images.pixels[start * size..(start + count) * size];
        let batch = ImageBatch::new(px, count, images.c, images.h, images.w)?;
        let features = extractor.extract(&batch)?;
        acc.add_batch(&features.features)?;
        each_batch(&features)?;
    }
    Ok(acc)
}

/// Feature statistics of (the first `max_images` of) a dataset.
pub fn stats_of_dataset(
    dataset: &dyn ect_data::Dataset,
    extractor: &dyn FeatureExtractor,
    batch_size: usize,
    max_images: Option<usize>,
) -> Result<FeatureStats> {
    accumulate_dataset(dataset, extractor, batch_size, max_images, Share::ALL)?.finish()
}

/// The running statistics of `share`'s batches of (the first `max_images` of) a dataset, decoded one
/// batch at a time.
pub fn accumulate_dataset(
    dataset: &dyn ect_data::Dataset,
    extractor: &dyn FeatureExtractor,
    batch_size: usize,
    max_images: Option<usize>,
    share: Share,
) -> Result<StatsAccumulator> {
    check_batch_size(batch_size)?;
    let n = max_images.map_or(dataset.len(), |m| m.min(dataset.len()));
    let (c, h, w) = (dataset.channels(), dataset.height(), dataset.width());
    let size = dataset.image_size();
    // The pixel buffer holds one batch: a batch larger than the dataset would only ask for memory.
    let batch_size = batch_size.min(n.max(1));
    let mut acc = StatsAccumulator::new(extractor.feature_dim())?;
    let mut pixels = vec![0u8; batch_size * size];
    for start in share.batch_starts(n, batch_size) {
        let count = batch_size.min(n - start);
        for i in 0..count {
            dataset
                .image_into(start + i, &mut pixels[i * size..(i + 1) * size])
                .map_err(|e| MetricsError::Data(format!("{}: {e}", dataset.source().display())))?;
        }
        let batch = ImageBatch::new(&pixels[..count * size], count, c, h, w)?;
        acc.add_batch(&extractor.extract(&batch)?.features)?;
    }
    Ok(acc)
}

fn check_batch_size(batch_size: usize) -> Result<()> {
    if batch_size == 0 {
        return Err(MetricsError::arg("batch_size", 0, "must be positive"));
    }
    Ok(())
}

/// The first `max_images` (all when `None`) images of a dataset, in memory (for metrics that need every
/// feature vector, unlike the streamed statistics of [`stats_of_dataset`]).
pub fn images_of_dataset(
    dataset: &dyn ect_data::Dataset,
    max_images: Option<usize>,
) -> Result<Images> {
    let n = max_images.map_or(dataset.len(), |m| m.min(dataset.len()));
    let size = dataset.image_size();
    // Every image is held at once: a failed allocation is an error saying so, not an abort.
    let bytes = n.checked_mul(size);
    let mut pixels = Vec::new();
    if bytes.is_none_or(|b| pixels.try_reserve_exact(b).is_err()) {
        return Err(MetricsError::arg(
            "max_images",
            n,
            format!(
                "{n} images of {} bytes do not fit in memory; read fewer (--max-images)",
                size
            ),
        ));
    }
    pixels.resize(n * size, 0u8);
    for (i, chunk) in pixels.chunks_exact_mut(size.max(1)).enumerate().take(n) {
        dataset
            .image_into(i, chunk)
            .map_err(|e| MetricsError::Data(format!("{}: {e}", dataset.source().display())))?;
    }
    Ok(Images {
        pixels,
        n,
        c: dataset.channels(),
        h: dataset.height(),
        w: dataset.width(),
    })
}

/// Sample-quality metrics of generated images against reference images in one extractor's feature space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Fréchet distance of the two feature distributions.
    pub fd: f64,
    /// Kernel distance (unbiased polynomial-kernel MMD^2 over subsets).
    pub kid: Kid,
    /// k-NN manifold precision and recall.
    pub precision_recall: PrecisionRecall,
    /// Neighbourhood size of precision/recall.
    pub k: usize,
    /// Inception Score of the samples, when the extractor has logits (10 splits, as StyleGAN2-ADA).
    pub inception_score: Option<InceptionScore>,
    /// Number of generated samples.
    pub num_samples: u64,
    /// Number of reference images.
    pub num_reference: u64,
}

/// All features (and logits, when the extractor has them) of `images`, with their statistics.
fn features_of_images(
    images: &Images,
    extractor: &dyn FeatureExtractor,
    batch_size: usize,
) -> Result<(FeatureStats, Vec<f32>, Option<Vec<f32>>)> {
    let mut features = Vec::with_capacity(images.n * extractor.feature_dim());
    let mut logits: Option<Vec<f32>> = (extractor.num_classes() > 0).then(Vec::new);
    let stats = stats_of_images_with(images, extractor, batch_size, &mut |f| {
        features.extend_from_slice(&f.features);
        match (&mut logits, &f.logits) {
            (Some(all), Some(l)) => all.extend_from_slice(l),
            _ => logits = None,
        }
        Ok(())
    })?;
    Ok((stats, features, logits))
}

/// FD, KID, precision/recall (neighbourhood `k`) and, with a classifier extractor, the Inception Score of
/// `samples` against `reference`; each image set goes through the extractor once.
///
/// # Shapes
/// `samples` and `reference` are `u8` N,C,H,W images the extractor accepts (the two may differ in N).
pub fn compare_images(
    samples: &Images,
    reference: &Images,
    extractor: &dyn FeatureExtractor,
    batch_size: usize,
    kid: &KidConfig,
    k: usize,
) -> Result<Comparison> {
    let (fake_stats, fake, logits) = features_of_images(samples, extractor, batch_size)?;
    let (real_stats, real, _) = features_of_images(reference, extractor, batch_size)?;
    let d = extractor.feature_dim();
    let inception_score = match logits {
        Some(l) if samples.n >= 10 => Some(inception_score(&l, extractor.num_classes(), 10)?),
        _ => None,
    };
    Ok(Comparison {
        fd: frechet_distance(&fake_stats, &real_stats)?,
        kid: kernel_inception_distance(&real, &fake, d, kid)?,
        precision_recall: precision_recall(&real, &fake, d, k)?,
        k,
        inception_score,
        num_samples: samples.n as u64,
        num_reference: reference.n as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::Share;

    /// The shares of a pass partition its batches, round-robin, whatever the number of processes.
    #[test]
    fn shares_partition_the_batches() {
        for count in 1..6 {
            let mut all: Vec<usize> = (0..count)
                .flat_map(|index| Share { index, count }.batch_starts(23, 4))
                .collect();
            all.sort_unstable();
            assert_eq!(all, [0, 4, 8, 12, 16, 20], "{count} processes");
        }
        let second: Vec<usize> = Share { index: 1, count: 2 }.batch_starts(23, 4).collect();
        assert_eq!(second, [4, 12, 20]);
        assert_eq!(Share::ALL.batch_starts(0, 4).count(), 0);
    }
}
