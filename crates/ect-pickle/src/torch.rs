//! `torch.save` archives, read without torch:
//!
//! - the zip format (PyTorch >= 1.6): `<name>/data.pkl` is a pickle whose storages are persistent ids
//!   `('storage', torch.FloatStorage, key, location, numel)`, with the bytes in `<name>/data/<key>`;
//! - the legacy format (`_use_new_zipfile_serialization=False`, and what `torch.storage._load_from_bytes`
//!   receives inside pickled tensors): pickles of the magic number, the protocol version (1001) and
//!   the system info, then the object with persistent ids
//!   `('storage', type, root_key, location, numel, view_metadata)`, a pickle of the storage keys,
//!   and for each key its element count (8 bytes, little-endian) and raw bytes.
//!
//! Storages stored without compression are borrowed from the input, not copied.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{Cursor, Read};

use crate::error::{PickleError, Result};
use crate::limits::Budget;
use crate::machine::{self, Arena, Fail, PersistentLoad, Step};
use crate::tensor::{DType, Storage};
use crate::value::{Id, Node, Pickle};

/// `torch.serialization.MAGIC_NUMBER` (0x1950a86a20f9469cfc6c) as `LONG1` stores it.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
/// `torch.serialization.PROTOCOL_VERSION`.
const LEGACY_PROTOCOL: i64 = 1001;

fn archive_err(msg: impl Into<String>) -> PickleError {
    PickleError::Archive(msg.into())
}

/// Whether the bytes start like a zip file (the `torch.save` format since PyTorch 1.6).
pub(crate) fn is_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06")
}

/// Loads a plain pickle, a zip `torch.save` archive or a legacy one, told apart by their first bytes.
pub(crate) fn load_any<'a>(bytes: &'a [u8], budget: &mut Budget) -> Result<Pickle<'a>> {
    if is_zip(bytes) {
        return load_zip(bytes, budget);
    }
    let first = machine::run(bytes, 0, budget, None)?;
    if matches!(&first.nodes[first.root.index()], Node::BigInt(b) if b[..] == LEGACY_MAGIC) {
        return load_legacy(bytes, first.end, budget);
    }
    Ok(Pickle {
        nodes: first.nodes,
        root: first.root,
    })
}

/// The storage a `torch.storage._load_from_bytes(bytes)` call returns.
pub(crate) fn load_storage_bytes<'a>(bytes: &'a [u8], budget: &mut Budget) -> Result<Storage<'a>> {
    if budget.archive_depth >= budget.limits.max_archive_depth {
        return Err(PickleError::Limit {
            offset: 0,
            opcode: "torch.save archive".into(),
            what: "archive nesting",
            limit: budget.limits.max_archive_depth as u64,
        });
    }
    budget.archive_depth += 1;
    let loaded = if is_zip(bytes) {
        load_zip(bytes, budget)
    } else {
        load_legacy(bytes, 0, budget)
    };
    budget.archive_depth -= 1;
    let p = loaded?;
    match p.nodes.into_iter().nth(p.root.index()) {
        Some(Node::Storage(s)) => Ok(s),
        Some(other) => Err(archive_err(format!(
            "_load_from_bytes archive holds {}, not a storage",
            other.a_kind()
        ))),
        None => Err(archive_err("empty archive")),
    }
}

/// The fields of a `('storage', type, key, location, numel[, view_metadata])` persistent id.
struct StorageId {
    dtype: DType,
    key: String,
    numel: usize,
    view: Option<(String, usize, usize)>,
}

