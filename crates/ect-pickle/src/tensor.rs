//! PyTorch tensors as data: a typed storage (little-endian bytes) and a strided view of it, as
//! `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` describes it.

use crate::error::{PickleError, Result};
use crate::limits::Limits;
use crate::value::Id;
use std::borrow::Cow;

/// Element type of a storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// `torch.float64` (`DoubleStorage`).
    F64,
    /// `torch.float32` (`FloatStorage`).
    F32,
    /// `torch.float16` (`HalfStorage`).
    F16,
    /// `torch.bfloat16` (`BFloat16Storage`).
    BF16,
    /// `torch.int64` (`LongStorage`).
    I64,
    /// `torch.int32` (`IntStorage`).
    I32,
    /// `torch.int16` (`ShortStorage`).
    I16,
    /// `torch.int8` (`CharStorage`).
    I8,
    /// `torch.uint8` (`ByteStorage`, `UntypedStorage`).
    U8,
    /// `torch.bool` (`BoolStorage`).
    Bool,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// The torch name (`float32`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F64 => "float64",
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::I16 => "int16",
            DType::I8 => "int8",
            DType::U8 => "uint8",
            DType::Bool => "bool",
        }
    }

    /// Whether it is a floating-point type (what `module.to(torch.float32)` converts).
    pub fn is_floating_point(self) -> bool {
        matches!(self, DType::F64 | DType::F32 | DType::F16 | DType::BF16)
    }

    /// The dtype of a storage class named by the pickle (`torch.FloatStorage` -> `FloatStorage`).
    pub fn from_storage_type(name: &str) -> Option<DType> {
        Some(match name {
            "DoubleStorage" => DType::F64,
            "FloatStorage" => DType::F32,
            "HalfStorage" => DType::F16,
            "BFloat16Storage" => DType::BF16,
            "LongStorage" => DType::I64,
            "IntStorage" => DType::I32,
            "ShortStorage" => DType::I16,
            "CharStorage" => DType::I8,
            "ByteStorage" | "UntypedStorage" => DType::U8,
            "BoolStorage" => DType::Bool,
            _ => return None,
        })
    }

    /// Element `i` of little-endian `data` as `f32`, converted as `tensor.to(torch.float32)` does
    /// (half and bfloat16 exactly, float64 and int64 rounded to nearest).
    fn get_f32(self, data: &[u8], i: usize) -> f32 {
        let at = i * self.size();
        let b = &data[at..at + self.size()];
        match self {
            DType::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            DType::F64 => f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32,
            DType::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
            DType::BF16 => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
            DType::I64 => i64::from_le_bytes(b.try_into().expect("8 bytes")) as f32,
            DType::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
            DType::I16 => i16::from_le_bytes([b[0], b[1]]) as f32,
            DType::I8 => b[0] as i8 as f32,
            DType::U8 => b[0] as f32,
            DType::Bool => (b[0] != 0) as u8 as f32,
        }
    }
}

/// A storage: `data.len()` is a whole number of elements of `dtype`, little-endian.
#[derive(Clone, Debug, PartialEq)]
pub struct Storage<'a> {
    /// Element type.
    pub dtype: DType,
    /// The raw bytes, borrowed from the input where it can be.
    pub data: Cow<'a, [u8]>,
}

impl Storage<'_> {
    /// The same storage owning its bytes.
    pub fn into_owned(self) -> Storage<'static> {
        Storage {
            dtype: self.dtype,
            data: Cow::Owned(self.data.into_owned()),
        }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len() / self.dtype.size()
    }
}

/// A strided view of a storage node.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// The [`crate::Node::Storage`] node.
    pub storage: Id,
    /// Element type (the storage's).
    pub dtype: DType,
    /// Offset of the first element, in elements.
    pub offset: usize,
    /// Size of each dimension.
    pub shape: Vec<usize>,
    /// Stride of each dimension, in elements.
    pub stride: Vec<usize>,
    /// `requires_grad` as pickled.
    pub requires_grad: bool,
    /// Whether it was pickled as a `torch.nn.Parameter`.
    pub is_parameter: bool,
}

