//! The pickle virtual machine: reads opcodes (protocols 0 to 5) and builds [`Node`]s in an arena.
//! It imports nothing and calls nothing: `GLOBAL` makes a name, `REDUCE`/`NEWOBJ`/`INST` make an
//! opaque [`crate::Object`] unless the callable is one of the constructors in [`crate::known`],
//! which build data directly. Every allocation is counted against [`crate::Limits`].

use std::borrow::Cow;
use std::collections::HashMap;

use crate::error::{PickleError, Result};
use crate::limits::Budget;
use crate::value::{Construct, Global, Id, Node, Object};

/// Why an opcode failed, before the machine adds the offset and opcode name.
pub(crate) enum Fail {
    /// Malformed input.
    Msg(String),
    /// A limit was reached.
    Limit(&'static str, u64),
    /// An error inside a nested archive.
    Nested(PickleError),
}

impl From<String> for Fail {
    fn from(s: String) -> Self {
        Fail::Msg(s)
    }
}

impl From<&str> for Fail {
    fn from(s: &str) -> Self {
        Fail::Msg(s.to_string())
    }
}

pub(crate) type Step<T = ()> = std::result::Result<T, Fail>;

/// Resolves `PERSID`/`BINPERSID` ids (the storages of a `torch.save` archive).
pub(crate) trait PersistentLoad<'a> {
    /// The node the persistent id `pid` stands for.
    fn load(&mut self, arena: &mut Arena<'a, '_>, pid: Id) -> Step<Id>;
}

/// The arena being built, with the nesting depth of each node and the shared budget.
pub(crate) struct Arena<'a, 'b> {
    pub(crate) nodes: Vec<Node<'a>>,
    depth: Vec<u32>,
    pub(crate) budget: &'b mut Budget,
}

/// Interned singletons (every arena starts with them).
pub(crate) const NONE: Id = Id(0);
pub(crate) const FALSE: Id = Id(1);
pub(crate) const TRUE: Id = Id(2);

impl<'a, 'b> Arena<'a, 'b> {
    pub(crate) fn new(budget: &'b mut Budget) -> Step<Self> {
        let mut a = Arena {
            nodes: Vec::new(),
            depth: Vec::new(),
            budget,
        };
        a.push(Node::None)?;
        a.push(Node::Bool(false))?;
        a.push(Node::Bool(true))?;
        Ok(a)
    }

    pub(crate) fn node(&self, id: Id) -> &Node<'a> {
        &self.nodes[id.index()]
    }

    pub(crate) fn node_mut(&mut self, id: Id) -> &mut Node<'a> {
        &mut self.nodes[id.index()]
    }

    /// Adds a node, counting it and its bytes; its depth is one more than its deepest child's.
    pub(crate) fn push(&mut self, node: Node<'a>) -> Step<Id> {
        if self.budget.nodes >= self.budget.limits.max_nodes {
            return Err(Fail::Limit(
                "number of objects",
                self.budget.limits.max_nodes as u64,
            ));
        }
        let bytes = match &node {
            Node::Str(s) => s.len(),
            Node::Bytes(b) => b.len(),
            Node::BigInt(b) => b.len(),
            Node::Storage(s) => s.data.len(),
            Node::NdArray(a) => a.data.len(),
            _ => 0,
        };
        self.charge(bytes)?;
        let len = match &node {
            Node::List(v) | Node::Tuple(v) | Node::Set(v) => v.len(),
            Node::Dict(v) => v.len(),
            _ => 0,
        };
        self.check_len(len)?;
        let depth = 1 + children(&node)
            .map(|c| self.depth[c.index()])
            .max()
            .unwrap_or(0);
        self.check_depth(depth)?;
        let id = Id(u32::try_from(self.nodes.len()).map_err(|_| "arena index overflow")?);
        self.nodes.push(node);
        self.depth.push(depth);
        self.budget.nodes += 1;
        Ok(id)
    }

    pub(crate) fn charge(&mut self, bytes: usize) -> Step {
        let limit = self.budget.limits.max_bytes;
        self.budget
            .take_bytes(bytes as u64)
            .map_err(|_| Fail::Limit("bytes materialised", limit))
    }

    fn check_len(&self, len: usize) -> Step {
        if len > self.budget.limits.max_container_len {
            return Err(Fail::Limit(
                "container length",
                self.budget.limits.max_container_len as u64,
            ));
        }
        Ok(())
    }

    fn check_depth(&self, depth: u32) -> Step {
        if depth as usize > self.budget.limits.max_depth {
            return Err(Fail::Limit(
                "nesting depth",
                self.budget.limits.max_depth as u64,
            ));
        }
        Ok(())
    }

    /// Records that `parent` now holds `child` (after a mutation such as `APPEND`).
    pub(crate) fn adopt(&mut self, parent: Id, child: Id) -> Step {
        let d = self.depth[child.index()] + 1;
        if d > self.depth[parent.index()] {
            self.check_depth(d)?;
            self.depth[parent.index()] = d;
        }
        Ok(())
    }

    /// Checks the length of a container after it grew to `len`.
    pub(crate) fn grew(&self, len: usize) -> Step {
        self.check_len(len)
    }
}

