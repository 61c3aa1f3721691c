//! Parameter counting without allocating the weights.

use crate::builder::Builder;
use crate::config::NetworkConfig;
use crate::error::UnetError;
use crate::precond::Precond;
use tch::{nn::VarStore, Device};

/// Number of trainable parameters of `cfg` (buffers excluded, as the reference's `params` count),
/// or the config's validation error.
pub fn try_count_parameters(cfg: &NetworkConfig) -> Result<u64, UnetError> {
    let vs = VarStore::new(Device::Cpu);
    // Every variable is a stride-0 view of one scalar: building XL costs kilobytes, not gigabytes.
    Precond::build(&Builder::shapes_only(vs.root()), cfg)?;
    Ok(vs
        .trainable_variables()
        .iter()
        .map(|t| t.numel() as u64)
        .sum())
}

/// Number of trainable parameters of `cfg`, counted without allocating the weights; 0 for a config
/// that fails validation (use [`try_count_parameters`] to see why).
pub fn count_parameters(cfg: &NetworkConfig) -> u64 {
    try_count_parameters(cfg).unwrap_or(0)
}
