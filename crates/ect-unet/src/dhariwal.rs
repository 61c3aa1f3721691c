//! `DhariwalUNet` of EDM: the ADM architecture ("Diffusion Models Beat GANs on Image Synthesis").

use crate::block::{UNetBlock, UNetBlockConfig};
use crate::builder::{Builder, Init, InitMode};
use crate::config::DhariwalUNetConfig;
use crate::dropout::DropoutMode;
use crate::error::UnetError;
use crate::layers::{Conv2d, Conv2dConfig, GroupNorm, Linear, PositionalEmbedding, Resample};
use tch::Tensor;

#[derive(Debug)]
enum EncItem {
    Conv(Conv2d),
    Block(Box<UNetBlock>),
}

/// ADM UNet, class-conditional through `map_label`; parameter names as the reference.
#[derive(Debug)]
pub struct DhariwalUNet {
    map_noise: PositionalEmbedding,
    map_augment: Option<Linear>,
    map_layer0: Linear,
    map_layer1: Linear,
    map_label: Option<Linear>,
    enc: Vec<EncItem>,
    dec: Vec<UNetBlock>,
    out_norm: GroupNorm,
    out_conv: Conv2d,
    label_dropout: f64,
}

impl DhariwalUNet {
    /// Builds the network under `b` in the reference's construction order.
    pub fn new(
        b: &Builder<'_>,
        img_resolution: i64,
        in_channels: i64,
        out_channels: i64,
        label_dim: i64,
        cfg: &DhariwalUNetConfig,
    ) -> Result<Self, UnetError> {
        let emb_channels = cfg.model_channels * cfg.channel_mult_emb;
        let third = (1.0f64 / 3.0).sqrt();
        let init = Init::new(InitMode::KaimingUniform)
            .weight(third)
            .bias(third);
        let init_zero = Init::new(InitMode::KaimingUniform).weight(0.0).bias(0.0);
        let block = |cin, cout, resample, attention| UNetBlockConfig {
            in_channels: cin,
            out_channels: cout,
            emb_channels,
            resample,
            attention,
            num_heads: None,
            channels_per_head: 64,
            dropout: cfg.dropout,
            skip_scale: 1.0,
            eps: 1e-5,
            resample_filter: &[1.0, 1.0],
            resample_proj: false,
            adaptive_scale: true,
            init,
            init_zero,
            init_attn: None,
        };
        let conv = |kernel, init| Conv2dConfig {
            kernel,
            bias: true,
            resample: Resample::Keep,
            resample_filter: &[1.0, 1.0],
            fused_resample: false,
            init,
        };

        // Mapping.
        let map_noise = PositionalEmbedding::new(cfg.model_channels, false);
        let map_augment = (cfg.augment_dim > 0).then(|| {
            Linear::new(
                &b.sub("map_augment"),
                cfg.augment_dim,
                cfg.model_channels,
                false,
                init_zero,
            )
        });
        let map_layer0 = Linear::new(
            &b.sub("map_layer0"),
            cfg.model_channels,
            emb_channels,
            true,
            init,
        );
        let map_layer1 = Linear::new(&b.sub("map_layer1"), emb_channels, emb_channels, true, init);
        let label_init = Init::new(InitMode::KaimingNormal).weight((label_dim as f64).sqrt());
        let map_label = (label_dim > 0).then(|| {
            Linear::new(
                &b.sub("map_label"),
                label_dim,
                emb_channels,
                false,
                label_init,
            )
        });

        // Encoder.
        let be = b.sub("enc");
        let mut enc = Vec::new();
        let mut skips = Vec::new();
        let mut cout = in_channels;
        for (level, &mult) in cfg.channel_mult.iter().enumerate() {
            let res = img_resolution >> level;
            if level == 0 {
                let cin = cout;
                cout = cfg.model_channels * mult;
                enc.push(EncItem::Conv(Conv2d::new(
                    &be.sub(&format!("{res}x{res}_conv")),
                    cin,
                    cout,
                    &conv(3, init),
                )));
            } else {
                let blk = UNetBlock::new(
                    &be.sub(&format!("{res}x{res}_down")),
                    &block(cout, cout, Resample::Down, false),
                )?;
                enc.push(EncItem::Block(Box::new(blk)));
            }
            skips.push(cout);
            for idx in 0..cfg.num_blocks {
                let cin = cout;
                cout = cfg.model_channels * mult;
                let attn = cfg.attn_resolutions.contains(&res);
                let blk = UNetBlock::new(
                    &be.sub(&format!("{res}x{res}_block{idx}")),
                    &block(cin, cout, Resample::Keep, attn),
                )?;
                enc.push(EncItem::Block(Box::new(blk)));
                skips.push(cout);
            }
        }

        // Decoder.
        let bd = b.sub("dec");
        let mut dec = Vec::new();
        let levels = cfg.channel_mult.len();
        for (level, &mult) in cfg.channel_mult.iter().enumerate().rev() {
            let res = img_resolution >> level;
            let sub = |s: &str| bd.sub(&format!("{res}x{res}_{s}"));
            if level == levels - 1 {
                dec.push(UNetBlock::new(
                    &sub("in0"),
                    &block(cout, cout, Resample::Keep, true),
                )?);
                dec.push(UNetBlock::new(
                    &sub("in1"),
                    &block(cout, cout, Resample::Keep, false),
                )?);
            } else {
                dec.push(UNetBlock::new(
                    &sub("up"),
                    &block(cout, cout, Resample::Up, false),
                )?);
            }
            for idx in 0..=cfg.num_blocks {
                let cin = cout + skips.pop().expect("one skip per encoder output");
                cout = cfg.model_channels * mult;
                let attn = cfg.attn_resolutions.contains(&res);
                dec.push(UNetBlock::new(
                    &sub(&format!("block{idx}")),
                    &block(cin, cout, Resample::Keep, attn),
                )?);
            }
        }
        let out_norm = GroupNorm::new(&b.sub("out_norm"), cout, 1e-5)?;
        let out_conv = Conv2d::new(&b.sub("out_conv"), cout, out_channels, &conv(3, init_zero));
        Ok(DhariwalUNet {
            map_noise,
            map_augment,
            map_layer0,
            map_layer1,
            map_label,
            enc,
            dec,
            out_norm,
            out_conv,
            label_dropout: cfg.label_dropout,
        })
    }

