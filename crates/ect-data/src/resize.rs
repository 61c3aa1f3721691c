//! Pillow's convolution resampling (`Image.resize` with `BOX` or `BICUBIC`, `libImaging/Resample.c`)
//! for 8-bit interleaved images, reproduced operation for operation: the filter support widens with the
//! downscale factor, coefficients are normalized and rounded to 22-bit fixed point, the horizontal pass
//! runs first and is clipped to `u8` before the vertical pass. Used by the ADM/EDM2 ImageNet
//! "center-crop-dhariwal" transform so prepared datasets match the reference tools.

/// Pillow's resampling filters this crate needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// `PIL.Image.BOX`: the average of the covered source pixels.
    Box,
    /// `PIL.Image.BICUBIC`: Keys cubic with a = -0.5.
    Bicubic,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Box => 0.5,
            Filter::Bicubic => 2.0,
        }
    }

    fn eval(self, x: f64) -> f64 {
        match self {
            Filter::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Filter::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output pixel: first source pixel, number of source pixels, fixed-point weights.
struct Coeffs {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    kk: Vec<i32>,
}

fn precompute(in_size: usize, out_size: usize, filter: Filter) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut kk = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's (int) cast truncates toward zero.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(xmax) {
            let w = filter.eval((x as f64 + xmin as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        for (x, kx) in k.iter().enumerate().take(xmax) {
            let v = if ww != 0.0 { kx / ww } else { *kx };
            let scaled = v * (1u32 << PRECISION_BITS) as f64;
            kk[xx * ksize + x] = if v < 0.0 {
                (-0.5 + scaled) as i32
            } else {
                (0.5 + scaled) as i32
            };
        }
        bounds.push((xmin, xmax));
    }
    Coeffs { ksize, bounds, kk }
}

/// Pillow sums in 32-bit `int`: 255 times the absolute coefficient sum (at most about 1.3 * 2^22 for
/// bicubic) stays below 2^31, so `i32` cannot overflow.
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

fn horizontal(src: &[u8], w: usize, h: usize, c: usize, out_w: usize, filter: Filter) -> Vec<u8> {
    // A constant channel count lets the compiler unroll the per-tap work.
    match c {
        1 => horizontal_c::<1>(src, w, h, out_w, filter),
        2 => horizontal_c::<2>(src, w, h, out_w, filter),
        3 => horizontal_c::<3>(src, w, h, out_w, filter),
        _ => horizontal_c::<4>(src, w, h, out_w, filter),
    }
}

fn horizontal_c<const C: usize>(
    src: &[u8],
    w: usize,
    h: usize,
    out_w: usize,
    filter: Filter,
) -> Vec<u8> {
    let co = precompute(w, out_w, filter);
    let mut out = vec![0u8; out_w * h * C];
    for (row, out_row) in src
        .chunks_exact(w * C)
        .zip(out.chunks_exact_mut(out_w * C))
        .take(h)
    {
        for (xx, (&(xmin, xmax), px)) in co
            .bounds
            .iter()
            .zip(out_row.chunks_exact_mut(C))
            .enumerate()
        {
            let k = &co.kk[xx * co.ksize..xx * co.ksize + xmax];
            let mut ss = [1i32 << (PRECISION_BITS - 1); C];
            for (p, &kx) in row[xmin * C..(xmin + xmax) * C].chunks_exact(C).zip(k) {
                for ch in 0..C {
                    ss[ch] += p[ch] as i32 * kx;
                }
            }
            for ch in 0..C {
                px[ch] = clip8(ss[ch]);
            }
        }
    }
    out
}

fn vertical(src: &[u8], w: usize, h: usize, c: usize, out_h: usize, filter: Filter) -> Vec<u8> {
    let co = precompute(h, out_h, filter);
    let stride = w * c;
    let mut out = vec![0u8; stride * out_h];
    let mut acc = vec![0i32; stride];
    for (yy, (&(ymin, ymax), out_row)) in co
        .bounds
        .iter()
        .zip(out.chunks_exact_mut(stride))
        .enumerate()
    {
        let k = &co.kk[yy * co.ksize..yy * co.ksize + ymax];
        acc.fill(1i32 << (PRECISION_BITS - 1));
        for (y, &ky) in k.iter().enumerate() {
            let row = &src[(y + ymin) * stride..(y + ymin + 1) * stride];
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += v as i32 * ky;
            }
        }
        for (o, &a) in out_row.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

/// Resizes an interleaved `w x h x c` image to `out_w x out_h` like Pillow's `Image.resize`.
pub fn resize(
    src: &[u8],
    w: usize,
    h: usize,
    c: usize,
    out_w: usize,
    out_h: usize,
    filter: Filter,
) -> Vec<u8> {
    let mut px = src.to_vec();
    if out_w != w {
        px = horizontal(&px, w, h, c, out_w, filter);
    }
    if out_h != h {
        px = vertical(&px, out_w, h, c, out_h, filter);
    }
    px
}

/// ADM's `center_crop_arr` / EDM2's `--transform=center-crop-dhariwal`: halve with a box filter while
/// the short side is at least twice `size`, bicubic-resize the short side to `size` (Python's
/// round-half-even on the long side), then take the centered `size x size` crop. Interleaved in and out.
///
/// # Panics
/// As [`resize`].
pub fn center_crop_dhariwal(src: &[u8], w: usize, h: usize, c: usize, size: usize) -> Vec<u8> {
    if size == 0 || w == 0 || h == 0 {
        return Vec::new();
    }
    let (mut px, mut w, mut h) = (src.to_vec(), w, h);
    while w.min(h) >= 2 * size {
        let (nw, nh) = (w / 2, h / 2);
        px = resize(&px, w, h, c, nw, nh, Filter::Box);
        (w, h) = (nw, nh);
    }
    let scale = size as f64 / w.min(h) as f64;
    let (nw, nh) = (
        (w as f64 * scale).round_ties_even() as usize,
        (h as f64 * scale).round_ties_even() as usize,
    );
    if (nw, nh) != (w, h) {
        px = resize(&px, w, h, c, nw, nh, Filter::Bicubic);
    }
    let (y0, x0) = ((nh.saturating_sub(size)) / 2, (nw.saturating_sub(size)) / 2);
    let mut out = Vec::with_capacity(size * size * c);
    for y in y0..y0 + size.min(nh) {
        out.extend_from_slice(&px[(y * nw + x0) * c..(y * nw + x0 + size.min(nw)) * c]);
    }
    out
}
