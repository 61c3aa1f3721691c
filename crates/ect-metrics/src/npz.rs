//! EDM's reference statistics: an `.npz` archive (zip of `.npy` files) with `mu` (d,) and `sigma` (d, d),
//! as written by `np.savez(path, mu=mu, sigma=sigma)` in EDM's `fid.py`.

use std::io::{Read, Write};
use std::path::Path;

use crate::error::{MetricsError, Result};
use crate::npy::{NpyArray, NpyData};
use crate::stats::FeatureStats;

/// All arrays in an `.npz` archive, by name (without the `.npy` suffix), in archive order.
pub fn read_npz(path: &Path) -> Result<Vec<(String, NpyArray)>> {
    let zip_err = |source| MetricsError::Zip {
        path: path.into(),
        source,
    };
    let file = std::fs::File::open(path).map_err(|e| MetricsError::io(path, e))?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(zip_err)?;
    let mut out = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(zip_err)?;
        let name = entry.name().to_string();
        let mut bytes = Vec::with_capacity(entry.size() as usize);
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
    let zip_err = |source| MetricsError::Zip {
        path: path.into(),
        source,
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

/// Reads reference statistics (`mu`, `sigma`, f64 or f32) from an EDM `.npz`; checks shapes and finiteness.
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
    let mut stats = FeatureStats::new(mu, sigma)?;
    if let Some((_, n)) = arrays.iter().find(|(n, _)| n == "num_samples") {
        if let Some(&count) = n.to_f64().first() {
            stats = stats.with_num_samples(count as u64);
        }
    }
    Ok(stats)
}

/// Writes reference statistics as an EDM-compatible `.npz` (`mu` (d,) and `sigma` (d, d), f64).
pub fn save_stats_npz(path: &Path, stats: &FeatureStats) -> Result<()> {
    let d = stats.dim();
    let mu = NpyArray::new(vec![d], NpyData::F64(stats.mu().to_vec()))?;
    let sigma = NpyArray::new(vec![d, d], NpyData::F64(stats.sigma().to_vec()))?;
    write_npz(path, &[("mu", &mu), ("sigma", &sigma)])
}
