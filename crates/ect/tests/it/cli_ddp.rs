//! Data-parallel training through the binary, 2 processes over Gloo on 127.0.0.1 (one libtorch thread
//! each): `ect train --nproc-per-node 2` gives the weights of a 1-process run with the same global batch
//! (dropout 0), resume works across process counts in both directions, a forwarded SIGTERM stops every
//! rank at one step with one checkpoint, and a SIGKILLed rank ends the other with an error naming it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tch::Tensor;

use crate::common::{self, ect, run_within};

const CONFIG: &str = r#"
seed = 3
device = "cpu"
threads = 1
iterations = 20
batch_size = 8
micro_batch = 2
[data]
format = "idx"
xflip = true
[network]
network = "ECMPrecond"
img_resolution = 8
img_channels = 1
model_type = "SongUNet"
model_channels = 8
channel_mult = [1, 2]
channel_mult_emb = 2
num_blocks = 1
attn_resolutions = [4]
dropout = 0.0
[optimizer]
lr = 0.001
[schedule]
q = 2.0
iters_per_stage = 5
[output]
checkpoint_every = 0
sample_every = 0
log_every = 1
keep_last = 2
[distributed]
timeout_s = 20
"#;

/// A scratch folder with the dataset and the config; returns (folder, config path).
fn setup(name: &str) -> (common::Scratch, PathBuf) {
    common::idx_run_setup(name, 40, "ddp.toml", CONFIG)
}

/// `ect train` of the config into `run` with extra arguments.
fn train(dir: &Path, cfg: &Path, run: &Path, extra: &[&str]) -> Command {
    let mut cmd = common::train_command(dir, cfg, run);
    cmd.args(extra);
    cmd
}

fn ok(out: &Output) {
    assert!(
        out.status.success() || out.status.code() == Some(3),
        "exit {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The latest checkpoint's directory.
fn latest(run: &Path) -> PathBuf {
    let ckpts = run.join("checkpoints");
    ckpts.join(
        std::fs::read_to_string(ckpts.join("latest"))
            .unwrap()
            .trim(),
    )
}

fn step_of(ckpt: &Path) -> u64 {
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ckpt.join("state.json")).unwrap()).unwrap();
    state["step"].as_u64().unwrap()
}

