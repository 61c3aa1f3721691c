//! Properties of the Fréchet distance and the accumulator that hold for any input.

use ect_metrics::{frechet_distance, FeatureStats, MetricsError, StatsAccumulator};
use proptest::prelude::*;

fn features(n: usize, d: usize) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(-10.0f64..10.0, n * d)
}

/// FD of two 1-d Gaussians has the closed form (m1-m2)^2 + (s1-s2)^2 in standard deviations.
#[test]
fn one_dimensional_closed_form() {
    let _torch = crate::torch();
    let a = FeatureStats::new(vec![1.0], vec![4.0]).unwrap();
    let b = FeatureStats::new(vec![-2.0], vec![9.0]).unwrap();
    let fd = frechet_distance(&a, &b).unwrap();
    assert!((fd - (9.0 + 1.0)).abs() < 1e-12, "{fd}");
}

/// Diagonal covariances: sum over dims of (m1-m2)^2 + (sqrt(v1)-sqrt(v2))^2, also with zero variances.
#[test]
fn diagonal_closed_form_with_zero_variances() {
    let _torch = crate::torch();
    let v1 = [0.0, 2.0, 5.0, 0.0];
    let v2 = [3.0, 0.0, 5.0, 0.0];
    let diag = |v: &[f64]| {
        let mut s = vec![0.0; 16];
        for i in 0..4 {
            s[i * 4 + i] = v[i];
        }
        s
    };
    let a = FeatureStats::new(vec![0.0, 1.0, 0.0, 0.0], diag(&v1)).unwrap();
    let b = FeatureStats::new(vec![0.0, 0.0, 0.0, 2.0], diag(&v2)).unwrap();
    let want: f64 = 1.0
        + 4.0
        + v1.iter()
            .zip(&v2)
            .map(|(x, y)| (x.sqrt() - y.sqrt()).powi(2))
            .sum::<f64>();
    let fd = frechet_distance(&a, &b).unwrap();
    assert!((fd - want).abs() < 1e-12, "{fd} vs {want}");
}

