//! The object model: every value a pickle creates is a [`Node`] in one arena, referred to by [`Id`].
//!
//! Python objects are shared by reference (the memo hands the same object out again, and containers
//! are filled after they are memoized), so the arena keeps identity: a dict fetched from the memo is
//! the dict later filled, and a storage shared by two tensors is one node. Nothing here recurses over
//! the data except [`Val::to_plain`], which is bounded by [`Limits`].

use crate::error::{PickleError, Result};
use crate::limits::Limits;
use crate::numpy::NdArray;
use crate::tensor::{Storage, Tensor, TensorRef};
use std::borrow::Cow;

/// Index of a node in a [`Pickle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(pub(crate) u32);

impl Id {
    /// The index into [`Pickle::nodes`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A reference to `module.name`, as `GLOBAL`/`STACK_GLOBAL` name it. Only looked at, never imported.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Global {
    /// The module path, e.g. `torch._utils`.
    pub module: String,
    /// The attribute, e.g. `_rebuild_tensor_v2`.
    pub name: String,
}

impl std::fmt::Display for Global {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.module, self.name)
    }
}

/// How an opaque [`Object`] was requested.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Construct {
    /// `REDUCE`: `callable(*args)`.
    Reduce,
    /// `NEWOBJ`/`NEWOBJ_EX`: `cls.__new__(cls, *args, **kwargs)`.
    NewObj,
    /// `INST`/`OBJ` (protocols 0 and 1): `cls(*args)`.
    Inst,
}

/// A call the reader does not perform: the callable (usually a [`Node::Global`]), its arguments and
/// what later opcodes added (`BUILD` state, `APPEND`ed items, `SETITEM`ed entries).
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    /// The callable or class.
    pub callable: Id,
    /// The positional arguments (a tuple node).
    pub args: Id,
    /// Keyword arguments of `NEWOBJ_EX`.
    pub kwargs: Option<Id>,
    /// How it was requested.
    pub construct: Construct,
    /// The state of the last `BUILD` on it.
    pub state: Option<Id>,
    /// Items `APPEND`ed to it (list subclasses).
    pub list_items: Vec<Id>,
    /// Entries `SETITEM`ed on it (dict subclasses such as `dnnlib.EasyDict`), in order.
    pub dict_items: Vec<(Id, Id)>,
}

/// An object of a `torch_utils.persistence` class (EDM, EDM2, ECT): its class name and `__dict__`,
/// as `_reconstruct_persistent_obj(meta)` would receive them. The module source in `meta` is only
/// data: it is never executed.
#[derive(Clone, Debug, PartialEq)]
pub struct PersistentObject {
    /// `meta['class_name']`, e.g. `EDMPrecond`.
    pub class_name: String,
    /// `meta['version']` when it is an int.
    pub version: Option<i64>,
    /// The whole `meta` dict (`type`, `version`, `module_src`, `class_name`, `state`).
    pub meta: Id,
    /// `meta['state']`: the instance `__dict__` (`_parameters`, `_modules`, `_init_kwargs`, ...).
    pub state: Id,
}

