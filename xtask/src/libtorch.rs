//! The libtorch bootstrap.
//!
//! Order of precedence:
//! 1. `$LIBTORCH`, when the user set it (a standalone libtorch or a PyTorch install's `torch/` folder);
//! 2. otherwise the project's own `.venv/` (git-ignored), created with `python3 -m venv` and filled with
//!    `pip install torch==2.11.0` on first use; with the CUDA wheel, also the two CUDA header packages
//!    `ect-dist`'s NCCL support compiles against (multi-GPU training).
//!
//! `tch = 0.24.0` pairs with PyTorch 2.11.0 exactly; any other version is refused with a message saying
//! how to fix it. A user's libtorch is identified by `build-version`, `version.py` or, failing both, the
//! C++ version header (a libtorch built from source or packaged by a distribution has only the header).
//!
//! The decisions live in [`Bootstrap`], whose inputs (the variables, the venv folder, the `python3`
//! command) can be replaced in tests.

#[cfg(test)]
mod tests;
mod version;

use anyhow::{bail, Context};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use version::read_version;

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
    Bootstrap::from_env().ensure()
}

/// The inputs of the bootstrap's decisions, so that they can be tested without the real environment,
/// network or `pip`.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    /// `$LIBTORCH` when set and not empty; it wins over the venv.
    pub user_libtorch: Option<PathBuf>,
    /// `$LIBTORCH_BYPASS_VERSION_CHECK` is set (torch-sys honours the same variable).
    pub bypass_version_check: bool,
    /// The project's venv (`<workspace>/.venv`).
    pub venv: PathBuf,
    /// The interpreter that creates the venv (`python3`, looked up on `PATH`).
    pub python3: OsString,
}

impl Bootstrap {
    /// The real inputs: the process environment and the workspace's `.venv`.
    pub fn from_env() -> Self {
        Self {
            user_libtorch: std::env::var_os("LIBTORCH")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            bypass_version_check: std::env::var_os("LIBTORCH_BYPASS_VERSION_CHECK").is_some(),
            venv: workspace_root().join(".venv"),
            python3: "python3".into(),
        }
    }

    /// Finds or installs libtorch: `$LIBTORCH` when given (never falling back to the venv, so a user's
    /// choice is not silently replaced), otherwise the venv, created and filled on first use.
    pub fn ensure(&self) -> anyhow::Result<Libtorch> {
        match &self.user_libtorch {
            Some(root) => from_user_libtorch(root.clone(), self.bypass_version_check),
            None => ensure_venv(&self.venv, &self.python3),
        }
    }
}

