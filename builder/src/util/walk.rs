//! Listing directories anyone may have touched without following a link.
//!
//! A directory is opened with `O_DIRECTORY | O_NOFOLLOW`, each component
//! below a trusted root on its own, relative to its parent's handle
//! (openat(2)); its entries are read from that handle and typed from the
//! directory itself (lstat semantics). A link where a directory is expected
//! is [`WalkError::Link`], never a way somewhere else: the store's own walk
//! (`store::layout`) and the sweep of scratch directories
//! ([`crate::util::scratch::sweep`]) stand on this.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{open, openat, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};

/// What a directory entry is, from the directory itself (links not followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A device, FIFO or socket.
    Other,
}

/// One entry of a directory.
#[derive(Debug, Clone)]
pub struct DirEntry {
    /// Its name.
    pub name: OsString,
    /// The directory's path joined with the name.
    pub path: PathBuf,
    /// What it is.
    pub kind: Kind,
}

impl DirEntry {
    /// The name, when it is UTF-8 (every name kiln writes is).
    pub fn name(&self) -> Option<&str> {
        self.name.to_str()
    }
}

/// Why a directory could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// A symbolic link where a directory was expected: never followed.
    #[error("{}: is a symbolic link (kiln never follows one here)", .0.display())]
    Link(PathBuf),
    /// A file, device… where a directory was expected.
    #[error("{}: is not a directory", .0.display())]
    NotDir(PathBuf),
    /// Opening or reading failed.
    #[error("{}: cannot be read: {}", .0.display(), .1)]
    Io(PathBuf, io::Error),
}

impl WalkError {
    /// The path at fault.
    pub fn path(&self) -> &Path {
        match self {
            WalkError::Link(p) | WalkError::NotDir(p) | WalkError::Io(p, _) => p,
        }
    }

    /// What is wrong with [`WalkError::path`], without the path.
    pub fn reason(&self) -> String {
        match self {
            WalkError::Link(_) => "is a symbolic link (kiln never follows one here)".into(),
            WalkError::NotDir(_) => "is not a directory".into(),
            WalkError::Io(_, e) => format!("cannot be read: {e}"),
        }
    }
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_CLOEXEC)
    .union(OFlag::O_NOFOLLOW);

/// Open `root` (following a link there: it is the caller's to trust), then
/// every component of `rel` below it without following one. `None` when a
/// component is missing.
fn open_below(root: &Path, rel: &Path) -> Result<Option<OwnedFd>, WalkError> {
    let root_flags = DIR_FLAGS.difference(OFlag::O_NOFOLLOW);
    let mut fd = match open(root, root_flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(None),
        Err(Errno::ENOTDIR) => return Err(WalkError::NotDir(root.to_path_buf())),
        Err(e) => return Err(WalkError::Io(root.to_path_buf(), e.into())),
    };
    let mut at = root.to_path_buf();
    for c in rel.components() {
        let Component::Normal(name) = c else {
            let e = io::Error::new(io::ErrorKind::InvalidInput, "not a plain relative path");
            return Err(WalkError::Io(root.join(rel), e));
        };
        at.push(name);
        fd = match openat(&fd, name, DIR_FLAGS, Mode::empty()) {
            Ok(next) => next,
            Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::ELOOP) => return Err(WalkError::Link(at)),
            Err(Errno::ENOTDIR) => {
                return Err(match kind_at(&fd, name) {
                    Some(Kind::Symlink) => WalkError::Link(at),
                    _ => WalkError::NotDir(at),
                })
            }
            Err(e) => return Err(WalkError::Io(at, e.into())),
        };
    }
    Ok(Some(fd))
}

/// What `name` in the directory `dir` is, without following a link.
fn kind_at(dir: &OwnedFd, name: &OsStr) -> Option<Kind> {
    let st = fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
    let fmt = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    Some(if fmt == SFlag::S_IFLNK {
        Kind::Symlink
    } else if fmt == SFlag::S_IFDIR {
        Kind::Dir
    } else if fmt == SFlag::S_IFREG {
        Kind::File
    } else {
        Kind::Other
    })
}

