//! Issue 15, `ect train` on a dataset read image by image: a corrupt image is an error when the dataset
//! is opened, naming the file, before any training step (it used to surface when the shuffle first drew
//! it); the check's record goes to the data cache (`$ECT_DATA_CACHE/validated`), not into the dataset.

use std::path::Path;
use std::process::Output;

use crate::common::{ect, tmp, TINY_TRAIN_CONFIG};
use crate::data_convert::png_folder;

fn train(dir: &Path, data: &Path, run: &str, iterations: u32) -> Output {
    ect()
        .env("ECT_DATA_CACHE", dir.join("cache"))
        .args(["train", "--quiet", "--config"])
        .arg(dir.join("tiny.toml"))
        .arg("--set")
        .arg(format!("data.path=\"{}\"", data.display()))
        .arg("--set")
        .arg(format!("output.run_dir=\"{}\"", dir.join(run).display()))
        .arg("--set")
        .arg(format!("iterations={iterations}"))
        .args(["--set", "data.format=\"edm\""])
        .output()
        .unwrap()
}

#[test]
fn train_finds_a_corrupt_image_when_it_opens_the_dataset() {
    let dir = tmp("harden-train-corrupt");
    std::fs::write(dir.join("tiny.toml"), TINY_TRAIN_CONFIG).unwrap();
    let data = dir.join("pngs");
    let files = png_folder(&data, 48);
    let good = std::fs::read(&files[40]).unwrap();
    std::fs::write(&files[40], &good[..good.len() / 2]).unwrap();

    let out = train(&dir, &data, "run", 12);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("00000/img00000040.png") && err.contains("cannot decode"),
        "{err}"
    );
    // No step was trained: no log line, no checkpoint.
    let stats = std::fs::read_to_string(dir.join("run/stats.jsonl")).unwrap_or_default();
    assert_eq!(stats.lines().count(), 0, "{stats}");

    // Repaired, the dataset trains, and the check's record is in the data cache.
    std::fs::write(&files[40], &good).unwrap();
    let out = train(&dir, &data, "run2", 2);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = std::fs::read_dir(dir.join("cache/validated"))
        .unwrap()
        .count();
    assert_eq!(records, 1);
    assert!(!data.join("validated").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