fn from_user_libtorch(root: PathBuf, bypass_version_check: bool) -> anyhow::Result<Libtorch> {
    if !root.join("lib").is_dir() || !root.join("include").is_dir() {
        bail!(
            "LIBTORCH={} has no lib/ and include/ folders: point it at a libtorch folder (or a PyTorch \
             install's site-packages/torch), or unset it to let `cargo xtask` install torch {TORCH_VERSION} \
             into .venv/",
            root.display()
        );
    }
    let version = match read_version(&root) {
        Some(version) => version,
        None if bypass_version_check => "unknown".to_owned(),
        None => bail!(
            "LIBTORCH={} names no version (none of build-version, version.py, {}): point LIBTORCH at a \
             libtorch {TORCH_VERSION} folder, or set LIBTORCH_BYPASS_VERSION_CHECK=1 if you know it is \
             {TORCH_VERSION}",
            root.display(),
            version::VERSION_HEADERS.join(", ")
        ),
    };
    if version != TORCH_VERSION && !bypass_version_check {
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

fn ensure_venv(venv: &Path, python3: &OsString) -> anyhow::Result<Libtorch> {
    let python = venv.join("bin/python");
    if !python.exists() {
        let found = Command::new(python3).arg("--version").output();
        if !found.map(|o| o.status.success()).unwrap_or(false) {
            bail!(
                "python3 was not found: install Python 3.10 or newer (Debian: apt-get install python3 \
                 python3-venv), or set LIBTORCH to an existing libtorch {TORCH_VERSION}"
            );
        }
        eprintln!("xtask: creating {} (python3 -m venv)", venv.display());
        let status = Command::new(python3)
            .args(["-m", "venv"])
            .arg(venv)
            .status()
            .context("running python3 -m venv")?;
        if !status.success() || !python.exists() {
            // A half-made venv would skip this branch next time and fail later with a worse message.
            let _ = std::fs::remove_dir_all(venv);
            bail!(
                "python3 -m venv {} failed: install the venv module (Debian: apt-get install python3-venv) \
                 or set LIBTORCH",
                venv.display()
            );
        }
    }
    if let Some(lib) = probe_torch(&python)? {
        ensure_nccl_headers(&python, &lib);
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
        .with_context(|| format!("running {} -m pip", python.display()))?;
    if !status.success() {
        bail!(
            "pip install torch=={TORCH_VERSION} into {} failed (see pip's output above): check the network \
             and disk space, then run the command again, or set LIBTORCH to an existing libtorch \
             {TORCH_VERSION}",
            venv.display()
        );
    }
    let lib = probe_torch(&python)?.with_context(|| {
        format!(
            "torch was installed into {} but cannot be imported: delete {} and run the command again",
            venv.display(),
            venv.display()
        )
    })?;
    ensure_nccl_headers(&python, &lib);
    Ok(lib)
}

/// Headers `ect-dist`'s NCCL support (multi-GPU training) compiles against that the CUDA torch wheel
/// does not ship, with the PyPI package of each (a few MB together).
const NCCL_HEADER_PACKAGES: &[(&str, &str)] = &[
    ("crt/host_config.h", "nvidia-cuda-crt"),
    ("nv/target", "nvidia-cuda-cccl"),
];

/// Installs [`NCCL_HEADER_PACKAGES`] into the venv, next to the wheel's other CUDA packages, when torch is
/// a CUDA build and they are missing, in the wheel's CUDA version (`torch.version.cuda`, e.g. `13.0.*`).
/// Without them `ect-dist` builds without NCCL and multi-GPU runs are refused with the reason; a failed
/// install is said and the bootstrap goes on (one GPU and the CPU do not need them).
fn ensure_nccl_headers(python: &Path, torch: &Libtorch) {
    if !torch.root.join("lib/libtorch_cuda.so").exists() {
        return;
    }
    let Some(nvidia) = torch.root.parent().map(|site| site.join("nvidia")) else {
        return;
    };
    let includes: Vec<PathBuf> = std::fs::read_dir(&nvidia)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("include"))
        .collect();
    let missing: Vec<&str> = NCCL_HEADER_PACKAGES
        .iter()
        .filter(|(header, _)| !includes.iter().any(|dir| dir.join(header).exists()))
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return;
    }
    let cuda = Command::new(python)
        .args(["-c", "import torch; print(torch.version.cuda or '')"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if cuda.is_empty() {
        return;
    }
    let specs: Vec<String> = missing.iter().map(|p| format!("{p}=={cuda}.*")).collect();
    eprintln!(
        "xtask: installing the CUDA headers that multi-GPU (NCCL) support builds against: {}",
        specs.join(" ")
    );
    let status = Command::new(python)
        .args(["-m", "pip", "install", "--no-deps"])
        .args(&specs)
        .status();
    if !status.map(|s| s.success()).unwrap_or(false) {
        eprintln!(
            "xtask: warning: could not install {} into the venv: ect-dist builds without NCCL, so \
             multi-GPU runs are refused (one GPU and the CPU work); install them with `{} -m pip \
             install --no-deps {}` and rebuild",
            specs.join(" "),
            python.display(),
            specs.join(" ")
        );
    }
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
        .trim()
        .split('+')
        .next()
        .unwrap_or_default()
        .to_owned();
    let root = PathBuf::from(lines.next().unwrap_or_default().trim());
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
