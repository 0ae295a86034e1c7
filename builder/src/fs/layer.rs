//! Layer blobs: a [`Tree`] as a deterministic tar, compressed with zstd.
//!
//! The tar follows ARCHITECTURE.md "Layer": entries sorted by path (every directory
//! before its contents; the root as `./`), GNU headers with numeric uid/gid and
//! empty user/group names, mtimes as the tree has them (already clamped to
//! SOURCE_DATE_EPOCH), no atime/ctime, extended attributes as PAX
//! `SCHILY.xattr.*` records (the convention GNU tar and the OCI image spec's
//! layer format use), hard links pointing at the first path of their group,
//! OCI `.wh.` whiteouts as ordinary empty files. The same tree always gives the
//! same bytes, whatever the host, umask or order in which files were found.
//!
//! Reading takes any tar (a pulled or cached layer, an image tar), so sizes
//! in it are claims: a file's bytes are allocated as they arrive, and a
//! zstd frame's declared size is used up front only when the blob could
//! plausibly hold it. A blob from outside unpacks within a bound (the
//! tar size its cache entry declares, itself at most [`tar_limit`] of the
//! blob's size): decompression stops there, and a tar entry declaring more
//! is refused before anything is reserved for it, so a zstd bomb (a few
//! KB holding gigabytes of zeros) costs neither memory nor time.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::fs::tree::{normalize, Meta, Node, NodeKind, Tree};

/// Version of the layer format; part of every layer key, so that a change to
/// how layers are built invalidates the cache. 4: merged /usr (base layers
/// carry the `/bin`, `/sbin`, `/lib` links; every layer's paths are in
/// `/usr`), `[strip] purge`. 5: kernel packages no longer make their own
/// initramfs while a layer is built (`INITRD=No`, [`crate::layers::source`]),
/// so `/boot/initrd.img-*` and the `/initrd.img` links are not in layers.
pub const LAYER_FORMAT_VERSION: u32 = 5;

/// zstd level for layer blobs: level 3 is zstd's default speed/size balance.
pub const ZSTD_LEVEL: i32 = 3;

/// PAX record prefix for extended attributes (GNU tar / libarchive convention).
const PAX_XATTR: &str = "SCHILY.xattr.";

/// Most bytes a tar entry's declared size allocates up front; anything
/// larger grows as its bytes actually arrive, so a forged header cannot ask
/// for much more than the input holds (this much, once, before its read
/// fails). Large enough that a kernel image (Debian's are 10-15 MB) is read
/// into one allocation, on huge pages ([`crate::util::hugepages`]), rather
/// than grown and copied.
const PREALLOC_MAX: u64 = 32 << 20;

/// How much of a tar entry is read at a time ([`read_exactly`]).
const READ_CHUNK: u64 = 1 << 20;

/// Most uncompressed bytes per blob byte an untrusted layer may unpack to
/// (beyond [`TAR_FLOOR`]). kiln's layers compress 3 to 5 times (zstd level
/// 3 on binaries and text); a blob claiming more than this is refused as a
/// likely bomb, and the layer is built instead.
pub const MAX_RATIO: u64 = 32;

/// What any untrusted blob may unpack to whatever its size: small layers
/// are mostly tar headers and padding, which compress far beyond
/// [`MAX_RATIO`].
pub const TAR_FLOOR: u64 = 16 << 20;

/// A packed layer: the compressed blob and its digests.
#[derive(Debug, Clone)]
pub struct Packed {
    /// The zstd-compressed tar.
    pub blob: Vec<u8>,
    /// `sha256:` of the blob: the layer's digest.
    pub digest: String,
    /// `sha256:` of the uncompressed tar (OCI's diff_id).
    pub diff_id: String,
    /// Uncompressed tar size.
    pub tar_size: u64,
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Feed `n` zero bytes to a hash (holes and padding, never allocated).
pub fn hash_zeros(h: &mut Sha256, mut n: u64) {
    static ZEROS: [u8; 1 << 16] = [0; 1 << 16];
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        h.update(&ZEROS[..k]);
        n -= k as u64;
    }
}

