//! The built-in feature network for 28x28 grayscale images (MNIST-like data, where Inception features
//! are meaningless): a small CNN classifier trained on Fashion-MNIST whose penultimate activations give
//! the features for a Fréchet distance.
//!
//! Architecture (fixed; parameter names are the safetensors keys):
//! `conv1` 1->16 3x3 + ReLU + 2x2 max-pool, `conv2` 16->32 3x3 + ReLU + 2x2 max-pool, `fc1` 1568->128 +
//! ReLU (the features), `fc2` 128->10 (the logits). Inputs are `u8` pixels mapped to [-1, 1].

use std::path::Path;
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};

use super::{model_err, tensor_rows, FeatureExtractor, Features, ImageBatch};
use crate::error::{MetricsError, Result};

/// Feature dimension of [`FeatureNet`].
pub const FEATNET_DIM: usize = 128;
/// Number of classes (Fashion-MNIST).
pub const FEATNET_CLASSES: usize = 10;
/// Image side the network takes.
pub const FEATNET_SIDE: usize = 28;

/// The small CNN; see the module docs.
#[derive(Debug)]
pub struct FeatureNet {
    vs: nn::VarStore,
    conv1: nn::Conv2D,
    conv2: nn::Conv2D,
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl FeatureNet {
    /// A freshly initialized network on `device` (seed libtorch with `tch::manual_seed` first for
    /// reproducible weights).
    pub fn new(device: Device) -> Self {
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let conv = nn::ConvConfig {
            padding: 1,
            ..Default::default()
        };
        let conv1 = nn::conv2d(&root / "conv1", 1, 16, 3, conv);
        let conv2 = nn::conv2d(&root / "conv2", 16, 32, 3, conv);
        let fc1 = nn::linear(
            &root / "fc1",
            32 * 7 * 7,
            FEATNET_DIM as i64,
            Default::default(),
        );
        let fc2 = nn::linear(
            &root / "fc2",
            FEATNET_DIM as i64,
            FEATNET_CLASSES as i64,
            Default::default(),
        );
        Self {
            vs,
            conv1,
            conv2,
            fc1,
            fc2,
        }
    }

    /// Loads weights saved by [`FeatureNet::save`]; errors name the file and any missing or misshapen tensor.
    pub fn load(path: &Path, device: Device) -> Result<Self> {
        let mut net = Self::new(device);
        net.vs.load(path).map_err(|e| MetricsError::Safetensors {
            path: path.into(),
            reason: e.to_string(),
        })?;
        Ok(net)
    }

    /// Saves the weights as safetensors (`conv1.weight`, ..., `fc2.bias`).
    pub fn save(&self, path: &Path) -> Result<()> {
        if path.extension().and_then(|e| e.to_str()) != Some("safetensors") {
            return Err(MetricsError::arg(
                "path",
                path.display(),
                "the feature net is saved as .safetensors",
            ));
        }
        self.vs.save(path).map_err(|e| MetricsError::Safetensors {
            path: path.into(),
            reason: e.to_string(),
        })
    }

    /// Features and logits.
    ///
    /// # Shapes
    /// `x`: [N, 1, 28, 28] f32 in [-1, 1] -> (features [N, 128], logits [N, 10]).
    pub fn forward(&self, x: &Tensor) -> (Tensor, Tensor) {
        let h = x.apply(&self.conv1).relu().max_pool2d_default(2);
        let h = h.apply(&self.conv2).relu().max_pool2d_default(2);
        let features = h.flatten(1, -1).apply(&self.fc1).relu();
        let logits = self.fc2.forward(&features);
        (features, logits)
    }

    /// Maps `u8` pixels to the network's input range.
    ///
    /// # Shapes
    /// `pixels`: [N, 1, 28, 28] u8 -> [N, 1, 28, 28] f32.
    pub fn normalize(pixels: &Tensor) -> Tensor {
        pixels.to_kind(Kind::Float) / 127.5 - 1.0
    }

    fn device(&self) -> Device {
        self.vs.device()
    }
}

impl FeatureExtractor for FeatureNet {
    fn name(&self) -> &str {
        "fmnist-cnn"
    }

