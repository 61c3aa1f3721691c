//! Golden tests against `tests/fixtures/schedule.json`, numbers produced by the authors' public ECT
//! code (`ECMLoss`, `ECMPrecond`, `generator_fn`, EDM's sampler, the iCT curriculum); see
//! `/work/shared/reference/README.md` in the project notes. Every value must agree to 1e-12
//! relative (exact zeros exactly). Run with `--nocapture` to see the worst error per section.

use ect_schedule::mapping::{self, Mapping};
use ect_schedule::noise::LogNormal;
use ect_schedule::precond::{self, Coefficients};
use ect_schedule::weighting::{adaptive_loss, Weighting};
use serde_json::Value;

const TOL: f64 = 1e-12;

fn fixture() -> Value {
    let text = include_str!("../fixtures/schedule.json");
    serde_json::from_str(text).expect("schedule.json parses")
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn fs(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(f)
        .collect()
}

/// Relative error; an expected exact zero must be matched exactly.
fn rel(got: f64, want: f64) -> f64 {
    if want == 0.0 {
        if got == 0.0 {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        ((got - want) / want).abs()
    }
}

/// Tracks the worst relative error of a section and fails on the first value over the tolerance.
struct Worst {
    section: &'static str,
    max: f64,
    count: usize,
}

impl Worst {
    fn new(section: &'static str) -> Self {
        Self {
            section,
            max: 0.0,
            count: 0,
        }
    }

    fn check(&mut self, got: f64, want: f64, what: &str) {
        let e = rel(got, want);
        assert!(
            e <= TOL,
            "{}: {what}: got {got:e}, want {want:e}, rel {e:e}",
            self.section
        );
        self.max = self.max.max(e);
        self.count += 1;
    }

    fn report(&self) {
        assert!(self.count > 0, "{}: nothing compared", self.section);
        println!(
            "golden {:<16} {:>4} values, max relative error {:.3e}",
            self.section, self.count, self.max
        );
    }
}

#[test]
fn mapping_r_and_ratio() {
    let fx = fixture();
    let mut w = Worst::new("mapping");
    for case in fx["mapping"]["cases"].as_array().unwrap() {
        let (q, k, b) = (f(&case["q"]), f(&case["k"]), f(&case["b"]));
        let stage = u32::try_from(case["stage"].as_u64().unwrap()).unwrap();
        let m = match case["mapping"].as_str().unwrap() {
            "const" => Mapping::Const,
            "sigmoid" => Mapping::Sigmoid { k, b },
            other => panic!("unknown mapping {other}"),
        };
        for (t, r) in fs(&case["t"]).into_iter().zip(fs(&case["r"])) {
            w.check(
                m.r(t, stage, q),
                r,
                &format!("{m:?} q {q} stage {stage} t {t}"),
            );
        }
        w.check(
            mapping::ratio(stage, q),
            f(&case["ratio_attr"]),
            &format!("ratio q {q} stage {stage}"),
        );
    }
    assert_eq!(fx["mapping"]["cases"].as_array().unwrap().len(), 48);
    w.report();
}

#[test]
fn lognormal_t_from_z() {
    let fx = fixture();
    let mut w = Worst::new("lognormal");
    let z = fs(&fx["lognormal"]["z"]);
    for case in fx["lognormal"]["cases"].as_array().unwrap() {
        let d = LogNormal::new(f(&case["P_mean"]), f(&case["P_std"])).unwrap();
        for (z, t) in z.iter().zip(fs(&case["t"])) {
            w.check(d.t_from_normal(*z), t, &format!("{d:?} z {z}"));
        }
    }
    // The presets are the fixture's three distributions.
    let cases = fx["lognormal"]["cases"].as_array().unwrap();
    for (case, preset) in cases.iter().zip([
        LogNormal::ECT_CIFAR,
        LogNormal::ECT_IMAGENET,
        LogNormal::EDM_PRETRAIN,
    ]) {
        assert_eq!(f(&case["P_mean"]), preset.p_mean);
        assert_eq!(f(&case["P_std"]), preset.p_std);
    }
    w.report();
}

#[test]
fn loss_weightings_and_c() {
    let fx = fixture();
    let loss = &fx["loss"];
    let (d2, t, r) = (fs(&loss["d2"]), fs(&loss["t"]), fs(&loss["r"]));
    let mut w = Worst::new("loss");
    let mut seen = (false, false, false);
    for case in loss["cases"].as_array().unwrap() {
        let c = f(&case["c"]);
        let weighting = match case["weighting"].as_str().unwrap() {
            "inv_dt" => Weighting::InvDt,
            "snrpk" => Weighting::Snrpk,
            other => panic!("unknown weighting {other}"),
        };
        seen.0 |= weighting == Weighting::InvDt;
        seen.1 |= weighting == Weighting::Snrpk;
        seen.2 |= c > 0.0;
        let want = fs(&case["loss"]);
        for i in 0..d2.len() {
            let got = adaptive_loss(d2[i], c) * weighting.weight(t[i], r[i], 0.5);
            w.check(got, want[i], &format!("{weighting:?} c {c} i {i}"));
            let via =
                ect_schedule::weighting::ect_sample_loss(d2[i], c, t[i], r[i], weighting, 0.5);
            assert_eq!(via, got);
        }
    }
    assert_eq!(
        seen,
        (true, true, true),
        "both weightings and c > 0 covered"
    );
    w.report();
}

fn check_coeffs(w: &mut Worst, got: Coefficients, want: &Value, what: &str) {
    w.check(got.c_skip, f(&want["c_skip"]), &format!("{what} c_skip"));
    w.check(got.c_out, f(&want["c_out"]), &format!("{what} c_out"));
    w.check(got.c_in, f(&want["c_in"]), &format!("{what} c_in"));
    w.check(got.c_noise, f(&want["c_noise"]), &format!("{what} c_noise"));
}

#[test]
fn precond_train_and_eval() {
    let fx = fixture();
    let p = &fx["precond"];
    let (sd, smin) = (f(&p["sigma_data"]), f(&p["sigma_min"]));
    let mut train = Worst::new("precond/train");
    let mut eval = Worst::new("precond/eval");
    for case in p["cases"].as_array().unwrap() {
        let s = f(&case["sigma"]);
        check_coeffs(
            &mut train,
            precond::ecm_train(s, sd),
            &case["train"],
            &format!("sigma {s}"),
        );
        // EDM and EDM2 use the training coefficients (in both modes).
        check_coeffs(
            &mut train,
            precond::edm(s, sd),
            &case["train"],
            &format!("edm sigma {s}"),
        );
        check_coeffs(
            &mut train,
            precond::edm2(s, sd),
            &case["train"],
            &format!("edm2 sigma {s}"),
        );
        check_coeffs(
            &mut eval,
            precond::ecm_eval(s, sd, smin),
            &case["eval"],
            &format!("sigma {s}"),
        );
    }
    train.report();
    eval.report();
}

#[test]
fn karras_times_and_nfe() {
    use ect_schedule::sampling::{heun_nfe, karras_sigmas, KarrasConfig};
    let fx = fixture();
    let mut w = Worst::new("karras");
    let mut ns = Vec::new();
    for case in fx["karras"]["cases"].as_array().unwrap() {
        let n = usize::try_from(case["N"].as_u64().unwrap()).unwrap();
        let (smin, smax, rho) = (
            f(&case["sigma_min"]),
            f(&case["sigma_max"]),
            f(&case["rho"]),
        );
        let want = fs(&case["sigmas"]);
        let got = karras_sigmas(n, smin, smax, rho);
        assert_eq!(
            got.len(),
            want.len(),
            "N {n}: the fixture includes the trailing 0"
        );
        for (i, (g, wv)) in got.iter().zip(&want).enumerate() {
            w.check(*g, *wv, &format!("N {n} i {i}"));
        }
        let cfg = KarrasConfig {
            num_steps: n,
            sigma_min: smin,
            sigma_max: smax,
            rho,
        };
        assert_eq!(cfg.sigmas().unwrap(), got);
        ns.push(n);
    }
    assert_eq!(ns, vec![2, 5, 18]);
    assert_eq!(heun_nfe(18), 35);
    w.report();
}

#[test]
fn few_step_grids() {
    use ect_schedule::sampling::{
        few_step, one_step, two_step, GridSpec, CIFAR_TWO_STEP_MID, IMAGENET_TWO_STEP_MID,
    };
    let fx = fixture();
    let fs_ = &fx["few_step"];
    let mut w = Worst::new("few_step");
    let cases = [
        (one_step(), &fs_["one_step"]),
        (two_step(CIFAR_TWO_STEP_MID), &fs_["two_step_cifar"]),
        (two_step(IMAGENET_TWO_STEP_MID), &fs_["two_step_imagenet"]),
        (
            GridSpec::cifar_two_step().grid().unwrap().into_vec(),
            &fs_["two_step_cifar"],
        ),
        (few_step(80.0, &[1.526]).unwrap(), &fs_["two_step_imagenet"]),
    ];
    for (got, want) in cases {
        let want = fs(want);
        assert_eq!(got.len(), want.len());
        for (g, wv) in got.iter().zip(&want) {
            w.check(*g, *wv, "few-step time");
        }
    }
    w.report();
}

#[test]
fn ict_curriculum_steps() {
    use ect_schedule::ict::{discretization_steps, IctConfig, ICT_S0, ICT_S1};
    let fx = fixture();
    let ict = &fx["ict_curriculum"];
    let total = ict["K"].as_u64().unwrap();
    let cfg = IctConfig {
        total_iters: total,
        ..IctConfig::default()
    };
    let mut w = Worst::new("ict_curriculum");
    for case in ict["cases"].as_array().unwrap() {
        let (k, n) = (case["k"].as_u64().unwrap(), case["N"].as_u64().unwrap());
        let got = discretization_steps(k, total, ICT_S0, ICT_S1);
        assert_eq!(got, n, "N({k})");
        assert_eq!(cfg.discretization_steps(k), n);
        assert_eq!(cfg.sigmas(k).len() as u64, n);
        w.check(got as f64, n as f64, &format!("N({k})"));
    }
    w.report();
}
