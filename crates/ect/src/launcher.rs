//! `ect train`, `ect resume`, `ect sample` and `ect metrics stats` with `--nproc-per-node N`: start N
//! local worker processes of this same binary with the rendezvous environment, like `torchrun
//! --standalone --nproc-per-node N` (`ect_dist::launch`), and report how they ended. The workers run
//! the command without the flag; each joins the data-parallel run from the environment, exactly as under
//! torchrun or srun.

use std::ffi::OsString;

use anyhow::Context;
use ect_dist::launch::{launch_with_exits, LaunchError, LaunchSpec, WorkerExit};

use crate::train_cmd::EXIT_STOPPED;

/// The flag that asks for local workers.
const FLAG: &str = "--nproc-per-node";

/// The arguments of a worker: this invocation's, without `--nproc-per-node N` (or `=N`).
pub fn worker_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut skip_next = false;
    for a in args {
        if skip_next {
            skip_next = false;
            continue;
        }
        match a.to_str() {
            Some(s) if s == FLAG => skip_next = true,
            Some(s) if s.starts_with(&format!("{FLAG}=")) => {}
            _ => out.push(a),
        }
    }
    out
}

/// Runs this invocation in `nproc` local workers and returns the exit status of the whole: 0 when every
/// worker finished, [`EXIT_STOPPED`] when they stopped early with a checkpoint (a forwarded Ctrl-C or
/// SIGTERM, or `--stop-at-step`), an error naming the first rank that failed and its exit status
/// otherwise (the other workers are then stopped).
pub fn run_workers(nproc: usize) -> anyhow::Result<u8> {
    if std::env::var_os("RANK").is_some() || std::env::var_os("SLURM_PROCID").is_some() {
        anyhow::bail!(
            "{FLAG} starts workers itself; this process is already a worker of a launcher \
             (RANK or SLURM_PROCID is set): drop {FLAG} under torchrun or srun"
        );
    }
    let program = std::env::current_exe().context("locating the ect binary to start workers")?;
    let args = worker_args(std::env::args_os().skip(1));
    let mut spec = LaunchSpec::new(program, args, nproc);
    spec.normal_codes = vec![i32::from(EXIT_STOPPED)];
    let stopped = |exits: &[(usize, WorkerExit)]| {
        exits
            .iter()
            .any(|(_, e)| *e == WorkerExit::Code(i32::from(EXIT_STOPPED)))
    };
    match launch_with_exits(&spec) {
        Ok(exits) if stopped(&exits) => Ok(EXIT_STOPPED),
        Ok(_) => Ok(0),
        // A forwarded signal that every worker answered with its checkpoint is a clean stop.
        Err(LaunchError::Interrupted { exits, .. })
            if exits.iter().all(|(_, e)| {
                matches!(e, WorkerExit::Code(c) if *c == 0 || *c == i32::from(EXIT_STOPPED))
            }) =>
        {
            Ok(EXIT_STOPPED)
        }
        Err(e) => Err(e).context(format!("running {nproc} local workers")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_is_removed_in_both_forms() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            worker_args(args(&[
                "train",
                "--nproc-per-node",
                "2",
                "--config",
                "c.toml"
            ])),
            args(&["train", "--config", "c.toml"])
        );
        assert_eq!(
            worker_args(args(&["resume", "run", "--nproc-per-node=4", "--quiet"])),
            args(&["resume", "run", "--quiet"])
        );
    }
}
