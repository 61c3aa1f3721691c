//! The objectives against `ect-schedule` and the reference's `loss` cases (`fixtures/schedule.json`, from
//! the authors' code), with analytic denoisers so every number is known in closed form.

use std::cell::RefCell;

use ect_schedule::{mapping::Mapping, weighting::Weighting};
use ect_train::denoiser::{Denoiser, Pass};
use ect_train::objective::{edm_loss, ict_loss, repair_teacher, EctLoss};
use serde_json::Value;
use tch::{Kind, Tensor};

fn vals(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs() + 1e-7
}

/// `eps` for sample i is `scale_i * e_0` (one nonzero pixel), so `|eps_i|^2 = scale_i^2`.
fn spike_eps(scales: &[f64], shape: [i64; 4]) -> Tensor {
    let eps = Tensor::zeros(shape, (Kind::Float, tch::Device::Cpu));
    for (i, s) in scales.iter().enumerate() {
        let _ = eps.get(i as i64).view([-1]).get(0).fill_(*s);
    }
    eps
}

#[test]
fn ect_per_sample_loss_matches_reference_cases() {
    let _torch = crate::torch();
    let fixture: Value = serde_json::from_str(include_str!("../fixtures/schedule.json")).unwrap();
    let loss = &fixture["loss"];
    let get = |k: &str| -> Vec<f64> {
        loss[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let (d2, t, r) = (get("d2"), get("t"), get("r"));
    let n = d2.len() as i64;
    let shape = [n, 1, 2, 2];
    // Identity denoiser: D_t - D_r = (t - r) eps (and x_t - x0 = t eps where r = 0, also (t - r) eps), so
    // |eps| = sqrt(d2) / (t - r) makes the per-sample distance exactly d2.
    let scales: Vec<f64> = d2
        .iter()
        .zip(&t)
        .zip(&r)
        .map(|((d2, t), r)| d2.sqrt() / (t - r))
        .collect();
    let eps = spike_eps(&scales, shape);
    let x0 = Tensor::rand(shape, (Kind::Float, tch::Device::Cpu)) * 2.0 - 1.0;
    let identity = |x: &Tensor, _s: &Tensor, _l: Option<&Tensor>, _p: Pass| x.shallow_clone();
    let mut checked = 0;
    for case in loss["cases"].as_array().unwrap() {
        let weighting = match case["weighting"].as_str().unwrap() {
            "inv_dt" => Weighting::InvDt,
            "snrpk" => Weighting::Snrpk,
            other => panic!("unknown weighting {other}"),
        };
        let c = case["c"].as_f64().unwrap();
        let ect = EctLoss {
            weighting,
            c,
            ..EctLoss::default()
        };
        let out = ect.compute_pairs(&identity, &x0, None, &t, &r, &eps);
        let want: Vec<f64> = case["loss"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        for (i, (got, want)) in vals(&out).iter().zip(&want).enumerate() {
            // float32 tensors: x_t - x_r loses a few ulps of the large t values.
            assert!(
                close(*got, *want, 2e-4),
                "{weighting:?} c={c} sample {i}: got {got}, reference {want}"
            );
            let direct =
                ect_schedule::weighting::ect_sample_loss(d2[i], c, t[i], r[i], weighting, 0.5);
            assert!(
                close(*want, direct, 1e-12),
                "ect-schedule disagrees with the fixture"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 30);
}

#[test]
fn ect_r_comes_from_the_mapping_at_the_stage() {
    let _torch = crate::torch();
    let ect = EctLoss {
        mapping: Mapping::SIGMOID_DEFAULT,
        q: 2.0,
        ..EctLoss::default()
    };
    let t = [0.01, 0.3, 1.0, 5.0, 80.0];
    for stage in 0..4 {
        let r = ect.r_of(&t, stage);
        for (ti, ri) in t.iter().zip(&r) {
            assert_eq!(*ri, Mapping::SIGMOID_DEFAULT.r(*ti, stage, 2.0));
            assert!(*ri >= 0.0 && ri < ti);
        }
    }
}

/// Records the passes and whether each output carried gradient history.
struct Spy<'a> {
    w: &'a Tensor,
    log: RefCell<Vec<(Pass, bool)>>,
    normalized: RefCell<usize>,
}

impl Denoiser for Spy<'_> {
    fn denoise(&self, x: &Tensor, _s: &Tensor, _l: Option<&Tensor>, pass: Pass) -> Tensor {
        let out = x * self.w;
        self.log.borrow_mut().push((pass, out.requires_grad()));
        out
    }
    fn normalize_weights(&self) {
        *self.normalized.borrow_mut() += 1;
    }
}

#[test]
fn ect_gradient_flows_through_the_student_only() {
    let _torch = crate::torch();
    let w = Tensor::from_slice(&[1.3f32]).set_requires_grad(true);
    let spy = Spy {
        w: &w,
        log: RefCell::new(vec![]),
        normalized: RefCell::new(0),
    };
    let shape = [3, 1, 2, 2];
    let x0 = Tensor::from_slice(&[
        0.1f32, -0.2, 0.3, 0.4, 0.5, -0.6, 0.7, 0.8, -0.9, 0.05, 0.15, 0.25,
    ])
    .view(shape);
    let eps = Tensor::from_slice(&[
        0.3f32, 0.1, -0.2, 0.5, -0.4, 0.2, 0.6, -0.1, 0.0, 0.7, -0.3, 0.2,
    ])
    .view(shape);
    let (t, r) = ([2.0, 0.5, 1.0], [1.0, 0.25, 0.0]);
    let ect = EctLoss::default();
    let out = ect.compute_pairs(&spy, &x0, None, &t, &r, &eps);
    assert_eq!(
        *spy.log.borrow(),
        vec![(Pass::Student, true), (Pass::Teacher, false)]
    );
    assert_eq!(
        *spy.normalized.borrow(),
        1,
        "normalize_weights runs once, before the student only"
    );
    out.sum(Kind::Float).backward();
    let got = w.grad().double_value(&[0]);
    // d/dw of sum_i sqrt(|w x_t - D_r|^2) / (t - r) at w = 1.3 with D_r = 1.3 x_r (x0 where r = 0).
    let w0 = 1.3f64;
    let (x0v, epsv) = (vals(&x0), vals(&eps));
    let mut want = 0.0;
    for i in 0..3 {
        let (mut d2, mut dot) = (0.0, 0.0);
        for j in 0..4 {
            let k = i * 4 + j;
            let x_t = x0v[k] + t[i] * epsv[k];
            let d_r = if r[i] > 0.0 {
                w0 * (x0v[k] + r[i] * epsv[k])
            } else {
                x0v[k]
            };
            let diff = w0 * x_t - d_r;
            d2 += diff * diff;
            dot += diff * x_t;
        }
        want += dot / d2.sqrt() / (t[i] - r[i]);
    }
    assert!(close(got, want, 1e-4), "gradient {got}, analytic {want}");
}

#[test]
fn all_zero_r_skips_the_teacher_and_uses_x0() {
    let _torch = crate::torch();
    let w = Tensor::from_slice(&[0.5f32]);
    let spy = Spy {
        w: &w,
        log: RefCell::new(vec![]),
        normalized: RefCell::new(0),
    };
    let x0 = Tensor::from_slice(&[1.0f32, 2.0]).view([2, 1, 1, 1]);
    let eps = Tensor::from_slice(&[0.5f32, -1.0]).view([2, 1, 1, 1]);
    // q so large and t so small that r clamps to 0 for both samples (stage 0, sigmoid: n(t) ~ 5 > q).
    let ect = EctLoss {
        q: 4.0,
        ..EctLoss::default()
    };
    let t = [0.01, 0.02];
    assert!(ect.r_of(&t, 0).iter().all(|&r| r == 0.0));
    let out = ect.compute(&spy, &x0, None, &t, 0, &eps);
    assert_eq!(
        spy.log.borrow().len(),
        1,
        "teacher must not run when every r is 0"
    );
    // D_t = 0.5 (x0 + t eps); D_r = x0; per-sample |D_t - x0| / t.
    let got = vals(&out);
    for i in 0..2 {
        let (x, e) = ([1.0, 2.0][i], [0.5, -1.0][i]);
        let want = (0.5 * (x + t[i] * e) - x).abs() / t[i];
        assert!(
            close(got[i], want, 1e-5),
            "sample {i}: {} vs {want}",
            got[i]
        );
    }
}

#[test]
fn teacher_repair_zeroes_nonfinite_and_applies_the_boundary() {
    let _torch = crate::torch();
    let d_r = Tensor::from_slice(&[
        f32::NAN,
        f32::NAN,
        2.0,
        f32::INFINITY,
        f32::NAN,
        f32::NEG_INFINITY,
    ])
    .view([3, 2, 1, 1]);
    let x0 = Tensor::from_slice(&[0.1f32, 0.2, 0.3, 0.4, 0.5, 0.6]).view([3, 2, 1, 1]);
    let r = Tensor::from_slice(&[0.0f32, 1.0, 0.5]);
    let got = vals(&repair_teacher(&d_r, &x0, &r));
    assert!(
        close(got[0], 0.1, 1e-6) && close(got[1], 0.2, 1e-6),
        "r == 0 rows take x0: {got:?}"
    );
    assert_eq!(got[2], 2.0);
    assert_eq!(
        got[3],
        f32::MAX as f64,
        "+inf becomes the largest finite float"
    );
    assert_eq!(got[4], 0.0, "NaN becomes 0");
    assert_eq!(got[5], f32::MIN as f64);
}

#[test]
fn edm_loss_is_lambda_times_squared_error() {
    let _torch = crate::torch();
    let zero = |x: &Tensor, _s: &Tensor, _l: Option<&Tensor>, p: Pass| {
        assert_eq!(p, Pass::Train);
        x.zeros_like()
    };
    let x0 = Tensor::from_slice(&[0.5f32, -0.5, 1.0, 0.25]).view([2, 1, 1, 2]);
    let eps = x0.randn_like();
    let sigma = [0.3, 2.0];
    let out = edm_loss(&zero, &x0, None, &sigma, &eps, 0.5);
    let got = vals(&out);
    let sq = [0.5, 1.0625];
    for i in 0..2 {
        let want = ect_schedule::weighting::edm_lambda(sigma[i], 0.5) * sq[i];
        assert!(close(got[i], want, 1e-6), "{} vs {want}", got[i]);
    }
}

#[test]
fn ict_loss_is_weighted_pseudo_huber() {
    let _torch = crate::torch();
    let identity = |x: &Tensor, _s: &Tensor, _l: Option<&Tensor>, _p: Pass| x.shallow_clone();
    let shape = [2, 1, 2, 2];
    let x0 = Tensor::zeros(shape, (Kind::Float, tch::Device::Cpu));
    let eps = spike_eps(&[1.5, 0.2], shape);
    let (t, r) = ([0.9, 40.0], [0.7, 30.0]);
    let c = ect_schedule::ict::pseudo_huber_c(4);
    let out = ict_loss(&identity, &x0, None, &t, &r, &eps, c);
    let got = vals(&out);
    for i in 0..2 {
        let d2: f64 = ((t[i] - r[i]) * [1.5, 0.2][i]).powi(2);
        let want = ((d2 + c * c).sqrt() - c) / (t[i] - r[i]);
        assert!(close(got[i], want, 1e-5), "{} vs {want}", got[i]);
    }
}
