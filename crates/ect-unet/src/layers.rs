//! The EDM building blocks (`training/networks.py`): Linear, Conv2d with fused FIR resampling,
//! GroupNorm, self-attention, and the two noise-level embeddings.

use crate::builder::{weight_init, Builder, Init};
use crate::error::UnetError;
use crate::flops::{self, OpKind};
use tch::{Kind, Tensor};

/// Fully-connected layer `x W^T + b` with the reference initialization.
#[derive(Debug)]
pub struct Linear {
    /// `[out, in]`.
    pub weight: Tensor,
    /// `[out]`, if the layer has a bias.
    pub bias: Option<Tensor>,
}

impl Linear {
    /// Creates `weight` (and `bias`) under `b`, drawn as the reference does (weight first, then bias).
    pub fn new(
        b: &Builder<'_>,
        in_features: i64,
        out_features: i64,
        bias: bool,
        init: Init,
    ) -> Self {
        let weight = b.param("weight", &[out_features, in_features], || {
            weight_init(
                &[out_features, in_features],
                init.mode,
                in_features,
                out_features,
            ) * init.weight
        });
        let bias = bias.then(|| {
            b.param("bias", &[out_features], || {
                weight_init(&[out_features], init.mode, in_features, out_features) * init.bias
            })
        });
        Linear { weight, bias }
    }

    /// # Shapes
    /// x: [N, in] -> [N, out].
    pub fn forward(&self, x: &Tensor) -> Tensor {
        flops::linear(x, &self.weight);
        x.linear(&self.weight, self.bias.as_ref())
    }
}

/// Up- or downsampling of a [`Conv2d`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resample {
    /// Keep the resolution.
    Keep,
    /// Double it (transposed FIR filter, stride 2).
    Up,
    /// Halve it (FIR filter, stride 2).
    Down,
}

/// 2-D FIR resampling by a factor 2 with the normalized outer-product filter, as a depthwise
/// (transposed) convolution, except that an unpadded `[a, a]` filter downsamples with a 2x2 average
/// pool (the same sum of the same four products): the `resample_1x1_filter_fwd_bwd` bench measured
/// pooling about 40% faster forward+backward at DDPM++'s 32x32x256 (batch 8), and even at the small
/// SongUNet's 32x32x32. Upsampling keeps the transposed convolution (nearest-neighbour upsampling
/// was not consistently faster there).
#[derive(Debug)]
pub struct FirResample {
    /// `[1, 1, k, k]`, the buffer `resample_filter` of the reference.
    pub filter: Tensor,
    taps: usize,
    /// `[a, a]`: the normalized filter is `[[1/4, 1/4], [1/4, 1/4]]`, a 2x2 average. This assumes
    /// the buffer keeps that value; a loaded checkpoint's `resample_filter` is the same constant.
    box_filter: bool,
}

impl FirResample {
    /// Registers the `resample_filter` buffer under `b`.
    pub fn new(b: &Builder<'_>, taps: &[f64]) -> Self {
        let k = taps.len() as i64;
        let filter = b.buffer("resample_filter", &[1, 1, k, k], || normalized_filter(taps));
        FirResample {
            filter,
            taps: taps.len(),
            box_filter: taps.len() == 2 && taps[0] == taps[1] && taps[0] != 0.0,
        }
    }

    fn pad(&self) -> i64 {
        (self.taps as i64 - 1) / 2
    }

    fn depthwise(&self, c: i64, kind: Kind) -> Tensor {
        self.filter
            .to_kind(kind)
            .expand([c, 1, self.taps as i64, self.taps as i64], false)
    }

    /// Halves the resolution with `padding` (the reference's `f_pad`, or `w_pad + f_pad` when fused).
    fn down(&self, x: &Tensor, padding: i64) -> Tensor {
        let c = x.size()[1];
        let w = self.depthwise(c, x.kind());
        let y = if self.box_filter && padding == 0 {
            x.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>)
        } else {
            x.conv2d(&w, None::<Tensor>, [2, 2], [padding, padding], [1, 1], c)
        };
        flops::conv(OpKind::Resample, &y, &w);
        y
    }

    /// Doubles the resolution with `padding` on the transposed convolution.
    fn up(&self, x: &Tensor, padding: i64) -> Tensor {
        let c = x.size()[1];
        let w = self.depthwise(c, x.kind()) * 4.0;
        flops::conv_transpose(OpKind::Resample, x, &w);
        x.conv_transpose2d(
            &w,
            None::<Tensor>,
            [2, 2],
            [padding, padding],
            [0, 0],
            c,
            [1, 1],
        )
    }
}

