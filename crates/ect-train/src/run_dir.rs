//! The layout of a run directory and what it records about the run: the resolved configuration
//! (`config.json`), provenance (`run.json`: seed, device, git revision, libtorch threads), and the lock
//! that makes each run directory have one writer at a time. Checkpoints are in [`crate::checkpoint`],
//! statistics in [`crate::stats`].

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use ect_config::TrainConfig;
use serde::Serialize;
use tch::Device;

use crate::error::{Result, TrainError};
use crate::images::write_atomic;

/// File of the resolved configuration in a run directory.
pub const CONFIG_FILE: &str = "config.json";
/// File of the provenance record in a run directory.
pub const META_FILE: &str = "run.json";
/// The lock file a writer holds while it works on a run directory.
pub const LOCK_FILE: &str = ".lock";

/// Reads the resolved configuration of a run directory.
pub fn read_config(run_dir: &Path) -> Result<TrainConfig> {
    let path = run_dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    Ok(TrainConfig::from_json_str(
        &text,
        &path.display().to_string(),
    )?)
}

/// Writes the resolved configuration of a run directory (atomically).
pub fn write_config(run_dir: &Path, cfg: &TrainConfig) -> Result<()> {
    let json = serde_json::to_vec_pretty(cfg).expect("config serializes");
    write_atomic(&run_dir.join(CONFIG_FILE), &json)
}

/// Provenance of a run: enough to reproduce it.
#[derive(Debug, Clone, Serialize)]
pub struct RunMeta {
    /// The seed.
    pub seed: u64,
    /// The device trained on, as libtorch names it.
    pub device: String,
    /// Number of trainable parameters.
    pub parameters: u64,
    /// This crate's version.
    pub ect_train_version: &'static str,
    /// `git rev-parse HEAD` of the working directory, when it is a git checkout.
    pub git_revision: Option<String>,
    /// Whether that checkout had uncommitted changes.
    pub git_dirty: Option<bool>,
    /// libtorch CPU threads in use.
    pub torch_threads: i32,
    /// Whether CUDA was available.
    pub cuda_available: bool,
    /// Processes that trained the run together (1 unless data-parallel). Written when a run starts; a
    /// resume may use another number (the trajectory does not depend on it).
    pub world_size: usize,
}

impl RunMeta {
    /// Collects the record for a run of `cfg` on `device` with `parameters` trainable parameters,
    /// trained by `world_size` processes.
    pub fn collect(cfg: &TrainConfig, device: Device, parameters: u64, world_size: usize) -> Self {
        let git = |args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        };
        let git_revision = git(&["rev-parse", "HEAD"]);
        let git_dirty = git_revision
            .as_ref()
            .and(git(&["status", "--porcelain", "--untracked-files=no"]))
            .map(|s| !s.is_empty());
        Self {
            seed: cfg.seed,
            device: format!("{device:?}"),
            parameters,
            ect_train_version: env!("CARGO_PKG_VERSION"),
            git_revision,
            git_dirty,
            torch_threads: tch::get_num_threads(),
            cuda_available: tch::Cuda::is_available(),
            world_size,
        }
    }

    /// Writes the record into `run_dir` (atomically).
    pub fn write(&self, run_dir: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).expect("run metadata serializes");
        write_atomic(&run_dir.join(META_FILE), &json)
    }
}

/// An exclusive advisory lock (`flock`) on a run directory, held for the life of this value and released
/// by the kernel when the process exits or crashes, so a stale lock never blocks a resume.
#[derive(Debug)]
pub struct RunLock {
    _file: std::fs::File,
    path: PathBuf,
}

impl RunLock {
    /// Takes the lock of `run_dir` (created if missing), or fails naming the process that holds it.
    pub fn acquire(run_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(run_dir).map_err(|e| TrainError::io(run_dir, e))?;
        let path = run_dir.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| TrainError::io(&path, e))?;
        // SAFETY: `file` is an open descriptor owned by this function for the duration of the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                let holder = holder.trim();
                return Err(TrainError::invalid(
                    "output.run_dir",
                    format!(
                        "{} is in use by {} (one process at a time may write a run directory)",
                        run_dir.display(),
                        if holder.is_empty() {
                            "another process".to_owned()
                        } else {
                            format!("PID {holder}")
                        }
                    ),
                ));
            }
            return Err(TrainError::io(&path, err));
        }
        use std::io::{Seek, Write};
        file.set_len(0)
            .and_then(|_| file.seek(std::io::SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .map_err(|e| TrainError::io(&path, e))?;
        Ok(Self { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_naming_the_holder_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        // flock locks belong to the open file description: a second open in the same process conflicts
        // exactly as another process would.
        let err = RunLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains(&format!("PID {}", std::process::id())) && err.contains("in use"),
            "{err}"
        );
        drop(first);
        RunLock::acquire(dir.path()).unwrap();
    }
}
