//! EDM dataset archives: zip and folder, sorted order, dataset.json labels, grayscale/RGB, and bad input.

use crate::common;

use std::io::Write;
use std::path::Path;

use common::{bytes, write};
use ect_data::decode::encode_png;
use ect_data::stats::dataset_stats;
use ect_data::{edm::EdmZipWriter, open, DataError, DatasetSpec, Format};

fn zip_of(path: &Path, files: &[(&str, Vec<u8>)]) {
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, data) in files {
        z.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(data).unwrap();
    }
    z.finish().unwrap();
}

fn png(shape: [usize; 3], seed: u64) -> (Vec<u8>, Vec<u8>) {
    let px = bytes(shape.iter().product(), seed);
    (encode_png(&px, shape, Path::new("x.png")).unwrap(), px)
}

#[test]
fn zip_and_folder_read_in_sorted_order_with_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let names = ["b/img2.png", "a/img9.PNG", "a/img10.png", "c.jpg.txt"];
    let mut files = Vec::new();
    let mut pixels = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let (enc, px) = png([3, 5, 4], i as u64);
        files.push((*n, enc));
        pixels.push(px);
    }
    let json =
        br#"{"labels": [["b/img2.png", 2], ["a/img9.PNG", 0], ["a/img10.png", 1]]}"#.to_vec();
    files.push(("dataset.json", json));
    zip_of(&tmp.path().join("d.zip"), &files);
    for (n, data) in &files {
        write(&tmp.path().join("dir").join(n), data);
    }
    let zs = dataset_stats(&*open(&DatasetSpec::new(tmp.path().join("d.zip"))).unwrap()).unwrap();
    let ds = open(&DatasetSpec::new(tmp.path().join("dir"))).unwrap();
    assert_eq!(dataset_stats(&*ds).unwrap(), zs);
    // Sorted: a/img10.png, a/img9.PNG, b/img2.png (c.jpg.txt is no image).
    assert_eq!(
        (
            ds.len(),
            ds.channels(),
            ds.height(),
            ds.width(),
            ds.label_dim()
        ),
        (3, 3, 5, 4, 3)
    );
    assert_eq!(ds.image(0).unwrap(), pixels[2]);
    assert_eq!(ds.image(1).unwrap(), pixels[1]);
    assert_eq!(ds.image(2).unwrap(), pixels[0]);
    assert_eq!(
        (ds.label(0), ds.label(1), ds.label(2)),
        (Some(1), Some(0), Some(2))
    );
    assert_eq!(zs.label_counts, vec![1, 1, 1]);
}

#[test]
fn grayscale_and_jpeg_keep_their_channels() {
    let tmp = tempfile::tempdir().unwrap();
    let (gray, px) = png([1, 6, 7], 3);
    let img = image::RgbImage::from_fn(8, 8, |x, y| image::Rgb([x as u8 * 30, y as u8 * 30, 128]));
    let mut jpg = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut jpg),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    zip_of(&tmp.path().join("g.zip"), &[("g.png", gray)]);
    zip_of(&tmp.path().join("j.zip"), &[("j.jpeg", jpg)]);
    let g = open(&DatasetSpec::new(tmp.path().join("g.zip"))).unwrap();
    assert_eq!(
        (g.channels(), g.height(), g.width(), g.label_dim()),
        (1, 6, 7, 0)
    );
    assert_eq!(g.image(0).unwrap(), px);
    let j = open(&DatasetSpec::new(tmp.path().join("j.zip"))).unwrap();
    assert_eq!((j.channels(), j.height(), j.width()), (3, 8, 8));
    let decoded = j.image(0).unwrap();
    assert!(
        (decoded[64 * 2] as i32 - 128).abs() <= 3,
        "blue plane ~128: {}",
        decoded[128]
    );
}

#[test]
fn writer_output_has_edms_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out.zip");
    let mut w = EdmZipWriter::create(&dest).unwrap();
    for i in 0..3 {
        w.add(&bytes(2 * 3 * 3, i), [2, 3, 3], Some(i as u32 * 2))
            .unwrap();
    }
    let err = w.add(&bytes(12, 9), [1, 3, 4], Some(0)).unwrap_err();
    assert!(
        matches!(err, DataError::MixedSizes { index: 3, .. }),
        "{err}"
    );
    assert!(!dest.exists(), "nothing under the final name before finish");
    w.finish().unwrap();
    let mut z = zip::ZipArchive::new(std::fs::File::open(&dest).unwrap()).unwrap();
    let names: Vec<String> = z.file_names().map(String::from).collect();
    assert!(
        names.contains(&"00000/img00000002.png".to_string()),
        "{names:?}"
    );
    let mut json = String::new();
    std::io::Read::read_to_string(&mut z.by_name("dataset.json").unwrap(), &mut json).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        v["labels"][1],
        serde_json::json!(["00000/img00000001.png", 2])
    );
    assert_eq!(
        z.by_name("00000/img00000000.png").unwrap().compression(),
        zip::CompressionMethod::Stored
    );
    let ds = open(&DatasetSpec::new(&dest)).unwrap();
    assert_eq!((ds.len(), ds.channels(), ds.label(2)), (3, 2, Some(4)));
    assert_eq!(ds.image(1).unwrap(), bytes(18, 1));
}

fn err_of(path: &Path) -> DataError {
    match open(&DatasetSpec {
        format: Format::EdmArchive,
        ..DatasetSpec::new(path)
    }) {
        Ok(ds) => dataset_stats(&*ds).expect_err("some image must fail"),
        Err(e) => e,
    }
}