/// The largest relative difference `max|a - b| / max|b|` over the tensors of two safetensors files
/// (every tensor of one must be in the other).
fn max_rel_diff(a: &Path, b: &Path) -> f64 {
    let b: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(b).unwrap().into_iter().collect();
    let mut worst = 0f64;
    for (name, x) in Tensor::read_safetensors(a).unwrap() {
        let y = &b[&name];
        let scale = y.abs().max().double_value(&[]).max(1e-12);
        let diff = (&x - y).abs().max().double_value(&[]);
        worst = worst.max(diff / scale);
    }
    worst
}

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn two_processes_train_the_weights_of_one() {
    let (dir, cfg) = setup("ddp-equal");
    let (one, two) = (dir.join("one"), dir.join("two"));
    ok(&run_within(train(&dir, &cfg, &one, &[]), LIMIT));
    let out = run_within(train(&dir, &cfg, &two, &["--nproc-per-node", "2"]), LIMIT);
    ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "rank 0 alone prints: {stdout}");
    let (a, b) = (latest(&one), latest(&two));
    assert_eq!((step_of(&a), step_of(&b)), (20, 20));
    let world = |run: &Path| -> serde_json::Value {
        let meta = std::fs::read_to_string(run.join("run.json")).unwrap();
        serde_json::from_str::<serde_json::Value>(&meta).unwrap()["world_size"].clone()
    };
    assert_eq!((world(&one), world(&two)), (1.into(), 2.into()));
    let weights = max_rel_diff(&b.join("model.safetensors"), &a.join("model.safetensors"));
    let ema = max_rel_diff(&b.join("ema.safetensors"), &a.join("ema.safetensors"));
    eprintln!("2 vs 1 process after 20 steps: weights {weights:e}, EMA {ema:e} (max relative)");
    assert!(
        weights < 1e-5 && ema < 1e-5,
        "weights {weights:e}, EMA {ema:e}"
    );
    // The same logged losses, step by step (float32 summation order only).
    let losses = |run: &Path| -> Vec<f64> {
        std::fs::read_to_string(run.join("stats.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                    .as_f64()
                    .unwrap()
            })
            .collect()
    };
    let (la, lb) = (losses(&one), losses(&two));
    assert_eq!(la.len(), 20);
    for (x, y) in la.iter().zip(&lb) {
        assert!((x - y).abs() <= 1e-5 * x.abs(), "losses {la:?} vs {lb:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A scratch folder with `n` 28x28 IDX images (the built-in feature net's input) and an untrained
/// feature net's weights (enough to compare pooled statistics with one process's); returns (folder,
/// weights).
fn featnet_setup(name: &str, n: u32) -> (common::Scratch, PathBuf) {
    let dir = common::tmp(name);
    common::write_idx(
        &dir,
        "train",
        (n, 28, 28),
        |i, p| ((p * 7 + i * 29) % 251) as u8,
        |i| (i % 3) as u8,
    );
    tch::manual_seed(0);
    let weights = dir.join("featnet.safetensors");
    ect_metrics::extract::featnet::FeatureNet::new(tch::Device::Cpu)
        .save(&weights)
        .unwrap();
    (dir, weights)
}

/// A 28x28 run (the feature net's input) with a periodic FD every 2 steps, 20 samples in batches of 3:
/// 7 batches, 4 on rank 0 and 3 on rank 1 of a 2-process run.
const EVAL_CONFIG: &str = r#"
seed = 4
device = "cpu"
threads = 1
iterations = 4
batch_size = 4
[data]
format = "idx"
[network]
network = "ECMPrecond"
img_resolution = 28
img_channels = 1
model_type = "SongUNet"
model_channels = 8
channel_mult = [1, 1]
num_blocks = 1
attn_resolutions = []
dropout = 0.0
[optimizer]
lr = 0.001
[output]
checkpoint_every = 0
sample_every = 0
log_every = 1
[eval]
every = 2
samples = 20
batch_size = 3
[distributed]
timeout_s = 30
"#;

/// The periodic FD of a 2-process run is computed by both ranks (each samples and extracts its share of
/// the batches; the statistics are pooled) and written once by rank 0, with the value a 1-process run
/// gets: the same noise per batch, the same images up to the weights' float32 summation order.
#[test]
fn the_periodic_fd_is_shared_by_the_ranks_and_equals_one_process() {
    let (dir, weights) = featnet_setup("ddp-eval", 24);
    let reference = dir.join("reference.npz");
    let mut stats = ect();
    stats
        .args(["metrics", "stats", "--format", "idx", "--feature-net"])
        .arg(&weights)
        .arg("--dataset")
        .arg(&dir)
        .arg("--out")
        .arg(&reference);
    ok(&run_within(stats, LIMIT));
    let cfg = dir.join("eval.toml");
    std::fs::write(&cfg, EVAL_CONFIG).unwrap();
    let extractor = format!(
        "eval.extractor={{ kind = \"feature-net\", weights = \"{}\" }}",
        weights.display()
    );
    let reference = format!("eval.reference=\"{}\"", reference.display());
    let eval_args = ["--set", &extractor, "--set", &reference];
    let (one, two) = (dir.join("one"), dir.join("two"));
    ok(&run_within(train(&dir, &cfg, &one, &eval_args), LIMIT));
    let mut args = eval_args.to_vec();
    args.extend(["--nproc-per-node", "2"]);
    ok(&run_within(train(&dir, &cfg, &two, &args), LIMIT));
    let records = |run: &Path| -> Vec<(u64, String, u64, f64)> {
        std::fs::read_to_string(run.join("fd.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let r: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    r["step"].as_u64().unwrap(),
                    r["sampler"].as_str().unwrap().to_owned(),
                    r["samples"].as_u64().unwrap(),
                    r["fd"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let (a, b) = (records(&one), records(&two));
    let keys = |r: &[(u64, String, u64, f64)]| -> Vec<(u64, String, u64)> {
        r.iter().map(|(s, n, k, _)| (*s, n.clone(), *k)).collect()
    };
    let want: Vec<(u64, String, u64)> = [2, 4]
        .iter()
        .flat_map(|&s| ["1step", "2step"].map(|n| (s, n.to_owned(), 20)))
        .collect();
    assert_eq!(keys(&a), want, "{a:?}");
    assert_eq!(
        keys(&b),
        want,
        "rank 0 alone writes, once per sampler: {b:?}"
    );
    eprintln!("periodic FD, 1 vs 2 processes: {a:?} vs {b:?}");
    for ((.., x), (.., y)) in a.iter().zip(&b) {
        assert!(x.is_finite() && *x > 0.0, "{a:?}");
        assert!((x - y).abs() <= 1e-5 * x, "FD {x} (1 process) vs {y} (2)");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `ect sample --nproc-per-node 2` writes the bytes of a 1-process `ect sample` (uneven shares: 4
/// batches of 3 and a last one of 1, three on rank 0), and rank 0 alone reports; a PNG grid, which one
/// process assembles, is refused with several.
#[test]
fn sampling_in_two_processes_writes_the_file_of_one() {
    let (dir, cfg) = setup("ddp-sample");
    let run = dir.join("run");
    ok(&run_within(
        train(&dir, &cfg, &run, &["--set", "iterations=2"]),
        LIMIT,
    ));
    let sample = |out: &str, extra: &[&str]| {
        let mut cmd = ect();
        cmd.args([
            "sample", "--steps", "2", "--n", "13", "--batch", "3", "--device", "cpu",
        ])
        .arg("--from")
        .arg(&run)
        .arg("--out")
        .arg(dir.join(out))
        .args(extra)
        .env("OMP_NUM_THREADS", "1");
        run_within(cmd, LIMIT)
    };
    let one = sample("one.npy", &[]);
    ok(&one);
    let two = sample("two.npy", &["--nproc-per-node", "2"]);
    ok(&two);
    let summary = |out: &Output| -> serde_json::Value {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(stdout.lines().count(), 1, "rank 0 alone reports: {stdout}");
        serde_json::from_str(stdout.trim()).unwrap()
    };
    let (s1, s2) = (summary(&one), summary(&two));
    assert_eq!(
        (s1["processes"].as_u64(), s2["processes"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(s2["shape"], serde_json::json!([13, 1, 8, 8]));
    let (a, b) = (
        std::fs::read(dir.join("one.npy")).unwrap(),
        std::fs::read(dir.join("two.npy")).unwrap(),
    );
    assert_eq!(a.len(), 128 + 13 * 64);
    assert!(a == b, "2 processes wrote other bytes than 1");
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.contains("two.npy") && n != "two.npy")
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    let png = sample("grid.png", &["--nproc-per-node", "2"]);
    assert!(!png.status.success());
    let err = String::from_utf8_lossy(&png.stderr);
    assert!(
        err.contains("PNG grid") && err.contains("grid.png"),
        "{err}"
    );
    assert!(!dir.join("grid.png").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `ect metrics stats --nproc-per-node 2` pools the statistics of the two ranks' batches (23 images in
/// batches of 4: 3 batches on rank 0, 3 on rank 1) into those of one process, and rank 0 alone writes
/// and reports.
#[test]
fn feature_statistics_in_two_processes_equal_one() {
    let (dir, weights) = featnet_setup("ddp-stats", 23);
    let stats = |out: &str, extra: &[&str]| {
        let mut cmd = ect();
        cmd.args([
            "metrics",
            "stats",
            "--format",
            "idx",
            "--batch",
            "4",
            "--feature-net",
        ])
        .arg(&weights)
        .arg("--dataset")
        .arg(&dir)
        .arg("--out")
        .arg(dir.join(out))
        .args(extra)
        .env("OMP_NUM_THREADS", "1");
        let out = run_within(cmd, LIMIT);
        ok(&out);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(stdout.lines().count(), 1, "rank 0 alone reports: {stdout}");
        serde_json::from_str::<serde_json::Value>(stdout.trim()).unwrap()
    };
    let one = stats("one.npz", &[]);
    let two = stats("two.npz", &["--nproc-per-node", "2"]);
    assert_eq!(
        (one["processes"].as_u64(), two["processes"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(two["num_samples"].as_u64(), Some(23));
    let a = ect_metrics::load_stats_npz(&dir.join("one.npz")).unwrap();
    let b = ect_metrics::load_stats_npz(&dir.join("two.npz")).unwrap();
    let worst = |x: &[f64], y: &[f64]| {
        let scale = x.iter().fold(0f64, |m, v| m.max(v.abs()));
        x.iter().zip(y).fold(0f64, |m, (p, q)| m.max((p - q).abs())) / scale
    };
    let (dmu, dsigma) = (worst(a.mu(), b.mu()), worst(a.sigma(), b.sigma()));
    eprintln!("pooled vs one process: mu {dmu:e}, sigma {dsigma:e} (max relative)");
    assert!(dmu < 1e-9 && dsigma < 1e-9, "mu {dmu:e}, sigma {dsigma:e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resume_changes_the_number_of_processes_both_ways() {
    let (dir, cfg) = setup("ddp-resume");
    let six = ["--set", "iterations=6"];
    let reference = dir.join("ref");
    ok(&run_within(train(&dir, &cfg, &reference, &six), LIMIT));
    for (first, second, name) in [(2, 1, "2to1"), (1, 2, "1to2")] {
        let run = dir.join(name);
        let nproc = |n: i32| -> Vec<String> {
            if n > 1 {
                vec!["--nproc-per-node".into(), n.to_string()]
            } else {
                vec![]
            }
        };
        let mut args: Vec<String> = six.iter().map(|s| s.to_string()).collect();
        args.extend(["--stop-at-step".into(), "3".into()]);
        args.extend(nproc(first));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_within(train(&dir, &cfg, &run, &args), LIMIT);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(step_of(&latest(&run)), 3);
        let mut resume = ect();
        resume
            .args(["resume", "--quiet"])
            .arg(&run)
            .args(nproc(second));
        ok(&run_within(resume, LIMIT));
        let ckpt = latest(&run);
        assert_eq!(step_of(&ckpt), 6);
        let rel = max_rel_diff(
            &ckpt.join("model.safetensors"),
            &latest(&reference).join("model.safetensors"),
        );
        eprintln!("{name}: weights after 6 steps vs one uninterrupted process: {rel:e}");
        assert!(rel < 1e-5, "{name}: {rel:e}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The PIDs of `parent`'s children.
fn children(parent: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// The worker of `launcher` whose environment has `RANK=rank`.
fn worker(launcher: u32, rank: usize) -> Option<u32> {
    children(launcher).into_iter().find(|pid| {
        std::fs::read(format!("/proc/{pid}/environ"))
            .map(|env| {
                env.split(|&b| b == 0)
                    .any(|kv| kv == format!("RANK={rank}").as_bytes())
            })
            .unwrap_or(false)
    })
}

/// Starts a long 2-process run and waits until it has logged `steps` steps (and, with `ckpt`, written a
/// checkpoint); returns the launcher.
// The launcher is returned to the caller, which waits on it (the lint cannot see past the return).
#[allow(clippy::zombie_processes)]
fn start_long_run(dir: &Path, cfg: &Path, run: &Path, ckpt: bool) -> std::process::Child {
    let every = if ckpt { "2" } else { "0" };
    let mut child = train(
        dir,
        cfg,
        run,
        &[
            "--set",
            "iterations=100000",
            "--set",
            &format!("output.checkpoint_every={every}"),
            "--nproc-per-node",
            "2",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + LIMIT;
    loop {
        let logged = std::fs::read_to_string(run.join("stats.jsonl"))
            .map(|s| s.lines().count())
            .unwrap_or(0);
        let has_ckpt = run.join("checkpoints/latest").exists();
        if logged >= 4 && (has_ckpt || !ckpt) {
            return child;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the run did not start: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigterm_stops_every_rank_at_one_step_with_one_checkpoint() {
    let (dir, cfg) = setup("ddp-sigterm");
    let run = dir.join("run");
    let child = start_long_run(&dir, &cfg, &run, false);
    // SAFETY: plain system call on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let start = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(start.elapsed() < Duration::from_secs(60));
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ckpts: Vec<_> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("ckpt-"))
        .collect();
    assert_eq!(ckpts.len(), 1, "one checkpoint");
    let step = step_of(&latest(&run));
    let logged = std::fs::read_to_string(run.join("stats.jsonl"))
        .unwrap()
        .lines()
        .count() as u64;
    assert_eq!(step, logged, "the checkpoint is of the last logged step");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_killed_rank_ends_the_other_with_an_error_naming_it() {
    let (dir, cfg) = setup("ddp-kill");
    let run = dir.join("run");
    let child = start_long_run(&dir, &cfg, &run, true);
    let victim = worker(child.id(), 1).expect("rank 1's process");
    // SAFETY: plain system call on a process this test started.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let start = Instant::now();
    let out = child.wait_with_output().unwrap();
    let waited = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("worker rank 1 failed with killed by signal 9 (SIGKILL)"),
        "{stderr}"
    );
    assert!(stderr.contains("lost peer rank 1"), "{stderr}");
    assert!(waited < Duration::from_secs(20), "took {waited:?}");
    // The last checkpoint is intact: one process continues from it.
    let step = step_of(&latest(&run));
    let mut resume = ect();
    resume
        .args(["resume", "--quiet", "--iterations"])
        .arg((step + 2).to_string())
        .arg(&run);
    ok(&run_within(resume, LIMIT));
    assert_eq!(step_of(&latest(&run)), step + 2);
    std::fs::remove_dir_all(&dir).unwrap();
}
