//! Floating-point operations counted from the network's own forward passes.
//!
//! Every layer that multiplies by a weight or by another activation reports its multiply-accumulate
//! count (MACs), computed from the tensor shapes of that very call, to a thread-local accumulator that
//! [`count_flops`] switches on for the duration of a closure:
//!
//! - convolutions (`Conv2d`, EDM2 `MPConv`, the 1x1 skip/qkv/proj layers): `N * Cout * (Cin / groups) *
//!   kh * kw * Hout * Wout`;
//! - the FIR up/downsampling filters, which run as depthwise (transposed) convolutions: the same
//!   formula for the strided one, and `N * Cin * (Cout / groups) * kh * kw * Hin * Win` for the
//!   transposed one (each input pixel meets each kernel tap once);
//! - linear layers (the noise/label embedding MLP, the per-block `affine`/`emb_linear`): `N * in * out`;
//! - the two matrix products of self-attention, `q^T k` and the weighted sum of `v`: `B * M * K * N`
//!   each, i.e. `2 * B * c * L^2` per attention layer with `B = N * heads` and `L = H * W`.
//!
//! **Convention: FLOPs = 2 x MACs** (one multiply plus one add per MAC). Elementwise operations
//! (activations, residual sums, scalings, the preconditioning), normalizations (GroupNorm, EDM2's
//! pixel norm and weight normalization), softmax, the sinusoidal/Fourier embeddings and bias additions
//! are not counted, which is the usual convention of FLOP counters (fvcore, ptflops,
//! `torch.utils.flop_counter`): they are a few percent of the total for these UNets.
//!
//! The counts are exact for the shapes that ran: they scale linearly with the batch, and the same
//! network at the same shapes always gives the same figure. Only work on the calling thread is counted
//! (the networks run their layers on the caller's thread; libtorch's intra-op threads do not matter).
//! When no count is running, each layer pays one thread-local boolean read.
//!
//! Training compute is usually quoted as 3x the forward figure per image (the backward pass costs about
//! twice the forward); an ECT step evaluates the student forward and backward plus a teacher forward.

use std::cell::Cell;
use std::fmt;
use std::ops::{Add, AddAssign};
use tch::Tensor;

/// Multiply-accumulate counts of one or more forward passes, by kind of layer.
///
/// `macs` is always the sum of the four kinds; [`FlopCount::flops`] is `2 * macs`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlopCount {
    /// Total multiply-accumulates (`conv + resample + linear + attention`).
    pub macs: u64,
    /// MACs of the weighted convolutions (3x3, 1x1, EDM2 `MPConv` in convolution form).
    pub conv: u64,
    /// MACs of the FIR up/downsampling filters (depthwise and depthwise-transposed convolutions).
    pub resample: u64,
    /// MACs of the linear layers (embedding MLP, label map, per-block embedding projections).
    pub linear: u64,
    /// MACs of the two attention matrix products (`q^T k` and the weighted sum of `v`).
    pub attention: u64,
}

impl FlopCount {
    /// Floating-point operations, counted as two per multiply-accumulate.
    pub fn flops(&self) -> u64 {
        2 * self.macs
    }

    /// Floating-point operations in units of 10^9.
    pub fn gflops(&self) -> f64 {
        self.flops() as f64 * 1e-9
    }

    /// Every field multiplied by `n` (e.g. images processed), saturating at `u64::MAX`.
    pub fn times(&self, n: u64) -> FlopCount {
        FlopCount {
            macs: self.macs.saturating_mul(n),
            conv: self.conv.saturating_mul(n),
            resample: self.resample.saturating_mul(n),
            linear: self.linear.saturating_mul(n),
            attention: self.attention.saturating_mul(n),
        }
    }

    fn add_kind(&mut self, kind: OpKind, macs: u64) {
        self.macs += macs;
        match kind {
            OpKind::Conv => self.conv += macs,
            OpKind::Resample => self.resample += macs,
            OpKind::Linear => self.linear += macs,
            OpKind::Attention => self.attention += macs,
        }
    }
}

impl Add for FlopCount {
    type Output = FlopCount;

    fn add(self, o: FlopCount) -> FlopCount {
        FlopCount {
            macs: self.macs + o.macs,
            conv: self.conv + o.conv,
            resample: self.resample + o.resample,
            linear: self.linear + o.linear,
            attention: self.attention + o.attention,
        }
    }
}

impl AddAssign for FlopCount {
    fn add_assign(&mut self, o: FlopCount) {
        *self = *self + o;
    }
}

