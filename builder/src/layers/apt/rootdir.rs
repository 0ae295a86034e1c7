//! A [`Tree`] as a real directory on the host and back: the lower root that
//! apt installs into is written out with every node kind and all of its
//! metadata (owners, modes, times, `security.capability` and other extended
//! attributes, device numbers, hard links), and the directory apt left behind
//! is read back just as faithfully.
//!
//! Unlike [`crate::input::files::read_dir_tree`], which reads a layer's source files
//! and deliberately forgets the host's owners and modes, both directions here
//! keep them: the directory *is* the image's root. Writing owners and device
//! nodes needs root (CAP_CHOWN, CAP_MKNOD).

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use nix::sys::stat::{self, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;

use crate::fs::tree::{Meta, Node, NodeKind, Tree};

/// Extended attributes that are host bookkeeping, never image content.
const HOST_XATTR_PREFIXES: &[&str] = &["security.selinux", "system.", "trusted.overlay."];

fn host_path(dir: &Path, rel: &str) -> std::path::PathBuf {
    if rel.is_empty() {
        dir.to_path_buf()
    } else {
        dir.join(rel)
    }
}

fn set_meta(path: &Path, node: &Node) -> Result<()> {
    let m = &node.meta;
    // Ownership first: chown clears setuid/setgid bits and file capabilities,
    // so the mode and the xattrs come after it.
    std::os::unix::fs::lchown(path, Some(m.uid), Some(m.gid))
        .with_context(|| format!("chown {}:{} {}", m.uid, m.gid, path.display()))?;
    if !matches!(node.kind, NodeKind::Symlink(_)) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(m.mode & 0o7777))
            .with_context(|| format!("chmod {:o} {}", m.mode, path.display()))?;
        for (name, value) in &m.xattrs {
            xattr::set(path, name, value)
                .with_context(|| format!("setting xattr {name} on {}", path.display()))?;
        }
    }
    set_mtime(path, m.mtime)
}

fn set_mtime(path: &Path, mtime: i64) -> Result<()> {
    let t = TimeSpec::new(mtime, 0);
    stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )
    .with_context(|| format!("setting the time of {}", path.display()))
}

/// Write `tree` into the empty (or not yet existing) directory `dir`.
/// Directory times are set last, once their contents no longer change.
pub fn materialize(tree: &Tree, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (rel, node) in tree.iter() {
        let path = host_path(dir, rel);
        match &node.kind {
            NodeKind::Dir => {
                if !rel.is_empty() {
                    std::fs::create_dir(&path)
                        .with_context(|| format!("creating directory {}", path.display()))?;
                }
            }
            NodeKind::File(data) => std::fs::write(&path, data.as_slice())
                .with_context(|| format!("writing {}", path.display()))?,
            NodeKind::Symlink(target) => std::os::unix::fs::symlink(target, &path)
                .with_context(|| format!("creating symlink {}", path.display()))?,
            // A link shares its target's inode and metadata; the target (a
            // regular file, by the tree's invariant) may sort after it, so
            // hard links are made in a second pass.
            NodeKind::Hardlink(_) => continue,
            NodeKind::CharDev { major, minor } | NodeKind::BlockDev { major, minor } => {
                let kind = if matches!(node.kind, NodeKind::CharDev { .. }) {
                    SFlag::S_IFCHR
                } else {
                    SFlag::S_IFBLK
                };
                stat::mknod(
                    &path,
                    kind,
                    Mode::from_bits_truncate(node.meta.mode & 0o777),
                    stat::makedev((*major).into(), (*minor).into()),
                )
                .with_context(|| format!("mknod {} ({major}:{minor})", path.display()))?;
            }
            NodeKind::Fifo => stat::mknod(
                &path,
                SFlag::S_IFIFO,
                Mode::from_bits_truncate(node.meta.mode & 0o777),
                0,
            )
            .with_context(|| format!("mkfifo {}", path.display()))?,
        }
        if node.kind != NodeKind::Dir {
            set_meta(&path, node)?;
        }
    }
    for (rel, node) in tree.iter() {
        if let NodeKind::Hardlink(target) = &node.kind {
            let path = host_path(dir, rel);
            std::fs::hard_link(host_path(dir, target), &path)
                .with_context(|| format!("linking {} to {target}", path.display()))?;
        }
    }
    // Directories last, deepest first: creating entries changes a
    // directory's time, and in reverse path order every child comes before
    // its parent.
    for (rel, node) in tree.iter().collect::<Vec<_>>().into_iter().rev() {
        if node.kind == NodeKind::Dir {
            set_meta(&host_path(dir, rel), node)?;
        }
    }
    Ok(())
}

