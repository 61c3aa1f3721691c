//! A minimal reader for the pickles inside CIFAR's python archives
//! (<https://www.cs.toronto.edu/~kriz/cifar.html>).
//!
//! The batches were written by Python 2's `cPickle` with protocol 2: a dict whose keys and strings are
//! byte strings (`SHORT_BINSTRING`/`BINSTRING`), labels as lists of small ints, and `data` as a numpy
//! array pickled through `numpy.core.multiarray._reconstruct(ndarray, (0,), 'b')` followed by `BUILD`
//! with the state `(1, shape, dtype('u1'), False, raw_bytes)`. Only the opcodes such files use (plus
//! the Python 3 protocol-2 spelling of bytes, `_codecs.encode(str, 'latin1')`, and the protocol 3-5
//! byte opcodes) are understood; anything else is an error naming the opcode and offset, never a panic.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{DataError, Result};

/// A value of the small object model the CIFAR pickles need.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// `True`/`False`.
    Bool(bool),
    /// An integer that fits `i64`.
    Int(i64),
    /// A float.
    Float(f64),
    /// A byte string (Python 2 `str`, Python 3 `bytes`).
    Bytes(Vec<u8>),
    /// A text string.
    Str(String),
    /// A list.
    List(Vec<Value>),
    /// A tuple.
    Tuple(Vec<Value>),
    /// A dict with keys kept in insertion order.
    Dict(Vec<(Value, Value)>),
    /// A global reference `module.name` (a class or function).
    Global(String, String),
    /// A numpy dtype (its type string, e.g. `u1`).
    Dtype(String),
    /// A numpy array of one-byte elements.
    Array {
        /// Its shape.
        shape: Vec<usize>,
        /// The dtype string (`u1`, `i1`, `b1`).
        dtype: String,
        /// The raw bytes, C order.
        data: Vec<u8>,
    },
    /// The marker on the stack that `MARK` pushes.
    Mark,
}

impl Value {
    /// Looks a key up in a dict by byte-string or text key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items.iter().find_map(|(k, v)| match k {
                Value::Bytes(b) if b == key.as_bytes() => Some(v),
                Value::Str(s) if s == key => Some(v),
                _ => None,
            }),
            _ => None,
        }
    }

    /// A short name of the value's kind, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Bytes(_) => "bytes",
            Value::Str(_) => "str",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) => "dict",
            Value::Global(..) => "global",
            Value::Dtype(_) => "dtype",
            Value::Array { .. } => "ndarray",
            Value::Mark => "mark",
        }
    }
}

struct Machine<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
    stack: Vec<Value>,
    memo: BTreeMap<u64, Value>,
    /// Work left for copying memoized values, so a crafted file cannot blow up memory.
    copy_budget: usize,
}

/// Deepest container nesting accepted (CIFAR files nest 3 deep); bounds recursion in drop and clone.
const MAX_DEPTH: usize = 32;

/// Container nesting of `v`, or `MAX_DEPTH + 1` once it is deeper than allowed (bounded recursion).
fn depth(v: &Value, limit: usize) -> usize {
    if limit == 0 {
        return MAX_DEPTH + 1;
    }
    let children: &[Value] = match v {
        Value::List(items) | Value::Tuple(items) => items,
        Value::Dict(items) => {
            return 1 + items
                .iter()
                .map(|(k, v)| depth(k, limit - 1).max(depth(v, limit - 1)))
                .max()
                .unwrap_or(0)
        }
        _ => return 0,
    };
    1 + children
        .iter()
        .filter(|c| matches!(c, Value::List(_) | Value::Tuple(_) | Value::Dict(_)))
        .map(|c| depth(c, limit - 1))
        .max()
        .unwrap_or(0)
}

