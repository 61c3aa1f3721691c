//! Finding the training data of an experiment: the configured path, the cache, Debian's package, or a
//! download (checksums verified).

use anyhow::{bail, Context};
use ect_config::TrainConfig;
use ect_data::fetch;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Name that, as `data.path`, asks xtask to find or fetch Fashion-MNIST.
pub const FASHION_MNIST: &str = "fashion-mnist";

/// Resolves `data.path` of a training configuration in place; returns the resolved path.
///
/// An existing path is kept. `fashion-mnist` (or a missing path whose last component is that name) is
/// looked up with [`ect_data::fmnist::locate`] (`$ECT_FASHION_MNIST`, the cache, Debian's
/// `/usr/share/datasets/fashion-mnist`), then fetched: on Debian-family systems with
/// `apt-get download dataset-fashion-mnist` (no root needed), otherwise from the canonical URLs.
pub fn resolve(cfg: &mut TrainConfig, cache_dir: &Path) -> anyhow::Result<PathBuf> {
    let path = cfg.data.path.display().to_string();
    let resolved = if Path::new(&path).exists() {
        PathBuf::from(&path)
    } else if Path::new(&path)
        .file_name()
        .is_some_and(|n| n == FASHION_MNIST)
    {
        fashion_mnist(cache_dir)?
    } else {
        bail!(
            "data.path = {path:?} does not exist; point it at a dataset (see README, \"Data\"), or use \
             \"{FASHION_MNIST}\" to have it found or fetched"
        );
    };
    cfg.data.path = resolved.clone();
    Ok(resolved)
}

/// Finds Fashion-MNIST or fetches it into `cache_dir/fashion-mnist`, checksums verified.
pub fn fashion_mnist(cache_dir: &Path) -> anyhow::Result<PathBuf> {
    if let Some(dir) = ect_data::fmnist::locate(Some(cache_dir)) {
        return Ok(dir);
    }
    let known = fetch::known(FASHION_MNIST).context("Fashion-MNIST is in ect-data's catalog")?;
    let dest = cache_dir.join(known.folder);
    match from_debian_package(&dest) {
        Ok(()) => return Ok(dest),
        Err(err) => eprintln!(
            "xtask: apt-get download dataset-fashion-mnist did not work ({err:#}); downloading"
        ),
    }
    let mut last = 0u64;
    let mut progress = |done: u64, total: Option<u64>| {
        if done >= last + (4 << 20) || Some(done) == total {
            last = done;
            let mb = |b: u64| b as f64 / 1e6;
            match total {
                Some(t) => eprintln!(
                    "xtask: downloading Fashion-MNIST: {:.1} / {:.1} MB",
                    mb(done),
                    mb(t)
                ),
                None => eprintln!("xtask: downloading Fashion-MNIST: {:.1} MB", mb(done)),
            }
        }
    };
    fetch::fetch(FASHION_MNIST, cache_dir, &mut progress).context("fetching Fashion-MNIST")
}

/// SHA-256 of the four decompressed IDX files of Fashion-MNIST. Debian recompresses the `.gz` files, so
/// their published MD5s do not apply; the payloads are what must match.
pub const PAYLOAD_SHA256: [(&str, &str); 4] = [
    (
        "train-images-idx3-ubyte.gz",
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    ),
    (
        "train-labels-idx1-ubyte.gz",
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    ),
    (
        "t10k-images-idx3-ubyte.gz",
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    ),
    (
        "t10k-labels-idx1-ubyte.gz",
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ),
];

/// Checks the decompressed content of each Fashion-MNIST file in `dir` against [`PAYLOAD_SHA256`].
pub fn verify_payloads(dir: &Path) -> anyhow::Result<()> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    for (name, want) in PAYLOAD_SHA256 {
        let path = dir.join(name);
        let file =
            std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let mut gz = flate2::read::GzDecoder::new(std::io::BufReader::new(file));
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = gz
                .read(&mut buf)
                .with_context(|| format!("decompressing {}", path.display()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let got: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if got != want {
            bail!(
                "{}: decompressed SHA-256 is {got}, expected {want}",
                path.display()
            );
        }
    }
    Ok(())
}

/// `apt-get download dataset-fashion-mnist` into a temporary folder (apt checks the package against the
/// archive's signed hashes), unpack it with `dpkg-deb -x`, verify the payloads and move the four files to
/// `dest`.
fn from_debian_package(dest: &Path) -> anyhow::Result<()> {
    let work = dest.with_extension("deb-tmp");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let status = Command::new("apt-get")
        .args(["download", "dataset-fashion-mnist"])
        .current_dir(&work)
        .status()
        .context("running apt-get (not a Debian-family system?)")?;
    if !status.success() {
        bail!("apt-get download failed ({status})");
    }
    let deb = std::fs::read_dir(&work)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download left no .deb")?;
    let unpacked = work.join("root");
    let status = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&unpacked)
        .status()
        .context("running dpkg-deb")?;
    if !status.success() {
        bail!("dpkg-deb -x {} failed ({status})", deb.display());
    }
    let src = unpacked.join("usr/share/datasets/fashion-mnist");
    verify_payloads(&src)?;
    std::fs::create_dir_all(dest)?;
    for entry in std::fs::read_dir(&src)
        .with_context(|| format!("reading {}", src.display()))?
        .flatten()
    {
        let to = dest.join(entry.file_name());
        std::fs::rename(entry.path(), &to)
            .or_else(|_| std::fs::copy(entry.path(), &to).map(|_| ()))?;
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn existing_path_is_kept_and_missing_path_is_named() {
        let dir = std::env::temp_dir().join(format!("xtask-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cfg = TrainConfig::default();
        cfg.data.path = dir.clone();
        assert_eq!(resolve(&mut cfg, &dir).unwrap(), dir);
        cfg.data.path = "/nonexistent/cifar".into();
        let err = resolve(&mut cfg, &dir).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/cifar"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn debian_payloads_match_the_pinned_hashes() {
        let dir = Path::new(ect_data::fmnist::DEBIAN_DIR);
        if !dir.exists() {
            eprintln!("skipped: {} is absent", dir.display());
            return;
        }
        verify_payloads(dir).unwrap();
        let tmp = std::env::temp_dir().join(format!("xtask-payload-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        for (name, _) in PAYLOAD_SHA256 {
            std::fs::copy(dir.join(name), tmp.join(name)).unwrap();
        }
        // A corrupted (but well-formed) file is caught.
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, b"not the labels").unwrap();
        std::fs::write(tmp.join("t10k-labels-idx1-ubyte.gz"), enc.finish().unwrap()).unwrap();
        let err = verify_payloads(&tmp).unwrap_err().to_string();
        assert!(
            err.contains("t10k-labels-idx1-ubyte.gz") && err.contains("expected"),
            "{err}"
        );
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn fashion_mnist_name_resolves_to_a_folder_with_the_files() {
        if ect_data::fmnist::locate(None).is_none() {
            eprintln!(
                "skipped: Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)"
            );
            return;
        }
        let mut cfg = TrainConfig::default();
        cfg.data.path = "fashion-mnist".into();
        let dir = resolve(&mut cfg, Path::new("/nonexistent-cache")).unwrap();
        assert!(ect_data::fmnist::is_fashion_mnist_dir(&dir));
        assert_eq!(cfg.data.path, dir);
    }
}
