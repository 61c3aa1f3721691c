//! Configs: JSON with the reference argument names, strict about unknown keys, validated with errors
//! that name the field; and a property test that building never disagrees with counting.

use crate::common;

use ect_unet::{
    try_count_parameters, CoeffMode, DropoutMode, NetworkConfig, NetworkConfigError, Precond,
};
use proptest::prelude::*;
use serde_json::json;
use tch::{nn::VarStore, Device, Kind, Tensor};

#[test]
fn presets_round_trip_through_json() {
    let _torch = crate::torch();
    let mut presets = vec![
        NetworkConfig::ddpmpp_cifar10(0.2),
        NetworkConfig::ncsnpp_cifar10(0.13),
    ];
    for s in ["S", "m", "L", "xl"] {
        presets.push(NetworkConfig::edm2_imagenet64(s, 0.4).unwrap());
    }
    for cfg in presets {
        let text = serde_json::to_string(&cfg).unwrap();
        assert_eq!(
            NetworkConfig::from_json_str(&text).unwrap().get(),
            &cfg,
            "{text}"
        );
    }
    assert!(matches!(
        NetworkConfig::edm2_imagenet64("XXL", 0.0),
        Err(NetworkConfigError::Config { .. })
    ));
}

#[test]
fn model_type_defaults_to_dhariwal_unet_as_in_the_reference() {
    let _torch = crate::torch();
    for network in ["ECMPrecond", "EDMPrecond"] {
        let cfg = NetworkConfig::from_json_value(&json!({
            "network": network, "img_resolution": 16, "img_channels": 3,
            "model_channels": 16, "channel_mult": [1, 2], "num_blocks": 1,
        }))
        .unwrap();
        let model = match cfg.get() {
            NetworkConfig::Ecm(c) => &c.model,
            NetworkConfig::Edm(c) => &c.model,
            NetworkConfig::Edm2(_) => panic!("{network} parsed as EDM2"),
        };
        assert!(
            matches!(model, ect_unet::ModelConfig::DhariwalUNet(_)),
            "{network}: {model:?}"
        );
    }
}

#[test]
fn negative_dropout_res_is_rejected_naming_the_field() {
    let _torch = crate::torch();
    let err = NetworkConfig::from_json_value(&json!({
        "network": "edm2.Precond", "img_resolution": 16, "img_channels": 3,
        "model_channels": 16, "channel_mult": [1, 2], "num_blocks": 1, "dropout_res": -1,
    }))
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("`dropout_res`") && msg.contains("got -1"),
        "{msg}"
    );
    for ok in [json!(0), json!(8), serde_json::Value::Null] {
        NetworkConfig::from_json_value(&json!({
            "network": "edm2.Precond", "img_resolution": 16, "img_channels": 3,
            "model_channels": 16, "channel_mult": [1, 2], "num_blocks": 1, "dropout_res": ok,
        }))
        .unwrap();
    }
}

#[test]
fn fixture_configs_parse_with_defaults() {
    let _torch = crate::torch();
    let cfg = common::config("unet-ddpmpp-tiny");
    let NetworkConfig::Ecm(ecm) = cfg.get() else {
        panic!("not ECM: {cfg:?}")
    };
    assert_eq!(ecm.sigma_min, 0.003);
    assert_eq!(ecm.image.sigma_data, 0.5);
    assert_eq!(cfg.class_name(), "ECMPrecond");
}

fn parse_err(v: serde_json::Value) -> String {
    NetworkConfig::from_json_value(&v).unwrap_err().to_string()
}

