//! Where Fashion-MNIST (<https://github.com/zalandoresearch/fashion-mnist>) is found on this machine.

use std::path::{Path, PathBuf};

/// Where Debian's `dataset-fashion-mnist` package installs the four gzipped IDX files.
pub const DEBIAN_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Environment variable naming a folder that holds the Fashion-MNIST IDX files.
pub const ENV_VAR: &str = "ECT_FASHION_MNIST";

/// Whether `dir` holds the Fashion-MNIST training images and labels (gzipped or not).
pub fn is_fashion_mnist_dir(dir: &Path) -> bool {
    let has = |stem: &str| dir.join(stem).is_file() || dir.join(format!("{stem}.gz")).is_file();
    has("train-images-idx3-ubyte") && has("train-labels-idx1-ubyte")
}

/// Finds Fashion-MNIST: `$ECT_FASHION_MNIST`, then `<cache_dir>/fashion-mnist` (where
/// [`crate::fetch`] puts it) or `<cache_dir>` itself, then [`DEBIAN_DIR`]. `None` when absent.
pub fn locate(cache_dir: Option<&Path>) -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os(ENV_VAR) {
        candidates.push(PathBuf::from(dir));
    }
    if let Some(cache) = cache_dir {
        candidates.push(cache.join("fashion-mnist"));
        candidates.push(cache.to_path_buf());
    }
    candidates.push(PathBuf::from(DEBIAN_DIR));
    candidates.into_iter().find(|d| is_fashion_mnist_dir(d))
}
