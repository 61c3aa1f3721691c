//! Configuration parsing, overrides and validation messages.

use ect_config::train::{EmaConfig, OptimizerConfig, OptimizerKind, Precision};
use ect_config::{ConfigError, TrainConfig};

const MINIMAL: &str = r#"
[data]
path = "data/fashion"

[network]
network = "ECMPrecond"
img_resolution = 28
img_channels = 1
model_type = "SongUNet"
model_channels = 16
channel_mult = [1, 2, 2]
num_blocks = 1
attn_resolutions = [14]
"#;

fn err_text(r: Result<TrainConfig, ConfigError>) -> String {
    r.expect_err("must be rejected").to_string()
}

#[test]
fn minimal_config_gets_the_cifar_recipe_defaults() {
    let cfg = TrainConfig::from_toml_str(MINIMAL, "<test>", &[]).unwrap();
    assert_eq!(cfg.batch_size, 128);
    assert_eq!(cfg.optimizer.kind, OptimizerKind::Radam);
    assert_eq!(cfg.optimizer.lr, 1e-4);
    assert_eq!((cfg.optimizer.beta1, cfg.optimizer.beta2), (0.9, 0.999));
    assert_eq!(cfg.schedule.q, 2.0);
    assert_eq!(cfg.schedule.iters_per_stage, Some(25_000));
    assert_eq!(cfg.ema, EmaConfig::Beta { beta: 0.9999 });
    assert_eq!(cfg.objective.name(), "ect");
    assert_eq!(
        cfg.sampling.grids,
        vec![vec![80.0, 0.0], vec![80.0, 0.821, 0.0]]
    );
    assert_eq!(cfg.micro_batch_size(), 128);
}

#[test]
fn overrides_apply_before_validation() {
    let sets = [
        "optimizer.lr=2e-4".to_owned(),
        "objective={ kind = \"edm\" }".to_owned(),
        "ema={ kind = \"power\", sigma_rels = [0.05, 0.1] }".to_owned(),
        "output.run_dir=runs/x".to_owned(),
        "schedule.mapping.kind=\"const\"".to_owned(),
        "batch_size=64".to_owned(),
        "micro_batch=16".to_owned(),
    ];
    let cfg = TrainConfig::from_toml_str(MINIMAL, "<test>", &sets).unwrap();
    assert_eq!(cfg.optimizer.lr, 2e-4);
    assert_eq!(cfg.objective.name(), "edm");
    assert_eq!(cfg.output.run_dir, std::path::PathBuf::from("runs/x"));
    assert_eq!(cfg.schedule.mapping, ect_schedule::mapping::Mapping::Const);
    assert_eq!(cfg.micro_batch_size(), 16);
    let json = serde_json::to_string(&cfg).unwrap();
    let back: TrainConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, cfg, "the resolved config round-trips through JSON");
}

#[test]
fn errors_name_the_field() {
    let e = err_text(TrainConfig::from_toml_str(
        MINIMAL,
        "<test>",
        &["optimizer.lrr=1".into()],
    ));
    assert!(e.contains("lrr"), "{e}");
    let e = err_text(TrainConfig::from_toml_str(
        MINIMAL,
        "<test>",
        &["optimizer.lr=-1".into()],
    ));
    assert!(e.contains("optimizer.lr"), "{e}");
    let e = err_text(TrainConfig::from_toml_str(
        MINIMAL,
        "<test>",
        &["micro_batch=100".into()],
    ));
    assert!(e.contains("micro_batch"), "{e}");
    let e = err_text(TrainConfig::from_toml_str(
        MINIMAL,
        "<test>",
        &["sampling.grids=[[80, 1, 2, 0]]".into()],
    ));
    assert!(e.contains("sampling.grids[0]"), "{e}");
    let e = err_text(TrainConfig::from_toml_str(
        MINIMAL,
        "<test>",
        &["schedule.q=1".into()],
    ));
    assert!(e.contains("schedule.q"), "{e}");
    let e = err_text(TrainConfig::from_toml_str(
        MINIMAL,
        "<test>",
        &["device=tpu".into()],
    ));
    assert!(e.contains("device") && e.contains("tpu"), "{e}");
    let e = err_text(TrainConfig::from_toml_str(
        MINIMAL,
        "<test>",
        &["ema={ kind = \"power\", sigma_rels = [0.5] }".into()],
    ));
    assert!(e.contains("ema.sigma_rels"), "{e}");
    let e = err_text(TrainConfig::from_toml_str(
        MINIMAL,
        "<test>",
        &["novalue".into()],
    ));
    assert!(e.contains("novalue"), "{e}");
    let e = err_text(TrainConfig::from_toml_str(
        "[data]\npath = \"x\"\n",
        "<test>",
        &[],
    ));
    assert!(e.contains("network"), "{e}");
    let e = err_text(TrainConfig::from_toml_str(
        MINIMAL,
        "<test>",
        &["objective={ kind = \"ect\", c = -1.0 }".into()],
    ));
    assert!(e.contains("objective.c"), "{e}");
}

