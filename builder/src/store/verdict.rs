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

use crate::store::{write_atomic, Store};
use crate::util::digest::Digest;

/// The store's directory of verdicts.
pub const DIR: &str = "verdicts";

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

/// One check's result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckResult {
    /// A stable name (`console[0] "hello: listening"`, `http[0] :8080/`, `shutdown`).
    pub name: String,
    /// Passed?
    pub passed: bool,
    /// Seconds it took (from boot start for console checks).
    pub secs: f64,
    /// What happened, for a person.
    pub detail: String,
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
    Ok(store.root().join(DIR).join(Digest::parse(digest)?.hex()))
}

/// Record a verdict; returns the file it went to.
pub fn record(store: &Store, v: &Verdict) -> Result<PathBuf> {
    store.init()?;
    let d = dir(store, &v.image_digest.to_string())?;
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    let _lock = store.lock()?;
    // After the highest number present, so a removed verdict file (a corrupt
    // one, by `kiln fsck --repair`) never makes a new one overwrite another.
    let n = numbered(&d).last().map_or(0, |(n, _)| *n) + 1;
    let path = d.join(format!("{n}.json"));
    write_atomic(&store.tmp_dir()?, &path, &serde_json::to_vec_pretty(v)?)?;
    Ok(path)
}

/// Every verdict recorded for an image digest, oldest first.
pub fn list(store: &Store, digest: &str) -> Result<Vec<Verdict>> {
    let d = dir(store, digest)?;
    let files = numbered(&d);
    files
        .into_iter()
        .map(|(_, p)| {
            let bytes = crate::util::record::read_record(&p)
                .with_context(|| format!("reading {}", p.display()))?;
            crate::util::record::parse_json(&bytes)
                .with_context(|| format!("parsing {}", p.display()))
        })
        .collect()
}

/// The verdict files in a digest's directory, `(n, path)` by n.
fn numbered(dir: &std::path::Path) -> Vec<(u64, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(u64, PathBuf)> = rd
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            let n = p.file_stem()?.to_str()?.parse().ok()?;
            Some((n, p))
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
}
