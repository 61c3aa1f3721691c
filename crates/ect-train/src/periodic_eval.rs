//! Periodic Fréchet distance during training (`[eval]`): every `every` steps the EMA weights sample
//! `samples` images from fixed noise with each configured sampler (the consistency grids of
//! `[sampling]`, or Heun for diffusion runs), the images are quantized to `u8` as the reference does, and
//! their features are compared with reference statistics. Each result is a line of `fd.jsonl`.
//!
//! The noise comes from its own seeded stream, so evaluating does not change the training run: a run
//! with `[eval]` has the same weights as one without.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ect_config::train::EvalConfig;
use ect_metrics::samples::Images;
use ect_metrics::score::{fd_score, open_extractor, stats_of_images};
use ect_metrics::stats::FeatureStats;
use ect_metrics::FeatureExtractor;
use ect_unet::Precond;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::checkpoint::TrainState;
use crate::error::{Result, TrainError};
use crate::images::to_u8;
use crate::labels;
use crate::net::Network;
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
    pub fn evaluate(
        &self,
        net: &Network,
        samplers: &[Sampler],
        seed: u64,
        state: &TrainState,
    ) -> Result<Vec<FdRecord>> {
        let mut records = Vec::new();
        let cfg: &Precond = &net.precond;
        let (c, h, device) = (cfg.img_channels(), cfg.img_resolution(), net.vs.device());
        for sampler in samplers {
            let start = Instant::now();
            // The same noise at every evaluation, so the curve shows the model changing, not the noise.
            rng::seed_torch(seed, 0, Stream::Eval);
            let mut pixels = Vec::with_capacity(self.cfg.samples * (c * h * h) as usize);
            let mut first = 0i64;
            while (first as usize) < self.cfg.samples {
                let n = (self.cfg.samples - first as usize).min(self.cfg.batch_size) as i64;
                let z = Tensor::randn([n, c, h, h], (Kind::Float, device));
                let y = labels::cycling(first, n, cfg.label_dim(), device);
                let x = sampler.sample(net, &z, y.as_ref(), || z.randn_like());
                let u8s = to_u8(&x);
                pixels.extend(Vec::<u8>::try_from(u8s.flatten(0, -1)).map_err(|e| {
                    TrainError::invalid("eval", format!("reading samples back: {e}"))
                })?);
                first += n;
            }
            let images = Images {
                pixels,
                n: self.cfg.samples,
                c: c as usize,
                h: h as usize,
                w: h as usize,
            };
            let score = stats_of_images(&images, self.extractor.as_ref(), self.cfg.batch_size)
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
            records.push(FdRecord {
                step: state.step,
                images_seen: state.images_seen,
                sampler: sampler.name(),
                metric: self.metric.clone(),
                fd: score.value,
                samples: score.num_samples,
                seconds: start.elapsed().as_secs_f64(),
            });
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| TrainError::io(&self.path, e))?;
        for r in &records {
            let mut line = serde_json::to_string(r).expect("FdRecord serializes");
            line.push('\n');
            file.write_all(line.as_bytes())
                .map_err(|e| TrainError::io(&self.path, e))?;
        }
        Ok(records)
    }
}
