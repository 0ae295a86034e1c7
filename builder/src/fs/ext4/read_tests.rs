//! The reader against the writer (round trips of rich trees) and against
//! `mkfs.ext4 -d` (an image nobody here wrote).

use super::read::{read, Fs, ReadError};
use super::tests::{every_kind_tree, file, meta, opts, pattern, run, T0};
use super::*;
use crate::fs::tree::{Meta, NodeKind, Tree};
use std::os::unix::fs::{MetadataExt, PermissionsExt};

/// What reading back the image of `t` must give: `t` with the lost+found
/// the writer adds, and every hard link carrying its target's metadata
/// (they share one inode).
fn as_written(t: &Tree, timestamp: i64) -> Tree {
    let mut want = as_built(t, timestamp);
    let links: Vec<(String, Meta)> = t
        .iter()
        .filter_map(|(p, n)| match &n.kind {
            NodeKind::Hardlink(target) => Some((p.to_string(), t.get(target)?.meta.clone())),
            _ => None,
        })
        .collect();
    for (p, m) in links {
        want.get_mut(&p).unwrap().meta = m;
    }
    want
}

fn assert_trees_eq(got: &Tree, want: &Tree) {
    for ((gp, gn), (wp, wn)) in got.iter().zip(want.iter()) {
        assert_eq!(gp, wp, "paths differ");
        assert!(gn == wn, "/{gp}: read {:?}\nwrote {:?}", gn.meta, wn.meta);
    }
    assert_eq!(got.len(), want.len());
}

#[test]
fn every_node_kind_reads_back_identically() {
    let t = every_kind_tree();
    let img = build(&t, &opts()).unwrap();
    let got = read(&img.bytes).unwrap();
    assert_trees_eq(&got, &as_written(&t, opts().timestamp));
}

#[test]
fn deep_extent_trees_holes_and_big_directories_read_back() {
    let mut t = Tree::new(T0);
    // 3000 extents: a depth-2 tree (leaves under one index block).
    let mut frag = vec![0u8; 6000 * 4096 + 17];
    for i in 0..3000 {
        let b = 2 * i * 4096;
        frag[b..b + 4096].fill((i % 255) as u8 + 1);
    }
    file(&mut t, "frag", frag, meta(0o644, 0, 0));
    // Trailing hole, all-zero file, file of one partial block.
    let mut tail_hole = pattern(4096, 9);
    tail_hole.resize(5 * 4096, 0);
    file(&mut t, "tail-hole", tail_hole, meta(0o644, 0, 0));
    file(&mut t, "zeros", vec![0u8; 3 * 4096 + 5], meta(0o644, 0, 0));
    file(&mut t, "big", pattern(9 << 20, 3), meta(0o755, 5, 6));
    for i in 0..3000 {
        file(
            &mut t,
            &format!("many/entry-{i:05}"),
            format!("{i}\n").into_bytes(),
            meta(0o644, 0, 0),
        );
    }
    let mut m = meta(0o644, 0, 0);
    m.mtime = -5_000_000_000; // before 1901: clamped by the writer
    file(&mut t, "ancient", b"x".to_vec(), m);
    let mut m = meta(0o644, 0, 0);
    m.mtime = 5_000_000_000; // after 2038: needs the epoch bits
    file(&mut t, "future", b"y".to_vec(), m);
    let img = build(&t, &opts()).unwrap();
    let got = read(&img.bytes).unwrap();
    let mut want = as_written(&t, opts().timestamp);
    want.get_mut("ancient").unwrap().meta.mtime = -(1 << 31);
    assert_trees_eq(&got, &want);
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    assert_eq!(read(&[0u8; 4096]).unwrap_err(), ReadError::NotExt4);
    assert_eq!(read(b"short").unwrap_err(), ReadError::NotExt4);
    let t = every_kind_tree();
    let img = build(&t, &opts()).unwrap();
    // Truncations and flipped bytes anywhere in the metadata must not panic.
    for cut in [2048, 4096 * 3, img.bytes.len() / 2] {
        let _ = read(&img.bytes[..cut]);
    }
    let fs = Fs::open(&img.bytes).unwrap();
    let inodes = fs.inode_range(2).unwrap().start;
    for off in (inodes..inodes + 40 * 256).step_by(7) {
        let mut b = img.bytes.clone();
        b[off] ^= 0xFF;
        let _ = read(&b);
    }
}