/// The entries of the directory `root/rel`, sorted by name, no component
/// of `rel` followed if it is a link (`root` itself is); a missing
/// directory has none. Each entry's path is `root/rel/name`.
pub fn list_below(root: &Path, rel: &Path) -> Result<Vec<DirEntry>, WalkError> {
    let at = if rel.as_os_str().is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let Some(fd) = open_below(root, rel)? else {
        return Ok(Vec::new());
    };
    let io_err = |e: Errno| WalkError::Io(at.clone(), e.into());
    // Two handles on one directory: one to read, one to stat relative to.
    let stat_fd = fd.try_clone().map_err(|e| WalkError::Io(at.clone(), e))?;
    let mut dir = Dir::from_fd(fd).map_err(io_err)?;
    let mut out = Vec::new();
    for e in dir.iter() {
        let e = e.map_err(io_err)?;
        let name = OsStr::from_bytes(e.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        let kind = match e.file_type() {
            Some(Type::Symlink) => Some(Kind::Symlink),
            Some(Type::Directory) => Some(Kind::Dir),
            Some(Type::File) => Some(Kind::File),
            Some(_) => Some(Kind::Other),
            None => None,
        };
        out.push((name.to_os_string(), kind));
    }
    let mut out: Vec<DirEntry> = out
        .into_iter()
        .map(|(name, kind)| DirEntry {
            kind: kind
                .or_else(|| kind_at(&stat_fd, &name))
                .unwrap_or(Kind::Other),
            path: at.join(&name),
            name,
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The entries of `dir`, sorted by name, `dir` itself not followed if it
/// is a link (its parent is); a missing directory has none.
pub fn entries(dir: &Path) -> Result<Vec<DirEntry>, WalkError> {
    match (dir.parent(), dir.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            let mut list = list_below(parent, Path::new(name))?;
            // Paths as the caller spelled the directory.
            for e in &mut list {
                e.path = dir.join(&e.name);
            }
            Ok(list)
        }
        _ => list_below(dir, Path::new("")),
    }
}

/// Check that no directory on the way from `root` to `path` (below `root`;
/// `path` itself excluded) is a link, so that removing `path` removes what
/// is in the tree under `root` and nothing elsewhere.
pub fn no_link_above(root: &Path, path: &Path) -> Result<(), WalkError> {
    let rel = path.strip_prefix(root).map_err(|_| {
        let e = io::Error::new(io::ErrorKind::InvalidInput, "outside the tree");
        WalkError::Io(path.to_path_buf(), e)
    })?;
    match rel.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => open_below(root, parent).map(|_| ()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_are_listed_as_links_and_never_entered() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("f"), b"x").unwrap();
        fs::write(root.join("a/file"), b"x").unwrap();
        symlink(&outside, root.join("a/link")).unwrap();
        symlink(&outside, root.join("l")).unwrap();
        let kinds: Vec<(String, Kind)> = list_below(&root, Path::new("a"))
            .unwrap()
            .into_iter()
            .map(|e| (e.name().unwrap().to_string(), e.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("b".to_string(), Kind::Dir),
                ("file".to_string(), Kind::File),
                ("link".to_string(), Kind::Symlink)
            ]
        );
        for rel in ["l", "a/link"] {
            let e = list_below(&root, Path::new(rel)).unwrap_err();
            assert!(
                matches!(&e, WalkError::Link(p) if *p == root.join(rel)),
                "{e}"
            );
            assert!(matches!(entries(&root.join(rel)), Err(WalkError::Link(_))));
        }
        assert!(matches!(
            list_below(&root, Path::new("a/file")),
            Err(WalkError::NotDir(_))
        ));
        assert!(list_below(&root, Path::new("missing/x"))
            .unwrap()
            .is_empty());
        assert!(no_link_above(&root, &root.join("a/b/x")).is_ok());
        assert!(no_link_above(&root, &root.join("l")).is_ok());
        assert!(matches!(
            no_link_above(&root, &root.join("l/f")),
            Err(WalkError::Link(_))
        ));
        assert!(no_link_above(&root, &outside.join("f")).is_err());
    }
}
