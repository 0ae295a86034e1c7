//! How each step of a boot test ended (ARCHITECTURE.md "Verification"): one
//! type per step, one variant per way the step can end, as firecracker's
//! `StartMicrovmError` has one variant per step of starting a VM. The text of
//! each variant is what a verdict's `detail` says; `cli::render::test` lays
//! the checks out for people, as JSON and as JUnit.
//!
//! In a verdict's JSON each check carries its outcome beside `passed` and
//! `detail`, externally tagged by step with the way it ended under `kind`:
//! `"outcome": {"console": {"kind": "not_seen", "timeout": 30}}`.

use serde::{Deserialize, Serialize};

/// Why a boot ended before its checks were done: what every step watches
/// for while it waits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Stop {
    /// A forbidden pattern appeared on the console.
    #[error("forbidden pattern /{pattern}/ seen")]
    Forbidden {
        /// The pattern, as the recipe wrote it.
        pattern: String,
    },
    /// The firmware refused to boot the image (Secure Boot).
    #[error("the firmware refused to boot it: {line}")]
    FirmwareRefused {
        /// OVMF's console line.
        line: String,
    },
    /// SIGINT or SIGTERM reached kiln.
    #[error("interrupted")]
    Interrupted,
    /// The test's overall timeout passed.
    #[error("overall timeout of {secs} s reached")]
    Timeout {
        /// The timeout, seconds.
        secs: u64,
    },
    /// QEMU exited (the guest powered off, or QEMU failed).
    #[error("guest exited ({status})")]
    GuestExited {
        /// QEMU's exit status, as the host shows it.
        status: String,
    },
}

impl Stop {
    fn kind(&self) -> &'static str {
        match self {
            Stop::Forbidden { .. } => "forbidden",
            Stop::FirmwareRefused { .. } => "firmware_refused",
            Stop::Interrupted => "interrupted",
            Stop::Timeout { .. } => "timeout",
            Stop::GuestExited { .. } => "guest_exited",
        }
    }
}

/// A console pattern that must appear (`console[i]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ConsoleOutcome {
    /// Seen, this long after the previous pattern.
    #[error("seen after {after_secs:.1} s")]
    Seen {
        /// Seconds after the previous pattern matched.
        after_secs: f64,
    },
    /// Not seen within its own timeout.
    #[error("not seen within {timeout} s")]
    NotSeen {
        /// The pattern's timeout, seconds.
        timeout: u64,
    },
    /// The boot stopped while it was awaited.
    #[error("not seen: {stop}")]
    Stopped {
        /// Why.
        stop: Stop,
    },
}

/// A TCP probe (`tcp[i]`): a connection, or an exchange judged by a regex.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TcpOutcome {
    /// The guest port accepted a connection.
    #[error("guest port {port} accepts connections (host 127.0.0.1:{host_port})")]
    Accepts {
        /// The guest port.
        port: u16,
        /// The host end of its forward.
        host_port: u16,
    },
    /// The guest port's reply matched the expected regex.
    #[error("guest port {port} replies matching /{expect}/ (host 127.0.0.1:{host_port})")]
    Replies {
        /// The guest port.
        port: u16,
        /// The host end of its forward.
        host_port: u16,
        /// The regex.
        expect: String,
    },
    /// No connection (or no matching reply) within the probe's timeout.
    #[error("no connection within {timeout} s: {last}")]
    NoConnection {
        /// The probe's timeout, seconds.
        timeout: u64,
        /// The last attempt's failure.
        last: String,
    },
    /// The boot stopped while probing.
    #[error("no connection within {timeout} s: {stop}")]
    Stopped {
        /// The probe's timeout, seconds.
        timeout: u64,
        /// Why.
        stop: Stop,
    },
}

/// An HTTP probe (`http[i]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HttpOutcome {
    /// The expected status (and body) came back.
    #[error("status {status}")]
    Answered {
        /// The HTTP status.
        status: u16,
    },
    /// No expected answer within the probe's timeout.
    #[error("within {timeout} s: {last}")]
    NoAnswer {
        /// The probe's timeout, seconds.
        timeout: u64,
        /// The last attempt's failure.
        last: String,
    },
    /// The boot stopped while probing.
    #[error("within {timeout} s: {stop}")]
    Stopped {
        /// The probe's timeout, seconds.
        timeout: u64,
        /// Why.
        stop: Stop,
    },
}

