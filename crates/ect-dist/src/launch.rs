//! A local launcher, like `torchrun --standalone --nproc-per-node N`: starts N worker processes of one
//! program with the rendezvous environment [`crate::DistEnv`] reads, forwards SIGINT, SIGTERM and SIGHUP
//! to them, and when a worker fails, stops the others and reports the rank and its exit status.
//!
//! Each worker runs in its own process group, so a Ctrl-C in the terminal reaches the workers once,
//! through the launcher, as under torchrun; on Linux a worker also receives SIGTERM if the launcher
//! itself dies. No torch here: the workers create their process groups themselves.

use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What to launch.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// The worker program.
    pub program: PathBuf,
    /// Its arguments (the same for every worker).
    pub args: Vec<OsString>,
    /// Number of worker processes (`--nproc-per-node`).
    pub nproc: usize,
    /// The rendezvous port on 127.0.0.1; `None` picks a free one.
    pub master_port: Option<u16>,
    /// After a failure or a forwarded signal, how long the remaining workers get to exit before SIGKILL
    /// (torchrun waits 30 s).
    pub grace: Duration,
    /// Extra environment variables for every worker.
    pub env: Vec<(OsString, OsString)>,
    /// Exit codes besides 0 that end a worker normally, so the others are left to finish (`ect train`
    /// exits with 3 when it stopped early with a checkpoint written).
    pub normal_codes: Vec<i32>,
}

impl LaunchSpec {
    /// `nproc` workers of `program args...`, a free port, a 30 s grace period.
    pub fn new(
        program: impl Into<PathBuf>,
        args: impl IntoIterator<Item = impl Into<OsString>>,
        nproc: usize,
    ) -> Self {
        Self {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            nproc,
            master_port: None,
            grace: Duration::from_secs(30),
            env: Vec::new(),
            normal_codes: Vec::new(),
        }
    }
}

/// How a worker ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerExit {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

impl WorkerExit {
    fn from_status(status: ExitStatus) -> Self {
        match (status.code(), status.signal()) {
            (Some(code), _) => WorkerExit::Code(code),
            (None, Some(sig)) => WorkerExit::Signal(sig),
            (None, None) => WorkerExit::Code(-1),
        }
    }

    /// Whether it exited with code 0.
    pub fn success(self) -> bool {
        self == WorkerExit::Code(0)
    }
}

impl std::fmt::Display for WorkerExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            WorkerExit::Code(code) => write!(f, "exit code {code}"),
            WorkerExit::Signal(sig) => write!(f, "killed by signal {sig} ({})", signal_name(sig)),
        }
    }
}

/// The name of a common signal.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

/// Why a launch did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The spec cannot be run.
    #[error("invalid launch: {0}")]
    Invalid(String),
    /// A worker could not be started (the others that were started have been stopped).
    #[error("cannot start worker rank {rank} ({program}): {source}")]
    Spawn {
        /// The rank.
        rank: usize,
        /// The program.
        program: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A worker failed first; the others were stopped.
    #[error("worker rank {rank} failed with {exit}; the other workers were stopped ({others})", others = describe(others))]
    WorkerFailed {
        /// The first rank that failed.
        rank: usize,
        /// How it ended.
        exit: WorkerExit,
        /// How every other rank ended, by rank.
        others: Vec<(usize, WorkerExit)>,
    },
    /// The launcher received a signal and forwarded it; all workers have ended.
    #[error("interrupted by {name}, forwarded to the workers ({exits})", name = signal_name(*signal), exits = describe(exits))]
    Interrupted {
        /// The first signal received.
        signal: i32,
        /// How every rank ended.
        exits: Vec<(usize, WorkerExit)>,
    },
    /// Waiting for a worker failed.
    #[error("waiting for the workers: {0}")]
    Wait(std::io::Error),
}

