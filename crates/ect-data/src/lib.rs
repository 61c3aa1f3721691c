//! Datasets for Easy Consistency Tuning without torch: the crate yields `u8` images (C,H,W) and class
//! labels; the trainer turns batches into tensors.
//!
//! Formats, each read as the real files are laid out:
//! - IDX (MNIST, Fashion-MNIST, EMNIST), gzipped or not: [`idx`].
//! - CIFAR-10/100, python and binary versions, `.tar.gz` or folder: [`cifar`].
//! - EDM/StyleGAN dataset archives, `.zip` or folder of PNG/JPEG with `dataset.json`: [`edm`].
//! - ImageNet folders (`train/<wnid>/*.JPEG`) center-cropped like ADM/EDM2: [`imagenet`], [`resize`].
//!
//!
//! [`fetch`] downloads the public ones with checksums; [`loader`] is the seeded prefetching loader.
//! [`open`] picks the reader from a [`DatasetSpec`] and, for the formats read image by image (EDM, ImageNet),
//! decodes every image once so a bad one is found at open ([`validate`], remembered between opens);
//! [`stats::dataset_stats`] summarizes any dataset.

pub mod cifar;
pub mod dataset;
pub mod decode;
pub mod edm;
pub mod error;
pub mod fetch;
pub mod fmnist;
pub mod idx;
pub mod imagenet;
pub mod loader;
pub mod resize;
pub mod sampler;
pub mod stats;
mod util;
pub mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use dataset::{Dataset, InMemoryDataset};
pub use error::{DataError, Result};
pub use validate::ImageCheck;

/// Which part of a dataset to read.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// The training images (CIFAR `data_batch_*`/`train`, IDX `train-*`, ImageNet `train/`).
    #[default]
    Train,
    /// The held-out images (CIFAR `test_batch`/`test`, IDX `t10k-*`, ImageNet `val/`).
    Test,
}

impl Split {
    /// The IDX file prefix of the split.
    pub(crate) fn idx_prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Test => "test",
        })
    }
}

impl std::str::FromStr for Split {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "train" => Ok(Split::Train),
            "test" | "val" => Ok(Split::Test),
            other => Err(DataError::Config {
                field: "split",
                msg: format!("{other:?} (expected train or test)"),
            }),
        }
    }
}

/// How the files at a path are laid out.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Decide from the path (see [`detect`]).
    #[default]
    Auto,
    /// IDX files (MNIST, Fashion-MNIST, EMNIST): a folder or an images file.
    Idx,
    /// CIFAR-10/100 python version: `.tar.gz` or extracted folder.
    CifarPython,
    /// CIFAR-10/100 binary version: `.tar.gz` or extracted folder.
    CifarBinary,
    /// EDM/StyleGAN dataset: `.zip` or folder of PNG/JPEG with optional `dataset.json`.
    EdmArchive,
    /// ImageNet folder layout (`train/<wnid>/*.JPEG`), center-cropped to [`DatasetSpec::resolution`].
    ImageNet,
}

impl std::str::FromStr for Format {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "auto" => Ok(Format::Auto),
            "idx" | "mnist" => Ok(Format::Idx),
            "cifar-python" | "cifar" => Ok(Format::CifarPython),
            "cifar-binary" => Ok(Format::CifarBinary),
            "edm" | "edm-archive" | "zip" | "folder" => Ok(Format::EdmArchive),
            "imagenet" | "image-folder" => Ok(Format::ImageNet),
            other => Err(DataError::Config {
                field: "format",
                msg: format!("unknown dataset format {other:?}"),
            }),
        }
    }
}

/// What to open: a path, its format and split.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DatasetSpec {
    /// File or folder.
    pub path: PathBuf,
    /// Layout of the files ([`Format::Auto`] detects it).
    #[serde(default)]
    pub format: Format,
    /// Which split.
    #[serde(default)]
    pub split: Split,
    /// Fail unless the dataset has class labels.
    #[serde(default)]
    pub require_labels: bool,
    /// ImageNet: the square size to center-crop to (default 64). Other formats: when set, the images
    /// must have this height and width.
    #[serde(default)]
    pub resolution: Option<usize>,
}

