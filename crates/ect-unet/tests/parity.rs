//! Golden tests: the four tiny networks of `tests/fixtures/unet-*-tiny`, whose weights and outputs come
//! from the authors' PyTorch code (EDM / ECT `training/networks.py`, ECT `training/networks_edm2.py`),
//! must be reproduced to a relative error below 1e-4 in f32, in evaluation and training mode.

use ect_unet::parity::check_fixture;
use std::path::PathBuf;

const TOL: f64 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn check(name: &str) {
    let report = check_fixture(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    eprintln!(
        "{name}: rel err eval {:.3e}, train {:.3e}",
        report.rel_err_eval, report.rel_err_train
    );
    assert!(report.passes(TOL), "{name}: {report:?}");
}

#[test]
fn ddpmpp_matches_reference() {
    check("unet-ddpmpp-tiny");
}

#[test]
fn ncsnpp_matches_reference() {
    check("unet-ncsnpp-tiny");
}

#[test]
fn adm_matches_reference() {
    check("unet-adm-tiny");
}

#[test]
fn edm2_matches_reference() {
    check("unet-edm2-tiny");
}

#[test]
fn broken_fixture_is_an_error_naming_the_problem() {
    use ect_unet::weights::{read_safetensors, save_tensors};
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("unet-ddpmpp-tiny");
    for f in ["meta.json", "weights.safetensors"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let mut io: std::collections::HashMap<_, _> = read_safetensors(&src.join("io.safetensors"))
        .unwrap()
        .into_iter()
        .collect();
    assert!(io.remove("out_train").is_some());
    save_tensors(&io, &dir.path().join("io.safetensors")).unwrap();
    let err = check_fixture(dir.path()).unwrap_err();
    assert!(err.to_string().contains("out_train"), "{err}");
}
