//! Rough timing of one DDPM++ CIFAR-10 forward at batch 8 next to a single 256->256 3x3 convolution,
//! to see how far the network is from its convolution cost: `cargo run -p ect-unet --example timing`.

use ect_unet::{CoeffMode, DropoutMode, NetworkConfig, Precond};
use std::time::Instant;
use tch::{nn::VarStore, Device, Kind, Tensor};

fn main() {
    println!("torch threads: {}", tch::get_num_threads());
    let x = Tensor::randn([8, 256, 32, 32], (Kind::Float, Device::Cpu));
    let w = Tensor::randn([256, 256, 3, 3], (Kind::Float, Device::Cpu));
    for _ in 0..2 {
        let _ = x.conv2d(&w, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1);
    }
    let t = Instant::now();
    for _ in 0..5 {
        let _ = x.conv2d(&w, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1);
    }
    let dt = t.elapsed().as_secs_f64() / 5.0;
    println!(
        "conv 256->256 3x3 32x32 b8: {dt:.3} s ({:.1} GFLOP/s)",
        9.66 / dt
    );

    let vs = VarStore::new(Device::Cpu);
    let net = Precond::new(
        &vs.root(),
        &NetworkConfig::ddpmpp_cifar10(0.2).validated().unwrap(),
    )
    .unwrap();
    let xi = Tensor::randn([8, 3, 32, 32], (Kind::Float, Device::Cpu));
    let s = Tensor::full([8], 2.0, (Kind::Float, Device::Cpu));
    for i in 0..3 {
        let t = Instant::now();
        let _ = tch::no_grad(|| net.forward(&xi, &s, None, CoeffMode::Eval, DropoutMode::Off));
        println!("DDPM++ forward b8 #{i}: {:.3} s", t.elapsed().as_secs_f64());
    }
}
