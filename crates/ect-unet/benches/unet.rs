//! CPU throughput (images/s) of the networks ECT tunes:
//! (a) DDPM++ CIFAR-10 (55.7M parameters) at batch 8, (b) a small SongUNet (32 channels, mult [1,2,2],
//! 4 blocks, attention at 16, 32x32x3) at batch 32. For each: evaluation forward, training
//! forward+backward (dropout recorded), and the network part of an ECT step (student forward+backward
//! with recorded dropout, teacher forward with replayed dropout, no optimizer).
//! Before each network's timings it prints the peak memory of one pass of each kind (peak RSS above the
//! RSS before the pass, Linux only).
//! Also micro-benchmarks of the alternatives considered for the layers: `[1,1]` resampling as pooling vs the
//! reference's depthwise convolution (forward+backward), and fused vs explicit attention.
//!
//! `cargo bench -p ect-unet --bench unet` (set `ECT_BENCH_CUDA=1` to run on CUDA when present).

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
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

/// A network with one batch of ECT inputs.
struct Setup {
    dev: Device,
    net: Precond,
    _vs: VarStore,
    x_t: Tensor,
    t: Tensor,
    x_r: Tensor,
    r: Tensor,
    tape: MaskTape,
}

/// The benchmarked networks: (group name, config, batch).
fn network_cases() -> [(&'static str, NetworkConfig, i64); 2] {
    [
        ("ddpmpp_cifar10_b8", NetworkConfig::ddpmpp_cifar10(0.2), 8),
        ("small_songunet_b32", small_songunet(), 32),
    ]
}

/// The timed passes of each network.
const PASSES: [&str; 3] = ["forward_eval", "forward_backward", "ect_step_network"];

impl Setup {
    fn new(cfg: &NetworkConfig, batch: i64) -> Self {
        let dev = device();
        tch::manual_seed(0);
        let vs = VarStore::new(dev);
        let cfg = cfg.clone().validated().expect("valid preset");
        let net = Precond::new(&vs.root(), &cfg).expect("valid preset");
        let x0 = Tensor::randn([batch, 3, 32, 32], (Kind::Float, dev)).clamp(-1.0, 1.0);
        let eps = Tensor::randn([batch, 3, 32, 32], (Kind::Float, dev));
        let t = (Tensor::randn([batch], (Kind::Float, dev)) * 2.0 - 1.1).exp();
        let r = &t * 0.9;
        let x_t = &x0 + &eps * t.reshape([-1, 1, 1, 1]);
        let x_r = &x0 + &eps * r.reshape([-1, 1, 1, 1]);
        Setup {
            dev,
            net,
            _vs: vs,
            x_t,
            t,
            x_r,
            r,
            tape: MaskTape::new(),
        }
    }

    /// One pass of kind `pass` (one of [`PASSES`]), waiting for the device.
    fn run(&self, pass: &str) {
        let (net, tape) = (&self.net, &self.tape);
        // The training-mode pass at `t` that records dropout masks (the student's, in an ECT step).
        let student = || {
            net.forward(
                &self.x_t,
                &self.t,
                None,
                CoeffMode::Train,
                DropoutMode::Record(tape),
            )
        };
        match pass {
            "forward_eval" => {
                let _ = tch::no_grad(|| {
                    net.forward(&self.x_t, &self.t, None, CoeffMode::Eval, DropoutMode::Off)
                });
            }
            "forward_backward" => {
                student().square().mean(Kind::Float).backward();
            }
            "ect_step_network" => {
                let d_t = student();
                let d_r = tch::no_grad(|| {
                    net.forward(
                        &self.x_r,
                        &self.r,
                        None,
                        CoeffMode::Train,
                        DropoutMode::Replay(tape),
                    )
                });
                let loss = (d_t - d_r)
                    .square()
                    .sum_dim_intlist(&[1i64, 2, 3][..], false, Kind::Float)
                    .sqrt()
                    .mean(Kind::Float);
                loss.backward();
            }
            other => panic!("unknown pass {other}"),
        }
        if let Device::Cuda(i) = self.dev {
            tch::Cuda::synchronize(i as i64);
        }
    }
}

fn bench_network(c: &mut Criterion, name: &str, cfg: &NetworkConfig, batch: i64) {
    let setup = Setup::new(cfg, batch);
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Elements(batch as u64));
    for pass in PASSES {
        g.bench_function(pass, |b| b.iter(|| setup.run(pass)));
    }
    g.finish();
}

