//! Helpers shared by the integration tests: the reference fixtures in `tests/fixtures`.
#![allow(dead_code)]

use ect_unet::{NetworkConfig, ValidNetworkConfig};
use std::path::PathBuf;

/// The four architectures with a reference fixture.
pub const FIXTURES: [&str; 4] = [
    "unet-ddpmpp-tiny",
    "unet-ncsnpp-tiny",
    "unet-adm-tiny",
    "unet-edm2-tiny",
];

/// Path of a fixture directory.
pub fn fixture_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The fixture's `meta.json`.
pub fn meta(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture_dir(name).join("meta.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The fixture's network config, optionally with some constructor arguments overridden.
pub fn config_with(name: &str, overrides: &[(&str, serde_json::Value)]) -> ValidNetworkConfig {
    let m = meta(name);
    let mut args = m["config"].clone();
    for (k, v) in overrides {
        args[*k] = v.clone();
    }
    NetworkConfig::from_class_and_args(m["network"].as_str().unwrap(), &args).unwrap()
}

/// The fixture's network config.
pub fn config(name: &str) -> ValidNetworkConfig {
    config_with(name, &[])
}

/// The fixture's network config before validation (to mix with configs built in a test).
pub fn config_unchecked(name: &str) -> NetworkConfig {
    config(name).into_inner()
}
