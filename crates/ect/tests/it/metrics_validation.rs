//! Issue 15, `ect metrics`: statistics files whose `sigma` is not a covariance are refused naming the
//! file and the failed check (by `fd` and by `score --reference X.npz`), identical statistics are at a
//! distance of exactly 0, and float samples outside their declared `--range` are refused naming the file
//! and the range found (by `score`, `stats --samples` and `compare`).

use std::path::Path;
use std::process::Output;

use crate::common::{ect, last_json_line, tmp, write_idx};
use crate::npy_files::{header, npy, npy_f64, npz};
use ect_metrics::npy::{NpyArray, NpyData};
use ect_metrics::FeatureStats;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Fails with the tool's error status (1) and a one-line-per-cause message, not a panic.
fn assert_error(out: &Output) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("error: ") && !err.contains("panicked"),
        "{err}"
    );
    err
}

fn stats_file(path: &Path, mu: &[f64], sigma: &[f64]) {
    let d = mu.len() as u64;
    let bytes = npz(
        &[
            ("mu", npy_f64(&[d], mu)),
            ("sigma", npy_f64(&[d, d], sigma)),
        ],
        false,
    );
    std::fs::write(path, bytes).unwrap();
}

fn fd(a: &Path, b: &Path) -> Output {
    ect()
        .args(["metrics", "fd"])
        .arg(a)
        .arg(b)
        .output()
        .unwrap()
}