/// Bytes and items a clone of `v` copies (bounded by `limit`).
fn weight(v: &Value, limit: usize) -> usize {
    match v {
        Value::Bytes(b) => b.len(),
        Value::Str(s) => s.len(),
        Value::Array { data, .. } => data.len(),
        Value::List(items) | Value::Tuple(items) => {
            let mut w = items.len();
            for it in items {
                if w > limit {
                    break;
                }
                w += weight(it, limit);
            }
            w
        }
        Value::Dict(items) => {
            let mut w = items.len();
            for (k, it) in items {
                if w > limit {
                    break;
                }
                w += weight(k, limit) + weight(it, limit);
            }
            w
        }
        _ => 1,
    }
}

impl<'a> Machine<'a> {
    fn err(&self, msg: impl std::fmt::Display) -> DataError {
        DataError::format(self.path, format!("pickle: {msg} (at byte {})", self.pos))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.bytes.len() - self.pos < n {
            return Err(self.err(format!(
                "truncated: {n} bytes needed, {} left",
                self.bytes.len() - self.pos
            )));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn line(&mut self) -> Result<String> {
        let rest = &self.bytes[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.err("truncated: unterminated line"))?;
        let s = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.pos += end + 1;
        Ok(s)
    }

    fn pop(&mut self) -> Result<Value> {
        match self.stack.pop() {
            Some(Value::Mark) | None => Err(self.err("stack underflow")),
            Some(v) => Ok(v),
        }
    }

    fn top(&mut self) -> Result<&mut Value> {
        let pos = self.pos;
        let path = self.path;
        match self.stack.last_mut() {
            Some(Value::Mark) | None => Err(DataError::format(
                path,
                format!("pickle: stack underflow (at byte {pos})"),
            )),
            Some(v) => Ok(v),
        }
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let at = self
            .stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .ok_or_else(|| self.err("no MARK on the stack"))?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }

    fn push_len_bytes(&mut self, n: usize, text: bool) -> Result<()> {
        let b = self.take(n)?.to_vec();
        self.stack.push(if text {
            Value::Str(String::from_utf8(b).map_err(|_| self.err("string is not UTF-8"))?)
        } else {
            Value::Bytes(b)
        });
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> Result<()> {
        let src = self
            .memo
            .get(&key)
            .ok_or_else(|| self.err(format!("memo key {key} not set")))?;
        let w = weight(src, self.copy_budget);
        if w > self.copy_budget {
            return Err(self.err("memoized values are copied more than the file size justifies"));
        }
        let v = src.clone();
        self.copy_budget -= w;
        self.stack.push(v);
        Ok(())
    }

    fn memo_put(&mut self, key: u64) -> Result<()> {
        let budget = self.copy_budget;
        let src = self.top()?;
        let w = weight(src, budget);
        let v = (w <= budget).then(|| src.clone());
        let v = v.ok_or_else(|| {
            self.err("memoized values are copied more than the file size justifies")
        })?;
        self.copy_budget -= w;
        self.memo.insert(key, v);
        Ok(())
    }

    fn check_depth(&self, items: &[Value]) -> Result<()> {
        for it in items {
            if matches!(it, Value::List(_) | Value::Tuple(_) | Value::Dict(_))
                && depth(it, MAX_DEPTH) >= MAX_DEPTH
            {
                return Err(self.err(format!("containers nested deeper than {MAX_DEPTH}")));
            }
        }
        Ok(())
    }

    fn append_to_top(&mut self, items: Vec<Value>) -> Result<()> {
        self.check_depth(&items)?;
        let err = self.err("APPEND(S) target is not a list");
        match self.top()? {
            Value::List(l) => {
                l.extend(items);
                Ok(())
            }
            _ => Err(err),
        }
    }

    fn set_items(&mut self, items: Vec<Value>) -> Result<()> {
        if items.len() % 2 != 0 {
            return Err(self.err("SETITEMS with an odd number of items"));
        }
        self.check_depth(&items)?;
        let err = self.err("SETITEM(S) target is not a dict");
        match self.top()? {
            Value::Dict(d) => {
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    d.push((k, v));
                }
                Ok(())
            }
            _ => Err(err),
        }
    }

    /// `callable(*args)` for the few callables the CIFAR pickles contain.
    fn reduce(&self, callable: Value, args: Value) -> Result<Value> {
        let args = match args {
            Value::Tuple(a) => a,
            other => {
                return Err(self.err(format!(
                    "REDUCE arguments are a {}, not a tuple",
                    other.kind()
                )))
            }
        };
        let (module, name) = match &callable {
            Value::Global(m, n) => (m.as_str(), n.as_str()),
            other => return Err(self.err(format!("REDUCE of a {}", other.kind()))),
        };
        match (module, name) {
            ("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct") => {
                Ok(Value::Array {
                    shape: vec![0],
                    dtype: String::new(),
                    data: Vec::new(),
                })
            }
            ("numpy", "dtype") => match args.first() {
                Some(Value::Bytes(b)) => Ok(Value::Dtype(String::from_utf8_lossy(b).into_owned())),
                Some(Value::Str(s)) => Ok(Value::Dtype(s.clone())),
                _ => Err(self.err("numpy.dtype without a type string")),
            },
            ("_codecs", "encode") => match args.first() {
                // Python 3 writes bytes at protocol 2 as `encode(bytes.decode('latin1'), 'latin1')`.
                Some(Value::Str(s)) => s
                    .chars()
                    .map(|c| {
                        u8::try_from(c as u32)
                            .map_err(|_| self.err("_codecs.encode of a non-latin1 string"))
                    })
                    .collect::<Result<Vec<u8>>>()
                    .map(Value::Bytes),
                _ => Err(self.err("_codecs.encode without a string")),
            },
            ("__builtin__" | "builtins", "bytes") if args.is_empty() => {
                Ok(Value::Bytes(Vec::new()))
            }
            _ => Err(self.err(format!("unsupported callable {module}.{name}"))),
        }
    }

    fn build(&self, obj: Value, state: Value) -> Result<Value> {
        match obj {
            Value::Array { .. } => {
                let st = match state {
                    Value::Tuple(t) => t,
                    other => return Err(self.err(format!("ndarray state is a {}", other.kind()))),
                };
                if st.len() != 5 {
                    return Err(
                        self.err(format!("ndarray state has {} items, expected 5", st.len()))
                    );
                }
                let shape = match &st[1] {
                    Value::Tuple(dims) => dims
                        .iter()
                        .map(|d| match d {
                            Value::Int(x) if *x >= 0 => Ok(*x as usize),
                            _ => Err(self.err("ndarray shape is not a tuple of non-negative ints")),
                        })
                        .collect::<Result<Vec<usize>>>()?,
                    _ => return Err(self.err("ndarray shape is not a tuple")),
                };
                let dtype = match &st[2] {
                    Value::Dtype(d) => d.clone(),
                    other => return Err(self.err(format!("ndarray dtype is a {}", other.kind()))),
                };
                if !matches!(dtype.as_str(), "u1" | "i1" | "b1") {
                    return Err(self.err(format!("ndarray dtype {dtype:?} is not a one-byte type")));
                }
                if matches!(&st[3], Value::Bool(true)) {
                    return Err(self.err("Fortran-order ndarray is not supported"));
                }
                let data = match &st[4] {
                    Value::Bytes(b) => b.clone(),
                    other => return Err(self.err(format!("ndarray data is a {}", other.kind()))),
                };
                let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
                if count != Some(data.len()) {
                    return Err(self.err(format!(
                        "ndarray of shape {shape:?} has {} data bytes",
                        data.len()
                    )));
                }
                Ok(Value::Array { shape, dtype, data })
            }
            // The dtype's state (byte order, field names, ...) carries nothing a one-byte type needs.
            Value::Dtype(d) => Ok(Value::Dtype(d)),
            other => Err(self.err(format!("BUILD of a {}", other.kind()))),
        }
    }

    fn run(mut self) -> Result<Value> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return Err(self.err(format!("unsupported pickle protocol {proto}")));
                    }
                }
                0x95 => {
                    self.u64()?; // FRAME: a length hint only
                }
                b'.' => return self.pop(),
                b'(' => self.stack.push(Value::Mark),
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                b']' => self.stack.push(Value::List(Vec::new())),
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(Value::Int(v as i64));
                }
                b'J' => {
                    let v = self.u32()? as i32;
                    self.stack.push(Value::Int(v as i64));
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    if n > 8 {
                        return Err(self.err("LONG1 wider than 64 bits"));
                    }
                    let mut v: i64 = 0;
                    for (i, &byte) in b.iter().enumerate() {
                        v |= (byte as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.stack.push(Value::Int(v));
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes"));
                    self.stack.push(Value::Float(v));
                }
                b'U' => {
                    let n = self.u8()? as usize;
                    self.push_len_bytes(n, false)?;
                }
                b'T' => {
                    let n = self.u32()? as usize;
                    self.push_len_bytes(n, false)?;
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    self.push_len_bytes(n, false)?;
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    self.push_len_bytes(n, false)?;
                }
                0x8e => {
                    let n = self.u64()?;
                    let n =
                        usize::try_from(n).map_err(|_| self.err("BINBYTES8 length too large"))?;
                    self.push_len_bytes(n, false)?;
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    self.push_len_bytes(n, true)?;
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    self.push_len_bytes(n, true)?;
                }
                b'q' => {
                    let k = self.u8()? as u64;
                    self.memo_put(k)?;
                }
                b'r' => {
                    let k = self.u32()? as u64;
                    self.memo_put(k)?;
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    self.memo_put(k)?;
                }
                b'h' => {
                    let k = self.u8()? as u64;
                    self.memo_get(k)?;
                }
                b'j' => {
                    let k = self.u32()? as u64;
                    self.memo_get(k)?;
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append_to_top(vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append_to_top(items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.check_depth(&items)?;
                    self.stack.push(Value::List(items));
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.check_depth(&items)?;
                    self.stack.push(Value::Tuple(items));
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Dict(Vec::new()));
                    self.set_items(items)?;
                }
                0x85 => {
                    let a = self.pop()?;
                    self.check_depth(std::slice::from_ref(&a))?;
                    self.stack.push(Value::Tuple(vec![a]));
                }
                0x86 => {
                    let b = self.pop()?;
                    let a = self.pop()?;
                    let items = vec![a, b];
                    self.check_depth(&items)?;
                    self.stack.push(Value::Tuple(items));
                }
                0x87 => {
                    let c = self.pop()?;
                    let b = self.pop()?;
                    let a = self.pop()?;
                    let items = vec![a, b, c];
                    self.check_depth(&items)?;
                    self.stack.push(Value::Tuple(items));
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global(module, name));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.stack.push(Value::Global(m, n)),
                        _ => return Err(self.err("STACK_GLOBAL without two strings")),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = self.reduce(callable, args)?;
                    self.stack.push(v);
                }
                b'b' => {
                    let state = self.pop()?;
                    let obj = self.pop()?;
                    let v = self.build(obj, state)?;
                    self.stack.push(v);
                }
                b'0' => {
                    self.pop()?;
                }
                other => {
                    self.pos -= 1;
                    return Err(self.err(format!("unsupported opcode 0x{other:02x}")));
                }
            }
        }
    }
}

