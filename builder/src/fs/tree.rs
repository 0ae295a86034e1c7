//! The in-memory filesystem tree that layers are unpacked into, composed on,
//! and that the filesystem writers (tar, ext4, cpio) read from.
//!
//! A [`Tree`] is a flat, sorted map from normalised relative paths
//! (`"usr/bin/busybox"`, no leading or trailing slash; the root directory is the
//! empty path `""`) to [`Node`]s. Byte order of paths puts every directory
//! before its contents, which is the order a deterministic tar needs. All
//! metadata (mode, owner, mtime, xattrs) lives in the tree: nothing is ever
//! taken from the host filesystem's ownership or times once a tree exists.
//!
//! Whiteouts follow the OCI image layer specification
//! (<https://github.com/opencontainers/image-spec/blob/main/layer.md#whiteouts>):
//! `.wh.NAME` deletes `NAME` from the layers below, `.wh..wh..opq` makes its
//! directory opaque (hides all lower contents).

use std::collections::BTreeMap;
use std::sync::Arc;

/// Prefix of an OCI whiteout entry.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of an OCI opaque-directory marker.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

mod check;
mod whiteout;
pub use check::NAME_MAX;
pub use whiteout::{check_whiteout_entry, whiteout, Whiteout};

/// File contents, shared cheaply between trees.
pub type Content = Arc<Vec<u8>>;

/// What kind of filesystem object a node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// A directory; its children are the tree's paths below it.
    Dir,
    /// A regular file with its contents.
    File(Content),
    /// A symbolic link and its target, exactly as stored (never resolved).
    Symlink(String),
    /// A hard link to another regular file of the tree (its path).
    Hardlink(String),
    /// A character device node.
    CharDev {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
    /// A block device node.
    BlockDev {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
    /// A named pipe.
    Fifo,
}

/// Ownership, permissions, time and extended attributes of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits including setuid/setgid/sticky (`0o7777` mask); no file-type bits.
    pub mode: u32,
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
    /// Modification time, seconds since the epoch (already clamped to SOURCE_DATE_EPOCH).
    pub mtime: i64,
    /// Extended attributes by full name (`security.capability`, `user.foo`).
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl Meta {
    /// Root-owned metadata with the given permission bits and time.
    pub fn root(mode: u32, mtime: i64) -> Self {
        Meta {
            mode,
            uid: 0,
            gid: 0,
            mtime,
            xattrs: BTreeMap::new(),
        }
    }
}

/// One filesystem object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// What it is.
    pub kind: NodeKind,
    /// Its metadata.
    pub meta: Meta,
}

impl Node {
    /// The `S_IFMT` file-type bits of this node, as in `stat(2)`.
    /// A hard link reports the type of a regular file.
    pub fn file_type_bits(&self) -> u32 {
        match self.kind {
            NodeKind::Dir => 0o040000,
            NodeKind::File(_) | NodeKind::Hardlink(_) => 0o100000,
            NodeKind::Symlink(_) => 0o120000,
            NodeKind::CharDev { .. } => 0o020000,
            NodeKind::BlockDev { .. } => 0o060000,
            NodeKind::Fifo => 0o010000,
        }
    }

    /// Full `st_mode`: file type bits and permission bits.
    pub fn st_mode(&self) -> u32 {
        self.file_type_bits() | (self.meta.mode & 0o7777)
    }
}

/// Errors in a path or in an operation on the tree.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TreeError {
    /// A path that is absolute after normalisation, climbs out with `..`, or is not UTF-8.
    #[error("path {0:?} is not a clean relative path inside the tree")]
    BadPath(String),
    /// An entry whose parent is not a directory.
    #[error("{path}: parent {parent:?} is not a directory")]
    ParentNotDir {
        /// The entry.
        path: String,
        /// Its parent.
        parent: String,
    },
    /// A whiteout-named entry that is not a valid whiteout ([`whiteout()`]).
    #[error("{name:?} is not a valid whiteout: {why}")]
    BadWhiteout {
        /// The entry's name.
        name: String,
        /// What is wrong with it.
        why: String,
    },
    /// An entry no layer may hold ([`Tree::check_layer`]).
    #[error("{path:?}: {why}")]
    BadEntry {
        /// The entry.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// A hard link whose target is not a regular file of the tree.
    #[error("{path}: hard link target {target:?} is not a regular file in the tree")]
    BadHardlink {
        /// The link.
        path: String,
        /// What it points at.
        target: String,
    },
}

