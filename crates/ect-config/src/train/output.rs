//! The run directory and the cadence of logs, samples and checkpoints.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, Result};

/// Run directory and intervals (in iterations; 0 disables).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// The run directory (created; an existing one with checkpoints is refused unless resuming).
    pub run_dir: PathBuf,
    /// Checkpoint interval.
    pub checkpoint_every: u64,
    /// Sample-grid interval.
    pub sample_every: u64,
    /// `stats.jsonl` / log-line interval.
    pub log_every: u64,
    /// Checkpoints kept (the newest ones); `latest` always points at the newest.
    pub keep_last: usize,
    /// Consecutive non-finite losses that stop the run.
    pub max_nonfinite: u64,
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self {
            run_dir: PathBuf::from("runs/ect"),
            checkpoint_every: 5000,
            sample_every: 5000,
            log_every: 100,
            keep_last: 3,
            max_nonfinite: 20,
        }
    }
}

impl OutputConfig {
    /// Checks the run directory and counts; errors name `output.<field>`.
    pub fn validate(&self) -> Result<()> {
        if self.run_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("output.run_dir", "is required"));
        }
        if self.keep_last == 0 {
            return Err(ConfigError::invalid("output.keep_last", "must be >= 1"));
        }
        if self.max_nonfinite == 0 {
            return Err(ConfigError::invalid("output.max_nonfinite", "must be >= 1"));
        }
        Ok(())
    }
}
