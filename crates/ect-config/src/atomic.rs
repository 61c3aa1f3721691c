//! Atomic file writes: the one way every crate and tool of the workspace writes a result file, so that a
//! crash or a kill never leaves a half-written file under the real name.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The temporary sibling `path` is written to before the rename (`.<name>.tmp` in the same directory,
/// so the rename never crosses file systems).
pub fn temp_path(path: &Path) -> PathBuf {
    let dir = parent_dir(path);
    dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out".to_owned())
    ))
}

fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// A failed atomic write: the file (or directory) at fault and the I/O error.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct WriteError {
    /// The file or directory that could not be written.
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub source: std::io::Error,
}

/// Writes `bytes` to `path` through a temporary file in the same directory (created when missing),
/// synced before it is renamed into place. On error the temporary file is removed; the error names the
/// file that failed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let at = |p: &Path| {
        let p = p.to_path_buf();
        move |source| WriteError { path: p, source }
    };
    let dir = parent_dir(path);
    std::fs::create_dir_all(dir).map_err(at(dir))?;
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(at(&tmp))?;
        f.write_all(bytes)
            .and_then(|_| f.sync_all())
            .map_err(at(&tmp))?;
        std::fs::rename(&tmp, path).map_err(at(path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_files_and_creates_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/out.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert!(!temp_path(&path).exists());
    }

    #[test]
    fn a_failed_write_names_the_file_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // A directory in the way of the rename.
        let path = dir.path().join("taken");
        std::fs::create_dir_all(path.join("child")).unwrap();
        let e = write_atomic(&path, b"x").unwrap_err();
        assert!(e.to_string().contains("taken"), "{e}");
        assert!(!temp_path(&path).exists());
    }
}