/// The ImageNet resolution when [`DatasetSpec::resolution`] is unset.
pub const DEFAULT_IMAGENET_RESOLUTION: usize = 64;

impl DatasetSpec {
    /// The training split of `path`, format detected, labels optional.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DatasetSpec {
            path: path.into(),
            format: Format::Auto,
            split: Split::Train,
            require_labels: false,
            resolution: None,
        }
    }
}

/// Decides the format of `path` from its names (and, for `.tar.gz`, the first member's name).
pub fn detect(path: &Path) -> Result<Format> {
    let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    if meta.is_dir() {
        if let Some(binary) = cifar::detect_dir(path) {
            return Ok(if binary {
                Format::CifarBinary
            } else {
                Format::CifarPython
            });
        }
        if idx::find_images(path, Split::Train).is_ok()
            || idx::find_images(path, Split::Test).is_ok()
        {
            return Ok(Format::Idx);
        }
        if imagenet::looks_like_imagenet(path) {
            return Ok(Format::ImageNet);
        }
        return Ok(Format::EdmArchive);
    } else if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("zip"))
    {
        return Ok(Format::EdmArchive);
    } else if idx::looks_like_idx(path) {
        return Ok(Format::Idx);
    } else if is_tar_name(path) {
        if let Some(binary) = cifar::detect_tar(path) {
            return Ok(if binary {
                Format::CifarBinary
            } else {
                Format::CifarPython
            });
        }
    }
    Err(DataError::format(
        path,
        "cannot tell the dataset format from the path; pass the format explicitly",
    ))
}

/// Opens the dataset a spec describes; an EDM archive or ImageNet folder has every image checked
/// ([`ImageCheck::Validate`]).
pub fn open(spec: &DatasetSpec) -> Result<Box<dyn Dataset>> {
    open_with(spec, ImageCheck::Validate)
}

/// [`open`], with the image check of the formats read image by image as `check` says (IDX and CIFAR are
/// decoded whole when opened either way).
pub fn open_with(spec: &DatasetSpec, check: ImageCheck) -> Result<Box<dyn Dataset>> {
    let format = match spec.format {
        Format::Auto => detect(&spec.path)?,
        f => f,
    };
    let ds: Box<dyn Dataset> = match format {
        Format::Auto => unreachable!("detect never returns Auto"),
        Format::Idx => Box::new(idx::open(&spec.path, spec.split)?),
        Format::CifarPython => Box::new(cifar::open_python(&spec.path, spec.split)?),
        Format::CifarBinary => Box::new(cifar::open_binary(&spec.path, spec.split)?),
        Format::EdmArchive => {
            // An archive is one set of images; reading it for "test" would silently give the
            // training images, e.g. as FID reference statistics.
            if spec.split != Split::Train {
                return Err(DataError::format(
                    &spec.path,
                    format!(
                        "an EDM dataset archive has no train/test splits, so the {} split cannot be \
                         read; use the train split (the default) or point at the test set's own archive",
                        spec.split
                    ),
                ));
            }
            Box::new(edm::EdmArchive::open_with(&spec.path, check)?)
        }
        Format::ImageNet => Box::new(imagenet::ImageNetFolder::open_with(
            &spec.path,
            spec.split,
            spec.resolution.unwrap_or(DEFAULT_IMAGENET_RESOLUTION),
            check,
        )?),
    };
    if let Some(r) = spec.resolution {
        if (ds.height(), ds.width()) != (r, r) {
            return Err(DataError::format(
                &spec.path,
                format!(
                    "images are {}x{}, not the requested {r}x{r}",
                    ds.height(),
                    ds.width()
                ),
            ));
        }
    }
    if spec.require_labels && ds.label_dim() == 0 {
        return Err(DataError::NoLabels {
            path: spec.path.clone(),
        });
    }
    Ok(ds)
}

/// Whether the file name ends like a tar archive.
fn is_tar_name(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    name.ends_with(".tar.gz") || name.ends_with(".tgz") || name.ends_with(".tar")
}
