//! `.npy` / `.npz` reading and writing against files written by NumPy 2.4 (`fixtures/make_npy_fixtures.py`).

use std::path::PathBuf;

use ect_metrics::npy::{NpyArray, NpyData};
use ect_metrics::npz::{read_npz, write_npz};
use ect_metrics::{load_stats_npz, save_stats_npz, FeatureStats, MetricsError};
use proptest::prelude::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn reads_numpy_files_of_each_dtype() {
    let _torch = crate::torch();
    let a = NpyArray::load(&fixture("f64_3x4.npy")).unwrap();
    assert_eq!(a.shape, vec![3, 4]);
    let want: Vec<f64> = (0..12).map(|i| i as f64 / 8.0 - 0.5).collect();
    assert_eq!(a.data, NpyData::F64(want));

    let b = NpyArray::load(&fixture("f32_5.npy")).unwrap();
    assert_eq!(b.shape, vec![5]);
    assert_eq!(
        b.data,
        NpyData::F32((0..5).map(|i| i as f32 * 1.25 - 2.0).collect())
    );

    let c = NpyArray::load(&fixture("u8_2x3x4x4.npy")).unwrap();
    assert_eq!(c.shape, vec![2, 3, 4, 4]);
    assert_eq!(
        c.data,
        NpyData::U8((0..96u32).map(|i| (i * 7 % 256) as u8).collect())
    );
}

#[test]
fn writes_the_same_bytes_as_numpy() {
    let _torch = crate::torch();
    for name in ["f64_3x4.npy", "f32_5.npy", "u8_2x3x4x4.npy"] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let array = NpyArray::from_bytes(&bytes, name).unwrap();
        assert_eq!(array.to_bytes(), bytes, "{name}");
    }
}

#[test]
fn reads_edm_style_statistics() {
    let _torch = crate::torch();
    let mu: Vec<f64> = (0..4).map(|i| i as f64 / 3.0).collect();
    let a: Vec<f64> = (0..16).map(|i| i as f64 / 10.0).collect();
    let mut sigma = vec![0.0; 16];
    for i in 0..4 {
        for j in 0..4 {
            sigma[i * 4 + j] = (0..4).map(|k| a[i * 4 + k] * a[j * 4 + k]).sum::<f64>()
                + f64::from(u8::from(i == j));
        }
    }
    let s = load_stats_npz(&fixture("stats_ok.npz")).unwrap();
    assert_eq!(s.mu(), &mu[..]);
    for (x, y) in s.sigma().iter().zip(&sigma) {
        assert!((x - y).abs() < 1e-14 * y.abs().max(1.0), "{x} vs {y}");
    }
    // np.savez_compressed (deflate) and float32 arrays are accepted too.
    let c = load_stats_npz(&fixture("stats_compressed_f32.npz")).unwrap();
    for (x, y) in c.sigma().iter().zip(&sigma) {
        assert!((x - y).abs() < 1e-6 * y.abs().max(1.0));
    }
}

#[test]
fn bad_statistics_files_give_clear_errors() {
    let _torch = crate::torch();
    let err = load_stats_npz(&fixture("stats_no_sigma.npz")).unwrap_err();
    assert!(
        matches!(err, MetricsError::MissingArray { ref name, .. } if name == "sigma"),
        "{err}"
    );
    assert!(
        err.to_string().contains("stats_no_sigma.npz") && err.to_string().contains("sigma"),
        "{err}"
    );

    let err = load_stats_npz(&fixture("stats_bad_dims.npz")).unwrap_err();
    assert!(
        err.to_string().contains("sigma") && err.to_string().contains("[3, 3]"),
        "{err}"
    );

    let err = load_stats_npz(&fixture("stats_nan.npz")).unwrap_err();
    assert!(
        err.to_string().contains("sigma") && err.to_string().contains("NaN"),
        "{err}"
    );

    let err = load_stats_npz(&fixture("f64_3x4.npy")).unwrap_err();
    assert!(matches!(err, MetricsError::Zip { .. }), "{err}");

    let err = load_stats_npz(&fixture("does-not-exist.npz")).unwrap_err();
    assert!(err.to_string().contains("does-not-exist.npz"), "{err}");

    let header = b"{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }\n";
    let mut int_file = b"\x93NUMPY\x01\x00".to_vec();
    int_file.extend_from_slice(&(header.len() as u16).to_le_bytes());
    int_file.extend_from_slice(header);
    int_file.extend_from_slice(&[0; 8]);
    let err = NpyArray::from_bytes(&int_file, "x.npy").unwrap_err();
    assert!(err.to_string().contains("<i8"), "{err}");
    assert!(NpyArray::from_bytes(b"not numpy", "y.npy").is_err());
    let mut truncated = std::fs::read(fixture("f64_3x4.npy")).unwrap();
    truncated.truncate(truncated.len() - 8);
    let err = NpyArray::from_bytes(&truncated, "t.npy").unwrap_err();
    assert!(err.to_string().contains("t.npy"), "{err}");
}