/// Read the directory `dir` into a tree: owners, modes, times (clamped to
/// `clamp_mtime`), extended attributes (without the host's own, see
/// [`HOST_XATTR_PREFIXES`]), symlinks, device nodes and FIFOs; files sharing
/// an inode become one regular file (the smallest path) and hard links to it.
/// Sockets cannot be stored in a layer and are an error.
pub fn read_root(dir: &Path, clamp_mtime: i64) -> Result<Tree> {
    let mut tree = Tree::new(clamp_mtime);
    let root_md =
        std::fs::symlink_metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    tree.insert(
        "",
        Node {
            kind: NodeKind::Dir,
            meta: meta_of(dir, &root_md, clamp_mtime)?,
        },
    )?;
    // Inode → every path of a multiply-linked regular file.
    let mut inodes: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
    walk(dir, "", &mut tree, &mut inodes, clamp_mtime)?;
    for (_, mut paths) in inodes {
        if paths.len() < 2 {
            continue;
        }
        paths.sort();
        let first = paths[0].clone();
        for p in &paths[1..] {
            if let Some(n) = tree.get_mut(p) {
                n.kind = NodeKind::Hardlink(first.clone());
            }
        }
    }
    Ok(tree)
}

fn meta_of(path: &Path, md: &std::fs::Metadata, clamp_mtime: i64) -> Result<Meta> {
    let mut xattrs = BTreeMap::new();
    if !md.file_type().is_symlink() {
        let names =
            xattr::list(path).with_context(|| format!("listing xattrs of {}", path.display()))?;
        for name in names {
            let Some(name) = name.to_str().map(str::to_string) else {
                bail!(crate::input_err!(
                    path.display().to_string(),
                    "xattr name {name:?} is not UTF-8"
                ));
            };
            if HOST_XATTR_PREFIXES.iter().any(|p| name.starts_with(p)) {
                continue;
            }
            if let Some(v) = xattr::get(path, &name)
                .with_context(|| format!("reading xattr {name} of {}", path.display()))?
            {
                xattrs.insert(name, v);
            }
        }
    }
    Ok(Meta {
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        mtime: md.mtime().min(clamp_mtime),
        xattrs,
    })
}