/// The direct children of a node (for depth accounting).
fn children<'n>(node: &'n Node<'_>) -> Box<dyn Iterator<Item = Id> + 'n> {
    match node {
        Node::List(v) | Node::Tuple(v) | Node::Set(v) => Box::new(v.iter().copied()),
        Node::Dict(v) => Box::new(v.iter().flat_map(|&(k, x)| [k, x])),
        Node::Object(o) => Box::new(
            [Some(o.callable), Some(o.args), o.kwargs, o.state]
                .into_iter()
                .flatten()
                .chain(o.list_items.iter().copied())
                .chain(o.dict_items.iter().flat_map(|&(k, x)| [k, x])),
        ),
        Node::Persistent(p) => Box::new([p.meta, p.state].into_iter()),
        Node::Tensor(t) => Box::new(std::iter::once(t.storage)),
        _ => Box::new(std::iter::empty()),
    }
}

/// The container mutations (see [`Machine::fill`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fill {
    Append,
    SetItems,
    AddItems,
}

/// One run of the machine over one pickle.
pub(crate) struct Machine<'a, 'b> {
    data: &'a [u8],
    pos: usize,
    /// Offset and byte of the opcode being executed, for errors.
    op_at: usize,
    op: Option<u8>,
    stack: Vec<Id>,
    /// Stack lengths at each `MARK` (CPython's metastack).
    marks: Vec<usize>,
    memo: HashMap<u32, Id>,
    pub(crate) arena: Arena<'a, 'b>,
    persistent: Option<&'b mut (dyn PersistentLoad<'a> + 'b)>,
}

/// A finished run: the arena, the value `STOP` returned and where the pickle ended.
pub(crate) struct Output<'a> {
    pub(crate) nodes: Vec<Node<'a>>,
    pub(crate) root: Id,
    pub(crate) end: usize,
}

/// Runs one pickle from the start of `data`; `base` is added to the offsets in errors (where `data`
/// starts in the file).
pub(crate) fn run<'a, 'b>(
    data: &'a [u8],
    base: usize,
    budget: &'b mut Budget,
    persistent: Option<&'b mut (dyn PersistentLoad<'a> + 'b)>,
) -> Result<Output<'a>> {
    let arena = Arena::new(budget).map_err(|f| to_error(f, base, None))?;
    let mut m = Machine {
        data,
        pos: 0,
        op_at: 0,
        op: None,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        arena,
        persistent,
    };
    match m.execute() {
        Ok(root) => Ok(Output {
            nodes: m.arena.nodes,
            root,
            end: m.pos,
        }),
        Err(f) => Err(to_error(f, base + m.op_at, m.op)),
    }
}

fn to_error(f: Fail, offset: usize, op: Option<u8>) -> PickleError {
    let opcode = op.map_or_else(|| "end of data".to_string(), opcode_label);
    match f {
        Fail::Msg(reason) => PickleError::Malformed {
            offset,
            opcode,
            reason,
        },
        Fail::Limit(what, limit) => PickleError::Limit {
            offset,
            opcode,
            what,
            limit,
        },
        Fail::Nested(source) => PickleError::Nested {
            offset,
            source: Box::new(source),
        },
    }
}