/// One value in the arena.
#[derive(Clone, Debug, PartialEq)]
pub enum Node<'a> {
    /// `None`.
    None,
    /// `True`/`False`.
    Bool(bool),
    /// An int that fits `i64`.
    Int(i64),
    /// A wider int: little-endian two's complement bytes, as `LONG1`/`LONG4` store them.
    BigInt(Vec<u8>),
    /// A float.
    Float(f64),
    /// A text string.
    Str(String),
    /// A byte string (Python 3 `bytes`, Python 2 `str`, `bytearray`), borrowed from the input
    /// where it can be.
    Bytes(Cow<'a, [u8]>),
    /// A list.
    List(Vec<Id>),
    /// A tuple.
    Tuple(Vec<Id>),
    /// A dict (also `collections.OrderedDict`), entries in insertion order. A key set twice appears
    /// twice; [`Val::get`] and [`Val::to_plain`] give the later value, as Python would.
    Dict(Vec<(Id, Id)>),
    /// A set or frozenset.
    Set(Vec<Id>),
    /// A global name that was never called.
    Global(Global),
    /// A call that was not made.
    Object(Object),
    /// A `torch_utils.persistence` object.
    Persistent(PersistentObject),
    /// A PyTorch tensor or parameter.
    Tensor(Tensor),
    /// A PyTorch storage (typed bytes).
    Storage(Storage<'a>),
    /// A numpy array.
    NdArray(NdArray<'a>),
    /// A numpy dtype.
    NumpyDtype(crate::numpy::NumpyDtype),
}

impl Node<'_> {
    /// A short name of the node's kind, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::None => "None",
            Node::Bool(_) => "bool",
            Node::Int(_) | Node::BigInt(_) => "int",
            Node::Float(_) => "float",
            Node::Str(_) => "str",
            Node::Bytes(_) => "bytes",
            Node::List(_) => "list",
            Node::Tuple(_) => "tuple",
            Node::Dict(_) => "dict",
            Node::Set(_) => "set",
            Node::Global(_) => "global",
            Node::Object(_) => "object",
            Node::Persistent(_) => "persistent object",
            Node::Tensor(_) => "tensor",
            Node::Storage(_) => "storage",
            Node::NdArray(_) => "ndarray",
            Node::NumpyDtype(_) => "numpy dtype",
        }
    }

    /// The kind with its article, for messages: `an int`, `a list`, `None`.
    pub fn a_kind(&self) -> String {
        match self.kind() {
            "None" => "None".into(),
            k if k.starts_with(['a', 'e', 'i', 'o', 'u']) => format!("an {k}"),
            k => format!("a {k}"),
        }
    }
}

/// The result of a load: the arena and its root (what `pickle.load` would return).
#[derive(Clone, Debug, PartialEq)]
pub struct Pickle<'a> {
    pub(crate) nodes: Vec<Node<'a>>,
    pub(crate) root: Id,
}

impl<'a> Pickle<'a> {
    /// The loaded value.
    pub fn root(&self) -> Val<'_> {
        self.val(self.root)
    }

    /// The value of a node id taken from this pickle.
    ///
    /// # Panics
    /// When `id` comes from another pickle and is out of range (a caller's programming error).
    pub fn val(&self, id: Id) -> Val<'_> {
        assert!(id.index() < self.nodes.len(), "node id from another pickle");
        Val { pickle: self, id }
    }

    /// Every node, in creation order.
    pub fn nodes(&self) -> &[Node<'a>] {
        &self.nodes
    }

    /// The globals the pickle names outside the constructors this crate understands (each once, in
    /// order of appearance): what Python's `pickle` would have imported and possibly called.
    pub fn foreign_globals(&self) -> Vec<String> {
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for node in &self.nodes {
            if let Node::Global(g) = node {
                let name = g.to_string();
                if !crate::known::is_known(g) && seen.insert(name.clone()) {
                    out.push(name);
                }
            }
        }
        out
    }
}

/// A node together with its pickle, for navigation: `root.get("ema")?.state()?.get("_modules")`.
#[derive(Clone, Copy, Debug)]
pub struct Val<'a> {
    pickle: &'a Pickle<'a>,
    id: Id,
}

impl<'a> Val<'a> {
    /// The node id.
    pub fn id(&self) -> Id {
        self.id
    }

    /// The node.
    pub fn node(&self) -> &'a Node<'a> {
        &self.pickle.nodes[self.id.index()]
    }

