//! The infinite, seeded, prefetching loader: a producer thread decodes whole batches in parallel on its
//! own rayon pool and queues up to `prefetch` of them in a bounded channel, so memory stays at most
//! `prefetch + 2` batches plus the optional cache. The order comes from [`crate::sampler`], so batches
//! are the same whatever the thread count, and `start_images_seen` resumes on the exact next batch.
//!
//! A process of a data-parallel run reads only its [`StreamShard`] of every global batch: the same
//! stream, threads, cache and prefetching, at the positions of its shard.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::sampler::Sampler;

/// The most decoding threads a loader may have ([`LoaderConfig::threads`]).
///
/// Decoding is CPU-bound, so threads beyond the machine's hardware threads only add contention and
/// memory (a stack and a scratch image each); the largest single machines have a few hundred hardware
/// threads. Without a bound, `threads = 100000` spent minutes creating threads before the first batch.
pub const MAX_LOADER_THREADS: usize = 1024;

/// The most batches a loader may queue ahead ([`LoaderConfig::prefetch`]): the queue's slots are
/// reserved up front and every queued batch is held in memory, while a few batches ahead already hide
/// the decoding time.
pub const MAX_PREFETCH: usize = 1024;

/// How the loader draws and prepares batches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoaderConfig {
    /// Images per batch.
    pub batch_size: usize,
    /// Seed of the shuffles and flips.
    pub seed: u64,
    /// Mirror images left-right with probability 1/2 (drawn from the seeded stream).
    pub xflip: bool,
    /// Batches decoded ahead of the consumer (at most [`MAX_PREFETCH`]).
    pub prefetch: usize,
    /// Keep every decoded image in memory (worth it for archives of PNG/JPEG).
    pub cache: bool,
    /// Images already consumed by an earlier run: the first batch starts at this stream position.
    pub start_images_seen: u64,
    /// Decoding threads, at most [`MAX_LOADER_THREADS`]; 0 means one per core.
    pub threads: usize,
    /// Read only this part of every global batch (one process of a data-parallel run); `None`: the
    /// whole stream.
    pub shard: Option<StreamShard>,
}

/// The part of every global batch one process of a data-parallel run reads.
///
/// The stream advances by `global_batch` images per step; of the step that starts at stream position
/// `p`, this process reads positions `p + offset .. p + offset + len`, in batches of
/// [`LoaderConfig::batch_size`]. The steps start at [`LoaderConfig::start_images_seen`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamShard {
    /// Images of every global batch, over all processes.
    pub global_batch: usize,
    /// Position of this process's first image within each global batch.
    pub offset: usize,
    /// Images this process reads of each global batch: a positive multiple of the batch size.
    pub len: usize,
}

impl StreamShard {
    /// Shard `rank` of `world` equal shards of a global batch of `global_batch` images (`world` must
    /// divide it).
    pub fn equal(rank: usize, world: usize, global_batch: usize) -> Self {
        let len = global_batch / world;
        Self {
            global_batch,
            offset: rank * len,
            len,
        }
    }

    /// Checks the shard against the loader's `batch_size`: a positive length that the batch size
    /// divides, within the global batch.
    fn check(&self, batch_size: usize) -> Result<()> {
        let bad = |msg: String| {
            Err(DataError::Config {
                field: "shard",
                msg,
            })
        };
        if self.len == 0 || self.len % batch_size != 0 {
            return bad(format!(
                "{} images per global batch are not a positive multiple of the batch size {batch_size}",
                self.len
            ));
        }
        if self
            .offset
            .checked_add(self.len)
            .is_none_or(|end| end > self.global_batch)
        {
            return bad(format!(
                "images {}..{}+{} lie outside a global batch of {}",
                self.offset, self.offset, self.len, self.global_batch
            ));
        }
        Ok(())
    }
}

/// Where the loader's batches start in the stream: batch `k` of a loader started at `start`.
#[derive(Debug, Clone, Copy)]
struct Positions {
    start: u64,
    batch_size: usize,
    shard: Option<StreamShard>,
}

impl Positions {
    /// Batches per global batch (1 without a shard: each batch is a step of its own here).
    fn per_step(&self) -> u64 {
        self.shard.map_or(1, |s| (s.len / self.batch_size) as u64)
    }

    /// Stream position of the first image of batch `k`.
    fn first_image(&self, k: u64) -> u64 {
        match self.shard {
            None => self.start + k * self.batch_size as u64,
            Some(s) => {
                let per_step = self.per_step();
                self.start
                    + (k / per_step) * s.global_batch as u64
                    + s.offset as u64
                    + (k % per_step) * self.batch_size as u64
            }
        }
    }

    /// The position to resume from after `batches` batches: the stream position after the last
    /// image handed out; with a shard, the start of the global batch after the one in progress.
    fn images_seen(&self, batches: u64) -> u64 {
        match self.shard {
            None => self.start + batches * self.batch_size as u64,
            Some(s) => self.start + batches.div_ceil(self.per_step()) * s.global_batch as u64,
        }
    }
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            batch_size: 64,
            seed: 0,
            xflip: false,
            prefetch: 4,
            cache: false,
            start_images_seen: 0,
            threads: 0,
            shard: None,
        }
    }
}

