//! Issue 15: a corrupt image in a dataset read image by image (EDM folder or zip, ImageNet folder) is an
//! error when the dataset is opened, naming the file, not when the shuffle first draws it; what passed
//! is remembered by file size and modification time, so a second open decodes nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::common::{bytes, write};
use ect_data::decode::encode_png;
use ect_data::edm::EdmArchive;
use ect_data::imagenet::ImageNetFolder;
use ect_data::validate::record_file;
use ect_data::{open, open_with, DataError, Dataset, DatasetSpec, Format, ImageCheck, Split};

fn png(shape: [usize; 3], seed: u64) -> Vec<u8> {
    encode_png(
        &bytes(shape.iter().product(), seed),
        shape,
        Path::new("x.png"),
    )
    .unwrap()
}

/// `n` 3x4x4 PNGs in two subfolders; returns their paths in index (sorted) order.
fn png_folder(dir: &Path, n: usize) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let p = dir.join(format!("{:05}/img{i:08}.png", i / 20));
            write(&p, &png([3, 4, 4], i as u64));
            p
        })
        .collect()
}

fn truncate_half(path: &Path) {
    let b = std::fs::read(path).unwrap();
    std::fs::write(path, &b[..b.len() / 2]).unwrap();
}

fn edm_spec(path: &Path) -> DatasetSpec {
    DatasetSpec {
        format: Format::EdmArchive,
        ..DatasetSpec::new(path)
    }
}

/// Removes the record a test's open left in the data cache.
struct Forget(PathBuf);
impl Drop for Forget {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(record_file(&self.0));
    }
}

#[test]
fn a_corrupt_image_is_an_error_at_open_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("folder");
    let _forget = Forget(dir.clone());
    let files = png_folder(&dir, 40);
    truncate_half(&files[27]);
    let e = open(&edm_spec(&dir)).err().expect("open must fail");
    let msg = e.to_string();
    assert!(
        msg.contains("00001/img00000027.png") && msg.contains("cannot decode"),
        "{msg}"
    );
    // Skipping the check opens it; drawing the image then fails, naming it too.
    let ds = open_with(&edm_spec(&dir), ImageCheck::Skip).unwrap();
    assert_eq!(ds.len(), 40);
    let e = ds.image(27).unwrap_err().to_string();
    assert!(e.contains("00001/img00000027.png"), "{e}");

    // Two bad images: the first in index order is reported in full, with the count.
    truncate_half(&files[3]);
    let msg = open(&edm_spec(&dir)).err().unwrap().to_string();
    assert!(
        msg.contains("img00000003.png") && msg.contains("1 more of the 40 images"),
        "{msg}"
    );
    // An image of another size is found at open too.
    write(&files[3], &png([3, 5, 4], 3));
    write(&files[27], &png([3, 4, 4], 27));
    match open(&edm_spec(&dir)).err().unwrap() {
        DataError::MixedSizes {
            index: 3,
            got: [3, 5, 4],
            expected: [3, 4, 4],
            path,
        } => assert!(
            path.ends_with("00000/img00000003.png"),
            "{}",
            path.display()
        ),
        e => panic!("{e}"),
    }

    // A zip with a corrupt member.
    let zip = tmp.path().join("a.zip");
    let _forget_zip = Forget(zip.clone());
    let mut z = zip::ZipWriter::new(std::fs::File::create(&zip).unwrap());
    for i in 0..10u64 {
        let mut p = png([3, 4, 4], i);
        if i == 6 {
            p.truncate(p.len() / 2);
        }
        z.start_file(format!("{i}.png"), zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut z, &p).unwrap();
    }
    z.finish().unwrap();
    let msg = EdmArchive::open(&zip).err().unwrap().to_string();
    assert!(
        msg.contains("a.zip/6.png") && msg.contains("cannot decode"),
        "{msg}"
    );
    assert!(EdmArchive::open_with(&zip, ImageCheck::Skip).is_ok());

    // An ImageNet folder with a corrupt JPEG among two classes.
    let root = tmp.path().join("imagenet");
    let _forget_in = Forget(root.join("train"));
    for (k, class) in ["n01", "n02"].iter().enumerate() {
        for i in 0..6u64 {
            let img = image::RgbImage::from_fn(40, 30, |x, y| {
                image::Rgb([(x * 6) as u8, (y * 8) as u8, (i * 40 + k as u64) as u8])
            });
            let mut jpeg = Vec::new();
            img.write_to(
                &mut std::io::Cursor::new(&mut jpeg),
                image::ImageFormat::Jpeg,
            )
            .unwrap();
            if *class == "n02" && i == 4 {
                jpeg.truncate(40);
            }
            write(&root.join(format!("train/{class}/img{i}.JPEG")), &jpeg);
        }
    }
    let msg = ImageNetFolder::open(&root, Split::Train, 16)
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("n02/img4.JPEG"), "{msg}");
    assert!(ImageNetFolder::open_with(&root, Split::Train, 16, ImageCheck::Skip).is_ok());
}

