//! Writes CIFAR python batches in the real layout (Python 2 `cPickle.dump(d, f, 2)`), so the tests
//! can build archives of any size. (The reader is `ect_pickle`; this writer only serves the tests.)

/// The values a CIFAR batch holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// `True`/`False`.
    Bool(bool),
    /// A small int.
    Int(i64),
    /// A byte string (Python 2 `str`).
    Bytes(Vec<u8>),
    /// A list.
    List(Vec<Value>),
    /// A numpy array of one-byte elements.
    Array {
        /// Its shape.
        shape: Vec<usize>,
        /// The dtype string (`u1`).
        dtype: String,
        /// The raw bytes, C order.
        data: Vec<u8>,
    },
}

/// Writes the CIFAR python batch layout exactly as Python 2's `cPickle.dump(d, f, 2)` wrote it: a dict
/// of byte-string keys in the given order, `data` as a numpy `uint8` array, label lists and strings.
///
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
        }
    }
}
