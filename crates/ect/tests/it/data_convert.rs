//! Issue 15, `ect data convert`: a missing destination folder is created, and a conversion that fails
//! part-way (a corrupt image deep into the dataset) or at the end (the destination cannot be renamed
//! into place) leaves no `.zip.partial` behind and names what failed.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::{ect, tmp, write_idx};

fn convert(dataset: &Path, dest: &Path) -> Output {
    ect()
        .args(["data", "convert", "--dataset"])
        .arg(dataset)
        .arg("--dest")
        .arg(dest)
        .output()
        .unwrap()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// An EDM folder of `n` 8x8 grayscale PNGs, `00000/img00000000.png`, ...; returns the paths.
pub fn png_folder(dir: &Path, n: usize) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let px: Vec<u8> = (0..64).map(|p| ((p * 37 + i * 11) % 256) as u8).collect();
            let png = ect_data::decode::encode_png(&px, [1, 8, 8], Path::new("x")).unwrap();
            let path = dir.join(format!("{:05}/img{i:08}.png", i / 1000));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, png).unwrap();
            path
        })
        .collect()
}

#[test]
fn convert_creates_the_destination_folder() {
    let dir = tmp("harden-convert-mkdir");
    write_idx(
        &dir,
        "train",
        (6, 4, 4),
        |i, p| (i * 16 + p) as u8,
        |i| (i % 2) as u8,
    );
    let dest = dir.join("new/sub/out.zip");
    let out = convert(&dir, &dest);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(entries(&dir.join("new/sub")), ["out.zip"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_conversion_that_fails_leaves_no_partial_zip() {
    let dir = tmp("harden-convert-partial");
    let src = dir.join("src");
    // Past the first chunk of 512 images, so the partial zip already holds images when it fails.
    let files = png_folder(&src, 600);
    let b = std::fs::read(&files[550]).unwrap();
    std::fs::write(&files[550], &b[..b.len() / 2]).unwrap();
    let out_dir = dir.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = convert(&src, &out_dir.join("ds.zip"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("00000/img00000550.png") && err.contains("cannot decode"),
        "{err}"
    );
    assert!(entries(&out_dir).is_empty(), "{:?}", entries(&out_dir));

    // The final rename fails: a folder is in the way of the zip.
    std::fs::write(&files[550], &b).unwrap();
    std::fs::create_dir_all(out_dir.join("taken.zip/x")).unwrap();
    let out = convert(&src, &out_dir.join("taken.zip"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("taken.zip"), "{err}");
    assert_eq!(entries(&out_dir), ["taken.zip"]);
    std::fs::remove_dir_all(&dir).unwrap();
}