fn set_mtime(path: &Path, t: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

#[test]
fn the_check_is_remembered_by_file_size_and_modification_time() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("folder");
    let _forget = Forget(dir.clone());
    let files = png_folder(&dir, 30);
    let record = record_file(&dir);
    let _ = std::fs::remove_file(&record);
    assert!(
        !record.starts_with(&dir),
        "the record is kept outside the dataset"
    );
    EdmArchive::open(&dir).unwrap();
    // A header (a magic line, the dataset's canonical path and its length) and one 8-byte key per image.
    let len = std::fs::metadata(&record).unwrap().len();
    let canonical = std::fs::canonicalize(&dir).unwrap();
    let header = (b"ect-data validated images v1\n".len() + 4 + canonical.as_os_str().len()) as u64;
    assert_eq!(len, header + 30 * 8);

    // Rewritten with the same size and modification time: the record vouches for it, so open does not
    // decode it (the draw still names it).
    let victim = &files[12];
    let t0 = std::fs::metadata(victim).unwrap().modified().unwrap();
    let good = std::fs::read(victim).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid..].iter_mut().for_each(|b| *b = 0);
    std::fs::write(victim, &bad).unwrap();
    set_mtime(victim, t0);
    let ds = EdmArchive::open(&dir).expect("the record vouches for an unchanged stamp");
    assert!(ds
        .image(12)
        .unwrap_err()
        .to_string()
        .contains("img00000012.png"));

    // A new modification time makes open decode it again and fail.
    set_mtime(victim, t0 + Duration::from_secs(1));
    let msg = EdmArchive::open(&dir).err().unwrap().to_string();
    assert!(msg.contains("img00000012.png"), "{msg}");
    // The 29 that passed are still remembered; fixing the file brings the record back to 30.
    assert_eq!(std::fs::metadata(&record).unwrap().len(), header + 29 * 8);
    std::fs::write(victim, &good).unwrap();
    EdmArchive::open(&dir).unwrap();
    assert_eq!(std::fs::metadata(&record).unwrap().len(), header + 30 * 8);

    // A damaged record costs a full check, not a wrong answer.
    std::fs::write(&record, b"garbage").unwrap();
    truncate_half(&files[29]);
    let msg = EdmArchive::open(&dir).err().unwrap().to_string();
    assert!(msg.contains("img00000029.png"), "{msg}");
    assert_eq!(std::fs::metadata(&record).unwrap().len(), header + 29 * 8);

    // The record of a dataset that is gone is removed when another record is written.
    let other = tmp.path().join("other");
    let _forget_other = Forget(other.clone());
    png_folder(&other, 3);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(record.exists());
    EdmArchive::open(&other).unwrap();
    assert!(!record.exists());
    assert!(record_file(&other).exists());
}
