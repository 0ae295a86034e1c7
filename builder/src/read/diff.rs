//! `kiln diff A B`: file-, package- and boot-level differences between two
//! images ([`imagefs::Image`]), for release engineers looking for drift.
//!
//! Files are compared path by path: added, removed, and changed with the
//! fields that changed (kind, size, sha256 of the content, symlink target,
//! device numbers, mode, uid, gid, each xattr, mtime), old and new value.
//! A hard link is compared as the file it links to (the filesystem keeps one
//! inode, so its metadata is the target's); which name of a link group is
//! the "target" is not compared. Packages: added, removed, and changed
//! versions. Boot: command line, root hash, kernel release, UKI digest and
//! each os-release line, when both images say (a tar image says nothing).
//! Disk: the GPT's disk GUID and every partition's name, type, GUID,
//! extent and sha256, and the bytes outside the partitions when both sides
//! are disk files, so that two images are never called the same when a
//! partition not compared file by file (the verity hash tree, the ESP's
//! FAT) differs.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;

use crate::fs::layer::sha256_digest;
use crate::fs::tree::{Node, NodeKind, Tree};
use crate::model::disk::PartitionInfo;
use crate::read::imagefs::{Image, Origin, Package, Table};
use crate::util::digest::{Digest, SHA256_PREFIX};
use crate::util::printable::PrintableExt as _;

/// Values longer than this are shown by digest in field changes.
const SHOWN_VALUE_MAX: usize = 64;

/// One side of the comparison.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Side {
    /// The argument as given.
    pub name: String,
    /// disk, tar or store.
    pub origin: Origin,
}

/// A file as it is on one side.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FileInfo {
    /// Absolute path in the image.
    pub path: String,
    /// dir, file, symlink, char, block or fifo.
    pub kind: &'static str,
    /// Permission bits, octal (`0644`).
    pub mode: String,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Content size (files) or target length (symlinks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// `sha256:` of a file's content.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// A symlink's target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// One field that differs: its name and the two values (`None`: absent on that side).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FieldChange {
    /// `kind`, `size`, `content` (values: `sha256:` digests), `target`,
    /// `device`, `mode`, `uid`, `gid`,
    /// `xattr NAME`, `mtime`; for boot: `cmdline`, `roothash`, `kernel`,
    /// `uki`, `os-release KEY`.
    pub field: String,
    /// Value in A.
    pub old: Option<String>,
    /// Value in B.
    pub new: Option<String>,
}

/// A path present in both images whose node differs.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FileChange {
    /// Absolute path.
    pub path: String,
    /// The fields that differ, in the order listed at [`FieldChange::field`].
    pub changes: Vec<FieldChange>,
}

/// File differences, each list sorted by path.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct FileChanges {
    /// In B only.
    pub added: Vec<FileInfo>,
    /// In A only.
    pub removed: Vec<FileInfo>,
    /// In both, different.
    pub changed: Vec<FileChange>,
}

/// A package on one side.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PackageInfo {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Architecture.
    pub architecture: String,
}

/// A package in both images at different versions (or architectures).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PackageChange {
    /// Name.
    pub name: String,
    /// Version in A.
    pub old: String,
    /// Version in B.
    pub new: String,
}

/// Package differences, sorted by name.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PackageChanges {
    /// In B only.
    pub added: Vec<PackageInfo>,
    /// In A only.
    pub removed: Vec<PackageInfo>,
    /// Different versions.
    pub changed: Vec<PackageChange>,
}

/// The whole comparison; `kiln diff --json` prints it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ImageDiff {
    /// The first image.
    pub a: Side,
    /// The second image.
    pub b: Side,
    /// Whether nothing compared differs.
    pub identical: bool,
    /// Files.
    pub files: FileChanges,
    /// Packages; `null` when one side lists none (no dpkg status, no manifest).
    pub packages: Option<PackageChanges>,
    /// Boot facts that differ.
    pub boot: Vec<FieldChange>,
    /// Partition table facts that differ; `null` when one side has no
    /// partition table (a tar image).
    pub disk: Option<Vec<FieldChange>>,
}

/// The node whose kind and metadata a path shows: a hard link's target.
fn effective<'a>(tree: &'a Tree, node: &'a Node) -> &'a Node {
    match &node.kind {
        NodeKind::Hardlink(t) => tree.get(t).unwrap_or(node),
        _ => node,
    }
}

fn kind_name(kind: &NodeKind) -> &'static str {
    match kind {
        NodeKind::Dir => "dir",
        NodeKind::File(_) | NodeKind::Hardlink(_) => "file",
        NodeKind::Symlink(_) => "symlink",
        NodeKind::CharDev { .. } => "char",
        NodeKind::BlockDev { .. } => "block",
        NodeKind::Fifo => "fifo",
    }
}

