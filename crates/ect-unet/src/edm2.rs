//! The EDM2 magnitude-preserving UNet ("Analyzing and Improving the Training Dynamics of Diffusion
//! Models", `training/networks_edm2.py`, in the variant locuslab/ect uses: `dropout_res`, no
//! log-variance head).

use crate::builder::Builder;
use crate::config::Edm2Config;
use crate::dropout::DropoutMode;
use crate::error::UnetError;
use crate::flops::{self, OpKind};
use crate::layers::{attention, normalized_filter};
use tch::{Kind, Tensor};

/// Normalizes `x` to unit RMS over `dims` (EDM2 `normalize`): `x / (eps + |x| sqrt(numel(norm) / numel(x)))`.
///
/// # Shapes
/// x: any; dims: the reduced dimensions.
pub fn normalize(x: &Tensor, dims: &[i64], eps: f64) -> Tensor {
    let norm = x.norm_scalaropt_dim_dtype(2.0, dims, true, Kind::Float);
    let alpha = (norm.numel() as f64 / x.numel() as f64).sqrt();
    x / (norm * alpha + eps).to_kind(x.kind())
}

/// Magnitude-preserving SiLU (EDM2 eq. 81).
pub fn mp_silu(x: &Tensor) -> Tensor {
    x.silu() / 0.596
}

/// Magnitude-preserving sum (EDM2 eq. 88): `lerp(a, b, t) / sqrt((1-t)^2 + t^2)`.
pub fn mp_sum(a: &Tensor, b: &Tensor, t: f64) -> Tensor {
    a.lerp(b, t) / ((1.0 - t).powi(2) + t * t).sqrt()
}

/// Magnitude-preserving concatenation along channels (EDM2 eq. 103).
///
/// # Shapes
/// a: [N, Na, ...], b: [N, Nb, ...] -> [N, Na + Nb, ...].
pub fn mp_cat(a: &Tensor, b: &Tensor, t: f64) -> Tensor {
    let (na, nb) = (a.size()[1] as f64, b.size()[1] as f64);
    let c = ((na + nb) / ((1.0 - t).powi(2) + t * t)).sqrt();
    let wa = c / na.sqrt() * (1.0 - t);
    let wb = c / nb.sqrt() * t;
    Tensor::cat(&[a * wa, b * wb], 1)
}

/// Magnitude-preserving Fourier features (EDM2 eq. 75), buffers `freqs` and `phases`.
#[derive(Debug)]
pub struct MPFourier {
    /// `[C]`, `2 pi N(0, 1) * bandwidth`.
    pub freqs: Tensor,
    /// `[C]`, `2 pi U(0, 1)`.
    pub phases: Tensor,
}

impl MPFourier {
    /// `MPFourier(num_channels, bandwidth=1)`.
    pub fn new(b: &Builder<'_>, num_channels: i64) -> Self {
        let two_pi = 2.0 * std::f64::consts::PI;
        let cpu = (Kind::Float, tch::Device::Cpu);
        let freqs = b.buffer("freqs", &[num_channels], || {
            Tensor::randn([num_channels], cpu) * two_pi
        });
        let phases = b.buffer("phases", &[num_channels], || {
            Tensor::rand([num_channels], cpu) * two_pi
        });
        MPFourier { freqs, phases }
    }

    /// # Shapes
    /// x: `[N]` -> [N, C].
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let y = x.to_kind(Kind::Float).ger(&self.freqs.to_kind(Kind::Float))
            + self.phases.to_kind(Kind::Float);
        (y.cos() * 2f64.sqrt()).to_kind(x.kind())
    }
}

/// The gain of an [`MPConv`]: the constant 1 or a learned scalar.
#[derive(Clone, Copy, Debug)]
pub enum Gain<'a> {
    /// Gain 1.
    One,
    /// A learned 0-dim parameter.
    Learned(&'a Tensor),
}

