//! Network configurations with the reference constructor-argument names and defaults: what `meta.json` /
//! `config.json` of a converted checkpoint hold and what the `[network]` table of a training config
//! says. The preconditioning class is named in `network` (`ECMPrecond`, `EDMPrecond`, `edm2.Precond`),
//! its arguments sit next to it, and for the EDM-style wrappers the architecture's arguments are
//! flattened in, selected by `model_type` (docs/method.md §2).
//!
//! A configuration is checked once, where it enters the program: [`NetworkConfig::from_json_value`]
//! and the training configuration's `[network]` table give a [`ValidNetworkConfig`], which is what the
//! networks of `ect-unet` are built from.

mod checks;
pub mod dhariwal;
pub mod edm2;
pub mod song;

use std::cell::Cell;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

pub use dhariwal::DhariwalUNetConfig;
pub use edm2::Edm2Config;
pub use song::{DecoderType, EmbeddingType, EncoderType, SongUNetConfig};

/// A network configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NetworkConfigError {
    /// A value is out of range or inconsistent.
    #[error("invalid network config: field `{field}`: {reason}")]
    Config {
        /// The offending field (reference constructor-argument name).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The document could not be parsed.
    #[error("cannot parse network config{}: {reason}", origin.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default())]
    Parse {
        /// The file the config came from, if any.
        origin: Option<PathBuf>,
        /// The parser's message (names the field where it can).
        reason: String,
    },
}

impl NetworkConfigError {
    /// A [`NetworkConfigError::Config`] for `field`.
    pub fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Config {
            field: field.into(),
            reason: reason.into(),
        }
    }

    fn parse(reason: impl Into<String>) -> Self {
        Self::Parse {
            origin: None,
            reason: reason.into(),
        }
    }
}

fn default_sigma_data() -> f64 {
    0.5
}
fn default_ecm_sigma_min() -> f64 {
    0.003
}

/// The arguments every preconditioning wrapper takes: the image it maps and the data's scale.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrecondFields {
    /// Image resolution.
    pub img_resolution: i64,
    /// Number of color channels.
    pub img_channels: i64,
    /// Number of class labels, 0 = unconditional.
    #[serde(default)]
    pub label_dim: i64,
    /// Expected standard deviation of the training data.
    #[serde(default = "default_sigma_data")]
    pub sigma_data: f64,
}

impl PrecondFields {
    /// Unconditional `res`x`res` images of `channels` channels with `sigma_data = 0.5`.
    pub fn new(img_resolution: i64, img_channels: i64) -> Self {
        Self {
            img_resolution,
            img_channels,
            label_dim: 0,
            sigma_data: default_sigma_data(),
        }
    }

    fn validate(&self) -> Result<(), NetworkConfigError> {
        checks::positive("img_resolution", self.img_resolution)?;
        checks::positive("img_channels", self.img_channels)?;
        checks::non_negative("label_dim", self.label_dim)?;
        if !(self.sigma_data.is_finite() && self.sigma_data > 0.0) {
            return Err(NetworkConfigError::config(
                "sigma_data",
                format!("must be finite and > 0, got {}", self.sigma_data),
            ));
        }
        Ok(())
    }
}

/// The architecture under an EDM-style preconditioning wrapper, selected by `model_type`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "model_type")]
pub enum ModelConfig {
    /// DDPM++ / NCSN++.
    SongUNet(SongUNetConfig),
    /// ADM.
    DhariwalUNet(DhariwalUNetConfig),
}

impl ModelConfig {
    /// Dropout probability of the intermediate activations.
    pub fn dropout(&self) -> f64 {
        match self {
            ModelConfig::SongUNet(c) => c.dropout,
            ModelConfig::DhariwalUNet(c) => c.dropout,
        }
    }

    /// Augmentation label dimensionality (0 = none).
    pub fn augment_dim(&self) -> i64 {
        match self {
            ModelConfig::SongUNet(c) => c.augment_dim,
            ModelConfig::DhariwalUNet(c) => c.augment_dim,
        }
    }

    fn validate(&self, res: i64) -> Result<(), NetworkConfigError> {
        match self {
            ModelConfig::SongUNet(c) => c.validate(res),
            ModelConfig::DhariwalUNet(c) => c.validate(res),
        }
    }
}

