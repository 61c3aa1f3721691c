//! `ect train --profile N`: libtorch's profiler over `N` training steps of a configuration, written as a
//! Chrome trace, with a table of where the time went.
//!
//! The steps are [`Trainer::step`]'s, exactly as `ect train` runs them, after one unprofiled warm-up
//! step (first-call allocations and oneDNN's kernel selection would otherwise dominate). Nothing is
//! written to the run directory: the trainer is built over a temporary one.
//!
//! Two tables: self time per operator, then per operator and input shapes (the costliest calls, which
//! says which layer a convolution's time goes to, and whether one of them is out of line).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use ect_config::TrainConfig;
use ect_dist::context::{Profiler, ProfilerOptions};
use ect_train::trainer::Trainer;
use serde_json::Value;

/// One operator's share of a trace.
#[derive(Debug, Clone, PartialEq)]
pub struct OpTime {
    /// The operator (`aten::convolution_backward`, ...).
    pub name: String,
    /// Calls.
    pub calls: u64,
    /// Time inside the operator but outside the operators it called, microseconds.
    pub self_us: f64,
}

/// Profiles `steps` steps of `cfg` (after one warm-up step), writes the Chrome trace to `trace` and
/// prints the operators with the most self time and the steps' images/s.
pub fn profile_steps(cfg: &TrainConfig, steps: u64, trace: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        steps > 0,
        "--profile: give the number of steps to profile (> 0)"
    );
    let tmp = std::env::temp_dir().join(format!("ect-profile-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let result = profile_in(cfg, steps, trace, &tmp);
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn profile_in(cfg: &TrainConfig, steps: u64, trace: &Path, run_dir: &Path) -> anyhow::Result<()> {
    let mut cfg = cfg.clone();
    cfg.iterations = cfg.iterations.max(steps + 1);
    cfg.output.run_dir = PathBuf::from(run_dir);
    let batch = cfg.batch_size;
    let mut trainer = Trainer::new(cfg, run_dir.to_path_buf(), None)?;
    trainer.step()?;
    let options = ProfilerOptions {
        cuda: trainer.network().vs.device().is_cuda(),
        record_shapes: true,
        ..Default::default()
    };
    let profiler = Profiler::start(options)?;
    let started = std::time::Instant::now();
    for _ in 0..steps {
        trainer.step()?;
    }
    let seconds = started.elapsed().as_secs_f64();
    profiler.finish(trace)?;
    let text = std::fs::read_to_string(trace)
        .with_context(|| format!("reading the trace {}", trace.display()))?;
    let trace_json: Value = serde_json::from_str(&text).context("parsing the trace")?;
    let ops = self_times(&trace_json);
    let total: f64 = ops.iter().map(|o| o.self_us).sum();
    eprintln!(
        "profiled {steps} step(s): {:.2} s/step, {:.2} images/s (with the profiler's overhead); trace {}",
        seconds / steps as f64,
        (steps * batch) as f64 / seconds,
        trace.display()
    );
    print_table("operator", &ops[..ops.len().min(25)], steps, total);
    eprintln!();
    let by_shape = self_times_by_shape(&trace_json);
    print_table(
        "operator and input shapes",
        &by_shape[..by_shape.len().min(20)],
        steps,
        total,
    );
    Ok(())
}

/// Prints `rows` as a Markdown table to stderr: calls and self milliseconds per step over `steps`
/// steps, and the share of `total_us`.
fn print_table(first_column: &str, rows: &[OpTime], steps: u64, total_us: f64) {
    eprintln!("| {first_column} | calls/step | self ms/step | share |");
    eprintln!("|---|---|---|---|");
    for op in rows {
        eprintln!(
            "| {} | {} | {:.1} | {:.1}% |",
            op.name,
            op.calls / steps,
            op.self_us / 1e3 / steps as f64,
            100.0 * op.self_us / total_us
        );
    }
}

/// Self time per operator of a Chrome trace (Kineto's `cpu_op` events), largest first: each event's
/// duration less the durations of the events nested directly inside it on the same thread.
pub fn self_times(trace: &Value) -> Vec<OpTime> {
    self_times_keyed(trace, |name, _| name.to_owned())
}

/// [`self_times`] per operator and input shapes: `name` followed by the dimensions of its tensor inputs
/// (Kineto's `Input Dims`, recorded with `record_shapes`), e.g.
/// `aten::mkldnn_convolution [64, 32, 28, 28] [32, 32, 3, 3] [32]`.
pub fn self_times_by_shape(trace: &Value) -> Vec<OpTime> {
    self_times_keyed(trace, |name, event| {
        let dims: Vec<String> = event["args"]["Input Dims"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d.as_array())
            .filter(|d| !d.is_empty())
            .map(|d| {
                let sizes: Vec<String> = d.iter().map(|x| x.to_string()).collect();
                format!("[{}]", sizes.join(", "))
            })
            .collect();
        if dims.is_empty() {
            name.to_owned()
        } else {
            format!("{name} {}", dims.join(" "))
        }
    })
}

/// Self time grouped by `key(name, event)`, largest first (see [`self_times`]).
fn self_times_keyed(trace: &Value, key: impl Fn(&str, &Value) -> String) -> Vec<OpTime> {
    /// `(start, duration, grouping key)` of one event.
    type Event = (f64, f64, String);
    let mut by_thread: HashMap<(String, String), Vec<Event>> = HashMap::new();
    for e in trace["traceEvents"].as_array().into_iter().flatten() {
        if e["ph"] != "X" || e["cat"] != "cpu_op" {
            continue;
        }
        let (Some(ts), Some(dur), Some(name)) =
            (e["ts"].as_f64(), e["dur"].as_f64(), e["name"].as_str())
        else {
            continue;
        };
        let thread = (e["pid"].to_string(), e["tid"].to_string());
        by_thread
            .entry(thread)
            .or_default()
            .push((ts, dur, key(name, e)));
    }
    let mut ops: HashMap<String, (u64, f64)> = HashMap::new();
    for events in by_thread.values_mut() {
        // Parents first: earlier start, and the longer event when two start together.
        events.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
        // Open events: (end, index into `events`); self time starts as the full duration.
        let mut open: Vec<(f64, usize)> = Vec::new();
        let mut self_us: Vec<f64> = events.iter().map(|e| e.1).collect();
        for (i, &(ts, dur, _)) in events.iter().enumerate() {
            while open.last().is_some_and(|&(end, _)| end <= ts) {
                open.pop();
            }
            if let Some(&(_, parent)) = open.last() {
                self_us[parent] -= dur;
            }
            open.push((ts + dur, i));
        }
        for (e, s) in events.iter().zip(self_us) {
            let entry = ops.entry(e.2.clone()).or_default();
            entry.0 += 1;
            entry.1 += s.max(0.0);
        }
    }
    let mut out: Vec<OpTime> = ops
        .into_iter()
        .map(|(name, (calls, self_us))| OpTime {
            name,
            calls,
            self_us,
        })
        .collect();
    out.sort_by(|a, b| b.self_us.total_cmp(&a.self_us).then(a.name.cmp(&b.name)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_time_subtracts_direct_children_per_thread() {
        let trace = serde_json::json!({"traceEvents": [
            {"ph": "X", "cat": "cpu_op", "name": "outer", "ts": 0.0, "dur": 100.0, "pid": 1, "tid": 1},
            {"ph": "X", "cat": "cpu_op", "name": "inner", "ts": 10.0, "dur": 30.0, "pid": 1, "tid": 1},
            {"ph": "X", "cat": "cpu_op", "name": "leaf", "ts": 15.0, "dur": 5.0, "pid": 1, "tid": 1},
            {"ph": "X", "cat": "cpu_op", "name": "inner", "ts": 50.0, "dur": 20.0, "pid": 1, "tid": 1},
            // Another thread overlapping in time is not a child.
            {"ph": "X", "cat": "cpu_op", "name": "leaf", "ts": 20.0, "dur": 7.0, "pid": 1, "tid": 2},
            {"ph": "X", "cat": "kernel", "name": "ignored", "ts": 0.0, "dur": 1000.0, "pid": 1, "tid": 1},
        ]});
        let ops = self_times(&trace);
        let get = |n: &str| ops.iter().find(|o| o.name == n).unwrap().clone();
        assert_eq!((get("outer").calls, get("outer").self_us), (1, 50.0));
        assert_eq!((get("inner").calls, get("inner").self_us), (2, 45.0));
        assert_eq!((get("leaf").calls, get("leaf").self_us), (2, 12.0));
        assert_eq!(ops[0].name, "outer");
        assert!(ops.iter().all(|o| o.name != "ignored"));
    }

    #[test]
    fn shapes_split_one_operator_into_its_calls() {
        let conv = |ts: f64, dur: f64, dims: Value| {
            serde_json::json!({"ph": "X", "cat": "cpu_op", "name": "conv", "ts": ts, "dur": dur,
                "pid": 1, "tid": 1, "args": {"Input Dims": dims}})
        };
        let trace = serde_json::json!({"traceEvents": [
            conv(0.0, 10.0, serde_json::json!([[8, 3, 32, 32], [64, 3, 3, 3], [], []])),
            conv(20.0, 30.0, serde_json::json!([[8, 64, 16, 16], [64, 64, 3, 3]])),
            conv(60.0, 12.0, serde_json::json!([[8, 3, 32, 32], [64, 3, 3, 3], [], []])),
            {"ph": "X", "cat": "cpu_op", "name": "relu", "ts": 80.0, "dur": 1.0, "pid": 1, "tid": 1},
        ]});
        let ops = self_times_by_shape(&trace);
        assert_eq!(ops[0].name, "conv [8, 64, 16, 16] [64, 64, 3, 3]");
        assert_eq!((ops[0].calls, ops[0].self_us), (1, 30.0));
        assert_eq!(ops[1].name, "conv [8, 3, 32, 32] [64, 3, 3, 3]");
        assert_eq!((ops[1].calls, ops[1].self_us), (2, 22.0));
        assert_eq!((ops[2].name.as_str(), ops[2].calls), ("relu", 1));
        // Grouped by name only, the two shapes are one operator.
        assert_eq!(self_times(&trace)[0].self_us, 52.0);
    }
}