/// Magnitude-preserving convolution or linear layer (EDM2 eq. 47) with weight normalization.
#[derive(Debug)]
pub struct MPConv {
    /// `[out, in, k, k]` or `[out, in]`, initialized `N(0, 1)`.
    pub weight: Tensor,
}

impl MPConv {
    /// `MPConv(in_channels, out_channels, kernel)`; `kernel = None` makes a linear layer.
    pub fn new(b: &Builder<'_>, in_channels: i64, out_channels: i64, kernel: Option<i64>) -> Self {
        let shape: Vec<i64> = match kernel {
            Some(k) => vec![out_channels, in_channels, k, k],
            None => vec![out_channels, in_channels],
        };
        let weight = b.param("weight", &shape, || {
            Tensor::randn(shape.as_slice(), (Kind::Float, tch::Device::Cpu))
        });
        MPConv { weight }
    }

    fn dims(&self) -> Vec<i64> {
        (1..self.weight.dim() as i64).collect()
    }

    /// Forced weight normalization (EDM2 eq. 66): rescales the stored weight to unit RMS per output
    /// channel, in place and outside autograd.
    pub fn force_normalize(&self) {
        tch::no_grad(|| {
            let w = normalize(&self.weight.to_kind(Kind::Float), &self.dims(), 1e-4);
            let mut dst = self.weight.shallow_clone();
            dst.copy_(&w);
        });
    }

    /// # Shapes
    /// x: [N, in, H, W] -> [N, out, H, W] (conv), or [N, in] -> [N, out] (linear).
    pub fn forward(&self, x: &Tensor, gain: Gain<'_>) -> Tensor {
        let w = normalize(&self.weight.to_kind(Kind::Float), &self.dims(), 1e-4);
        let fan_in = (self.weight.numel() as i64 / self.weight.size()[0]) as f64;
        let w = match gain {
            Gain::One => w * (1.0 / fan_in.sqrt()),
            Gain::Learned(g) => w * (g / fan_in.sqrt()),
        };
        let w = w.to_kind(x.kind());
        if w.dim() == 2 {
            flops::linear(x, &w);
            return x.linear(&w, None::<Tensor>);
        }
        let pad = w.size()[3] / 2;
        let y = x.conv2d(&w, None::<Tensor>, [1, 1], [pad, pad], [1, 1], 1);
        flops::conv(OpKind::Conv, &y, &w);
        y
    }
}

/// EDM2 `resample`: FIR down/upsampling by 2 with the normalized filter, as a depthwise (transposed)
/// convolution (see `layers::FirResample`).
///
/// # Shapes
/// x: [N, C, H, W], filter: [C, 1, k, k] (the normalized taps' outer product on x's device and kind)
/// -> [N, C, H/2, W/2] (Down) or [N, C, 2H, 2W] (Up); x itself for Keep.
fn resample(x: &Tensor, filter: &FilterCache, mode: BlockResample) -> Tensor {
    if mode == BlockResample::Keep {
        return x.shallow_clone();
    }
    let c = x.size()[1];
    let f = filter
        .get(x.device(), x.kind())
        .expand([c, 1, -1, -1], false);
    let pad = (f.size()[2] - 1) / 2;
    match mode {
        BlockResample::Down => {
            let y = x.conv2d(&f, None::<Tensor>, [2, 2], [pad, pad], [1, 1], c);
            flops::conv(OpKind::Resample, &y, &f);
            y
        }
        _ => {
            flops::conv_transpose(OpKind::Resample, x, &f);
            x.conv_transpose2d(
                &(f * 4.0),
                None::<Tensor>,
                [2, 2],
                [pad, pad],
                [0, 0],
                c,
                [1, 1],
            )
        }
    }
}

/// The normalized resampling filter `[1, 1, k, k]`, built once per (device, kind) it is used on.
///
/// The reference caches it with `misc.const_like`; rebuilding it each call costs a host-to-device copy
/// per resampling block, which synchronizes a CUDA stream.
#[derive(Debug)]
struct FilterCache {
    taps: Vec<f64>,
    on: std::sync::Mutex<Vec<(tch::Device, Kind, Tensor)>>,
}

