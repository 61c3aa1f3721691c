//! `cargo xtask bench --reference PATH`: the project's training steps against the authors' code, back to
//! back on the same machine.
//!
//! The authors' side is `scripts/bench_reference.py` run on the user's clone of
//! <https://github.com/locuslab/ect> (their code is not ours to ship); the project's side is the
//! `bench_steps` benchmark of `ect-train` (`Trainer::step`, data and EMA included, which agrees with
//! `ect train` within 5%). Both use the same network, batch, objective, optimizer and thread count. The
//! objective `sample` times one-step generation instead (`x = f(80 z, 80)` without gradients).
//!
//! The speed of a shared or virtual machine drifts by tens of percent within minutes, so a single pair of
//! runs says little: each case runs `--rounds` times, alternating which side goes first, and the table
//! gives the median of each side, the range, and the ratio of the medians. The runs are also written as
//! JSON lines (`target/xtask/bench-reference.jsonl`).

use crate::libtorch::{self, Libtorch};
use anyhow::{bail, Context};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Options of `cargo xtask bench --reference`.
#[derive(Debug, Clone)]
pub struct ReferenceArgs {
    /// The clone of locuslab/ect (has `training/networks.py`).
    pub repo: PathBuf,
    /// The Python that runs the reference (needs torch and numpy).
    pub python: PathBuf,
    /// Networks, from `fmnist`, `ddpmpp`, `ncsnpp`.
    pub nets: Vec<String>,
    /// Objectives, from `ect`, `edm`, and `sample` (one-step generation).
    pub objectives: Vec<String>,
    /// Alternating rounds per case.
    pub rounds: usize,
    /// CPU threads of both sides.
    pub threads: usize,
}

/// Warm-up and measured steps (batches, for `sample`) of one run: the CIFAR-10 networks take seconds
/// per training step on a CPU, the Fashion-MNIST one a second; a generation batch is a third of a step.
fn steps_of(net: &str, objective: &str) -> (u32, u32) {
    match (net == "fmnist", objective == "sample") {
        (true, false) => (4, 20),
        (true, true) => (2, 20),
        (false, false) => (2, 5),
        (false, true) => (1, 6),
    }
}

/// The batch of a network, as `bench_steps` and `bench_reference.py` default to.
fn batch_of(net: &str) -> u32 {
    if net == "fmnist" {
        64
    } else {
        8
    }
}

/// One measured run of one side.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// `ours` or `reference`.
    pub side: &'static str,
    /// Network name.
    pub net: String,
    /// Objective name.
    pub objective: String,
    /// Round (1-based).
    pub round: usize,
    /// Images per second over the measured steps.
    pub images_per_s: f64,
}

/// Runs every case and prints the table.
pub fn run(args: &ReferenceArgs) -> anyhow::Result<()> {
    check_reference(args)?;
    let torch = libtorch::ensure()?;
    let root = libtorch::workspace_root();
    eprintln!("xtask: building the project's step benchmark (release)");
    let status = bench_steps_command(&torch, &[])
        .arg("--no-run")
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("building ect-train's benchmark failed ({status})");
    }
    let log_path = root.join("target/xtask/bench-reference.jsonl");
    std::fs::create_dir_all(log_path.parent().expect("a file in a folder"))
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut log = String::new();
    let mut runs = Vec::new();
    for round in 1..=args.rounds {
        for net in &args.nets {
            for objective in &args.objectives {
                // Alternate which side goes first, so that a drifting machine favours neither.
                let order: [&'static str; 2] = if round % 2 == 1 {
                    ["reference", "ours"]
                } else {
                    ["ours", "reference"]
                };
                for side in order {
                    let load = load_average();
                    let images_per_s = if side == "ours" {
                        run_ours(&torch, args, net, objective)?
                    } else {
                        run_reference(args, &root, net, objective)?
                    };
                    eprintln!(
                        "round {round}/{} {net} {objective} {side}: {images_per_s:.2} images/s (load {load})",
                        args.rounds
                    );
                    let run = Run {
                        side,
                        net: net.clone(),
                        objective: objective.clone(),
                        round,
                        images_per_s,
                    };
                    writeln!(
                        log,
                        "{}",
                        serde_json::json!({
                            "side": side, "net": net, "objective": objective, "round": round,
                            "batch": batch_of(net), "threads": args.threads,
                            "images_per_s": images_per_s, "load_before": load,
                        })
                    )
                    .expect("writing to a String");
                    runs.push(run);
                }
            }
        }
    }
    std::fs::write(&log_path, log).with_context(|| format!("writing {}", log_path.display()))?;
    println!("{}", table(&runs, args.threads));
    println!("runs: {}", log_path.display());
    Ok(())
}

