//! The training and sampling commands end to end through the binary: `ect train` (with an experiment
//! table that it ignores), `ect resume --iterations`, `ect sample` to `.npy` and `.png`, and `ect parity`.

use std::path::Path;

use crate::common;

use common::{ect, last_json_line, tmp, write_idx, TINY_TRAIN_CONFIG as CONFIG};

#[test]
fn train_resume_and_sample_through_the_binary() {
    let dir = tmp("train");
    write_idx(
        &dir,
        "train",
        (32, 8, 8),
        |i, p| ((p * 37 + i * 11) % 256) as u8,
        |i| (i % 2) as u8,
    );
    let cfg = dir.join("tiny.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let run = dir.join("run");
    let summary = dir.join("summary.json");
    let out = ect()
        .args(["train", "--quiet", "--config"])
        .arg(&cfg)
        .arg("--set")
        .arg(format!("data.path=\"{}\"", dir.display()))
        .arg("--set")
        .arg(format!("output.run_dir=\"{}\"", run.display()))
        .arg("--summary")
        .arg(&summary)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(s["steps"], 4);
    assert_eq!(s["images_seen"], 32);
    assert_eq!(s["interrupted"], false);
    assert_eq!(last_json_line(&out), s, "stdout's last line is the summary");

    // Training again into the same directory is refused; resuming extends it.
    let again = ect()
        .args(["train", "--quiet", "--config"])
        .arg(&cfg)
        .arg("--set")
        .arg(format!("data.path=\"{}\"", dir.display()))
        .arg("--set")
        .arg(format!("output.run_dir=\"{}\"", run.display()))
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("resume"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let out = ect()
        .args(["resume", "--quiet"])
        .arg(&run)
        .args(["--iterations", "6"])
        .output()
        .unwrap();
    let s = last_json_line(&out);
    assert_eq!(s["steps"], 6);
    assert_eq!(s["images_seen"], 48);

    let npy = dir.join("s.npy");
    let out = ect()
        .args(["sample", "--from"])
        .arg(&run)
        .args(["--steps", "2", "--n", "5", "--out"])
        .arg(&npy)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&npy).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let header = String::from_utf8_lossy(&bytes[10..80]);
    assert!(
        header.contains("'descr': '|u1'") && header.contains("(5, 1, 8, 8)"),
        "{header}"
    );
    let png = dir.join("s.png");
    let out = ect()
        .args(["sample", "--from"])
        .arg(&run)
        .args(["--grid", "80,1,0", "--n", "4", "--out"])
        .arg(&png)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(&std::fs::read(&png).unwrap()[1..4], b"PNG");

    let out = ect()
        .args(["sample", "--from"])
        .arg(&run)
        .args(["--n", "4", "--out"])
        .arg(&png)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("choose a sampler"));
    let out = ect()
        .args(["sample", "--from"])
        .arg(&run)
        .args(["--grid", "80,1,2", "--out"])
        .arg(&png)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a grid that does not decrease to 0 is refused"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_config_names_the_field() {
    let dir = tmp("badcfg");
    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, "batch_size = 0\n").unwrap();
    let out = ect()
        .args(["train", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("batch_size"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn parity_passes_on_a_reference_fixture_and_fails_below_its_error() {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../ect-unet/tests/fixtures/unet-ddpmpp-tiny");
    let out = ect()
        .arg("parity")
        .arg("--fixture")
        .arg(&fixture)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let err_of = |key: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(key)).unwrap();
        line.split_whitespace().last().unwrap().parse().unwrap()
    };
    assert!(
        err_of("out_eval") < 1e-4 && err_of("out_train") < 1e-4,
        "{text}"
    );
    let out = ect()
        .arg("parity")
        .arg("--fixture")
        .arg(&fixture)
        .args(["--tol", "1e-12"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("above the tolerance"));
}
