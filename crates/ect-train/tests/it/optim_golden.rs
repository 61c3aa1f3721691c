//! Adam and RAdam against torch.optim (torch 2.11.0): numbers from `fixtures/make_optim_golden.py`.

use ect_train::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use serde_json::Value;
use tch::{Kind, Tensor};

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn check_case(case: &str, kind: OptimizerKind) {
    let golden: Value = serde_json::from_str(include_str!("../fixtures/optim_golden.json"))
        .expect("fixture parses");
    let c = &golden["cases"][case];
    let cfg = OptimizerConfig {
        kind,
        lr: c["lr"].as_f64().unwrap(),
        beta1: c["betas"][0].as_f64().unwrap(),
        beta2: c["betas"][1].as_f64().unwrap(),
        eps: c["eps"].as_f64().unwrap(),
        ..OptimizerConfig::default()
    };
    let names: Vec<String> = golden["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect();
    let params: Vec<(String, Tensor)> = names
        .iter()
        .map(|n| {
            let shape: Vec<i64> = golden["shapes"][n]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_i64().unwrap())
                .collect();
            let t = Tensor::from_slice(&floats(&golden["init"][n]))
                .reshape(&shape)
                .set_requires_grad(true);
            (n.clone(), t)
        })
        .collect();
    let mut opt = Optimizer::from_params(
        params
            .iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect(),
        &cfg,
    );
    let steps = golden["steps"].as_u64().unwrap() as usize;
    let mut worst = 0f64;
    for step in 0..steps {
        for (n, p) in &params {
            let g = Tensor::from_slice(&floats(&golden["grads"][step][n])).reshape(p.size());
            // Populate .grad the way backward would: d(sum(p * g))/dp = g.
            (p * &g).sum(Kind::Float).backward();
        }
        opt.step(cfg.lr);
        opt.zero_grad();
        for (n, p) in &params {
            let want = floats(&golden["cases"][case]["after"][step][n]);
            let got: Vec<f32> = Vec::<f32>::try_from(p.flatten(0, -1)).unwrap();
            for (a, b) in got.iter().zip(&want) {
                let rel = ((a - b).abs() / b.abs().max(1e-3)) as f64;
                worst = worst.max(rel);
                assert!(
                    rel < 1e-6,
                    "{case} step {} {n}: got {a}, torch {b} (rel {rel:e})",
                    step + 1
                );
            }
        }
    }
    eprintln!("{case}: worst relative difference to torch over {steps} steps: {worst:e}");
}

#[test]
fn adam_matches_torch() {
    let _torch = crate::torch();
    check_case("adam", OptimizerKind::Adam);
}

#[test]
fn radam_matches_torch() {
    let _torch = crate::torch();
    check_case("radam", OptimizerKind::Radam);
}

#[test]
fn radam_low_beta2_matches_torch_in_both_branches() {
    let _torch = crate::torch();
    check_case("radam_low_beta2", OptimizerKind::Radam);
}

#[test]
fn nonfinite_gradients_are_repaired_and_clipping_bounds_the_norm() {
    let _torch = crate::torch();
    let p = Tensor::zeros([4], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
    let g = Tensor::from_slice(&[f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 3.0]);
    (&p * &g.nan_to_num(0.0, 0.0, 0.0))
        .sum(Kind::Float)
        .backward();
    // Put the non-finite values into .grad directly, as a diverging backward would.
    tch::no_grad(|| p.grad().copy_(&g));
    let mut opt = Optimizer::from_params(
        vec![("p".into(), p.shallow_clone())],
        &OptimizerConfig::default(),
    );
    assert_eq!(opt.sanitize_grads(None), None);
    assert_eq!(
        Vec::<f32>::try_from(p.grad()).unwrap(),
        vec![0.0, 1e5, -1e5, 3.0]
    );
    let norm = opt.sanitize_grads(Some(1.0)).unwrap();
    assert!((norm - (2e10f64 + 9.0).sqrt()).abs() < 1e-3);
    let clipped: Vec<f32> = Vec::<f32>::try_from(p.grad()).unwrap();
    let n2: f64 = clipped.iter().map(|&x| (x as f64).powi(2)).sum();
    assert!((n2.sqrt() - 1.0).abs() < 1e-5, "clipped norm {}", n2.sqrt());
}
