//! Where a new run's weights start: the network's own (seeded) initialisation, a safetensors file with
//! reference names (a converted EDM checkpoint), or the first EMA track of another run of ours (the
//! pretraining run an ECT tuning starts from).

use ect_config::train::InitConfig;

use crate::checkpoint;
use crate::error::{Result, TrainError};
use crate::net::Network;
use crate::run_dir;

/// Loads the configured initial weights into `net` (random init needs nothing).
pub fn load_initial_weights(net: &Network, init: &InitConfig) -> Result<()> {
    match init {
        InitConfig::Random => Ok(()),
        InitConfig::Weights { path } => checkpoint::load_vars(&net.vs, path),
        InitConfig::Run { path } => {
            let ckpt = checkpoint::latest_checkpoint(path)?.ok_or_else(|| {
                TrainError::invalid(
                    "init.path",
                    format!("{} holds no checkpoint", path.display()),
                )
            })?;
            let other = run_dir::read_config(path)?;
            let label = other
                .ema
                .labels()
                .into_iter()
                .next()
                .expect("at least one EMA track");
            checkpoint::load_vars(&net.vs, &ckpt.join(format!("{label}.safetensors")))
        }
    }
}
