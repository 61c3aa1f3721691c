//! The fuzz target's body ([`ect_pickle::fuzz_one`]) over seeded random mutations of the real
//! fixtures (byte flips, truncations, insertions, splices), for a bounded time: every case returns.
//! `fuzz/` runs the same function under libFuzzer for longer.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::common::{fixture, read, snapshot_fixture};

fn mutate(rng: &mut ChaCha8Rng, base: &[u8]) -> Vec<u8> {
    let mut b = base.to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        if b.is_empty() {
            b.push(rng.gen());
            continue;
        }
        let at = rng.gen_range(0..b.len());
        match rng.gen_range(0..6) {
            0 => b[at] = rng.gen(),
            1 => b[at] ^= 1 << rng.gen_range(0..8),
            2 => b.truncate(at),
            3 => {
                let n = rng.gen_range(1..=8);
                let ins: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
                b.splice(at..at, ins);
            }
            4 => {
                // Interesting operand values: lengths and counts at their extremes.
                let v: [u8; 4] = *[[0xff; 4], [0; 4], [0x7f, 0xff, 0xff, 0xff], [1, 0, 0, 0]]
                    .get(rng.gen_range(0..4))
                    .unwrap();
                let end = (at + 4).min(b.len());
                b[at..end].copy_from_slice(&v[..end - at]);
            }
            _ => {
                // Repeat a slice of the file elsewhere (memo keys, marks, nested containers).
                let len = rng.gen_range(1..=64).min(b.len() - at);
                let piece = b[at..at + len].to_vec();
                let to = rng.gen_range(0..=b.len());
                b.splice(to..to, piece);
            }
        }
    }
    b
}

#[test]
fn mutated_real_files_never_panic() {
    // The small files get most cases; the 864 KB snapshot a few (each case parses all of it).
    let small = [
        "tensors-p0.pkl",
        "tensors-p2.pkl",
        "tensors-p4.pkl",
        "tensors-zip.pt",
        "tensors-legacy.pt",
        "cifar10_py2_batch.pkl",
    ]
    .map(|n| read(&fixture(n)));
    let snapshot = read(&snapshot_fixture("edm-songunet-tiny.pkl"));
    for base in small.iter().chain([&snapshot]) {
        assert!(ect_pickle::fuzz_one(base), "the unmutated file loads");
    }
    let mut rng = ChaCha8Rng::seed_from_u64(16);
    let started = std::time::Instant::now();
    let (mut cases, mut loaded) = (0, 0);
    // At least 3000 cases; stop adding after about 8 s on a slow machine.
    while cases < 3_000 || (cases < 20_000 && started.elapsed().as_secs_f64() < 8.0) {
        let base = if cases % 50 == 49 {
            &snapshot
        } else {
            &small[cases % small.len()]
        };
        let input = mutate(&mut rng, base);
        loaded += ect_pickle::fuzz_one(&input) as usize;
        cases += 1;
        if cases >= 3_000 && started.elapsed().as_secs_f64() > 20.0 {
            break;
        }
    }
    // Some mutations keep the file loadable (e.g. a flipped bit in tensor data): both paths run.
    assert!(loaded > 0 && loaded < cases, "{loaded} of {cases} loaded");
    eprintln!(
        "{cases} mutated inputs ({loaded} loaded) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
