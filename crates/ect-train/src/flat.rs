//! Flat parameter and gradient buffers: the trainable parameters are moved into one contiguous buffer
//! per (device, dtype) and each becomes a view of it, and each parameter's gradient is set to a view of a
//! second buffer of the same layout, so that backward accumulates into it in place (DDP's
//! `gradient_as_bucket_view`). The gradient path, the optimizer and the all-reduce then work on a few
//! large tensors, whatever the number of parameter tensors (a U-Net has about 300): a handful of ops per
//! step instead of a loop over every parameter, which is launch-bound on a GPU.
//!
//! Invariants: a parameter keeps its identity (the network's modules and the `VarStore` hold the same
//! tensor, whose storage now lies in the flat buffer), and every in-place write to a parameter or a
//! gradient (loading weights, `zero_grad`, backward) lands in the flat buffer. Nothing may replace a
//! parameter's storage or set its gradient to none afterwards.
//!
//! Every parameter starts at a multiple of [`ALIGN_BYTES`] in its buffers, as it would in its own
//! allocation. The padding between parameters is zero in every buffer and stays zero: its gradient is
//! zero, so no update, clipping or all-reduce moves it.

use tch::{Device, Kind, Tensor};

use crate::error::{Result, TrainError};

/// The byte alignment of every parameter (and gradient) within its flat buffer. Kernels load
/// through wide vectors when a tensor's address allows it, and cuDNN and cuBLAS pick some algorithms
/// only for aligned operands; libtorch's allocators hand out 64-byte (CPU) and 512-byte (CUDA) aligned
/// blocks, so a parameter in a flat buffer keeps the alignment it would have on its own. The padding
/// costs at most 63 float32 elements per parameter (about 0.05% of DDPM++).
pub const ALIGN_BYTES: usize = 256;

/// The first offset at or after `end` (in elements of `kind`) that lies on an [`ALIGN_BYTES`] boundary.
fn aligned_offset(end: i64, kind: Kind) -> i64 {
    let per = (ALIGN_BYTES / kind.elt_size_in_bytes()).max(1) as i64;
    (end + per - 1) / per * per
}

/// Where one parameter lies in its group's flat buffers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Index into [`FlatParams::params`].
    pub index: usize,
    /// First element in the flat buffers.
    pub offset: i64,
    /// Number of elements.
    pub numel: i64,
    /// The parameter's shape.
    pub shape: Vec<i64>,
}

/// The parameters of one (device, dtype), in one buffer, and their gradients in another.
#[derive(Debug)]
pub struct FlatGroup {
    /// The device of the group.
    pub device: Device,
    /// The dtype of the group.
    pub kind: Kind,
    /// Every parameter of the group, back to back (1-D).
    pub params: Tensor,
    /// Every gradient of the group, back to back (1-D), in the same layout.
    pub grads: Tensor,
    /// Where each parameter lies, in order of `offset`.
    pub members: Vec<Member>,
}

impl FlatGroup {
    /// Number of parameter elements (without the padding between parameters).
    pub fn numel(&self) -> i64 {
        self.members.iter().map(|m| m.numel).sum()
    }

    /// Length of the group's flat buffers: every parameter and the padding between them.
    pub fn buffer_len(&self) -> i64 {
        self.members.last().map_or(0, |m| m.offset + m.numel)
    }

    /// The view of `flat` (a buffer of this group's layout, such as optimizer state) that belongs to
    /// `member`, in the parameter's shape.
    pub fn view(flat: &Tensor, member: &Member) -> Tensor {
        flat.narrow(0, member.offset, member.numel)
            .view(member.shape.as_slice())
    }
}

/// Named trainable parameters living in flat buffers; see the module docs.
#[derive(Debug)]
pub struct FlatParams {
    params: Vec<(String, Tensor)>,
    groups: Vec<FlatGroup>,
}

impl FlatParams {
    /// Moves `params` (leaf tensors that require gradients) into flat buffers, keeping their values and
    /// any gradient they already have, and makes their gradients views of the gradient buffers. Groups
    /// and members follow the order of `params`.
    pub fn new(params: Vec<(String, Tensor)>) -> Result<Self> {
        let mut groups: Vec<FlatGroup> = Vec::new();
        for (index, (name, p)) in params.iter().enumerate() {
            if !p.requires_grad() || !p.is_floating_point() {
                return Err(TrainError::invalid(
                    "parameters",
                    format!("`{name}` must be a floating-point tensor that requires gradients"),
                ));
            }
            let (device, kind) = (p.device(), p.kind());
            let g = match groups
                .iter()
                .position(|g| g.device == device && g.kind == kind)
            {
                Some(g) => g,
                None => {
                    groups.push(FlatGroup {
                        device,
                        kind,
                        params: Tensor::new(),
                        grads: Tensor::new(),
                        members: Vec::new(),
                    });
                    groups.len() - 1
                }
            };
            let offset = aligned_offset(groups[g].buffer_len(), kind);
            groups[g].members.push(Member {
                index,
                offset,
                numel: p.numel() as i64,
                shape: p.size(),
            });
        }
        let mut params = params;
        tch::no_grad(|| -> Result<()> {
            for g in &mut groups {
                let total = g.buffer_len();
                g.params = Tensor::zeros([total], (g.kind, g.device));
                g.grads = Tensor::zeros([total], (g.kind, g.device));
                for m in &g.members {
                    let p = &mut params[m.index].1;
                    let mut pv = FlatGroup::view(&g.params, m);
                    pv.f_copy_(&p.detach())?;
                    let mut gv = FlatGroup::view(&g.grads, m);
                    let old = p.grad();
                    if old.defined() {
                        gv.f_copy_(&old)?;
                    }
                    // `p.data = view`: the parameter's storage becomes the flat buffer's.
                    p.f_set_data(&pv)?;
                    ect_dist::context::set_grad(p, &mut gv)
                        .map_err(|e| TrainError::external("flattening the parameters", e))?;
                }
            }
            Ok(())
        })?;
        Ok(Self { params, groups })
    }

