//! The libtorch bootstrap.
//!
//! Order of precedence:
//! 1. `$LIBTORCH`, when the user set it (a standalone libtorch or a PyTorch install's `torch/` folder);
//! 2. otherwise the project's own `.venv/` (git-ignored), created with `python3 -m venv` and filled with
//!    `pip install torch==2.11.0` on first use.
//!
//! `tch = 0.24.0` pairs with PyTorch 2.11.0 exactly; any other version is refused with a message saying
//! how to fix it.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The only PyTorch version `tch 0.24` works with.
pub const TORCH_VERSION: &str = "2.11.0";

/// A libtorch that `torch-sys` can build against.
#[derive(Debug, Clone)]
pub struct Libtorch {
    /// The folder with `include/` and `lib/` (what `LIBTORCH` points to).
    pub root: PathBuf,
    /// Its version, without a local suffix such as `+cu130`.
    pub version: String,
    /// Where it came from, for messages.
    pub source: &'static str,
}

/// The workspace root (the parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// Finds or installs libtorch, see the module docs.
pub fn ensure() -> anyhow::Result<Libtorch> {
    if let Some(root) = std::env::var_os("LIBTORCH").filter(|v| !v.is_empty()) {
        return from_user_libtorch(PathBuf::from(root));
    }
    let venv = workspace_root().join(".venv");
    ensure_venv(&venv)
}

fn from_user_libtorch(root: PathBuf) -> anyhow::Result<Libtorch> {
    if !root.join("lib").is_dir() || !root.join("include").is_dir() {
        bail!(
            "LIBTORCH={} has no lib/ and include/ folders: point it at a libtorch folder (or a PyTorch \
             install's site-packages/torch), or unset it to let `cargo xtask` install torch {TORCH_VERSION} \
             into .venv/",
            root.display()
        );
    }
    let version = read_version(&root).unwrap_or_else(|| "unknown".to_owned());
    if version != TORCH_VERSION && std::env::var_os("LIBTORCH_BYPASS_VERSION_CHECK").is_none() {
        bail!(
            "LIBTORCH={} is libtorch {version}, but this project's tch 0.24 needs exactly {TORCH_VERSION}: \
             install that version (pip install torch=={TORCH_VERSION}) and point LIBTORCH at it, or unset \
             LIBTORCH",
            root.display()
        );
    }
    Ok(Libtorch {
        root,
        version,
        source: "$LIBTORCH",
    })
}

/// Reads `build-version` (standalone libtorch) or `version.py` (PyTorch install).
fn read_version(root: &Path) -> Option<String> {
    let strip = |v: &str| v.trim().split('+').next().unwrap_or_default().to_owned();
    if let Ok(text) = std::fs::read_to_string(root.join("build-version")) {
        return Some(strip(&text));
    }
    let text = std::fs::read_to_string(root.join("version.py")).ok()?;
    text.lines().find_map(|line| {
        let value = line
            .strip_prefix("__version__")?
            .trim_start()
            .strip_prefix('=')?;
        Some(strip(value.trim().trim_matches(|c| c == '\'' || c == '"')))
    })
}

fn ensure_venv(venv: &Path) -> anyhow::Result<Libtorch> {
    let python = venv.join("bin/python");
    if !python.exists() {
        let found = Command::new("python3").arg("--version").output();
        if !found.map(|o| o.status.success()).unwrap_or(false) {
            bail!(
                "python3 was not found: install Python 3.10 or newer (Debian: apt-get install python3 \
                 python3-venv), or set LIBTORCH to an existing libtorch {TORCH_VERSION}"
            );
        }
        eprintln!("xtask: creating {} (python3 -m venv)", venv.display());
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(venv)
            .status()
            .context("running python3 -m venv")?;
        if !status.success() {
            let _ = std::fs::remove_dir_all(venv);
            bail!(
                "python3 -m venv {} failed: install the venv module (Debian: apt-get install python3-venv) \
                 or set LIBTORCH",
                venv.display()
            );
        }
    }
    if let Some(lib) = probe_torch(&python)? {
        return Ok(lib);
    }
    eprintln!(
        "xtask: installing torch=={TORCH_VERSION} into {} (first use only; about 5 GB with its CUDA \
         libraries)",
        venv.display()
    );
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--progress-bar",
            "on",
            &format!("torch=={TORCH_VERSION}"),
        ])
        .status()
        .context("running pip")?;
    if !status.success() {
        bail!(
            "pip install torch=={TORCH_VERSION} into {} failed (see pip's output above): check the network \
             and disk space, then run the command again, or set LIBTORCH to an existing libtorch \
             {TORCH_VERSION}",
            venv.display()
        );
    }
    probe_torch(&python)?.with_context(|| {
        format!(
            "torch was installed into {} but cannot be imported",
            venv.display()
        )
    })
}

/// Asks the venv's python for torch's version and folder; `None` when torch is not installed.
fn probe_torch(python: &Path) -> anyhow::Result<Option<Libtorch>> {
    let out = Command::new(python)
        .args([
            "-c",
            "import os, torch; print(torch.__version__); print(os.path.dirname(torch.__file__))",
        ])
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let version = lines
        .next()
        .unwrap_or_default()
        .split('+')
        .next()
        .unwrap_or_default()
        .to_owned();
    let root = PathBuf::from(lines.next().unwrap_or_default());
    if version != TORCH_VERSION {
        bail!(
            "{} has torch {version}, but this project needs exactly {TORCH_VERSION}: run `{} -m pip install \
             torch=={TORCH_VERSION}` (or delete the venv and run this command again)",
            python.display(),
            python.display()
        );
    }
    Ok(Some(Libtorch {
        root,
        version,
        source: ".venv",
    }))
}

/// A `cargo` command with the environment under which `torch-sys` builds against `torch`.
pub fn cargo_command(torch: &Libtorch) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root());
    cmd.env("LIBTORCH", &torch.root);
    // LIBTORCH_USE_PYTORCH would make torch-sys ask whatever python is on PATH instead.
    cmd.env_remove("LIBTORCH_USE_PYTORCH");
    cmd
}

/// Runs `cargo args...` with the libtorch environment and fails when it fails.
pub fn run_cargo(torch: &Libtorch, args: &[String]) -> anyhow::Result<()> {
    let status = cargo_command(torch)
        .args(args)
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_from_version_py_drops_local_suffix() {
        let dir = std::env::temp_dir().join(format!("xtask-ver-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("version.py"),
            "__version__ = '2.11.0+cu130'\ndebug = False\n",
        )
        .unwrap();
        assert_eq!(read_version(&dir).as_deref(), Some("2.11.0"));
        std::fs::write(dir.join("build-version"), "2.10.1+cpu\n").unwrap();
        assert_eq!(read_version(&dir).as_deref(), Some("2.10.1"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn user_libtorch_without_lib_folder_is_refused_with_a_hint() {
        let err = from_user_libtorch(PathBuf::from("/nonexistent/libtorch")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("/nonexistent/libtorch") && msg.contains("lib/"),
            "{msg}"
        );
    }
}