#[test]
fn bad_archives_are_errors_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (a, _) = png([3, 4, 4], 1);
    let (b, _) = png([3, 5, 4], 2);
    // Mixed sizes.
    zip_of(&t.join("mixed.zip"), &[("0.png", a.clone()), ("1.png", b)]);
    match err_of(&t.join("mixed.zip")) {
        DataError::MixedSizes {
            path,
            index: 1,
            got: [3, 5, 4],
            expected: [3, 4, 4],
        } => assert!(path.ends_with("1.png")),
        e => panic!("{e}"),
    }
    // A corrupt image.
    zip_of(
        &t.join("corrupt.zip"),
        &[("0.png", a.clone()), ("1.png", a[..a.len() / 2].to_vec())],
    );
    let e = err_of(&t.join("corrupt.zip")).to_string();
    assert!(e.contains("1.png") && e.contains("cannot decode"), "{e}");
    // A truncated zip.
    zip_of(
        &t.join("whole.zip"),
        &[("0.png", a.clone()), ("1.png", a.clone())],
    );
    let z = std::fs::read(t.join("whole.zip")).unwrap();
    std::fs::write(t.join("cut.zip"), &z[..z.len() - 30]).unwrap();
    let e = err_of(&t.join("cut.zip")).to_string();
    assert!(e.contains("cut.zip") && e.contains("zip"), "{e}");
    // Labels missing for an image, malformed, or not integers.
    for (name, json, needle) in [
        (
            "nolabel.zip",
            r#"{"labels": [["0.png", 1]]}"#,
            "no label for image 1.png",
        ),
        ("badjson.zip", r#"{"labels": [["0.png", 1]"#, "invalid JSON"),
        (
            "vector.zip",
            r#"{"labels": [["0.png", [0.5, 1]], ["1.png", 2]]}"#,
            "integer class labels",
        ),
    ] {
        zip_of(
            &t.join(name),
            &[
                ("0.png", a.clone()),
                ("1.png", a.clone()),
                ("dataset.json", json.into()),
            ],
        );
        let e = err_of(&t.join(name)).to_string();
        assert!(e.contains("dataset.json") && e.contains(needle), "{e}");
    }
    // Null labels mean unlabeled; requiring labels then fails.
    zip_of(
        &t.join("null.zip"),
        &[
            ("0.png", a.clone()),
            ("dataset.json", br#"{"labels": null}"#.to_vec()),
        ],
    );
    let spec = DatasetSpec {
        require_labels: true,
        ..DatasetSpec::new(t.join("null.zip"))
    };
    let e = open(&spec).err().unwrap();
    assert!(
        matches!(e, DataError::NoLabels { .. }) && e.to_string().contains("null.zip"),
        "{e}"
    );
    // No images at all; an unreadable path.
    zip_of(&t.join("empty.zip"), &[("readme.txt", b"hi".to_vec())]);
    assert!(err_of(&t.join("empty.zip"))
        .to_string()
        .contains("no PNG or JPEG"));
    assert!(matches!(
        err_of(&t.join("absent.zip")),
        DataError::Io { .. }
    ));
}

/// A stray huge label would make the class count (largest label + 1) ask for gigabytes of per-class
/// counts and one-hot rows; it is an error naming `dataset.json`, the image and the value, while the
/// largest allowed label still opens.
#[test]
fn a_huge_label_is_an_error_not_a_huge_allocation() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (a, _) = png([3, 4, 4], 1);
    let max = ect_data::edm::MAX_CLASSES;
    for (name, label) in [("huge.zip", 4_000_000_000u64), ("limit.zip", max as u64)] {
        zip_of(
            &t.join(name),
            &[
                ("0.png", a.clone()),
                ("1.png", a.clone()),
                (
                    "dataset.json",
                    format!(r#"{{"labels": [["0.png", 0], ["1.png", {label}]]}}"#).into(),
                ),
            ],
        );
        let e = err_of(&t.join(name)).to_string();
        assert!(
            e.contains(&format!("{name}/dataset.json"))
                && e.contains(&format!("image 1.png has class label {label}"))
                && e.contains("1000000 classes"),
            "{e}"
        );
    }
    zip_of(
        &t.join("ok.zip"),
        &[
            ("0.png", a.clone()),
            (
                "dataset.json",
                format!(r#"{{"labels": [["0.png", {}]]}}"#, max - 1).into(),
            ),
        ],
    );
    let ds = open(&DatasetSpec::new(t.join("ok.zip"))).unwrap();
    assert_eq!(ds.label_dim(), max as usize);
    assert_eq!(ds.label(0), Some(max - 1));
}

/// A symlink back to a folder the walk is inside is not followed again, so a loop lists each image
/// once (EDM's `os.walk` lists 3 here too); a link to a folder outside the walk is still followed.
#[cfg(unix)]
#[test]
fn a_symlink_loop_does_not_multiply_images() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("ds");
    for (i, name) in ["a.png", "sub/b.png", "sub/deeper/c.png"]
        .iter()
        .enumerate()
    {
        write(&root.join(name), &png([3, 4, 4], i as u64).0);
    }
    std::os::unix::fs::symlink("..", root.join("sub/loop")).unwrap();
    std::os::unix::fs::symlink("../..", root.join("sub/deeper/loop2")).unwrap();
    let outside = tmp.path().join("extra");
    write(&outside.join("d.png"), &png([3, 4, 4], 9).0);
    std::os::unix::fs::symlink(&outside, root.join("linked")).unwrap();
    let ds = open(&DatasetSpec::new(&root)).unwrap();
    assert_eq!(ds.len(), 4, "a, linked/d, sub/b, sub/deeper/c");
    let edm = ect_data::edm::EdmArchive::open(&root).unwrap();
    assert_eq!(
        edm.names(),
        ["a.png", "linked/d.png", "sub/b.png", "sub/deeper/c.png"]
    );
}
