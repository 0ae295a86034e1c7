//! Merged /usr: every root kiln builds keeps its programs and libraries under
//! `/usr`, with `/bin`, `/sbin`, `/lib` (and `/lib32`, `/lib64`, `/libx32`
//! where `/usr` has them) as symlinks into it, the layout Debian has shipped
//! since bookworm and requires from trixie on (DEP 17; the `usrmerge`
//! package's conversion, freedesktop's "The Case for the /usr Merge").
//!
//! Layers are written for either layout: a layer's files at `bin/ash` and a
//! strip rule `lib/modules/**` mean `usr/bin/ash` and `usr/lib/modules/**`.
//! [`merge`] moves what a tree holds below the aliased directories into
//! `/usr` (a layer's files, a suite unpacked without the merge, such as
//! mmdebstrap's `extract` variant), and [`canonical`] maps the paths and globs
//! that layer definitions name, so that a rule never silently matches nothing
//! because the root happens to be merged.

use std::borrow::Cow;

use crate::fs::tree::{normalize_lexically, parent, Meta, Node, NodeKind, Tree};

/// The top-level directories that are symlinks into `/usr` in a merged root.
pub const ALIASED: [&str; 6] = ["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// The aliases every merged root has, whether or not `/usr` holds anything
/// there yet (a base layer's `/bin/sh` must resolve once packages add it).
const ALWAYS_LINKED: [&str; 3] = ["bin", "sbin", "lib"];

/// Errors merging a tree.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UsrMergeError {
    /// The same path exists both in an aliased directory and in `/usr`, with
    /// different contents: the merge would have to drop one.
    #[error("/{path} and /{canonical} both exist and differ; a merged-/usr root can hold only one (remove one of them)")]
    Conflict {
        /// The path in the aliased directory.
        path: String,
        /// Its place under `/usr`.
        canonical: String,
    },
    /// An aliased directory is a symlink somewhere other than into `/usr`.
    #[error("/{path} is a symlink to {target:?}; in a merged-/usr root it must be a directory or the symlink usr/{path}")]
    ForeignLink {
        /// The top-level entry.
        path: String,
        /// Where it points.
        target: String,
    },
    /// An aliased path is neither a directory nor the merge symlink.
    #[error("/{0} is not a directory; a merged-/usr root needs it as a symlink into /usr")]
    NotDir(String),
}

/// The merged-/usr place of a path in the tree's form (`bin/sh` →
/// `usr/bin/sh`, `lib` → `usr/lib`); other paths are unchanged. Works on
/// globs too, whose first component is then taken literally: `lib/**` →
/// `usr/lib/**`, while `**/lib/x` and `l*b/x` stay as they are.
pub fn canonical(path: &str) -> Cow<'_, str> {
    let trimmed = path.trim_start_matches('/');
    let first = trimmed.split('/').next().unwrap_or("");
    if ALIASED.contains(&first) {
        Cow::Owned(format!("usr/{trimmed}"))
    } else {
        Cow::Borrowed(path)
    }
}

