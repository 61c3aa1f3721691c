//! Network configurations, with the reference constructor-argument names and defaults.
//!
//! `NetworkConfig` is what `meta.json` / `config.json` hold: the preconditioning class in `network`
//! (`ECMPrecond`, `EDMPrecond`, `edm2.Precond`) and its constructor arguments next to it, the
//! architecture's arguments flattened in (selected by `model_type` for the EDM-style wrappers).

use crate::error::UnetError;
use serde::{Deserialize, Serialize};

fn default_true() -> bool {
    true
}
fn default_sigma_data() -> f64 {
    0.5
}
fn default_ecm_sigma_min() -> f64 {
    0.003
}

/// Noise-level embedding of SongUNet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddingType {
    /// Sinusoidal positional embedding (DDPM++).
    Positional,
    /// Random Fourier features (NCSN++).
    Fourier,
}

/// Encoder variant of SongUNet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncoderType {
    /// Plain encoder (DDPM++).
    Standard,
    /// Extra downsampled-input skip connections.
    Skip,
    /// Extra residual path from the input (NCSN++).
    Residual,
}

/// Decoder variant of SongUNet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecoderType {
    /// Output head at full resolution only.
    Standard,
    /// Output heads at every resolution, summed after upsampling.
    Skip,
}

/// Arguments of the reference `SongUNet` (DDPM++ / NCSN++), defaults as in EDM.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SongUNetConfig {
    /// Augmentation label dimensionality, 0 = no augmentation.
    #[serde(default)]
    pub augment_dim: i64,
    /// Base multiplier for the number of channels.
    #[serde(default = "SongUNetConfig::d_model_channels")]
    pub model_channels: i64,
    /// Per-resolution multipliers for the number of channels.
    #[serde(default = "SongUNetConfig::d_channel_mult")]
    pub channel_mult: Vec<i64>,
    /// Multiplier for the dimensionality of the embedding vector.
    #[serde(default = "SongUNetConfig::d_channel_mult_emb")]
    pub channel_mult_emb: i64,
    /// Number of residual blocks per resolution.
    #[serde(default = "SongUNetConfig::d_num_blocks")]
    pub num_blocks: i64,
    /// Resolutions with self-attention.
    #[serde(default = "SongUNetConfig::d_attn_resolutions")]
    pub attn_resolutions: Vec<i64>,
    /// Dropout probability of intermediate activations.
    #[serde(default = "SongUNetConfig::d_dropout")]
    pub dropout: f64,
    /// Dropout probability of class labels (classifier-free guidance).
    #[serde(default)]
    pub label_dropout: f64,
    /// Timestep embedding: positional (DDPM++) or fourier (NCSN++).
    #[serde(default = "SongUNetConfig::d_embedding_type")]
    pub embedding_type: EmbeddingType,
    /// Timestep embedding size multiplier: 1 for DDPM++, 2 for NCSN++.
    #[serde(default = "SongUNetConfig::d_channel_mult_noise")]
    pub channel_mult_noise: i64,
    /// Encoder architecture.
    #[serde(default = "SongUNetConfig::d_encoder_type")]
    pub encoder_type: EncoderType,
    /// Decoder architecture.
    #[serde(default = "SongUNetConfig::d_decoder_type")]
    pub decoder_type: DecoderType,
    /// Resampling filter: [1,1] for DDPM++, [1,3,3,1] for NCSN++.
    #[serde(default = "SongUNetConfig::d_resample_filter")]
    pub resample_filter: Vec<f64>,
}

impl SongUNetConfig {
    fn d_model_channels() -> i64 {
        128
    }
    fn d_channel_mult() -> Vec<i64> {
        vec![1, 2, 2, 2]
    }
    fn d_channel_mult_emb() -> i64 {
        4
    }
    fn d_num_blocks() -> i64 {
        4
    }
    fn d_attn_resolutions() -> Vec<i64> {
        vec![16]
    }
    fn d_dropout() -> f64 {
        0.10
    }
    fn d_embedding_type() -> EmbeddingType {
        EmbeddingType::Positional
    }
    fn d_channel_mult_noise() -> i64 {
        1
    }
    fn d_encoder_type() -> EncoderType {
        EncoderType::Standard
    }
    fn d_decoder_type() -> DecoderType {
        DecoderType::Standard
    }
    fn d_resample_filter() -> Vec<f64> {
        vec![1.0, 1.0]
    }