/// A path of a tree as shown to people: absolute.
pub fn shown_path(path: &str) -> String {
    format!("/{path}")
}

fn file_info(tree: &Tree, path: &str, node: &Node) -> FileInfo {
    let n = effective(tree, node);
    let (size, sha256, target) = match &n.kind {
        NodeKind::File(c) => (Some(c.len() as u64), Some(sha256_digest(c)), None),
        NodeKind::Symlink(t) => (Some(t.len() as u64), None, Some(t.clone())),
        _ => (None, None, None),
    };
    FileInfo {
        path: shown_path(path),
        kind: kind_name(&n.kind),
        mode: format!("{:04o}", n.meta.mode),
        uid: n.meta.uid,
        gid: n.meta.gid,
        size,
        sha256,
        target,
    }
}

/// An xattr value for display: text when it is short printable UTF-8, else
/// its digest and length.
fn shown_value(v: &[u8]) -> String {
    match std::str::from_utf8(v) {
        Ok(s) if s.len() <= SHOWN_VALUE_MAX && !s.chars().any(char::is_control) => {
            format!("{s:?}")
        }
        _ => format!("{} ({} bytes)", sha256_digest(v), v.len()),
    }
}

/// The fields in which two nodes differ (hard links compared as their
/// targets), in a fixed order: kind, size, content, target, device, mode,
/// uid, gid, xattrs by name, mtime.
pub fn node_changes(ta: &Tree, a: &Node, tb: &Tree, b: &Node) -> Vec<FieldChange> {
    let (a, b) = (effective(ta, a), effective(tb, b));
    let mut out = Vec::new();
    let mut push = |field: &str, old: Option<String>, new: Option<String>| {
        if old != new {
            out.push(FieldChange {
                field: field.to_string(),
                old,
                new,
            });
        }
    };
    push(
        "kind",
        Some(kind_name(&a.kind).into()),
        Some(kind_name(&b.kind).into()),
    );
    match (&a.kind, &b.kind) {
        (NodeKind::File(x), NodeKind::File(y)) if x != y => {
            push("size", Some(x.len().to_string()), Some(y.len().to_string()));
            push("content", Some(sha256_digest(x)), Some(sha256_digest(y)));
        }
        (NodeKind::Symlink(x), NodeKind::Symlink(y)) => {
            push("target", Some(x.clone()), Some(y.clone()))
        }
        (
            NodeKind::CharDev { major, minor } | NodeKind::BlockDev { major, minor },
            NodeKind::CharDev {
                major: m2,
                minor: n2,
            }
            | NodeKind::BlockDev {
                major: m2,
                minor: n2,
            },
        ) => push(
            "device",
            Some(format!("{major}:{minor}")),
            Some(format!("{m2}:{n2}")),
        ),
        _ => {}
    }
    push(
        "mode",
        Some(format!("{:04o}", a.meta.mode)),
        Some(format!("{:04o}", b.meta.mode)),
    );
    push(
        "uid",
        Some(a.meta.uid.to_string()),
        Some(b.meta.uid.to_string()),
    );
    push(
        "gid",
        Some(a.meta.gid.to_string()),
        Some(b.meta.gid.to_string()),
    );
    let names: BTreeSet<&String> = a.meta.xattrs.keys().chain(b.meta.xattrs.keys()).collect();
    for name in names {
        push(
            &format!("xattr {name}"),
            a.meta.xattrs.get(name).map(|v| shown_value(v)),
            b.meta.xattrs.get(name).map(|v| shown_value(v)),
        );
    }
    push(
        "mtime",
        Some(a.meta.mtime.to_string()),
        Some(b.meta.mtime.to_string()),
    );
    out
}

/// Compare two trees path by path.
pub fn diff_trees(a: &Tree, b: &Tree) -> FileChanges {
    let mut out = FileChanges::default();
    let mut ia = a.iter().peekable();
    let mut ib = b.iter().peekable();
    loop {
        match (ia.peek(), ib.peek()) {
            (None, None) => break,
            (Some(&(pa, na)), Some(&(pb, nb))) if pa == pb => {
                let changes = node_changes(a, na, b, nb);
                if !changes.is_empty() {
                    out.changed.push(FileChange {
                        path: shown_path(pa),
                        changes,
                    });
                }
                ia.next();
                ib.next();
            }
            (Some(&(pa, na)), Some(&(pb, _))) if pa < pb => {
                out.removed.push(file_info(a, pa, na));
                ia.next();
            }
            (Some(&(pa, na)), None) => {
                out.removed.push(file_info(a, pa, na));
                ia.next();
            }
            (_, Some(&(pb, nb))) => {
                out.added.push(file_info(b, pb, nb));
                ib.next();
            }
        }
    }
    out
}