/// `NAME (0xNN)` of an opcode, or `unknown opcode 0xNN`.
pub(crate) fn opcode_label(op: u8) -> String {
    match opcode_name(op) {
        Some(name) => format!("{name} (0x{op:02x})"),
        None => format!("unknown opcode 0x{op:02x}"),
    }
}

/// The names of pickle's opcodes (`pickletools`).
pub(crate) fn opcode_name(op: u8) -> Option<&'static str> {
    Some(match op {
        b'(' => "MARK",
        b'.' => "STOP",
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        b'F' => "FLOAT",
        b'I' => "INT",
        b'J' => "BININT",
        b'K' => "BININT1",
        b'L' => "LONG",
        b'M' => "BININT2",
        b'N' => "NONE",
        b'P' => "PERSID",
        b'Q' => "BINPERSID",
        b'R' => "REDUCE",
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'V' => "UNICODE",
        b'X' => "BINUNICODE",
        b'a' => "APPEND",
        b'b' => "BUILD",
        b'c' => "GLOBAL",
        b'd' => "DICT",
        b'}' => "EMPTY_DICT",
        b'e' => "APPENDS",
        b'g' => "GET",
        b'h' => "BINGET",
        b'i' => "INST",
        b'j' => "LONG_BINGET",
        b'l' => "LIST",
        b']' => "EMPTY_LIST",
        b'o' => "OBJ",
        b'p' => "PUT",
        b'q' => "BINPUT",
        b'r' => "LONG_BINPUT",
        b's' => "SETITEM",
        b't' => "TUPLE",
        b')' => "EMPTY_TUPLE",
        b'u' => "SETITEMS",
        b'G' => "BINFLOAT",
        0x80 => "PROTO",
        0x81 => "NEWOBJ",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x85 => "TUPLE1",
        0x86 => "TUPLE2",
        0x87 => "TUPLE3",
        0x88 => "NEWTRUE",
        0x89 => "NEWFALSE",
        0x8a => "LONG1",
        0x8b => "LONG4",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        0x8c => "SHORT_BINUNICODE",
        0x8d => "BINUNICODE8",
        0x8e => "BINBYTES8",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x93 => "STACK_GLOBAL",
        0x94 => "MEMOIZE",
        0x95 => "FRAME",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => return None,
    })
}

impl<'a, 'b> Machine<'a, 'b> {
    // ---- reading operands ----

    fn take(&mut self, n: usize) -> Step<&'a [u8]> {
        let left = self.data.len() - self.pos;
        if n > left {
            return Err(format!("truncated: {n} bytes needed, {left} left").into());
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn take_array<const N: usize>(&mut self) -> Step<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn u8(&mut self) -> Step<u8> {
        Ok(self.take(1)?[0])
    }

    fn len_u32(&mut self) -> Step<usize> {
        Ok(u32::from_le_bytes(self.take_array()?) as usize)
    }

    fn len_i32(&mut self) -> Step<usize> {
        let n = i32::from_le_bytes(self.take_array()?);
        usize::try_from(n).map_err(|_| format!("negative length {n}").into())
    }

    fn len_u64(&mut self) -> Step<usize> {
        let n = u64::from_le_bytes(self.take_array()?);
        usize::try_from(n).map_err(|_| format!("length {n} does not fit in memory").into())
    }

    /// A `\n`-terminated operand of the text opcodes, without the newline.
    fn line(&mut self) -> Step<&'a [u8]> {
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("truncated: no newline ends the text operand")?;
        self.pos += end + 1;
        Ok(&rest[..end])
    }

