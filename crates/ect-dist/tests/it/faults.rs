//! A peer that dies or stalls mid-collective: the survivors return an error naming it within the
//! configured timeout, never hang.

use crate::common::{kill9, spawn_workers, Finished};
use std::time::{Duration, Instant};

/// The collective timeout of the kill tests.
const TIMEOUT_S: f64 = 8.0;

/// The seconds a worker's "... after <secs> s ..." line reports.
fn elapsed_in(line: &str) -> f64 {
    line.split("after ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no elapsed time in {line:?}"))
}

/// The survivor's report of its failed all-reduce; it must have exited with the stall scenario's code 3.
fn failure_line(out: &Finished) -> String {
    assert_eq!(out.status.code(), Some(3), "{}\n{}", out.stdout, out.stderr);
    out.stdout
        .lines()
        .find(|l| l.contains("all_reduce failed"))
        .unwrap_or_else(|| panic!("{}", out.stdout))
        .to_owned()
}

/// Two ranks; rank `stalled` sleeps while the other enters an all-reduce, then is killed with SIGKILL.
/// Returns the survivor's output and the seconds from the kill to the survivor's exit.
fn kill_mid_collective(stalled: usize) -> (Finished, f64) {
    let timeout = TIMEOUT_S.to_string();
    let args = [
        "--timeout-s",
        &timeout,
        "stall",
        "--rank",
        &stalled.to_string(),
    ];
    let mut workers = spawn_workers(2, &args, &[]);
    let survivor = 1 - stalled;
    workers[stalled].wait_for_line(
        &format!("rank {stalled} stalling"),
        Duration::from_secs(120),
    );
    workers[survivor].wait_for_line(
        &format!("rank {survivor} entering all_reduce"),
        Duration::from_secs(30),
    );
    // Let the survivor block inside the collective, then kill its peer.
    std::thread::sleep(Duration::from_millis(500));
    kill9(&workers[stalled]);
    let killed = Instant::now();
    let out = workers.remove(survivor).finish(Duration::from_secs(60));
    (out, killed.elapsed().as_secs_f64())
}

#[test]
fn a_killed_peer_is_named_by_the_survivor_within_the_timeout() {
    let (out, waited) = kill_mid_collective(1);
    let line = failure_line(&out);
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
    assert!(elapsed_in(&line) < TIMEOUT_S + 1.0, "{line}");
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
    let (out, waited) = kill_mid_collective(0);
    let line = failure_line(&out);
    assert!(
        line.contains("rank 1: all_reduce failed: lost peer rank 0"),
        "{line}"
    );
    // Rank 0 hosted the store, so the heartbeats are gone with it.
    assert!(
        line.contains("the rendezvous store hosted by rank 0 is unreachable"),
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
    let out = workers.remove(0).finish(Duration::from_secs(60));
    let line = failure_line(&out);
    let elapsed = elapsed_in(&line);
    // The collective waits out its 3 s timeout, then three heartbeat periods (0.15 s each) of diagnosis.
    assert!((2.9..3.0 + 2.0).contains(&elapsed), "{elapsed} s: {line}");
    assert!(
        line.contains(
            "every peer's heartbeat is alive, so a peer is stalled or not calling all_reduce"
        ),
        "{line}"
    );
}
