//! Sample files for scoring: `.npy` arrays of `u8` images or of floats in a declared range ([-1, 1] by
//! default, or [0, 1]), NCHW or NHWC.
//!
//! Generated images are quantized to `u8` before feature extraction exactly as EDM's `generate.py` writes
//! its PNGs, `(x * 127.5 + 128).clip(0, 255).to(uint8)`, so scores are comparable with the published ones.
//! PyTorch evaluates that expression in the tensor's own dtype, so `f32` files are quantized in `f32`
//! ([`quantize_f32`]) and `f64` files in `f64` ([`quantize`]): the two differ by one level on values just
//! below a rounding boundary. Images declared in [0, 1] are quantized as torchvision's `save_image` does,
//! `(x * 255 + 0.5).clamp(0, 255).to(uint8)` ([`quantize_unit`]), which is the same map after `2x - 1`.
//!
//! Float values outside the declared range are an error naming the range found, not clipped: clipping
//! made a file of 0-255 floats score as nearly white images without a word.

use std::path::Path;

use crate::error::{MetricsError, Result};
use crate::npy::{NpyArray, NpyData};

/// Memory layout of a 4-d image array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// NCHW when dimension 1 is 1 or 3, else NHWC when the last dimension is 1 or 3.
    #[default]
    Auto,
    /// Images, channels, height, width.
    Nchw,
    /// Images, height, width, channels.
    Nhwc,
}

impl std::str::FromStr for Layout {
    type Err = MetricsError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Layout::Auto),
            "nchw" => Ok(Layout::Nchw),
            "nhwc" => Ok(Layout::Nhwc),
            other => Err(MetricsError::arg(
                "layout",
                other,
                "expected auto, nchw or nhwc",
            )),
        }
    }
}

/// The range float samples are declared to be in, which fixes how they become pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ValueRange {
    /// [-1, 1], quantized as EDM's `generate.py`: `(x * 127.5 + 128).clip(0, 255)`, truncated.
    #[default]
    MinusOneToOne,
    /// [0, 1], quantized as torchvision's `save_image`: `(x * 255 + 0.5).clamp(0, 255)`, truncated.
    ZeroToOne,
}

impl ValueRange {
    /// The smallest and largest value allowed.
    pub fn bounds(self) -> (f64, f64) {
        match self {
            ValueRange::MinusOneToOne => (-1.0, 1.0),
            ValueRange::ZeroToOne => (0.0, 1.0),
        }
    }

    /// Where the range's quantization comes from (for messages).
    pub fn convention(self) -> &'static str {
        match self {
            ValueRange::MinusOneToOne => {
                "quantized as EDM's generate.py: (x * 127.5 + 128).clip(0, 255)"
            }
            ValueRange::ZeroToOne => {
                "quantized as torchvision's save_image: (x * 255 + 0.5).clamp(0, 255)"
            }
        }
    }
}

impl std::fmt::Display for ValueRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (lo, hi) = self.bounds();
        write!(f, "[{lo}, {hi}]")
    }
}

impl std::str::FromStr for ValueRange {
    type Err = MetricsError;
    /// `LO,HI` (brackets and spaces allowed): `-1,1` or `0,1`.
    fn from_str(s: &str) -> Result<Self> {
        let unsupported = || {
            MetricsError::arg(
                "range",
                s,
                "supported ranges are -1,1 (EDM's generate.py) and 0,1 (torchvision's save_image); \
                 store 0-255 pixels as uint8",
            )
        };
        let inner = s.trim().trim_start_matches('[').trim_end_matches(']');
        let (lo, hi) = inner.split_once(',').ok_or_else(unsupported)?;
        let parse = |v: &str| v.trim().parse::<f64>().map_err(|_| unsupported());
        match (parse(lo)?, parse(hi)?) {
            (lo, hi) if lo == -1.0 && hi == 1.0 => Ok(ValueRange::MinusOneToOne),
            (lo, hi) if lo == 0.0 && hi == 1.0 => Ok(ValueRange::ZeroToOne),
            _ => Err(unsupported()),
        }
    }
}

/// How to read a samples array: its layout and the range of float values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SampleOptions {
    /// Which axis holds the channels.
    pub layout: Layout,
    /// The range float values are declared to be in (`u8` arrays are pixels as they are).
    pub range: ValueRange,
}

impl From<Layout> for SampleOptions {
    fn from(layout: Layout) -> Self {
        SampleOptions {
            layout,
            ..Default::default()
        }
    }
}

/// `u8` images in N,C,H,W order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Images {
    /// Pixels, `n * c * h * w`.
    pub pixels: Vec<u8>,
    /// Number of images.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
}

/// The reference's quantization of a generated `f64` value in [-1, 1] to a pixel (EDM's sampler returns
/// float64 images, so this is what `generate.py` does to them).
pub fn quantize(x: f64) -> u8 {
    // `as u8` truncates like `.to(torch.uint8)` on the clipped, non-negative value.
    (x * 127.5 + 128.0).clamp(0.0, 255.0) as u8
}

