//! Names, strict loading and saving: the VarStore holds exactly the reference state-dict names
//! (`state_dict_keys` of each fixture's meta.json, buffers included), loads are strict and saves
//! round-trip bit for bit.

use crate::common;

use common::{config, fixture_dir, meta, FIXTURES};
use ect_unet::error::ShapeMismatch;
use ect_unet::weights::{read_safetensors, save_tensors};
use ect_unet::{
    load_weights, save_weights, try_count_parameters, CoeffMode, DropoutMode, Precond, UnetError,
};
use std::collections::BTreeSet;
use tch::{nn::VarStore, Device, Kind, Tensor};

#[test]
fn variable_names_equal_reference_state_dict_keys() {
    let _torch = crate::torch();
    for name in FIXTURES {
        let vs = VarStore::new(Device::Cpu);
        let _net = Precond::new(&vs.root(), &config(name)).unwrap();
        let ours: BTreeSet<String> = vs.variables().into_keys().collect();
        let reference: BTreeSet<String> = meta(name)["state_dict_keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(ours, reference, "{name}");
    }
}

#[test]
fn trainable_count_equals_reference_params_with_and_without_allocation() {
    let _torch = crate::torch();
    for name in FIXTURES {
        let want = meta(name)["params"].as_u64().unwrap();
        let vs = VarStore::new(Device::Cpu);
        let _net = Precond::new(&vs.root(), &config(name)).unwrap();
        let allocated: u64 = vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel() as u64)
            .sum();
        assert_eq!(allocated, want, "{name} allocated");
        assert_eq!(
            try_count_parameters(&config(name)).unwrap(),
            want,
            "{name} counted"
        );
    }
}

#[test]
fn buffers_are_not_trainable() {
    let _torch = crate::torch();
    let vs = VarStore::new(Device::Cpu);
    let _net = Precond::new(&vs.root(), &config("unet-ncsnpp-tiny")).unwrap();
    let vars = vs.variables();
    let filter = &vars["model.enc.8x8_down.conv0.resample_filter"];
    let freqs = &vars["model.map_noise.freqs"];
    assert!(!filter.requires_grad() && !freqs.requires_grad());
    assert!(vars["model.enc.8x8_down.conv0.weight"].requires_grad());
    // [1,3,3,1] outer product over its squared sum.
    let want = Tensor::from_slice(&[1f32, 3., 3., 1.]);
    let want = (want.outer(&want) / 64.0).reshape([1, 1, 4, 4]);
    assert_eq!(filter, &want);
}

fn mismatch(err: UnetError) -> (Vec<String>, Vec<String>, Vec<ShapeMismatch>) {
    match err {
        UnetError::WeightMismatch {
            missing,
            unexpected,
            shape_mismatches,
            ..
        } => (missing, unexpected, shape_mismatches),
        other => panic!("expected a weight mismatch, got {other}"),
    }
}