    /// DDPM++ as ECT / EDM configure it for CIFAR-10 (`--arch=ddpmpp`) without augmentation labels.
    /// (EDM's published checkpoints were trained with `augment_dim = 9`: 1,152 more parameters in
    /// `map_augment`; a converted checkpoint carries its own config.)
    pub fn ddpmpp_cifar10(dropout: f64) -> Self {
        SongUNetConfig {
            channel_mult: vec![2, 2, 2],
            dropout,
            ..Self::default()
        }
    }

    /// NCSN++ as ECT / EDM configure it for CIFAR-10 (`--arch=ncsnpp`) without augmentation labels.
    pub fn ncsnpp_cifar10(dropout: f64) -> Self {
        SongUNetConfig {
            channel_mult: vec![2, 2, 2],
            dropout,
            embedding_type: EmbeddingType::Fourier,
            channel_mult_noise: 2,
            encoder_type: EncoderType::Residual,
            resample_filter: vec![1.0, 3.0, 3.0, 1.0],
            ..Self::default()
        }
    }
}

impl Default for SongUNetConfig {
    fn default() -> Self {
        SongUNetConfig {
            augment_dim: 0,
            model_channels: Self::d_model_channels(),
            channel_mult: Self::d_channel_mult(),
            channel_mult_emb: Self::d_channel_mult_emb(),
            num_blocks: Self::d_num_blocks(),
            attn_resolutions: Self::d_attn_resolutions(),
            dropout: Self::d_dropout(),
            label_dropout: 0.0,
            embedding_type: Self::d_embedding_type(),
            channel_mult_noise: Self::d_channel_mult_noise(),
            encoder_type: Self::d_encoder_type(),
            decoder_type: Self::d_decoder_type(),
            resample_filter: Self::d_resample_filter(),
        }
    }
}

/// Arguments of the reference `DhariwalUNet` (ADM), defaults as in EDM.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DhariwalUNetConfig {
    /// Augmentation label dimensionality, 0 = no augmentation.
    #[serde(default)]
    pub augment_dim: i64,
    /// Base multiplier for the number of channels.
    #[serde(default = "DhariwalUNetConfig::d_model_channels")]
    pub model_channels: i64,
    /// Per-resolution multipliers for the number of channels.
    #[serde(default = "DhariwalUNetConfig::d_channel_mult")]
    pub channel_mult: Vec<i64>,
    /// Multiplier for the dimensionality of the embedding vector.
    #[serde(default = "SongUNetConfig::d_channel_mult_emb")]
    pub channel_mult_emb: i64,
    /// Number of residual blocks per resolution.
    #[serde(default = "DhariwalUNetConfig::d_num_blocks")]
    pub num_blocks: i64,
    /// Resolutions with self-attention.
    #[serde(default = "DhariwalUNetConfig::d_attn_resolutions")]
    pub attn_resolutions: Vec<i64>,
    /// Dropout probability of intermediate activations.
    #[serde(default = "SongUNetConfig::d_dropout")]
    pub dropout: f64,
    /// Dropout probability of class labels (classifier-free guidance).
    #[serde(default)]
    pub label_dropout: f64,
}

impl DhariwalUNetConfig {
    fn d_model_channels() -> i64 {
        192
    }
    fn d_channel_mult() -> Vec<i64> {
        vec![1, 2, 3, 4]
    }
    fn d_num_blocks() -> i64 {
        3
    }
    fn d_attn_resolutions() -> Vec<i64> {
        vec![32, 16, 8]
    }
}

impl Default for DhariwalUNetConfig {
    fn default() -> Self {
        DhariwalUNetConfig {
            augment_dim: 0,
            model_channels: Self::d_model_channels(),
            channel_mult: Self::d_channel_mult(),
            channel_mult_emb: SongUNetConfig::d_channel_mult_emb(),
            num_blocks: Self::d_num_blocks(),
            attn_resolutions: Self::d_attn_resolutions(),
            dropout: SongUNetConfig::d_dropout(),
            label_dropout: 0.0,
        }
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
}

/// `ECMPrecond` (locuslab/ect): EDM preconditioning in training mode, and in evaluation mode a
/// `sigma_min` shift that makes `f(x, sigma_min) = x` exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EcmConfig {
    /// Image resolution.
    pub img_resolution: i64,
    /// Number of color channels.
    pub img_channels: i64,
    /// Number of class labels, 0 = unconditional.
    #[serde(default)]
    pub label_dim: i64,
    /// Accepted for compatibility; this implementation runs in the VarStore's kind.
    #[serde(default)]
    pub use_fp16: bool,
    /// Minimum noise level (evaluation-mode shift).
    #[serde(default = "default_ecm_sigma_min")]
    pub sigma_min: f64,
    /// Maximum supported noise level; `None` = infinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma_max: Option<f64>,
    /// Expected standard deviation of the training data.
    #[serde(default = "default_sigma_data")]
    pub sigma_data: f64,
    /// The architecture.
    #[serde(flatten)]
    pub model: ModelConfig,
}

