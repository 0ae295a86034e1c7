//! Boot-test verdicts, recorded in the store against the image digest
//! (ARCHITECTURE.md "Verification"): what was checked, how each check went, how
//! long the boot phases took, and with which QEMU, firmware and accelerator.
//! Publication requires a passing verdict for the digest it publishes.
//!
//! ```text
//! STORE/verdicts/<image hex>/<n>.json    n = 1, 2, … in the order recorded
//! ```
//! Verdicts are append-only, like everything in the store.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::store::layout::Area;
use crate::store::{write_atomic, Store};
use crate::util::digest::Digest;

mod outcome;
pub use outcome::{
    CommandOutcome, ConsoleOutcome, ForbidOutcome, HttpOutcome, Outcome, Pcr11Outcome,
    SecureBootOutcome, ShutdownOutcome, Stop, TcpOutcome,
};

/// Verdict schema identifier.
pub const SCHEMA: &str = "kiln.verdict/v1";

/// The outcome of one boot test.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Verdict {
    /// [`SCHEMA`].
    pub schema: String,
    /// `sha256:` of the image file that was booted.
    pub image_digest: Digest,
    /// Image name and version, from its manifest.
    pub image: String,
    /// Whether every check passed.
    pub passed: bool,
    /// The first failing check, when one failed.
    pub failed_check: Option<String>,
    /// Every check, in the order run.
    pub checks: Vec<CheckResult>,
    /// Seconds from QEMU start to each boot phase, when seen on the console.
    pub phases: Phases,
    /// Seconds from start to verdict.
    pub duration_secs: f64,
    /// `qemu-system-x86_64 --version`, first line.
    pub qemu_version: String,
    /// Firmware file.
    pub firmware: String,
    /// `kvm` or `tcg`.
    pub accel: String,
    /// When the test started (RFC 3339, UTC).
    pub started_at: String,
    /// The kiln that ran it.
    pub kiln_version: String,
    /// Where the console log was kept.
    pub console_log: Option<PathBuf>,
    /// Whether the boot ran with UEFI Secure Boot enforced (keys enrolled,
    /// `kiln test --secure-boot`); its `secure_boot` check says whether the
    /// guest saw it enabled.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secure_boot: bool,
}

/// Lines of console a failure report shows ([`Verdict::console_tail`]).
pub const TAIL_LINES: usize = 25;

impl Verdict {
    /// The last [`TAIL_LINES`] lines of the kept console log, for failure
    /// reports; empty when the log is gone or was not kept.
    pub fn console_tail(&self) -> String {
        let text = self
            .console_log
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
    }
}

/// One check's result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckResult {
    /// A stable name (`console[0] "hello: listening"`, `http[0] :8080/`, `shutdown`).
    pub name: String,
    /// Passed? ([`Outcome::passed`] of `outcome`.)
    pub passed: bool,
    /// Seconds it took (from boot start for console checks).
    pub secs: f64,
    /// What happened, for a person (`outcome`'s text).
    pub detail: String,
    /// How the check ended, one variant per way it can end. Verdicts
    /// recorded before kiln kept it have only `passed` and `detail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
}

impl CheckResult {
    /// A check named `name` that took `secs` and ended as `outcome`;
    /// `passed` and `detail` follow from the outcome.
    pub fn new(name: impl Into<String>, secs: f64, outcome: impl Into<Outcome>) -> Self {
        let outcome = outcome.into();
        CheckResult {
            name: name.into(),
            passed: outcome.passed(),
            secs,
            detail: outcome.to_string(),
            outcome: Some(outcome),
        }
    }

    /// A short name of how the check ended (`console.not_seen`,
    /// `stopped.timeout`); `passed` or `failed` for a verdict that
    /// recorded no outcome.
    pub fn kind(&self) -> String {
        match &self.outcome {
            Some(o) => o.kind(),
            None if self.passed => "passed".into(),
            None => "failed".into(),
        }
    }
}

/// Boot phases, seconds since QEMU started.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Phases {
    /// The firmware handed over to the UKI (OVMF's "BdsDxe: starting" line).
    pub firmware: Option<f64>,
    /// The initramfs init ran (first `kiln-init:` line).
    pub kernel: Option<f64>,
    /// The image's own init ran (`kiln-init: exec`).
    pub init: Option<f64>,
    /// Every console check had passed.
    pub ready: Option<f64>,
}

/// `STORE/verdicts/<hex>`: the verdicts of one image digest.
fn dir(store: &Store, digest: &str) -> Result<PathBuf> {
    Ok(store
        .layout()
        .entry(Area::Verdicts, &Digest::parse(digest)?))
}

/// Record a verdict; returns the file it went to.
pub fn record(store: &Store, v: &Verdict) -> Result<PathBuf> {
    store.init()?;
    let d = dir(store, &v.image_digest.to_string())?;
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    let _lock = store.lock()?;
    // After the highest number present, so a removed verdict file (a corrupt
    // one, by `kiln fsck --repair`) never makes a new one overwrite another.
    let n = numbered(store, &d).last().map_or(0, |(n, _)| *n) + 1;
    let path = d.join(format!("{n}.json"));
    write_atomic(&store.tmp_dir()?, &path, &serde_json::to_vec_pretty(v)?)?;
    Ok(path)
}