/// Unpickles `bytes`; `path` only names the file in errors.
pub fn load(bytes: &[u8], path: &Path) -> Result<Value> {
    let copy_budget = bytes.len().saturating_mul(8).saturating_add(1 << 16);
    Machine {
        bytes,
        pos: 0,
        path,
        stack: Vec::new(),
        memo: BTreeMap::new(),
        copy_budget,
    }
    .run()
}

/// Writes the CIFAR python batch layout exactly as Python 2's `cPickle.dump(d, f, 2)` wrote it: a dict
/// of byte-string keys in the given order, `data` as a numpy `uint8` array, label lists and strings.
///
/// Used by tests and tools to build real-layout archives; every item is a `(key, value)` with values
/// [`Value::Bytes`], [`Value::List`] of [`Value::Int`]/[`Value::Bytes`], or [`Value::Array`].
///
/// # Panics
/// On other value kinds (a caller's programming error; the readers never call this).
pub fn dump_py2(items: &[(&str, Value)]) -> Vec<u8> {
    let mut w = Writer {
        out: vec![0x80, 2],
        memo: 0,
    };
    w.out.push(b'}');
    w.put();
    w.out.push(b'(');
    for (k, v) in items {
        w.bytes(k.as_bytes());
        w.value(v);
    }
    w.out.push(b'u');
    w.out.push(b'.');
    w.out
}

