//! CIFAR-10/100 in both official layouts (python pickles and binary records), as folders and as
//! `.tar.gz`, built here in the real directory layout; the same images stored as CIFAR python, CIFAR
//! binary and an EDM zip must give the same pixel hash.

use crate::common;

use std::path::Path;

use common::{cifar_images, cifar_pickle, cifar_records, tar_gz, write};
use ect_data::cifar::{parse_python_batch, IMAGE_BYTES};
use ect_data::stats::{dataset_stats, DatasetStats};
use ect_data::{edm, open, DataError, DatasetSpec, Format, Split};

fn stats(path: &Path, format: Format, split: Split) -> DatasetStats {
    let ds = open(&DatasetSpec {
        format,
        split,
        ..DatasetSpec::new(path)
    })
    .unwrap();
    dataset_stats(&*ds).unwrap()
}

/// CIFAR-10, 5 train batches of 4 images and a test batch of 3, in all four official forms.
fn cifar10(root: &Path) -> (Vec<u8>, Vec<u32>) {
    let mut all_px = Vec::new();
    let mut all_labels = Vec::new();
    for b in 1..=6u64 {
        let n = if b == 6 { 3 } else { 4 };
        let (px, labels) = cifar_images(n, b, 10);
        let name = if b == 6 {
            "test_batch".to_string()
        } else {
            format!("data_batch_{b}")
        };
        write(
            &root.join("py/cifar-10-batches-py").join(&name),
            &cifar_pickle(&px, &labels, "labels"),
        );
        write(
            &root
                .join("bin/cifar-10-batches-bin")
                .join(format!("{name}.bin")),
            &cifar_records(&px, &labels, false),
        );
        if b < 6 {
            all_px.extend(px);
            all_labels.extend(labels);
        }
    }
    write(&root.join("py/cifar-10-batches-py/batches.meta"), b"meta");
    write(
        &root.join("bin/cifar-10-batches-bin/batches.meta.txt"),
        b"airplane\n",
    );
    tar_gz(
        &root.join("py"),
        "cifar-10-batches-py",
        &root.join("cifar-10-python.tar.gz"),
    );
    tar_gz(
        &root.join("bin"),
        "cifar-10-batches-bin",
        &root.join("cifar-10-binary.tar.gz"),
    );
    (all_px, all_labels)
}

#[test]
fn python_fixture_written_by_pickle_with_py2_strings_parses() {
    // tools/make_cifar_pickle.py: numpy's own __reduce__ output, byte strings as Python 2 wrote them.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cifar10_py2_batch.pkl");
    let (px, labels) = parse_python_batch(&std::fs::read(&path).unwrap(), &path).unwrap();
    assert_eq!(labels, vec![6, 9, 9]);
    assert_eq!(px.len(), 3 * IMAGE_BYTES);
    assert!(px
        .iter()
        .enumerate()
        .all(|(i, &p)| p as usize == i * 7 % 251));
}

#[test]
fn cifar10_python_binary_folder_tar_and_edm_zip_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (px, labels) = cifar10(root);
    let reference = stats(&root.join("py"), Format::Auto, Split::Train);
    assert_eq!(
        (
            reference.count,
            reference.channels,
            reference.height,
            reference.width
        ),
        (20, 3, 32, 32)
    );
    let mut counts = vec![0u64; 10];
    labels.iter().for_each(|&l| counts[l as usize] += 1);
    assert_eq!(reference.label_counts, counts);
    let mean = px.iter().map(|&p| p as f64).sum::<f64>() / px.len() as f64;
    assert!((reference.pixel_mean - mean).abs() < 1e-9);
    for (path, format) in [
        (root.join("py/cifar-10-batches-py"), Format::CifarPython),
        (root.join("cifar-10-python.tar.gz"), Format::Auto),
        (root.join("bin"), Format::Auto),
        (root.join("bin/cifar-10-batches-bin"), Format::CifarBinary),
        (root.join("cifar-10-binary.tar.gz"), Format::Auto),
    ] {
        assert_eq!(
            stats(&path, format, Split::Train),
            reference,
            "{}",
            path.display()
        );
    }
    let test = stats(
        &root.join("cifar-10-python.tar.gz"),
        Format::Auto,
        Split::Test,
    );
    assert_eq!(test.count, 3);
    assert_eq!(
        test,
        stats(
            &root.join("cifar-10-binary.tar.gz"),
            Format::Auto,
            Split::Test
        )
    );
    // The same images through an EDM zip (PNG is lossless).
    let ds = open(&DatasetSpec::new(root.join("cifar-10-python.tar.gz"))).unwrap();
    let zip = edm::write_zip(&*ds, &root.join("cifar10-32x32.zip")).unwrap();
    assert_eq!(stats(&zip, Format::Auto, Split::Train), reference);
    let ds = open(&DatasetSpec::new(&zip)).unwrap();
    assert_eq!(ds.image(5).unwrap(), &px[5 * 3072..6 * 3072]);
    assert_eq!(ds.label(5), Some(labels[5]));
}

