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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;

use crate::fs::layer::sha256_digest;
use crate::fs::tree::{Node, NodeKind, Tree};
use crate::read::imagefs::{Image, Origin, Package};
use crate::util::digest::{Digest, SHA256_PREFIX};

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

/// Compare two images.
pub fn diff(a: &Image, b: &Image) -> ImageDiff {
    let files = diff_trees(&a.root, &b.root);
    let packages = match (&a.packages, &b.packages) {
        (Some(pa), Some(pb)) => Some(diff_packages(pa, pb)),
        _ => None,
    };
    let boot = diff_boot(a, b);
    let identical = files == FileChanges::default()
        && packages
            .as_ref()
            .is_none_or(|p| *p == PackageChanges::default())
        && boot.is_empty();
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

fn describe(f: &FileInfo) -> String {
    let mut s = format!("{} {} {}:{}", f.kind, f.mode, f.uid, f.gid);
    if let Some(t) = &f.target {
        let _ = write!(s, " -> {t}");
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
        parts.join("; ")
    }

    /// The report for people: one line per difference, grep-able, sorted
    /// (files by path, packages by name), then the summary.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let origin = |o: Origin| format!("{o:?}").to_lowercase();
        let _ = writeln!(out, "--- {} ({})", self.a.name, origin(self.a.origin));
        let _ = writeln!(out, "+++ {} ({})", self.b.name, origin(self.b.origin));
        for f in &self.files.removed {
            let _ = writeln!(out, "- {}  {}", f.path, describe(f));
        }
        for f in &self.files.added {
            let _ = writeln!(out, "+ {}  {}", f.path, describe(f));
        }
        for c in &self.files.changed {
            let fields: Vec<String> = c
                .changes
                .iter()
                .map(|ch| format!("{} {} -> {}", ch.field, short(&ch.old), short(&ch.new)))
                .collect();
            let _ = writeln!(out, "~ {}  {}", c.path, fields.join(", "));
        }
        if let Some(p) = &self.packages {
            for x in &p.removed {
                let _ = writeln!(out, "- package {} {} {}", x.name, x.version, x.architecture);
            }
            for x in &p.added {
                let _ = writeln!(out, "+ package {} {} {}", x.name, x.version, x.architecture);
            }
            for x in &p.changed {
                let _ = writeln!(out, "~ package {} {} -> {}", x.name, x.old, x.new);
            }
        }
        for b in &self.boot {
            let _ = writeln!(
                out,
                "~ boot {}: {} -> {}",
                b.field,
                short(&b.old),
                short(&b.new)
            );
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::imagefs::load;
    use crate::store::Store;
    use crate::testutil::{fake_disk, fake_root};
    use crate::util::error::{exit_code, EXIT_BAD_INPUT};

    const SDE: i64 = 1_700_000_000;

    fn hello(page: &str) -> Tree {
        fake_root(
            &[
                ("srv/hello/index.html", page),
                (
                    "usr/bin/hello",
                    "#!/bin/sh\nhttpd -f -p 8080 -h /srv/hello\n",
                ),
                ("etc/os-release", "ID=kiln\nVERSION_ID=1.0\n"),
            ],
            SDE,
        )
    }

    #[test]
    fn changed_app_page_is_the_only_file_difference() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("store"));
        let (pa, pb) = (dir.path().join("a.raw"), dir.path().join("b.raw"));
        fake_disk(&hello("<h1>hello from kiln</h1>\n"), SDE, &pa);
        fake_disk(&hello("<h1>hello from kiln, changed</h1>\n"), SDE, &pb);
        let a = load(&store, pa.to_str().unwrap()).unwrap();
        let b = load(&store, pb.to_str().unwrap()).unwrap();
        let d = diff(&a, &b);
        eprintln!("{}", d.human());
        assert!(!d.identical);
        assert!(d.files.added.is_empty() && d.files.removed.is_empty());
        let paths: Vec<&str> = d.files.changed.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["/srv/hello/index.html"]);
        let fields: Vec<&str> = d.files.changed[0]
            .changes
            .iter()
            .map(|c| c.field.as_str())
            .collect();
        assert_eq!(fields, ["size", "content"]);
        // The root hash (and so the command line and the UKI) follow.
        let boot: Vec<&str> = d.boot.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(boot, ["cmdline", "roothash", "uki"]);
        assert!(d.packages.is_none());
        let same = diff(&a, &load(&store, pa.to_str().unwrap()).unwrap());
        assert!(same.identical, "{}", same.human());
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["files"]["changed"][0]["path"], "/srv/hello/index.html");
        assert_eq!(json["a"]["origin"], "disk");
    }

    #[test]
    fn store_digest_reads_as_the_disk_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("store"));
        store.init().unwrap();
        let mut root = hello("page\n");
        root.insert_with_parents(
            "var/lib/dpkg/status",
            crate::testutil::file(
                "Package: busybox\nStatus: install ok installed\nVersion: 1:1.35.0-4\nArchitecture: amd64\n",
            ),
            &crate::fs::tree::Meta::root(0o755, SDE),
        )
        .unwrap();
        let packed = crate::fs::layer::pack(&root).unwrap();
        store.put_blob(&packed.blob).unwrap();
        let raw = dir.path().join("hello-1.0.raw");
        let disk = fake_disk(&root, SDE, &raw);
        let image_digest = crate::util::digest::file_digest(&raw).unwrap();
        let mut m = crate::model::manifest::tests::sample();
        m.source_date_epoch = SDE;
        m.layers[0].digest = packed.digest.clone();
        m.layers[0].diff_id = packed.diff_id.clone();
        m.layers[0].size = packed.blob.len() as u64;
        m.image.digest = image_digest.clone();
        m.disk = Some(disk);
        store
            .record_image(&image_digest, &serde_json::to_vec(&m).unwrap())
            .unwrap();
        let from_store = load(&store, &image_digest).unwrap();
        let from_file = load(&store, raw.to_str().unwrap()).unwrap();
        let d = diff(&from_store, &from_file);
        assert!(d.identical, "{}", d.human());
        assert_eq!(from_file.packages.unwrap()["busybox"].version, "1:1.35.0-4");
    }

    #[test]
    fn bad_arguments_exit_2_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("store"));
        let junk = dir.path().join("junk.raw");
        std::fs::write(&junk, vec![7u8; 4096]).unwrap();
        let missing = format!("sha256:{}", "ab".repeat(32));
        for arg in [junk.to_str().unwrap(), &missing, "/nonexistent/x.raw"] {
            let e = load(&store, arg).unwrap_err();
            assert_eq!(exit_code(&e), EXIT_BAD_INPUT, "{arg}: {e:#}");
            assert!(format!("{e:#}").contains(arg), "{e:#}");
        }
    }

    #[test]
    fn short_table() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        for (v, want) in [
            (None, "-".to_string()),
            (Some(format!("sha256:{hex}")), "sha256:e3b0c44298fc".into()),
            (
                Some(format!("sha256:{hex} (4 bytes)")),
                "sha256:e3b0c44298fc (4 bytes)".into(),
            ),
            // Not a digest: whole, never cut.
            (Some(hex.to_string()), hex.into()),
            (Some("sha256:e3b0".into()), "sha256:e3b0".into()),
            (Some("0644".into()), "0644".into()),
            (Some("é".repeat(40)), "é".repeat(40)),
        ] {
            assert_eq!(short(&v), want, "{v:?}");
        }
    }

    #[test]
    fn metadata_changes_are_named_field_by_field() {
        let mut a = Tree::new(0);
        let mut f = crate::testutil::file("x");
        a.insert("f", f.clone()).unwrap();
        a.insert("gone", crate::testutil::dir()).unwrap();
        let mut b = Tree::new(0);
        f.meta.mode = 0o755;
        f.meta.uid = 5;
        f.meta.mtime = 9;
        f.meta
            .xattrs
            .insert("security.capability".into(), vec![1, 0, 0, 2]);
        b.insert("f", f).unwrap();
        b.insert("new", crate::testutil::file("n")).unwrap();
        let d = diff_trees(&a, &b);
        assert_eq!(d.removed[0].path, "/gone");
        assert_eq!(d.added[0].path, "/new");
        let fields: Vec<(&str, String, String)> = d.changed[0]
            .changes
            .iter()
            .map(|c| (c.field.as_str(), short(&c.old), short(&c.new)))
            .collect();
        assert_eq!(
            fields,
            [
                ("mode", "0644".into(), "0755".into()),
                ("uid", "0".into(), "5".into()),
                (
                    "xattr security.capability",
                    "-".into(),
                    format!("{} (4 bytes)", Digest::of(&[1, 0, 0, 2]).short())
                ),
                ("mtime", "0".into(), "9".into()),
            ]
        );
    }
}
