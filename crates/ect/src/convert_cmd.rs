//! `ect convert`: a published checkpoint (EDM / EDM2 / ECT snapshot pickle, or a `torch.save` file
//! holding a network or a state dict) into `weights.safetensors`, `config.json` and `meta.json`,
//! without Python. The pickle is read by `ect_pickle`, which never runs anything the file names.

use serde_json::json;
use std::path::PathBuf;

use ect_unet::snapshot::{convert_file, ConvertOptions};

/// Options of `ect convert`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Writes exactly what scripts/convert_edm_checkpoint.py writes (weights in float32 \
under the reference names, EDM2's log-variance head dropped), then prints a one-line JSON summary. \
Nothing in the file is executed: classes and functions it names are kept as data (listed under \
foreign_globals), so a file from anyone can be converted safely."
)]
pub struct ConvertArgs {
    /// `network-snapshot-*.pkl` of EDM, EDM2 or ECT (e.g. edm-cifar10-32x32-uncond-vp.pkl), or a
    /// `torch.save` file (.pt) holding a network or a state dict.
    pub snapshot: PathBuf,
    /// Output folder (created if needed).
    pub out_dir: PathBuf,
    /// Entry of the snapshot dict holding the network (`net` in EDM's training-state-*.pt).
    #[arg(long, default_value = "ema")]
    pub key: String,
    /// Label an EDMPrecond network as ECMPrecond (`sigma_min = 0.003`): how ECT starts from EDM.
    #[arg(long)]
    pub as_ecm: bool,
    /// `config.json` (`{"network": ..., arguments}`) for a file holding a bare state dict.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Converts and prints `{"network", "params", "tensors", "dropped", "foreign_globals", "out_dir"}`.
pub fn run(a: &ConvertArgs) -> anyhow::Result<()> {
    let opts = ConvertOptions {
        key: a.key.clone(),
        as_ecm: a.as_ecm,
        config: a.config.clone(),
        ..ConvertOptions::default()
    };
    // The errors name the snapshot (or the file being written) themselves.
    let c = convert_file(&a.snapshot, &opts)?;
    c.write(&a.out_dir)?;
    let summary = json!({
        "network": c.network,
        "params": c.params,
        "tensors": c.tensors.len(),
        "dropped": c.dropped,
        "foreign_globals": c.foreign_globals,
        "out_dir": a.out_dir,
    });
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}
