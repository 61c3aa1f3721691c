//! Every image of a file-backed dataset (EDM zip or folder, ImageNet folder) is decoded once when the
//! dataset is opened, in parallel, so that a corrupt, unreadable or odd-sized image is an error at open
//! naming the file, not a failed batch minutes into training when the shuffle first draws it.
//!
//! What passed is remembered in a small record file under [`record_dir`] (never inside the dataset, which
//! may be read-only), one per dataset path ([`record_file`]): one 64-bit key per image, a hash of what was
//! checked (the image shape, the ImageNet resolution) and the image's relative path, size and
//! modification time (for a zip, one key for the whole archive). The next open decodes only the images
//! whose key is not in the record: none when nothing changed, the edited ones otherwise. A record that
//! cannot be read or written only costs a full check, and records of datasets that no longer exist are
//! removed whenever a record is written. A file rewritten with the same size and
//! modification time (to the nanosecond, where the file system keeps them) is not noticed; its draw still
//! fails with an error naming it.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::dataset::Dataset;
use crate::error::{DataError, Result};

/// Whether opening a file-backed dataset decodes every image first (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageCheck {
    /// Decode every image once (skipping those a record says passed unchanged): for datasets that are
    /// sampled at random for a long time, as by the training loader.
    #[default]
    Validate,
    /// Open without decoding: for a single pass in index order (statistics, conversion), which meets a bad
    /// image as early as the check would and would otherwise decode everything twice.
    Skip,
}

/// The files whose size and modification time stand for the images' contents.
pub(crate) enum Stamps<'a> {
    /// One file per image, in index order: `(root, relative names)`.
    PerImage(&'a Path, &'a [String]),
    /// One archive holding every image.
    Archive(&'a Path),
    /// Bytes in memory: nothing to remember.
    None,
}

/// The folder of validation records: `validated/` in the data cache ([`crate::fetch::default_cache_dir`]:
/// `$ECT_DATA_CACHE`, else `$XDG_CACHE_HOME/ect/datasets`, else `~/.cache/ect/datasets`).
pub fn record_dir() -> PathBuf {
    crate::fetch::default_cache_dir().join("validated")
}

const MAGIC: &[u8] = b"ect-data validated images v1\n";

/// First 8 bytes of the SHA-256 of `parts` joined by NUL bytes.
fn key(parts: &[&[u8]]) -> u64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
        h.update([0u8]);
    }
    let d = h.finalize();
    u64::from_le_bytes(d[..8].try_into().unwrap_or([0; 8]))
}

/// The key of one file: `kind`, its name, size and modification time; `None` when it cannot be stat'ed
/// (the check then reads it and reports the error).
fn file_key(kind: &str, name: &str, path: &Path) -> Option<u64> {
    let meta = std::fs::metadata(path).ok()?;
    let mtime = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    Some(key(&[
        kind.as_bytes(),
        name.as_bytes(),
        &meta.len().to_le_bytes(),
        &mtime.as_nanos().to_le_bytes(),
    ]))
}

/// Where a dataset's record is kept and the canonical path written into it (which guards against two
/// paths whose hashes collide, and lets [`prune`] tell which records are for datasets that are gone).
struct Record {
    file: PathBuf,
    source: Vec<u8>,
}

impl Record {
    fn of(source: &Path) -> Self {
        let canonical = std::fs::canonicalize(source).unwrap_or_else(|_| source.to_path_buf());
        let source = canonical.into_os_string().into_encoded_bytes();
        let id = key(&[&source]);
        Record {
            file: record_dir().join(format!("{id:016x}.bin")),
            source,
        }
    }
}

/// Splits a record's bytes into its dataset path and its key bytes: `MAGIC`, the path's length (u32,
/// little-endian), the path, then the keys.
fn parse(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = bytes.strip_prefix(MAGIC)?;
    let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let source = rest.get(4..4 + len)?;
    Some((source, &rest[4 + len..]))
}

/// The sorted keys of `record`; none when it is missing, damaged or another dataset's.
fn read_record(record: &Record) -> Vec<u64> {
    let Ok(bytes) = std::fs::read(&record.file) else {
        return Vec::new();
    };
    let Some((source, body)) = parse(&bytes).filter(|(_, b)| b.len() % 8 == 0) else {
        return Vec::new();
    };
    if source != record.source.as_slice() {
        return Vec::new();
    }
    let mut keys: Vec<u64> = body
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect();
    // Sorted when written; sorting again keeps a hand-edited record from breaking the binary search.
    keys.sort_unstable();
    keys
}