#[test]
fn statistics_round_trip() {
    let _torch = crate::torch();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.npz");
    let stats = FeatureStats::new(vec![1.0, -2.0], vec![2.0, 0.5, 0.5, 1.0]).unwrap();
    save_stats_npz(&path, &stats).unwrap();
    assert_eq!(load_stats_npz(&path).unwrap(), stats);
    let arrays = read_npz(&path).unwrap();
    let names: Vec<&str> = arrays.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["mu", "sigma"]);
    assert_eq!(arrays[1].1.shape, vec![2, 2]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn npy_round_trip(shape in prop::collection::vec(0usize..5, 0..4), kind in 0u8..3, seed in any::<u64>()) {
        let n: usize = shape.iter().product();
        let data = match kind {
            0 => NpyData::F64((0..n).map(|i| (i as f64 + seed as f64).sin()).collect()),
            1 => NpyData::F32((0..n).map(|i| (i as f32 * 0.3).cos()).collect()),
            _ => NpyData::U8((0..n).map(|i| (i as u64 ^ seed) as u8).collect()),
        };
        let array = NpyArray::new(shape, data).unwrap();
        let bytes = array.to_bytes();
        prop_assert_eq!(bytes.iter().position(|&b| b == b'\n').map(|p| (p + 1) % 64), Some(0));
        prop_assert_eq!(NpyArray::from_bytes(&bytes, "p.npy").unwrap(), array.clone());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.npz");
        write_npz(&path, &[("x", &array)]).unwrap();
        prop_assert_eq!(&read_npz(&path).unwrap()[0].1, &array);
    }
}

#[test]
fn statistics_keep_their_sample_count() {
    let _torch = crate::torch();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n.npz");
    let stats = FeatureStats::new(vec![1.0, -2.0], vec![2.0, 0.5, 0.5, 1.0])
        .unwrap()
        .with_num_samples(50_000);
    save_stats_npz(&path, &stats).unwrap();
    let back = load_stats_npz(&path).unwrap();
    assert_eq!(back.num_samples(), Some(50_000));
    assert_eq!(back, stats);
    let arrays = read_npz(&path).unwrap();
    let names: Vec<&str> = arrays.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["mu", "sigma", "num_samples"]);
    assert_eq!(arrays[2].1.shape, Vec::<usize>::new());
    assert_eq!(arrays[2].1.data, NpyData::F64(vec![50_000.0]));

    // A count that is not a whole non-negative number is an error naming the array.
    let mu = NpyArray::new(vec![1], NpyData::F64(vec![0.0])).unwrap();
    let sigma = NpyArray::new(vec![1, 1], NpyData::F64(vec![1.0])).unwrap();
    for bad in [-1.0, 2.5, f64::NAN] {
        let n = NpyArray::new(vec![], NpyData::F64(vec![bad])).unwrap();
        write_npz(
            &path,
            &[("mu", &mu), ("sigma", &sigma), ("num_samples", &n)],
        )
        .unwrap();
        let err = load_stats_npz(&path).unwrap_err().to_string();
        assert!(err.contains("n.npz:num_samples"), "{err}");
    }
}

/// A `.npy` header whose shape fits `usize` in elements but not in bytes gives an error, not an overflow.
#[test]
fn crafted_npy_headers_give_errors() {
    let _torch = crate::torch();
    let file = |descr: &str, shape: &str| {
        let header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}\n");
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&[0; 16]);
        bytes
    };
    // 2^62 * 2 = 2^63 elements fit in u64; times 8 bytes does not.
    let big = format!("({}, 2)", 1u64 << 62);
    for descr in ["<f8", "<f4"] {
        let err = NpyArray::from_bytes(&file(descr, &big), "big.npy").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("big.npy") && msg.contains("needs more than"),
            "{msg}"
        );
    }
    // Elements overflow already.
    let err = NpyArray::from_bytes(&file("<f8", &format!("({0}, {0})", 1u64 << 40)), "e.npy");
    assert!(err.unwrap_err().to_string().contains("overflows"));
    // Fits in bytes, but the file has 16 of them.
    let err = NpyArray::from_bytes(&file("<f8", "(1000000,)"), "short.npy").unwrap_err();
    assert!(err.to_string().contains("needs 8000000"), "{err}");
    assert_eq!(
        NpyArray::from_bytes(&file("<f8", "(2,)"), "ok.npy")
            .unwrap()
            .data,
        NpyData::F64(vec![0.0, 0.0])
    );
}

/// A zip entry that declares an absurd uncompressed size (2^60 bytes in its zip64 field): reading must not
/// trust it for allocation (`Vec::with_capacity` of it aborts the process).
#[test]
fn crafted_zip_entry_sizes_do_not_allocate() {
    let _torch = crate::torch();
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("z.npz");
    let array = NpyArray::new(vec![3], NpyData::F64(vec![1.0, 2.0, 3.0])).unwrap();
    let mut writer = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    writer.start_file("mu.npy", options).unwrap();
    writer.write_all(&array.to_bytes()).unwrap();
    writer.finish().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let declared = (1u64 << 60).to_le_bytes();
    let mut patched = 0;
    // Every zip64 extra field (id 1) starts with the uncompressed size.
    for at in 0..bytes.len() - 12 {
        if bytes[at..at + 2] == [1, 0] && bytes[at + 2..at + 4] == [16, 0] {
            bytes[at + 4..at + 12].copy_from_slice(&declared);
            patched += 1;
        }
    }
    assert!(patched >= 1, "no zip64 field found");
    std::fs::write(&path, &bytes).unwrap();
    match read_npz(&path) {
        Ok(arrays) => assert_eq!(arrays[0].1, array),
        Err(e) => assert!(e.to_string().contains("z.npz"), "{e}"),
    }
}