/// Every verdict recorded for an image digest, oldest first.
pub fn list(store: &Store, digest: &str) -> Result<Vec<Verdict>> {
    let d = dir(store, digest)?;
    let files = numbered(store, &d);
    files
        .into_iter()
        .map(|(_, p)| {
            let bytes = store
                .read_record(&p)?
                .with_context(|| format!("{} is gone", p.display()))?;
            crate::util::record::parse_json(&bytes)
                .with_context(|| format!("parsing {}", p.display()))
        })
        .collect()
}

/// The verdict files in a digest's directory, `(n, path)` by n (none
/// when the directory is reached through a link).
fn numbered(store: &Store, dir: &std::path::Path) -> Vec<(u64, PathBuf)> {
    let Some(rel) = dir.strip_prefix(store.root()).ok() else {
        return Vec::new();
    };
    let Ok(list) = store.layout().list_below(rel) else {
        return Vec::new();
    };
    let mut files: Vec<(u64, PathBuf)> = list
        .into_iter()
        .filter_map(|e| {
            let n = e.name()?.strip_suffix(".json")?.parse().ok()?;
            Some((n, e.path))
        })
        .collect();
    files.sort();
    files
}

/// The latest verdict for a digest, if any.
pub fn latest(store: &Store, digest: &str) -> Result<Option<Verdict>> {
    Ok(list(store, digest)?.pop())
}

/// The latest passing verdict for a digest, if any.
pub fn latest_passing(store: &Store, digest: &str) -> Result<Option<Verdict>> {
    Ok(list(store, digest)?.into_iter().rev().find(|v| v.passed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(digest: &str, passed: bool) -> Verdict {
        Verdict {
            schema: SCHEMA.into(),
            image_digest: digest.parse().unwrap(),
            image: "hello 1.0".into(),
            passed,
            failed_check: (!passed).then(|| "console[0]".into()),
            checks: vec![],
            phases: Phases::default(),
            duration_secs: 1.0,
            qemu_version: "QEMU emulator version 7.2".into(),
            firmware: "OVMF_CODE_4M.fd".into(),
            accel: "tcg".into(),
            started_at: "2026-11-22T00:00:00Z".into(),
            kiln_version: "0.1.0".into(),
            console_log: None,
            secure_boot: false,
        }
    }

    #[test]
    fn verdicts_append_and_latest_passing_wins() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::new(dir.path());
        let d = format!("sha256:{}", "cd".repeat(32));
        assert_eq!(latest_passing(&s, &d).unwrap(), None);
        record(&s, &verdict(&d, true)).unwrap();
        record(&s, &verdict(&d, false)).unwrap();
        assert_eq!(list(&s, &d).unwrap().len(), 2);
        assert!(!latest(&s, &d).unwrap().unwrap().passed);
        assert!(latest_passing(&s, &d).unwrap().unwrap().passed);
        let other = format!("sha256:{}", "ef".repeat(32));
        assert_eq!(latest_passing(&s, &other).unwrap(), None);
    }

    /// A verdict stored before checks carried their outcome still reads,
    /// and one with outcomes keeps the fields older readers know.
    #[test]
    fn verdicts_without_outcomes_still_read() {
        let old = r#"{"schema":"kiln.verdict/v1","image_digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","image":"hello 1.0",
            "passed":false,"failed_check":"timeout","checks":[{"name":"timeout","passed":false,
            "secs":25.0,"detail":"overall timeout of 25 s reached"}],"phases":{"firmware":null,
            "kernel":null,"init":null,"ready":null},"duration_secs":26.0,"qemu_version":"QEMU",
            "firmware":"OVMF_CODE_4M.fd","accel":"tcg","started_at":"2026-01-01T00:00:00Z",
            "kiln_version":"0.1.0","console_log":null}"#;
        let v: Verdict = serde_json::from_str(old).unwrap();
        assert_eq!(v.checks[0].outcome, None);
        assert_eq!(v.checks[0].kind(), "failed");
        let mut new = v.clone();
        new.checks[0] = CheckResult::new("timeout", 25.0, Stop::Timeout { secs: 25 });
        assert_eq!(new.checks[0].detail, v.checks[0].detail);
        let json: serde_json::Value = serde_json::to_value(&new).unwrap();
        let check = &json["checks"][0];
        assert_eq!(check["passed"], false);
        assert_eq!(check["detail"], "overall timeout of 25 s reached");
        assert_eq!(check["outcome"]["stopped"]["kind"], "timeout");
    }

    #[test]
    fn console_tail_is_the_last_lines_of_the_kept_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("console.log");
        let text: String = (0..40).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&log, text).unwrap();
        let mut v = verdict(&format!("sha256:{}", "00".repeat(32)), false);
        assert_eq!(v.console_tail(), "");
        v.console_log = Some(log);
        let tail = v.console_tail();
        assert_eq!(tail.lines().count(), TAIL_LINES);
        assert!(
            tail.starts_with("line 15\n") && tail.ends_with("line 39"),
            "{tail}"
        );
    }
}
