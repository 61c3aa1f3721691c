//! Dropout record/replay: ECT's teacher pass must see the student pass's masks (docs/method.md §3).

use crate::common;

use common::{config_with, fixture_dir};
use ect_unet::{
    load_weights, CoeffMode, DropoutMode, MaskTape, NetworkConfig, Precond, ValidNetworkConfig,
};
use serde_json::json;
use tch::{nn::VarStore, Device, Kind, Tensor};

fn net(cfg: &ValidNetworkConfig, fixture: &str) -> (VarStore, Precond) {
    let mut vs = VarStore::new(Device::Cpu);
    let net = Precond::new(&vs.root(), cfg).unwrap();
    load_weights(&mut vs, &fixture_dir(fixture).join("weights.safetensors")).unwrap();
    (vs, net)
}

fn inputs(cfg: &NetworkConfig) -> (Tensor, Tensor, Option<Tensor>) {
    tch::manual_seed(7);
    let (c, r) = (cfg.img_channels(), cfg.img_resolution());
    let x = Tensor::randn([4, c, r, r], (Kind::Float, Device::Cpu));
    let sigma = Tensor::from_slice(&[0.01f32, 0.3, 2.0, 40.0]);
    let labels = (cfg.label_dim() > 0)
        .then(|| Tensor::eye(cfg.label_dim(), (Kind::Float, Device::Cpu)).narrow(0, 0, 4));
    (x, sigma, labels)
}

fn check_record_replay(fixture: &str, overrides: &[(&str, serde_json::Value)]) {
    let cfg = config_with(fixture, overrides);
    let (_vs, net) = net(&cfg, fixture);
    let (x, sigma, labels) = inputs(&cfg);
    let tape = MaskTape::new();
    let run =
        |mode| tch::no_grad(|| net.forward(&x, &sigma, labels.as_ref(), CoeffMode::Train, mode));

    let recorded = run(DropoutMode::Record(&tape));
    assert!(!tape.is_empty(), "{fixture}: no mask recorded");
    let n = tape.len();
    let replayed = run(DropoutMode::Replay(&tape));
    assert_eq!(tape.len(), n);
    assert!(
        recorded.equal(&replayed),
        "{fixture}: replay differs from record"
    );
    // A second replay of the same tape starts from its first mask again.
    assert!(
        recorded.equal(&run(DropoutMode::Replay(&tape))),
        "{fixture}: second replay differs"
    );

    let fresh_a = run(DropoutMode::Sample);
    let fresh_b = run(DropoutMode::Sample);
    let off = run(DropoutMode::Off);
    let diff = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]);
    assert!(
        diff(&fresh_a, &fresh_b) > 1e-3,
        "{fixture}: two fresh passes agree"
    );
    assert!(
        diff(&fresh_a, &off) > 1e-3,
        "{fixture}: dropout 0.5 changed nothing"
    );

    // Recording again starts a new tape with new masks.
    let again = run(DropoutMode::Record(&tape));
    assert_eq!(tape.len(), n);
    assert!(
        diff(&again, &recorded) > 1e-3,
        "{fixture}: re-recording reused old masks"
    );
}

#[test]
fn songunet_record_replay_is_bit_identical() {
    let _torch = crate::torch();
    check_record_replay("unet-ddpmpp-tiny", &[("dropout", json!(0.5))]);
}

#[test]
fn adm_record_replay_is_bit_identical_with_label_dropout() {
    let _torch = crate::torch();
    check_record_replay(
        "unet-adm-tiny",
        &[("dropout", json!(0.5)), ("label_dropout", json!(0.5))],
    );
}

#[test]
fn edm2_record_replay_is_bit_identical() {
    let _torch = crate::torch();
    check_record_replay("unet-edm2-tiny", &[("dropout", json!(0.5))]);
}

#[test]
fn replay_with_gradients_matches_record() {
    let _torch = crate::torch();
    let cfg = config_with("unet-ncsnpp-tiny", &[("dropout", json!(0.5))]);
    let (_vs, net) = net(&cfg, "unet-ncsnpp-tiny");
    let (x, sigma, _) = inputs(&cfg);
    let tape = MaskTape::new();
    let student = net.forward(
        &x,
        &sigma,
        None,
        CoeffMode::Train,
        DropoutMode::Record(&tape),
    );
    let teacher = tch::no_grad(|| {
        net.forward(
            &x,
            &sigma,
            None,
            CoeffMode::Train,
            DropoutMode::Replay(&tape),
        )
    });
    assert!(student.requires_grad() && !teacher.requires_grad());
    assert!(student.detach().equal(&teacher));
}

#[test]
fn inverted_dropout_keeps_the_expectation() {
    let _torch = crate::torch();
    let x = Tensor::ones([200_000], (Kind::Float, Device::Cpu));
    let y = DropoutMode::Sample.dropout(&x, 0.3);
    let kept = y
        .ne(0.0)
        .to_kind(Kind::Double)
        .mean(Kind::Double)
        .double_value(&[]);
    assert!((kept - 0.7).abs() < 0.01, "kept fraction {kept}");
    let scale = y.max().double_value(&[]);
    assert!((scale - 1.0 / 0.7).abs() < 1e-6, "scale {scale}");
    assert!((y.mean(Kind::Double).double_value(&[]) - 1.0).abs() < 0.02);
    assert!(DropoutMode::Off.dropout(&x, 0.3).equal(&x));
}

#[test]
#[should_panic(expected = "MaskTape replay")]
fn replay_of_an_empty_tape_panics_with_a_message() {
    let _torch = crate::torch();
    let cfg = config_with("unet-ddpmpp-tiny", &[("dropout", json!(0.5))]);
    let (_vs, net) = net(&cfg, "unet-ddpmpp-tiny");
    let (x, sigma, _) = inputs(&cfg);
    let tape = MaskTape::new();
    let _ = net.forward(
        &x,
        &sigma,
        None,
        CoeffMode::Train,
        DropoutMode::Replay(&tape),
    );
}
