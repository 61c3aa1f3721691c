//! Building and running the `ect` binary, which xtask drives but never links.

use crate::libtorch::{self, Libtorch};
use anyhow::{bail, Context};
use std::path::PathBuf;
use std::process::Command;

/// Builds `ect` in release mode with the libtorch environment and returns the binary's path.
pub fn build(torch: &Libtorch) -> anyhow::Result<PathBuf> {
    eprintln!("xtask: building ect (release)");
    let args: Vec<String> = ["build", "--release", "--package", "ect", "--bin", "ect"]
        .map(String::from)
        .to_vec();
    libtorch::run_cargo(torch, &args)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| libtorch::workspace_root().join("target"));
    let bin = target.join("release/ect");
    if !bin.exists() {
        bail!("cargo built ect but {} does not exist", bin.display());
    }
    Ok(bin)
}

/// Runs the `ect` binary and fails when it fails.
pub fn run(bin: &PathBuf, args: &[String]) -> anyhow::Result<()> {
    let status = Command::new(bin)
        .args(args)
        .status()
        .with_context(|| format!("running {}", bin.display()))?;
    if !status.success() {
        bail!("ect {} failed ({status})", args.join(" "));
    }
    Ok(())
}
