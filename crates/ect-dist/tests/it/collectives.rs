//! Two ranks over Gloo on 127.0.0.1: every collective's numbers, as `ect-dist-check check` verifies and
//! reports them.

use crate::common::spawn_workers;
use std::time::Duration;

fn field<'a>(stdout: &'a str, key: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key:?} line in {stdout}"))
        .split_whitespace()
        .collect()
}

/// Runs `ect-dist-check check` as `nproc` ranks; every rank must succeed. Returns rank 0's stdout.
fn run_check(nproc: usize) -> String {
    let workers = spawn_workers(nproc, &["--timeout-s", "60", "check"], &[]);
    let mut outputs: Vec<_> = workers
        .into_iter()
        .map(|w| w.finish(Duration::from_secs(180)))
        .collect();
    for (rank, out) in outputs.iter().enumerate() {
        assert!(
            out.status.success(),
            "rank {rank}: {:?}\n{}\n{}",
            out.status,
            out.stdout,
            out.stderr
        );
    }
    outputs.remove(0).stdout
}

#[test]
fn two_ranks_reduce_broadcast_and_synchronise_exactly() {
    let out = run_check(2);
    assert!(
        out.contains(
            "joined: world_size=2 launcher=torchrun store=Some(Rank0) backend=Gloo device=Cpu"
        ),
        "{out}"
    );
    for name in [
        "all_reduce_sum",
        "all_reduce_mean",
        "all_reduce_max",
        "bucketed_sum",
        "bucketed_mean",
        "broadcast",
    ] {
        let err: f64 = field(&out, &format!("max_abs_error {name} "))[0]
            .parse()
            .unwrap();
        assert_eq!(err, 0.0, "{name}");
    }
    // Ranks 0 and 1 sent [r, 1, r^2, 0.5] and [r, 10 - r].
    assert_eq!(field(&out, "scalars_sum "), ["1", "2", "1", "1"]);
    assert_eq!(field(&out, "scalars_max "), ["1", "10"]);
}

#[test]
fn three_ranks_agree_too() {
    let out = run_check(3);
    assert_eq!(field(&out, "scalars_sum "), ["3", "3", "5", "1.5"]);
    assert_eq!(field(&out, "scalars_max "), ["2", "10"]);
}
