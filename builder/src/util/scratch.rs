//! Scratch space that a killed kiln leaves nothing of for long.
//!
//! Every temporary directory kiln creates (in the store's `tmp/`, beside the
//! output files, in `$TMPDIR` for QEMU and mmdebstrap) is a [`ScratchDir`]:
//! `PARENT/.kiln-tmp-<pid>-<random>/`, announced by a sibling
//! `PARENT/.kiln-tmp-<pid>-<random>.lock` on which the owner holds an
//! exclusive flock(2) for as long as the directory lives. The kernel drops
//! that lock when the owner dies, however it dies (kill -9 included), so a
//! later kiln can tell scratch of the dead from scratch of the living without
//! trusting process ids: [`sweep`] removes every scratch entry whose lock it
//! can take. Dropping a [`ScratchDir`] removes the directory, then the lock.
//!
//! The lock file is created (and locked) before the directory, so there is
//! no moment at which the directory exists without a held lock.

use std::fs::{self, File};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};

/// The name prefix of every scratch entry.
pub const SCRATCH_PREFIX: &str = ".kiln-tmp-";

/// The suffix of a scratch entry's lock file.
const LOCK_SUFFIX: &str = ".lock";

/// A temporary directory owned by this process while it lives.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
    lock_path: PathBuf,
    // Held for the directory's lifetime; released by the kernel on any death.
    _lock: Flock<File>,
}

impl ScratchDir {
    /// A new scratch directory in `parent` (created if missing), mode 0700.
    pub fn new_in(parent: &Path) -> Result<ScratchDir> {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        let pid = std::process::id();
        // A few attempts: the random part makes a clash unlikely, not impossible.
        let mut last_err = None;
        for _ in 0..8 {
            let id = format!("{SCRATCH_PREFIX}{pid}-{:016x}", random_u64());
            let lock_path = parent.join(format!("{id}{LOCK_SUFFIX}"));
            let f = match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&lock_path)
            {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    last_err = Some(e);
                    continue;
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("creating {}", lock_path.display()))
                }
            };
            let lock = Flock::lock(f, FlockArg::LockExclusiveNonblock)
                .map_err(|(_, e)| crate::env_err!("locking {}: {e}", lock_path.display()))?;
            let path = parent.join(&id);
            if let Err(e) = fs::DirBuilder::new()
                .mode(0o700)
                .create(&path)
                .with_context(|| format!("creating {}", path.display()))
            {
                let _ = fs::remove_file(&lock_path);
                return Err(e);
            }
            return Ok(ScratchDir {
                path,
                lock_path,
                _lock: lock,
            });
        }
        Err(crate::env_err!(
            "no free scratch name in {}: {last_err:?}",
            parent.display()
        ))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
        let _ = fs::remove_file(&self.lock_path);
    }
}

/// A new scratch directory in `$TMPDIR` ([`std::env::temp_dir`]), after
/// sweeping what dead kiln processes left there (QEMU's files, mmdebstrap's
/// unpacked root, the builds of a reproducibility check).
pub fn in_temp_dir() -> Result<ScratchDir> {
    let tmp = std::env::temp_dir();
    let swept = sweep(&tmp, false)?;
    if !swept.paths.is_empty() {
        tracing::info!(
            count = swept.paths.len(),
            bytes = swept.bytes,
            "removed the scratch of dead kiln processes in {}",
            tmp.display()
        );
    }
    ScratchDir::new_in(&tmp)
        .with_context(|| format!("creating a scratch directory in {}", tmp.display()))
}

/// 64 random bits from the kernel, falling back to the clock and pid (names
/// need to be unlikely to clash, not unpredictable).
fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    if File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .is_ok()
    {
        return u64::from_le_bytes(b);
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ u64::from(std::process::id()).rotate_left(32)
}

/// What [`sweep`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    /// The scratch entries removed (directories or files).
    pub paths: Vec<PathBuf>,
    /// Their size in bytes (allocated blocks).
    pub bytes: u64,
}

impl Swept {
    /// Add another sweep's result.
    pub fn extend(&mut self, other: Swept) {
        self.paths.extend(other.paths);
        self.bytes += other.bytes;
    }
}

