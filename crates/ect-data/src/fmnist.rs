//! Where Fashion-MNIST (<https://github.com/zalandoresearch/fashion-mnist>) is found on this machine.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};
use crate::stats::hex;
use crate::util::{maybe_gunzip, read_file};

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

/// SHA-256 of the four uncompressed IDX files as Zalando publishes them. The MD5s in [`crate::fetch`]
/// are of the `.gz` files, and Debian recompresses them, so the uncompressed bytes identify the data.
pub const RAW_SHA256: [(&str, &str); 4] = [
    (
        "train-images-idx3-ubyte",
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    ),
    (
        "train-labels-idx1-ubyte",
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    ),
    (
        "t10k-images-idx3-ubyte",
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    ),
    (
        "t10k-labels-idx1-ubyte",
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ),
];

/// Checks that `dir` holds all four Fashion-MNIST files (each gzipped or not) with the published
/// contents ([`RAW_SHA256`]); the error names the first missing or different file.
pub fn verify(dir: &Path) -> Result<()> {
    for (stem, want) in RAW_SHA256 {
        let gz = dir.join(format!("{stem}.gz"));
        let path = if gz.is_file() { gz } else { dir.join(stem) };
        let bytes = maybe_gunzip(read_file(&path)?, &path)?;
        let got = hex(&Sha256::digest(&bytes));
        if got != want {
            return Err(DataError::Checksum {
                path,
                algorithm: "sha256 (uncompressed)",
                expected: want.to_string(),
                got,
            });
        }
    }
    Ok(())
}