impl FilterCache {
    fn new(taps: &[f64]) -> Self {
        FilterCache {
            taps: taps.to_vec(),
            on: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// # Shapes
    /// -> [1, 1, k, k].
    fn get(&self, device: tch::Device, kind: Kind) -> Tensor {
        // A poisoned lock only means another thread panicked mid-push; the list is still valid.
        let mut on = self.on.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, f)) = on.iter().find(|(d, k, _)| *d == device && *k == kind) {
            return f.shallow_clone();
        }
        let f = tch::no_grad(|| {
            normalized_filter(&self.taps)
                .to_device(device)
                .to_kind(kind)
        });
        on.push((device, kind, f.shallow_clone()));
        f
    }
}

/// Resampling of an EDM2 block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockResample {
    /// Keep the resolution.
    Keep,
    /// Double it.
    Up,
    /// Halve it.
    Down,
}

/// Encoder or decoder flavor of an EDM2 block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// Skip projection before the residual branch, pixel norm.
    Enc,
    /// Skip projection after the residual branch.
    Dec,
}

/// Arguments of one EDM2 [`Block`].
#[derive(Clone, Debug)]
pub struct BlockConfig<'f> {
    /// Input channels.
    pub in_channels: i64,
    /// Output channels.
    pub out_channels: i64,
    /// Embedding channels.
    pub emb_channels: i64,
    /// Encoder or decoder.
    pub flavor: Flavor,
    /// Resampling.
    pub resample_mode: BlockResample,
    /// FIR taps.
    pub resample_filter: &'f [f64],
    /// Whether the block has self-attention.
    pub attention: bool,
    /// Channels per attention head.
    pub channels_per_head: i64,
    /// Dropout probability.
    pub dropout: f64,
    /// Balance of the residual branch.
    pub res_balance: f64,
    /// Balance of the attention branch.
    pub attn_balance: f64,
    /// Activation clipping.
    pub clip_act: Option<f64>,
}

/// EDM2 encoder/decoder block with optional self-attention (EDM2 figure 21).
#[derive(Debug)]
pub struct Block {
    flavor: Flavor,
    resample_filter: FilterCache,
    resample_mode: BlockResample,
    num_heads: i64,
    dropout: f64,
    res_balance: f64,
    attn_balance: f64,
    clip_act: Option<f64>,
    emb_gain: Tensor,
    conv_res0: MPConv,
    emb_linear: MPConv,
    conv_res1: MPConv,
    conv_skip: Option<MPConv>,
    attn_qkv: Option<MPConv>,
    attn_proj: Option<MPConv>,
}

impl Block {
    /// Creates the block under `b` in the reference order.
    pub fn new(b: &Builder<'_>, cfg: &BlockConfig<'_>) -> Result<Self, UnetError> {
        let (cin, cout) = (cfg.in_channels, cfg.out_channels);
        let num_heads = if cfg.attention {
            cout / cfg.channels_per_head
        } else {
            0
        };
        if num_heads > 0 && cout % num_heads != 0 {
            return Err(UnetError::config(
                "channels_per_head",
                format!("{cout} channels cannot be split into {num_heads} attention heads"),
            ));
        }
        let emb_gain = b.param("emb_gain", &[], || {
            Tensor::zeros([], (Kind::Float, tch::Device::Cpu))
        });
        let res0_in = if cfg.flavor == Flavor::Enc { cout } else { cin };
        let conv_res0 = MPConv::new(&b.sub("conv_res0"), res0_in, cout, Some(3));
        let emb_linear = MPConv::new(&b.sub("emb_linear"), cfg.emb_channels, cout, None);
        let conv_res1 = MPConv::new(&b.sub("conv_res1"), cout, cout, Some(3));
        let conv_skip = (cin != cout).then(|| MPConv::new(&b.sub("conv_skip"), cin, cout, Some(1)));
        let attn_qkv =
            (num_heads != 0).then(|| MPConv::new(&b.sub("attn_qkv"), cout, cout * 3, Some(1)));
        let attn_proj =
            (num_heads != 0).then(|| MPConv::new(&b.sub("attn_proj"), cout, cout, Some(1)));
        Ok(Block {
            flavor: cfg.flavor,
            resample_filter: FilterCache::new(cfg.resample_filter),
            resample_mode: cfg.resample_mode,
            num_heads,
            dropout: cfg.dropout,
            res_balance: cfg.res_balance,
            attn_balance: cfg.attn_balance,
            clip_act: cfg.clip_act,
            emb_gain,
            conv_res0,
            emb_linear,
            conv_res1,
            conv_skip,
            attn_qkv,
            attn_proj,
        })
    }

