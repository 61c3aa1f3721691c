//! Worker processes for the multi-process tests: `ect-dist-check` (built by Cargo for these tests) run
//! as N ranks with the rendezvous environment of `ect_dist::launch::worker_env`, their output captured
//! line by line so that a test can act when a rank reaches a point.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The worker program.
pub const CHECK: &str = env!("CARGO_BIN_EXE_ect-dist-check");

/// One running rank.
pub struct Worker {
    pub rank: usize,
    child: Child,
    lines: Receiver<String>,
    stdout: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

/// How a worker ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Worker {
    /// Waits until a line of stdout contains `pattern`; panics with the output so far after `timeout`.
    pub fn wait_for_line(&mut self, pattern: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        if let Some(line) = self.stdout.iter().find(|l| l.contains(pattern)) {
            return line.clone();
        }
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.stdout.push(line.clone());
                    if line.contains(pattern) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "rank {} printed no line with {pattern:?} within {timeout:?}; stdout: {:?}; stderr: {}",
            self.rank,
            self.stdout,
            self.stderr.lock().unwrap()
        );
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the worker to exit; kills it and panics after `timeout`.
    pub fn finish(mut self, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "rank {} did not exit within {timeout:?}; stdout: {:?}; stderr: {}",
                    self.rank,
                    self.stdout,
                    self.stderr.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader threads end at EOF, right after the exit.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.stdout.push(line);
        }
        std::thread::sleep(Duration::from_millis(50));
        let stderr = self.stderr.lock().unwrap().clone();
        Finished {
            status,
            stdout: self.stdout.join("\n"),
            stderr,
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Never leave a worker behind when a test fails.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `nproc` ranks of `ect-dist-check args...` on 127.0.0.1 with a free port.
pub fn spawn_workers(nproc: usize, args: &[&str], extra_env: &[(&str, &str)]) -> Vec<Worker> {
    let port = ect_dist::launch::free_port().unwrap();
    (0..nproc)
        .map(|rank| {
            let mut cmd = Command::new(CHECK);
            cmd.args(args)
                .envs(ect_dist::launch::worker_env(rank, nproc, port, "test"))
                .env("OMP_NUM_THREADS", "1")
                .envs(extra_env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = cmd.spawn().unwrap();
            let (tx, lines) = mpsc::channel();
            let out = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            let stderr = Arc::new(Mutex::new(String::new()));
            let sink = Arc::clone(&stderr);
            let mut err = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = err.read_to_string(&mut text);
                sink.lock().unwrap().push_str(&text);
            });
            Worker {
                rank,
                child,
                lines,
                stdout: Vec::new(),
                stderr,
            }
        })
        .collect()
}

/// Sends SIGKILL to a worker.
pub fn kill9(worker: &Worker) {
    // SAFETY: plain system call on a child we own.
    let rc = unsafe { libc::kill(worker.pid() as libc::pid_t, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill -9 rank {}", worker.rank);
}