/// Fails early, naming what is missing, when the clone or the Python cannot run the reference.
fn check_reference(args: &ReferenceArgs) -> anyhow::Result<()> {
    if !args.repo.join("training/networks.py").is_file() {
        bail!(
            "--reference {}: no training/networks.py (git clone https://github.com/locuslab/ect)",
            args.repo.display()
        );
    }
    if args.rounds == 0 || args.nets.is_empty() || args.objectives.is_empty() {
        bail!("--rounds, --nets and --objectives must each name at least one");
    }
    for net in &args.nets {
        if !["fmnist", "ddpmpp", "ncsnpp"].contains(&net.as_str()) {
            bail!("--nets: unknown network {net} (fmnist, ddpmpp, ncsnpp)");
        }
    }
    for objective in &args.objectives {
        if !["ect", "edm", "sample"].contains(&objective.as_str()) {
            bail!("--objectives: {objective} has no reference side (ect, edm, sample)");
        }
    }
    let out = Command::new(&args.python)
        .args(["-c", "import torch, numpy; print(torch.__version__)"])
        .output()
        .with_context(|| format!("running {}", args.python.display()))?;
    if !out.status.success() {
        bail!(
            "{} cannot import torch and numpy (the reference's networks.py needs both): {}\n\
             install them, e.g. `{} -m pip install numpy`, or pass --python",
            args.python.display(),
            String::from_utf8_lossy(&out.stderr).trim(),
            args.python.display()
        );
    }
    Ok(())
}

/// `cargo test -p ect-train --release --test it bench_steps` with the libtorch environment.
fn bench_steps_command(torch: &Libtorch, test_args: &[&str]) -> Command {
    let mut cmd = libtorch::cargo_command(torch);
    cmd.args([
        "test",
        "-p",
        "ect-train",
        "--release",
        "--test",
        "it",
        "--quiet",
    ]);
    if !test_args.is_empty() {
        cmd.arg("--").args(test_args);
    }
    cmd
}

fn run_ours(
    torch: &Libtorch,
    args: &ReferenceArgs,
    net: &str,
    objective: &str,
) -> anyhow::Result<f64> {
    let (warmup, steps) = steps_of(net, objective);
    let test = if objective == "sample" {
        "bench_steps::sample_throughput"
    } else {
        "bench_steps::step_throughput"
    };
    let out = bench_steps_command(
        torch,
        &[
            test,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ],
    )
    .env("ECT_BENCH_NETS", net)
    .env("ECT_BENCH_OBJECTIVES", objective)
    .env("ECT_BENCH_THREADS", args.threads.to_string())
    .env("ECT_BENCH_WARMUP", warmup.to_string())
    .env("ECT_BENCH_STEPS", steps.to_string())
    .env("ECT_BENCH_BATCH", batch_of(net).to_string())
    .output()
    .context("running the step benchmark")?;
    images_per_s_of_run(&out, "the step benchmark", net, objective, 4)
}

/// The images/s cell (column `column`) of a benchmark run's table, or an error with the run's output
/// when it failed or printed no such row.
fn images_per_s_of_run(
    out: &std::process::Output,
    what: &str,
    net: &str,
    objective: &str,
    column: usize,
) -> anyhow::Result<f64> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "{what} failed for {net} {objective} ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    images_per_s_of(&stdout, net, objective, column)
        .with_context(|| format!("reading {what}'s table:\n{stdout}"))
}

fn run_reference(
    args: &ReferenceArgs,
    root: &Path,
    net: &str,
    objective: &str,
) -> anyhow::Result<f64> {
    let (warmup, steps) = steps_of(net, objective);
    let out = Command::new(&args.python)
        .arg(root.join("scripts/bench_reference.py"))
        .arg("--ect-repo")
        .arg(&args.repo)
        .args(["--net", net, "--objective", objective])
        .args(["--batch", &batch_of(net).to_string()])
        .args([
            "--warmup",
            &warmup.to_string(),
            "--steps",
            &steps.to_string(),
        ])
        .args(["--threads", &args.threads.to_string()])
        .output()
        .context("running scripts/bench_reference.py")?;
    images_per_s_of_run(&out, "scripts/bench_reference.py", net, objective, 3)
}

