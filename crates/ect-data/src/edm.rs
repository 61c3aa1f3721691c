//! EDM/StyleGAN dataset archives (`dataset_tool.py` of NVlabs/edm and edm2): a `.zip` or a folder of
//! PNG/JPEG images, with an optional `dataset.json` `{"labels": [[relative_path, label], ...]}` (or
//! `{"labels": null}`). Images are indexed in sorted path order and their shape is the first image's,
//! like EDM's `ImageFolderDataset`. [`EdmZipWriter`] writes the layout EDM's tool writes
//! (`00000/img00000000.png`, stored, with `dataset.json`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use zip::ZipArchive;

use crate::dataset::{check_out_len, out_of_range, Dataset};
use crate::decode::{decode, encode_png};
use crate::error::{DataError, Result};
use crate::validate::{check_images, ImageCheck, Stamps};

/// The file extensions read as images (lower case), a subset of what PIL reads that covers EDM's tools.
const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Whether a relative path names an image by its extension (case-insensitive).
pub fn is_image_name(name: &str) -> bool {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    !name.ends_with('/') && IMAGE_EXTENSIONS.contains(&ext.as_str())
}

/// Archive bytes (memory-mapped file or an owned buffer) shared by every decoding thread.
#[derive(Clone)]
enum Shared {
    Map(Arc<memmap2::Mmap>),
    Owned(Arc<Vec<u8>>),
}

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        match self {
            Shared::Map(m) => m,
            Shared::Owned(v) => v,
        }
    }
}

enum Storage {
    Zip {
        archive: ZipArchive<Cursor<Shared>>,
        entries: Vec<usize>,
    },
    Dir(PathBuf),
}

/// An EDM dataset archive (zip or folder).
pub struct EdmArchive {
    source: PathBuf,
    storage: Storage,
    names: Vec<String>,
    labels: Option<Vec<u32>>,
    label_dim: usize,
    shape: [usize; 3],
}

fn zip_error(path: &Path, e: zip::result::ZipError) -> DataError {
    DataError::format(path, format!("corrupt zip archive: {e}"))
}

/// The most classes a `dataset.json` may have (labels are below this). The class count is the largest
/// label + 1 and sizes per-class counts and one-hot rows, so one stray huge label would otherwise
/// ask for gigabytes; ImageNet-21k has about 22k classes.
pub const MAX_CLASSES: u32 = 1_000_000;

/// Parses `dataset.json`; `names` are the images in index order. `None` when it has `"labels": null`.
pub fn parse_labels(json: &[u8], names: &[String], path: &Path) -> Result<Option<Vec<u32>>> {
    let v: serde_json::Value = serde_json::from_slice(json)
        .map_err(|e| DataError::format(path, format!("invalid JSON: {e}")))?;
    let list = match v.get("labels") {
        None => return Err(DataError::format(path, "no \"labels\" key")),
        Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::Array(items)) => items,
        Some(other) => {
            return Err(DataError::format(
                path,
                format!("\"labels\" is {other}, expected a list"),
            ))
        }
    };
    let mut map = HashMap::with_capacity(list.len());
    for item in list {
        let pair = item.as_array().filter(|a| a.len() == 2);
        let (name, label) = match pair {
            Some(a) => (a[0].as_str(), a[1].as_u64()),
            None => (None, None),
        };
        match (name, label) {
            (Some(n), Some(l)) if l < MAX_CLASSES as u64 => {
                map.insert(n.replace('\\', "/"), l as u32);
            }
            (Some(n), Some(l)) => {
                return Err(DataError::format(
                    path,
                    format!(
                        "image {n} has class label {l}, above the supported maximum of {} classes \
                         (the class count is the largest label + 1)",
                        MAX_CLASSES
                    ),
                ))
            }
            _ => {
                return Err(DataError::format(
                    path,
                    format!("label entry {item} is not [relative_path, class_index] (only integer class labels are supported)"),
                ))
            }
        }
    }
    names
        .iter()
        .map(|n| {
            map.get(n)
                .copied()
                .ok_or_else(|| DataError::format(path, format!("no label for image {n}")))
        })
        .collect::<Result<Vec<u32>>>()
        .map(Some)
}

