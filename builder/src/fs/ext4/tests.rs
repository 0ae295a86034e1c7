//! Whole-image tests. What kiln writes is judged by e2fsprogs (e2fsck,
//! debugfs, dumpe2fs), not by kiln's own reading of it.

use super::*;
use crate::fs::tree::{Meta, Node, NodeKind, Tree};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

pub(super) const T0: i64 = 1_600_000_000;

pub(super) fn opts() -> Ext4Options {
    Ext4Options {
        uuid: *b"kiln-ext4-test-u",
        hash_seed: *b"kiln-hash-seed-0",
        label: "kiln-root".into(),
        timestamp: 1_700_000_000,
        margin_percent: 10,
        extra_bytes: 0,
    }
}

pub(super) fn meta(mode: u32, uid: u32, gid: u32) -> Meta {
    Meta {
        mode,
        uid,
        gid,
        mtime: T0,
        xattrs: BTreeMap::new(),
    }
}

fn add(t: &mut Tree, path: &str, kind: NodeKind, meta: Meta) {
    t.insert_with_parents(path, Node { kind, meta }, &Meta::root(0o755, T0))
        .unwrap_or_else(|e| panic!("{path}: {e}"));
}

pub(super) fn file(t: &mut Tree, path: &str, data: Vec<u8>, m: Meta) {
    add(t, path, NodeKind::File(Arc::new(data)), m);
}

/// An e2fsprogs tool; fails loudly when it is missing rather than skipping.
pub(super) fn tool(name: &str) -> PathBuf {
    crate::testutil::tool(name, "e2fsprogs")
}

pub(super) fn run(name: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(tool(name))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {name}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

struct Img {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Img {
    fn new(img: &Ext4Image) -> Img {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.ext4");
        std::fs::write(&path, &img.bytes).unwrap();
        Img { _dir: dir, path }
    }
    fn p(&self) -> &str {
        self.path.to_str().unwrap()
    }
    fn fsck(&self) {
        fsck_with(self.p(), &[]);
    }
    fn debugfs(&self, cmd: &str) -> String {
        let (rc, out, err) = run("debugfs", &["-R", cmd, self.p()]);
        assert_eq!(rc, 0, "debugfs -R {cmd:?}: {err}");
        let err: Vec<&str> = err.lines().filter(|l| !l.starts_with("debugfs ")).collect();
        assert!(err.is_empty(), "debugfs -R {cmd:?}: {err:?}");
        out
    }
    fn stat(&self, path: &str) -> String {
        self.debugfs(&format!("stat {path}"))
    }
    fn cat(&self, path: &str) -> Vec<u8> {
        let out = self._dir.path().join("dumped");
        self.debugfs(&format!("dump {path} {}", out.display()));
        std::fs::read(&out).unwrap()
    }
    fn ea_get(&self, path: &str, name: &str) -> Vec<u8> {
        let out = self._dir.path().join("ea");
        let _ = std::fs::remove_file(&out);
        self.debugfs(&format!("ea_get -f {} {path} {name}", out.display()));
        std::fs::read(&out).unwrap_or_else(|e| panic!("ea_get {path} {name}: {e}"))
    }
}

fn fsck_with(img: &str, extra: &[&str]) {
    let mut args = vec!["-fn"];
    args.extend_from_slice(extra);
    args.push(img);
    let (rc, out, err) = run("e2fsck", &args);
    assert_eq!(rc, 0, "e2fsck {args:?} found problems:\n{out}\n{err}");
}

/// The value after `key:` in debugfs `stat` output.
fn field<'a>(stat: &'a str, key: &str) -> &'a str {
    let pat = format!("{key}:");
    let at = stat
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key:?} in debugfs output:\n{stat}"));
    stat[at + pat.len()..]
        .split_whitespace()
        .next()
        .unwrap_or("")
}

fn check(
    img: &Img,
    path: &str,
    kind: &str,
    mode: &str,
    (uid, gid): (u32, u32),
    links: u32,
    size: u64,
) {
    let s = img.stat(path);
    assert_eq!(field(&s, "Type"), kind, "{path}:\n{s}");
    assert_eq!(field(&s, "Mode"), mode, "{path}:\n{s}");
    assert_eq!(field(&s, "User"), uid.to_string(), "{path}:\n{s}");
    assert_eq!(field(&s, "Group"), gid.to_string(), "{path}:\n{s}");
    assert_eq!(field(&s, "Links"), links.to_string(), "{path}:\n{s}");
    assert_eq!(field(&s, "Size"), size.to_string(), "{path}:\n{s}");
    assert!(
        s.contains(&format!("mtime: 0x{T0:08x}:00000000")),
        "{path}:\n{s}"
    );
    assert!(
        s.contains(&format!("crtime: 0x{T0:08x}:00000000")),
        "{path}:\n{s}"
    );
}

