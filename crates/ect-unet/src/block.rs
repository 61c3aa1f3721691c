//! EDM's `UNetBlock`: the residual block shared by DDPM++, NCSN++ and ADM, with optional
//! up/downsampling and self-attention.

use crate::builder::{Builder, Init};
use crate::dropout::DropoutMode;
use crate::error::UnetError;
use crate::layers::{attention, Conv2d, Conv2dConfig, GroupNorm, Linear, Resample};
use tch::Tensor;

/// Constructor arguments of one [`UNetBlock`] (the reference names).
#[derive(Clone, Debug)]
pub struct UNetBlockConfig<'f> {
    /// Input channels.
    pub in_channels: i64,
    /// Output channels.
    pub out_channels: i64,
    /// Embedding channels.
    pub emb_channels: i64,
    /// Up/downsampling of the block.
    pub resample: Resample,
    /// Whether the block has self-attention.
    pub attention: bool,
    /// Fixed number of heads (SongUNet: 1), or `None` = `out_channels / channels_per_head` (ADM).
    pub num_heads: Option<i64>,
    /// Channels per head when `num_heads` is `None`.
    pub channels_per_head: i64,
    /// Dropout probability before `conv1`.
    pub dropout: f64,
    /// Multiplier after each residual sum (`sqrt(0.5)` for SongUNet, 1 for ADM).
    pub skip_scale: f64,
    /// GroupNorm epsilon.
    pub eps: f64,
    /// FIR taps for resampling.
    pub resample_filter: &'f [f64],
    /// Whether the skip path of a resampling block gets a 1x1 projection.
    pub resample_proj: bool,
    /// Scale-and-shift conditioning (ADM) instead of an additive one (SongUNet).
    pub adaptive_scale: bool,
    /// Initialization of most layers.
    pub init: Init,
    /// Initialization of the layers ending a residual branch (`conv1`, `proj`).
    pub init_zero: Init,
    /// Initialization of `qkv`; `None` = `init`.
    pub init_attn: Option<Init>,
}

#[derive(Debug)]
struct Attention {
    norm2: GroupNorm,
    qkv: Conv2d,
    proj: Conv2d,
    num_heads: i64,
}

/// Residual block `x -> skip(x) + conv1(dropout(act(norm1(conv0(act(norm0(x))) (+) emb))))`, then
/// optional self-attention, both sums scaled by `skip_scale`.
#[derive(Debug)]
pub struct UNetBlock {
    in_channels: i64,
    norm0: GroupNorm,
    conv0: Conv2d,
    affine: Linear,
    norm1: GroupNorm,
    conv1: Conv2d,
    skip: Option<Conv2d>,
    attn: Option<Attention>,
    dropout: f64,
    skip_scale: f64,
    adaptive_scale: bool,
}

impl UNetBlock {
    /// Creates the block's layers under `b` in the reference order.
    pub fn new(b: &Builder<'_>, cfg: &UNetBlockConfig<'_>) -> Result<Self, UnetError> {
        let (cin, cout) = (cfg.in_channels, cfg.out_channels);
        let num_heads = if cfg.attention {
            cfg.num_heads.unwrap_or(cout / cfg.channels_per_head)
        } else {
            0
        };
        let conv = |kernel, resample, init| Conv2dConfig {
            kernel,
            bias: true,
            resample,
            resample_filter: cfg.resample_filter,
            fused_resample: false,
            init,
        };
        let norm0 = GroupNorm::new(&b.sub("norm0"), cin, cfg.eps)?;
        let conv0 = Conv2d::new(&b.sub("conv0"), cin, cout, &conv(3, cfg.resample, cfg.init));
        let affine_out = cout * if cfg.adaptive_scale { 2 } else { 1 };
        let affine = Linear::new(
            &b.sub("affine"),
            cfg.emb_channels,
            affine_out,
            true,
            cfg.init,
        );
        let norm1 = GroupNorm::new(&b.sub("norm1"), cout, cfg.eps)?;
        let conv1 = Conv2d::new(
            &b.sub("conv1"),
            cout,
            cout,
            &conv(3, Resample::Keep, cfg.init_zero),
        );
        let skip = (cout != cin || cfg.resample != Resample::Keep).then(|| {
            let kernel = if cfg.resample_proj || cout != cin {
                1
            } else {
                0
            };
            Conv2d::new(
                &b.sub("skip"),
                cin,
                cout,
                &conv(kernel, cfg.resample, cfg.init),
            )
        });
        let attn = if num_heads > 0 {
            if cout % num_heads != 0 {
                return Err(UnetError::config(
                    "channel_mult",
                    format!("{cout} channels cannot be split into {num_heads} attention heads"),
                ));
            }
            let norm2 = GroupNorm::new(&b.sub("norm2"), cout, cfg.eps)?;
            let qkv = Conv2d::new(
                &b.sub("qkv"),
                cout,
                cout * 3,
                &conv(1, Resample::Keep, cfg.init_attn.unwrap_or(cfg.init)),
            );
            let proj = Conv2d::new(
                &b.sub("proj"),
                cout,
                cout,
                &conv(1, Resample::Keep, cfg.init_zero),
            );
            Some(Attention {
                norm2,
                qkv,
                proj,
                num_heads,
            })
        } else {
            None
        };
        Ok(UNetBlock {
            in_channels: cin,
            norm0,
            conv0,
            affine,
            norm1,
            conv1,
            skip,
            attn,
            dropout: cfg.dropout,
            skip_scale: cfg.skip_scale,
            adaptive_scale: cfg.adaptive_scale,
        })
    }

    /// Input channels (the decoder concatenates a skip when its activation has fewer).
    pub fn in_channels(&self) -> i64 {
        self.in_channels
    }

    /// # Shapes
    /// x: [N, in, H, W], emb: [N, emb] -> [N, out, H', W'].
    pub fn forward(&self, x: &Tensor, emb: &Tensor, dropout: &DropoutMode<'_>) -> Tensor {
        let orig = x;
        let x = self.conv0.forward(&self.norm0.forward(x).silu());
        let params = self.affine.forward(emb).unsqueeze(2).unsqueeze(3);
        let x = if self.adaptive_scale {
            let sp = params.chunk(2, 1);
            sp[1]
                .addcmul(&self.norm1.forward(&x), &(&sp[0] + 1.0))
                .silu()
        } else {
            self.norm1.forward(&(x + params)).silu()
        };
        // In place on fresh temporaries: neither the convolution nor the sum keeps its output for
        // backward, and it saves two full-size activations per block.
        let mut x = self.conv1.forward(&dropout.dropout(&x, self.dropout));
        match &self.skip {
            Some(skip) => x += skip.forward(orig),
            None => x += orig,
        }
        x *= self.skip_scale;
        match &self.attn {
            None => x,
            Some(a) => {
                let s = x.size();
                let (n, c) = (s[0], s[1]);
                let qkv = a.qkv.forward(&a.norm2.forward(&x)).reshape([
                    n * a.num_heads,
                    c / a.num_heads,
                    3,
                    -1,
                ]);
                let (q, k, v) = (qkv.select(2, 0), qkv.select(2, 1), qkv.select(2, 2));
                let y = attention(&q, &k, &v).reshape(s.as_slice());
                let mut out = a.proj.forward(&y);
                out += &x;
                out *= self.skip_scale;
                out
            }
        }
    }
}
