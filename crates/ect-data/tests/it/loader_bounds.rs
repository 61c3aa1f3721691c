//! Issue 15: the loader's resources are bounded: more than `MAX_LOADER_THREADS` decoding threads or
//! `MAX_PREFETCH` queued batches is an error saying the bound, returned at once (no thread is created),
//! and a batch too large to allocate is an error, not an abort.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ect_data::loader::{Loader, LoaderConfig, MAX_LOADER_THREADS, MAX_PREFETCH};
use ect_data::{Dataset, InMemoryDataset};

fn tiny() -> Arc<dyn Dataset> {
    Arc::new(InMemoryDataset::new("tiny", [1, 2, 2], vec![7; 40], None, None).unwrap())
}

fn err(cfg: LoaderConfig) -> String {
    let t = Instant::now();
    let e = Loader::new(tiny(), cfg)
        .err()
        .expect("must be refused")
        .to_string();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    e
}

#[test]
fn thread_and_prefetch_counts_are_bounded() {
    assert_eq!(MAX_LOADER_THREADS, 1024);
    for threads in [MAX_LOADER_THREADS + 1, 100_000, usize::MAX] {
        let e = err(LoaderConfig {
            threads,
            ..Default::default()
        });
        assert!(
            e.contains("threads") && e.contains(&threads.to_string()) && e.contains("1024"),
            "{e}"
        );
    }
    for prefetch in [MAX_PREFETCH + 1, usize::MAX] {
        let e = err(LoaderConfig {
            prefetch,
            ..Default::default()
        });
        assert!(
            e.contains("prefetch") && e.contains(&MAX_PREFETCH.to_string()),
            "{e}"
        );
    }
    // A batch whose size overflows or cannot be allocated.
    for batch_size in [usize::MAX / 2, 1 << 60] {
        let e = err(LoaderConfig {
            batch_size,
            ..Default::default()
        });
        assert!(
            e.contains("batch_size") && e.contains("does not fit"),
            "{e}"
        );
    }
    // The bounds themselves are accepted.
    let mut l = Loader::new(
        tiny(),
        LoaderConfig {
            threads: 2,
            prefetch: MAX_PREFETCH,
            batch_size: 3,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(l.next_batch().unwrap().images, vec![7; 12]);
}
