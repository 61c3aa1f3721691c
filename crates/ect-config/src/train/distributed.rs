//! Settings of data-parallel runs (several processes: `ect train --nproc-per-node N`, torchrun, srun).
//! None of them changes what is trained.

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, Result};

/// How the processes of a data-parallel run wait for each other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistributedConfig {
    /// Seconds any collective (gradient all-reduce, barrier, rendezvous) may wait for the other ranks
    /// before the run stops with an error naming the rank at fault. A rank that dies is detected within
    /// a few seconds whatever this is; the timeout bounds a rank that stalls, and it must exceed the
    /// longest work rank 0 does alone (a checkpoint, sample grids, a periodic FD evaluation).
    pub timeout_s: u64,
}

impl Default for DistributedConfig {
    fn default() -> Self {
        // torch.distributed's default for Gloo.
        Self { timeout_s: 1800 }
    }
}

impl DistributedConfig {
    /// Checks the timeout.
    pub fn validate(&self) -> Result<()> {
        if self.timeout_s == 0 || self.timeout_s > 7 * 24 * 3600 {
            return Err(ConfigError::invalid(
                "distributed.timeout_s",
                format!(
                    "must be between 1 and 604800 seconds, got {}",
                    self.timeout_s
                ),
            ));
        }
        Ok(())
    }
}
