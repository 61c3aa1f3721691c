//! Training-step throughput of ECT, EDM and iCT (full loop: data, EMA, logging included) on synthetic
//! data, for the Fashion-MNIST-sized small SongUNet (28x28x1, 32 channels, mult [1, 2, 2], 2 blocks,
//! attention at 14: 1.75M parameters, batch 64) and the CIFAR-10 networks DDPM++ and NCSN++ (32x32x3,
//! 56M parameters, batch 8 by default). Ignored by default (minutes on CPU):
//! `cargo xtask cargo test -p ect-train --release --test bench_steps -- --ignored --nocapture`
//! Environment: `ECT_BENCH_NETS` (comma-separated from `fmnist,ddpmpp,ncsnpp`; default `fmnist`),
//! `ECT_BENCH_DEVICE=cuda` to run on a GPU, `ECT_BENCH_STEPS` (measured steps), `ECT_BENCH_BATCH` (the
//! CIFAR networks' batch), `ECT_BENCH_THREADS` (libtorch's CPU threads).

use std::path::Path;

use ect_config::TrainConfig;
use ect_train::{train, RunOptions};

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
    let steps: u64 = env_or("ECT_BENCH_STEPS", 20);
    let threads: usize = env_or("ECT_BENCH_THREADS", 0);
    let cifar_batch: u64 = env_or("ECT_BENCH_BATCH", 8);
    let nets = std::env::var("ECT_BENCH_NETS").unwrap_or_else(|_| "fmnist".into());
    let tmp = tempfile::tempdir().unwrap();
    write_idx(&tmp.path().join("idx"), 512);
    write_pngs(&tmp.path().join("folder"), 64);
    println!("| network | objective | device | batch | images/s | data wait | peak RSS MiB |");
    println!("|---|---|---|---|---|---|---|");
    for net in nets.split(',') {
        let (format, batch, table) = network(net.trim(), cifar_batch);
        for objective in ["ect", "edm", "ict"] {
            let run = tmp.path().join(format!("{net}-{objective}"));
            let text = format!(
                "seed = 0\ndevice = \"{device}\"\nthreads = {threads}\niterations = 3\nbatch_size = {batch}\n\
                 [data]\npath = \"{data}\"\nformat = \"{format}\"\n[network]\n{table}\
                 [objective]\nkind = \"{objective}\"\n[schedule]\nq = 256.0\n\
                 [output]\nrun_dir = \"{run}\"\ncheckpoint_every = 0\nsample_every = 0\nlog_every = 3\n",
                data = tmp.path().join(format).display(),
                run = run.display(),
            );
            let cfg = TrainConfig::from_toml_str(&text, "<bench>", &[]).unwrap();
            let quiet = RunOptions {
                quiet: true,
                ..Default::default()
            };
            // A 3-step warm-up, then one logging interval of `steps` steps is measured.
            train(&cfg, &quiet).unwrap();
            let mut resumed = ect_train::run_dir::read_config(&run).unwrap();
            resumed.output.log_every = steps;
            std::fs::write(
                run.join("config.json"),
                serde_json::to_vec_pretty(&resumed).unwrap(),
            )
            .unwrap();
            let s = ect_train::resume(
                &run,
                &ect_train::ResumeOptions {
                    iterations: Some(steps + 3),
                    ..Default::default()
                },
                &quiet,
            )
            .unwrap();
            assert_eq!(s.steps, steps + 3);
            let stats = std::fs::read_to_string(run.join("stats.jsonl")).unwrap();
            let last: serde_json::Value =
                serde_json::from_str(stats.lines().last().unwrap()).unwrap();
            println!(
                "| {net} | {objective} | {device} | {batch} | {:.2} | {:.2}% | {:.0} |",
                last["images_per_sec"].as_f64().unwrap(),
                100.0 * last["data_wait_fraction"].as_f64().unwrap(),
                last["peak_rss_mib"].as_f64().unwrap_or(f64::NAN)
            );
            if objective == "edm" && net == "fmnist" {
                raw_network_throughput(&cfg, steps);
            }
        }
    }
}

/// The network alone: one training forward and backward at batch 64, no loop around it, to separate the
/// network's cost from the loop's.
fn raw_network_throughput(cfg: &TrainConfig, steps: u64) {
    use ect_train::denoiser::{Denoiser, Pass};
    use tch::{Kind, Tensor};
    let device = ect_train::device::resolve(cfg.device).unwrap();
    let net = ect_train::net::Network::new(&cfg.network, device).unwrap();
    let x = Tensor::randn([64, 1, 28, 28], (Kind::Float, device));
    let sigma = Tensor::ones([64], (Kind::Float, device));
    let start = std::time::Instant::now();
    for _ in 0..steps {
        let y = net.denoise(&x, &sigma, None, Pass::Train);
        y.square().mean(Kind::Float).backward();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "| network fwd+bwd only | {} | 64 | {:.1} | - | - |",
        cfg.device,
        (64 * steps) as f64 / secs
    );
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
