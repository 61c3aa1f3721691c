//! Preconditioning wrappers: `D(x; sigma) = c_skip x + c_out F(c_in x, c_noise)` (EDM section 5),
//! with the ECM evaluation-mode shift (docs/method.md §2).
//!
//! The coefficients are the formulas of `ect_schedule::precond`, evaluated here as tensor ops on the
//! batch's `sigma` in the reference's order of operations, so a GPU forward never syncs to the host.

use crate::builder::Builder;
use crate::dhariwal::DhariwalUNet;
use crate::dropout::DropoutMode;
use crate::edm2::Edm2UNet;
use crate::error::UnetError;
use crate::song::SongUNet;
use ect_config::network::{ModelConfig, NetworkConfig, ValidNetworkConfig};
use tch::{nn, Kind, Tensor};

/// Which coefficients the preconditioning uses (ECM: training vs evaluation; the others ignore it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoeffMode {
    /// `c_skip = sd^2/(s^2+sd^2)`, `c_out = s sd/sqrt(s^2+sd^2)`.
    Train,
    /// ECM: `c_skip = sd^2/((s-smin)^2+sd^2)`, `c_out = (s-smin) sd/sqrt(s^2+sd^2)`.
    Eval,
}

/// `D(x; s) = c_skip x + c_out F(c_in x, c_noise)`: the four coefficients at a batch of noise levels.
#[derive(Debug)]
pub struct Coefficients {
    /// Weight of the input.
    pub c_skip: Tensor,
    /// Weight of the network's output.
    pub c_out: Tensor,
    /// Input scaling.
    pub c_in: Tensor,
    /// The network's noise conditioning, `ln(s) / 4`.
    pub c_noise: Tensor,
}

#[derive(Debug)]
enum Net {
    Song(SongUNet),
    Dhariwal(DhariwalUNet),
    Edm2(Edm2UNet),
}

/// A network with its preconditioning: the object ECT trains and samples with.
#[derive(Debug)]
pub struct Precond {
    net: Net,
    cfg: ValidNetworkConfig,
}

impl Precond {
    /// Builds the network under `root` (parameters `root.model.*` or, for EDM2, `root.unet.*`) with the
    /// reference initialization; seed torch (`tch::manual_seed`) first for a reproducible init.
    pub fn new(root: &nn::Path<'_>, cfg: &ValidNetworkConfig) -> Result<Self, UnetError> {
        Self::build(&Builder::new(root.clone()), cfg)
    }

    /// Builds under an explicit [`Builder`] (a shapes-only builder counts parameters without allocating).
    pub fn build(b: &Builder<'_>, cfg: &ValidNetworkConfig) -> Result<Self, UnetError> {
        let (res, ch, labels) = (cfg.img_resolution(), cfg.img_channels(), cfg.label_dim());
        let model = |m: &ModelConfig| -> Result<Net, UnetError> {
            let b = b.sub("model");
            Ok(match m {
                ModelConfig::SongUNet(c) => Net::Song(SongUNet::new(&b, res, ch, ch, labels, c)?),
                ModelConfig::DhariwalUNet(c) => {
                    Net::Dhariwal(DhariwalUNet::new(&b, res, ch, ch, labels, c)?)
                }
            })
        };
        let net = match cfg.get() {
            NetworkConfig::Ecm(c) => model(&c.model)?,
            NetworkConfig::Edm(c) => model(&c.model)?,
            NetworkConfig::Edm2(c) => Net::Edm2(Edm2UNet::new(&b.sub("unet"), c)?),
        };
        Ok(Precond {
            net,
            cfg: cfg.clone(),
        })
    }

    /// The configuration this network was built from.
    pub fn config(&self) -> &ValidNetworkConfig {
        &self.cfg
    }

    /// Number of image channels.
    pub fn img_channels(&self) -> i64 {
        self.cfg.img_channels()
    }

    /// Image resolution.
    pub fn img_resolution(&self) -> i64 {
        self.cfg.img_resolution()
    }

    /// Number of classes (0 = unconditional).
    pub fn label_dim(&self) -> i64 {
        self.cfg.label_dim()
    }