/// Normalise a path from a tar header or a layer definition into the tree's form:
/// strips leading `./` and `/`, trailing `/`, and `.` components; rejects `..`.
pub fn normalize(path: &str) -> Result<String, TreeError> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(TreeError::BadPath(path.to_string())),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// Resolve `.` and `..` lexically (`..` at the top stays at the top, as at `/`).
pub fn normalize_lexically(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

/// The parent of a normalised path (`""` for top-level entries). `None` for the root.
pub fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    Some(path.rsplit_once('/').map_or("", |(p, _)| p))
}

/// The last component of a normalised path.
pub fn file_name(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, n)| n)
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// A whole filesystem tree. See the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    entries: BTreeMap<String, Node>,
}

impl Default for Tree {
    fn default() -> Self {
        Self::new(0)
    }
}

impl Tree {
    /// A tree holding only its root directory (mode 0755, root-owned, time `mtime`).
    pub fn new(mtime: i64) -> Self {
        let mut entries = BTreeMap::new();
        entries.insert(
            String::new(),
            Node {
                kind: NodeKind::Dir,
                meta: Meta::root(0o755, mtime),
            },
        );
        Tree { entries }
    }

    /// Number of entries, the root directory included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether only the root directory is present.
    pub fn is_empty(&self) -> bool {
        self.entries.len() <= 1
    }

