//! Training-step throughput of ECT, EDM and iCT on synthetic data, for the Fashion-MNIST-sized small
//! SongUNet (28x28x1, 32 channels, mult [1, 2, 2], 2 blocks, attention at 14: 1.75M parameters, batch
//! 64) and the CIFAR-10 networks DDPM++ and NCSN++ (32x32x3, 56M parameters, batch 8 by default).
//!
//! Each figure is what `ect train` does per step: [`Trainer::step`] (data, micro-batches, the objective's
//! loss, backward, the gradient path, optimizer and EMA) timed by the wall clock over `ECT_BENCH_STEPS`
//! steps after a warm-up, with no logging, sampling or checkpoints between them. Every measured step
//! must apply its update: a skipped step (non-finite loss) does no backward work in the optimizer and
//! EMA and would make the figure meaningless, so the benchmark fails on one.
//!
//! Ignored by default (minutes on CPU):
//! `cargo xtask cargo test -p ect-train --release --test it bench_steps -- --ignored --nocapture`
//! Environment: `ECT_BENCH_NETS` (comma-separated from `fmnist,ddpmpp,ncsnpp`; default `fmnist`),
//! `ECT_BENCH_OBJECTIVES` (default `ect,edm,ict`), `ECT_BENCH_DEVICE=cuda` to run on a GPU,
//! `ECT_BENCH_STEPS` (measured steps, default 10), `ECT_BENCH_WARMUP` (default 2), `ECT_BENCH_BATCH`
//! (the CIFAR networks' batch), `ECT_BENCH_THREADS` (libtorch's CPU threads; 1 on a busy machine).
//!
//! `sample_throughput` times one-step generation of the same networks (`ECT_BENCH_SAMPLE_BATCH`, default
//! the training batch).

use std::path::Path;

use std::time::Instant;

use ect_config::TrainConfig;
use ect_train::stats::{StepOutcome, StepReport};
use ect_train::trainer::Trainer;

fn write_idx(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut images = vec![0, 0, 8, 3];
    for d in [n as u32, 28, 28] {
        images.extend_from_slice(&d.to_be_bytes());
    }
    let mut state = 7u32;
    for _ in 0..n * 28 * 28 {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        images.push((state >> 24) as u8);
    }
    std::fs::write(dir.join("train-images-idx3-ubyte"), images).unwrap();
}

/// A folder of 32x32 RGB PNGs (the EDM dataset format without `dataset.json`).
fn write_pngs(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut state = 11u32;
    for i in 0..n {
        let img = image::RgbImage::from_fn(32, 32, |_, _| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            image::Rgb([(state >> 24) as u8, (state >> 16) as u8, (state >> 8) as u8])
        });
        img.save(dir.join(format!("img{i:05}.png"))).unwrap();
    }
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// `(data format, batch, [network] table)` of a benchmarked network.
fn network(name: &str, cifar_batch: u64) -> (&'static str, u64, String) {
    let song = |embedding: &str, encoder: &str, noise: u32, filter: &str| {
        format!(
            "network = \"ECMPrecond\"\nimg_resolution = 32\nimg_channels = 3\nmodel_type = \"SongUNet\"\n\
             embedding_type = \"{embedding}\"\nencoder_type = \"{encoder}\"\ndecoder_type = \"standard\"\n\
             channel_mult_noise = {noise}\nresample_filter = {filter}\nmodel_channels = 128\n\
             channel_mult = [2, 2, 2]\nnum_blocks = 4\nattn_resolutions = [16]\ndropout = 0.2\n"
        )
    };
    match name {
        "fmnist" => (
            "idx",
            64,
            "network = \"ECMPrecond\"\nimg_resolution = 28\nimg_channels = 1\nmodel_type = \"SongUNet\"\n\
             model_channels = 32\nchannel_mult = [1, 2, 2]\nnum_blocks = 2\nattn_resolutions = [14]\n\
             dropout = 0.1\n"
                .to_owned(),
        ),
        "ddpmpp" => ("folder", cifar_batch, song("positional", "standard", 1, "[1, 1]")),
        "ncsnpp" => (
            "folder",
            cifar_batch,
            song("fourier", "residual", 2, "[1, 3, 3, 1]"),
        ),
        other => panic!("ECT_BENCH_NETS: unknown network {other} (fmnist, ddpmpp, ncsnpp)"),
    }
}

