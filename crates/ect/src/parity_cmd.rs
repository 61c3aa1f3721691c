//! `ect parity`: compare our network with a reference fixture (or a converted checkpoint with its
//! recorded outputs).

use anyhow::Context;
use std::path::PathBuf;

/// Exit status when both errors were computed but one is above the tolerance.
const EXIT_ABOVE_TOLERANCE: i32 = 1;
/// Exit status when the check could not run (bad fixture, bad config, unreadable file).
const EXIT_ERROR: i32 = 2;

/// Options of `ect parity`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 when both relative errors are at most --tol, \
1 when one is above it (or NaN), 2 when the check cannot run (missing file, malformed \
meta.json / io.safetensors, weights that do not match the network, invalid --tol)."
)]
pub struct ParityArgs {
    /// Folder with meta.json, weights.safetensors and io.safetensors.
    #[arg(long)]
    pub fixture: PathBuf,
    /// Largest accepted relative error `max|out - ref| / max|ref|` (finite, >= 0).
    #[arg(long, default_value_t = 1e-4, value_parser = parse_tolerance)]
    pub tol: f64,
    /// Where the network runs: `cpu`, `cuda`, `cuda:N` or `auto`.
    #[arg(long, default_value = "cpu")]
    pub device: ect_config::DeviceSpec,
}

/// Accepts a finite, non-negative tolerance: NaN would let every comparison pass and a negative one
/// would fail every run.
fn parse_tolerance(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|e| format!("`{s}` is not a number: {e}"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("must be finite and >= 0, got {s}"));
    }
    Ok(v)
}

/// Prints both relative errors. Exits with status 1 above the tolerance and 2 when the check cannot
/// run, so scripts can tell a numeric disagreement from a broken fixture.
pub fn run(a: &ParityArgs) -> anyhow::Result<()> {
    let report = match ect_train::device::resolve(a.device)
        .map_err(anyhow::Error::from)
        .and_then(|device| Ok(ect_unet::parity::check_fixture_on(&a.fixture, device)?))
        .with_context(|| format!("checking {} on {}", a.fixture.display(), a.device))
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(EXIT_ERROR);
        }
    };
    println!("network {}", report.network);
    println!("out_eval  rel err {:.3e}", report.rel_err_eval);
    println!("out_train rel err {:.3e}", report.rel_err_train);
    if !report.passes(a.tol) {
        eprintln!(
            "error: relative error {:.3e} is above the tolerance {:.1e}",
            report.max_rel_err(),
            a.tol
        );
        std::process::exit(EXIT_ABOVE_TOLERANCE);
    }
    println!("ok (tolerance {:.1e})", a.tol);
    Ok(())
}
