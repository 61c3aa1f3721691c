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
}