    fn convs(&self) -> impl Iterator<Item = &MPConv> {
        [
            Some(&self.conv_res0),
            Some(&self.emb_linear),
            Some(&self.conv_res1),
        ]
        .into_iter()
        .chain([
            self.conv_skip.as_ref(),
            self.attn_qkv.as_ref(),
            self.attn_proj.as_ref(),
        ])
        .flatten()
    }

    /// # Shapes
    /// x: [N, in, H, W], emb: [N, emb] -> [N, out, H', W'].
    pub fn forward(&self, x: &Tensor, emb: &Tensor, dropout: &DropoutMode<'_>) -> Tensor {
        // Main branch.
        let mut x = resample(x, &self.resample_filter, self.resample_mode);
        if self.flavor == Flavor::Enc {
            if let Some(skip) = &self.conv_skip {
                x = skip.forward(&x, Gain::One);
            }
            x = normalize(&x, &[1], 1e-4);
        }

        // Residual branch.
        let y = self.conv_res0.forward(&mp_silu(&x), Gain::One);
        let c = self.emb_linear.forward(emb, Gain::Learned(&self.emb_gain)) + 1.0;
        let y = mp_silu(&(y * c.unsqueeze(2).unsqueeze(3).to_kind(x.kind())));
        let y = dropout.dropout(&y, self.dropout);
        let y = self.conv_res1.forward(&y, Gain::One);

        // Connect the branches.
        if self.flavor == Flavor::Dec {
            if let Some(skip) = &self.conv_skip {
                x = skip.forward(&x, Gain::One);
            }
        }
        let mut x = mp_sum(&x, &y, self.res_balance);

        // Self-attention.
        if let (Some(qkv), Some(proj)) = (&self.attn_qkv, &self.attn_proj) {
            let s = x.size();
            let (n, hw) = (s[0], s[2] * s[3]);
            let y = qkv
                .forward(&x, Gain::One)
                .reshape([n, self.num_heads, -1, 3, hw]);
            let y = normalize(&y, &[2], 1e-4);
            let c = y.size()[2];
            let qkv_of = |j: i64| y.select(3, j).reshape([n * self.num_heads, c, hw]);
            let a = attention(&qkv_of(0), &qkv_of(1), &qkv_of(2)).reshape(s.as_slice());
            let y = proj.forward(&a, Gain::One);
            x = mp_sum(&x, &y, self.attn_balance);
        }

        if let Some(clip) = self.clip_act {
            x = x.clip(-clip, clip);
        }
        x
    }
}

#[derive(Debug)]
enum EncItem {
    Conv(MPConv),
    Block(Block),
}

/// The EDM2 UNet (`unet.*` in the reference state dict).
#[derive(Debug)]
pub struct Edm2UNet {
    out_gain: Tensor,
    emb_fourier: MPFourier,
    emb_noise: MPConv,
    emb_label: Option<MPConv>,
    enc: Vec<EncItem>,
    dec: Vec<(bool, Block)>,
    out_conv: MPConv,
    label_balance: f64,
    concat_balance: f64,
}

