//! The trainer's seams: one optimizer step at a time with any objective, the loss-scaling path of mixed
//! precision exercised on the CPU, and a configuration validated once.

use std::path::Path;

use ect_config::train::SamplingConfig;
use ect_config::{NetworkConfig, TrainConfig};
use ect_train::amp::{LossScaleConfig, LossScaler};
use ect_train::checkpoint::{self, TrainState};
use ect_train::denoiser::{Denoiser, Pass};
use ect_train::objective::{NoiseLevels, Objective};
use ect_train::sampler::Sampler;
use ect_train::stats::StepOutcome;
use ect_train::trainer::Trainer;
use ect_train::RunOptions;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

fn write_idx(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let mut bytes = vec![0, 0, 8, 3, 0, 0, 0, 32, 0, 0, 0, 8, 0, 0, 0, 8];
    let mut state = 7u32;
    for _ in 0..32 * 64 {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        bytes.push((state >> 24) as u8);
    }
    std::fs::write(dir.join("train-images-idx3-ubyte"), bytes).unwrap();
}

const TOML: &str = "seed = 1\ndevice = \"cpu\"\nthreads = 1\niterations = 6\nbatch_size = 8\n\
     [network]\nnetwork = \"ECMPrecond\"\nimg_resolution = 8\nimg_channels = 1\n\
     model_type = \"SongUNet\"\nmodel_channels = 8\nchannel_mult = [1]\nnum_blocks = 1\n\
     attn_resolutions = []\ndropout = 0.1\n\
     [schedule]\niters_per_stage = 2\n\
     [output]\ncheckpoint_every = 0\nsample_every = 0\nlog_every = 1\n";

fn config(data: &Path, run: &Path) -> TrainConfig {
    let sets = [
        format!("data.path={:?}", data.display().to_string()),
        format!("output.run_dir={:?}", run.display().to_string()),
    ];
    TrainConfig::from_toml_str(TOML, "<test>", &sets).unwrap()
}

fn quiet() -> RunOptions {
    RunOptions {
        quiet: true,
        ..RunOptions::default()
    }
}

fn run(data: &Path, run: &Path, scale: Option<LossScaleConfig>) -> (Vec<u8>, TrainState) {
    let cfg = config(data, run);
    std::fs::create_dir_all(run).unwrap();
    let mut trainer = Trainer::new(cfg, run.to_path_buf(), None).unwrap();
    if let Some(s) = &scale {
        trainer = trainer.with_loss_scaler(LossScaler::new(s));
    }
    trainer.run(&quiet()).unwrap();
    let ckpt = checkpoint::latest_checkpoint(run).unwrap().unwrap();
    let state = checkpoint::read_state(&ckpt).unwrap();
    (
        std::fs::read(ckpt.join(checkpoint::MODEL_FILE)).unwrap(),
        state,
    )
}

/// Without CUDA the autocast is a no-op, so a scaled float32 run must give exactly the unscaled run's
/// weights (power-of-two scales commute exactly with every floating-point operation of backprop), and
/// an overflowing scale must skip steps and back off.
#[test]
fn loss_scaling_is_exact_and_overflow_backs_off() {
    let _torch = crate::torch();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_idx(&data);
    let (plain, plain_state) = run(&data, &tmp.path().join("plain"), None);
    assert_eq!(plain_state.loss_scale, None);

    let growing = LossScaleConfig {
        growth_interval: 2,
        ..LossScaleConfig::default()
    };
    let (scaled, state) = run(&data, &tmp.path().join("scaled"), Some(growing));
    assert_eq!(
        plain, scaled,
        "a power-of-two loss scale changed the weights"
    );
    let s = state.loss_scale.unwrap();
    // Six good steps with growth every two: 2^16 -> 2^19.
    assert_eq!(
        (s.scale, s.good_steps, state.overflow_total),
        (524_288.0, 0, 0)
    );

    // 2^127 overflows the float32 gradients: steps are skipped until the scale is small enough.
    let huge = LossScaleConfig {
        init: 2f64.powi(127),
        ..LossScaleConfig::default()
    };
    let (_, state) = run(&data, &tmp.path().join("overflow"), Some(huge));
    let s = state.loss_scale.unwrap();
    assert!(state.overflow_total >= 1, "{state:?}");
    assert_eq!(s.scale, 2f64.powi(127 - state.overflow_total as i32));
    assert_eq!(state.step, 6);
    assert_eq!(state.optim_steps, 6 - state.overflow_total);
    assert_eq!(state.nonfinite_total, 0, "overflow is not divergence");
}

/// A denoising objective that exists only in this test: fixed noise levels `t = 1 + i` per batch
/// image, loss `|D(x0 + t eps, t) - x0|^2` (unweighted). It needs no configuration variant and no change
/// to the trainer.
struct FixedLevels {
    draws: usize,
}

