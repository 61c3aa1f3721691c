//! The one error type of the crate: every variant names the file (or URL) and the problem, so a user
//! with a bad dataset learns which file to fix.

use std::path::{Path, PathBuf};

/// Result alias used throughout the crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// Everything that can go wrong while opening, reading, converting or fetching a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened, read or written.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the operating system said: part of the message and therefore not also the error's
        /// `source()`, which made a cause chain (`{:#}`) print it twice.
        error: std::io::Error,
    },
    /// The bytes are not what the format requires (wrong magic, truncated, corrupt, inconsistent).
    #[error("{}: {msg}", path.display())]
    Format {
        /// The file (for archives: `archive/member`).
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// Images and labels disagree in number.
    #[error("{}: {images} images but {labels} labels", path.display())]
    CountMismatch {
        /// The file holding the labels (or the dataset).
        path: PathBuf,
        /// How many images there are.
        images: usize,
        /// How many labels there are.
        labels: usize,
    },
    /// One image's shape differs from the dataset's (the first image's) shape.
    #[error(
        "{}: image {index} is {got:?} (C,H,W) but the dataset's images are {expected:?}",
        path.display()
    )]
    MixedSizes {
        /// The image file (for archives: `archive/member`).
        path: PathBuf,
        /// Its index in the dataset.
        index: usize,
        /// Its shape, C,H,W.
        got: [usize; 3],
        /// The dataset's shape, C,H,W.
        expected: [usize; 3],
    },
    /// Several images of a dataset failed the check at open ([`crate::validate`]); the first (lowest index)
    /// is given in full.
    #[error(
        "{first} (and {} more of the {total} images of {} cannot be read; the first is shown)",
        count - 1,
        path.display()
    )]
    BadImages {
        /// The dataset.
        path: PathBuf,
        /// How many images failed.
        count: usize,
        /// How many images the dataset has.
        total: usize,
        /// The error of the first failing image.
        first: Box<DataError>,
    },
    /// Labels were required but the dataset has none.
    #[error("{}: class labels were requested but the dataset has none", path.display())]
    NoLabels {
        /// The dataset.
        path: PathBuf,
    },
    /// An index past the end of the dataset.
    #[error("{}: image index {index} is out of range (the dataset has {len} images)", path.display())]
    OutOfRange {
        /// The dataset.
        path: PathBuf,
        /// The index asked for.
        index: usize,
        /// How many images there are.
        len: usize,
    },
    /// A downloaded or cached file does not have the published checksum.
    #[error("{}: {algorithm} checksum mismatch: expected {expected}, got {got}", path.display())]
    Checksum {
        /// The file checked.
        path: PathBuf,
        /// `md5` or `sha256`.
        algorithm: &'static str,
        /// The published value.
        expected: String,
        /// The value of the bytes received.
        got: String,
    },
    /// A download failed (connection, HTTP status, short body).
    #[error("download {url}: {msg}")]
    Download {
        /// The URL.
        url: String,
        /// What went wrong.
        msg: String,
    },
    /// A configuration value that cannot work (zero batch size, unknown dataset name, ...).
    #[error("invalid {field}: {msg}")]
    Config {
        /// The field or argument.
        field: &'static str,
        /// Why it is rejected.
        msg: String,
    },
}

impl DataError {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, error: std::io::Error) -> Self {
        DataError::Io {
            path: path.as_ref().to_path_buf(),
            error,
        }
    }

    /// A format error on `path`.
    pub fn format(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        DataError::Format {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }
}
