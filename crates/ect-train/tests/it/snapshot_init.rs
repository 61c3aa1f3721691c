//! `init = { kind = "snapshot" }`: a published EDM snapshot pickle starts a run with exactly the
//! weights the Python converter writes, whatever dropout and preconditioning class the tuning
//! configures; a snapshot of another architecture is refused naming the arguments that differ.

use std::path::PathBuf;

use ect_config::network::{NetworkConfig, ValidNetworkConfig};
use ect_train::init::load_snapshot;
use ect_train::net::Network;
use tch::{Device, Tensor};

fn pickles() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ect-unet/tests/fixtures/edm-pickles")
}

/// The fixture snapshot's network as a tuning run configures it: ECMPrecond, another dropout.
fn tuning_config(edit: impl FnOnce(&mut serde_json::Value)) -> ValidNetworkConfig {
    let text = std::fs::read_to_string(pickles().join("edm-songunet-tiny/config.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["network"] = "ECMPrecond".into();
    v["sigma_min"] = 0.003.into();
    v["dropout"] = 0.2.into();
    edit(&mut v);
    NetworkConfig::from_json_value(&v).unwrap()
}

#[test]
fn a_snapshot_starts_a_run_with_the_converted_weights() {
    let _torch = crate::torch();
    let cache = tempfile::tempdir().unwrap();
    let net = Network::new(&tuning_config(|_| {}), Device::Cpu).unwrap();
    let pkl = pickles().join("edm-songunet-tiny.pkl");
    load_snapshot(&net, &pkl, "ema", cache.path()).unwrap();
    let want =
        Tensor::read_safetensors(pickles().join("edm-songunet-tiny/weights.safetensors")).unwrap();
    let have = net.vs.variables();
    assert_eq!(want.len(), 146);
    for (name, w) in &want {
        let h = have
            .get(name)
            .unwrap_or_else(|| panic!("{name} not in the network"));
        assert!(h.equal(w), "{name} differs from the converted weights");
    }
    // Converted once: a second start reuses the cached folder.
    load_snapshot(&net, &pkl, "ema", cache.path()).unwrap();
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 1);
}

#[test]
fn a_snapshot_of_another_architecture_is_refused_naming_what_differs() {
    let _torch = crate::torch();
    let cache = tempfile::tempdir().unwrap();
    let cfg = tuning_config(|v| {
        v["attn_resolutions"] = serde_json::json!([8]);
        v["encoder_type"] = "skip".into();
    });
    let net = Network::new(&cfg, Device::Cpu).unwrap();
    let err = load_snapshot(
        &net,
        &pickles().join("edm-songunet-tiny.pkl"),
        "ema",
        cache.path(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("edm-songunet-tiny.pkl"), "{err}");
    assert!(
        err.contains("attn_resolutions = [4] in the snapshot, [8] configured")
            && err.contains("encoder_type = \"standard\" in the snapshot, \"skip\" configured"),
        "{err}"
    );
    assert!(
        !err.contains("dropout") && !err.contains("sigma_min"),
        "{err}"
    );
}
