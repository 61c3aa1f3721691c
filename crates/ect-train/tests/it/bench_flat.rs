//! Optimizer + EMA + gradient handling per step for DDPM++ (CIFAR-10, 56M parameters in about 300
//! tensors): the per-tensor loops this crate had before the flat path (`optim.rs`/`ema.rs` at commit
//! ec05e11, reproduced op for op below) against the flat buffers ([`ect_train::flat`]). Ignored by default:
//! `cargo test -p ect-train --release --test it bench_flat -- --ignored --nocapture`
//! Environment: `ECT_BENCH_DEVICE=cuda` to run on a GPU, `ECT_BENCH_ITERS` (default 5), `ECT_BENCH_THREADS`.

use std::time::Instant;

use ect_config::train::{EmaConfig, OptimizerConfig};
use ect_config::ValidNetworkConfig;
use ect_train::ema::Ema;
use ect_train::net::Network;
use ect_train::optim::Optimizer;
use tch::{Device, Kind, Tensor};

/// One step of the per-tensor path: sanitise each gradient, Adam on each parameter, EMA of each variable.
fn loop_step(
    params: &mut [(String, Tensor)],
    moments: &mut [(Tensor, Tensor)],
    shadows: &mut [(Tensor, Tensor)],
    step: f64,
) {
    let (beta1, beta2, eps, lr) = (0.9, 0.999, 1e-8, 1e-4);
    tch::no_grad(|| {
        for (_, p) in params.iter() {
            let _ = p.grad().nan_to_num_(0.0, 1e5, -1e5);
        }
        let (bc1, bc2) = (1.0 - f64::powf(beta1, step), 1.0 - f64::powf(beta2, step));
        for ((_, p), (m, v)) in params.iter_mut().zip(moments.iter_mut()) {
            let grad = p.grad();
            let _ = m.lerp_(&grad, 1.0 - beta1);
            let _ = v.g_mul_scalar_(beta2);
            let _ = v.g_add_(&(&grad * (1.0 - beta2) * &grad));
            let denom = v.sqrt() / bc2.sqrt() + eps;
            let _ = p.g_add_(&(&*m * (-lr / bc1) / denom));
        }
        for (shadow, p) in shadows.iter_mut() {
            shadow.copy_(&p.detach().lerp(shadow, 0.9999));
        }
    });
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

#[test]
#[ignore = "benchmark: about a minute on CPU"]
fn optimizer_ema_and_gradients_per_step() {
    let _torch = crate::torch();
    let device = match std::env::var("ECT_BENCH_DEVICE").as_deref() {
        Ok("cuda") => Device::Cuda(0),
        _ => Device::Cpu,
    };
    if let Some(t) = std::env::var("ECT_BENCH_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        tch::set_num_threads(t);
    }
    let iters: usize = std::env::var("ECT_BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let cfg = ValidNetworkConfig::ddpmpp_cifar10(0.2);
    let fill_grads = |params: &[(String, Tensor)]| {
        for (_, p) in params {
            // d(sum(p * g))/dp = g: populates .grad the way backward does.
            (p * p.randn_like()).sum(Kind::Float).backward();
        }
    };

    // Before: separate tensors, loops.
    let net = Network::new(&cfg, device).unwrap();
    let mut params: Vec<(String, Tensor)> = net
        .vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let numel: i64 = params.iter().map(|(_, p)| p.numel() as i64).sum();
    let mut moments: Vec<(Tensor, Tensor)> = params
        .iter()
        .map(|(_, p)| (p.zeros_like(), p.zeros_like()))
        .collect();
    let mut shadows: Vec<(Tensor, Tensor)> = net
        .vs
        .variables()
        .into_values()
        .map(|t| (t.detach().copy(), t))
        .collect();
    fill_grads(&params);
    let mut before = Vec::new();
    for i in 0..=iters {
        sync(device);
        let t = Instant::now();
        loop_step(&mut params, &mut moments, &mut shadows, (i + 1) as f64);
        sync(device);
        if i > 0 {
            before.push(t.elapsed().as_secs_f64());
        }
    }
    let tensors = params.len();
    drop((params, moments, shadows, net));

    // After: flat buffers.
    let net = Network::new(&cfg, device).unwrap();
    let mut opt = Optimizer::new(&net.vs, &OptimizerConfig::default()).unwrap();
    let mut ema = Ema::new(&net.vs, &EmaConfig::Beta { beta: 0.9999 });
    fill_grads(opt.params());
    let mut after = Vec::new();
    for i in 0..=iters {
        sync(device);
        let t = Instant::now();
        opt.sanitize_grads(None);
        opt.step(1e-4);
        ema.update(&net.vs, (i + 1) as u64, 128);
        sync(device);
        if i > 0 {
            after.push(t.elapsed().as_secs_f64());
        }
    }
    let (b, a) = (median(before), median(after));
    println!(
        "DDPM++ {numel} parameters in {tensors} tensors on {device:?}, {} threads: sanitise + Adam + \
         EMA per step: per-tensor loops {:.1} ms, flat buffers {:.1} ms ({:.2}x), median of {iters}",
        tch::get_num_threads(),
        b * 1e3,
        a * 1e3,
        b / a
    );
}
