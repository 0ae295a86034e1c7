//! Keeping a store healthy: `kiln gc` ([`gc`]) removes what no build needs
//! any more (scratch of dead processes, unreferenced blobs, old cached
//! images, stale records), and `kiln fsck` ([`fsck`]) re-hashes every
//! content-addressed file and checks every record against its name and what
//! it points at (`builder/ARCHITECTURE.md`, "Store maintenance").
//!
//! Both read the store as untrusted bytes: they walk it through its one
//! declared layout ([`crate::store::layout`]), never following a symbolic
//! link (kiln writes none, so one in the store is a problem to report, and
//! gc leaves a store alone while one of its directories is a link), never
//! read more than [`MAX_RECORD`] bytes of a record into memory, and turn every
//! digest into a path through [`crate::util::digest::Digest`].

pub mod fsck;
pub mod gc;

#[cfg(test)]
mod fixture;

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::publish::release::{Entry, Releases};
pub(crate) use crate::store::layout::hex_name;
use crate::util::walk::{self, DirEntry, Kind};

pub use crate::util::record::{read_record, ReadError, MAX_RECORD};

/// The entries of `dir` ([`walk::entries`]: `dir` itself is not followed
/// if it is a link), sorted by name; a missing directory has none.
fn entries(dir: &Path) -> io::Result<Vec<DirEntry>> {
    walk::entries(dir).map_err(io::Error::other)
}

/// Remove a file, a link (not what it points at) or a directory tree; a
/// missing path is fine. A tree is emptied even where it has read-only
/// directories (as an unpacked root has), but never across a mount point:
/// a directory on another filesystem stops the removal with an error.
fn remove_path(path: &Path) -> io::Result<()> {
    let m = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !m.is_dir() {
        return fs::remove_file(path);
    }
    prepare_tree(path, m.dev())?;
    fs::remove_dir_all(path)
}

/// Give every directory below `dir` (itself included) owner rwx, and refuse
/// a tree that reaches into another filesystem.
fn prepare_tree(dir: &Path, dev: u64) -> io::Result<()> {
    let m = fs::symlink_metadata(dir)?;
    if m.dev() != dev {
        return Err(io::Error::other(format!(
            "{} is a mount point; left alone",
            dir.display()
        )));
    }
    let mode = m.permissions().mode();
    if mode & 0o700 != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o700))?;
    }
    for e in entries(dir)? {
        if e.kind == Kind::Dir {
            prepare_tree(&e.path, dev)?;
        }
    }
    Ok(())
}

/// A path inside a release store as a channel entry gives it: relative,
/// made of plain names only (no `..`, no root), so it cannot leave the store.
fn contained(rel: &str) -> Option<&Path> {
    let p = Path::new(rel);
    let plain = !rel.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
    plain.then_some(p)
}

/// One channel history file of a release store.
struct ChannelFile {
    path: PathBuf,
    /// The channel (its directory's name).
    channel: String,
    /// The number in its name (`000042.json` → 42), when it has one.
    seq: Option<u64>,
    /// The entry, or what is wrong with the file.
    entry: Result<Entry, String>,
}

/// Every channel history file of a release store, read with
/// [`read_record`]. Hidden files (a publisher's temporary files) are
/// skipped. `Err` only when a channel directory cannot be listed.
fn channel_files(rel: &Releases) -> io::Result<Vec<ChannelFile>> {
    let mut out = Vec::new();
    for ch in entries(&rel.channels_dir())? {
        let channel = ch.name.to_string_lossy().into_owned();
        if channel.starts_with('.') {
            continue;
        }
        if ch.kind != Kind::Dir {
            out.push(ChannelFile {
                path: ch.path,
                channel,
                seq: None,
                entry: Err("is not a channel directory".into()),
            });
            continue;
        }
        for f in entries(&ch.path)? {
            let name = f.name.to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let seq = name.strip_suffix(".json").and_then(|n| n.parse().ok());
            let entry = read_record(&f.path)
                .map_err(|e| e.to_string())
                .and_then(|b| {
                    crate::util::record::parse_json::<Entry>(&b)
                        .map_err(|e| format!("is not a channel entry: {e}"))
                });
            out.push(ChannelFile {
                path: f.path,
                channel: channel.clone(),
                seq,
                entry,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::digest::Digest;

    #[test]
    fn read_record_is_bounded_and_never_follows_links() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small.json");
        fs::write(&small, b"{}").unwrap();
        assert_eq!(read_record(&small).unwrap(), b"{}");
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&small, &link).unwrap();
        assert!(matches!(read_record(&link), Err(ReadError::Symlink)));
        assert!(matches!(read_record(dir.path()), Err(ReadError::NotAFile)));
        // A huge sparse "record" is refused from its size, not read.
        let big = dir.path().join("big.json");
        fs::File::create(&big).unwrap().set_len(10 << 30).unwrap();
        let e = read_record(&big).unwrap_err();
        assert!(
            matches!(e, ReadError::TooLarge { size } if size == 10 << 30),
            "{e}"
        );
        assert!(matches!(
            read_record(&dir.path().join("missing")),
            Err(ReadError::Io(_))
        ));
    }

    #[test]
    fn hex_names_and_contained_paths() {
        let d = Digest::of(b"");
        assert_eq!(hex_name(&d.hex()), Some(d));
        for bad in [d.to_string(), d.hex().to_uppercase(), "abc".into()] {
            assert_eq!(hex_name(&bad), None, "{bad}");
        }
        assert!(contained("hello/1.0").is_some());
        for bad in ["", "/etc", "../x", "hello/../../x", "./x"] {
            assert!(contained(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn remove_path_empties_read_only_trees_and_removes_links_only() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        fs::create_dir_all(tree.join("proc/sub")).unwrap();
        fs::write(tree.join("proc/sub/f"), b"x").unwrap();
        fs::set_permissions(tree.join("proc/sub"), fs::Permissions::from_mode(0o555)).unwrap();
        fs::set_permissions(tree.join("proc"), fs::Permissions::from_mode(0o555)).unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), b"k").unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("link")).unwrap();
        remove_path(&tree).unwrap();
        assert!(!tree.exists());
        assert!(outside.join("keep").exists());
        remove_path(&tree).unwrap();
    }
}