impl Edm2UNet {
    /// Builds the UNet under `b` in the reference order.
    pub fn new(b: &Builder<'_>, cfg: &Edm2Config) -> Result<Self, UnetError> {
        let mc = cfg.model_channels;
        let cblock: Vec<i64> = cfg.channel_mult.iter().map(|m| mc * m).collect();
        let cnoise = cfg.channel_mult_noise.map_or(cblock[0], |m| mc * m);
        let cemb = cfg.channel_mult_emb.map_or_else(
            || *cblock.iter().max().expect("validated non-empty"),
            |m| mc * m,
        );
        let out_gain = b.param("out_gain", &[], || {
            Tensor::zeros([], (Kind::Float, tch::Device::Cpu))
        });
        let emb_fourier = MPFourier::new(&b.sub("emb_fourier"), cnoise);
        let emb_noise = MPConv::new(&b.sub("emb_noise"), cnoise, cemb, None);
        let emb_label = (cfg.image.label_dim != 0)
            .then(|| MPConv::new(&b.sub("emb_label"), cfg.image.label_dim, cemb, None));
        let block = |cin, cout, flavor, resample_mode, attention, res: i64| BlockConfig {
            in_channels: cin,
            out_channels: cout,
            emb_channels: cemb,
            flavor,
            resample_mode,
            resample_filter: &cfg.resample_filter,
            attention,
            channels_per_head: cfg.channels_per_head,
            dropout: match cfg.dropout_res {
                Some(dr) if dr > 0 && res > dr => 0.0,
                _ => cfg.dropout,
            },
            res_balance: cfg.res_balance,
            attn_balance: cfg.attn_balance,
            clip_act: cfg.clip_act,
        };

        // Encoder.
        let be = b.sub("enc");
        let mut enc = Vec::new();
        let mut skips = Vec::new();
        let mut cout = cfg.image.img_channels + 1;
        for (level, &channels) in cblock.iter().enumerate() {
            let res = cfg.image.img_resolution >> level;
            if level == 0 {
                let cin = cout;
                cout = channels;
                enc.push(EncItem::Conv(MPConv::new(
                    &be.sub(&format!("{res}x{res}_conv")),
                    cin,
                    cout,
                    Some(3),
                )));
            } else {
                let c = block(cout, cout, Flavor::Enc, BlockResample::Down, false, res);
                enc.push(EncItem::Block(Block::new(
                    &be.sub(&format!("{res}x{res}_down")),
                    &c,
                )?));
            }
            skips.push(cout);
            for idx in 0..cfg.num_blocks {
                let cin = cout;
                cout = channels;
                let attn = cfg.attn_resolutions.contains(&res);
                let c = block(cin, cout, Flavor::Enc, BlockResample::Keep, attn, res);
                enc.push(EncItem::Block(Block::new(
                    &be.sub(&format!("{res}x{res}_block{idx}")),
                    &c,
                )?));
                skips.push(cout);
            }
        }

        // Decoder: the flag marks `block` entries, which take a skip connection first.
        let bd = b.sub("dec");
        let mut dec = Vec::new();
        for (level, &channels) in cblock.iter().enumerate().rev() {
            let res = cfg.image.img_resolution >> level;
            let sub = |s: &str| bd.sub(&format!("{res}x{res}_{s}"));
            if level == cblock.len() - 1 {
                dec.push((
                    false,
                    Block::new(
                        &sub("in0"),
                        &block(cout, cout, Flavor::Dec, BlockResample::Keep, true, res),
                    )?,
                ));
                dec.push((
                    false,
                    Block::new(
                        &sub("in1"),
                        &block(cout, cout, Flavor::Dec, BlockResample::Keep, false, res),
                    )?,
                ));
            } else {
                dec.push((
                    false,
                    Block::new(
                        &sub("up"),
                        &block(cout, cout, Flavor::Dec, BlockResample::Up, false, res),
                    )?,
                ));
            }
            for idx in 0..=cfg.num_blocks {
                let cin = cout + skips.pop().expect("one skip per encoder output");
                cout = channels;
                let attn = cfg.attn_resolutions.contains(&res);
                let c = block(cin, cout, Flavor::Dec, BlockResample::Keep, attn, res);
                dec.push((true, Block::new(&sub(&format!("block{idx}")), &c)?));
            }
        }
        let out_conv = MPConv::new(&b.sub("out_conv"), cout, cfg.image.img_channels, Some(3));
        Ok(Edm2UNet {
            out_gain,
            emb_fourier,
            emb_noise,
            emb_label,
            enc,
            dec,
            out_conv,
            label_balance: cfg.label_balance,
            concat_balance: cfg.concat_balance,
        })
    }

