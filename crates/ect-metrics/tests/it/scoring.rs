//! Scoring sample files like the reference: quantization, layouts, statistics with a recorded count.

use std::path::PathBuf;

use ect_metrics::npy::{NpyArray, NpyData};
use ect_metrics::samples::{
    load_samples_npy, quantize, quantize_f32, samples_from_array, Images, Layout,
};
use ect_metrics::score::{
    fd_of_files, fd_score, open_extractor, stats_of_dataset, stats_of_images, ExtractorChoice,
};
use ect_metrics::{frechet_distance, save_stats_npz, FeatureStats, Score};
use tch::Device;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn quantization_matches_edm_generate() {
    let _torch = crate::torch();
    // (x * 127.5 + 128).clip(0, 255).to(uint8)
    assert_eq!(quantize(-1.0), 0);
    assert_eq!(quantize(1.0), 255);
    assert_eq!(quantize(0.0), 128);
    assert_eq!(quantize(-2.0), 0);
    assert_eq!(quantize(3.0), 255);
    assert_eq!(quantize(0.5 / 127.5 - 1.0), 1); // 1.0 exactly -> 1
    assert_eq!(quantize(0.49 / 127.5 - 1.0), 0);
}

/// A float32 value just above -254/255 whose product with 127.5 rounds up to exactly -127 in float32
/// (pixel 1, what `torch.tensor([x], dtype=torch.float32) * 127.5 + 128` gives) but stays below it in
/// float64 (pixel 0). Files keep their dtype's arithmetic.
#[test]
fn float32_samples_are_quantized_in_float32() {
    let _torch = crate::torch();
    let x = f32::from_bits(3_212_771_071);
    assert_eq!(x, -0.996_078_43_f32);
    assert_eq!(quantize_f32(x), 1);
    assert_eq!(quantize(f64::from(x)), 0);
    assert_eq!(quantize_f32(-1.0), 0);
    assert_eq!(quantize_f32(1.0), 255);
    assert_eq!(quantize_f32(0.0), 128);
    assert_eq!(quantize_f32(-7.0), 0);
    let as_f32 = NpyArray::new(vec![1, 1, 1, 1], NpyData::F32(vec![x])).unwrap();
    let as_f64 = NpyArray::new(vec![1, 1, 1, 1], NpyData::F64(vec![f64::from(x)])).unwrap();
    assert_eq!(
        samples_from_array(&as_f32, &Layout::Auto.into(), "f32")
            .unwrap()
            .pixels,
        [1]
    );
    assert_eq!(
        samples_from_array(&as_f64, &Layout::Auto.into(), "f64")
            .unwrap()
            .pixels,
        [0]
    );
}

#[test]
fn layouts_and_dtypes_agree() {
    let _torch = crate::torch();
    // Two 3x2x2 images, NCHW u8.
    let nchw: Vec<u8> = (0..24).collect();
    let mut nhwc = vec![0u8; 24];
    for i in 0..2 {
        for c in 0..3 {
            for p in 0..4 {
                nhwc[(i * 4 + p) * 3 + c] = nchw[(i * 3 + c) * 4 + p];
            }
        }
    }
    let want = Images {
        pixels: nchw.clone(),
        n: 2,
        c: 3,
        h: 2,
        w: 2,
    };
    let a = NpyArray::new(vec![2, 3, 2, 2], NpyData::U8(nchw.clone())).unwrap();
    let b = NpyArray::new(vec![2, 2, 2, 3], NpyData::U8(nhwc.clone())).unwrap();
    assert_eq!(
        samples_from_array(&a, &Layout::Auto.into(), "a").unwrap(),
        want
    );
    assert_eq!(
        samples_from_array(&b, &Layout::Auto.into(), "b").unwrap(),
        want
    );
    assert_eq!(
        samples_from_array(&b, &Layout::Nhwc.into(), "b").unwrap(),
        want
    );
    // Floats in [-1, 1] whose quantization gives the same pixels.
    let floats: Vec<f32> = nhwc
        .iter()
        .map(|&p| (f32::from(p) - 127.5) / 127.5)
        .collect();
    let f = NpyArray::new(vec![2, 2, 2, 3], NpyData::F32(floats)).unwrap();
    assert_eq!(
        samples_from_array(&f, &Layout::Nhwc.into(), "f").unwrap(),
        want
    );
    // Files: through .npy on disk.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("samples.npy");
    b.save(&path).unwrap();
    assert_eq!(load_samples_npy(&path, &Layout::Auto.into()).unwrap(), want);
    // N,H,W grayscale.
    let g = NpyArray::new(vec![2, 3, 4], NpyData::U8((0..24).collect())).unwrap();
    let gi = samples_from_array(&g, &Layout::Auto.into(), "g").unwrap();
    assert_eq!((gi.n, gi.c, gi.h, gi.w), (2, 1, 3, 4));
}

