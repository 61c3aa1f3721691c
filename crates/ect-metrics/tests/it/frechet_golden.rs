//! Golden test against `tests/fixtures/frechet.{json,safetensors}`: features, `np.cov` statistics and the
//! Fréchet distance computed by the pytorch-fid / EDM formula (scipy `sqrtm`), copied from the shared
//! reference fixtures.

use ect_metrics::{frechet_distance, FeatureStats, StatsAccumulator};
use safetensors::{Dtype, SafeTensors};

const CASES: [&str; 3] = ["d16_full", "d64_full", "d128_rankdef"];

fn fixture_bytes() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/frechet.safetensors"
    ))
    .unwrap()
}

fn expected(name: &str) -> f64 {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/frechet.json"
    ))
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["fd"][name].as_f64().unwrap()
}

fn f64_tensor(st: &SafeTensors<'_>, name: &str) -> (Vec<f64>, Vec<usize>) {
    let view = st.tensor(name).unwrap();
    assert_eq!(view.dtype(), Dtype::F64, "{name}");
    let data = view
        .data()
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (data, view.shape().to_vec())
}

fn stats(st: &SafeTensors<'_>, case: &str, which: u8) -> FeatureStats {
    let (mu, _) = f64_tensor(st, &format!("{case}.mu{which}"));
    let (sigma, _) = f64_tensor(st, &format!("{case}.sigma{which}"));
    FeatureStats::new(mu, sigma).unwrap()
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

#[test]
fn fd_from_fixture_statistics_matches_reference() {
    let _torch = crate::torch();
    let bytes = fixture_bytes();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    for case in CASES {
        let fd = frechet_distance(&stats(&st, case, 1), &stats(&st, case, 2)).unwrap();
        let want = expected(case);
        eprintln!("{case}: fd {fd} reference {want} rel {:e}", rel(fd, want));
        assert!(rel(fd, want) < 1e-6, "{case}: {fd} vs {want}");
    }
}

#[test]
fn fd_from_accumulated_features_matches_reference() {
    let _torch = crate::torch();
    let bytes = fixture_bytes();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    for case in CASES {
        let mut all = Vec::new();
        for which in [1u8, 2] {
            let (feats, shape) = f64_tensor(&st, &format!("{case}.feats{which}"));
            let d = shape[1];
            let mut acc = StatsAccumulator::new(d).unwrap();
            // Uneven batches exercise the merge.
            for chunk in feats.chunks(d * 37) {
                acc.add_batch(chunk).unwrap();
            }
            let got = acc.finish().unwrap();
            assert_eq!(got.num_samples(), Some(shape[0] as u64));
            let want = stats(&st, case, which);
            let max_sigma = want.sigma().iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let err = got
                .sigma()
                .iter()
                .zip(want.sigma())
                .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                err < 1e-12 * max_sigma.max(1.0),
                "{case} sigma{which}: max abs err {err}"
            );
            let mu_err = got
                .mu()
                .iter()
                .zip(want.mu())
                .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
            assert!(mu_err < 1e-12, "{case} mu{which}: max abs err {mu_err}");
            all.push(got);
        }
        let fd = frechet_distance(&all[0], &all[1]).unwrap();
        let want = expected(case);
        eprintln!(
            "{case} (accumulated): fd {fd} reference {want} rel {:e}",
            rel(fd, want)
        );
        assert!(rel(fd, want) < 1e-6, "{case}: {fd} vs {want}");
    }
}

#[test]
fn self_distance_is_about_zero() {
    let _torch = crate::torch();
    let bytes = fixture_bytes();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    for case in CASES {
        for which in [1u8, 2] {
            let s = stats(&st, case, which);
            let d = s.dim();
            let scale: f64 = (0..d).map(|i| s.sigma()[i * d + i]).sum();
            let fd = frechet_distance(&s, &s).unwrap();
            eprintln!("{case}.{which} self: {fd:e} (scale {scale})");
            assert!(fd.abs() < 1e-6 * scale, "{case}: self distance {fd}");
            // The reference's own self distance on the rank-deficient case is only ~1e-5; ours is tighter.
            assert!(fd.abs() <= expected(&format!("{case}.self")).abs().max(1e-9 * scale));
        }
    }
}