/// One of the recipe's programs run on the host (`vm::hostcheck`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CommandOutcome {
    /// Its exit status and output were as required.
    #[error("{detail}")]
    Passed {
        /// Exit status (and what matched).
        detail: String,
    },
    /// Its last attempt failed (status, output, timeout or a placeholder).
    #[error("{detail}")]
    Failed {
        /// What went wrong, with the head of its output.
        detail: String,
    },
    /// The boot stopped before an attempt.
    #[error("boot stopped: {stop}")]
    Stopped {
        /// Why.
        stop: Stop,
    },
}

/// The clean shutdown: the ACPI power button, pressed through QMP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ShutdownOutcome {
    /// The guest powered off and QEMU exited.
    #[error("powered off: guest exited ({status})")]
    PoweredOff {
        /// QEMU's exit status.
        status: String,
    },
    /// QMP refused the power button.
    #[error("QMP: {error}")]
    Qmp {
        /// QMP's error.
        error: String,
    },
    /// The guest was still running when the timeout passed.
    #[error("still running {timeout} s after system_powerdown")]
    StillRunning {
        /// The shutdown timeout, seconds.
        timeout: u64,
    },
    /// The boot stopped otherwise (a forbidden pattern, the overall timeout).
    #[error("{stop}")]
    Stopped {
        /// Why.
        stop: Stop,
    },
}

/// The forbidden patterns, judged over the whole console.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ForbidOutcome {
    /// None of them appeared.
    #[error("none seen")]
    NoneSeen {
        /// How many patterns were watched for.
        patterns: usize,
    },
    /// One appeared (the first seen).
    #[error("seen: {line}")]
    Seen {
        /// The pattern.
        pattern: String,
        /// The console line it matched.
        line: String,
    },
}

/// The `secure_boot` check of a `--secure-boot` boot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SecureBootOutcome {
    /// The guest kernel or kiln-init reported Secure Boot enabled.
    #[error("the guest reports: {line}")]
    Enabled {
        /// Its console line.
        line: String,
    },
    /// The firmware refused the image.
    #[error("the firmware refused the image: {line}")]
    Refused {
        /// OVMF's console line.
        line: String,
    },
    /// The guest reported Secure Boot disabled.
    #[error("the guest reports: {line}")]
    Disabled {
        /// Its console line.
        line: String,
    },
    /// Nothing on the console said either way.
    #[error("neither the kernel nor kiln-init reported Secure Boot enabled on the console")]
    NotReported,
}

/// The `pcr11` check of a `--tpm` boot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Pcr11Outcome {
    /// Measured as the build predicted.
    #[error("measured {measured}, as predicted")]
    AsPredicted {
        /// The PCR 11 kiln-init read (hex).
        measured: String,
    },
    /// kiln-init reported no PCR 11.
    #[error("kiln-init reported no PCR 11 (no TPM seen by the guest, or the boot did not reach kiln-init)")]
    NotReported,
    /// Measured, but the manifest predicts nothing.
    #[error(
        "measured {measured}, but the manifest has no PCR 11 prediction (rebuild with this kiln)"
    )]
    NoPrediction {
        /// The PCR 11 kiln-init read (hex).
        measured: String,
    },
    /// Measured something else than predicted.
    #[error("measured {measured}, predicted {predicted}")]
    Mismatch {
        /// The PCR 11 kiln-init read (hex).
        measured: String,
        /// The manifest's prediction (hex).
        predicted: String,
    },
}

/// How one check of a boot test ended: the step's own outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// `console[i]`.
    #[error(transparent)]
    Console(ConsoleOutcome),
    /// `tcp[i]`.
    #[error(transparent)]
    Tcp(TcpOutcome),
    /// `http[i]`.
    #[error(transparent)]
    Http(HttpOutcome),
    /// A recipe program.
    #[error(transparent)]
    Command(CommandOutcome),
    /// `shutdown`.
    #[error(transparent)]
    Shutdown(ShutdownOutcome),
    /// `forbid`.
    #[error(transparent)]
    Forbid(ForbidOutcome),
    /// `secure_boot`.
    #[error(transparent)]
    SecureBoot(SecureBootOutcome),
    /// `pcr11`.
    #[error(transparent)]
    Pcr11(Pcr11Outcome),
    /// The boot as a whole stopped (the `timeout` check).
    #[error(transparent)]
    Stopped(Stop),
}

impl Outcome {
    /// Whether the check passed.
    pub fn passed(&self) -> bool {
        matches!(
            self,
            Outcome::Console(ConsoleOutcome::Seen { .. })
                | Outcome::Tcp(TcpOutcome::Accepts { .. } | TcpOutcome::Replies { .. })
                | Outcome::Http(HttpOutcome::Answered { .. })
                | Outcome::Command(CommandOutcome::Passed { .. })
                | Outcome::Shutdown(ShutdownOutcome::PoweredOff { .. })
                | Outcome::Forbid(ForbidOutcome::NoneSeen { .. })
                | Outcome::SecureBoot(SecureBootOutcome::Enabled { .. })
                | Outcome::Pcr11(Pcr11Outcome::AsPredicted { .. })
        )
    }