/// `ECMPrecond` (locuslab/ect): EDM preconditioning in training mode, and in evaluation mode a
/// `sigma_min` shift that makes `f(x, sigma_min) = x` exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EcmConfig {
    /// Image size, channels, classes and the data's standard deviation.
    #[serde(flatten)]
    pub image: PrecondFields,
    /// Accepted for compatibility; this implementation runs in the VarStore's kind.
    #[serde(default)]
    pub use_fp16: bool,
    /// Minimum noise level (evaluation-mode shift).
    #[serde(default = "default_ecm_sigma_min")]
    pub sigma_min: f64,
    /// Maximum supported noise level; `None` = infinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma_max: Option<f64>,
    /// The architecture.
    #[serde(flatten)]
    pub model: ModelConfig,
}

/// `EDMPrecond` (EDM): the same coefficients in training and evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EdmConfig {
    /// Image size, channels, classes and the data's standard deviation.
    #[serde(flatten)]
    pub image: PrecondFields,
    /// Accepted for compatibility; this implementation runs in the VarStore's kind.
    #[serde(default)]
    pub use_fp16: bool,
    /// Minimum supported noise level.
    #[serde(default)]
    pub sigma_min: f64,
    /// Maximum supported noise level; `None` = infinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma_max: Option<f64>,
    /// The architecture.
    #[serde(flatten)]
    pub model: ModelConfig,
}

impl EcmConfig {
    /// An ECM config with the reference defaults (`sigma_min = 0.003`, `sigma_data = 0.5`).
    pub fn new(img_resolution: i64, img_channels: i64, label_dim: i64, model: ModelConfig) -> Self {
        EcmConfig {
            image: PrecondFields {
                label_dim,
                ..PrecondFields::new(img_resolution, img_channels)
            },
            use_fp16: false,
            sigma_min: default_ecm_sigma_min(),
            sigma_max: None,
            model,
        }
    }
}

impl EdmConfig {
    /// An EDM config with the reference defaults (`sigma_data = 0.5`).
    pub fn new(img_resolution: i64, img_channels: i64, label_dim: i64, model: ModelConfig) -> Self {
        EdmConfig {
            image: PrecondFields {
                label_dim,
                ..PrecondFields::new(img_resolution, img_channels)
            },
            use_fp16: false,
            sigma_min: 0.0,
            sigma_max: None,
            model,
        }
    }
}

/// A network and its preconditioning, tagged by the reference class name in `network`.
///
/// Deserializing this type directly (e.g. `serde_json::from_str`) neither rejects unknown keys nor
/// validates: use [`NetworkConfig::from_json_value`] or deserialize a [`ValidNetworkConfig`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "network")]
pub enum NetworkConfig {
    /// `ECMPrecond`: consistency-model preconditioning of ECT (CIFAR-10 code).
    #[serde(rename = "ECMPrecond")]
    Ecm(EcmConfig),
    /// `EDMPrecond`: diffusion preconditioning of EDM.
    #[serde(rename = "EDMPrecond")]
    Edm(EdmConfig),
    /// `edm2.Precond`: EDM2 magnitude-preserving UNet with its preconditioning.
    #[serde(rename = "edm2.Precond")]
    Edm2(Edm2Config),
}

thread_local! {
    static VALIDATIONS: Cell<u64> = const { Cell::new(0) };
}

impl NetworkConfig {
    /// DDPM++ for CIFAR-10 under `ECMPrecond` (55,732,739 parameters).
    pub fn ddpmpp_cifar10(dropout: f64) -> Self {
        NetworkConfig::Ecm(EcmConfig::new(
            32,
            3,
            0,
            ModelConfig::SongUNet(SongUNetConfig::ddpmpp_cifar10(dropout)),
        ))
    }

    /// NCSN++ for CIFAR-10 under `ECMPrecond` (56,395,523 parameters).
    pub fn ncsnpp_cifar10(dropout: f64) -> Self {
        NetworkConfig::Ecm(EcmConfig::new(
            32,
            3,
            0,
            ModelConfig::SongUNet(SongUNetConfig::ncsnpp_cifar10(dropout)),
        ))
    }

    /// EDM2 preset for ImageNet 64 by name: `"S"`, `"M"`, `"L"` or `"XL"` (case-insensitive).
    pub fn edm2_imagenet64(size: &str, dropout: f64) -> Result<Self, NetworkConfigError> {
        let channels = match size.to_ascii_uppercase().as_str() {
            "S" => 192,
            "M" => 256,
            "L" => 320,
            "XL" => 384,
            _ => {
                return Err(NetworkConfigError::config(
                    "size",
                    format!("unknown EDM2 size {size:?} (S, M, L, XL)"),
                ))
            }
        };
        Ok(NetworkConfig::Edm2(Edm2Config::imagenet64(
            channels, dropout,
        )))
    }

