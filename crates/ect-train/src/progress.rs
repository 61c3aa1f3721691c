//! What a run shows while it trains: a progress bar with rate and ETA on a terminal, plain log lines
//! otherwise, nothing when quiet.

use std::io::IsTerminal;

use crate::stats::StatsRecord;

/// The progress display of one invocation.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
    total: u64,
}

impl Progress {
    /// A display for a run of `total` steps, starting at `step`.
    pub fn new(total: u64, step: u64, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(total);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
                )
                .expect("valid template"),
            );
            b.set_position(step);
            b
        });
        Self { bar, quiet, total }
    }

    /// Shows an interval's statistics.
    pub fn record(&self, rec: &StatsRecord) {
        let msg = format!(
            "loss {:.4} stage {} r/t {:.3} lr {:.2e} {:.1} img/s",
            rec.loss, rec.stage, rec.mean_r_over_t, rec.lr, rec.images_per_sec
        );
        match &self.bar {
            Some(b) => b.set_message(msg),
            None if !self.quiet => eprintln!("step {}/{} {msg}", rec.step, self.total),
            None => {}
        }
    }

    /// Moves the bar to `step`.
    pub fn position(&self, step: u64) {
        if let Some(b) = &self.bar {
            b.set_position(step);
        }
    }

    /// Prints a line about `step` above the bar (or as a log line).
    pub fn line(&self, step: u64, text: &str) {
        match &self.bar {
            Some(b) => b.println(format!("step {step}: {text}")),
            None if !self.quiet => eprintln!("step {step}/{} {text}", self.total),
            None => {}
        }
    }

    /// Leaves the bar as it is (the run failed).
    pub fn abandon(&self) {
        if let Some(b) = &self.bar {
            b.abandon();
        }
    }

    /// Completes the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish();
        }
    }

    /// Whether log lines are suppressed.
    pub fn is_quiet(&self) -> bool {
        self.quiet
    }
}
