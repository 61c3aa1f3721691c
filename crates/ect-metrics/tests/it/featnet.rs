//! The built-in feature net: a tiny training run on synthetic data (the real Fashion-MNIST run is the
//! `#[ignore]`d `fashion_mnist_accuracy` test), save/load, and input checks.

use ect_metrics::extract::featnet::{
    accuracy, train_feature_net, FeatureNet, LabeledImages, TrainConfig,
};
use ect_metrics::{FeatureExtractor, ImageBatch};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::Device;

/// Class k: a bright horizontal bar at rows 2k..2k+4 on noise.
fn synthetic(n: usize, seed: u64) -> (Vec<u8>, Vec<u32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut px = Vec::with_capacity(n * 784);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let k = (i % 10) as u32;
        for r in 0..28 {
            for _ in 0..28 {
                let bar = r >= 2 * k as usize + 2 && r < 2 * k as usize + 6;
                px.push(if bar {
                    rng.gen_range(180..=255)
                } else {
                    rng.gen_range(0..60)
                });
            }
        }
        labels.push(k);
    }
    (px, labels)
}

#[test]
fn tiny_training_lowers_the_loss_and_round_trips() {
    let _torch = crate::torch();
    let (px, labels) = synthetic(640, 1);
    let data = LabeledImages {
        pixels: &px,
        labels: &labels,
    };
    let cfg = TrainConfig {
        epochs: 4,
        max_steps: Some(30),
        batch_size: 64,
        lr: 2e-3,
        seed: 3,
    };
    let (net, report) = train_feature_net(&data, Some(&data), &cfg, Device::Cpu).unwrap();
    assert_eq!(report.steps, 30);
    let first: f64 = report.step_losses[..5].iter().sum::<f64>() / 5.0;
    let last: f64 = report.step_losses[25..].iter().sum::<f64>() / 5.0;
    // Ten classes start near ln 10 = 2.30; the bars are learned within a few steps, so the
    // first five steps already average below that.
    assert!(first > 1.5 && last < 0.1 * first, "loss {first} -> {last}");
    let acc = report.test_accuracy.unwrap();
    assert!(acc > 0.9, "accuracy {acc}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("featnet.safetensors");
    net.save(&path).unwrap();
    let loaded = FeatureNet::load(&path, Device::Cpu).unwrap();
    let batch = ImageBatch::new(&px[..4 * 784], 4, 1, 28, 28).unwrap();
    let (a, b) = (
        net.extract(&batch).unwrap(),
        loaded.extract(&batch).unwrap(),
    );
    assert_eq!(a, b);
    assert_eq!((a.dim, a.features.len(), a.classes), (128, 4 * 128, 10));
    assert_eq!(accuracy(&loaded, &data).unwrap(), acc);
}

#[test]
fn bad_inputs_are_rejected() {
    let _torch = crate::torch();
    let net = FeatureNet::new(Device::Cpu);
    let err = net
        .extract(&ImageBatch::new(&[0u8; 3 * 784], 1, 3, 28, 28).unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("3x28x28"), "{err}");
    let err = net.save(std::path::Path::new("/tmp/x.pt")).unwrap_err();
    assert!(err.to_string().contains("safetensors"), "{err}");
    let err = FeatureNet::load(
        std::path::Path::new("/nonexistent/featnet.safetensors"),
        Device::Cpu,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/featnet.safetensors"),
        "{err}"
    );
    let labels = [0u32, 11];
    let px = vec![0u8; 2 * 784];
    let bad = LabeledImages {
        pixels: &px,
        labels: &labels,
    };
    assert!(train_feature_net(&bad, None, &TrainConfig::default(), Device::Cpu).is_err());
}