/// `/proc/self/status` field `key` (`VmRSS:`, `VmHWM:`) in MiB.
fn status_mib(key: &str) -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Child-process side of [`report_peak_memory`]: builds the network and inputs, then runs one pass of
/// `spec` (`group/pass`) and prints the process's peak RSS and its growth during the pass.
fn peak_memory_child(spec: &str) {
    let (group, pass) = spec.split_once('/').expect("group/pass");
    let (_, cfg, batch) = network_cases()
        .into_iter()
        .find(|(n, _, _)| *n == group)
        .expect("known group");
    let setup = Setup::new(&cfg, batch);
    let before = status_mib("VmRSS:").unwrap_or(f64::NAN);
    setup.run(pass);
    let peak = status_mib("VmHWM:").unwrap_or(f64::NAN);
    println!(
        "{spec}: peak RSS {peak:.0} MiB, {:.0} MiB above the {before:.0} MiB of the built network and inputs",
        peak - before
    );
}

/// Peak memory of one pass of each kind, each in a fresh process (a process that already ran a larger
/// pass keeps the freed memory mapped, which would hide the next pass's needs). Linux only (reads
/// `/proc/self/status`); on CUDA the figure is host memory.
fn report_peak_memory(group: &str) {
    let exe = std::env::current_exe().expect("bench executable");
    for pass in PASSES {
        let spec = format!("{group}/{pass}");
        match std::process::Command::new(&exe)
            .env(PEAK_ENV, &spec)
            .output()
        {
            Ok(out) if out.status.success() => eprint!("{}", String::from_utf8_lossy(&out.stdout)),
            Ok(out) => eprintln!(
                "{spec}: peak memory run failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("{spec}: peak memory run failed: {e}"),
        }
    }
}

/// Environment variable that turns the bench executable into a one-pass peak-memory child.
const PEAK_ENV: &str = "ECT_BENCH_PEAK_ONE";

fn networks(c: &mut Criterion) {
    for (name, cfg, batch) in network_cases() {
        if !selected(name) {
            continue;
        }
        report_peak_memory(name);
        bench_network(c, name, &cfg, batch);
    }
}

/// Whether the command line's criterion filter (its non-numeric positional arguments) can match
/// benchmarks of `group`, and the run measures: building a network and the peak-memory children are
/// skipped for `--list` / `--test` runs and for groups the filter excludes.
fn selected(group: &str) -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list" || a == "--test") {
        return false;
    }
    let filters: Vec<&String> = args
        .iter()
        .filter(|a| !a.starts_with('-') && a.parse::<f64>().is_err())
        .collect();
    filters.is_empty()
        || filters
            .iter()
            .any(|f| group.contains(f.as_str()) || f.contains(group))
}

/// The reference's `[1,1]` resampling (depthwise (transposed) convolution) against the pooling kernels
/// libtorch also offers, forward+backward (the input requires a gradient, as activations do in
/// training), at DDPM++'s 32x32x256 activations, batch 8, and the small SongUNet's 32x32x32, batch 32.
fn resampling(c: &mut Criterion) {
    for (label, n, ch) in [
        ("ddpmpp_b8_256ch", 8i64, 256i64),
        ("small_b32_32ch", 32, 32),
    ] {
        let opts = (Kind::Float, Device::Cpu);
        let x = Tensor::randn([n, ch, 32, 32], opts).set_requires_grad(true);
        let xs = Tensor::randn([n, ch, 16, 16], opts).set_requires_grad(true);
        let w = Tensor::full([ch, 1, 2, 2], 0.25, opts);
        let w4 = &w * 4.0;
        let mut g = c.benchmark_group(format!("resample_1x1_filter_fwd_bwd/{label}"));
        g.sample_size(20)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(2));
        g.bench_function(BenchmarkId::new("down", "depthwise_conv"), |b| {
            b.iter(|| {
                x.conv2d(&w, None::<Tensor>, [2, 2], [0, 0], [1, 1], ch)
                    .sum(Kind::Float)
                    .backward()
            })
        });
        g.bench_function(BenchmarkId::new("down", "avg_pool"), |b| {
            b.iter(|| {
                x.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>)
                    .sum(Kind::Float)
                    .backward()
            })
        });
        g.bench_function(BenchmarkId::new("up", "conv_transpose"), |b| {
            b.iter(|| {
                xs.conv_transpose2d(&w4, None::<Tensor>, [2, 2], [0, 0], [0, 0], ch, [1, 1])
                    .sum(Kind::Float)
                    .backward()
            })
        });
        g.bench_function(BenchmarkId::new("up", "nearest"), |b| {
            b.iter(|| {
                xs.upsample_nearest2d([32, 32], None::<f64>, None::<f64>)
                    .sum(Kind::Float)
                    .backward()
            })
        });
        g.finish();
    }
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

// `criterion_main!` plus the peak-memory child mode.
fn main() {
    if let Ok(spec) = std::env::var(PEAK_ENV) {
        peak_memory_child(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
