//! Issue 15: writing an EDM zip creates the destination's folder, and an error part-way (a bad image, a
//! destination that cannot be renamed into place) leaves neither the zip nor its `.zip.partial`.

use std::path::{Path, PathBuf};

use ect_data::edm::{write_zip, EdmArchive};
use ect_data::{DataError, Dataset, Result};

/// 1x2x2 images whose pixels are their index; image `bad` cannot be read.
struct Failing {
    n: usize,
    bad: usize,
    source: PathBuf,
}

impl Dataset for Failing {
    fn len(&self) -> usize {
        self.n
    }
    fn channels(&self) -> usize {
        1
    }
    fn height(&self) -> usize {
        2
    }
    fn width(&self) -> usize {
        2
    }
    fn label_dim(&self) -> usize {
        0
    }
    fn source(&self) -> &Path {
        &self.source
    }
    fn image_into(&self, index: usize, out: &mut [u8]) -> Result<()> {
        if index == self.bad {
            return Err(DataError::format(
                self.source.join(format!("img{index}.png")),
                "cannot decode image: truncated",
            ));
        }
        out.fill(index as u8);
        Ok(())
    }
    fn label(&self, _: usize) -> Option<u32> {
        None
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn an_error_part_way_leaves_no_partial_zip() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    // Past the first chunk of 512 images, so some images are already in the partial zip.
    let ds = Failing {
        n: 800,
        bad: 700,
        source: tmp.path().join("src"),
    };
    let e = write_zip(&ds, &out.join("ds.zip")).unwrap_err().to_string();
    assert!(e.contains("img700.png") && e.contains("truncated"), "{e}");
    assert!(entries(&out).is_empty(), "{:?}", entries(&out));

    // The final rename fails (a folder is in the way): the partial zip is removed as well.
    std::fs::create_dir_all(out.join("taken.zip/inside")).unwrap();
    let ok = Failing {
        n: 10,
        bad: usize::MAX,
        source: tmp.path().join("src"),
    };
    let e = write_zip(&ok, &out.join("taken.zip"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("taken.zip"), "{e}");
    assert_eq!(entries(&out), ["taken.zip"]);
}

#[test]
fn a_missing_destination_folder_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("a/b/ds.zip");
    let ds = Failing {
        n: 5,
        bad: usize::MAX,
        source: tmp.path().join("src"),
    };
    assert_eq!(write_zip(&ds, &dest).unwrap(), dest);
    let back = EdmArchive::open_with(&dest, ect_data::ImageCheck::Skip).unwrap();
    assert_eq!(back.len(), 5);
    assert_eq!(back.image(4).unwrap(), [4, 4, 4, 4]);
    assert_eq!(entries(&tmp.path().join("a/b")), ["ds.zip"]);
}
