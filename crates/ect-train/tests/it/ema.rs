//! EMA tracks against the closed forms and `ect_schedule::ema`.

use ect_train::ema::{Ema, EmaConfig};
use tch::{nn::VarStore, Device, Kind, Tensor};

fn store(v: f32) -> (VarStore, Tensor) {
    let vs = VarStore::new(Device::Cpu);
    let w = vs.root().var("w", &[2], tch::nn::Init::Const(v as f64));
    (vs, w)
}

fn set(w: &Tensor, v: f64) {
    tch::no_grad(|| {
        let _ = w.shallow_clone().fill_(v);
    });
}

fn shadow(ema: &Ema, track: usize) -> f64 {
    ema.track(track)[0].1.double_value(&[0])
}

#[test]
fn per_step_beta_is_a_plain_exponential_average() {
    let _torch = crate::torch();
    let (vs, w) = store(1.0);
    let mut ema = Ema::new(&vs, &EmaConfig::Beta { beta: 0.9 });
    let mut want = 1.0f64;
    for (step, v) in [2.0, -1.0, 0.5].into_iter().enumerate() {
        set(&w, v);
        ema.update(&vs, step as u64 + 1, 16);
        want = 0.9 * want + 0.1 * v;
        assert!((shadow(&ema, 0) - want).abs() < 1e-6, "step {step}");
    }
}

#[test]
fn power_function_ema_uses_edm2_betas_and_starts_at_the_weights() {
    let _torch = crate::torch();
    let (vs, w) = store(0.0);
    let cfg = EmaConfig::Power {
        sigma_rels: vec![0.05, 0.10],
    };
    let mut ema = Ema::new(&vs, &cfg);
    assert_eq!(ema.labels(), ["ema-0.050", "ema-0.100"]);
    set(&w, 3.0);
    ema.update(&vs, 1, 8);
    // beta(1) = 0: the first update copies the weights.
    assert_eq!(shadow(&ema, 0), 3.0);
    for (i, s) in [0.05, 0.10].into_iter().enumerate() {
        let exp = ect_schedule::ema::power_function_exponent(s);
        for step in [1, 2, 10, 1000] {
            assert_eq!(
                ema.beta(i, step, 8),
                ect_schedule::ema::power_function_beta(step, exp)
            );
        }
    }
    let mut want = [3.0f64, 3.0];
    set(&w, 1.0);
    ema.update(&vs, 2, 8);
    for (i, wi) in want.iter_mut().enumerate() {
        let b = ema.beta(i, 2, 8);
        *wi = b * *wi + (1.0 - b);
        assert!((shadow(&ema, i) - *wi).abs() < 1e-6);
    }
}

#[test]
fn halflife_beta_follows_edm() {
    let _torch = crate::torch();
    let (vs, _w) = store(0.0);
    let cfg = EmaConfig::Halflife {
        halflife_kimg: 500.0,
        rampup_ratio: Some(0.05),
    };
    let ema = Ema::new(&vs, &cfg);
    for step in [1u64, 100, 100_000] {
        let want = ect_schedule::ema::beta_from_halflife(500.0, Some(0.05), 128, step * 128);
        assert_eq!(ema.beta(0, step, 128), want);
    }
    // Without ramp-up: 0.5 ^ (batch / halflife_nimg).
    let ema = Ema::new(
        &vs,
        &EmaConfig::Halflife {
            halflife_kimg: 500.0,
            rampup_ratio: None,
        },
    );
    assert!((ema.beta(0, 1, 128) - 0.5f64.powf(128.0 / 500_000.0)).abs() < 1e-15);
}

#[test]
fn tracks_round_trip_through_files() {
    let _torch = crate::torch();
    let (vs, w) = store(0.25);
    let cfg = EmaConfig::Beta { beta: 0.5 };
    let mut ema = Ema::new(&vs, &cfg);
    set(&w, 1.0);
    ema.update(&vs, 1, 4);
    let dir = tempfile::tempdir().unwrap();
    ema.save(dir.path()).unwrap();
    let mut other = Ema::new(&vs, &cfg);
    other.load(dir.path()).unwrap();
    assert_eq!(shadow(&other, 0), 0.625);
    let (vs2, w2) = store(9.0);
    other.copy_into(0, &vs2).unwrap();
    assert_eq!(w2.double_value(&[1]), 0.625);
    assert_eq!(w2.kind(), Kind::Float);
}