    /// A short name of the kind, for messages.
    pub fn kind(&self) -> &'static str {
        self.node().kind()
    }

    fn at(&self, id: Id) -> Val<'a> {
        Val {
            pickle: self.pickle,
            id,
        }
    }

    /// Whether the value is `None`.
    pub fn is_none(&self) -> bool {
        matches!(self.node(), Node::None)
    }

    /// A text string.
    pub fn as_str(&self) -> Option<&'a str> {
        match self.node() {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A byte string.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self.node() {
            Node::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// An int (a bool counts, as in Python).
    pub fn as_i64(&self) -> Option<i64> {
        match self.node() {
            Node::Int(v) => Some(*v),
            Node::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    /// A float or int as `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match self.node() {
            Node::Float(v) => Some(*v),
            Node::Int(v) => Some(*v as f64),
            _ => None,
        }
    }

    /// A bool.
    pub fn as_bool(&self) -> Option<bool> {
        match self.node() {
            Node::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// A global name.
    pub fn as_global(&self) -> Option<&'a Global> {
        match self.node() {
            Node::Global(g) => Some(g),
            _ => None,
        }
    }

    /// An opaque object.
    pub fn as_object(&self) -> Option<&'a Object> {
        match self.node() {
            Node::Object(o) => Some(o),
            _ => None,
        }
    }

    /// A `torch_utils.persistence` object.
    pub fn as_persistent(&self) -> Option<&'a PersistentObject> {
        match self.node() {
            Node::Persistent(p) => Some(p),
            _ => None,
        }
    }

    /// A numpy array.
    pub fn as_ndarray(&self) -> Option<&'a NdArray<'a>> {
        match self.node() {
            Node::NdArray(a) => Some(a),
            _ => None,
        }
    }

    /// A tensor with its storage.
    pub fn as_tensor(&self) -> Option<TensorRef<'a>> {
        match self.node() {
            Node::Tensor(t) => match &self.pickle.nodes[t.storage.index()] {
                Node::Storage(s) => Some(TensorRef {
                    tensor: t,
                    storage: s,
                }),
                _ => None,
            },
            _ => None,
        }
    }

    /// The class of an object: the global it was built from (`torch.nn.modules.container.ModuleDict`),
    /// or for a persistent object `("<persistent>", class_name)`.
    pub fn class(&self) -> Option<(&'a str, &'a str)> {
        match self.node() {
            Node::Object(o) => self
                .at(o.callable)
                .as_global()
                .map(|g| (g.module.as_str(), g.name.as_str())),
            Node::Persistent(p) => Some(("<persistent>", p.class_name.as_str())),
            _ => None,
        }
    }

    /// Items of a list, tuple or set, or the items `APPEND`ed to an object.
    pub fn items(&self) -> Option<impl ExactSizeIterator<Item = Val<'a>> + 'a> {
        let ids: &'a [Id] = match self.node() {
            Node::List(v) | Node::Tuple(v) | Node::Set(v) => v,
            Node::Object(o) => &o.list_items,
            _ => return None,
        };
        let pickle = self.pickle;
        Some(ids.iter().map(move |&id| Val { pickle, id }))
    }

    /// Entries of a dict, or the entries `SETITEM`ed on an object (dict subclasses), in order.
    pub fn entries(&self) -> Option<impl ExactSizeIterator<Item = (Val<'a>, Val<'a>)> + 'a> {
        let pairs: &'a [(Id, Id)] = match self.node() {
            Node::Dict(v) => v,
            Node::Object(o) => &o.dict_items,
            _ => return None,
        };
        let pickle = self.pickle;
        Some(
            pairs
                .iter()
                .map(move |&(k, v)| (Val { pickle, id: k }, Val { pickle, id: v })),
        )
    }

    /// The value of a text or byte-string key of a dict (the last one set).
    pub fn get(&self, key: &str) -> Option<Val<'a>> {
        let pairs: &[(Id, Id)] = match self.node() {
            Node::Dict(v) => v,
            Node::Object(o) => &o.dict_items,
            _ => return None,
        };
        pairs.iter().rev().find_map(|&(k, v)| {
            let hit = match &self.pickle.nodes[k.index()] {
                Node::Str(s) => s == key,
                Node::Bytes(b) => &b[..] == key.as_bytes(),
                _ => false,
            };
            hit.then(|| self.at(v))
        })
    }

    /// The keys of a dict that are text or byte strings, for messages.
    pub fn str_keys(&self) -> Vec<String> {
        self.entries()
            .map(|it| {
                it.filter_map(|(k, _)| match k.node() {
                    Node::Str(s) => Some(s.clone()),
                    Node::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
                    _ => None,
                })
                .collect()
            })
            .unwrap_or_default()
    }

    /// The state of an object (`BUILD`) or a persistent object (`meta['state']`).
    pub fn state(&self) -> Option<Val<'a>> {
        match self.node() {
            Node::Object(o) => o.state.map(|s| self.at(s)),
            Node::Persistent(p) => Some(self.at(p.state)),
            _ => None,
        }
    }

    /// The positional arguments of an object.
    pub fn args(&self) -> Option<Val<'a>> {
        self.as_object().map(|o| self.at(o.args))
    }

    /// An owned tree of the value for plain data (numbers, strings, containers); other values become
    /// [`Plain::Other`] with a description. Shared sub-objects are copied, so the walk is bounded by
    /// `limits`: depth `max_depth`, `max_nodes` values and `max_bytes` bytes in all (a structure
    /// that is small as a graph but huge as a tree, or a cycle, is an error, not a hang).
    pub fn to_plain(&self, limits: &Limits) -> Result<Plain> {
        let mut budget = PlainBudget {
            nodes: limits.max_nodes,
            bytes: limits.max_bytes,
            max_depth: limits.max_depth,
        };
        plain(*self, 0, &mut budget)
    }
}

