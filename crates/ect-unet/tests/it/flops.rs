//! FLOP counts from the networks' forward passes: hand-computed figures for tiny SongUNets, an
//! independent count from the parameter names and shapes for whole networks (presets included),
//! linearity in the batch, and nothing counted outside `count_flops`.

use crate::common;

use ect_unet::builder::Builder;
use ect_unet::flops::{count_flops, is_counting, thread_total, FlopCount};
use ect_unet::{
    CoeffMode, DhariwalUNetConfig, DropoutMode, EcmConfig, ModelConfig, NetworkConfig, Precond,
    SongUNetConfig,
};
use tch::{nn::VarStore, Device, Kind, Tensor};

/// [`ect_unet::forward_flops_per_image`] of a config validated here.
fn flops(cfg: &NetworkConfig) -> Result<FlopCount, ect_unet::UnetError> {
    ect_unet::forward_flops_per_image(&cfg.clone().validated()?)
}

fn song(res: i64, ch: i64, model: SongUNetConfig) -> NetworkConfig {
    NetworkConfig::Ecm(EcmConfig::new(res, ch, 0, ModelConfig::SongUNet(model)))
}

/// 8x8x3, 8 channels, one level, one block per level: the mapping MLP is 8 -> 32 -> 32.
fn tiny(channel_mult: Vec<i64>, attn_resolutions: Vec<i64>) -> NetworkConfig {
    song(
        8,
        3,
        SongUNetConfig {
            model_channels: 8,
            channel_mult,
            num_blocks: 1,
            attn_resolutions,
            dropout: 0.0,
            ..SongUNetConfig::default()
        },
    )
}

/// The Fashion-MNIST network of `configs/fmnist-quick.toml` (the reference's small SongUNet).
fn fmnist() -> NetworkConfig {
    song(
        28,
        1,
        SongUNetConfig {
            model_channels: 32,
            channel_mult: vec![1, 2, 2],
            num_blocks: 2,
            attn_resolutions: vec![14],
            dropout: 0.2,
            ..SongUNetConfig::default()
        },
    )
}

fn counts(macs: u64, conv: u64, resample: u64, linear: u64, attention: u64) -> FlopCount {
    FlopCount {
        macs,
        conv,
        resample,
        linear,
        attention,
    }
}

// One level at 8x8 (64 pixels), no attention requested. MACs per layer (batch 1):
//   map_layer0 8*32 = 256, map_layer1 32*32 = 1,024                         linear  1,280
//   enc 8x8_conv 3->8 3x3: 64*8*3*9                                         conv   13,824
//   enc block0 8->8: conv0 64*8*8*9 = 36,864, affine 32*8 = 256, conv1 36,864       73,984
//   dec in0 8->8 (in0 always has attention): 73,984 + qkv 64*24*8 = 12,288
//     + attention 2 * 8 * 64^2 = 65,536 + proj 64*8*8 = 4,096                      155,904
//   dec in1 8->8                                                                    73,984
//   dec block0, block1 16->8: conv0 64*8*16*9 = 73,728, affine 256,
//     conv1 36,864, skip 1x1 64*8*16 = 8,192: 119,040 each                         238,080
//   dec aux_conv 8->3 3x3: 64*3*8*9                                                 13,824
// Total 570,880 = conv 502,784 + linear 1,280 + 5 affines * 256 + attention 65,536.
#[test]
fn tiny_song_unet_matches_the_hand_count() {
    let _torch = crate::torch();
    let c = flops(&tiny(vec![1], vec![])).unwrap();
    assert_eq!(c, counts(570_880, 502_784, 0, 2_560, 65_536));
    assert_eq!(c.flops(), 1_141_760);
}

// As above with attention at 8x8: enc block0 and dec block1 (the last block of the level) gain
// qkv 12,288 + attention 65,536 + proj 4,096 = 81,920 each: 570,880 + 163,840 = 734,720.
#[test]
fn tiny_song_unet_with_attention_matches_the_hand_count() {
    let _torch = crate::torch();
    let c = flops(&tiny(vec![1], vec![8])).unwrap();
    assert_eq!(c, counts(734_720, 535_552, 0, 2_560, 196_608));
}