impl Objective for FixedLevels {
    fn name(&self) -> &'static str {
        "fixed"
    }

    fn draw(&mut self, _step: u64, n: usize, rng: &mut ChaCha8Rng) -> NoiseLevels {
        self.draws += 1;
        // Drawing from the step's generator is allowed; it must not disturb anything else.
        let _: f64 = rng.gen();
        NoiseLevels {
            t: (0..n).map(|i| 1.0 + i as f64).collect(),
            r: vec![0.0; n],
        }
    }

    fn loss(
        &self,
        net: &dyn Denoiser,
        x0: &Tensor,
        labels: Option<&Tensor>,
        levels: &NoiseLevels,
        eps: &Tensor,
    ) -> Tensor {
        let t = Tensor::from_slice(&levels.t).to_kind(Kind::Float);
        let x = x0 + eps * t.view([-1, 1, 1, 1]);
        let d = net.denoise(&x, &t, labels, Pass::Train);
        (d - x0)
            .square()
            .flatten(1, -1)
            .sum_dim_intlist(-1, false, Kind::Float)
    }

    fn samplers(&self, _sampling: &SamplingConfig) -> Vec<Sampler> {
        vec![Sampler::consistency(vec![80.0, 0.0]).unwrap()]
    }
}

#[test]
fn a_new_objective_drives_the_trainer_step_by_step() {
    let _torch = crate::torch();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_idx(&data);
    let mut cfg = config(&data, &tmp.path().join("run"));
    cfg.micro_batch = 4;
    let objective = Box::new(FixedLevels { draws: 0 });
    let mut trainer =
        Trainer::with_objective(cfg, tmp.path().join("run"), None, objective).unwrap();
    let before: Vec<f32> = param_values(&trainer);
    let first = trainer.step().unwrap();
    assert_eq!(first.step, 1);
    assert_eq!(first.outcome, StepOutcome::Applied);
    assert_eq!(first.images, 8);
    // One draw for the global batch, t = [1, ..., 8] (each micro-batch of 4 takes its rows): the mean
    // t is 4.5, r is 0.
    assert_eq!((first.mean_t, first.mean_r, first.stage), (4.5, 0.0, 0));
    assert!(first.loss.is_finite() && first.loss > 0.0);
    let second = trainer.step().unwrap();
    assert_eq!(second.step, 2);
    assert_eq!(trainer.state().step, 2);
    assert_eq!(trainer.state().images_seen, 16);
    assert_ne!(
        before,
        param_values(&trainer),
        "the steps updated the weights"
    );
}

fn param_values(t: &Trainer) -> Vec<f32> {
    let mut vars: Vec<(String, Tensor)> = t.network().vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars.iter()
        .flat_map(|(_, v)| Vec::<f32>::try_from(v.flatten(0, -1)).unwrap())
        .collect()
}

/// A configuration is parsed and its network validated once, where it enters; training (the network and
/// its sampling copy, the objective, the data checks, the run directory) never validates it again.
#[test]
fn the_network_config_is_validated_once_per_run() {
    let _torch = crate::torch();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_idx(&data);
    let run = tmp.path().join("run");
    // The count is per thread: run on a fresh one so other tests cannot add to it.
    let counts = std::thread::spawn(move || {
        let before = NetworkConfig::validations_on_this_thread();
        let mut cfg = config(&data, &run);
        cfg.iterations = 2;
        let parsed = NetworkConfig::validations_on_this_thread() - before;
        ect_train::train(&cfg, &quiet()).unwrap();
        (parsed, NetworkConfig::validations_on_this_thread() - before)
    })
    .join()
    .unwrap();
    assert_eq!(counts, (1, 1), "(after parsing, after training)");
}

/// A step reads the device back to the host once, however many micro-batches it has: the loss
/// accumulates on the device and one read decides whether the update is applied. The counter is
/// `ect_train::transfer`'s; the source check below holds the step's code to reading through it.
#[test]
fn one_host_read_per_step_with_four_micro_batches() {
    let _torch = crate::torch();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_idx(&data);
    let run = tmp.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let mut cfg = config(&data, &run);
    cfg.micro_batch = 2;
    assert_eq!(cfg.batch_size / cfg.micro_batch_size(), 4);
    let mut trainer = Trainer::new(cfg, run, None).unwrap();
    for step in 1..=3 {
        let before = ect_train::transfer::host_reads();
        let report = trainer.step().unwrap();
        assert_eq!(report.outcome, StepOutcome::Applied);
        assert_eq!(
            ect_train::transfer::host_reads() - before,
            1,
            "host reads in step {step}"
        );
    }
}

/// The step's code (trainer, objectives) reads tensors back to the host only through
/// `transfer::read_scalar`, which the test above counts: any other read would be a hidden
/// synchronisation with the device per micro-batch.
#[test]
fn the_step_reads_the_device_only_through_the_counted_read() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![src.join("trainer.rs"), src.join("feeder.rs")];
    for entry in std::fs::read_dir(src.join("objective")).unwrap() {
        files.push(entry.unwrap().path());
    }
    let reads = [
        "double_value(",
        "int64_value(",
        "f64::try_from",
        "f32::try_from",
        "Vec::<f32>::try_from",
        "Vec::<f64>::try_from",
        "to_device(Device::Cpu)",
        "copy_data",
    ];
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        // Unit tests at the end of a file may read what they like.
        let code = text.split("#[cfg(test)]").next().unwrap();
        for read in reads {
            assert!(
                !code.contains(read),
                "{} reads the device with `{read}`; use ect_train::transfer::read_scalar",
                file.display()
            );
        }
    }
}