#[test]
#[ignore = "benchmark: minutes on CPU"]
fn step_throughput() {
    let _torch = crate::torch();
    let device = std::env::var("ECT_BENCH_DEVICE").unwrap_or_else(|_| "cpu".into());
    let steps: u64 = env_or("ECT_BENCH_STEPS", 10);
    let warmup: u64 = env_or("ECT_BENCH_WARMUP", 2);
    let threads: usize = env_or("ECT_BENCH_THREADS", 0);
    let cifar_batch: u64 = env_or("ECT_BENCH_BATCH", 8);
    let nets = std::env::var("ECT_BENCH_NETS").unwrap_or_else(|_| "fmnist".into());
    let objectives = std::env::var("ECT_BENCH_OBJECTIVES").unwrap_or_else(|_| "ect,edm,ict".into());
    let tmp = tempfile::tempdir().unwrap();
    write_idx(&tmp.path().join("idx"), 512);
    write_pngs(&tmp.path().join("folder"), 64);
    println!("| network | objective | device | batch | images/s | s/step | data wait | mean loss | peak RSS MiB |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for net in nets.split(',') {
        let (format, batch, table) = network(net.trim(), cifar_batch);
        for objective in objectives.split(',').map(str::trim) {
            let run = tmp.path().join(format!("{net}-{objective}"));
            // EDM pretraining runs Adam (configs/fmnist-quick.toml, EDM's recipe). The ECT default,
            // RAdam, updates by momentum SGD without the adaptive scaling for its first steps; on
            // EDM's large from-scratch gradients that sends DDPM++ to NaN at step 6, and a skipped
            // step is no measurement.
            let optimizer = if objective == "edm" {
                "[optimizer]\nkind = \"adam\"\n"
            } else {
                ""
            };
            let text = format!(
                "seed = 0\ndevice = \"{device}\"\nthreads = {threads}\niterations = {total}\n\
                 batch_size = {batch}\n[data]\npath = \"{data}\"\nformat = \"{format}\"\n\
                 [network]\n{table}[objective]\nkind = \"{objective}\"\n[schedule]\nq = 256.0\n\
                 {optimizer}[output]\nrun_dir = \"{run}\"\ncheckpoint_every = 0\nsample_every = 0\n",
                total = warmup + steps,
                data = tmp.path().join(format).display(),
                run = run.display(),
            );
            let cfg = TrainConfig::from_toml_str(&text, "<bench>", &[]).unwrap();
            std::fs::create_dir_all(&run).unwrap();
            let mut trainer = Trainer::new(cfg, run, None).unwrap();
            for _ in 0..warmup {
                applied(trainer.step().unwrap());
            }
            let (mut wait, mut loss) = (0.0, 0.0);
            let start = Instant::now();
            for _ in 0..steps {
                let report = applied(trainer.step().unwrap());
                wait += report.data_wait;
                loss += report.loss;
            }
            let secs = start.elapsed().as_secs_f64();
            println!(
                "| {net} | {objective} | {device} | {batch} | {:.2} | {:.2} | {:.2}% | {:.4} | {:.0} |",
                (steps * batch) as f64 / secs,
                secs / steps as f64,
                100.0 * wait / secs,
                loss / steps as f64,
                ect_train::stats::peak_rss_mib().unwrap_or(f64::NAN)
            );
        }
    }
}

