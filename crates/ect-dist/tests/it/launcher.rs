//! `ect_dist::launch` with tiny `sh` workers: the environment each gets, a failing rank stopping the
//! others, a forwarded signal, and a real 2-rank run of `ect-dist-check`.

use crate::common::CHECK;
use ect_dist::launch::{launch, launch_with_exits, LaunchError, LaunchSpec, WorkerExit};
use std::time::{Duration, Instant};

fn sh(script: &str, nproc: usize) -> LaunchSpec {
    LaunchSpec::new("/bin/sh", ["-c", script], nproc)
}

#[test]
fn workers_get_the_torchrun_environment() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = sh(
        "echo \"$RANK $LOCAL_RANK $WORLD_SIZE $LOCAL_WORLD_SIZE $GROUP_RANK $MASTER_ADDR $MASTER_PORT \
         $TORCHELASTIC_USE_AGENT_STORE $OMP_NUM_THREADS $EXTRA\" > \"$OUT/$RANK\"",
        3,
    );
    spec.master_port = Some(41234);
    spec.env.push(("OUT".into(), dir.path().into()));
    spec.env.push(("EXTRA".into(), "x".into()));
    launch(&spec).unwrap();
    for rank in 0..3 {
        let line = std::fs::read_to_string(dir.path().join(rank.to_string())).unwrap();
        let omp = std::env::var("OMP_NUM_THREADS").unwrap_or_else(|_| "1".into());
        assert_eq!(
            line.trim(),
            format!("{rank} {rank} 3 3 0 127.0.0.1 41234 False {omp} x")
        );
    }
}

#[test]
fn a_failing_rank_stops_the_others_and_is_named() {
    // Rank 1 fails with code 3 once the others are up; ranks 0 and 2 would otherwise sleep for a minute.
    let spec = sh(
        "if [ \"$RANK\" = 1 ]; then sleep 0.3; exit 3; fi; sleep 60",
        3,
    );
    let started = Instant::now();
    let err = launch(&spec).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    match &err {
        LaunchError::WorkerFailed { rank, exit, others } => {
            assert_eq!((*rank, *exit), (1, WorkerExit::Code(3)));
            assert_eq!(
                others,
                &[
                    (0, WorkerExit::Signal(libc::SIGTERM)),
                    (2, WorkerExit::Signal(libc::SIGTERM))
                ]
            );
        }
        other => panic!("{other}"),
    }
    assert_eq!(
        err.to_string(),
        "worker rank 1 failed with exit code 3; the other workers were stopped (rank 0: killed by \
         signal 15 (SIGTERM); rank 2: killed by signal 15 (SIGTERM))"
    );
}

#[test]
fn a_worker_ignoring_sigterm_is_killed_after_the_grace_period() {
    let mut spec = sh(
        "if [ \"$RANK\" = 0 ]; then sleep 0.3; exit 1; fi; trap '' TERM; sleep 60",
        2,
    );
    spec.grace = Duration::from_millis(500);
    let started = Instant::now();
    let err = launch(&spec).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(20));
    match err {
        LaunchError::WorkerFailed {
            rank: 0,
            exit: WorkerExit::Code(1),
            others,
        } => {
            assert_eq!(others, [(1, WorkerExit::Signal(libc::SIGKILL))]);
        }
        other => panic!("{other}"),
    }
}

#[test]
fn a_missing_program_is_a_spawn_error() {
    let err = launch(&LaunchSpec::new("/nonexistent/worker", ["x"], 2)).unwrap_err();
    assert!(matches!(err, LaunchError::Spawn { rank: 0, .. }), "{err}");
    assert!(err
        .to_string()
        .starts_with("cannot start worker rank 0 (/nonexistent/worker)"));
}

#[test]
fn signals_to_the_launcher_reach_every_worker() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = sh(
        "trap 'echo TERM > \"$OUT/got$RANK\"; exit 0' TERM; touch \"$OUT/up$RANK\"; \
         while :; do sleep 0.05; done",
        2,
    );
    spec.env.push(("OUT".into(), dir.path().into()));
    let out = dir.path().to_path_buf();
    let sender = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !(out.join("up0").exists() && out.join("up1").exists()) {
            assert!(Instant::now() < deadline, "workers did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The launcher's handler is installed before the workers start, so this reaches it, not the
        // default action.
        // SAFETY: plain system call.
        unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
    });
    let err = launch(&spec).unwrap_err();
    sender.join().unwrap();
    match err {
        LaunchError::Interrupted { signal, exits } => {
            assert_eq!(signal, libc::SIGTERM);
            assert_eq!(exits, [(0, WorkerExit::Code(0)), (1, WorkerExit::Code(0))]);
        }
        other => panic!("{other}"),
    }
    for rank in 0..2 {
        let got = std::fs::read_to_string(dir.path().join(format!("got{rank}"))).unwrap();
        assert_eq!(got.trim(), "TERM");
    }
}

#[test]
fn the_launcher_runs_a_real_two_rank_check() {
    launch(&LaunchSpec::new(CHECK, ["--timeout-s", "60", "check"], 2)).unwrap();
}

#[test]
fn a_normal_code_leaves_the_others_running() {
    // Rank 0 ends early with code 3 (what `ect train` returns when it stopped with a checkpoint);
    // rank 1 must be left to finish its work and exit 0.
    let mut spec = sh(
        "if [ \"$RANK\" = 0 ]; then exit 3; fi; sleep 0.5; exit 0",
        2,
    );
    spec.normal_codes = vec![3];
    let exits = launch_with_exits(&spec).unwrap();
    assert_eq!(exits, [(0, WorkerExit::Code(3)), (1, WorkerExit::Code(0))]);
    // Without it, code 3 is a failure that stops the others.
    spec.normal_codes.clear();
    match launch_with_exits(&spec) {
        Err(LaunchError::WorkerFailed { rank: 0, exit, .. }) => {
            assert_eq!(exit, WorkerExit::Code(3))
        }
        other => panic!("{other:?}"),
    }
}
