//! `SongUNet` of EDM: the DDPM++ and NCSN++ architectures ("Score-Based Generative Modeling through
//! Stochastic Differential Equations", as re-implemented in EDM `training/networks.py`).

use crate::block::{UNetBlock, UNetBlockConfig};
use crate::builder::{Builder, Init, InitMode};
use crate::config::{DecoderType, EmbeddingType, EncoderType, SongUNetConfig};
use crate::dropout::DropoutMode;
use crate::error::UnetError;
use crate::layers::{
    Conv2d, Conv2dConfig, FourierEmbedding, GroupNorm, Linear, PositionalEmbedding, Resample,
};
use tch::Tensor;

#[derive(Debug)]
enum NoiseEmbedding {
    Positional(PositionalEmbedding),
    Fourier(FourierEmbedding),
}

#[derive(Debug)]
enum EncItem {
    Conv(Conv2d),
    Block(Box<UNetBlock>),
    AuxDown(Conv2d),
    AuxSkip(Conv2d),
    AuxResidual(Conv2d),
}

#[derive(Debug)]
enum DecItem {
    Block(Box<UNetBlock>),
    AuxUp(Conv2d),
    AuxNorm(GroupNorm),
    AuxConv(Conv2d),
}

/// DDPM++ / NCSN++ UNet; parameter names as the reference (`map_layer0`, `enc.32x32_block0`, ...).
#[derive(Debug)]
pub struct SongUNet {
    map_noise: NoiseEmbedding,
    map_label: Option<Linear>,
    map_augment: Option<Linear>,
    map_layer0: Linear,
    map_layer1: Linear,
    enc: Vec<EncItem>,
    dec: Vec<DecItem>,
    label_dropout: f64,
}

