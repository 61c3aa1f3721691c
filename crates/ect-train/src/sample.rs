//! Samplers and sample output: consistency sampling on any time grid (SPEC-ECT section 5), EDM's Heun
//! sampler on Karras times for diffusion models, `.npy` (u8, NCHW) and PNG grids.

use std::io::Write;
use std::path::Path;

use tch::{Device, Kind, Tensor};

use crate::error::{Result, TrainError};
use crate::loss::{Denoiser, Pass};

/// `[N]` f32 times equal to `t`.
fn times(n: i64, t: f64, device: Device) -> Tensor {
    Tensor::full([n], t, (Kind::Float, device))
}

/// Consistency sampling: `x = z * t0`; for each step `x = f(x, t_i)`, then `x += t_{i+1} * noise_i` while
/// `t_{i+1} > 0`. `z` is standard normal; the extra noise comes from `fresh_noise` (called once per
/// intermediate step, so callers control every random draw).
///
/// # Shapes
/// z: [N, C, H, W]; labels: `[N, L]` or `None`; output: [N, C, H, W] in about [-1, 1].
pub fn consistency_sample(
    net: &dyn Denoiser,
    z: &Tensor,
    labels: Option<&Tensor>,
    grid: &[f64],
    mut fresh_noise: impl FnMut() -> Tensor,
) -> Tensor {
    tch::no_grad(|| {
        let n = z.size()[0];
        let mut x = z * grid[0];
        for w in grid.windows(2) {
            x = net.denoise(&x, &times(n, w[0], z.device()), labels, Pass::Eval);
            if w[1] > 0.0 {
                x += fresh_noise() * w[1];
            }
        }
        x
    })
}

/// Karras times `s_i = (smax^(1/rho) + i/(n-1) (smin^(1/rho) - smax^(1/rho)))^rho` for `i < n`, then 0.
pub fn karras_grid(n: usize, sigma_min: f64, sigma_max: f64, rho: f64) -> Vec<f64> {
    let mut t = ect_schedule::sampling::karras_sigmas(n, sigma_min, sigma_max, rho);
    if t.last() != Some(&0.0) {
        t.push(0.0);
    }
    t
}

/// EDM's deterministic Heun sampler (`S_churn = 0`) on a time grid ending in 0; the state is kept in
/// float64 as in EDM, the network runs in float32 with [`Pass::Denoise`]. `grid.len() - 1` steps take
/// `2 (len - 1) - 1`
/// evaluations (35 for 18 Karras times).
///
/// # Shapes
/// z: [N, C, H, W] standard normal; output: [N, C, H, W].
pub fn heun_sample(
    net: &dyn Denoiser,
    z: &Tensor,
    labels: Option<&Tensor>,
    grid: &[f64],
) -> Tensor {
    tch::no_grad(|| {
        let n = z.size()[0];
        let dev = z.device();
        let den = |x: &Tensor, t: f64| {
            net.denoise(
                &x.to_kind(Kind::Float),
                &times(n, t, dev),
                labels,
                Pass::Denoise,
            )
            .to_kind(Kind::Double)
        };
        let mut x = z.to_kind(Kind::Double) * grid[0];
        let steps = grid.len() - 1;
        for (i, w) in grid.windows(2).enumerate() {
            let (t_cur, t_next) = (w[0], w[1]);
            let d_cur = (&x - den(&x, t_cur)) / t_cur;
            let mut x_next = &x + &d_cur * (t_next - t_cur);
            if i + 1 < steps {
                let d_prime = (&x_next - den(&x_next, t_next)) / t_next;
                x_next = &x + (d_cur * 0.5 + d_prime * 0.5) * (t_next - t_cur);
            }
            x = x_next;
        }
        x.to_kind(Kind::Float)
    })
}

/// One-hot labels for class indices.
///
/// # Shapes
/// output: [N, label_dim] f32.
pub fn one_hot(classes: &[i64], label_dim: i64, device: Device) -> Tensor {
    let idx = Tensor::from_slice(classes).to_device(device);
    idx.one_hot(label_dim).to_kind(Kind::Float)
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
    let shape = size
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let mut header = format!("{{'descr': '|u1', 'fortran_order': False, 'shape': ({shape}), }}");
    // Magic (6) + version (2) + header length (2) + header + '\n' must be a multiple of 64.
    let pad = (64 - (10 + header.len() + 1) % 64) % 64;
    header.push_str(&" ".repeat(pad));
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + data.len());
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&data);
    write_atomic(path, &bytes)
}

/// Writes bytes to `path` through a temporary file in the same directory and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("out")
    ));
    let mut f = std::fs::File::create(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| TrainError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))
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
