//! Training-step throughput of ECT, EDM and iCT on the Fashion-MNIST-sized small SongUNet (28x28x1,
//! 32 channels, mult [1, 2, 2], 2 blocks, attention at 14: about 1.75M parameters), batch 64, on synthetic
//! data. Ignored by default (it takes minutes on CPU):
//! `cargo test -p ect-train --release --test bench_steps -- --ignored --nocapture`
//! (`ECT_BENCH_DEVICE=cuda` to run on a GPU, `ECT_BENCH_STEPS` to change the measured steps,
//! `ECT_BENCH_THREADS` to set libtorch's CPU threads).

use std::path::Path;

use ect_train::config::TrainConfig;
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

#[test]
#[ignore = "benchmark: minutes on CPU"]
fn step_throughput() {
    let device = std::env::var("ECT_BENCH_DEVICE").unwrap_or_else(|_| "cpu".into());
    let steps: u64 = std::env::var("ECT_BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_idx(&data, 512);
    println!("| objective | device | batch | images/s | data wait | peak RSS MiB |");
    println!("|---|---|---|---|---|---|");
    for objective in ["ect", "edm", "ict"] {
        let run = tmp.path().join(objective);
        let text = format!(
            r#"
seed = 0
device = "{device}"
threads = {threads}
iterations = {iters}
batch_size = 64
[data]
path = "{data}"
[network]
network = "ECMPrecond"
img_resolution = 28
img_channels = 1
model_type = "SongUNet"
model_channels = 32
channel_mult = [1, 2, 2]
num_blocks = 2
attn_resolutions = [14]
dropout = 0.1
[objective]
kind = "{objective}"
[schedule]
q = 256.0
[output]
run_dir = "{run}"
checkpoint_every = 0
sample_every = 0
log_every = {steps}
"#,
            iters = steps + 3,
            threads = std::env::var("ECT_BENCH_THREADS")
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
                .unwrap_or(0),
            data = data.display(),
            run = run.display(),
        );
        let cfg = TrainConfig::from_toml_str(&text, "<bench>", &[]).unwrap();
        // A 3-step warm-up, then one logging interval of `steps` steps is measured.
        let cfg = TrainConfig {
            iterations: 3,
            ..cfg
        };
        let mut cfg3 = cfg.clone();
        cfg3.output.log_every = 3;
        train(
            &cfg3,
            &RunOptions {
                quiet: true,
                ..Default::default()
            },
        )
        .unwrap();
        let s = ect_train::resume(
            &run,
            Some(steps + 3),
            &RunOptions {
                quiet: true,
                ..Default::default()
            },
        )
        .unwrap();
        let stats = std::fs::read_to_string(run.join("stats.jsonl")).unwrap();
        let last: serde_json::Value = serde_json::from_str(stats.lines().last().unwrap()).unwrap();
        println!(
            "| {objective} | {device} | 64 | {:.1} | {:.2}% | {:.0} |",
            last["images_per_sec"].as_f64().unwrap(),
            100.0 * last["data_wait_fraction"].as_f64().unwrap(),
            last["peak_rss_mib"].as_f64().unwrap_or(f64::NAN)
        );
        assert_eq!(s.steps, steps + 3);
        if objective == "edm" {
            raw_network_throughput(&cfg, steps);
        }
    }
}

/// The network alone: one training forward and backward at batch 64, no loop around it, to separate the
/// network's cost from the loop's.
fn raw_network_throughput(cfg: &TrainConfig, steps: u64) {
    use ect_train::loss::{Denoiser, Pass};
    use tch::{Kind, Tensor};
    let net_cfg = ect_train::net::Network::parse_config(&cfg.network).unwrap();
    let device = ect_train::config::parse_device(&cfg.device).unwrap();
    let net = ect_train::net::Network::new(&net_cfg, device).unwrap();
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
    use ect_train::loss::{Denoiser, Pass};
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
    let net_cfg = ect_train::net::Network::parse_config(&cfg.network).unwrap();
    let net = ect_train::net::Network::new(&net_cfg, tch::Device::Cpu).unwrap();
    let x = Tensor::randn([8, 1, 8, 8], (Kind::Float, tch::Device::Cpu));
    let sigma = Tensor::ones([8], (Kind::Float, tch::Device::Cpu));
    let mut opt = ect_train::optim::Optimizer::new(&net.vs, &cfg.optimizer);
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