/// An owned value tree (see [`Val::to_plain`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Plain {
    /// `None`.
    None,
    /// A bool.
    Bool(bool),
    /// An int that fits `i64`.
    Int(i64),
    /// A wider int (little-endian two's complement bytes).
    BigInt(Vec<u8>),
    /// A float.
    Float(f64),
    /// A text string.
    Str(String),
    /// A byte string.
    Bytes(Vec<u8>),
    /// A list (also the items of a list subclass).
    List(Vec<Plain>),
    /// A tuple.
    Tuple(Vec<Plain>),
    /// A dict (also the entries of a dict subclass), each key once at its first position with its
    /// last value.
    Dict(Vec<(Plain, Plain)>),
    /// A set.
    Set(Vec<Plain>),
    /// Anything else, described: `global builtins.getattr`, `tensor float32 [3, 4]`, ...
    Other(String),
}

struct PlainBudget {
    nodes: usize,
    bytes: u64,
    max_depth: usize,
}

fn plain_err(reason: String) -> PickleError {
    PickleError::Malformed {
        offset: 0,
        opcode: "to_plain".into(),
        reason,
    }
}

fn plain(v: Val<'_>, depth: usize, b: &mut PlainBudget) -> Result<Plain> {
    if depth > b.max_depth {
        return Err(plain_err(format!(
            "values nested deeper than {} (or a cycle)",
            b.max_depth
        )));
    }
    if b.nodes == 0 {
        return Err(plain_err(
            "the value expands to more nodes than max_nodes (shared sub-objects are copied)".into(),
        ));
    }
    b.nodes -= 1;
    let mut charge = |n: usize| -> Result<()> {
        b.bytes = b
            .bytes
            .checked_sub(n as u64)
            .ok_or_else(|| plain_err("the value expands to more bytes than max_bytes".into()))?;
        Ok(())
    };
    let list = |items: &mut dyn Iterator<Item = Val<'_>>, b: &mut PlainBudget| {
        items
            .map(|x| plain(x, depth + 1, b))
            .collect::<Result<Vec<_>>>()
    };
    Ok(match v.node() {
        Node::None => Plain::None,
        Node::Bool(x) => Plain::Bool(*x),
        Node::Int(x) => Plain::Int(*x),
        Node::BigInt(x) => {
            charge(x.len())?;
            Plain::BigInt(x.clone())
        }
        Node::Float(x) => Plain::Float(*x),
        Node::Str(s) => {
            charge(s.len())?;
            Plain::Str(s.clone())
        }
        Node::Bytes(x) => {
            charge(x.len())?;
            Plain::Bytes(x.to_vec())
        }
        Node::List(_) | Node::Set(_) | Node::Tuple(_) => {
            let items = list(&mut v.items().expect("sequence"), b)?;
            match v.node() {
                Node::List(_) => Plain::List(items),
                Node::Tuple(_) => Plain::Tuple(items),
                _ => Plain::Set(items),
            }
        }
        Node::Object(o) if !o.dict_items.is_empty() || !o.list_items.is_empty() => {
            if o.dict_items.is_empty() {
                Plain::List(list(&mut v.items().expect("object items"), b)?)
            } else {
                plain_dict(v, depth, b)?
            }
        }
        Node::Dict(_) => plain_dict(v, depth, b)?,
        Node::Global(g) => Plain::Other(format!("global {g}")),
        Node::Object(o) => Plain::Other(match v.at(o.callable).as_global() {
            Some(g) => format!("object {g}(...)"),
            None => "object".into(),
        }),
        Node::Persistent(p) => Plain::Other(format!("persistent object {}", p.class_name)),
        Node::Tensor(t) => Plain::Other(format!("tensor {:?}", t.shape)),
        Node::Storage(s) => Plain::Other(format!("storage {}", s.dtype.name())),
        Node::NdArray(a) => Plain::Other(format!("ndarray {} {:?}", a.dtype.descr(), a.shape)),
        Node::NumpyDtype(d) => Plain::Other(format!("numpy dtype {}", d.descr())),
    })
}

