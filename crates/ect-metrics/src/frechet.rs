//! Fréchet distance between two Gaussians (FID, FD_DINOv2), in f64.
//!
//! `FD = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr(sqrt(S1 S2))`, as in pytorch-fid and EDM. Instead of
//! `scipy.linalg.sqrtm` of the non-symmetric `S1 S2` (whose result can turn complex and lose accuracy
//! when a covariance is rank deficient), the trace term uses the symmetric form
//! `tr(sqrt(S1 S2)) = sum_i sqrt(eig_i(sqrt(S1) S2 sqrt(S1)))`, with eigenvalues clipped at 0: the
//! eigendecompositions are of symmetric positive semi-definite matrices, which are stable. Any factor
//! `S1 = B B^T` may stand in for `sqrt(S1)` (`B^T S2 B` has the same eigenvalues): Cholesky when `S1` is
//! positive definite, else the Cholesky factor of `S2` with the roles swapped (`eig(S1 S2) = eig(S2 S1)`:
//! the common case of few samples against a full-rank reference), else the eigendecomposition of `S1`.

use faer::{Mat, Side};

use crate::error::{MetricsError, Result};
use crate::stats::FeatureStats;

/// Fréchet distance between the Gaussians described by `a` and `b`: never negative, and exactly 0 for
/// identical statistics.
///
/// The terms cancel in floating point (`tr S1 + tr S2 - 2 tr sqrt(S1 S2)` of nearly equal covariances is a
/// difference of nearly equal numbers), so a distance of nearly equal distributions can come out a
/// rounding error below 0; a distance is not negative, so the result is clamped at 0.
pub fn frechet_distance(a: &FeatureStats, b: &FeatureStats) -> Result<f64> {
    if a.dim() != b.dim() {
        return Err(MetricsError::dim(
            "feature dimension of the second statistics",
            a.dim(),
            b.dim(),
        ));
    }
    if a.mu() == b.mu() && a.sigma() == b.sigma() {
        return Ok(0.0);
    }
    let d = a.dim();
    let mean_term: f64 = a
        .mu()
        .iter()
        .zip(b.mu())
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    let trace = |s: &[f64]| (0..d).map(|i| s[i * d + i]).sum::<f64>();
    // The trace term multiplies the covariances (d terms of products of elements): finite elements near
    // the top of the f64 range overflow there into a NaN that would read as a linear-algebra failure.
    let largest = |s: &[f64]| s.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let (big1, big2) = (largest(a.sigma()), largest(b.sigma()));
    if !(big1 * big2 * d as f64).is_finite() {
        return Err(MetricsError::Linalg(format!(
            "the Fréchet distance overflows f64: covariance elements up to {big1:.3e} and {big2:.3e} \
             in dimension {d}"
        )));
    }
    let s1 = symmetric(a.sigma(), d);
    let s2 = symmetric(b.sigma(), d);
    let cross = trace_sqrt_product(&s1, &s2)?;
    let fd = mean_term + trace(a.sigma()) + trace(b.sigma()) - 2.0 * cross;
    if !fd.is_finite() {
        // Finite inputs near the top of the f64 range can still overflow in the sums and products.
        return Err(MetricsError::Linalg(format!(
            "the Fréchet distance overflows f64: |mu1 - mu2|^2 = {mean_term:.3e}, tr S1 = {:.3e}, \
             tr S2 = {:.3e}, tr sqrt(S1 S2) = {cross:.3e}",
            trace(a.sigma()),
            trace(b.sigma())
        )));
    }
    // Written out rather than `fd.max(0.0)`, which may return -0.0.
    Ok(if fd > 0.0 { fd } else { 0.0 })
}

fn symmetric(s: &[f64], d: usize) -> Mat<f64> {
    Mat::from_fn(d, d, |i, j| 0.5 * (s[i * d + j] + s[j * d + i]))
}

/// `tr(sqrt(S1 S2))` for symmetric positive semi-definite `S1`, `S2`.
fn trace_sqrt_product(s1: &Mat<f64>, s2: &Mat<f64>) -> Result<f64> {
    // Any factor S1 = B B^T gives eig(S1 S2) = eig(B^T S2 B), a symmetric PSD matrix. Cholesky is the
    // cheap factor (d^3/3 flops) when S1 is positive definite, as covariances of many samples are; a
    // rank-deficient S1 has no Cholesky factor and takes the eigendecomposition B = U L^(1/2) instead,
    // which is several times slower but exact on the null space.
    // eig(S1 S2) = eig(S2 S1), so when only S1 is rank deficient (few samples against a full reference)
    // the Cholesky factor of S2 serves as well.
    if let Ok(chol) = s1.cholesky(Side::Lower) {
        return symmetric_sqrt_trace(&chol.compute_l(), s2, true);
    }
    match s2.cholesky(Side::Lower) {
        Ok(chol) => symmetric_sqrt_trace(&chol.compute_l(), s1, true),
        Err(_) => {
            let eig1 = s1.selfadjoint_eigendecomposition(Side::Lower);
            let lambda = eig1.s().column_vector();
            let u = eig1.u();
            let d = s1.nrows();
            let root: Vec<f64> = (0..d).map(|i| lambda.read(i).max(0.0).sqrt()).collect();
            symmetric_sqrt_trace(
                &Mat::<f64>::from_fn(d, d, |i, j| u.read(i, j) * root[j]),
                s2,
                false,
            )
        }
    }
}