    /// EDM2 only: forced weight normalization of every MP layer (call before the student pass in
    /// training; the teacher pass must not re-normalize). A no-op for the other networks.
    pub fn normalize_weights(&self) {
        if let Net::Edm2(u) = &self.net {
            for c in u.convs() {
                c.force_normalize();
            }
        }
    }

    /// The preconditioning coefficients at `sigma`, as tensor ops in the reference's order of operations
    /// (the formulas of `ect_schedule::precond`, which the tests compare them with).
    ///
    /// # Shapes
    /// sigma: any shape, f32 -> four tensors of that shape.
    pub fn coefficients(&self, sigma: &Tensor, mode: CoeffMode) -> Coefficients {
        let sd = self.cfg.sigma_data();
        let sd2 = sd * sd;
        let s2 = sigma.square();
        let (c_skip, c_out) = match (self.cfg.get(), mode) {
            (NetworkConfig::Ecm(c), CoeffMode::Eval) => {
                let shifted = sigma - c.sigma_min;
                let c_skip = (shifted.square() + sd2).reciprocal() * sd2;
                let c_out = shifted * sd / (&s2 + sd2).sqrt();
                (c_skip, c_out)
            }
            _ => (
                (&s2 + sd2).reciprocal() * sd2,
                sigma * sd / (&s2 + sd2).sqrt(),
            ),
        };
        Coefficients {
            c_skip,
            c_out,
            c_in: (&s2 + sd2).sqrt().reciprocal(),
            c_noise: sigma.log() / 4.0,
        }
    }

    /// `D(x; sigma)` with preconditioning.
    ///
    /// # Shapes
    /// x: [N, C, H, W] f32, sigma: `[N]` f32 (or broadcastable, e.g. `[1]` or [N, 1, 1, 1]),
    /// class_labels: Option<[N, label_dim]> one-hot f32 (zeros when `None` on a conditional net)
    /// -> [N, C, H, W] f32.
    pub fn forward(
        &self,
        x: &Tensor,
        sigma: &Tensor,
        class_labels: Option<&Tensor>,
        coeffs: CoeffMode,
        dropout: DropoutMode<'_>,
    ) -> Tensor {
        self.forward_with_augment(x, sigma, class_labels, None, coeffs, dropout)
    }

    /// [`Precond::forward`] with augmentation labels for networks built with `augment_dim > 0`
    /// (ignored otherwise, and by EDM2).
    ///
    /// # Shapes
    /// As [`Precond::forward`]; augment_labels: [N, augment_dim].
    pub fn forward_with_augment(
        &self,
        x: &Tensor,
        sigma: &Tensor,
        class_labels: Option<&Tensor>,
        augment_labels: Option<&Tensor>,
        coeffs: CoeffMode,
        dropout: DropoutMode<'_>,
    ) -> Tensor {
        dropout.begin_pass();
        let x = x.to_kind(Kind::Float);
        let sigma = sigma.to_kind(Kind::Float).reshape([-1, 1, 1, 1]);
        let label_dim = self.label_dim();
        let labels = (label_dim > 0).then(|| match class_labels {
            Some(l) => l.to_kind(Kind::Float).reshape([-1, label_dim]),
            None => Tensor::zeros([1, label_dim], (Kind::Float, x.device())),
        });
        let Coefficients {
            c_skip,
            c_out,
            c_in,
            c_noise,
        } = self.coefficients(&sigma, coeffs);
        let c_noise = c_noise.flatten(0, -1);
        let x_in = &c_in * &x;
        let f = match &self.net {
            Net::Song(n) => n.forward(&x_in, &c_noise, labels.as_ref(), augment_labels, &dropout),
            Net::Dhariwal(n) => {
                n.forward(&x_in, &c_noise, labels.as_ref(), augment_labels, &dropout)
            }
            Net::Edm2(n) => n.forward(&x_in, &c_noise, labels.as_ref(), &dropout),
        };
        c_skip * x + c_out * f.to_kind(Kind::Float)
    }
}