fn plain_dict(v: Val<'_>, depth: usize, b: &mut PlainBudget) -> Result<Plain> {
    let mut out: Vec<(Plain, Plain)> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (k, x) in v.entries().expect("dict") {
        let key = plain(k, depth + 1, b)?;
        let value = plain(x, depth + 1, b)?;
        let slot = match &key {
            Plain::Str(s) => index.get(s).copied(),
            _ => None,
        };
        match slot {
            Some(i) => out[i].1 = value,
            None => {
                if let Plain::Str(s) = &key {
                    index.insert(s.clone(), out.len());
                }
                out.push((key, value));
            }
        }
    }
    Ok(Plain::Dict(out))
}

impl Node<'_> {
    /// The same node owning its bytes.
    pub fn into_owned(self) -> Node<'static> {
        match self {
            Node::None => Node::None,
            Node::Bool(b) => Node::Bool(b),
            Node::Int(v) => Node::Int(v),
            Node::BigInt(v) => Node::BigInt(v),
            Node::Float(v) => Node::Float(v),
            Node::Str(s) => Node::Str(s),
            Node::Bytes(b) => Node::Bytes(Cow::Owned(b.into_owned())),
            Node::List(v) => Node::List(v),
            Node::Tuple(v) => Node::Tuple(v),
            Node::Dict(v) => Node::Dict(v),
            Node::Set(v) => Node::Set(v),
            Node::Global(g) => Node::Global(g),
            Node::Object(o) => Node::Object(o),
            Node::Persistent(p) => Node::Persistent(p),
            Node::Tensor(t) => Node::Tensor(t),
            Node::Storage(s) => Node::Storage(s.into_owned()),
            Node::NdArray(a) => Node::NdArray(NdArray {
                data: Cow::Owned(a.data.into_owned()),
                ..a
            }),
            Node::NumpyDtype(d) => Node::NumpyDtype(d),
        }
    }
}

impl Pickle<'_> {
    /// The same pickle owning all its bytes (no longer borrowing the input).
    pub fn into_owned(self) -> Pickle<'static> {
        Pickle {
            nodes: self.nodes.into_iter().map(Node::into_owned).collect(),
            root: self.root,
        }
    }
}
