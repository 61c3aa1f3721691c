//! The fixed list of constructors the reader understands. Each builds data from its arguments
//! (a tensor, a storage read from a nested `torch.save` archive, a dict, a numpy array); none
//! imports or runs anything. Every other callable stays an opaque [`crate::Object`].
//!
//! | global | result |
//! |---|---|
//! | `torch._utils._rebuild_tensor_v2`, `_rebuild_tensor` | [`Node::Tensor`] |
//! | `torch._utils._rebuild_parameter`, `_rebuild_parameter_with_state` | [`Node::Tensor`] marked as a parameter |
//! | `torch._tensor._rebuild_from_type_v2` | the tensor its (known) rebuild function makes |
//! | `torch.storage._load_from_bytes` | [`Node::Storage`] from the embedded `torch.save` archive |
//! | `collections.OrderedDict` | [`Node::Dict`] |
//! | `torch_utils.persistence._reconstruct_persistent_obj` | [`Node::Persistent`] (the module source is not run) |
//! | `numpy.core.multiarray._reconstruct` (+ `BUILD`), `numpy.dtype`, `numpy.core.multiarray.scalar` | [`Node::NdArray`], [`Node::NumpyDtype`], a number |
//! | `_codecs.encode` | [`Node::Bytes`] (how Python 3 writes bytes at protocol 2) |
//! | `builtins.set`, `frozenset`, `bytes`, `bytearray` | [`Node::Set`], [`Node::Bytes`] |
//! | `copyreg._reconstructor` | an opaque object of the given class (protocols 0 and 1) |

use std::borrow::Cow;

use crate::machine::{Fail, Machine, Step, FALSE, TRUE};
use crate::numpy::{scalar_value, NdArray, NumpyDtype, ScalarValue};
use crate::tensor::{DType, Tensor};
use crate::value::{Construct, Global, Id, Node, Object, PersistentObject};

const NUMPY_MULTIARRAY: [&str; 2] = ["numpy.core.multiarray", "numpy._core.multiarray"];
const BUILTINS: [&str; 2] = ["builtins", "__builtin__"];

/// Whether the reader understands `g` (as a constructor, or as a type such constructors take).
pub(crate) fn is_known(g: &Global) -> bool {
    let (m, n) = (g.module.as_str(), g.name.as_str());
    match m {
        "torch._utils" => matches!(
            n,
            "_rebuild_tensor_v2"
                | "_rebuild_tensor"
                | "_rebuild_parameter"
                | "_rebuild_parameter_with_state"
        ),
        "torch._tensor" => matches!(n, "_rebuild_from_type_v2" | "Tensor"),
        "torch.storage" => n == "_load_from_bytes",
        "collections" => n == "OrderedDict",
        "torch_utils.persistence" => n == "_reconstruct_persistent_obj",
        "numpy" => matches!(n, "dtype" | "ndarray"),
        "_codecs" => n == "encode",
        "copyreg" | "copy_reg" => n == "_reconstructor",
        "torch.nn.parameter" => n == "Parameter",
        "torch" => n == "Tensor" || DType::from_storage_type(n).is_some(),
        _ if NUMPY_MULTIARRAY.contains(&m) => matches!(n, "_reconstruct" | "scalar"),
        _ if BUILTINS.contains(&m) => matches!(n, "set" | "frozenset" | "bytes" | "bytearray"),
        _ => false,
    }
}

fn want<T>(v: Option<T>, what: impl FnOnce() -> String) -> Step<T> {
    v.ok_or_else(|| Fail::Msg(what()))
}

