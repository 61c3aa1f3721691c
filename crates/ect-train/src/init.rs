//! Where a new run's weights start: the network's own (seeded) initialisation, a safetensors file with
//! reference names (a converted EDM checkpoint), a published snapshot pickle (converted once without
//! Python, cached by content hash), or the first EMA track of another run of ours (the pretraining run
//! an ECT tuning starts from).

use std::path::{Path, PathBuf};

use ect_config::network::{NetworkConfig, ValidNetworkConfig};
use ect_config::train::InitConfig;
use ect_unet::{convert_cached, ConvertOptions, ConvertedSnapshot};

use crate::checkpoint;
use crate::error::{Result, TrainError};
use crate::net::Network;
use crate::run_dir;

/// Loads the configured initial weights into `net` (random init needs nothing).
pub fn load_initial_weights(net: &Network, init: &InitConfig) -> Result<()> {
    match init {
        InitConfig::Random => Ok(()),
        InitConfig::Weights { path } => checkpoint::load_vars(&net.vs, path),
        InitConfig::Snapshot { path, key } => load_snapshot(net, path, key, &snapshot_cache_dir()),
        InitConfig::Run { path } => {
            let ckpt = checkpoint::latest_checkpoint(path)?.ok_or_else(|| {
                TrainError::invalid(
                    "init.path",
                    format!("{} holds no checkpoint", path.display()),
                )
            })?;
            let other = run_dir::read_config(path)?;
            let label = other
                .ema
                .labels()
                .into_iter()
                .next()
                .expect("at least one EMA track");
            checkpoint::load_vars(&net.vs, &ckpt.join(format!("{label}.safetensors")))
        }
    }
}

/// Where converted snapshots are cached: `$ECT_CACHE/snapshots`, else `$XDG_CACHE_HOME/ect/snapshots`,
/// else `~/.cache/ect/snapshots`, else `.cache/ect/snapshots`.
pub fn snapshot_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("ECT_CACHE") {
        return PathBuf::from(d).join("snapshots");
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("ect/snapshots");
    }
    if let Some(home) = std::env::var_os("HOME") {
        return PathBuf::from(home).join(".cache/ect/snapshots");
    }
    PathBuf::from(".cache/ect/snapshots")
}

/// `snapshot` (a `.pkl` or `.pt`) converted to reference-named float32 weights in `cache`, once per
/// file content (see [`ect_unet::convert_cached`]); nothing the file names is executed.
pub fn converted_snapshot(snapshot: &Path, key: &str, cache: &Path) -> Result<ConvertedSnapshot> {
    let opts = ConvertOptions {
        key: key.to_string(),
        ..ConvertOptions::default()
    };
    convert_cached(snapshot, cache, &opts)
        .map_err(|e| TrainError::external(format!("converting {}", snapshot.display()), e))
}

/// Loads the network `key` of `snapshot` (converted through `cache`) into `net`, after checking that
/// it has `net`'s architecture (see [`same_architecture`]).
pub fn load_snapshot(net: &Network, snapshot: &Path, key: &str, cache: &Path) -> Result<()> {
    let converted = converted_snapshot(snapshot, key, cache)?;
    same_architecture(&converted.config, net.precond.config()).map_err(|m| {
        TrainError::invalid(
            "init.path",
            format!(
                "{}: the snapshot's network differs from [network]: {m}",
                snapshot.display()
            ),
        )
    })?;
    checkpoint::load_vars(&net.vs, &converted.weights)
}

/// Fine-tuning may change the dropout, the preconditioning class (EDM to ECM) and its sigma range, and
/// `use_fp16`; every other argument decides the parameters or what they compute, so it must agree.
const TUNABLE_ARGUMENTS: &[&str] = &["network", "dropout", "sigma_min", "sigma_max", "use_fp16"];

/// Errors naming the arguments in which `snapshot` and `configured` build different networks.
pub fn same_architecture(
    snapshot: &ValidNetworkConfig,
    configured: &ValidNetworkConfig,
) -> std::result::Result<(), String> {
    let args = |c: &NetworkConfig| match serde_json::to_value(c) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(other) => Err(format!("a network config serialised as {other}")),
        Err(e) => Err(e.to_string()),
    };
    let (a, b) = (args(snapshot)?, args(configured)?);
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort_unstable();
    keys.dedup();
    let differ: Vec<String> = keys
        .into_iter()
        .filter(|k| !TUNABLE_ARGUMENTS.contains(&k.as_str()) && a.get(*k) != b.get(*k))
        .map(|k| {
            let show = |v: Option<&serde_json::Value>| v.map_or("absent".into(), |v| v.to_string());
            format!(
                "{k} = {} in the snapshot, {} configured",
                show(a.get(k)),
                show(b.get(k))
            )
        })
        .collect();
    if differ.is_empty() {
        Ok(())
    } else {
        Err(differ.join("; "))
    }
}
