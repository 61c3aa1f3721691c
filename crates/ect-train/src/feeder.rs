//! Batches as tensors from `ect-data`'s seeded, prefetching loader. The loader's order is a pure function
//! of its seed and stream position, so a resumed run (started at its checkpoint's `images_seen`) continues
//! the exact sequence of batches.
//!
//! In a data-parallel run every rank reads only its shard of each global batch from the same global order:
//! with `B` images per step and `W` ranks, rank `r` reads stream positions `[p + r*B/W, p + (r+1)*B/W)` of
//! the step that starts at position `p`, in micro-batches. The global batch, and which image each position
//! holds, are the same whatever `W`.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::time::Instant;

use ect_data::loader::{Batch, Loader, LoaderConfig};
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
}

impl Shard {
    /// The whole batch, in one process.
    pub fn single(global_batch: usize) -> Self {
        Self {
            rank: 0,
            world: 1,
            global_batch,
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

/// Where micro-batches come from: the whole stream (one process), or this rank's shard of it.
enum Source {
    Stream(Loader),
    Shard(ShardReader),
}

/// Feeds micro-batches from a dataset.
pub struct Feeder {
    source: Source,
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
        let cfg = LoaderConfig {
            batch_size: micro_batch,
            seed: derive(seed, 0, Stream::Data),
            xflip: data.xflip,
            prefetch: data.prefetch.max(1),
            cache: data.cache,
            start_images_seen: images_seen,
            threads: data.threads,
        };
        let source = if shard.world == 1 {
            Source::Stream(
                Loader::new(Arc::from(dataset), cfg)
                    .map_err(|e| TrainError::external("starting the data loader", e))?,
            )
        } else {
            if shard.size() == 0 || shard.size() % micro_batch != 0 {
                return Err(TrainError::invalid(
                    "micro_batch",
                    format!(
                        "{micro_batch} must divide the {} images each of the {} processes reads",
                        shard.size(),
                        shard.world
                    ),
                ));
            }
            Source::Shard(ShardReader::start(Arc::from(dataset), cfg, shard)?)
        };
        Ok(Self {
            source,
            micro_batch,
            label_dim,
            wait_seconds: 0.0,
        })
    }

    /// Position in the global stream (the position to save in a checkpoint): images handed out so far
    /// in one process; in a data-parallel run, the start of the next global batch once this rank has
    /// read its whole shard of the current one.
    pub fn images_seen(&self) -> u64 {
        match &self.source {
            Source::Stream(loader) => loader.images_seen(),
            Source::Shard(reader) => reader.images_seen(),
        }
    }

    /// Seconds spent waiting for and converting batches so far.
    pub fn wait_seconds(&self) -> f64 {
        self.wait_seconds
    }

    /// The next micro-batch as tensors on `device`.
    pub fn next_batch(&mut self, device: Device) -> Result<TensorBatch> {
        let start = Instant::now();
        let b = match &mut self.source {
            Source::Stream(loader) => loader.next_batch(),
            Source::Shard(reader) => reader.next_batch(),
        }
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

/// The micro-batches of one rank's shard of every global batch, decoded ahead by a producer thread (at
/// most `prefetch` micro-batches), in the order of `ect-data`'s seeded stream.
struct ShardReader {
    rx: Option<Receiver<ect_data::Result<Batch>>>,
    start: u64,
    shard: Shard,
    micro_batch: usize,
    delivered: u64,
    failed: bool,
}

impl ShardReader {
    fn start(ds: Arc<dyn Dataset>, cfg: LoaderConfig, shard: Shard) -> Result<Self> {
        let (tx, rx) = sync_channel(cfg.prefetch.max(1));
        let (start, micro) = (cfg.start_images_seen, cfg.batch_size);
        let per_step = shard.size() / micro;
        std::thread::Builder::new()
            .name(format!("ect-shard-reader-{}", shard.rank))
            .spawn(move || {
                let mut sampler = ect_data::sampler::Sampler::new(ds.len(), cfg.seed);
                for k in 0u64.. {
                    let (step, m) = (k / per_step as u64, (k % per_step as u64) as usize);
                    let first = start
                        + step * shard.global_batch as u64
                        + (shard.start() + m * micro) as u64;
                    let batch = read_batch(&*ds, &mut sampler, first, micro, cfg.xflip);
                    let failed = batch.is_err();
                    // A send error means the feeder is gone: stop.
                    if tx.send(batch).is_err() || failed {
                        return;
                    }
                }
            })
            .map_err(|e| TrainError::external("starting the shard reader", e))?;
        Ok(Self {
            rx: Some(rx),
            start,
            shard,
            micro_batch: micro,
            delivered: 0,
            failed: false,
        })
    }

    fn next_batch(&mut self) -> ect_data::Result<Batch> {
        let stopped = |msg: &str| ect_data::DataError::Config {
            field: "loader",
            msg: msg.into(),
        };
        if self.failed {
            return Err(stopped("stopped after an earlier error"));
        }
        let rx = self.rx.as_ref().ok_or_else(|| stopped("closed"))?;
        match rx.recv() {
            Ok(Ok(b)) => {
                self.delivered += 1;
                Ok(b)
            }
            Ok(Err(e)) => {
                self.failed = true;
                Err(e)
            }
            Err(_) => {
                self.failed = true;
                Err(stopped("the shard reader stopped unexpectedly"))
            }
        }
    }

    fn images_seen(&self) -> u64 {
        let per_step = (self.shard.size() / self.micro_batch) as u64;
        self.start + self.delivered.div_ceil(per_step) * self.shard.global_batch as u64
    }
}

/// The `n` images at stream positions `first..first + n`.
fn read_batch(
    ds: &dyn Dataset,
    sampler: &mut ect_data::sampler::Sampler,
    first: u64,
    n: usize,
    xflip: bool,
) -> ect_data::Result<Batch> {
    let (size, w) = (ds.image_size(), ds.width());
    let mut images = vec![0u8; n * size];
    let (mut indices, mut flipped, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    for (k, out) in images.chunks_mut(size).enumerate() {
        let (i, f) = sampler.at(first + k as u64);
        let f = f && xflip;
        ds.image_into(i, out)?;
        if f {
            ect_data::loader::flip_x(out, w);
        }
        if ds.label_dim() > 0 {
            labels.push(ds.label(i).unwrap_or(0));
        }
        indices.push(i as u64);
        flipped.push(f);
    }
    Ok(Batch {
        images,
        labels,
        indices,
        flipped,
        first_image: first,
        n,
        c: ds.channels(),
        h: ds.height(),
        w,
        label_dim: ds.label_dim(),
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
