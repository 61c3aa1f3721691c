//! Feature statistics pooled over the processes of a data-parallel run: each rank extracts the features
//! of its share of the images (`ect_metrics::score::Share`) into a running accumulator, and the pooled
//! accumulator is the one a single process would have built from every image, up to rounding. Used by
//! the periodic FD during training and by `ect metrics stats` under a launcher.

use ect_dist::{Dist, ReduceOp};
use ect_metrics::StatsAccumulator;

use crate::error::{Result, TrainError};

/// The feature statistics of every rank's part, pooled: two sums over the ranks, in float64 on the
/// host (Gloo, whatever the training device). The counts and `count * mean` give the pooled mean; then
/// each part's scatter matrix about that mean ([`StatsAccumulator::scatter_about`]) sums to the scatter
/// of the union. The result equals one process's statistics of all the features up to rounding. The
/// identity in one process.
pub fn pool_stats(local: StatsAccumulator, dist: &Dist) -> Result<StatsAccumulator> {
    if dist.world_size() == 1 {
        return Ok(local);
    }
    let reduce_err = |e| TrainError::external("pooling the feature statistics of the ranks", e);
    let metrics_err = |e: ect_metrics::MetricsError| TrainError::invalid("features", e.to_string());
    let n = local.count() as f64;
    let mut sums: Vec<f64> = std::iter::once(n)
        .chain(local.mean().iter().map(|m| n * m))
        .collect();
    dist.all_reduce_f64(&mut sums, ReduceOp::Sum)
        .map_err(reduce_err)?;
    let count = sums[0];
    let mean: Vec<f64> = sums[1..]
        .iter()
        .map(|s| if count > 0.0 { s / count } else { 0.0 })
        .collect();
    let mut scatter = local.scatter_about(&mean).map_err(metrics_err)?;
    dist.all_reduce_f64(&mut scatter, ReduceOp::Sum)
        .map_err(reduce_err)?;
    StatsAccumulator::from_parts(count.round() as u64, mean, &scatter).map_err(metrics_err)
}
