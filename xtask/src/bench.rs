//! `cargo xtask bench`: runs the criterion benchmarks of the workspace's crates and prints one table
//! (mean time per iteration and throughput) collected from criterion's `estimates.json` files; with
//! `--device` it runs the device check of [`crate::device_bench`] instead.

use crate::libtorch::{self, Libtorch};
use anyhow::Context;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Options of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Crates whose benches to run (default: every crate that has benches).
    #[arg(value_name = "CRATE")]
    pub crates: Vec<String>,
    /// Only print the table of the results already on disk.
    #[arg(long)]
    pub report_only: bool,
    /// Instead of the criterion benches: the device check of `ect` on `cpu` (a small configuration for
    /// CI) or `cuda` / `cuda:N` (the recipes' networks and batches): `ect info`, parity of every fixture,
    /// training-step and sampling images/s.
    #[arg(long, value_name = "DEVICE", conflicts_with_all = ["crates", "report_only"])]
    pub device: Option<String>,
    /// With `--device`: use this `ect` binary instead of building it (release).
    #[arg(long, value_name = "PATH", requires = "device")]
    pub ect_bin: Option<PathBuf>,
    /// Instead of the criterion benches: the project's training steps against the authors' code, back to
    /// back, from this clone of <https://github.com/locuslab/ect> (see `scripts/bench_reference.py`).
    #[arg(long, value_name = "ECT_CLONE", conflicts_with_all = ["crates", "report_only", "device"])]
    pub reference: Option<PathBuf>,
    /// With `--reference`: the Python that runs the authors' code (needs torch and numpy; default: the
    /// project's `.venv/bin/python`).
    #[arg(long, value_name = "PATH", requires = "reference")]
    pub python: Option<PathBuf>,
    /// With `--reference`: networks, comma-separated from fmnist, ddpmpp, ncsnpp.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "fmnist,ddpmpp",
        requires = "reference"
    )]
    pub nets: Vec<String>,
    /// With `--reference`: objectives, comma-separated from ect, edm, sample (one-step generation).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ect,edm",
        requires = "reference"
    )]
    pub objectives: Vec<String>,
    /// With `--reference`: alternating rounds per network and objective (the table gives medians).
    #[arg(long, default_value_t = 3, requires = "reference")]
    pub rounds: usize,
    /// With `--reference`: CPU threads of both sides (default: the cores available).
    #[arg(long, requires = "reference")]
    pub threads: Option<usize>,
}

/// One benchmark result.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchRow {
    /// `group/function/parameter` as criterion names it.
    pub id: String,
    /// Mean time of one iteration, in seconds.
    pub mean_s: f64,
    /// Elements (images, samples) per second, when the bench declared a throughput in elements.
    pub elements_per_s: Option<f64>,
    /// Bytes per second, when the bench declared a throughput in bytes.
    pub bytes_per_s: Option<f64>,
}