/// Move everything below the aliased top-level directories of `tree` into
/// `/usr`, rewriting relative symlinks and hard links that the move would
/// break. With `links`, the aliases themselves become the merge symlinks
/// (`bin` → `usr/bin`): for a layer that is a whole root (a base layer);
/// without, the aliases are left out, for a layer that lies on such a root.
/// Idempotent: a merged tree stays as it is.
pub fn merge(tree: &mut Tree, links: bool) -> Result<(), UsrMergeError> {
    let mut moves: Vec<(String, Node)> = Vec::new();
    for alias in ALIASED {
        match tree.get(alias).map(|n| &n.kind) {
            None | Some(NodeKind::Dir) => {}
            Some(NodeKind::Symlink(t)) => {
                if !is_merge_link(alias, t) {
                    return Err(UsrMergeError::ForeignLink {
                        path: alias.into(),
                        target: t.clone(),
                    });
                }
                continue;
            }
            Some(_) => return Err(UsrMergeError::NotDir(alias.into())),
        }
        let prefix = format!("{alias}/");
        for (p, n) in tree.iter() {
            if p == alias || p.starts_with(&prefix) {
                moves.push((p.to_string(), n.clone()));
            }
        }
    }
    // Where the moved entries' hard links and relative symlinks now point.
    let moved = |node: &Node, from: &str, to: &str| -> Node {
        let kind = match &node.kind {
            NodeKind::Hardlink(t) => NodeKind::Hardlink(canonical(t).into_owned()),
            NodeKind::Symlink(t) if !t.starts_with('/') => {
                let old_dir = parent(from).unwrap_or("");
                let target =
                    canonical(&normalize_lexically(&format!("{old_dir}/{t}"))).into_owned();
                NodeKind::Symlink(relative(parent(to).unwrap_or(""), &target))
            }
            k => k.clone(),
        };
        Node {
            kind,
            meta: node.meta.clone(),
        }
    };
    for (path, node) in &moves {
        let to = canonical(path).into_owned();
        let node = moved(node, path, &to);
        match tree.get(&to) {
            Some(existing) if existing.kind == NodeKind::Dir && node.kind == NodeKind::Dir => {}
            Some(existing) if same(existing, &node) => {}
            Some(_) => {
                return Err(UsrMergeError::Conflict {
                    path: path.clone(),
                    canonical: to,
                })
            }
            None => {
                let dir_meta = node.meta.clone();
                tree.insert_with_parents(
                    &to,
                    node,
                    &Meta {
                        mode: 0o755,
                        ..dir_meta
                    },
                )
                .map_err(|_| UsrMergeError::NotDir("usr".into()))?;
            }
        }
    }
    // Hard links elsewhere in the tree that pointed into a moved directory.
    let relink: Vec<(String, Node)> = tree
        .iter()
        .filter_map(|(p, n)| match &n.kind {
            NodeKind::Hardlink(t) if canonical(t) != t.as_str() => Some((
                p.to_string(),
                Node {
                    kind: NodeKind::Hardlink(canonical(t).into_owned()),
                    meta: n.meta.clone(),
                },
            )),
            _ => None,
        })
        .collect();
    for (p, n) in relink {
        tree.insert(&p, n).map_err(|_| UsrMergeError::NotDir(p))?;
    }
    for alias in ALIASED {
        let had = tree.get(alias).is_some();
        if had && matches!(tree.get(alias).map(|n| &n.kind), Some(NodeKind::Symlink(_))) {
            continue;
        }
        tree.remove(alias);
        let wanted = links
            && (had
                || ALWAYS_LINKED.contains(&alias)
                || tree.get(&format!("usr/{alias}")).is_some());
        if wanted {
            let mtime = tree.get("").map_or(0, |n| n.meta.mtime);
            tree.insert(
                alias,
                Node {
                    kind: NodeKind::Symlink(format!("usr/{alias}")),
                    meta: Meta::root(0o777, mtime),
                },
            )
            .map_err(|_| UsrMergeError::NotDir(alias.into()))?;
        }
    }
    Ok(())
}

/// Whether `target` is the merge symlink for top-level `alias`.
fn is_merge_link(alias: &str, target: &str) -> bool {
    normalize_lexically(target) == format!("usr/{alias}")
}

/// Two entries that the merge may fold into one: same kind and contents.
fn same(a: &Node, b: &Node) -> bool {
    a.kind == b.kind
}

