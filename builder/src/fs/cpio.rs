//! A deterministic writer for the cpio "new ASCII" (`070701`, "newc") format,
//! the format the Linux kernel unpacks an initramfs from.
//!
//! Format: the kernel's `Documentation/driver-api/early-userspace/buffer-format.rst`.
//! Every entry is a 110-byte ASCII header (magic and thirteen 8-digit hex
//! fields), the NUL-terminated name padded so header + name is a multiple of
//! 4 bytes, then the data padded to a multiple of 4 bytes. The archive ends
//! with an entry named `TRAILER!!!`.
//!
//! Everything in the output comes from the [`Tree`]: entries in tree order
//! (the root as `.`, then every path in byte order, so parents come first),
//! inode numbers assigned sequentially from 1 in that order, mtimes, modes and
//! owners from each node's [`Meta`](crate::fs::tree::Meta). `devmajor`/`devminor`
//! are always 0 (one "device" for the whole archive); device nodes carry their
//! number in `rdevmajor`/`rdevminor`.
//!
//! Hard links: all names of one file share one inode number, carry the
//! metadata of the link's target file and the real link count, and the
//! contents are stored once, on the *last* name in archive order, the others
//! having size 0. This is what GNU cpio and the kernel's `gen_init_cpio`
//! write. The kernel's `init/initramfs.c` accepts it: for a regular file with
//! `nlink >= 2` it remembers the first name for (dev, ino, mode), hard-links
//! later names to it and opens them without `O_TRUNC`, so the data written
//! through the last name lands in the shared inode.
//!
//! newc has no room for extended attributes; a tree that has any is refused
//! rather than silently stripped.

use crate::fs::tree::{NodeKind, Tree};
use std::collections::BTreeMap;

/// The newc magic number.
const MAGIC: &str = "070701";
/// The header length: 6 magic bytes plus 13 fields of 8 hex digits.
const HEADER_LEN: usize = 110;
/// The name of the entry that ends an archive.
pub const TRAILER: &str = "TRAILER!!!";
/// The zstd level used for initramfs compression. Fixed so output never
/// depends on a default; 19 is the highest level without `--ultra`'s huge
/// windows, which the kernel's decompressor would have to allocate for.
const ZSTD_LEVEL: i32 = 19;

/// Errors in turning a tree into a cpio archive.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CpioError {
    /// A value that does not fit newc's 32-bit fields.
    #[error("{path}: {field} {value} does not fit a 32-bit newc header field")]
    FieldOverflow {
        /// The entry.
        path: String,
        /// Which header field.
        field: &'static str,
        /// The value that did not fit.
        value: i128,
    },
    /// Extended attributes, which newc cannot carry.
    #[error("{path}: has extended attributes ({names}), which a newc cpio archive cannot carry")]
    Xattrs {
        /// The entry.
        path: String,
        /// The attribute names, comma separated.
        names: String,
    },
    /// A path the kernel would read as the end of the archive.
    #[error("{0}: a file named {TRAILER} would end the archive early")]
    TrailerName(String),
    /// A hard link whose target is not a regular file of the tree.
    #[error("{path}: hard link target {target:?} is not a regular file in the tree")]
    BadHardlink {
        /// The link.
        path: String,
        /// What it points at.
        target: String,
    },
}

/// How to compress an archive for the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// No compression: the archive as is.
    None,
    /// A single zstd frame at a fixed level, with content size and checksum
    /// (the kernel's `CONFIG_RD_ZSTD` decompressor).
    Zstd,
}

/// The fields of one newc header, before formatting.
#[derive(Debug, Default)]
struct Header {
    ino: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    mtime: u32,
    filesize: u32,
    rdevmajor: u32,
    rdevminor: u32,
}

fn fit(path: &str, field: &'static str, value: impl Into<i128>) -> Result<u32, CpioError> {
    let value = value.into();
    u32::try_from(value).map_err(|_| CpioError::FieldOverflow {
        path: path.to_string(),
        field,
        value,
    })
}

fn pad4(out: &mut Vec<u8>) {
    out.resize(out.len().next_multiple_of(4), 0);
}

