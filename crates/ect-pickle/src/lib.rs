//! A restricted Python pickle reader that never executes anything.
//!
//! Python's `pickle.load` imports the modules a file names and calls what it says: a pickle is a
//! program. This reader interprets the same opcodes (protocols 0 to 5) but only builds data:
//!
//! - plain values ([`Node`]: None, bool, int, float, str, bytes, list, tuple, dict in order, set);
//! - names (`GLOBAL`/`STACK_GLOBAL`) as [`Global`]s that are never imported;
//! - calls (`REDUCE`, `NEWOBJ`, `INST`, `OBJ`) as opaque [`Object`]s holding the callable, its
//!   arguments and later `BUILD` state, unless the callable is one of a fixed list of constructors
//!   ([`known`]: PyTorch tensors and storages, `OrderedDict`, `torch_utils.persistence` objects,
//!   numpy arrays, `_codecs.encode`) that build data directly.
//!
//! So a pickle naming `os.system`, `builtins.eval` or `subprocess.Popen` loads as data (an
//! [`Object`] whose callable is that [`Global`]) and nothing runs; [`Pickle::foreign_globals`] lists
//! such names. `torch.save` archives (zip and legacy, also nested in pickled tensors as
//! `torch.storage._load_from_bytes`) are read the same way ([`load_any`]). Every allocation counts
//! against [`Limits`]; malformed input is a [`PickleError`] naming the opcode and byte offset, never
//! a panic.
//!
//! ```
//! // pickle.dumps({'a': [1, 2.5]}, protocol=2)
//! let bytes = b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01]q\x02(K\x01G@\x04\x00\x00\x00\x00\x00\x00es.";
//! let p = ect_pickle::load(bytes, &ect_pickle::Limits::default()).unwrap();
//! let a = p.root().get("a").unwrap();
//! assert_eq!(a.items().unwrap().map(|v| v.as_f64().unwrap()).collect::<Vec<_>>(), [1.0, 2.5]);
//! ```

pub mod error;
pub mod known;
pub mod limits;
mod machine;
pub mod numpy;
pub mod tensor;
mod torch;
pub mod value;

pub use error::{PickleError, Result};
pub use limits::Limits;
pub use numpy::{NdArray, NumpyDtype};
pub use tensor::{DType, Storage, Tensor, TensorRef};
pub use value::{Construct, Global, Id, Node, Object, PersistentObject, Pickle, Plain, Val};

use limits::Budget;

/// Reads one plain pickle (what `pickle.loads` reads). Persistent ids are refused: they only occur
/// inside `torch.save` archives (see [`load_any`]). Bytes after `STOP` are ignored, as Python does.
pub fn load<'a>(bytes: &'a [u8], limits: &Limits) -> Result<Pickle<'a>> {
    let mut budget = Budget::new(limits);
    let out = machine::run(bytes, 0, &mut budget, None)?;
    Ok(Pickle {
        nodes: out.nodes,
        root: out.root,
    })
}

/// Reads a plain pickle or a `torch.save` archive (zip, or the legacy format), told apart by their
/// first bytes: what `torch.load` of a `.pt` file or `pickle.load` of a `.pkl` snapshot returns.
pub fn load_any<'a>(bytes: &'a [u8], limits: &Limits) -> Result<Pickle<'a>> {
    let mut budget = Budget::new(limits);
    torch::load_any(bytes, &mut budget)
}

/// Reads a file with [`load_any`], the result owning its bytes.
pub fn load_file(path: &std::path::Path, limits: &Limits) -> Result<Pickle<'static>> {
    let bytes = std::fs::read(path).map_err(|source| PickleError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    load_any(&bytes, limits).map(Pickle::into_owned)
}

/// Limits small enough that fuzzing explores quickly and never runs out of memory.
pub fn fuzz_limits() -> Limits {
    Limits {
        max_depth: 64,
        max_nodes: 1 << 18,
        max_memo: 1 << 16,
        max_bytes: 64 << 20,
        max_container_len: 1 << 16,
        max_archive_depth: 3,
    }
}

/// The body of the fuzz target: reads `data` as a pickle or `torch.save` archive under
/// [`fuzz_limits`] and, when that succeeds, walks the result the way consumers do (plain values,
/// every tensor converted to `f32`, dict lookups). It must return for any input, never panic.
/// Returns whether the load succeeded.
pub fn fuzz_one(data: &[u8]) -> bool {
    let limits = fuzz_limits();
    let Ok(p) = load_any(data, &limits) else {
        return false;
    };
    let _ = p.root().to_plain(&limits);
    let _ = p.foreign_globals();
    for (i, node) in p.nodes().iter().enumerate() {
        let v = p.val(Id(i as u32));
        match node {
            Node::Tensor(_) => {
                if let Some(t) = v.as_tensor() {
                    let _ = t.to_f32(&limits);
                }
            }
            Node::Dict(_) | Node::Object(_) => {
                let _ = v.get("state");
                let _ = v.str_keys();
                let _ = v.state().map(|s| s.get("_modules"));
            }
            _ => {}
        }
    }
    true
}
