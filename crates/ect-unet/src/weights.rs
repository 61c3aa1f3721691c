//! Strict safetensors load and save of a VarStore, by the reference state-dict names.

use crate::error::UnetError;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::{nn::VarStore, Device, Kind, Tensor};

fn st_err(path: &Path, reason: impl Into<String>) -> UnetError {
    UnetError::Safetensors {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        _ => return None,
    })
}

/// Reads every tensor of a safetensors file onto the CPU (floating-point dtypes only).
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, Tensor>, UnetError> {
    let bytes = std::fs::read(path).map_err(|source| UnetError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| st_err(path, e.to_string()))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let kind = kind_of(view.dtype()).ok_or_else(|| {
            st_err(
                path,
                format!("tensor {name} has unsupported dtype {:?}", view.dtype()),
            )
        })?;
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(view.data(), &shape, kind)?;
        out.insert(name, t);
    }
    Ok(out)
}

/// Loads `path` into `vs` strictly: every variable (parameters and buffers) must be present with its
/// shape, and the file must hold nothing else. On mismatch nothing is modified and the error lists
/// all missing and unexpected names and every shape disagreement.
pub fn load_weights(vs: &mut VarStore, path: &Path) -> Result<(), UnetError> {
    let file = read_safetensors(path)?;
    let vars = vs.variables();
    let mut missing: Vec<String> = vars
        .keys()
        .filter(|k| !file.contains_key(*k))
        .cloned()
        .collect();
    let mut unexpected: Vec<String> = file
        .keys()
        .filter(|k| !vars.contains_key(*k))
        .cloned()
        .collect();
    missing.sort();
    unexpected.sort();
    let mut shape_mismatches = Vec::new();
    for (name, t) in &file {
        if let Some(v) = vars.get(name) {
            if v.size() != t.size() {
                shape_mismatches.push((name.clone(), v.size(), t.size()));
            }
        }
    }
    if !(missing.is_empty() && unexpected.is_empty() && shape_mismatches.is_empty()) {
        return Err(UnetError::WeightMismatch {
            path: path.to_path_buf(),
            missing,
            unexpected,
            shape_mismatches,
        });
    }
    tch::no_grad(|| -> Result<(), UnetError> {
        for (name, src) in &file {
            let mut dst = vars[name].shallow_clone();
            let src = src.to_device(dst.device()).to_kind(dst.kind());
            dst.f_copy_(&src)?;
        }
        Ok(())
    })
}

/// Saves every variable of `vs` (parameters and buffers) to `path` as f32/f64/f16/bf16 safetensors,
/// under the names the VarStore uses (the reference state-dict names).
pub fn save_weights(vs: &VarStore, path: &Path) -> Result<(), UnetError> {
    save_tensors(&vs.variables(), path)
}

/// Saves named tensors (copied to the CPU, made contiguous) to a safetensors file.
pub fn save_tensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<(), UnetError> {
    let mut owned: BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for (name, t) in tensors {
        let t = t.detach().to_device(Device::Cpu).contiguous();
        let dtype = match t.kind() {
            Kind::Float => Dtype::F32,
            Kind::Double => Dtype::F64,
            Kind::Half => Dtype::F16,
            Kind::BFloat16 => Dtype::BF16,
            k => {
                return Err(st_err(
                    path,
                    format!("tensor {name} has unsupported kind {k:?}"),
                ))
            }
        };
        let numel = t.numel();
        let mut bytes = vec![0u8; numel * t.kind().elt_size_in_bytes()];
        t.f_copy_data_u8(&mut bytes, numel)?;
        let shape = t.size().iter().map(|&d| d as usize).collect();
        owned.insert(name.clone(), (dtype, shape, bytes));
    }
    let mut views = Vec::with_capacity(owned.len());
    for (name, (dtype, shape, bytes)) in &owned {
        let view = TensorView::new(*dtype, shape.clone(), bytes)
            .map_err(|e| st_err(path, e.to_string()))?;
        views.push((name.clone(), view));
    }
    safetensors::serialize_to_file(views, &None, path).map_err(|e| st_err(path, e.to_string()))
}
