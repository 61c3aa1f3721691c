//! Resource limits: a hostile pickle can ask for deep nesting, many objects or huge buffers; every
//! such request is counted against these bounds and refused with [`crate::PickleError::Limit`].

/// Bounds on what one load may build. The defaults admit the largest published checkpoints (EDM2-XL
/// snapshots, several GB of weights, a few hundred thousand objects) and CIFAR batches with room to
/// spare; tests and fuzzing use smaller ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Deepest container nesting (lists, dicts, objects and their state), checked as containers are
    /// filled, and the depth of every traversal ([`crate::Val::to_plain`]).
    pub max_depth: usize,
    /// Objects in the arena (every value the pickle creates, nested archives included).
    pub max_nodes: usize,
    /// Memo entries of one pickle.
    pub max_memo: usize,
    /// Bytes of strings, byte strings, storages and arrays materialised in all, inflated archive
    /// members and tensors converted to `f32` included.
    pub max_bytes: u64,
    /// Items of one list, tuple, dict or set, and members of one zip archive.
    pub max_container_len: usize,
    /// `torch.save` archives nested in pickles (`torch.storage._load_from_bytes`) inside one another.
    pub max_archive_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 200,
            max_nodes: 1 << 24,
            max_memo: 1 << 24,
            max_bytes: 1 << 35,
            max_container_len: 1 << 24,
            max_archive_depth: 3,
        }
    }
}

/// What one load has used so far, shared by the pickles of nested archives.
#[derive(Debug)]
pub(crate) struct Budget {
    pub(crate) limits: Limits,
    pub(crate) nodes: usize,
    pub(crate) bytes: u64,
    pub(crate) archive_depth: usize,
}

impl Budget {
    pub(crate) fn new(limits: &Limits) -> Self {
        Budget {
            limits: limits.clone(),
            nodes: 0,
            bytes: 0,
            archive_depth: 0,
        }
    }

    /// Counts `n` more bytes; `Err(limit)` when the total would pass `max_bytes`.
    pub(crate) fn take_bytes(&mut self, n: u64) -> Result<(), u64> {
        let total = self.bytes.saturating_add(n);
        if total > self.limits.max_bytes {
            return Err(self.limits.max_bytes);
        }
        self.bytes = total;
        Ok(())
    }
}