/// `sha256:<hex>` of a finished hash.
pub fn finish_digest(h: Sha256) -> String {
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// For each hard-link group, the path that carries the data in the tar: the
/// smallest path of the group, so it comes first in the archive.
fn link_primaries(tree: &Tree) -> BTreeMap<String, String> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (path, node) in tree.iter() {
        if let NodeKind::Hardlink(target) = &node.kind {
            groups
                .entry(target.clone())
                .or_default()
                .push(path.to_string());
        }
    }
    let mut primary = BTreeMap::new();
    for (target, links) in groups {
        let first = links
            .iter()
            .chain(std::iter::once(&target))
            .min()
            .cloned()
            .unwrap_or_default();
        for p in links.into_iter().chain(std::iter::once(target)) {
            primary.insert(p, first.clone());
        }
    }
    primary
}

/// Write a tree as a deterministic tar.
pub fn write_tar(tree: &Tree) -> Result<Vec<u8>> {
    let primaries = link_primaries(tree);
    let mut b = tar::Builder::new(Vec::with_capacity(
        tree.content_bytes() as usize + tree.len() * 1024,
    ));
    b.mode(tar::HeaderMode::Complete);
    for (path, node) in tree.iter() {
        // The data of a hard-link group travels with its first path; that
        // path takes the group's inode metadata from the real file.
        let (kind, meta) = match (primaries.get(path), &node.kind) {
            (Some(first), _) if first != path => (NodeKind::Hardlink(first.clone()), &node.meta),
            (Some(_), NodeKind::Hardlink(target)) => {
                let file = tree
                    .get(target)
                    .with_context(|| format!("{path}: hard link to missing {target}"))?;
                (file.kind.clone(), &file.meta)
            }
            _ => (node.kind.clone(), &node.meta),
        };
        if !meta.xattrs.is_empty() {
            let records: Vec<(String, &[u8])> = meta
                .xattrs
                .iter()
                .map(|(k, v)| (format!("{PAX_XATTR}{k}"), v.as_slice()))
                .collect();
            b.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v)))?;
        }
        let mut h = tar::Header::new_gnu();
        h.set_mode(meta.mode & 0o7777);
        h.set_uid(meta.uid.into());
        h.set_gid(meta.gid.into());
        h.set_mtime(meta.mtime.max(0) as u64);
        let name = if path.is_empty() {
            "./".to_string()
        } else {
            path.to_string()
        };
        match &kind {
            NodeKind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(
                    &mut h,
                    format!("{}/", name.trim_end_matches('/')),
                    std::io::empty(),
                )?;
            }
            NodeKind::File(data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, &name, data.as_slice())?;
            }
            NodeKind::Symlink(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, &name, target)?;
            }
            NodeKind::Hardlink(target) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                b.append_link(&mut h, &name, target)?;
            }
            NodeKind::CharDev { major, minor } | NodeKind::BlockDev { major, minor } => {
                h.set_entry_type(if matches!(kind, NodeKind::CharDev { .. }) {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                });
                h.set_size(0);
                h.set_device_major(*major)?;
                h.set_device_minor(*minor)?;
                b.append_data(&mut h, &name, std::io::empty())?;
            }
            NodeKind::Fifo => {
                h.set_entry_type(tar::EntryType::Fifo);
                h.set_size(0);
                b.append_data(&mut h, &name, std::io::empty())?;
            }
        }
    }
    Ok(b.into_inner()?)
}

/// Pack a tree into a compressed, content-addressed layer blob.
/// Hashing of the tar runs beside the compression.
pub fn pack(tree: &Tree) -> Result<Packed> {
    let tar = write_tar(tree)?;
    let (diff_id, blob) = std::thread::scope(|s| {
        let h = s.spawn(|| sha256_digest(&tar));
        let blob = zstd::bulk::compress(&tar, ZSTD_LEVEL);
        (h.join(), blob)
    });
    let diff_id = diff_id.map_err(|_| crate::internal_err!("hashing thread panicked"))?;
    let blob = blob.context("zstd compression failed")?;
    Ok(Packed {
        digest: sha256_digest(&blob),
        diff_id,
        tar_size: tar.len() as u64,
        blob,
    })
}

/// The most an untrusted layer blob of `blob_len` bytes may unpack to:
/// [`MAX_RATIO`] times its size, and at least [`TAR_FLOOR`].
pub fn tar_limit(blob_len: u64) -> u64 {
    blob_len.saturating_mul(MAX_RATIO).max(TAR_FLOOR)
}