#[test]
fn unknown_keys_and_bad_values_are_named() {
    let _torch = crate::torch();
    let base = json!({"network": "ECMPrecond", "img_resolution": 32, "img_channels": 3, "model_type": "SongUNet", "channel_mult": [2, 2, 2]});
    assert!(NetworkConfig::from_json_value(&base).is_ok());
    let with = |k: &str, v: serde_json::Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let e = parse_err(with("chanel_mult", json!([1])));
    assert!(e.contains("chanel_mult"), "{e}");
    let e = parse_err(with("img_resolution", json!(30)));
    assert!(e.contains("img_resolution") && e.contains("30"), "{e}");
    let e = parse_err(with("dropout", json!(1.5)));
    assert!(e.contains("dropout"), "{e}");
    let e = parse_err(with("resample_filter", json!([1, 2, 1])));
    assert!(e.contains("resample_filter"), "{e}");
    let e = parse_err(with("encoder_type", json!("fancy")));
    assert!(e.contains("fancy"), "{e}");
    let e = parse_err(with("model_type", json!("UNet3D")));
    assert!(e.contains("UNet3D"), "{e}");
    let e = parse_err(with("network", json!("VPPrecond")));
    assert!(e.contains("VPPrecond"), "{e}");
    let e = parse_err(with("model_channels", json!(0)));
    assert!(e.contains("model_channels"), "{e}");
}

#[test]
fn group_norm_split_errors_instead_of_panicking() {
    let _torch = crate::torch();
    // 6 channels -> 1 group of 6 is fine, 18 channels -> 4 groups is not (18 % 4 != 0).
    let v = json!({"network": "EDMPrecond", "img_resolution": 8, "img_channels": 1, "model_type": "DhariwalUNet",
                   "model_channels": 18, "channel_mult": [1], "num_blocks": 1, "attn_resolutions": []});
    let cfg = NetworkConfig::from_json_value(&v).unwrap();
    let vs = VarStore::new(Device::Cpu);
    let err = Precond::new(&vs.root(), &cfg).unwrap_err();
    assert!(err.to_string().contains("18 channels"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, .. ProptestConfig::default() })]

    /// Any small valid SongUNet / ADM / EDM2: the shapes-only count equals the allocated count and the
    /// forward maps [N, C, H, W] to [N, C, H, W] with finite values.
    #[test]
    fn build_count_and_forward_agree(
        arch in 0usize..3, levels in 1usize..3, mc in prop::sample::select(vec![8i64, 16]),
        blocks in 0i64..2, attn in any::<bool>(), labels in 0i64..3, channels in 1i64..4,
    ) {
        let _torch = crate::torch();
        let mult: Vec<i64> = (0..levels).map(|l| 1 + l as i64).collect();
        let attn_res: Vec<i64> = if attn { vec![8 >> (levels - 1)] } else { vec![] };
        let v = match arch {
            0 => json!({"network": "ECMPrecond", "img_resolution": 8, "img_channels": channels, "label_dim": labels,
                        "model_type": "SongUNet", "model_channels": mc, "channel_mult": mult, "num_blocks": blocks,
                        "attn_resolutions": attn_res, "embedding_type": if attn { "fourier" } else { "positional" },
                        "encoder_type": if blocks == 0 { "skip" } else { "residual" }}),
            1 => json!({"network": "EDMPrecond", "img_resolution": 8, "img_channels": channels, "label_dim": labels,
                        "model_type": "DhariwalUNet", "model_channels": mc * 8, "channel_mult": mult,
                        "num_blocks": blocks, "attn_resolutions": attn_res}),
            _ => json!({"network": "edm2.Precond", "img_resolution": 8, "img_channels": channels, "label_dim": labels,
                        "model_channels": mc * 4, "channel_mult": mult, "num_blocks": blocks,
                        "attn_resolutions": attn_res, "channels_per_head": 16}),
        };
        let cfg = NetworkConfig::from_json_value(&v).unwrap();
        let vs = VarStore::new(Device::Cpu);
        let net = Precond::new(&vs.root(), &cfg).unwrap();
        let allocated: u64 = vs.trainable_variables().iter().map(|t| t.numel() as u64).sum();
        prop_assert_eq!(try_count_parameters(&cfg).unwrap(), allocated);
        let x = Tensor::randn([2, channels, 8, 8], (Kind::Float, Device::Cpu));
        let sigma = Tensor::from_slice(&[0.1f32, 10.0]);
        let y = tch::no_grad(|| net.forward(&x, &sigma, None, CoeffMode::Eval, DropoutMode::Off));
        prop_assert_eq!(y.size(), x.size());
        prop_assert!(y.isfinite().all().int64_value(&[]) == 1);
    }
}