struct Writer {
    out: Vec<u8>,
    memo: u32,
}

impl Writer {
    fn put(&mut self) {
        self.memo += 1;
        if self.memo < 256 {
            self.out.extend([b'q', self.memo as u8]);
        } else {
            self.out.push(b'r');
            self.out.extend(self.memo.to_le_bytes());
        }
    }

    fn bytes(&mut self, b: &[u8]) {
        if b.len() < 256 {
            self.out.extend([b'U', b.len() as u8]);
        } else {
            self.out.push(b'T');
            self.out.extend((b.len() as u32).to_le_bytes());
        }
        self.out.extend_from_slice(b);
        self.put();
    }

    fn int(&mut self, v: i64) {
        if (0..256).contains(&v) {
            self.out.extend([b'K', v as u8]);
        } else if (0..65536).contains(&v) {
            self.out.push(b'M');
            self.out.extend((v as u16).to_le_bytes());
        } else {
            self.out.push(b'J');
            self.out.extend((v as i32).to_le_bytes());
        }
    }

    fn global(&mut self, module: &str, name: &str) {
        self.out.push(b'c');
        self.out.extend_from_slice(module.as_bytes());
        self.out.push(b'\n');
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(b'\n');
        self.put();
    }

    fn value(&mut self, v: &Value) {
        match v {
            Value::Int(i) => self.int(*i),
            Value::Bytes(b) => self.bytes(b),
            Value::List(items) => {
                self.out.push(b']');
                self.put();
                // cPickle batches list items in runs of 1000 between MARK and APPENDS.
                for chunk in items.chunks(1000) {
                    self.out.push(b'(');
                    for it in chunk {
                        self.value(it);
                    }
                    self.out.push(b'e');
                }
            }
            Value::Array { shape, dtype, data } => {
                self.global("numpy.core.multiarray", "_reconstruct");
                self.global("numpy", "ndarray");
                self.int(0);
                self.out.push(0x85);
                self.put();
                self.bytes(b"b");
                self.out.push(0x87);
                self.put();
                self.out.push(b'R');
                self.put();
                self.out.push(b'(');
                self.int(1);
                self.out.push(b'(');
                for &d in shape {
                    self.int(d as i64);
                }
                self.out.push(b't');
                self.put();
                self.global("numpy", "dtype");
                self.bytes(dtype.as_bytes());
                self.int(0);
                self.int(1);
                self.out.push(0x87);
                self.put();
                self.out.push(b'R');
                self.put();
                self.out.push(b'(');
                self.int(3);
                self.bytes(b"|");
                self.out.extend([b'N', b'N', b'N']);
                self.out
                    .extend([b'J', 0xff, 0xff, 0xff, 0xff, b'J', 0xff, 0xff, 0xff, 0xff]);
                self.int(0);
                self.out.push(b't');
                self.put();
                self.out.push(b'b');
                self.out.push(0x89);
                self.bytes(data);
                self.out.push(b't');
                self.put();
                self.out.push(b'b');
            }
            Value::None => self.out.push(b'N'),
            Value::Bool(true) => self.out.push(0x88),
            Value::Bool(false) => self.out.push(0x89),
            other => panic!("dump_py2 does not write {}", other.kind()),
        }
    }
}
