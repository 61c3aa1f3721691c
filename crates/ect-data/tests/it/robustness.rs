//! Hostile bytes never panic: random and mutated IDX files, pickles (`ect_pickle`), CIFAR batches and EDM zips give
//! `Ok` or an error (the cargo-fuzz targets in fuzz/ explore the same entry points for longer).

use crate::common;

use std::io::Write;
use std::path::Path;

use ect_data::cifar::{parse_binary_batch, parse_python_batch, Variant};
use ect_data::edm::EdmArchive;
use ect_data::{idx, stats::dataset_stats};
use proptest::prelude::*;

fn valid_idx() -> Vec<u8> {
    common::idx_bytes(&[3, 4, 5], &common::bytes(60, 1))
}

fn valid_pickle() -> Vec<u8> {
    let (px, labels) = common::cifar_images(2, 3, 10);
    common::cifar_pickle(&px, &labels, "labels")
}

fn valid_zip() -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for i in 0..2u64 {
        let png =
            ect_data::decode::encode_png(&common::bytes(3 * 4 * 4, i), [3, 4, 4], Path::new("x"))
                .unwrap();
        z.start_file(format!("{i}.png"), zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(&png).unwrap();
    }
    z.start_file("dataset.json", zip::write::SimpleFileOptions::default())
        .unwrap();
    z.write_all(br#"{"labels": [["0.png", 1], ["1.png", 0]]}"#)
        .unwrap();
    z.finish().unwrap().into_inner()
}

fn mutate(mut b: Vec<u8>, edits: &[(usize, u8)], cut: usize) -> Vec<u8> {
    for &(at, v) in edits {
        if !b.is_empty() {
            let n = b.len();
            b[at % n] = v;
        }
    }
    let keep = b.len() - cut % (b.len() + 1);
    b.truncate(keep);
    b
}

fn exercise_zip(bytes: Vec<u8>) {
    if let Ok(ds) = EdmArchive::from_zip_bytes(bytes, Path::new("fuzz.zip")) {
        let _ = dataset_stats(&ds);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let p = Path::new("fuzz");
        let _ = idx::parse(&bytes, p);
        let _ = ect_pickle::fuzz_one(&bytes);
        let _ = parse_python_batch(&bytes, p);
        let _ = parse_binary_batch(&bytes, Variant::Cifar100, p);
        exercise_zip(bytes);
    }

    #[test]
    fn mutated_valid_files(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6), cut in any::<usize>()) {
        let p = Path::new("fuzz");
        let _ = idx::parse(&mutate(valid_idx(), &edits, cut), p);
        let _ = parse_python_batch(&mutate(valid_pickle(), &edits, cut), p);
        exercise_zip(mutate(valid_zip(), &edits, cut));
    }
}

#[test]
fn unmutated_inputs_are_accepted() {
    assert_eq!(
        idx::parse(&valid_idx(), Path::new("x")).unwrap().dims,
        vec![3, 4, 5]
    );
    assert_eq!(
        parse_python_batch(&valid_pickle(), Path::new("x"))
            .unwrap()
            .1
            .len(),
        2
    );
    let ds = EdmArchive::from_zip_bytes(valid_zip(), Path::new("x.zip")).unwrap();
    assert_eq!(dataset_stats(&ds).unwrap().label_counts, vec![1, 1]);
}

#[test]
fn pickle_bombs_are_errors_not_crashes() {
    // 100k nested lists would overflow a recursive reader's stack.
    let mut deep = vec![0x80, 2];
    deep.extend(std::iter::repeat_n(b']', 100_000));
    deep.extend(std::iter::repeat_n(b'a', 99_999));
    deep.push(b'.');
    let e = parse_python_batch(&deep, Path::new("deep.pkl"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("deep.pkl") && e.contains("nesting depth"), "{e}");
    // A memoized 60 KB string fetched 30k times: shared, not copied (1.8 GB), and not a batch.
    let mut bomb = vec![0x80, 2, b']', b'(', b'T'];
    bomb.extend(60_000u32.to_le_bytes());
    bomb.extend(std::iter::repeat_n(b'x', 60_000));
    bomb.extend([b'q', 1]);
    for _ in 0..30_000 {
        bomb.extend([b'h', 1]);
    }
    bomb.extend([b'e', b'.']);
    let started = std::time::Instant::now();
    let e = parse_python_batch(&bomb, Path::new("bomb.pkl"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bomb.pkl") && e.contains("pickled list, expected a dict"),
        "{e}"
    );
    assert!(started.elapsed().as_secs() < 5);
}
