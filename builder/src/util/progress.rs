//! Progress lines for people: one spinner line per build step on a terminal
//! (indicatif), nothing at all when stdout is not a terminal, with `--json`
//! or with `--quiet`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Reports the steps of a long operation.
#[derive(Debug)]
pub struct Progress {
    enabled: bool,
    current: Option<(ProgressBar, Instant)>,
}

impl Progress {
    /// Shown only when stdout is a terminal and `quiet` is false.
    pub fn new(quiet: bool) -> Self {
        Progress {
            enabled: !quiet && std::io::stdout().is_terminal(),
            current: None,
        }
    }

    /// A progress reporter that never prints.
    pub fn hidden() -> Self {
        Progress {
            enabled: false,
            current: None,
        }
    }

    /// Start a step; the previous one is finished first.
    pub fn step(&mut self, msg: impl Into<String>) {
        let msg = msg.into();
        tracing::info!("{msg}");
        self.finish(None);
        if self.enabled {
            let pb = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed:.dim}") {
                pb.set_style(style);
            }
            pb.set_message(msg);
            pb.enable_steady_tick(Duration::from_millis(120));
            self.current = Some((pb, Instant::now()));
        }
    }

    /// Finish the current step, optionally with a result to show.
    pub fn finish(&mut self, result: Option<&str>) {
        if let Some((pb, start)) = self.current.take() {
            let msg = pb.message();
            let secs = start.elapsed().as_secs_f64();
            pb.set_style(
                ProgressStyle::with_template("✓ {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            match result {
                Some(r) => pb.finish_with_message(format!("{msg}: {r} ({secs:.1}s)")),
                None => pb.finish_with_message(format!("{msg} ({secs:.1}s)")),
            }
        }
    }
}

impl Progress {
    /// End the current step without leaving a line: for a step that turned
    /// out to need no work.
    pub fn clear(&mut self) {
        if let Some((pb, _)) = self.current.take() {
            pb.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some((pb, _)) = self.current.take() {
            pb.finish_and_clear();
        }
    }
}
