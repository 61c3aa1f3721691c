//! Building and driving the `ect` binary, which xtask runs but never links: every experiment step is one
//! `ect` command, so what xtask runs can be repeated by hand from the log lines it prints.

use crate::libtorch::{self, Libtorch};
use anyhow::{bail, Context};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

/// `ect`'s exit status for a run that stopped early with a checkpoint written.
const EXIT_STOPPED: i32 = 3;

/// A built `ect` binary.
#[derive(Debug, Clone)]
pub struct Ect {
    bin: PathBuf,
}

impl Ect {
    /// Wraps an existing binary.
    pub fn new(bin: PathBuf) -> Self {
        Self { bin }
    }

    /// Builds `ect` in release mode with the libtorch environment.
    pub fn build(torch: &Libtorch) -> anyhow::Result<Self> {
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
        Ok(Self::new(bin))
    }

    /// Runs `ect args...` with its output shown and returns its exit status as it is (for
    /// `cargo xtask ect`, which passes it on).
    pub fn status(&self, args: &[String]) -> anyhow::Result<ExitStatus> {
        self.command(args)
            .status()
            .with_context(|| format!("running {}", self.bin.display()))
    }

    fn command(&self, args: &[String]) -> Command {
        eprintln!("xtask: ect {}", args.join(" "));
        let mut cmd = Command::new(&self.bin);
        cmd.args(args);
        cmd
    }

    /// Runs `ect args...` with its output shown; fails when it fails or stops early.
    pub fn run(&self, args: &[String]) -> anyhow::Result<()> {
        let status = self.status(args)?;
        check(&status, args)
    }

    /// Runs `ect args...` and returns its exit status and output whatever they are (standard error is
    /// shown).
    pub fn output(&self, args: &[String]) -> anyhow::Result<std::process::Output> {
        self.command(args)
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running {}", self.bin.display()))
    }

    /// Runs `ect args...` and parses the last line of its standard output as JSON (progress and logs go
    /// to standard error).
    pub fn run_json(&self, args: &[String]) -> anyhow::Result<Value> {
        let out = self
            .command(args)
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running {}", self.bin.display()))?;
        check(&out.status, args)?;
        let text = String::from_utf8_lossy(&out.stdout);
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default();
        serde_json::from_str(last)
            .with_context(|| format!("`ect {}` printed no JSON: {text}", args.join(" ")))
    }
}

/// An error for an unsuccessful `ect` command, saying when it only stopped early.
fn check(status: &ExitStatus, args: &[String]) -> anyhow::Result<()> {
    match status.code() {
        Some(0) => Ok(()),
        Some(EXIT_STOPPED) => bail!(
            "`ect {}` stopped early with a checkpoint (interrupted); run the same command again to continue",
            args.join(" ")
        ),
        _ => bail!("`ect {}` failed ({status})", args.join(" ")),
    }
}

/// Turns paths and words into the argument list of a command.
pub fn args<I, S>(items: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    items
        .into_iter()
        .map(|s| s.as_ref().to_string_lossy().into_owned())
        .collect()
}

/// Path as an argument.
pub fn p(path: &Path) -> String {
    path.display().to_string()
}
