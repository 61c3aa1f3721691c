//! `ect metrics`: FD of statistics files (equal to the library's value), statistics of a samples file
//! (equal to the mean and covariance of the features computed here), scoring a samples file against a
//! dataset with the built-in feature net, training the feature net on a tiny IDX set, and clear errors for
//! bad input.

use ect_metrics::extract::featnet::FeatureNet;
use ect_metrics::npy::{NpyArray, NpyData};
use ect_metrics::{FeatureExtractor, FeatureStats, ImageBatch};
use std::path::Path;

use crate::common;

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

#[test]
fn stats_of_a_samples_file_are_the_features_mean_and_covariance() {
    let dir = tmp("stats");
    tch::manual_seed(7);
    let net_path = dir.join("featnet.safetensors");
    FeatureNet::new(tch::Device::Cpu).save(&net_path).unwrap();
    let net = FeatureNet::load(&net_path, tch::Device::Cpu).unwrap();
    // 12 grayscale 28x28 images stored N,H,W,C.
    let n = 12;
    let pixels: Vec<u8> = (0..n * 784)
        .map(|i| ((i * 37 + i / 784 * 11) % 256) as u8)
        .collect();
    let samples = dir.join("samples.npy");
    NpyArray::new(vec![n, 28, 28, 1], NpyData::U8(pixels.clone()))
        .unwrap()
        .save(&samples)
        .unwrap();
    let out_path = dir.join("stats.npz");
    let run = |layout: &str| {
        ect()
            .args(["metrics", "stats", "--feature-net"])
            .arg(&net_path)
            .arg("--samples")
            .arg(&samples)
            .args(["--layout", layout, "--batch", "5", "--out"])
            .arg(&out_path)
            .output()
            .unwrap()
    };
    let printed = last_json_line(&run("nhwc"));
    assert_eq!(printed["num_samples"], 12);
    assert_eq!(printed["dim"], 128);
    assert_eq!(printed["extractor"], "fmnist-cnn");

    // The features, computed here in one batch (NHWC with one channel has the NCHW byte order).
    let f = net
        .extract(&ImageBatch::new(&pixels, n, 1, 28, 28).unwrap())
        .unwrap();
    let d = f.dim;
    let mean: Vec<f64> = (0..d)
        .map(|j| {
            (0..n)
                .map(|i| f64::from(f.features[i * d + j]))
                .sum::<f64>()
                / n as f64
        })
        .collect();
    let cov = |a: usize, b: usize| {
        (0..n)
            .map(|i| {
                (f64::from(f.features[i * d + a]) - mean[a])
                    * (f64::from(f.features[i * d + b]) - mean[b])
            })
            .sum::<f64>()
            / (n - 1) as f64
    };
    let stats = ect_metrics::load_stats_npz(&out_path).unwrap();
    assert_eq!(stats.num_samples(), Some(12));
    let scale = mean.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-3);
    for (j, (&got, &want)) in stats.mu().iter().zip(&mean).enumerate() {
        assert!(
            (got - want).abs() <= 1e-5 * scale,
            "mu[{j}] {got} vs {want}"
        );
    }
    for (a, b) in [(0, 0), (3, 7), (127, 127), (64, 1)] {
        let (got, want) = (stats.sigma()[a * d + b], cov(a, b));
        assert!(
            (got - want).abs() <= 1e-5 * scale * scale,
            "sigma[{a},{b}] {got} vs {want}"
        );
    }
    assert!(
        mean.iter().any(|&m| m.abs() > 1e-6),
        "features are all zero"
    );

    // Forcing the wrong layout reads 28 channels: an error naming the file, not a panic.
    let out = run("nchw");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("samples.npy") && err.contains("28 channels") && !err.contains("panicked"),
        "{err}"
    );
    let out = run("sideways");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("sideways"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn train_feature_net_on_a_tiny_idx_set() {
    let dir = tmp("train-featnet");
    // Two classes that differ in brightness: 40 training and 40 test images.
    let pixel = |i: u32, p: u32| {
        if i % 2 == 0 {
            (p % 40) as u8
        } else {
            200 + (p % 50) as u8
        }
    };
    write_idx(&dir, "train", (40, 28, 28), pixel, |i| (i % 2) as u8);
    write_idx(&dir, "t10k", (40, 28, 28), pixel, |i| (i % 2) as u8);
    let net = dir.join("out/net.safetensors");
    let printed = last_json_line(
        &ect()
            .args(["metrics", "train-feature-net", "--data"])
            .arg(&dir)
            .arg("--out")
            .arg(&net)
            .args(["--epochs", "3", "--seed", "1"])
            .output()
            .unwrap(),
    );
    // 40 images in batches of 128: one step per epoch.
    assert_eq!(printed["steps"], 3);
    let acc = printed["test_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc), "{printed}");
    assert!(
        ((acc * 40.0).round() - acc * 40.0).abs() < 1e-9,
        "{printed}"
    );
    let loaded = FeatureNet::load(&net, tch::Device::Cpu).unwrap();
    assert_eq!(loaded.feature_dim(), 128);

    let out = ect()
        .args(["metrics", "train-feature-net", "--data"])
        .arg(dir.join("nowhere"))
        .arg("--out")
        .arg(dir.join("x.safetensors"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nowhere"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn compare_prints_fd_kid_precision_recall_and_is_equal_to_the_library() {
    let dir = tmp("compare");
    let pixels = write_idx_test_split(&dir);
    tch::manual_seed(3);
    let net_path = dir.join("featnet.safetensors");
    FeatureNet::new(tch::Device::Cpu).save(&net_path).unwrap();
    let net = FeatureNet::load(&net_path, tch::Device::Cpu).unwrap();
    // Samples: the first 30 test images, brightened, as NCHW u8.
    let samples_px: Vec<u8> = pixels[..30 * 784]
        .iter()
        .map(|&p| p.saturating_add(40))
        .collect();
    let samples = dir.join("samples.npy");
    NpyArray::new(vec![30, 1, 28, 28], NpyData::U8(samples_px.clone()))
        .unwrap()
        .save(&samples)
        .unwrap();
    let compare = |samples: &Path, reference: &Path| {
        let mut cmd = ect();
        cmd.args(["metrics", "compare", "--samples"])
            .arg(samples)
            .arg("--reference")
            .arg(reference)
            .arg("--feature-net")
            .arg(&net_path)
            .args([
                "--kid-subsets",
                "10",
                "--kid-subset-size",
                "20",
                "--seed",
                "3",
            ]);
        last_json_line(&cmd.output().unwrap())
    };
    let got = compare(&samples, &dir);
    assert_eq!(got["n"], 30);
    assert_eq!(got["n_reference"], 40);
    assert_eq!(got["k"], 3);
    assert_eq!(got["kid_subset_size"], 20);

    // The same metrics from features computed here (one batch each, as the CLI's default batch of 250).
    let features = |px: &[u8], n: usize| {
        net.extract(&ImageBatch::new(px, n, 1, 28, 28).unwrap())
            .unwrap()
    };
    let (fake, real) = (features(&samples_px, 30), features(&pixels, 40));
    let d = fake.dim;
    let fd = ect_metrics::frechet_distance(
        &FeatureStats::from_features(&fake.features, d).unwrap(),
        &FeatureStats::from_features(&real.features, d).unwrap(),
    )
    .unwrap();
    let cfg = ect_metrics::KidConfig {
        num_subsets: 10,
        max_subset_size: 20,
        seed: 3,
    };
    let kid =
        ect_metrics::kernel_inception_distance(&real.features, &fake.features, d, &cfg).unwrap();
    let pr = ect_metrics::precision_recall(&real.features, &fake.features, d, 3).unwrap();
    let is = ect_metrics::inception_score(fake.logits.as_ref().unwrap(), fake.classes, 10).unwrap();
    let close = |key: &str, want: f64| {
        let v = got[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} in {got}"));
        assert!(
            (v - want).abs() <= 1e-9 * want.abs().max(1e-3),
            "{key}: {v} vs {want}"
        );
    };
    close("fd", fd);
    close("kid", kid.mean);
    close("kid_std", kid.std);
    close("precision", pr.precision);
    close("recall", pr.recall);
    close("inception_score", is.mean);
    close("inception_score_std", is.std);
    assert!(fd > 1e-3, "brightened samples are at a distance: {got}");

    // Samples against themselves (the reference as a samples .npy): FD 0, precision and recall 1.
    let same = dir.join("same.npy");
    NpyArray::new(vec![40, 28, 28], NpyData::U8(pixels))
        .unwrap()
        .save(&same)
        .unwrap();
    let self_cmp = compare(&same, &dir);
    assert!(self_cmp["fd"].as_f64().unwrap().abs() < 1e-6, "{self_cmp}");
    assert_eq!(self_cmp["precision"], 1.0);
    assert_eq!(self_cmp["recall"], 1.0);

    let out = ect()
        .args(["metrics", "compare", "--samples"])
        .arg(&samples)
        .arg("--reference")
        .arg(dir.join("absent.npy"))
        .arg("--feature-net")
        .arg(&net_path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("absent.npy"));
    std::fs::remove_dir_all(&dir).unwrap();
}