#[test]
fn cifar100_python_and_binary_agree_and_use_fine_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    for (split, n, seed) in [("train", 12, 1), ("test", 5, 2)] {
        let (px, labels) = cifar_images(n, seed, 100);
        write(
            &root.join("py/cifar-100-python").join(split),
            &cifar_pickle(&px, &labels, "fine_labels"),
        );
        write(
            &root
                .join("bin/cifar-100-binary")
                .join(format!("{split}.bin")),
            &cifar_records(&px, &labels, true),
        );
    }
    write(&root.join("py/cifar-100-python/meta"), b"meta");
    tar_gz(
        &root.join("py"),
        "cifar-100-python",
        &root.join("cifar-100-python.tar.gz"),
    );
    tar_gz(
        &root.join("bin"),
        "cifar-100-binary",
        &root.join("cifar-100-binary.tar.gz"),
    );
    for split in [Split::Train, Split::Test] {
        let a = stats(&root.join("cifar-100-python.tar.gz"), Format::Auto, split);
        assert_eq!(a.label_counts.len(), 100);
        assert_eq!(
            a,
            stats(&root.join("cifar-100-binary.tar.gz"), Format::Auto, split)
        );
        assert_eq!(a, stats(&root.join("py"), Format::Auto, split));
        assert_eq!(
            a,
            stats(&root.join("bin/cifar-100-binary"), Format::Auto, split)
        );
    }
    let ds = open(&DatasetSpec::new(root.join("bin"))).unwrap();
    let (_, labels) = cifar_images(12, 1, 100);
    assert_eq!(ds.label(3), Some(labels[3]));
}