// Two levels (8x8, 4x4) with the [1,1] filter; every affine is 32*8 = 256 (10 blocks).
//   8x8: enc conv 13,824, block0 73,984
//   4x4 (16 pixels): enc down block 8->8: FIR down 8*16*2*2 = 512, conv0 16*8*8*9 = 9,216,
//     affine 256, conv1 9,216, skip = FIR down 512 + 1x1 16*8*8 = 1,024          20,736
//   enc block0 9,216 + 256 + 9,216                                               18,688
//   dec in0: 18,688 + qkv 16*24*8 = 3,072 + attention 2*8*16^2 = 4,096 + proj 1,024   26,880
//   dec in1                                                                      18,688
//   dec block0, block1 16->8: 16*8*16*9 = 18,432 + 256 + 9,216 + skip 16*8*16 = 2,048  2 * 29,952
//   8x8: dec up block 8->8: FIR up (transposed, per input pixel) 8*16*2*2 = 512, conv0 36,864,
//     affine 256, conv1 36,864, skip = FIR up 512 + 1x1 64*8*8 = 4,096           79,104
//   dec block0, block1 16->8 (as in the one-level net)                      2 * 119,040
//   aux_conv 13,824; mapping 1,280
// Total 564,992 = conv 555,008 + resample 2,048 + linear 3,840 + attention 4,096.
#[test]
fn two_level_song_unet_matches_the_hand_count() {
    let _torch = crate::torch();
    let c = flops(&tiny(vec![1, 1], vec![])).unwrap();
    assert_eq!(c, counts(564_992, 555_008, 2_048, 3_840, 4_096));
}

/// The same count derived from the parameter names and shapes alone (no forward pass), for networks
/// without fused resampling (DDPM++, ADM, EDM2): a convolution weight `[o, i, k, k]` in a
/// `{r}x{r}_...` module runs at r x r; 2-D weights are linear layers; a `qkv` weight with `c` input
/// channels means `2 c (r^2)^2` attention MACs; a `_down` block filters its `cin` input channels to
/// r x r (`cin r^2 k^2`), an `_up` block filters them at r/2 x r/2 (`cin (r/2)^2 k^2`).
fn count_from_names(cfg: &NetworkConfig, taps: i64) -> FlopCount {
    let vs = VarStore::new(Device::Cpu);
    Precond::build(
        &Builder::shapes_only(vs.root()),
        &cfg.clone().validated().unwrap(),
    )
    .unwrap();
    let vars = vs.variables();
    let full = cfg.img_resolution();
    let res_of = |name: &str| -> i64 {
        name.split('.')
            .find_map(|part| part.split_once('x').and_then(|(r, _)| r.parse().ok()))
            .unwrap_or(full)
    };
    let mut c = FlopCount::default();
    for (name, t) in &vars {
        let s = t.size();
        if !name.ends_with(".weight") {
            continue;
        }
        let r = res_of(name);
        let numel: i64 = s.iter().product();
        match s.len() {
            2 => c.linear += numel as u64,
            4 => {
                c.conv += (numel * r * r) as u64;
                if name.ends_with("qkv.weight") {
                    c.attention += (2 * s[1] * (r * r) * (r * r)) as u64;
                }
            }
            _ => {}
        }
        // One resampling per conv0 / conv_res0 of a resampling block, one more for a SongUNet/ADM skip.
        let block = name.rsplit_once('.').unwrap().0.rsplit_once('.').unwrap().0;
        let is_conv0 = name.ends_with(".conv0.weight") || name.ends_with(".conv_res0.weight");
        if is_conv0 && (block.ends_with("_down") || block.ends_with("_up")) {
            let cin = s[1];
            let filtered_res = if block.ends_with("_down") { r } else { r / 2 };
            let per_filter = (cin * filtered_res * filtered_res * taps * taps) as u64;
            let filters = if vars.contains_key(&format!("{block}.skip.resample_filter")) {
                2
            } else {
                1
            };
            c.resample += filters * per_filter;
        }
    }
    c.macs = c.conv + c.resample + c.linear + c.attention;
    c
}

fn adm_with_attention() -> NetworkConfig {
    // 64 channels per head: one head at 16x16, two at 8x8.
    NetworkConfig::Ecm(EcmConfig::new(
        16,
        3,
        4,
        ModelConfig::DhariwalUNet(DhariwalUNetConfig {
            model_channels: 64,
            channel_mult: vec![1, 2],
            num_blocks: 1,
            attn_resolutions: vec![16, 8],
            dropout: 0.0,
            ..DhariwalUNetConfig::default()
        }),
    ))
}

#[test]
fn forward_counts_equal_the_counts_from_parameter_shapes() {
    let _torch = crate::torch();
    let cases = [
        ("ddpmpp-tiny", common::config_unchecked("unet-ddpmpp-tiny")),
        ("adm-tiny", common::config_unchecked("unet-adm-tiny")),
        ("adm-attention", adm_with_attention()),
        ("edm2-tiny", common::config_unchecked("unet-edm2-tiny")),
        ("two-level", tiny(vec![1, 1], vec![])),
        ("fmnist", fmnist()),
    ];
    for (name, cfg) in cases {
        let got = flops(&cfg).unwrap();
        assert_eq!(got, count_from_names(&cfg, 2), "{name}");
        assert!(got.conv > 0 && got.linear > 0, "{name}: {got:?}");
    }
}

