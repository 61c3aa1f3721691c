//! `ect flops`: the training compute of a configuration, counted from the network's own forward pass
//! (`ect_unet::flops`), for compute budgets and scaling sweeps.

use ect_train::config::ObjectiveConfig;
use serde_json::json;
use std::path::PathBuf;

/// Options of `ect flops`.
#[derive(Debug, clap::Args)]
pub struct FlopsArgs {
    /// Training configuration (TOML); its network and objective are used.
    #[arg(long)]
    pub config: PathBuf,
    /// Override a field, `key.path=value` (repeatable), e.g. `--set network.model_channels=16`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// Forward passes' worth of compute in one training step per image: the backward pass costs about two
/// forwards, and the consistency objectives add a teacher forward without gradients.
pub fn forward_equivalents(objective: &ObjectiveConfig) -> f64 {
    match objective {
        ObjectiveConfig::Edm { .. } => 3.0,
        ObjectiveConfig::Ect { .. } | ObjectiveConfig::Ict { .. } => 4.0,
    }
}

/// `ect flops`: prints one JSON object.
pub fn run(a: &FlopsArgs) -> anyhow::Result<()> {
    let cfg = crate::train_cmd::load_config(&a.config, &a.set)?;
    let origin = a.config.display().to_string();
    let net = ect_train::net::Network::parse_config(&cfg.network)?;
    let params = ect_unet::count::try_count_parameters(&net)?;
    let fwd = ect_unet::flops::forward_flops_per_image(&net)?;
    let forward = fwd.flops() as f64;
    let per_step = forward_equivalents(&cfg.objective);
    let out = json!({
        "config": origin,
        "objective": cfg.objective.name(),
        "parameters": params,
        "forward_flops_per_image": forward,
        "forward_breakdown_macs": {
            "conv": fwd.conv, "resample": fwd.resample, "linear": fwd.linear, "attention": fwd.attention,
        },
        "train_step_flops_per_image": per_step * forward,
        "diffusion_step_flops_per_image": 3.0 * forward,
        "run_flops": per_step * forward * (cfg.iterations * cfg.batch_size) as f64,
        "convention": "FLOPs = 2 x multiply-accumulates of convolutions, linear layers and attention \
                       products; a training step counts 3 forwards (EDM) or 4 (ECT, iCT: student \
                       forward and backward plus a teacher forward) per image",
    });
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}
