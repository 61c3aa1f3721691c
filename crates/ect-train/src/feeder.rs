//! Deterministic batches from an `ect-data` dataset: image number `k` of the run (counting from 0 over the
//! whole run) is a pure function of `(seed, k)`, so a resumed run continues the exact sequence from its
//! `images_seen`. Each epoch is a fresh seeded permutation; optional horizontal flips are drawn per image.

use std::time::Instant;

use ect_data::Dataset;
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::{rand_core::SeedableRng, ChaCha8Rng};
use tch::{Device, Kind, Tensor};

use crate::error::{Result, TrainError};
use crate::rng::{derive, Stream};

/// A batch as tensors on the training device.
pub struct TensorBatch {
    /// Images in [-1, 1] (`x / 127.5 - 1`), [N, C, H, W] f32.
    pub images: Tensor,
    /// Class indices, when the dataset has labels.
    pub classes: Option<Vec<i64>>,
}

/// Feeds batches in a seeded order from a dataset.
pub struct Feeder {
    dataset: Box<dyn Dataset>,
    seed: u64,
    xflip: bool,
    images_seen: u64,
    epoch: Option<(u64, Vec<u32>)>,
    wait_seconds: f64,
}

impl Feeder {
    /// A feeder positioned after `images_seen` images.
    pub fn new(
        dataset: Box<dyn Dataset>,
        seed: u64,
        xflip: bool,
        images_seen: u64,
    ) -> Result<Self> {
        if dataset.is_empty() {
            return Err(TrainError::invalid(
                "data.path",
                format!("{} holds no images", dataset.source().display()),
            ));
        }
        Ok(Self {
            dataset,
            seed,
            xflip,
            images_seen,
            epoch: None,
            wait_seconds: 0.0,
        })
    }

    /// The dataset.
    pub fn dataset(&self) -> &dyn Dataset {
        self.dataset.as_ref()
    }

    /// Images handed out so far (the position to save in a checkpoint).
    pub fn images_seen(&self) -> u64 {
        self.images_seen
    }

    /// Seconds spent preparing batches so far.
    pub fn wait_seconds(&self) -> f64 {
        self.wait_seconds
    }

    fn index_of(&mut self, k: u64) -> usize {
        let len = self.dataset.len() as u64;
        let (epoch, pos) = (k / len, (k % len) as usize);
        if self.epoch.as_ref().map(|e| e.0) != Some(epoch) {
            let mut perm: Vec<u32> = (0..len as u32).collect();
            let mut rng = crate::rng::rng(self.seed, epoch, Stream::Data);
            perm.shuffle(&mut rng);
            self.epoch = Some((epoch, perm));
        }
        self.epoch.as_ref().expect("set above").1[pos] as usize
    }

    /// The next `n` images as a tensor batch on `device`.
    pub fn next_batch(&mut self, n: usize, device: Device) -> Result<TensorBatch> {
        let start = Instant::now();
        let (c, h, w) = (
            self.dataset.channels(),
            self.dataset.height(),
            self.dataset.width(),
        );
        let size = c * h * w;
        let mut pixels = vec![0u8; n * size];
        let labelled = self.dataset.label_dim() > 0;
        let mut classes = Vec::with_capacity(if labelled { n } else { 0 });
        for i in 0..n {
            let k = self.images_seen + i as u64;
            let idx = self.index_of(k);
            let out = &mut pixels[i * size..(i + 1) * size];
            self.dataset
                .image_into(idx, out)
                .map_err(|e| TrainError::external(format!("reading image {idx}"), e))?;
            if self.xflip {
                let flip =
                    ChaCha8Rng::seed_from_u64(derive(self.seed, k, Stream::Flip)).gen::<bool>();
                if flip {
                    for row in out.chunks_mut(w) {
                        row.reverse();
                    }
                }
            }
            if labelled {
                classes.push(self.dataset.label(idx).unwrap_or(0) as i64);
            }
        }
        self.images_seen += n as u64;
        let images = Tensor::from_slice(&pixels)
            .view([n as i64, c as i64, h as i64, w as i64])
            .to_device(device)
            .to_kind(Kind::Float)
            / 127.5
            - 1.0;
        self.wait_seconds += start.elapsed().as_secs_f64();
        Ok(TensorBatch {
            images,
            classes: labelled.then_some(classes),
        })
    }
}
