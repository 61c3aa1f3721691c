//! numpy arrays, dtypes and scalars as pickled by `ndarray.__reduce__`:
//! `numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')` then `BUILD` with
//! `(version, shape, dtype, is_fortran, raw_bytes)`; `numpy.dtype('f8', False, True)` then `BUILD`
//! with `(3, byte_order, ...)`; `numpy.core.multiarray.scalar(dtype, raw_bytes)`.

/// A numpy dtype of a plain number type (`u1`, `<f8`, `|b1`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NumpyDtype {
    /// `b` (bool), `i` (signed), `u` (unsigned), `f` (float), or another numpy kind character.
    pub kind: char,
    /// Bytes per element.
    pub itemsize: usize,
    /// `<` little, `>` big, `|` not applicable, `=` native.
    pub byte_order: char,
}

impl NumpyDtype {
    /// Parses a type string such as `u1`, `f8`, `<i4` or `b1` (the first argument of `numpy.dtype`).
    pub fn parse(s: &str) -> Option<NumpyDtype> {
        let (order, rest) = match s.chars().next()? {
            c @ ('<' | '>' | '|' | '=') => (c, &s[1..]),
            _ => ('=', s),
        };
        let mut chars = rest.chars();
        let kind = chars.next()?;
        let itemsize: usize = chars.as_str().parse().ok()?;
        if !kind.is_ascii_alphabetic() || itemsize == 0 || itemsize > 16 {
            return None;
        }
        Some(NumpyDtype {
            kind,
            itemsize,
            byte_order: order,
        })
    }

    /// The type string with its byte order, e.g. `<f8`.
    pub fn descr(&self) -> String {
        format!("{}{}{}", self.byte_order, self.kind, self.itemsize)
    }

    /// Whether multi-byte values are stored little-endian (`=` is taken as little: the files this
    /// crate reads were written on little-endian machines, and `BUILD` normally makes it explicit).
    pub fn is_little_endian(&self) -> bool {
        self.byte_order != '>' || self.itemsize == 1
    }
}

/// A numpy array (plain number dtypes only; object arrays are refused).
#[derive(Clone, Debug, PartialEq)]
pub struct NdArray<'a> {
    /// Its shape.
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: NumpyDtype,
    /// Whether `data` is in Fortran (column-major) order.
    pub fortran_order: bool,
    /// The raw bytes, `prod(shape) * itemsize` of them, borrowed from the input where they can be.
    pub data: std::borrow::Cow<'a, [u8]>,
}

/// The value of a numpy scalar of `dtype` stored in `raw`, as an int, float or bool, or `None` for
/// other types.
pub(crate) fn scalar_value(dtype: &NumpyDtype, raw: &[u8]) -> Option<ScalarValue> {
    if raw.len() != dtype.itemsize {
        return None;
    }
    let mut b = raw.to_vec();
    if !dtype.is_little_endian() {
        b.reverse();
    }
    let uint = |b: &[u8]| {
        let mut w = [0u8; 8];
        w[..b.len()].copy_from_slice(b);
        u64::from_le_bytes(w)
    };
    Some(match (dtype.kind, dtype.itemsize) {
        ('b', 1) => ScalarValue::Bool(b[0] != 0),
        ('f', 8) => ScalarValue::Float(f64::from_le_bytes(b.try_into().ok()?)),
        ('f', 4) => ScalarValue::Float(f32::from_le_bytes(b.try_into().ok()?) as f64),
        ('f', 2) => ScalarValue::Float(half::f16::from_le_bytes(b.try_into().ok()?).to_f64()),
        ('u', 1 | 2 | 4) => ScalarValue::Int(uint(&b) as i64),
        ('u', 8) => ScalarValue::Int(i64::try_from(uint(&b)).ok()?),
        ('i', n @ (1 | 2 | 4 | 8)) => {
            let shift = 64 - 8 * n as u32;
            ScalarValue::Int(((uint(&b) << shift) as i64) >> shift)
        }
        _ => return None,
    })
}

/// A numpy scalar's value.
pub(crate) enum ScalarValue {
    Bool(bool),
    Int(i64),
    Float(f64),
}