/// Remove the scratch of dead owners in `parent`: every
/// `.kiln-tmp-*.lock` whose lock can be taken, with the entry it announces.
/// With `dry_run`, only report. A missing `parent` is nothing to sweep.
///
/// No link below `parent` is followed (`parent` itself is the caller's to
/// trust: `$TMPDIR`, an output directory, the store's `tmp/` once the store
/// has checked it): a lock file that is a link is no lock, and an entry
/// that is a link goes as a link, never what it points at.
pub fn sweep(parent: &Path, dry_run: bool) -> Result<Swept> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut out = Swept::default();
    let list = crate::util::walk::list_below(parent, Path::new(""))?;
    for entry in list {
        let Some(id) = entry
            .name()
            .and_then(|n| n.strip_prefix(SCRATCH_PREFIX))
            .and_then(|n| n.strip_suffix(LOCK_SUFFIX))
            .map(str::to_owned)
        else {
            continue;
        };
        if entry.kind != crate::util::walk::Kind::File {
            continue;
        }
        let lock_path = entry.path;
        let Ok(f) = fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
            .open(&lock_path)
        else {
            continue;
        };
        // Held by a living owner: not ours to touch.
        let Ok(_held) = Flock::lock(f, FlockArg::LockExclusiveNonblock) else {
            continue;
        };
        let target = parent.join(format!("{SCRATCH_PREFIX}{id}"));
        let bytes = disk_usage(&target);
        if !dry_run {
            remove_any(&target)
                .with_context(|| format!("removing dead scratch {}", target.display()))?;
            fs::remove_file(&lock_path)
                .with_context(|| format!("removing {}", lock_path.display()))?;
        }
        out.bytes += bytes;
        out.paths.push(target);
    }
    out.paths.sort();
    Ok(out)
}

/// Remove a file or a directory tree; a missing path is fine.
fn remove_any(path: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Bytes allocated below `path` (0 when unreadable), without following links.
pub fn disk_usage(path: &Path) -> u64 {
    let Ok(m) = fs::symlink_metadata(path) else {
        return 0;
    };
    let own = m.blocks() * 512;
    if !m.is_dir() {
        return own;
    }
    let Ok(rd) = fs::read_dir(path) else {
        return own;
    };
    own + rd.flatten().map(|e| disk_usage(&e.path())).sum::<u64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_removes_directory_and_lock() {
        let parent = tempfile::tempdir().unwrap();
        let s = ScratchDir::new_in(parent.path()).unwrap();
        fs::write(s.path().join("x"), b"data").unwrap();
        assert_eq!(fs::read_dir(parent.path()).unwrap().count(), 2);
        drop(s);
        assert_eq!(fs::read_dir(parent.path()).unwrap().count(), 0);
    }

    #[test]
    fn sweep_leaves_the_living_and_takes_the_dead() {
        let parent = tempfile::tempdir().unwrap();
        let live = ScratchDir::new_in(parent.path()).unwrap();
        // A dead owner: its lock file exists but nobody holds it.
        let dead = parent.path().join(format!("{SCRATCH_PREFIX}1-dead"));
        fs::create_dir(&dead).unwrap();
        fs::write(dead.join("image.raw"), vec![1u8; 8192]).unwrap();
        fs::write(
            parent.path().join(format!("{SCRATCH_PREFIX}1-dead.lock")),
            b"",
        )
        .unwrap();
        // A dead owner's scratch file, and a stray lock with nothing behind it.
        fs::write(parent.path().join(format!("{SCRATCH_PREFIX}2-f")), b"x").unwrap();
        fs::write(parent.path().join(format!("{SCRATCH_PREFIX}2-f.lock")), b"").unwrap();
        fs::write(
            parent.path().join(format!("{SCRATCH_PREFIX}3-gone.lock")),
            b"",
        )
        .unwrap();
        // Not scratch.
        fs::write(parent.path().join("hello-1.0.raw"), b"keep").unwrap();

        let dry = sweep(parent.path(), true).unwrap();
        assert_eq!(dry.paths.len(), 3);
        assert!(dead.exists());
        let swept = sweep(parent.path(), false).unwrap();
        assert_eq!(swept.paths, dry.paths);
        assert!(swept.bytes >= 8192, "{swept:?}");
        let mut left: Vec<String> = fs::read_dir(parent.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let live_name = live
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(
            left,
            [
                live_name.clone(),
                format!("{live_name}.lock"),
                "hello-1.0.raw".to_string()
            ]
        );
        assert!(live.path().is_dir());
    }

    #[test]
    fn sweep_of_a_missing_directory_is_empty() {
        let parent = tempfile::tempdir().unwrap();
        assert_eq!(
            sweep(&parent.path().join("nope"), false).unwrap(),
            Swept::default()
        );
    }
}