/// `sum_i sqrt(max(0, eig_i(B^T S2 B)))`; `lower` says `B` is lower triangular (a Cholesky factor),
/// which the products exploit.
fn symmetric_sqrt_trace(b: &Mat<f64>, s2: &Mat<f64>, lower: bool) -> Result<f64> {
    use faer::linalg::matmul::triangular::{matmul, BlockStructure};
    let d = b.ncols();
    let par = faer::get_global_parallelism();
    let (b_rhs, b_t_lhs) = if lower {
        (
            BlockStructure::TriangularLower,
            BlockStructure::TriangularUpper,
        )
    } else {
        (BlockStructure::Rectangular, BlockStructure::Rectangular)
    };
    let mut x = Mat::<f64>::zeros(d, d);
    matmul(
        x.as_mut(),
        BlockStructure::Rectangular,
        s2.as_ref(),
        BlockStructure::Rectangular,
        b.as_ref(),
        b_rhs,
        None,
        1.0,
        par,
    );
    // Only the lower half of the symmetric B^T S2 B is formed and read.
    let mut m = Mat::<f64>::zeros(d, d);
    matmul(
        m.as_mut(),
        BlockStructure::TriangularLower,
        b.transpose(),
        b_t_lhs,
        x.as_ref(),
        BlockStructure::Rectangular,
        None,
        1.0,
        par,
    );
    let eigs = m.selfadjoint_eigenvalues(Side::Lower);
    if let Some(bad) = eigs.iter().find(|v| !v.is_finite()) {
        return Err(MetricsError::Linalg(format!(
            "an eigenvalue of B^T S2 B with S1 = B B^T is {bad}"
        )));
    }
    Ok(eigs.iter().map(|&v| v.max(0.0).sqrt()).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With S1 rank deficient and S2 positive definite, the Cholesky factor of S2 gives the trace of the
    /// eigendecomposition of S1.
    #[test]
    fn swapped_factor_agrees_with_the_eigendecomposition() {
        let d = 10;
        // Rank 4.
        let a = Mat::<f64>::from_fn(d, 4, |i, j| ((i * 5 + j * 3) % 7) as f64 / 7.0 - 0.3);
        let s1 = &a * a.transpose();
        assert!(s1.cholesky(Side::Lower).is_err());
        let s2 = Mat::<f64>::from_fn(d, d, |i, j| if i == j { 1.5 + i as f64 } else { 0.2 });
        let eig1 = s1.selfadjoint_eigendecomposition(Side::Lower);
        let root: Vec<f64> = (0..d)
            .map(|i| eig1.s().column_vector().read(i).max(0.0).sqrt())
            .collect();
        let b = Mat::<f64>::from_fn(d, d, |i, j| eig1.u().read(i, j) * root[j]);
        let want = symmetric_sqrt_trace(&b, &s2, false).unwrap();
        let got = trace_sqrt_product(&s1, &s2).unwrap();
        // The eigendecomposition path carries sqrt(roundoff) ~ 1e-8 from the six zero eigenvalues of S1;
        // the Cholesky path of S2 has no such term.
        assert!((got - want).abs() < 1e-8 * want, "{got} vs {want}");
        assert!(want > 0.1, "{want}");
    }

    /// The Cholesky and eigendecomposition factors give the same trace on a positive definite S1.
    #[test]
    fn both_factorizations_agree() {
        let d = 12;
        let a = Mat::<f64>::from_fn(d, d, |i, j| ((i * 7 + j * 3) % 11) as f64 / 11.0 - 0.4);
        let s1 = &a * a.transpose() + Mat::<f64>::identity(d, d);
        let s2 = Mat::<f64>::from_fn(d, d, |i, j| if i == j { 2.0 + i as f64 } else { 0.1 });
        let chol = s1
            .cholesky(Side::Lower)
            .map(|c| c.compute_l())
            .expect("positive definite");
        let eig1 = s1.selfadjoint_eigendecomposition(Side::Lower);
        let root: Vec<f64> = (0..d)
            .map(|i| eig1.s().column_vector().read(i).sqrt())
            .collect();
        let b = Mat::<f64>::from_fn(d, d, |i, j| eig1.u().read(i, j) * root[j]);
        let (x, y) = (
            symmetric_sqrt_trace(&chol, &s2, true).unwrap(),
            symmetric_sqrt_trace(&b, &s2, false).unwrap(),
        );
        assert!((x - y).abs() < 1e-12 * x, "{x} vs {y}");
    }
}
