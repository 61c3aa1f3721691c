//! Published checkpoints without Python: a reference snapshot pickle (EDM, EDM2, ECT
//! `network-snapshot-*.pkl`) or a `torch.save` file (`.pt`) holding a network or a state dict becomes
//! this crate's format, exactly as `scripts/convert_edm_checkpoint.py` writes it:
//!
//! - `weights.safetensors`: the state dict under the reference names, every tensor float32 (float16,
//!   bfloat16 and float64 storages converted as `module.to(torch.float32)` does), names sorted;
//! - `config.json`: `{"network": <class>, <constructor keyword arguments>...}` in the pickle's order,
//!   infinite values dropped, `use_fp16` false, as Python's `json.dump(..., indent=2)` spells it;
//! - `meta.json`: `network`, `config`, `params` (parameters, buffers excluded) and `state_dict_keys`.
//!
//! The pickle is read with `ect_pickle`, which runs nothing (the module source inside a
//! `torch_utils.persistence` object is only text). The network class and `_init_kwargs` become a
//! [`NetworkConfig`] (an unknown class or argument is an error naming it); EDM2's log-variance head
//! (`logvar_fourier`, `logvar_linear`, `logvar_channels`) is dropped; `--as-ecm` relabels an
//! `EDMPrecond` as `ECMPrecond` with `sigma_min = 0.003`. The converted weights are checked against
//! the network the config builds, so a conversion that succeeds loads with [`crate::load_weights`].

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use ect_pickle::{Id, Limits, Plain, Val};
use sha2::{Digest, Sha256};

use crate::builder::Builder;
use crate::config::{NetworkConfig, NetworkConfigError, ValidNetworkConfig};
use crate::error::UnetError;
use crate::precond::Precond;
use crate::pyjson::dumps_indent2;

/// State-dict prefixes of EDM2's log-variance head, which ECT's network does not have.
const DROPPED_PREFIXES: [&str; 2] = ["logvar_fourier.", "logvar_linear."];

/// Bumped when the output of a conversion changes, so that [`convert_cached`] redoes old entries.
const CONVERTER_VERSION: &str = "ect-convert-1";

/// Options of a conversion (the flags of `ect convert`).
#[derive(Clone, Debug, PartialEq)]
pub struct ConvertOptions {
    /// The entry of a snapshot dict that holds the network (`ema` in EDM/EDM2/ECT snapshots, `net`
    /// in EDM's `training-state-*.pt`). Ignored when the file holds the network itself.
    pub key: String,
    /// Relabel an `EDMPrecond` network as `ECMPrecond` (`sigma_min = 0.003`), how ECT starts from
    /// the EDM CIFAR-10 checkpoint.
    pub as_ecm: bool,
    /// A `config.json` (`{"network": ..., args}`) for a file that holds a bare state dict, which
    /// names no class or arguments.
    pub config: Option<PathBuf>,
    /// Bounds for reading the pickle.
    pub limits: Limits,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            key: "ema".into(),
            as_ecm: false,
            config: None,
            limits: Limits::default(),
        }
    }
}

/// One converted tensor: float32 little-endian bytes in C order.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvertedTensor {
    /// Reference state-dict name.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// `4 * prod(shape)` bytes.
    pub data: Vec<u8>,
}

/// A converted network in memory (see [`Conversion::write`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Conversion {
    /// The class tag (`EDMPrecond`, `ECMPrecond`, `edm2.Precond`).
    pub network: String,
    /// The parsed configuration.
    pub config: ValidNetworkConfig,
    /// Text of `config.json`.
    pub config_json: String,
    /// Text of `meta.json`.
    pub meta_json: String,
    /// Number of parameters (buffers excluded).
    pub params: u64,
    /// The state dict, in the reference order.
    pub tensors: Vec<ConvertedTensor>,
    /// State-dict names left out (EDM2's log-variance head).
    pub dropped: Vec<String>,
    /// Globals the pickle names that the reader does not understand (kept as data, never called).
    pub foreign_globals: Vec<String>,
}