/// `EDMPrecond` (EDM): the same coefficients in training and evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EdmConfig {
    /// Image resolution.
    pub img_resolution: i64,
    /// Number of color channels.
    pub img_channels: i64,
    /// Number of class labels, 0 = unconditional.
    #[serde(default)]
    pub label_dim: i64,
    /// Accepted for compatibility; this implementation runs in the VarStore's kind.
    #[serde(default)]
    pub use_fp16: bool,
    /// Minimum supported noise level.
    #[serde(default)]
    pub sigma_min: f64,
    /// Maximum supported noise level; `None` = infinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma_max: Option<f64>,
    /// Expected standard deviation of the training data.
    #[serde(default = "default_sigma_data")]
    pub sigma_data: f64,
    /// The architecture.
    #[serde(flatten)]
    pub model: ModelConfig,
}

/// `Precond` + `UNet` of EDM2 (`training/networks_edm2.py`, as in locuslab/ect: no log-variance head,
/// plus `dropout_res`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Edm2Config {
    /// Image resolution.
    pub img_resolution: i64,
    /// Image channels.
    pub img_channels: i64,
    /// Class label dimensionality, 0 = unconditional.
    #[serde(default)]
    pub label_dim: i64,
    /// Accepted for compatibility; this implementation runs in the VarStore's kind.
    #[serde(default = "default_true")]
    pub use_fp16: bool,
    /// Expected standard deviation of the training data.
    #[serde(default = "default_sigma_data")]
    pub sigma_data: f64,
    /// Accepted for compatibility (the ECT network has no log-variance head).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logvar_channels: Option<i64>,
    /// Base multiplier for the number of channels.
    #[serde(default = "Edm2Config::d_model_channels")]
    pub model_channels: i64,
    /// Per-resolution multipliers for the number of channels.
    #[serde(default = "DhariwalUNetConfig::d_channel_mult")]
    pub channel_mult: Vec<i64>,
    /// Multiplier for the noise embedding size; `None` = `channel_mult[0]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_mult_noise: Option<i64>,
    /// Multiplier for the final embedding size; `None` = `max(channel_mult)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_mult_emb: Option<i64>,
    /// Number of residual blocks per resolution.
    #[serde(default = "DhariwalUNetConfig::d_num_blocks")]
    pub num_blocks: i64,
    /// Resolutions with self-attention.
    #[serde(default = "Edm2Config::d_attn_resolutions")]
    pub attn_resolutions: Vec<i64>,
    /// Balance between noise embedding (0) and class embedding (1).
    #[serde(default = "Edm2Config::d_half")]
    pub label_balance: f64,
    /// Balance between skip connections (0) and main path (1).
    #[serde(default = "Edm2Config::d_half")]
    pub concat_balance: f64,
    /// Dropout only at feature resolutions `<= dropout_res`; `None` = everywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropout_res: Option<i64>,
    /// Resampling filter.
    #[serde(default = "SongUNetConfig::d_resample_filter")]
    pub resample_filter: Vec<f64>,
    /// Channels per attention head.
    #[serde(default = "Edm2Config::d_channels_per_head")]
    pub channels_per_head: i64,
    /// Dropout probability.
    #[serde(default)]
    pub dropout: f64,
    /// Balance between main branch (0) and residual branch (1).
    #[serde(default = "Edm2Config::d_balance")]
    pub res_balance: f64,
    /// Balance between main branch (0) and self-attention (1).
    #[serde(default = "Edm2Config::d_balance")]
    pub attn_balance: f64,
    /// Clip output activations of every block to `[-clip_act, clip_act]`; `None` = no clipping.
    #[serde(default = "Edm2Config::d_clip_act")]
    pub clip_act: Option<f64>,
}

