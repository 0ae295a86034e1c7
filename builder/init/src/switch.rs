//! Handing over to the image's init, the way busybox `switch_root` does:
//! move the API filesystems into the new root (or detach them where the
//! image has no mount point for them), empty the initramfs to free its
//! memory, move the new root onto `/`, chroot into it and exec its init.

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::convert::Infallible;
use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// `RAMFS_MAGIC` from `include/uapi/linux/magic.h`.
const RAMFS_MAGIC: i64 = 0x8584_58f6;
/// `TMPFS_MAGIC` from `include/uapi/linux/magic.h`.
const TMPFS_MAGIC: i64 = 0x0102_1994;
/// How many symlinks path resolution follows, as the kernel's `MAXSYMLINKS`.
const MAX_SYMLINKS: usize = 40;
/// The API filesystems kiln-init mounts and hands over.
pub const API_MOUNTS: [&str; 3] = ["/dev", "/proc", "/sys"];

/// Resolve `path` as if `root` were `/`: symlinks (absolute ones relative to
/// `root`) are followed and `..` never climbs above `root`. Returns the
/// host path of what it names, or why it cannot be reached.
pub fn resolve_in_root(root: &Path, path: &str) -> std::io::Result<PathBuf> {
    let mut todo: Vec<String> = path.split('/').rev().map(str::to_string).collect();
    let mut cur: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "" | "." => continue,
            ".." => {
                cur.pop();
                continue;
            }
            _ => {}
        }
        cur.push(c);
        let host: PathBuf = root.join(cur.join("/"));
        let meta = std::fs::symlink_metadata(&host)?;
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(std::io::Error::from_raw_os_error(libc::ELOOP));
            }
            let target = std::fs::read_link(&host)?;
            cur.pop();
            if target.has_root() {
                cur.clear();
            }
            let parts: Vec<String> = target
                .components()
                .filter_map(|c| match c {
                    Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                    Component::ParentDir => Some("..".into()),
                    _ => None,
                })
                .collect();
            todo.extend(parts.into_iter().rev());
        }
    }
    Ok(root.join(cur.join("/")))
}

/// Check that `path` inside `root` is an executable regular file; the error
/// says why not.
pub fn check_executable_in(root: &Path, path: &str) -> Result<(), String> {
    let meta = resolve_in_root(root, path)
        .and_then(std::fs::metadata)
        .map_err(|e| {
            let hint = if e.raw_os_error() == Some(libc::EIO) {
                " (an I/O error here means dm-verity found data that does not match the root hash)"
            } else {
                ""
            };
            format!("{path} in the root filesystem: {e}{hint}")
        })?;
    if !meta.is_file() || meta.mode() & 0o111 == 0 {
        return Err(format!(
            "{path} in the root filesystem is not an executable file"
        ));
    }
    Ok(())
}

/// Remove everything below `dir` that lives on device `dev`, without
/// following symlinks or crossing into other mounts. Best effort: returns
/// how many entries could not be removed.
pub fn delete_contents(dir: &Path, dev: u64) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 1;
    };
    let mut failed = 0;
    for e in rd.flatten() {
        let p = e.path();
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            failed += 1;
            continue;
        };
        if m.dev() != dev {
            continue;
        }
        let ok = if m.is_dir() {
            failed += delete_contents(&p, dev);
            std::fs::remove_dir(&p).is_ok()
        } else {
            std::fs::remove_file(&p).is_ok()
        };
        failed += usize::from(!ok);
    }
    failed
}

fn errno(what: String) -> impl FnOnce(nix::errno::Errno) -> String {
    move |e| format!("{what}: {e}")
}