#[test]
fn lr_schedule_warmup_and_inverse_sqrt_decay() {
    let mut o = OptimizerConfig {
        lr: 1e-2,
        ..Default::default()
    };
    assert_eq!(o.lr_at(0), 1e-2);
    assert_eq!(o.lr_at(1_000_000), 1e-2);
    o.warmup_iters = 100;
    o.decay_ref_iters = Some(1000);
    assert_eq!(o.lr_at(0), 0.0);
    assert!((o.lr_at(50) - 5e-3).abs() < 1e-15);
    assert_eq!(o.lr_at(500), 1e-2);
    assert!((o.lr_at(4000) - 1e-2 / 2.0).abs() < 1e-15);
}

#[test]
fn zero_iterations_per_stage_is_a_single_stage() {
    let sets = ["schedule.iters_per_stage=0".to_owned()];
    let cfg = TrainConfig::from_toml_str(MINIMAL, "<test>", &sets).unwrap();
    let stages = cfg.schedule.stages();
    assert_eq!(stages.stage_at(0), 0);
    assert_eq!(stages.stage_at(10_000_000), 0);
    let default = TrainConfig::from_toml_str(MINIMAL, "<test>", &[])
        .unwrap()
        .schedule
        .stages();
    assert_eq!((default.stage_at(24_999), default.stage_at(25_000)), (0, 1));
}

#[test]
fn mixed_precision_is_cuda_only_and_its_scaler_is_validated() {
    let cfg =
        TrainConfig::from_toml_str(MINIMAL, "<test>", &["precision=\"fp16\"".into()]).unwrap();
    assert_eq!(cfg.precision, Precision::Fp16);
    let on_cpu = TrainConfig::from_toml_str(
        MINIMAL,
        "<test>",
        &["precision=\"fp16\"".into(), "device=\"cpu\"".into()],
    );
    assert!(err_text(on_cpu).contains("precision"));
    // bfloat16 autocast also runs on the CPU.
    let bf16 = TrainConfig::from_toml_str(
        MINIMAL,
        "<test>",
        &["precision=\"bf16\"".into(), "device=\"cpu\"".into()],
    )
    .unwrap();
    assert_eq!(bf16.precision, Precision::Bf16);
    let fp8 = TrainConfig::from_toml_str(MINIMAL, "<test>", &["precision=\"fp8\"".into()]);
    assert!(err_text(fp8).contains("fp8"));
    let bad =
        TrainConfig::from_toml_str(MINIMAL, "<test>", &["loss_scale.backoff_factor=2.0".into()]);
    assert!(err_text(bad).contains("loss_scale.backoff_factor"));
}

#[test]
fn backend_switches_default_to_the_reference_and_parse() {
    let cfg = TrainConfig::from_toml_str(MINIMAL, "<test>", &[]).unwrap();
    // The reference's training loop: cudnn.benchmark = True, enable_tf32 = False.
    assert!(cfg.backend.cudnn_benchmark);
    assert!(!cfg.backend.allow_tf32);
    let sets = [
        "backend.allow_tf32=true".to_owned(),
        "backend.cudnn_benchmark=false".to_owned(),
    ];
    let cfg = TrainConfig::from_toml_str(MINIMAL, "<test>", &sets).unwrap();
    assert!(cfg.backend.allow_tf32 && !cfg.backend.cudnn_benchmark);
    // A run directory's config.json written before `[backend]` existed still reads.
    let mut json: serde_json::Value = serde_json::to_value(&cfg).unwrap();
    json.as_object_mut().unwrap().remove("backend");
    let old = TrainConfig::from_json_str(&json.to_string(), "<old run>").unwrap();
    assert!(old.backend.cudnn_benchmark && !old.backend.allow_tf32);
    let bad = format!("{MINIMAL}\n[backend]\ntf32 = true\n");
    assert!(err_text(TrainConfig::from_toml_str(&bad, "<test>", &[])).contains("tf32"));
}