impl EdmArchive {
    /// Opens a `.zip` or a folder and checks that every image decodes to the first one's shape
    /// ([`ImageCheck::Validate`]).
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, ImageCheck::Validate)
    }

    /// Opens a `.zip` or a folder, decoding every image first or not as `check` says.
    pub fn open_with(path: &Path, check: ImageCheck) -> Result<Self> {
        let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
        if !meta.is_dir() {
            let file = File::open(path).map_err(|e| DataError::io(path, e))?;
            // SAFETY: the archive is only read; like every mmap-based reader this assumes nobody
            // truncates the file while the dataset is open.
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| DataError::io(path, e))?;
            let ds = Self::from_shared(Shared::Map(Arc::new(map)), path)?;
            ds.check(check, Stamps::Archive(path))?;
            return Ok(ds);
        }
        let mut names = Vec::new();
        crate::util::walk_files(path, "", &|_| true, &mut names)?;
        let json = if names.iter().any(|n| n == "dataset.json") {
            Some(crate::util::read_file(&path.join("dataset.json"))?)
        } else {
            None
        };
        let ds = Self::finish(path, Storage::Dir(path.to_path_buf()), names, json)?;
        ds.check(check, Stamps::PerImage(path, &ds.names))?;
        Ok(ds)
    }

    /// Reads a zip held in memory (every image is decoded once); `name` stands for its path in messages.
    pub fn from_zip_bytes(bytes: Vec<u8>, name: &Path) -> Result<Self> {
        let ds = Self::from_shared(Shared::Owned(Arc::new(bytes)), name)?;
        ds.check(ImageCheck::Validate, Stamps::None)?;
        Ok(ds)
    }

    /// The image check `check` asks for.
    fn check(&self, check: ImageCheck, stamps: Stamps<'_>) -> Result<()> {
        if check == ImageCheck::Validate {
            let [c, h, w] = self.shape;
            check_images(self, &format!("edm {c}x{h}x{w}"), stamps)?;
        }
        Ok(())
    }

    fn from_shared(shared: Shared, path: &Path) -> Result<Self> {
        let mut archive = ZipArchive::new(Cursor::new(shared)).map_err(|e| zip_error(path, e))?;
        let names: Vec<String> = archive.file_names().map(str::to_string).collect();
        let json = match archive.by_name("dataset.json") {
            Ok(mut f) => {
                let mut b = Vec::new();
                f.read_to_end(&mut b).map_err(|e| {
                    DataError::format(
                        path.join("dataset.json"),
                        format!("cannot read from the zip: {e}"),
                    )
                })?;
                Some(b)
            }
            Err(zip::result::ZipError::FileNotFound) => None,
            Err(e) => return Err(zip_error(path, e)),
        };
        Self::finish(
            path,
            Storage::Zip {
                archive,
                entries: Vec::new(),
            },
            names,
            json,
        )
    }

    fn finish(
        path: &Path,
        storage: Storage,
        mut names: Vec<String>,
        json: Option<Vec<u8>>,
    ) -> Result<Self> {
        names.retain(|n| is_image_name(n));
        names.sort();
        if names.is_empty() {
            return Err(DataError::format(path, "no PNG or JPEG images found"));
        }
        let storage = match storage {
            Storage::Zip { archive, .. } => {
                let entries = names
                    .iter()
                    .map(|n| {
                        archive
                            .index_for_name(n)
                            .ok_or_else(|| DataError::format(path.join(n), "zip entry vanished"))
                    })
                    .collect::<Result<Vec<usize>>>()?;
                Storage::Zip { archive, entries }
            }
            dir => dir,
        };
        let labels = match json {
            Some(j) => parse_labels(&j, &names, &path.join("dataset.json"))?,
            None => None,
        };
        let label_dim = labels
            .as_ref()
            .map(|l| l.iter().map(|&x| x as usize + 1).max().unwrap_or(0))
            .unwrap_or(0);
        let mut ds = EdmArchive {
            source: path.to_path_buf(),
            storage,
            names,
            labels,
            label_dim,
            shape: [0, 0, 0],
        };
        let first = decode(&ds.raw(0)?, &ds.member(0))?;
        ds.shape = first.shape;
        Ok(ds)
    }

    /// The relative paths of the images, in index order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    fn member(&self, index: usize) -> PathBuf {
        self.source.join(&self.names[index])
    }

    /// The encoded bytes of image `index`.
    fn raw(&self, index: usize) -> Result<Vec<u8>> {
        match &self.storage {
            Storage::Dir(dir) => crate::util::read_file(&dir.join(&self.names[index])),
            Storage::Zip { archive, entries } => {
                let mut archive = archive.clone();
                let mut f = archive
                    .by_index(entries[index])
                    .map_err(|e| zip_error(&self.member(index), e))?;
                let mut out = Vec::with_capacity(f.size().min(1 << 26) as usize);
                f.read_to_end(&mut out).map_err(|e| {
                    DataError::format(self.member(index), format!("cannot read from the zip: {e}"))
                })?;
                Ok(out)
            }
        }
    }
}

