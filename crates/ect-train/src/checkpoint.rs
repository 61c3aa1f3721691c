//! Checkpoints: a directory `checkpoints/ckpt-<step>` holding the weights, the EMA tracks, the optimizer
//! state, the run's configuration and `state.json` (written last, so a directory with it is complete);
//! written under a temporary name and renamed, so a crash never leaves a partial checkpoint under a real
//! name. `checkpoints/latest` names the newest; older ones beyond `keep_last` are removed.
//!
//! Nothing is lost to a kill at any moment: a checkpoint that replaces one of the same step (a finished
//! run resumed) is moved aside before the new one is renamed into place and removed only after, and
//! [`latest_checkpoint`] recovers a complete checkpoint left under its temporary or moved-aside name.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Tensor};

use crate::error::{Result, TrainError};
use crate::images::write_atomic;

/// File of the raw (non-averaged) weights inside a checkpoint.
pub const MODEL_FILE: &str = "model.safetensors";
/// File of the optimizer state inside a checkpoint.
pub const OPTIM_FILE: &str = "optim.safetensors";
/// File of the counters inside a checkpoint.
pub const STATE_FILE: &str = "state.json";
/// The run's configuration as it was when the checkpoint was written (resume compares against it).
pub const CONFIG_FILE: &str = "config.json";

/// Kills the process with SIGKILL when `ECT_FAILPOINT` names `point`: lets tests hit a crash window
/// deterministically (documented in the crate README; nothing sets it in normal use).
pub fn failpoint(point: &str) {
    if std::env::var("ECT_FAILPOINT").is_ok_and(|v| v == point) {
        // SAFETY: raising a signal on the current process has no memory-safety preconditions.
        unsafe {
            libc::raise(libc::SIGKILL);
        }
    }
}

/// Counters and positions that make a resume exact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps completed (including skipped non-finite ones).
    pub step: u64,
    /// Optimizer updates actually applied (the bias-correction step of Adam/RAdam).
    pub optim_steps: u64,
    /// Images drawn from the loader so far (its position).
    pub images_seen: u64,
    /// The run's seed (every draw derives from it and the step).
    pub seed: u64,
    /// Steps skipped for a non-finite loss, in total.
    pub nonfinite_total: u64,
    /// Consecutive non-finite steps at the time of saving.
    pub nonfinite_run: u64,
    /// Seconds of training so far (for images/s across resumes).
    pub train_seconds: f64,
    /// The dynamic loss scale of mixed-precision runs (absent in float32 runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<crate::amp::ScalerState>,
    /// Steps skipped because mixed-precision gradients overflowed (the scale backed off).
    #[serde(default)]
    pub overflow_total: u64,
}

impl TrainState {
    /// The counters of a run that has not taken a step.
    pub fn new(seed: u64) -> Self {
        Self {
            step: 0,
            optim_steps: 0,
            images_seen: 0,
            seed,
            nonfinite_total: 0,
            nonfinite_run: 0,
            train_seconds: 0.0,
            loss_scale: None,
            overflow_total: 0,
        }
    }
}

/// The checkpoints directory of a run.
pub fn checkpoints_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

/// Writes the variables of `vs` (parameters and buffers, reference names) to a safetensors file.
pub fn save_vars(vs: &VarStore, path: &Path) -> Result<()> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    Tensor::write_safetensors(&vars, path)?;
    Ok(())
}

/// Loads a safetensors file into the variables of `vs`, strictly (see [`crate::ema::copy_named_into`]).
pub fn load_vars(vs: &VarStore, path: &Path) -> Result<()> {
    if !path.exists() {
        return Err(TrainError::Checkpoint {
            path: path.to_path_buf(),
            message: "file not found".to_owned(),
        });
    }
    let named = Tensor::read_safetensors(path)?;
    crate::ema::copy_named_into(&named, vs, path)
}

/// Flushes `path` (a file or a folder's entries) to disk.
fn sync_path(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| TrainError::io(path, e))
}

/// Flushes every file of `dir` and then `dir` itself.
fn sync_folder(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| TrainError::io(dir, e))? {
        let path = entry.map_err(|e| TrainError::io(dir, e))?.path();
        if path.is_file() {
            sync_path(&path)?;
        }
    }
    sync_path(dir)
}

/// Writes a checkpoint atomically: `fill` writes the files into a temporary directory, which is then
/// renamed to `ckpt-<step>`; `latest` is updated and older checkpoints beyond `keep_last` are removed.
/// Returns the checkpoint directory.
pub fn write_checkpoint(
    run_dir: &Path,
    state: &TrainState,
    keep_last: usize,
    fill: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let dir = checkpoints_dir(run_dir);
    std::fs::create_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
    let name = format!("ckpt-{:09}", state.step);
    let tmp = dir.join(format!(".{name}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    fill(&tmp)?;
    let json = serde_json::to_vec_pretty(state).expect("state serializes");
    write_atomic(&tmp.join(STATE_FILE), &json)?;
    // On disk before the rename makes it the checkpoint: a power loss must not leave a renamed
    // folder whose weights were still in the page cache.
    sync_folder(&tmp)?;
    failpoint("checkpoint-written");
    let final_dir = dir.join(&name);
    let aside = dir.join(format!(".{name}.old"));
    if final_dir.exists() {
        // Replacing a checkpoint of the same step: keep the old one until the new one is in place.
        if aside.exists() {
            std::fs::remove_dir_all(&aside).map_err(|e| TrainError::io(&aside, e))?;
        }
        std::fs::rename(&final_dir, &aside).map_err(|e| TrainError::io(&final_dir, e))?;
        failpoint("checkpoint-replace");
    }
    std::fs::rename(&tmp, &final_dir).map_err(|e| TrainError::io(&final_dir, e))?;
    sync_path(&dir)?;
    failpoint("checkpoint-renamed");
    if aside.exists() {
        std::fs::remove_dir_all(&aside).map_err(|e| TrainError::io(&aside, e))?;
    }
    write_atomic(&dir.join("latest"), name.as_bytes())?;
    prune(&dir, keep_last)?;
    Ok(final_dir)
}

/// Checkpoint directories of a run, oldest first.
pub fn list_checkpoints(run_dir: &Path) -> Result<Vec<PathBuf>> {
    let dir = checkpoints_dir(run_dir);
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| TrainError::io(&dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("ckpt-"))
        })
        .collect();
    out.sort();
    Ok(out)
}