fn parse_storage_id(arena: &Arena<'_, '_>, pid: Id) -> Step<StorageId> {
    let items = match arena.node(pid) {
        Node::Tuple(v) => v.clone(),
        other => return Err(format!("persistent id is {}, not a tuple", other.a_kind()).into()),
    };
    let text = |id: Id| match arena.node(id) {
        Node::Str(s) => Some(s.clone()),
        Node::Bytes(b) => std::str::from_utf8(b).ok().map(str::to_string),
        _ => None,
    };
    let count = |id: Id| match arena.node(id) {
        Node::Int(v) => usize::try_from(*v).ok(),
        _ => None,
    };
    if items.first().and_then(|&t| text(t)).as_deref() != Some("storage") {
        return Err("persistent id is not a ('storage', ...) tuple".into());
    }
    if items.len() < 5 {
        return Err(format!(
            "storage persistent id has {} fields, expected 5 or 6",
            items.len()
        )
        .into());
    }
    let dtype = match arena.node(items[1]) {
        Node::Global(g) if g.module == "torch" => DType::from_storage_type(&g.name)
            .ok_or_else(|| format!("unsupported storage type torch.{}", g.name))?,
        other => {
            return Err(format!(
                "storage type is {}, not a torch storage class",
                other.a_kind()
            )
            .into())
        }
    };
    let key = text(items[2]).ok_or("storage key is not a string")?;
    let numel = count(items[4]).ok_or("storage size is not a non-negative int")?;
    let view = match items.get(5).map(|&v| arena.node(v)) {
        None | Some(Node::None) => None,
        Some(Node::Tuple(v)) if v.len() == 3 => {
            let view_key = text(v[0]).ok_or("view key is not a string")?;
            let offset = count(v[1]).ok_or("view offset is not a non-negative int")?;
            let size = count(v[2]).ok_or("view size is not a non-negative int")?;
            Some((view_key, offset, size))
        }
        Some(_) => return Err("storage view metadata is not (key, offset, size)".into()),
    };
    Ok(StorageId {
        dtype,
        key,
        numel,
        view,
    })
}

fn nbytes(numel: usize, dtype: DType) -> Step<usize> {
    numel
        .checked_mul(dtype.size())
        .ok_or_else(|| format!("storage of {numel} elements overflows").into())
}

// ---- the zip format ----

struct ZipStorages<'a, 'z> {
    bytes: &'a [u8],
    zip: &'z mut zip::ZipArchive<Cursor<&'a [u8]>>,
    prefix: String,
    loaded: HashMap<String, Id>,
}

/// The bytes of a zip member: borrowed when stored, inflated (within the byte budget) otherwise.
fn zip_member<'a>(
    bytes: &'a [u8],
    zip: &mut zip::ZipArchive<Cursor<&'a [u8]>>,
    name: &str,
    budget: &mut Budget,
) -> std::result::Result<Cow<'a, [u8]>, String> {
    let mut f = zip
        .by_name(name)
        .map_err(|e| format!("member {name}: {e}"))?;
    let size = f.size();
    if f.compression() == zip::CompressionMethod::Stored && f.compressed_size() == size {
        let start =
            usize::try_from(f.data_start()).map_err(|_| format!("member {name}: offset"))?;
        let end = usize::try_from(size)
            .ok()
            .and_then(|n| start.checked_add(n))
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| format!("member {name} reaches past the end of the archive"))?;
        return Ok(Cow::Borrowed(&bytes[start..end]));
    }
    let room = budget.limits.max_bytes.saturating_sub(budget.bytes);
    let mut out = Vec::new();
    (&mut f)
        .take(room.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| format!("member {name}: {e}"))?;
    budget
        .take_bytes(out.len() as u64)
        .map_err(|limit| format!("member {name} inflates past the limit of {limit} bytes"))?;
    Ok(Cow::Owned(out))
}

// Also for a `data.pkl` inflated into a shorter-lived buffer: storages borrow the archive bytes.
impl<'x, 'a: 'x> PersistentLoad<'x> for ZipStorages<'a, '_> {
    fn load(&mut self, arena: &mut Arena<'x, '_>, pid: Id) -> Step<Id> {
        let sid = parse_storage_id(arena, pid)?;
        if let Some(&id) = self.loaded.get(&sid.key) {
            return Ok(id);
        }
        let name = format!("{}data/{}", self.prefix, sid.key);
        let data = zip_member(self.bytes, self.zip, &name, arena.budget)?;
        let want = nbytes(sid.numel, sid.dtype)?;
        if data.len() != want {
            return Err(Fail::Msg(format!(
                "{name} has {} bytes, the pickle declares {} x {} = {want}",
                data.len(),
                sid.numel,
                sid.dtype.name()
            )));
        }
        let id = arena.push(Node::Storage(Storage {
            dtype: sid.dtype,
            data,
        }))?;
        self.loaded.insert(sid.key, id);
        Ok(id)
    }
}

