//! `cargo xtask`: reproducible project automation. It never links libtorch: it prepares one (see
//! [`libtorch`]) and drives `cargo` and the `ect` binary with the environment that finds it.

mod bench;
mod device_bench;
mod ect;
mod experiment;
mod libtorch;
mod plot;
mod powerlaw;
mod reference_bench;
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
    /// The project's test command: formatting, clippy, API-doc links and every test of the workspace.
    Test(test::TestArgs),
    /// Build the `ect` binary (release) and run it with these arguments, e.g. `cargo xtask ect info`.
    Ect {
        /// Arguments passed to `ect` as they are.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The main job: pretrain a diffusion model (cached), tune it with ECT, sample, score, report.
    /// Without --config it runs the embedded Fashion-MNIST quick preset.
    TrainEct(experiment::ExperimentArgs),
    /// Only the diffusion pretraining of an experiment (cached and reused by train-ect).
    PretrainDm(experiment::ExperimentArgs),
    /// ECT over a grid of training budgets x model sizes: FD against FLOPs, power-law fits, CSV,
    /// markdown and a log-log plot. Without --config it runs configs/sweep-fmnist.toml. Resumable.
    ScalingSweep(experiment::sweep::SweepArgs),
    /// Sample, score and report an existing run root (`runs/<name>`).
    Eval {
        /// The run root written by train-ect.
        run_dir: std::path::PathBuf,
        /// Override an evaluation field, e.g. `experiment.eval.samples=1000`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Sample a trained model: `cargo xtask sample RUN_DIR --steps 1|2 --n N --out FILE.npy|FILE.png`.
    Sample(SampleArgs),
    /// Run the criterion benchmarks of the crates (all by default) and print one table.
    Bench(bench::BenchArgs),
    /// Run any cargo command with the libtorch environment, e.g. `cargo xtask cargo run -p ect -- info`.
    Cargo {
        /// Arguments passed to cargo as they are.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<String>,
    },
}

/// Options of `cargo xtask sample`.
#[derive(Debug, clap::Args)]
struct SampleArgs {
    /// A run root of train-ect (its `tune/` run is sampled) or any `ect` run directory.
    run_dir: std::path::PathBuf,
    /// Consistency sampling steps (1: [80, 0]; 2: [80, 0.821, 0]).
    #[arg(long, default_value_t = 2)]
    steps: u32,
    /// Number of images.
    #[arg(long, default_value_t = 5000)]
    n: u64,
    /// Seed of the noise.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output: `.npy` (u8, N,C,H,W) or `.png` (a grid).
    #[arg(long)]
    out: std::path::PathBuf,
}

fn sample(a: &SampleArgs) -> anyhow::Result<()> {
    let source = if a.run_dir.join("tune/config.json").exists() {
        a.run_dir.join("tune")
    } else {
        a.run_dir.clone()
    };
    let ect = ect::Ect::build(&libtorch::ensure()?)?;
    let args: Vec<String> = vec![
        "sample".into(),
        "--from".into(),
        source.display().to_string(),
        "--steps".into(),
        a.steps.to_string(),
        "--n".into(),
        a.n.to_string(),
        "--seed".into(),
        a.seed.to_string(),
        "--out".into(),
        a.out.display().to_string(),
    ];
    ect.run(&args)
}

/// Prints the error chain on one line per cause, without a backtrace (users' errors are not bugs).
fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs the command; the exit status of a success (`cargo xtask ect` passes on `ect`'s own).
fn run(cli: Cli) -> anyhow::Result<u8> {
    run_command(cli)
        .map(|()| 0)
        .or_else(|e| match e.downcast::<PassStatus>() {
            Ok(PassStatus(code)) => Ok(code),
            Err(e) => Err(e),
        })
}

/// The exit status of a child to pass on unchanged.
#[derive(Debug)]
struct PassStatus(u8);

impl std::fmt::Display for PassStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for PassStatus {}

fn run_command(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Setup => {
            let torch = libtorch::ensure()?;
            println!("LIBTORCH={}", torch.root.display());
            println!("libtorch {} ({})", torch.version, torch.source);
            Ok(())
        }
        Command::Test(args) => test::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::TrainEct(args) => experiment::train_ect(&args),
        Command::PretrainDm(args) => experiment::pretrain_dm(&args),
        Command::ScalingSweep(args) => experiment::sweep::run(&args),
        Command::Eval { run_dir, set } => experiment::eval(&run_dir, &set),
        Command::Sample(args) => sample(&args),
        Command::Ect { args } => {
            let status = ect::Ect::build(&libtorch::ensure()?)?.status(&args)?;
            match status.code() {
                Some(0) => Ok(()),
                Some(code) => Err(PassStatus(code.clamp(1, 255) as u8).into()),
                None => anyhow::bail!("ect was killed ({status})"),
            }
        }
        Command::Cargo { args } => {
            let torch = libtorch::ensure()?;
            libtorch::run_cargo(&torch, &args)
        }
    }
}