impl fmt::Display for FlopCount {
    /// `"1.234 GFLOPs (conv 1.100, resample 0.001, linear 0.010, attention 0.123)"`, in GFLOPs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = |macs: u64| 2.0 * macs as f64 * 1e-9;
        write!(
            f,
            "{:.3} GFLOPs (conv {:.3}, resample {:.3}, linear {:.3}, attention {:.3})",
            g(self.macs),
            g(self.conv),
            g(self.resample),
            g(self.linear),
            g(self.attention)
        )
    }
}

/// Which [`FlopCount`] field a layer's MACs go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpKind {
    Conv,
    Resample,
    Linear,
    Attention,
}

thread_local! {
    static ENABLED: Cell<bool> = const { Cell::new(false) };
    static ACC: Cell<FlopCount> = const {
        Cell::new(FlopCount { macs: 0, conv: 0, resample: 0, linear: 0, attention: 0 })
    };
}

/// Runs `f` with counting switched on for this thread and returns its result with the MACs its
/// network layers performed. Nested calls work: the outer count includes the inner one.
///
/// ```no_run
/// # use ect_unet::{flops::count_flops, CoeffMode, DropoutMode, Precond};
/// # fn demo(net: &Precond, x: &tch::Tensor, sigma: &tch::Tensor) {
/// let (_out, count) = count_flops(|| net.forward(x, sigma, None, CoeffMode::Eval, DropoutMode::Off));
/// println!("{count}");
/// # }
/// ```
pub fn count_flops<R>(f: impl FnOnce() -> R) -> (R, FlopCount) {
    /// Restores the outer state even if `f` panics.
    struct Restore {
        outer: FlopCount,
        was_enabled: bool,
    }
    impl Drop for Restore {
        fn drop(&mut self) {
            let inner = ACC.with(Cell::get);
            ACC.with(|a| a.set(self.outer + inner));
            ENABLED.with(|e| e.set(self.was_enabled));
        }
    }
    let restore = Restore {
        outer: ACC.with(|a| a.replace(FlopCount::default())),
        was_enabled: ENABLED.with(|e| e.replace(true)),
    };
    let out = f();
    let count = ACC.with(Cell::get);
    drop(restore);
    (out, count)
}

/// Whether a [`count_flops`] region is running on this thread.
pub fn is_counting() -> bool {
    ENABLED.with(Cell::get)
}

/// Everything counted on this thread so far, by all [`count_flops`] regions together (never reset):
/// work done outside a region leaves it unchanged.
pub fn thread_total() -> FlopCount {
    ACC.with(Cell::get)
}

fn record(kind: OpKind, macs: impl FnOnce() -> u64) {
    if is_counting() {
        let m = macs();
        ACC.with(|a| {
            let mut c = a.get();
            c.add_kind(kind, m);
            a.set(c);
        });
    }
}

/// Product of a weight's dimensions after the first: `(Cin / groups) * kh * kw` for a convolution,
/// `(Cout / groups) * kh * kw` for a transposed one.
fn per_first_dim(w: &Tensor) -> u64 {
    w.size().iter().skip(1).product::<i64>() as u64
}

/// A convolution produced `out` with weight `[Cout, Cin/groups, kh, kw]`.
pub(crate) fn conv(kind: OpKind, out: &Tensor, weight: &Tensor) {
    record(kind, || out.numel() as u64 * per_first_dim(weight));
}

/// A transposed convolution read `input` with weight `[Cin, Cout/groups, kh, kw]`.
pub(crate) fn conv_transpose(kind: OpKind, input: &Tensor, weight: &Tensor) {
    record(kind, || input.numel() as u64 * per_first_dim(weight));
}

/// A linear layer read `input` `[..., in]` with weight `[out, in]`.
pub(crate) fn linear(input: &Tensor, weight: &Tensor) {
    record(OpKind::Linear, || {
        input.numel() as u64 * weight.size()[0] as u64
    });
}

/// A batched product `[B, M, K] x [B, K, N]` of attention.
pub(crate) fn bmm(a: &Tensor, b: &Tensor) {
    if is_counting() {
        let (sa, sb) = (a.size(), b.size());
        bmm_dims(sa[0], sa[1], sa[2], sb[2]);
    }
}

/// A batched product `[B, M, K] x [B, K, N]` of attention, by its dimensions.
pub(crate) fn bmm_dims(b: i64, m: i64, k: i64, n: i64) {
    record(OpKind::Attention, || (b * m * k * n) as u64);
}