    /// The step and how it ended, `step.kind` (`console.not_seen`); a
    /// stopped step names the stop (`console.stopped.timeout`).
    pub fn kind(&self) -> String {
        use ConsoleOutcome as C;
        let stopped = |step: &str, s: &Stop| format!("{step}.stopped.{}", s.kind());
        match self {
            Outcome::Console(C::Seen { .. }) => "console.seen".into(),
            Outcome::Console(C::NotSeen { .. }) => "console.not_seen".into(),
            Outcome::Console(C::Stopped { stop }) => stopped("console", stop),
            Outcome::Tcp(TcpOutcome::Accepts { .. }) => "tcp.accepts".into(),
            Outcome::Tcp(TcpOutcome::Replies { .. }) => "tcp.replies".into(),
            Outcome::Tcp(TcpOutcome::NoConnection { .. }) => "tcp.no_connection".into(),
            Outcome::Tcp(TcpOutcome::Stopped { stop, .. }) => stopped("tcp", stop),
            Outcome::Http(HttpOutcome::Answered { .. }) => "http.answered".into(),
            Outcome::Http(HttpOutcome::NoAnswer { .. }) => "http.no_answer".into(),
            Outcome::Http(HttpOutcome::Stopped { stop, .. }) => stopped("http", stop),
            Outcome::Command(CommandOutcome::Passed { .. }) => "command.passed".into(),
            Outcome::Command(CommandOutcome::Failed { .. }) => "command.failed".into(),
            Outcome::Command(CommandOutcome::Stopped { stop }) => stopped("command", stop),
            Outcome::Shutdown(ShutdownOutcome::PoweredOff { .. }) => "shutdown.powered_off".into(),
            Outcome::Shutdown(ShutdownOutcome::Qmp { .. }) => "shutdown.qmp".into(),
            Outcome::Shutdown(ShutdownOutcome::StillRunning { .. }) => {
                "shutdown.still_running".into()
            }
            Outcome::Shutdown(ShutdownOutcome::Stopped { stop }) => stopped("shutdown", stop),
            Outcome::Forbid(ForbidOutcome::NoneSeen { .. }) => "forbid.none_seen".into(),
            Outcome::Forbid(ForbidOutcome::Seen { .. }) => "forbid.seen".into(),
            Outcome::SecureBoot(SecureBootOutcome::Enabled { .. }) => "secure_boot.enabled".into(),
            Outcome::SecureBoot(SecureBootOutcome::Refused { .. }) => "secure_boot.refused".into(),
            Outcome::SecureBoot(SecureBootOutcome::Disabled { .. }) => {
                "secure_boot.disabled".into()
            }
            Outcome::SecureBoot(SecureBootOutcome::NotReported) => {
                "secure_boot.not_reported".into()
            }
            Outcome::Pcr11(Pcr11Outcome::AsPredicted { .. }) => "pcr11.as_predicted".into(),
            Outcome::Pcr11(Pcr11Outcome::NotReported) => "pcr11.not_reported".into(),
            Outcome::Pcr11(Pcr11Outcome::NoPrediction { .. }) => "pcr11.no_prediction".into(),
            Outcome::Pcr11(Pcr11Outcome::Mismatch { .. }) => "pcr11.mismatch".into(),
            Outcome::Stopped(stop) => format!("stopped.{}", stop.kind()),
        }
    }
}

macro_rules! into_outcome {
    ($($t:ty => $v:ident),* $(,)?) => {
        $(impl From<$t> for Outcome {
            fn from(o: $t) -> Outcome {
                Outcome::$v(o)
            }
        })*
    };
}
into_outcome!(
    ConsoleOutcome => Console,
    TcpOutcome => Tcp,
    HttpOutcome => Http,
    CommandOutcome => Command,
    ShutdownOutcome => Shutdown,
    ForbidOutcome => Forbid,
    SecureBootOutcome => SecureBoot,
    Pcr11Outcome => Pcr11,
    Stop => Stopped,
);

#[cfg(test)]
mod tests {
    use super::*;

