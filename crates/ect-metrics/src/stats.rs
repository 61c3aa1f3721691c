//! Mean and covariance of features, accumulated in f64 over batches without keeping the features.
//!
//! Batches are merged with Chan et al.'s pairwise update (each batch is centred on its own mean before
//! the outer products are summed), which avoids the cancellation of the textbook `E[xx^T] - mu mu^T`
//! that EDM's `calculate_metrics.py` uses; both give the unbiased (N-1) covariance of `np.cov`.

use faer::Mat;

use crate::error::{check_finite, MetricsError, Result};

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
    /// sizes and non-finite values.
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
        Ok(FeatureStats::new(self.mean.clone(), sigma)?.with_num_samples(self.count))
    }
}