fn load_zip<'a>(bytes: &'a [u8], budget: &mut Budget) -> Result<Pickle<'a>> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| archive_err(format!("not a readable zip: {e}")))?;
    if zip.len() > budget.limits.max_container_len {
        return Err(archive_err(format!("{} members is too many", zip.len())));
    }
    // torch names every member `<archive name>/...` and finds `data.pkl` under that folder.
    let pkl = zip
        .file_names()
        .filter(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .min()
        .map(str::to_string)
        .ok_or_else(|| archive_err("zip has no <name>/data.pkl"))?;
    let prefix = pkl.trim_end_matches("data.pkl").to_string();
    if zip.file_names().any(|n| n == format!("{prefix}byteorder")) {
        let order = zip_member(bytes, &mut zip, &format!("{prefix}byteorder"), budget)
            .map_err(archive_err)?;
        if &order[..] != b"little" {
            return Err(archive_err(format!(
                "byteorder {:?}: only little-endian archives are read",
                String::from_utf8_lossy(&order)
            )));
        }
    }
    let data = zip_member(bytes, &mut zip, &pkl, budget).map_err(archive_err)?;
    let mut storages = ZipStorages {
        bytes,
        zip: &mut zip,
        prefix,
        loaded: HashMap::new(),
    };
    let in_pkl = |e: PickleError| archive_err(format!("{pkl}: {e}"));
    match data {
        Cow::Borrowed(d) => {
            let out = machine::run(d, 0, budget, Some(&mut storages)).map_err(in_pkl)?;
            Ok(Pickle {
                nodes: out.nodes,
                root: out.root,
            })
        }
        Cow::Owned(d) => {
            let out = machine::run(&d, 0, budget, Some(&mut storages)).map_err(in_pkl)?;
            Ok(Pickle {
                nodes: out.nodes,
                root: out.root,
            }
            .into_owned())
        }
    }
}

// ---- the legacy format ----

/// Storages named by the main pickle, filled once their bytes are read.
#[derive(Default)]
struct LegacyStorages {
    roots: HashMap<String, (Id, DType, usize)>,
    views: HashMap<String, Id>,
    /// `(view node, root key, offset, size)` in elements.
    pending_views: Vec<(Id, String, usize, usize)>,
}

impl<'a> PersistentLoad<'a> for LegacyStorages {
    fn load(&mut self, arena: &mut Arena<'a, '_>, pid: Id) -> Step<Id> {
        if let Node::Tuple(v) = arena.node(pid) {
            // `('module', type, source_file, source)`: a class pickled with its source (PyTorch < 1.0),
            // given back as the type (a global name), never compiled.
            if let [tag, ty, ..] = v[..] {
                if matches!(arena.node(tag), Node::Str(s) if s == "module") {
                    return Ok(ty);
                }
            }
        }
        let sid = parse_storage_id(arena, pid)?;
        let root = match self.roots.get(&sid.key) {
            Some(&(id, dtype, _)) if dtype == sid.dtype => id,
            Some(_) => {
                return Err(format!("storage {} is declared with two dtypes", sid.key).into())
            }
            None => {
                // Counted now, although the bytes are borrowed later, so that a huge declared
                // size is refused before anything is read.
                arena.charge(nbytes(sid.numel, sid.dtype)?)?;
                let id = arena.push(Node::Storage(Storage {
                    dtype: sid.dtype,
                    data: Cow::Borrowed(&[]),
                }))?;
                self.roots
                    .insert(sid.key.clone(), (id, sid.dtype, sid.numel));
                id
            }
        };
        let Some((view_key, offset, size)) = sid.view else {
            return Ok(root);
        };
        if let Some(&id) = self.views.get(&view_key) {
            return Ok(id);
        }
        let id = arena.push(Node::Storage(Storage {
            dtype: sid.dtype,
            data: Cow::Borrowed(&[]),
        }))?;
        self.views.insert(view_key, id);
        self.pending_views.push((id, sid.key, offset, size));
        Ok(id)
    }
}