/// The reference's quantization of a generated `f32` value: the same expression evaluated in float32, as
/// PyTorch does for a float32 tensor (the product `x * 127.5` is rounded to f32 before adding 128).
pub fn quantize_f32(x: f32) -> u8 {
    (x * 127.5f32 + 128.0f32).clamp(0.0, 255.0) as u8
}

/// The reference's quantization of an `f64` value declared in [0, 1] (torchvision's `save_image`).
pub fn quantize_unit(x: f64) -> u8 {
    (x * 255.0 + 0.5).clamp(0.0, 255.0) as u8
}

/// [`quantize_unit`] evaluated in float32, as PyTorch does for a float32 tensor.
pub fn quantize_unit_f32(x: f32) -> u8 {
    (x * 255.0f32 + 0.5f32).clamp(0.0, 255.0) as u8
}

/// Reads a samples `.npy` (u8 as is, f32/f64 checked against `options.range` and quantized with its
/// convention; 3-d arrays are N,H,W grayscale) into N,C,H,W `u8` images.
pub fn load_samples_npy(path: &Path, options: &SampleOptions) -> Result<Images> {
    let array = NpyArray::load(path)?;
    samples_from_array(&array, options, &path.display().to_string())
}

/// Converts an in-memory array like [`load_samples_npy`]; `name` labels errors.
pub fn samples_from_array(array: &NpyArray, options: &SampleOptions, name: &str) -> Result<Images> {
    let layout = options.layout;
    let bad = |reason: String| MetricsError::Npy {
        path: name.into(),
        reason,
    };
    let shape = match array.shape.as_slice() {
        [n, h, w] => [*n, 1, *h, *w],
        [a, b, c, d] => [*a, *b, *c, *d],
        other => {
            return Err(bad(format!(
                "expected images of shape [N, C, H, W], [N, H, W, C] or [N, H, W], got {other:?}"
            )))
        }
    };
    let nhwc = match (layout, array.shape.len()) {
        (_, 3) => false,
        (Layout::Nchw, _) => false,
        (Layout::Nhwc, _) => true,
        (Layout::Auto, _) if matches!(shape[1], 1 | 3) => false,
        (Layout::Auto, _) if matches!(shape[3], 1 | 3) => true,
        (Layout::Auto, _) => {
            return Err(bad(format!(
                "cannot tell the channel axis of shape {:?}; pass the layout",
                array.shape
            )))
        }
    };
    let range = options.range;
    let pixels: Vec<u8> = match (&array.data, range) {
        (NpyData::U8(v), _) => v.clone(),
        (NpyData::F32(v), ValueRange::MinusOneToOne) => to_pixels(v, quantize_f32, range, name)?,
        (NpyData::F32(v), ValueRange::ZeroToOne) => to_pixels(v, quantize_unit_f32, range, name)?,
        (NpyData::F64(v), ValueRange::MinusOneToOne) => to_pixels(v, quantize, range, name)?,
        (NpyData::F64(v), ValueRange::ZeroToOne) => to_pixels(v, quantize_unit, range, name)?,
    };
    let [n, c, h, w] = if nhwc {
        [shape[0], shape[3], shape[1], shape[2]]
    } else {
        shape
    };
    if !matches!(c, 1 | 3) {
        return Err(bad(format!(
            "images have {c} channels; expected 1 or 3 (shape {:?})",
            array.shape
        )));
    }
    let pixels = if nhwc {
        let mut out = vec![0u8; pixels.len()];
        for i in 0..n {
            for y in 0..h {
                for x in 0..w {
                    for ch in 0..c {
                        out[((i * c + ch) * h + y) * w + x] =
                            pixels[((i * h + y) * w + x) * c + ch];
                    }
                }
            }
        }
        out
    } else {
        pixels
    };
    Ok(Images { pixels, n, c, h, w })
}

/// The pixels of float `values` after checking that every value is finite and inside `range`.
fn to_pixels<T: Copy + Into<f64>>(
    values: &[T],
    quantize: impl Fn(T) -> u8,
    range: ValueRange,
    name: &str,
) -> Result<Vec<u8>> {
    let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
    for (index, &v) in values.iter().enumerate() {
        let x: f64 = v.into();
        if !x.is_finite() {
            return Err(MetricsError::NonFinite {
                what: format!("samples in {name}"),
                index,
                value: x,
            });
        }
        min = min.min(x);
        max = max.max(x);
    }
    let (lo, hi) = range.bounds();
    if !values.is_empty() && (min < lo || max > hi) {
        return Err(MetricsError::SampleRange {
            path: name.into(),
            min,
            max,
            range,
        });
    }
    Ok(values.iter().map(|&v| quantize(v)).collect())
}
