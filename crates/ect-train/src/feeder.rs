//! Batches as tensors from `ect-data`'s seeded, prefetching loader. The loader's order is a pure function
//! of its seed and stream position, so a resumed run (started at its checkpoint's `images_seen`) continues
//! the exact sequence of batches.

use std::sync::Arc;
use std::time::Instant;

use ect_data::loader::{Loader, LoaderConfig};
use ect_data::Dataset;
use tch::{Device, Kind, Tensor};

use ect_config::train::DataConfig;

use crate::error::{Result, TrainError};
use crate::labels::one_hot;
use crate::rng::{derive, Stream};

/// A batch as tensors on the training device.
pub struct TensorBatch {
    /// Images in [-1, 1] (`x / 127.5 - 1`), [N, C, H, W] f32.
    pub images: Tensor,
    /// One-hot class labels `[N, label_dim]` for a conditional run, `None` otherwise.
    pub labels: Option<Tensor>,
}

/// Feeds micro-batches from a dataset.
pub struct Feeder {
    loader: Loader,
    micro_batch: usize,
    label_dim: i64,
    wait_seconds: f64,
}

impl Feeder {
    /// A feeder of `micro_batch` images per batch, positioned after `images_seen` images; batches carry
    /// one-hot labels of `label_dim` classes when `label_dim > 0` (a conditional run) and the dataset has
    /// labels.
    pub fn new(
        dataset: Box<dyn Dataset>,
        data: &DataConfig,
        seed: u64,
        micro_batch: usize,
        images_seen: u64,
        label_dim: i64,
    ) -> Result<Self> {
        if dataset.is_empty() {
            return Err(TrainError::invalid(
                "data.path",
                format!("{} holds no images", dataset.source().display()),
            ));
        }
        let cfg = LoaderConfig {
            batch_size: micro_batch,
            seed: derive(seed, 0, Stream::Data),
            xflip: data.xflip,
            prefetch: data.prefetch.max(1),
            cache: data.cache,
            start_images_seen: images_seen,
            threads: data.threads,
        };
        let loader = Loader::new(Arc::from(dataset), cfg)
            .map_err(|e| TrainError::external("starting the data loader", e))?;
        Ok(Self {
            loader,
            micro_batch,
            label_dim,
            wait_seconds: 0.0,
        })
    }

    /// Images handed out so far (the position to save in a checkpoint).
    pub fn images_seen(&self) -> u64 {
        self.loader.images_seen()
    }

    /// Seconds spent waiting for and converting batches so far.
    pub fn wait_seconds(&self) -> f64 {
        self.wait_seconds
    }

    /// The next micro-batch as tensors on `device`.
    pub fn next_batch(&mut self, device: Device) -> Result<TensorBatch> {
        let start = Instant::now();
        let b = self
            .loader
            .next_batch()
            .map_err(|e| TrainError::external("reading a batch", e))?;
        debug_assert_eq!(b.n, self.micro_batch);
        let images = crate::transfer::upload(Tensor::from_slice(&b.images), device)
            .view([b.n as i64, b.c as i64, b.h as i64, b.w as i64])
            .to_kind(Kind::Float)
            / 127.5
            - 1.0;
        let labels = (self.label_dim > 0 && b.label_dim > 0).then(|| {
            let classes: Vec<i64> = b.labels.iter().map(|&l| l as i64).collect();
            one_hot(&classes, self.label_dim, device)
        });
        self.wait_seconds += start.elapsed().as_secs_f64();
        Ok(TensorBatch { images, labels })
    }
}

/// Opens the dataset a configuration trains on.
pub fn open_dataset(data: &DataConfig) -> Result<Box<dyn Dataset>> {
    let format = data
        .format
        .parse()
        .map_err(|e| TrainError::invalid("data.format", format!("{e}")))?;
    let split = data
        .split
        .parse()
        .map_err(|e| TrainError::invalid("data.split", format!("{e}")))?;
    let spec = ect_data::DatasetSpec {
        path: data.path.clone(),
        format,
        split,
        require_labels: data.conditional,
        resolution: data.resolution,
    };
    ect_data::open(&spec)
        .map_err(|e| TrainError::external(format!("opening data.path {}", data.path.display()), e))
}
