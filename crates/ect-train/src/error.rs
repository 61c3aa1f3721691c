//! The error type at this crate's boundary: every message names the file, field or value at fault.

use std::path::PathBuf;

/// Everything that can go wrong while configuring, training, checkpointing or sampling.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The configuration file could not be read.
    #[error("cannot read config {path}: {source}")]
    ConfigRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration is not valid TOML or does not match the schema.
    #[error("config {origin}: {message}")]
    ConfigParse {
        /// Where the text came from (a path or `<string>`).
        origin: String,
        /// The parser's message (it names the key).
        message: String,
    },
    /// A `--set key.path=value` override is malformed or names no field.
    #[error("override `{item}`: {message}")]
    Override {
        /// The override as given.
        item: String,
        /// What is wrong with it.
        message: String,
    },
    /// A configuration value is out of range or inconsistent.
    #[error("config field `{field}`: {message}")]
    Invalid {
        /// The dotted path of the field.
        field: String,
        /// Why the value is rejected.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A checkpoint or run directory is missing pieces or is inconsistent with the model.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint file or directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An error from libtorch.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// Training stopped because too many consecutive steps had a non-finite loss.
    #[error("training diverged: {count} consecutive non-finite losses up to step {step} (lower the learning rate or check the data)")]
    Diverged {
        /// How many steps in a row were skipped.
        count: u64,
        /// The step at which the run stopped.
        step: u64,
    },
    /// An error from the configuration crate (parsing, validation, overrides).
    #[error(transparent)]
    Config(#[from] ect_config::ConfigError),
    /// An error from another crate of the workspace (network, data), with context.
    #[error("{context}: {message}")]
    External {
        /// What we were doing.
        context: String,
        /// The other crate's message.
        message: String,
    },
}

impl TrainError {
    /// An [`TrainError::Invalid`] for `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// An [`TrainError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// An [`TrainError::External`] with context.
    pub fn external(context: impl Into<String>, err: impl std::fmt::Display) -> Self {
        Self::External {
            context: context.into(),
            message: err.to_string(),
        }
    }
}

/// This crate's result type.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
