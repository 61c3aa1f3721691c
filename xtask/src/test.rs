//! `cargo xtask test`: the README's test command, and exactly what CI runs.

use crate::libtorch;
use anyhow::Context;

/// Options of `cargo xtask test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Skip `cargo fmt --check`, `cargo clippy` and `cargo doc` (tests only).
    #[arg(long)]
    pub no_lint: bool,
    /// Extra arguments for `cargo test` (after the workspace selection), e.g. `-- --ignored`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub cargo_test_args: Vec<String>,
}

/// Bootstraps libtorch, then runs `cargo fmt --check`, `cargo clippy -D warnings`, `cargo doc` with
/// rustdoc's warnings as errors (broken links in the API docs), and every test.
pub fn run(args: &TestArgs) -> anyhow::Result<()> {
    let bootstrap_started = std::time::Instant::now();
    let torch = libtorch::ensure().context("preparing libtorch")?;
    eprintln!(
        "xtask: libtorch {} at {} ({}), ready in {:.0} s",
        torch.version,
        torch.root.display(),
        torch.source,
        bootstrap_started.elapsed().as_secs_f64()
    );
    let started = std::time::Instant::now();
    if !args.no_lint {
        step(&torch, &["fmt", "--all", "--", "--check"])?;
        step(
            &torch,
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        )?;
        step(
            &torch,
            &[
                "doc",
                "--workspace",
                "--no-deps",
                "--config",
                "build.rustdocflags=[\"-D\", \"warnings\"]",
            ],
        )?;
    }
    let mut test_args: Vec<String> = ["test", "--workspace"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    test_args.extend(args.cargo_test_args.iter().cloned());
    libtorch::run_cargo(&torch, &test_args)?;
    eprintln!(
        "xtask: all checks passed in {:.0} s ({:.0} s with the libtorch bootstrap)",
        started.elapsed().as_secs_f64(),
        bootstrap_started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn step(torch: &libtorch::Libtorch, args: &[&str]) -> anyhow::Result<()> {
    eprintln!("xtask: cargo {}", args.join(" "));
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    libtorch::run_cargo(torch, &args)
}
