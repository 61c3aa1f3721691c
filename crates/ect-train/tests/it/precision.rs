//! `precision = "bf16"` on the CPU: the trainer's forward passes run under bfloat16 autocast (seen from
//! inside the objective, and in the network's rounding), and a bf16 run trains like the float32 run (EDM
//! objective, 30 steps).

use std::path::Path;
use std::sync::{Arc, Mutex};

use ect_config::train::{Precision, SamplingConfig};
use ect_config::TrainConfig;
use ect_dist::context::{autocast_state, AutocastDevice, AutocastDtype};
use ect_train::denoiser::{Denoiser, Pass};
use ect_train::objective::{self, NoiseLevels, Objective};
use ect_train::sampler::Sampler;
use ect_train::trainer::Trainer;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

fn write_idx(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let mut bytes = vec![0, 0, 8, 3, 0, 0, 0, 32, 0, 0, 0, 8, 0, 0, 0, 8];
    for i in 0..32 * 64u32 {
        bytes.push(((i * 37 + i / 64 * 11) % 256) as u8);
    }
    std::fs::write(dir.join("train-images-idx3-ubyte"), bytes).unwrap();
}

fn config(data: &Path, run: &Path, precision: &str, iterations: u64) -> TrainConfig {
    let text = format!(
        "seed = 5\ndevice = \"cpu\"\nthreads = 1\niterations = {iterations}\nbatch_size = 8\n\
         precision = \"{precision}\"\n\
         [network]\nnetwork = \"ECMPrecond\"\nimg_resolution = 8\nimg_channels = 1\n\
         model_type = \"SongUNet\"\nmodel_channels = 16\nchannel_mult = [1, 2]\nnum_blocks = 1\n\
         attn_resolutions = [4]\ndropout = 0.0\n\
         [objective]\nkind = \"edm\"\n[optimizer]\nlr = 0.002\n\
         [output]\ncheckpoint_every = 0\nsample_every = 0\nlog_every = 1\n"
    );
    let sets = [
        format!("data.path={:?}", data.display().to_string()),
        format!("output.run_dir={:?}", run.display().to_string()),
    ];
    TrainConfig::from_toml_str(&text, "<test>", &sets).unwrap()
}

/// CPU autocast states seen: (enabled, dtype).
type Seen = Arc<Mutex<Vec<(bool, Option<AutocastDtype>)>>>;

/// The configured objective, recording the CPU autocast state each time the trainer asks for a loss.
struct Spy {
    inner: Box<dyn Objective>,
    seen: Seen,
}

impl Objective for Spy {
    fn name(&self) -> &'static str {
        "spy"
    }

    fn draw(&mut self, step: u64, n: usize, rng: &mut ChaCha8Rng) -> NoiseLevels {
        self.inner.draw(step, n, rng)
    }

    fn loss(
        &self,
        net: &dyn Denoiser,
        x0: &Tensor,
        labels: Option<&Tensor>,
        levels: &NoiseLevels,
        eps: &Tensor,
    ) -> Tensor {
        self.seen
            .lock()
            .unwrap()
            .push(autocast_state(AutocastDevice::Cpu).unwrap());
        self.inner.loss(net, x0, labels, levels, eps)
    }

    fn samplers(&self, sampling: &SamplingConfig) -> Vec<Sampler> {
        self.inner.samplers(sampling)
    }
}

fn losses(cfg: TrainConfig, run: &Path) -> (Vec<f64>, Vec<(bool, Option<AutocastDtype>)>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let spy = Box::new(Spy {
        inner: objective::from_config(&cfg),
        seen: seen.clone(),
    });
    let steps = cfg.iterations;
    let mut trainer = Trainer::with_objective(cfg, run.to_path_buf(), None, spy).unwrap();
    let losses = (0..steps).map(|_| trainer.step().unwrap().loss).collect();
    let seen = seen.lock().unwrap().clone();
    (losses, seen)
}

#[test]
fn bf16_forward_runs_in_bfloat16_and_trains_like_fp32() {
    let _torch = crate::torch();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_idx(&data);
    let n = 30;
    let (fp32, seen32) = losses(config(&data, &tmp.path().join("a"), "fp32", n), tmp.path());
    let (bf16, seen16) = losses(config(&data, &tmp.path().join("b"), "bf16", n), tmp.path());
    assert!(
        seen32.iter().all(|s| !s.0),
        "fp32 runs without autocast: {seen32:?}"
    );
    assert_eq!(seen16.len(), n as usize);
    assert!(
        seen16
            .iter()
            .all(|s| *s == (true, Some(AutocastDtype::BFloat16))),
        "{seen16:?}"
    );
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (first32, last32) = (mean(&fp32[..5]), mean(&fp32[fp32.len() - 5..]));
    let (first16, last16) = (mean(&bf16[..5]), mean(&bf16[bf16.len() - 5..]));
    let rel = (last16 - last32).abs() / last32;
    eprintln!(
        "losses over {n} steps: fp32 {first32:.4} -> {last32:.4}, bf16 {first16:.4} -> {last16:.4} \
         (last five steps differ by {:.1e} relative)",
        rel
    );
    // Both runs learn (EDM's denoising loss falls: measured 67.9 -> 49.2 over 30 steps), another
    // arithmetic ran (the losses are not those of float32), and the bf16 run's loss over the last five
    // steps is within 1% of the float32 run's (measured: 5.5e-5 relative).
    assert!(last32 < 0.9 * first32 && last16 < 0.9 * first16);
    assert!(fp32.iter().zip(&bf16).any(|(a, b)| a != b), "{bf16:?}");
    assert!(rel < 0.01, "bf16 {last16} vs fp32 {last32}");
}

#[test]
fn the_network_rounds_like_bfloat16_under_bf16_autocast() {
    let _torch = crate::torch();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), tmp.path(), "bf16", 1);
    tch::manual_seed(0);
    let net = ect_train::net::Network::new(&cfg.network, Device::Cpu).unwrap();
    // Random weights everywhere: at initialisation the last layer is near zero (DDPM++'s `init_weight
    // = 1e-5`), so the output would be the skip connection's exact copy of the input.
    tch::no_grad(|| {
        for mut v in net.vs.trainable_variables() {
            let r = v.randn_like() * 0.2;
            v.copy_(&r);
        }
    });
    let x = Tensor::randn([4, 1, 8, 8], (Kind::Float, Device::Cpu));
    // Large noise levels: the output is then mostly the network's (`c_skip` is below 1e-3).
    let sigma = Tensor::from_slice(&[20.0f32, 40.0, 60.0, 80.0]);
    let run = |p: Precision| {
        ect_train::amp::forward_in(p, Device::Cpu, || net.denoise(&x, &sigma, None, Pass::Eval))
            .unwrap()
    };
    let (full, half) = (run(Precision::Fp32), run(Precision::Bf16));
    // The preconditioning returns float32; inside, the convolutions ran in bfloat16 (8-bit mantissa:
    // relative errors around 1e-3 to 1e-2), where float32 would agree to about 1e-6.
    assert_eq!(half.kind(), Kind::Float);
    let rel = ((&half - &full).abs().max() / full.abs().max()).double_value(&[]);
    eprintln!("bf16 vs fp32 network output: max relative difference {rel:e}");
    assert!(rel > 1e-4 && rel < 1e-1, "{rel:e}");
}
