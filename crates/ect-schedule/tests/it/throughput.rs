//! A tiny performance check (this crate has no performance target): the per-step schedule math must
//! be negligible next to a network pass. Prints nanoseconds per call; the bounds are loose enough
//! for a busy, unoptimized test build.

use std::hint::black_box;
use std::time::Instant;

use ect_schedule::ict::IctConfig;
use ect_schedule::noise::seeded_rng;
use ect_schedule::recipe::EctLossConfig;

#[test]
fn per_sample_schedule_math_is_cheap() {
    let cfg = EctLossConfig::cifar10();
    let mut rng = seeded_rng(0);
    let n = 200_000u64;
    assert!(cfg.stage_at(n) <= 8);
    let start = Instant::now();
    let mut acc = 0.0;
    for i in 0..n {
        // Stages 0..=7: later stages make r round to t, where 1/(t - r) is infinite.
        let (t, r) = cfg.sample_pair(&mut rng, black_box(i));
        acc += cfg.sample_loss(black_box(0.37), t, r);
    }
    let ns = start.elapsed().as_nanos() as f64 / n as f64;
    println!("sample (t, r) + loss: {ns:.1} ns per sample");
    assert!(acc.is_finite() && acc > 0.0);
    assert!(ns < 20_000.0, "{ns} ns per sample");
}

#[test]
fn ict_probabilities_at_full_resolution_are_cheap() {
    let cfg = IctConfig::default();
    let reps = 200;
    let start = Instant::now();
    let mut total = 0.0;
    for _ in 0..reps {
        // k = 399,999: N = 1281, the largest discretization.
        total += cfg.probabilities(black_box(399_999)).unwrap()[640];
    }
    let us = start.elapsed().as_secs_f64() * 1e6 / f64::from(reps);
    println!("iCT probabilities, N = 1281: {us:.1} us per call");
    assert!(total > 0.0);
    assert!(us < 50_000.0, "{us} us per call");
}
