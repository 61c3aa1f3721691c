//! ImageNet in its usual folder layout (`train/<wnid>/*.JPEG`, `val/<wnid>/*.JPEG`), classes in sorted
//! order, each image converted to RGB and brought to `resolution` with ADM's center crop
//! ([`crate::resize::center_crop_dhariwal`]), as EDM2's `dataset_tool.py --transform=center-crop-dhariwal`
//! does; [`convert_to_zip`] writes the result once as an EDM zip.

use std::path::{Path, PathBuf};

use crate::dataset::{check_out_len, out_of_range, Dataset};
use crate::decode::{decode_dynamic, hwc_to_chw};
use crate::error::{DataError, Result};
use crate::resize::center_crop_dhariwal;
use crate::validate::{check_images, ImageCheck, Stamps};
use crate::Split;

/// An ImageNet-layout folder read at a fixed square resolution.
pub struct ImageNetFolder {
    root: PathBuf,
    names: Vec<String>,
    labels: Option<Vec<u32>>,
    classes: Vec<String>,
    resolution: usize,
}

/// The split's folder: `<path>/train` (or `path` itself when it has no `train/`, a folder of class
/// folders) for the training split, `<path>/val` for the test split. A test split without `val/` is an
/// error naming the missing folder: falling back to `path` would return the training images as "test".
pub fn split_dir(path: &Path, split: Split) -> Result<PathBuf> {
    match split {
        Split::Train => {
            let sub = path.join("train");
            Ok(if sub.is_dir() {
                sub
            } else {
                path.to_path_buf()
            })
        }
        Split::Test => {
            let sub = path.join("val");
            if sub.is_dir() {
                Ok(sub)
            } else {
                Err(DataError::format(
                    &sub,
                    "no such folder: the test split of an ImageNet folder is its val/ folder \
                     (use the train split to read a folder of class folders directly)",
                ))
            }
        }
    }
}

/// Whether `path` looks like ImageNet: a `train` folder (or itself) whose subfolders hold `.JPEG` files.
pub(crate) fn looks_like_imagenet(path: &Path) -> bool {
    let Ok(dir) = split_dir(path, Split::Train) else {
        return false;
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return false;
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .take(3)
        .any(|e| {
            std::fs::read_dir(e.path())
                .map(|files| {
                    files.filter_map(|f| f.ok()).take(5).any(|f| {
                        f.file_name()
                            .to_string_lossy()
                            .to_ascii_lowercase()
                            .ends_with(".jpeg")
                    })
                })
                .unwrap_or(false)
        })
}

impl ImageNetFolder {
    /// Lists the split's images (sorted relative paths) and checks that each one decodes and crops
    /// ([`ImageCheck::Validate`]); labels are the sorted top-level folder names (none when there is a
    /// single folder, as in EDM2's tool).
    pub fn open(path: &Path, split: Split, resolution: usize) -> Result<Self> {
        Self::open_with(path, split, resolution, ImageCheck::Validate)
    }

    /// [`ImageNetFolder::open`], decoding every image first or not as `check` says.
    pub fn open_with(
        path: &Path,
        split: Split,
        resolution: usize,
        check: ImageCheck,
    ) -> Result<Self> {
        if resolution == 0 {
            return Err(DataError::Config {
                field: "resolution",
                msg: "must be at least 1".into(),
            });
        }
        let root = split_dir(path, split)?;
        let mut names = Vec::new();
        crate::util::walk_files(&root, "", &crate::edm::is_image_name, &mut names)?;
        names.sort();
        if names.is_empty() {
            return Err(DataError::format(&root, "no JPEG or PNG images found"));
        }
        let top = |n: &str| {
            n.split_once('/')
                .map(|(t, _)| t.to_string())
                .unwrap_or_default()
        };
        let mut classes: Vec<String> = names.iter().map(|n| top(n)).collect();
        classes.sort();
        classes.dedup();
        let labels = (classes.len() > 1).then(|| {
            names
                .iter()
                .map(|n| classes.binary_search(&top(n)).expect("class listed") as u32)
                .collect()
        });
        if labels.is_none() {
            classes.clear();
        }
        let ds = ImageNetFolder {
            root,
            names,
            labels,
            classes,
            resolution,
        };
        if check == ImageCheck::Validate {
            let kind = format!("imagenet {resolution}");
            check_images(&ds, &kind, Stamps::PerImage(&ds.root, &ds.names))?;
        }
        Ok(ds)
    }

    /// Class folder names (wnids) in label order.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Relative paths of the images in index order.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// Decodes an image file, converts it to RGB and applies the center crop (C,H,W out).
pub fn load_center_cropped(
    bytes: &[u8],
    path: &Path,
    resolution: usize,
    out: &mut [u8],
) -> Result<()> {
    let img = decode_dynamic(bytes, path)?.to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        return Err(DataError::format(path, "image has no pixels"));
    }
    let hwc = center_crop_dhariwal(img.as_raw(), w, h, 3, resolution);
    if hwc.len() != out.len() {
        return Err(DataError::format(
            path,
            format!("{w}x{h} image is too small for a {resolution}x{resolution} crop"),
        ));
    }
    hwc_to_chw(&hwc, 3, out);
    Ok(())
}

impl Dataset for ImageNetFolder {
    fn len(&self) -> usize {
        self.names.len()
    }
    fn channels(&self) -> usize {
        3
    }
    fn height(&self) -> usize {
        self.resolution
    }
    fn width(&self) -> usize {
        self.resolution
    }
    fn label_dim(&self) -> usize {
        self.classes.len()
    }
    fn source(&self) -> &Path {
        &self.root
    }
    fn image_into(&self, index: usize, out: &mut [u8]) -> Result<()> {
        check_out_len(self, out)?;
        if index >= self.len() {
            return Err(out_of_range(self, index));
        }
        let path = self.root.join(&self.names[index]);
        let bytes = crate::util::read_file(&path)?;
        load_center_cropped(&bytes, &path, self.resolution, out)
    }
    fn label(&self, index: usize) -> Option<u32> {
        self.labels.as_ref().and_then(|l| l.get(index).copied())
    }
}

/// Converts an ImageNet folder's split once to an EDM zip at `resolution` (with `dataset.json`),
/// decoding in parallel; `progress(done, total)` is called after each chunk. Returns the zip's path.
/// The conversion is itself one pass over every image, so the folder is opened without the check at
/// open ([`ImageCheck::Skip`]): a bad image stops it just as early, naming the file, and no partial zip
/// is left behind.
pub fn convert_to_zip(
    src: &Path,
    split: Split,
    resolution: usize,
    dest: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<PathBuf> {
    let ds = ImageNetFolder::open_with(src, split, resolution, ImageCheck::Skip)?;
    crate::edm::write_zip_with_progress(&ds, dest, progress)
}