fn open_err(path: &Path, format: Format) -> String {
    match open(&DatasetSpec {
        format,
        ..DatasetSpec::new(path)
    }) {
        Ok(_) => panic!("{} opened", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_cifar_files_are_errors_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    cifar10(root);
    // Truncated binary record file.
    let bin = root.join("bin/cifar-10-batches-bin/data_batch_3.bin");
    let bytes = std::fs::read(&bin).unwrap();
    std::fs::write(&bin, &bytes[..bytes.len() - 10]).unwrap();
    let msg = open_err(&root.join("bin"), Format::Auto);
    assert!(
        msg.contains("data_batch_3.bin") && msg.contains("3073-byte"),
        "{msg}"
    );
    // Truncated tar.gz.
    let tgz = root.join("cifar-10-python.tar.gz");
    let bytes = std::fs::read(&tgz).unwrap();
    let cut = root.join("cut.tar.gz");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let msg = open_err(&cut, Format::CifarPython);
    assert!(
        msg.contains("cut.tar.gz") && msg.contains("truncated"),
        "{msg}"
    );
    // A missing batch.
    std::fs::remove_file(root.join("py/cifar-10-batches-py/data_batch_5")).unwrap();
    let msg = open_err(&root.join("py"), Format::CifarPython);
    assert!(msg.contains("data_batch_5"), "{msg}");
    // A corrupt pickle.
    write(
        &root.join("py/cifar-10-batches-py/data_batch_5"),
        b"\x80\x02}q\x01(U\x04datq",
    );
    let msg = open_err(&root.join("py"), Format::CifarPython);
    assert!(
        msg.contains("data_batch_5") && msg.contains("pickle"),
        "{msg}"
    );
    // Label count differs from image count.
    let (px, labels) = cifar_images(4, 5, 10);
    write(
        &root.join("py/cifar-10-batches-py/data_batch_5"),
        &cifar_pickle(&px, &labels[..3], "labels"),
    );
    match open(&DatasetSpec::new(root.join("py"))) {
        Err(DataError::CountMismatch {
            path,
            images: 4,
            labels: 3,
        }) => assert!(path.ends_with("data_batch_5")),
        other => panic!("{:?}", other.map(|_| ())),
    }
    // A label beyond the classes.
    write(
        &root.join("py/cifar-10-batches-py/data_batch_5"),
        &cifar_pickle(&px, &[1, 2, 10, 3], "labels"),
    );
    let msg = open_err(&root.join("py"), Format::CifarPython);
    assert!(
        msg.contains("data_batch_5") && msg.contains("label 10"),
        "{msg}"
    );
    // Not CIFAR at all.
    let msg = open_err(
        &root.join("bin/cifar-10-batches-bin/batches.meta.txt"),
        Format::CifarBinary,
    );
    assert!(msg.contains("batches.meta.txt"), "{msg}");
}

/// A `.tar.gz` whose damage still inflates (stored blocks, as parts of the real archives are) or that
/// lost its gzip trailer is an error naming the archive: the CRC-32 and length in the trailer are
/// checked, not just the tar entries before it.
#[test]
fn corrupt_tar_gz_is_an_error_naming_it() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (px, _) = cifar10(root);
    let fast = std::fs::read(root.join("cifar-10-binary.tar.gz")).unwrap();
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(&fast[..])
        .read_to_end(&mut tar)
        .unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
    enc.write_all(&tar).unwrap();
    let stored = enc.finish().unwrap();
    let good = root.join("stored.tar.gz");
    std::fs::write(&good, &stored).unwrap();
    assert_eq!(
        stats(&good, Format::CifarBinary, Split::Train),
        stats(&root.join("bin"), Format::CifarBinary, Split::Train),
        "the intact archive reads"
    );
    let bad = |name: &str, bytes: Vec<u8>| {
        let path = root.join(name);
        std::fs::write(&path, bytes).unwrap();
        let msg = open_err(&path, Format::CifarBinary);
        assert!(msg.contains(name), "{name}: {msg}");
        msg
    };
    // One pixel byte of the 7th training image flipped: the bytes sit verbatim in a stored block, so
    // only the CRC can notice.
    let window = &px[6 * 3072 + 1000..6 * 3072 + 1032];
    let at = stored
        .windows(window.len())
        .position(|w| w == window)
        .expect("pixels stored verbatim")
        + 16;
    let mut flipped = stored.clone();
    flipped[at] ^= 0x20;
    let msg = bad("flipped-pixel.tar.gz", flipped);
    assert!(msg.contains("corrupt"), "{msg}");
    // A byte flipped in the middle of the ordinarily compressed archive.
    let mut flipped = fast.clone();
    let mid = fast.len() / 2;
    flipped[mid] ^= 0x01;
    bad("flipped-middle.tar.gz", flipped);
    // The stored CRC-32 itself wrong.
    let mut flipped = stored.clone();
    let crc_at = stored.len() - 8;
    flipped[crc_at] ^= 0x01;
    bad("flipped-crc.tar.gz", flipped);
    // The trailer (CRC-32 and length) cut off, and only its last bytes cut off.
    bad("no-trailer.tar.gz", stored[..stored.len() - 8].to_vec());
    bad("half-trailer.tar.gz", stored[..stored.len() - 3].to_vec());
}