    fn line_str(&mut self) -> Step<&'a str> {
        let l = self.line()?;
        std::str::from_utf8(l).map_err(|_| "text operand is not UTF-8".into())
    }

    // ---- the stack ----

    fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn push(&mut self, id: Id) {
        self.stack.push(id);
    }

    fn push_node(&mut self, node: Node<'a>) -> Step {
        let id = self.arena.push(node)?;
        self.push(id);
        Ok(())
    }

    fn pop(&mut self) -> Step<Id> {
        if self.stack.len() <= self.fence() {
            return Err("stack underflow".into());
        }
        Ok(self.stack.pop().expect("above the fence"))
    }

    fn top(&self) -> Step<Id> {
        if self.stack.len() <= self.fence() {
            return Err("stack underflow".into());
        }
        Ok(*self.stack.last().expect("above the fence"))
    }

    fn pop_mark(&mut self) -> Step<Vec<Id>> {
        let at = self.marks.pop().ok_or("no MARK on the stack")?;
        Ok(self.stack.split_off(at))
    }

    // ---- the memo ----

    /// The key operand of a memo opcode: one byte (`BINGET`, `BINPUT`), four (`LONG_BINGET`,
    /// `LONG_BINPUT`) or a decimal line (`GET`, `PUT`).
    fn memo_key(&mut self, op: u8) -> Step<u32> {
        match op {
            b'h' | b'q' => Ok(self.u8()? as u32),
            b'j' | b'r' => Ok(u32::from_le_bytes(self.take_array()?)),
            _ => parse_memo_key(self.line_str()?),
        }
    }

    fn memo_get(&mut self, key: u32) -> Step {
        let id = *self
            .memo
            .get(&key)
            .ok_or_else(|| format!("memo key {key} was never set"))?;
        self.push(id);
        Ok(())
    }

    fn memo_put(&mut self, key: u32) -> Step {
        let id = self.top()?;
        if !self.memo.contains_key(&key) && self.memo.len() >= self.arena.budget.limits.max_memo {
            return Err(Fail::Limit(
                "memo entries",
                self.arena.budget.limits.max_memo as u64,
            ));
        }
        self.memo.insert(key, id);
        Ok(())
    }

    // ---- helpers for the known constructors ----

    pub(crate) fn node(&self, id: Id) -> &Node<'a> {
        self.arena.node(id)
    }

    pub(crate) fn tuple_items(&self, id: Id, what: &str) -> Step<Vec<Id>> {
        match self.node(id) {
            Node::Tuple(v) => Ok(v.clone()),
            other => Err(format!("{what} is {}, not a tuple", other.a_kind()).into()),
        }
    }

    pub(crate) fn persistent(&mut self, pid: Id) -> Step<Id> {
        match self.persistent.as_deref_mut() {
            Some(p) => p.load(&mut self.arena, pid),
            None => Err(
                "a persistent id outside a torch.save archive (no persistent_load applies)".into(),
            ),
        }
    }

    // ---- mutation of containers ----

    /// `APPEND(S)` to a list (or list subclass), `SETITEM(S)` on a dict (or dict subclass), `ADDITEMS`
    /// to a set: `items` go into `target`, which stays on the stack.
    fn fill(&mut self, target: Id, items: Vec<Id>, how: Fill) -> Step {
        if how == Fill::SetItems && items.len() % 2 != 0 {
            return Err(format!("{} items for key-value pairs", items.len()).into());
        }
        for &it in &items {
            self.arena.adopt(target, it)?;
        }
        let pairs = |items: Vec<Id>| {
            items
                .chunks_exact(2)
                .map(|p| (p[0], p[1]))
                .collect::<Vec<_>>()
        };
        let len = match (how, self.arena.node_mut(target)) {
            (Fill::Append, Node::List(v)) | (Fill::AddItems, Node::Set(v)) => {
                v.extend(items);
                v.len()
            }
            (Fill::Append, Node::Object(o)) => {
                o.list_items.extend(items);
                o.list_items.len()
            }
            (Fill::SetItems, Node::Dict(v)) => {
                v.extend(pairs(items));
                v.len()
            }
            (Fill::SetItems, Node::Object(o)) => {
                o.dict_items.extend(pairs(items));
                o.dict_items.len()
            }
            (how, other) => {
                let verb = match how {
                    Fill::Append => "APPEND to",
                    Fill::SetItems => "SETITEM on",
                    Fill::AddItems => "ADDITEMS to",
                };
                return Err(format!("{verb} {}", other.a_kind()).into());
            }
        };
        self.arena.grew(len)
    }

    /// `callable(*args)`: a known constructor builds data, anything else becomes an opaque object.
    fn call(&mut self, callable: Id, args: Id, kwargs: Option<Id>, how: Construct) -> Step {
        let arg_items = self.tuple_items(args, "the argument tuple")?;
        if let Node::Global(g) = self.node(callable) {
            let g = g.clone();
            if let Some(id) = self.call_known(&g, &arg_items, how)? {
                self.push(id);
                return Ok(());
            }
        }
        self.push_node(Node::Object(Object {
            callable,
            args,
            kwargs,
            construct: how,
            state: None,
            list_items: Vec::new(),
            dict_items: Vec::new(),
        }))
    }

    fn int(&mut self, v: i64) -> Step {
        self.push_node(Node::Int(v))
    }

    // ---- the loop ----

    fn execute(&mut self) -> Step<Id> {
        loop {
            self.op_at = self.pos;
            self.op = None;
            let op = self.u8()?;
            self.op = Some(op);
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return Err(format!(
                            "unsupported pickle protocol {proto} (this reader knows 0 to 5)"
                        )
                        .into());
                    }
                }
                0x95 => {
                    let n = self.len_u64()?;
                    if n > self.data.len() - self.pos {
                        return Err(format!(
                            "truncated: frame of {n} bytes, {} left",
                            self.data.len() - self.pos
                        )
                        .into());
                    }
                }
                b'.' => return self.pop(),
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    if self.stack.len() > self.fence() {
                        self.stack.pop();
                    } else {
                        self.pop_mark()?;
                    }
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let top = self.top()?;
                    self.push(top);
                }
                // Constants and numbers.
                b'N' => self.push(NONE),
                0x88 => self.push(TRUE),
                0x89 => self.push(FALSE),
                b'K' => {
                    let v = self.u8()?;
                    self.int(v as i64)?;
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.take_array()?);
                    self.int(v as i64)?;
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.take_array()?);
                    self.int(v as i64)?;
                }
                b'I' => {
                    let l = self.line_str()?;
                    match l {
                        "00" => self.push(FALSE),
                        "01" => self.push(TRUE),
                        _ => {
                            let v = parse_int(l)?;
                            self.int(v)?;
                        }
                    }
                }
                b'L' => {
                    let l = self.line_str()?;
                    let v = parse_int(l.strip_suffix('L').unwrap_or(l))?;
                    self.int(v)?;
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    self.push_long(b)?;
                }
                0x8b => {
                    let n = self.len_i32()?;
                    let b = self.take(n)?;
                    self.push_long(b)?;
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take_array()?);
                    self.push_node(Node::Float(v))?;
                }
                b'F' => {
                    let l = self.line_str()?;
                    let v: f64 = l
                        .trim()
                        .parse()
                        .map_err(|_| format!("{l:?} is not a float"))?;
                    self.push_node(Node::Float(v))?;
                }
                // Strings.
                b'T' => {
                    let n = self.len_i32()?;
                    self.push_bytes(n)?;
                }
                b'U' | b'C' => {
                    let n = self.u8()? as usize;
                    self.push_bytes(n)?;
                }
                b'B' => {
                    let n = self.len_u32()?;
                    self.push_bytes(n)?;
                }
                0x8e | 0x96 => {
                    let n = self.len_u64()?;
                    self.push_bytes(n)?;
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    self.push_text(n)?;
                }
                b'X' => {
                    let n = self.len_u32()?;
                    self.push_text(n)?;
                }
                0x8d => {
                    let n = self.len_u64()?;
                    self.push_text(n)?;
                }
                b'S' => {
                    let l = self.line()?;
                    let b = unquote_py_string(l)?;
                    self.push_node(Node::Bytes(Cow::Owned(b)))?;
                }
                b'V' => {
                    let l = self.line()?;
                    let s = raw_unicode_escape(l)?;
                    self.push_node(Node::Str(s))?;
                }
                // Containers.
                b'}' => self.push_node(Node::Dict(Vec::new()))?,
                b']' => self.push_node(Node::List(Vec::new()))?,
                b')' => self.push_node(Node::Tuple(Vec::new()))?,
                0x8f => self.push_node(Node::Set(Vec::new()))?,
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push_node(Node::List(items))?;
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.push_node(Node::Tuple(items))?;
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.push_node(Node::Set(items))?;
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return Err("DICT with an odd number of items".into());
                    }
                    let pairs = items.chunks_exact(2).map(|p| (p[0], p[1])).collect();
                    self.push_node(Node::Dict(pairs))?;
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push_node(Node::Tuple(items))?;
                }
                b'a' => {
                    let v = self.pop()?;
                    let target = self.top()?;
                    self.fill(target, vec![v], Fill::Append)?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let target = self.top()?;
                    self.fill(target, items, Fill::Append)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let target = self.top()?;
                    self.fill(target, vec![k, v], Fill::SetItems)?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let target = self.top()?;
                    self.fill(target, items, Fill::SetItems)?;
                }
                0x90 => {
                    let items = self.pop_mark()?;
                    let target = self.top()?;
                    self.fill(target, items, Fill::AddItems)?;
                }
                // Memo.
                b'h' | b'j' | b'g' => {
                    let k = self.memo_key(op)?;
                    self.memo_get(k)?;
                }
                b'q' | b'r' | b'p' => {
                    let k = self.memo_key(op)?;
                    self.memo_put(k)?;
                }
                0x94 => {
                    let k = u32::try_from(self.memo.len()).map_err(|_| "memo overflow")?;
                    self.memo_put(k)?;
                }
                // Names and calls: nothing is imported or called.
                b'c' => {
                    let module = self.line_str()?.to_string();
                    let name = self.line_str()?.to_string();
                    self.push_node(Node::Global(Global { module, name }))?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (self.node(module), self.node(name)) {
                        (Node::Str(m), Node::Str(n)) => {
                            let g = Global {
                                module: m.clone(),
                                name: n.clone(),
                            };
                            self.push_node(Node::Global(g))?;
                        }
                        (m, n) => {
                            return Err(format!(
                                "STACK_GLOBAL of {} and {}, not two strings",
                                m.a_kind(),
                                n.a_kind()
                            )
                            .into())
                        }
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.call(callable, args, None, Construct::Reduce)?;
                }
                0x81 => {
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    self.call(cls, args, None, Construct::NewObj)?;
                }
                0x92 => {
                    let kwargs = self.pop()?;
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    self.call(cls, args, Some(kwargs), Construct::NewObj)?;
                }
                b'i' => {
                    let module = self.line_str()?.to_string();
                    let name = self.line_str()?.to_string();
                    let items = self.pop_mark()?;
                    let cls = self.arena.push(Node::Global(Global { module, name }))?;
                    let args = self.arena.push(Node::Tuple(items))?;
                    self.call(cls, args, None, Construct::Inst)?;
                }
                b'o' => {
                    let mut items = self.pop_mark()?;
                    if items.is_empty() {
                        return Err("OBJ without a class".into());
                    }
                    let cls = items.remove(0);
                    let args = self.arena.push(Node::Tuple(items))?;
                    self.call(cls, args, None, Construct::Inst)?;
                }
                b'b' => {
                    let state = self.pop()?;
                    let target = self.top()?;
                    self.build(target, state)?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let id = self.persistent(pid)?;
                    self.push(id);
                }
                b'P' => {
                    let l = self.line_str()?.to_string();
                    let pid = self.arena.push(Node::Str(l))?;
                    let id = self.persistent(pid)?;
                    self.push(id);
                }
                0x82..=0x84 => {
                    return Err(
                        "extension registry codes (copyreg) are not supported: nothing is looked up"
                            .into(),
                    )
                }
                0x97 => {
                    return Err(
                        "out-of-band buffers (protocol 5) are not supported: the file must hold its data"
                            .into(),
                    )
                }
                0x98 => {
                    self.top()?;
                }
                _ => return Err("not a pickle opcode".into()),
            }
        }
    }

    fn push_bytes(&mut self, n: usize) -> Step {
        let b = self.take(n)?;
        self.push_node(Node::Bytes(Cow::Borrowed(b)))
    }

    fn push_text(&mut self, n: usize) -> Step {
        let b = self.take(n)?;
        let s = std::str::from_utf8(b).map_err(|_| "string is not UTF-8")?;
        self.push_node(Node::Str(s.to_string()))
    }

    /// `LONG1`/`LONG4`: little-endian two's complement of any width.
    fn push_long(&mut self, b: &[u8]) -> Step {
        // Drop sign-extension bytes that do not change the value, then fit i64 if possible.
        let mut n = b.len();
        while n > 1 {
            let (top, next) = (b[n - 1], b[n - 2]);
            if (top == 0 && next & 0x80 == 0) || (top == 0xff && next & 0x80 != 0) {
                n -= 1;
            } else {
                break;
            }
        }
        let b = &b[..n];
        if b.len() <= 8 {
            let mut v: i64 = 0;
            for (i, &byte) in b.iter().enumerate() {
                v |= (byte as i64) << (8 * i);
            }
            if !b.is_empty() && b.len() < 8 && b[b.len() - 1] & 0x80 != 0 {
                v -= 1i64 << (8 * b.len());
            }
            self.int(v)
        } else {
            self.push_node(Node::BigInt(b.to_vec()))
        }
    }
}

