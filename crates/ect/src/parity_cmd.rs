//! `ect parity`: compare our network with a reference fixture (or a converted checkpoint with its
//! recorded outputs).

use anyhow::Context;
use std::path::PathBuf;

/// Options of `ect parity`.
#[derive(Debug, clap::Args)]
pub struct ParityArgs {
    /// Folder with meta.json, weights.safetensors and io.safetensors.
    #[arg(long)]
    pub fixture: PathBuf,
    /// Largest accepted relative error `max|out - ref| / max|ref|`.
    #[arg(long, default_value_t = 1e-4)]
    pub tol: f64,
}

/// Prints both relative errors; fails (exit status 1) above the tolerance.
pub fn run(a: &ParityArgs) -> anyhow::Result<()> {
    let report = ect_unet::parity::check_fixture(&a.fixture)
        .with_context(|| format!("checking {}", a.fixture.display()))?;
    println!("network {}", report.network);
    println!("out_eval  rel err {:.3e}", report.rel_err_eval);
    println!("out_train rel err {:.3e}", report.rel_err_train);
    let worst = report.max_rel_err();
    if worst.is_nan() || worst > a.tol {
        anyhow::bail!(
            "relative error {worst:.3e} is above the tolerance {:.1e}",
            a.tol
        );
    }
    println!("ok (tolerance {:.1e})", a.tol);
    Ok(())
}
