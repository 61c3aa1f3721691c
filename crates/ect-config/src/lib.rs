//! Configuration as data, at the bottom of the ECT workspace: the typed training configuration
//! ([`TrainConfig`]), the network configurations with the reference constructor-argument names
//! ([`network`]), experiment files of `cargo xtask` ([`ExperimentConfig`]), the one `--set key=value`
//! parser and table merge ([`overrides`]), devices named without torch ([`DeviceSpec`]) and the atomic
//! file writes every tool uses ([`atomic`]).
//!
//! Nothing here links libtorch, so `cargo xtask` (which never does) and the `ect` binary parse and
//! validate configurations with the same code, once, where they enter the program. Behaviour lives in the
//! crates above: `ect-unet` builds networks from a [`network::ValidNetworkConfig`], `ect-train` trains
//! from a [`TrainConfig`]. The method the fields configure is described in `docs/method.md`.

pub mod atomic;
pub mod device;
pub mod error;
pub mod experiment;
pub mod network;
pub mod overrides;
pub mod train;

pub use device::DeviceSpec;
pub use error::{ConfigError, Result};
pub use experiment::{EvalSpec, ExperimentConfig};
pub use network::{NetworkConfig, NetworkConfigError, ValidNetworkConfig};
pub use train::TrainConfig;
