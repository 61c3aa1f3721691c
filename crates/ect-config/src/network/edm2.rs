//! The EDM2 magnitude-preserving UNet with its own preconditioning (`edm2.Precond`) as ECT's ImageNet 64
//! code uses it.

use serde::{Deserialize, Serialize};

use super::checks::{filter, non_negative, positive, probability, unet_levels};
use super::dhariwal::DhariwalUNetConfig;
use super::song::SongUNetConfig;
use super::{NetworkConfigError, PrecondFields};

fn default_true() -> bool {
    true
}

/// `Precond` + `UNet` of EDM2 (`training/networks_edm2.py`, as in locuslab/ect: no log-variance head,
/// plus `dropout_res`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Edm2Config {
    /// Image size, channels, classes and the data's standard deviation.
    #[serde(flatten)]
    pub image: PrecondFields,
    /// Accepted for compatibility; this implementation runs in the VarStore's kind.
    #[serde(default = "default_true")]
    pub use_fp16: bool,
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
            image: PrecondFields {
                label_dim: 1000,
                ..PrecondFields::new(64, 3)
            },
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
            image: PrecondFields::new(64, 3),
            use_fp16: true,
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

impl Edm2Config {
    /// Checks the arguments; errors name the argument.
    pub fn validate(&self) -> Result<(), NetworkConfigError> {
        unet_levels(
            self.model_channels,
            &self.channel_mult,
            self.num_blocks,
            &self.attn_resolutions,
            &Self::d_attn_resolutions(),
            self.image.img_resolution,
        )?;
        filter("resample_filter", &self.resample_filter)?;
        probability("dropout", self.dropout)?;
        positive("channels_per_head", self.channels_per_head)?;
        if let Some(m) = self.channel_mult_noise {
            positive("channel_mult_noise", m)?;
        }
        if let Some(m) = self.channel_mult_emb {
            positive("channel_mult_emb", m)?;
        }
        // The reference's `if dropout_res and res > dropout_res` turns dropout off everywhere for a
        // negative value; surely a typo, so it is rejected.
        if let Some(dr) = self.dropout_res {
            if dr < 0 {
                return Err(NetworkConfigError::config(
                    "dropout_res",
                    format!("must be >= 0 (0 or null = dropout at every resolution), got {dr}"),
                ));
            }
        }
        for (name, t) in [
            ("label_balance", self.label_balance),
            ("concat_balance", self.concat_balance),
            ("res_balance", self.res_balance),
            ("attn_balance", self.attn_balance),
        ] {
            if !(0.0..=1.0).contains(&t) {
                return Err(NetworkConfigError::config(
                    name,
                    format!("must be in [0, 1], got {t}"),
                ));
            }
        }
        if let Some(clip) = self.clip_act {
            if clip.is_nan() || clip <= 0.0 {
                return Err(NetworkConfigError::config(
                    "clip_act",
                    format!("must be > 0 or null, got {clip}"),
                ));
            }
        }
        non_negative("logvar_channels", self.logvar_channels.unwrap_or(0))
    }
}