impl Tensor {
    /// Number of elements (`None` when the shape's product overflows).
    pub fn numel(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
    }
}

/// A tensor together with its storage.
#[derive(Clone, Copy, Debug)]
pub struct TensorRef<'a> {
    /// The view.
    pub tensor: &'a Tensor,
    /// The storage it views.
    pub storage: &'a Storage<'a>,
}

impl TensorRef<'_> {
    /// Element type.
    pub fn dtype(&self) -> DType {
        self.tensor.dtype
    }

    /// Shape.
    pub fn shape(&self) -> &[usize] {
        &self.tensor.shape
    }

    /// Checks that every element of the view lies in the storage; returns the element count.
    pub fn check(&self) -> Result<usize> {
        let t = self.tensor;
        if t.shape.len() != t.stride.len() {
            return Err(PickleError::Tensor(format!(
                "shape {:?} and stride {:?} have different lengths",
                t.shape, t.stride
            )));
        }
        if t.dtype != self.storage.dtype {
            return Err(PickleError::Tensor(format!(
                "tensor of {} on a {} storage",
                t.dtype.name(),
                self.storage.dtype.name()
            )));
        }
        let numel = t
            .numel()
            .ok_or_else(|| PickleError::Tensor(format!("shape {:?} overflows", t.shape)))?;
        if numel == 0 {
            return Ok(0);
        }
        let last = t
            .shape
            .iter()
            .zip(&t.stride)
            .try_fold(t.offset, |acc, (&d, &s)| {
                (d - 1).checked_mul(s).and_then(|x| acc.checked_add(x))
            });
        match last {
            Some(last) if last < self.storage.numel() => Ok(numel),
            _ => Err(PickleError::Tensor(format!(
                "view (offset {}, shape {:?}, stride {:?}) reaches past its storage of {} elements",
                t.offset,
                t.shape,
                t.stride,
                self.storage.numel()
            ))),
        }
    }

    /// The elements in C order (contiguous) as `f32`, converted as `tensor.to(torch.float32)` does.
    /// The output's size counts against `limits.max_bytes`.
    pub fn to_f32(&self, limits: &Limits) -> Result<Vec<f32>> {
        let numel = self.check()?;
        if (numel as u64).saturating_mul(4) > limits.max_bytes {
            return Err(PickleError::Tensor(format!(
                "{numel} elements exceed the limit of {} bytes as float32",
                limits.max_bytes
            )));
        }
        let t = self.tensor;
        let (dtype, data) = (t.dtype, &self.storage.data[..]);
        let mut out = Vec::with_capacity(numel);
        if numel == 0 {
            return Ok(out);
        }
        if is_contiguous(&t.shape, &t.stride) {
            out.extend((t.offset..t.offset + numel).map(|i| dtype.get_f32(data, i)));
            return Ok(out);
        }
        // Odometer over the multi-index, last dimension fastest.
        let nd = t.shape.len();
        let mut index = vec![0usize; nd];
        let mut at = t.offset;
        for _ in 0..numel {
            out.push(dtype.get_f32(data, at));
            for d in (0..nd).rev() {
                index[d] += 1;
                at += t.stride[d];
                if index[d] < t.shape[d] {
                    break;
                }
                at -= t.stride[d] * t.shape[d];
                index[d] = 0;
            }
        }
        Ok(out)
    }
}

/// Whether the strides are those of a C-contiguous tensor of `shape` (size-1 dimensions ignored).
fn is_contiguous(shape: &[usize], stride: &[usize]) -> bool {
    let mut expected = 1usize;
    for (&d, &s) in shape.iter().zip(stride).rev() {
        if d != 1 && s != expected {
            return false;
        }
        expected = expected.saturating_mul(d);
    }
    true
}