/// One batch of images and labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Pixels, N,C,H,W.
    pub images: Vec<u8>,
    /// Class label per image (empty when the dataset is unlabeled).
    pub labels: Vec<u32>,
    /// Dataset index of each image.
    pub indices: Vec<u64>,
    /// Whether each image was mirrored.
    pub flipped: Vec<bool>,
    /// Stream position of the first image (images seen before this batch).
    pub first_image: u64,
    /// Images in the batch.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// Number of classes (0 when unlabeled).
    pub label_dim: usize,
}

impl Batch {
    /// The pixels of image `k` of the batch, C,H,W.
    pub fn image(&self, k: usize) -> &[u8] {
        let size = self.c * self.h * self.w;
        &self.images[k * size..(k + 1) * size]
    }

    /// Labels as one-hot rows, N x `label_dim` (empty when unlabeled).
    pub fn one_hot(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.labels.len() * self.label_dim];
        for (k, &l) in self.labels.iter().enumerate() {
            out[k * self.label_dim + l as usize] = 1.0;
        }
        out
    }
}

/// Throughput and waiting of a loader so far.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LoaderStats {
    /// Images handed to the consumer.
    pub images: u64,
    /// Batches handed to the consumer.
    pub batches: u64,
    /// Seconds since the loader started.
    pub elapsed_secs: f64,
    /// Images handed out per second of elapsed time.
    pub images_per_sec: f64,
    /// Seconds the consumer spent blocked in [`Loader::next_batch`].
    pub consumer_wait_secs: f64,
    /// Seconds the producer spent decoding batches (excludes waiting for queue space).
    pub decode_secs: f64,
}

/// Mirrors each row of a C,H,W image.
pub fn flip_x(image: &mut [u8], w: usize) {
    for row in image.chunks_mut(w) {
        row.reverse();
    }
}

/// An infinite stream of batches; drop it to stop the producer.
pub struct Loader {
    rx: Option<Receiver<Result<Batch>>>,
    handle: Option<JoinHandle<()>>,
    failed: bool,
    positions: Positions,
    batches: u64,
    delivered: u64,
    started: Instant,
    wait: Duration,
    decode_nanos: Arc<AtomicU64>,
}

struct Producer {
    ds: Arc<dyn Dataset>,
    cfg: LoaderConfig,
    cache: Option<Vec<OnceLock<Box<[u8]>>>>,
    decode_nanos: Arc<AtomicU64>,
}

