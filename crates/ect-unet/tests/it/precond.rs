//! The preconditioning coefficients the networks evaluate as tensors equal the method's scalar formulas
//! in `ect_schedule::precond` (one source for the formulas, docs/method.md §2), in training and
//! evaluation mode, for every wrapper, over noise levels from below ECM's `sigma_min` to 80.

use ect_schedule::precond as formulas;
use ect_unet::{CoeffMode, NetworkConfig, Precond, ValidNetworkConfig};
use serde_json::json;
use tch::{nn::VarStore, Device, Kind, Tensor};

fn sigmas() -> Vec<f64> {
    let mut s: Vec<f64> = (0..=60)
        .map(|i| 10f64.powf(-3.0 + 5.0 * i as f64 / 60.0))
        .filter(|s| *s <= 80.0)
        .collect();
    s.extend([0.002, 0.003, 0.0031, 0.5, 0.821, 1.526, 80.0]);
    s
}

fn network(class: &str, sigma_data: f64) -> ValidNetworkConfig {
    let args = match class {
        "edm2.Precond" => json!({"img_resolution": 8, "img_channels": 1, "model_channels": 8,
            "channel_mult": [1], "num_blocks": 1, "attn_resolutions": [], "sigma_data": sigma_data}),
        _ => json!({"img_resolution": 8, "img_channels": 1, "model_type": "SongUNet",
            "model_channels": 8, "channel_mult": [1], "num_blocks": 1, "attn_resolutions": [],
            "sigma_data": sigma_data}),
    };
    NetworkConfig::from_class_and_args(class, &args).unwrap()
}

/// Largest relative error of the tensor coefficients (f32) against the f64 formulas.
fn max_rel_err(
    net: &Precond,
    mode: CoeffMode,
    want: impl Fn(f64) -> formulas::Coefficients,
) -> f64 {
    let s = sigmas();
    let got = net.coefficients(&Tensor::from_slice(&s).to_kind(Kind::Float), mode);
    let read = |t: &Tensor| Vec::<f64>::try_from(t.to_kind(Kind::Double)).unwrap();
    let (skip, out, cin, noise) = (
        read(&got.c_skip),
        read(&got.c_out),
        read(&got.c_in),
        read(&got.c_noise),
    );
    let mut worst = 0f64;
    for (i, &sigma) in s.iter().enumerate() {
        let w = want(sigma);
        for (g, w) in [
            (skip[i], w.c_skip),
            (out[i], w.c_out),
            (cin[i], w.c_in),
            (noise[i], w.c_noise),
        ] {
            worst = worst.max((g - w).abs() / w.abs().max(1e-3));
        }
    }
    worst
}

#[test]
fn tensor_coefficients_equal_the_scalar_formulas() {
    let _torch = crate::torch();
    for sd in [0.5, 1.0] {
        for class in ["ECMPrecond", "EDMPrecond", "edm2.Precond"] {
            let cfg = network(class, sd);
            let vs = VarStore::new(Device::Cpu);
            let net = Precond::new(&vs.root(), &cfg).unwrap();
            let train = max_rel_err(&net, CoeffMode::Train, |s| match class {
                "ECMPrecond" => formulas::ecm_train(s, sd),
                "EDMPrecond" => formulas::edm(s, sd),
                _ => formulas::edm2(s, sd),
            });
            let eval = max_rel_err(&net, CoeffMode::Eval, |s| match cfg.get() {
                NetworkConfig::Ecm(c) => formulas::ecm_eval(s, sd, c.sigma_min),
                NetworkConfig::Edm(_) => formulas::edm(s, sd),
                NetworkConfig::Edm2(_) => formulas::edm2(s, sd),
            });
            // float32 evaluation of the same expressions: a few units in the last place.
            assert!(train < 2e-6, "{class} sd {sd} training mode: {train:e}");
            assert!(eval < 2e-6, "{class} sd {sd} evaluation mode: {eval:e}");
        }
    }
}

#[test]
fn ecm_evaluation_mode_is_the_identity_at_sigma_min() {
    let _torch = crate::torch();
    let cfg = network("ECMPrecond", 0.5);
    let vs = VarStore::new(Device::Cpu);
    let net = Precond::new(&vs.root(), &cfg).unwrap();
    let c = net.coefficients(&Tensor::from_slice(&[0.003f32]), CoeffMode::Eval);
    assert_eq!(c.c_out.double_value(&[0]), 0.0);
    assert_eq!(c.c_skip.double_value(&[0]), 1.0);
}
