//! The order images are drawn in: an infinite stream made of one fresh shuffle per epoch, and an x-flip
//! bit per stream position, both from ChaCha keyed by the seed with the epoch as the stream number. Any
//! position of the stream is therefore computable on its own, so the order is the same whatever the
//! thread count and training can resume at any image count.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A ChaCha generator for `(seed, epoch, purpose)`; purposes get separate streams.
fn rng(seed: u64, epoch: u64, purpose: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(epoch.wrapping_mul(2).wrapping_add(purpose));
    r
}

/// A uniform integer in `0..s` (Lemire's multiply-and-reject; written out so the order never depends
/// on a `rand` version's sampling code).
fn below(r: &mut ChaCha8Rng, s: u64) -> u64 {
    let threshold = s.wrapping_neg() % s;
    loop {
        let m = (r.next_u64() as u128) * (s as u128);
        if (m as u64) >= threshold {
            return (m >> 64) as u64;
        }
    }
}

/// The order of the `n` images in `epoch`: a Fisher-Yates shuffle of `0..n`.
pub fn epoch_permutation(seed: u64, epoch: u64, n: usize) -> Vec<u32> {
    let mut perm: Vec<u32> = (0..n as u32).collect();
    let mut r = rng(seed, epoch, 0);
    for i in (1..n).rev() {
        let j = below(&mut r, i as u64 + 1) as usize;
        perm.swap(i, j);
    }
    perm
}

/// Whether each position of `epoch` is mirrored left-right (probability 1/2 each).
pub fn epoch_flips(seed: u64, epoch: u64, n: usize) -> Vec<bool> {
    let mut r = rng(seed, epoch, 1);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let bits = r.next_u64();
        out.extend((0..64).map(|b| bits >> b & 1 == 1).take(n - out.len()));
    }
    out
}

/// Positions of the infinite stream mapped to dataset indices and flips, one epoch cached.
#[derive(Debug, Clone)]
pub struct Sampler {
    n: usize,
    seed: u64,
    epoch: Option<u64>,
    perm: Vec<u32>,
    flips: Vec<bool>,
}

impl Sampler {
    /// The stream over `n` images for `seed`.
    ///
    /// # Panics
    /// When `n` is 0 ([`crate::loader::Loader::new`] rejects empty datasets before getting here).
    pub fn new(n: usize, seed: u64) -> Self {
        assert!(n > 0, "a sampler needs at least one image");
        Sampler {
            n,
            seed,
            epoch: None,
            perm: Vec::new(),
            flips: Vec::new(),
        }
    }

    /// The dataset index and flip bit at stream position `pos` (= images seen before it).
    pub fn at(&mut self, pos: u64) -> (usize, bool) {
        let epoch = pos / self.n as u64;
        if self.epoch != Some(epoch) {
            self.perm = epoch_permutation(self.seed, epoch, self.n);
            self.flips = epoch_flips(self.seed, epoch, self.n);
            self.epoch = Some(epoch);
        }
        let k = (pos % self.n as u64) as usize;
        (self.perm[k] as usize, self.flips[k])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn every_epoch_is_a_permutation(n in 1usize..500, seed in any::<u64>(), epoch in 0u64..1000) {
            let mut p = epoch_permutation(seed, epoch, n);
            p.sort_unstable();
            prop_assert!(p.iter().enumerate().all(|(i, &x)| x as usize == i));
        }

        #[test]
        fn below_stays_in_range(s in 1u64..u64::MAX, seed in any::<u64>()) {
            let mut r = rng(seed, 0, 0);
            prop_assert!(below(&mut r, s) < s);
        }
    }

    #[test]
    fn epochs_and_seeds_shuffle_differently() {
        let a = epoch_permutation(1, 0, 1000);
        assert_ne!(a, epoch_permutation(1, 1, 1000));
        assert_ne!(a, epoch_permutation(2, 0, 1000));
        assert_eq!(a, epoch_permutation(1, 0, 1000));
        let flips = epoch_flips(5, 3, 10_000);
        let ones = flips.iter().filter(|&&f| f).count();
        assert!((4800..5200).contains(&ones), "{ones}");
    }
}
