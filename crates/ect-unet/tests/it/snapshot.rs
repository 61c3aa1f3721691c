//! `ect_unet::snapshot`: the reference snapshot pickles of `tests/fixtures/edm-pickles` (made with the
//! authors' code, see its README) convert without Python to exactly what
//! `scripts/convert_edm_checkpoint.py` wrote beside them, and the result passes the parity check
//! against the reference network's recorded outputs. `torch.save` files holding the network or a
//! bare state dict (`crates/ect-pickle/tools/make_fixtures.py`, real PyTorch 2.11) convert the same.

use std::path::{Path, PathBuf};

use ect_unet::snapshot::{convert_cached, convert_file, ConvertOptions};
use ect_unet::{check_fixture, NetworkConfig};

const TOL: f64 = 1e-4;

fn pickles() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/edm-pickles")
}

fn opts() -> ConvertOptions {
    ConvertOptions::default()
}

/// `(name, dtype, shape, data bytes)` of every tensor of a safetensors file, sorted by name.
type StTensor = (String, String, Vec<usize>, Vec<u8>);

fn tensors(path: &Path) -> Vec<StTensor> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<StTensor> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            (
                n,
                format!("{:?}", v.dtype()),
                v.shape().to_vec(),
                v.data().to_vec(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The converted folder equals the Python converter's: every tensor (name, dtype, shape, bytes),
/// `config.json` and `meta.json` byte for byte.
fn assert_same_folder(got: &Path, want: &Path) {
    let (g, w) = (
        tensors(&got.join("weights.safetensors")),
        tensors(&want.join("weights.safetensors")),
    );
    assert_eq!(g.len(), w.len());
    for (a, b) in g.iter().zip(&w) {
        assert_eq!((&a.0, &a.1, &a.2), (&b.0, &b.1, &b.2), "{}", want.display());
        assert!(a.3 == b.3, "{}: {} differs", want.display(), a.0);
    }
    for f in ["config.json", "meta.json"] {
        let (a, b) = (
            std::fs::read_to_string(got.join(f)).unwrap(),
            std::fs::read_to_string(want.join(f)).unwrap(),
        );
        assert_eq!(a, b, "{f} of {}", want.display());
    }
}

/// The message of a conversion that must fail.
fn error(snapshot: &Path, opts: &ConvertOptions) -> String {
    match convert_file(snapshot, opts) {
        Ok(_) => panic!("{} converted", snapshot.display()),
        Err(e) => e.to_string(),
    }
}

fn convert_into(snapshot: &Path, opts: &ConvertOptions, dir: &Path) -> ect_unet::Conversion {
    let c = convert_file(snapshot, opts).unwrap_or_else(|e| panic!("{}: {e}", snapshot.display()));
    c.write(dir).unwrap();
    c
}

#[test]
fn converted_pickles_equal_the_python_converter_output_and_pass_parity() {
    for (name, params, tensors_n) in [
        ("edm-songunet-tiny", 189_347, 146),
        ("edm2-tiny", 724_139, 60),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join(name);
        let c = convert_into(&pickles().join(format!("{name}.pkl")), &opts(), &out);
        assert_eq!((c.params, c.tensors.len()), (params, tensors_n), "{name}");
        let reference = pickles().join(name);
        assert_same_folder(&out, &reference);
        // The safetensors crate writes the same file as the script's minimal writer.
        assert_eq!(
            std::fs::read(out.join("weights.safetensors")).unwrap(),
            std::fs::read(reference.join("weights.safetensors")).unwrap(),
            "{name}: weights.safetensors bytes"
        );
        std::fs::copy(reference.join("io.safetensors"), out.join("io.safetensors")).unwrap();
        let ours = check_fixture(&out).unwrap();
        eprintln!(
            "{name}: rel err eval {:.3e}, train {:.3e}",
            ours.rel_err_eval, ours.rel_err_train
        );
        assert!(ours.passes(TOL), "{name}: {ours:?}");
        assert_eq!(ours, check_fixture(&reference).unwrap(), "{name}");
        assert_eq!(
            c.config,
            NetworkConfig::from_json_str(
                &std::fs::read_to_string(reference.join("config.json")).unwrap()
            )
            .unwrap()
        );
    }
}

#[test]
fn foreign_globals_are_reported() {
    let c = convert_file(&pickles().join("edm2-tiny.pkl"), &opts()).unwrap();
    assert_eq!(c.network, "edm2.Precond");
    // Made with ECT's EDM2 network, which has no log-variance head (NVlabs' has; see the state-dict
    // test for the dropping).
    assert!(c.dropped.is_empty());
    assert_eq!(c.foreign_globals, ["torch.nn.modules.container.ModuleDict"]);
    let c = convert_file(&pickles().join("edm-songunet-tiny.pkl"), &opts()).unwrap();
    assert!(c.dropped.is_empty());
    assert_eq!(
        c.foreign_globals,
        ["torch.nn.modules.container.ModuleDict", "builtins.getattr"]
    );
}

#[test]
fn torch_save_files_holding_the_network_convert_the_same() {
    let net = ConvertOptions {
        key: "net".into(),
        ..opts()
    };
    // The legacy format is covered by ect-pickle's tests (tensors-legacy.pt, nested archives).
    let file = pickles().join("edm-songunet-tiny-net.pt");
    let tmp = tempfile::tempdir().unwrap();
    convert_into(&file, &net, tmp.path());
    assert_same_folder(tmp.path(), &pickles().join("edm-songunet-tiny"));
    let e = error(&file, &opts());
    assert!(
        e.ends_with("no entry \"ema\" (entries: net); choose one with --key"),
        "{e}"
    );
}

#[test]
fn bare_state_dicts_take_their_config_from_a_file() {
    let sd = pickles().join("edm-songunet-tiny-state-dict.pt");
    let e = error(&sd, &opts());
    assert!(
        e.contains("bare state dict") && e.contains("--config"),
        "{e}"
    );
    let with_config = ConvertOptions {
        config: Some(pickles().join("edm-songunet-tiny/config.json")),
        ..opts()
    };
    let tmp = tempfile::tempdir().unwrap();
    let c = convert_into(&sd, &with_config, tmp.path());
    assert_eq!(c.dropped, ["logvar_linear.weight"]);
    // Parameters (buffers excluded) counted on the network the config builds.
    assert_eq!(c.params, 189_347);
    let reference = pickles().join("edm-songunet-tiny");
    assert_eq!(
        tensors(&tmp.path().join("weights.safetensors")),
        tensors(&reference.join("weights.safetensors"))
    );
    let json = |p: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    assert_eq!(
        json(&tmp.path().join("config.json")),
        json(&reference.join("config.json"))
    );
    assert_eq!(
        json(&tmp.path().join("meta.json")),
        json(&reference.join("meta.json"))
    );
    // A config of another size: the weights do not fit the network it builds.
    let wrong = tmp.path().join("wrong.json");
    std::fs::write(
        &wrong,
        std::fs::read_to_string(reference.join("config.json"))
            .unwrap()
            .replace("\"model_channels\": 16", "\"model_channels\": 32"),
    )
    .unwrap();
    let e = error(
        &sd,
        &ConvertOptions {
            config: Some(wrong),
            ..opts()
        },
    );
    assert!(
        e.contains("weights do not match the network")
            && e.contains("shape mismatch: model.enc.8x8_conv.weight"),
        "{e}"
    );
}

#[test]
fn as_ecm_relabels_an_edm_network() {
    let tmp = tempfile::tempdir().unwrap();
    let ecm = ConvertOptions {
        as_ecm: true,
        ..opts()
    };
    let c = convert_into(&pickles().join("edm-songunet-tiny.pkl"), &ecm, tmp.path());
    let NetworkConfig::Ecm(cfg) = &*c.config else {
        panic!("{:?}", c.config)
    };
    assert_eq!(cfg.sigma_min, 0.003);
    // As the script's dict: sigma_min, then use_fp16, appended after the pickled arguments.
    let text = std::fs::read_to_string(tmp.path().join("config.json")).unwrap();
    assert!(
        text.starts_with("{\n  \"network\": \"ECMPrecond\",\n  \"img_resolution\": 8,"),
        "{text}"
    );
    assert!(
        text.ends_with("    1\n  ],\n  \"sigma_min\": 0.003,\n  \"use_fp16\": false\n}"),
        "{text}"
    );
    let reference = pickles().join("edm-songunet-tiny");
    assert_eq!(
        tensors(&tmp.path().join("weights.safetensors")),
        tensors(&reference.join("weights.safetensors"))
    );
    let e = error(&pickles().join("edm2-tiny.pkl"), &ecm);
    assert!(
        e.ends_with("--as-ecm needs an EDMPrecond network, got edm2.Precond"),
        "{e}"
    );
}

#[test]
fn unknown_classes_arguments_and_entries_are_errors_naming_them() {
    let tmp = tempfile::tempdir().unwrap();
    let original = std::fs::read(pickles().join("edm-songunet-tiny.pkl")).unwrap();
    let edited = |from: &str, to: &str| {
        assert_eq!(from.len(), to.len());
        let mut b = original.clone();
        let mut at = 0;
        while let Some(i) = b[at..]
            .windows(from.len())
            .position(|w| w == from.as_bytes())
        {
            b[at + i..at + i + from.len()].copy_from_slice(to.as_bytes());
            at += i + from.len();
        }
        let path = tmp.path().join(format!("{to}.pkl"));
        std::fs::write(&path, b).unwrap();
        path
    };
    let foo = edited("EDMPrecond", "FooPrecond");
    let e = error(&foo, &opts());
    assert!(e.contains("FooPrecond.pkl: unsupported network class FooPrecond (EDMPrecond, ECMPrecond, edm2 Precond)"), "{e}");
    let arg = edited("channel_mult_noise", "channel_mult_nois3");
    let e = error(&arg, &opts());
    assert!(
        e.contains("channel_mult_nois3.pkl")
            && e.contains("unknown field(s) channel_mult_nois3 for network EDMPrecond"),
        "{e}"
    );
    let loss = ConvertOptions {
        key: "loss_fn".into(),
        ..opts()
    };
    let e = error(&pickles().join("edm-songunet-tiny.pkl"), &loss);
    assert!(
        e.ends_with("entry \"loss_fn\" is an ECMLoss object, not a network or a state dict"),
        "{e}"
    );
    let e = error(&tmp.path().join("missing.pkl"), &opts());
    assert!(e.contains("missing.pkl"), "{e}");
    let cut = tmp.path().join("cut.pkl");
    std::fs::write(&cut, &original[..original.len() / 2]).unwrap();
    let e = error(&cut, &opts());
    assert!(
        e.contains("cut.pkl: cannot read the pickle: ") && e.contains("truncated"),
        "{e}"
    );
}

#[test]
fn convert_cached_converts_once_per_content_and_options() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let pkl = pickles().join("edm-songunet-tiny.pkl");
    let first = convert_cached(&pkl, &cache, &opts()).unwrap();
    assert!(!first.reused);
    assert_same_folder(&first.dir, &pickles().join("edm-songunet-tiny"));
    assert_eq!(first.weights, first.dir.join("weights.safetensors"));
    let again = convert_cached(&pkl, &cache, &opts()).unwrap();
    assert!(again.reused);
    assert_eq!((&again.dir, &again.config), (&first.dir, &first.config));
    // The key is the content: a copy under another name hits the same entry.
    let copy = tmp.path().join("renamed.pkl");
    std::fs::copy(&pkl, &copy).unwrap();
    let renamed = convert_cached(&copy, &cache, &opts()).unwrap();
    assert!(renamed.reused && renamed.dir == first.dir);
    let ecm = convert_cached(
        &pkl,
        &cache,
        &ConvertOptions {
            as_ecm: true,
            ..opts()
        },
    )
    .unwrap();
    assert!(!ecm.reused && ecm.dir != first.dir);
    assert_eq!(ecm.config.class_name(), "ECMPrecond");
    let entries: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries.len(), 2, "no temporary folders left: {entries:?}");
    assert!(entries
        .iter()
        .all(|e| e.len() == 64 && e.chars().all(|c| c.is_ascii_hexdigit())));
}
