//! A whole `cargo xtask scaling-sweep` on a tiny network: 4 budgets x 2 sizes, trained, sampled, scored
//! with the built-in Fashion-MNIST feature net, fitted and plotted. Ignored by default (it builds the
//! release `ect` and trains for a few minutes); run it with
//! `cargo xtask cargo test -p xtask --test sweep_tiny -- --ignored --nocapture`.
//! Needs Fashion-MNIST (Debian's `dataset-fashion-mnist`, the cache, or a download).

use std::path::PathBuf;
use std::process::Command;

#[test]
#[ignore = "builds the release ect binary and trains for minutes"]
fn tiny_sweep_writes_csv_fits_and_plot_and_resumes() {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let run_dir = tempfile::tempdir().unwrap();
    let sweep = || {
        let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .arg("scaling-sweep")
            .arg("--config")
            .arg(fixtures.join("sweep-tiny.toml"))
            .arg("--run-dir")
            .arg(run_dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        stderr
    };
    sweep();
    let root = run_dir.path();
    let csv = std::fs::read_to_string(root.join("sweep.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 8, "{csv}");
    for row in &rows {
        let budget: f64 = row[1].parse().unwrap();
        let images: f64 = row[3].parse().unwrap();
        let flops: f64 = row[4].parse().unwrap();
        assert_eq!(images, budget * 16.0, "{row:?}");
        assert!(flops > 0.0);
        for fd in [row[6], row[7]] {
            let fd: f64 = fd.parse().unwrap();
            assert!(fd.is_finite() && fd > 0.0, "{row:?}");
        }
        // Each point keeps its samples for other evaluators: 300 images of 28x28, u8, plus the header.
        let npy = root
            .join(row[0])
            .join(format!("b{}", row[1]))
            .join("samples_2step.npy");
        assert!(std::fs::metadata(&npy).unwrap().len() > 300 * 784);
    }
    // Compute grows with the budget within a size, and the bigger network costs more per image.
    let flops = |size: &str, budget: &str| -> f64 {
        rows.iter()
            .find(|r| r[0] == size && r[1] == budget)
            .unwrap()[4]
            .parse()
            .unwrap()
    };
    assert_eq!(flops("c8", "40"), 8.0 * flops("c8", "5"));
    assert!(flops("c8", "5") > 2.0 * flops("c4", "5"));
    let fits: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("fits.json")).unwrap()).unwrap();
    let fits = fits.as_array().unwrap();
    assert_eq!(fits.len(), 4, "{fits:?}");
    for f in fits {
        let r2 = f["r2"].as_f64().unwrap();
        assert!(
            (0.0..=1.0).contains(&r2) && f["b"].as_f64().unwrap().is_finite(),
            "{f}"
        );
        assert_eq!(f["points"], 4);
    }
    assert!(std::fs::read_to_string(root.join("sweep.md"))
        .unwrap()
        .contains("R^2"));
    assert_eq!(
        &std::fs::read(root.join("sweep.png")).unwrap()[1..4],
        b"PNG"
    );
    // A second run finds every point done and only rewrites the results.
    let again = sweep();
    assert_eq!(again.matches("is done; skipping").count(), 8, "{again}");
}