    /// Parses and validates a config from JSON, rejecting keys no constructor argument has (they are
    /// listed).
    pub fn from_json_value(
        value: &serde_json::Value,
    ) -> Result<ValidNetworkConfig, NetworkConfigError> {
        let value = &with_default_model_type(value);
        let cfg: NetworkConfig = serde_json::from_value(value.clone())
            .map_err(|e| NetworkConfigError::parse(e.to_string()))?;
        let known =
            serde_json::to_value(&cfg).map_err(|e| NetworkConfigError::parse(e.to_string()))?;
        if let (Some(given), Some(known)) = (value.as_object(), known.as_object()) {
            let mut unknown: Vec<&str> = given
                .keys()
                .filter(|k| !known.contains_key(*k) && !is_optional_key(k))
                .map(String::as_str)
                .collect();
            if !unknown.is_empty() {
                unknown.sort_unstable();
                return Err(NetworkConfigError::parse(format!(
                    "unknown field(s) {} for network {}",
                    unknown.join(", "),
                    cfg.class_name()
                )));
            }
        }
        cfg.validated()
    }

    /// Parses a config from a JSON string (see [`NetworkConfig::from_json_value`]).
    pub fn from_json_str(s: &str) -> Result<ValidNetworkConfig, NetworkConfigError> {
        let v: serde_json::Value =
            serde_json::from_str(s).map_err(|e| NetworkConfigError::parse(e.to_string()))?;
        Self::from_json_value(&v)
    }

    /// Builds a config from a fixture's `meta.json`-style pair: the class name and its arguments.
    pub fn from_class_and_args(
        network: &str,
        args: &serde_json::Value,
    ) -> Result<ValidNetworkConfig, NetworkConfigError> {
        let mut obj = args
            .as_object()
            .cloned()
            .ok_or_else(|| NetworkConfigError::parse("`config` is not an object"))?;
        obj.insert(
            "network".into(),
            serde_json::Value::String(network.to_string()),
        );
        Self::from_json_value(&serde_json::Value::Object(obj))
    }

    /// The reference class name (`ECMPrecond`, `EDMPrecond`, `edm2.Precond`).
    pub fn class_name(&self) -> &'static str {
        match self {
            NetworkConfig::Ecm(_) => "ECMPrecond",
            NetworkConfig::Edm(_) => "EDMPrecond",
            NetworkConfig::Edm2(_) => "edm2.Precond",
        }
    }

    /// The arguments every preconditioning takes (image size, channels, classes, `sigma_data`).
    pub fn image(&self) -> &PrecondFields {
        match self {
            NetworkConfig::Ecm(c) => &c.image,
            NetworkConfig::Edm(c) => &c.image,
            NetworkConfig::Edm2(c) => &c.image,
        }
    }

    /// Image resolution.
    pub fn img_resolution(&self) -> i64 {
        self.image().img_resolution
    }

    /// Number of image channels.
    pub fn img_channels(&self) -> i64 {
        self.image().img_channels
    }

    /// Number of classes, 0 = unconditional.
    pub fn label_dim(&self) -> i64 {
        self.image().label_dim
    }

    /// Expected standard deviation of the data.
    pub fn sigma_data(&self) -> f64 {
        self.image().sigma_data
    }

    /// The architecture of an `ECMPrecond` / `EDMPrecond` wrapper (`None` for EDM2, which is its own).
    pub fn model(&self) -> Option<&ModelConfig> {
        match self {
            NetworkConfig::Ecm(c) => Some(&c.model),
            NetworkConfig::Edm(c) => Some(&c.model),
            NetworkConfig::Edm2(_) => None,
        }
    }

    /// The resolutions at which the architecture builds self-attention (`attn_resolutions`) and its
    /// `channel_mult` (one resolution level per entry).
    fn attention_and_levels(&self) -> (&[i64], usize) {
        let model = match self {
            NetworkConfig::Ecm(c) => &c.model,
            NetworkConfig::Edm(c) => &c.model,
            NetworkConfig::Edm2(c) => return (&c.attn_resolutions, c.channel_mult.len()),
        };
        match model {
            ModelConfig::SongUNet(c) => (&c.attn_resolutions, c.channel_mult.len()),
            ModelConfig::DhariwalUNet(c) => (&c.attn_resolutions, c.channel_mult.len()),
        }
    }

    /// `attn_resolutions`: the feature-map sizes that get self-attention.
    pub fn attn_resolutions(&self) -> &[i64] {
        self.attention_and_levels().0
    }

    /// The feature-map sizes of the network's levels: the image size, halved once per `channel_mult`
    /// entry after the first.
    pub fn feature_resolutions(&self) -> Vec<i64> {
        let (_, levels) = self.attention_and_levels();
        let res = self.img_resolution();
        (0..levels.min(63) as u32).map(|l| res >> l).collect()
    }

    /// The entries of `attn_resolutions` that are not a feature-map resolution of the network, so
    /// build no attention. Validation refuses such entries except in the architecture's default list,
    /// which the reference builds as it is whatever the image size (DDPM++'s `[16]` at 28x28: no
    /// attention anywhere).
    pub fn attention_outside(&self) -> Vec<i64> {
        let has = self.feature_resolutions();
        let attn = self.attn_resolutions();
        attn.iter().copied().filter(|r| !has.contains(r)).collect()
    }

    /// Checks every value the constructors rely on; errors name the field.
    pub fn validate(&self) -> Result<(), NetworkConfigError> {
        VALIDATIONS.with(|v| v.set(v.get() + 1));
        self.image().validate()?;
        match self {
            NetworkConfig::Ecm(c) => {
                if !(c.sigma_min.is_finite() && c.sigma_min >= 0.0) {
                    return Err(NetworkConfigError::config(
                        "sigma_min",
                        format!("must be finite and >= 0, got {}", c.sigma_min),
                    ));
                }
                c.model.validate(c.image.img_resolution)
            }
            NetworkConfig::Edm(c) => c.model.validate(c.image.img_resolution),
            NetworkConfig::Edm2(c) => c.validate(),
        }
    }

    /// Validates, and wraps the config as one the networks can be built from.
    pub fn validated(self) -> Result<ValidNetworkConfig, NetworkConfigError> {
        self.validate()?;
        Ok(ValidNetworkConfig(self))
    }

    /// How many times [`NetworkConfig::validate`] ran on the calling thread: lets a test check that a
    /// configuration is validated once, where it enters the program, and not again by every consumer.
    pub fn validations_on_this_thread() -> u64 {
        VALIDATIONS.with(Cell::get)
    }
}

