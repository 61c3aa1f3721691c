//! Driving the `ect` binary: every experiment step is one `ect` command, so what xtask runs can be
//! repeated by hand from the log lines it prints.

use anyhow::{bail, Context};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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

    fn command(&self, args: &[String]) -> Command {
        eprintln!("xtask: ect {}", args.join(" "));
        let mut cmd = Command::new(&self.bin);
        cmd.args(args);
        cmd
    }

    /// Runs `ect args...` with its output shown; fails when it fails.
    pub fn run(&self, args: &[String]) -> anyhow::Result<()> {
        let status = self
            .command(args)
            .status()
            .with_context(|| format!("running {}", self.bin.display()))?;
        if !status.success() {
            bail!("`ect {}` failed ({status})", args.join(" "));
        }
        Ok(())
    }

    /// Runs `ect args...` and parses the last line of its standard output as JSON (progress and logs go
    /// to standard error).
    pub fn run_json(&self, args: &[String]) -> anyhow::Result<Value> {
        let out = self
            .command(args)
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running {}", self.bin.display()))?;
        if !out.status.success() {
            bail!("`ect {}` failed ({})", args.join(" "), out.status);
        }
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
