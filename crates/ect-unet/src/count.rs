//! What a network costs, measured from its own construction and forward pass without allocating its
//! weights: trainable parameters and the multiply-accumulates of a forward pass (the recording hooks
//! are in [`crate::flops`]).

use crate::builder::Builder;
use crate::dropout::DropoutMode;
use crate::error::UnetError;
use crate::flops::{count_flops, FlopCount};
use crate::precond::{CoeffMode, Precond};
use ect_config::network::{NetworkConfig, ValidNetworkConfig};
use tch::{nn::VarStore, Device, Kind, Tensor};

/// Number of trainable parameters of `cfg` (buffers excluded, as the reference's `params` count),
/// or the config's validation error.
pub fn try_count_parameters(cfg: &NetworkConfig) -> Result<u64, UnetError> {
    count_parameters(&cfg.clone().validated()?)
}

/// Number of trainable parameters of a validated config (buffers excluded, as the reference's `params`
/// count), counted without allocating the weights.
pub fn count_parameters(cfg: &ValidNetworkConfig) -> Result<u64, UnetError> {
    let vs = VarStore::new(Device::Cpu);
    // Every variable is a stride-0 view of one scalar: building XL costs kilobytes, not gigabytes.
    Precond::build(&Builder::shapes_only(vs.root()), cfg)?;
    Ok(vs
        .trainable_variables()
        .iter()
        .map(|t| t.numel() as u64)
        .sum())
}

/// MACs of one evaluation-mode forward pass of `cfg`'s preconditioned network on one image
/// (`img_channels x img_resolution^2`, `sigma = 1`, a one-hot class label when `label_dim > 0`).
///
/// The network is built without allocating its weights (every parameter a stride-0 view of one
/// zero) and run once on the CPU, so the figure comes from the real forward code at real shapes; it
/// costs one batch-1 forward (about a second for DDPM++ at 32x32, more for EDM2 at 64x64).
pub fn forward_flops_per_image(cfg: &ValidNetworkConfig) -> Result<FlopCount, UnetError> {
    let vs = VarStore::new(Device::Cpu);
    let net = Precond::build(&Builder::shapes_only(vs.root()), cfg)?;
    let opts = (Kind::Float, Device::Cpu);
    let (c, r, l) = (cfg.img_channels(), cfg.img_resolution(), cfg.label_dim());
    let x = Tensor::zeros([1, c, r, r], opts);
    let sigma = Tensor::ones([1], opts);
    let labels =
        (l > 0).then(|| Tensor::zeros([1, l], opts).index_fill(1, &Tensor::from(0i64), 1.0));
    let (_, count) = tch::no_grad(|| {
        count_flops(|| {
            net.forward(
                &x,
                &sigma,
                labels.as_ref(),
                CoeffMode::Eval,
                DropoutMode::Off,
            )
        })
    });
    Ok(count)
}
