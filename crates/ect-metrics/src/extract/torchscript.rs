//! TorchScript feature extractors, exported by `scripts/export_inception.py` and
//! `scripts/export_dinov2.py` (the weights cannot be bundled).
//!
//! Module contracts:
//! - Inception (`export_inception.py`): `forward(x: uint8 [N, 3, H, W]) -> (features [N, 2048],
//!   log_probs [N, 1008])`. Like EDM's `fid.py`, images go in at their own resolution: the detector
//!   (StyleGAN's TorchScript translation of TF Inception `2015-12-05`) resizes to 299x299 itself, so
//!   resizing here would change the numbers.
//! - DINOv2 (`export_dinov2.py`): `forward(x: float32 [N, 3, 224, 224]) -> cls [N, 1024]`; this side does
//!   EDM2's `torch` resize mode (bicubic, antialiased, to 224x224 from `u8` values) and the ImageNet
//!   normalization, as `calculate_metrics.py`'s `DINOv2Detector` does.
//!
//! Grayscale images are repeated to three channels, as EDM does.

use std::path::{Path, PathBuf};

use tch::{CModule, Device, IValue, Kind, Tensor};

use super::{model_err, tensor_rows, FeatureExtractor, Features, ImageBatch};
use crate::error::Result;

/// Which preprocessing and output layout a TorchScript module uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TorchScriptKind {
    /// `u8` images at their own resolution in; `(features, logits)` out.
    Inception,
    /// Resized to 224, ImageNet-normalized floats in; CLS features out.
    Dinov2,
}

/// Inception-v3 pool feature size.
pub const INCEPTION_FEATURES: usize = 2048;
/// Inception-v3 (TF 2015-12-05) class count.
pub const INCEPTION_CLASSES: usize = 1008;
/// DINOv2 ViT-L/14 CLS feature size.
pub const DINOV2_FEATURES: usize = 1024;
/// DINOv2 input resolution.
pub const DINOV2_RESOLUTION: i64 = 224;
const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// A feature extractor backed by a TorchScript file.
#[derive(Debug)]
pub struct TorchScriptExtractor {
    module: CModule,
    path: PathBuf,
    kind: TorchScriptKind,
    device: Device,
    feature_dim: usize,
    classes: usize,
}

impl TorchScriptExtractor {
    /// Loads EDM's Inception-v3 detector as exported by `scripts/export_inception.py`.
    pub fn inception(path: &Path, device: Device) -> Result<Self> {
        Self::load(
            path,
            device,
            TorchScriptKind::Inception,
            INCEPTION_FEATURES,
            INCEPTION_CLASSES,
        )
    }

    /// Loads DINOv2 ViT-L/14 as exported by `scripts/export_dinov2.py`.
    pub fn dinov2(path: &Path, device: Device) -> Result<Self> {
        Self::load(path, device, TorchScriptKind::Dinov2, DINOV2_FEATURES, 0)
    }

    /// Loads a module following `kind`'s contract with other sizes (`classes` 0: no logits). The module
    /// is run once on a small probe batch so that a wrong output shape fails here, not mid-evaluation.
    pub fn load(
        path: &Path,
        device: Device,
        kind: TorchScriptKind,
        feature_dim: usize,
        classes: usize,
    ) -> Result<Self> {
        if !path.is_file() {
            return Err(model_err(
                path.display(),
                "no such file (export it with the scripts/ export scripts)",
            ));
        }
        let mut module =
            CModule::load_on_device(path, device).map_err(|e| model_err(path.display(), e))?;
        module.set_eval();
        let extractor = Self {
            module,
            path: path.to_path_buf(),
            kind,
            device,
            feature_dim,
            classes,
        };
        // Batch 3: `export_dinov2.py` traces at batch 2, so a batch size baked into a trace shows up here.
        let probe = vec![0u8; 3 * 3 * 32 * 32];
        extractor.extract(&ImageBatch::new(&probe, 3, 3, 32, 32)?)?;
        Ok(extractor)
    }

    /// The module's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn context(&self) -> String {
        self.path.display().to_string()
    }

    fn preprocess(&self, batch: &ImageBatch<'_>) -> Result<Tensor> {
        if batch.c != 1 && batch.c != 3 {
            return Err(model_err(
                self.context(),
                format!("images have {} channels; expected 1 or 3", batch.c),
            ));
        }
        let mut x = batch.tensor().to_device(self.device);
        if batch.c == 1 {
            x = x.repeat([1, 3, 1, 1]);
        }
        Ok(match self.kind {
            TorchScriptKind::Inception => x,
            TorchScriptKind::Dinov2 => {
                let x = x.to_kind(Kind::Float).internal_upsample_bicubic2d_aa(
                    [DINOV2_RESOLUTION, DINOV2_RESOLUTION],
                    false,
                    None,
                    None,
                );
                let mean = Tensor::from_slice(&IMAGENET_MEAN)
                    .to_kind(Kind::Float)
                    .view([1, 3, 1, 1])
                    .to_device(self.device);
                let std = Tensor::from_slice(&IMAGENET_STD)
                    .to_kind(Kind::Float)
                    .view([1, 3, 1, 1])
                    .to_device(self.device);
                (x / 255.0 - mean) / std
            }
        })
    }
}

impl FeatureExtractor for TorchScriptExtractor {
    fn name(&self) -> &str {
        match self.kind {
            TorchScriptKind::Inception => "inception-v3",
            TorchScriptKind::Dinov2 => "dinov2-vitl14",
        }
    }

    fn feature_dim(&self) -> usize {
        self.feature_dim
    }

    fn num_classes(&self) -> usize {
        self.classes
    }

    fn input_shape(&self) -> [Option<usize>; 3] {
        [None, None, None]
    }

    fn extract(&self, batch: &ImageBatch<'_>) -> Result<Features> {
        let ctx = self.context();
        let x = self.preprocess(batch)?;
        let out = tch::no_grad(|| self.module.forward_is(&[IValue::Tensor(x)]))
            .map_err(|e| model_err(&ctx, e))?;
        let (features, logits) = match (out, self.classes) {
            (IValue::Tensor(f), 0) => (f, None),
            (IValue::Tuple(mut items), c) if items.len() == 2 && c > 0 => {
                let l = items.pop();
                let f = items.pop();
                match (f, l) {
                    (Some(IValue::Tensor(f)), Some(IValue::Tensor(l))) => (f, Some(l)),
                    _ => {
                        return Err(model_err(
                            &ctx,
                            "output must be a tuple of two tensors (features, logits)",
                        ))
                    }
                }
            }
            (other, 0) => {
                return Err(model_err(
                    &ctx,
                    format!(
                        "output must be one features tensor, got {}",
                        describe(&other)
                    ),
                ))
            }
            (other, _) => {
                return Err(model_err(
                    &ctx,
                    format!(
                        "output must be a tuple (features, logits), got {}",
                        describe(&other)
                    ),
                ))
            }
        };
        let n = batch.n;
        let features = tensor_rows(&features, n, self.feature_dim, &ctx, "features")?;
        let logits = match logits {
            Some(l) => Some(tensor_rows(&l, n, self.classes, &ctx, "logits")?),
            None => None,
        };
        Ok(Features {
            n,
            dim: self.feature_dim,
            features,
            logits,
            classes: self.classes,
        })
    }
}

fn describe(v: &IValue) -> String {
    match v {
        IValue::Tensor(t) => format!("a tensor of shape {:?}", t.size()),
        IValue::Tuple(items) => format!("a tuple of {} items", items.len()),
        IValue::GenericList(items) => format!("a list of {} items", items.len()),
        _ => "a non-tensor value".into(),
    }
}