fn diff_packages(a: &BTreeMap<String, Package>, b: &BTreeMap<String, Package>) -> PackageChanges {
    let info = |name: &String, p: &Package| PackageInfo {
        name: name.clone(),
        version: p.version.clone(),
        architecture: p.architecture.clone(),
    };
    let mut out = PackageChanges::default();
    for (name, pa) in a {
        match b.get(name) {
            None => out.removed.push(info(name, pa)),
            Some(pb) if pb != pa => {
                let shown = |p: &Package| {
                    if pa.architecture == pb.architecture {
                        p.version.clone()
                    } else {
                        format!("{} ({})", p.version, p.architecture)
                    }
                };
                out.changed.push(PackageChange {
                    name: name.clone(),
                    old: shown(pa),
                    new: shown(pb),
                });
            }
            Some(_) => {}
        }
    }
    for (name, pb) in b {
        if !a.contains_key(name) {
            out.added.push(info(name, pb));
        }
    }
    out
}

/// `KEY=VALUE` lines of an os-release, quotes kept.
fn os_release_lines(s: &str) -> BTreeMap<&str, &str> {
    s.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect()
}

fn diff_boot(a: &Image, b: &Image) -> Vec<FieldChange> {
    let mut out = Vec::new();
    let mut push = |field: String, old: &Option<String>, new: &Option<String>| {
        if let (Some(o), Some(n)) = (old, new) {
            if o != n {
                out.push(FieldChange {
                    field,
                    old: Some(o.clone()),
                    new: Some(n.clone()),
                });
            }
        }
    };
    push("kernel".into(), &a.boot.kernel, &b.boot.kernel);
    push("cmdline".into(), &a.boot.cmdline, &b.boot.cmdline);
    push("roothash".into(), &a.boot.root_hash, &b.boot.root_hash);
    push("uki".into(), &a.boot.uki, &b.boot.uki);
    if let (Some(oa), Some(ob)) = (&a.boot.os_release, &b.boot.os_release) {
        let (la, lb) = (os_release_lines(oa), os_release_lines(ob));
        let keys: BTreeSet<&&str> = la.keys().chain(lb.keys()).collect();
        for k in keys {
            let get = |m: &BTreeMap<&str, &str>| m.get(*k).map(|v| v.to_string());
            let (o, n) = (get(&la), get(&lb));
            if o != n {
                out.push(FieldChange {
                    field: format!("os-release {k}"),
                    old: o,
                    new: n,
                });
            }
        }
    }
    out
}

/// The partition tables' differences: disk GUID, each partition (matched
/// by number) field by field, and the bytes outside the partitions when
/// both sides know their digest.
pub fn diff_tables(a: &Table, b: &Table) -> Vec<FieldChange> {
    let mut out = Vec::new();
    let mut push = |field: String, old: Option<String>, new: Option<String>| {
        if old != new {
            out.push(FieldChange { field, old, new });
        }
    };
    push(
        "disk guid".into(),
        Some(a.disk_guid.to_string()),
        Some(b.disk_guid.to_string()),
    );
    let numbers: BTreeSet<u32> = a
        .partitions
        .iter()
        .chain(&b.partitions)
        .map(|p| p.index)
        .collect();
    for n in numbers {
        let find = |t: &Table| t.partitions.iter().find(|p| p.index == n).cloned();
        match (find(a), find(b)) {
            (Some(pa), Some(pb)) => {
                let facts = |p: &PartitionInfo| {
                    [
                        ("name", p.name.clone()),
                        ("type", p.type_guid.to_string()),
                        ("uuid", p.uuid.to_string()),
                        ("offset", p.offset.to_string()),
                        ("size", p.size.to_string()),
                        ("sha256", p.sha256.to_string()),
                    ]
                };
                for ((what, va), (_, vb)) in facts(&pa).into_iter().zip(facts(&pb)) {
                    push(format!("partition {n} {what}"), Some(va), Some(vb));
                }
            }
            (pa, pb) => push(
                format!("partition {n}"),
                pa.map(|p| p.name),
                pb.map(|p| p.name),
            ),
        }
    }
    if let (Some(oa), Some(ob)) = (&a.outside_sha256, &b.outside_sha256) {
        push(
            "outside the partitions sha256".into(),
            Some(oa.clone()),
            Some(ob.clone()),
        );
    }
    out
}

/// Compare two images.
pub fn diff(a: &Image, b: &Image) -> ImageDiff {
    let files = diff_trees(&a.root, &b.root);
    let packages = match (&a.packages, &b.packages) {
        (Some(pa), Some(pb)) => Some(diff_packages(pa, pb)),
        _ => None,
    };
    let boot = diff_boot(a, b);
    let disk = match (&a.table, &b.table) {
        (Some(ta), Some(tb)) => Some(diff_tables(ta, tb)),
        _ => None,
    };
    let identical = files == FileChanges::default()
        && packages
            .as_ref()
            .is_none_or(|p| *p == PackageChanges::default())
        && boot.is_empty()
        && disk.as_ref().is_none_or(Vec::is_empty);
    ImageDiff {
        a: Side {
            name: a.name.clone(),
            origin: a.origin,
        },
        b: Side {
            name: b.name.clone(),
            origin: b.origin,
        },
        identical,
        files,
        packages,
        boot,
        disk,
    }
}