fn snap_err(path: &Path, reason: impl Into<String>) -> UnetError {
    UnetError::Snapshot {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> UnetError + '_ {
    move |source| UnetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Converts the snapshot file at `snapshot` (see the module docs).
pub fn convert_file(snapshot: &Path, opts: &ConvertOptions) -> Result<Conversion, UnetError> {
    let bytes = std::fs::read(snapshot).map_err(io_err(snapshot))?;
    convert_bytes(&bytes, snapshot, opts)
}

/// Converts snapshot bytes; `origin` names the file in errors.
pub fn convert_bytes(
    bytes: &[u8],
    origin: &Path,
    opts: &ConvertOptions,
) -> Result<Conversion, UnetError> {
    let pickle = ect_pickle::load_any(bytes, &opts.limits)
        .map_err(|e| snap_err(origin, format!("cannot read the pickle: {e}")))?;
    let root = pickle.root();
    let target = select(root, origin, &opts.key)?;
    let (network, mut config, entries) = if is_module(target) {
        let class = class_tag(target, origin)?;
        let config = init_kwargs(target, &class, origin, &opts.limits)?;
        (class, config, state_dict(target, origin, &opts.limits)?)
    } else {
        let path = opts.config.as_deref().ok_or_else(|| {
            snap_err(
                origin,
                "the file holds a bare state dict, which names no network class or arguments: \
                 give its config.json (--config)",
            )
        })?;
        let (class, config) = config_file(path)?;
        (class, config, flat_state_dict(target, origin)?)
    };
    let network = adjust_config(&network, &mut config, opts.as_ecm, origin)?;
    let config_value = to_json_value(&config).map_err(|e| snap_err(origin, e))?;
    let cfg = NetworkConfig::from_class_and_args(&network, &config_value).map_err(|e| match e {
        NetworkConfigError::Parse { reason, .. } => NetworkConfigError::Parse {
            origin: Some(origin.to_path_buf()),
            reason,
        },
        other => other,
    })?;

    let mut dropped = Vec::new();
    let mut tensors = Vec::new();
    let mut params = 0u64;
    for e in entries {
        if DROPPED_PREFIXES.iter().any(|p| e.name.starts_with(p)) {
            dropped.push(e.name);
            continue;
        }
        let t = pickle
            .val(e.tensor)
            .as_tensor()
            .expect("entries are tensors");
        let values = t
            .to_f32(&opts.limits)
            .map_err(|err| snap_err(origin, format!("{}: {err}", e.name)))?;
        if e.named_parameter {
            params += values.len() as u64;
        }
        tensors.push(ConvertedTensor {
            name: e.name,
            shape: t.shape().to_vec(),
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
    }
    dropped.sort();
    if !is_module(target) {
        // A bare state dict does not tell parameters from buffers; the network does.
        params = crate::count::try_count_parameters(&cfg)?;
    }
    check_against_network(&cfg, &tensors, origin)?;

    let mut with_network = vec![(Plain::Str("network".into()), Plain::Str(network.clone()))];
    with_network.extend(config.iter().cloned());
    let config_json = dumps_indent2(&Plain::Dict(with_network)).map_err(|e| snap_err(origin, e))?;
    let meta = Plain::Dict(vec![
        (Plain::Str("network".into()), Plain::Str(network.clone())),
        (Plain::Str("config".into()), Plain::Dict(config)),
        (Plain::Str("params".into()), Plain::Int(params as i64)),
        (
            Plain::Str("state_dict_keys".into()),
            Plain::List(tensors.iter().map(|t| Plain::Str(t.name.clone())).collect()),
        ),
    ]);
    let meta_json = dumps_indent2(&meta).map_err(|e| snap_err(origin, e))?;
    Ok(Conversion {
        network,
        config: cfg,
        config_json,
        meta_json,
        params,
        tensors,
        dropped,
        foreign_globals: pickle.foreign_globals(),
    })
}

/// The network (or state dict) inside the file: the root itself when it is one, else `root[key]`.
fn select<'p>(root: Val<'p>, origin: &Path, key: &str) -> Result<Val<'p>, UnetError> {
    if is_module(root) || is_state_dict(root) {
        return Ok(root);
    }
    if root.entries().is_none() {
        return Err(snap_err(
            origin,
            format!(
                "the pickle holds {}, not a dict, a network or a state dict",
                describe(root)
            ),
        ));
    }
    let v = root.get(key).ok_or_else(|| {
        snap_err(
            origin,
            format!(
                "no entry {key:?} (entries: {}); choose one with --key",
                root.str_keys().join(", ")
            ),
        )
    })?;
    if is_module(v) || is_state_dict(v) {
        Ok(v)
    } else {
        Err(snap_err(
            origin,
            format!(
                "entry {key:?} is {}, not a network or a state dict",
                describe(v)
            ),
        ))
    }
}

/// `an ECMLoss object`, `a torch.nn.modules.container.ModuleDict object`, `a list`, ...
fn describe(v: Val<'_>) -> String {
    let class = match v.class() {
        Some(("<persistent>", n)) => n.to_string(),
        Some((m, n)) => format!("{m}.{n}"),
        None => return v.node().a_kind(),
    };
    let article = if class.starts_with(['A', 'E', 'I', 'O', 'U', 'a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {class} object")
}

/// The `__dict__` of a `torch.nn.Module` (persistent or plain), if `v` is one.
fn module_dict(v: Val<'_>) -> Option<Val<'_>> {
    let state = v.state()?;
    state.get("_modules")?;
    state.get("_parameters")?;
    Some(state)
}

fn is_module(v: Val<'_>) -> bool {
    module_dict(v).is_some()
}

fn is_state_dict(v: Val<'_>) -> bool {
    v.entries().is_some_and(|mut it| {
        it.len() > 0 && it.all(|(k, x)| k.as_str().is_some() && x.as_tensor().is_some())
    })
}

/// The class tag of the network, from the persistent class name (or the class of a plain object).
fn class_tag(net: Val<'_>, origin: &Path) -> Result<String, UnetError> {
    let name = net.class().map(|(_, n)| n).unwrap_or("?");
    match name {
        "EDMPrecond" | "ECMPrecond" => Ok(name.to_string()),
        "Precond" => Ok("edm2.Precond".to_string()),
        other => Err(snap_err(
            origin,
            format!("unsupported network class {other} (EDMPrecond, ECMPrecond, edm2 Precond)"),
        )),
    }
}

/// Positional constructor arguments of each class, to name `_init_args`.
fn positional_names(class: &str) -> &'static [&'static str] {
    match class {
        "edm2.Precond" => &[
            "img_resolution",
            "img_channels",
            "label_dim",
            "use_fp16",
            "sigma_data",
            "logvar_channels",
        ],
        _ => &[
            "img_resolution",
            "img_channels",
            "label_dim",
            "use_fp16",
            "sigma_min",
            "sigma_max",
            "sigma_data",
            "model_type",
        ],
    }
}

/// `_init_args` (named by the class's signature) then `_init_kwargs`, in order.
fn init_kwargs(
    net: Val<'_>,
    class: &str,
    origin: &Path,
    limits: &Limits,
) -> Result<Vec<(Plain, Plain)>, UnetError> {
    let dict = module_dict(net).expect("a module");
    let plain = |key: &str| -> Result<Option<Plain>, UnetError> {
        dict.get(key)
            .map(|v| v.to_plain(limits))
            .transpose()
            .map_err(|e| snap_err(origin, format!("{class}.{key}: {e}")))
    };
    let kwargs = match plain("_init_kwargs")? {
        Some(Plain::Dict(d)) => d,
        Some(other) => {
            return Err(snap_err(
                origin,
                format!("{class}._init_kwargs is not a dict: {other:?}"),
            ))
        }
        None => {
            return Err(snap_err(
                origin,
                format!(
                    "{class} has no _init_kwargs (not a torch_utils.persistence object), so its \
                     constructor arguments are unknown"
                ),
            ))
        }
    };
    let args = match plain("_init_args")? {
        Some(Plain::Tuple(a) | Plain::List(a)) => a,
        None => Vec::new(),
        Some(other) => {
            return Err(snap_err(
                origin,
                format!("{class}._init_args is not a tuple: {other:?}"),
            ))
        }
    };
    let names = positional_names(class);
    if args.len() > names.len() {
        return Err(snap_err(
            origin,
            format!(
                "{class} takes at most {} positional arguments, the pickle has {}",
                names.len(),
                args.len()
            ),
        ));
    }
    let mut out: Vec<(Plain, Plain)> = names
        .iter()
        .zip(args)
        .map(|(n, v)| (Plain::Str((*n).into()), v))
        .collect();
    for (k, v) in kwargs {
        if !matches!(k, Plain::Str(_)) {
            return Err(snap_err(
                origin,
                format!("{class}._init_kwargs has a non-string key {k:?}"),
            ));
        }
        if out.iter().any(|(x, _)| *x == k) {
            return Err(snap_err(
                origin,
                format!("{class} argument {k:?} given twice"),
            ));
        }
        out.push((k, v));
    }
    Ok(out)
}

/// The class and arguments of a `config.json` given for a bare state dict.
fn config_file(path: &Path) -> Result<(String, Vec<(Plain, Plain)>), UnetError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let parse_err = |reason: String| UnetError::ConfigParse {
        origin: Some(path.to_path_buf()),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| parse_err(e.to_string()))?;
    let serde_json::Value::Object(map) = value else {
        return Err(parse_err("not a JSON object".into()));
    };
    let network = map
        .get("network")
        .and_then(|n| n.as_str())
        .ok_or_else(|| parse_err("no \"network\" class name".into()))?
        .to_string();
    let config = map
        .into_iter()
        .filter(|(k, _)| k != "network")
        .map(|(k, v)| (Plain::Str(k), from_json_value(v)))
        .collect();
    Ok((network, config))
}

fn from_json_value(v: serde_json::Value) -> Plain {
    match v {
        serde_json::Value::Null => Plain::None,
        serde_json::Value::Bool(b) => Plain::Bool(b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Plain::Int(i),
            None => Plain::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Plain::Str(s),
        serde_json::Value::Array(a) => Plain::List(a.into_iter().map(from_json_value).collect()),
        serde_json::Value::Object(m) => Plain::Dict(
            m.into_iter()
                .map(|(k, v)| (Plain::Str(k), from_json_value(v)))
                .collect(),
        ),
    }
}

/// `jsonable`, `--as-ecm`, the EDM2 `logvar_channels` and `use_fp16 = False` of the Python script;
/// returns the (possibly relabelled) class tag.
fn adjust_config(
    network: &str,
    config: &mut Vec<(Plain, Plain)>,
    as_ecm: bool,
    origin: &Path,
) -> Result<String, UnetError> {
    // sigma_max = inf is the default on our side.
    config.retain(|(_, v)| !matches!(v, Plain::Float(f) if f.is_infinite()));
    let mut network = network.to_string();
    if as_ecm {
        if network != "EDMPrecond" {
            return Err(snap_err(
                origin,
                format!("--as-ecm needs an EDMPrecond network, got {network}"),
            ));
        }
        network = "ECMPrecond".into();
        set(config, "sigma_min", Plain::Float(0.003));
    }
    if network == "edm2.Precond" {
        config.retain(|(k, _)| *k != Plain::Str("logvar_channels".into()));
    }
    set(config, "use_fp16", Plain::Bool(false));
    Ok(network)
}

/// `config[key] = value` with Python's dict semantics (an existing key keeps its position).
fn set(config: &mut Vec<(Plain, Plain)>, key: &str, value: Plain) {
    let k = Plain::Str(key.into());
    match config.iter_mut().find(|(x, _)| *x == k) {
        Some(slot) => slot.1 = value,
        None => config.push((k, value)),
    }
}

fn to_json_value(config: &[(Plain, Plain)]) -> Result<serde_json::Value, String> {
    fn conv(p: &Plain, at: &str) -> Result<serde_json::Value, String> {
        Ok(match p {
            Plain::None => serde_json::Value::Null,
            Plain::Bool(b) => (*b).into(),
            Plain::Int(i) => (*i).into(),
            Plain::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .ok_or_else(|| format!("argument {at} is {f}, which JSON cannot hold"))?,
            Plain::Str(s) => s.clone().into(),
            Plain::List(v) | Plain::Tuple(v) => v
                .iter()
                .map(|x| conv(x, at))
                .collect::<Result<Vec<_>, _>>()?
                .into(),
            Plain::Dict(d) => {
                let mut m = serde_json::Map::new();
                for (k, x) in d {
                    let Plain::Str(k) = k else {
                        return Err(format!("argument {at} has a non-string key"));
                    };
                    m.insert(k.clone(), conv(x, &format!("{at}.{k}"))?);
                }
                m.into()
            }
            other => return Err(format!("argument {at} is not JSON data: {other:?}")),
        })
    }
    let mut m = serde_json::Map::new();
    for (k, v) in config {
        let Plain::Str(k) = k else {
            return Err("a constructor argument name is not a string".into());
        };
        m.insert(k.clone(), conv(v, k)?);
    }
    Ok(m.into())
}

/// One state-dict entry: its name, tensor node, and whether `named_parameters()` lists it.
struct Entry {
    name: String,
    tensor: Id,
    named_parameter: bool,
}

/// `net.state_dict()`: each module's parameters then persistent buffers, then its children, with
/// `named_parameters()`'s de-duplication (a shared module or parameter is counted once).
fn state_dict(net: Val<'_>, origin: &Path, limits: &Limits) -> Result<Vec<Entry>, UnetError> {
    let mut walk = Walk {
        origin,
        max_depth: limits.max_depth,
        seen_modules: HashSet::new(),
        seen_params: HashSet::new(),
        out: Vec::new(),
        index: HashMap::new(),
    };
    walk.module(net, "", 0, true)?;
    Ok(walk.out)
}

struct Walk<'o> {
    origin: &'o Path,
    max_depth: usize,
    seen_modules: HashSet<Id>,
    seen_params: HashSet<Id>,
    out: Vec<Entry>,
    index: HashMap<String, usize>,
}

impl Walk<'_> {
    fn err(&self, reason: String) -> UnetError {
        snap_err(self.origin, reason)
    }

    fn add(&mut self, name: String, tensor: Id, named_parameter: bool) {
        let e = Entry {
            name: name.clone(),
            tensor,
            named_parameter,
        };
        match self.index.get(&name) {
            Some(&i) => self.out[i] = e,
            None => {
                self.index.insert(name, self.out.len());
                self.out.push(e);
            }
        }
    }

    fn module(
        &mut self,
        m: Val<'_>,
        prefix: &str,
        depth: usize,
        named: bool,
    ) -> Result<(), UnetError> {
        if depth > self.max_depth {
            return Err(self.err(format!(
                "modules nested deeper than {} at {prefix:?} (or a cycle)",
                self.max_depth
            )));
        }
        let dict = module_dict(m).ok_or_else(|| {
            self.err(format!(
                "module {prefix:?} is {}, not a torch.nn.Module",
                describe(m)
            ))
        })?;
        let named = named && self.seen_modules.insert(m.id());
        let non_persistent: HashSet<&str> = dict
            .get("_non_persistent_buffers_set")
            .and_then(|s| s.items())
            .map(|it| it.filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        for (field, is_param) in [("_parameters", true), ("_buffers", false)] {
            let Some(entries) = dict.get(field).and_then(|d| d.entries()) else {
                continue;
            };
            for (k, v) in entries {
                let key = k
                    .as_str()
                    .ok_or_else(|| self.err(format!("{prefix}{field} has a non-string key")))?;
                if v.is_none() || (!is_param && non_persistent.contains(key)) {
                    continue;
                }
                if v.as_tensor().is_none() {
                    return Err(self.err(format!("{prefix}{key} is {}, not a tensor", describe(v))));
                }
                let named_parameter = is_param && named && self.seen_params.insert(v.id());
                self.add(format!("{prefix}{key}"), v.id(), named_parameter);
            }
        }
        let children = dict.get("_modules").and_then(|d| d.entries());
        for (k, child) in children.into_iter().flatten() {
            let key = k
                .as_str()
                .ok_or_else(|| self.err(format!("{prefix}_modules has a non-string key")))?;
            if child.is_none() {
                continue;
            }
            self.module(child, &format!("{prefix}{key}."), depth + 1, named)?;
        }
        Ok(())
    }
}

/// The entries of a bare state dict (`name -> tensor`), in order.
fn flat_state_dict(sd: Val<'_>, origin: &Path) -> Result<Vec<Entry>, UnetError> {
    let mut walk = Walk {
        origin,
        max_depth: 0,
        seen_modules: HashSet::new(),
        seen_params: HashSet::new(),
        out: Vec::new(),
        index: HashMap::new(),
    };
    for (k, v) in sd.entries().into_iter().flatten() {
        let name = k
            .as_str()
            .expect("a state dict has string keys")
            .to_string();
        walk.add(name, v.id(), false);
    }
    Ok(walk.out)
}

/// The network the config builds must have exactly these names and shapes.
fn check_against_network(
    cfg: &ValidNetworkConfig,
    tensors: &[ConvertedTensor],
    origin: &Path,
) -> Result<(), UnetError> {
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    Precond::build(&Builder::shapes_only(vs.root()), cfg)?;
    let vars = vs.variables();
    let have: HashMap<&str, &ConvertedTensor> =
        tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut missing: Vec<String> = vars
        .keys()
        .filter(|k| !have.contains_key(k.as_str()))
        .cloned()
        .collect();
    let mut unexpected: Vec<String> = have
        .keys()
        .filter(|k| !vars.contains_key(**k))
        .map(|k| k.to_string())
        .collect();
    let mut shape_mismatches = Vec::new();
    for (name, v) in &vars {
        if let Some(t) = have.get(name.as_str()) {
            let file: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
            if v.size() != file {
                shape_mismatches.push((name.clone(), v.size(), file));
            }
        }
    }
    if missing.is_empty() && unexpected.is_empty() && shape_mismatches.is_empty() {
        return Ok(());
    }
    missing.sort();
    unexpected.sort();
    shape_mismatches.sort();
    Err(UnetError::WeightMismatch {
        path: origin.to_path_buf(),
        missing,
        unexpected,
        shape_mismatches,
    })
}

/// Writes `path` through a temporary file in the same folder (written by `write`) and a rename.
fn write_atomic(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), UnetError>,
) -> Result<(), UnetError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    write(&tmp)?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

impl Conversion {
    /// Writes `weights.safetensors`, `config.json` and `meta.json` into `out_dir` (created if
    /// needed), each file atomically.
    pub fn write(&self, out_dir: &Path) -> Result<(), UnetError> {
        std::fs::create_dir_all(out_dir).map_err(io_err(out_dir))?;
        let weights = out_dir.join("weights.safetensors");
        let mut sorted: Vec<&ConvertedTensor> = self.tensors.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        let views = sorted
            .iter()
            .map(|t| {
                safetensors::tensor::TensorView::new(
                    safetensors::Dtype::F32,
                    t.shape.clone(),
                    &t.data,
                )
                .map(|v| (t.name.clone(), v))
                .map_err(|e| snap_err(&weights, e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        write_atomic(&weights, |tmp| {
            safetensors::serialize_to_file(views, &None, tmp)
                .map_err(|e| snap_err(tmp, e.to_string()))
        })?;
        for (name, text) in [
            ("config.json", &self.config_json),
            ("meta.json", &self.meta_json),
        ] {
            let path = out_dir.join(name);
            write_atomic(&path, |tmp| std::fs::write(tmp, text).map_err(io_err(tmp)))?;
        }
        Ok(())
    }
}

/// A conversion in the cache (see [`convert_cached`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ConvertedSnapshot {
    /// The folder with `weights.safetensors`, `config.json` and `meta.json`.
    pub dir: PathBuf,
    /// The network configuration (from `config.json`).
    pub config: ValidNetworkConfig,
    /// `dir/weights.safetensors`, for [`crate::load_weights`].
    pub weights: PathBuf,
    /// Whether an earlier conversion was reused.
    pub reused: bool,
}

/// The cache key of a conversion: SHA-256 of the snapshot bytes, the options that change the
/// output (key, `as_ecm`, the given config file's bytes) and the converter version, in hex.
fn cache_key(bytes: &[u8], opts: &ConvertOptions) -> Result<String, UnetError> {
    let mut h = Sha256::new();
    h.update(CONVERTER_VERSION.as_bytes());
    h.update([0]);
    h.update(Sha256::digest(bytes));
    h.update(opts.key.as_bytes());
    h.update([0, opts.as_ecm as u8]);
    if let Some(path) = &opts.config {
        h.update(Sha256::digest(std::fs::read(path).map_err(io_err(path))?));
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Converts `snapshot` once into `cache_root/<key>/` and returns that folder; a later call with
/// the same file contents and options reuses it. The key is the SHA-256 of the snapshot's bytes and
/// the options ([`ConvertOptions::key`], `as_ecm`, the config file's bytes), so a renamed or moved
/// file hits the cache and an edited one does not. The folder appears complete or not at all
/// (written under a temporary name, then renamed); concurrent callers converge on one folder.
pub fn convert_cached(
    snapshot: &Path,
    cache_root: &Path,
    opts: &ConvertOptions,
) -> Result<ConvertedSnapshot, UnetError> {
    let bytes = std::fs::read(snapshot).map_err(io_err(snapshot))?;
    let key = cache_key(&bytes, opts)?;
    let dir = cache_root.join(&key);
    let done = |dir: PathBuf, reused: bool| -> Result<ConvertedSnapshot, UnetError> {
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path).map_err(io_err(&config_path))?;
        let config = NetworkConfig::from_json_str(&text).map_err(|e| match e {
            NetworkConfigError::Parse { reason, .. } => NetworkConfigError::Parse {
                origin: Some(config_path.clone()),
                reason,
            },
            other => other,
        })?;
        Ok(ConvertedSnapshot {
            weights: dir.join("weights.safetensors"),
            dir,
            config,
            reused,
        })
    };
    let complete = |d: &Path| {
        ["weights.safetensors", "config.json", "meta.json"]
            .iter()
            .all(|f| d.join(f).is_file())
    };
    if complete(&dir) {
        return done(dir, true);
    }
    let conversion = convert_bytes(&bytes, snapshot, opts)?;
    drop(bytes);
    std::fs::create_dir_all(cache_root).map_err(io_err(cache_root))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = cache_root.join(format!(".tmp-{key}-{}-{nanos}", std::process::id()));
    conversion.write(&tmp)?;
    if let Err(e) = std::fs::rename(&tmp, &dir) {
        let _ = std::fs::remove_dir_all(&tmp);
        // Another process finished the same conversion first.
        if !complete(&dir) {
            return Err(io_err(&dir)(e));
        }
    }
    done(dir, false)
}
