//! Sample files for scoring: `.npy` arrays of `u8` images or floats in [-1, 1], NCHW or NHWC.
//!
//! Generated images are quantized to `u8` before feature extraction exactly as EDM's `generate.py` writes
//! its PNGs, `(x * 127.5 + 128).clip(0, 255).to(uint8)`, so scores are comparable with the published ones.
//! PyTorch evaluates that expression in the tensor's own dtype, so `f32` files are quantized in `f32`
//! ([`quantize_f32`]) and `f64` files in `f64` ([`quantize`]): the two differ by one level on values just
//! below a rounding boundary.

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

/// Reads a samples `.npy` (u8 as is, f32/f64 quantized with [`quantize`]; 3-d arrays are N,H,W
/// grayscale) into N,C,H,W `u8` images.
pub fn load_samples_npy(path: &Path, layout: Layout) -> Result<Images> {
    let array = NpyArray::load(path)?;
    samples_from_array(&array, layout, &path.display().to_string())
}

/// Converts an in-memory array like [`load_samples_npy`]; `name` labels errors.
pub fn samples_from_array(array: &NpyArray, layout: Layout, name: &str) -> Result<Images> {
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
    let pixels: Vec<u8> = match &array.data {
        NpyData::U8(v) => v.clone(),
        NpyData::F32(v) => quantize_all(v.iter().map(|&x| (f64::from(x), quantize_f32(x))), name)?,
        NpyData::F64(v) => quantize_all(v.iter().map(|&x| (x, quantize(x))), name)?,
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

/// Pixels of `(value, quantized value)` pairs; the value is only checked for finiteness.
fn quantize_all(values: impl Iterator<Item = (f64, u8)>, name: &str) -> Result<Vec<u8>> {
    values
        .enumerate()
        .map(|(i, (x, q))| {
            if x.is_finite() {
                Ok(q)
            } else {
                Err(MetricsError::NonFinite {
                    what: format!("samples in {name}"),
                    index: i,
                    value: x,
                })
            }
        })
        .collect()
}
