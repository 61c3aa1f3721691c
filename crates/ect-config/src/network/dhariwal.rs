//! `DhariwalUNet` (ADM) constructor arguments, with EDM's names and defaults.

use serde::{Deserialize, Serialize};

use super::checks::{non_negative, positive, probability, unet_levels};
use super::song::SongUNetConfig;
use super::NetworkConfigError;

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
    pub(crate) fn d_model_channels() -> i64 {
        192
    }
    pub(crate) fn d_channel_mult() -> Vec<i64> {
        vec![1, 2, 3, 4]
    }
    pub(crate) fn d_num_blocks() -> i64 {
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

impl DhariwalUNetConfig {
    /// Checks the arguments for an `res`x`res` input; errors name the argument.
    pub fn validate(&self, res: i64) -> Result<(), NetworkConfigError> {
        unet_levels(
            self.model_channels,
            &self.channel_mult,
            self.num_blocks,
            &self.attn_resolutions,
            &Self::d_attn_resolutions(),
            res,
        )?;
        positive("channel_mult_emb", self.channel_mult_emb)?;
        non_negative("augment_dim", self.augment_dim)?;
        if self.model_channels % 2 != 0 {
            return Err(NetworkConfigError::config(
                "model_channels",
                "must be even (positional embedding)",
            ));
        }
        probability("dropout", self.dropout)?;
        probability("label_dropout", self.label_dropout)
    }
}
