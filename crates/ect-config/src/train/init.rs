//! Where a run's initial weights come from.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where the initial weights come from.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum InitConfig {
    /// The network's own initialisation (seeded).
    #[default]
    Random,
    /// The EMA weights of one of our runs (its `latest` checkpoint), e.g. a diffusion pretraining run.
    Run {
        /// The run directory.
        path: PathBuf,
    },
    /// A safetensors file with reference parameter names (e.g. a converted EDM checkpoint).
    Weights {
        /// The file.
        path: PathBuf,
    },
    /// A published snapshot: an EDM / EDM2 / ECT `network-snapshot-*.pkl` or a `torch.save` file,
    /// read without Python and converted once (cached by content hash). Its network must have the
    /// configured architecture (dropout and the preconditioning's sigma range may differ).
    Snapshot {
        /// The `.pkl` or `.pt` file.
        path: PathBuf,
        /// The entry of the snapshot dict that holds the network.
        #[serde(default = "default_snapshot_key")]
        key: String,
    },
}

/// The reference snapshots keep the EMA network under `ema`.
fn default_snapshot_key() -> String {
    "ema".into()
}
