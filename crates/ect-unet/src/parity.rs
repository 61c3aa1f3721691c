//! Parity against the reference implementation: runs a fixture directory (`meta.json`,
//! `weights.safetensors`, `io.safetensors`, as produced from the authors' PyTorch code) and reports
//! the relative errors `max|out - ref| / max|ref|` in evaluation and training mode.

use crate::dropout::DropoutMode;
use crate::error::UnetError;
use crate::precond::{CoeffMode, Precond};
use crate::weights::{load_weights, read_safetensors};
use ect_config::network::{ModelConfig, NetworkConfig, ValidNetworkConfig};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{nn::VarStore, Device, Tensor};

/// Outcome of one fixture check.
#[derive(Clone, Debug, PartialEq)]
pub struct ParityReport {
    /// The reference class name from `meta.json` (`ECMPrecond`, `edm2.Precond`, ...).
    pub network: String,
    /// The parsed configuration.
    pub config: ValidNetworkConfig,
    /// Relative error of the evaluation-mode output against `out_eval`.
    pub rel_err_eval: f64,
    /// Relative error of the training-mode output (dropout off) against `out_train`.
    pub rel_err_train: f64,
}

impl ParityReport {
    /// The larger of the two errors; NaN when either is NaN (`f64::max` would hide it).
    pub fn max_rel_err(&self) -> f64 {
        if self.rel_err_eval.is_nan() || self.rel_err_train.is_nan() {
            return f64::NAN;
        }
        self.rel_err_eval.max(self.rel_err_train)
    }

    /// Whether both errors are at most `tol` (and not NaN).
    pub fn passes(&self, tol: f64) -> bool {
        self.rel_err_eval <= tol && self.rel_err_train <= tol
    }
}

/// `max|out - reference| / max|reference|`, in f64.
///
/// # Shapes
/// out, reference: the same shape.
pub fn relative_error(out: &Tensor, reference: &Tensor) -> f64 {
    let out = out.to_kind(tch::Kind::Double).to_device(Device::Cpu);
    let reference = reference.to_kind(tch::Kind::Double).to_device(Device::Cpu);
    let num = (&out - &reference).abs().max().double_value(&[]);
    let den = reference.abs().max().double_value(&[]);
    num / den
}

/// Checks a fixture directory on the CPU (see [`check_fixture_on`]).
pub fn check_fixture(dir: &Path) -> Result<ParityReport, UnetError> {
    check_fixture_on(dir, Device::Cpu)
}