fn push_entry(out: &mut Vec<u8>, name: &str, h: &Header, data: &[u8]) -> Result<(), CpioError> {
    let namesize = fit(name, "name size", name.len() as u64 + 1)?;
    let fields = [
        h.ino,
        h.mode,
        h.uid,
        h.gid,
        h.nlink,
        h.mtime,
        h.filesize,
        0, // devmajor
        0, // devminor
        h.rdevmajor,
        h.rdevminor,
        namesize,
        0, // check: only used by the 070702 (crc) variant
    ];
    let start = out.len();
    out.extend_from_slice(MAGIC.as_bytes());
    for f in fields {
        out.extend_from_slice(format!("{f:08X}").as_bytes());
    }
    debug_assert_eq!(out.len() - start, HEADER_LEN);
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
    Ok(())
}

/// The regular file a node's inode belongs to: itself, or a hard link's target.
fn inode_key<'a>(path: &'a str, kind: &'a NodeKind) -> Option<&'a str> {
    match kind {
        NodeKind::File(_) => Some(path),
        NodeKind::Hardlink(t) => Some(t.as_str()),
        _ => None,
    }
}

/// Write `tree` as a newc cpio archive. See the module documentation for the
/// exact layout; the same tree always gives the same bytes.
pub fn write_newc(tree: &Tree) -> Result<Vec<u8>, CpioError> {
    // First pass: link counts of files, the last name of every file (where
    // its data goes), and subdirectory counts for directory link counts.
    let mut links: BTreeMap<&str, u32> = BTreeMap::new();
    let mut last_name: BTreeMap<&str, &str> = BTreeMap::new();
    let mut subdirs: BTreeMap<&str, u32> = BTreeMap::new();
    for (path, node) in tree.iter() {
        if !node.meta.xattrs.is_empty() {
            let names: Vec<&str> = node.meta.xattrs.keys().map(String::as_str).collect();
            return Err(CpioError::Xattrs {
                path: path.to_string(),
                names: names.join(","),
            });
        }
        if path == TRAILER {
            return Err(CpioError::TrailerName(path.to_string()));
        }
        if let Some(key) = inode_key(path, &node.kind) {
            if !matches!(tree.get(key).map(|n| &n.kind), Some(NodeKind::File(_))) {
                return Err(CpioError::BadHardlink {
                    path: path.to_string(),
                    target: key.to_string(),
                });
            }
            *links.entry(key).or_default() += 1;
            last_name.insert(key, path);
        }
        if node.kind == NodeKind::Dir && !path.is_empty() {
            *subdirs
                .entry(crate::fs::tree::parent(path).unwrap_or(""))
                .or_default() += 1;
        }
    }

    let mut out = Vec::with_capacity(tree.content_bytes() as usize + tree.len() * 128);
    let mut inodes: BTreeMap<&str, u32> = BTreeMap::new();
    let mut next_ino: u32 = 1;
    for (path, node) in tree.iter() {
        let name = if path.is_empty() { "." } else { path };
        // A hard link is the same inode as its target: same metadata.
        let (meta, st_mode) = match &node.kind {
            NodeKind::Hardlink(t) => {
                // Checked in the first pass: the target is a regular file.
                let target = tree.get(t).ok_or_else(|| CpioError::BadHardlink {
                    path: path.to_string(),
                    target: t.clone(),
                })?;
                (&target.meta, target.st_mode())
            }
            _ => (&node.meta, node.st_mode()),
        };
        let ino = match inode_key(path, &node.kind) {
            Some(key) => *inodes.entry(key).or_insert_with(|| {
                next_ino += 1;
                next_ino - 1
            }),
            None => {
                next_ino += 1;
                next_ino - 1
            }
        };
        let mut h = Header {
            ino,
            mode: st_mode,
            uid: meta.uid,
            gid: meta.gid,
            nlink: 1,
            mtime: fit(name, "mtime", meta.mtime)?,
            ..Header::default()
        };
        let data: &[u8] = match &node.kind {
            NodeKind::Dir => {
                h.nlink = 2 + subdirs.get(path).copied().unwrap_or(0);
                &[]
            }
            NodeKind::File(_) | NodeKind::Hardlink(_) => {
                let key = inode_key(path, &node.kind).unwrap_or(path);
                h.nlink = links.get(key).copied().unwrap_or(1);
                match (last_name.get(key), tree.get(key).map(|n| &n.kind)) {
                    (Some(&last), Some(NodeKind::File(content))) if last == path => content,
                    _ => &[],
                }
            }
            NodeKind::Symlink(target) => target.as_bytes(),
            NodeKind::CharDev { major, minor } | NodeKind::BlockDev { major, minor } => {
                h.rdevmajor = *major;
                h.rdevminor = *minor;
                &[]
            }
            NodeKind::Fifo => &[],
        };
        h.filesize = fit(name, "file size", data.len() as u64)?;
        push_entry(&mut out, name, &h, data)?;
    }
    push_entry(
        &mut out,
        TRAILER,
        &Header {
            nlink: 1,
            ..Header::default()
        },
        &[],
    )?;
    Ok(out)
}

