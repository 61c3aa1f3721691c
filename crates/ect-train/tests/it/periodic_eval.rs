//! Periodic FD during training (`[eval]`): `fd.jsonl` gets one finite record per sampler and evaluation
//! step, the evaluation does not change the training run (same bytes as a run without it), and a
//! half-configured `[eval]` is refused with the field named.

use std::path::Path;

use ect_config::TrainConfig;
use ect_metrics::extract::featnet::FeatureNet;
use ect_metrics::samples::Images;
use ect_metrics::score::stats_of_images;
use ect_train::periodic_eval::FdRecord;
use ect_train::{train, RunOptions};
use tch::Device;

/// 28x28 images: a bright bar at a class-dependent row over a dim, textured background.
fn images(n: usize) -> Vec<u8> {
    let mut px = Vec::with_capacity(n * 784);
    let mut state = 99u32;
    for i in 0..n {
        let row = 4 + (i % 5) * 4;
        for y in 0..28 {
            for _ in 0..28 {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let bar = (row..row + 3).contains(&y);
                px.push(if bar {
                    190 + (state >> 27)
                } else {
                    10 + (state >> 27)
                } as u8);
            }
        }
    }
    px
}

fn write_idx(dir: &Path, px: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    let mut bytes = vec![0, 0, 8, 3];
    for d in [(px.len() / 784) as u32, 28, 28] {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(px);
    std::fs::write(dir.join("train-images-idx3-ubyte"), bytes).unwrap();
}

fn config(data: &Path, run: &Path, extra: &[String]) -> TrainConfig {
    let text = format!(
        r#"
seed = 5
device = "cpu"
threads = 1
iterations = 4
batch_size = 8
[data]
path = "{data}"
[network]
network = "ECMPrecond"
img_resolution = 28
img_channels = 1
model_type = "SongUNet"
model_channels = 8
channel_mult = [1, 1]
num_blocks = 1
attn_resolutions = []
dropout = 0.2
[schedule]
iters_per_stage = 2
[optimizer]
kind = "radam"
lr = 1e-3
[ema]
kind = "beta"
beta = 0.9
[output]
run_dir = "{run}"
checkpoint_every = 0
sample_every = 0
log_every = 1
"#,
        data = data.display(),
        run = run.display()
    );
    TrainConfig::from_toml_str(&text, "<test>", extra).unwrap()
}

fn model_bytes(run: &Path) -> Vec<u8> {
    let ckpt = ect_train::checkpoint::latest_checkpoint(run)
        .unwrap()
        .unwrap();
    std::fs::read(ckpt.join("model.safetensors")).unwrap()
}

#[test]
fn fd_is_logged_per_sampler_and_leaves_training_unchanged() {
    let _torch = crate::torch();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let px = images(40);
    write_idx(&data, &px);
    // A feature net (untrained is enough for the plumbing) and reference statistics of the data.
    tch::manual_seed(0);
    let net = FeatureNet::new(Device::Cpu);
    let weights = tmp.path().join("featnet.safetensors");
    net.save(&weights).unwrap();
    let reference = stats_of_images(
        &Images {
            pixels: px,
            n: 40,
            c: 1,
            h: 28,
            w: 28,
        },
        &net,
        16,
    )
    .unwrap();
    let npz = tmp.path().join("reference.npz");
    ect_metrics::save_stats_npz(&npz, &reference).unwrap();

    let plain = tmp.path().join("plain");
    train(&config(&data, &plain, &[]), &RunOptions::default()).unwrap();
    assert!(!plain.join("fd.jsonl").exists());

    let evaluated = tmp.path().join("evaluated");
    let eval = [
        "eval.every=3".to_owned(),
        "eval.samples=12".to_owned(),
        "eval.batch_size=5".to_owned(),
        format!(
            "eval.extractor={{ kind = \"feature-net\", weights = \"{}\" }}",
            weights.display()
        ),
        format!("eval.reference=\"{}\"", npz.display()),
    ];
    train(&config(&data, &evaluated, &eval), &RunOptions::default()).unwrap();
    assert_eq!(
        model_bytes(&plain),
        model_bytes(&evaluated),
        "evaluating changed the training run"
    );
    let records: Vec<FdRecord> = std::fs::read_to_string(evaluated.join("fd.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Step 3 (the interval) and step 4 (the end of the run), each with the 1- and 2-step grids.
    let got: Vec<(u64, &str)> = records
        .iter()
        .map(|r| (r.step, r.sampler.as_str()))
        .collect();
    assert_eq!(
        got,
        [(3, "1step"), (3, "2step"), (4, "1step"), (4, "2step")]
    );
    for r in &records {
        assert!(r.fd.is_finite() && r.fd > 0.0, "{r:?}");
        assert_eq!((r.samples, r.metric.as_str()), (12, "fd_fmnist"));
        assert_eq!(r.images_seen, r.step * 8);
    }
    // Same noise at every evaluation: the 1-step FD changes only because the weights did.
    assert_ne!(records[0].fd, records[2].fd);
}

#[test]
fn half_configured_eval_is_refused_with_the_field_named() {
    let _torch = crate::torch();
    let tmp = tempfile::tempdir().unwrap();
    let text = "iterations = 1\n[data]\npath = \"x\"\n[network]\nnetwork = \"ECMPrecond\"\n\
                img_resolution = 8\nimg_channels = 1\nchannel_mult = [1]\nattn_resolutions = []\n\
                [eval]\nevery = 10\n";
    let err = TrainConfig::from_toml_str(text, "<test>", &[]).unwrap_err();
    assert!(err.to_string().contains("eval.extractor"), "{err}");
    let missing_ref = format!(
        "{text}extractor = {{ kind = \"feature-net\", weights = \"{}\" }}\n",
        tmp.path().join("w.safetensors").display()
    );
    let err = TrainConfig::from_toml_str(&missing_ref, "<test>", &[]).unwrap_err();
    assert!(err.to_string().contains("eval.reference"), "{err}");
    let too_few = format!("{missing_ref}reference = \"r.npz\"\nsamples = 1\n");
    let err = TrainConfig::from_toml_str(&too_few, "<test>", &[]).unwrap_err();
    assert!(err.to_string().contains("eval.samples"), "{err}");
}
