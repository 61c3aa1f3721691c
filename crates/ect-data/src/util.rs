//! Small file helpers shared by the readers: whole-file reads with the path in the error, transparent
//! gzip, and pulling chosen members out of a `.tar(.gz)` into memory.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use crate::error::{DataError, Result};

/// Reads a whole file.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| DataError::io(path, e))
}

/// Whether the bytes start with the gzip magic.
pub(crate) fn is_gzip(bytes: &[u8]) -> bool {
    bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b
}

/// Decompresses gzip data (detected by its magic), or returns the bytes unchanged.
pub(crate) fn maybe_gunzip(bytes: Vec<u8>, path: &Path) -> Result<Vec<u8>> {
    if !is_gzip(&bytes) {
        return Ok(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len() * 4);
    MultiGzDecoder::new(&bytes[..])
        .read_to_end(&mut out)
        .map_err(|e| DataError::format(path, format!("corrupt or truncated gzip data: {e}")))?;
    Ok(out)
}

/// Opens a `.tar` or `.tar.gz` (gzip detected by magic) as a stream of entries.
fn open_tar(path: &Path) -> Result<tar::Archive<Box<dyn Read>>> {
    let mut file = BufReader::new(File::open(path).map_err(|e| DataError::io(path, e))?);
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic).map_err(|e| DataError::io(path, e))?;
    let head = std::io::Cursor::new(magic[..n].to_vec());
    let chained = head.chain(file);
    let reader: Box<dyn Read> = if is_gzip(&magic[..n]) {
        Box::new(MultiGzDecoder::new(chained))
    } else {
        Box::new(chained)
    };
    Ok(tar::Archive::new(reader))
}

fn tar_error(path: &Path, e: std::io::Error) -> DataError {
    DataError::format(path, format!("corrupt or truncated tar archive: {e}"))
}

/// The first entry's path in a tar archive (enough to tell which CIFAR variant it is).
pub(crate) fn tar_first_name(path: &Path) -> Result<Option<String>> {
    let mut archive = open_tar(path)?;
    let mut entries = archive.entries().map_err(|e| tar_error(path, e))?;
    match entries.next() {
        None => Ok(None),
        Some(entry) => {
            let entry = entry.map_err(|e| tar_error(path, e))?;
            let name = entry.path().map_err(|e| tar_error(path, e))?;
            Ok(Some(name.to_string_lossy().into_owned()))
        }
    }
}

/// The regular-file members whose names `wanted` accepts, with their contents, in archive order.
pub(crate) fn tar_members(
    path: &Path,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<Vec<(String, Vec<u8>)>> {
    let mut archive = open_tar(path)?;
    let mut out = Vec::new();
    for entry in archive.entries().map_err(|e| tar_error(path, e))? {
        let mut entry = entry.map_err(|e| tar_error(path, e))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .map_err(|e| tar_error(path, e))?
            .to_string_lossy()
            .into_owned();
        if !wanted(&name) {
            continue;
        }
        let mut data = Vec::with_capacity(entry.size().min(1 << 28) as usize);
        entry
            .read_to_end(&mut data)
            .map_err(|e| tar_error(path, e))?;
        out.push((name, data));
    }
    // The tar reader stops at the end-of-archive blocks, before the gzip trailer; reading the rest of
    // the stream makes flate2 check the CRC-32 and length there, so a corrupt `.tar.gz` whose damage
    // still inflates (stored or Huffman-only blocks) is an error instead of silently wrong pixels.
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink()).map_err(|e| {
        DataError::format(
            path,
            format!("corrupt or truncated archive after its last member: {e}"),
        )
    })?;
    Ok(out)
}

/// Appends to `out` every file below `dir` (following links to folders, except a link back to a folder
/// the walk is already inside, so a symlink loop cannot list the same images again and again) that `keep`
/// accepts, as a `/`-separated path relative to the walk's root; `prefix` is `dir`'s own relative path
/// (`""` at the root).
pub(crate) fn walk_files(
    dir: &Path,
    prefix: &str,
    keep: &dyn Fn(&str) -> bool,
    out: &mut Vec<String>,
) -> Result<()> {
    let root = std::fs::canonicalize(dir).map_err(|e| DataError::io(dir, e))?;
    walk_below(dir, prefix, keep, out, &mut vec![root])
}

/// [`walk_files`] with the canonical paths of the folders the walk is inside (`ancestors`, the
/// current one last).
fn walk_below(
    dir: &Path,
    prefix: &str,
    keep: &dyn Fn(&str) -> bool,
    out: &mut Vec<String>,
    ancestors: &mut Vec<PathBuf>,
) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let path = entry.path();
        let ty = entry.file_type().map_err(|e| DataError::io(&path, e))?;
        if ty.is_dir() || (ty.is_symlink() && path.is_dir()) {
            let real = std::fs::canonicalize(&path).map_err(|e| DataError::io(&path, e))?;
            if ancestors.contains(&real) {
                continue;
            }
            ancestors.push(real);
            let walked = walk_below(&path, &rel, keep, out, ancestors);
            ancestors.pop();
            walked?;
        } else if keep(&rel) {
            out.push(rel);
        }
    }
    Ok(())
}
