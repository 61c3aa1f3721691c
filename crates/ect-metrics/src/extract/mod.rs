//! Feature extractors: images in, one feature vector (and optionally class logits) per image out.
//!
//! - [`torchscript`]: exported networks loaded through `tch::CModule`: EDM's Inception-v3 detector (FID,
//!   IS) and DINOv2 ViT-L/14 (FD_DINOv2); see `scripts/export_inception.py`, `scripts/export_dinov2.py`.
//! - [`featnet`]: the project's small Fashion-MNIST classifier for 28x28 grayscale data.

pub mod featnet;
pub mod torchscript;

use crate::error::{MetricsError, Result};

/// A batch of `u8` images in N,C,H,W order (what `ect-data` produces and samples quantize to).
#[derive(Debug, Clone, Copy)]
pub struct ImageBatch<'a> {
    /// Pixels, `n * c * h * w` bytes.
    pub pixels: &'a [u8],
    /// Number of images.
    pub n: usize,
    /// Channels (1 or 3).
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
}

impl<'a> ImageBatch<'a> {
    /// A batch, checking that the pixel count matches the shape.
    pub fn new(pixels: &'a [u8], n: usize, c: usize, h: usize, w: usize) -> Result<Self> {
        if pixels.len() != n * c * h * w {
            return Err(MetricsError::dim(
                format!("pixels of a [{n}, {c}, {h}, {w}] image batch"),
                n * c * h * w,
                pixels.len(),
            ));
        }
        Ok(Self { pixels, n, c, h, w })
    }

    pub(crate) fn tensor(&self) -> tch::Tensor {
        tch::Tensor::from_slice(self.pixels).view([
            self.n as i64,
            self.c as i64,
            self.h as i64,
            self.w as i64,
        ])
    }
}

/// Features of a batch, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    /// Number of images.
    pub n: usize,
    /// Feature dimension.
    pub dim: usize,
    /// `n x dim` features.
    pub features: Vec<f32>,
    /// `n x classes` class logits (or log-probabilities), when the extractor has a classifier head.
    pub logits: Option<Vec<f32>>,
    /// Number of classes of `logits` (0 when absent).
    pub classes: usize,
}

/// Something that turns images into features.
pub trait FeatureExtractor {
    /// Short name recorded with scores (e.g. "inception-v3", "dinov2-vitl14", "fmnist-cnn").
    fn name(&self) -> &str;
    /// Dimension of the features.
    fn feature_dim(&self) -> usize;
    /// Number of logits per image; 0 when the extractor has no classifier head.
    fn num_classes(&self) -> usize;
    /// Channels, height and width the extractor accepts, `None` in a slot meaning any.
    fn input_shape(&self) -> [Option<usize>; 3];
    /// Features (and logits) of a batch.
    fn extract(&self, batch: &ImageBatch<'_>) -> Result<Features>;
}

pub(crate) fn model_err(
    context: impl std::fmt::Display,
    reason: impl std::fmt::Display,
) -> MetricsError {
    MetricsError::Model {
        context: context.to_string(),
        reason: reason.to_string(),
    }
}

/// Converts a `[n, d]` float tensor to a row-major `Vec<f32>`, checking its shape.
pub(crate) fn tensor_rows(
    t: &tch::Tensor,
    n: usize,
    d: usize,
    context: &str,
    what: &str,
) -> Result<Vec<f32>> {
    let size = t.size();
    if size != [n as i64, d as i64] {
        return Err(model_err(
            context,
            format!("{what} have shape {size:?}, expected [{n}, {d}]"),
        ));
    }
    let flat = t
        .to_kind(tch::Kind::Float)
        .to_device(tch::Device::Cpu)
        .contiguous()
        .view([-1]);
    Vec::<f32>::try_from(&flat).map_err(|e| model_err(context, e))
}