/// A [`NetworkConfig`] that passed [`NetworkConfig::validate`]. The networks are built from this type,
/// so a configuration is checked once where it enters the program (parsing a file, a preset plus
/// `.validated()`) rather than again by every consumer. It dereferences to the config; it deserializes
/// strictly (unknown keys refused) and validates.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(transparent)]
pub struct ValidNetworkConfig(NetworkConfig);

impl ValidNetworkConfig {
    /// DDPM++ for CIFAR-10 with `dropout`, the recipe's network (a preset the tests validate, so it is
    /// not validated again each time a default configuration is made).
    pub fn ddpmpp_cifar10(dropout: f64) -> Self {
        Self(NetworkConfig::ddpmpp_cifar10(dropout))
    }

    /// The configuration.
    pub fn get(&self) -> &NetworkConfig {
        &self.0
    }

    /// The configuration, to change it (it must be validated again).
    pub fn into_inner(self) -> NetworkConfig {
        self.0
    }
}

impl std::ops::Deref for ValidNetworkConfig {
    type Target = NetworkConfig;

    fn deref(&self) -> &NetworkConfig {
        &self.0
    }
}

impl<'de> Deserialize<'de> for ValidNetworkConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        NetworkConfig::from_json_value(&value).map_err(serde::de::Error::custom)
    }
}

/// `ECMPrecond` and `EDMPrecond` default `model_type` to `'DhariwalUNet'` in the reference
/// constructors; serde's internally tagged enum has no default tag, so it is filled in here.
fn with_default_model_type(value: &serde_json::Value) -> serde_json::Value {
    let mut value = value.clone();
    if let Some(obj) = value.as_object_mut() {
        let wraps_model = matches!(
            obj.get("network").and_then(|n| n.as_str()),
            Some("ECMPrecond" | "EDMPrecond")
        );
        if wraps_model && !obj.contains_key("model_type") {
            obj.insert("model_type".into(), "DhariwalUNet".into());
        }
    }
    value
}

/// Keys that serialize only when set; a given `null` for them is fine.
fn is_optional_key(k: &str) -> bool {
    matches!(
        k,
        "sigma_max" | "logvar_channels" | "channel_mult_noise" | "channel_mult_emb" | "dropout_res"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trusted_preset_is_valid() {
        for dropout in [0.0, 0.2, 0.5] {
            assert_eq!(
                NetworkConfig::ddpmpp_cifar10(dropout).validated().unwrap(),
                ValidNetworkConfig::ddpmpp_cifar10(dropout)
            );
        }
    }
}