    /// Every magnitude-preserving layer, for forced weight normalization.
    pub fn convs(&self) -> Vec<&MPConv> {
        let mut v = vec![&self.emb_noise];
        v.extend(self.emb_label.as_ref());
        for item in &self.enc {
            match item {
                EncItem::Conv(c) => v.push(c),
                EncItem::Block(b) => v.extend(b.convs()),
            }
        }
        for (_, b) in &self.dec {
            v.extend(b.convs());
        }
        v.push(&self.out_conv);
        v
    }

    /// # Shapes
    /// x: [N, C, H, W], noise_labels: `[N]`, class_labels: [N or 1, label_dim] (conditional nets)
    /// -> [N, C, H, W].
    pub fn forward(
        &self,
        x: &Tensor,
        noise_labels: &Tensor,
        class_labels: Option<&Tensor>,
        dropout: &DropoutMode<'_>,
    ) -> Tensor {
        let mut emb = self
            .emb_noise
            .forward(&self.emb_fourier.forward(noise_labels), Gain::One);
        if let (Some(emb_label), Some(labels)) = (&self.emb_label, class_labels) {
            let l = labels * (labels.size()[1] as f64).sqrt();
            emb = mp_sum(&emb, &emb_label.forward(&l, Gain::One), self.label_balance);
        }
        let emb = mp_silu(&emb);

        let ones = x.narrow(1, 0, 1).ones_like();
        let mut x = Tensor::cat(&[x, &ones], 1);
        let mut skips = Vec::with_capacity(self.enc.len());
        for item in &self.enc {
            x = match item {
                EncItem::Conv(c) => c.forward(&x, Gain::One),
                EncItem::Block(b) => b.forward(&x, &emb, dropout),
            };
            skips.push(x.shallow_clone());
        }
        for (takes_skip, b) in &self.dec {
            if *takes_skip {
                let s = skips.pop().expect("one skip per decoder block");
                x = mp_cat(&x, &s, self.concat_balance);
            }
            x = b.forward(&x, &emb, dropout);
        }
        self.out_conv.forward(&x, Gain::Learned(&self.out_gain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn rms(t: &Tensor) -> f64 {
        t.to_kind(Kind::Double)
            .square()
            .mean(Kind::Double)
            .sqrt()
            .double_value(&[])
    }

    #[test]
    fn magnitude_preserving_ops_keep_unit_rms() {
        tch::manual_seed(0);
        let opts = (Kind::Float, Device::Cpu);
        let (a, b) = (
            Tensor::randn([64, 32, 8, 8], opts),
            Tensor::randn([64, 16, 8, 8], opts),
        );
        let w = Tensor::randn([16, 8, 3, 3], opts) * 7.0;
        let n = normalize(&w, &[1, 2, 3], 1e-4);
        for o in 0..16 {
            assert!((rms(&n.get(o)) - 1.0).abs() < 1e-3);
        }
        assert!((rms(&mp_sum(&a, &a.flip([0]), 0.3)) - 1.0).abs() < 0.02);
        assert!((rms(&mp_cat(&a, &b, 0.5)) - 1.0).abs() < 0.02);
        assert!((rms(&mp_silu(&a)) - 1.0).abs() < 0.02);
    }

    #[test]
    fn forced_normalization_is_idempotent_up_to_eps() {
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let conv = MPConv::new(&Builder::new(vs.root()), 8, 4, Some(3));
        conv.force_normalize();
        let once = conv.weight.copy();
        conv.force_normalize();
        let d = (&conv.weight - &once).abs().max().double_value(&[]);
        assert!(d < 1e-3 && d > 0.0, "difference {d}");
    }
}
