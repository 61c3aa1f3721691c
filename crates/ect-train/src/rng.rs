//! Every random draw of a training step is derived from `(seed, step, stream)`, because tch cannot save or
//! restore libtorch's generator state: reseeding per step makes a resumed run draw exactly what an
//! uninterrupted one would.

use rand_chacha::{rand_core::SeedableRng, ChaCha8Rng};

/// What a derived seed is for; distinct streams never share draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Stream {
    /// Times `t` (and iCT indices), drawn on the CPU with ChaCha8 so they are the same on every device.
    Times = 1,
    /// libtorch's generator for the noise `eps` of the step's global batch (drawn whole, then sliced, so
    /// each sample's noise is the same whatever the number of processes).
    Torch = 2,
    /// Fixed noise of the periodic sample grids.
    Samples = 3,
    /// Network initialisation.
    Init = 4,
    /// Data order (one permutation per epoch).
    Data = 5,
    /// Horizontal flips (one draw per image).
    Flip = 6,
    /// Fixed noise of the periodic evaluation (`[eval]`).
    Eval = 7,
    /// libtorch's generator for the dropout masks of one rank (see [`seed_torch_rank`]).
    Dropout = 8,
}

/// SplitMix64's finalizer: a bijective scramble, so nearby inputs give unrelated seeds.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed of `stream` at `step` of a run seeded with `seed`.
pub fn derive(seed: u64, step: u64, stream: Stream) -> u64 {
    mix(mix(mix(seed) ^ step) ^ stream as u64)
}

/// A ChaCha8 generator for `stream` at `step`.
pub fn rng(seed: u64, step: u64, stream: Stream) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(derive(seed, step, stream))
}

/// Seeds libtorch's global generators (CPU and CUDA) for `stream` at `step`.
pub fn seed_torch(seed: u64, step: u64, stream: Stream) {
    // libtorch takes an i64; the bit pattern is what matters.
    tch::manual_seed(derive(seed, step, stream) as i64);
}

/// Seeds libtorch's global generators for `stream` at `step` on data-parallel rank `rank`: ranks draw
/// distinct streams (dropout masks differ per rank), each a pure function of `(seed, step, rank)`.
pub fn seed_torch_rank(seed: u64, step: u64, stream: Stream, rank: usize) {
    tch::manual_seed(derive_rank(seed, step, stream, rank) as i64);
}

/// The seed of `stream` at `step` on data-parallel rank `rank`.
pub fn derive_rank(seed: u64, step: u64, stream: Stream, rank: usize) -> u64 {
    mix(derive(seed, step, stream) ^ rank as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_and_steps_give_distinct_seeds() {
        let mut seen = std::collections::HashSet::new();
        for step in 0..1000 {
            for s in [
                Stream::Times,
                Stream::Torch,
                Stream::Samples,
                Stream::Init,
                Stream::Data,
                Stream::Flip,
                Stream::Eval,
                Stream::Dropout,
            ] {
                assert!(seen.insert(derive(7, step, s)), "collision at step {step}");
            }
        }
        assert_ne!(derive(0, 0, Stream::Times), derive(1, 0, Stream::Times));
        // Dropout streams: distinct per rank and step, the same on every call.
        let mut ranks = std::collections::HashSet::new();
        for step in 0..100 {
            for rank in 0..8 {
                assert!(ranks.insert(derive_rank(7, step, Stream::Dropout, rank)));
            }
        }
        assert_eq!(
            derive_rank(7, 3, Stream::Dropout, 1),
            derive_rank(7, 3, Stream::Dropout, 1)
        );
        assert_eq!(derive(3, 5, Stream::Torch), derive(3, 5, Stream::Torch));
    }
}
