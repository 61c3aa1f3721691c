//! Integration tests of the `ect` binary, run as a user runs it.

mod cli_data;
mod cli_ddp;
mod cli_flops;
mod cli_hardening;
mod cli_info;
mod cli_metrics;
mod cli_parity;
mod cli_profile;
mod cli_train;
mod common;
mod convert;
mod data_convert;
mod data_image_check;
mod metrics_fuzz;
mod metrics_validation;
mod npy_files;
mod presets;

/// Held by every test that draws from libtorch's global RNG (tests run as threads of this process).
pub static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Randomly initialized weights of the built-in feature net, saved to `dir/featnet.safetensors`.
pub fn feature_net(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("featnet.safetensors");
    let _rng = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(5);
    ect_metrics::extract::featnet::FeatureNet::new(tch::Device::Cpu)
        .save(&path)
        .unwrap();
    path
}