/// Compress an archive for use as an initramfs. Deterministic: a fixed level,
/// one thread, one frame, content size and checksum always present.
pub fn compress(cpio: &[u8], how: Compression) -> Vec<u8> {
    match how {
        Compression::None => cpio.to_vec(),
        Compression::Zstd => zstd_frame(cpio),
    }
}

fn zstd_frame(data: &[u8]) -> Vec<u8> {
    use zstd::zstd_safe::{CCtx, CParameter};
    let mut cctx = CCtx::create();
    let bound = zstd::zstd_safe::compress_bound(data.len());
    let mut out: Vec<u8> = Vec::with_capacity(bound);
    // The parameters below are all valid constants and the output buffer
    // has the worst-case bound, so zstd cannot fail here.
    let params = [
        CParameter::CompressionLevel(ZSTD_LEVEL),
        CParameter::ChecksumFlag(true),
        CParameter::ContentSizeFlag(true),
        CParameter::DictIdFlag(false),
    ];
    for p in params {
        cctx.set_parameter(p)
            .expect("constant zstd parameters are valid");
    }
    cctx.compress2(&mut out, data)
        .expect("output buffer holds compress_bound bytes");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::tree::{Meta, Node};
    use crate::testutil::run_with_stdin;
    use sha2::{Digest, Sha256};
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::sync::Arc;

    const T: i64 = 1_700_000_000;

    fn node(kind: NodeKind, mode: u32) -> Node {
        Node {
            kind,
            meta: Meta::root(mode, T),
        }
    }

    fn sample() -> Tree {
        let mut t = Tree::new(T);
        t.insert("bin", node(NodeKind::Dir, 0o755)).unwrap();
        t.insert(
            "bin/tool",
            node(
                NodeKind::File(Arc::new(b"#!/bin/sh\necho hi\n".to_vec())),
                0o755,
            ),
        )
        .unwrap();
        // A link that sorts before its target, and one after.
        t.insert(
            "bin/alias",
            node(NodeKind::Hardlink("bin/tool".into()), 0o644),
        )
        .unwrap();
        t.insert(
            "bin/zz-alias",
            node(NodeKind::Hardlink("bin/tool".into()), 0o644),
        )
        .unwrap();
        t.insert("dev", node(NodeKind::Dir, 0o755)).unwrap();
        t.insert(
            "dev/console",
            node(NodeKind::CharDev { major: 5, minor: 1 }, 0o600),
        )
        .unwrap();
        t.insert("etc", node(NodeKind::Dir, 0o755)).unwrap();
        t.insert(
            "etc/empty",
            node(NodeKind::File(Arc::new(Vec::new())), 0o600),
        )
        .unwrap();
        t.insert(
            "etc/odd-len",
            node(NodeKind::File(Arc::new(b"12345".to_vec())), 0o640),
        )
        .unwrap();
        t.insert("init", node(NodeKind::Symlink("bin/tool".into()), 0o777))
            .unwrap();
        let mut owned = node(NodeKind::File(Arc::new(b"owned".to_vec())), 0o4755);
        owned.meta.uid = 1000;
        owned.meta.gid = 100;
        t.insert("etc/owned", owned).unwrap();
        t.insert("sysroot", node(NodeKind::Dir, 0o755)).unwrap();
        t.validate().unwrap();
        t
    }

    /// Parse an archive back into (name, fields, data); the inverse of push_entry.
    fn parse(mut a: &[u8]) -> Vec<(String, [u32; 13], Vec<u8>)> {
        let total = a.len();
        let mut out = Vec::new();
        loop {
            assert_eq!(&a[..6], MAGIC.as_bytes());
            let mut f = [0u32; 13];
            for (i, v) in f.iter_mut().enumerate() {
                let s = std::str::from_utf8(&a[6 + 8 * i..14 + 8 * i]).unwrap();
                *v = u32::from_str_radix(s, 16).unwrap();
            }
            let namesize = f[11] as usize;
            let name = std::str::from_utf8(&a[HEADER_LEN..HEADER_LEN + namesize - 1]).unwrap();
            assert_eq!(a[HEADER_LEN + namesize - 1], 0);
            let data_at = (HEADER_LEN + namesize).div_ceil(4) * 4;
            let size = f[6] as usize;
            let data = a[data_at..data_at + size].to_vec();
            out.push((name.to_string(), f, data));
            a = &a[(data_at + size).div_ceil(4) * 4..];
            assert_eq!((total - a.len()) % 4, 0);
            if name == TRAILER {
                assert!(a.is_empty());
                return out;
            }
        }
    }

    fn have(tool: &str) -> bool {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        // CI installs every tool: a missing one fails the test, never skips it.
        assert!(
            found,
            "`{tool}` is not installed: install its Debian package (scripts/setup-host.sh)"
        );
        found
    }

    #[test]
    fn layout_and_fields() {
        let a = write_newc(&sample()).unwrap();
        let e = parse(&a);
        let names: Vec<&str> = e.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                ".",
                "bin",
                "bin/alias",
                "bin/tool",
                "bin/zz-alias",
                "dev",
                "dev/console",
                "etc",
                "etc/empty",
                "etc/odd-len",
                "etc/owned",
                "init",
                "sysroot",
                TRAILER
            ]
        );
        let get = |n: &str| e.iter().find(|(name, _, _)| name == n).unwrap();
        // Fields: 0 ino, 1 mode, 2 uid, 3 gid, 4 nlink, 5 mtime, 6 size,
        // 7 devmaj, 8 devmin, 9 rdevmaj, 10 rdevmin, 11 namesize, 12 check.
        let (_, root, _) = get(".");
        assert_eq!((root[0], root[1], root[4]), (1, 0o40755, 6));
        // Hard links: one inode, target's metadata, data only on the last name.
        let (_, alias, d1) = get("bin/alias");
        let (_, tool, d2) = get("bin/tool");
        let (_, zz, d3) = get("bin/zz-alias");
        assert_eq!(alias[0], tool[0]);
        assert_eq!(zz[0], tool[0]);
        for f in [alias, tool, zz] {
            assert_eq!((f[1], f[4]), (0o100755, 3));
        }
        assert!(d1.is_empty() && d2.is_empty());
        assert_eq!(d3.as_slice(), b"#!/bin/sh\necho hi\n");
        let (_, con, _) = get("dev/console");
        assert_eq!((con[1], con[6], con[9], con[10]), (0o20600, 0, 5, 1));
        let (_, init, target) = get("init");
        assert_eq!(
            (init[1], target.as_slice()),
            (0o120777, b"bin/tool".as_slice())
        );
        let (_, owned, _) = get("etc/owned");
        assert_eq!((owned[1], owned[2], owned[3]), (0o104755, 1000, 100));
        // Inodes are unique apart from hard links, and sequential.
        let mut inos: Vec<u32> = Vec::new();
        for (_, f, _) in &e[..e.len() - 1] {
            if !inos.contains(&f[0]) {
                inos.push(f[0]);
            }
        }
        assert_eq!(inos, (1..=11).collect::<Vec<u32>>());
        for (name, f, _) in &e {
            assert_eq!((f[7], f[8], f[12]), (0, 0, 0), "{name}");
            if name != TRAILER {
                assert_eq!(f[5], T as u32, "{name}");
            }
        }
    }

    #[test]
    fn refuses_what_newc_cannot_hold() {
        let mut t = Tree::new(0);
        let mut n = node(NodeKind::File(Arc::new(vec![])), 0o644);
        n.meta.xattrs.insert("security.capability".into(), vec![1]);
        t.insert("cap", n).unwrap();
        assert!(matches!(write_newc(&t), Err(CpioError::Xattrs { .. })));

        let mut t = Tree::new(0);
        t.insert(TRAILER, node(NodeKind::File(Arc::new(vec![])), 0o644))
            .unwrap();
        assert!(matches!(write_newc(&t), Err(CpioError::TrailerName(_))));

        let mut t = Tree::new(-1);
        t.insert("x", node(NodeKind::Dir, 0o755)).unwrap();
        assert!(matches!(
            write_newc(&t),
            Err(CpioError::FieldOverflow { field: "mtime", .. })
        ));
    }

    #[test]
    fn deterministic_and_golden() {
        let a = write_newc(&sample()).unwrap();
        assert_eq!(a, write_newc(&sample().clone()).unwrap());
        let z = compress(&a, Compression::Zstd);
        assert_eq!(z, compress(&a, Compression::Zstd));
        assert_eq!(compress(&a, Compression::None), a);
        // Golden digests: a change here changes every initramfs kiln makes.
        // The second also pins the zstd library's output (zstd-sys 1.5.7).
        assert_eq!(
            hex::encode(Sha256::digest(&a)),
            "2c234cd905a3958a6e10c421f16c92281994b933a6992aab2de4d4b414724645"
        );
        assert_eq!(
            hex::encode(Sha256::digest(&z)),
            "19fe173df864b261c5a56bb3a7fb7dc2c6615edaf98a8e74581d9d7a27fd37dc"
        );
    }

    #[test]
    fn zstd_round_trip_with_zstd_tool() {
        let a = write_newc(&sample()).unwrap();
        let z = compress(&a, Compression::Zstd);
        // The frame header announces the content size and a checksum.
        let fhd = z[4];
        assert_ne!(fhd & 0b100, 0, "checksum flag");
        assert_ne!(fhd >> 6, 0, "frame content size present");
        assert_eq!(zstd::decode_all(z.as_slice()).unwrap(), a);
        if !have("zstd") {
            return;
        }
        let (ok, out, err) = run_with_stdin(Command::new("zstd").args(["-d", "-c", "--check"]), &z);
        assert!(ok, "zstd -d failed: {err}");
        assert_eq!(out, a);
    }

    #[test]
    fn gnu_cpio_lists_and_extracts() {
        if !have("cpio") {
            return;
        }
        let a = write_newc(&sample()).unwrap();
        let (ok, out, err) = run_with_stdin(
            Command::new("cpio")
                .args(["-itvn", "--quiet"])
                .env("TZ", "UTC")
                .env("LC_ALL", "C"),
            &a,
        );
        assert!(ok, "cpio -itv failed: {err}");
        // Compare with runs of spaces squeezed: column widths are cpio's business.
        let listing: Vec<String> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        let want = [
            "drwxr-xr-x 6 0 0 0 Nov 14 2023 .",
            "drwxr-xr-x 2 0 0 0 Nov 14 2023 bin",
            "-rwxr-xr-x 3 0 0 0 Nov 14 2023 bin/alias",
            "-rwxr-xr-x 3 0 0 0 Nov 14 2023 bin/tool",
            "-rwxr-xr-x 3 0 0 18 Nov 14 2023 bin/zz-alias",
            "drwxr-xr-x 2 0 0 0 Nov 14 2023 dev",
            "crw------- 1 0 0 5, 1 Nov 14 2023 dev/console",
            "drwxr-xr-x 2 0 0 0 Nov 14 2023 etc",
            "-rw------- 1 0 0 0 Nov 14 2023 etc/empty",
            "-rw-r----- 1 0 0 5 Nov 14 2023 etc/odd-len",
            "-rwsr-xr-x 1 1000 100 5 Nov 14 2023 etc/owned",
            "lrwxrwxrwx 1 0 0 8 Nov 14 2023 init -> bin/tool",
            "drwxr-xr-x 2 0 0 0 Nov 14 2023 sysroot",
        ];
        assert_eq!(listing, want);
        assert!(err.is_empty(), "cpio complained: {err}");

        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // No device nodes without privileges: list them, extract the rest.
        let (ok, _, err) = run_with_stdin(
            Command::new("cpio")
                .args([
                    "-idm",
                    "--quiet",
                    "--no-absolute-filenames",
                    "--no-preserve-owner",
                ])
                .arg("--nonmatching")
                .arg("dev/console")
                .current_dir(root),
            &a,
        );
        assert!(ok, "cpio -idm failed: {err}");
        check_extracted(root);
    }

    fn check_extracted(root: &Path) {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let tool = std::fs::read(root.join("bin/tool")).unwrap();
        assert_eq!(tool, b"#!/bin/sh\necho hi\n");
        let m = std::fs::metadata(root.join("bin/tool")).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o755);
        assert_eq!(m.nlink(), 3);
        assert_eq!(m.mtime(), T);
        for alias in ["bin/alias", "bin/zz-alias"] {
            let a = std::fs::metadata(root.join(alias)).unwrap();
            assert_eq!(a.ino(), m.ino(), "{alias} is a hard link");
        }
        assert_eq!(std::fs::read(root.join("etc/odd-len")).unwrap(), b"12345");
        assert_eq!(
            std::fs::metadata(root.join("etc/odd-len"))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777,
            0o640
        );
        assert_eq!(std::fs::read(root.join("etc/empty")).unwrap(), b"");
        assert_eq!(
            std::fs::read_link(root.join("init")).unwrap(),
            Path::new("bin/tool")
        );
        assert!(std::fs::metadata(root.join("sysroot")).unwrap().is_dir());
    }
}
