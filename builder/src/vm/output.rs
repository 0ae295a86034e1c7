//! Where `kiln test`'s outputs go (ARCHITECTURE.md "Verification"): the
//! console log and a JUnit report are written whole or not at all, and
//! where they go is checked before the boot, so that a directory kiln
//! cannot write to never costs a verdict after a boot.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::util::error::EnvError;

/// Check, before a boot, that an output of the test (the console log, a
/// JUnit report) can be written at `dest`: a scratch directory is made and
/// removed beside it. An environment error naming the directory otherwise.
pub fn check_output(dest: &Path) -> Result<()> {
    let dir = parent_dir(dest);
    crate::util::scratch::ScratchDir::new_in(dir)
        .map(drop)
        .map_err(|e| {
            anyhow::Error::new(EnvError::new(format!(
                "cannot write {}: {e:#}",
                dest.display()
            )))
        })
}

/// Write `dest` whole or not at all: into a scratch directory beside it,
/// then renamed into place (a killed kiln leaves an announced scratch
/// directory, which the next run sweeps, never a half-written file).
pub fn write_output(dest: &Path, data: &[u8]) -> Result<()> {
    let scratch = crate::util::scratch::ScratchDir::new_in(parent_dir(dest))?;
    let tmp = scratch.path().join("file");
    std::fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, dest).with_context(|| format!("renaming into {}", dest.display()))
}

/// The directory `dest` goes to (`.` for a bare file name).
fn parent_dir(dest: &Path) -> &Path {
    match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Where the console log is kept: beside the image as `NAME.console.log`
/// (or where asked); when that directory cannot be written, in the
/// temporary directory, with a warning. Decided before the boot.
pub(crate) fn console_log_dest(image: &Path, wanted: Option<PathBuf>) -> PathBuf {
    let stem = image
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    let wanted = wanted.unwrap_or_else(|| image.with_file_name(format!("{stem}.console.log")));
    match check_output(&wanted) {
        Ok(()) => wanted,
        Err(e) => {
            let elsewhere = std::env::temp_dir().join(format!("kiln-{stem}.console.log"));
            tracing::warn!(
                "{e:#}: the console log goes to {} instead",
                elsewhere.display()
            );
            elsewhere
        }
    }
}

/// Keep the console log at `dest`; a log that cannot be written is a
/// warning, never the loss of the verdict.
pub(crate) fn keep_console_log(dest: PathBuf, log: &[u8]) -> Option<PathBuf> {
    match write_output(&dest, log) {
        Ok(()) => Some(dest),
        Err(e) => {
            tracing::warn!("{e:#}: the console log is not kept");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the outputs go is settled before a boot: a report that cannot
    /// be written is an environment error naming it; a console log that
    /// cannot go beside the image goes to the temporary directory; one that
    /// cannot be written at all is not kept, and the verdict stays.
    #[test]
    fn outputs_are_checked_before_the_boot() {
        let dir = tempfile::tempdir().unwrap();
        // A directory nobody can write to, root included: its "parent" is a file.
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let junit = file.join("junit.xml");
        let e = check_output(&junit).unwrap_err();
        assert_eq!(crate::util::error::exit_code(&e), 3, "{e:#}");
        assert!(
            format!("{e:#}").contains(&junit.display().to_string()),
            "{e:#}"
        );
        check_output(&dir.path().join("junit.xml")).unwrap();

        assert_eq!(
            console_log_dest(&file.join("hello-1.0.raw"), None),
            std::env::temp_dir().join("kiln-hello-1.0.console.log")
        );
        assert_eq!(
            console_log_dest(&dir.path().join("hello-1.0.raw"), None),
            dir.path().join("hello-1.0.console.log")
        );
        // The checks left nothing behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        assert_eq!(keep_console_log(file.join("c.log"), b"x"), None);
        let log = dir.path().join("c.log");
        assert_eq!(keep_console_log(log.clone(), b"x"), Some(log.clone()));
        assert_eq!(std::fs::read(&log).unwrap(), b"x");
    }
}
