//! Loading TorchScript extractors: tiny modules from `fixtures/make_torchscript_fixtures.py` that follow
//! the export scripts' contracts with closed-form outputs.

use std::path::PathBuf;

use ect_metrics::extract::torchscript::{TorchScriptExtractor, TorchScriptKind};
use ect_metrics::{FeatureExtractor, ImageBatch, MetricsError};
use tch::Device;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Two 3x8x8 images: image 0 has channel means (10, 20, 30), image 1 is constant 255.
fn two_images() -> Vec<u8> {
    let mut px = Vec::new();
    for c in 0..3u8 {
        px.extend(std::iter::repeat_n(10 * (c + 1), 64));
    }
    px.extend(std::iter::repeat_n(255u8, 3 * 64));
    px
}

#[test]
fn inception_module_gives_features_and_logits() {
    let _torch = crate::torch();
    let ex = TorchScriptExtractor::inception(&fixture("tiny_inception.pt"), Device::Cpu).unwrap();
    assert_eq!(
        (ex.feature_dim(), ex.num_classes(), ex.name()),
        (2048, 1008, "inception-v3")
    );
    let px = two_images();
    let out = ex
        .extract(&ImageBatch::new(&px, 2, 3, 8, 8).unwrap())
        .unwrap();
    assert_eq!((out.n, out.dim, out.classes), (2, 2048, 1008));
    for j in [0usize, 1, 2, 2045, 2047] {
        let want = 10.0 * (j % 3 + 1) as f32 / 255.0;
        assert!(
            (out.features[j] - want).abs() < 1e-6,
            "feature {j}: {}",
            out.features[j]
        );
        assert!((out.features[2048 + j] - 1.0).abs() < 1e-6);
    }
    let logits = out.logits.unwrap();
    assert!(
        (logits[1008 + 1007] - 1007.0).abs() < 1e-3,
        "{}",
        logits[1008 + 1007]
    );
}

#[test]
fn grayscale_is_repeated_to_three_channels() {
    let _torch = crate::torch();
    let ex = TorchScriptExtractor::inception(&fixture("tiny_inception.pt"), Device::Cpu).unwrap();
    let px = vec![51u8; 5 * 5];
    let out = ex
        .extract(&ImageBatch::new(&px, 1, 1, 5, 5).unwrap())
        .unwrap();
    assert!(
        out.features[..3].iter().all(|&f| (f - 0.2).abs() < 1e-6),
        "{:?}",
        &out.features[..3]
    );
}

#[test]
fn dinov2_module_gets_resized_normalized_input() {
    let _torch = crate::torch();
    let ex = TorchScriptExtractor::dinov2(&fixture("tiny_dinov2.pt"), Device::Cpu).unwrap();
    assert_eq!((ex.feature_dim(), ex.num_classes()), (1024, 0));
    // Constant images stay constant under the resize; the module returns per-channel means after
    // the ImageNet normalization.
    let px = vec![128u8; 3 * 32 * 32];
    let out = ex
        .extract(&ImageBatch::new(&px, 1, 3, 32, 32).unwrap())
        .unwrap();
    assert!(out.logits.is_none());
    let mean = [0.485f32, 0.456, 0.406];
    let std = [0.229f32, 0.224, 0.225];
    for j in 0..6 {
        let want = (128.0 / 255.0 - mean[j % 3]) / std[j % 3];
        assert!(
            (out.features[j] - want).abs() < 1e-4,
            "feature {j}: {} vs {want}",
            out.features[j]
        );
    }
}

#[test]
fn wrong_output_shape_is_a_clear_error_at_load() {
    let _torch = crate::torch();
    let err = TorchScriptExtractor::inception(&fixture("wrong_shape_inception.pt"), Device::Cpu)
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, MetricsError::Model { .. }), "{msg}");
    assert!(
        msg.contains("wrong_shape_inception.pt")
            && msg.contains("[3, 10]")
            && msg.contains("[3, 2048]"),
        "{msg}"
    );
}

#[test]
fn wrong_output_kind_and_missing_files_are_clear_errors() {
    let _torch = crate::torch();
    // A DINOv2-style module (single tensor out, float input) used as Inception.
    let err = TorchScriptExtractor::inception(&fixture("tiny_dinov2.pt"), Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("tiny_dinov2.pt"), "{err}");
    let err = TorchScriptExtractor::load(
        &fixture("tiny_inception.pt"),
        Device::Cpu,
        TorchScriptKind::Dinov2,
        2048,
        0,
    )
    .unwrap_err();
    assert!(err.to_string().contains("tiny_inception.pt"), "{err}");
    let err = TorchScriptExtractor::dinov2(&fixture("nope.pt"), Device::Cpu).unwrap_err();
    assert!(
        err.to_string().contains("nope.pt") && err.to_string().contains("no such file"),
        "{err}"
    );
    let err = TorchScriptExtractor::dinov2(&fixture("frechet.json"), Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("frechet.json"), "{err}");
}

#[test]
fn bad_batches_are_rejected() {
    let _torch = crate::torch();
    assert!(ImageBatch::new(&[0u8; 10], 1, 3, 2, 2).is_err());
    let ex = TorchScriptExtractor::inception(&fixture("tiny_inception.pt"), Device::Cpu).unwrap();
    let err = ex
        .extract(&ImageBatch::new(&[0u8; 8], 1, 2, 2, 2).unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("2 channels"), "{err}");
}