/// `f f^T / (sum f)^2` as `[1, 1, k, k]`.
pub(crate) fn normalized_filter(taps: &[f64]) -> Tensor {
    let f = Tensor::from_slice(&taps.iter().map(|&v| v as f32).collect::<Vec<_>>());
    let k = taps.len() as i64;
    (f.ger(&f) / f.sum(Kind::Float).square()).reshape([1, 1, k, k])
}

/// Configuration of one [`Conv2d`].
#[derive(Clone, Debug)]
pub struct Conv2dConfig<'f> {
    /// Kernel size; 0 = no weight (pure resampling).
    pub kernel: i64,
    /// Whether the layer has a bias (only with `kernel > 0`).
    pub bias: bool,
    /// Resampling around the convolution.
    pub resample: Resample,
    /// FIR taps of the resampling filter.
    pub resample_filter: &'f [f64],
    /// Convolve at the high resolution, then resample (down), or the reverse (up).
    pub fused_resample: bool,
    /// Initialization.
    pub init: Init,
}

/// Convolution with optional FIR up/downsampling (EDM's `Conv2d`).
#[derive(Debug)]
pub struct Conv2d {
    /// `[out, in, k, k]`, absent when `kernel == 0`.
    pub weight: Option<Tensor>,
    /// `[out]`.
    pub bias: Option<Tensor>,
    resample: Option<(Resample, FirResample)>,
    fused: bool,
}

impl Conv2d {
    /// Creates the weight, bias and (when resampling) the filter buffer under `b`.
    pub fn new(
        b: &Builder<'_>,
        in_channels: i64,
        out_channels: i64,
        cfg: &Conv2dConfig<'_>,
    ) -> Self {
        let k = cfg.kernel;
        let (fan_in, fan_out) = (in_channels * k * k, out_channels * k * k);
        let weight = (k > 0).then(|| {
            b.param("weight", &[out_channels, in_channels, k, k], || {
                weight_init(
                    &[out_channels, in_channels, k, k],
                    cfg.init.mode,
                    fan_in,
                    fan_out,
                ) * cfg.init.weight
            })
        });
        let bias = (k > 0 && cfg.bias).then(|| {
            b.param("bias", &[out_channels], || {
                weight_init(&[out_channels], cfg.init.mode, fan_in, fan_out) * cfg.init.bias
            })
        });
        let resample = match cfg.resample {
            Resample::Keep => None,
            r => Some((r, FirResample::new(b, cfg.resample_filter))),
        };
        Conv2d {
            weight,
            bias,
            resample,
            fused: cfg.fused_resample,
        }
    }

    /// # Shapes
    /// x: [N, in, H, W] -> [N, out, H', W'] with H' = 2H (up), H/2 (down) or H.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let w = self.weight.as_ref();
        let w_pad = w.map_or(0, |w| w.size()[3] / 2);
        let mut x = match (&self.resample, w) {
            (Some((Resample::Up, f)), Some(w)) if self.fused => {
                let f_pad = f.pad();
                let x = f.up(x, (f_pad - w_pad).max(0));
                let pad = (w_pad - f_pad).max(0);
                let y = x.conv2d(w, None::<Tensor>, [1, 1], [pad, pad], [1, 1], 1);
                flops::conv(OpKind::Conv, &y, w);
                y
            }
            (Some((Resample::Down, f)), Some(w)) if self.fused => {
                let x = x.conv2d(w, None::<Tensor>, [1, 1], [w_pad + f.pad(); 2], [1, 1], 1);
                flops::conv(OpKind::Conv, &x, w);
                f.down(&x, 0)
            }
            (resample, w) => {
                let x = match resample {
                    Some((Resample::Up, f)) => f.up(x, f.pad()),
                    Some((Resample::Down, f)) => f.down(x, f.pad()),
                    _ => x.shallow_clone(),
                };
                match w {
                    // The bias is fused into the convolution here; the reference adds it afterwards.
                    Some(w) => {
                        let y = x.conv2d(w, self.bias.as_ref(), [1, 1], [w_pad, w_pad], [1, 1], 1);
                        flops::conv(OpKind::Conv, &y, w);
                        return y;
                    }
                    None => x,
                }
            }
        };
        if let Some(b) = &self.bias {
            x = x + b.reshape([1, -1, 1, 1]);
        }
        x
    }
}

