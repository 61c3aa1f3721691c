//! Feature-extraction throughput of one extractor through the library path the CLI uses
//! ([`ect_metrics::score::open_extractor`], then [`FeatureExtractor::extract`] per batch), on random `u8`
//! images; prints one JSON line with images per second.
//!
//! ```text
//! cargo run -p ect-metrics --example extract_throughput -- inception FILE.pt [batch] [batches] [size]
//! cargo run -p ect-metrics --example extract_throughput -- dinov2 FILE.pt [batch] [batches] [size]
//! cargo run -p ect-metrics --example extract_throughput -- feature-net [batch] [batches]
//! ```
//!
//! Two untimed batches warm the module up (TorchScript's profiling executor records shapes on the first
//! call and optimizes on the second). Criterion (`benches/metrics.rs`) is too slow a harness for ViT-L on two CPU cores.

use std::time::Instant;

use ect_metrics::score::{open_extractor, ExtractorChoice};
use ect_metrics::ImageBatch;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: extract_throughput inception|dinov2 FILE.pt [batch] [batches] [size] \
                 | feature-net [batch] [batches]";
    let kind = args.first().ok_or(usage)?.as_str();
    let dir = tempfile::tempdir()?;
    let (choice, rest, (c, size)) = match kind {
        "inception" | "dinov2" => {
            let path = args.get(1).ok_or(usage)?.into();
            let choice = if kind == "inception" {
                ExtractorChoice::Inception { path }
            } else {
                ExtractorChoice::Dinov2 { path }
            };
            let size = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(32);
            (choice, &args[2..], (3, size))
        }
        "feature-net" => {
            let weights = dir.path().join("featnet.safetensors");
            ect_metrics::extract::featnet::FeatureNet::new(tch::Device::Cpu).save(&weights)?;
            (ExtractorChoice::FeatureNet { weights }, &args[1..], (1, 28))
        }
        _ => return Err(usage.into()),
    };
    let batch: usize = rest.first().map(|s| s.parse()).transpose()?.unwrap_or(16);
    let batches: usize = rest.get(1).map(|s| s.parse()).transpose()?.unwrap_or(3);
    let ex = open_extractor(&choice, tch::Device::Cpu)?;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let pixels: Vec<u8> = (0..batch * c * size * size).map(|_| rng.gen()).collect();
    let images = ImageBatch::new(&pixels, batch, c, size, size)?;
    let t = Instant::now();
    ex.extract(&images)?;
    ex.extract(&images)?;
    let warmup = t.elapsed().as_secs_f64();
    let mut times = Vec::with_capacity(batches);
    for _ in 0..batches {
        let t = Instant::now();
        let f = ex.extract(&images)?;
        times.push(t.elapsed().as_secs_f64());
        assert_eq!(f.features.len(), batch * ex.feature_dim());
    }
    let total: f64 = times.iter().sum();
    println!(
        "{}",
        serde_json::json!({
            "extractor": ex.name(),
            "input": [batch, c, size, size],
            "threads": tch::get_num_threads(),
            "warmup_s": warmup,
            "batch_s": times,
            "images_per_s": (batch * batches) as f64 / total,
        })
    );
    Ok(())
}