impl Edm2Config {
    fn d_model_channels() -> i64 {
        192
    }
    fn d_attn_resolutions() -> Vec<i64> {
        vec![16, 8]
    }
    fn d_half() -> f64 {
        0.5
    }
    fn d_channels_per_head() -> i64 {
        64
    }
    fn d_balance() -> f64 {
        0.3
    }
    fn d_clip_act() -> Option<f64> {
        Some(256.0)
    }

    /// An EDM2 network for ImageNet 64x64 (1000 classes) with `model_channels` channels
    /// (S = 192, M = 256, L = 320, XL = 384), and dropout at resolutions `<= 16` as ECT uses it.
    pub fn imagenet64(model_channels: i64, dropout: f64) -> Self {
        Edm2Config {
            img_resolution: 64,
            img_channels: 3,
            label_dim: 1000,
            model_channels,
            dropout,
            dropout_res: Some(16),
            ..Self::default()
        }
    }
}

impl Default for Edm2Config {
    fn default() -> Self {
        Edm2Config {
            img_resolution: 64,
            img_channels: 3,
            label_dim: 0,
            use_fp16: true,
            sigma_data: 0.5,
            logvar_channels: None,
            model_channels: Self::d_model_channels(),
            channel_mult: DhariwalUNetConfig::d_channel_mult(),
            channel_mult_noise: None,
            channel_mult_emb: None,
            num_blocks: DhariwalUNetConfig::d_num_blocks(),
            attn_resolutions: Self::d_attn_resolutions(),
            label_balance: 0.5,
            concat_balance: 0.5,
            dropout_res: None,
            resample_filter: SongUNetConfig::d_resample_filter(),
            channels_per_head: Self::d_channels_per_head(),
            dropout: 0.0,
            res_balance: Self::d_balance(),
            attn_balance: Self::d_balance(),
            clip_act: Self::d_clip_act(),
        }
    }
}