fn describe(exits: &[(usize, WorkerExit)]) -> String {
    exits
        .iter()
        .map(|(rank, exit)| format!("rank {rank}: {exit}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The rendezvous environment of local worker `rank` of `nproc`, as `torchrun --standalone` sets it,
/// except that rank 0 hosts the store (`TORCHELASTIC_USE_AGENT_STORE=False`).
pub fn worker_env(rank: usize, nproc: usize, port: u16, run_id: &str) -> Vec<(String, String)> {
    let s = |v: usize| v.to_string();
    vec![
        ("MASTER_ADDR".into(), "127.0.0.1".into()),
        ("MASTER_PORT".into(), port.to_string()),
        ("RANK".into(), s(rank)),
        ("LOCAL_RANK".into(), s(rank)),
        ("WORLD_SIZE".into(), s(nproc)),
        ("LOCAL_WORLD_SIZE".into(), s(nproc)),
        ("GROUP_RANK".into(), "0".into()),
        ("GROUP_WORLD_SIZE".into(), "1".into()),
        ("ROLE_RANK".into(), s(rank)),
        ("ROLE_WORLD_SIZE".into(), s(nproc)),
        ("ROLE_NAME".into(), "default".into()),
        ("TORCHELASTIC_RESTART_COUNT".into(), "0".into()),
        ("TORCHELASTIC_MAX_RESTARTS".into(), "0".into()),
        ("TORCHELASTIC_RUN_ID".into(), run_id.into()),
        ("TORCHELASTIC_USE_AGENT_STORE".into(), "False".into()),
    ]
}

/// A TCP port that was free on 127.0.0.1 a moment ago (the operating system's choice). Another process
/// may take it before rank 0 binds it; that shows up as rank 0's store error naming the port.
pub fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// Signals caught while a launch runs: the first, the last, and how many arrived.
static FIRST_SIGNAL: AtomicI32 = AtomicI32::new(0);
static LAST_SIGNAL: AtomicI32 = AtomicI32::new(0);
static SIGNALS_SEEN: AtomicUsize = AtomicUsize::new(0);
/// One launch at a time per process, because the signal handlers are process-wide.
static LAUNCHING: Mutex<()> = Mutex::new(());

extern "C" fn on_signal(sig: libc::c_int) {
    // Only atomics: async-signal-safe.
    let _ = FIRST_SIGNAL.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
    SIGNALS_SEEN.fetch_add(1, Ordering::SeqCst);
    LAST_SIGNAL.store(sig, Ordering::SeqCst);
}

const FORWARDED: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// The launcher's handlers for [`FORWARDED`] signals; the previous ones come back on drop.
struct SignalHandlers {
    previous: Vec<(libc::c_int, libc::sigaction)>,
}

impl SignalHandlers {
    fn install() -> std::io::Result<Self> {
        FIRST_SIGNAL.store(0, Ordering::SeqCst);
        LAST_SIGNAL.store(0, Ordering::SeqCst);
        SIGNALS_SEEN.store(0, Ordering::SeqCst);
        let mut previous = Vec::new();
        for sig in FORWARDED {
            // SAFETY: a zeroed sigaction with a handler that only touches atomics; the old action is
            // saved and restored by `drop`.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
                action.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, &action, &mut old) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                previous.push((sig, old));
            }
        }
        Ok(Self { previous })
    }
}

impl Drop for SignalHandlers {
    fn drop(&mut self) {
        for (sig, old) in &self.previous {
            // SAFETY: restores the action saved by `install`.
            unsafe {
                libc::sigaction(*sig, old, std::ptr::null_mut());
            }
        }
    }
}

/// Sends `sig` to a worker's process group (each worker leads its own).
fn signal_worker(child: &Child, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: plain system call; an already-exited group gives ESRCH, which is fine.
        unsafe {
            libc::kill(-pid, sig);
        }
    }
}

/// Starts `spec.nproc` workers and waits for them; see the module docs. `Ok` when every worker exits
/// with code 0 (or one of `spec.normal_codes`).
pub fn launch(spec: &LaunchSpec) -> Result<(), LaunchError> {
    launch_with_exits(spec).map(drop)
}