/// Totals that `torch.utils.flop_counter.FlopCounterMode` (PyTorch 2.11, which counts convolutions,
/// matrix products and batched products as here, at 2 FLOPs per MAC) reports for one batch-1 forward
/// of the authors' `SongUNet` / `DhariwalUNet` (NVlabs/edm `training/networks.py`) and EDM2 `UNet`
/// (NVlabs/edm2 `training/networks_edm2.py`) with the same configs, halved. The tiny SongUNets above,
/// the Fashion-MNIST net, DDPM++ and NCSN++ gave exactly the totals asserted in their tests too.
#[test]
fn totals_equal_torch_flop_counter_on_the_reference_code() {
    let _torch = crate::torch();
    let cases = [
        (
            "unet-adm-tiny",
            common::config_unchecked("unet-adm-tiny"),
            17_683_712u64,
        ),
        ("adm-attention", adm_with_attention(), 338_707_456),
        (
            "unet-edm2-tiny",
            common::config_unchecked("unet-edm2-tiny"),
            77_646_080,
        ),
    ];
    for (name, cfg, want) in cases {
        assert_eq!(flops(&cfg).unwrap().macs, want, "{name}");
    }
}

/// The Fashion-MNIST network of the CPU-scale presets, 1,752,993 parameters.
#[test]
fn fmnist_network_forward_flops() {
    let _torch = crate::torch();
    assert_eq!(
        ect_unet::try_count_parameters(&fmnist()).unwrap(),
        1_752_993
    );
    let c = flops(&fmnist()).unwrap();
    println!("fmnist: {} MACs, {c}", c.macs);
    assert_eq!(c, FMNIST);
}

/// 0.681 GFLOPs per image. Attention: three layers at 14x14 (L = 196, 64 channels,
/// 2 * 64 * 196^2 = 4,917,248 each) plus the bottleneck's at 7x7 (2 * 64 * 49^2 = 307,328).
const FMNIST: FlopCount = FlopCount {
    macs: 340_417_664,
    conv: 324_989_952,
    resample: 200_704,
    linear: 167_936,
    attention: 15_059_072,
};

/// DDPM++ for CIFAR-10 (55.7M parameters): about a second of CPU for the batch-1 forward.
#[test]
fn ddpmpp_cifar10_forward_flops() {
    let _torch = crate::torch();
    let cfg = NetworkConfig::ddpmpp_cifar10(0.0);
    let c = flops(&cfg).unwrap();
    println!("ddpm++ cifar10: {} MACs, {c}", c.macs);
    assert_eq!(c, count_from_names(&cfg, 2));
    assert_eq!(c, DDPMPP);
}

/// 21.19 G MACs = 42.38 GFLOPs per image: the "21 GFLOPs" quoted for this network counts MACs.
/// Resampling: 256 channels, two [1,1] filters per resampling block, 4 MACs per filtered pixel:
/// down to 16x16 and 8x8, up from 8x8 and 16x16: 2 * 256 * 4 * (256 + 64 + 64 + 256) = 1,310,720.
const DDPMPP: FlopCount = FlopCount {
    macs: 21_191_524_352,
    conv: 21_015_691_264,
    resample: 1_310_720,
    linear: 4_653_056,
    attention: 169_869_312,
};

/// NCSN++ for CIFAR-10 (56.4M parameters; residual encoder with fused resampling, [1,3,3,1] filter).
#[test]
fn ncsnpp_cifar10_forward_flops() {
    let _torch = crate::torch();
    let c = flops(&NetworkConfig::ncsnpp_cifar10(0.0)).unwrap();
    println!("ncsn++ cifar10: {} MACs, {c}", c.macs);
    assert_eq!(c, NCSNPP);
}

/// 21.40 G MACs = 42.79 GFLOPs per image. Resampling with the 4x4 filter (16 MACs per filtered
/// pixel): the blocks as in DDPM++, 2 * 256 * 16 * (256 + 64 + 64 + 256) = 5,242,880, plus the fused
/// `aux_residual` downsamplers, 256 * 16 * (16^2 + 8^2) = 1,310,720. Their 3x3 convolutions run on
/// the padded (34x34, 18x18) grid as in the reference.
const NCSNPP: FlopCount = FlopCount {
    macs: 21_395_926_016,
    conv: 21_214_784_512,
    resample: 6_553_600,
    linear: 4_718_592,
    attention: 169_869_312,
};