#[test]
fn bad_sample_files_give_clear_errors() {
    let _torch = crate::torch();
    let e = samples_from_array(
        &NpyArray::new(vec![2, 5, 5, 5], NpyData::U8(vec![0; 250])).unwrap(),
        &Layout::Auto.into(),
        "s.npy",
    );
    assert!(e.unwrap_err().to_string().contains("s.npy"));
    let e = samples_from_array(
        &NpyArray::new(vec![4, 4], NpyData::U8(vec![0; 16])).unwrap(),
        &Layout::Auto.into(),
        "t.npy",
    );
    assert!(e.unwrap_err().to_string().contains("[4, 4]"));
    let nan = NpyArray::new(vec![1, 1, 1, 2], NpyData::F64(vec![0.0, f64::NAN])).unwrap();
    let e = samples_from_array(&nan, &Layout::Nchw.into(), "n.npy").unwrap_err();
    assert!(
        e.to_string().contains("n.npy") && e.to_string().contains("NaN"),
        "{e}"
    );
    assert!("nhwc".parse::<Layout>().is_ok() && "hwc".parse::<Layout>().is_err());
}

#[test]
fn statistics_of_images_and_datasets_record_the_count() {
    let _torch = crate::torch();
    let ex = open_extractor(
        &ExtractorChoice::Inception {
            path: fixture("tiny_inception.pt"),
        },
        Device::Cpu,
    )
    .unwrap();
    // Five 1x4x4 images with constant values 0, 51, 102, 153, 204: features are value/255 on every dim.
    let values = [0u8, 51, 102, 153, 204];
    let pixels: Vec<u8> = values
        .iter()
        .flat_map(|&v| std::iter::repeat_n(v, 16))
        .collect();
    let images = Images {
        pixels: pixels.clone(),
        n: 5,
        c: 1,
        h: 4,
        w: 4,
    };
    let stats = stats_of_images(&images, ex.as_ref(), 2).unwrap();
    assert_eq!(stats.num_samples(), Some(5));
    assert_eq!(stats.dim(), 2048);
    // mean 0.4, unbiased variance of {0, .2, .4, .6, .8} = 0.1, and every pair of dims fully correlated.
    assert!(stats.mu().iter().all(|m| (m - 0.4).abs() < 1e-6));
    assert!((stats.sigma()[0] - 0.1).abs() < 1e-6 && (stats.sigma()[2047] - 0.1).abs() < 1e-6);

    let ds = ect_data::InMemoryDataset::new("mem", [1, 4, 4], pixels, None, None).unwrap();
    let from_ds = stats_of_dataset(&ds, ex.as_ref(), 3, None).unwrap();
    assert_eq!(from_ds.num_samples(), Some(5));
    // Other batch boundaries change only the rounding.
    let max_diff = |a: &[f64], b: &[f64]| {
        a.iter()
            .zip(b)
            .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
    };
    assert!(max_diff(from_ds.mu(), stats.mu()) < 1e-12);
    assert!(max_diff(from_ds.sigma(), stats.sigma()) < 1e-12);
    let partial = stats_of_dataset(&ds, ex.as_ref(), 3, Some(4)).unwrap();
    assert_eq!(partial.num_samples(), Some(4));

    let score = fd_score(&stats, &from_ds, "fid", ex.name(), Some("mem")).unwrap();
    assert_eq!(score.num_samples, 5);
    assert!(score.value.abs() < 1e-6 * 2048.0 * 0.2, "{}", score.value);
    let json = serde_json::to_string(&score).unwrap();
    assert!(
        json.contains("\"num_samples\":5") && json.contains("\"extractor\":\"inception-v3\""),
        "{json}"
    );
    assert_eq!(serde_json::from_str::<Score>(&json).unwrap(), score);
}

#[test]
fn fd_of_files_reads_both_and_checks_dims() {
    let _torch = crate::torch();
    let dir = tempfile::tempdir().unwrap();
    let a = FeatureStats::new(vec![0.0, 0.0], vec![1.0, 0.0, 0.0, 1.0]).unwrap();
    let b = FeatureStats::new(vec![3.0, 4.0], vec![4.0, 0.0, 0.0, 9.0]).unwrap();
    let (pa, pb) = (dir.path().join("a.npz"), dir.path().join("b.npz"));
    save_stats_npz(&pa, &a).unwrap();
    save_stats_npz(&pb, &b).unwrap();
    let fd = fd_of_files(&pa, &pb).unwrap();
    assert!((fd - (25.0 + 1.0 + 4.0)).abs() < 1e-12, "{fd}");
    assert_eq!(fd, frechet_distance(&a, &b).unwrap());
    let err = fd_of_files(&pa, &fixture("stats_ok.npz")).unwrap_err();
    assert!(err.to_string().contains("stats_ok.npz"), "{err}");
    // Statistics without a sample count cannot make a Score.
    assert!(fd_score(&a, &b, "fid", "x", None).is_err());
}