fn walk(
    dir: &Path,
    rel: &str,
    tree: &mut Tree,
    inodes: &mut BTreeMap<(u64, u64), Vec<String>>,
    clamp_mtime: i64,
) -> Result<()> {
    let here = host_path(dir, rel);
    let mut names: Vec<String> = Vec::new();
    for e in std::fs::read_dir(&here).with_context(|| format!("reading {}", here.display()))? {
        let e = e.with_context(|| format!("reading {}", here.display()))?;
        let name = e.file_name().into_string().map_err(|n| {
            crate::input_err!(here.display().to_string(), "file name {n:?} is not UTF-8")
        })?;
        names.push(name);
    }
    names.sort();
    for name in names {
        let relp = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let path = dir.join(&relp);
        let md = std::fs::symlink_metadata(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let ft = md.file_type();
        use std::os::unix::fs::FileTypeExt;
        let kind = if ft.is_dir() {
            NodeKind::Dir
        } else if ft.is_file() {
            if md.nlink() > 1 {
                inodes
                    .entry((md.dev(), md.ino()))
                    .or_default()
                    .push(relp.clone());
            }
            let data =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            NodeKind::File(Arc::new(data))
        } else if ft.is_symlink() {
            let t = std::fs::read_link(&path)
                .with_context(|| format!("reading link {}", path.display()))?;
            NodeKind::Symlink(t.into_os_string().into_string().map_err(|t| {
                crate::input_err!(path.display().to_string(), "link target {t:?} is not UTF-8")
            })?)
        } else if ft.is_char_device() || ft.is_block_device() {
            let rdev = md.rdev();
            let (major, minor) = (stat::major(rdev) as u32, stat::minor(rdev) as u32);
            if ft.is_char_device() {
                NodeKind::CharDev { major, minor }
            } else {
                NodeKind::BlockDev { major, minor }
            }
        } else if ft.is_fifo() {
            NodeKind::Fifo
        } else {
            bail!(crate::input_err!(
                path.display().to_string(),
                "a socket cannot be stored in a layer"
            ));
        };
        let is_dir = kind == NodeKind::Dir;
        tree.insert(
            &relp,
            Node {
                kind,
                meta: meta_of(&path, &md, clamp_mtime)?,
            },
        )?;
        if is_dir {
            walk(dir, &relp, tree, inodes, clamp_mtime)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree with one of every node kind, odd owners and modes, a file
    /// capability and a hard link, survives materialise → read back unchanged.
    #[test]
    fn round_trip_every_node_kind() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test writes owners and device nodes: run it as root (CI does)"
        );
        let sde = 1_700_000_000;
        let mut t = Tree::new(1_600_000_000);
        let meta = |mode, uid, gid, mtime| Meta {
            mode,
            uid,
            gid,
            mtime,
            xattrs: BTreeMap::new(),
        };
        let add = |t: &mut Tree, p: &str, kind, m| t.insert(p, Node { kind, meta: m }).unwrap();
        add(
            &mut t,
            "dev",
            NodeKind::Dir,
            meta(0o755, 0, 0, 1_500_000_000),
        );
        add(
            &mut t,
            "dev/null",
            NodeKind::CharDev { major: 1, minor: 3 },
            meta(0o666, 0, 0, 1_500_000_001),
        );
        add(
            &mut t,
            "dev/loop9",
            NodeKind::BlockDev { major: 7, minor: 9 },
            meta(0o660, 0, 6, 1_500_000_002),
        );
        add(
            &mut t,
            "dev/fifo",
            NodeKind::Fifo,
            meta(0o600, 5, 5, 1_500_000_003),
        );
        add(
            &mut t,
            "tmp",
            NodeKind::Dir,
            meta(0o1777, 0, 0, 1_500_000_004),
        );
        add(
            &mut t,
            "usr",
            NodeKind::Dir,
            meta(0o755, 0, 0, 1_500_000_005),
        );
        add(
            &mut t,
            "usr/bin",
            NodeKind::Dir,
            meta(0o755, 0, 0, 1_500_000_006),
        );
        let mut ping = meta(0o755, 0, 0, 1_500_000_007);
        // VFS_CAP_REVISION_2: cap_net_raw (13) permitted and effective.
        let mut cap = vec![0u8; 20];
        cap[..4].copy_from_slice(&0x0200_0001u32.to_le_bytes());
        cap[4..8].copy_from_slice(&(1u32 << 13).to_le_bytes());
        ping.xattrs.insert("security.capability".into(), cap);
        add(
            &mut t,
            "usr/bin/ping",
            NodeKind::File(Arc::new(b"\x7fELF ping".to_vec())),
            ping,
        );
        add(
            &mut t,
            "usr/bin/su",
            NodeKind::File(Arc::new(b"su".to_vec())),
            meta(0o4755, 0, 0, 1_500_000_008),
        );
        add(
            &mut t,
            "usr/bin/wall",
            NodeKind::File(Arc::new(b"wall".to_vec())),
            meta(0o2755, 0, 5, 1_500_000_009),
        );
        add(
            &mut t,
            "usr/bin/a-link",
            NodeKind::Hardlink("usr/bin/wall".into()),
            meta(0o2755, 0, 5, 1_500_000_009),
        );
        add(
            &mut t,
            "usr/bin/sh",
            NodeKind::Symlink("dash".into()),
            meta(0o777, 0, 0, 1_500_000_010),
        );
        add(
            &mut t,
            "usr/bin/abs",
            NodeKind::Symlink("/nonexistent/target".into()),
            meta(0o777, 1000, 1000, 1_500_000_011),
        );
        add(
            &mut t,
            "var",
            NodeKind::Dir,
            meta(0o700, 100, 101, 1_500_000_012),
        );
        add(
            &mut t,
            "var/late",
            NodeKind::File(Arc::new(vec![0; 5000])),
            meta(0o640, 100, 101, 1_800_000_000),
        );
        t.validate().unwrap();

        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        materialize(&t, &root).unwrap();
        let mut back = read_root(&root, sde).unwrap();
        // read_root picks the smallest path of an inode as the file.
        assert_eq!(
            back.get("usr/bin/wall").map(|n| n.kind.clone()),
            Some(NodeKind::Hardlink("usr/bin/a-link".into()))
        );
        assert!(matches!(
            back.get("usr/bin/a-link").map(|n| &n.kind),
            Some(NodeKind::File(_))
        ));
        // Same filesystem object either way round: normalise for comparison.
        let wall = back.get("usr/bin/a-link").cloned().unwrap();
        back.insert("usr/bin/wall", wall).unwrap();
        back.get_mut("usr/bin/a-link").unwrap().kind = NodeKind::Hardlink("usr/bin/wall".into());
        let mut want = t.clone();
        // Times later than SOURCE_DATE_EPOCH are clamped on the way back.
        want.get_mut("var/late").unwrap().meta.mtime = sde;
        assert_eq!(back, want);
    }
}