fn parse_int(s: &str) -> Step<i64> {
    s.trim()
        .parse()
        .map_err(|_| format!("{s:?} is not an integer that fits 64 bits").into())
}

fn parse_memo_key(s: &str) -> Step<u32> {
    s.trim()
        .parse()
        .map_err(|_| format!("memo key {s:?} is not a small non-negative integer").into())
}

/// The bytes of a protocol-0 `STRING` operand: a Python 2 `repr` of a byte string, quoted with `'`
/// or `"`, with backslash escapes.
fn unquote_py_string(l: &[u8]) -> Step<Vec<u8>> {
    let inner = match l {
        [q, inner @ .., q2] if q == q2 && (*q == b'\'' || *q == b'"') => inner,
        _ => return Err("STRING operand is not quoted".into()),
    };
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        let c = inner[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let e = *inner.get(i).ok_or("STRING ends in a backslash")?;
        i += 1;
        match e {
            b'\\' | b'\'' | b'"' => out.push(e),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'v' => out.push(11),
            b'\n' => {}
            b'x' => {
                let h = inner.get(i..i + 2).ok_or("short \\x escape")?;
                let h = std::str::from_utf8(h).map_err(|_| "bad \\x escape")?;
                out.push(u8::from_str_radix(h, 16).map_err(|_| "bad \\x escape")?);
                i += 2;
            }
            b'0'..=b'7' => {
                let mut v = (e - b'0') as u32;
                for _ in 0..2 {
                    match inner.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + (d - b'0') as u32;
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Ok(out)
}

/// Python's `raw-unicode-escape` decoding of a protocol-0 `UNICODE` operand: bytes are Latin-1
/// except `\uXXXX` and `\UXXXXXXXX`.
fn raw_unicode_escape(l: &[u8]) -> Step<String> {
    let mut out = String::with_capacity(l.len());
    let mut i = 0;
    while i < l.len() {
        let c = l[i];
        if c == b'\\' && matches!(l.get(i + 1), Some(b'u' | b'U')) {
            let width = if l[i + 1] == b'u' { 4 } else { 8 };
            let hex = l
                .get(i + 2..i + 2 + width)
                .ok_or("truncated \\u escape in UNICODE")?;
            let hex = std::str::from_utf8(hex).map_err(|_| "bad \\u escape")?;
            let cp = u32::from_str_radix(hex, 16).map_err(|_| "bad \\u escape")?;
            out.push(char::from_u32(cp).ok_or("\\u escape is not a character")?);
            i += 2 + width;
        } else {
            out.push(c as char);
            i += 1;
        }
    }
    Ok(out)
}