/// Read a tar (ours, or one from mmdebstrap) into a tree. Times later than
/// `clamp_mtime` are clamped to it; entries are inserted in archive order.
pub fn read_tar(reader: impl Read, clamp_mtime: i64) -> Result<Tree> {
    read_archive(&mut tar::Archive::new(reader), clamp_mtime, u64::MAX)
}

/// [`read_tar`] of an archive the caller keeps (to read what follows it).
///
/// The extended headers before a member (PAX, GNU long name and link) are
/// read here rather than by the `tar` crate, which splits PAX records at
/// every newline and so refuses a binary value holding one (an ACL naming
/// uid 10, a capability mask): a record is as long as its length says.
/// A regular file declaring more than `max_file` bytes is refused before
/// anything is read or reserved for it.
fn read_archive<R: Read>(
    ar: &mut tar::Archive<R>,
    clamp_mtime: i64,
    max_file: u64,
) -> Result<Tree> {
    let mut tree = Tree::new(clamp_mtime);
    let mut ext = Extended::default();
    for entry in ar.entries().context("reading tar")?.raw(true) {
        let mut e = entry.context("reading tar entry")?;
        if ext.take(&mut e, max_file)? {
            continue;
        }
        let Extended {
            pax,
            long_name,
            long_link,
        } = std::mem::take(&mut ext);
        let pax = pax_records(&pax.unwrap_or_default())?;
        let pax_value = |key: &str| pax.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        if pax_value("size").is_some_and(|v| v != e.size().to_string().as_bytes()) {
            bail!(crate::check_err!(
                "a PAX `size` record differs from the tar header's size (not supported)"
            ));
        }
        // As the `tar` crate chooses: a GNU long name, a PAX path, the header.
        let path_bytes = long_name
            .map(trim_nul)
            .or_else(|| pax_value("path"))
            .unwrap_or_else(|| e.path_bytes().into_owned());
        let link_bytes = long_link
            .map(trim_nul)
            .or_else(|| pax_value("linkpath"))
            .or_else(|| e.link_name_bytes().map(|l| l.into_owned()));
        let raw_path = String::from_utf8(path_bytes).map_err(|p| {
            crate::check_err!(
                "tar entry name is not UTF-8: {:?}",
                String::from_utf8_lossy(p.as_bytes())
            )
        })?;
        let path = normalize(&raw_path)?;
        let mut xattrs = BTreeMap::new();
        for (key, value) in pax {
            if let Some(name) = key.strip_prefix(PAX_XATTR) {
                xattrs.insert(name.to_string(), value);
            }
        }
        let h = e.header();
        let meta = Meta {
            mode: h.mode()? & 0o7777,
            uid: u32::try_from(h.uid()?).with_context(|| format!("{path}: uid too large"))?,
            gid: u32::try_from(h.gid()?).with_context(|| format!("{path}: gid too large"))?,
            mtime: (h.mtime()? as i64).min(clamp_mtime),
            xattrs,
        };
        let link_target = || -> Result<String> {
            let l = link_bytes.clone().context("link without a target")?;
            String::from_utf8(l).map_err(|_| crate::check_err!("{path}: link target is not UTF-8"))
        };
        let kind = match h.entry_type() {
            tar::EntryType::Directory => NodeKind::Dir,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                NodeKind::File(Arc::new(Vec::new()))
            }
            tar::EntryType::Symlink => NodeKind::Symlink(link_target()?),
            tar::EntryType::Link => NodeKind::Hardlink(normalize(&link_target()?)?),
            tar::EntryType::Char => NodeKind::CharDev {
                major: h.device_major()?.unwrap_or(0),
                minor: h.device_minor()?.unwrap_or(0),
            },
            tar::EntryType::Block => NodeKind::BlockDev {
                major: h.device_major()?.unwrap_or(0),
                minor: h.device_minor()?.unwrap_or(0),
            },
            tar::EntryType::Fifo => NodeKind::Fifo,
            other => bail!(crate::check_err!(
                "{path}: unsupported tar entry type {other:?}"
            )),
        };
        let kind = match kind {
            NodeKind::File(_) => {
                let size = e.size();
                if size > max_file {
                    bail!(
                        "{path}: its tar header declares {size} bytes, more than the {max_file} the whole layer may unpack to: refusing it"
                    );
                }
                let data = read_exactly(&mut e, size)
                    .with_context(|| format!("reading {path} from tar"))?;
                NodeKind::File(Arc::new(data))
            }
            k => k,
        };
        let node = Node { kind, meta };
        if path.is_empty() {
            tree.insert("", node)?;
        } else {
            let parent_meta = Meta::root(0o755, clamp_mtime);
            tree.insert_with_parents(&path, node, &parent_meta)
                .with_context(|| format!("tar entry {raw_path:?}"))?;
        }
    }
    if ext != Extended::default() {
        bail!(crate::check_err!(
            "reading tar: an extended header describes no member after it"
        ));
    }
    tree.validate()?;
    Ok(tree)
}

