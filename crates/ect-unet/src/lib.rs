//! The networks Easy Consistency Tuning tunes, on `tch`, numerically identical to the reference
//! PyTorch code (EDM `training/networks.py`, EDM2 `training/networks_edm2.py`, and ECT's `ECMPrecond`):
//!
//! - [`song::SongUNet`]: DDPM++ and NCSN++ (every option of the reference);
//! - [`dhariwal::DhariwalUNet`]: ADM, class-conditional;
//! - [`edm2::Edm2UNet`]: the EDM2 magnitude-preserving UNet used for ImageNet 64;
//! - [`Precond`]: the preconditioning wrappers `ECMPrecond`, `EDMPrecond`, `edm2.Precond`
//!   (docs/method.md §2), selected by [`NetworkConfig`].
//!
//! Parameter and buffer names equal the reference state dicts (`model.enc.32x32_block0.conv0.weight`,
//! `unet.emb_fourier.freqs`, ...): buffers live in the VarStore as non-trainable variables, so
//! [`load_weights`] / [`save_weights`] round-trip a converted reference checkpoint exactly.
//! Dropout masks can be recorded and replayed ([`DropoutMode`], [`MaskTape`]) so that ECT's teacher
//! pass sees the student pass's masks. [`parity::check_fixture`] compares against reference outputs.
//! [`flops`] counts the multiply-accumulates of the forward passes (for compute budgets).

// tch implements `+=` as an in-place `add_`: autograd may still need the old value, and skip lists
// share storage with the activations, so the networks always build new tensors.
#![allow(clippy::assign_op_pattern)]

pub mod block;
pub mod builder;
pub mod count;
pub mod dhariwal;
pub mod dropout;
pub mod edm2;
pub mod error;
pub mod flops;
pub mod layers;
pub mod parity;
pub mod precond;
pub mod song;
pub mod weights;

pub use count::{count_parameters, forward_flops_per_image, try_count_parameters};
pub use dropout::{DropoutMode, MaskTape};
/// The network configurations, defined in the torch-free `ect-config` crate (beside the training
/// configuration that holds them) and re-exported here under their historical path.
pub use ect_config::network as config;
pub use ect_config::network::{
    DecoderType, DhariwalUNetConfig, EcmConfig, Edm2Config, EdmConfig, EmbeddingType, EncoderType,
    ModelConfig, NetworkConfig, NetworkConfigError, PrecondFields, SongUNetConfig,
    ValidNetworkConfig,
};
pub use error::UnetError;
pub use flops::{count_flops, FlopCount};
pub use parity::{check_fixture, ParityReport};
pub use precond::{CoeffMode, Precond};
pub use weights::{load_weights, save_weights};
