//! Directories a read-only root keeps under its tmpfs mounts.
//!
//! A root that mounts tmpfs over parts of itself (the Debian base's
//! `/etc/fstab` puts `/var/log`, `/var/cache`, `/var/tmp` and
//! `/var/lib/systemd` in RAM) hides the directories its packages created
//! there: `/var/log/redis`, `/var/log/nginx`, owned by their service's user.
//! A service that opens its log file in such a directory fails to start. So
//! kiln writes a tmpfiles.d(5) file that creates them again at boot, with the
//! image's mode and numeric owner, before any service starts
//! (`systemd-tmpfiles-setup.service` runs in `sysinit.target`). Only for roots
//! with `systemd-tmpfiles`; other inits (the busybox base's `rcS`) set up
//! their own writable directories.

use std::sync::Arc;

use crate::fs::tree::{normalize_lexically, Meta, Node, NodeKind, Tree};

/// Where the file goes (the vendor tmpfiles.d directory; an admin's
/// `/etc/tmpfiles.d/kiln-volatile.conf` would override it).
pub const TMPFILES_PATH: &str = "usr/lib/tmpfiles.d/kiln-volatile.conf";

/// The tmpfs mount points of an fstab(5) text, as tree paths (`var/log`).
pub fn tmpfs_mounts(fstab: &str) -> Vec<String> {
    fstab
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && f[2] == "tmpfs").then(|| normalize_lexically(f[1]))
        })
        .filter(|m| !m.is_empty())
        .collect()
}

/// The tmpfiles.d text re-creating the directories below the tmpfs mounts
/// of `root`'s `/etc/fstab`; `None` when there is nothing to re-create or
/// the root has no systemd-tmpfiles.
pub fn tmpfiles(root: &Tree) -> Option<String> {
    root.resolve("usr/bin/systemd-tmpfiles")?;
    let fstab = match &root.resolve("etc/fstab")?.1.kind {
        NodeKind::File(d) => String::from_utf8_lossy(d).into_owned(),
        _ => return None,
    };
    let mut lines = Vec::new();
    for mount in tmpfs_mounts(&fstab) {
        let prefix = format!("{mount}/");
        for (path, node) in root.iter() {
            if path.starts_with(&prefix) && node.kind == NodeKind::Dir {
                // tmpfiles.d paths: no whitespace or quoting in what kiln writes.
                if path.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\') {
                    continue;
                }
                let m = &node.meta;
                lines.push(format!(
                    "d /{path} {:04o} {} {} -",
                    m.mode & 0o7777,
                    m.uid,
                    m.gid
                ));
            }
        }
    }
    (!lines.is_empty()).then(|| {
        format!(
            "# Written by kiln: directories of the image that its tmpfs mounts (/etc/fstab) hide.\n{}\n",
            lines.join("\n")
        )
    })
}

/// Add [`tmpfiles`]' file to the root filesystem tree (a no-op when there is none).
pub fn add(root: &mut Tree, sde: i64) -> Result<(), crate::fs::tree::TreeError> {
    if let Some(text) = tmpfiles(root) {
        root.insert_with_parents(
            TMPFILES_PATH,
            Node {
                kind: NodeKind::File(Arc::new(text.into_bytes())),
                meta: Meta::root(0o644, sde),
            },
            &Meta::root(0o755, sde),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(t: &mut Tree, path: &str, kind: NodeKind, mode: u32, uid: u32, gid: u32) {
        t.insert_with_parents(
            path,
            Node {
                kind,
                meta: Meta {
                    mode,
                    uid,
                    gid,
                    ..Meta::root(0, 0)
                },
            },
            &Meta::root(0o755, 0),
        )
        .unwrap();
    }

    #[test]
    fn service_directories_under_tmpfs_come_back() {
        let mut t = Tree::new(0);
        let fstab = "# comment\ntmpfs  /var/log  tmpfs  mode=0755 0 0\n/dev/root / ext4 ro 0 1\ntmpfs /var/cache/ tmpfs defaults 0 0\n";
        put(
            &mut t,
            "etc/fstab",
            NodeKind::File(Arc::new(fstab.as_bytes().to_vec())),
            0o644,
            0,
            0,
        );
        put(
            &mut t,
            "usr/bin/systemd-tmpfiles",
            NodeKind::File(Arc::new(vec![])),
            0o755,
            0,
            0,
        );
        put(&mut t, "var/log/redis", NodeKind::Dir, 0o2750, 100, 4);
        put(
            &mut t,
            "var/log/redis/old.log",
            NodeKind::File(Arc::new(vec![])),
            0o640,
            100,
            4,
        );
        put(&mut t, "var/cache/nginx", NodeKind::Dir, 0o755, 33, 33);
        put(&mut t, "var/lib/redis", NodeKind::Dir, 0o750, 100, 101);
        assert_eq!(tmpfs_mounts(fstab), ["var/log", "var/cache"]);
        let text = tmpfiles(&t).unwrap();
        assert!(text.contains("\nd /var/log/redis 2750 100 4 -\n"), "{text}");
        assert!(text.contains("d /var/cache/nginx 0755 33 33 -"), "{text}");
        assert!(!text.contains("var/lib/redis"), "not under a tmpfs: {text}");
        assert!(!text.contains("old.log"), "directories only: {text}");
        // No systemd-tmpfiles: nothing.
        t.remove("usr/bin/systemd-tmpfiles");
        assert!(tmpfiles(&t).is_none());
    }
}
