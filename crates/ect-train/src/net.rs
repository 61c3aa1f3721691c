//! The `ect-unet` network as a [`Denoiser`]: maps a [`Pass`] to coefficient and dropout modes and owns the
//! dropout tape shared by the student and teacher passes of one loss evaluation.

use ect_unet::{CoeffMode, DropoutMode, MaskTape, Precond, ValidNetworkConfig};
use tch::{nn::VarStore, Device, Tensor};

use crate::denoiser::{Denoiser, Pass};
use crate::error::{Result, TrainError};

/// A preconditioned network with its variables.
pub struct Network {
    /// The variables (parameters and buffers, reference names).
    pub vs: VarStore,
    /// The network.
    pub precond: Precond,
    tape: MaskTape,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("config", self.precond.config())
            .finish()
    }
}

impl Network {
    /// Builds `cfg` on `device` with the reference initialisation (seed torch first for reproducibility).
    pub fn new(cfg: &ValidNetworkConfig, device: Device) -> Result<Self> {
        let vs = VarStore::new(device);
        let precond = Precond::new(&vs.root(), cfg)
            .map_err(|e| TrainError::external("building the network", e))?;
        Ok(Self {
            vs,
            precond,
            tape: MaskTape::new(),
        })
    }

    /// Number of trainable parameters.
    pub fn num_parameters(&self) -> u64 {
        self.vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel() as u64)
            .sum()
    }
}

impl Denoiser for Network {
    fn denoise(&self, x: &Tensor, sigma: &Tensor, labels: Option<&Tensor>, pass: Pass) -> Tensor {
        let (coeffs, dropout) = match pass {
            Pass::Student => (CoeffMode::Train, DropoutMode::Record(&self.tape)),
            Pass::Teacher => (CoeffMode::Train, DropoutMode::Replay(&self.tape)),
            Pass::Train => (CoeffMode::Train, DropoutMode::Sample),
            Pass::Eval => (CoeffMode::Eval, DropoutMode::Off),
            Pass::Denoise => (CoeffMode::Train, DropoutMode::Off),
        };
        self.precond.forward(x, sigma, labels, coeffs, dropout)
    }

    fn normalize_weights(&self) {
        self.precond.normalize_weights();
    }
}
