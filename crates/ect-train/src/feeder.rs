//! Batches as tensors from `ect-data`'s seeded, prefetching loader. The loader's order is a pure function
//! of its seed and stream position, so a resumed run (started at its checkpoint's `images_seen`) continues
//! the exact sequence of batches.
//!
//! In a data-parallel run every rank reads only its shard of each global batch from the same global order:
//! with `B` images per step and `W` ranks, rank `r` reads stream positions `[p + r*B/W, p + (r+1)*B/W)` of
//! the step that starts at position `p`, in micro-batches. The global batch, and which image each position
//! holds, are the same whatever `W`.

use std::sync::Arc;
use std::time::Instant;

use ect_data::loader::{Loader, LoaderConfig, StreamShard};
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

/// Which part of every global batch this process reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This process's rank.
    pub rank: usize,
    /// Number of processes.
    pub world: usize,
    /// Images per optimizer step over all processes.
    pub global_batch: usize,
    /// Processes on this machine, which share its cores and memory for decoding and caching images.
    pub processes_on_node: usize,
}

impl Shard {
    /// The whole batch, in one process.
    pub fn single(global_batch: usize) -> Self {
        Self {
            rank: 0,
            world: 1,
            global_batch,
            processes_on_node: 1,
        }
    }

    /// Images of each global batch this process reads.
    pub fn size(&self) -> usize {
        self.global_batch / self.world
    }

    /// Position of this shard's first image within the global batch.
    pub fn start(&self) -> usize {
        self.rank * self.size()
    }
}

/// Feeds micro-batches from a dataset.
pub struct Feeder {
    loader: Loader,
    micro_batch: usize,
    label_dim: i64,
    wait_seconds: f64,
}

impl Feeder {
    /// A feeder of `micro_batch` images per batch from `shard` of every global batch, positioned after
    /// `images_seen` images of the global stream (a multiple of the global batch when sharded); batches
    /// carry one-hot labels of `label_dim` classes when `label_dim > 0` (a conditional run) and the
    /// dataset has labels. `micro_batch` must divide the shard.
    pub fn new(
        dataset: Box<dyn Dataset>,
        data: &DataConfig,
        seed: u64,
        micro_batch: usize,
        images_seen: u64,
        label_dim: i64,
        shard: Shard,
    ) -> Result<Self> {
        if dataset.is_empty() {
            return Err(TrainError::invalid(
                "data.path",
                format!("{} holds no images", dataset.source().display()),
            ));
        }
        if shard.world > 1 && (shard.size() == 0 || shard.size() % micro_batch != 0) {
            return Err(TrainError::invalid(
                "micro_batch",
                format!(
                    "{micro_batch} must divide the {} images each of the {} processes reads",
                    shard.size(),
                    shard.world
                ),
            ));
        }
        let dataset_bytes = dataset.len() as u64 * dataset.image_size() as u64;
        let cache = match cache_refusal(
            data.cache,
            dataset_bytes,
            shard.processes_on_node,
            crate::session::total_memory_bytes(),
        ) {
            Some(why) => {
                if shard.rank == 0 {
                    eprintln!("warning: {why}");
                }
                false
            }
            None => data.cache,
        };
        let cfg = LoaderConfig {
            batch_size: micro_batch,
            seed: derive(seed, 0, Stream::Data),
            xflip: data.xflip,
            prefetch: data.prefetch.max(1),
            cache,
            start_images_seen: images_seen,
            threads: decode_threads(
                data.threads,
                shard.processes_on_node,
                std::thread::available_parallelism().map_or(1, |n| n.get()),
            ),
            shard: (shard.world > 1)
                .then(|| StreamShard::equal(shard.rank, shard.world, shard.global_batch)),
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

    /// Position in the global stream (the position to save in a checkpoint): images handed out so far
    /// in one process; in a data-parallel run, the start of the next global batch once this rank has
    /// started reading its shard of the current one (the same on every rank at a step boundary).
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

/// Decoding threads of each process's loader: `configured` when set; otherwise (0) the machine's
/// `cores` shared among the `processes_on_node` processes that decode on it, at least one each (one
/// process keeps 0: the loader's own default of one thread per core).
pub fn decode_threads(configured: usize, processes_on_node: usize, cores: usize) -> usize {
    match (configured, processes_on_node) {
        (0, 0 | 1) => 0,
        (0, p) => (cores / p).max(1),
        (t, _) => t,
    }
}

/// Why `data.cache` is not honoured, if it is not: the decoded images of a dataset of
/// `dataset_bytes`, cached once by each of the `processes_on_node` processes, may take at most half of
/// `total_memory` (the machine's, or its container's limit; unknown: no limit). A cache that does not fit is only an optimization
/// lost, so the run goes on without it.
pub fn cache_refusal(
    cache: bool,
    dataset_bytes: u64,
    processes_on_node: usize,
    total_memory: Option<u64>,
) -> Option<String> {
    let (true, Some(total)) = (cache, total_memory) else {
        return None;
    };
    let needed = dataset_bytes.saturating_mul(processes_on_node.max(1) as u64);
    let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
    (needed > total / 2).then(|| {
        format!(
            "data.cache is off for this run: the decoded images ({:.1} GiB{}) would take more than \
             half of the {:.1} GiB of memory this machine (or its container) allows; images are \
             decoded every time they are read (set data.cache = false to silence this)",
            gib(needed),
            if processes_on_node > 1 {
                format!(", once in each of {processes_on_node} processes")
            } else {
                String::new()
            },
            gib(total)
        )
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_on_one_machine_share_its_cores_for_decoding() {
        assert_eq!(
            decode_threads(0, 1, 16),
            0,
            "one process: one thread per core"
        );
        assert_eq!(decode_threads(0, 8, 16), 2);
        assert_eq!(decode_threads(0, 3, 16), 5);
        assert_eq!(decode_threads(0, 4, 2), 1, "at least one thread each");
        assert_eq!(decode_threads(6, 8, 16), 6, "a configured count is kept");
    }

    #[test]
    fn a_cache_larger_than_half_the_memory_is_refused_with_the_figures() {
        const GIB: u64 = 1 << 30;
        // ImageNet 64x64 (1.28M images of 12 KiB, 15.7 GiB decoded) on a 128 GiB machine: fits in one
        // process, not in eight.
        let imagenet = 1_281_167 * 64 * 64 * 3;
        assert_eq!(cache_refusal(true, imagenet, 1, Some(128 * GIB)), None);
        let why = cache_refusal(true, imagenet, 8, Some(128 * GIB)).unwrap();
        assert!(
            why.contains("data.cache")
                && why.contains("117.3 GiB")
                && why.contains("8 processes")
                && why.contains("128.0 GiB")
                && !why.contains("  "),
            "{why}"
        );
        // Exactly half still fits; without a cache or an unknown memory size nothing is said.
        assert_eq!(cache_refusal(true, 32 * GIB, 2, Some(128 * GIB)), None);
        assert!(cache_refusal(true, 32 * GIB + 1, 2, Some(128 * GIB)).is_some());
        assert_eq!(cache_refusal(false, imagenet, 8, Some(GIB)), None);
        assert_eq!(cache_refusal(true, imagenet, 8, None), None);
    }
}
