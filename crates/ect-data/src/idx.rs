//! IDX files (MNIST, Fashion-MNIST, EMNIST; <http://yann.lecun.com/exdb/mnist/>), gzipped or not.
//!
//! Layout: two zero bytes, a type code (`0x08` = unsigned byte, the only type image datasets use), the
//! number of dimensions, each dimension as a big-endian `u32`, then the data in row-major order.
//! Images are `N x H x W` (`idx3`), labels `N` (`idx1`). EMNIST stores each image transposed; it is
//! returned as stored, like torchvision does.

use std::path::{Path, PathBuf};

use crate::dataset::InMemoryDataset;
use crate::error::{DataError, Result};
use crate::util::{maybe_gunzip, read_file};
use crate::Split;

/// One parsed IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// The dimensions, outermost first.
    pub dims: Vec<usize>,
    /// The values, row-major.
    pub data: Vec<u8>,
}

/// Parses IDX bytes (already decompressed); `path` only names the file in errors.
pub fn parse(bytes: &[u8], path: &Path) -> Result<IdxArray> {
    if bytes.len() < 4 {
        return Err(DataError::format(
            path,
            format!(
                "IDX file is {} bytes, too short for the 4-byte magic",
                bytes.len()
            ),
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(DataError::format(
            path,
            format!(
                "wrong IDX magic {:02x}{:02x}{:02x}{:02x} (must start with two zero bytes)",
                bytes[0], bytes[1], bytes[2], bytes[3]
            ),
        ));
    }
    if bytes[2] != 0x08 {
        return Err(DataError::format(
            path,
            format!(
                "IDX element type 0x{:02x} is not supported (only 0x08, unsigned byte)",
                bytes[2]
            ),
        ));
    }
    let ndim = bytes[3] as usize;
    if ndim == 0 {
        return Err(DataError::format(path, "IDX file declares zero dimensions"));
    }
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(DataError::format(
            path,
            format!(
                "IDX header truncated: {ndim} dimensions need {header} bytes, file has {}",
                bytes.len()
            ),
        ));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|d| {
            u32::from_be_bytes(bytes[4 + 4 * d..8 + 4 * d].try_into().expect("4 bytes")) as usize
        })
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| DataError::format(path, format!("IDX dimensions {dims:?} overflow")))?;
    let body = bytes.len() - header;
    if body < count {
        return Err(DataError::format(
            path,
            format!("IDX data truncated: dimensions {dims:?} need {count} bytes, file has {body}"),
        ));
    }
    if body > count {
        return Err(DataError::format(
            path,
            format!(
                "IDX file has {} bytes after the {count} its dimensions {dims:?} declare",
                body - count
            ),
        ));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Reads and parses one IDX file, gunzipping it when it starts with the gzip magic.
pub fn read(path: &Path) -> Result<IdxArray> {
    let bytes = maybe_gunzip(read_file(path)?, path)?;
    parse(&bytes, path)
}

/// Opens an images file and, when given, its labels file as a dataset (1 channel).
pub fn open_pair(images: &Path, labels: Option<&Path>) -> Result<InMemoryDataset> {
    let img = read(images)?;
    if img.dims.len() != 3 {
        return Err(DataError::format(
            images,
            format!(
                "IDX images must have 3 dimensions (N, H, W), found {:?}",
                img.dims
            ),
        ));
    }
    let (n, h, w) = (img.dims[0], img.dims[1], img.dims[2]);
    if h == 0 || w == 0 {
        return Err(DataError::format(
            images,
            format!("IDX images have an empty size {h}x{w}"),
        ));
    }
    let labels = match labels {
        None => None,
        Some(path) => {
            let lab = read(path)?;
            if lab.dims.len() != 1 {
                return Err(DataError::format(
                    path,
                    format!("IDX labels must have 1 dimension, found {:?}", lab.dims),
                ));
            }
            if lab.dims[0] != n {
                return Err(DataError::CountMismatch {
                    path: path.to_path_buf(),
                    images: n,
                    labels: lab.dims[0],
                });
            }
            Some(lab.data.into_iter().map(u32::from).collect())
        }
    };
    InMemoryDataset::new(images, [1, h, w], img.data, labels, None)
}

/// Normalizes a file name for matching: lower case, no `.gz`, dots as dashes
/// (`train-images.idx3-ubyte` and `train-images-idx3-ubyte.gz` both become `train-images-idx3-ubyte`).
fn normalized(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    lower
        .strip_suffix(".gz")
        .unwrap_or(&lower)
        .replace('.', "-")
}

/// Whether a normalized name is the images file of `split`.
fn is_images_of(norm: &str, split: Split) -> bool {
    let stems: &[&str] = match split {
        Split::Train => &["train-images-idx3-ubyte"],
        Split::Test => &["t10k-images-idx3-ubyte", "test-images-idx3-ubyte"],
    };
    stems.iter().any(|s| norm.ends_with(s))
}

/// Finds the labels file next to an images file (same name with `labels-idx1` for `images-idx3`).
pub fn labels_for(images: &Path) -> Option<PathBuf> {
    let dir = images.parent()?;
    let want =
        normalized(&images.file_name()?.to_string_lossy()).replace("images-idx3", "labels-idx1");
    let entries = std::fs::read_dir(dir).ok()?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| normalized(&e.file_name().to_string_lossy()) == want)
        .map(|e| e.path())
        .collect();
    found.sort();
    found.into_iter().next()
}

/// Finds the images file of `split` in a folder (MNIST-style names; error if none or ambiguous).
pub fn find_images(dir: &Path, split: Split) -> Result<PathBuf> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| is_images_of(&normalized(&e.file_name().to_string_lossy()), split))
        .map(|e| e.path())
        .collect();
    found.sort();
    // The same file gzipped and not counts once: prefer the uncompressed one (sorted first).
    found.dedup_by(|a, b| normalized(&a.to_string_lossy()) == normalized(&b.to_string_lossy()));
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(DataError::format(
            dir,
            format!(
                "no IDX {split} images file (e.g. {}-images-idx3-ubyte.gz) in this folder",
                split.idx_prefix()
            ),
        )),
        _ => Err(DataError::format(
            dir,
            format!(
                "several IDX {split} images files ({}); point --dataset at one of them",
                found
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// Whether a file name looks like an IDX file.
pub(crate) fn looks_like_idx(path: &Path) -> bool {
    path.file_name()
        .map(|n| normalized(&n.to_string_lossy()).contains("-idx"))
        .unwrap_or(false)
}

/// Opens IDX data: a folder (the `split`'s images and labels files inside it) or an images file
/// (labels found next to it when present).
pub fn open(path: &Path, split: Split) -> Result<InMemoryDataset> {
    let images = if path.is_dir() {
        find_images(path, split)?
    } else {
        path.to_path_buf()
    };
    let labels = labels_for(&images);
    open_pair(&images, labels.as_deref())
}