/// Group normalization with EDM's group count rule `min(num_groups, C / min_channels_per_group)`.
#[derive(Debug)]
pub struct GroupNorm {
    /// `[C]`, initialized to ones.
    pub weight: Tensor,
    /// `[C]`, initialized to zeros.
    pub bias: Tensor,
    num_groups: i64,
    eps: f64,
}

impl GroupNorm {
    /// EDM's `GroupNorm(num_channels, num_groups=32, min_channels_per_group=4, eps)`.
    pub fn new(b: &Builder<'_>, num_channels: i64, eps: f64) -> Result<Self, UnetError> {
        let num_groups = 32.min(num_channels / 4);
        if num_groups < 1 || num_channels % num_groups != 0 {
            return Err(UnetError::config(
                "model_channels",
                format!("{num_channels} channels cannot be split into {num_groups} normalization groups"),
            ));
        }
        let weight = b.param("weight", &[num_channels], || {
            Tensor::ones([num_channels], (Kind::Float, b.device()))
        });
        let bias = b.param("bias", &[num_channels], || {
            Tensor::zeros([num_channels], (Kind::Float, b.device()))
        });
        Ok(GroupNorm {
            weight,
            bias,
            num_groups,
            eps,
        })
    }

    /// # Shapes
    /// x: [N, C, H, W] -> same.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.group_norm(
            self.num_groups,
            Some(&self.weight),
            Some(&self.bias),
            self.eps,
            true,
        )
    }
}

/// `softmax(q^T k / sqrt(c))` applied to `v`, per head, as the reference `AttentionOp` + einsum.
/// (libtorch's fused `scaled_dot_product_attention` measured slower on CPU at these sizes; see the
/// `attention_*` bench.)
///
/// # Shapes
/// q, k, v: [B, c, L] -> [B, c, L].
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Tensor {
    let c = q.size()[1] as f64;
    let qt = q.transpose(1, 2);
    flops::bmm(&qt, k);
    let w = qt.bmm(&(k / c.sqrt())).softmax(2, Kind::Float);
    let wt = w.transpose(1, 2);
    flops::bmm(v, &wt);
    v.bmm(&wt)
}

/// The same attention through libtorch's fused kernel (scale `1/sqrt(c)`), kept for benchmarks and
/// devices where it wins.
///
/// # Shapes
/// q, k, v: [B, c, L] -> [B, c, L].
pub fn attention_fused(q: &Tensor, k: &Tensor, v: &Tensor) -> Tensor {
    let c = q.size()[1] as f64;
    // Counted as the two products of `attention`, whatever the kernel does internally.
    let (s, l) = (q.size(), k.size()[2]);
    flops::bmm_dims(s[0], s[2], s[1], l);
    flops::bmm_dims(s[0], s[1], l, l);
    let out = Tensor::scaled_dot_product_attention(
        &q.transpose(1, 2),
        &k.transpose(1, 2),
        &v.transpose(1, 2),
        None::<Tensor>,
        0.0,
        false,
        Some(1.0 / c.sqrt()),
        false,
    );
    out.transpose(1, 2)
}

/// Sinusoidal timestep embedding (DDPM++, ADM): `[cos(x f), sin(x f)]`, `f_i = (1/max_positions)^(i/(n/2 - endpoint))`.
#[derive(Debug, Clone)]
pub struct PositionalEmbedding {
    num_channels: i64,
    max_positions: f64,
    endpoint: bool,
}

impl PositionalEmbedding {
    /// `PositionalEmbedding(num_channels, max_positions=10000, endpoint)`.
    pub fn new(num_channels: i64, endpoint: bool) -> Self {
        PositionalEmbedding {
            num_channels,
            max_positions: 10000.0,
            endpoint,
        }
    }

    /// The `(cos, sin)` halves, in that order.
    ///
    /// # Shapes
    /// x: `[N]` -> ([N, C/2], [N, C/2]).
    pub fn halves(&self, x: &Tensor) -> (Tensor, Tensor) {
        let half = self.num_channels / 2;
        let freqs = Tensor::arange(half, (Kind::Float, x.device()));
        let freqs = freqs / (half - i64::from(self.endpoint)) as f64;
        let freqs = Tensor::pow_scalar(1.0 / self.max_positions, &freqs);
        let x = x.ger(&freqs.to_kind(x.kind()));
        (x.cos(), x.sin())
    }

    /// # Shapes
    /// x: `[N]` -> [N, C] = `[cos, sin]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let (c, s) = self.halves(x);
        Tensor::cat(&[c, s], 1)
    }
}

