//! `ect convert` on the reference snapshot pickles: the folder it writes is the Python converter's
//! (byte for byte) and passes `ect parity`; errors are one readable line with exit status 1.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::{ect, tmp};

fn pickles() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ect-unet/tests/fixtures/edm-pickles")
}

/// Runs `ect convert <pickle> <out> ARGS...`.
fn convert(pickle: &str, out: &Path, args: &[&str]) -> Output {
    ect()
        .arg("convert")
        .arg(pickles().join(pickle))
        .arg(out)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn convert_then_parity() {
    let dir = tmp("convert-then-parity");
    let out = dir.join("edm-cifar");
    let run = convert("edm-songunet-tiny.pkl", &out, &[]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["network"], "EDMPrecond");
    assert_eq!(summary["params"], 189_347);
    assert_eq!(summary["tensors"], 146);
    assert_eq!(
        summary["foreign_globals"],
        serde_json::json!(["torch.nn.modules.container.ModuleDict", "builtins.getattr"])
    );
    let reference = pickles().join("edm-songunet-tiny");
    for f in ["weights.safetensors", "config.json", "meta.json"] {
        assert_eq!(
            std::fs::read(out.join(f)).unwrap(),
            std::fs::read(reference.join(f)).unwrap(),
            "{f}"
        );
    }
    std::fs::copy(reference.join("io.safetensors"), out.join("io.safetensors")).unwrap();
    let parity = ect()
        .arg("parity")
        .arg("--fixture")
        .arg(&out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&parity.stdout);
    assert!(
        parity.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&parity.stderr)
    );
    assert!(
        text.contains("network EDMPrecond") && text.contains("ok (tolerance 1.0e-4)"),
        "{text}"
    );
}

#[test]
fn bad_requests_are_one_line_errors() {
    let dir = tmp("convert-errors");
    for (args, want) in [
        (
            vec!["--key", "nope"],
            "no entry \"nope\" (entries: ema, loss_fn, augment_pipe, dataset_kwargs)",
        ),
        (
            vec!["--key", "loss_fn"],
            "entry \"loss_fn\" is an ECMLoss object, not a network or a state dict",
        ),
    ] {
        let run = convert("edm-songunet-tiny.pkl", &dir.join("out"), &args);
        let err = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{err}");
        assert!(err.starts_with("error: ") && err.contains(want), "{err}");
        assert_eq!(
            err.matches("edm-songunet-tiny.pkl").count(),
            1,
            "the file is named once: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    let run = convert("edm2-tiny.pkl", &dir.join("out"), &["--as-ecm"]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("--as-ecm needs an EDMPrecond network, got edm2.Precond"),
        "{err}"
    );
    assert!(!dir.join("out").exists());
}

/// `ect sample --from <pickle>` draws exactly what sampling from the Python converter's folder draws;
/// the conversion is cached under `$ECT_CACHE/snapshots` and reused.
#[test]
fn sampling_from_a_snapshot_equals_sampling_from_its_conversion() {
    let dir = tmp("sample-snapshot");
    let cache = dir.join("cache");
    let sample = |from: &[&std::ffi::OsStr], out: &str| {
        let run = ect()
            .env("ECT_CACHE", &cache)
            .arg("sample")
            .arg("--from")
            .args(from)
            .args([
                "--heun", "2", "--n", "6", "--batch", "4", "--device", "cpu", "--out",
            ])
            .arg(dir.join(out))
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        std::fs::read(dir.join(out)).unwrap()
    };
    let pkl = pickles().join("edm-songunet-tiny.pkl");
    let reference = pickles().join("edm-songunet-tiny");
    let from_pickle = sample(&[pkl.as_os_str()], "pickle.npy");
    let weights = reference.join("weights.safetensors");
    let config = reference.join("config.json");
    let from_folder = sample(
        &[
            weights.as_os_str(),
            "--network-config".as_ref(),
            config.as_os_str(),
        ],
        "folder.npy",
    );
    assert_eq!(from_pickle.len(), 128 + 6 * 3 * 8 * 8);
    assert_eq!(from_pickle, from_folder);
    assert_eq!(sample(&[pkl.as_os_str()], "again.npy"), from_pickle);
    let cached = std::fs::read_dir(cache.join("snapshots")).unwrap().count();
    assert_eq!(cached, 1, "one conversion, reused");
}
