//! NumPy `.npy` arrays (format versions 1.0, 2.0 and 3.0): little-endian f64, f32 and u8, C order.
//!
//! Only what the metrics need: EDM's reference statistics (`mu`, `sigma`) and sample files. See
//! <https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html>.

use std::path::Path;

use crate::error::{MetricsError, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

/// The elements of an array, by type.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyData {
    /// `<f8`.
    F64(Vec<f64>),
    /// `<f4`.
    F32(Vec<f32>),
    /// `|u1`.
    U8(Vec<u8>),
}

impl NpyData {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            NpyData::F64(v) => v.len(),
            NpyData::F32(v) => v.len(),
            NpyData::U8(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The NumPy type string.
    pub fn descr(&self) -> &'static str {
        match self {
            NpyData::F64(_) => "<f8",
            NpyData::F32(_) => "<f4",
            NpyData::U8(_) => "|u1",
        }
    }
}

/// An n-dimensional array in C (row-major) order.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// Dimensions, outermost first (empty for a scalar).
    pub shape: Vec<usize>,
    /// Elements in C order; `data.len()` is the product of `shape`.
    pub data: NpyData,
}

impl NpyArray {
    /// An array, checking that the element count matches the shape.
    pub fn new(shape: Vec<usize>, data: NpyData) -> Result<Self> {
        let count: usize = shape.iter().product();
        if count != data.len() {
            return Err(MetricsError::dim(
                format!("elements of an array of shape {shape:?}"),
                count,
                data.len(),
            ));
        }
        Ok(Self { shape, data })
    }

    /// The elements converted to f64.
    pub fn to_f64(&self) -> Vec<f64> {
        match &self.data {
            NpyData::F64(v) => v.clone(),
            NpyData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            NpyData::U8(v) => v.iter().map(|&x| f64::from(x)).collect(),
        }
    }

    /// Parses a whole `.npy` file's bytes; `name` labels errors.
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Self> {
        let bad = |reason: String| MetricsError::Npy {
            path: name.into(),
            reason,
        };
        if bytes.len() < 10 || &bytes[..6] != MAGIC {
            return Err(bad("missing the \\x93NUMPY magic string".into()));
        }
        let major = bytes[6];
        let (header_len, start): (usize, usize) = match major {
            1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
            2 | 3 => {
                if bytes.len() < 12 {
                    return Err(bad("truncated header".into()));
                }
                (
                    u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                    12,
                )
            }
            v => return Err(bad(format!("unsupported format version {v}.{}", bytes[7]))),
        };
        let end = start.checked_add(header_len).filter(|&e| e <= bytes.len());
        let end = end.ok_or_else(|| bad(format!("header length {header_len} exceeds the file")))?;
        let header = std::str::from_utf8(&bytes[start..end])
            .map_err(|e| bad(format!("header is not text: {e}")))?;
        let descr = dict_value(header, "descr")
            .ok_or_else(|| bad(format!("no 'descr' in header {header:?}")))?;
        let descr = descr.trim().trim_matches(|c| c == '\'' || c == '"');
        let fortran = dict_value(header, "fortran_order")
            .ok_or_else(|| bad("no 'fortran_order' in header".into()))?;
        if fortran.trim() != "False" {
            return Err(bad(
                "Fortran-order arrays are not supported; save with np.ascontiguousarray".into(),
            ));
        }
        let shape_text =
            dict_value(header, "shape").ok_or_else(|| bad("no 'shape' in header".into()))?;
        let shape = parse_shape(shape_text)
            .ok_or_else(|| bad(format!("cannot parse shape {shape_text:?}")))?;
        let count = shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b));
        let count = count.ok_or_else(|| bad(format!("shape {shape:?} overflows")))?;
        let body = &bytes[end..];
        let need = |size: usize| {
            // A crafted shape can pass the element-count check and still overflow in bytes.
            let want = count.checked_mul(size).ok_or_else(|| {
                bad(format!(
                    "shape {shape:?} of {descr} needs more than {} bytes",
                    usize::MAX
                ))
            })?;
            if body.len() < want {
                Err(bad(format!(
                    "data holds {} bytes, shape {shape:?} of {descr} needs {want}",
                    body.len()
                )))
            } else {
                Ok(&body[..want])
            }
        };
        let data = match descr {
            "<f8" => NpyData::F64(
                need(8)?
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                    .collect(),
            ),
            "<f4" => NpyData::F32(
                need(4)?
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap_or([0; 4])))
                    .collect(),
            ),
            "|u1" | "<u1" | "u1" => NpyData::U8(need(1)?.to_vec()),
            other => {
                return Err(bad(format!(
                    "unsupported dtype {other:?} (supported: <f8, <f4, |u1)"
                )))
            }
        };
        Ok(Self { shape, data })
    }

    /// The `.npy` bytes (format 1.0, or 2.0 for a header over 64 KiB), header padded to 64 bytes as
    /// NumPy does.
    pub fn to_bytes(&self) -> Vec<u8> {
        let dims: Vec<String> = self.shape.iter().map(|d| d.to_string()).collect();
        let shape = match dims.len() {
            1 => format!("({},)", dims[0]),
            _ => format!("({})", dims.join(", ")),
        };
        let mut header = format!(
            "{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}",
            self.data.descr()
        );
        let v1 = header.len() + 11 < 65536;
        let prefix = if v1 { 10 } else { 12 };
        let total = (prefix + header.len() + 1).div_ceil(64) * 64;
        header.push_str(&" ".repeat(total - prefix - header.len() - 1));
        header.push('\n');
        let mut out = Vec::with_capacity(total + self.data.len() * 8);
        out.extend_from_slice(MAGIC);
        if v1 {
            out.extend_from_slice(&[1, 0]);
            out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&[2, 0]);
            out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(header.as_bytes());
        match &self.data {
            NpyData::F64(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            NpyData::F32(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            NpyData::U8(v) => out.extend_from_slice(v),
        }
        out
    }

    /// Reads a `.npy` file.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| MetricsError::io(path, e))?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    /// Writes a `.npy` file.
    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_bytes()).map_err(|e| MetricsError::io(path, e))
    }
}

/// The text of `key`'s value in a Python dict literal: up to the next top-level comma or brace.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pos = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[pos + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?;
    let mut depth = 0i32;
    for (i, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(&rest[..i]),
            _ => {}
        }
    }
    None
}

fn parse_shape(text: &str) -> Option<Vec<usize>> {
    let inner = text.trim().strip_prefix('(')?.strip_suffix(')')?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse().ok())
        .collect()
}