    fn feature_dim(&self) -> usize {
        FEATNET_DIM
    }

    fn num_classes(&self) -> usize {
        FEATNET_CLASSES
    }

    fn input_shape(&self) -> [Option<usize>; 3] {
        [Some(1), Some(FEATNET_SIDE), Some(FEATNET_SIDE)]
    }

    fn extract(&self, batch: &ImageBatch<'_>) -> Result<Features> {
        if (batch.c, batch.h, batch.w) != (1, FEATNET_SIDE, FEATNET_SIDE) {
            return Err(model_err(
                "built-in feature net",
                format!(
                    "takes 1x28x28 grayscale images, got {}x{}x{}",
                    batch.c, batch.h, batch.w
                ),
            ));
        }
        let x = Self::normalize(&batch.tensor().to_device(self.device()));
        let (f, l) = tch::no_grad(|| self.forward(&x));
        let ctx = "built-in feature net";
        Ok(Features {
            n: batch.n,
            dim: FEATNET_DIM,
            features: tensor_rows(&f, batch.n, FEATNET_DIM, ctx, "features")?,
            logits: Some(tensor_rows(&l, batch.n, FEATNET_CLASSES, ctx, "logits")?),
            classes: FEATNET_CLASSES,
        })
    }
}

/// Labeled 1x28x28 `u8` images, back to back.
#[derive(Debug, Clone, Copy)]
pub struct LabeledImages<'a> {
    /// `n * 784` pixels.
    pub pixels: &'a [u8],
    /// `n` labels in `0..10`.
    pub labels: &'a [u32],
}

impl LabeledImages<'_> {
    /// Number of images, after checking the sizes and labels.
    pub fn checked_len(&self) -> Result<usize> {
        let side2 = FEATNET_SIDE * FEATNET_SIDE;
        if self.pixels.len() % side2 != 0 || self.pixels.len() / side2 != self.labels.len() {
            return Err(MetricsError::dim(
                "pixels (784 per labeled image)",
                self.labels.len() * side2,
                self.pixels.len(),
            ));
        }
        if let Some(bad) = self.labels.iter().find(|&&l| l as usize >= FEATNET_CLASSES) {
            return Err(MetricsError::arg(
                "label",
                bad,
                "Fashion-MNIST labels are 0..10",
            ));
        }
        Ok(self.labels.len())
    }
}

/// Training settings of [`train_feature_net`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Stop after this many steps (for smoke tests); `None` runs all epochs.
    pub max_steps: Option<usize>,
    /// Images per step.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Seed of the initialization and the shuffles.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 2,
            max_steps: None,
            batch_size: 128,
            lr: 1e-3,
            seed: 0,
        }
    }
}

/// What training did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainReport {
    /// Optimizer steps taken.
    pub steps: usize,
    /// Mean training loss of each epoch (or of the partial epoch when `max_steps` stopped it).
    pub epoch_losses: Vec<f64>,
    /// Loss of every step.
    pub step_losses: Vec<f64>,
    /// Test-set accuracy, when a test set was given.
    pub test_accuracy: Option<f64>,
    /// Wall-clock seconds of the training loop.
    pub seconds: f64,
}