impl Producer {
    fn make_batch(
        &self,
        pool: &rayon::ThreadPool,
        sampler: &mut Sampler,
        first: u64,
    ) -> Result<Batch> {
        let ds = &*self.ds;
        let (n, size, w) = (self.cfg.batch_size, ds.image_size(), ds.width());
        let (indices, flipped): (Vec<u64>, Vec<bool>) = (0..n as u64)
            .map(|k| {
                let (i, f) = sampler.at(first + k);
                (i as u64, f && self.cfg.xflip)
            })
            .unzip();
        let mut images = reserve_batch(n, size, ds)?;
        images.resize(n * size, 0);
        pool.install(|| {
            images
                .par_chunks_mut(size)
                .zip(indices.par_iter().zip(flipped.par_iter()))
                .try_for_each(|(out, (&i, &f))| {
                    let i = i as usize;
                    match &self.cache {
                        Some(cache) => {
                            let img = match cache[i].get() {
                                Some(img) => img,
                                None => {
                                    let img = ds.image(i)?.into_boxed_slice();
                                    cache[i].get_or_init(|| img)
                                }
                            };
                            out.copy_from_slice(img);
                        }
                        None => ds.image_into(i, out)?,
                    }
                    if f {
                        flip_x(out, w);
                    }
                    Ok::<(), DataError>(())
                })
        })?;
        let labels = if ds.label_dim() > 0 {
            indices
                .iter()
                .map(|&i| ds.label(i as usize).unwrap_or(0))
                .collect()
        } else {
            Vec::new()
        };
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
}

/// An empty buffer with room for `n` images of `size` bytes; a size that overflows or cannot be
/// allocated is an error (an infallible allocation would abort the process).
fn reserve_batch(n: usize, size: usize, ds: &dyn Dataset) -> Result<Vec<u8>> {
    let too_big = || DataError::Config {
        field: "batch_size",
        msg: format!(
            "a batch of {n} images of {size} bytes ({}) does not fit in memory",
            ds.source().display()
        ),
    };
    let bytes = n.checked_mul(size).ok_or_else(too_big)?;
    let mut v = Vec::new();
    v.try_reserve_exact(bytes).map_err(|_| too_big())?;
    Ok(v)
}

/// Fails unless `value <= max`, naming the field, the value and the bound (`what` says what is counted).
fn at_most(field: &'static str, value: usize, max: usize, what: &str) -> Result<()> {
    if value > max {
        return Err(DataError::Config {
            field,
            msg: format!("{value} asked for; at most {max} {what}"),
        });
    }
    Ok(())
}

impl Loader {
    /// Starts the producer for `ds` with `cfg`. Errors on an empty dataset, a zero batch size, more
    /// than [`MAX_LOADER_THREADS`] threads, more than [`MAX_PREFETCH`] batches ahead, or a shard the
    /// batch size does not divide.
    pub fn new(ds: Arc<dyn Dataset>, cfg: LoaderConfig) -> Result<Self> {
        if cfg.batch_size == 0 {
            return Err(DataError::Config {
                field: "batch_size",
                msg: "must be at least 1".into(),
            });
        }
        at_most(
            "threads",
            cfg.threads,
            MAX_LOADER_THREADS,
            "decoding threads (0 means one per core)",
        )?;
        at_most(
            "prefetch",
            cfg.prefetch,
            MAX_PREFETCH,
            "batches queued ahead",
        )?;
        if let Some(shard) = &cfg.shard {
            shard.check(cfg.batch_size)?;
        }
        if ds.is_empty() {
            return Err(DataError::format(ds.source(), "the dataset has no images"));
        }
        // Reserved (not touched) and released once, so that a batch that cannot fit is an error here
        // rather than the producer's first message.
        drop(reserve_batch(cfg.batch_size, ds.image_size(), ds.as_ref())?);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(cfg.threads)
            .thread_name(|i| format!("ect-data-decode-{i}"))
            .build()
            .map_err(|e| DataError::Config {
                field: "threads",
                msg: e.to_string(),
            })?;
        let (tx, rx) = bounded(cfg.prefetch);
        let decode_nanos = Arc::new(AtomicU64::new(0));
        let cache = cfg
            .cache
            .then(|| (0..ds.len()).map(|_| OnceLock::new()).collect());
        let producer = Producer {
            ds: ds.clone(),
            cfg: cfg.clone(),
            cache,
            decode_nanos: decode_nanos.clone(),
        };
        let positions = Positions {
            start: cfg.start_images_seen,
            batch_size: cfg.batch_size,
            shard: cfg.shard,
        };
        let handle = std::thread::Builder::new()
            .name("ect-data-loader".into())
            .spawn(move || {
                let mut sampler = Sampler::new(producer.ds.len(), producer.cfg.seed);
                for k in 0u64.. {
                    let t = Instant::now();
                    let first = positions.first_image(k);
                    let batch = producer.make_batch(&pool, &mut sampler, first);
                    producer
                        .decode_nanos
                        .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    let failed = batch.is_err();
                    // A send error means the consumer is gone: stop.
                    if tx.send(batch).is_err() || failed {
                        return;
                    }
                }
            })
            .map_err(|e| DataError::Config {
                field: "loader thread",
                msg: e.to_string(),
            })?;
        Ok(Loader {
            rx: Some(rx),
            handle: Some(handle),
            failed: false,
            positions,
            batches: 0,
            delivered: 0,
            started: Instant::now(),
            wait: Duration::ZERO,
            decode_nanos,
        })
    }

    /// The next batch; blocks while the producer is behind. After an error the loader stays failed.
    pub fn next_batch(&mut self) -> Result<Batch> {
        let stopped = || DataError::Config {
            field: "loader",
            msg: "stopped after an earlier error".into(),
        };
        if self.failed {
            return Err(stopped());
        }
        let rx = self.rx.as_ref().ok_or_else(stopped)?;
        let t = Instant::now();
        let got = rx.recv();
        self.wait += t.elapsed();
        match got {
            Ok(Ok(batch)) => {
                self.delivered += batch.n as u64;
                self.batches += 1;
                Ok(batch)
            }
            Ok(Err(e)) => {
                self.failed = true;
                Err(e)
            }
            Err(_) => {
                self.failed = true;
                Err(DataError::Config {
                    field: "loader",
                    msg: "the producer thread stopped unexpectedly".into(),
                })
            }
        }
    }

    /// The stream position to resume from (a checkpoint's `images_seen`): `start_images_seen` plus
    /// every image handed out; with a shard, the start of the global batch after the one this process
    /// is reading (every process of the run gives the same position at a step boundary).
    pub fn images_seen(&self) -> u64 {
        self.positions.images_seen(self.batches)
    }

    /// Throughput and waiting so far.
    pub fn stats(&self) -> LoaderStats {
        let elapsed = self.started.elapsed().as_secs_f64();
        LoaderStats {
            images: self.delivered,
            batches: self.batches,
            elapsed_secs: elapsed,
            images_per_sec: if elapsed > 0.0 {
                self.delivered as f64 / elapsed
            } else {
                0.0
            },
            consumer_wait_secs: self.wait.as_secs_f64(),
            decode_secs: self.decode_nanos.load(Ordering::Relaxed) as f64 * 1e-9,
        }
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Closing the channel first makes a producer blocked on a full queue return.
        self.rx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