/// The extended headers read so far for the next member.
#[derive(Debug, Default, PartialEq, Eq)]
struct Extended {
    /// A PAX extended header's records, as stored.
    pax: Option<Vec<u8>>,
    /// A GNU long name (`L`).
    long_name: Option<Vec<u8>>,
    /// A GNU long link target (`K`).
    long_link: Option<Vec<u8>>,
}

impl Extended {
    /// Keeps `e` if it is an extended header (true), else leaves it (false);
    /// one declaring more than `max` bytes is refused before anything is
    /// reserved for it.
    fn take<R: Read>(&mut self, e: &mut tar::Entry<'_, R>, max: u64) -> Result<bool> {
        let t = e.header().entry_type();
        let slot = if t.is_pax_local_extensions() {
            &mut self.pax
        } else if t.is_gnu_longname() {
            &mut self.long_name
        } else if t.is_gnu_longlink() {
            &mut self.long_link
        } else {
            return Ok(false);
        };
        if slot.is_some() {
            bail!(crate::check_err!(
                "reading tar: two {t:?} headers describe the same member"
            ));
        }
        let size = e.size();
        if size > max {
            bail!("reading tar: a {t:?} header declares {size} bytes, more than the {max} the whole layer may unpack to: refusing it");
        }
        *slot = Some(read_exactly(e, size).context("reading a tar extended header")?);
        Ok(true)
    }
}

/// A GNU long name without its terminating NUL.
fn trim_nul(mut b: Vec<u8>) -> Vec<u8> {
    if b.last() == Some(&0) {
        b.pop();
    }
    b
}

/// The (key, value) records of a PAX extended header (POSIX.1-2008
/// `pax`, "extended header"): each is `LEN KEY=VALUE\n`, LEN counting the
/// whole record in decimal, so a value may hold any byte, newlines too.
fn pax_records(mut data: &[u8]) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let bad = |at: usize, why: &str| crate::check_err!("malformed PAX record at byte {at}: {why}");
    let mut at = 0;
    while !data.is_empty() {
        let space = data
            .iter()
            .take(20)
            .position(|&b| b == b' ')
            .ok_or_else(|| bad(at, "no length"))?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|l| l.parse().ok())
            .ok_or_else(|| bad(at, "the length is not a decimal number"))?;
        let record = data
            .get(space + 1..len)
            .filter(|_| len > space + 1)
            .ok_or_else(|| bad(at, "the length is past the header's end"))?;
        let Some((&b'\n', kv)) = record.split_last() else {
            return Err(bad(at, "no newline where the length ends"));
        };
        let eq = kv
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| bad(at, "no `=`"))?;
        let key = std::str::from_utf8(&kv[..eq]).map_err(|_| bad(at, "the key is not UTF-8"))?;
        out.push((key.to_string(), kv[eq + 1..].to_vec()));
        data = &data[len..];
        at += len;
    }
    Ok(out)
}

/// Exactly `size` bytes from `r`, allocated as they arrive beyond
/// [`PREALLOC_MAX`] (a tar header's size is only a claim), in one
/// allocation of the right size below it. Memory is touched only as bytes
/// arrive ([`READ_CHUNK`] at a time), so a forged size costs address
/// space, not memory.
fn read_exactly(r: &mut impl Read, size: u64) -> std::io::Result<Vec<u8>> {
    let mut data = crate::util::hugepages::with_capacity(size.min(PREALLOC_MAX) as usize);
    while (data.len() as u64) < size {
        let at = data.len();
        let n = (size - at as u64).min(READ_CHUNK) as usize;
        data.resize(at + n, 0);
        r.read_exact(&mut data[at..])?;
    }
    Ok(data)
}