#[test]
fn strict_load_lists_missing_unexpected_and_shape_mismatches() {
    let _torch = crate::torch();
    let dir = tempfile::tempdir().unwrap();
    let mut tensors: std::collections::HashMap<String, Tensor> =
        read_safetensors(&fixture_dir("unet-ddpmpp-tiny").join("weights.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    assert!(tensors.remove("model.map_layer1.bias").is_some());
    assert!(tensors
        .remove("model.enc.8x8_down.conv0.resample_filter")
        .is_some());
    tensors.insert(
        "model.map_label.weight".into(),
        Tensor::zeros([64, 4], (Kind::Float, Device::Cpu)),
    );
    tensors.insert(
        "model.out_conv.weight".into(),
        Tensor::zeros([3, 16, 3, 3], (Kind::Float, Device::Cpu)),
    );
    tensors.insert(
        "model.map_layer0.weight".into(),
        Tensor::zeros([64, 15], (Kind::Float, Device::Cpu)),
    );
    let path = dir.path().join("bad.safetensors");
    save_tensors(&tensors, &path).unwrap();

    let mut vs = VarStore::new(Device::Cpu);
    let _net = Precond::new(&vs.root(), &config("unet-ddpmpp-tiny")).unwrap();
    let before = vs.variables()["model.map_layer0.bias"].copy();
    let err = load_weights(&mut vs, &path).unwrap_err();
    let text = err.to_string();
    let (missing, unexpected, shapes) = mismatch(err);
    assert_eq!(
        missing,
        [
            "model.enc.8x8_down.conv0.resample_filter",
            "model.map_layer1.bias"
        ]
    );
    assert_eq!(
        unexpected,
        ["model.map_label.weight", "model.out_conv.weight"]
    );
    assert_eq!(
        shapes,
        [(
            "model.map_layer0.weight".to_string(),
            vec![64, 16],
            vec![64, 15]
        )]
    );
    for needle in [
        "bad.safetensors",
        "model.map_layer1.bias",
        "model.out_conv.weight",
        "[64, 15]",
    ] {
        assert!(text.contains(needle), "{needle} not in {text}");
    }
    // A rejected file changes nothing.
    assert_eq!(vs.variables()["model.map_layer0.bias"], before);
}

#[test]
fn load_of_missing_or_corrupt_file_names_the_file() {
    let _torch = crate::torch();
    let dir = tempfile::tempdir().unwrap();
    let mut vs = VarStore::new(Device::Cpu);
    let _net = Precond::new(&vs.root(), &config("unet-ddpmpp-tiny")).unwrap();
    let absent = dir.path().join("absent.safetensors");
    assert!(matches!(
        load_weights(&mut vs, &absent),
        Err(UnetError::Io { .. })
    ));
    let corrupt = dir.path().join("corrupt.safetensors");
    std::fs::write(&corrupt, b"\x08\0\0\0\0\0\0\0{}garbage").unwrap();
    let err = load_weights(&mut vs, &corrupt).unwrap_err();
    assert!(matches!(err, UnetError::Safetensors { .. }), "{err}");
    assert!(err.to_string().contains("corrupt.safetensors"));
}

#[test]
fn save_then_load_round_trips_every_variable_and_the_output() {
    let _torch = crate::torch();
    let dir = tempfile::tempdir().unwrap();
    for name in FIXTURES {
        let cfg = config(name);
        let mut a = VarStore::new(Device::Cpu);
        let net_a = Precond::new(&a.root(), &cfg).unwrap();
        load_weights(&mut a, &fixture_dir(name).join("weights.safetensors")).unwrap();
        let path = dir.path().join(format!("{name}.safetensors"));
        save_weights(&a, &path).unwrap();

        let saved: BTreeSet<String> = read_safetensors(&path).unwrap().into_keys().collect();
        let keys: BTreeSet<String> = a.variables().into_keys().collect();
        assert_eq!(saved, keys, "{name}");

        tch::manual_seed(12345);
        let mut b = VarStore::new(Device::Cpu);
        let net_b = Precond::new(&b.root(), &cfg).unwrap();
        load_weights(&mut b, &path).unwrap();
        let (va, vb) = (a.variables(), b.variables());
        for (k, t) in &va {
            assert_eq!(t, &vb[k], "{name}: {k}");
        }
        let x = Tensor::randn(
            [
                2,
                cfg.img_channels(),
                cfg.img_resolution(),
                cfg.img_resolution(),
            ],
            (Kind::Float, Device::Cpu),
        );
        let sigma = Tensor::from_slice(&[0.3f32, 7.0]);
        let labels = (cfg.label_dim() > 0)
            .then(|| Tensor::eye(cfg.label_dim(), (Kind::Float, Device::Cpu)).narrow(0, 0, 2));
        let run = |n: &Precond| {
            tch::no_grad(|| {
                n.forward(
                    &x,
                    &sigma,
                    labels.as_ref(),
                    CoeffMode::Eval,
                    DropoutMode::Off,
                )
            })
        };
        assert_eq!(run(&net_a), run(&net_b), "{name}");
    }
}
