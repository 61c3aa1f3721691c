//! IDX (MNIST-format) reading: layouts, gzip, errors, and the Fashion-MNIST files Debian installs.

use crate::common;

use std::path::Path;

use common::{bytes, gzip, idx_bytes, write};
use ect_data::{open, stats::dataset_stats, DataError, DatasetSpec, Format, Split};

fn mnist_folder(dir: &Path, n_train: u32, n_test: u32, zipped: bool) -> (Vec<u8>, Vec<u8>) {
    let train = bytes(n_train as usize * 28 * 28, 1);
    let labels: Vec<u8> = (0..n_train).map(|i| (i % 10) as u8).collect();
    let test = bytes(n_test as usize * 28 * 28, 2);
    let test_labels: Vec<u8> = (0..n_test).map(|i| (9 - i % 10) as u8).collect();
    let files = [
        (
            "train-images-idx3-ubyte",
            idx_bytes(&[n_train, 28, 28], &train),
        ),
        ("train-labels-idx1-ubyte", idx_bytes(&[n_train], &labels)),
        (
            "t10k-images-idx3-ubyte",
            idx_bytes(&[n_test, 28, 28], &test),
        ),
        ("t10k-labels-idx1-ubyte", idx_bytes(&[n_test], &test_labels)),
    ];
    for (name, data) in files {
        if zipped {
            write(&dir.join(format!("{name}.gz")), &gzip(&data));
        } else {
            write(&dir.join(name), &data);
        }
    }
    (train, test)
}

#[test]
fn folder_plain_and_gzipped_give_the_same_images() {
    let tmp = tempfile::tempdir().unwrap();
    for zipped in [false, true] {
        let dir = tmp.path().join(format!("z{zipped}"));
        let (train, test) = mnist_folder(&dir, 30, 20, zipped);
        let ds = open(&DatasetSpec::new(&dir)).unwrap();
        assert_eq!(
            (
                ds.len(),
                ds.channels(),
                ds.height(),
                ds.width(),
                ds.label_dim()
            ),
            (30, 1, 28, 28, 10)
        );
        assert_eq!(ds.image(7).unwrap(), &train[7 * 784..8 * 784]);
        assert_eq!(ds.label(13), Some(3));
        let spec = DatasetSpec {
            split: Split::Test,
            ..DatasetSpec::new(&dir)
        };
        let ds = open(&spec).unwrap();
        assert_eq!(ds.len(), 20);
        assert_eq!(ds.image(19).unwrap(), &test[19 * 784..]);
        assert_eq!(ds.label(0), Some(9));
        let st = dataset_stats(&*ds).unwrap();
        assert_eq!(st.label_counts, vec![2; 10]);
        let mean = test.iter().map(|&b| b as f64).sum::<f64>() / test.len() as f64;
        assert!((st.pixel_mean - mean).abs() < 1e-9);
    }
}

#[test]
fn an_images_file_finds_its_labels_and_emnist_names_work() {
    let tmp = tempfile::tempdir().unwrap();
    let px = bytes(5 * 4 * 3, 3);
    write(
        &tmp.path().join("emnist-letters-train-images-idx3-ubyte.gz"),
        &gzip(&idx_bytes(&[5, 4, 3], &px)),
    );
    write(
        &tmp.path().join("emnist-letters-train-labels-idx1-ubyte.gz"),
        &gzip(&idx_bytes(&[5], &[1, 26, 3, 4, 5])),
    );
    let ds = open(&DatasetSpec::new(
        tmp.path().join("emnist-letters-train-images-idx3-ubyte.gz"),
    ))
    .unwrap();
    assert_eq!(
        (ds.len(), ds.height(), ds.width(), ds.label_dim()),
        (5, 4, 3, 27)
    );
    assert_eq!(ds.image(4).unwrap(), &px[48..]);
    let ds = open(&DatasetSpec::new(tmp.path())).unwrap();
    assert_eq!(ds.label(1), Some(26));
}

fn expect_format_error(path: &Path, needle: &str) {
    let err = match open(&DatasetSpec {
        format: Format::Idx,
        ..DatasetSpec::new(path)
    }) {
        Ok(_) => panic!("{} opened", path.display()),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()) || msg.contains("idx"),
        "{msg}"
    );
    assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
}

#[test]
fn bad_idx_files_are_errors_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("wrong-magic-images-idx3-ubyte");
    write(&p, &[0x12, 0x34, 0x08, 0x03, 0, 0, 0, 0]);
    expect_format_error(&p, "wrong IDX magic");
    let p = tmp.path().join("float-images-idx3-ubyte");
    write(
        &p,
        &[
            0, 0, 0x0d, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0,
        ],
    );
    expect_format_error(&p, "not supported");
    let p = tmp.path().join("short-images-idx3-ubyte");
    write(&p, &idx_bytes(&[10, 28, 28], &bytes(100, 1)));
    expect_format_error(&p, "truncated");
    let p = tmp.path().join("header-images-idx3-ubyte");
    write(&p, &[0, 0, 8, 3, 0, 0]);
    expect_format_error(&p, "header truncated");
    let p = tmp.path().join("long-images-idx3-ubyte");
    write(&p, &idx_bytes(&[1, 2, 2], &[1, 2, 3, 4, 5]));
    expect_format_error(&p, "after the 4");
    let p = tmp.path().join("gz-images-idx3-ubyte.gz");
    let gz = gzip(&idx_bytes(&[4, 28, 28], &bytes(4 * 784, 1)));
    write(&p, &gz[..gz.len() / 2]);
    expect_format_error(&p, "gzip");
    let p = tmp.path().join("flat-images-idx3-ubyte");
    write(&p, &idx_bytes(&[6], &[1; 6]));
    expect_format_error(&p, "3 dimensions");
}

