//! A tiny end-to-end run on synthetic 8x8 data written as IDX files: EDM pretraining, ECT tuning from the
//! pretrained run, sampling, an iCT run, and exact resume (an interrupted and resumed run ends with the
//! same bytes as an uninterrupted one).

use std::path::{Path, PathBuf};

use ect_config::{DeviceSpec, TrainConfig};
use ect_train::{
    resume, sample, train, ResumeOptions, RunOptions, SampleSpec, Sampler, WeightsChoice,
};

/// Four classes of 8x8 images: a bright 4x4 square in one quadrant over a dim, textured background.
fn write_idx(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut images = vec![0, 0, 8, 3];
    for d in [n as u32, 8, 8] {
        images.extend_from_slice(&d.to_be_bytes());
    }
    let mut labels = vec![0, 0, 8, 1];
    labels.extend_from_slice(&(n as u32).to_be_bytes());
    let mut state = 12345u32;
    for i in 0..n {
        let class = i % 4;
        labels.push(class as u8);
        let (qy, qx) = (class / 2 * 4, class % 2 * 4);
        for y in 0..8 {
            for x in 0..8 {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let inside = (qy..qy + 4).contains(&y) && (qx..qx + 4).contains(&x);
                let v = if inside {
                    200 + (state >> 28)
                } else {
                    20 + (state >> 27)
                };
                images.push(v as u8);
            }
        }
    }
    std::fs::write(dir.join("train-images-idx3-ubyte"), images).unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), labels).unwrap();
}

fn config(data: &Path, run: &Path, extra: &str) -> TrainConfig {
    let text = format!(
        r#"
seed = 3
device = "cpu"
threads = 1
iterations = 40
batch_size = 16
micro_batch = 8

[data]
path = "{data}"

[network]
network = "ECMPrecond"
img_resolution = 8
img_channels = 1
model_type = "SongUNet"
model_channels = 8
channel_mult = [1, 2]
channel_mult_emb = 2
num_blocks = 1
attn_resolutions = [4]
dropout = 0.1

[optimizer]
kind = "radam"
lr = 2e-3

[ema]
kind = "beta"
beta = 0.9

[sampling]
grid_images = 16
heun_steps = 4

[output]
run_dir = "{run}"
checkpoint_every = 20
sample_every = 20
log_every = 10
keep_last = 2
"#,
        data = data.display(),
        run = run.display()
    );
    let overrides: Vec<String> = extra
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    TrainConfig::from_toml_str(&text, "<test>", &overrides).unwrap()
}

fn quiet() -> RunOptions {
    RunOptions {
        quiet: true,
        ..RunOptions::default()
    }
}

fn stats(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("stats.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn latest_files(run: &Path) -> Vec<(String, Vec<u8>)> {
    let ckpt = ect_train::checkpoint::latest_checkpoint(run)
        .unwrap()
        .unwrap();
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&ckpt)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn pretrain_tune_sample() {
    let _torch = crate::torch();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_idx(&data, 64);
    let pre: PathBuf = tmp.path().join("pretrain");
    let cfg = config(
        &data,
        &pre,
        "objective={ kind = \"edm\" }\niterations=120\noutput.checkpoint_every=60\noutput.sample_every=60\nschedule.iters_per_stage=2",
    );
    let summary = train(&cfg, &quiet()).unwrap();
    assert_eq!(
        (summary.steps, summary.images_seen, summary.interrupted),
        (120, 1920, false)
    );
    let s = stats(&pre);
    assert_eq!(s.len(), 12);
    assert!(
        s.iter().all(|r| r["stage"] == 0),
        "an EDM run has no ECT stages (the config's schedule has a stage every 2 iterations)"
    );
    let first = s[0]["loss"].as_f64().unwrap();
    let last = s[s.len() - 1]["loss"].as_f64().unwrap();
    eprintln!(
        "EDM pretraining loss: first interval {first:.4}, last {last:.4}, {:.0} img/s",
        summary.images_per_second
    );
    assert!(
        last < 0.7 * first,
        "pretraining must reduce the loss: {first} -> {last}"
    );
    assert!(pre.join("samples/heun-000000120.png").exists());
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(pre.join("run.json")).unwrap()).unwrap();
    assert_eq!(meta["seed"], 3);
    assert_eq!(meta["world_size"], 1);
    assert!(meta["parameters"].as_u64().unwrap() > 1000);

    // ECT from the pretrained run; three stages of 20 iterations.
    let ect = tmp.path().join("ect");
    let cfg = config(
        &data,
        &ect,
        &format!(
            "init={{ kind = \"run\", path = \"{}\" }}\niterations=60\nschedule.iters_per_stage=20",
            pre.display()
        ),
    );
    let summary = train(&cfg, &quiet()).unwrap();
    assert_eq!(summary.steps, 60);
    let s = stats(&ect);
    let stages: Vec<u64> = s.iter().map(|r| r["stage"].as_u64().unwrap()).collect();
    // Each line reports the stage of the interval's last step (steps 10, 20, ... are iterations 9, 19, ...).
    assert_eq!(stages, [0, 0, 1, 1, 2, 2]);
    let rt: Vec<f64> = s
        .iter()
        .map(|r| r["mean_r_over_t"].as_f64().unwrap())
        .collect();
    assert!(rt[5] > rt[0], "dt shrinks with the stage: r/t {rt:?}");
    for r in &s {
        assert!(r["loss"].as_f64().unwrap().is_finite());
    }
    assert!(ect.join("samples/1step-000000060.png").exists());
    assert!(ect.join("samples/2step-000000060.png").exists());

    let out = tmp.path().join("s.npy");
    let spec = SampleSpec {
        source: ect.clone(),
        network_config: None,
        sampler: Sampler::consistency(vec![80.0, 0.821, 0.0]).unwrap(),
        n: 10,
        batch: 4,
        seed: 1,
        out: out.clone(),
        weights: WeightsChoice::Ema(0),
        device: DeviceSpec::Cpu,
        class: None,
    };
    let summary = sample(&spec).unwrap().expect("one process reports");
    assert_eq!(summary.shape, [10, 1, 8, 8]);
    assert_eq!(summary.processes, 1);
    let images = std::fs::read(&out).unwrap();
    assert_eq!(images.len(), 128 + 640);
    // Same seed, same first images, whatever n is.
    let four = tmp.path().join("s4.npy");
    sample(&SampleSpec {
        n: 4,
        out: four.clone(),
        ..spec.clone()
    })
    .unwrap();
    assert_eq!(std::fs::read(&four).unwrap()[128..], images[128..128 + 256]);
    let heun = sample(&SampleSpec {
        source: pre.clone(),
        sampler: Sampler::heun(6, 0.002, 80.0, 7.0).unwrap(),
        out: tmp.path().join("heun.png"),
        ..spec
    })
    .unwrap()
    .expect("one process reports");
    assert_eq!(heun.shape, [10, 1, 8, 8]);
    assert_eq!(heun.evaluations_per_image, 11);
}

