//! `ect data stats`: counts, shape, label histogram, a SHA-256 of all pixels and the pixel mean, so the
//! same images stored in different formats can be checked to be identical.

use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::dataset::Dataset;
use crate::error::Result;

/// Summary of a dataset, printed as JSON by `ect data stats`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetStats {
    /// Number of images.
    pub count: u64,
    /// Channels per image.
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// Images per class, indexed by label (empty when unlabeled).
    pub label_counts: Vec<u64>,
    /// Hex SHA-256 of every image's `u8` pixels, C,H,W, images in index order.
    pub pixel_sha256: String,
    /// Mean pixel value over all images and channels, in 0..=255 units.
    pub pixel_mean: f64,
}

/// Images decoded at once (in parallel) before they are hashed in order: up to 512, within 64 MiB.
pub(crate) fn chunk_len(image_size: usize) -> usize {
    (64usize << 20)
        .checked_div(image_size)
        .unwrap_or(512)
        .clamp(1, 512)
}

/// Computes [`DatasetStats`] by decoding every image (in parallel, hashed in index order).
pub fn dataset_stats(ds: &dyn Dataset) -> Result<DatasetStats> {
    let n = ds.len();
    let size = ds.image_size();
    let mut hasher = Sha256::new();
    let mut sum: u64 = 0;
    let mut label_counts = vec![0u64; ds.label_dim()];
    let chunk_n = chunk_len(size);
    let mut buf = vec![0u8; chunk_n.min(n.max(1)) * size];
    let mut start = 0;
    while start < n {
        let count = chunk_n.min(n - start);
        let chunk = &mut buf[..count * size];
        chunk
            .par_chunks_mut(size)
            .enumerate()
            .try_for_each(|(k, out)| ds.image_into(start + k, out))?;
        hasher.update(&*chunk);
        sum += chunk
            .par_chunks(1 << 16)
            .map(|c| c.iter().map(|&p| p as u64).sum::<u64>())
            .sum::<u64>();
        for i in start..start + count {
            if let Some(l) = ds.label(i) {
                if let Some(c) = label_counts.get_mut(l as usize) {
                    *c += 1;
                }
            }
        }
        start += count;
    }
    let total = n as f64 * size as f64;
    Ok(DatasetStats {
        count: n as u64,
        channels: ds.channels(),
        height: ds.height(),
        width: ds.width(),
        label_counts,
        pixel_sha256: hex(&hasher.finalize()),
        pixel_mean: if n == 0 { 0.0 } else { sum as f64 / total },
    })
}

/// Opens the dataset `spec` describes and computes its [`DatasetStats`] (what `ect data stats` prints).
pub fn stats_of(spec: &crate::DatasetSpec) -> Result<DatasetStats> {
    dataset_stats(&*crate::open(spec)?)
}

/// Lower-case hex of a byte string.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
