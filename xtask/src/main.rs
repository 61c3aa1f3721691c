//! `cargo xtask`: reproducible project automation. It never links libtorch: it prepares one (see
//! [`libtorch`]) and drives `cargo` and the `ect` binary with the environment that finds it.

mod bench;
mod ect_bin;
mod libtorch;
#[allow(dead_code)] // used by the experiment commands
mod plot;
#[allow(dead_code)] // used by the scaling sweep
mod powerlaw;
mod test;

use clap::{Parser, Subcommand};

/// Project automation for the ECT workspace.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Prepare libtorch (uses $LIBTORCH, else creates .venv with torch 2.11.0) and print where it is.
    Setup,
    /// The project's test command: formatting, clippy and every test of the workspace.
    Test(test::TestArgs),
    /// Build the `ect` binary (release) and run it with these arguments, e.g. `cargo xtask ect info`.
    Ect {
        /// Arguments passed to `ect` as they are.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run the criterion benchmarks of the crates (all by default) and print one table.
    Bench(bench::BenchArgs),
    /// Run any cargo command with the libtorch environment, e.g. `cargo xtask cargo run -p ect -- info`.
    Cargo {
        /// Arguments passed to cargo as they are.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<String>,
    },
}

/// Prints the error chain on one line per cause, without a backtrace (users' errors are not bugs).
fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Setup => {
            let torch = libtorch::ensure()?;
            println!("LIBTORCH={}", torch.root.display());
            println!("libtorch {} ({})", torch.version, torch.source);
            Ok(())
        }
        Command::Test(args) => test::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Ect { args } => {
            let torch = libtorch::ensure()?;
            let ect = ect_bin::build(&torch)?;
            ect_bin::run(&ect, &args)
        }
        Command::Cargo { args } => {
            let torch = libtorch::ensure()?;
            libtorch::run_cargo(&torch, &args)
        }
    }
}
