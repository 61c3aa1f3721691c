//! Dropout whose masks can be recorded in one forward pass and replayed in another.
//!
//! ECT's teacher pass `f(x_r, r)` must see the same dropout masks as the student pass `f(x_t, t)`
//! (docs/method.md §3, step 5). The reference gets that by saving and restoring the CUDA RNG state;
//! tch cannot, so the student pass records its masks on a [`MaskTape`] and the teacher pass replays them.

use std::cell::{Cell, RefCell};

use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

/// Masks recorded in one pass, replayable in another, in call order.
///
/// Activation masks are stored already scaled (0 or `1 / (1 - p)`, in the activation's kind); label
/// masks as `bool`.
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
        self.mask_from_tape_or(shape, || {
            Tensor::rand(shape, (Kind::Float, like.device())).ge(p)
        })
    }

    /// Replays the next mask of the tape, or makes a fresh one (recording it when recording).
    fn mask_from_tape_or(&self, shape: &[i64], fresh: impl FnOnce() -> Tensor) -> Tensor {
        match self {
            DropoutMode::Replay(tape) => tape.next(shape),
            DropoutMode::Record(tape) => {
                let m = fresh();
                tape.push(&m);
                m
            }
            DropoutMode::Sample => fresh(),
            DropoutMode::Off => unreachable!("masks are only drawn in training passes"),
        }
    }

    /// Inverted dropout (`torch.nn.functional.dropout`): zeroes elements with probability `p` and
    /// scales the rest by `1 / (1 - p)`.
    ///
    /// The mask is drawn once, already scaled, so applying it is one multiplication. On the CPU it is
    /// drawn in parallel by [`cpu_scaled_keep_mask`] (libtorch's uniform sampler is serial and was
    /// the largest single cost of a small network's training step); elsewhere by libtorch.
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
        let shape = x.size();
        let scale = 1.0 / (1.0 - p);
        let mask = self.mask_from_tape_or(&shape, || {
            if x.device() == Device::Cpu && x.kind() == Kind::Float {
                cpu_scaled_keep_mask(&shape, p)
            } else {
                Tensor::rand(shape.as_slice(), (Kind::Float, x.device()))
                    .ge(p)
                    .to_kind(x.kind())
                    * scale
            }
        });
        x * mask
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

/// A float CPU tensor of `shape` whose elements are `1 / (1 - p)` with probability `1 - p` and 0
/// otherwise, drawn in parallel.
///
/// The randomness is one 64-bit seed drawn from libtorch's CPU generator (so `tch::manual_seed`
/// reproduces the mask, as it does every other draw), expanded by a counter-based SplitMix64 stream:
/// element `i` depends only on the seed and `i`, so the mask is the same for any thread count.
pub fn cpu_scaled_keep_mask(shape: &[i64], p: f64) -> Tensor {
    let seed = Tensor::randint(i64::MAX, [1], (Kind::Int64, Device::Cpu)).int64_value(&[0]) as u64;
    Tensor::from_slice(&scaled_keep_values(seed, shape, p)).view(shape)
}

/// The values of [`cpu_scaled_keep_mask`] for a given seed, in row-major order.
fn scaled_keep_values(seed: u64, shape: &[i64], p: f64) -> Vec<f32> {
    let n: usize = shape.iter().map(|&d| d as usize).product();
    // Keep when a uniform 32-bit draw is >= p * 2^32: probability 1 - p to within 2^-32.
    let threshold = (p.clamp(0.0, 1.0) * 4_294_967_296.0).round() as u64;
    let scale = (1.0 / (1.0 - p)) as f32;
    let mut values = vec![0f32; n];
    const CHUNK: usize = 1 << 15; // even, so every chunk starts at a pair boundary
    values
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(chunk_index, chunk)| {
            let first_pair = (chunk_index * CHUNK / 2) as u64;
            for (j, pair) in chunk.chunks_mut(2).enumerate() {
                let bits = splitmix64(
                    seed.wrapping_add((first_pair + j as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                );
                for (k, v) in pair.iter_mut().enumerate() {
                    let draw = (bits >> (32 * k)) & 0xFFFF_FFFF;
                    *v = if draw >= threshold { scale } else { 0.0 };
                }
            }
        });
    values
}

/// SplitMix64's output function: a bijective mix of 64 bits.
fn splitmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_mask_is_independent_of_thread_count_and_keeps_1_minus_p() {
        let shape = [3, 5, 101, 97]; // odd sizes: the last chunk ends mid-pair
        let p = 0.3;
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let four = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        let a = one.install(|| scaled_keep_values(42, &shape, p));
        let b = four.install(|| scaled_keep_values(42, &shape, p));
        assert_eq!(a, b);
        let scale = (1.0 / (1.0 - p)) as f32;
        assert!(a.iter().all(|&v| v == 0.0 || v == scale));
        let kept = a.iter().filter(|&&v| v != 0.0).count() as f64 / a.len() as f64;
        // n = 146,955: the standard error of the kept fraction is 0.0012.
        assert!((kept - 0.7).abs() < 0.006, "kept fraction {kept}");
        assert_ne!(a, scaled_keep_values(43, &shape, p), "the seed must matter");
        // Neighbouring elements are not correlated (both halves of one draw are used).
        let both = a.windows(2).filter(|w| w[0] != 0.0 && w[1] != 0.0).count() as f64;
        let pairs = (a.len() - 1) as f64;
        assert!(
            (both / pairs - 0.49).abs() < 0.008,
            "P(keep, keep) {}",
            both / pairs
        );
    }

    #[test]
    fn extreme_probabilities() {
        assert!(scaled_keep_values(1, &[1000], 0.0)
            .iter()
            .all(|&v| v == 1.0));
        let tiny = scaled_keep_values(1, &[1000], 1e-12);
        assert!(tiny.iter().all(|&v| v == 1.0));
    }
}
