//! Initialization as the reference's `weight_init` and layer arguments: per-layer distributions,
//! bounds, zero-initialized output layers, and determinism under a torch seed.

use crate::common;

use common::config;
use ect_unet::{NetworkConfig, Precond};
use std::collections::HashMap;
use tch::{nn::VarStore, Device, Kind, Tensor};

/// The variables of `cfg` initialised from seed `seed` (the caller holds the binary's torch lock).
fn build(cfg: &NetworkConfig, seed: i64) -> HashMap<String, Tensor> {
    tch::manual_seed(seed);
    let vs = VarStore::new(Device::Cpu);
    let _net = Precond::new(&vs.root(), &cfg.clone().validated().unwrap()).unwrap();
    vs.variables()
}

fn max_abs(t: &Tensor) -> f64 {
    t.abs().max().double_value(&[])
}

fn std(t: &Tensor) -> f64 {
    t.to_kind(Kind::Double).std(true).double_value(&[])
}

#[test]
fn songunet_uses_xavier_uniform_with_small_output_layers() {
    let _torch = crate::torch();
    let v = build(&config("unet-ddpmpp-tiny"), 0);
    // map_layer0: Linear(16 -> 64), xavier_uniform bound sqrt(6 / (16 + 64)), bias exactly 0.
    let w = &v["model.map_layer0.weight"];
    let bound = (6.0f64 / 80.0).sqrt();
    assert!(max_abs(w) <= bound && max_abs(w) > 0.9 * bound);
    assert!((std(w) - bound / 3f64.sqrt()).abs() < 0.1 * bound);
    assert_eq!(max_abs(&v["model.map_layer0.bias"]), 0.0);
    // conv1 of a block: init_zero = xavier_uniform * 1e-5 (fans 32*9 each way).
    let w = &v["model.enc.8x8_block0.conv1.weight"];
    let bound = 1e-5 * (6.0f64 / (2.0 * 32.0 * 9.0)).sqrt();
    assert!(max_abs(w) <= bound * (1.0 + 1e-6) && max_abs(w) > 0.5 * bound);
    // qkv: init_attn = xavier_uniform * sqrt(0.2).
    let w = &v["model.enc.8x8_block0.qkv.weight"];
    let bound = 0.2f64.sqrt() * (6.0f64 / (32.0 + 96.0)).sqrt();
    assert!(max_abs(w) <= bound * (1.0 + 1e-6) && max_abs(w) > 0.9 * bound);
    // GroupNorm: ones and zeros.
    assert!(v["model.enc.16x16_block0.norm0.weight"]
        .equal(&Tensor::ones([16], (Kind::Float, Device::Cpu))));
    assert_eq!(max_abs(&v["model.dec.16x16_aux_norm.bias"]), 0.0);
}

#[test]
fn adm_uses_kaiming_uniform_and_zero_output_layers() {
    let _torch = crate::torch();
    let v = build(&config("unet-adm-tiny"), 0);
    // init = kaiming_uniform * sqrt(1/3): bound sqrt(3 / fan_in) * sqrt(1/3) = sqrt(1 / fan_in), bias too.
    let (w, b) = (
        &v["model.enc.16x16_conv.weight"],
        &v["model.enc.16x16_conv.bias"],
    );
    let bound = (1.0f64 / 27.0).sqrt();
    assert!(max_abs(w) <= bound * (1.0 + 1e-6) && max_abs(w) > 0.9 * bound);
    assert!(max_abs(b) <= bound * (1.0 + 1e-6) && max_abs(b) > 0.0);
    for zero in [
        "model.out_conv.weight",
        "model.out_conv.bias",
        "model.enc.16x16_block0.conv1.weight",
        "model.dec.8x8_in0.conv1.bias",
    ] {
        assert_eq!(max_abs(&v[zero]), 0.0, "{zero}");
    }
    // map_label: kaiming_normal * sqrt(label_dim): std sqrt(1/4) * 2 = 1.
    let s = std(&v["model.map_label.weight"]);
    assert!((s - 1.0).abs() < 0.15, "map_label std {s}");
}

#[test]
fn edm2_starts_with_unit_normal_weights_and_zero_gains() {
    let _torch = crate::torch();
    let v = build(&config("unet-edm2-tiny"), 0);
    assert_eq!(v["unet.out_gain"].double_value(&[]), 0.0);
    assert_eq!(v["unet.enc.8x8_block0.emb_gain"].double_value(&[]), 0.0);
    let s = std(&v["unet.dec.16x16_block0.conv_res0.weight"]);
    assert!((s - 1.0).abs() < 0.05, "std {s}");
    // Fourier buffers: freqs 2 pi N(0,1), phases 2 pi U(0,1).
    let phases = &v["unet.emb_fourier.phases"];
    assert!(
        phases.min().double_value(&[]) >= 0.0
            && phases.max().double_value(&[]) <= 2.0 * std::f64::consts::PI
    );
}

#[test]
fn same_seed_same_weights_other_seed_other_weights() {
    let _torch = crate::torch();
    for name in ["unet-ncsnpp-tiny", "unet-edm2-tiny"] {
        let cfg = config(name);
        let (a, b, c) = (build(&cfg, 5), build(&cfg, 5), build(&cfg, 6));
        let mut differs = false;
        for (k, t) in &a {
            assert!(t.equal(&b[k]), "{name}: {k}");
            differs |= !t.equal(&c[k]);
        }
        assert!(differs, "{name}: seed has no effect");
    }
}
