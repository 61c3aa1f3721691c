//! Issue 15: statistics whose `sigma` is not a covariance (not symmetric, or not positive semi-definite
//! beyond `COVARIANCE_TOLERANCE`) are refused with the numbers, files name themselves, and a Fréchet
//! distance is never negative: exactly 0 for identical statistics.

use ect_metrics::stats::COVARIANCE_TOLERANCE;
use ect_metrics::{frechet_distance, load_stats_npz, save_stats_npz, FeatureStats, MetricsError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn identity(d: usize, s: f64) -> Vec<f64> {
    (0..d * d)
        .map(|k| if k % (d + 1) == 0 { s } else { 0.0 })
        .collect()
}

/// Statistics of `n` random `d`-dimensional features (rank `min(n - 1, d)`).
fn random_stats(n: usize, d: usize, seed: u64) -> FeatureStats {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let f: Vec<f64> = (0..n * d).map(|_| rng.gen_range(-2.0..3.0)).collect();
    FeatureStats::from_features(&f, d).unwrap()
}

#[test]
fn sigma_must_be_symmetric_and_positive_semi_definite() {
    let e = FeatureStats::new(vec![0.0; 3], identity(3, -1.0)).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, MetricsError::NotCovariance { .. })
            && msg.contains("not positive semi-definite")
            && msg.contains("smallest eigenvalue -1.000e0")
            && msg.contains("largest eigenvalue -1.000e0"),
        "{msg}"
    );
    // Eigenvalues 0.5 and -0.5.
    let e = FeatureStats::new(vec![0.0; 2], vec![0.0, 0.5, 0.5, 0.0]).unwrap_err();
    assert!(
        e.to_string().contains("smallest eigenvalue -5.000e-1"),
        "{e}"
    );
    let asym = vec![1.0, 0.5, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
    let msg = FeatureStats::new(vec![0.0; 3], asym)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("not symmetric") && msg.contains("sigma[0,1] = 0.5 but sigma[1,0] = 0"),
        "{msg}"
    );
    // Within the tolerance (relative to the largest element): accepted.
    let mut nearly = identity(2, 4.0);
    nearly[1] = 3.0 * COVARIANCE_TOLERANCE;
    FeatureStats::new(vec![0.0; 2], nearly).unwrap();
    let mut below = identity(2, 4.0);
    below[3] = -3.0 * COVARIANCE_TOLERANCE;
    FeatureStats::new(vec![0.0; 2], below).unwrap();
    let mut beyond = identity(2, 4.0);
    beyond[3] = -5.0 * COVARIANCE_TOLERANCE;
    assert!(FeatureStats::new(vec![0.0; 2], beyond).is_err());
    // All zeros (identical samples) is a covariance.
    FeatureStats::new(vec![1.0; 4], vec![0.0; 16]).unwrap();
}

/// Rank-deficient covariances (fewer samples than dimensions) have eigenvalues at rounding level on
/// either side of 0, and rounding every element to f32 (a statistics file saved as float32) moves them
/// by more: both stay far inside the tolerance.
#[test]
fn rank_deficient_and_float32_covariances_are_accepted() {
    for (n, d) in [(10, 64), (100, 512), (600, 512)] {
        let s = random_stats(n, d, n as u64);
        let f32_sigma: Vec<f64> = s.sigma().iter().map(|&v| f64::from(v as f32)).collect();
        FeatureStats::new(s.mu().to_vec(), f32_sigma).unwrap();
        FeatureStats::new(s.mu().to_vec(), s.sigma().to_vec()).unwrap();
    }
}

#[test]
fn a_file_with_a_bad_sigma_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("neg.npz");
    let mu = ect_metrics::npy::NpyArray::new(vec![2], ect_metrics::npy::NpyData::F64(vec![0.0; 2]))
        .unwrap();
    let sigma = ect_metrics::npy::NpyArray::new(
        vec![2, 2],
        ect_metrics::npy::NpyData::F64(identity(2, -1.0)),
    )
    .unwrap();
    ect_metrics::npz::write_npz(&path, &[("mu", &mu), ("sigma", &sigma)]).unwrap();
    let msg = load_stats_npz(&path).unwrap_err().to_string();
    assert!(
        msg.contains("neg.npz:sigma is not a covariance matrix: not positive semi-definite"),
        "{msg}"
    );
}

#[test]
fn frechet_distance_is_never_negative_and_zero_for_identical_statistics() {
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    for case in 0..12u64 {
        let (n, d) = [(8, 48), (40, 16), (300, 32)][case as usize % 3];
        let a = random_stats(n, d, case);
        // Identical statistics: exactly 0, also through a file.
        assert_eq!(
            frechet_distance(&a, &a).unwrap().to_bits(),
            0.0f64.to_bits()
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npz");
        save_stats_npz(&p, &a).unwrap();
        let back = load_stats_npz(&p).unwrap();
        assert_eq!(frechet_distance(&a, &back).unwrap().to_bits(), 0);
        // Statistics a rounding error apart: the terms cancel to rounding level either way (up to about
        // 1e-7 of the trace where both covariances are rank deficient), and the result is clamped at 0.
        let scale = 1.0 + rng.gen_range(-4.0..4.0) * f64::EPSILON;
        let b = FeatureStats::new(
            a.mu().iter().map(|m| m * (1.0 + f64::EPSILON)).collect(),
            a.sigma().iter().map(|s| s * scale).collect(),
        )
        .unwrap();
        let fd = frechet_distance(&a, &b).unwrap();
        let trace: f64 = (0..d).map(|i| a.sigma()[i * d + i]).sum();
        assert!(fd >= 0.0 && fd.is_sign_positive(), "case {case}: {fd}");
        assert!(
            fd <= 1e-6 * trace,
            "case {case}: {fd} of a trace of {trace}"
        );
    }
}