fn load_legacy<'a>(bytes: &'a [u8], start: usize, budget: &mut Budget) -> Result<Pickle<'a>> {
    let mut pos = start;
    if start == 0 {
        let magic = machine::run(bytes, 0, budget, None)
            .map_err(|e| archive_err(format!("no zip header and no legacy magic number ({e})")))?;
        if !matches!(&magic.nodes[magic.root.index()], Node::BigInt(b) if b[..] == LEGACY_MAGIC) {
            return Err(archive_err("no zip header and no legacy magic number"));
        }
        pos = magic.end;
    }
    let version = machine::run(&bytes[pos..], pos, budget, None)?;
    if version.nodes[version.root.index()] != Node::Int(LEGACY_PROTOCOL) {
        return Err(archive_err(format!(
            "legacy protocol version is not {LEGACY_PROTOCOL}"
        )));
    }
    pos += version.end;
    let info = machine::run(&bytes[pos..], pos, budget, None)?;
    pos += info.end;
    let info = Pickle {
        nodes: info.nodes,
        root: info.root,
    };
    if info.root().get("little_endian").and_then(|v| v.as_bool()) == Some(false) {
        return Err(archive_err(
            "big-endian legacy archive: only little-endian is read",
        ));
    }
    let mut storages = LegacyStorages::default();
    let main = machine::run(&bytes[pos..], pos, budget, Some(&mut storages))?;
    pos += main.end;
    let mut nodes = main.nodes;
    let keys = machine::run(&bytes[pos..], pos, budget, None)?;
    pos += keys.end;
    let keys = Pickle {
        nodes: keys.nodes,
        root: keys.root,
    };
    let keys: Vec<String> = keys
        .root()
        .items()
        .ok_or_else(|| archive_err("the storage key list is not a list"))?
        .map(|k| {
            k.as_str()
                .map(str::to_string)
                .ok_or_else(|| archive_err("a storage key is not a string"))
        })
        .collect::<Result<_>>()?;
    let mut filled: HashMap<&str, &'a [u8]> = HashMap::new();
    for key in &keys {
        let &(id, dtype, numel) = storages
            .roots
            .get(key)
            .ok_or_else(|| archive_err(format!("storage key {key} is not used by the pickle")))?;
        let head = bytes
            .get(pos..pos.saturating_add(8))
            .ok_or_else(|| archive_err(format!("truncated before storage {key}")))?;
        let count = u64::from_le_bytes(head.try_into().expect("8 bytes"));
        if count != numel as u64 {
            return Err(archive_err(format!(
                "storage {key} holds {count} elements, the pickle declares {numel}"
            )));
        }
        let n =
            nbytes(numel, dtype).map_err(|_| archive_err(format!("storage {key} overflows")))?;
        let data = bytes
            .get(pos + 8..(pos + 8).saturating_add(n))
            .ok_or_else(|| archive_err(format!("truncated in storage {key} ({n} bytes)")))?;
        pos += 8 + n;
        nodes[id.index()] = Node::Storage(Storage {
            dtype,
            data: Cow::Borrowed(data),
        });
        filled.insert(key, data);
    }
    if let Some(key) = storages
        .roots
        .keys()
        .find(|k| !filled.contains_key(k.as_str()))
    {
        return Err(archive_err(format!("storage {key} has no data")));
    }
    for (id, key, offset, size) in storages.pending_views {
        let Node::Storage(view) = &nodes[id.index()] else {
            unreachable!("pending views are storage nodes")
        };
        let es = view.dtype.size();
        let root = filled[key.as_str()];
        let data = offset
            .checked_add(size)
            .and_then(|end| root.get(offset.checked_mul(es)?..end.checked_mul(es)?))
            .ok_or_else(|| archive_err(format!("storage view of {key} reaches past it")))?;
        let dtype = view.dtype;
        nodes[id.index()] = Node::Storage(Storage {
            dtype,
            data: Cow::Borrowed(data),
        });
    }
    Ok(Pickle {
        nodes,
        root: main.root,
    })
}