#[test]
fn label_count_mismatch_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        &tmp.path().join("train-images-idx3-ubyte"),
        &idx_bytes(&[3, 2, 2], &[0; 12]),
    );
    write(
        &tmp.path().join("train-labels-idx1-ubyte"),
        &idx_bytes(&[2], &[0, 1]),
    );
    match open(&DatasetSpec::new(tmp.path())) {
        Err(DataError::CountMismatch {
            path,
            images: 3,
            labels: 2,
        }) => {
            assert!(path.ends_with("train-labels-idx1-ubyte"))
        }
        other => panic!("{:?}", other.map(|d| d.len())),
    }
}

#[test]
fn missing_labels_and_unreadable_paths_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        &tmp.path().join("train-images-idx3-ubyte"),
        &idx_bytes(&[3, 2, 2], &[0; 12]),
    );
    let ds = open(&DatasetSpec::new(tmp.path())).unwrap();
    assert_eq!((ds.label_dim(), ds.label(0)), (0, None));
    let spec = DatasetSpec {
        require_labels: true,
        ..DatasetSpec::new(tmp.path())
    };
    let err = open(&spec).err().expect("labels are absent");
    assert!(matches!(err, DataError::NoLabels { .. }), "{err}");
    assert!(err.to_string().contains("labels were requested"));
    let missing = tmp.path().join("nope");
    let err = open(&DatasetSpec::new(&missing))
        .err()
        .expect("missing path");
    assert!(err.to_string().contains("nope"), "{err}");
    let err = open(&DatasetSpec {
        format: Format::Idx,
        ..DatasetSpec::new(&missing)
    })
    .err()
    .unwrap();
    assert!(matches!(err, DataError::Io { .. }), "{err}");
}

/// Debian's `dataset-fashion-mnist` package. Golden values measured by this crate and cross-checked with
/// Python's hashlib over the IDX payload (`gzip.open(f).read()[16:]`).
#[test]
fn fashion_mnist_from_debian_has_the_published_statistics() {
    let Some(dir) = ect_data::fmnist::locate(None) else {
        println!(
            "note: Fashion-MNIST not found ({} absent); test skipped",
            ect_data::fmnist::DEBIAN_DIR
        );
        return;
    };
    let train = open(&DatasetSpec::new(&dir)).unwrap();
    let st = dataset_stats(&*train).unwrap();
    assert_eq!(
        (st.count, st.channels, st.height, st.width),
        (60000, 1, 28, 28)
    );
    assert_eq!(st.label_counts, vec![6000; 10]);
    assert_eq!(
        st.pixel_sha256,
        "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012"
    );
    assert!(
        (st.pixel_mean - 72.94035223214286).abs() < 1e-9,
        "{}",
        st.pixel_mean
    );
    let test = open(&DatasetSpec {
        split: Split::Test,
        ..DatasetSpec::new(&dir)
    })
    .unwrap();
    let st = dataset_stats(&*test).unwrap();
    assert_eq!(
        (st.count, st.channels, st.height, st.width),
        (10000, 1, 28, 28)
    );
    assert_eq!(st.label_counts, vec![1000; 10]);
    assert_eq!(
        st.pixel_sha256,
        "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a"
    );
    assert!(
        (st.pixel_mean - 73.14656658163265).abs() < 1e-9,
        "{}",
        st.pixel_mean
    );
}

/// Debian's recompressed Fashion-MNIST passes the check on the uncompressed bytes; other files, or a
/// missing one, fail naming the file.
#[test]
fn fashion_mnist_files_are_verified_by_their_uncompressed_hashes() {
    use ect_data::fmnist::{verify, DEBIAN_DIR};
    let debian = Path::new(DEBIAN_DIR);
    if debian.join("train-images-idx3-ubyte.gz").exists() {
        verify(debian).unwrap();
    } else {
        eprintln!("skipped the Debian half: {DEBIAN_DIR} is absent");
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(
        &d.join("train-images-idx3-ubyte.gz"),
        &gzip(&idx_bytes(&[1, 28, 28], &[0; 784])),
    );
    match verify(d) {
        Err(DataError::Checksum {
            path,
            algorithm,
            expected,
            ..
        }) => {
            assert!(path.ends_with("train-images-idx3-ubyte.gz"));
            assert_eq!(algorithm, "sha256 (uncompressed)");
            assert!(expected.starts_with("c59f468a"));
        }
        other => panic!("{other:?}"),
    }
    write(
        &d.join("train-images-idx3-ubyte"),
        &idx_bytes(&[1, 28, 28], &[0; 784]),
    );
    std::fs::remove_file(d.join("train-images-idx3-ubyte.gz")).unwrap();
    assert!(verify(d).is_err());
    let e = verify(tmp.path().join("absent").as_path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("absent/train-images-idx3-ubyte"), "{e}");
}
