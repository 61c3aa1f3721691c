//! `SongUNet` (DDPM++, NCSN++) constructor arguments, with EDM's names and defaults.

use serde::{Deserialize, Serialize};

use super::checks::{filter, positive, probability, unet_levels};
use super::NetworkConfigError;

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
    /// Resampling filter: `[1,1]` for DDPM++, `[1,3,3,1]` for NCSN++.
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
    pub(crate) fn d_channel_mult_emb() -> i64 {
        4
    }
    fn d_num_blocks() -> i64 {
        4
    }
    fn d_attn_resolutions() -> Vec<i64> {
        vec![16]
    }
    pub(crate) fn d_dropout() -> f64 {
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
    pub(crate) fn d_resample_filter() -> Vec<f64> {
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

impl SongUNetConfig {
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
        positive("channel_mult_noise", self.channel_mult_noise)?;
        super::checks::non_negative("augment_dim", self.augment_dim)?;
        match self.model_channels.checked_mul(self.channel_mult_noise) {
            Some(n) if n % 2 == 0 => {}
            Some(_) => {
                return Err(NetworkConfigError::config(
                    "channel_mult_noise",
                    "model_channels * channel_mult_noise must be even",
                ))
            }
            None => {
                return Err(NetworkConfigError::config(
                    "channel_mult_noise",
                    "model_channels * channel_mult_noise does not fit in 64 bits",
                ))
            }
        }
        filter("resample_filter", &self.resample_filter)?;
        probability("dropout", self.dropout)?;
        probability("label_dropout", self.label_dropout)
    }
}