/// Loads `dir/meta.json` (`network`, `config`), `dir/weights.safetensors` and `dir/io.safetensors`
/// (`x` [N, C, H, W], `sigma` `[N]`, `class_labels` [N, label_dim] for a conditional network, optional
/// `augment_labels` [N, augment_dim], `out_eval` and `out_train` shaped as `x`), runs the network in evaluation
/// mode and in training mode (training coefficients, EDM2 forced weight normalization, dropout off),
/// and returns both relative errors. A missing tensor or a shape disagreement is a
/// [`UnetError::Fixture`] naming the tensor and both shapes.
pub fn check_fixture_on(dir: &Path, device: Device) -> Result<ParityReport, UnetError> {
    let fixture_err = |reason: String| UnetError::Fixture {
        dir: dir.to_path_buf(),
        reason,
    };
    let meta_path = dir.join("meta.json");
    let meta_text = std::fs::read_to_string(&meta_path).map_err(|source| UnetError::Io {
        path: meta_path.clone(),
        source,
    })?;
    let meta: serde_json::Value =
        serde_json::from_str(&meta_text).map_err(|e| UnetError::ConfigParse {
            origin: Some(meta_path.clone()),
            reason: e.to_string(),
        })?;
    let network = meta["network"]
        .as_str()
        .ok_or_else(|| fixture_err("meta.json has no string field `network`".into()))?
        .to_string();
    let config =
        NetworkConfig::from_class_and_args(&network, &meta["config"]).map_err(|e| {
            match e.into() {
                UnetError::ConfigParse { reason, .. } => UnetError::ConfigParse {
                    origin: Some(meta_path.clone()),
                    reason,
                },
                other => other,
            }
        })?;

    let mut vs = VarStore::new(device);
    let net = Precond::new(&vs.root(), &config)?;
    load_weights(&mut vs, &dir.join("weights.safetensors"))?;

    let io = read_safetensors(&dir.join("io.safetensors"))?;
    let get = |name: &str| {
        io.get(name)
            .map(|t| t.to_device(device))
            .ok_or_else(|| fixture_err(format!("io.safetensors has no tensor `{name}`")))
    };
    let (x, sigma, out_eval, out_train) = (
        get("x")?,
        get("sigma")?,
        get("out_eval")?,
        get("out_train")?,
    );
    let want = x.size();
    let (c, r) = (config.img_channels(), config.img_resolution());
    if want.len() != 4 || want[1] != c || want[2] != r || want[3] != r {
        return Err(fixture_err(format!(
            "io.safetensors: x has shape {want:?}, the network expects [N, {c}, {r}, {r}]"
        )));
    }
    let n = want[0];
    for (name, t) in [("out_eval", &out_eval), ("out_train", &out_train)] {
        if t.size() != want {
            return Err(fixture_err(format!(
                "io.safetensors: {name} has shape {:?}, x has {want:?}",
                t.size()
            )));
        }
    }
    // The reference reshapes sigma to [-1, 1, 1, 1]: one noise level per image.
    if sigma.numel() != n as usize {
        return Err(fixture_err(format!(
            "io.safetensors: sigma has shape {:?}, expected [{n}] (one noise level per image of x)",
            sigma.size()
        )));
    }
    let labels = conditioning(
        &io,
        "class_labels",
        config.label_dim(),
        "label_dim",
        n,
        true,
        &fixture_err,
    )?
    .map(|t| t.to_device(device));
    let augment = conditioning(
        &io,
        "augment_labels",
        augment_dim(&config),
        "augment_dim",
        n,
        false,
        &fixture_err,
    )?
    .map(|t| t.to_device(device));

    let eval = tch::no_grad(|| {
        net.forward_with_augment(
            &x,
            &sigma,
            labels.as_ref(),
            augment.as_ref(),
            CoeffMode::Eval,
            DropoutMode::Off,
        )
    });
    // The reference's training-mode forward normalizes the EDM2 weights in place first.
    net.normalize_weights();
    let train = tch::no_grad(|| {
        net.forward_with_augment(
            &x,
            &sigma,
            labels.as_ref(),
            augment.as_ref(),
            CoeffMode::Train,
            DropoutMode::Off,
        )
    });
    Ok(ParityReport {
        network,
        config,
        rel_err_eval: relative_error(&eval, &out_eval),
        rel_err_train: relative_error(&train, &out_train),
    })
}

/// `augment_dim` of the architecture (0 for EDM2, which has no augmentation labels).
fn augment_dim(config: &NetworkConfig) -> i64 {
    config.model().map_or(0, ModelConfig::augment_dim)
}

/// The conditioning tensor `name` of the io file, checked against the network's `dim` (config field
/// `field`): `[n, dim]` when present; absent is an error only when `required` and `dim > 0` (a
/// conditional network silently given zero labels would compare the wrong outputs).
///
/// # Shapes
/// -> Option<[n, dim]>.
fn conditioning(
    io: &BTreeMap<String, Tensor>,
    name: &str,
    dim: i64,
    field: &str,
    n: i64,
    required: bool,
    fixture_err: &dyn Fn(String) -> UnetError,
) -> Result<Option<Tensor>, UnetError> {
    match (io.get(name), dim) {
        (None, d) if d > 0 && required => Err(fixture_err(format!(
            "io.safetensors has no tensor `{name}`, but the network is conditional ({field} {d}); \
             expected shape [{n}, {d}]"
        ))),
        (None, _) => Ok(None),
        (Some(t), 0) => Err(fixture_err(format!(
            "io.safetensors has `{name}` of shape {:?}, but the network has {field} 0",
            t.size()
        ))),
        (Some(t), d) if t.size() != [n, d] => Err(fixture_err(format!(
            "io.safetensors: {name} has shape {:?}, expected [{n}, {d}] ([N of x, {field}])",
            t.size()
        ))),
        (Some(t), _) => Ok(Some(t.shallow_clone())),
    }
}
