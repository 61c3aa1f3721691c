//! Training statistics: what one step reports, the accumulation over a logging interval, and the
//! `stats.jsonl` log of a run directory (one JSON object per interval, one clean history across
//! resumes).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::checkpoint::TrainState;
use crate::error::{Result, TrainError};

/// File of the per-interval statistics in a run directory.
pub const STATS_FILE: &str = "stats.jsonl";

/// What happened to the update of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// The optimizer applied the update and the EMA followed.
    Applied,
    /// Mixed precision: the scaled gradients overflowed, the update was skipped and the scale backed off
    /// (the loss scaler's normal operation, not divergence).
    Overflowed,
    /// The loss was not finite; the update was skipped.
    NonFinite,
}

/// What one optimizer step reports.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// The step just completed (1-based).
    pub step: u64,
    /// What happened to its update.
    pub outcome: StepOutcome,
    /// Mean loss over the batch (NaN or infinite for a non-finite step).
    pub loss: f64,
    /// Mean `t` of the batch.
    pub mean_t: f64,
    /// Mean `r` of the batch.
    pub mean_r: f64,
    /// Mean `r / t` of the batch.
    pub mean_r_over_t: f64,
    /// The stage the step trained at.
    pub stage: u32,
    /// The learning rate of the step.
    pub lr: f64,
    /// Images of the step (the global batch).
    pub images: u64,
    /// Seconds the step took.
    pub seconds: f64,
    /// Of those, seconds waiting for data.
    pub data_wait: f64,
}

/// Accumulates the steps of one logging interval.
#[derive(Debug, Default)]
pub struct Interval {
    loss: f64,
    mean_t: f64,
    mean_r: f64,
    mean_rt: f64,
    counted: u64,
    images: u64,
    seconds: f64,
    wait: f64,
    stage: u32,
    lr: f64,
}

impl Interval {
    /// Adds a step (its loss and times count only when its update was applied).
    pub fn add(&mut self, r: &StepReport) {
        if r.outcome == StepOutcome::Applied {
            self.loss += r.loss;
            self.mean_t += r.mean_t;
            self.mean_r += r.mean_r;
            self.mean_rt += r.mean_r_over_t;
            self.counted += 1;
        }
        self.images += r.images;
        self.seconds += r.seconds;
        self.wait += r.data_wait;
        self.stage = r.stage;
        self.lr = r.lr;
    }

    /// Whether no step was added since the last record.
    pub fn is_empty(&self) -> bool {
        self.images == 0
    }

    /// The interval's record at `state`, and a fresh interval.
    pub fn take_record(&mut self, state: &TrainState) -> StatsRecord {
        let k = self.counted.max(1) as f64;
        let per_second = |x: f64| {
            if self.seconds > 0.0 {
                x / self.seconds
            } else {
                0.0
            }
        };
        let record = StatsRecord {
            step: state.step,
            images_seen: state.images_seen,
            loss: if self.counted > 0 {
                self.loss / k
            } else {
                f64::NAN
            },
            stage: self.stage,
            mean_t: self.mean_t / k,
            mean_r: self.mean_r / k,
            mean_r_over_t: self.mean_rt / k,
            lr: self.lr,
            images_per_sec: per_second(self.images as f64),
            data_wait_fraction: per_second(self.wait),
            nonfinite_total: state.nonfinite_total,
            loss_scale: state.loss_scale.map(|s| s.scale),
            overflow_total: state.loss_scale.map(|_| state.overflow_total),
            peak_rss_mib: peak_rss_mib(),
            train_seconds: state.train_seconds,
        };
        *self = Self::default();
        record
    }
}

/// One line of `stats.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatsRecord {
    /// Steps completed.
    pub step: u64,
    /// Images drawn so far.
    pub images_seen: u64,
    /// Mean loss of the interval's applied steps (NaN when none was applied).
    pub loss: f64,
    /// ECT stage.
    pub stage: u32,
    /// Mean `t`.
    pub mean_t: f64,
    /// Mean `r`.
    pub mean_r: f64,
    /// Mean `r / t`.
    pub mean_r_over_t: f64,
    /// Learning rate of the interval's last step.
    pub lr: f64,
    /// Training images per second over the interval.
    pub images_per_sec: f64,
    /// Fraction of the interval spent waiting for data.
    pub data_wait_fraction: f64,
    /// Steps skipped for a non-finite loss, in total.
    pub nonfinite_total: u64,
    /// Mixed precision: the current loss scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f64>,
    /// Mixed precision: steps skipped for overflow, in total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overflow_total: Option<u64>,
    /// Peak resident memory of the process, MiB.
    pub peak_rss_mib: Option<f64>,
    /// Seconds of training so far.
    pub train_seconds: f64,
}

/// The `stats.jsonl` of a run, opened for appending.
pub struct StatsLog {
    path: PathBuf,
    file: std::fs::File,
}

impl StatsLog {
    /// Opens `run_dir/stats.jsonl` for a run continuing after `step`: records past `step` (written after
    /// the checkpoint a killed run resumes from) are dropped first, so the log stays one history with
    /// each step once.
    pub fn open(run_dir: &Path, step: u64) -> Result<Self> {
        let path = run_dir.join(STATS_FILE);
        if path.exists() {
            truncate_after(&path, step)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| TrainError::io(&path, e))?;
        Ok(Self { path, file })
    }

    /// Appends a record.
    pub fn append(&mut self, record: &StatsRecord) -> Result<()> {
        let mut line = serde_json::to_string(record).expect("stats serialize");
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(|e| TrainError::io(&self.path, e))
    }
}

/// Rewrites `path` (atomically) without the records whose `step` exceeds `step`; a torn last line (a
/// kill mid-write) goes too.
fn truncate_after(path: &Path, step: u64) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    let keep = |line: &&str| {
        serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v["step"].as_u64())
            .is_some_and(|s| s <= step)
    };
    let kept: Vec<&str> = text.lines().filter(keep).collect();
    if kept.len() == text.lines().count() && (text.is_empty() || text.ends_with('\n')) {
        return Ok(());
    }
    let mut out = kept.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    crate::images::write_atomic(path, out.as_bytes())
}

/// Peak resident memory of this process (Linux `VmHWM`), in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopening_drops_records_past_the_checkpoint_and_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATS_FILE);
        let lines: Vec<String> = (1..=6)
            .map(|s| format!("{{\"step\":{}}}", s * 10))
            .collect();
        std::fs::write(&path, format!("{}\n{{\"step\":7", lines.join("\n"))).unwrap();
        drop(StatsLog::open(dir.path(), 40).unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        let steps: Vec<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(steps, [10, 20, 30, 40]);
        assert!(text.ends_with('\n'));
    }
}
