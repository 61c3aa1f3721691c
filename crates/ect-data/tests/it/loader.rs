//! The seeded loader: the same batches whatever the thread count, exact resume, each image once per
//! epoch, flips and cache.

use crate::common;

use std::collections::HashSet;
use std::sync::Arc;

use ect_data::loader::{Batch, Loader, LoaderConfig, StreamShard};
use ect_data::{Dataset, InMemoryDataset};

/// 53 images of 3x4x5 (a prime count, so batches straddle epochs), labels 0..7.
fn dataset() -> Arc<dyn Dataset> {
    let n = 53;
    let px = common::bytes(n * 60, 9);
    let labels = (0..n as u32).map(|i| i % 7).collect();
    Arc::new(InMemoryDataset::new("mem", [3, 4, 5], px, Some(labels), None).unwrap())
}

fn batches(cfg: LoaderConfig, count: usize) -> Vec<Batch> {
    let mut loader = Loader::new(dataset(), cfg).unwrap();
    (0..count).map(|_| loader.next_batch().unwrap()).collect()
}

fn cfg(threads: usize) -> LoaderConfig {
    LoaderConfig {
        batch_size: 8,
        seed: 42,
        xflip: true,
        prefetch: 2,
        threads,
        ..Default::default()
    }
}

#[test]
fn batches_do_not_depend_on_the_thread_count() {
    let one = batches(cfg(1), 20);
    assert_eq!(one, batches(cfg(2), 20));
    assert_eq!(one, batches(cfg(4), 20));
    let other_seed = batches(LoaderConfig { seed: 43, ..cfg(2) }, 20);
    assert_ne!(one[0].indices, other_seed[0].indices);
}

#[test]
fn resume_gives_the_exact_next_batches() {
    let full = batches(cfg(2), 12);
    let mut loader = Loader::new(
        dataset(),
        LoaderConfig {
            start_images_seen: 5 * 8,
            ..cfg(2)
        },
    )
    .unwrap();
    assert_eq!(loader.images_seen(), 40);
    for b in &full[5..] {
        assert_eq!(&loader.next_batch().unwrap(), b);
    }
    assert_eq!(loader.images_seen(), 12 * 8);
    // A position that is not a multiple of the batch size resumes mid-stream.
    let mut loader = Loader::new(
        dataset(),
        LoaderConfig {
            start_images_seen: 13,
            ..cfg(1)
        },
    )
    .unwrap();
    let b = loader.next_batch().unwrap();
    assert_eq!(b.first_image, 13);
    let stream: Vec<u64> = full.iter().flat_map(|b| b.indices.clone()).collect();
    assert_eq!(b.indices, stream[13..21]);
}

#[test]
fn each_epoch_shows_every_image_exactly_once() {
    let all = batches(
        LoaderConfig {
            xflip: false,
            ..cfg(2)
        },
        40,
    ); // 320 images = 6 epochs of 53 + 2
    let stream: Vec<u64> = all.iter().flat_map(|b| b.indices.clone()).collect();
    let epochs: Vec<&[u64]> = stream.chunks(53).take(6).collect();
    for e in &epochs {
        let set: HashSet<u64> = e.iter().copied().collect();
        assert_eq!(set.len(), 53);
        assert!(set.iter().all(|&i| i < 53));
    }
    assert_ne!(epochs[0], epochs[1], "each epoch gets a fresh shuffle");
}

