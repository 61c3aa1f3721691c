//! Helpers shared by the CLI tests: the binary under test, scratch folders, small IDX datasets.

#![allow(dead_code)] // each test file uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `ect` binary, run without `LD_LIBRARY_PATH` (the rpath must suffice) and without backtraces.
pub fn ect() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ect"));
    cmd.env_remove("LD_LIBRARY_PATH")
        .env_remove("RUST_BACKTRACE");
    cmd
}

/// A test's scratch folder, removed when the test ends; kept when it fails (the test panics), for a
/// look at what the failing command left.
pub struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for Scratch {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A fresh scratch folder for one test. The tests of one binary run in one process at once, so every
/// test needs its own `name`.
pub fn tmp(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("ect-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

/// Writes `<prefix>-images-idx3-ubyte` and `<prefix>-labels-idx1-ubyte` (`prefix` is `train` or `t10k`)
/// with `n` images of `h x w` and returns the pixels.
pub fn write_idx(
    dir: &Path,
    prefix: &str,
    (n, h, w): (u32, u32, u32),
    pixel: impl Fn(u32, u32) -> u8,
    label: impl Fn(u32) -> u8,
) -> Vec<u8> {
    let mut images = vec![0, 0, 8, 3];
    for d in [n, h, w] {
        images.extend_from_slice(&d.to_be_bytes());
    }
    let pixels: Vec<u8> = (0..n)
        .flat_map(|i| (0..h * w).map(move |p| (i, p)))
        .map(|(i, p)| pixel(i, p))
        .collect();
    images.extend_from_slice(&pixels);
    let mut labels = vec![0, 0, 8, 1];
    labels.extend_from_slice(&n.to_be_bytes());
    labels.extend((0..n).map(label));
    std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), images).unwrap();
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), labels).unwrap();
    pixels
}

/// Asserts success and parses the last line of standard output as JSON.
pub fn last_json_line(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().expect("some output")).expect("JSON on the last line")
}

/// A tiny ECT run on CPU (an 8x8 grayscale SongUNet, 4 iterations of batch 8, a checkpoint every 2,
/// stats every step) with an `[experiment]` table that `ect train` ignores; give `data.path` (IDX by
/// default) and `output.run_dir` with `--set`.
pub const TINY_TRAIN_CONFIG: &str = r#"
seed = 1
device = "cpu"
iterations = 4
batch_size = 8
[data]
format = "idx"
[network]
network = "ECMPrecond"
img_resolution = 8
img_channels = 1
model_type = "SongUNet"
model_channels = 8
channel_mult = [1]
channel_mult_emb = 2
num_blocks = 1
attn_resolutions = []
dropout = 0.1
[schedule]
q = 2.0
iters_per_stage = 2
[sampling]
grid_images = 4
[output]
checkpoint_every = 2
sample_every = 0
log_every = 1
keep_last = 2
[experiment]
name = "ignored by ect train"
"#;

/// A scratch folder `name` holding an `n`-image 8x8 two-class IDX training set and `config` written to
/// `file`; returns (folder, config path). Runs give the folder as `data.path`.
pub fn idx_run_setup(name: &str, n: u32, file: &str, config: &str) -> (Scratch, PathBuf) {
    let dir = tmp(name);
    write_idx(
        &dir,
        "train",
        (n, 8, 8),
        |i, p| ((p * 37 + i * 11) % 256) as u8,
        |i| (i % 2) as u8,
    );
    let cfg = dir.join(file);
    std::fs::write(&cfg, config).unwrap();
    (dir, cfg)
}

/// `ect train --quiet --config cfg` on the dataset in `dir`, into `run`.
pub fn train_command(dir: &Path, cfg: &Path, run: &Path) -> Command {
    let mut cmd = ect();
    cmd.args(["train", "--quiet", "--config"])
        .arg(cfg)
        .arg("--set")
        .arg(format!("data.path=\"{}\"", dir.display()))
        .arg("--set")
        .arg(format!("output.run_dir=\"{}\"", run.display()));
    cmd
}

/// Runs `cmd` with its output captured, killing it after `limit`: a hang fails the test instead of
/// blocking it.
pub fn run_within(mut cmd: Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_within(child, limit)
}

/// Waits for `child` (its output piped), killing it after `limit` and failing with its stderr. The
/// output is read while waiting, so a chatty child cannot block on a full pipe.
pub fn wait_within(child: Child, limit: Duration) -> Output {
    let pid = child.id();
    let start = Instant::now();
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    while !waiter.is_finished() {
        if start.elapsed() > limit {
            // SAFETY: a plain system call on our own child.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            let out = waiter.join().unwrap();
            panic!(
                "no answer within {limit:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    waiter.join().unwrap()
}