impl<'a> Machine<'a, '_> {
    fn arg_int(&self, id: Id, what: &str) -> Step<i64> {
        match self.node(id) {
            Node::Int(v) => Ok(*v),
            Node::Bool(b) => Ok(*b as i64),
            other => Err(format!("{what} is {}, not an int", other.a_kind()).into()),
        }
    }

    fn arg_usize(&self, id: Id, what: &str) -> Step<usize> {
        let v = self.arg_int(id, what)?;
        usize::try_from(v).map_err(|_| format!("{what} is negative ({v})").into())
    }

    fn arg_usizes(&self, id: Id, what: &str) -> Step<Vec<usize>> {
        let items = match self.node(id) {
            Node::Tuple(v) | Node::List(v) => v.clone(),
            other => return Err(format!("{what} is {}, not a tuple", other.a_kind()).into()),
        };
        items.iter().map(|&i| self.arg_usize(i, what)).collect()
    }

    fn arg_str(&self, id: Id) -> Option<&str> {
        match self.node(id) {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Text of a str, or of a byte string read as Latin-1 (Python 2 pickles).
    fn arg_text(&self, id: Id) -> Option<String> {
        match self.node(id) {
            Node::Str(s) => Some(s.clone()),
            Node::Bytes(b) => Some(b.iter().map(|&c| c as char).collect()),
            _ => None,
        }
    }

    fn dict_entry(&self, dict: Id, key: &str) -> Option<Id> {
        let pairs = match self.node(dict) {
            Node::Dict(v) => v,
            Node::Object(o) => &o.dict_items,
            _ => return None,
        };
        pairs
            .iter()
            .rev()
            .find(|&&(k, _)| self.arg_str(k) == Some(key))
            .map(|&(_, v)| v)
    }

    /// Runs a known constructor; `Ok(None)` when `g` is not one (the caller makes an opaque object).
    pub(crate) fn call_known(
        &mut self,
        g: &Global,
        args: &[Id],
        how: Construct,
    ) -> Step<Option<Id>> {
        let (m, n) = (g.module.as_str(), g.name.as_str());
        let node = match (m, n) {
            ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => {
                self.rebuild_tensor(args)?
            }
            ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
                let [data, requires_grad, ..] = args else {
                    return Err(
                        format!("{n} takes at least 2 arguments, got {}", args.len()).into(),
                    );
                };
                let mut t = match self.node(*data) {
                    Node::Tensor(t) => t.clone(),
                    other => return Err(format!("{n} of {}, not a tensor", other.a_kind()).into()),
                };
                t.requires_grad = self.arg_int(*requires_grad, "requires_grad")? != 0;
                t.is_parameter = true;
                Node::Tensor(t)
            }
            ("torch._tensor", "_rebuild_from_type_v2") => {
                let [func, new_type, inner_args, ..] = args else {
                    return Err(format!("{n} takes 4 arguments, got {}", args.len()).into());
                };
                let func = match self.node(*func) {
                    Node::Global(f) if f.module == "torch._utils" => f.clone(),
                    _ => {
                        return Err(format!(
                            "{n} with a rebuild function other than torch._utils.*"
                        )
                        .into())
                    }
                };
                let inner = self.tuple_items(*inner_args, "the rebuild arguments")?;
                let id = want(self.call_known(&func, &inner, Construct::Reduce)?, || {
                    format!("{n} with the unknown function {func}")
                })?;
                let parameter = matches!(self.node(*new_type),
                    Node::Global(t) if t.module == "torch.nn.parameter" && t.name == "Parameter");
                match self.arena.node_mut(id) {
                    Node::Tensor(t) => t.is_parameter |= parameter,
                    other => {
                        return Err(format!("{n} built {}, not a tensor", other.a_kind()).into())
                    }
                }
                return Ok(Some(id));
            }
            ("torch.storage", "_load_from_bytes") => {
                let [bytes] = args else {
                    return Err(format!("{n} takes 1 argument, got {}", args.len()).into());
                };
                let src: Cow<'a, [u8]> = match self.node(*bytes) {
                    Node::Bytes(b) => b.clone(),
                    other => return Err(format!("{n} of {}, not bytes", other.a_kind()).into()),
                };
                let budget = &mut *self.arena.budget;
                let storage = match src {
                    Cow::Borrowed(b) => crate::torch::load_storage_bytes(b, budget),
                    Cow::Owned(b) => {
                        crate::torch::load_storage_bytes(&b, budget).map(|s| s.into_owned())
                    }
                };
                Node::Storage(storage.map_err(Fail::Nested)?)
            }
            ("collections", "OrderedDict") => match args {
                [] => Node::Dict(Vec::new()),
                [items] => {
                    let items = match self.node(*items) {
                        Node::List(v) | Node::Tuple(v) => v.clone(),
                        other => return Err(format!("OrderedDict of {}", other.a_kind()).into()),
                    };
                    let mut pairs = Vec::with_capacity(items.len());
                    for it in items {
                        match self.node(it) {
                            Node::Tuple(kv) | Node::List(kv) if kv.len() == 2 => {
                                pairs.push((kv[0], kv[1]))
                            }
                            _ => return Err("OrderedDict items are not key-value pairs".into()),
                        }
                    }
                    Node::Dict(pairs)
                }
                _ => {
                    return Err(
                        format!("OrderedDict takes at most 1 argument, got {}", args.len()).into(),
                    )
                }
            },
            ("torch_utils.persistence", "_reconstruct_persistent_obj") => {
                let [meta] = args else {
                    return Err(format!("{n} takes 1 argument, got {}", args.len()).into());
                };
                let meta = *meta;
                if let Some(t) = self.dict_entry(meta, "type") {
                    if self.arg_str(t) != Some("class") {
                        return Err(format!("{n}: meta['type'] is not 'class'").into());
                    }
                }
                let class_name = want(
                    self.dict_entry(meta, "class_name")
                        .and_then(|c| self.arg_str(c)),
                    || format!("{n}: meta has no 'class_name' string"),
                )?
                .to_string();
                let state = want(self.dict_entry(meta, "state"), || {
                    format!("{n}: meta has no 'state'")
                })?;
                let version = self
                    .dict_entry(meta, "version")
                    .and_then(|v| self.arg_int(v, "version").ok());
                Node::Persistent(PersistentObject {
                    class_name,
                    version,
                    meta,
                    state,
                })
            }
            (m, "_reconstruct") if NUMPY_MULTIARRAY.contains(&m) => Node::NdArray(NdArray {
                shape: vec![0],
                dtype: NumpyDtype {
                    kind: 'u',
                    itemsize: 1,
                    byte_order: '|',
                },
                fortran_order: false,
                data: Cow::Borrowed(&[]),
            }),
            ("numpy", "dtype") => {
                let s = want(args.first().and_then(|&a| self.arg_text(a)), || {
                    "numpy.dtype without a type string".into()
                })?;
                Node::NumpyDtype(want(NumpyDtype::parse(&s), || {
                    format!("numpy dtype {s:?} is not understood")
                })?)
            }
            (m, "scalar") if NUMPY_MULTIARRAY.contains(&m) => {
                let value = match args {
                    [d, raw] => match (self.node(*d), self.node(*raw)) {
                        (Node::NumpyDtype(d), Node::Bytes(b)) => scalar_value(d, b),
                        _ => None,
                    },
                    _ => None,
                };
                match value {
                    Some(ScalarValue::Bool(b)) => return Ok(Some(if b { TRUE } else { FALSE })),
                    Some(ScalarValue::Int(v)) => Node::Int(v),
                    Some(ScalarValue::Float(v)) => Node::Float(v),
                    None => return Ok(None),
                }
            }
            ("_codecs", "encode") => {
                let s = want(args.first().and_then(|&a| self.arg_str(a)), || {
                    "_codecs.encode without a string".into()
                })?;
                let enc = match args.get(1) {
                    Some(&e) => want(self.arg_str(e), || {
                        "_codecs.encode with a non-string encoding".into()
                    })?
                    .to_ascii_lowercase(),
                    None => "utf-8".into(),
                };
                let bytes = match enc.as_str() {
                    "latin1" | "latin-1" | "iso-8859-1" | "iso8859-1" => s
                        .chars()
                        .map(|c| u8::try_from(c as u32))
                        .collect::<Result<Vec<u8>, _>>()
                        .map_err(|_| "_codecs.encode of a non-latin1 string to latin1")?,
                    "utf-8" | "utf8" => s.as_bytes().to_vec(),
                    other => {
                        return Err(format!("_codecs.encode to {other:?} is not supported").into())
                    }
                };
                Node::Bytes(Cow::Owned(bytes))
            }
            (m, "set" | "frozenset") if BUILTINS.contains(&m) => match args {
                [] => Node::Set(Vec::new()),
                [items] => match self.node(*items) {
                    Node::List(v) | Node::Tuple(v) | Node::Set(v) => Node::Set(v.clone()),
                    other => return Err(format!("{n} of {}", other.a_kind()).into()),
                },
                _ => return Err(format!("{n} takes at most 1 argument").into()),
            },
            (m, "bytes" | "bytearray") if BUILTINS.contains(&m) => match args {
                [] => Node::Bytes(Cow::Borrowed(&[])),
                [b] => match self.node(*b) {
                    Node::Bytes(b) => Node::Bytes(b.clone()),
                    _ => return Ok(None),
                },
                _ => return Ok(None),
            },
            ("copyreg" | "copy_reg", "_reconstructor") => {
                let [cls, ..] = args else {
                    return Err("_reconstructor without a class".into());
                };
                let empty = self.arena.push(Node::Tuple(Vec::new()))?;
                Node::Object(Object {
                    callable: *cls,
                    args: empty,
                    kwargs: None,
                    construct: how,
                    state: None,
                    list_items: Vec::new(),
                    dict_items: Vec::new(),
                })
            }
            _ => return Ok(None),
        };
        Ok(Some(self.arena.push(node)?))
    }

    /// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])`
    /// or `_rebuild_tensor(storage, storage_offset, size, stride)`.
    fn rebuild_tensor(&self, args: &[Id]) -> Step<Node<'a>> {
        let [storage, offset, size, stride, rest @ ..] = args else {
            return Err(format!(
                "tensor rebuild takes at least 4 arguments, got {}",
                args.len()
            )
            .into());
        };
        let dtype = match self.node(*storage) {
            Node::Storage(s) => s.dtype,
            other => {
                return Err(format!("tensor rebuild of {}, not a storage", other.a_kind()).into())
            }
        };
        let requires_grad = match rest.first() {
            Some(&r) => self.arg_int(r, "requires_grad")? != 0,
            None => false,
        };
        // The view is checked against its storage when materialised: a legacy archive fills its
        // storages only after the pickle that references them.
        Ok(Node::Tensor(Tensor {
            storage: *storage,
            dtype,
            offset: self.arg_usize(*offset, "storage offset")?,
            shape: self.arg_usizes(*size, "size")?,
            stride: self.arg_usizes(*stride, "stride")?,
            requires_grad,
            is_parameter: false,
        }))
    }

    /// `BUILD`: sets an object's state, or fills a numpy array or dtype from theirs.
    pub(crate) fn build(&mut self, target: Id, state: Id) -> Step {
        match self.node(target) {
            Node::Object(_) => {
                self.arena.adopt(target, state)?;
                if let Node::Object(o) = self.arena.node_mut(target) {
                    o.state = Some(state);
                }
                Ok(())
            }
            Node::NdArray(_) => {
                let array = self.ndarray_from_state(state)?;
                *self.arena.node_mut(target) = Node::NdArray(array);
                Ok(())
            }
            Node::NumpyDtype(d) => {
                let mut d = d.clone();
                if let Node::Tuple(st) = self.node(state) {
                    if let Some(order) = st.get(1).and_then(|&o| self.arg_text(o)) {
                        match order.as_str() {
                            "<" | ">" | "|" | "=" => {
                                d.byte_order = order.chars().next().expect("one char")
                            }
                            _ => return Err(format!("numpy dtype byte order {order:?}").into()),
                        }
                    }
                }
                *self.arena.node_mut(target) = Node::NumpyDtype(d);
                Ok(())
            }
            // Attributes of an OrderedDict instance or a tensor's Python state: not data we use.
            Node::Dict(_) | Node::Tensor(_) => Ok(()),
            other => Err(format!("BUILD on {}", other.a_kind()).into()),
        }
    }

    /// An array from `ndarray.__setstate__`'s `(version, shape, dtype, is_fortran, raw)` (or the
    /// 4-tuple without version).
    fn ndarray_from_state(&self, state: Id) -> Step<NdArray<'a>> {
        let st = self.tuple_items(state, "the ndarray state")?;
        let st = match st.len() {
            5 => &st[1..],
            4 => &st[..],
            n => return Err(format!("ndarray state has {n} items, expected 4 or 5").into()),
        };
        let shape = self.arg_usizes(st[0], "ndarray shape")?;
        let dtype = match self.node(st[1]) {
            Node::NumpyDtype(d) => d.clone(),
            other => return Err(format!("ndarray dtype is {}", other.a_kind()).into()),
        };
        if !matches!(dtype.kind, 'b' | 'i' | 'u' | 'f' | 'c') {
            return Err(
                format!("ndarray of dtype {} (only numbers are read)", dtype.descr()).into(),
            );
        }
        let fortran_order = self.arg_int(st[2], "is_fortran")? != 0;
        let data: Cow<'a, [u8]> = match self.node(st[3]) {
            Node::Bytes(b) => b.clone(),
            Node::Str(s) => Cow::Owned(
                s.chars()
                    .map(|c| u8::try_from(c as u32))
                    .collect::<Result<Vec<u8>, _>>()
                    .map_err(|_| "ndarray data string is not latin1")?,
            ),
            other => return Err(format!("ndarray data is {}", other.a_kind()).into()),
        };
        let count = shape
            .iter()
            .try_fold(dtype.itemsize, |a, &d| a.checked_mul(d));
        if count != Some(data.len()) {
            return Err(format!(
                "ndarray of shape {shape:?} and dtype {} has {} data bytes",
                dtype.descr(),
                data.len()
            )
            .into());
        }
        Ok(NdArray {
            shape,
            dtype,
            fortran_order,
            data,
        })
    }
}