    /// Each way a step ends: passed or not, its kind, its text, and its JSON
    /// (what stored verdicts hold, so a change here is a schema change).
    #[test]
    fn outcome_table() {
        let timeout = Stop::Timeout { secs: 300 };
        let cases: Vec<(Outcome, bool, &str, &str, &str)> = vec![
            (
                ConsoleOutcome::Seen { after_secs: 6.54 }.into(),
                true,
                "console.seen",
                "seen after 6.5 s",
                r#"{"console":{"kind":"seen","after_secs":6.54}}"#,
            ),
            (
                ConsoleOutcome::NotSeen { timeout: 30 }.into(),
                false,
                "console.not_seen",
                "not seen within 30 s",
                r#"{"console":{"kind":"not_seen","timeout":30}}"#,
            ),
            (
                ConsoleOutcome::Stopped {
                    stop: Stop::Forbidden {
                        pattern: "FATAL".into(),
                    },
                }
                .into(),
                false,
                "console.stopped.forbidden",
                "not seen: forbidden pattern /FATAL/ seen",
                r#"{"console":{"kind":"stopped","stop":{"kind":"forbidden","pattern":"FATAL"}}}"#,
            ),
            (
                TcpOutcome::Accepts {
                    port: 22,
                    host_port: 40000,
                }
                .into(),
                true,
                "tcp.accepts",
                "guest port 22 accepts connections (host 127.0.0.1:40000)",
                r#"{"tcp":{"kind":"accepts","port":22,"host_port":40000}}"#,
            ),
            (
                TcpOutcome::Stopped {
                    timeout: 10,
                    stop: Stop::GuestExited {
                        status: "exit status: 1".into(),
                    },
                }
                .into(),
                false,
                "tcp.stopped.guest_exited",
                "no connection within 10 s: guest exited (exit status: 1)",
                r#"{"tcp":{"kind":"stopped","timeout":10,"stop":{"kind":"guest_exited","status":"exit status: 1"}}}"#,
            ),
            (
                HttpOutcome::NoAnswer {
                    timeout: 5,
                    last: "status 500, expected 200".into(),
                }
                .into(),
                false,
                "http.no_answer",
                "within 5 s: status 500, expected 200",
                r#"{"http":{"kind":"no_answer","timeout":5,"last":"status 500, expected 200"}}"#,
            ),
            (
                CommandOutcome::Stopped {
                    stop: Stop::Interrupted,
                }
                .into(),
                false,
                "command.stopped.interrupted",
                "boot stopped: interrupted",
                r#"{"command":{"kind":"stopped","stop":{"kind":"interrupted"}}}"#,
            ),
            (
                ShutdownOutcome::PoweredOff {
                    status: "exit status: 0".into(),
                }
                .into(),
                true,
                "shutdown.powered_off",
                "powered off: guest exited (exit status: 0)",
                r#"{"shutdown":{"kind":"powered_off","status":"exit status: 0"}}"#,
            ),
            (
                ShutdownOutcome::StillRunning { timeout: 60 }.into(),
                false,
                "shutdown.still_running",
                "still running 60 s after system_powerdown",
                r#"{"shutdown":{"kind":"still_running","timeout":60}}"#,
            ),
            (
                ForbidOutcome::Seen {
                    pattern: "Kernel panic".into(),
                    line: "Kernel panic - not syncing".into(),
                }
                .into(),
                false,
                "forbid.seen",
                "seen: Kernel panic - not syncing",
                r#"{"forbid":{"kind":"seen","pattern":"Kernel panic","line":"Kernel panic - not syncing"}}"#,
            ),
            (
                SecureBootOutcome::NotReported.into(),
                false,
                "secure_boot.not_reported",
                "neither the kernel nor kiln-init reported Secure Boot enabled on the console",
                r#"{"secure_boot":{"kind":"not_reported"}}"#,
            ),
            (
                Pcr11Outcome::Mismatch {
                    measured: "aa".into(),
                    predicted: "bb".into(),
                }
                .into(),
                false,
                "pcr11.mismatch",
                "measured aa, predicted bb",
                r#"{"pcr11":{"kind":"mismatch","measured":"aa","predicted":"bb"}}"#,
            ),
            (
                timeout.into(),
                false,
                "stopped.timeout",
                "overall timeout of 300 s reached",
                r#"{"stopped":{"kind":"timeout","secs":300}}"#,
            ),
        ];
        for (outcome, passed, kind, text, json) in cases {
            assert_eq!(outcome.passed(), passed, "{outcome:?}");
            assert_eq!(outcome.kind(), kind, "{outcome:?}");
            assert_eq!(outcome.to_string(), text, "{outcome:?}");
            assert_eq!(serde_json::to_string(&outcome).unwrap(), json);
            let back: Outcome = serde_json::from_str(json).unwrap();
            assert_eq!(back, outcome);
        }
    }
}
