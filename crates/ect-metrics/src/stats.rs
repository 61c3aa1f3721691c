//! Mean and covariance of features, accumulated in f64 over batches without keeping the features.
//!
//! Batches are merged with Chan et al.'s pairwise update (each batch is centred on its own mean before
//! the outer products are summed), which avoids the cancellation of the textbook `E[xx^T] - mu mu^T`
//! that EDM's `calculate_metrics.py` uses; both give the unbiased (N-1) covariance of `np.cov`.

use faer::{Mat, Side};

use crate::error::{check_finite, MetricsError, Result};

/// How far a covariance may be from symmetric and positive semi-definite, relative to its largest
/// absolute element `s`: `|sigma[i,j] - sigma[j,i]| <= COVARIANCE_TOLERANCE * s` and the smallest
/// eigenvalue `>= -COVARIANCE_TOLERANCE * s`.
///
/// A covariance computed in f64 (`np.cov`, EDM's `fid.py`, [`StatsAccumulator`]) misses both by about
/// `1e-16 * d * s`, and one rounded to f32 on the way to a file keeps its symmetry and moves its
/// eigenvalues by about `6e-8 * sqrt(d) * s`: `1e-6` leaves a wide margin over both at `d = 2048` while a
/// matrix that is not a covariance (a sign error, a transposed half, `-I`) misses it by far.
pub const COVARIANCE_TOLERANCE: f64 = 1e-6;

/// Mean and covariance of a feature distribution (the `mu`, `sigma` of EDM's reference statistics).
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureStats {
    dim: usize,
    mu: Vec<f64>,
    sigma: Vec<f64>,
    num_samples: Option<u64>,
}

impl FeatureStats {
    /// Statistics from a mean of length `d` and a row-major `d x d` covariance; rejects mismatched
    /// sizes, non-finite values, and a `sigma` that is not symmetric and positive semi-definite within
    /// [`COVARIANCE_TOLERANCE`] (a Fréchet distance of such a matrix is a number without meaning).
    pub fn new(mu: Vec<f64>, sigma: Vec<f64>) -> Result<Self> {
        let dim = mu.len();
        if dim == 0 {
            return Err(MetricsError::arg(
                "mu",
                "[]",
                "statistics need at least one dimension",
            ));
        }
        if sigma.len() != dim * dim {
            return Err(MetricsError::dim(
                "sigma (elements, d*d for d = len(mu))",
                dim * dim,
                sigma.len(),
            ));
        }
        check_finite("mu", &mu)?;
        check_finite("sigma", &sigma)?;
        check_covariance(&sigma, dim)?;
        Ok(Self {
            dim,
            mu,
            sigma,
            num_samples: None,
        })
    }

    /// Records how many samples the statistics came from.
    pub fn with_num_samples(mut self, n: u64) -> Self {
        self.num_samples = Some(n);
        self
    }

    /// Feature dimension `d`.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The mean, length `d`.
    pub fn mu(&self) -> &[f64] {
        &self.mu
    }

    /// The covariance, row-major `d x d`.
    pub fn sigma(&self) -> &[f64] {
        &self.sigma
    }

    /// Number of samples, when known (files written by EDM do not record it).
    pub fn num_samples(&self) -> Option<u64> {
        self.num_samples
    }

    /// Names the file the statistics came from in a [`MetricsError::NotCovariance`] error: `what`
    /// becomes `file:what`.
    pub(crate) fn name_file(e: MetricsError, file: &str) -> MetricsError {
        match e {
            MetricsError::NotCovariance { what, reason } => MetricsError::NotCovariance {
                what: format!("{file}:{what}"),
                reason,
            },
            e => e,
        }
    }

    /// Mean and covariance of the rows of a row-major `n x d` feature matrix.
    pub fn from_features<T: Copy + Into<f64>>(features: &[T], dim: usize) -> Result<Self> {
        let mut acc = StatsAccumulator::new(dim)?;
        acc.add_batch(features)?;
        acc.finish()
    }
}

/// Running mean and scatter matrix of feature batches, in f64.
#[derive(Debug, Clone)]
pub struct StatsAccumulator {
    dim: usize,
    count: u64,
    mean: Vec<f64>,
    /// Sum of outer products of deviations from the running mean.
    scatter: Mat<f64>,
}

