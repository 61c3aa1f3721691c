//! Fréchet distance between two Gaussians (FID, FD_DINOv2), in f64.
//!
//! `FD = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr(sqrt(S1 S2))`, as in pytorch-fid and EDM. Instead of
//! `scipy.linalg.sqrtm` of the non-symmetric `S1 S2` (whose result can turn complex and lose accuracy
//! when a covariance is rank deficient), the trace term uses the symmetric form
//! `tr(sqrt(S1 S2)) = sum_i sqrt(eig_i(sqrt(S1) S2 sqrt(S1)))`, with eigenvalues clipped at 0: both
//! eigendecompositions are of symmetric positive semi-definite matrices, which are stable.

use faer::{Mat, Side};

use crate::error::{MetricsError, Result};
use crate::stats::FeatureStats;

/// Fréchet distance between the Gaussians described by `a` and `b`.
pub fn frechet_distance(a: &FeatureStats, b: &FeatureStats) -> Result<f64> {
    if a.dim() != b.dim() {
        return Err(MetricsError::dim(
            "feature dimension of the second statistics",
            a.dim(),
            b.dim(),
        ));
    }
    let d = a.dim();
    let mean_term: f64 = a
        .mu()
        .iter()
        .zip(b.mu())
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    let trace = |s: &[f64]| (0..d).map(|i| s[i * d + i]).sum::<f64>();
    let s1 = symmetric(a.sigma(), d);
    let s2 = symmetric(b.sigma(), d);
    let cross = trace_sqrt_product(&s1, &s2)?;
    Ok(mean_term + trace(a.sigma()) + trace(b.sigma()) - 2.0 * cross)
}

fn symmetric(s: &[f64], d: usize) -> Mat<f64> {
    Mat::from_fn(d, d, |i, j| 0.5 * (s[i * d + j] + s[j * d + i]))
}

/// `tr(sqrt(S1 S2))` for symmetric positive semi-definite `S1`, `S2`.
fn trace_sqrt_product(s1: &Mat<f64>, s2: &Mat<f64>) -> Result<f64> {
    let d = s1.nrows();
    // S1 = U L U^T; with A = U L^(1/2), sqrt(S1) S2 sqrt(S1) = U (A^T S2 A) U^T has the eigenvalues of
    // A^T S2 A, which saves one d^3 product.
    let eig1 = s1.selfadjoint_eigendecomposition(Side::Lower);
    let lambda = eig1.s().column_vector();
    let u = eig1.u();
    let root: Vec<f64> = (0..d).map(|i| lambda.read(i).max(0.0).sqrt()).collect();
    let a = Mat::<f64>::from_fn(d, d, |i, j| u.read(i, j) * root[j]);
    let m = a.transpose() * (s2 * &a);
    let m = Mat::<f64>::from_fn(d, d, |i, j| 0.5 * (m.read(i, j) + m.read(j, i)));
    let eigs = m.selfadjoint_eigenvalues(Side::Lower);
    if let Some(bad) = eigs.iter().find(|v| !v.is_finite()) {
        return Err(MetricsError::Linalg(format!(
            "eigenvalues of sqrt(S1) S2 sqrt(S1) (got {bad})"
        )));
    }
    Ok(eigs.iter().map(|&v| v.max(0.0).sqrt()).sum())
}