/// A network and its preconditioning, tagged by the reference class name in `network`.
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
    pub fn edm2_imagenet64(size: &str, dropout: f64) -> Result<Self, UnetError> {
        let channels = match size.to_ascii_uppercase().as_str() {
            "S" => 192,
            "M" => 256,
            "L" => 320,
            "XL" => 384,
            _ => {
                return Err(UnetError::config(
                    "size",
                    format!("unknown EDM2 size {size:?} (S, M, L, XL)"),
                ))
            }
        };
        Ok(NetworkConfig::Edm2(Edm2Config::imagenet64(
            channels, dropout,
        )))
    }

    /// Parses a config from JSON, rejecting keys no constructor argument has (they are listed).
    pub fn from_json_value(value: &serde_json::Value) -> Result<Self, UnetError> {
        let parse_err = |e: serde_json::Error| UnetError::ConfigParse {
            origin: None,
            reason: e.to_string(),
        };
        let value = &with_default_model_type(value);
        let cfg: NetworkConfig = serde_json::from_value(value.clone()).map_err(parse_err)?;
        let known = serde_json::to_value(&cfg).map_err(parse_err)?;
        if let (Some(given), Some(known)) = (value.as_object(), known.as_object()) {
            let mut unknown: Vec<&str> = given
                .keys()
                .filter(|k| !known.contains_key(*k) && !is_optional_key(k))
                .map(String::as_str)
                .collect();
            if !unknown.is_empty() {
                unknown.sort_unstable();
                return Err(UnetError::ConfigParse {
                    origin: None,
                    reason: format!(
                        "unknown field(s) {} for network {}",
                        unknown.join(", "),
                        cfg.class_name()
                    ),
                });
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses a config from a JSON string (see [`NetworkConfig::from_json_value`]).
    pub fn from_json_str(s: &str) -> Result<Self, UnetError> {
        let v: serde_json::Value = serde_json::from_str(s).map_err(|e| UnetError::ConfigParse {
            origin: None,
            reason: e.to_string(),
        })?;
        Self::from_json_value(&v)
    }

    /// Builds a config from a fixture's `meta.json`-style pair: the class name and its arguments.
    pub fn from_class_and_args(network: &str, args: &serde_json::Value) -> Result<Self, UnetError> {
        let mut obj = args
            .as_object()
            .cloned()
            .ok_or_else(|| UnetError::ConfigParse {
                origin: None,
                reason: "`config` is not an object".into(),
            })?;
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

    /// Image resolution.
    pub fn img_resolution(&self) -> i64 {
        match self {
            NetworkConfig::Ecm(c) => c.img_resolution,
            NetworkConfig::Edm(c) => c.img_resolution,
            NetworkConfig::Edm2(c) => c.img_resolution,
        }
    }

    /// Number of image channels.
    pub fn img_channels(&self) -> i64 {
        match self {
            NetworkConfig::Ecm(c) => c.img_channels,
            NetworkConfig::Edm(c) => c.img_channels,
            NetworkConfig::Edm2(c) => c.img_channels,
        }
    }

    /// Number of classes, 0 = unconditional.
    pub fn label_dim(&self) -> i64 {
        match self {
            NetworkConfig::Ecm(c) => c.label_dim,
            NetworkConfig::Edm(c) => c.label_dim,
            NetworkConfig::Edm2(c) => c.label_dim,
        }
    }

    /// Expected standard deviation of the data.
    pub fn sigma_data(&self) -> f64 {
        match self {
            NetworkConfig::Ecm(c) => c.sigma_data,
            NetworkConfig::Edm(c) => c.sigma_data,
            NetworkConfig::Edm2(c) => c.sigma_data,
        }
    }

    /// Checks every value the constructors rely on; errors name the field.
    pub fn validate(&self) -> Result<(), UnetError> {
        let (res, ch, label_dim, sd) = (
            self.img_resolution(),
            self.img_channels(),
            self.label_dim(),
            self.sigma_data(),
        );
        positive("img_resolution", res)?;
        positive("img_channels", ch)?;
        if label_dim < 0 {
            return Err(UnetError::config(
                "label_dim",
                format!("must be >= 0, got {label_dim}"),
            ));
        }
        if !(sd.is_finite() && sd > 0.0) {
            return Err(UnetError::config(
                "sigma_data",
                format!("must be finite and > 0, got {sd}"),
            ));
        }
        match self {
            NetworkConfig::Ecm(c) => {
                if !(c.sigma_min.is_finite() && c.sigma_min >= 0.0) {
                    return Err(UnetError::config(
                        "sigma_min",
                        format!("must be finite and >= 0, got {}", c.sigma_min),
                    ));
                }
                validate_model(&c.model, res)
            }
            NetworkConfig::Edm(c) => validate_model(&c.model, res),
            NetworkConfig::Edm2(c) => {
                common_unet(
                    "model_channels",
                    c.model_channels,
                    &c.channel_mult,
                    c.num_blocks,
                    res,
                )?;
                filter("resample_filter", &c.resample_filter)?;
                probability("dropout", c.dropout)?;
                positive("channels_per_head", c.channels_per_head)?;
                if let Some(m) = c.channel_mult_noise {
                    positive("channel_mult_noise", m)?;
                }
                if let Some(m) = c.channel_mult_emb {
                    positive("channel_mult_emb", m)?;
                }
                // The reference's `if dropout_res and res > dropout_res` turns dropout off
                // everywhere for a negative value; surely a typo, so it is rejected.
                if let Some(dr) = c.dropout_res {
                    if dr < 0 {
                        return Err(UnetError::config(
                            "dropout_res",
                            format!(
                                "must be >= 0 (0 or null = dropout at every resolution), got {dr}"
                            ),
                        ));
                    }
                }
                for (name, t) in [
                    ("label_balance", c.label_balance),
                    ("concat_balance", c.concat_balance),
                    ("res_balance", c.res_balance),
                    ("attn_balance", c.attn_balance),
                ] {
                    if !(0.0..=1.0).contains(&t) {
                        return Err(UnetError::config(
                            name,
                            format!("must be in [0, 1], got {t}"),
                        ));
                    }
                }
                if let Some(clip) = c.clip_act {
                    if clip.is_nan() || clip <= 0.0 {
                        return Err(UnetError::config(
                            "clip_act",
                            format!("must be > 0 or null, got {clip}"),
                        ));
                    }
                }
                Ok(())
            }
        }
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

impl EcmConfig {
    /// An ECM config with the reference defaults (`sigma_min = 0.003`, `sigma_data = 0.5`).
    pub fn new(img_resolution: i64, img_channels: i64, label_dim: i64, model: ModelConfig) -> Self {
        EcmConfig {
            img_resolution,
            img_channels,
            label_dim,
            use_fp16: false,
            sigma_min: default_ecm_sigma_min(),
            sigma_max: None,
            sigma_data: default_sigma_data(),
            model,
        }
    }
}

impl EdmConfig {
    /// An EDM config with the reference defaults (`sigma_data = 0.5`).
    pub fn new(img_resolution: i64, img_channels: i64, label_dim: i64, model: ModelConfig) -> Self {
        EdmConfig {
            img_resolution,
            img_channels,
            label_dim,
            use_fp16: false,
            sigma_min: 0.0,
            sigma_max: None,
            sigma_data: default_sigma_data(),
            model,
        }
    }
}

fn positive(field: &str, v: i64) -> Result<(), UnetError> {
    if v <= 0 {
        return Err(UnetError::config(field, format!("must be > 0, got {v}")));
    }
    Ok(())
}

fn probability(field: &str, p: f64) -> Result<(), UnetError> {
    if !(0.0..1.0).contains(&p) {
        return Err(UnetError::config(
            field,
            format!("must be in [0, 1), got {p}"),
        ));
    }
    Ok(())
}

fn filter(field: &str, f: &[f64]) -> Result<(), UnetError> {
    if f.is_empty() || f.len() % 2 != 0 {
        return Err(UnetError::config(
            field,
            format!("needs an even, non-zero number of taps, got {f:?}"),
        ));
    }
    let sum: f64 = f.iter().sum();
    if !(sum.is_finite() && sum != 0.0) {
        return Err(UnetError::config(
            field,
            format!("taps must have a finite non-zero sum, got {f:?}"),
        ));
    }
    Ok(())
}

fn common_unet(
    mc_field: &str,
    model_channels: i64,
    mult: &[i64],
    num_blocks: i64,
    res: i64,
) -> Result<(), UnetError> {
    positive(mc_field, model_channels)?;
    if mult.is_empty() {
        return Err(UnetError::config("channel_mult", "must not be empty"));
    }
    if let Some(m) = mult.iter().find(|&&m| m <= 0) {
        return Err(UnetError::config(
            "channel_mult",
            format!("entries must be > 0, got {m}"),
        ));
    }
    if num_blocks < 0 {
        return Err(UnetError::config(
            "num_blocks",
            format!("must be >= 0, got {num_blocks}"),
        ));
    }
    let levels = mult.len() as u32 - 1;
    if levels >= 62 || res % (1i64 << levels) != 0 {
        return Err(UnetError::config(
            "img_resolution",
            format!("{res} is not divisible by 2^{levels} (one halving per channel_mult entry after the first)"),
        ));
    }
    Ok(())
}

fn validate_model(model: &ModelConfig, res: i64) -> Result<(), UnetError> {
    match model {
        ModelConfig::SongUNet(c) => {
            common_unet(
                "model_channels",
                c.model_channels,
                &c.channel_mult,
                c.num_blocks,
                res,
            )?;
            positive("channel_mult_emb", c.channel_mult_emb)?;
            positive("channel_mult_noise", c.channel_mult_noise)?;
            if c.augment_dim < 0 {
                return Err(UnetError::config(
                    "augment_dim",
                    format!("must be >= 0, got {}", c.augment_dim),
                ));
            }
            if c.model_channels * c.channel_mult_noise % 2 != 0 {
                return Err(UnetError::config(
                    "channel_mult_noise",
                    "model_channels * channel_mult_noise must be even",
                ));
            }
            filter("resample_filter", &c.resample_filter)?;
            probability("dropout", c.dropout)?;
            probability("label_dropout", c.label_dropout)
        }
        ModelConfig::DhariwalUNet(c) => {
            common_unet(
                "model_channels",
                c.model_channels,
                &c.channel_mult,
                c.num_blocks,
                res,
            )?;
            positive("channel_mult_emb", c.channel_mult_emb)?;
            if c.augment_dim < 0 {
                return Err(UnetError::config(
                    "augment_dim",
                    format!("must be >= 0, got {}", c.augment_dim),
                ));
            }
            if c.model_channels % 2 != 0 {
                return Err(UnetError::config(
                    "model_channels",
                    "must be even (positional embedding)",
                ));
            }
            probability("dropout", c.dropout)?;
            probability("label_dropout", c.label_dropout)
        }
    }
}
