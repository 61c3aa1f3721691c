//! Helpers shared by the integration tests: deterministic pixel data and small writers for the real
//! file layouts.
#![allow(dead_code)]

pub mod py2pickle;

use std::io::Write;
use std::path::Path;

/// Deterministic pseudo-random bytes (xorshift), so fixtures need no RNG crate.
pub fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}

/// An IDX file of unsigned bytes with the given dimensions.
pub fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        out.extend(d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// Gzip-compresses bytes.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// Writes a file, creating parent folders.
pub fn write(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

/// A `.tar.gz` of the files under `root`'s `top` folder, the folder entry first as in the real archives.
pub fn tar_gz(root: &Path, top: &str, dest: &Path) {
    let file = std::fs::File::create(dest).unwrap();
    let enc = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut b = tar::Builder::new(enc);
    b.append_dir_all(top, root.join(top)).unwrap();
    b.into_inner().unwrap().finish().unwrap();
}

/// Images of one CIFAR split: `n` images, labels cycling below `classes`.
pub fn cifar_images(n: usize, seed: u64, classes: u32) -> (Vec<u8>, Vec<u32>) {
    let px = bytes(n * 3072, seed);
    let labels = (0..n as u32)
        .map(|i| (i * 7 + seed as u32) % classes)
        .collect();
    (px, labels)
}

/// The python pickle of one CIFAR batch in the real (Python 2 cPickle) layout.
pub fn cifar_pickle(px: &[u8], labels: &[u32], label_key: &str) -> Vec<u8> {
    use py2pickle::{dump_py2, Value};
    let n = px.len() / 3072;
    let ints = |v: &[u32]| Value::List(v.iter().map(|&x| Value::Int(x as i64)).collect());
    let names = Value::List(
        (0..n)
            .map(|i| Value::Bytes(format!("img_{i:05}.png").into_bytes()))
            .collect(),
    );
    let mut items = vec![(
        "batch_label",
        Value::Bytes(b"training batch 1 of 5".to_vec()),
    )];
    if label_key == "fine_labels" {
        items.push((
            "coarse_labels",
            ints(&labels.iter().map(|l| l / 5).collect::<Vec<_>>()),
        ));
    }
    items.push((label_key, ints(labels)));
    items.push((
        "data",
        Value::Array {
            shape: vec![n, 3072],
            dtype: "u1".into(),
            data: px.to_vec(),
        },
    ));
    items.push(("filenames", names));
    dump_py2(&items)
}

/// Binary CIFAR records (CIFAR-100: coarse then fine label byte).
pub fn cifar_records(px: &[u8], labels: &[u32], cifar100: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (img, &l) in px.chunks(3072).zip(labels) {
        if cifar100 {
            out.push((l / 5) as u8);
        }
        out.push(l as u8);
        out.extend_from_slice(img);
    }
    out
}
