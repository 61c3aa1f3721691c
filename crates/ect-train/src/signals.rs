//! Stop requests from outside: SIGINT (Ctrl-C), SIGTERM (what schedulers send before they kill a job) and
//! SIGHUP (a closed terminal) all ask a run to stop at the next step boundary with a checkpoint.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

static STOP: AtomicBool = AtomicBool::new(false);
static INSTALLED: Once = Once::new();

/// Installs the handler (once per process). If another handler owns the signals, runs keep the
/// default behaviour (being killed), which loses at most the work since the last checkpoint.
pub fn install() {
    INSTALLED.call_once(|| {
        let _ = ctrlc::set_handler(|| STOP.store(true, Ordering::SeqCst));
    });
}

/// Whether a stop was requested by a signal.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}
