//! Golden tests: the tiny networks of `tests/fixtures/unet-*-tiny`, whose weights and outputs come
//! from the authors' PyTorch code (EDM / ECT `training/networks.py`, ECT `training/networks_edm2.py`),
//! must be reproduced to a relative error below 1e-4 in f32, in evaluation and training mode. Four
//! are copies of the authors' reference fixtures; `unet-song-skip-cond-tiny` and `unet-adm-edm-multihead-tiny`
//! were made by `tools/make_fixture.py` with the authors' classes (through
//! `scripts/convert_edm_checkpoint.py --io`). Malformed io files must give errors naming the tensor.

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
    let _torch = crate::torch();
    check("unet-ddpmpp-tiny");
}

#[test]
fn ncsnpp_matches_reference() {
    let _torch = crate::torch();
    check("unet-ncsnpp-tiny");
}

#[test]
fn adm_matches_reference() {
    let _torch = crate::torch();
    check("unet-adm-tiny");
}

#[test]
fn edm2_matches_reference() {
    let _torch = crate::torch();
    check("unet-edm2-tiny");
}

#[test]
fn broken_fixture_is_an_error_naming_the_problem() {
    let _torch = crate::torch();
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

/// A copy of fixture `name` whose `io.safetensors` is passed through `edit`.
fn edited_copy(
    name: &str,
    edit: impl FnOnce(&mut std::collections::HashMap<String, tch::Tensor>),
) -> tempfile::TempDir {
    use ect_unet::weights::{read_safetensors, save_tensors};
    let dir = tempfile::tempdir().unwrap();
    let src = fixture(name);
    for f in ["meta.json", "weights.safetensors"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let mut io: std::collections::HashMap<_, _> = read_safetensors(&src.join("io.safetensors"))
        .unwrap()
        .into_iter()
        .collect();
    edit(&mut io);
    save_tensors(&io, &dir.path().join("io.safetensors")).unwrap();
    dir
}

fn error_of(dir: &tempfile::TempDir) -> String {
    match check_fixture(dir.path()) {
        Ok(r) => panic!("a malformed fixture passed: {r:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn sigma_of_the_wrong_length_is_an_error_with_both_shapes() {
    let _torch = crate::torch();
    let dir = edited_copy("unet-ddpmpp-tiny", |io| {
        let s = io["sigma"].narrow(0, 0, 3);
        io.insert("sigma".into(), s);
    });
    let err = error_of(&dir);
    assert!(err.contains("sigma has shape [3], expected [4]"), "{err}");
}

#[test]
fn class_labels_of_the_wrong_width_are_an_error_with_both_shapes() {
    let _torch = crate::torch();
    let dir = edited_copy("unet-adm-tiny", |io| {
        let l = io["class_labels"].narrow(1, 0, 3);
        io.insert("class_labels".into(), l);
    });
    let err = error_of(&dir);
    assert!(
        err.contains("class_labels has shape [4, 3], expected [4, 4]"),
        "{err}"
    );
}

#[test]
fn missing_class_labels_of_a_conditional_network_are_an_error() {
    let _torch = crate::torch();
    let dir = edited_copy("unet-adm-tiny", |io| {
        io.remove("class_labels");
    });
    let err = error_of(&dir);
    assert!(
        err.contains("no tensor `class_labels`") && err.contains("label_dim 4"),
        "{err}"
    );
}

#[test]
fn class_labels_for_an_unconditional_network_are_an_error() {
    let _torch = crate::torch();
    let dir = edited_copy("unet-ddpmpp-tiny", |io| {
        io.insert(
            "class_labels".into(),
            tch::Tensor::zeros([4, 2], tch::kind::FLOAT_CPU),
        );
    });
    let err = error_of(&dir);
    assert!(
        err.contains("`class_labels` of shape [4, 2]") && err.contains("label_dim 0"),
        "{err}"
    );
}

#[test]
fn missing_x_and_output_of_the_wrong_shape_are_errors() {
    let _torch = crate::torch();
    let dir = edited_copy("unet-ncsnpp-tiny", |io| {
        io.remove("x");
    });
    assert!(error_of(&dir).contains("no tensor `x`"));
    let dir = edited_copy("unet-ncsnpp-tiny", |io| {
        let o = io["out_eval"].narrow(0, 0, 2);
        io.insert("out_eval".into(), o);
    });
    let err = error_of(&dir);
    assert!(
        err.contains("out_eval has shape [2, 3, 16, 16], x has [4, 3, 16, 16]"),
        "{err}"
    );
}

#[test]
fn augment_labels_need_a_network_with_augment_dim() {
    let _torch = crate::torch();
    let dir = edited_copy("unet-ddpmpp-tiny", |io| {
        io.insert(
            "augment_labels".into(),
            tch::Tensor::zeros([4, 9], tch::kind::FLOAT_CPU),
        );
    });
    let err = error_of(&dir);
    assert!(
        err.contains("augment_labels") && err.contains("augment_dim 0"),
        "{err}"
    );
}

#[test]
fn missing_meta_json_names_the_file_and_the_cause_once() {
    let _torch = crate::torch();
    let dir = tempfile::tempdir().unwrap();
    let err = check_fixture(dir.path()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.ends_with("meta.json"), "{msg}");
    let cause = std::error::Error::source(&err).expect("the io error is the source");
    assert!(cause.to_string().contains("No such file"), "{cause}");
    assert!(!msg.contains("No such file"), "{msg}");
}

/// `tools/make_fixture.py song-skip-cond`: SongUNet with the skip encoder and decoder, Fourier
/// embedding, `[1,3,3,1]` filter, 5 classes with label dropout 0.3, and augmentation labels.
#[test]
fn songunet_skip_conditional_with_augment_labels_matches_reference() {
    let _torch = crate::torch();
    check("unet-song-skip-cond-tiny");
}

/// `tools/make_fixture.py adm-edm-multihead`: `EDMPrecond` + ADM with two attention heads, 6 classes
/// with label dropout 0.25, and augmentation labels.
#[test]
fn edm_precond_adm_with_two_attention_heads_matches_reference() {
    let _torch = crate::torch();
    check("unet-adm-edm-multihead-tiny");
}

/// The new fixtures went through `scripts/convert_edm_checkpoint.py`: its `config.json` must parse as
/// the same network as the fixture's `meta.json`.
#[test]
fn converted_config_json_parses_as_the_fixture_network() {
    let _torch = crate::torch();
    use ect_unet::NetworkConfig;
    for name in ["unet-song-skip-cond-tiny", "unet-adm-edm-multihead-tiny"] {
        let dir = fixture(name);
        let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
        let from_config = NetworkConfig::from_json_str(&text).unwrap();
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
        let from_meta =
            NetworkConfig::from_class_and_args(meta["network"].as_str().unwrap(), &meta["config"])
                .unwrap();
        assert_eq!(from_config, from_meta, "{name}");
    }
}