impl SongUNet {
    /// Builds the network under `b` (the reference's `model`), layers created in reference order so a
    /// fixed torch seed gives the reference's initial weights.
    pub fn new(
        b: &Builder<'_>,
        img_resolution: i64,
        in_channels: i64,
        out_channels: i64,
        label_dim: i64,
        cfg: &SongUNetConfig,
    ) -> Result<Self, UnetError> {
        let emb_channels = cfg.model_channels * cfg.channel_mult_emb;
        let noise_channels = cfg.model_channels * cfg.channel_mult_noise;
        let init = Init::new(InitMode::XavierUniform);
        let init_zero = Init::new(InitMode::XavierUniform).weight(1e-5);
        let init_attn = Init::new(InitMode::XavierUniform).weight(0.2f64.sqrt());
        let filter = cfg.resample_filter.as_slice();
        let block = |cin, cout, resample, attention| UNetBlockConfig {
            in_channels: cin,
            out_channels: cout,
            emb_channels,
            resample,
            attention,
            num_heads: Some(1),
            channels_per_head: 64,
            dropout: cfg.dropout,
            skip_scale: 0.5f64.sqrt(),
            eps: 1e-6,
            resample_filter: filter,
            resample_proj: true,
            adaptive_scale: false,
            init,
            init_zero,
            init_attn: Some(init_attn),
        };
        let conv = |kernel, resample, fused, init| Conv2dConfig {
            kernel,
            bias: true,
            resample,
            resample_filter: filter,
            fused_resample: fused,
            init,
        };

        // Mapping.
        let map_noise = match cfg.embedding_type {
            EmbeddingType::Positional => {
                NoiseEmbedding::Positional(PositionalEmbedding::new(noise_channels, true))
            }
            EmbeddingType::Fourier => NoiseEmbedding::Fourier(FourierEmbedding::new(
                &b.sub("map_noise"),
                noise_channels,
                16.0,
            )),
        };
        let map_label = (label_dim > 0)
            .then(|| Linear::new(&b.sub("map_label"), label_dim, noise_channels, true, init));
        let map_augment = (cfg.augment_dim > 0).then(|| {
            Linear::new(
                &b.sub("map_augment"),
                cfg.augment_dim,
                noise_channels,
                false,
                init,
            )
        });
        let map_layer0 = Linear::new(
            &b.sub("map_layer0"),
            noise_channels,
            emb_channels,
            true,
            init,
        );
        let map_layer1 = Linear::new(&b.sub("map_layer1"), emb_channels, emb_channels, true, init);

        // Encoder.
        let be = b.sub("enc");
        let mut enc = Vec::new();
        let mut skips = Vec::new();
        let mut cout = in_channels;
        let mut caux = in_channels;
        for (level, &mult) in cfg.channel_mult.iter().enumerate() {
            let res = img_resolution >> level;
            if level == 0 {
                let cin = cout;
                cout = cfg.model_channels;
                enc.push(EncItem::Conv(Conv2d::new(
                    &be.sub(&format!("{res}x{res}_conv")),
                    cin,
                    cout,
                    &conv(3, Resample::Keep, false, init),
                )));
                skips.push(cout);
            } else {
                let name = format!("{res}x{res}_down");
                enc.push(EncItem::Block(Box::new(UNetBlock::new(
                    &be.sub(&name),
                    &block(cout, cout, Resample::Down, false),
                )?)));
                skips.push(cout);
                if cfg.encoder_type == EncoderType::Skip {
                    let plain = Init::new(InitMode::KaimingNormal);
                    let down = Conv2d::new(
                        &be.sub(&format!("{res}x{res}_aux_down")),
                        caux,
                        caux,
                        &conv(0, Resample::Down, false, plain),
                    );
                    enc.push(EncItem::AuxDown(down));
                    let skip = Conv2d::new(
                        &be.sub(&format!("{res}x{res}_aux_skip")),
                        caux,
                        cout,
                        &conv(1, Resample::Keep, false, init),
                    );
                    enc.push(EncItem::AuxSkip(skip));
                }
                if cfg.encoder_type == EncoderType::Residual {
                    let r = Conv2d::new(
                        &be.sub(&format!("{res}x{res}_aux_residual")),
                        caux,
                        cout,
                        &conv(3, Resample::Down, true, init),
                    );
                    enc.push(EncItem::AuxResidual(r));
                    caux = cout;
                }
            }
            for idx in 0..cfg.num_blocks {
                let cin = cout;
                cout = cfg.model_channels * mult;
                let attn = cfg.attn_resolutions.contains(&res);
                let name = format!("{res}x{res}_block{idx}");
                enc.push(EncItem::Block(Box::new(UNetBlock::new(
                    &be.sub(&name),
                    &block(cin, cout, Resample::Keep, attn),
                )?)));
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
                dec.push(DecItem::Block(Box::new(UNetBlock::new(
                    &sub("in0"),
                    &block(cout, cout, Resample::Keep, true),
                )?)));
                dec.push(DecItem::Block(Box::new(UNetBlock::new(
                    &sub("in1"),
                    &block(cout, cout, Resample::Keep, false),
                )?)));
            } else {
                dec.push(DecItem::Block(Box::new(UNetBlock::new(
                    &sub("up"),
                    &block(cout, cout, Resample::Up, false),
                )?)));
            }
            for idx in 0..=cfg.num_blocks {
                let cin = cout + skips.pop().expect("one skip per encoder output");
                cout = cfg.model_channels * mult;
                let attn = idx == cfg.num_blocks && cfg.attn_resolutions.contains(&res);
                dec.push(DecItem::Block(Box::new(UNetBlock::new(
                    &sub(&format!("block{idx}")),
                    &block(cin, cout, Resample::Keep, attn),
                )?)));
            }
            if cfg.decoder_type == DecoderType::Skip || level == 0 {
                if cfg.decoder_type == DecoderType::Skip && level < levels - 1 {
                    let plain = Init::new(InitMode::KaimingNormal);
                    let up = Conv2d::new(
                        &sub("aux_up"),
                        out_channels,
                        out_channels,
                        &conv(0, Resample::Up, false, plain),
                    );
                    dec.push(DecItem::AuxUp(up));
                }
                dec.push(DecItem::AuxNorm(GroupNorm::new(
                    &sub("aux_norm"),
                    cout,
                    1e-6,
                )?));
                let c = Conv2d::new(
                    &sub("aux_conv"),
                    cout,
                    out_channels,
                    &conv(3, Resample::Keep, false, init_zero),
                );
                dec.push(DecItem::AuxConv(c));
            }
        }
        Ok(SongUNet {
            map_noise,
            map_label,
            map_augment,
            map_layer0,
            map_layer1,
            enc,
            dec,
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
        // Mapping. The reference swaps the cos/sin halves after embedding; build them swapped.
        let (cos, sin) = match &self.map_noise {
            NoiseEmbedding::Positional(p) => p.halves(noise_labels),
            NoiseEmbedding::Fourier(f) => f.halves(noise_labels),
        };
        let mut emb = Tensor::cat(&[sin, cos], 1);
        if let (Some(map_label), Some(labels)) = (&self.map_label, class_labels) {
            let tmp = dropout.label_dropout(labels, self.label_dropout);
            let in_features = map_label.weight.size()[1] as f64;
            emb = emb + map_label.forward(&(tmp * in_features.sqrt()));
        }
        if let (Some(map_augment), Some(aug)) = (&self.map_augment, augment_labels) {
            emb = emb + map_augment.forward(aug);
        }
        let emb = self.map_layer0.forward(&emb).silu();
        let emb = self.map_layer1.forward(&emb).silu();

        // Encoder.
        let mut skips: Vec<Tensor> = Vec::new();
        let mut aux = x.shallow_clone();
        let mut x = x.shallow_clone();
        for item in &self.enc {
            match item {
                EncItem::AuxDown(c) => aux = c.forward(&aux),
                EncItem::AuxSkip(c) => {
                    x = x + c.forward(&aux);
                    *skips.last_mut().expect("aux follows a block") = x.shallow_clone();
                }
                EncItem::AuxResidual(c) => {
                    x = (x + c.forward(&aux)) / 2f64.sqrt();
                    aux = x.shallow_clone();
                    *skips.last_mut().expect("aux follows a block") = x.shallow_clone();
                }
                EncItem::Conv(c) => {
                    x = c.forward(&x);
                    skips.push(x.shallow_clone());
                }
                EncItem::Block(blk) => {
                    x = blk.forward(&x, &emb, dropout);
                    skips.push(x.shallow_clone());
                }
            }
        }

        // Decoder.
        let mut aux: Option<Tensor> = None;
        let mut tmp: Option<Tensor> = None;
        for item in &self.dec {
            match item {
                DecItem::AuxUp(c) => aux = aux.as_ref().map(|a| c.forward(a)),
                DecItem::AuxNorm(n) => tmp = Some(n.forward(&x)),
                DecItem::AuxConv(c) => {
                    let t = c.forward(&tmp.take().expect("aux_norm precedes aux_conv").silu());
                    aux = Some(match aux.take() {
                        None => t,
                        Some(a) => t + a,
                    });
                }
                DecItem::Block(blk) => {
                    if x.size()[1] != blk.in_channels() {
                        let s = skips.pop().expect("one skip per decoder block");
                        x = Tensor::cat(&[&x, &s], 1);
                    }
                    x = blk.forward(&x, &emb, dropout);
                }
            }
        }
        aux.expect("level 0 always has an output head")
    }
}
