//! The crate's error type: every failure names where it happened (opcode and byte offset, archive
//! member, tensor), so a user can tell a truncated download from a hostile file.

use std::path::PathBuf;

/// Everything that can go wrong reading a pickle, a `torch.save` archive or a tensor in one.
#[derive(Debug, thiserror::Error)]
pub enum PickleError {
    /// The opcode stream is malformed (truncated, wrong operand, stack or memo misuse, a known
    /// constructor called with arguments it does not take).
    #[error("pickle byte {offset}, {opcode}: {reason}")]
    Malformed {
        /// Byte offset of the opcode in the pickle being read.
        offset: usize,
        /// The opcode's name (`BINUNICODE`, `REDUCE`, ...) or `end of data`.
        opcode: String,
        /// What is wrong.
        reason: String,
    },
    /// A resource limit of [`crate::Limits`] was reached.
    #[error("pickle byte {offset}, {opcode}: {what} exceeds the limit of {limit}")]
    Limit {
        /// Byte offset of the opcode in the pickle being read.
        offset: usize,
        /// The opcode's name.
        opcode: String,
        /// Which limit (`nesting depth`, `memo entries`, `bytes materialised`, ...).
        what: &'static str,
        /// The configured limit.
        limit: u64,
    },
    /// An error inside a `torch.save` archive embedded in the pickle (`torch.storage._load_from_bytes`).
    #[error(
        "pickle byte {offset}, in the torch.save archive passed to _load_from_bytes: {source}"
    )]
    Nested {
        /// Byte offset of the `REDUCE` that received the archive.
        offset: usize,
        /// The error inside the archive.
        source: Box<PickleError>,
    },
    /// A `torch.save` archive (zip or legacy) is malformed: missing member, bad header, wrong sizes.
    #[error("torch.save archive: {0}")]
    Archive(String),
    /// A tensor cannot be materialised (view outside its storage, unsupported dtype, too large).
    #[error("tensor: {0}")]
    Tensor(String),
    /// Reading a file failed. The message names the file; the cause is the error's `source`.
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Result alias of the crate.
pub type Result<T, E = PickleError> = std::result::Result<T, E>;
