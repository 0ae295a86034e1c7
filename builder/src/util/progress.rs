//! Progress lines for people: one spinner line per build step on a terminal
//! (indicatif), nothing at all when stdout is not a terminal, with `--json`
//! or with `--quiet`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::util::printable::Printable;

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
            // Steps name layers, files and registries: quoted for the terminal.
            pb.set_message(Printable(&msg).to_string());
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
                Some(r) => pb.finish_with_message(format!("{msg}: {} ({secs:.1}s)", Printable(r))),
                None => pb.finish_with_message(format!("{msg} ({secs:.1}s)")),
            }
        }
    }
}

impl Progress {
    /// A byte count for the current step's line, for what it downloads.
    pub fn transfer(&self) -> Transfer {
        Transfer {
            line: self
                .current
                .as_ref()
                .map(|(pb, _)| (pb.clone(), pb.message())),
        }
    }

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

/// Bytes a step has downloaded so far, shown on its line with the rate
/// ("layer base/debian: …: 52.7 MiB downloaded, 11.8 MiB/s"). Cheap to
/// clone and to hand to the thread that counts; shows nothing where the
/// step has no line (not a terminal, `--json`, `--quiet`).
#[derive(Debug, Clone)]
pub struct Transfer {
    line: Option<(ProgressBar, String)>,
}

impl Transfer {
    /// A count that is never shown.
    pub fn hidden() -> Self {
        Transfer { line: None }
    }

    /// `bytes` have been downloaded, in `active` (from the first byte to
    /// the last so far: the rate is the download's, not the step's).
    pub fn show(&self, bytes: u64, active: Duration) {
        if let Some((pb, msg)) = &self.line {
            pb.set_message(format!("{msg}: {}", rate_text(bytes, active)));
        }
    }
}

/// "52.7 MiB downloaded, 11.8 MiB/s".
fn rate_text(bytes: u64, elapsed: Duration) -> String {
    let mib = bytes as f64 / 1048576.0;
    let secs = elapsed.as_secs_f64();
    if secs < 0.1 {
        format!("{mib:.1} MiB downloaded")
    } else {
        format!("{mib:.1} MiB downloaded, {:.1} MiB/s", mib / secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_text_reads_as_bytes_and_rate() {
        assert_eq!(
            rate_text(52_700_000, Duration::from_secs(4)),
            "50.3 MiB downloaded, 12.6 MiB/s"
        );
        assert_eq!(rate_text(1048576, Duration::ZERO), "1.0 MiB downloaded");
        // A hidden transfer takes counts and shows nothing.
        Transfer::hidden().show(1, Duration::ZERO);
    }
}
