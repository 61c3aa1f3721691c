//! CIFAR-10 and CIFAR-100 (<https://www.cs.toronto.edu/~kriz/cifar.html>) in both official layouts, as
//! the downloaded `.tar.gz` or an extracted folder:
//!
//! | archive | folder | train | test |
//! |---|---|---|---|
//! | `cifar-10-python.tar.gz` | `cifar-10-batches-py/` | `data_batch_1`..`5` | `test_batch` |
//! | `cifar-100-python.tar.gz` | `cifar-100-python/` | `train` | `test` |
//! | `cifar-10-binary.tar.gz` | `cifar-10-batches-bin/` | `data_batch_1.bin`..`5` | `test_batch.bin` |
//! | `cifar-100-binary.tar.gz` | `cifar-100-binary/` | `train.bin` | `test.bin` |
//!
//! Python batches are pickled dicts (read by `ect_pickle`) with `data` (N x 3072 `uint8`, each row
//! the R, G and B planes of a 32x32 image, i.e. already C,H,W) and `labels` (CIFAR-10) or
//! `fine_labels` (CIFAR-100). Binary records are a label byte (CIFAR-100: coarse then fine) followed by
//! the same 3072 bytes. CIFAR-100 yields the fine labels (100 classes).

use std::path::{Path, PathBuf};

use crate::dataset::InMemoryDataset;
use crate::error::{DataError, Result};
use crate::util::{read_file, tar_members};
use crate::Split;

/// Bytes of one 32x32 RGB image.
pub const IMAGE_BYTES: usize = 3 * 32 * 32;

/// CIFAR-10 or CIFAR-100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// 10 classes.
    Cifar10,
    /// 100 fine classes (20 coarse).
    Cifar100,
}

impl Variant {
    /// Number of (fine) classes.
    pub fn classes(self) -> usize {
        match self {
            Variant::Cifar10 => 10,
            Variant::Cifar100 => 100,
        }
    }

    /// Label bytes before each binary record's pixels.
    pub fn label_bytes(self) -> usize {
        match self {
            Variant::Cifar10 => 1,
            Variant::Cifar100 => 2,
        }
    }
}

/// The official folder name of each variant and encoding.
fn folder(variant: Variant, binary: bool) -> &'static str {
    match (variant, binary) {
        (Variant::Cifar10, false) => "cifar-10-batches-py",
        (Variant::Cifar100, false) => "cifar-100-python",
        (Variant::Cifar10, true) => "cifar-10-batches-bin",
        (Variant::Cifar100, true) => "cifar-100-binary",
    }
}

/// The member files of a split, in dataset order.
fn members(variant: Variant, binary: bool, split: Split) -> Vec<String> {
    let ext = if binary { ".bin" } else { "" };
    match (variant, split) {
        (Variant::Cifar10, Split::Train) => {
            (1..=5).map(|i| format!("data_batch_{i}{ext}")).collect()
        }
        (Variant::Cifar10, Split::Test) => vec![format!("test_batch{ext}")],
        (Variant::Cifar100, Split::Train) => vec![format!("train{ext}")],
        (Variant::Cifar100, Split::Test) => vec![format!("test{ext}")],
    }
}

/// Which variant a folder name is, for the given encoding.
fn variant_of_folder(name: &str, binary: bool) -> Option<Variant> {
    [Variant::Cifar10, Variant::Cifar100]
        .into_iter()
        .find(|&v| folder(v, binary) == name)
}

