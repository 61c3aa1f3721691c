//! Benchmarks: Fréchet distance of two 2048-d statistics (Inception's size; must stay under 3 s on 2
//! cores): full rank (statistics of 4096 samples: the Cholesky path), 1024 samples against a full-rank
//! reference (Cholesky of the reference), and both rank deficient (1024 samples each: the
//! eigendecomposition path); and
//! feature-extraction throughput of the built-in feature net on CPU (`examples/extract_throughput.rs` times
//! the TorchScript extractors, which are too slow on CPU for criterion's ten samples).
//!
//! `cargo bench -p ect-metrics --profile dev` reuses the test build (dependencies at opt-level 3).
//! The Inception and DINOv2 extractors need exported weights, which cannot be bundled; set
//! `ECT_INCEPTION_PT` / `ECT_DINOV2_PT` to exported files to include them.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ect_metrics::extract::featnet::FeatureNet;
use ect_metrics::extract::torchscript::TorchScriptExtractor;
use ect_metrics::{frechet_distance, FeatureExtractor, FeatureStats, ImageBatch};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Statistics of `n` random `d`-dimensional features with correlated coordinates.
fn random_stats(d: usize, n: usize, seed: u64) -> FeatureStats {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let base: Vec<f64> = (0..n * 64).map(|_| rng.gen::<f64>() - 0.5).collect();
    let mix: Vec<f64> = (0..64 * d).map(|_| rng.gen::<f64>() - 0.5).collect();
    let mut feats = vec![0.0f64; n * d];
    for i in 0..n {
        for k in 0..64 {
            let b = base[i * 64 + k];
            for j in 0..d {
                feats[i * d + j] += b * mix[k * d + j];
            }
        }
        for j in 0..d {
            feats[i * d + j] += 0.1 * (rng.gen::<f64>() - 0.5);
        }
    }
    FeatureStats::from_features(&feats, d).expect("valid features")
}

fn bench_fd(c: &mut Criterion) {
    let a = random_stats(2048, 4096, 1);
    let b = random_stats(2048, 4096, 2);
    let mut group = c.benchmark_group("frechet");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("fd_2048", |bench| {
        bench.iter(|| frechet_distance(black_box(&a), black_box(&b)).expect("fd"))
    });
    // 1024 samples against a full-rank reference: S1 has no Cholesky factor, S2 has (the roles swap).
    let (a, b) = (random_stats(2048, 1024, 3), b);
    group.bench_function("fd_2048_samples_rank_deficient", |bench| {
        bench.iter(|| frechet_distance(black_box(&a), black_box(&b)).expect("fd"))
    });
    // Both from 1024 samples of 2048-d features: rank at most 1023, so neither has a Cholesky factor.
    let b = random_stats(2048, 1024, 4);
    let s1 = faer::Mat::<f64>::from_fn(2048, 2048, |i, j| a.sigma()[i * 2048 + j]);
    assert!(
        s1.cholesky(faer::Side::Lower).is_err(),
        "the rank-deficient case must take the eigendecomposition path"
    );
    group.bench_function("fd_2048_rank_deficient", |bench| {
        bench.iter(|| frechet_distance(black_box(&a), black_box(&b)).expect("fd"))
    });
    group.finish();
}

fn bench_extractors(c: &mut Criterion) {
    tch::manual_seed(0);
    let mut group = c.benchmark_group("extract_cpu");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    let n = 256;
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let gray: Vec<u8> = (0..n * 28 * 28).map(|_| rng.gen()).collect();
    let net = FeatureNet::new(tch::Device::Cpu);
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function("featnet_28x28_batch256", |bench| {
        let batch = ImageBatch::new(&gray, n, 1, 28, 28).expect("batch");
        bench.iter(|| net.extract(&batch).expect("extract"))
    });
    let rgb: Vec<u8> = (0..64 * 3 * 32 * 32).map(|_| rng.gen()).collect();
    for (var, name) in [
        ("ECT_INCEPTION_PT", "inception_32x32_batch64"),
        ("ECT_DINOV2_PT", "dinov2_32x32_batch64"),
    ] {
        let Some(path) = std::env::var_os(var) else {
            continue;
        };
        let path = std::path::PathBuf::from(path);
        let ex = if var == "ECT_INCEPTION_PT" {
            TorchScriptExtractor::inception(&path, tch::Device::Cpu)
        } else {
            TorchScriptExtractor::dinov2(&path, tch::Device::Cpu)
        }
        .expect("load extractor");
        group.throughput(Throughput::Elements(64));
        group.bench_function(name, |bench| {
            let batch = ImageBatch::new(&rgb, 64, 3, 32, 32).expect("batch");
            bench.iter(|| ex.extract(&batch).expect("extract"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_fd, bench_extractors);
criterion_main!(benches);