    /// # Shapes
    /// x: [N, in, H, W], noise_labels: `[N]`, class_labels: [N or 1, label_dim] (conditional nets),
    /// augment_labels: [N, augment_dim] -> [N, out, H, W].
    pub fn forward(
        &self,
        x: &Tensor,
        noise_labels: &Tensor,
        class_labels: Option<&Tensor>,
        augment_labels: Option<&Tensor>,
        dropout: &DropoutMode<'_>,
    ) -> Tensor {
        let mut emb = self.map_noise.forward(noise_labels);
        if let (Some(map_augment), Some(aug)) = (&self.map_augment, augment_labels) {
            emb = emb + map_augment.forward(aug);
        }
        let emb = self.map_layer0.forward(&emb).silu();
        let mut emb = self.map_layer1.forward(&emb);
        if let (Some(map_label), Some(labels)) = (&self.map_label, class_labels) {
            emb = emb + map_label.forward(&dropout.label_dropout(labels, self.label_dropout));
        }
        let emb = emb.silu();

        let mut skips = Vec::with_capacity(self.enc.len());
        let mut x = x.shallow_clone();
        for item in &self.enc {
            x = match item {
                EncItem::Conv(c) => c.forward(&x),
                EncItem::Block(blk) => blk.forward(&x, &emb, dropout),
            };
            skips.push(x.shallow_clone());
        }
        for blk in &self.dec {
            if x.size()[1] != blk.in_channels() {
                let s = skips.pop().expect("one skip per decoder block");
                x = Tensor::cat(&[&x, &s], 1);
            }
            x = blk.forward(&x, &emb, dropout);
        }
        self.out_conv.forward(&self.out_norm.forward(&x).silu())
    }
}
