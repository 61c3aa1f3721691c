//! `ect data ...`: inspect and prepare datasets (through `ect-data`).

use anyhow::Context;
use clap::Subcommand;
use std::path::PathBuf;

/// `ect data` subcommands.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Print one JSON object describing a dataset: count, channels, height, width, label_counts,
    /// pixel_sha256 (every image's u8 pixels in index order, C,H,W) and pixel_mean.
    Stats {
        /// Dataset file or folder.
        #[arg(long)]
        dataset: PathBuf,
        /// Layout of the files (default: detected from the path).
        #[arg(long, default_value = "auto")]
        format: String,
        /// Which split.
        #[arg(long, default_value = "train")]
        split: String,
    },
}

/// Runs an `ect data` subcommand.
pub fn run(cmd: &DataCommand) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Stats {
            dataset,
            format,
            split,
        } => {
            let mut spec = ect_data::DatasetSpec::new(dataset.clone());
            spec.format = format.parse()?;
            spec.split = split.parse()?;
            let ds = ect_data::open(&spec)
                .with_context(|| format!("opening dataset {}", dataset.display()))?;
            let stats = ect_data::stats::dataset_stats(ds.as_ref())?;
            println!("{}", serde_json::to_string(&stats)?);
            Ok(())
        }
    }
}
