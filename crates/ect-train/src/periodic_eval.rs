//! Periodic Fréchet distance during training (`[eval]`): every `every` steps the EMA weights sample
//! `samples` images from fixed noise with each configured sampler (the consistency grids of
//! `[sampling]`, or Heun for diffusion runs), the images are quantized to `u8` as the reference does, and
//! their features are compared with reference statistics. Each result is a line of `fd.jsonl`.
//!
//! The noise comes from its own seeded stream, so evaluating does not change the training run: a run
//! with `[eval]` has the same weights as one without. In a data-parallel run every rank samples and
//! extracts the features of its share of the batches and the statistics are pooled: the sampling and the
//! feature network, most of an evaluation's time, are split `W` ways.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ect_config::train::EvalConfig;
use ect_dist::Dist;
use ect_metrics::score::{fd_score, open_extractor, Share};
use ect_metrics::stats::FeatureStats;
use ect_metrics::{FeatureExtractor, ImageBatch, StatsAccumulator};
use ect_unet::Precond;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::checkpoint::TrainState;
use crate::error::{Result, TrainError};
use crate::feature_pool::pool_stats;
use crate::images::to_u8;
use crate::labels;
use crate::net::Network;
use crate::parallel;
use crate::rng::{self, Stream};
use crate::sampler::Sampler;

/// One line of `fd.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FdRecord {
    /// Optimizer step.
    pub step: u64,
    /// Images seen by then.
    pub images_seen: u64,
    /// Sampler name: `1step`, `2step`, ... or `heun`.
    pub sampler: String,
    /// Metric name (`fd_fmnist`, `fid`, `fd_dinov2`).
    pub metric: String,
    /// The Fréchet distance.
    pub fd: f64,
    /// Images scored.
    pub samples: u64,
    /// Seconds the evaluation of this sampler took.
    pub seconds: f64,
}

/// The loaded extractor and reference of a run's periodic evaluation.
pub struct PeriodicEval {
    cfg: EvalConfig,
    extractor: Box<dyn FeatureExtractor>,
    metric: String,
    reference: FeatureStats,
    path: PathBuf,
}

impl PeriodicEval {
    /// Loads the extractor and the reference statistics; `None` when evaluation is off.
    pub fn open(cfg: &EvalConfig, run_dir: &Path, device: Device) -> Result<Option<Self>> {
        if cfg.every == 0 {
            return Ok(None);
        }
        let choice = cfg.extractor.as_ref().expect("validated");
        let reference_path = cfg.reference.as_ref().expect("validated");
        let metrics_err =
            |field: &str, e: ect_metrics::MetricsError| TrainError::invalid(field, e.to_string());
        let extractor =
            open_extractor(choice, device).map_err(|e| metrics_err("eval.extractor", e))?;
        let reference = ect_metrics::npz::load_stats_npz(reference_path)
            .map_err(|e| metrics_err("eval.reference", e))?;
        if reference.dim() != extractor.feature_dim() {
            return Err(TrainError::invalid(
                "eval.reference",
                format!(
                    "{} holds {}-d statistics but the extractor gives {}-d features",
                    reference_path.display(),
                    reference.dim(),
                    extractor.feature_dim()
                ),
            ));
        }
        Ok(Some(Self {
            cfg: cfg.clone(),
            extractor,
            metric: choice.fd_metric().to_owned(),
            reference,
            path: run_dir.join("fd.jsonl"),
        }))
    }

    /// Whether step `step` is an evaluation step.
    pub fn due(&self, step: u64) -> bool {
        step % self.cfg.every == 0
    }

    /// Samples with each sampler from `net` (its current weights), scores, appends the records to
    /// `fd.jsonl` and returns them. Classes cycle for class-conditional networks.
    ///
    /// Every rank of `dist` takes part (the weights are the same on all of them): the samples come in
    /// batches of `eval.batch_size`, rank `r` of `W` generates and extracts the features of batches
    /// `r, r + W, ...`, and the feature statistics are pooled over the ranks ([`pool_stats`]). Batch
    /// `k`'s noise is seeded by `(seed, k)`, so the images, and the FD up to rounding, do not depend on
    /// the number of processes. Rank 0 alone scores and writes; it returns the records, the other
    /// ranks `None`.
    pub fn evaluate(
        &self,
        net: &Network,
        samplers: &[Sampler],
        seed: u64,
        state: &TrainState,
        dist: &Dist,
    ) -> Result<Option<Vec<FdRecord>>> {
        let mut records = Vec::new();
        for sampler in samplers {
            let start = Instant::now();
            let local = self.local_stats(net, sampler, seed, dist.rank(), dist.world_size());
            let local = parallel::agree(dist, local, "the periodic evaluation")?;
            let pooled = pool_stats(local, dist)?;
            let record = parallel::on_main(dist, || {
                let score = pooled
                    .finish()
                    .and_then(|stats| {
                        fd_score(
                            &stats,
                            &self.reference,
                            &self.metric,
                            self.extractor.name(),
                            None,
                        )
                    })
                    .map_err(|e| TrainError::invalid("eval", e.to_string()))?;
                Ok(FdRecord {
                    step: state.step,
                    images_seen: state.images_seen,
                    sampler: sampler.name(),
                    metric: self.metric.clone(),
                    fd: score.value,
                    samples: score.num_samples,
                    seconds: start.elapsed().as_secs_f64(),
                })
            })?;
            records.extend(record);
        }
        parallel::on_main(dist, || self.append(&records))?;
        Ok(dist.is_main().then_some(records))
    }

    /// The feature statistics of this rank's batches (`rank`, `rank + world`, ...) of the samples.
    fn local_stats(
        &self,
        net: &Network,
        sampler: &Sampler,
        seed: u64,
        rank: usize,
        world: usize,
    ) -> Result<StatsAccumulator> {
        let cfg: &Precond = &net.precond;
        let (c, h, device) = (cfg.img_channels(), cfg.img_resolution(), net.vs.device());
        let metrics_err = |e: ect_metrics::MetricsError| TrainError::invalid("eval", e.to_string());
        let mut acc = StatsAccumulator::new(self.extractor.feature_dim()).map_err(metrics_err)?;
        let batch = self.cfg.batch_size;
        for k in Share::of_rank(rank, world).batches(self.cfg.samples, batch) {
            let first = k * batch;
            let n = (self.cfg.samples - first).min(batch);
            // The same noise at every evaluation, so the curve shows the model changing, not the noise.
            rng::seed_torch(seed, k as u64, Stream::Eval);
            let z = Tensor::randn([n as i64, c, h, h], (Kind::Float, device));
            let y = labels::cycling(first as i64, n as i64, cfg.label_dim(), device);
            let x = sampler.sample(net, &z, y.as_ref(), || z.randn_like());
            let pixels = Vec::<u8>::try_from(to_u8(&x).flatten(0, -1))
                .map_err(|e| TrainError::invalid("eval", format!("reading samples back: {e}")))?;
            let images = ImageBatch::new(&pixels, n, c as usize, h as usize, h as usize)
                .map_err(metrics_err)?;
            let features = self.extractor.extract(&images).map_err(metrics_err)?;
            acc.add_batch(&features.features).map_err(metrics_err)?;
        }
        Ok(acc)
    }

    /// Appends `records` to `fd.jsonl`.
    fn append(&self, records: &[FdRecord]) -> Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| TrainError::io(&self.path, e))?;
        for r in records {
            let mut line = serde_json::to_string(r).expect("FdRecord serializes");
            line.push('\n');
            file.write_all(line.as_bytes())
                .map_err(|e| TrainError::io(&self.path, e))?;
        }
        Ok(())
    }
}
