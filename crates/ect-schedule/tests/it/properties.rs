//! Property tests of the schedule math (proptest): the invariants docs/method.md §2-§7 rely on.

use ect_schedule::ema::{self, EmaConfig, SIGMA_REL_MAX};
use ect_schedule::ict::{self, IctConfig};
use ect_schedule::mapping::Mapping;
use ect_schedule::noise::LogNormal;
use ect_schedule::precond;
use ect_schedule::sampling::{karras_sigmas, TimeGrid};
use ect_schedule::stage::{StageSchedule, TickSchedule};
use proptest::prelude::*;

fn any_mapping() -> impl Strategy<Value = Mapping> {
    prop_oneof![
        Just(Mapping::Const),
        (0.0..20.0_f64, 0.01..5.0_f64).prop_map(|(k, b)| Mapping::Sigmoid { k, b }),
    ]
}

proptest! {
    #[test]
    fn r_is_between_zero_and_t(
        m in any_mapping(),
        t in 1e-4..500.0_f64,
        stage in 0u32..60,
        q in 1.01..512.0_f64,
    ) {
        let r = m.r(t, stage, q);
        prop_assert!(r >= 0.0 && r <= t, "r {} t {}", r, t);
    }

    #[test]
    fn r_is_nondecreasing_in_stage_and_tends_to_t(
        m in any_mapping(),
        t in 1e-4..500.0_f64,
        q in 1.5..512.0_f64,
    ) {
        let mut prev = m.r(t, 0, q);
        for s in 1..40 {
            let r = m.r(t, s, q);
            prop_assert!(r >= prev, "stage {}: {} < {}", s, r, prev);
            prev = r;
        }
        // t - r <= t n(t) / q^(s+1) <= t (1 + k) / q^(s+1): pick s with (1 + k) / q^(s+1) < 1e-13.
        let k = match m { Mapping::Const => 0.0, Mapping::Sigmoid { k, .. } => k };
        let s = ((1e13 * (1.0 + k)).ln() / q.ln()).ceil() as u32;
        let r = m.r(t, s, q);
        prop_assert!((t - r) <= 1e-12 * t, "stage {}: r {} t {}", s, r, t);
    }

    #[test]
    fn sigmoid_never_exceeds_const(
        k in 0.0..20.0_f64,
        b in 0.01..5.0_f64,
        t in 1e-4..500.0_f64,
        stage in 0u32..30,
        q in 1.01..512.0_f64,
    ) {
        let s = Mapping::Sigmoid { k, b }.r(t, stage, q);
        let c = Mapping::Const.r(t, stage, q);
        prop_assert!(s <= c, "sigmoid {} > const {}", s, c);
    }

    #[test]
    fn eval_mode_is_identity_at_sigma_min(
        sd in 0.05..2.0_f64,
        smin in 1e-5..0.5_f64,
        x in -10.0..10.0_f64,
        fx in -1e3..1e3_f64,
    ) {
        let c = precond::ecm_eval(smin, sd, smin);
        prop_assert_eq!(c.c_skip, 1.0);
        prop_assert_eq!(c.c_out, 0.0);
        prop_assert_eq!(c.combine(x, fx), x);
        // c_in and c_noise do not depend on the mode.
        let tr = precond::ecm_train(smin, sd);
        prop_assert_eq!((c.c_in, c.c_noise), (tr.c_in, tr.c_noise));
    }

    #[test]
    fn edm_coefficients_satisfy_their_identities(sigma in 1e-3..100.0_f64, sd in 0.1..2.0_f64) {
        // c_skip^2 sigma^2 ... EDM's unit-variance conditions: c_skip + c_out^2 / sd^2 = 1 and
        // c_in^2 (sigma^2 + sd^2) = 1.
        let c = precond::edm(sigma, sd);
        prop_assert!((c.c_skip + c.c_out * c.c_out / (sd * sd) - 1.0).abs() < 1e-12);
        prop_assert!((c.c_in * c.c_in * (sigma * sigma + sd * sd) - 1.0).abs() < 1e-12);
        prop_assert!(c.c_skip > 0.0 && c.c_skip <= 1.0);
    }

    #[test]
    fn ict_probabilities_are_a_distribution(
        k in 0u64..400_000,
        p_mean in -3.0..2.0_f64,
        p_std in 0.2..4.0_f64,
    ) {
        let cfg = IctConfig { p_mean, p_std, ..IctConfig::default() };
        let p = cfg.probabilities(k).unwrap();
        prop_assert_eq!(p.len() as u64, cfg.discretization_steps(k) - 1);
        prop_assert!(p.iter().all(|&v| v >= 0.0 && v.is_finite()));
        let sum: f64 = p.iter().sum();
        prop_assert!((sum - 1.0).abs() < 1e-12, "sum {}", sum);
        let w = ict::step_weights(&cfg.sigmas(k));
        prop_assert!(w.iter().all(|&v| v > 0.0 && v.is_finite()));
    }

    #[test]
    fn ict_steps_are_nondecreasing_and_bounded(k in 0u64..1_000_000, total in 1u64..1_000_000) {
        let n0 = ict::discretization_steps(k, total, ict::ICT_S0, ict::ICT_S1);
        let n1 = ict::discretization_steps(k + 1, total, ict::ICT_S0, ict::ICT_S1);
        prop_assert!(n1 >= n0);
        prop_assert!((ict::ICT_S0 + 1..=ict::ICT_S1 + 1).contains(&n0));
    }

    #[test]
    fn karras_times_strictly_decrease_to_zero(
        n in 2usize..2000,
        smin in 1e-4..1.0_f64,
        span in 1.01..1e5_f64,
        rho in 1.0..10.0_f64,
    ) {
        let s = karras_sigmas(n, smin, smin * span, rho);
        prop_assert_eq!(s.len(), n + 1);
        prop_assert!(s.windows(2).all(|w| w[1] < w[0]));
        // EDM's formula ends at sigma_min up to the cancellation in hi + (lo - hi), which grows with
        // (sigma_max / sigma_min)^(1/rho): about 2e-11 relative at rho = 1 and a 1e5 span.
        let tol = 8.0 * f64::EPSILON * rho * span.powf(1.0 / rho);
        prop_assert!((s[n - 1] - smin).abs() <= tol * smin, "{} vs {}", s[n - 1], smin);
        prop_assert!(TimeGrid::new(s).is_ok());
    }

    #[test]
    fn ema_beta_is_in_unit_interval(
        halflife in 0.0..1e4_f64,
        rampup in proptest::option::of(0.0..1.0_f64),
        batch in 1u64..4096,
        step in 0u64..10_000_000,
        sigma_rel in 0.001..SIGMA_REL_MAX,
        beta in 0.0..=1.0_f64,
    ) {
        let configs = [
            EmaConfig::Constant { beta },
            EmaConfig::HalfLife { halflife_kimg: halflife, rampup_ratio: rampup },
            EmaConfig::PowerFunction { sigma_rel },
        ];
        for cfg in configs {
            prop_assert!(cfg.validate().is_ok());
            let b = cfg.beta(step, batch);
            prop_assert!((0.0..=1.0).contains(&b), "{:?}: beta {}", cfg, b);
        }
        let g = ema::sigma_rel_to_gamma(sigma_rel);
        prop_assert!(g.is_finite() && g > -1.0);
        prop_assert!(((ema::gamma_to_sigma_rel(g) - sigma_rel) / sigma_rel).abs() < 1e-9);
    }

    #[test]
    fn stages_are_monotone_and_ticks_lead_by_one_step(
        kimg in 0.01..20.0_f64,
        double in 1u64..50,
        batch in 1u64..1024,
        iter in 0u64..10_000_000,
    ) {
        let ticks = TickSchedule::new(kimg, double, batch).unwrap();
        let iters = StageSchedule::from_ticks(kimg, double, batch).unwrap();
        prop_assert!(iters.stage_at(iter + 1) >= iters.stage_at(iter));
        prop_assert!(ticks.stage_at(iter + 1) >= ticks.stage_at(iter));
        prop_assert_eq!(iters.stage_at(iter), ticks.stage_at(iter + 1));
        let spt = ticks.steps_per_tick();
        prop_assert!((spt * batch) as f64 >= kimg * 1000.0);
        prop_assert!(spt == 1 || (((spt - 1) * batch) as f64) < kimg * 1000.0);
    }

    #[test]
    fn lognormal_is_monotone_positive_and_matches_its_cdf(
        z in -6.0..6.0_f64,
        dz in 1e-6..1.0_f64,
        p_mean in -3.0..2.0_f64,
        p_std in 0.1..3.0_f64,
    ) {
        let d = LogNormal::new(p_mean, p_std).unwrap();
        let (a, b) = (d.t_from_normal(z), d.t_from_normal(z + dz));
        prop_assert!(a > 0.0 && b > a);
        let phi = 0.5 * ect_schedule::special::erfc(-z / std::f64::consts::SQRT_2);
        prop_assert!((d.cdf(a) - phi).abs() < 1e-12);
    }

    #[test]
    fn time_grid_accepts_exactly_the_valid_grids(v in proptest::collection::vec(-1.0..100.0_f64, 0..8)) {
        let valid = v.len() >= 2
            && v.windows(2).all(|w| w[1] < w[0])
            && *v.last().unwrap() == 0.0;
        prop_assert_eq!(TimeGrid::new(v.clone()).is_ok(), valid);
        let mut w = v;
        w.sort_by(|a, b| b.total_cmp(a));
        w.dedup();
        w.retain(|&t| t > 0.0);
        w.push(0.0);
        prop_assert_eq!(TimeGrid::new(w.clone()).is_ok(), w.len() >= 2);
    }
}