/// Runs the benches, then prints the table.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if let Some(device) = &args.device {
        let ect = match &args.ect_bin {
            Some(bin) => crate::ect::Ect::new(bin.clone()),
            None => crate::ect::Ect::build(&libtorch::ensure()?)?,
        };
        return crate::device_bench::run(device, &ect);
    }
    let root = libtorch::workspace_root();
    if let Some(repo) = &args.reference {
        let threads = args.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        return crate::reference_bench::run(&crate::reference_bench::ReferenceArgs {
            repo: repo.clone(),
            python: args
                .python
                .clone()
                .unwrap_or_else(|| root.join(".venv/bin/python")),
            nets: args.nets.clone(),
            objectives: args.objectives.clone(),
            rounds: args.rounds,
            threads,
        });
    }
    if !args.report_only {
        let crates = if args.crates.is_empty() {
            crates_with_benches(&root)
        } else {
            args.crates.clone()
        };
        let torch: Libtorch = libtorch::ensure()?;
        for name in &crates {
            eprintln!("xtask: cargo bench -p {name}");
            let cmd_args: Vec<String> = vec!["bench".into(), "-p".into(), name.clone()];
            libtorch::run_cargo(&torch, &cmd_args)?;
        }
    }
    let dir = target_dir(&root).join("criterion");
    let rows = collect(&dir)?;
    println!("{}", table(&rows));
    Ok(())
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// The workspace crates with a `benches/` folder.
pub fn crates_with_benches(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(root.join("crates"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("benches").is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// Reads every `<bench>/new/{benchmark,estimates}.json` under criterion's output folder.
pub fn collect(dir: &Path) -> anyhow::Result<Vec<BenchRow>> {
    let mut rows = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            if entry.file_name() == "new" {
                if let Some(row) = read_row(&path)? {
                    rows.push(row);
                }
            } else if entry.file_name() != "base" && entry.file_name() != "change" {
                stack.push(path);
            }
        }
    }
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(rows)
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn read_row(new_dir: &Path) -> anyhow::Result<Option<BenchRow>> {
    let (bench, est) = (
        new_dir.join("benchmark.json"),
        new_dir.join("estimates.json"),
    );
    if !bench.exists() || !est.exists() {
        return Ok(None);
    }
    let bench = read_json(&bench)?;
    let est = read_json(&est)?;
    let id = bench["full_id"].as_str().unwrap_or_default().to_owned();
    let mean_ns = est["mean"]["point_estimate"]
        .as_f64()
        .with_context(|| format!("no mean estimate in {}", new_dir.display()))?;
    let mean_s = mean_ns * 1e-9;
    let per_s = |key: &str| bench["throughput"][key].as_f64().map(|n| n / mean_s);
    Ok(Some(BenchRow {
        id,
        mean_s,
        elements_per_s: per_s("Elements"),
        bytes_per_s: per_s("Bytes"),
    }))
}

fn human_time(s: f64) -> String {
    match s {
        s if s >= 1.0 => format!("{s:.2} s"),
        s if s >= 1e-3 => format!("{:.2} ms", s * 1e3),
        s if s >= 1e-6 => format!("{:.2} us", s * 1e6),
        s => format!("{:.1} ns", s * 1e9),
    }
}

/// The markdown table of the results.
pub fn table(rows: &[BenchRow]) -> String {
    let mut out = String::from("| benchmark | mean time | throughput |\n|---|---|---|\n");
    for r in rows {
        let thr = match (r.elements_per_s, r.bytes_per_s) {
            (Some(e), _) => format!("{e:.1} elem/s"),
            (None, Some(b)) => format!("{:.1} MB/s", b / 1e6),
            _ => "-".to_owned(),
        };
        out.push_str(&format!(
            "| {} | {} | {} |\n",
            r.id,
            human_time(r.mean_s),
            thr
        ));
    }
    if rows.is_empty() {
        out.push_str("| (no results found: run `cargo xtask bench` first) | | |\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_criterion_output_and_computes_throughput() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-{}", std::process::id()));
        let new = dir.join("unet_forward/ddpmpp_b8/new");
        std::fs::create_dir_all(&new).unwrap();
        std::fs::write(
            new.join("benchmark.json"),
            r#"{"group_id":"unet_forward","function_id":"ddpmpp_b8","value_str":null,
               "throughput":{"Elements":8},"full_id":"unet_forward/ddpmpp_b8","directory_name":"x","title":"t"}"#,
        )
        .unwrap();
        std::fs::write(
            new.join("estimates.json"),
            r#"{"mean":{"point_estimate":2000000000.0}}"#,
        )
        .unwrap();
        let rows = collect(&dir).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].id, "unet_forward/ddpmpp_b8");
        assert!((rows[0].mean_s - 2.0).abs() < 1e-12);
        assert!((rows[0].elements_per_s.unwrap() - 4.0).abs() < 1e-12);
        let t = table(&rows);
        assert!(
            t.contains("| unet_forward/ddpmpp_b8 | 2.00 s | 4.0 elem/s |"),
            "{t}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
