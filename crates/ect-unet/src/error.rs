//! The crate's error type.

use std::path::PathBuf;

/// `(name, network shape, file shape)` of one tensor whose shapes disagree.
pub type ShapeMismatch = (String, Vec<i64>, Vec<i64>);

/// Everything that can go wrong when building, loading, saving or checking a network.
#[derive(Debug, thiserror::Error)]
pub enum UnetError {
    /// A configuration value is out of range or inconsistent.
    #[error("invalid network config: field `{field}`: {reason}")]
    Config {
        /// The offending field (reference constructor-argument name).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A configuration document could not be parsed.
    #[error("cannot parse network config{}: {reason}", origin.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default())]
    ConfigParse {
        /// The file the config came from, if any.
        origin: Option<PathBuf>,
        /// The parser's message (names the field where it can).
        reason: String,
    },
    /// Reading or writing a file failed. The message names only the file: the cause is the error's
    /// `source`, which `{:#}` / error-chain printers append (printing it here too showed it twice).
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A safetensors file is malformed or holds an unsupported dtype.
    #[error("{}: {reason}", path.display())]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A weights file does not match the network's parameters and buffers.
    #[error("{}: weights do not match the network:{}", path.display(), describe_mismatch(missing, unexpected, shape_mismatches))]
    WeightMismatch {
        /// The file.
        path: PathBuf,
        /// Names the network has but the file lacks.
        missing: Vec<String>,
        /// Names the file has but the network lacks.
        unexpected: Vec<String>,
        /// `(name, network shape, file shape)` for every shape disagreement.
        shape_mismatches: Vec<ShapeMismatch>,
    },
    /// A fixture directory lacks a tensor or holds one of the wrong shape.
    #[error("fixture {}: {reason}", dir.display())]
    Fixture {
        /// The fixture directory.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// libtorch reported an error.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

fn describe_mismatch(
    missing: &[String],
    unexpected: &[String],
    shapes: &[ShapeMismatch],
) -> String {
    let mut s = String::new();
    if !missing.is_empty() {
        s.push_str(&format!(
            "\n  missing keys ({}): {}",
            missing.len(),
            missing.join(", ")
        ));
    }
    if !unexpected.is_empty() {
        s.push_str(&format!(
            "\n  unexpected keys ({}): {}",
            unexpected.len(),
            unexpected.join(", ")
        ));
    }
    for (name, want, got) in shapes {
        s.push_str(&format!(
            "\n  shape mismatch: {name}: network {want:?}, file {got:?}"
        ));
    }
    s
}

impl From<ect_config::NetworkConfigError> for UnetError {
    fn from(e: ect_config::NetworkConfigError) -> Self {
        match e {
            ect_config::NetworkConfigError::Config { field, reason } => {
                UnetError::Config { field, reason }
            }
            ect_config::NetworkConfigError::Parse { origin, reason } => {
                UnetError::ConfigParse { origin, reason }
            }
        }
    }
}

impl UnetError {
    pub(crate) fn config(field: &str, reason: impl Into<String>) -> Self {
        UnetError::Config {
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}
