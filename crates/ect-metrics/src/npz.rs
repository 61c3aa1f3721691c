//! EDM's reference statistics: an `.npz` archive (zip of `.npy` files) with `mu` (d,) and `sigma` (d, d),
//! as written by `np.savez(path, mu=mu, sigma=sigma)` in EDM's `fid.py`.

use std::io::{Read, Write};
use std::path::Path;

use crate::error::{MetricsError, Result};
use crate::npy::{NpyArray, NpyData};
use crate::stats::FeatureStats;

/// All arrays in an `.npz` archive, by name (without the `.npy` suffix), in archive order.
pub fn read_npz(path: &Path) -> Result<Vec<(String, NpyArray)>> {
    let zip_err = |error| MetricsError::Zip {
        path: path.into(),
        error,
    };
    let file = std::fs::File::open(path).map_err(|e| MetricsError::io(path, e))?;
    let file_len = file
        .metadata()
        .map_err(|e| MetricsError::io(path, e))?
        .len();
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(zip_err)?;
    let mut out = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(zip_err)?;
        let name = entry.name().to_string();
        // The declared size is only a hint: a corrupt or crafted header could ask for any amount. Capped at
        // the archive's own length (exact for np.savez's stored entries), the buffer grows as data arrives.
        let hint = entry.size().min(file_len);
        let mut bytes = Vec::with_capacity(usize::try_from(hint).unwrap_or(0));
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| MetricsError::io(path, e))?;
        let array = NpyArray::from_bytes(&bytes, &format!("{}:{name}", path.display()))?;
        out.push((
            name.strip_suffix(".npy").unwrap_or(&name).to_string(),
            array,
        ));
    }
    Ok(out)
}

/// Writes arrays as an uncompressed `.npz` (what `np.savez` writes).
pub fn write_npz(path: &Path, arrays: &[(&str, &NpyArray)]) -> Result<()> {
    let zip_err = |error| MetricsError::Zip {
        path: path.into(),
        error,
    };
    let file = std::fs::File::create(path).map_err(|e| MetricsError::io(path, e))?;
    let mut writer = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(
            arrays
                .iter()
                .any(|(_, a)| a.data.len() * 8 > u32::MAX as usize / 2),
        );
    for (name, array) in arrays {
        writer
            .start_file(format!("{name}.npy"), options)
            .map_err(zip_err)?;
        writer
            .write_all(&array.to_bytes())
            .map_err(|e| MetricsError::io(path, e))?;
    }
    let mut inner = writer.finish().map_err(zip_err)?;
    inner.flush().map_err(|e| MetricsError::io(path, e))
}

/// Reads reference statistics (`mu`, `sigma`, f64 or f32) from an EDM `.npz`; checks shapes, finiteness
/// and that `sigma` is a covariance (symmetric, positive semi-definite: [`FeatureStats::new`]).
pub fn load_stats_npz(path: &Path) -> Result<FeatureStats> {
    let arrays = read_npz(path)?;
    let find = |name: &str| {
        arrays
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a)
            .ok_or_else(|| MetricsError::MissingArray {
                path: path.into(),
                name: name.into(),
                found: arrays.iter().map(|(n, _)| n.clone()).collect(),
            })
    };
    let mu = find("mu")?;
    let sigma = find("sigma")?;
    let context = |what: &str, e: MetricsError| MetricsError::Npy {
        path: format!("{}:{what}", path.display()),
        reason: e.to_string(),
    };
    if mu.shape.len() != 1 {
        return Err(MetricsError::Npy {
            path: format!("{}:mu", path.display()),
            reason: format!("expected a 1-d array, got shape {:?}", mu.shape),
        });
    }
    let d = mu.shape[0];
    if sigma.shape != [d, d] {
        return Err(MetricsError::Npy {
            path: format!("{}:sigma", path.display()),
            reason: format!(
                "expected shape [{d}, {d}] to match mu of length {d}, got {:?}",
                sigma.shape
            ),
        });
    }
    let mu = mu.to_f64();
    let sigma = sigma.to_f64();
    crate::error::check_finite("mu", &mu).map_err(|e| context("mu", e))?;
    crate::error::check_finite("sigma", &sigma).map_err(|e| context("sigma", e))?;
    let mut stats = FeatureStats::new(mu, sigma)
        .map_err(|e| FeatureStats::name_file(e, &path.display().to_string()))?;
    if let Some((_, n)) = arrays.iter().find(|(n, _)| n == NUM_SAMPLES) {
        let values = n.to_f64();
        let bad = |reason: String| MetricsError::Npy {
            path: format!("{}:{NUM_SAMPLES}", path.display()),
            reason,
        };
        let count = match values.as_slice() {
            [v] => *v,
            other => {
                return Err(bad(format!(
                    "expected one value, got {} (shape {:?})",
                    other.len(),
                    n.shape
                )))
            }
        };
        // f64 holds every count below 2^53 exactly; anything else is not a count.
        if !(count.is_finite() && count >= 0.0 && count.fract() == 0.0 && count < 9.007e15) {
            return Err(bad(format!(
                "expected a non-negative whole number, got {count}"
            )));
        }
        stats = stats.with_num_samples(count as u64);
    }
    Ok(stats)
}

/// Name of the optional scalar array with the number of samples behind the statistics. EDM's files do not
/// have it; EDM's `fid.py` reads only `mu` and `sigma`, so the extra array does not disturb it.
pub const NUM_SAMPLES: &str = "num_samples";

/// Writes reference statistics as an EDM-compatible `.npz` (`mu` (d,) and `sigma` (d, d), f64), plus the
/// sample count as a float64 scalar [`NUM_SAMPLES`] when it is known.
pub fn save_stats_npz(path: &Path, stats: &FeatureStats) -> Result<()> {
    let d = stats.dim();
    let mu = NpyArray::new(vec![d], NpyData::F64(stats.mu().to_vec()))?;
    let sigma = NpyArray::new(vec![d, d], NpyData::F64(stats.sigma().to_vec()))?;
    match stats.num_samples() {
        Some(n) => {
            let count = NpyArray::new(vec![], NpyData::F64(vec![n as f64]))?;
            write_npz(
                path,
                &[("mu", &mu), ("sigma", &sigma), (NUM_SAMPLES, &count)],
            )
        }
        None => write_npz(path, &[("mu", &mu), ("sigma", &sigma)]),
    }
}
