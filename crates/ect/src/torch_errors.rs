//! libtorch failures as errors rather than crashes. tch's tensor methods panic when libtorch throws (an
//! allocation that cannot be satisfied, a shape it rejects); the CLI runs each command under
//! [`catch`], which turns such a panic into an error carrying the first line of libtorch's message
//! (its messages embed C++ stack traces) instead of a Rust backtrace.

use std::sync::Mutex;

/// The message of the last panic, recorded by the hook [`catch`] installs.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// Runs `f`; a panic inside it becomes an error naming libtorch's message (or the panic's own, for a
/// panic that did not come from libtorch, which is a bug of this program and says so).
pub fn catch<T>(f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(format!("{message}{location}"));
    }));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(previous);
    match result {
        Ok(r) => r,
        Err(_) => {
            let message = LAST_PANIC
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .unwrap_or_default();
            Err(anyhow::anyhow!(describe(&message)))
        }
    }
}

/// The user-facing text of a panic message.
fn describe(message: &str) -> String {
    let torch =
        message.contains("Torch(") || message.contains("libtorch") || message.contains("c10::");
    // Keep the first line of libtorch's text: c10 appends a C++ backtrace after it.
    let first = message
        .split("\\n")
        .next()
        .unwrap_or(message)
        .lines()
        .next()
        .unwrap_or(message)
        .trim();
    if torch {
        let cleaned = first
            .trim_start_matches("called `Result::unwrap()` on an `Err` value: ")
            .trim_start_matches("Torch(\"")
            .trim_end_matches("\")");
        format!("libtorch: {cleaned}")
    } else {
        format!("internal error (a bug of ect; please report it): {first}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The panic hook is process-wide: these tests take turns.
    static HOOK: Mutex<()> = Mutex::new(());

    #[test]
    fn a_libtorch_panic_becomes_its_first_line() {
        let _turn = HOOK.lock().unwrap_or_else(|e| e.into_inner());
        let e = catch::<()>(|| {
            let t = tch::Tensor::zeros([2, 3], (tch::Kind::Float, tch::Device::Cpu));
            let _ = t.view([7]);
            Ok(())
        })
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("libtorch: "), "{e}");
        assert!(e.contains("shape '[7]' is invalid"), "{e}");
        assert!(!e.contains("frame #"), "a C++ backtrace leaked: {e}");
    }

    #[test]
    fn other_panics_are_reported_as_bugs_and_results_pass_through() {
        let _turn = HOOK.lock().unwrap_or_else(|e| e.into_inner());
        let e = catch::<()>(|| panic!("boom")).unwrap_err().to_string();
        assert!(e.contains("internal error") && e.contains("boom"), "{e}");
        assert_eq!(catch(|| Ok(3)).unwrap(), 3);
    }
}