pub(super) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// A `posix_acl_xattr` value (what getxattr returns).
fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for &(tag, perm, id) in entries {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

pub(super) fn every_kind_tree() -> Tree {
    let mut t = Tree::new(T0);
    file(
        &mut t,
        "etc/hostname",
        b"kiln\n".to_vec(),
        meta(0o644, 0, 0),
    );
    file(&mut t, "empty", Vec::new(), meta(0o600, 1, 2));
    file(
        &mut t,
        "multi",
        pattern(3 * 4096 + 100, 7),
        meta(0o644, 0, 0),
    );
    let mut sparse = vec![0u8; 10 * 4096 + 1];
    sparse[2 * 4096..3 * 4096].fill(0xAA);
    sparse[10 * 4096] = 1;
    file(&mut t, "sparse", sparse, meta(0o644, 0, 0));
    let mut tool_meta = meta(0o4755, 100_000, 200_000);
    tool_meta.xattrs.insert(
        "security.capability".into(),
        vec![
            1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
    );
    file(&mut t, "usr/bin/tool", pattern(5000, 1), tool_meta);
    add(
        &mut t,
        "usr/bin/tool2",
        NodeKind::Hardlink("usr/bin/tool".into()),
        meta(0o4755, 100_000, 200_000),
    );
    add(
        &mut t,
        "etc/hostname.bak",
        NodeKind::Hardlink("etc/hostname".into()),
        meta(0o644, 0, 0),
    );
    add(
        &mut t,
        "usr/bin/tool3",
        NodeKind::Hardlink("usr/bin/tool".into()),
        meta(0o4755, 100_000, 200_000),
    );
    add(
        &mut t,
        "fast",
        NodeKind::Symlink("usr/bin/tool".into()),
        meta(0o777, 0, 0),
    );
    add(
        &mut t,
        "slow",
        NodeKind::Symlink("x/".repeat(100)),
        meta(0o777, 0, 0),
    );
    add(
        &mut t,
        "longest",
        NodeKind::Symlink("y".repeat(4095)),
        meta(0o777, 0, 0),
    );
    add(
        &mut t,
        "edge59",
        NodeKind::Symlink("z".repeat(59)),
        meta(0o777, 0, 0),
    );
    add(
        &mut t,
        "edge60",
        NodeKind::Symlink("z".repeat(60)),
        meta(0o777, 0, 0),
    );
    add(
        &mut t,
        "dev/null",
        NodeKind::CharDev { major: 1, minor: 3 },
        meta(0o666, 0, 0),
    );
    add(
        &mut t,
        "dev/sda",
        NodeKind::BlockDev { major: 8, minor: 0 },
        meta(0o660, 0, 6),
    );
    add(
        &mut t,
        "dev/big",
        NodeKind::CharDev {
            major: 259,
            minor: 70000,
        },
        meta(0o600, 0, 0),
    );
    add(&mut t, "dev/fifo", NodeKind::Fifo, meta(0o644, 0, 0));
    let mut x = meta(0o640, 65536, 65535);
    x.xattrs.insert("user.small".into(), b"v".to_vec());
    x.xattrs.insert("user.big".into(), pattern(300, 3));
    x.xattrs.insert(
        "security.selinux".into(),
        b"system_u:object_r:etc_t:s0\0".to_vec(),
    );
    x.xattrs
        .insert("trusted.overlay.opaque".into(), b"y".to_vec());
    x.xattrs.insert("user.empty".into(), Vec::new());
    file(&mut t, "xattrs", b"with attributes".to_vec(), x);
    let mut d = meta(0o2775, 1000, 1000);
    d.xattrs.insert(
        "system.posix_acl_access".into(),
        acl(&[
            (1, 7, u32::MAX),
            (2, 5, 1001),
            (4, 5, u32::MAX),
            (0x10, 7, u32::MAX),
            (0x20, 5, u32::MAX),
        ]),
    );
    d.xattrs.insert(
        "system.posix_acl_default".into(),
        acl(&[(1, 7, u32::MAX), (4, 5, u32::MAX), (0x20, 0, u32::MAX)]),
    );
    add(&mut t, "shared", NodeKind::Dir, d);
    let deep: Vec<String> = (0..40)
        .map(|i| format!("level-{i:02}-{}", "d".repeat(40)))
        .collect();
    file(
        &mut t,
        &format!("{}/leaf", deep.join("/")),
        b"deep\n".to_vec(),
        meta(0o644, 0, 0),
    );
    file(
        &mut t,
        &format!("longname/{}", "n".repeat(255)),
        b"255\n".to_vec(),
        meta(0o644, 0, 0),
    );
    t
}

#[test]
fn every_node_kind_round_trips_through_e2fsprogs() {
    let t = every_kind_tree();
    let built = build(&t, &opts()).unwrap();
    let img = Img::new(&built);
    img.fsck();

    // etc, usr, dev, shared, level-00…, longname and lost+found.
    check(&img, "/", "directory", "0755", (0, 0), 2 + 7, 4096);
    check(
        &img,
        "/usr/bin/tool",
        "regular",
        "04755",
        (100_000, 200_000),
        3,
        5000,
    );
    assert_eq!(img.cat("/usr/bin/tool3"), pattern(5000, 1));
    check(&img, "/etc/hostname.bak", "regular", "0644", (0, 0), 2, 5);
    assert_eq!(img.cat("/etc/hostname"), b"kiln\n");
    check(&img, "/empty", "regular", "0600", (1, 2), 1, 0);
    assert_eq!(img.cat("/empty"), b"");
    assert_eq!(img.cat("/multi"), pattern(3 * 4096 + 100, 7));
    assert_eq!(field(&img.stat("/multi"), "Blockcount"), "32");
    // Two of the sparse file's eleven blocks hold data.
    let sparse = img.stat("/sparse");
    assert_eq!(field(&sparse, "Blockcount"), "16", "{sparse}");
    let data = img.cat("/sparse");
    assert_eq!(data.len(), 10 * 4096 + 1);
    assert!(data[2 * 4096..3 * 4096].iter().all(|&b| b == 0xAA) && data[10 * 4096] == 1);
    assert_eq!(data.iter().filter(|&&b| b != 0).count(), 4097);

    let fast = img.stat("/fast");
    assert!(fast.contains("Fast link dest: \"usr/bin/tool\""), "{fast}");
    check(&img, "/fast", "symlink", "0777", (0, 0), 1, 12);
    check(&img, "/edge59", "symlink", "0777", (0, 0), 1, 59);
    assert!(img.stat("/edge59").contains("Fast link dest"));
    check(&img, "/edge60", "symlink", "0777", (0, 0), 1, 60);
    assert_eq!(img.cat("/edge60"), "z".repeat(60).as_bytes());
    assert_eq!(img.cat("/slow"), "x/".repeat(100).as_bytes());
    assert_eq!(img.cat("/longest"), "y".repeat(4095).as_bytes());

    check(&img, "/dev/null", "character", "0666", (0, 0), 1, 0);
    assert!(img
        .stat("/dev/null")
        .contains("Device major/minor number: 01:03"));
    check(&img, "/dev/sda", "block", "0660", (0, 6), 1, 0);
    assert!(img
        .stat("/dev/sda")
        .contains("Device major/minor number: 08:00"));
    let big = img.stat("/dev/big");
    assert!(
        big.contains("Device major/minor number: 259:70000"),
        "{big}"
    );
    check(&img, "/dev/fifo", "FIFO", "0644", (0, 0), 1, 0);

    check(&img, "/usr/bin", "directory", "0755", (0, 0), 2, 4096);
    check(&img, "/usr", "directory", "0755", (0, 0), 3, 4096);
    assert_eq!(
        img.ea_get("/usr/bin/tool", "security.capability")[..4],
        [1, 0, 0, 2]
    );
    assert_eq!(field(&img.stat("/usr/bin/tool"), "File ACL"), "0");

    // Some attributes stay in the inode, the rest spill into one block,
    // which i_blocks counts.
    let x = img.stat("/xattrs");
    check(&img, "/xattrs", "regular", "0640", (65536, 65535), 1, 15);
    assert_ne!(field(&x, "File ACL"), "0", "{x}");
    assert_eq!(field(&x, "Blockcount"), "16", "{x}");
    assert_eq!(img.ea_get("/xattrs", "user.small"), b"v");
    assert_eq!(img.ea_get("/xattrs", "user.big"), pattern(300, 3));
    assert_eq!(
        img.ea_get("/xattrs", "security.selinux"),
        b"system_u:object_r:etc_t:s0\0"
    );
    assert_eq!(img.ea_get("/xattrs", "trusted.overlay.opaque"), b"y");
    let list = img.debugfs("ea_list /xattrs");
    for name in [
        "user.small",
        "user.big",
        "user.empty",
        "security.selinux",
        "trusted.overlay.opaque",
    ] {
        assert!(list.contains(name), "{name} missing from:\n{list}");
    }
    check(&img, "/shared", "directory", "02775", (1000, 1000), 2, 4096);
    let acl_list = img.debugfs("ea_list /shared");
    assert!(
        acl_list.contains("system.posix_acl_access")
            && acl_list.contains("system.posix_acl_default"),
        "{acl_list}"
    );
    // The disk form drops the id of owner/group/mask/other entries; debugfs
    // reports those ids as 0 where the kernel reports -1.
    assert_eq!(
        img.ea_get("/shared", "system.posix_acl_access"),
        acl(&[
            (1, 7, 0),
            (2, 5, 1001),
            (4, 5, 0),
            (0x10, 7, 0),
            (0x20, 5, 0)
        ])
    );

    let deep: Vec<String> = (0..40)
        .map(|i| format!("level-{i:02}-{}", "d".repeat(40)))
        .collect();
    assert_eq!(img.cat(&format!("/{}/leaf", deep.join("/"))), b"deep\n");
    assert_eq!(img.cat(&format!("/longname/{}", "n".repeat(255))), b"255\n");

    let lf = img.stat("/lost+found");
    assert_eq!(field(&lf, "Mode"), "0700");
    assert!(lf.contains("mtime: 0x6553f100:00000000"), "{lf}");
}

#[test]
fn superblock_as_dumpe2fs_sees_it() {
    let mut o = opts();
    o.extra_bytes = 10 << 20;
    let built = build(&every_kind_tree(), &o).unwrap();
    let img = Img::new(&built);
    let (rc, out, err) = run("dumpe2fs", &["-h", img.p()]);
    assert_eq!(rc, 0, "{err}");
    let features = field(&out, "Filesystem features");
    let line = out
        .lines()
        .find(|l| l.starts_with("Filesystem features:"))
        .unwrap();
    for f in [
        "ext_attr",
        "filetype",
        "extent",
        "sparse_super",
        "large_file",
        "huge_file",
        "dir_nlink",
        "extra_isize",
        "metadata_csum",
    ] {
        assert!(
            line.split_whitespace().any(|w| w == f),
            "{f} missing: {line} ({features})"
        );
    }
    assert!(!line.contains("has_journal"), "{line}");
    assert_eq!(field(&out, "Block count"), built.blocks.to_string());
    assert_eq!(field(&out, "Inode count"), built.inodes.to_string());
    assert_eq!(field(&out, "Block size"), "4096");
    assert_eq!(field(&out, "Inode size"), "256");
    assert_eq!(field(&out, "Filesystem volume name"), "kiln-root");
    assert_eq!(field(&out, "Checksum type"), "crc32c");
    assert_eq!(
        field(&out, "Filesystem UUID"),
        "6b696c6e-2d65-7874-342d-746573742d75"
    );
    let free: u64 = field(&out, "Free blocks").parse().unwrap();
    assert_eq!(free, built.blocks - built.used_blocks);
    assert!(free >= (10 << 20) / 4096, "{free} free blocks");
    assert!(
        out.contains("Filesystem created:       Tue Nov 14 22:13:20 2023"),
        "{out}"
    );
    assert_eq!(built.bytes.len() as u64, built.blocks * 4096);
}

#[test]
fn directory_of_five_thousand_entries() {
    let mut t = Tree::new(T0);
    for i in 0..5000 {
        file(
            &mut t,
            &format!("big/entry-with-a-longish-name-{i:05}"),
            format!("{i}\n").into_bytes(),
            meta(0o644, 0, 0),
        );
    }
    for i in 0..50 {
        add(
            &mut t,
            &format!("big/sub-{i:02}"),
            NodeKind::Dir,
            meta(0o755, 0, 0),
        );
    }
    let built = build(&t, &opts()).unwrap();
    let img = Img::new(&built);
    img.fsck();
    let s = img.stat("/big");
    assert_eq!(field(&s, "Links"), "52");
    let size: u64 = field(&s, "Size").parse().unwrap();
    assert!(size > 40 * 4096, "{size}");
    let ls = img.debugfs("ls /big");
    assert_eq!(
        ls.split_whitespace()
            .filter(|w| w.starts_with("entry-with"))
            .count(),
        5000
    );
    assert_eq!(img.cat("/big/entry-with-a-longish-name-04999"), b"4999\n");
    assert_eq!(img.cat("/big/entry-with-a-longish-name-00000"), b"0\n");
}

#[test]
fn fragmented_file_gets_a_two_level_extent_tree() {
    // 3000 data blocks separated by holes: 3000 extents, 9 leaves, one index
    // block, depth 2.
    let mut data = vec![0u8; 6000 * 4096];
    for i in 0..3000 {
        let b = 2 * i * 4096;
        data[b..b + 4096].fill((i % 255) as u8 + 1);
    }
    let mut t = Tree::new(T0);
    file(&mut t, "frag", data.clone(), meta(0o644, 0, 0));
    file(&mut t, "after", b"after\n".to_vec(), meta(0o644, 0, 0));
    let built = build(&t, &opts()).unwrap();
    let img = Img::new(&built);
    img.fsck();
    let s = img.stat("/frag");
    assert_eq!(
        field(&s, "Blockcount"),
        ((3000 + 10) * 8).to_string(),
        "{s}"
    );
    let ex = img.debugfs("ex /frag");
    assert!(
        ex.lines().any(|l| l.trim_start().starts_with("0/ 2")),
        "{ex}"
    );
    assert!(img.cat("/frag") == data, "fragmented file content differs");
    assert_eq!(img.cat("/after"), b"after\n");
}

#[test]
fn large_file_spans_block_groups_and_backups_are_valid() {
    let len = 140 << 20;
    let mut data = vec![0u8; len];
    for (i, block) in data.chunks_mut(4096).enumerate() {
        block[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
        block[4000] = 0x5A;
    }
    let mut t = Tree::new(T0);
    file(&mut t, "huge", data.clone(), meta(0o644, 0, 0));
    file(&mut t, "small", b"small\n".to_vec(), meta(0o644, 0, 0));
    let built = build(&t, &opts()).unwrap();
    assert!(built.blocks > 32768, "{} blocks", built.blocks);
    let img = Img::new(&built);
    img.fsck();
    // The backup superblock and group descriptors in group 1 are usable too.
    fsck_with(img.p(), &["-b", "32768", "-B", "4096"]);
    assert_eq!(field(&img.stat("/huge"), "Size"), len.to_string());
    assert!(img.cat("/huge") == data, "large file content differs");
    assert_eq!(img.cat("/small"), b"small\n");
}

#[test]
fn many_inodes_spread_over_groups() {
    // More inodes than one group's table holds at this size, so inode
    // numbers cross groups.
    let mut t = Tree::new(T0);
    for i in 0..40_000 {
        add(
            &mut t,
            &format!("d{}/f{i}", i % 7),
            NodeKind::Fifo,
            meta(0o644, 0, 0),
        );
    }
    file(&mut t, "last", b"last\n".to_vec(), meta(0o644, 0, 0));
    let built = build(&t, &opts()).unwrap();
    let img = Img::new(&built);
    img.fsck();
    assert!(built.inodes >= 40_011);
    assert_eq!(img.cat("/last"), b"last\n");
}

#[test]
fn build_is_deterministic() {
    let a = build(&every_kind_tree(), &opts()).unwrap();
    let b = build(&every_kind_tree().clone(), &opts()).unwrap();
    assert!(a == b, "two builds of the same tree differ");
    let mut other = opts();
    other.uuid[0] ^= 1;
    assert_ne!(build(&every_kind_tree(), &other).unwrap().bytes, a.bytes);
}

#[test]
fn golden_digest_of_a_small_tree() {
    let mut t = Tree::new(T0);
    file(
        &mut t,
        "etc/os-release",
        b"ID=kiln\n".to_vec(),
        meta(0o644, 0, 0),
    );
    add(
        &mut t,
        "bin/sh",
        NodeKind::Symlink("busybox".into()),
        meta(0o777, 0, 0),
    );
    let mut m = meta(0o755, 0, 0);
    m.xattrs.insert(
        "security.capability".into(),
        vec![
            1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
    );
    file(&mut t, "bin/busybox", pattern(9000, 9), m);
    add(
        &mut t,
        "dev/console",
        NodeKind::CharDev { major: 5, minor: 1 },
        meta(0o600, 0, 0),
    );
    let built = build(&t, &opts()).unwrap();
    Img::new(&built).fsck();
    let digest = hex::encode(Sha256::digest(&built.bytes));
    assert_eq!(
        digest, "4a7520904fcbe2a4c6486f996a4b80a2b8a05ea8750b164106ec5cdb99971b44",
        "ext4 output changed; if intended, update the golden digest"
    );
}

#[test]
fn errors_name_the_path() {
    let build_one = |path: &str, node: Node| {
        let mut t = Tree::new(T0);
        t.insert_with_parents(path, node, &Meta::root(0o755, T0))
            .unwrap();
        build(&t, &opts())
    };
    let mut bad_xattr = meta(0o644, 0, 0);
    bad_xattr.xattrs.insert("os2.thing".into(), b"x".to_vec());
    let err = build_one(
        "a/b",
        Node {
            kind: NodeKind::File(Arc::new(Vec::new())),
            meta: bad_xattr,
        },
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("/a/b") && err.to_string().contains("os2.thing"),
        "{err}"
    );
    let mut huge = meta(0o644, 0, 0);
    huge.xattrs.insert("user.x".into(), vec![0; 5000]);
    let err = build_one(
        "h",
        Node {
            kind: NodeKind::File(Arc::new(Vec::new())),
            meta: huge,
        },
    )
    .unwrap_err();
    assert_eq!(err, Ext4Error::XattrsTooLarge { path: "/h".into() });
    let err = build_one(
        "s",
        Node {
            kind: NodeKind::Symlink(String::new()),
            meta: meta(0o777, 0, 0),
        },
    )
    .unwrap_err();
    assert_eq!(err, Ext4Error::BadSymlink { path: "/s".into() });
    let err = build_one(
        "lost+found",
        Node {
            kind: NodeKind::Fifo,
            meta: meta(0o644, 0, 0),
        },
    )
    .unwrap_err();
    assert_eq!(err, Ext4Error::LostFoundNotDir);
    let mut o = opts();
    o.label = "a-label-longer-than-16".into();
    assert!(matches!(
        build(&Tree::new(0), &o),
        Err(Ext4Error::LabelTooLong(_))
    ));
}

#[test]
fn existing_lost_found_is_kept() {
    let mut t = Tree::new(T0);
    add(&mut t, "lost+found", NodeKind::Dir, meta(0o755, 5, 5));
    let built = build(&t, &opts()).unwrap();
    let img = Img::new(&built);
    img.fsck();
    check(&img, "/lost+found", "directory", "0755", (5, 5), 2, 4096);
}

/// Not a pass/fail test: prints how long a 100 MB, 10k-file tree takes.
/// Run with `cargo test --release -p kiln --lib ext4_throughput -- --ignored --nocapture`.
#[test]
#[ignore = "timing report, run by hand in release mode"]
fn ext4_throughput() {
    let mut t = Tree::new(T0);
    for i in 0..10_000usize {
        // Sizes from 100 bytes to ~20 KB, 100 MB in all.
        let len = 100 + (i * 7919) % 19_800;
        let mut data = vec![(i % 251) as u8 + 1; len];
        data[0] = 0;
        file(
            &mut t,
            &format!("usr/share/d{:03}/file-{i:05}", i % 300),
            data,
            meta(0o644, 0, 0),
        );
    }
    let mut m = meta(0o644, 0, 0);
    m.xattrs.insert("user.x".into(), vec![1; 40]);
    file(&mut t, "big", vec![3u8; 3 << 20], m);
    let bytes = t.content_bytes();
    let start = std::time::Instant::now();
    let built = build(&t, &opts()).unwrap();
    let took = start.elapsed();
    println!(
        "ext4: {} files, {:.1} MB content -> {:.1} MB image in {:?}",
        t.len(),
        bytes as f64 / 1e6,
        built.bytes.len() as f64 / 1e6,
        took
    );
    Img::new(&built).fsck();
}
