//! The full Fashion-MNIST training run of the built-in feature net (minutes on 2 cores, hence ignored):
//! `cargo test -p ect-metrics --test fmnist_train -- --ignored --nocapture`.

use ect_metrics::extract::featnet::{train_feature_net_on_fashion_mnist, TrainConfig};

#[test]
#[ignore = "trains for minutes; needs Fashion-MNIST"]
fn fashion_mnist_accuracy() {
    let _torch = crate::torch();
    let dir =
        ect_data::fmnist::locate(None).expect("Fashion-MNIST not found (set ECT_FASHION_MNIST)");
    let out = std::env::var_os("ECT_FEATNET_OUT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("ect-featnet-fmnist.safetensors"));
    let report =
        train_feature_net_on_fashion_mnist(&dir, &out, &TrainConfig::default(), tch::Device::Cpu)
            .unwrap();
    let acc = report.test_accuracy.unwrap();
    eprintln!(
        "epoch losses {:?}, {:.1} s, test accuracy {acc:.4}, weights {}",
        report.epoch_losses,
        report.seconds,
        out.display()
    );
    assert!(acc > 0.87, "test accuracy {acc}");
}
