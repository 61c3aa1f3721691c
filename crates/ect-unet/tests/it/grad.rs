//! Gradient flow: in training mode every parameter of each architecture gets a non-zero gradient
//! (no dead layers). The fixtures' weights are random everywhere (no zero-initialized output layers
//! that would block the gradient); the skip-encoder/decoder SongUNet variant uses the reference init,
//! whose `init_zero` layers are 1e-5-scaled rather than zero.

use crate::common;

use common::{config, fixture_dir, FIXTURES};
use ect_unet::{load_weights, CoeffMode, DropoutMode, NetworkConfig, Precond};
use serde_json::json;
use tch::{nn::VarStore, Device, Kind, Tensor};

fn assert_all_gradients_nonzero(vs: &VarStore, net: &Precond, cfg: &NetworkConfig, what: &str) {
    tch::manual_seed(3);
    let (c, r) = (cfg.img_channels(), cfg.img_resolution());
    let x = Tensor::randn([3, c, r, r], (Kind::Float, Device::Cpu));
    let sigma = Tensor::from_slice(&[0.05f32, 1.0, 20.0]);
    let labels = (cfg.label_dim() > 0)
        .then(|| Tensor::eye(cfg.label_dim(), (Kind::Float, Device::Cpu)).narrow(0, 0, 3));
    let aug = Tensor::randn([3, 9], (Kind::Float, Device::Cpu));
    net.normalize_weights();
    let out = net.forward_with_augment(
        &x,
        &sigma,
        labels.as_ref(),
        Some(&aug),
        CoeffMode::Train,
        DropoutMode::Sample,
    );
    out.square().sum(Kind::Float).backward();
    let mut dead = Vec::new();
    for (name, t) in vs.variables() {
        if !t.requires_grad() {
            continue;
        }
        let g = t.grad();
        if !g.defined()
            || g.abs().max().double_value(&[]) == 0.0
            || g.isnan().any().int64_value(&[]) != 0
        {
            dead.push(name);
        }
    }
    dead.sort();
    assert!(
        dead.is_empty(),
        "{what}: parameters without gradient: {dead:?}"
    );
}

#[test]
fn every_parameter_of_the_fixture_networks_gets_a_gradient() {
    let _torch = crate::torch();
    for name in FIXTURES {
        let cfg = config(name);
        let mut vs = VarStore::new(Device::Cpu);
        let net = Precond::new(&vs.root(), &cfg).unwrap();
        load_weights(&mut vs, &fixture_dir(name).join("weights.safetensors")).unwrap();
        assert_all_gradients_nonzero(&vs, &net, &cfg, name);
    }
}

#[test]
fn every_parameter_of_a_conditional_skip_songunet_gets_a_gradient() {
    let _torch = crate::torch();
    let args = json!({
        "img_resolution": 8, "img_channels": 3, "label_dim": 5, "model_type": "SongUNet",
        "augment_dim": 9, "model_channels": 8, "channel_mult": [1, 2], "num_blocks": 1,
        "attn_resolutions": [4], "dropout": 0.1, "encoder_type": "skip", "decoder_type": "skip",
        "embedding_type": "fourier", "channel_mult_noise": 2, "resample_filter": [1, 3, 3, 1]
    });
    let cfg = NetworkConfig::from_class_and_args("EDMPrecond", &args).unwrap();
    tch::manual_seed(0);
    let vs = VarStore::new(Device::Cpu);
    let net = Precond::new(&vs.root(), &cfg).unwrap();
    let names: Vec<String> = vs.variables().into_keys().collect();
    for want in [
        "model.enc.4x4_aux_down.resample_filter",
        "model.enc.4x4_aux_skip.weight",
        "model.dec.4x4_aux_conv.weight",
        "model.dec.8x8_aux_up.resample_filter",
        "model.map_augment.weight",
        "model.map_label.weight",
    ] {
        assert!(names.iter().any(|n| n == want), "missing {want}");
    }
    assert_all_gradients_nonzero(&vs, &net, &cfg, "skip SongUNet");
}
