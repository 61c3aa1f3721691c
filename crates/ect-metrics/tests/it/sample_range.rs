//! Issue 15: float samples outside their declared range are an error naming the range found, not
//! clipped; [0, 1] images are quantized as torchvision's `save_image` when declared.

use ect_metrics::npy::{NpyArray, NpyData};
use ect_metrics::samples::{
    quantize_unit, quantize_unit_f32, samples_from_array, Layout, SampleOptions, ValueRange,
};
use ect_metrics::MetricsError;

fn f32_array(values: Vec<f32>) -> NpyArray {
    let n = values.len();
    NpyArray::new(vec![1, 1, 1, n], NpyData::F32(values)).unwrap()
}

const UNIT: SampleOptions = SampleOptions {
    layout: Layout::Auto,
    range: ValueRange::ZeroToOne,
};

#[test]
fn floats_outside_the_declared_range_are_refused() {
    let pixels: Vec<f32> = (0..=255).map(|p| p as f32).collect();
    let e = samples_from_array(
        &f32_array(pixels.clone()),
        &SampleOptions::default(),
        "s.npy",
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            MetricsError::SampleRange {
                min: 0.0,
                max: 255.0,
                range: ValueRange::MinusOneToOne,
                ..
            }
        ),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.starts_with("s.npy: float samples span [0, 255], outside the declared range [-1, 1]")
            && msg.contains("--range 0,1")
            && msg.contains("uint8"),
        "{msg}"
    );
    let msg = samples_from_array(&f32_array(pixels), &UNIT, "s.npy")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("[0, 255], outside the declared range [0, 1]"),
        "{msg}"
    );
    // Just outside either end, in f64 too.
    for (v, range) in [
        (-1.0001, ValueRange::MinusOneToOne),
        (-1e-7, ValueRange::ZeroToOne),
    ] {
        let a = NpyArray::new(vec![1, 1, 1, 2], NpyData::F64(vec![0.5, v])).unwrap();
        let opts = SampleOptions {
            range,
            ..Default::default()
        };
        let msg = samples_from_array(&a, &opts, "t.npy")
            .unwrap_err()
            .to_string();
        assert!(msg.contains(&format!("[{v}, 0.5]")), "{msg}");
    }
    // u8 samples are pixels whatever the range.
    let u8s = NpyArray::new(vec![1, 1, 1, 3], NpyData::U8(vec![0, 128, 255])).unwrap();
    assert_eq!(
        samples_from_array(&u8s, &UNIT, "u.npy").unwrap().pixels,
        [0, 128, 255]
    );
}

#[test]
fn unit_range_images_are_quantized_as_torchvision() {
    // Every level p/255 comes back as p, in f32 and f64; both ends and mid-points of the map.
    let levels: Vec<f32> = (0..=255).map(|p| p as f32 / 255.0).collect();
    let px = samples_from_array(&f32_array(levels.clone()), &UNIT, "a")
        .unwrap()
        .pixels;
    assert_eq!(px, (0..=255).collect::<Vec<u8>>());
    let f64s = NpyArray::new(
        vec![1, 1, 1, 256],
        NpyData::F64(levels.iter().map(|&x| f64::from(x)).collect()),
    )
    .unwrap();
    let px = samples_from_array(&f64s, &UNIT, "b").unwrap().pixels;
    assert_eq!(px, (0..=255).collect::<Vec<u8>>());
    // (x * 255 + 0.5) truncated: rounds half up.
    assert_eq!(quantize_unit(0.5 / 255.0), 1);
    assert_eq!(quantize_unit(0.49 / 255.0), 0);
    assert_eq!(quantize_unit_f32(1.0), 255);
    assert_eq!(quantize_unit(0.0), 0);
}

#[test]
fn ranges_parse_from_their_command_line_words() {
    for (text, want) in [
        ("-1,1", ValueRange::MinusOneToOne),
        ("[-1, 1]", ValueRange::MinusOneToOne),
        ("0,1", ValueRange::ZeroToOne),
        (" 0.0 , 1.0 ", ValueRange::ZeroToOne),
    ] {
        assert_eq!(text.parse::<ValueRange>().unwrap(), want, "{text}");
    }
    for bad in ["0,255", "1,-1", "-1", "", "a,b"] {
        let e = bad.parse::<ValueRange>().unwrap_err().to_string();
        assert!(e.contains("-1,1") && e.contains("0,1"), "{bad}: {e}");
    }
    assert_eq!(ValueRange::ZeroToOne.to_string(), "[0, 1]");
}