impl Dataset for EdmArchive {
    fn len(&self) -> usize {
        self.names.len()
    }
    fn channels(&self) -> usize {
        self.shape[0]
    }
    fn height(&self) -> usize {
        self.shape[1]
    }
    fn width(&self) -> usize {
        self.shape[2]
    }
    fn label_dim(&self) -> usize {
        self.label_dim
    }
    fn source(&self) -> &Path {
        &self.source
    }
    fn image_into(&self, index: usize, out: &mut [u8]) -> Result<()> {
        check_out_len(self, out)?;
        if index >= self.len() {
            return Err(out_of_range(self, index));
        }
        let img = decode(&self.raw(index)?, &self.member(index))?;
        if img.shape != self.shape {
            return Err(DataError::MixedSizes {
                path: self.member(index),
                index,
                got: img.shape,
                expected: self.shape,
            });
        }
        out.copy_from_slice(&img.pixels);
        Ok(())
    }
    fn label(&self, index: usize) -> Option<u32> {
        self.labels.as_ref().and_then(|l| l.get(index).copied())
    }
}

/// Writes an EDM dataset zip the way EDM's `dataset_tool.py` does: `00000/img00000000.png`, ...
/// stored uncompressed, then `dataset.json`. Written under a temporary name (`dest` with the extension
/// `.zip.partial`) and renamed by [`EdmZipWriter::finish`], so an interrupted conversion never leaves a
/// zip under the final name; a writer dropped before `finish` succeeds (an error part-way) removes the
/// temporary file.
pub struct EdmZipWriter {
    dest: PathBuf,
    tmp: PathBuf,
    /// `None` once `finish` has taken it.
    zip: Option<zip::ZipWriter<std::io::BufWriter<File>>>,
    labels: Vec<(String, Option<u32>)>,
    shape: Option<[usize; 3]>,
    finished: bool,
}

