//! Dropout whose masks can be recorded in one forward pass and replayed in another.
//!
//! ECT's teacher pass `f(x_r, r)` must see the same dropout masks as the student pass `f(x_t, t)`
//! (SPEC-ECT section 3, step 5). The reference gets that by saving and restoring the CUDA RNG state;
//! tch cannot, so the student pass records its masks on a [`MaskTape`] and the teacher pass replays them.

use std::cell::{Cell, RefCell};
use tch::{Kind, Tensor};

/// Masks recorded in one pass, replayable in another, in call order.
///
/// Masks are stored as `bool` tensors (1 byte per element); the inverted-dropout scale is applied when
/// a mask is used.
#[derive(Debug, Default)]
pub struct MaskTape {
    masks: RefCell<Vec<Tensor>>,
    cursor: Cell<usize>,
}

impl MaskTape {
    /// An empty tape.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of masks on the tape.
    pub fn len(&self) -> usize {
        self.masks.borrow().len()
    }

    /// Whether the tape holds no mask.
    pub fn is_empty(&self) -> bool {
        self.masks.borrow().is_empty()
    }

    /// Drops every mask and rewinds.
    pub fn clear(&self) {
        self.masks.borrow_mut().clear();
        self.cursor.set(0);
    }

    /// Moves the replay cursor back to the first mask.
    pub fn rewind(&self) {
        self.cursor.set(0);
    }

    fn push(&self, mask: &Tensor) {
        self.masks.borrow_mut().push(mask.shallow_clone());
    }

    fn next(&self, shape: &[i64]) -> Tensor {
        let i = self.cursor.get();
        let masks = self.masks.borrow();
        let Some(mask) = masks.get(i) else {
            panic!(
                "MaskTape replay: mask #{i} requested but the tape holds {} masks",
                masks.len()
            );
        };
        assert_eq!(
            mask.size(),
            shape,
            "MaskTape replay: mask #{i} has shape {:?}, the activation {:?}",
            mask.size(),
            shape
        );
        self.cursor.set(i + 1);
        mask.shallow_clone()
    }
}

/// Dropout behaviour of one forward pass.
#[derive(Clone, Copy, Debug, Default)]
pub enum DropoutMode<'a> {
    /// Evaluation: no dropout (and no label dropout).
    #[default]
    Off,
    /// Fresh masks, nothing kept.
    Sample,
    /// Fresh masks, each appended to the tape in call order.
    Record(&'a MaskTape),
    /// Reuse the tape's masks in the same order; panics if the tape runs out or a shape differs.
    Replay(&'a MaskTape),
}

impl DropoutMode<'_> {
    /// Whether this pass drops anything at all (the reference's `self.training` for dropout).
    pub fn is_training(&self) -> bool {
        !matches!(self, DropoutMode::Off)
    }

    /// Prepares the tape for a new pass: recording starts from an empty tape, replay from its start.
    pub fn begin_pass(&self) {
        match self {
            DropoutMode::Record(tape) => tape.clear(),
            DropoutMode::Replay(tape) => tape.rewind(),
            DropoutMode::Off | DropoutMode::Sample => {}
        }
    }

    /// The keep mask (`bool`, true = keep) for a site of the given shape, where each element is kept
    /// with probability `1 - p` (`rand >= p`, the reference's label-dropout rule).
    fn keep_mask(&self, like: &Tensor, shape: &[i64], p: f64) -> Tensor {
        match self {
            DropoutMode::Replay(tape) => tape.next(shape),
            DropoutMode::Record(tape) => {
                let m = Tensor::rand(shape, (Kind::Float, like.device())).ge(p);
                tape.push(&m);
                m
            }
            DropoutMode::Sample => Tensor::rand(shape, (Kind::Float, like.device())).ge(p),
            DropoutMode::Off => unreachable!("keep_mask is only called in training passes"),
        }
    }

    /// Inverted dropout (`torch.nn.functional.dropout`): zeroes elements with probability `p` and
    /// scales the rest by `1 / (1 - p)`.
    ///
    /// # Shapes
    /// x: any; the mask has x's shape.
    pub fn dropout(&self, x: &Tensor, p: f64) -> Tensor {
        if p <= 0.0 || !self.is_training() {
            return x.shallow_clone();
        }
        if p >= 1.0 {
            return x.zeros_like();
        }
        let mask = self.keep_mask(x, &x.size(), p);
        // `x * mask` saves only the bool mask for backward; the scale goes in place on its output.
        let mut y = x * mask;
        y *= 1.0 / (1.0 - p);
        y
    }

    /// Label dropout of the reference (`labels * (rand([N, 1]) >= p)`, no rescaling).
    ///
    /// # Shapes
    /// labels: [N, L]; the mask is [N, 1].
    pub fn label_dropout(&self, labels: &Tensor, p: f64) -> Tensor {
        if p <= 0.0 || !self.is_training() {
            return labels.shallow_clone();
        }
        let n = labels.size()[0];
        let mask = self.keep_mask(labels, &[n, 1], p);
        labels * mask.to_kind(labels.kind())
    }
}
