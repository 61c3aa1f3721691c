//! Inception Score, KID and precision/recall on inputs with known answers.

use ect_metrics::{
    inception_score, kernel_inception_distance, precision_recall, KidConfig, MetricsError,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn gaussian(n: usize, d: usize, shift: f64, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n * d)
        .map(|_| {
            // Sum of uniforms: a cheap, seeded, roughly normal variate.
            (0..12).map(|_| rng.gen::<f64>()).sum::<f64>() - 6.0 + shift
        })
        .collect()
}

#[test]
fn is_of_uniform_logits_is_one() {
    let _torch = crate::torch();
    let logits = vec![0.25f32; 40 * 10];
    let s = inception_score(&logits, 10, 4).unwrap();
    assert!((s.mean - 1.0).abs() < 1e-12 && s.std < 1e-12, "{s:?}");
}

#[test]
fn is_of_confident_distinct_classes_is_the_class_count() {
    let _torch = crate::torch();
    // Each sample is certain of its class; classes are used equally within every split.
    let classes = 7;
    let n = 70;
    let mut logits = vec![-1e4f64; n * classes];
    for i in 0..n {
        logits[i * classes + i % classes] = 0.0;
    }
    let s = inception_score(&logits, classes, 10).unwrap();
    assert!((s.mean - classes as f64).abs() < 1e-9, "{s:?}");
    assert!(s.std < 1e-9);
}

#[test]
fn is_matches_hand_computed_value() {
    let _torch = crate::torch();
    // Two samples, two classes: p1 = (0.8, 0.2), p2 = (0.2, 0.8), marginal (0.5, 0.5).
    let l = (0.8f64 / 0.2).ln();
    let logits = [l, 0.0, 0.0, l];
    let kl = 0.8 * (0.8f64 / 0.5).ln() + 0.2 * (0.2f64 / 0.5).ln();
    let s = inception_score(&logits, 2, 1).unwrap();
    assert!((s.mean - kl.exp()).abs() < 1e-12, "{s:?} vs {}", kl.exp());
}

#[test]
fn is_rejects_bad_input() {
    let _torch = crate::torch();
    assert!(matches!(
        inception_score(&[0.0f32; 9], 2, 1),
        Err(MetricsError::InvalidArgument { .. })
    ));
    assert!(inception_score(&[0.0f32; 8], 2, 5).is_err());
    let err = inception_score(&[0.0, f64::NAN, 0.0, 0.0], 2, 1).unwrap_err();
    assert!(err.to_string().contains("logits"), "{err}");
}

#[test]
fn kid_is_about_zero_for_one_distribution_and_positive_for_shifted() {
    let _torch = crate::torch();
    let d = 16;
    let cfg = KidConfig {
        num_subsets: 20,
        max_subset_size: 100,
        seed: 1,
    };
    let a = gaussian(300, d, 0.0, 1);
    let b = gaussian(300, d, 0.0, 2);
    let same = kernel_inception_distance(&a, &b, d, &cfg).unwrap();
    assert_eq!(same.subset_size, 100);
    // Unbiased: fluctuates around 0 with a spread of the order of its std.
    assert!(same.mean.abs() < 3.0 * same.std.max(1e-3), "{same:?}");
    let c = gaussian(300, d, 1.0, 3);
    let shifted = kernel_inception_distance(&a, &c, d, &cfg).unwrap();
    assert!(
        shifted.mean > 10.0 * same.mean.abs() && shifted.mean > 0.1,
        "{shifted:?} vs {same:?}"
    );
    // Seeded: the same config gives the same number.
    assert_eq!(kernel_inception_distance(&a, &c, d, &cfg).unwrap(), shifted);
}

#[test]
fn kid_of_identical_full_sets_matches_closed_form() {
    let _torch = crate::torch();
    // With one subset holding every sample of two identical sets, MMD^2_u = (2 S_off/(m-1) - 2 S_all/m)/m
    // where S_off sums k over i != j and S_all over all pairs: = 2 (S_off/(m-1) - (S_off + S_diag)/m) / m.
    let d = 3;
    let x = gaussian(5, d, 0.5, 9);
    let cfg = KidConfig {
        num_subsets: 1,
        max_subset_size: 5,
        seed: 0,
    };
    let kid = kernel_inception_distance(&x, &x, d, &cfg).unwrap();
    let k = |i: usize, j: usize| {
        ((0..d).map(|c| x[i * d + c] * x[j * d + c]).sum::<f64>() / d as f64 + 1.0).powi(3)
    };
    let (mut off, mut diag) = (0.0, 0.0);
    for i in 0..5 {
        for j in 0..5 {
            if i == j {
                diag += k(i, j)
            } else {
                off += k(i, j)
            }
        }
    }
    let want = 2.0 * (off / 4.0 - (off + diag) / 5.0) / 5.0;
    assert!(
        (kid.mean - want).abs() < 1e-10 * want.abs().max(1.0),
        "{} vs {want}",
        kid.mean
    );
}

#[test]
fn precision_recall_of_identical_sets_is_one() {
    let _torch = crate::torch();
    let x = gaussian(200, 8, 0.0, 4);
    let pr = precision_recall(&x, &x, 8, 3).unwrap();
    assert_eq!((pr.precision, pr.recall), (1.0, 1.0));
}

#[test]
fn precision_recall_detects_missing_modes_and_outliers() {
    let _torch = crate::torch();
    // Real: two clusters; fake: only the first cluster, plus far-away junk.
    let d = 2;
    let real: Vec<f64> = gaussian(100, d, 0.0, 5)
        .into_iter()
        .chain(gaussian(100, d, 50.0, 6))
        .collect();
    let fake: Vec<f64> = gaussian(150, d, 0.0, 7)
        .into_iter()
        .chain(gaussian(50, d, -80.0, 8))
        .collect();
    let pr = precision_recall(&real, &fake, d, 3).unwrap();
    // Junk (a quarter of the fake set) is outside the real manifold; the second real cluster is not covered.
    assert!(pr.precision <= 0.75 + 1e-12 && pr.precision > 0.6, "{pr:?}");
    assert!(pr.recall <= 0.5 + 1e-12 && pr.recall > 0.4, "{pr:?}");
}

#[test]
fn precision_recall_and_kid_reject_bad_input() {
    let _torch = crate::torch();
    assert!(matches!(
        precision_recall(&[0.0f64; 6], &[0.0f64; 6], 2, 3),
        Err(MetricsError::TooFewSamples { .. })
    ));
    assert!(precision_recall(&[0.0f64; 7], &[0.0f64; 8], 2, 3).is_err());
    let cfg = KidConfig::default();
    assert!(kernel_inception_distance(&[0.0f64; 2], &[0.0f64; 4], 2, &cfg).is_err());
    assert!(
        kernel_inception_distance(&[0.0, f64::INFINITY, 0.0, 0.0], &[0.0f64; 4], 2, &cfg).is_err()
    );
}