/// Damage to each kind of metadata gives an error naming the structure and
/// field: the checksums catch flipped bits; fields with their checksum
/// redone are checked against the image.
#[test]
fn damaged_metadata_names_the_field() {
    use super::format::*;
    use super::layout::crc32c_raw;
    let img = build(&every_kind_tree(), &opts()).unwrap().bytes;
    let fs = Fs::open(&img).unwrap();
    const SB: usize = super::SUPERBLOCK_OFFSET;
    fn reseal(b: &mut [u8]) {
        let crc = crc32c_raw(!0, &b[SB..SB + S_CHECKSUM.offset]);
        S_CHECKSUM.put(&mut b[SB..], crc);
    }
    let root_inode = fs.inode_range(2).unwrap().start;
    let root_dir_block = {
        let i_block = &img[root_inode + I_BLOCK.offset..];
        // Depth 0 root: the first extent's start, low 32 bits.
        u32::from_le_bytes(i_block[12 + 8..12 + 12].try_into().unwrap()) as usize
    };
    type Damage = (&'static str, Box<dyn Fn(&mut Vec<u8>)>);
    let cases: Vec<Damage> = vec![
        ("`s_checksum`", Box::new(|b| b[SB + 0x30] ^= 1)),
        (
            "`s_blocks_count_lo`",
            Box::new(|b| {
                S_BLOCKS_COUNT_LO.put(&mut b[SB..], u32::MAX);
                reseal(b);
            }),
        ),
        (
            "`s_first_data_block`",
            Box::new(|b| {
                S_FIRST_DATA_BLOCK.put(&mut b[SB..], 0x7fff_ffffu32);
                reseal(b);
            }),
        ),
        (
            "`s_log_block_size`",
            Box::new(|b| {
                S_LOG_BLOCK_SIZE.put(&mut b[SB..], 40u32);
                reseal(b);
            }),
        ),
        (
            "`s_inodes_per_group`",
            Box::new(|b| {
                S_INODES_PER_GROUP.put(&mut b[SB..], 0u32);
                reseal(b);
            }),
        ),
        (
            "group descriptor 0: field `bg_checksum`",
            Box::new(|b| b[4096 + 8] ^= 1),
        ),
        (
            "inode 2: field `i_checksum_lo`",
            Box::new(move |b| b[root_inode] ^= 1),
        ),
        (
            "field `det_checksum`",
            Box::new(move |b| b[root_dir_block * 4096 + 30] ^= 1),
        ),
    ];
    for (want, damage) in cases {
        let mut b = img.clone();
        damage(&mut b);
        let e = read(&b).unwrap_err().to_string();
        assert!(e.contains(want), "want {want}: {e}");
    }
}

/// A directory of every kind `mkfs.ext4 -d` copies, with the host metadata
/// it will carry.
#[test]
fn reads_what_mkfs_ext4_writes() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let p = |rel: &str| src.join(rel);
    std::fs::create_dir_all(p("etc/sub")).unwrap();
    std::fs::write(p("etc/hostname"), b"host\n").unwrap();
    std::fs::write(p("big"), pattern(3 << 20, 5)).unwrap();
    std::fs::write(p("empty"), b"").unwrap();
    std::fs::set_permissions(p("big"), std::fs::Permissions::from_mode(0o4750)).unwrap();
    std::os::unix::fs::symlink("etc/hostname", p("fast")).unwrap();
    std::os::unix::fs::symlink("s/".repeat(80), p("slow")).unwrap();
    std::fs::hard_link(p("etc/hostname"), p("etc/sub/again")).unwrap();
    nix::unistd::mkfifo(&p("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o640)).unwrap();
    // Enough entries that mkfs builds an htree (dir_index) directory.
    std::fs::create_dir(p("many")).unwrap();
    for i in 0..2000 {
        std::fs::write(p(&format!("many/file-{i:04}")), format!("{i}")).unwrap();
    }
    let has_xattrs = ::xattr::set(p("etc/hostname"), "user.kiln", b"value").is_ok();

    let img_path = dir.path().join("fs.ext4");
    let (rc, _, err) = run(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-d",
            src.to_str().unwrap(),
            img_path.to_str().unwrap(),
            "64M",
        ],
    );
    assert_eq!(rc, 0, "mkfs.ext4: {err}");
    let bytes = std::fs::read(&img_path).unwrap();
    // The read verifies the checksums mkfs wrote.
    let ro_compat: u32 = super::format::S_FEATURE_RO_COMPAT
        .get(&bytes[super::SUPERBLOCK_OFFSET..])
        .unwrap();
    assert_ne!(ro_compat & 0x400, 0, "mkfs.ext4 wrote no metadata_csum");
    let got = read(&bytes).unwrap();

    let mut want_paths: Vec<String> = vec!["".into(), "lost+found".into()];
    for entry in walk(&src) {
        let rel = entry
            .strip_prefix(&src)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let md = std::fs::symlink_metadata(&entry).unwrap();
        let node = got.get(&rel).unwrap_or_else(|| panic!("{rel} missing"));
        assert_eq!(node.meta.mode, md.mode() & 0o7777, "{rel}");
        assert_eq!(node.meta.uid, md.uid(), "{rel}");
        assert_eq!(node.meta.gid, md.gid(), "{rel}");
        assert_eq!(node.meta.mtime, md.mtime(), "{rel}");
        match &node.kind {
            NodeKind::File(c) => assert!(**c == std::fs::read(&entry).unwrap(), "{rel}"),
            NodeKind::Symlink(t) => {
                assert_eq!(std::path::Path::new(t), std::fs::read_link(&entry).unwrap())
            }
            NodeKind::Dir => assert!(md.is_dir(), "{rel}"),
            NodeKind::Fifo => assert_eq!(rel, "fifo"),
            NodeKind::Hardlink(t) => assert_eq!(
                (rel.as_str(), t.as_str()),
                ("etc/sub/again", "etc/hostname")
            ),
            k => panic!("{rel}: unexpected {k:?}"),
        }
        want_paths.push(rel);
    }
    want_paths.sort();
    let got_paths: Vec<&str> = got.iter().map(|(p, _)| p).collect();
    assert_eq!(got_paths, want_paths);
    if has_xattrs {
        let x = &got.get("etc/hostname").unwrap().meta.xattrs;
        assert_eq!(x.get("user.kiln").map(Vec::as_slice), Some(&b"value"[..]));
    } else {
        eprintln!(
            "note: the temporary directory takes no user xattrs; xattrs from mkfs not checked"
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if std::fs::symlink_metadata(&path).unwrap().is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

#[test]
fn empty_tree_reads_back_as_root_and_lost_found() {
    let t = Tree::new(T0);
    let img = build(&t, &opts()).unwrap();
    let got = read(&img.bytes).unwrap();
    assert_trees_eq(&got, &as_written(&t, opts().timestamp));
}