fn prune(dir: &Path, keep_last: usize) -> Result<()> {
    let all = list_checkpoints(dir.parent().unwrap_or(Path::new(".")))?;
    for old in all.iter().take(all.len().saturating_sub(keep_last)) {
        std::fs::remove_dir_all(old).map_err(|e| TrainError::io(old, e))?;
    }
    Ok(())
}

/// The newest checkpoint of a run (from `latest`, else the highest step). A complete checkpoint left under
/// a temporary (`.ckpt-N.tmp`) or moved-aside (`.ckpt-N.old`) name by a kill is first renamed into place
/// when no checkpoint of that step exists; an incomplete one (no `state.json`) is ignored.
pub fn latest_checkpoint(run_dir: &Path) -> Result<Option<PathBuf>> {
    recover_stranded(run_dir)?;
    let dir = checkpoints_dir(run_dir);
    let latest = dir.join("latest");
    let newest = list_checkpoints(run_dir)?.pop();
    if let Ok(name) = std::fs::read_to_string(&latest) {
        let p = dir.join(name.trim());
        // `latest` is written after the rename: a recovered checkpoint can be newer than it names.
        if p.is_dir() && newest.as_ref().is_none_or(|n| n <= &p) {
            return Ok(Some(p));
        }
    }
    Ok(newest)
}

/// Renames complete checkpoints stranded under `.ckpt-N.tmp` / `.ckpt-N.old` into place.
fn recover_stranded(run_dir: &Path) -> Result<()> {
    let dir = checkpoints_dir(run_dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    let mut stranded: Vec<(PathBuf, String)> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let n = p.file_name()?.to_str()?;
            let name = n
                .strip_prefix('.')?
                .strip_suffix(".tmp")
                .or_else(|| n.strip_prefix('.')?.strip_suffix(".old"))?
                .to_owned();
            name.starts_with("ckpt-").then_some((p, name))
        })
        .collect();
    // A finished `.tmp` is newer than the `.old` it was replacing: try it first.
    stranded.sort_by_key(|(p, _)| !p.to_string_lossy().ends_with(".tmp"));
    for (path, name) in stranded {
        let target = dir.join(&name);
        if path.to_string_lossy().ends_with(".old") && target.join(STATE_FILE).is_file() {
            // The replacement is in place; the old copy is what a kill left before its removal.
            std::fs::remove_dir_all(&path).map_err(|e| TrainError::io(&path, e))?;
        } else if path.join(STATE_FILE).is_file() && !target.exists() {
            std::fs::rename(&path, &target).map_err(|e| TrainError::io(&target, e))?;
            eprintln!(
                "recovered checkpoint {} from {} (left by an interrupted write)",
                target.display(),
                path.display()
            );
        }
    }
    Ok(())
}

/// Reads `state.json` of a checkpoint.
pub fn read_state(ckpt: &Path) -> Result<TrainState> {
    let path = ckpt.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint {
        path,
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(step: u64) -> TrainState {
        TrainState {
            step,
            optim_steps: step,
            images_seen: step * 4,
            seed: 1,
            nonfinite_total: 0,
            nonfinite_run: 0,
            train_seconds: 0.5,
            loss_scale: None,
            overflow_total: 0,
        }
    }

    #[test]
    fn keeps_last_n_and_latest() {
        let run = tempfile::tempdir().unwrap();
        for step in [10, 20, 30, 40] {
            write_checkpoint(run.path(), &state(step), 2, |d| {
                std::fs::write(d.join("x"), step.to_string()).map_err(|e| TrainError::io(d, e))
            })
            .unwrap();
        }
        let names: Vec<String> = list_checkpoints(run.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["ckpt-000000030", "ckpt-000000040"]);
        let latest = latest_checkpoint(run.path()).unwrap().unwrap();
        assert_eq!(read_state(&latest).unwrap(), state(40));
        assert_eq!(std::fs::read_to_string(latest.join("x")).unwrap(), "40");
    }

    #[test]
    fn failed_fill_leaves_no_checkpoint() {
        let run = tempfile::tempdir().unwrap();
        let err = write_checkpoint(run.path(), &state(5), 2, |d| {
            Err(TrainError::Checkpoint {
                path: d.to_path_buf(),
                message: "disk full".into(),
            })
        });
        assert!(err.is_err());
        assert!(latest_checkpoint(run.path()).unwrap().is_none());
    }
}