/// Parses one python batch: pixels (N x 3072) and labels. The pickle is read by `ect_pickle`, which
/// builds data and never runs anything the file names.
pub fn parse_python_batch(bytes: &[u8], path: &Path) -> Result<(Vec<u8>, Vec<u32>)> {
    let pickle = ect_pickle::load(bytes, &ect_pickle::Limits::default())
        .map_err(|e| DataError::format(path, format!("pickle: {e}")))?;
    let root = pickle.root();
    if root.entries().is_none() {
        return Err(DataError::format(
            path,
            format!("CIFAR batch is a pickled {}, expected a dict", root.kind()),
        ));
    }
    let data = root
        .get("data")
        .ok_or_else(|| DataError::format(path, "CIFAR batch has no 'data' key"))?;
    let array = data.as_ndarray().ok_or_else(|| {
        DataError::format(
            path,
            format!("CIFAR 'data' is a {}, expected a numpy array", data.kind()),
        )
    })?;
    let shape = &array.shape;
    if shape.len() != 2 || shape[1] != IMAGE_BYTES {
        return Err(DataError::format(
            path,
            format!("CIFAR 'data' has shape {shape:?}, expected (N, 3072)"),
        ));
    }
    if array.dtype.itemsize != 1 || !matches!(array.dtype.kind, 'u' | 'i' | 'b') {
        return Err(DataError::format(
            path,
            format!(
                "CIFAR 'data' has dtype {}, expected a one-byte type",
                array.dtype.descr()
            ),
        ));
    }
    if array.fortran_order {
        return Err(DataError::format(
            path,
            "CIFAR 'data' is in Fortran order, expected C order",
        ));
    }
    let (key, labels) = match (root.get("labels"), root.get("fine_labels")) {
        (Some(l), _) => ("labels", l),
        (None, Some(l)) => ("fine_labels", l),
        (None, None) => {
            return Err(DataError::format(
                path,
                "CIFAR batch has neither 'labels' nor 'fine_labels'",
            ))
        }
    };
    let items = labels.items().ok_or_else(|| {
        DataError::format(
            path,
            format!("CIFAR '{key}' is a {}, expected a list", labels.kind()),
        )
    })?;
    let labels = items
        .map(|v| match v.as_i64() {
            Some(x) if (0..=u32::MAX as i64).contains(&x) => Ok(x as u32),
            _ => Err(DataError::format(
                path,
                format!("CIFAR '{key}' holds a {} ({:?})", v.kind(), v.node()),
            )),
        })
        .collect::<Result<Vec<u32>>>()?;
    if labels.len() != shape[0] {
        return Err(DataError::CountMismatch {
            path: path.to_path_buf(),
            images: shape[0],
            labels: labels.len(),
        });
    }
    Ok((array.data.to_vec(), labels))
}

/// Parses one binary batch file: pixels (N x 3072) and (fine) labels.
pub fn parse_binary_batch(
    bytes: &[u8],
    variant: Variant,
    path: &Path,
) -> Result<(Vec<u8>, Vec<u32>)> {
    let record = variant.label_bytes() + IMAGE_BYTES;
    if bytes.len() % record != 0 {
        return Err(DataError::format(
            path,
            format!("{} bytes is not a whole number of {record}-byte CIFAR records (truncated or not {variant:?})", bytes.len()),
        ));
    }
    let n = bytes.len() / record;
    let mut pixels = Vec::with_capacity(n * IMAGE_BYTES);
    let mut labels = Vec::with_capacity(n);
    for r in bytes.chunks_exact(record) {
        labels.push(r[variant.label_bytes() - 1] as u32);
        pixels.extend_from_slice(&r[variant.label_bytes()..]);
    }
    Ok((pixels, labels))
}

/// Where the split's member files are: a tar archive or a folder.
enum Source {
    Tar(PathBuf),
    Dir(PathBuf),
}

