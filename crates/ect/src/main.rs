//! `ect`: the command-line tool of the ECT workspace (Easy Consistency Tuning, ICLR 2025).
//!
//! Each subcommand lives in its own module; `main` only parses and dispatches.

mod convert_cmd;
mod cuda_driver;
mod data_cmd;
mod flops_cmd;
mod host_allocator;
mod info;
mod launcher;
mod metrics_cmd;
mod parity_cmd;
mod profile;
mod torch_errors;
mod train_cmd;

use clap::{Parser, Subcommand};

/// Easy Consistency Tuning: turn a pretrained diffusion model into a 1- or 2-step generator.
#[derive(Debug, Parser)]
#[command(name = "ect", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the libtorch version, CPU threads and CUDA devices: the first check of a setup.
    Info(info::InfoArgs),
    /// Train a model (ECT tuning, EDM diffusion pretraining or iCT) from a TOML configuration.
    Train(train_cmd::TrainArgs),
    /// Continue a run from its latest checkpoint.
    Resume(train_cmd::ResumeArgs),
    /// Generate images with a trained model (.npy or a PNG grid).
    Sample(train_cmd::SampleArgs),
    /// Training compute of a configuration: FLOPs per image for the forward pass and a training step,
    /// counted from the network's own forward pass.
    Flops(flops_cmd::FlopsArgs),
    /// Check our network against a reference fixture: relative errors of evaluation and training outputs.
    Parity(parity_cmd::ParityArgs),
    /// Convert a published EDM / EDM2 / ECT snapshot pickle (or a torch.save file) into weights,
    /// config and meta files, without Python and without running anything the file names.
    Convert(convert_cmd::ConvertArgs),
    /// Sample-quality metrics: FD of statistics files, feature statistics, scores, the feature net.
    #[command(subcommand)]
    Metrics(metrics_cmd::MetricsCommand),
    /// Inspect and prepare datasets.
    #[command(subcommand)]
    Data(data_cmd::DataCommand),
}

/// Prints the error chain on one line per cause, without a backtrace (users' errors are not bugs).
fn main() -> std::process::ExitCode {
    host_allocator::keep_freed_memory();
    match torch_errors::catch(|| run(Cli::parse())) {
        Ok(status) => std::process::ExitCode::from(status),
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs the command; the exit status of a success (0, or `train_cmd::EXIT_STOPPED`).
fn run(cli: Cli) -> anyhow::Result<u8> {
    let done = |r: anyhow::Result<()>| r.map(|()| 0);
    match cli.command {
        Command::Info(args) => done(info::run(&args)),
        Command::Data(cmd) => done(data_cmd::run(&cmd)),
        Command::Metrics(cmd) => done(metrics_cmd::run(&cmd)),
        Command::Train(args) => train_cmd::train(&args),
        Command::Resume(args) => train_cmd::resume(&args),
        Command::Sample(args) => train_cmd::sample(&args),
        Command::Parity(args) => done(parity_cmd::run(&args)),
        Command::Convert(args) => done(convert_cmd::run(&args)),
        Command::Flops(args) => done(flops_cmd::run(&args)),
    }
}
