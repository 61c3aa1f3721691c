//! `ect flops`: the training compute of a configuration, counted from the network's own forward pass
//! (`ect_unet::flops`), for compute budgets and scaling sweeps.

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

/// `ect flops`: prints one JSON object.
pub fn run(a: &FlopsArgs) -> anyhow::Result<()> {
    let cfg = ect_config::TrainConfig::load(&a.config, &a.set)?;
    let origin = a.config.display().to_string();
    let params = ect_unet::count_parameters(&cfg.network)?;
    let fwd = ect_unet::forward_flops_per_image(&cfg.network)?;
    let forward = fwd.flops() as f64;
    let objective = ect_train::objective::from_config(&cfg);
    let per_step = objective.forward_equivalents();
    let out = json!({
        "config": origin,
        "objective": objective.name(),
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
