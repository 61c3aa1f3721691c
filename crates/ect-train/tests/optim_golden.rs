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
    let golden: Value =
        serde_json::from_str(include_str!("fixtures/optim_golden.json")).expect("fixture parses");
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
    check_case("adam", OptimizerKind::Adam);
}

#[test]
fn radam_matches_torch() {
    check_case("radam", OptimizerKind::Radam);
}

#[test]
fn radam_low_beta2_matches_torch_in_both_branches() {
    check_case("radam_low_beta2", OptimizerKind::Radam);
}