/// Unpack a layer blob (zstd-compressed tar) from outside into a tree,
/// within [`tar_limit`] of its size ([`unpack_within`]).
pub fn unpack(blob: &[u8]) -> Result<Tree> {
    unpack_within(blob, tar_limit(blob.len() as u64))
}

/// Unpack a layer blob read from `r`, refusing it as soon as it unpacks to
/// more than `limit` bytes (a cache entry's declared tar size) or a file in
/// it declares more: memory grows with the bytes that really arrive, never
/// past `limit` (twice that in capacity, for a file that grows).
pub fn unpack_within(r: impl Read, limit: u64) -> Result<Tree> {
    let bounded = Bounded {
        inner: zstd_reader(r)?,
        left: limit,
        limit,
    };
    unpack_tar(bounded, limit)
}

/// [`unpack`] of a blob read from `r`: a store file
/// ([`crate::store::Store::read_blob`]), checked when it entered the store
/// and hashed as it is read, so not bounded.
pub fn unpack_reader(r: &mut dyn Read) -> Result<Tree> {
    unpack_tar(zstd_reader(r)?, u64::MAX)
}

/// A zstd decoder reading `r` through a buffer of zstd's recommended input
/// size for streaming decompression.
fn zstd_reader<R: Read>(
    r: R,
) -> Result<zstd::stream::read::Decoder<'static, std::io::BufReader<R>>> {
    let buf = std::io::BufReader::with_capacity(zstd::zstd_safe::DCtx::in_size(), r);
    zstd::stream::read::Decoder::with_buffer(buf).map_err(zstd_err)
}

fn zstd_err(e: std::io::Error) -> anyhow::Error {
    anyhow::Error::new(e).context("layer blob is not valid zstd")
}

/// The tar is decompressed as it is read, each file straight into its own
/// buffer: no copy of the whole tar is made (for a base layer, tens of MB
/// of memory touched once and thrown away). What follows the tar's end is
/// decompressed too, so a damaged zstd stream fails wherever it is damaged.
fn unpack_tar(tar: impl Read, max_file: u64) -> Result<Tree> {
    let mut ar = tar::Archive::new(tar);
    let tree = read_archive(&mut ar, i64::MAX, max_file)?;
    std::io::copy(&mut ar.into_inner(), &mut std::io::sink()).map_err(zstd_err)?;
    Ok(tree)
}