/// Finds the variant and source of `path` (tar archive, the official folder, or a folder holding it).
fn locate(path: &Path, binary: bool) -> Result<(Variant, Source)> {
    let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    if meta.is_file() {
        let first = crate::util::tar_first_name(path)?
            .ok_or_else(|| DataError::format(path, "empty tar archive"))?;
        let top = first
            .trim_start_matches("./")
            .split('/')
            .next()
            .unwrap_or("")
            .to_string();
        let variant = variant_of_folder(&top, binary).ok_or_else(|| {
            DataError::format(
                path,
                format!(
                    "archive starts with {top:?}, not a CIFAR {} folder",
                    if binary { "binary" } else { "python" }
                ),
            )
        })?;
        return Ok((variant, Source::Tar(path.to_path_buf())));
    }
    for v in [Variant::Cifar10, Variant::Cifar100] {
        let sub = path.join(folder(v, binary));
        if sub.is_dir() {
            return Ok((v, Source::Dir(sub)));
        }
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some(v) = variant_of_folder(&name, binary) {
        return Ok((v, Source::Dir(path.to_path_buf())));
    }
    // A renamed folder: tell the variant by its member names.
    for v in [Variant::Cifar10, Variant::Cifar100] {
        if path.join(&members(v, binary, Split::Test)[0]).is_file() {
            return Ok((v, Source::Dir(path.to_path_buf())));
        }
    }
    Err(DataError::format(
        path,
        format!(
            "no CIFAR {} data here (expected {} or {} inside, or their .tar.gz)",
            if binary { "binary" } else { "python" },
            folder(Variant::Cifar10, binary),
            folder(Variant::Cifar100, binary)
        ),
    ))
}

/// Reads the split's member files (in order) with the path to name each in errors.
fn read_members(
    variant: Variant,
    binary: bool,
    split: Split,
    source: &Source,
) -> Result<Vec<(PathBuf, Vec<u8>)>> {
    let names = members(variant, binary, split);
    match source {
        Source::Dir(dir) => names
            .iter()
            .map(|n| {
                let p = dir.join(n);
                read_file(&p).map(|b| (p, b))
            })
            .collect(),
        Source::Tar(archive) => {
            let dir = folder(variant, binary);
            let wanted = |m: &str| {
                let m = m.trim_start_matches("./");
                names.iter().any(|n| m == format!("{dir}/{n}"))
            };
            let mut found = tar_members(archive, &wanted)?;
            let mut out = Vec::new();
            for n in &names {
                let member = format!("{dir}/{n}");
                let at = found
                    .iter()
                    .position(|(m, _)| m.trim_start_matches("./") == member)
                    .ok_or_else(|| {
                        DataError::format(archive, format!("archive has no member {member}"))
                    })?;
                let (_, bytes) = found.swap_remove(at);
                out.push((archive.join(&member), bytes));
            }
            Ok(out)
        }
    }
}

fn open_any(path: &Path, split: Split, binary: bool) -> Result<InMemoryDataset> {
    let (variant, source) = locate(path, binary)?;
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (member, bytes) in read_members(variant, binary, split, &source)? {
        let (p, l) = if binary {
            parse_binary_batch(&bytes, variant, &member)?
        } else {
            parse_python_batch(&bytes, &member)?
        };
        if let Some(bad) = l.iter().find(|&&x| x as usize >= variant.classes()) {
            return Err(DataError::format(
                &member,
                format!("label {bad} is out of range for {variant:?}"),
            ));
        }
        pixels.extend(p);
        labels.extend(l);
    }
    InMemoryDataset::new(
        path,
        [3, 32, 32],
        pixels,
        Some(labels),
        Some(variant.classes()),
    )
}

/// Opens the python version (`cifar-10-python.tar.gz`, `cifar-100-python.tar.gz` or their folders).
pub fn open_python(path: &Path, split: Split) -> Result<InMemoryDataset> {
    open_any(path, split, false)
}

/// Opens the binary version (`cifar-10-binary.tar.gz`, `cifar-100-binary.tar.gz` or their folders).
pub fn open_binary(path: &Path, split: Split) -> Result<InMemoryDataset> {
    open_any(path, split, true)
}

/// Which CIFAR format a folder holds, if any: `Some(true)` binary, `Some(false)` python.
pub(crate) fn detect_dir(path: &Path) -> Option<bool> {
    [false, true]
        .into_iter()
        .find(|&binary| locate(path, binary).is_ok())
}

/// Which CIFAR format a tar archive's first member names, if any.
pub(crate) fn detect_tar(path: &Path) -> Option<bool> {
    let first = crate::util::tar_first_name(path).ok()??;
    let top = first
        .trim_start_matches("./")
        .split('/')
        .next()?
        .to_string();
    [false, true]
        .into_iter()
        .find(|&binary| variant_of_folder(&top, binary).is_some())
}