/// Switch to `new_root` (a mount point) and exec `init` there with `args`
/// (the kernel's arguments to us, without our argv\[0\]). Returns only on failure.
pub fn switch_root(
    new_root: &str,
    init: &str,
    args: &[String],
    log: impl Fn(&str),
) -> Result<Infallible, String> {
    let root = Path::new(new_root);
    for m in API_MOUNTS {
        let target = format!("{new_root}{m}");
        if Path::new(&target).is_dir() {
            mount(
                Some(m),
                target.as_str(),
                None::<&str>,
                MsFlags::MS_MOVE,
                None::<&str>,
            )
            .map_err(errno(format!("moving {m} to {target}")))?;
        } else {
            log(&format!(
                "the image has no {m} directory; detaching {m} instead of moving it"
            ));
            umount2(m, MntFlags::MNT_DETACH).map_err(errno(format!("detaching {m}")))?;
        }
    }
    nix::unistd::chdir(root).map_err(errno(format!("chdir {new_root}")))?;
    let old = std::fs::metadata("/").map_err(|e| format!("stat /: {e}"))?;
    let new = std::fs::metadata(".").map_err(|e| format!("stat {new_root}: {e}"))?;
    if old.dev() == new.dev() {
        return Err(format!("{new_root} is not a mount point"));
    }
    // Only ever empty the initramfs itself: a ramfs or tmpfs.
    // f_type's width differs between architectures.
    #[allow(clippy::unnecessary_cast)]
    let fs_type = nix::sys::statfs::statfs("/").map(|s| s.filesystem_type().0 as i64);
    if matches!(fs_type, Ok(RAMFS_MAGIC) | Ok(TMPFS_MAGIC)) {
        let failed = delete_contents(Path::new("/"), old.dev());
        if failed > 0 {
            log(&format!(
                "could not free {failed} initramfs entries; continuing"
            ));
        }
    }
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(errno(format!("moving {new_root} to /")))?;
    nix::unistd::chroot(".").map_err(errno("chroot".into()))?;
    nix::unistd::chdir("/").map_err(errno("chdir /".into()))?;
    let c = |s: &str| CString::new(s).map_err(|_| format!("{s:?} contains NUL"));
    let mut argv = vec![c(init)?];
    for a in args {
        argv.push(c(a)?);
    }
    log(&format!("exec {init}"));
    match nix::unistd::execv(&argv[0], &argv) {
        Err(e) => Err(format!("exec {init} in the new root: {e}")),
        Ok(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn resolves_symlinks_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        for d in ["sbin", "lib/systemd", "usr/bin", "bin"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        std::fs::write(r.join("lib/systemd/systemd"), "").unwrap();
        std::fs::set_permissions(
            r.join("lib/systemd/systemd"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(r.join("usr/bin/data"), "").unwrap();
        symlink("/lib/systemd/systemd", r.join("sbin/init")).unwrap();
        symlink("../lib/systemd/systemd", r.join("bin/rel")).unwrap();
        symlink("/../../../lib/systemd/systemd", r.join("bin/climb")).unwrap();
        symlink("loop", r.join("bin/loop")).unwrap();
        symlink("/nowhere", r.join("bin/dangling")).unwrap();
        for (path, want) in [
            ("/sbin/init", true),
            ("/bin/rel", true),
            ("/bin/climb", true),
            ("/usr/bin/../../sbin/init", true),
            ("/usr/bin/data", false), // not executable
            ("/bin/loop", false),
            ("/bin/dangling", false),
            ("/lib/systemd", false), // a directory
        ] {
            assert_eq!(check_executable_in(r, path).is_ok(), want, "{path}");
        }
        assert_eq!(
            resolve_in_root(r, "/sbin/init").unwrap(),
            r.join("lib/systemd/systemd")
        );
    }

    #[test]
    fn delete_contents_stays_on_its_device() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("a/b")).unwrap();
        std::fs::write(r.join("a/b/f"), "x").unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), "k").unwrap();
        symlink(outside.path(), r.join("link")).unwrap();
        let dev = std::fs::metadata(r).unwrap().dev();
        assert_eq!(delete_contents(r, dev), 0);
        assert_eq!(std::fs::read_dir(r).unwrap().count(), 0);
        assert!(outside.path().join("keep").exists());
        // Nothing on another device is touched.
        std::fs::create_dir(r.join("x")).unwrap();
        assert_eq!(delete_contents(r, dev.wrapping_add(1)), 0);
        assert!(r.join("x").exists());
    }
}