#[test]
fn bad_statistics_are_rejected() {
    let _torch = crate::torch();
    assert!(matches!(
        FeatureStats::new(vec![0.0; 3], vec![0.0; 8]),
        Err(MetricsError::DimMismatch { .. })
    ));
    let err = FeatureStats::new(vec![0.0, f64::NAN], vec![0.0; 4]).unwrap_err();
    assert!(err.to_string().contains("mu"), "{err}");
    let err = FeatureStats::new(vec![0.0; 2], vec![0.0, f64::INFINITY, 0.0, 0.0]).unwrap_err();
    assert!(err.to_string().contains("sigma"), "{err}");
    let a = FeatureStats::new(vec![0.0; 2], vec![1.0, 0.0, 0.0, 1.0]).unwrap();
    let b = FeatureStats::new(vec![0.0; 1], vec![1.0]).unwrap();
    assert!(matches!(
        frechet_distance(&a, &b),
        Err(MetricsError::DimMismatch { .. })
    ));
    let mut acc = StatsAccumulator::new(3).unwrap();
    assert!(acc.add_batch(&[1.0f64; 4]).is_err());
    acc.add_batch(&[1.0f64; 3]).unwrap();
    assert!(matches!(
        acc.finish(),
        Err(MetricsError::TooFewSamples { .. })
    ));
    assert!(acc.add_batch(&[1.0, f64::NAN, 0.0]).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Batching and merging give the statistics of the whole set.
    #[test]
    fn batched_equals_whole(x in features(23, 5), split in 1usize..22) {
        let whole = FeatureStats::from_features(&x, 5).unwrap();
        let mut a = StatsAccumulator::new(5).unwrap();
        a.add_batch(&x[..split * 5]).unwrap();
        let mut b = StatsAccumulator::new(5).unwrap();
        b.add_batch(&x[split * 5..]).unwrap();
        a.merge(&b).unwrap();
        let merged = a.finish().unwrap();
        for (p, q) in whole.sigma().iter().zip(merged.sigma()) {
            prop_assert!((p - q).abs() < 1e-9);
        }
        for (p, q) in whole.mu().iter().zip(merged.mu()) {
            prop_assert!((p - q).abs() < 1e-12);
        }
    }

    /// Parts pooled the way the processes of a data-parallel run pool them (sum of counts and of
    /// `count * mean`, then the sum of each part's scatter about the pooled mean) give the statistics of
    /// the whole set; an empty part (a process with nothing to score) changes nothing.
    #[test]
    fn parts_pooled_about_their_mean_equal_the_whole(
        x in features(23, 5),
        cut in (0usize..23, 0usize..23),
    ) {
        let whole = FeatureStats::from_features(&x, 5).unwrap();
        let (lo, hi) = (cut.0.min(cut.1), cut.0.max(cut.1));
        let parts: Vec<StatsAccumulator> = [&x[..lo * 5], &x[lo * 5..hi * 5], &x[hi * 5..]]
            .iter()
            .map(|rows| {
                let mut acc = StatsAccumulator::new(5).unwrap();
                acc.add_batch(rows).unwrap();
                acc
            })
            .collect();
        let count: u64 = parts.iter().map(StatsAccumulator::count).sum();
        let mean: Vec<f64> = (0..5)
            .map(|j| parts.iter().map(|p| p.count() as f64 * p.mean()[j]).sum::<f64>() / count as f64)
            .collect();
        let mut scatter = vec![0.0; 25];
        for p in &parts {
            for (s, v) in scatter.iter_mut().zip(p.scatter_about(&mean).unwrap()) {
                *s += v;
            }
        }
        let pooled = StatsAccumulator::from_parts(count, mean, &scatter).unwrap().finish().unwrap();
        prop_assert_eq!(pooled.num_samples(), Some(23));
        for (p, q) in whole.sigma().iter().zip(pooled.sigma()) {
            prop_assert!((p - q).abs() < 1e-9, "{} vs {}", p, q);
        }
        for (p, q) in whole.mu().iter().zip(pooled.mu()) {
            prop_assert!((p - q).abs() < 1e-12);
        }
    }

    /// FD is symmetric, non-negative (up to rounding) and zero on identical inputs, rank deficient or not.
    /// Rounding of the null eigenvalues (~eps * scale) becomes ~sqrt(eps) * scale after the square root,
    /// hence the 1e-6 relative tolerance.
    #[test]
    fn symmetric_nonnegative_zero_on_self(x in features(4, 6), y in features(9, 6)) {
        let a = FeatureStats::from_features(&x, 6).unwrap(); // rank <= 3 of 6
        let b = FeatureStats::from_features(&y, 6).unwrap();
        let scale: f64 = (0..6).map(|i| a.sigma()[i * 7] + b.sigma()[i * 7]).sum::<f64>() + 1.0;
        let ab = frechet_distance(&a, &b).unwrap();
        let ba = frechet_distance(&b, &a).unwrap();
        prop_assert!((ab - ba).abs() < 1e-6 * scale, "{} vs {}", ab, ba);
        prop_assert!(ab > -1e-6 * scale);
        prop_assert!(frechet_distance(&a, &a).unwrap().abs() < 1e-6 * scale);
    }

    /// Shifting one mean by v adds |v|^2.
    #[test]
    fn mean_shift_adds_squared_norm(x in features(12, 4), y in features(12, 4), v in prop::collection::vec(-3.0f64..3.0, 4)) {
        let a = FeatureStats::from_features(&x, 4).unwrap();
        let b = FeatureStats::from_features(&y, 4).unwrap();
        let shifted = FeatureStats::new(b.mu().iter().zip(&v).map(|(m, s)| m + s).collect(), b.sigma().to_vec()).unwrap();
        let base = frechet_distance(&a, &b).unwrap();
        let moved = frechet_distance(&a, &shifted).unwrap();
        let dm: f64 = a.mu().iter().zip(b.mu()).zip(&v).map(|((p, q), s)| (p - q - s).powi(2) - (p - q).powi(2)).sum();
        prop_assert!((moved - base - dm).abs() < 1e-8 * (1.0 + base.abs()));
    }
}
