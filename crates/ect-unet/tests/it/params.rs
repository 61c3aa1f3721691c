//! Parameter counts of the presets (numbers from the paper / EDM / EDM2 model cards and the reference
//! code's parameter totals), counted without allocating the weights.

use ect_unet::{try_count_parameters, NetworkConfig, SongUNetConfig};

#[test]
fn ddpmpp_cifar10_has_55_732_739_parameters() {
    let _torch = crate::torch();
    assert_eq!(
        try_count_parameters(&NetworkConfig::ddpmpp_cifar10(0.2)).unwrap(),
        55_732_739
    );
}

#[test]
fn ncsnpp_cifar10_has_56_395_523_parameters() {
    let _torch = crate::torch();
    assert_eq!(
        try_count_parameters(&NetworkConfig::ncsnpp_cifar10(0.2)).unwrap(),
        56_395_523
    );
}

#[test]
fn edm2_imagenet64_presets() {
    let _torch = crate::torch();
    for (size, want) in [
        ("S", 280_209_253u64),
        ("M", 497_803_045),
        ("L", 777_492_197),
        ("XL", 1_119_276_709),
    ] {
        let cfg = NetworkConfig::edm2_imagenet64(size, 0.0).unwrap();
        assert_eq!(try_count_parameters(&cfg).unwrap(), want, "EDM2-{size}");
    }
}

#[test]
fn invalid_config_is_an_error_naming_the_field() {
    let _torch = crate::torch();
    let mut cfg = NetworkConfig::ddpmpp_cifar10(0.2);
    if let NetworkConfig::Ecm(c) = &mut cfg {
        c.image.img_resolution = 36;
        c.model = ect_unet::ModelConfig::SongUNet(SongUNetConfig {
            channel_mult: vec![2, 2, 2, 2],
            ..SongUNetConfig::default()
        });
    }
    let err = try_count_parameters(&cfg).unwrap_err();
    assert!(err.to_string().contains("img_resolution"), "{err}");
}
