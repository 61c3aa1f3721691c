//! Test accuracy of saved feature-net weights on the Fashion-MNIST test split (the figure
//! `train-feature-net` prints after training, recomputed for an existing weights file):
//!
//! ```text
//! cargo run -p ect-metrics --example featnet_accuracy -- WEIGHTS.safetensors [FASHION_MNIST_DIR]
//! ```

use ect_metrics::extract::featnet::{accuracy, FeatureNet, LabeledImages};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let weights = args
        .next()
        .ok_or("usage: featnet_accuracy WEIGHTS.safetensors [DIR]")?;
    let dir = match args.next() {
        Some(d) => d.into(),
        None => ect_data::fmnist::locate(None).ok_or("Fashion-MNIST not found: pass its folder")?,
    };
    let test = ect_data::idx::open(&dir, ect_data::Split::Test)?;
    let labels = test
        .labels()
        .ok_or("the test split has no labels")?
        .to_vec();
    let net = FeatureNet::load(std::path::Path::new(&weights), tch::Device::Cpu)?;
    let acc = accuracy(
        &net,
        &LabeledImages {
            pixels: test.pixels(),
            labels: &labels,
        },
    )?;
    println!(
        "{}",
        serde_json::json!({"weights": weights, "test_images": labels.len(), "test_accuracy": acc})
    );
    Ok(())
}
