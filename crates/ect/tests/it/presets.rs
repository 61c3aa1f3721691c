//! Every preset in `configs/` parses and validates as a training configuration (its `[experiment]` table
//! aside), and its network is the one the preset's comment promises (counted without allocating).

use std::path::PathBuf;

fn presets() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        // Sweep files (`cargo xtask scaling-sweep`) are not training configurations; xtask tests them.
        .filter(|p| {
            !p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("sweep-")
        })
        .collect();
    out.sort();
    out
}

fn load(path: &std::path::Path) -> ect_config::TrainConfig {
    ect_config::TrainConfig::load(path, &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_preset_validates_with_the_promised_network() {
    let expected: &[(&str, u64)] = &[
        // DDPM++ (55,732,739) plus EDM's augmentation-label embedding (9 x 128 = 1,152): the
        // published EDM checkpoint has it, and strict loading needs the same network.
        ("cifar10-ect.toml", 55_732_739 + 1_152),
        ("cifar10-ect-1hour.toml", 55_732_739 + 1_152),
        ("imagenet64-ect-s.toml", 280_209_253),
        ("imagenet64-ect-m.toml", 497_803_045),
        ("imagenet64-ect-l.toml", 777_492_197),
        ("imagenet64-ect-xl.toml", 1_119_276_709),
        ("fmnist-quick.toml", 1_752_993),
        ("fmnist-ict.toml", 1_752_993),
    ];
    let found = presets();
    assert!(found.len() >= expected.len(), "{found:?}");
    for (name, params) in expected {
        let path = found
            .iter()
            .find(|p| p.file_name().unwrap() == *name)
            .unwrap_or_else(|| panic!("{name} missing"));
        let cfg = load(path);
        let count = ect_unet::count_parameters(&cfg.network).unwrap();
        assert_eq!(count, *params, "{name}");
    }
    for path in &found {
        let cfg = load(path);
        // No preset is a likely mistake (`ect train` would warn about it).
        let advice = ect_config::train::advice::advice(&cfg);
        assert!(advice.is_empty(), "{}: {advice:?}", path.display());
    }
}

#[test]
fn paper_recipes_carry_the_papers_hyperparameters() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let cifar = load(&dir.join("cifar10-ect.toml"));
    assert_eq!((cifar.batch_size, cifar.iterations), (128, 400_000));
    assert_eq!(cifar.schedule.q, 2.0);
    assert_eq!(cifar.schedule.iters_per_stage, Some(25_000));
    let hour = load(&dir.join("cifar10-ect-1hour.toml"));
    let single_stage = hour.schedule.stages();
    assert_eq!((hour.schedule.q, hour.iterations), (256.0, 8000));
    assert_eq!(
        (single_stage.stage_at(0), single_stage.stage_at(7999)),
        (0, 0)
    );
    let s = load(&dir.join("imagenet64-ect-s.toml"));
    assert_eq!((s.batch_size, s.schedule.q), (1024, 4.0));
    assert_eq!(s.sampling.grids[1], vec![80.0, 1.526, 0.0]);
    // The loss schedules are the recipes `ect_schedule::recipe` carries from the authors' launch
    // scripts (the ImageNet preset's stage period is given at its batch of 1024; the script's is at 128).
    use ect_schedule::recipe::EctLossConfig;
    assert_eq!(cifar.ect_recipe(), Some(EctLossConfig::cifar10()));
    assert_eq!(hour.ect_recipe(), Some(EctLossConfig::cifar10_1hour()));
    let mut imagenet = EctLossConfig::imagenet64();
    imagenet.stages = s.schedule.stages();
    assert_eq!(s.ect_recipe(), Some(imagenet));
}
