//! Bad inputs and interruptions as a user meets them, one test per class (issue 15): no panic or abort,
//! no silent wrong result, nothing lost, one writer per run directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common;

use common::{ect, last_json_line, run_within, wait_within};

const CONFIG: &str = r#"
seed = 1
device = "cpu"
threads = 1
iterations = 6
batch_size = 8
[data]
format = "idx"
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
dropout = 0.1
[schedule]
iters_per_stage = 2
[sampling]
grid_images = 4
[output]
checkpoint_every = 2
sample_every = 0
log_every = 1
keep_last = 1
"#;

/// A scratch folder with a 32-image 8x8 IDX dataset and the config above.
fn setup(name: &str) -> (common::Scratch, PathBuf) {
    common::idx_run_setup(name, 32, "tiny.toml", CONFIG)
}

/// `ect train` of the tiny config into `run`, with extra `--set`s.
fn train(dir: &Path, cfg: &Path, run: &Path, sets: &[&str]) -> Command {
    let mut cmd = common::train_command(dir, cfg, run);
    for s in sets {
        cmd.arg("--set").arg(s);
    }
    cmd
}

/// A clean refusal: exit status 1 (not a panic's 101 or a signal) and stderr naming `needle`, without
/// a backtrace or libtorch's C++ frames.
fn refused(out: &Output, needle: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(needle), "expected `{needle}` in: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("frame #") && !err.contains("stack backtrace"),
        "{err}"
    );
    err
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn a_missing_gpu_is_an_error_before_anything_is_written() {
    let (dir, cfg) = setup("nogpu");
    let run = dir.join("run");
    let out = run_within(train(&dir, &cfg, &run, &["device=\"cuda\""]), secs(60));
    if out.status.success() {
        return; // this machine has a GPU
    }
    refused(&out, "no CUDA device");
    assert!(!run.join("config.json").exists(), "config.json was written");
    let weights = dir.join("w.safetensors");
    std::fs::write(&weights, b"unused").unwrap();
    let mut s = ect();
    s.args(["sample", "--device", "cuda", "--steps", "1", "--from"])
        .arg(&weights)
        .arg("--out")
        .arg(dir.join("x.npy"));
    refused(&run_within(s, secs(60)), "no CUDA device");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sizes_are_checked_against_what_is_possible() {
    let (dir, cfg) = setup("sizes");
    let run = dir.join("run");
    let cases: &[(&str, &str)] = &[
        ("sampling.grid_images=0", "sampling.grid_images"),
        ("batch_size=4000000000", "batch_size"),
        ("micro_batch=3", "micro_batch"),
        ("threads=4096", "at most 1024"),
        ("network.attn_resolutions=[3]", "attn_resolutions"),
        ("sampling.grids=[[80, 1, 2, 0]]", "sampling.grids[0]"),
    ];
    for (set, needle) in cases {
        let out = run_within(train(&dir, &cfg, &run, &[set]), secs(60));
        refused(&out, needle);
        assert!(!run.join("config.json").exists(), "{set} wrote config.json");
    }
    // More threads than this process may use are refused with the count (libtorch would spin).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let set = format!("threads={}", cores + 1);
    refused(
        &run_within(train(&dir, &cfg, &run, &[&set]), secs(60)),
        "exceeds",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A finished tiny run to sample from and resume.
fn finished_run(dir: &Path, cfg: &Path) -> PathBuf {
    let run = dir.join("run");
    let out = run_within(train(dir, cfg, &run, &[]), secs(300));
    last_json_line(&out);
    run
}

#[test]
fn sampling_refuses_impossible_requests_and_streams_its_output() {
    let (dir, cfg) = setup("sample");
    let run = finished_run(&dir, &cfg);
    let sample = |args: &[&str]| {
        let mut c = ect();
        c.args(["sample", "--from"]).arg(&run).args(args);
        run_within(c, secs(120))
    };
    refused(
        &sample(&["--heun", "0", "--out", "/tmp/x.npy"]),
        "at least 2",
    );
    let huge = dir.join("huge.npy");
    let out = sample(&[
        "--steps",
        "1",
        "--n",
        "200000000",
        "--batch",
        "200000000",
        "--out",
        huge.to_str().unwrap(),
    ]);
    refused(&out, "lower --batch");
    // An output under a regular file cannot be created: refused before any image is drawn.
    let blocker = dir.join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let bad = blocker.join("out.npy");
    let started = Instant::now();
    refused(
        &sample(&[
            "--steps",
            "1",
            "--n",
            "100000",
            "--out",
            bad.to_str().unwrap(),
        ]),
        "out.npy",
    );
    assert!(started.elapsed() < secs(30), "sampled before failing");
    // A source that does not exist is named as such (not as a weights file without a config).
    let mut missing = ect();
    missing
        .args(["sample", "--steps", "1", "--out", "/tmp/x.npy", "--from"])
        .arg(dir.join("no-such-run"));
    refused(&run_within(missing, secs(60)), "no-such-run does not exist");
    // Streamed output: header first, images appended, same bytes as a whole write of the same draws.
    let npy = dir.join("s.npy");
    let out = sample(&[
        "--steps",
        "2",
        "--n",
        "9",
        "--batch",
        "4",
        "--out",
        npy.to_str().unwrap(),
    ]);
    let summary = last_json_line(&out);
    assert_eq!(summary["shape"], serde_json::json!([9, 1, 8, 8]));
    assert!(summary["images_per_second"].as_f64().unwrap() > 0.0);
    let bytes = std::fs::read(&npy).unwrap();
    assert_eq!(bytes.len(), 128 + 9 * 64);
    assert!(String::from_utf8_lossy(&bytes[..128]).contains("(9, 1, 8, 8)"));
    assert!(!dir.join(".s.npy.tmp").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Overwrites tensor `name` of a safetensors file with `values` of `shape` (float32).
fn rewrite_tensor(path: &Path, name: &str, shape: &[usize], values: &[f32]) {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.shape().to_vec(), v.data().to_vec()))
        .collect();
    let entry = owned.iter_mut().find(|(n, _, _)| n == name).unwrap();
    entry.1 = shape.to_vec();
    entry.2 = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = owned
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d)
                    .unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, &None, path).unwrap();
}

fn latest(run: &Path) -> PathBuf {
    let name = std::fs::read_to_string(run.join("checkpoints/latest")).unwrap();
    run.join("checkpoints").join(name.trim())
}

#[test]
fn corrupt_weights_are_named_not_used() {
    let (dir, cfg) = setup("weights");
    let run = finished_run(&dir, &cfg);
    let ckpt = latest(&run);
    // Non-finite weights: sampling from them would give blank images.
    let model = ckpt.join("model.safetensors");
    let nan = dir.join("nan.safetensors");
    std::fs::copy(&model, &nan).unwrap();
    let st_bytes = std::fs::read(&nan).unwrap();
    let st = safetensors::SafeTensors::deserialize(&st_bytes).unwrap();
    let (pname, view) = st
        .tensors()
        .into_iter()
        .find(|(n, _)| n.ends_with("conv0.weight"))
        .unwrap();
    let shape = view.shape().to_vec();
    let count: usize = shape.iter().product();
    drop(st);
    rewrite_tensor(&nan, &pname, &shape, &vec![f32::NAN; count]);
    let net_cfg = dir.join("net.json");
    let run_cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("config.json")).unwrap()).unwrap();
    std::fs::write(&net_cfg, run_cfg["network"].to_string()).unwrap();
    let mut s = ect();
    s.args(["sample", "--steps", "1", "--n", "2", "--from"])
        .arg(&nan)
        .arg("--network-config")
        .arg(&net_cfg)
        .arg("--out")
        .arg(dir.join("x.npy"));
    let err = refused(&run_within(s, secs(60)), "non-finite");
    assert!(err.contains(&pname), "{err}");
    // Training from them is refused too, before a step is taken.
    let init = format!(
        "init={{ kind = \"weights\", path = \"{}\" }}",
        nan.display()
    );
    let out = run_within(train(&dir, &cfg, &dir.join("run2"), &[&init]), secs(60));
    refused(&out, "non-finite");
    // A wrong-shape EMA tensor on resume: the tensor is named, libtorch's C++ frames are not shown.
    let ema = ckpt.join("ema.safetensors");
    rewrite_tensor(&ema, &pname, &[3], &[0.0, 1.0, 2.0]);
    let mut r = ect();
    r.args(["resume", "--quiet", "--iterations", "8"]).arg(&run);
    let err = refused(&run_within(r, secs(60)), &pname);
    assert!(err.contains("shape"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resume_refuses_what_would_break_exactness() {
    let (dir, cfg) = setup("resume");
    let run = finished_run(&dir, &cfg);
    let resume = |extra: &[&str]| {
        let mut r = ect();
        r.args(["resume", "--quiet"]).arg(&run).args(extra);
        run_within(r, secs(120))
    };
    refused(&resume(&["--iterations", "3"]), "below the 6 steps");
    let before = std::fs::read(run.join("config.json")).unwrap();
    assert_eq!(before, std::fs::read(run.join("config.json")).unwrap());
    // An edited learning rate is named and refused; the flag accepts it.
    let mut edited: serde_json::Value = serde_json::from_slice(&before).unwrap();
    edited["optimizer"]["lr"] = serde_json::json!(0.5);
    std::fs::write(run.join("config.json"), edited.to_string()).unwrap();
    refused(&resume(&["--iterations", "8"]), "optimizer.lr");
    let out = resume(&["--iterations", "8", "--allow-config-changes"]);
    assert_eq!(last_json_line(&out)["steps"], 8);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Starts a long tiny run and waits for its first logged step.
fn start_long_run(dir: &Path, cfg: &Path, run: &Path) -> Child {
    let child = train(
        dir,
        cfg,
        run,
        &["iterations=100000", "output.checkpoint_every=0"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let start = Instant::now();
    while !run.join("stats.jsonl").exists() {
        assert!(start.elapsed() < secs(120), "the run did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

#[test]
fn termination_signals_checkpoint_and_exit_with_status_3() {
    for (signal, name) in [
        (libc::SIGINT, "int"),
        (libc::SIGTERM, "term"),
        (libc::SIGHUP, "hup"),
    ] {
        let (dir, cfg) = setup(&format!("signal-{name}"));
        let run = dir.join("run");
        let child = start_long_run(&dir, &cfg, &run);
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(child.id() as i32, signal) };
        let out = wait_within(child, secs(120));
        assert_eq!(
            out.status.code(),
            Some(3),
            "SIG{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary: serde_json::Value =
            serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap())
                .unwrap();
        assert_eq!(summary["interrupted"], true);
        let steps = summary["steps"].as_u64().unwrap();
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(latest(&run).join("state.json")).unwrap())
                .unwrap();
        assert_eq!(state["step"].as_u64(), Some(steps), "SIG{name}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn a_second_writer_is_refused_naming_the_first() {
    let (dir, cfg) = setup("lock");
    let run = dir.join("run");
    let mut first = start_long_run(&dir, &cfg, &run);
    let mut r = ect();
    r.args(["resume", "--quiet"]).arg(&run);
    let err = refused(&run_within(r, secs(60)), "in use by PID");
    assert!(err.contains(&first.id().to_string()), "{err}");
    let _ = first.kill();
    let _ = first.wait();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Steps logged in `stats.jsonl`.
fn logged_steps(run: &Path) -> Vec<u64> {
    std::fs::read_to_string(run.join("stats.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

/// Every checkpoint write window a SIGKILL can hit, with `keep_last = 1`: the resumed run ends with the
/// uninterrupted run's weights, bit for bit, and its log holds each step once.
#[test]
fn a_kill_inside_a_checkpoint_write_loses_nothing() {
    let (dir, cfg) = setup("failpoints");
    let whole = finished_run(&dir, &cfg);
    let want = std::fs::read(latest(&whole).join("model.safetensors")).unwrap();
    for point in ["checkpoint-written", "checkpoint-renamed"] {
        let run = dir.join(point);
        let mut cmd = train(&dir, &cfg, &run, &[]);
        cmd.env("ECT_FAILPOINT", point);
        let out = run_within(cmd, secs(300));
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&out.status),
            Some(libc::SIGKILL),
            "{point}: the failpoint did not fire"
        );
        let mut r = ect();
        r.args(["resume", "--quiet"]).arg(&run);
        let out = run_within(r, secs(300));
        let summary = last_json_line(&out);
        assert_eq!(summary["steps"], 6, "{point}");
        assert_eq!(
            std::fs::read(latest(&run).join("model.safetensors")).unwrap(),
            want,
            "{point}: the resumed run differs from the uninterrupted one"
        );
        let steps = logged_steps(&run);
        assert_eq!(steps, (1..=6).collect::<Vec<_>>(), "{point}: {steps:?}");
    }
    // Resuming a finished run rewrites nothing: with the replacement window armed, it still ends well
    // and keeps its checkpoint.
    let mut r = ect();
    r.args(["resume", "--quiet"])
        .arg(&whole)
        .env("ECT_FAILPOINT", "checkpoint-replace");
    let out = run_within(r, secs(120));
    assert_eq!(last_json_line(&out)["steps"], 6);
    assert_eq!(
        std::fs::read(latest(&whole).join("model.safetensors")).unwrap(),
        want
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Random `ect sample` arguments (sizes at the extremes, odd grids, classes, devices) never crash the
/// tool: every invocation ends with success or a clean error within a time bound.
#[test]
fn random_sampling_arguments_never_crash() {
    use rand::{Rng, SeedableRng};
    let (dir, cfg) = setup("fuzz-sample");
    let run = finished_run(&dir, &cfg);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(15);
    let numbers = [
        "0",
        "1",
        "3",
        "-1",
        "18446744073709551615",
        "1e9",
        "nan",
        "x",
        "4294967296",
    ];
    let grids = [
        "80,0", "0", "80,0,0", "nan,0", "-1,0", "80,inf,0", "", "1e308,0",
    ];
    for case in 0..24 {
        let mut c = ect();
        c.args(["sample", "--from"]).arg(&run);
        let mut args: Vec<String> = Vec::new();
        match rng.gen_range(0..3) {
            0 => args.extend([
                "--steps".into(),
                numbers[rng.gen_range(0..numbers.len())].into(),
            ]),
            1 => args.extend(["--grid".into(), grids[rng.gen_range(0..grids.len())].into()]),
            _ => args.extend([
                "--heun".into(),
                numbers[rng.gen_range(0..numbers.len())].into(),
            ]),
        }
        for flag in ["--n", "--batch", "--class", "--seed"] {
            if rng.gen_bool(0.5) {
                args.extend([flag.into(), numbers[rng.gen_range(0..numbers.len())].into()]);
            }
        }
        args.extend([
            "--out".into(),
            dir.join(format!("f{case}.npy")).display().to_string(),
        ]);
        c.args(&args);
        let out = run_within(c, secs(120));
        let code = out.status.code();
        assert!(
            matches!(code, Some(0) | Some(1) | Some(2)),
            "case {case} {args:?}: status {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A valid but likely mistaken configuration runs, with one warning that names the fields to change;
/// the recipe's own combination says nothing.
#[test]
fn edm_from_scratch_with_radam_is_warned_about_once() {
    let (dir, cfg) = setup("edm-radam-warning");
    let run = dir.join("run");
    let out = run_within(
        train(
            &dir,
            &cfg,
            &run,
            &["objective.kind=\"edm\"", "iterations=2"],
        ),
        Duration::from_secs(120),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(
        err.matches("warning: objective.kind = \"edm\"").count(),
        1,
        "{err}"
    );
    assert!(err.contains("kind = \"adam\""), "{err}");
    let run = dir.join("run-adam");
    let out = run_within(
        train(
            &dir,
            &cfg,
            &run,
            &[
                "objective.kind=\"edm\"",
                "optimizer.kind=\"adam\"",
                "iterations=2",
            ],
        ),
        Duration::from_secs(120),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("warning:"), "{err}");
}
