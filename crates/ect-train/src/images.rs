//! Images out of the samplers: EDM's quantization to `u8`, NumPy `.npy` files and PNG grids, written
//! atomically.

use std::path::Path;

use tch::{Device, Kind, Tensor};

use crate::error::{Result, TrainError};

/// [`ect_config::atomic::write_atomic`] with this crate's error.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    ect_config::atomic::write_atomic(path, bytes).map_err(|e| TrainError::io(e.path, e.source))
}

/// Images in [-1, 1] to u8 the way EDM writes them: `clip(x * 127.5 + 128, 0, 255)`, truncated.
///
/// # Shapes
/// x: [N, C, H, W] float; output: [N, C, H, W] u8 on the CPU.
pub fn to_u8(x: &Tensor) -> Tensor {
    (x * 127.5 + 128.0)
        .clamp(0.0, 255.0)
        .to_kind(Kind::Uint8)
        .to_device(Device::Cpu)
        .contiguous()
}

/// Writes u8 NCHW images as a NumPy `.npy` file (version 1.0, `|u1`, C order).
pub fn write_npy(path: &Path, images: &Tensor) -> Result<()> {
    let size = images.size();
    if images.kind() != Kind::Uint8 || size.len() != 4 {
        return Err(TrainError::invalid(
            "images",
            format!("need u8 [N,C,H,W], got {:?} {size:?}", images.kind()),
        ));
    }
    let data = Vec::<u8>::try_from(images.flatten(0, -1))?;
    let mut bytes = crate::npy::npy_u8_header(&size);
    bytes.extend_from_slice(&data);
    write_atomic(path, &bytes)
}

/// Tiles u8 NCHW images (C = 1 or 3) into a near-square PNG grid with a 1-pixel gap.
pub fn write_png_grid(path: &Path, images: &Tensor) -> Result<()> {
    let size = images.size();
    if images.kind() != Kind::Uint8
        || size.len() != 4
        || !(size[1] == 1 || size[1] == 3)
        || size[0] == 0
    {
        return Err(TrainError::invalid(
            "images",
            format!("need u8 [N,1|3,H,W], got {:?} {size:?}", images.kind()),
        ));
    }
    let (n, c, h, w) = (
        size[0] as usize,
        size[1] as usize,
        size[2] as usize,
        size[3] as usize,
    );
    let cols = (n as f64).sqrt().ceil() as usize;
    let rows = n.div_ceil(cols);
    let (gw, gh) = (cols * (w + 1) + 1, rows * (h + 1) + 1);
    let data = Vec::<u8>::try_from(images.flatten(0, -1))?;
    let mut rgb = vec![0u8; gw * gh * 3];
    for i in 0..n {
        let (oy, ox) = ((i / cols) * (h + 1) + 1, (i % cols) * (w + 1) + 1);
        for y in 0..h {
            for x in 0..w {
                for ch in 0..3 {
                    let src_c = if c == 1 { 0 } else { ch };
                    rgb[((oy + y) * gw + ox + x) * 3 + ch] =
                        data[((i * c + src_c) * h + y) * w + x];
                }
            }
        }
    }
    let img =
        image::RgbImage::from_raw(gw as u32, gh as u32, rgb).expect("buffer sized for the grid");
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| TrainError::external(format!("encoding {}", path.display()), e))?;
    write_atomic(path, &png)
}