/// The images/s cell (column `column`, 0-based among the cells) of the Markdown row that starts with
/// `| net | objective |`.
pub fn images_per_s_of(
    stdout: &str,
    net: &str,
    objective: &str,
    column: usize,
) -> anyhow::Result<f64> {
    for line in stdout.lines() {
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        if cells.len() > column && cells[0] == net && cells[1] == objective {
            let value: f64 = cells[column]
                .parse()
                .with_context(|| format!("images/s cell {:?} is not a number", cells[column]))?;
            if !(value.is_finite() && value > 0.0) {
                bail!("images/s cell {value} is not a positive rate");
            }
            return Ok(value);
        }
    }
    bail!("no row for {net} {objective}")
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The summary: per network and objective, the median images/s of each side with its range, the ratio
/// of the medians (ours / reference), and the median and range of the per-round ratios.
pub fn table(runs: &[Run], threads: usize) -> String {
    let mut out = String::from(
        "| network, batch | objective | ours images/s (median, range) | reference | ratio of medians | \
         per-round ratio (median, range) | rounds |\n|---|---|---|---|---|---|---|\n",
    );
    let mut cases: Vec<(&str, &str)> = Vec::new();
    for r in runs {
        if !cases.contains(&(r.net.as_str(), r.objective.as_str())) {
            cases.push((r.net.as_str(), r.objective.as_str()));
        }
    }
    for (net, objective) in cases {
        let side = |s: &str| -> Vec<f64> {
            runs.iter()
                .filter(|r| r.side == s && r.net == net && r.objective == objective)
                .map(|r| r.images_per_s)
                .collect()
        };
        let (mut ours, mut reference) = (side("ours"), side("reference"));
        if ours.is_empty() || reference.is_empty() {
            continue;
        }
        // Each round's two runs are adjacent in time, so their ratio is the least disturbed by the
        // machine's drift.
        let mut paired: Vec<f64> = runs
            .iter()
            .filter(|r| r.side == "ours" && r.net == net && r.objective == objective)
            .filter_map(|o| {
                runs.iter()
                    .find(|r| {
                        r.side == "reference"
                            && r.net == net
                            && r.objective == objective
                            && r.round == o.round
                    })
                    .map(|r| o.images_per_s / r.images_per_s)
            })
            .collect();
        let paired_median = median(&mut paired);
        let (mo, mr) = (median(&mut ours), median(&mut reference));
        let range = |v: &[f64]| format!("{:.2}–{:.2}", v[0], v[v.len() - 1]);
        writeln!(
            out,
            "| {net}, {} | {objective} | {mo:.2} ({}) | {mr:.2} ({}) | {:.2}x | {paired_median:.2}x ({}) | {} |",
            batch_of(net),
            range(&ours),
            range(&reference),
            mo / mr,
            range(&paired),
            ours.len()
        )
        .expect("writing to a String");
    }
    write!(out, "\n{threads} thread(s) each side; ours: Trainer::step with data and EMA; reference: network + loss + optimizer on random images; \
         sample: one-step generation without gradients on both sides").expect("writing to a String");
    out
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_both_tables_are_read() {
        let reference = "reference: /x, torch 2.11.0, 2 thread(s)\n| network | objective | batch | images/s | s/step | load |\n\
                         |---|---|---|---|---|---|\n| fmnist | ect | 64 | 33.87 | 1.89 | 2.25/2.13 |\n";
        assert_eq!(
            images_per_s_of(reference, "fmnist", "ect", 3).unwrap(),
            33.87
        );
        let ours = "| network | objective | device | batch | images/s | s/step |\n|---|---|---|---|---|---|\n\
                    | ddpmpp | edm | cpu | 8 | 1.37 | 5.8 |\n| ddpmpp | ect | cpu | 8 | 1.01 | 7.9 |\n";
        assert_eq!(images_per_s_of(ours, "ddpmpp", "ect", 4).unwrap(), 1.01);
        let err = images_per_s_of(ours, "fmnist", "ect", 4).unwrap_err();
        assert!(err.to_string().contains("no row for fmnist ect"), "{err}");
        let bad = "| fmnist | ect | cpu | 64 | NaN | 1 |\n";
        assert!(images_per_s_of(bad, "fmnist", "ect", 4).is_err());
    }

    #[test]
    fn the_table_compares_medians() {
        let mut runs = Vec::new();
        for (round, (o, r)) in [(40.0, 30.0), (50.0, 20.0), (45.0, 36.0)]
            .iter()
            .enumerate()
        {
            for (side, v) in [("ours", *o), ("reference", *r)] {
                runs.push(Run {
                    side,
                    net: "fmnist".into(),
                    objective: "ect".into(),
                    round: round + 1,
                    images_per_s: v,
                });
            }
        }
        let t = table(&runs, 2);
        // Medians 45 and 30: 1.50x, ranges sorted; rounds 40/30, 50/20, 45/36: 1.33, 2.5, 1.25.
        assert!(
            t.contains(
                "| fmnist, 64 | ect | 45.00 (40.00–50.00) | 30.00 (20.00–36.00) | 1.50x | 1.33x (1.25–2.50) | 3 |"
            ),
            "{t}"
        );
        let mut even = vec![4.0, 1.0, 3.0, 2.0];
        assert_eq!(median(&mut even), 2.5);
    }
}
