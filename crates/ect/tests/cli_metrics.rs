//! `ect metrics`: FD of statistics files (equal to the library's value), scoring a samples file against
//! a dataset with the built-in feature net, and clear errors for bad input.

use ect_metrics::npy::{NpyArray, NpyData};
use ect_metrics::FeatureStats;
use std::path::Path;

mod common;

use common::{ect, last_json_line, tmp, write_idx};

#[test]
fn fd_of_two_npz_files_matches_the_library() {
    let dir = tmp("fd");
    let a = FeatureStats::new(vec![0.0, 1.0], vec![2.0, 0.5, 0.5, 1.0]).unwrap();
    let b = FeatureStats::new(vec![1.0, -1.0], vec![1.0, 0.0, 0.0, 3.0]).unwrap();
    let (pa, pb) = (dir.join("a.npz"), dir.join("b.npz"));
    ect_metrics::save_stats_npz(&pa, &a).unwrap();
    ect_metrics::save_stats_npz(&pb, &b).unwrap();
    let out = ect()
        .args(["metrics", "fd"])
        .arg(&pa)
        .arg(&pb)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let expected = ect_metrics::frechet_distance(&a, &b).unwrap();
    assert!(
        (printed - expected).abs() <= 1e-12 * expected.abs().max(1.0),
        "{printed} vs {expected}"
    );
    // |mu|^2 = 1 + 4 = 5; traces 3 and 4; the value must lie below 5 + 3 + 4.
    assert!(printed > 5.0 - 1e-9 && printed < 12.0, "{printed}");

    let out = ect()
        .args(["metrics", "fd"])
        .arg(&pa)
        .arg(dir.join("missing.npz"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.npz"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// 40 labelled 28x28 images as the IDX test split (and, so the folder is recognised, the train split).
fn write_idx_test_split(dir: &Path) -> Vec<u8> {
    let pixel = |i: u32, p: u32| ((p * 7 + i * 13) % 256) as u8;
    write_idx(dir, "train", (40, 28, 28), pixel, |i| (i % 10) as u8);
    write_idx(dir, "t10k", (40, 28, 28), pixel, |i| (i % 10) as u8)
}

#[test]
fn score_samples_against_a_dataset_with_the_feature_net() {
    let dir = tmp("score");
    let pixels = write_idx_test_split(&dir);
    let net = dir.join("featnet.safetensors");
    ect_metrics::extract::featnet::FeatureNet::new(tch::Device::Cpu)
        .save(&net)
        .unwrap();
    // The dataset's own images as "samples" (NHWC u8) give an FD of about 0.
    let mut nhwc = NpyArray::new(vec![40, 28, 28, 1], NpyData::U8(pixels)).unwrap();
    let same = dir.join("same.npy");
    nhwc.save(&same).unwrap();
    let score = |samples: &Path| {
        let mut cmd = ect();
        cmd.args(["metrics", "score", "--samples"]).arg(samples);
        last_json_line(
            &cmd.arg("--feature-net")
                .arg(&net)
                .arg("--reference")
                .arg(&dir)
                .output()
                .unwrap(),
        )
    };
    let s = score(&same);
    assert_eq!(s["n"], 40);
    assert_eq!(s["metric"], "fd_fmnist");
    assert!(s["fd"].as_f64().unwrap().abs() < 1e-6, "{s}");
    let h = s["class_entropy"].as_f64().unwrap();
    assert!((0.0..=10f64.ln() + 1e-12).contains(&h), "{s}");
    // Inverted images are far away.
    if let NpyData::U8(px) = &mut nhwc.data {
        px.iter_mut().for_each(|p| *p = 255 - *p);
    }
    let inverted = dir.join("inverted.npy");
    nhwc.save(&inverted).unwrap();
    assert!(score(&inverted)["fd"].as_f64().unwrap() > 1e-3);

    // Wrong sizes for the feature net: a clear error, not a panic.
    let small = dir.join("small.npy");
    NpyArray::new(vec![2, 1, 8, 8], NpyData::U8(vec![0; 128]))
        .unwrap()
        .save(&small)
        .unwrap();
    let out = ect()
        .args(["metrics", "score", "--samples"])
        .arg(&small)
        .arg("--feature-net")
        .arg(&net)
        .arg("--reference")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error:") && !err.contains("panicked"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
