//! The crate's error type: every message names the file, field or value at fault.

use std::path::PathBuf;

/// Errors from metric computations, statistics files and feature extractors.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Two inputs that must agree in size do not.
    #[error("dimension mismatch in {what}: expected {expected}, got {got}")]
    DimMismatch {
        /// Which quantity disagrees (e.g. "sigma of B", "feature batch length").
        what: String,
        /// The size it must have.
        expected: usize,
        /// The size it has.
        got: usize,
    },
    /// A statistic or feature holds NaN or infinity.
    #[error("non-finite value in {what} at index {index}: {value}")]
    NonFinite {
        /// Which array (e.g. "mu", "sigma", "logits").
        what: String,
        /// Flat index of the first offending element.
        index: usize,
        /// The offending value.
        value: f64,
    },
    /// A covariance that is not symmetric or not positive semi-definite (see
    /// [`crate::stats::COVARIANCE_TOLERANCE`]).
    #[error("{what} is not a covariance matrix: {reason}")]
    NotCovariance {
        /// The matrix (e.g. "ref.npz:sigma").
        what: String,
        /// Which check failed, with the numbers.
        reason: String,
    },
    /// Float samples outside the range they are declared to be in.
    #[error(
        "{path}: float samples span [{min}, {max}], outside the declared range {range} ({}); \
         declare another range (--range 0,1 for images in [0, 1]), store 0-255 pixels as uint8, or \
         clip the values to {range} first",
        range.convention()
    )]
    SampleRange {
        /// The samples file.
        path: String,
        /// The smallest value in the file.
        min: f64,
        /// The largest value in the file.
        max: f64,
        /// The range the values were declared to be in.
        range: crate::samples::ValueRange,
    },
    /// Too few samples for the requested statistic.
    #[error("{what} needs at least {needed} samples, got {got}")]
    TooFewSamples {
        /// Which statistic.
        what: String,
        /// The minimum number of samples.
        needed: usize,
        /// The number available.
        got: usize,
    },
    /// An argument outside its valid range.
    #[error("invalid argument {name} = {value}: {reason}")]
    InvalidArgument {
        /// Argument name.
        name: String,
        /// The value given, as text.
        value: String,
        /// Why it is rejected.
        reason: String,
    },
    /// An `.npz` archive lacks a required array.
    #[error("{path}: no array named {name:?} (found: {found:?})")]
    MissingArray {
        /// The archive.
        path: PathBuf,
        /// The array looked for (e.g. "mu").
        name: String,
        /// The arrays present.
        found: Vec<String>,
    },
    /// An `.npy` file or stream that cannot be parsed or is of an unsupported kind.
    #[error("{path}: bad .npy data: {reason}")]
    Npy {
        /// The file (or `file:member` inside an archive).
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// An I/O failure on a named file.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error: part of the message and therefore not also the error's `source()`,
        /// which made a cause chain (`{:#}`) print it twice.
        error: std::io::Error,
    },
    /// A zip archive that cannot be read or written.
    #[error("{path}: zip archive error: {error}")]
    Zip {
        /// The archive.
        path: PathBuf,
        /// The underlying error (in the message, not the `source()`, as for [`MetricsError::Io`]).
        error: zip::result::ZipError,
    },
    /// A linear-algebra failure (e.g. an eigendecomposition that did not converge).
    #[error("linear algebra failure: {0}")]
    Linalg(String),
    /// A TorchScript module or tensor operation failed, or returned an output of the wrong kind or shape.
    #[error("{context}: {reason}")]
    Model {
        /// The model file or operation.
        context: String,
        /// What went wrong.
        reason: String,
    },
    /// A safetensors file could not be read or written.
    #[error("{path}: safetensors error: {reason}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A dataset could not be read.
    #[error("dataset error: {0}")]
    Data(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = MetricsError> = std::result::Result<T, E>;

impl MetricsError {
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            error,
        }
    }

    pub(crate) fn dim(what: impl Into<String>, expected: usize, got: usize) -> Self {
        Self::DimMismatch {
            what: what.into(),
            expected,
            got,
        }
    }

    pub(crate) fn arg(name: &str, value: impl ToString, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            name: name.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// Fails on the first non-finite element of `values`, naming `what`.
pub(crate) fn check_finite(what: &str, values: &[f64]) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(MetricsError::NonFinite {
            what: what.into(),
            index,
            value: values[index],
        }),
        None => Ok(()),
    }
}
