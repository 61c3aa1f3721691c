//! PNG/JPEG bytes to C,H,W `u8` pixels, with the channel count the file has (like EDM's loader: gray
//! stays 1 channel, RGBA stays 4), and C,H,W pixels back to PNG.

use std::path::Path;

use image::{DynamicImage, ImageEncoder};

use crate::error::{DataError, Result};

/// A decoded image, C,H,W.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// C,H,W.
    pub shape: [usize; 3],
    /// Pixels, C,H,W.
    pub pixels: Vec<u8>,
}

/// H,W,C interleaved to C,H,W planar.
pub fn hwc_to_chw(hwc: &[u8], c: usize, out: &mut [u8]) {
    if c == 1 {
        out.copy_from_slice(hwc);
        return;
    }
    let plane = hwc.len() / c;
    for (p, px) in hwc.chunks_exact(c).enumerate() {
        for (ch, &v) in px.iter().enumerate() {
            out[ch * plane + p] = v;
        }
    }
}

/// C,H,W planar to H,W,C interleaved.
pub fn chw_to_hwc(chw: &[u8], c: usize) -> Vec<u8> {
    if c == 1 {
        return chw.to_vec();
    }
    let plane = chw.len() / c;
    let mut out = vec![0u8; chw.len()];
    for (p, px) in out.chunks_exact_mut(c).enumerate() {
        for (ch, v) in px.iter_mut().enumerate() {
            *v = chw[ch * plane + p];
        }
    }
    out
}

/// Decodes an image to 8-bit samples, keeping its channel count; `path` names it in errors.
pub fn decode_dynamic(bytes: &[u8], path: &Path) -> Result<DynamicImage> {
    image::load_from_memory(bytes)
        .map_err(|e| DataError::format(path, format!("cannot decode image: {e}")))
}

/// The 8-bit, channel-preserving interleaved pixels of a decoded image.
pub fn to_u8_interleaved(img: DynamicImage) -> (usize, usize, usize, Vec<u8>) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (c, data) = match img {
        DynamicImage::ImageLuma8(b) => (1, b.into_raw()),
        DynamicImage::ImageLumaA8(b) => (2, b.into_raw()),
        DynamicImage::ImageRgb8(b) => (3, b.into_raw()),
        DynamicImage::ImageRgba8(b) => (4, b.into_raw()),
        DynamicImage::ImageLuma16(_) => (1, img.to_luma8().into_raw()),
        DynamicImage::ImageLumaA16(_) => (2, img.to_luma_alpha8().into_raw()),
        other if other.color().has_alpha() => (4, other.to_rgba8().into_raw()),
        other => (3, other.to_rgb8().into_raw()),
    };
    (c, h, w, data)
}

/// Decodes PNG or JPEG bytes to C,H,W.
pub fn decode(bytes: &[u8], path: &Path) -> Result<Decoded> {
    let (c, h, w, hwc) = to_u8_interleaved(decode_dynamic(bytes, path)?);
    let mut pixels = vec![0u8; hwc.len()];
    hwc_to_chw(&hwc, c, &mut pixels);
    Ok(Decoded {
        shape: [c, h, w],
        pixels,
    })
}

/// Encodes C,H,W pixels (1, 2, 3 or 4 channels) as PNG.
pub fn encode_png(chw: &[u8], shape: [usize; 3], path: &Path) -> Result<Vec<u8>> {
    let [c, h, w] = shape;
    let color = match c {
        1 => image::ExtendedColorType::L8,
        2 => image::ExtendedColorType::La8,
        3 => image::ExtendedColorType::Rgb8,
        4 => image::ExtendedColorType::Rgba8,
        _ => {
            return Err(DataError::format(
                path,
                format!("cannot write a {c}-channel image as PNG"),
            ))
        }
    };
    let hwc = chw_to_hwc(chw, c);
    let mut out = Vec::new();
    let enc = image::codecs::png::PngEncoder::new_with_quality(
        &mut out,
        image::codecs::png::CompressionType::Fast,
        image::codecs::png::FilterType::Adaptive,
    );
    enc.write_image(&hwc, w as u32, h as u32, color)
        .map_err(|e| DataError::format(path, format!("cannot encode PNG: {e}")))?;
    Ok(out)
}