/// One-step generation throughput (`x = f(80 z, 80)`, no gradients, evaluation mode: what
/// `ect sample --steps 1` computes per batch, without the u8 conversion and the file) of the same
/// networks with their initial weights, over `ECT_BENCH_STEPS` batches of `ECT_BENCH_SAMPLE_BATCH`
/// (default: the training batch) after `ECT_BENCH_WARMUP`.
#[test]
#[ignore = "benchmark: minutes on CPU"]
fn sample_throughput() {
    let _torch = crate::torch();
    let device = std::env::var("ECT_BENCH_DEVICE").unwrap_or_else(|_| "cpu".into());
    let steps: u64 = env_or("ECT_BENCH_STEPS", 10);
    let warmup: u64 = env_or("ECT_BENCH_WARMUP", 2);
    let cifar_batch: u64 = env_or("ECT_BENCH_BATCH", 8);
    let nets = std::env::var("ECT_BENCH_NETS").unwrap_or_else(|_| "fmnist".into());
    if let Some(t) = std::env::var("ECT_BENCH_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&t: &i32| t > 0)
    {
        tch::set_num_threads(t);
    }
    println!("| network | objective | device | batch | images/s | s/batch |");
    println!("|---|---|---|---|---|---|");
    for net in nets.split(',') {
        let (format, train_batch, table) = network(net.trim(), cifar_batch);
        let batch: i64 = env_or("ECT_BENCH_SAMPLE_BATCH", train_batch as i64);
        let text = format!(
            "device = \"{device}\"\niterations = 1\nbatch_size = 8\n[data]\npath = \"/unused\"\n\
             format = \"{format}\"\n[network]\n{table}"
        );
        let cfg = TrainConfig::from_toml_str(&text, "<bench>", &[]).unwrap();
        let dev = ect_train::device::resolve(cfg.device).unwrap();
        let network = ect_train::net::Network::new(&cfg.network, dev).unwrap();
        let (c, res) = (cfg.network.img_channels(), cfg.network.img_resolution());
        let z = tch::Tensor::randn([batch, c, res, res], (tch::Kind::Float, dev));
        let generate = || {
            let x =
                ect_train::sampler::consistency_sample(&network, &z, None, &[80.0, 0.0], || {
                    unreachable!("one step draws no intermediate noise")
                });
            // Waits for the device, as writing the images does.
            assert!(x.abs().max().double_value(&[]).is_finite());
        };
        for _ in 0..warmup {
            generate();
        }
        let start = Instant::now();
        for _ in 0..steps {
            generate();
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "| {net} | sample | {device} | {batch} | {:.2} | {:.3} |",
            (steps as i64 * batch) as f64 / secs,
            secs / steps as f64
        );
    }
}

/// The report of a step that applied its update (the benchmark measures nothing else).
fn applied(report: StepReport) -> StepReport {
    assert_eq!(
        report.outcome,
        StepOutcome::Applied,
        "step {} was not applied (loss {}): the benchmark would time a step without its update",
        report.step,
        report.loss
    );
    assert!(report.loss.is_finite());
    report
}

/// The end-to-end test's tiny network (8x8, 8 channels) at micro-batch 8: loop vs network alone.
#[test]
#[ignore = "diagnostic timing"]
fn tiny_step_overhead() {
    let _torch = crate::torch();
    use ect_train::denoiser::{Denoiser, Pass};
    use tch::{Kind, Tensor};
    let text = r#"
device = "cpu"
[data]
path = "unused"
[network]
network = "ECMPrecond"
img_resolution = 8
img_channels = 1
model_type = "SongUNet"
model_channels = 8
channel_mult = [1, 2]
channel_mult_emb = 2
num_blocks = 1
attn_resolutions = [4]
dropout = 0.1
"#;
    let cfg = TrainConfig::from_toml_str(text, "<bench>", &[]).unwrap();
    let net = ect_train::net::Network::new(&cfg.network, tch::Device::Cpu).unwrap();
    let x = Tensor::randn([8, 1, 8, 8], (Kind::Float, tch::Device::Cpu));
    let sigma = Tensor::ones([8], (Kind::Float, tch::Device::Cpu));
    let mut opt = ect_train::optim::Optimizer::new(&net.vs, &cfg.optimizer).unwrap();
    if let Some(t) = std::env::var("ECT_BENCH_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        tch::set_num_threads(t);
    }
    let n = 50;
    let start = std::time::Instant::now();
    for _ in 0..n {
        let y = net.denoise(&x, &sigma, None, Pass::Train);
        y.square().mean(Kind::Float).backward();
    }
    let fwd_bwd = start.elapsed().as_secs_f64() / n as f64;
    let start = std::time::Instant::now();
    for _ in 0..n {
        opt.sanitize_grads(None);
        opt.step(1e-4);
    }
    let step = start.elapsed().as_secs_f64() / n as f64;
    println!(
        "tiny net: fwd+bwd {:.2} ms, sanitize+optimizer step {:.2} ms, {} tensors",
        fwd_bwd * 1e3,
        step * 1e3,
        opt.params().len()
    );
}