#[test]
fn images_labels_and_flips_match_the_dataset() {
    let ds = dataset();
    let all = batches(cfg(2), 10);
    let mut flips = 0;
    for b in &all {
        assert_eq!((b.n, b.c, b.h, b.w, b.label_dim), (8, 3, 4, 5, 7));
        for k in 0..b.n {
            let i = b.indices[k] as usize;
            let mut want = ds.image(i).unwrap();
            if b.flipped[k] {
                flips += 1;
                ect_data::loader::flip_x(&mut want, 5);
            }
            assert_eq!(b.image(k), &want[..]);
            assert_eq!(b.labels[k], i as u32 % 7);
            let hot = &b.one_hot()[k * 7..(k + 1) * 7];
            assert_eq!(hot.iter().sum::<f32>(), 1.0);
            assert_eq!(hot[b.labels[k] as usize], 1.0);
        }
    }
    assert!((20..60).contains(&flips), "{flips} of 80 flipped");
    let no_flip = batches(
        LoaderConfig {
            xflip: false,
            ..cfg(2)
        },
        10,
    );
    assert!(no_flip.iter().all(|b| b.flipped.iter().all(|&f| !f)));
    assert_eq!(
        no_flip[3].indices, all[3].indices,
        "flips do not change the order"
    );
}

#[test]
fn the_cache_changes_nothing_but_speed_and_stats_are_reported() {
    let plain = batches(cfg(2), 15);
    let mut loader = Loader::new(
        dataset(),
        LoaderConfig {
            cache: true,
            ..cfg(2)
        },
    )
    .unwrap();
    for b in &plain {
        assert_eq!(&loader.next_batch().unwrap(), b);
    }
    let st = loader.stats();
    assert_eq!((st.images, st.batches), (120, 15));
    assert!(st.elapsed_secs > 0.0 && st.images_per_sec > 0.0);
    assert!(st.consumer_wait_secs >= 0.0 && st.consumer_wait_secs <= st.elapsed_secs);
}

#[test]
fn bad_configs_are_errors() {
    let err = Loader::new(
        dataset(),
        LoaderConfig {
            batch_size: 0,
            ..cfg(1)
        },
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("batch_size"), "{err}");
    let empty: Arc<dyn Dataset> =
        Arc::new(InMemoryDataset::new("empty.bin", [1, 2, 2], vec![], None, None).unwrap());
    let err = Loader::new(empty, cfg(1)).err().unwrap();
    assert!(err.to_string().contains("empty.bin"), "{err}");
}

/// The stream of one process, as stream positions and the dataset indices and flips there.
fn stream_of(all: &[Batch]) -> Vec<(u64, u64, bool)> {
    all.iter()
        .flat_map(|b| (0..b.n).map(move |k| (b.first_image + k as u64, b.indices[k], b.flipped[k])))
        .collect()
}

/// Three processes with shards of 8 images of a global batch of 24, read in batches of 4, together
/// read exactly the one-process stream, each image where the one-process loader has it, and resume
/// from a step boundary with the exact next batches.
#[test]
fn shards_partition_every_global_batch_of_the_one_process_stream() {
    let (global, world, micro, steps) = (24usize, 3usize, 4usize, 7usize);
    let whole = stream_of(&batches(
        LoaderConfig {
            batch_size: global,
            ..cfg(2)
        },
        steps,
    ));
    let per_step = global / world / micro;
    let mut merged = Vec::new();
    for rank in 0..world {
        let shard = StreamShard::equal(rank, world, global);
        assert_eq!((shard.offset, shard.len), (rank * 8, 8));
        let sharded = LoaderConfig {
            batch_size: micro,
            shard: Some(shard),
            ..cfg(rank + 1)
        };
        let mut loader = Loader::new(dataset(), sharded.clone()).unwrap();
        let mut mine = Vec::new();
        for k in 0..steps * per_step {
            mine.push(loader.next_batch().unwrap());
            // Mid-step the position is that of the step in progress's end; all ranks agree on it.
            assert_eq!(
                loader.images_seen(),
                (k / per_step + 1) as u64 * global as u64
            );
        }
        for (step, chunk) in mine.chunks(per_step).enumerate() {
            let want = &whole[step * global + rank * 8..step * global + rank * 8 + 8];
            assert_eq!(stream_of(chunk), want, "rank {rank}, step {step}");
        }
        // Resumed at the start of step 3, the loader reads the rest of this rank's shards.
        let mut resumed = Loader::new(
            dataset(),
            LoaderConfig {
                start_images_seen: 3 * global as u64,
                ..sharded.clone()
            },
        )
        .unwrap();
        assert_eq!(resumed.images_seen(), 3 * global as u64);
        for b in &mine[3 * per_step..] {
            assert_eq!(&resumed.next_batch().unwrap(), b);
        }
        // The cache and the thread count change nothing.
        let mut cached = Loader::new(
            dataset(),
            LoaderConfig {
                cache: true,
                threads: 1,
                ..sharded
            },
        )
        .unwrap();
        for b in &mine {
            assert_eq!(&cached.next_batch().unwrap(), b);
        }
        merged.extend(stream_of(&mine));
    }
    merged.sort();
    assert_eq!(merged, whole);
}

