//! Kernel Inception Distance (Bińkowski et al. 2018): the unbiased MMD^2 estimate with the polynomial
//! kernel `k(x, y) = (x.y / d + 1)^3`, averaged over random subsets, as in StyleGAN2-ADA's
//! `metrics/kernel_inception_distance.py` (100 subsets of at most 1000 samples by default).

use faer::Mat;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{check_finite, MetricsError, Result};

/// How KID draws its subsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KidConfig {
    /// Number of subsets averaged.
    pub num_subsets: usize,
    /// Largest subset size (the smaller set's size if that is less).
    pub max_subset_size: usize,
    /// Seed of the subset sampler (ChaCha8).
    pub seed: u64,
}

impl Default for KidConfig {
    fn default() -> Self {
        Self {
            num_subsets: 100,
            max_subset_size: 1000,
            seed: 0,
        }
    }
}

/// KID estimate: mean and standard deviation of the per-subset unbiased MMD^2.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Kid {
    /// Mean over subsets (the reported KID).
    pub mean: f64,
    /// Population standard deviation over subsets.
    pub std: f64,
    /// Subset size used.
    pub subset_size: usize,
}

/// KID between row-major feature matrices `real` and `fake` of dimension `dim`.
pub fn kernel_inception_distance<T: Copy + Into<f64>>(
    real: &[T],
    fake: &[T],
    dim: usize,
    cfg: &KidConfig,
) -> Result<Kid> {
    let real = to_rows(real, dim, "real features")?;
    let fake = to_rows(fake, dim, "fake features")?;
    let m = real.nrows().min(fake.nrows()).min(cfg.max_subset_size);
    if m < 2 {
        return Err(MetricsError::TooFewSamples {
            what: "KID".into(),
            needed: 2,
            got: m,
        });
    }
    if cfg.num_subsets == 0 {
        return Err(MetricsError::arg("num_subsets", 0, "must be positive"));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let d = dim as f64;
    let kernel = |a: &Mat<f64>, b: &Mat<f64>| {
        let mut k = a * b.transpose();
        for j in 0..k.ncols() {
            for i in 0..k.nrows() {
                k.write(i, j, (k.read(i, j) / d + 1.0).powi(3));
            }
        }
        k
    };
    let sum_off_diag = |k: &Mat<f64>| {
        let mut s = 0.0;
        for j in 0..k.ncols() {
            for i in 0..k.nrows() {
                if i != j {
                    s += k.read(i, j);
                }
            }
        }
        s
    };
    // Capped: the subset count is a user's number, and reserving for 10^18 of them would abort.
    let mut values = Vec::with_capacity(cfg.num_subsets.min(1 << 16));
    for _ in 0..cfg.num_subsets {
        let x = subset(&fake, m, &mut rng);
        let y = subset(&real, m, &mut rng);
        let a = sum_off_diag(&kernel(&x, &x)) + sum_off_diag(&kernel(&y, &y));
        let kxy = kernel(&x, &y);
        let b: f64 = (0..m)
            .flat_map(|j| (0..m).map(move |i| (i, j)))
            .map(|(i, j)| kxy.read(i, j))
            .sum();
        let mf = m as f64;
        values.push((a / (mf - 1.0) - 2.0 * b / mf) / mf);
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64).sqrt();
    Ok(Kid {
        mean,
        std,
        subset_size: m,
    })
}

pub(crate) fn to_rows<T: Copy + Into<f64>>(x: &[T], dim: usize, what: &str) -> Result<Mat<f64>> {
    if dim == 0 || x.len() % dim != 0 {
        return Err(MetricsError::arg(
            "dim",
            dim,
            format!("does not divide the {} values of the {what}", x.len()),
        ));
    }
    let n = x.len() / dim;
    let values: Vec<f64> = x.iter().map(|&v| v.into()).collect();
    check_finite(what, &values)?;
    Ok(Mat::from_fn(n, dim, |i, j| values[i * dim + j]))
}

fn subset(x: &Mat<f64>, m: usize, rng: &mut ChaCha8Rng) -> Mat<f64> {
    let idx = rand::seq::index::sample(rng, x.nrows(), m).into_vec();
    Mat::from_fn(m, x.ncols(), |i, j| x.read(idx[i], j))
}
