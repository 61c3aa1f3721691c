//! Improved precision and recall (Kynkäänniemi et al. 2019), as in StyleGAN2-ADA's
//! `metrics/precision_recall.py`: each set's manifold is the union of balls around its points whose
//! radius is the distance to the k-th nearest other point (k = 3); precision is the fraction of
//! generated samples inside the real manifold, recall the fraction of real samples inside the generated
//! one. Distances are computed in f64 (the reference rounds the radii to f16; we do not).

use faer::Mat;
use serde::{Deserialize, Serialize};

use crate::error::{MetricsError, Result};
use crate::kid::to_rows;

/// Precision and recall of a generated set against a real set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PrecisionRecall {
    /// Fraction of generated samples within the real manifold.
    pub precision: f64,
    /// Fraction of real samples within the generated manifold.
    pub recall: f64,
}

/// Rows per block of the distance matrix: bounds memory to `BLOCK x n` values.
const BLOCK: usize = 1024;

/// Precision and recall of row-major features `fake` against `real` (dimension `dim`) with
/// neighbourhood size `k` (3 in the paper).
pub fn precision_recall<T: Copy + Into<f64>>(
    real: &[T],
    fake: &[T],
    dim: usize,
    k: usize,
) -> Result<PrecisionRecall> {
    let real = to_rows(real, dim, "real features")?;
    let fake = to_rows(fake, dim, "fake features")?;
    if k == 0 {
        return Err(MetricsError::arg(
            "k",
            0,
            "neighbourhood size must be positive",
        ));
    }
    for (what, x) in [("real features", &real), ("fake features", &fake)] {
        if x.nrows() <= k {
            return Err(MetricsError::TooFewSamples {
                what: format!("precision/recall ({what})"),
                needed: k.saturating_add(1),
                got: x.nrows(),
            });
        }
    }
    Ok(PrecisionRecall {
        precision: coverage(&real, &fake, k),
        recall: coverage(&fake, &real, k),
    })
}

/// Fraction of `probes` within distance of the k-th neighbour of some point of `manifold`.
fn coverage(manifold: &Mat<f64>, probes: &Mat<f64>, k: usize) -> f64 {
    let radii2 = kth_neighbour_sq(manifold, k);
    let mut inside = 0usize;
    for start in (0..probes.nrows()).step_by(BLOCK) {
        let rows = probes.subrows(start, BLOCK.min(probes.nrows() - start));
        let d2 = sq_distances(rows, manifold.as_ref());
        inside += (0..d2.nrows())
            .filter(|&i| (0..d2.ncols()).any(|j| d2.read(i, j) <= radii2[j]))
            .count();
    }
    inside as f64 / probes.nrows() as f64
}

/// Squared distance from each row to its k-th nearest other row (the row itself counts as the 0th,
/// like the reference's `kthvalue(k + 1)`).
fn kth_neighbour_sq(x: &Mat<f64>, k: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.nrows());
    for start in (0..x.nrows()).step_by(BLOCK) {
        let rows = x.subrows(start, BLOCK.min(x.nrows() - start));
        let d2 = sq_distances(rows, x.as_ref());
        for i in 0..d2.nrows() {
            let mut row: Vec<f64> = (0..d2.ncols()).map(|j| d2.read(i, j)).collect();
            // The self-distance is exactly 0 in exact arithmetic; pin it so rounding cannot reorder it.
            row[start + i] = 0.0;
            let (_, kth, _) = row.select_nth_unstable_by(k, f64::total_cmp);
            out.push(*kth);
        }
    }
    out
}

fn sq_distances(a: faer::MatRef<'_, f64>, b: faer::MatRef<'_, f64>) -> Mat<f64> {
    let norms = |m: faer::MatRef<'_, f64>| -> Vec<f64> {
        (0..m.nrows())
            .map(|i| (0..m.ncols()).map(|j| m.read(i, j).powi(2)).sum())
            .collect()
    };
    let (na, nb) = (norms(a), norms(b));
    let g = a * b.transpose();
    Mat::from_fn(a.nrows(), b.nrows(), |i, j| {
        (na[i] + nb[j] - 2.0 * g.read(i, j)).max(0.0)
    })
}
