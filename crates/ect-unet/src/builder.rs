//! Parameter creation: the reference's `weight_init` and a path wrapper that can build a network
//! without allocating its weights (for parameter counting).

use tch::{nn, Device, Kind, Tensor};

/// The initialization distributions of the reference `weight_init` (EDM `training/networks.py`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitMode {
    /// `sqrt(6 / (fan_in + fan_out)) * U(-1, 1)`.
    XavierUniform,
    /// `sqrt(2 / (fan_in + fan_out)) * N(0, 1)`.
    XavierNormal,
    /// `sqrt(3 / fan_in) * U(-1, 1)`.
    KaimingUniform,
    /// `sqrt(1 / fan_in) * N(0, 1)`.
    KaimingNormal,
}

/// One layer's initialization: a mode plus the multipliers applied to weight and bias draws.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Init {
    /// Distribution of the draws.
    pub mode: InitMode,
    /// Multiplier of the weight draw (`init_weight`).
    pub weight: f64,
    /// Multiplier of the bias draw (`init_bias`).
    pub bias: f64,
}

impl Init {
    /// `mode` with `init_weight = 1`, `init_bias = 0` (the reference defaults).
    pub const fn new(mode: InitMode) -> Self {
        Init {
            mode,
            weight: 1.0,
            bias: 0.0,
        }
    }

    /// The same mode with another weight multiplier.
    pub const fn weight(self, weight: f64) -> Self {
        Init { weight, ..self }
    }

    /// The same mode with another bias multiplier.
    pub const fn bias(self, bias: f64) -> Self {
        Init { bias, ..self }
    }
}

/// Draws a tensor like the reference `weight_init(shape, mode, fan_in, fan_out)`, on the CPU generator
/// (as the reference does), so that the same seed and construction order give the same numbers.
pub fn weight_init(shape: &[i64], mode: InitMode, fan_in: i64, fan_out: i64) -> Tensor {
    let opts = (Kind::Float, Device::Cpu);
    let (fi, fo) = (fan_in as f64, fan_out as f64);
    let uniform = || Tensor::rand(shape, opts) * 2.0 - 1.0;
    match mode {
        InitMode::XavierUniform => uniform() * (6.0 / (fi + fo)).sqrt(),
        InitMode::XavierNormal => Tensor::randn(shape, opts) * (2.0 / (fi + fo)).sqrt(),
        InitMode::KaimingUniform => uniform() * (3.0 / fi).sqrt(),
        InitMode::KaimingNormal => Tensor::randn(shape, opts) * (1.0 / fi).sqrt(),
    }
}

/// A VarStore path plus the decision whether to allocate: with `alloc == false` every variable is a
/// stride-0 view of one scalar, so a network of any size can be built to count its parameters.
#[derive(Clone, Debug)]
pub struct Builder<'a> {
    path: nn::Path<'a>,
    alloc: bool,
}

impl<'a> Builder<'a> {
    /// Allocating builder over `path`.
    pub fn new(path: nn::Path<'a>) -> Self {
        Builder { path, alloc: true }
    }

    /// Builder that records names and shapes but allocates no storage.
    pub fn shapes_only(path: nn::Path<'a>) -> Self {
        Builder { path, alloc: false }
    }

    /// A sub-path (one more name component).
    pub fn sub(&self, name: &str) -> Builder<'a> {
        Builder {
            path: self.path.sub(name),
            alloc: self.alloc,
        }
    }

    /// Whether variables get real storage.
    pub fn allocates(&self) -> bool {
        self.alloc
    }

    /// The device of the underlying VarStore.
    pub fn device(&self) -> Device {
        self.path.device()
    }

    fn placeholder(&self, shape: &[i64]) -> Tensor {
        Tensor::zeros([], (Kind::Float, self.device())).expand(shape, false)
    }

    /// Adds a trainable parameter whose initial value `init()` computes (on any device).
    pub fn param(&self, name: &str, shape: &[i64], init: impl FnOnce() -> Tensor) -> Tensor {
        let t = if self.alloc {
            let t = init();
            debug_assert_eq!(t.size(), shape, "initializer of {name} has the wrong shape");
            t.to_device(self.device())
        } else {
            self.placeholder(shape)
        };
        self.path.add(name, t, true)
    }

    /// Adds a non-trainable buffer (kept in the VarStore so its name round-trips through files).
    pub fn buffer(&self, name: &str, shape: &[i64], init: impl FnOnce() -> Tensor) -> Tensor {
        let t = if self.alloc {
            init().to_device(self.device())
        } else {
            self.placeholder(shape)
        };
        self.path.add(name, t, false)
    }
}