/// Trains a [`FeatureNet`] classifier with Adam on `train`, reporting accuracy on `test`.
pub fn train_feature_net(
    train: &LabeledImages<'_>,
    test: Option<&LabeledImages<'_>>,
    cfg: &TrainConfig,
    device: Device,
) -> Result<(FeatureNet, TrainReport)> {
    let n = train.checked_len()?;
    if n == 0 || cfg.batch_size == 0 {
        return Err(MetricsError::arg(
            "batch_size",
            cfg.batch_size,
            "needs a positive batch size and a non-empty training set",
        ));
    }
    tch::manual_seed(cfg.seed as i64);
    let net = FeatureNet::new(device);
    let mut opt = nn::Adam::default()
        .build(&net.vs, cfg.lr)
        .map_err(|e| model_err("Adam", e))?;
    let images = Tensor::from_slice(train.pixels).view([n as i64, 1, 28, 28]);
    let labels = Tensor::from_slice(
        &train
            .labels
            .iter()
            .map(|&l| i64::from(l))
            .collect::<Vec<_>>(),
    );
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut order: Vec<i64> = (0..n as i64).collect();
    let start = Instant::now();
    let mut report = TrainReport {
        steps: 0,
        epoch_losses: vec![],
        step_losses: vec![],
        test_accuracy: None,
        seconds: 0.0,
    };
    'epochs: for _ in 0..cfg.epochs {
        order.shuffle(&mut rng);
        let (mut sum, mut count) = (0.0, 0usize);
        for chunk in order.chunks(cfg.batch_size) {
            if cfg.max_steps.is_some_and(|m| report.steps >= m) {
                report.epoch_losses.push(sum / count.max(1) as f64);
                break 'epochs;
            }
            let idx = Tensor::from_slice(chunk);
            let x = FeatureNet::normalize(&images.index_select(0, &idx)).to_device(device);
            let y = labels.index_select(0, &idx).to_device(device);
            let (_, logits) = net.forward(&x);
            let loss = logits.cross_entropy_for_logits(&y);
            opt.backward_step(&loss);
            let value = loss.double_value(&[]);
            report.step_losses.push(value);
            sum += value;
            count += 1;
            report.steps += 1;
        }
        report.epoch_losses.push(sum / count.max(1) as f64);
    }
    report.seconds = start.elapsed().as_secs_f64();
    if let Some(test) = test {
        report.test_accuracy = Some(accuracy(&net, test)?);
    }
    Ok((net, report))
}

/// Fraction of `data` the network classifies correctly.
pub fn accuracy(net: &FeatureNet, data: &LabeledImages<'_>) -> Result<f64> {
    let n = data.checked_len()?;
    if n == 0 {
        return Err(MetricsError::TooFewSamples {
            what: "accuracy".into(),
            needed: 1,
            got: 0,
        });
    }
    let side2 = FEATNET_SIDE * FEATNET_SIDE;
    let mut correct = 0usize;
    for (start, chunk) in (0..n).step_by(1000).map(|s| (s, (n - s).min(1000))) {
        let batch = ImageBatch::new(
            &data.pixels[start * side2..(start + chunk) * side2],
            chunk,
            1,
            28,
            28,
        )?;
        let out = net.extract(&batch)?;
        let logits = out.logits.unwrap_or_default();
        for (row, &label) in logits
            .chunks_exact(FEATNET_CLASSES)
            .zip(&data.labels[start..start + chunk])
        {
            let argmax = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i);
            correct += usize::from(argmax == Some(label as usize));
        }
    }
    Ok(correct as f64 / n as f64)
}

/// Trains the feature net on Fashion-MNIST in `dir` (IDX files, gzipped or not, as `ect-data` reads
/// them; `ect_data::fmnist::locate` finds the usual places), writes the weights to `out`
/// (`.safetensors`) and reports the accuracy on the 10,000 test images.
pub fn train_feature_net_on_fashion_mnist(
    dir: &Path,
    out: &Path,
    cfg: &TrainConfig,
    device: Device,
) -> Result<TrainReport> {
    let open = |split| {
        let ds = ect_data::idx::open(dir, split).map_err(|e| MetricsError::Data(e.to_string()))?;
        let labels = ds.labels().map(<[u32]>::to_vec).ok_or_else(|| {
            MetricsError::Data(format!(
                "{}: the {split} split has no labels file",
                dir.display()
            ))
        })?;
        Ok::<_, MetricsError>((ds, labels))
    };
    let (train, train_labels) = open(ect_data::Split::Train)?;
    let (test, test_labels) = open(ect_data::Split::Test)?;
    let train = LabeledImages {
        pixels: train.pixels(),
        labels: &train_labels,
    };
    let test = LabeledImages {
        pixels: test.pixels(),
        labels: &test_labels,
    };
    let (net, report) = train_feature_net(&train, Some(&test), cfg, device)?;
    net.save(out)?;
    Ok(report)
}
