//! Inception Score (Salimans et al. 2016) from classifier logits, computed like StyleGAN2-ADA's
//! `metrics/inception_score.py` (which EDM-era papers report): `exp(E_x KL(p(y|x) || p(y)))` on each of
//! `splits` consecutive parts, then the mean and the population standard deviation over parts.

use serde::{Deserialize, Serialize};

use crate::error::{MetricsError, Result};

/// Mean and standard deviation of the Inception Score over splits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct InceptionScore {
    /// Mean over splits.
    pub mean: f64,
    /// Population standard deviation over splits (`np.std`).
    pub std: f64,
}

/// Inception Score of row-major `n x classes` logits (or log-probabilities: the softmax is shift
/// invariant per row, so `log p` gives the same score as the logits that produced `p`).
pub fn inception_score<T: Copy + Into<f64>>(
    logits: &[T],
    classes: usize,
    splits: usize,
) -> Result<InceptionScore> {
    if classes == 0 || logits.len() % classes != 0 {
        return Err(MetricsError::arg(
            "classes",
            classes,
            format!("does not divide the {} logits", logits.len()),
        ));
    }
    let n = logits.len() / classes;
    if splits == 0 || splits > n {
        return Err(MetricsError::arg(
            "splits",
            splits,
            format!("must be in 1..={n} (the number of samples)"),
        ));
    }
    // log-softmax in f64, row by row.
    let mut logp = Vec::with_capacity(logits.len());
    for (row_index, row) in logits.chunks_exact(classes).enumerate() {
        let row: Vec<f64> = row.iter().map(|&v| v.into()).collect();
        if let Some(j) = row.iter().position(|v| !v.is_finite()) {
            return Err(MetricsError::NonFinite {
                what: "logits".into(),
                index: row_index * classes + j,
                value: row[j],
            });
        }
        let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
        logp.extend(row.iter().map(|v| v - lse));
    }
    let mut scores = Vec::with_capacity(splits);
    for s in 0..splits {
        let (lo, hi) = (s * n / splits, (s + 1) * n / splits);
        let part = &logp[lo * classes..hi * classes];
        let m = (hi - lo) as f64;
        let mut marginal = vec![0.0; classes];
        for row in part.chunks_exact(classes) {
            for (acc, &lp) in marginal.iter_mut().zip(row) {
                *acc += lp.exp();
            }
        }
        let log_marginal: Vec<f64> = marginal.iter().map(|p| (p / m).ln()).collect();
        let mut kl = 0.0;
        for row in part.chunks_exact(classes) {
            for (&lp, &lm) in row.iter().zip(&log_marginal) {
                let p = lp.exp();
                if p > 0.0 {
                    kl += p * (lp - lm);
                }
            }
        }
        scores.push((kl / m).exp());
    }
    let mean = scores.iter().sum::<f64>() / splits as f64;
    let std = (scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / splits as f64).sqrt();
    Ok(InceptionScore { mean, std })
}