    /// The parameters, by name, in the order given to [`FlatParams::new`].
    pub fn params(&self) -> &[(String, Tensor)] {
        &self.params
    }

    /// The flat groups.
    pub fn groups(&self) -> &[FlatGroup] {
        &self.groups
    }

    /// The flat gradient buffers, one per group (shallow clones: in-place changes reach the gradients).
    pub fn flat_grads(&self) -> Vec<Tensor> {
        self.groups
            .iter()
            .map(|g| g.grads.shallow_clone())
            .collect()
    }

    /// The flat parameter buffers, one per group (shallow clones: in-place changes reach the network).
    pub fn flat_params(&self) -> Vec<Tensor> {
        self.groups
            .iter()
            .map(|g| g.params.shallow_clone())
            .collect()
    }

    /// Sets every gradient to zero (one op per group).
    pub fn zero_grads(&mut self) {
        tch::no_grad(|| {
            for g in &mut self.groups {
                let _ = g.grads.zero_();
            }
        });
    }

    /// Whether the gradients are still the views of the flat buffers (nothing replaced them).
    pub fn grads_are_flat(&self) -> bool {
        self.groups.iter().all(|g| {
            let base = g.grads.data_ptr() as usize;
            let size = g.kind.elt_size_in_bytes();
            g.members.iter().all(|m| {
                let grad = self.params[m.index].1.grad();
                grad.defined() && grad.data_ptr() as usize == base + m.offset as usize * size
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_and_gradients_become_views_of_the_flat_buffers() {
        let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0])
            .view([2, 2])
            .set_requires_grad(true);
        let b = Tensor::from_slice(&[5.0f32]).set_requires_grad(true);
        let c = Tensor::from_slice(&[6.0f64, 7.0]).set_requires_grad(true);
        let mut flat = FlatParams::new(vec![
            ("a".into(), a.shallow_clone()),
            ("b".into(), b.shallow_clone()),
            ("c".into(), c.shallow_clone()),
        ])
        .unwrap();
        assert_eq!(flat.groups().len(), 2, "float32 and float64 groups");
        // `b` starts at the first 256-byte boundary after `a`: 64 float32 elements.
        let offsets: Vec<i64> = flat.groups()[0].members.iter().map(|m| m.offset).collect();
        assert_eq!(offsets, [0, 64]);
        assert_eq!(flat.groups()[0].buffer_len(), 65);
        assert_eq!(flat.groups()[0].numel(), 5);
        let values = |t: &Tensor| -> Vec<f32> {
            let v = Vec::<f32>::try_from(t).unwrap();
            assert!(v[4..64].iter().all(|&x| x == 0.0), "the padding is zero");
            [&v[..4], &v[64..]].concat()
        };
        assert_eq!(values(&flat.groups()[0].params), [1.0, 2.0, 3.0, 4.0, 5.0]);
        // Each parameter lies ALIGN_BYTES-aligned from its buffer's start, which libtorch's CPU
        // allocator aligns to 64 bytes (the AVX-512 vector).
        for g in flat.groups() {
            let base = g.params.data_ptr() as usize;
            for m in &g.members {
                let p = flat.params()[m.index].1.data_ptr() as usize;
                assert_eq!((p - base) % ALIGN_BYTES, 0, "parameter {}", m.index);
                assert_eq!(p % 64, 0, "parameter {}", m.index);
            }
        }
        assert_eq!(a.size(), [2, 2]);
        // Backward accumulates into the flat gradient buffer, twice.
        for _ in 0..2 {
            ((&a * 2.0).sum(Kind::Float) + (&b * 3.0).sum(Kind::Float) + c.sum(Kind::Double))
                .backward();
        }
        assert!(flat.grads_are_flat());
        assert_eq!(values(&flat.groups()[0].grads), [4.0, 4.0, 4.0, 4.0, 6.0]);
        assert_eq!(
            Vec::<f64>::try_from(&flat.groups()[1].grads).unwrap(),
            [2.0, 2.0]
        );
        // Writes to the flat parameter buffer reach the parameters.
        tch::no_grad(|| {
            let _ = flat.flat_params()[0].g_add_scalar_(1.0);
        });
        assert_eq!(Vec::<f32>::try_from(b.detach()).unwrap(), [6.0]);
        flat.zero_grads();
        assert_eq!(
            Vec::<f32>::try_from(a.grad().flatten(0, -1)).unwrap(),
            [0.0; 4]
        );
        assert!(flat.grads_are_flat());
    }
}