/// A relative symlink target from directory `from_dir` to `to` (both tree paths).
fn relative(from_dir: &str, to: &str) -> String {
    let from: Vec<&str> = from_dir.split('/').filter(|c| !c.is_empty()).collect();
    let to_c: Vec<&str> = to.split('/').filter(|c| !c.is_empty()).collect();
    let common = from.iter().zip(&to_c).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&str> = vec![".."; from.len() - common];
    parts.extend(&to_c[common..]);
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{dir, file};

    fn link(target: &str) -> Node {
        Node {
            kind: NodeKind::Symlink(target.into()),
            meta: Meta::root(0o777, 0),
        }
    }

    #[test]
    fn canonical_paths_and_globs() {
        for (input, want) in [
            ("bin/sh", "usr/bin/sh"),
            ("/sbin/init", "usr/sbin/init"),
            ("lib", "usr/lib"),
            ("lib/modules/**", "usr/lib/modules/**"),
            (
                "lib64/ld-linux-x86-64.so.2",
                "usr/lib64/ld-linux-x86-64.so.2",
            ),
            ("usr/lib/x", "usr/lib/x"),
            ("library/x", "library/x"),
            ("**/lib/x", "**/lib/x"),
            ("etc/os-release", "etc/os-release"),
        ] {
            assert_eq!(canonical(input), want, "{input}");
        }
    }

    #[test]
    fn merge_moves_aliased_directories_into_usr() {
        // An unmerged busybox root: /bin/busybox, applet links, /sbin/init.
        let mut t = Tree::new(0);
        t.insert("bin", dir()).unwrap();
        t.insert("bin/busybox", file("bb")).unwrap();
        t.insert("bin/sh", link("busybox")).unwrap();
        t.insert("sbin", dir()).unwrap();
        t.insert("sbin/init", link("../bin/busybox")).unwrap();
        t.insert("lib", dir()).unwrap();
        t.insert("lib/libx.so", link("../usr/lib/real.so")).unwrap();
        t.insert("usr", dir()).unwrap();
        t.insert("usr/lib", dir()).unwrap();
        t.insert("usr/lib/real.so", file("so")).unwrap();
        t.insert(
            "usr/lib/hard",
            Node {
                kind: NodeKind::Hardlink("bin/busybox".into()),
                meta: Meta::root(0o755, 0),
            },
        )
        .unwrap();
        merge(&mut t, true).unwrap();
        assert_eq!(
            t.get("bin").unwrap().kind,
            NodeKind::Symlink("usr/bin".into())
        );
        assert_eq!(
            t.get("sbin").unwrap().kind,
            NodeKind::Symlink("usr/sbin".into())
        );
        assert_eq!(
            t.get("lib").unwrap().kind,
            NodeKind::Symlink("usr/lib".into())
        );
        assert!(t.get("lib64").is_none(), "no usr/lib64, no lib64 link");
        assert_eq!(t.resolve("sbin/init").unwrap().0, "usr/bin/busybox");
        assert_eq!(t.resolve("bin/sh").unwrap().0, "usr/bin/busybox");
        // A relative link that climbed out of /lib is rewritten for its new place.
        assert_eq!(
            t.get("usr/lib/libx.so").unwrap().kind,
            NodeKind::Symlink("real.so".into())
        );
        assert_eq!(
            t.get("usr/lib/hard").unwrap().kind,
            NodeKind::Hardlink("usr/bin/busybox".into())
        );
        // Idempotent.
        let once = t.clone();
        merge(&mut t, true).unwrap();
        assert_eq!(t, once);
    }

    #[test]
    fn merge_without_links_leaves_the_aliases_to_the_root() {
        let mut t = Tree::new(0);
        t.insert("bin", dir()).unwrap();
        t.insert("bin/hello", file("x")).unwrap();
        t.insert("bin/.wh.old", file("")).unwrap();
        merge(&mut t, false).unwrap();
        assert!(t.get("bin").is_none());
        assert!(t.get("usr/bin/hello").is_some());
        assert!(
            t.get("usr/bin/.wh.old").is_some(),
            "whiteouts move with their directory"
        );
    }

    #[test]
    fn merge_refuses_conflicts_and_foreign_links() {
        let mut t = Tree::new(0);
        t.insert("bin", dir()).unwrap();
        t.insert("bin/sh", file("dash")).unwrap();
        t.insert("usr", dir()).unwrap();
        t.insert("usr/bin", dir()).unwrap();
        t.insert("usr/bin/sh", file("bash")).unwrap();
        assert_eq!(
            merge(&mut t, true),
            Err(UsrMergeError::Conflict {
                path: "bin/sh".into(),
                canonical: "usr/bin/sh".into()
            })
        );
        let mut t = Tree::new(0);
        t.insert("lib", link("/opt/lib")).unwrap();
        assert!(matches!(
            merge(&mut t, true),
            Err(UsrMergeError::ForeignLink { .. })
        ));
        // Identical files in both places fold into one.
        let mut t = Tree::new(0);
        t.insert("bin", dir()).unwrap();
        t.insert("bin/sh", file("dash")).unwrap();
        t.insert("usr", dir()).unwrap();
        t.insert("usr/bin", dir()).unwrap();
        t.insert("usr/bin/sh", file("dash")).unwrap();
        merge(&mut t, true).unwrap();
        assert!(t.get("usr/bin/sh").is_some());
    }
}