/// Writes the record atomically (a unique temporary name, then a rename) and prunes the folder;
/// failures are ignored, as a missing record only means the next open checks again.
fn write_record(record: &Record, mut keys: Vec<u64>) {
    keys.sort_unstable();
    keys.dedup();
    let mut bytes = Vec::with_capacity(MAGIC.len() + 4 + record.source.len() + keys.len() * 8);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(record.source.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&record.source);
    keys.iter()
        .for_each(|k| bytes.extend_from_slice(&k.to_le_bytes()));
    let Some(dir) = record.file.parent() else {
        return;
    };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = record
        .file
        .with_extension(format!("{}-{nanos}.tmp", std::process::id()));
    if std::fs::write(&tmp, &bytes).is_err() || std::fs::rename(&tmp, &record.file).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    prune(dir);
}

/// Removes the records of datasets that no longer exist (and files that are not records), so that
/// datasets deleted since, such as those of tests in temporary folders, leave nothing behind. Only each
/// record's header is read; records are renamed into place whole, so none is seen half-written.
fn prune(dir: &Path) {
    use std::io::Read;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "bin") {
            continue;
        }
        let mut head = vec![0u8; MAGIC.len() + 4 + 4096];
        let n = std::fs::File::open(&path)
            .and_then(|mut f| f.read(&mut head))
            .unwrap_or(0);
        let gone = match parse(&head[..n]) {
            Some((source, _)) => !path_of(source).exists(),
            None => true,
        };
        if gone {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// The path a record names, from the bytes `into_encoded_bytes` wrote (on Unix, the path's own bytes).
#[cfg(unix)]
fn path_of(bytes: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
}

/// The path a record names (elsewhere than Unix, paths that are not UTF-8 lose their record).
#[cfg(not(unix))]
fn path_of(bytes: &[u8]) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(bytes).into_owned())
}

/// Decodes every image of `ds` that `stamps` and the dataset's record do not vouch for (keys made with
/// `kind`, what is checked), in parallel; errors with the first failing image (lowest index) and how many
/// failed.
pub(crate) fn check_images(ds: &dyn Dataset, kind: &str, stamps: Stamps<'_>) -> Result<()> {
    let n = ds.len();
    let (keys, source): (Vec<Option<u64>>, Option<&Path>) = match stamps {
        Stamps::None => (vec![None; n], None),
        Stamps::PerImage(root, names) => (
            names
                .par_iter()
                .map(|name| file_key(kind, name, &root.join(name)))
                .collect(),
            Some(root),
        ),
        Stamps::Archive(path) => (vec![file_key(kind, "", path)], Some(path)),
    };
    let record = source.map(Record::of);
    let known = record.as_ref().map(read_record).unwrap_or_default();
    let vouched = |k: &Option<u64>| k.is_some_and(|k| known.binary_search(&k).is_ok());
    let todo: Vec<usize> = if keys.len() == n {
        (0..n).filter(|&i| !vouched(&keys[i])).collect()
    } else if keys.iter().all(vouched) {
        Vec::new()
    } else {
        (0..n).collect()
    };
    let size = ds.image_size();
    let mut failed: Vec<(usize, DataError)> = todo
        .par_iter()
        .map_init(
            || vec![0u8; size],
            |buf, &i| ds.image_into(i, buf).err().map(|e| (i, e)),
        )
        .flatten()
        .collect();
    failed.sort_by_key(|(i, _)| *i);
    if let Some(record) = record.filter(|_| !todo.is_empty()) {
        // What passed is remembered even when something failed, so that after fixing one bad image
        // among many only that one is decoded again.
        let passed: Vec<u64> = if failed.is_empty() {
            keys.iter().flatten().copied().collect()
        } else if keys.len() == n {
            let bad: std::collections::HashSet<usize> = failed.iter().map(|(i, _)| *i).collect();
            (0..n)
                .filter(|i| !bad.contains(i))
                .filter_map(|i| keys[i])
                .collect()
        } else {
            Vec::new()
        };
        if !passed.is_empty() {
            write_record(&record, passed);
        }
    }
    let count = failed.len();
    let mut failed = failed.into_iter();
    match failed.next() {
        None => Ok(()),
        Some((_, first)) if count == 1 => Err(first),
        Some((_, first)) => Err(DataError::BadImages {
            path: ds.source().to_path_buf(),
            count,
            total: n,
            first: Box::new(first),
        }),
    }
}

/// The record of a dataset read from `source` (a folder or an archive): a file in [`record_dir`] named by
/// the hash of the source's canonical path. (What was checked, such as the image shape, is part of each
/// key, so a record of another check vouches for nothing.)
pub fn record_file(source: &Path) -> PathBuf {
    Record::of(source).file
}