/// As [`launch`], returning how each rank ended when every worker ended normally (code 0 or one of
/// `spec.normal_codes`).
pub fn launch_with_exits(spec: &LaunchSpec) -> Result<Vec<(usize, WorkerExit)>, LaunchError> {
    if spec.nproc == 0 {
        return Err(LaunchError::Invalid("nproc must be at least 1".into()));
    }
    let _one_at_a_time = LAUNCHING.lock().unwrap_or_else(|e| e.into_inner());
    let port = match spec.master_port {
        Some(p) => p,
        None => free_port()
            .map_err(|e| LaunchError::Invalid(format!("no free port on 127.0.0.1: {e}")))?,
    };
    let run_id = format!("ect-{}-{port}", std::process::id());
    let handlers = SignalHandlers::install().map_err(LaunchError::Wait)?;
    let mut children: Vec<Child> = Vec::with_capacity(spec.nproc);
    for rank in 0..spec.nproc {
        match spawn_worker(spec, rank, port, &run_id) {
            Ok(child) => children.push(child),
            Err(source) => {
                for child in &children {
                    signal_worker(child, libc::SIGKILL);
                }
                for child in &mut children {
                    let _ = child.wait();
                }
                return Err(LaunchError::Spawn {
                    rank,
                    program: spec.program.display().to_string(),
                    source,
                });
            }
        }
    }
    let result = supervise(&mut children, spec.grace, &spec.normal_codes);
    drop(handlers);
    result
}

fn spawn_worker(spec: &LaunchSpec, rank: usize, port: u16, run_id: &str) -> std::io::Result<Child> {
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args);
    for (k, v) in worker_env(rank, spec.nproc, port, run_id) {
        cmd.env(k, v);
    }
    // As torchrun: one intra-op thread per worker unless the user chose, so that N workers do not each
    // start one thread per core.
    if spec.nproc > 1 && std::env::var_os("OMP_NUM_THREADS").is_none() {
        cmd.env("OMP_NUM_THREADS", "1");
    }
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    cmd.process_group(0);
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `getpid` is called before the fork; the closure makes only async-signal-safe calls.
        let launcher = unsafe { libc::getpid() };
        // SAFETY: see above.
        unsafe {
            cmd.pre_exec(move || {
                // A worker whose launcher dies (even by SIGKILL) gets SIGTERM instead of running on.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != launcher {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
    }
    cmd.spawn()
}

/// Polls the workers until all have ended, forwarding signals and stopping the others after a failure.
fn supervise(
    children: &mut [Child],
    grace: Duration,
    normal_codes: &[i32],
) -> Result<Vec<(usize, WorkerExit)>, LaunchError> {
    let mut exits: Vec<Option<WorkerExit>> = vec![None; children.len()];
    let mut failure: Option<(usize, WorkerExit)> = None;
    let mut forwarded = 0usize;
    let mut kill_at: Option<Instant> = None;
    loop {
        let seen = SIGNALS_SEEN.load(Ordering::SeqCst);
        if seen > forwarded {
            let sig = LAST_SIGNAL.load(Ordering::SeqCst);
            forwarded = seen;
            for (child, exit) in children.iter().zip(&exits) {
                if exit.is_none() {
                    signal_worker(child, sig);
                }
            }
            kill_at.get_or_insert_with(|| Instant::now() + grace);
        }
        for rank in 0..children.len() {
            if exits[rank].is_some() {
                continue;
            }
            if let Some(status) = children[rank].try_wait().map_err(LaunchError::Wait)? {
                let exit = WorkerExit::from_status(status);
                exits[rank] = Some(exit);
                let normal = exit.success()
                    || matches!(exit, WorkerExit::Code(c) if normal_codes.contains(&c));
                if !normal && failure.is_none() && forwarded == 0 {
                    failure = Some((rank, exit));
                    for (other, exit) in children.iter().zip(&exits) {
                        if exit.is_none() {
                            signal_worker(other, libc::SIGTERM);
                        }
                    }
                    kill_at.get_or_insert_with(|| Instant::now() + grace);
                }
            }
        }
        if exits.iter().all(Option::is_some) {
            break;
        }
        if kill_at.is_some_and(|t| Instant::now() >= t) {
            for (child, exit) in children.iter().zip(&exits) {
                if exit.is_none() {
                    signal_worker(child, libc::SIGKILL);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let exits: Vec<(usize, WorkerExit)> = exits
        .into_iter()
        .enumerate()
        .map(|(rank, e)| (rank, e.unwrap_or(WorkerExit::Code(-1))))
        .collect();
    if let Some((rank, exit)) = failure {
        let others = exits.into_iter().filter(|(r, _)| *r != rank).collect();
        return Err(LaunchError::WorkerFailed { rank, exit, others });
    }
    if forwarded > 0 {
        return Err(LaunchError::Interrupted {
            signal: FIRST_SIGNAL.load(Ordering::SeqCst),
            exits,
        });
    }
    Ok(exits)
}