/// A value for a one-line report: a leading `sha256:` digest shortened by
/// [`Digest::short`] (what follows it, such as ` (4 bytes)`, kept), absent
/// values as `-`, anything else whole.
pub(crate) fn short(v: &Option<String>) -> String {
    /// `sha256:` and 64 hex digits.
    const DIGEST_LEN: usize = SHA256_PREFIX.len() + 64;
    let Some(s) = v else {
        return "-".into();
    };
    let digest = s
        .get(..DIGEST_LEN)
        .filter(|head| head.starts_with(SHA256_PREFIX))
        .and_then(|head| Digest::parse(head).ok());
    match (digest, s.get(DIGEST_LEN..)) {
        (Some(d), Some(rest)) => format!("{}{rest}", d.short()),
        _ => s.clone(),
    }
}

/// `FIELD{sep} OLD -> NEW`, quoted for a terminal, values shortened ([`short`]).
fn shown_change(ch: &FieldChange, sep: &str) -> String {
    format!(
        "{}{sep} {} -> {}",
        ch.field.printable(),
        short(&ch.old).printable(),
        short(&ch.new).printable()
    )
}

fn describe(f: &FileInfo) -> String {
    let mut s = format!("{} {} {}:{}", f.kind, f.mode, f.uid, f.gid);
    if let Some(t) = &f.target {
        let _ = write!(s, " -> {}", t.printable());
    } else if let Some(size) = f.size {
        let _ = write!(s, " {size} B");
    }
    s
}

impl ImageDiff {
    /// A one-line count of what differs (`2 files changed, 1 added; …`).
    pub fn summary(&self) -> String {
        let f = &self.files;
        let mut parts = vec![format!(
            "files: {} added, {} removed, {} changed",
            f.added.len(),
            f.removed.len(),
            f.changed.len()
        )];
        match &self.packages {
            Some(p) => parts.push(format!(
                "packages: {} added, {} removed, {} changed",
                p.added.len(),
                p.removed.len(),
                p.changed.len()
            )),
            None => parts.push("packages: not compared".into()),
        }
        parts.push(format!("boot: {} changed", self.boot.len()));
        if let Some(d) = &self.disk {
            parts.push(format!("disk: {} changed", d.len()));
        }
        parts.join("; ")
    }

    /// The report for people: one line per difference, grep-able, sorted
    /// (files by path, packages by name), then the summary.
    /// Names and values from the images are quoted
    /// ([`crate::util::printable`]): one line per difference, whatever the
    /// names hold.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let origin = |o: Origin| format!("{o:?}").to_lowercase();
        let _ = writeln!(
            out,
            "--- {} ({})",
            self.a.name.printable(),
            origin(self.a.origin)
        );
        let _ = writeln!(
            out,
            "+++ {} ({})",
            self.b.name.printable(),
            origin(self.b.origin)
        );
        for f in &self.files.removed {
            let _ = writeln!(out, "- {}  {}", f.path.printable(), describe(f));
        }
        for f in &self.files.added {
            let _ = writeln!(out, "+ {}  {}", f.path.printable(), describe(f));
        }
        for c in &self.files.changed {
            let fields: Vec<String> = c.changes.iter().map(|ch| shown_change(ch, "")).collect();
            let _ = writeln!(out, "~ {}  {}", c.path.printable(), fields.join(", "));
        }
        if let Some(p) = &self.packages {
            for (sign, list) in [("-", &p.removed), ("+", &p.added)] {
                for x in list {
                    let _ = writeln!(
                        out,
                        "{sign} package {} {} {}",
                        x.name.printable(),
                        x.version.printable(),
                        x.architecture.printable()
                    );
                }
            }
            for x in &p.changed {
                let _ = writeln!(
                    out,
                    "~ package {} {} -> {}",
                    x.name.printable(),
                    x.old.printable(),
                    x.new.printable()
                );
            }
        }
        for b in &self.boot {
            let _ = writeln!(out, "~ boot {}", shown_change(b, ":"));
        }
        for d in self.disk.iter().flatten() {
            let _ = writeln!(out, "~ disk {}", shown_change(d, ":"));
        }
        let verdict = if self.identical {
            "identical"
        } else {
            "differ"
        };
        let _ = writeln!(out, "{verdict}: {}", self.summary());
        out
    }
}