impl StatsAccumulator {
    /// An empty accumulator for `dim`-dimensional features.
    pub fn new(dim: usize) -> Result<Self> {
        if dim == 0 {
            return Err(MetricsError::arg(
                "dim",
                0,
                "feature dimension must be positive",
            ));
        }
        Ok(Self {
            dim,
            count: 0,
            mean: vec![0.0; dim],
            scatter: Mat::zeros(dim, dim),
        })
    }

    /// Feature dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of feature vectors added so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Adds a row-major `n x dim` batch (`features.len()` must be a multiple of `dim`); rejects
    /// non-finite features.
    pub fn add_batch<T: Copy + Into<f64>>(&mut self, features: &[T]) -> Result<()> {
        let d = self.dim;
        if features.len() % d != 0 {
            return Err(MetricsError::arg(
                "features",
                format!("{} values", features.len()),
                format!("not a whole number of rows of dimension {d}"),
            ));
        }
        let n = features.len() / d;
        if n == 0 {
            return Ok(());
        }
        let x = Mat::<f64>::from_fn(n, d, |i, j| features[i * d + j].into());
        let mut batch_mean = vec![0.0; d];
        for i in 0..n {
            for (j, m) in batch_mean.iter_mut().enumerate() {
                let v = x.read(i, j);
                if !v.is_finite() {
                    return Err(MetricsError::NonFinite {
                        what: "features".into(),
                        index: i * d + j,
                        value: v,
                    });
                }
                *m += v;
            }
        }
        batch_mean.iter_mut().for_each(|m| *m /= n as f64);
        let centered = Mat::<f64>::from_fn(n, d, |i, j| x.read(i, j) - batch_mean[j]);
        let batch_scatter = centered.transpose() * &centered;
        self.merge_parts(n as u64, &batch_mean, &batch_scatter);
        Ok(())
    }

    /// The running mean (zeros before any feature).
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }

    /// The scatter matrix about `center` instead of this accumulator's own mean, row-major `d x d`:
    /// `S + n (m - c)(m - c)^T`. Summed over parts with one common `center` (their pooled mean), it is
    /// the scatter matrix of their union: how the processes of a data-parallel run combine their
    /// features with one sum, every term positive semi-definite.
    pub fn scatter_about(&self, center: &[f64]) -> Result<Vec<f64>> {
        let d = self.dim;
        if center.len() != d {
            return Err(MetricsError::dim("center of the scatter", d, center.len()));
        }
        let n = self.count as f64;
        let delta: Vec<f64> = self.mean.iter().zip(center).map(|(m, c)| m - c).collect();
        let mut out = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                out[i * d + j] = self.scatter.read(i, j) + n * delta[i] * delta[j];
            }
        }
        Ok(out)
    }

    /// An accumulator of `count` features with mean `mean` and row-major scatter matrix `scatter`
    /// (what [`StatsAccumulator::scatter_about`] gives, summed over parts, with their pooled mean).
    pub fn from_parts(count: u64, mean: Vec<f64>, scatter: &[f64]) -> Result<Self> {
        let d = mean.len();
        let mut acc = Self::new(d)?;
        if scatter.len() != d * d {
            return Err(MetricsError::dim("scatter matrix", d * d, scatter.len()));
        }
        check_finite("mean", &mean)?;
        check_finite("scatter", scatter)?;
        acc.count = count;
        acc.mean = mean;
        acc.scatter = Mat::from_fn(d, d, |i, j| scatter[i * d + j]);
        Ok(acc)
    }

    /// Merges another accumulator (e.g. from another thread) into this one.
    pub fn merge(&mut self, other: &StatsAccumulator) -> Result<()> {
        if other.dim != self.dim {
            return Err(MetricsError::dim(
                "merged accumulator dimension",
                self.dim,
                other.dim,
            ));
        }
        if other.count > 0 {
            self.merge_parts(other.count, &other.mean, &other.scatter);
        }
        Ok(())
    }

    fn merge_parts(&mut self, nb: u64, mean_b: &[f64], scatter_b: &Mat<f64>) {
        let na = self.count as f64;
        let nbf = nb as f64;
        let total = na + nbf;
        let delta: Vec<f64> = mean_b.iter().zip(&self.mean).map(|(b, a)| b - a).collect();
        let w = na * nbf / total;
        let d = self.dim;
        for j in 0..d {
            for i in 0..d {
                let v = self.scatter.read(i, j) + scatter_b.read(i, j) + w * delta[i] * delta[j];
                self.scatter.write(i, j, v);
            }
        }
        for (m, dl) in self.mean.iter_mut().zip(&delta) {
            *m += dl * nbf / total;
        }
        self.count += nb;
    }

    /// The mean and unbiased (N-1) covariance so far; needs at least two samples.
    pub fn finish(&self) -> Result<FeatureStats> {
        if self.count < 2 {
            return Err(MetricsError::TooFewSamples {
                what: "covariance".into(),
                needed: 2,
                got: self.count as usize,
            });
        }
        let d = self.dim;
        let denom = (self.count - 1) as f64;
        let mut sigma = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                // Symmetrize: the merge is symmetric in exact arithmetic only.
                sigma[i * d + j] =
                    0.5 * (self.scatter.read(i, j) + self.scatter.read(j, i)) / denom;
            }
        }
        check_finite("mu", &self.mean)?;
        check_finite("sigma", &sigma)?;
        // Not `FeatureStats::new`: a sum of outer products is symmetric (exactly, after the line above)
        // and positive semi-definite by construction, so its check (a d x d Cholesky) would only cost.
        Ok(FeatureStats {
            dim: d,
            mu: self.mean.clone(),
            sigma,
            num_samples: Some(self.count),
        })
    }
}