/// EDM2 ImageNet-64 presets: `cargo test -p ect-unet --test flops -- --ignored --nocapture` (a
/// batch-1 forward of each, seconds to a minute of CPU each).
#[test]
#[ignore]
fn edm2_imagenet64_presets_forward_flops() {
    let _torch = crate::torch();
    // G MACs 100.8 / 178.9 / 279.3 / 402.0 (FLOPs twice that); torch's flop counter on EDM2's UNet
    // gives the same totals.
    for (size, want) in [
        ("S", 100_808_226_816u64),
        ("M", 178_933_374_976),
        ("L", 279_319_726_080),
        ("XL", 401_967_280_128),
    ] {
        let cfg = NetworkConfig::edm2_imagenet64(size, 0.0).unwrap();
        let t = std::time::Instant::now();
        let c = flops(&cfg).unwrap();
        println!("EDM2-{size}: {} MACs, {c} ({:.1?})", c.macs, t.elapsed());
        assert_eq!(c, count_from_names(&cfg, 2), "EDM2-{size}");
        assert_eq!(c.macs, want, "EDM2-{size}");
    }
}

fn real_net(cfg: &NetworkConfig) -> (VarStore, Precond) {
    tch::manual_seed(0);
    let vs = VarStore::new(Device::Cpu);
    let net = Precond::new(&vs.root(), &cfg.clone().validated().unwrap()).unwrap();
    (vs, net)
}

fn counted_forward(net: &Precond, n: i64) -> FlopCount {
    let opts = (Kind::Float, Device::Cpu);
    let (c, r, l) = (net.img_channels(), net.img_resolution(), net.label_dim());
    let x = Tensor::randn([n, c, r, r], opts);
    let sigma = Tensor::full([n], 1.3, opts);
    // One label row per image: the map_label layer then also scales with the batch.
    let labels = (l > 0).then(|| Tensor::eye(l, opts).narrow(0, 0, 1).repeat([n, 1]));
    let (out, count) = tch::no_grad(|| {
        count_flops(|| {
            net.forward(
                &x,
                &sigma,
                labels.as_ref(),
                CoeffMode::Eval,
                DropoutMode::Off,
            )
        })
    });
    assert_eq!(out.size(), [n, c, r, r]);
    count
}

#[test]
fn counts_are_linear_in_the_batch_and_match_the_shapes_only_count() {
    let _torch = crate::torch();
    for name in common::FIXTURES {
        let cfg = common::config_unchecked(name);
        let (_vs, net) = real_net(&cfg);
        let one = counted_forward(&net, 1);
        let two = counted_forward(&net, 2);
        assert_eq!(two, one.times(2), "{name}");
        assert!(one.macs > 0, "{name}");
        assert_eq!(one, flops(&cfg).unwrap(), "{name}");
    }
}

#[test]
fn nothing_is_counted_outside_count_flops() {
    let _torch = crate::torch();
    let (_vs, net) = real_net(&common::config_unchecked("unet-ddpmpp-tiny"));
    let opts = (Kind::Float, Device::Cpu);
    let x = Tensor::randn([2, 3, 16, 16], opts);
    let sigma = Tensor::ones([2], opts);
    let before = thread_total();
    assert!(!is_counting());
    let _ = net.forward(&x, &sigma, None, CoeffMode::Train, DropoutMode::Off);
    assert_eq!(thread_total(), before);
    let (_, c) = count_flops(|| {
        assert!(is_counting());
        net.forward(&x, &sigma, None, CoeffMode::Train, DropoutMode::Off)
    });
    assert!(c.macs > 0);
    assert!(!is_counting());
    assert_eq!(thread_total(), before + c);
    let _ = net.forward(&x, &sigma, None, CoeffMode::Train, DropoutMode::Off);
    assert_eq!(thread_total(), before + c);
}

#[test]
fn nested_counts_add_to_the_outer_count() {
    let _torch = crate::torch();
    let (_vs, net) = real_net(&common::config_unchecked("unet-ddpmpp-tiny"));
    let one = counted_forward(&net, 1);
    let (inner, outer) = count_flops(|| {
        let inner = counted_forward(&net, 1);
        let _ = counted_forward(&net, 2);
        inner
    });
    assert_eq!(inner, one);
    assert_eq!(outer, one.times(3));
}

#[test]
fn a_panic_inside_the_region_switches_counting_off() {
    let _torch = crate::torch();
    let r = std::panic::catch_unwind(|| count_flops(|| panic!("inside")));
    assert!(r.is_err());
    assert!(!is_counting());
}

#[test]
fn invalid_configs_are_errors_naming_the_field() {
    let _torch = crate::torch();
    let mut cfg = tiny(vec![1, 1], vec![]);
    if let NetworkConfig::Ecm(c) = &mut cfg {
        c.image.img_resolution = 9;
    }
    let err = flops(&cfg).unwrap_err();
    assert!(err.to_string().contains("img_resolution"), "{err}");
}