#[test]
fn fd_refuses_a_sigma_that_is_not_a_covariance_and_is_exactly_0_for_identical_statistics() {
    let dir = tmp("harden-fd");
    let good = dir.join("good.npz");
    stats_file(
        &good,
        &[0.0, 1.0, 2.0],
        &[2.0, 0.5, 0.0, 0.5, 1.0, 0.0, 0.0, 0.0, 1.0],
    );
    let neg = dir.join("neg.npz");
    stats_file(
        &neg,
        &[0.0; 3],
        &[-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, -1.0],
    );
    let err = assert_error(&fd(&good, &neg));
    assert!(
        err.contains("neg.npz:sigma is not a covariance matrix: not positive semi-definite")
            && err.contains("smallest eigenvalue -1.000e0"),
        "{err}"
    );
    let asym = dir.join("asym.npz");
    stats_file(
        &asym,
        &[0.0; 3],
        &[1.0, 0.5, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
    );
    let err = assert_error(&fd(&asym, &good));
    assert!(
        err.contains("asym.npz:sigma is not a covariance matrix: not symmetric")
            && err.contains("sigma[0,1] = 0.5 but sigma[1,0] = 0"),
        "{err}"
    );

    // Identical statistics of fewer samples than dimensions (the rank-deficient case whose terms
    // cancelled to -1.3e-7): exactly 0, from one file and from two.
    let features: Vec<f64> = (0..10 * 64)
        .map(|k| ((k * 7919) % 1000) as f64 / 250.0 - 2.0)
        .collect();
    let s = FeatureStats::from_features(&features, 64).unwrap();
    let (a, b) = (dir.join("a.npz"), dir.join("b.npz"));
    ect_metrics::save_stats_npz(&a, &s).unwrap();
    ect_metrics::save_stats_npz(&b, &s).unwrap();
    for (x, y) in [(&a, &a), (&a, &b)] {
        let out = fd(x, y);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "0\n");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `n` 28x28 grayscale images as a test split, and the dataset's folder.
fn idx_reference(dir: &Path, n: u32) -> Vec<u8> {
    let pixel = |i: u32, p: u32| ((p * 7 + i * 13) % 256) as u8;
    write_idx(dir, "train", (n, 28, 28), pixel, |i| (i % 10) as u8);
    write_idx(dir, "t10k", (n, 28, 28), pixel, |i| (i % 10) as u8)
}

#[test]
fn float_samples_outside_their_range_are_refused_and_declared_ranges_are_read() {
    let dir = tmp("harden-range");
    let reference = dir.join("ref");
    std::fs::create_dir_all(&reference).unwrap();
    idx_reference(&reference, 24);
    let net = crate::feature_net(&dir);
    // 16 samples: u8, the same as floats in 0-255 (refused), in [0, 1] and in [-1, 1].
    let n = 16;
    let px: Vec<u8> = (0..n * 784)
        .map(|k| ((k * 31 + k / 784 * 17) % 256) as u8)
        .collect();
    let save = |name: &str, data: NpyData| {
        let p = dir.join(name);
        NpyArray::new(vec![n, 1, 28, 28], data)
            .unwrap()
            .save(&p)
            .unwrap();
        p
    };
    let u8s = save("u8.npy", NpyData::U8(px.clone()));
    let f255 = save(
        "f255.npy",
        NpyData::F32(px.iter().map(|&p| f32::from(p)).collect()),
    );
    let unit = save(
        "unit.npy",
        NpyData::F32(px.iter().map(|&p| f32::from(p) / 255.0).collect()),
    );
    let sym = save(
        "sym.npy",
        NpyData::F64(px.iter().map(|&p| f64::from(p) / 127.5 - 1.0).collect()),
    );
    let score_against = |samples: &Path, reference: &Path, extra: &[&str]| {
        ect()
            .args(["metrics", "score", "--samples"])
            .arg(samples)
            .arg("--feature-net")
            .arg(&net)
            .arg("--reference")
            .arg(reference)
            .args(extra)
            .output()
            .unwrap()
    };
    let score = |samples: &Path, extra: &[&str]| score_against(samples, &reference, extra);
    let err = assert_error(&score(&f255, &[]));
    assert!(
        err.contains("f255.npy: float samples span [0, 255], outside the declared range [-1, 1]"),
        "{err}"
    );
    let err = assert_error(&score(&f255, &["--range", "0,1"]));
    assert!(
        err.contains("span [0, 255], outside the declared range [0, 1]"),
        "{err}"
    );
    let err = assert_error(&score(&unit, &["--range", "0,255"]));
    assert!(err.contains("0,255") && err.contains("uint8"), "{err}");

    // Declared correctly, the floats give the u8 file's pixels and therefore its exact score.
    let want = last_json_line(&score(&u8s, &[]));
    assert_eq!(want["n"], 16);
    for (file, extra) in [
        (&unit, &["--range", "0,1"][..]),
        (&sym, &["--range=-1,1"][..]),
        (&sym, &["--range", "-1,1"][..]),
        (&sym, &[][..]),
    ] {
        let got = last_json_line(&score(file, extra));
        assert_eq!(got["fd"], want["fd"], "{}", file.display());
        assert_eq!(got["class_entropy"], want["class_entropy"]);
    }

    // `stats --samples` and `compare` read samples the same way.
    let out = ect()
        .args(["metrics", "stats", "--feature-net"])
        .arg(&net)
        .arg("--samples")
        .arg(&f255)
        .arg("--out")
        .arg(dir.join("s.npz"))
        .output()
        .unwrap();
    assert!(assert_error(&out).contains("f255.npy: float samples span [0, 255]"));
    let out = ect()
        .args(["metrics", "compare", "--samples"])
        .arg(&u8s)
        .arg("--reference")
        .arg(&f255)
        .arg("--feature-net")
        .arg(&net)
        .output()
        .unwrap();
    assert!(assert_error(&out).contains("f255.npy: float samples span [0, 255]"));

    // A reference .npz whose sigma is not a covariance is refused by score as by fd.
    let bad = dir.join("bad.npz");
    let mut sigma = vec![0.0; 128 * 128];
    sigma[0] = -2.0;
    stats_file(&bad, &[0.0; 128], &sigma);
    let err = assert_error(&score_against(&u8s, &bad, &[]));
    assert!(
        err.contains("bad.npz:sigma is not a covariance matrix"),
        "{err}"
    );
    // The header writer the fuzz test uses agrees with NumPy's layout (a u8 file read back).
    let raw = npy(
        header("|u1", false, &[2, 1, 28, 28]).as_bytes(),
        1,
        &px[..2 * 784],
    );
    std::fs::write(dir.join("raw.npy"), raw).unwrap();
    let got = last_json_line(&score(&dir.join("raw.npy"), &[]));
    assert_eq!(got["n"], 2);
    std::fs::remove_dir_all(&dir).unwrap();
}