/// Fails unless the row-major `d x d` `sigma` is symmetric and positive semi-definite within
/// [`COVARIANCE_TOLERANCE`] times its largest absolute element; the error gives the numbers.
fn check_covariance(sigma: &[f64], d: usize) -> Result<()> {
    let scale = sigma.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if scale == 0.0 {
        return Ok(());
    }
    let tol = COVARIANCE_TOLERANCE * scale;
    let bad = |reason: String| MetricsError::NotCovariance {
        what: "sigma".into(),
        reason,
    };
    let mut worst = (0.0, 0, 0);
    for i in 0..d {
        for j in i + 1..d {
            let gap = (sigma[i * d + j] - sigma[j * d + i]).abs();
            if gap > worst.0 {
                worst = (gap, i, j);
            }
        }
    }
    let (gap, i, j) = worst;
    if gap > tol {
        return Err(bad(format!(
            "not symmetric: sigma[{i},{j}] = {} but sigma[{j},{i}] = {}, a difference of {gap:.3e} above \
             the tolerance {tol:.3e} ({COVARIANCE_TOLERANCE:e} times the largest |element| {scale:.3e})",
            sigma[i * d + j],
            sigma[j * d + i]
        )));
    }
    // A Cholesky factorization of sigma + tol I exists exactly when every eigenvalue of sigma is above
    // -tol (up to rounding far below tol): a d^3/3 check that the common case passes without the
    // several times dearer eigenvalues, which are computed only to decide and report a failure.
    let shifted = Mat::<f64>::from_fn(d, d, |i, j| {
        0.5 * (sigma[i * d + j] + sigma[j * d + i]) + if i == j { tol } else { 0.0 }
    });
    if shifted.cholesky(Side::Lower).is_ok() {
        return Ok(());
    }
    let symmetric = Mat::<f64>::from_fn(d, d, |i, j| 0.5 * (sigma[i * d + j] + sigma[j * d + i]));
    let eigs = symmetric.selfadjoint_eigenvalues(Side::Lower);
    let lo = eigs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = eigs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if lo >= -tol {
        return Ok(());
    }
    Err(bad(format!(
        "not positive semi-definite: smallest eigenvalue {lo:.3e} is below -{tol:.3e} \
         ({COVARIANCE_TOLERANCE:e} times the largest |element| {scale:.3e}); largest eigenvalue {hi:.3e}"
    )))
}