    /// The node at a normalised path.
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.entries.get(path)
    }

    /// Follow symlinks (inside the tree, never on the host; absolute targets
    /// from the tree's root) in every component of `path`, as the kernel's
    /// path walk does, and hard links at its end, to the node the path names,
    /// with its resolved path: `sbin/init` in a merged-/usr root (`sbin` →
    /// `usr/sbin`, `usr/sbin/init` → `../bin/busybox`) is `usr/bin/busybox`.
    /// `None` for a dangling link, a loop, or a component that is not a
    /// directory.
    pub fn resolve(&self, path: &str) -> Option<(String, &Node)> {
        // The kernel's limit on symlinks followed in one lookup (MAXSYMLINKS).
        const MAX_LINKS: usize = 40;
        let mut pending: Vec<String> = path.split('/').rev().map(str::to_string).collect();
        let mut cur = String::new();
        let mut links = 0;
        while let Some(comp) = pending.pop() {
            match comp.as_str() {
                "" | "." => continue,
                ".." => {
                    cur = parent(&cur).unwrap_or("").to_string();
                    continue;
                }
                _ => {}
            }
            if self.entries.get(&cur)?.kind != NodeKind::Dir {
                return None;
            }
            let next = join(&cur, &comp);
            match &self.entries.get(&next)?.kind {
                NodeKind::Symlink(t) => {
                    links += 1;
                    if links > MAX_LINKS {
                        return None;
                    }
                    if t.starts_with('/') {
                        cur.clear();
                    }
                    pending.extend(t.split('/').rev().map(str::to_string));
                }
                NodeKind::Hardlink(t) if pending.iter().all(|c| c.is_empty() || c == ".") => {
                    cur = t.clone();
                }
                _ => cur = next,
            }
        }
        self.entries.get(&cur).map(|n| (cur, n))
    }

    /// Clamp every time to `epoch`: later times become `epoch`.
    pub fn clamp_mtimes(&mut self, epoch: i64) {
        for n in self.entries.values_mut() {
            n.meta.mtime = n.meta.mtime.min(epoch);
        }
    }

    /// Set every time to `epoch` (trees read from a repository directory,
    /// whose own times never count).
    pub fn set_mtimes(&mut self, epoch: i64) {
        for n in self.entries.values_mut() {
            n.meta.mtime = epoch;
        }
    }

    /// Mutable access to the node at a normalised path.
    pub fn get_mut(&mut self, path: &str) -> Option<&mut Node> {
        self.entries.get_mut(path)
    }

    /// All entries in path byte order (every directory before its contents),
    /// the root directory (`""`) first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The direct children of a directory, in name byte order, as (name, full path, node).
    pub fn children<'a>(&'a self, dir: &str) -> impl Iterator<Item = (&'a str, &'a str, &'a Node)> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let start = prefix.clone();
        let skip = prefix.len();
        self.entries
            .range(start..)
            .skip_while(|(k, _)| k.is_empty())
            .take_while(move |(k, _)| k.starts_with(&prefix))
            .filter_map(move |(k, v)| {
                let rest = &k[skip..];
                (!rest.contains('/')).then_some((rest, k.as_str(), v))
            })
    }

    /// `parent` of `path` must exist and be a directory.
    fn check_parent_dir(&self, path: &str, parent: &str) -> Result<(), TreeError> {
        match self.entries.get(parent) {
            Some(Node {
                kind: NodeKind::Dir,
                ..
            }) => Ok(()),
            _ => Err(TreeError::ParentNotDir {
                path: path.to_string(),
                parent: parent.to_string(),
            }),
        }
    }

    /// Insert or replace a node. The parent must exist and be a directory; a
    /// directory replacing a directory keeps the old one's contents (tar
    /// semantics), any other replacement removes what was below the old path.
    pub fn insert(&mut self, path: &str, node: Node) -> Result<(), TreeError> {
        let path = normalize(path)?;
        if path.is_empty() {
            if node.kind != NodeKind::Dir {
                return Err(TreeError::BadPath(path));
            }
            self.entries.insert(path, node);
            return Ok(());
        }
        self.check_parent_dir(&path, parent(&path).unwrap_or(""))?;
        let replacing_dir_with_dir = node.kind == NodeKind::Dir
            && matches!(self.entries.get(&path), Some(n) if n.kind == NodeKind::Dir);
        if !replacing_dir_with_dir {
            self.remove_below(&path);
        }
        self.entries.insert(path, node);
        Ok(())
    }

    /// Insert a node, creating missing parent directories with `dir_meta`.
    pub fn insert_with_parents(
        &mut self,
        path: &str,
        node: Node,
        dir_meta: &Meta,
    ) -> Result<(), TreeError> {
        let path = normalize(path)?;
        let mut cur = String::new();
        let comps: Vec<&str> = path.split('/').collect();
        for comp in &comps[..comps.len().saturating_sub(1)] {
            cur = join(&cur, comp);
            if !self.entries.contains_key(&cur) {
                self.insert(
                    &cur,
                    Node {
                        kind: NodeKind::Dir,
                        meta: dir_meta.clone(),
                    },
                )?;
            }
        }
        self.insert(&path, node)
    }

    /// Remove a path and everything below it. Returns whether anything was removed.
    pub fn remove(&mut self, path: &str) -> bool {
        let had = self.entries.remove(path).is_some();
        let below = self.remove_below(path);
        had || below
    }

    fn remove_below(&mut self, path: &str) -> bool {
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        let doomed: Vec<String> = self
            .entries
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| !k.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        for k in &doomed {
            self.entries.remove(k);
        }
        !doomed.is_empty()
    }

    /// Remove entries for which `keep` returns false (and everything below a removed directory).
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &Node) -> bool) {
        let doomed: Vec<String> = self
            .entries
            .iter()
            .filter(|(k, v)| !k.is_empty() && !keep(k, v))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.remove(&k);
        }
    }

    /// Apply an upper layer on top of this tree, following OCI whiteout rules:
    /// `.wh.NAME` removes `NAME`, `.wh..wh..opq` empties its directory of lower
    /// contents, everything else is added or replaces what was there. A
    /// malformed whiteout ([`whiteout()`]) is an error and nothing is changed.
    pub fn apply_layer(&mut self, upper: &Tree) -> Result<(), TreeError> {
        for (path, _) in upper.iter() {
            whiteout(file_name(path))?;
        }
        // Contents of lower files that hard links point at, in case a link
        // survives its target.
        let link_targets: BTreeMap<String, Node> = self
            .entries
            .values()
            .filter_map(|n| match &n.kind {
                NodeKind::Hardlink(t) => self.entries.get(t).map(|f| (t.clone(), f.clone())),
                _ => None,
            })
            .collect();
        // Opaque markers and whiteouts first, so that the upper layer's own
        // entries in the same directory survive them.
        for (path, _) in upper.iter() {
            let dir = parent(path).unwrap_or("");
            match whiteout(file_name(path)) {
                Ok(Some(Whiteout::Opaque)) => {
                    self.remove_below(dir);
                }
                Ok(Some(Whiteout::Hides(hidden))) => {
                    self.remove(&join(dir, hidden));
                }
                // Malformed ones were refused above.
                Ok(None) | Err(_) => {}
            }
        }
        for (path, node) in upper.iter() {
            if file_name(path).starts_with(WHITEOUT_PREFIX) {
                continue;
            }
            self.insert(path, node.clone())?;
        }
        self.repair_hardlinks(&link_targets);
        Ok(())
    }

    /// A hard link whose target was removed or replaced by an upper layer keeps
    /// the contents it had: the first such link (in path order) becomes a
    /// regular file with the old contents, and the others link to it.
    fn repair_hardlinks(&mut self, old_targets: &BTreeMap<String, Node>) {
        let mut moved: BTreeMap<String, String> = BTreeMap::new();
        let dangling: Vec<(String, String)> = self
            .entries
            .iter()
            .filter_map(|(k, v)| match &v.kind {
                NodeKind::Hardlink(t) => match self.entries.get(t) {
                    Some(Node {
                        kind: NodeKind::File(_),
                        ..
                    }) if !old_targets.contains_key(t)
                        || self.entries.get(t) == old_targets.get(t) =>
                    {
                        None
                    }
                    _ => Some((k.clone(), t.clone())),
                },
                _ => None,
            })
            .collect();
        for (link, target) in dangling {
            if let Some(new_home) = moved.get(&target) {
                if let Some(n) = self.entries.get_mut(&link) {
                    n.kind = NodeKind::Hardlink(new_home.clone());
                }
                continue;
            }
            match old_targets.get(&target) {
                Some(Node {
                    kind: NodeKind::File(content),
                    ..
                }) => {
                    if let Some(n) = self.entries.get_mut(&link) {
                        n.kind = NodeKind::File(content.clone());
                    }
                    moved.insert(target, link);
                }
                _ => {
                    self.entries.remove(&link);
                }
            }
        }
    }

    /// Check the tree's invariants: every parent is a directory and every hard
    /// link points at a regular file.
    pub fn validate(&self) -> Result<(), TreeError> {
        for (path, node) in &self.entries {
            if let Some(p) = parent(path) {
                self.check_parent_dir(path, p)?;
            }
            if let NodeKind::Hardlink(t) = &node.kind {
                if !matches!(
                    self.entries.get(t),
                    Some(Node {
                        kind: NodeKind::File(_),
                        ..
                    })
                ) {
                    return Err(TreeError::BadHardlink {
                        path: path.clone(),
                        target: t.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Sum of regular file sizes (hard links counted once).
    pub fn content_bytes(&self) -> u64 {
        self.entries
            .values()
            .map(|n| match &n.kind {
                NodeKind::File(c) => c.len() as u64,
                _ => 0,
            })
            .sum()
    }
}

/// The layer that turns `lower` into `upper`: entries that are new or
/// changed, and `.wh.` whiteouts for entries that are gone.
pub fn diff(lower: &Tree, upper: &Tree) -> Tree {
    let mut out = Tree::new(upper.get("").map_or(0, |n| n.meta.mtime));
    let mut needed: Vec<String> = Vec::new();
    for (path, node) in upper.iter() {
        if !path.is_empty() && lower.get(path) != Some(node) {
            needed.push(path.to_string());
        }
    }
    for (path, _) in lower.iter() {
        if !path.is_empty()
            && upper.get(path).is_none()
            && parent(path).is_some_and(|p| upper.get(p).is_some_and(|n| n.kind == NodeKind::Dir))
        {
            let dir = parent(path).unwrap_or("");
            let wh = if dir.is_empty() {
                format!("{WHITEOUT_PREFIX}{}", file_name(path))
            } else {
                format!("{dir}/{WHITEOUT_PREFIX}{}", file_name(path))
            };
            needed.push(wh);
        }
    }
    for path in needed {
        // Parent directories come along with their upper metadata.
        let mut ancestors = Vec::new();
        let mut p = parent(&path);
        while let Some(a) = p.filter(|a| !a.is_empty()) {
            ancestors.push(a.to_string());
            p = parent(a);
        }
        for a in ancestors.iter().rev() {
            if out.get(a).is_none() {
                if let Some(n) = upper.get(a) {
                    let _ = out.insert(a, n.clone());
                }
            }
        }
        let node = upper.get(&path).cloned().unwrap_or(Node {
            kind: NodeKind::File(Arc::new(Vec::new())),
            meta: Meta::root(0o644, out.get("").map_or(0, |n| n.meta.mtime)),
        });
        let _ = out.insert(&path, node);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{dir, file};

    #[test]
    fn normalize_table() {
        for (input, want) in [
            ("./usr/bin/", Some("usr/bin")),
            ("/etc//passwd", Some("etc/passwd")),
            ("./", Some("")),
            ("a/./b", Some("a/b")),
            ("a/../b", None),
            ("..", None),
        ] {
            assert_eq!(normalize(input).ok().as_deref(), want, "{input}");
        }
    }

    #[test]
    fn resolve_follows_links_inside_the_tree() {
        let mut t = Tree::new(0);
        t.insert("bin", dir()).unwrap();
        t.insert("bin/busybox", file("bb")).unwrap();
        let link = |target: &str| Node {
            kind: NodeKind::Symlink(target.into()),
            meta: Meta::root(0o777, 0),
        };
        t.insert("bin/sh", link("busybox")).unwrap();
        t.insert("sbin", dir()).unwrap();
        t.insert("sbin/init", link("../bin/sh")).unwrap();
        t.insert("sbin/abs", link("/bin/busybox")).unwrap();
        t.insert("sbin/up", link("../../../bin/busybox")).unwrap();
        t.insert("loop", link("loop")).unwrap();
        for p in ["sbin/init", "sbin/abs", "sbin/up", "bin/sh"] {
            assert_eq!(
                t.resolve(p).map(|(p, _)| p),
                Some("bin/busybox".to_string()),
                "{p}"
            );
        }
        assert!(t.resolve("loop").is_none());
        assert!(t.resolve("nothing").is_none());
        assert!(
            t.resolve("bin/busybox/x").is_none(),
            "a file is no directory"
        );
    }

    #[test]
    fn resolve_follows_links_in_the_middle_of_a_path() {
        // A merged-/usr root: /sbin and /bin are links into /usr.
        let mut t = Tree::new(0);
        let link = |target: &str| Node {
            kind: NodeKind::Symlink(target.into()),
            meta: Meta::root(0o777, 0),
        };
        t.insert("usr", dir()).unwrap();
        t.insert("usr/bin", dir()).unwrap();
        t.insert("usr/sbin", dir()).unwrap();
        t.insert("usr/bin/busybox", file("bb")).unwrap();
        t.insert("usr/sbin/init", link("../bin/busybox")).unwrap();
        t.insert("bin", link("usr/bin")).unwrap();
        t.insert("sbin", link("/usr/sbin")).unwrap();
        t.insert("etc", dir()).unwrap();
        t.insert("etc/os-release", link("../usr/lib/os-release"))
            .unwrap();
        for p in [
            "sbin/init",
            "/sbin/init",
            "bin/busybox",
            "sbin/../bin/busybox",
            "bin/./busybox",
        ] {
            assert_eq!(
                t.resolve(p).map(|(p, _)| p),
                Some("usr/bin/busybox".to_string()),
                "{p}"
            );
        }
        assert_eq!(
            t.resolve("sbin").map(|(p, _)| p),
            Some("usr/sbin".to_string())
        );
        assert!(t.resolve("etc/os-release").is_none(), "dangling");
    }

    #[test]
    fn children_are_direct_and_sorted() {
        let mut t = Tree::new(0);
        t.insert("a", dir()).unwrap();
        t.insert("a-b", file("x")).unwrap();
        t.insert("a/z", file("z")).unwrap();
        t.insert("a/c", dir()).unwrap();
        t.insert("a/c/d", file("d")).unwrap();
        let names: Vec<_> = t.children("a").map(|(n, _, _)| n).collect();
        assert_eq!(names, ["c", "z"]);
        let top: Vec<_> = t.children("").map(|(n, _, _)| n).collect();
        assert_eq!(top, ["a", "a-b"]);
    }

    #[test]
    fn whiteouts_hide_lower_files() {
        let mut lower = Tree::new(0);
        lower.insert("etc", dir()).unwrap();
        lower.insert("etc/motd", file("hi")).unwrap();
        lower.insert("etc/keep", file("k")).unwrap();
        lower.insert("var", dir()).unwrap();
        lower.insert("var/cache", dir()).unwrap();
        lower.insert("var/cache/a", file("a")).unwrap();

        let mut upper = Tree::new(0);
        upper.insert("etc", dir()).unwrap();
        upper.insert("etc/.wh.motd", file("")).unwrap();
        upper.insert("var", dir()).unwrap();
        upper.insert("var/cache", dir()).unwrap();
        upper.insert("var/cache/.wh..wh..opq", file("")).unwrap();
        upper.insert("var/cache/b", file("b")).unwrap();

        lower.apply_layer(&upper).unwrap();
        assert!(lower.get("etc/motd").is_none());
        assert!(lower.get("etc/keep").is_some());
        assert!(lower.get("var/cache/a").is_none());
        assert!(lower.get("var/cache/b").is_some());
        assert!(lower.get("etc/.wh.motd").is_none());
        lower.validate().unwrap();
    }

    /// `.wh.` at the top once removed the whole lower root; a malformed
    /// whiteout is now refused and the lower tree is left as it was.
    #[test]
    fn malformed_whiteouts_are_refused() {
        for bad in [".wh.", "etc/.wh..", "etc/.wh...", "etc/.wh..wh.x"] {
            let mut lower = Tree::new(0);
            lower.insert("etc", dir()).unwrap();
            lower.insert("etc/motd", file("hi")).unwrap();
            let before = lower.clone();
            let mut upper = Tree::new(0);
            upper.insert("etc", dir()).unwrap();
            upper.insert(bad, file("")).unwrap();
            assert!(
                matches!(
                    lower.apply_layer(&upper),
                    Err(TreeError::BadWhiteout { .. })
                ),
                "{bad}"
            );
            assert_eq!(lower, before, "{bad}");
        }
    }

    #[test]
    fn replacing_dir_with_file_drops_contents() {
        let mut t = Tree::new(0);
        t.insert("d", dir()).unwrap();
        t.insert("d/x", file("x")).unwrap();
        t.insert("d", file("now a file")).unwrap();
        assert!(t.get("d/x").is_none());
        assert_eq!(
            t.insert("d/y", file("y")),
            Err(TreeError::ParentNotDir {
                path: "d/y".into(),
                parent: "d".into()
            })
        );
    }

    #[test]
    fn hardlink_survives_deleted_target() {
        let mut lower = Tree::new(0);
        lower.insert("a", file("a")).unwrap();
        lower
            .insert(
                "b",
                Node {
                    kind: NodeKind::Hardlink("a".into()),
                    meta: Meta::root(0o644, 0),
                },
            )
            .unwrap();
        let mut upper = Tree::new(0);
        upper.insert(".wh.a", file("")).unwrap();
        lower.apply_layer(&upper).unwrap();
        assert!(lower.get("a").is_none());
        assert_eq!(lower.get("b"), Some(&file("a")));
        lower.validate().unwrap();
    }

    /// Applying the diff of two trees to the lower one gives the upper one.
    #[test]
    fn diff_then_apply_gives_upper() {
        let d = Meta::root(0o755, 0);
        let mut lower = Tree::new(0);
        for (p, c) in [
            ("etc/a", "a"),
            ("etc/b", "b"),
            ("var/lib/x/y", "y"),
            ("usr/bin/tool", "t"),
        ] {
            lower.insert_with_parents(p, file(c), &d).unwrap();
        }
        let mut upper = lower.clone();
        upper.insert("etc/a", file("changed")).unwrap();
        upper.remove("etc/b");
        upper.remove("var/lib/x");
        upper
            .insert_with_parents("usr/share/new", file("n"), &d)
            .unwrap();
        let layer = diff(&lower, &upper);
        let paths: Vec<&str> = layer.iter().map(|(p, _)| p).collect();
        assert!(
            paths.contains(&"etc/.wh.b") && paths.contains(&"var/lib/.wh.x"),
            "{paths:?}"
        );
        assert!(
            !paths.contains(&"usr/bin/tool") && !paths.contains(&"var/lib/x/.wh.y"),
            "{paths:?}"
        );
        let mut applied = lower.clone();
        applied.apply_layer(&layer).unwrap();
        assert_eq!(applied, upper);
    }
}
