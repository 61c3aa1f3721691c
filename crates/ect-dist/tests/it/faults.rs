//! A peer that dies or stalls mid-collective: the survivors return an error naming it within the
//! configured timeout, never hang.

use crate::common::{kill9, spawn_workers};
use std::time::{Duration, Instant};

/// The collective timeout of these tests.
const TIMEOUT_S: f64 = 8.0;

fn elapsed_in(line: &str) -> f64 {
    line.split("after ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no elapsed time in {line:?}"))
}

#[test]
fn a_killed_peer_is_named_by_the_survivor_within_the_timeout() {
    let timeout = TIMEOUT_S.to_string();
    let mut workers = spawn_workers(2, &["--timeout-s", &timeout, "stall", "--rank", "1"], &[]);
    workers[1].wait_for_line("rank 1 stalling", Duration::from_secs(120));
    workers[0].wait_for_line("rank 0 entering all_reduce", Duration::from_secs(30));
    // Let rank 0 block inside the collective, then kill its peer.
    std::thread::sleep(Duration::from_millis(500));
    kill9(&workers[1]);
    let killed = Instant::now();
    let survivor = workers.remove(0);
    let out = survivor.finish(Duration::from_secs(60));
    let waited = killed.elapsed().as_secs_f64();
    assert_eq!(out.status.code(), Some(3), "{}\n{}", out.stdout, out.stderr);
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("all_reduce failed"))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(
        line.contains("rank 0: all_reduce failed: lost peer rank 1 (its process stopped"),
        "{line}"
    );
    // The closed connection is seen at once; naming the peer costs three heartbeat periods (0.4 s each
    // for an 8 s timeout). Well within the timeout even on a loaded machine.
    assert!(
        waited < TIMEOUT_S,
        "survivor exited {waited:.2} s after the kill: {line}"
    );
    assert!(elapsed_in(line) < TIMEOUT_S + 1.0, "{line}");
    // Afterwards the group refuses work instead of hanging.
    assert!(
        out.stdout
            .contains("rank 0 then: rank 0: barrier refused: the process group failed earlier"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_killed_store_host_is_named_too() {
    let timeout = TIMEOUT_S.to_string();
    let mut workers = spawn_workers(2, &["--timeout-s", &timeout, "stall", "--rank", "0"], &[]);
    workers[0].wait_for_line("rank 0 stalling", Duration::from_secs(120));
    workers[1].wait_for_line("rank 1 entering all_reduce", Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    kill9(&workers[0]);
    let killed = Instant::now();
    let survivor = workers.remove(1);
    let out = survivor.finish(Duration::from_secs(60));
    let waited = killed.elapsed().as_secs_f64();
    assert_eq!(out.status.code(), Some(3), "{}\n{}", out.stdout, out.stderr);
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("all_reduce failed"))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(line.contains("lost peer rank 0"), "{line}");
    assert!(
        line.contains("the rendezvous store hosted by rank 0 is unreachable")
            || line.contains("its process stopped"),
        "{line}"
    );
    assert!(
        waited < TIMEOUT_S,
        "survivor exited {waited:.2} s after the kill: {line}"
    );
}

#[test]
fn a_stalled_peer_times_out_and_is_reported_alive() {
    let mut workers = spawn_workers(
        2,
        &["--timeout-s", "3", "stall", "--rank", "1", "--secs", "60"],
        &[],
    );
    workers[1].wait_for_line("rank 1 stalling", Duration::from_secs(120));
    let survivor = workers.remove(0);
    let out = survivor.finish(Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(3), "{}\n{}", out.stdout, out.stderr);
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("all_reduce failed"))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    let elapsed = elapsed_in(line);
    // The collective waits out its 3 s timeout, then three heartbeat periods (0.15 s each) of diagnosis.
    assert!((2.9..3.0 + 2.0).contains(&elapsed), "{elapsed} s: {line}");
    assert!(
        line.contains(
            "every peer's heartbeat is alive, so a peer is stalled or not calling all_reduce"
        ),
        "{line}"
    );
}