#[test]
fn interrupted_and_resumed_run_is_bit_identical() {
    let _torch = crate::torch();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_idx(&data, 24);
    // Stage changes, an epoch boundary (24 images), flips, dropout and a checkpoint all fall inside.
    let extra = "iterations=12\nschedule.iters_per_stage=4\ndata.xflip=true\noutput.checkpoint_every=6\noutput.sample_every=5";
    let whole = tmp.path().join("whole");
    train(&config(&data, &whole, extra), &quiet()).unwrap();
    let split = tmp.path().join("split");
    let first = train(
        &config(&data, &split, extra),
        &RunOptions {
            stop_at_step: Some(5),
            ..quiet()
        },
    )
    .unwrap();
    assert!(first.interrupted);
    assert_eq!(first.steps, 5);
    let second = resume(&split, &ResumeOptions::default(), &quiet()).unwrap();
    assert_eq!(second.steps, 12);
    let (a, b) = (latest_files(&whole), latest_files(&split));
    assert_eq!(
        a.iter().map(|f| &f.0).collect::<Vec<_>>(),
        ["ema.safetensors", "model.safetensors", "optim.safetensors"]
    );
    let differing: Vec<&str> = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| x.1 != y.1)
        .map(|(x, _)| x.0.as_str())
        .collect();
    assert!(
        differing.is_empty(),
        "{differing:?} differ between the uninterrupted and the resumed run"
    );
    // A finished run refuses to start again in the same directory.
    assert!(train(&config(&data, &whole, extra), &quiet()).is_err());
}

#[test]
fn ict_runs_and_logs_finite_losses() {
    let _torch = crate::torch();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_idx(&data, 16);
    let run = tmp.path().join("ict");
    let cfg = config(&data, &run, "objective={ kind = \"ict\" }\niterations=10\noutput.sample_every=0\nema={ kind = \"power\", sigma_rels = [0.05, 0.1] }\noptimizer.kind=\"adam\"\noptimizer.decay_ref_iters=5");
    let summary = train(&cfg, &quiet()).unwrap();
    assert_eq!(summary.steps, 10);
    assert!(summary.last_loss.is_finite());
    let files = latest_files(&run);
    assert_eq!(
        files.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(),
        [
            "ema-0.050.safetensors",
            "ema-0.100.safetensors",
            "model.safetensors",
            "optim.safetensors"
        ]
    );
}

#[test]
fn diverging_run_skips_nonfinite_steps_then_stops_with_a_clear_error() {
    let _torch = crate::torch();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_idx(&data, 16);
    let run = tmp.path().join("boom");
    // A learning rate of 1e30 blows the weights up after the first update; every later loss is non-finite.
    let cfg = config(
        &data,
        &run,
        "optimizer.lr=1e30\niterations=20\noutput.max_nonfinite=3\noutput.sample_every=0",
    );
    let err = train(&cfg, &quiet()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("non-finite") && msg.contains("learning rate"),
        "{msg}"
    );
    match err {
        ect_train::TrainError::Diverged { count, step } => {
            assert_eq!(count, 3);
            assert!(step <= 5, "stopped at step {step}");
        }
        other => panic!("expected Diverged, got {other}"),
    }
}
