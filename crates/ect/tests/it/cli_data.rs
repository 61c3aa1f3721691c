//! `ect data stats`: one JSON object per dataset; bad input gets a one-line error naming the file.

use crate::common;

use common::{ect, last_json_line, tmp, write_idx};

const FMNIST: &str = "/usr/share/datasets/fashion-mnist";

/// Golden values measured on Debian's `dataset-fashion-mnist` test split (10,000 images).
#[test]
fn stats_of_debian_fashion_mnist_test_split() {
    if !std::path::Path::new(FMNIST)
        .join("t10k-images-idx3-ubyte.gz")
        .exists()
    {
        eprintln!("skipped: {FMNIST} is absent (apt-get install dataset-fashion-mnist)");
        return;
    }
    let out = ect()
        .args(["data", "stats", "--dataset", FMNIST, "--split", "test"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["count"], 10000);
    assert_eq!(
        (
            v["channels"].as_u64(),
            v["height"].as_u64(),
            v["width"].as_u64()
        ),
        (Some(1), Some(28), Some(28))
    );
    assert_eq!(v["label_counts"], serde_json::Value::from(vec![1000; 10]));
    assert_eq!(
        v["pixel_sha256"],
        "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a"
    );
    assert!((v["pixel_mean"].as_f64().unwrap() - 73.14656658163265).abs() < 1e-9);
}

#[test]
fn corrupt_idx_file_is_a_clear_error() {
    let dir = tmp("corrupt");
    let file = dir.join("train-images-idx3-ubyte");
    // Right magic, 2 images of 28x28 announced, but only 10 bytes of pixels.
    let mut bytes = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28];
    bytes.extend_from_slice(&[7; 10]);
    std::fs::write(&file, &bytes).unwrap();
    let out = ect()
        .args(["data", "stats", "--dataset"])
        .arg(&file)
        .args(["--format", "idx"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        err.contains("train-images-idx3-ubyte"),
        "error does not name the file: {err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("Stack backtrace"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_path_is_a_clear_error() {
    let out = ect()
        .args(["data", "stats", "--dataset", "/nonexistent/data"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/data"), "{err}");
}

/// `ect data convert` to an EDM zip keeps every pixel and label: the zip's stats equal the source's.
#[test]
fn convert_to_edm_zip_preserves_pixels_and_labels() {
    let dir = tmp("convert");
    write_idx(
        &dir,
        "train",
        (12, 5, 7),
        |i, p| ((i * 35 + p) * 31 % 256) as u8,
        |i| (i % 3) as u8,
    );
    let stats = |path: &std::path::Path| {
        last_json_line(
            &ect()
                .args(["data", "stats", "--dataset"])
                .arg(path)
                .output()
                .unwrap(),
        )
    };
    let zip = dir.join("out.zip");
    let out = ect()
        .args(["data", "convert", "--dataset"])
        .arg(&dir)
        .arg("--dest")
        .arg(&zip)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (a, b) = (stats(&dir), stats(&zip));
    assert_eq!(a, b);
    assert_eq!(a["count"], 12);
    assert_eq!(a["label_counts"], serde_json::Value::from(vec![4, 4, 4]));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `ect data fetch fashion-mnist` takes Debian's verified copy instead of downloading (this machine has
/// no internet, so a download attempt would fail) and leaves the cache untouched.
#[test]
fn fetch_fashion_mnist_uses_the_debian_copy() {
    if !std::path::Path::new(FMNIST)
        .join("t10k-images-idx3-ubyte.gz")
        .exists()
    {
        eprintln!("skipped: {FMNIST} is absent (apt-get install dataset-fashion-mnist)");
        return;
    }
    let cache = tmp("fetch-cache");
    let out = ect()
        .args(["data", "fetch", "fashion-mnist", "--cache"])
        .arg(&cache)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), FMNIST);
    assert!(
        stderr.contains("Debian package's copy") && stderr.contains("nothing downloaded"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_dir(&cache).unwrap().count(),
        0,
        "nothing cached"
    );
    std::fs::remove_dir_all(&cache).unwrap();
}

/// An EDM archive has no splits: asking for the test split is an error naming the archive, the
/// default train split reads it.
#[test]
fn test_split_of_an_edm_archive_is_an_error() {
    let dir = tmp("edm-split");
    write_idx(
        &dir,
        "train",
        (2, 4, 4),
        |i, p| (i * 16 + p) as u8,
        |i| i as u8,
    );
    let zip = dir.join("d.zip");
    let out = ect()
        .args(["data", "convert", "--dataset"])
        .arg(&dir)
        .arg("--dest")
        .arg(&zip)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ect()
        .args(["data", "stats", "--split", "test", "--dataset"])
        .arg(&zip)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("d.zip") && stderr.contains("no train/test splits"),
        "{stderr}"
    );
    let out = ect()
        .args(["data", "stats", "--dataset"])
        .arg(&zip)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["count"], 2);
    std::fs::remove_dir_all(&dir).unwrap();
}
