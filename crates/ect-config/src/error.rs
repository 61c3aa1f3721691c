//! The error type of configuration handling: every message names the file, field or override at fault.

use std::path::PathBuf;

use crate::network::NetworkConfigError;

/// A configuration that cannot be read, parsed or used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration is not valid TOML/JSON or does not match the schema.
    #[error("config {origin}: {message}")]
    Parse {
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
    /// A value is out of range or inconsistent.
    #[error("config field `{field}`: {message}")]
    Invalid {
        /// The dotted path of the field.
        field: String,
        /// Why the value is rejected.
        message: String,
    },
    /// The `[network]` table is invalid.
    #[error("config field `network`: {0}")]
    Network(#[from] NetworkConfigError),
}

impl ConfigError {
    /// A [`ConfigError::Invalid`] for `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// This crate's result type.
pub type Result<T, E = ConfigError> = std::result::Result<T, E>;
