//! The training data: where it is, and how the loader reads it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Training data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Dataset file or directory.
    pub path: PathBuf,
    /// `ect-data` format name (`auto`, `cifar-python`, `cifar-binary`, `edm-archive`, `image-folder`, `idx`).
    pub format: String,
    /// Which split (`train` or `test`).
    pub split: String,
    /// Random horizontal flips.
    pub xflip: bool,
    /// Feed class labels to the network (needs a class-conditional network).
    pub conditional: bool,
    /// Resize to this resolution where the format allows it (ImageNet folders); `None`: the format's default.
    pub resolution: Option<usize>,
    /// Loader worker threads (0: one per core, shared among the processes of a data-parallel run on the
    /// same machine).
    pub threads: usize,
    /// Batches prepared ahead.
    pub prefetch: usize,
    /// Keep decoded images in memory (each process of a data-parallel run keeps its own; a run whose
    /// caches would take more than half the machine's memory goes on without them, with a warning).
    pub cache: bool,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::new(),
            format: "auto".to_owned(),
            split: "train".to_owned(),
            xflip: false,
            conditional: false,
            resolution: None,
            threads: 0,
            prefetch: 2,
            cache: true,
        }
    }
}