/// Random Fourier features (NCSN++): `[cos(2 pi x f), sin(2 pi x f)]` with the buffer `freqs`.
#[derive(Debug)]
pub struct FourierEmbedding {
    /// `[C/2]`, drawn as `N(0, 1) * scale`.
    pub freqs: Tensor,
}

impl FourierEmbedding {
    /// EDM's `FourierEmbedding(num_channels, scale=16)`. (locuslab/ect changed the default scale to 0.02;
    /// it only matters when training from scratch, since ECT loads `freqs` from a checkpoint.)
    pub fn new(b: &Builder<'_>, num_channels: i64, scale: f64) -> Self {
        let n = num_channels / 2;
        let freqs = b.buffer("freqs", &[n], || {
            Tensor::randn([n], (Kind::Float, tch::Device::Cpu)) * scale
        });
        FourierEmbedding { freqs }
    }

    /// The `(cos, sin)` halves, in that order.
    ///
    /// # Shapes
    /// x: `[N]` -> ([N, C/2], [N, C/2]).
    pub fn halves(&self, x: &Tensor) -> (Tensor, Tensor) {
        let f = (&self.freqs * (2.0 * std::f64::consts::PI)).to_kind(x.kind());
        let x = x.ger(&f);
        (x.cos(), x.sin())
    }

    /// # Shapes
    /// x: `[N]` -> [N, C] = `[cos, sin]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let (c, s) = self.halves(x);
        Tensor::cat(&[c, s], 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn box_filter_resampling_equals_average_pool_and_nearest_upsample() {
        tch::manual_seed(1);
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let r = FirResample::new(&Builder::new(vs.root()), &[1.0, 1.0]);
        let x = Tensor::randn([3, 5, 8, 8], (Kind::Float, Device::Cpu));
        // Upsampling copies each pixel times 1.0: bit-identical.
        assert!(r
            .up(&x, 0)
            .equal(&x.upsample_nearest2d([16, 16], None::<f64>, None::<f64>)));
        // Downsampling (an average pool here) equals the reference's depthwise convolution with the
        // filter up to the order of the four-term sum.
        let conv = |padding: i64| {
            x.conv2d(
                &r.depthwise(5, Kind::Float),
                None::<Tensor>,
                [2, 2],
                [padding, padding],
                [1, 1],
                5,
            )
        };
        let d = (r.down(&x, 0) - conv(0)).abs().max().double_value(&[]);
        assert!(d <= 1e-6, "max difference {d}");
        // With padding (fused resampling) the convolution is used: the border sees zeros.
        let padded = conv(1);
        assert!(r.down(&x, 1).equal(&padded));
    }

    #[test]
    fn explicit_and_fused_attention_agree() {
        let opts = (Kind::Float, Device::Cpu);
        let (q, k, v) = (
            Tensor::randn([2, 16, 10], opts),
            Tensor::randn([2, 16, 10], opts),
            Tensor::randn([2, 16, 10], opts),
        );
        let d = (attention(&q, &k, &v) - attention_fused(&q, &k, &v))
            .abs()
            .max()
            .double_value(&[]);
        assert!(d < 1e-5, "max difference {d}");
    }

    #[test]
    fn filters_are_normalized_outer_products() {
        let f = normalized_filter(&[1.0, 3.0, 3.0, 1.0]);
        assert_eq!(f.size(), [1, 1, 4, 4]);
        assert!((f.sum(Kind::Double).double_value(&[]) - 1.0).abs() < 1e-7);
        assert_eq!(f.double_value(&[0, 0, 1, 2]), 9.0 / 64.0);
    }

    #[test]
    fn positional_embedding_matches_formula() {
        let e = PositionalEmbedding::new(8, true);
        let x = Tensor::from_slice(&[0.5f32, -2.0]);
        let y = e.forward(&x);
        assert_eq!(y.size(), [2, 8]);
        // freqs = (1/10000)^(i/3), i = 0..4 (endpoint); [cos | sin].
        for (n, xv) in [0.5f64, -2.0].iter().enumerate() {
            for i in 0..4 {
                let f = (1e-4f64).powf(i as f64 / 3.0);
                let (c, s) = (
                    y.double_value(&[n as i64, i]),
                    y.double_value(&[n as i64, i + 4]),
                );
                assert!((c - (xv * f).cos()).abs() < 1e-6 && (s - (xv * f).sin()).abs() < 1e-6);
            }
        }
    }
}
