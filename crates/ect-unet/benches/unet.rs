//! CPU throughput (images/s) of the networks ECT tunes:
//! (a) DDPM++ CIFAR-10 (55.7M parameters) at batch 8, (b) a small SongUNet (32 channels, mult [1,2,2],
//! 4 blocks, attention at 16, 32x32x3) at batch 32. For each: evaluation forward, training
//! forward+backward (dropout recorded), and the network part of an ECT step (student forward+backward
//! with recorded dropout, teacher forward with replayed dropout, no optimizer).
//! Also micro-benchmarks of the alternatives considered for the layers: `[1,1]` resampling as pooling vs the
//! reference's depthwise convolution, and fused vs explicit attention.
//!
//! `cargo bench -p ect-unet --bench unet` (set `ECT_BENCH_CUDA=1` to run on CUDA when present).

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ect_unet::{CoeffMode, DropoutMode, MaskTape, NetworkConfig, Precond, SongUNetConfig};
use std::time::Duration;
use tch::{nn::VarStore, Device, Kind, Tensor};

fn device() -> Device {
    if std::env::var_os("ECT_BENCH_CUDA").is_some() {
        Device::cuda_if_available()
    } else {
        Device::Cpu
    }
}

fn small_songunet() -> NetworkConfig {
    let model = SongUNetConfig {
        model_channels: 32,
        channel_mult: vec![1, 2, 2],
        num_blocks: 4,
        attn_resolutions: vec![16],
        dropout: 0.2,
        ..SongUNetConfig::default()
    };
    NetworkConfig::Ecm(ect_unet::EcmConfig::new(
        32,
        3,
        0,
        ect_unet::ModelConfig::SongUNet(model),
    ))
}

fn bench_network(c: &mut Criterion, name: &str, cfg: &NetworkConfig, batch: i64) {
    let dev = device();
    tch::manual_seed(0);
    let vs = VarStore::new(dev);
    let net = Precond::new(&vs.root(), cfg).expect("valid preset");
    let x0 = Tensor::randn([batch, 3, 32, 32], (Kind::Float, dev)).clamp(-1.0, 1.0);
    let eps = Tensor::randn([batch, 3, 32, 32], (Kind::Float, dev));
    let t = (Tensor::randn([batch], (Kind::Float, dev)) * 2.0 - 1.1).exp();
    let r = &t * 0.9;
    let x_t = &x0 + &eps * t.reshape([-1, 1, 1, 1]);
    let x_r = &x0 + &eps * r.reshape([-1, 1, 1, 1]);
    let tape = MaskTape::new();
    let sync = || {
        if let Device::Cuda(i) = dev {
            tch::Cuda::synchronize(i as i64);
        }
    };

    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Elements(batch as u64));
    g.bench_function("forward_eval", |b| {
        b.iter(|| {
            let y = tch::no_grad(|| net.forward(&x_t, &t, None, CoeffMode::Eval, DropoutMode::Off));
            sync();
            y
        })
    });
    g.bench_function("forward_backward", |b| {
        b.iter(|| {
            let y = net.forward(&x_t, &t, None, CoeffMode::Train, DropoutMode::Record(&tape));
            y.square().mean(Kind::Float).backward();
            sync();
        })
    });
    g.bench_function("ect_step_network", |b| {
        b.iter(|| {
            let d_t = net.forward(&x_t, &t, None, CoeffMode::Train, DropoutMode::Record(&tape));
            let d_r = tch::no_grad(|| {
                net.forward(&x_r, &r, None, CoeffMode::Train, DropoutMode::Replay(&tape))
            });
            let loss = (d_t - d_r)
                .square()
                .sum_dim_intlist(&[1i64, 2, 3][..], false, Kind::Float)
                .sqrt()
                .mean(Kind::Float);
            loss.backward();
            sync();
        })
    });
    g.finish();
}

fn networks(c: &mut Criterion) {
    bench_network(
        c,
        "ddpmpp_cifar10_b8",
        &NetworkConfig::ddpmpp_cifar10(0.2),
        8,
    );
    bench_network(c, "small_songunet_b32", &small_songunet(), 32);
}

/// The reference's `[1,1]` resampling (depthwise (transposed) convolution) against the pooling kernels
/// libtorch also offers, at DDPM++'s 32x32x256 activations, batch 8.
fn resampling(c: &mut Criterion) {
    let x = Tensor::randn([8, 256, 32, 32], (Kind::Float, Device::Cpu));
    let w = Tensor::full([256, 1, 2, 2], 0.25, (Kind::Float, Device::Cpu));
    let mut g = c.benchmark_group("resample_1x1_filter");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    g.bench_function(BenchmarkId::new("down", "depthwise_conv"), |b| {
        b.iter(|| x.conv2d(&w, None::<Tensor>, [2, 2], [0, 0], [1, 1], 256))
    });
    g.bench_function(BenchmarkId::new("down", "avg_pool"), |b| {
        b.iter(|| x.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>))
    });
    let w4 = &w * 4.0;
    let xs = x.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>);
    g.bench_function(BenchmarkId::new("up", "conv_transpose"), |b| {
        b.iter(|| xs.conv_transpose2d(&w4, None::<Tensor>, [2, 2], [0, 0], [0, 0], 256, [1, 1]))
    });
    g.bench_function(BenchmarkId::new("up", "nearest"), |b| {
        b.iter(|| xs.upsample_nearest2d([32, 32], None::<f64>, None::<f64>))
    });
    g.finish();
}

/// The reference's attention (`einsum` + softmax) against libtorch's fused kernel (the layers use the explicit form), at DDPM++'s
/// 16x16x256 attention, batch 8, forward+backward.
fn attention(c: &mut Criterion) {
    let opts = (Kind::Float, Device::Cpu);
    let q = Tensor::randn([8, 256, 256], opts).set_requires_grad(true);
    let k = Tensor::randn([8, 256, 256], opts).set_requires_grad(true);
    let v = Tensor::randn([8, 256, 256], opts).set_requires_grad(true);
    let mut g = c.benchmark_group("attention_16x16x256_b8_fwd_bwd");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    g.bench_function("explicit_bmm_softmax", |b| {
        b.iter(|| {
            let w = q.transpose(1, 2).bmm(&(&k / 16.0)).softmax(2, Kind::Float);
            v.bmm(&w.transpose(1, 2)).sum(Kind::Float).backward();
        })
    });
    g.bench_function("fused_sdpa", |b| {
        b.iter(|| {
            ect_unet::layers::attention_fused(&q, &k, &v)
                .sum(Kind::Float)
                .backward()
        })
    });
    g.finish();
}

criterion_group!(benches, networks, resampling, attention);
criterion_main!(benches);
