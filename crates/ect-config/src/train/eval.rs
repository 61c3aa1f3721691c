//! Periodic Fréchet distance during training (`[eval]`) and the choice of feature extractor.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, Result};

/// Which feature extractor to use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ExtractorChoice {
    /// EDM's Inception-v3 (FID), exported by `scripts/export_inception.py`.
    Inception {
        /// The TorchScript file.
        path: PathBuf,
    },
    /// DINOv2 ViT-L/14 (FD_DINOv2), exported by `scripts/export_dinov2.py`.
    Dinov2 {
        /// The TorchScript file.
        path: PathBuf,
    },
    /// The built-in Fashion-MNIST feature net (28x28 grayscale).
    FeatureNet {
        /// Its `.safetensors` weights (from `train-feature-net`).
        weights: PathBuf,
    },
}

impl ExtractorChoice {
    /// The metric name a Fréchet distance with this extractor is reported under.
    pub fn fd_metric(&self) -> &'static str {
        match self {
            ExtractorChoice::Inception { .. } => "fid",
            ExtractorChoice::Dinov2 { .. } => "fd_dinov2",
            ExtractorChoice::FeatureNet { .. } => "fd_fmnist",
        }
    }
}

/// Periodic evaluation settings (off unless `every > 0`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Interval in iterations; 0 disables periodic evaluation.
    pub every: u64,
    /// Images per sampler and evaluation (FD is biased upwards at small counts: compare runs at equal
    /// counts).
    pub samples: usize,
    /// Images per sampling and feature-extraction batch.
    pub batch_size: usize,
    /// The feature extractor (`{ kind = "feature-net", weights = "..." }`, `inception`, `dinov2`).
    pub extractor: Option<ExtractorChoice>,
    /// Reference statistics (EDM `.npz` with `mu` and `sigma`) in the extractor's feature space.
    pub reference: Option<PathBuf>,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            every: 0,
            samples: 1000,
            batch_size: 250,
            extractor: None,
            reference: None,
        }
    }
}

impl EvalConfig {
    /// Checks the fields periodic evaluation needs, when it is on.
    pub fn validate(&self) -> Result<()> {
        if self.every == 0 {
            return Ok(());
        }
        if self.samples < 2 {
            return Err(ConfigError::invalid(
                "eval.samples",
                format!(
                    "needs at least 2 images for a covariance, got {}",
                    self.samples
                ),
            ));
        }
        if self.batch_size == 0 {
            return Err(ConfigError::invalid("eval.batch_size", "must be > 0"));
        }
        if self.extractor.is_none() {
            return Err(ConfigError::invalid(
                "eval.extractor",
                "is required when eval.every > 0, e.g. { kind = \"feature-net\", weights = \"featnet.safetensors\" }",
            ));
        }
        if self.reference.is_none() {
            return Err(ConfigError::invalid(
                "eval.reference",
                "is required when eval.every > 0 (statistics from `ect metrics stats`)",
            ));
        }
        Ok(())
    }
}