/// A reader that fails once `inner` gives more than `limit` bytes.
struct Bounded<R> {
    inner: R,
    left: u64,
    limit: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            // At the bound: only the end of the stream may follow.
            return match self.inner.read(&mut [0u8; 1])? {
                0 => Ok(0),
                _ => Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "it unpacks to more than {} bytes, the most it may unpack to: refusing it",
                        self.limit
                    ),
                )),
            };
        }
        let n = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let got = self.inner.read(&mut buf[..n])?;
        self.left -= got as u64;
        Ok(got)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample_tree() -> Tree {
        let mut t = Tree::new(1_700_000_000);
        let d = Meta::root(0o755, 1_700_000_000);
        let f = |data: &str, mode| Node {
            kind: NodeKind::File(Arc::new(data.as_bytes().to_vec())),
            meta: Meta::root(mode, 1_700_000_000),
        };
        t.insert_with_parents("usr/bin/hello", f("#!/bin/sh\necho hi\n", 0o755), &d)
            .unwrap();
        t.insert_with_parents("etc/motd", f("welcome\n", 0o644), &d)
            .unwrap();
        t.insert(
            "usr/bin/hi",
            Node {
                kind: NodeKind::Symlink("hello".into()),
                meta: Meta::root(0o777, 1_700_000_000),
            },
        )
        .unwrap();
        t.insert(
            "usr/bin/aaa",
            Node {
                kind: NodeKind::Hardlink("usr/bin/hello".into()),
                meta: Meta::root(0o755, 1_700_000_000),
            },
        )
        .unwrap();
        let mut caps = f("\x7fELF", 0o755);
        caps.meta.xattrs.insert(
            "security.capability".into(),
            vec![1, 0, 0, 2, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        );
        caps.meta.uid = 100_000;
        t.insert("usr/bin/ping", caps).unwrap();
        t.insert_with_parents(
            "dev/console",
            Node {
                kind: NodeKind::CharDev { major: 5, minor: 1 },
                meta: Meta::root(0o600, 1_700_000_000),
            },
            &d,
        )
        .unwrap();
        let long = format!("usr/share/{}/file", "x".repeat(120));
        t.insert_with_parents(&long, f("long", 0o644), &d).unwrap();
        t
    }

    /// An xattr value may hold any byte: an ACL entry for uid 10 holds a
    /// newline, which the `tar` crate's own PAX reader split the record at.
    #[test]
    fn xattr_values_with_newlines_read_back() {
        let mut t = Tree::new(0);
        let mut m = Meta::root(0o644, 0);
        let acl = [2, 0, 0, 0, 2, 0, 4, 0, 10, 0, 0, 0].to_vec();
        m.xattrs.insert("system.posix_acl_access".into(), acl);
        m.xattrs.insert("user.text".into(), b"one\ntwo\n".to_vec());
        let node = Node {
            kind: NodeKind::File(Arc::new(b"x".to_vec())),
            meta: m.clone(),
        };
        t.insert_with_parents("etc/acl", node, &Meta::root(0o755, 0))
            .unwrap();
        let back = unpack(&pack(&t).unwrap().blob).unwrap();
        assert_eq!(back.get("etc/acl").unwrap().meta.xattrs, m.xattrs);
    }

    #[test]
    fn malformed_pax_records_are_refused() {
        for (bad, why) in [
            (&b"12 a=b\n"[..], "past the header's end"),
            (b"6 a=b!", "no newline"),
            (b"6 ab\n\n", "no `=`"),
            (b"x a=b\n", "not a decimal"),
            (b"1 a=b\n", "past the header's end"),
        ] {
            let e = pax_records(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        let ok = pax_records(b"6 a=b\n10 k=v\n\nw\n").unwrap();
        assert_eq!(
            ok,
            [
                ("a".into(), b"b".to_vec()),
                ("k".into(), b"v\n\nw".to_vec())
            ]
        );
    }

    #[test]
    fn roundtrip_preserves_everything() {
        let t = sample_tree();
        let packed = pack(&t).unwrap();
        let back = unpack(&packed.blob).unwrap();
        // The hard link group's data moved to its first path, usr/bin/aaa.
        assert!(
            matches!(&back.get("usr/bin/aaa").unwrap().kind, NodeKind::File(d) if d.as_slice() == b"#!/bin/sh\necho hi\n")
        );
        assert_eq!(
            back.get("usr/bin/hello").unwrap().kind,
            NodeKind::Hardlink("usr/bin/aaa".into())
        );
        assert_eq!(back.get("usr/bin/ping"), t.get("usr/bin/ping"));
        assert_eq!(back.get("dev/console"), t.get("dev/console"));
        assert_eq!(back.get("usr/bin/hi"), t.get("usr/bin/hi"));
        assert_eq!(back.len(), t.len());
        // Packing what we read back gives the same bytes.
        assert_eq!(pack(&back).unwrap().digest, packed.digest);
    }

    /// GNU tar, an outside reader, lists our archive with the right owners,
    /// modes, link targets and xattrs.
    #[test]
    fn gnu_tar_reads_it() {
        let tar = write_tar(&sample_tree()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("l.tar");
        std::fs::write(&f, &tar).unwrap();
        let out = std::process::Command::new("tar")
            .args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "-tvvf"])
            .arg(&f)
            .output()
            .expect("GNU tar must be installed (Debian package tar)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let list = String::from_utf8_lossy(&out.stdout);
        assert!(
            list.lines().any(|l| l.starts_with("-rwxr-xr-x")
                && l.contains(" 100000/0 ")
                && l.ends_with("usr/bin/ping")),
            "{list}"
        );
        assert!(list.contains("x: 20 security.capability"), "{list}");
        assert!(list.contains("usr/bin/hello link to usr/bin/aaa"), "{list}");
        assert!(list.contains("usr/bin/hi -> hello"), "{list}");
        assert!(
            list.lines().any(|l| l.starts_with("crw-------")
                && l.contains("5,1")
                && l.ends_with("dev/console")),
            "{list}"
        );
        assert!(list.contains("2023-11-14"), "{list}");
    }
}