#[test]
fn shards_the_batch_size_does_not_divide_are_errors() {
    let bad = [
        StreamShard {
            global_batch: 24,
            offset: 0,
            len: 6,
        },
        StreamShard {
            global_batch: 24,
            offset: 0,
            len: 0,
        },
        StreamShard {
            global_batch: 24,
            offset: 20,
            len: 8,
        },
        StreamShard {
            global_batch: 24,
            offset: usize::MAX,
            len: 8,
        },
    ];
    for shard in bad {
        let err = Loader::new(
            dataset(),
            LoaderConfig {
                batch_size: 4,
                shard: Some(shard),
                ..cfg(1)
            },
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("shard"), "{shard:?}: {err}");
    }
}

/// Counts the images decoded, so a test can see how far the producer runs ahead of the consumer.
struct Counting {
    inner: Arc<dyn Dataset>,
    decoded: Arc<std::sync::atomic::AtomicUsize>,
}

impl Dataset for Counting {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn channels(&self) -> usize {
        self.inner.channels()
    }
    fn height(&self) -> usize {
        self.inner.height()
    }
    fn width(&self) -> usize {
        self.inner.width()
    }
    fn label_dim(&self) -> usize {
        self.inner.label_dim()
    }
    fn source(&self) -> &std::path::Path {
        self.inner.source()
    }
    fn image_into(&self, index: usize, out: &mut [u8]) -> ect_data::Result<()> {
        self.decoded
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.image_into(index, out)
    }
    fn label(&self, index: usize) -> Option<u32> {
        self.inner.label(index)
    }
}

/// Memory stays bounded: with a consumer that does not keep up, the producer decodes exactly
/// `prefetch` queued batches plus the one waiting to be queued, and one more per batch taken, so at
/// most `prefetch + 2` batches exist at once (queued, waiting, held by the consumer).
#[test]
fn the_producer_stops_prefetch_plus_one_batches_ahead() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};
    let decoded = Arc::new(AtomicUsize::new(0));
    let ds: Arc<dyn Dataset> = Arc::new(Counting {
        inner: dataset(),
        decoded: decoded.clone(),
    });
    let (batch, prefetch) = (8usize, 3usize);
    let mut loader = Loader::new(
        ds,
        LoaderConfig {
            batch_size: batch,
            prefetch,
            threads: 2,
            ..Default::default()
        },
    )
    .unwrap();
    // Waits until the count stops moving, then checks where it stopped.
    let settled = |want: usize| {
        let start = Instant::now();
        while decoded.load(Ordering::SeqCst) < want && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(300));
        decoded.load(Ordering::SeqCst)
    };
    assert_eq!(settled((prefetch + 1) * batch), (prefetch + 1) * batch);
    for taken in 1..=5 {
        let b = loader.next_batch().unwrap();
        assert_eq!(b.n, batch);
        let ahead = settled((prefetch + 1 + taken) * batch) - taken * batch;
        assert_eq!(
            ahead,
            (prefetch + 1) * batch,
            "images decoded but not yet taken after {taken} batches"
        );
    }
}