impl Drop for EdmZipWriter {
    fn drop(&mut self) {
        if !self.finished {
            // Removed before the zip writer is dropped: its drop writes the central directory, which
            // then goes to the unlinked file and vanishes with it.
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

impl EdmZipWriter {
    /// Starts writing `dest` (a `.zip` path), creating its folder if needed.
    pub fn create(dest: &Path) -> Result<Self> {
        if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        }
        let tmp = dest.with_extension("zip.partial");
        let file = File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?;
        Ok(EdmZipWriter {
            dest: dest.to_path_buf(),
            tmp,
            zip: Some(zip::ZipWriter::new(std::io::BufWriter::new(file))),
            labels: Vec::new(),
            shape: None,
            finished: false,
        })
    }

    fn zip(&mut self) -> Result<&mut zip::ZipWriter<std::io::BufWriter<File>>> {
        self.zip
            .as_mut()
            .ok_or_else(|| DataError::format(&self.tmp, "the zip was already finished"))
    }

    fn options() -> zip::write::SimpleFileOptions {
        zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(false)
    }

    /// Appends one image (C,H,W) and its label; every image must have the first one's shape.
    pub fn add(&mut self, chw: &[u8], shape: [usize; 3], label: Option<u32>) -> Result<()> {
        let idx = self.labels.len();
        let idx_str = format!("{idx:08}");
        let name = format!("{}/img{idx_str}.png", &idx_str[..5]);
        let expected = *self.shape.get_or_insert(shape);
        if shape != expected || chw.len() != shape.iter().product::<usize>() {
            return Err(DataError::MixedSizes {
                path: self.dest.join(&name),
                index: idx,
                got: shape,
                expected,
            });
        }
        let png = encode_png(chw, shape, &self.dest.join(&name))?;
        let tmp = self.tmp.clone();
        let zip = self.zip()?;
        zip.start_file(name.as_str(), Self::options())
            .map_err(|e| zip_error(&tmp, e))?;
        zip.write_all(&png).map_err(|e| DataError::io(&tmp, e))?;
        self.labels.push((name, label));
        Ok(())
    }

    /// Images written so far.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether no image was written yet.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Writes `dataset.json` (`null` labels unless every image has one) and moves the zip into place.
    pub fn finish(mut self) -> Result<PathBuf> {
        let labels = if self.labels.iter().all(|(_, l)| l.is_some()) && !self.labels.is_empty() {
            serde_json::Value::Array(
                self.labels
                    .iter()
                    .map(|(n, l)| serde_json::json!([n, l.expect("checked above")]))
                    .collect(),
            )
        } else {
            serde_json::Value::Null
        };
        let json = serde_json::to_vec(&serde_json::json!({ "labels": labels }))
            .expect("JSON of strings and ints");
        let tmp = self.tmp.clone();
        let mut zip = self
            .zip
            .take()
            .ok_or_else(|| DataError::format(&tmp, "the zip was already finished"))?;
        zip.start_file("dataset.json", Self::options())
            .map_err(|e| zip_error(&tmp, e))?;
        zip.write_all(&json).map_err(|e| DataError::io(&tmp, e))?;
        let mut inner = zip.finish().map_err(|e| zip_error(&tmp, e))?;
        inner.flush().map_err(|e| DataError::io(&tmp, e))?;
        drop(inner);
        std::fs::rename(&tmp, &self.dest).map_err(|e| DataError::io(&self.dest, e))?;
        self.finished = true;
        Ok(self.dest.clone())
    }
}

/// Writes a whole dataset to an EDM zip (used to convert any format once).
pub fn write_zip(ds: &dyn Dataset, dest: &Path) -> Result<PathBuf> {
    write_zip_with_progress(ds, dest, &mut |_, _| {})
}

/// [`write_zip`], decoding chunks of images in parallel and calling `progress(done, total)` after each.
pub fn write_zip_with_progress(
    ds: &dyn Dataset,
    dest: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<PathBuf> {
    use rayon::prelude::*;
    let mut w = EdmZipWriter::create(dest)?;
    let shape = [ds.channels(), ds.height(), ds.width()];
    let size = ds.image_size();
    let n = ds.len();
    let chunk_n = crate::stats::chunk_len(size);
    let mut buf = vec![0u8; chunk_n.min(n.max(1)) * size];
    let mut start = 0;
    while start < n {
        let count = chunk_n.min(n - start);
        let chunk = &mut buf[..count * size];
        chunk
            .par_chunks_mut(size)
            .enumerate()
            .try_for_each(|(k, out)| ds.image_into(start + k, out))?;
        for (k, img) in chunk.chunks(size).enumerate() {
            w.add(img, shape, ds.label(start + k))?;
        }
        start += count;
        progress(start, n);
    }
    w.finish()
}
