//! Reading an ext4 filesystem back into a [`Tree`]: what `kiln diff` and the
//! reproducibility check see of a root partition.
//!
//! Follows the same kernel documentation as the writer
//! (`Documentation/filesystems/ext4/`: `super.rst`, `group_descr.rst`,
//! `inodes.rst`, `ifork.rst`, `directory.rst`, `attributes.rst`), but reads
//! more than kiln writes, so images made by `mkfs.ext4 -d` can be compared
//! too: any block size, 128-byte or larger inodes, `64bit` group
//! descriptors, `flex_bg` (inode tables anywhere), extent trees of any depth
//! with uninitialised extents, htree directories (their index blocks look
//! like empty entries to a linear scan, as the format intends), and
//! xattrs in the inode and in an external block. Checksums are not
//! verified: the comparison is about content. Not read: `inline_data`,
//! block-mapped (pre-extent) files, `meta_bg`, xattr values in their own
//! inodes (`ea_inode`), and sockets (a [`Tree`] has no node for them; they
//! are skipped with a warning).
//!
//! Every read is bounds-checked; a corrupt image gives [`ReadError`], never a
//! panic.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use kiln_format::field::{Field, Le};

use super::format::*;
use super::inode::{EXTENTS_FL, EXTENT_MAGIC, I_BLOCK_LEN};
use super::layout::{EXT4_MAGIC, ROOT_INO};
use super::xattr::{
    ACL_GROUP, ACL_USER, ACL_XATTR_VERSION, BLOCK_HEADER, EXT4_ACL_VERSION, NAME_INDEX, XATTR_MAGIC,
};
use super::SUPERBLOCK_OFFSET;
use crate::fs::tree::{Meta, Node, NodeKind, Tree};

/// `s_feature_incompat` bits that change how the image must be read.
const INCOMPAT_META_BG: u32 = 0x0010;
const INCOMPAT_64BIT: u32 = 0x0080;
/// `i_flags`: data lives in the inode (`inline_data`).
const INLINE_DATA_FL: u32 = 0x1000_0000;
/// `i_flags`: an xattr value inode (`ea_inode`).
const EA_INODE_FL: u32 = 0x0020_0000;
/// `ee_len` above this marks an uninitialised extent (reads as zeros).
const INIT_MAX_LEN: u16 = 32768;
/// Deepest extent tree the kernel accepts (`EXT4_MAX_EXTENT_DEPTH`).
const MAX_EXTENT_DEPTH: u16 = 5;
/// ACL id of entries that carry none (`ACL_UNDEFINED_ID`).
const ACL_UNDEFINED_ID: u32 = u32::MAX;

/// `S_IFMT` file types.
const S_IFMT: u16 = 0o170000;
const S_IFSOCK: u16 = 0o140000;
const S_IFLNK: u16 = 0o120000;
const S_IFREG: u16 = 0o100000;
const S_IFBLK: u16 = 0o060000;
const S_IFDIR: u16 = 0o040000;
const S_IFCHR: u16 = 0o020000;
const S_IFIFO: u16 = 0o010000;

/// Why an image could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReadError {
    /// No ext4 superblock magic.
    #[error("not an ext4 filesystem (no superblock magic at byte 1080)")]
    NotExt4,
    /// A feature this reader does not handle.
    #[error("ext4: {0} is not supported by kiln's reader")]
    Unsupported(String),
    /// A structure that points outside the image or does not parse.
    #[error("ext4: {0}")]
    Malformed(String),
}

fn bad(what: impl Into<String>) -> ReadError {
    ReadError::Malformed(what.into())
}

/// Field `f` of the structure at byte `at` of `b`.
fn get<T: Le>(b: &[u8], at: usize, f: Field) -> Result<T, ReadError> {
    f.get_at(b, at).ok_or_else(|| {
        bad(format!(
            "truncated structure ({} at byte {})",
            f.name,
            at.saturating_add(f.offset)
        ))
    })
}

/// Decode an inode time: the signed low 32 bits plus the two epoch bits of
/// the `_extra` field (the inverse of the writer's `encode_time`).
pub(super) fn decode_time(lo: u32, extra: u32) -> i64 {
    i64::from(lo as i32) + (i64::from(extra & 3) << 32)
}

/// An opened ext4 image: the superblock facts needed to find inodes and blocks.
#[derive(Debug)]
pub struct Fs<'a> {
    img: &'a [u8],
    /// Block size in bytes.
    pub block_size: u64,
    /// `s_inodes_per_group`.
    pub inodes_per_group: u32,
    /// `s_inode_size`.
    pub inode_size: usize,
    /// `s_inodes_count`.
    pub inodes_count: u32,
    /// Byte offset of the group descriptor table.
    pub gdt_offset: usize,
    /// Size of one group descriptor.
    pub desc_size: usize,
    /// First block of each group's inode table.
    inode_tables: Vec<u64>,
}

/// One inode's fields as the reader uses them.
#[derive(Debug, Clone)]
struct Inode<'a> {
    mode: u16,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: i64,
    flags: u32,
    i_block: &'a [u8],
    file_acl: u64,
    /// The in-inode xattr area (after `i_extra_isize`), if any.
    ibody: &'a [u8],
}

impl<'a> Fs<'a> {
    /// Parse the superblock and group descriptors of `img`.
    pub fn open(img: &'a [u8]) -> Result<Self, ReadError> {
        let sb = img
            .get(SUPERBLOCK_OFFSET..SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE)
            .ok_or(ReadError::NotExt4)?;
        let field = |f: Field| get::<u32>(sb, 0, f);
        if get::<u16>(sb, 0, S_MAGIC)? != EXT4_MAGIC {
            return Err(ReadError::NotExt4);
        }
        let log = field(S_LOG_BLOCK_SIZE)?;
        if log > 6 {
            return Err(bad(format!("s_log_block_size {log}")));
        }
        let block_size = 1024u64 << log;
        let rev = field(S_REV_LEVEL)?;
        let inode_size = if rev == 0 {
            GOOD_OLD_INODE_SIZE
        } else {
            usize::from(get::<u16>(sb, 0, S_INODE_SIZE)?)
        };
        if inode_size < GOOD_OLD_INODE_SIZE || !inode_size.is_power_of_two() {
            return Err(bad(format!("s_inode_size {inode_size}")));
        }
        let incompat = field(S_FEATURE_INCOMPAT)?;
        if incompat & INCOMPAT_META_BG != 0 {
            return Err(ReadError::Unsupported("meta_bg".into()));
        }
        let desc_size = if incompat & INCOMPAT_64BIT != 0 {
            usize::from(get::<u16>(sb, 0, S_DESC_SIZE)?).max(GROUP_DESC_SIZE)
        } else {
            GROUP_DESC_SIZE
        };
        let first_data_block = u64::from(field(S_FIRST_DATA_BLOCK)?);
        let blocks_per_group = u64::from(field(S_BLOCKS_PER_GROUP)?);
        let inodes_per_group = field(S_INODES_PER_GROUP)?;
        let inodes_count = field(S_INODES_COUNT)?;
        let blocks = u64::from(field(S_BLOCKS_COUNT_LO)?)
            | if incompat & INCOMPAT_64BIT != 0 {
                u64::from(field(S_BLOCKS_COUNT_HI)?) << 32
            } else {
                0
            };
        if blocks_per_group == 0 || inodes_per_group == 0 {
            return Err(bad("zero blocks or inodes per group"));
        }
        let groups = (blocks - first_data_block).div_ceil(blocks_per_group);
        let gdt = ((first_data_block + 1) * block_size) as usize;
        let mut inode_tables = Vec::with_capacity(groups as usize);
        for g in 0..groups as usize {
            let d = gdt + g * desc_size;
            let mut table = u64::from(get::<u32>(img, d, BG_INODE_TABLE_LO)?);
            if desc_size >= 64 {
                table |= u64::from(get::<u32>(img, d, BG_INODE_TABLE_HI)?) << 32;
            }
            inode_tables.push(table);
        }
        Ok(Fs {
            img,
            block_size,
            inodes_per_group,
            inode_size,
            inodes_count,
            gdt_offset: gdt,
            desc_size,
            inode_tables,
        })
    }

    /// The image bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.img
    }

    /// Byte range of inode `ino`'s on-disk record.
    pub fn inode_range(&self, ino: u32) -> Result<std::ops::Range<usize>, ReadError> {
        if ino == 0 || ino > self.inodes_count {
            return Err(bad(format!("inode number {ino} out of range")));
        }
        let g = ((ino - 1) / self.inodes_per_group) as usize;
        let i = u64::from((ino - 1) % self.inodes_per_group);
        let table = *self
            .inode_tables
            .get(g)
            .ok_or_else(|| bad(format!("inode {ino}: no group {g}")))?;
        let at = (table * self.block_size + i * self.inode_size as u64) as usize;
        let end = at + self.inode_size;
        if end > self.img.len() {
            return Err(bad(format!("inode {ino} lies past the end of the image")));
        }
        Ok(at..end)
    }

    /// The inode whose on-disk record holds byte `offset` of the image.
    pub fn inode_at(&self, offset: usize) -> Option<u32> {
        let table_len = u64::from(self.inodes_per_group) * self.inode_size as u64;
        self.inode_tables.iter().enumerate().find_map(|(g, &t)| {
            let start = t * self.block_size;
            let off = offset as u64;
            (off >= start && off < start + table_len).then(|| {
                g as u32 * self.inodes_per_group
                    + ((off - start) / self.inode_size as u64) as u32
                    + 1
            })
        })
    }

    /// Number of block groups.
    pub fn groups(&self) -> usize {
        self.inode_tables.len()
    }

    fn inode(&self, ino: u32) -> Result<Inode<'a>, ReadError> {
        let b = &self.img[self.inode_range(ino)?];
        let u16_at = |f: Field| get::<u16>(b, 0, f);
        let u32_at = |f: Field| get::<u32>(b, 0, f);
        let extra = if self.inode_size > GOOD_OLD_INODE_SIZE {
            usize::from(u16_at(I_EXTRA_ISIZE)?)
        } else {
            0
        };
        // i_mtime_extra is there when i_extra_isize covers it.
        let mtime_extra = if GOOD_OLD_INODE_SIZE + extra >= I_MTIME_EXTRA.range().end {
            u32_at(I_MTIME_EXTRA)?
        } else {
            0
        };
        let ibody_at = GOOD_OLD_INODE_SIZE + extra;
        Ok(Inode {
            mode: u16_at(I_MODE)?,
            uid: u32::from(u16_at(I_UID)?) | (u32::from(u16_at(I_UID_HIGH)?) << 16),
            gid: u32::from(u16_at(I_GID)?) | (u32::from(u16_at(I_GID_HIGH)?) << 16),
            size: u64::from(u32_at(I_SIZE_LO)?) | (u64::from(u32_at(I_SIZE_HIGH)?) << 32),
            mtime: decode_time(u32_at(I_MTIME)?, mtime_extra),
            flags: u32_at(I_FLAGS)?,
            i_block: I_BLOCK
                .bytes(b)
                .ok_or_else(|| bad(format!("inode {ino}: record too short")))?,
            file_acl: u64::from(u32_at(I_FILE_ACL_LO)?)
                | (u64::from(u16_at(I_FILE_ACL_HIGH)?) << 32),
            ibody: b.get(ibody_at..).unwrap_or(&[]),
        })
    }

    fn block(&self, blk: u64) -> Result<&'a [u8], ReadError> {
        let bs = self.block_size as usize;
        let at = usize::try_from(blk)
            .ok()
            .and_then(|b| b.checked_mul(bs))
            .ok_or_else(|| bad(format!("block {blk} out of range")))?;
        self.img
            .get(at..at + bs)
            .ok_or_else(|| bad(format!("block {blk} lies past the end of the image")))
    }

    /// The (logical block, physical block, length, initialised) extents of
    /// an extent-mapped inode, in the order the tree lists them.
    fn extents(&self, ino: u32, i: &Inode<'_>) -> Result<Vec<(u64, u64, u64, bool)>, ReadError> {
        let mut out = Vec::new();
        self.walk_extents(ino, i.i_block, MAX_EXTENT_DEPTH + 1, &mut out)?;
        Ok(out)
    }

    fn walk_extents(
        &self,
        ino: u32,
        node: &[u8],
        max_depth: u16,
        out: &mut Vec<(u64, u64, u64, bool)>,
    ) -> Result<(), ReadError> {
        if get::<u16>(node, 0, EH_MAGIC)? != EXTENT_MAGIC {
            return Err(bad(format!("inode {ino}: bad extent header magic")));
        }
        let entries = usize::from(get::<u16>(node, 0, EH_ENTRIES)?);
        let depth = get::<u16>(node, 0, EH_DEPTH)?;
        if depth >= max_depth {
            return Err(bad(format!("inode {ino}: extent tree too deep")));
        }
        for k in 0..entries {
            let e = EXTENT_ENTRY_SIZE * (k + 1);
            if depth == 0 {
                let lblk = u64::from(get::<u32>(node, e, EE_BLOCK)?);
                let raw_len = get::<u16>(node, e, EE_LEN)?;
                let (len, init) = if raw_len > INIT_MAX_LEN {
                    (raw_len - INIT_MAX_LEN, false)
                } else {
                    (raw_len, true)
                };
                let pblk = (u64::from(get::<u16>(node, e, EE_START_HI)?) << 32)
                    | u64::from(get::<u32>(node, e, EE_START_LO)?);
                out.push((lblk, pblk, u64::from(len), init));
            } else {
                let child = u64::from(get::<u32>(node, e, EI_LEAF_LO)?)
                    | (u64::from(get::<u16>(node, e, EI_LEAF_HI)?) << 32);
                self.walk_extents(ino, self.block(child)?, depth, out)?;
            }
        }
        Ok(())
    }

    /// The first `size` bytes of an inode's data (holes and uninitialised
    /// extents read as zeros).
    fn data(&self, ino: u32, i: &Inode<'_>) -> Result<Vec<u8>, ReadError> {
        if i.flags & INLINE_DATA_FL != 0 {
            return Err(ReadError::Unsupported(format!("inode {ino}: inline data")));
        }
        if i.flags & EXTENTS_FL == 0 {
            if i.size == 0 {
                return Ok(Vec::new());
            }
            return Err(ReadError::Unsupported(format!(
                "inode {ino}: block-mapped (non-extent) data"
            )));
        }
        let size = usize::try_from(i.size)
            .ok()
            .filter(|&s| s as u64 <= self.img.len() as u64 * 2 + (1 << 32))
            .ok_or_else(|| bad(format!("inode {ino}: size {} is implausible", i.size)))?;
        let mut out = vec![0u8; size];
        let bs = self.block_size;
        for (lblk, pblk, len, init) in self.extents(ino, i)? {
            if !init {
                continue;
            }
            let from = lblk * bs;
            if from >= size as u64 {
                continue;
            }
            let n = (len * bs).min(size as u64 - from) as usize;
            let at = (pblk * bs) as usize;
            let src = self
                .img
                .get(at..at + n)
                .ok_or_else(|| bad(format!("inode {ino}: extent past the end of the image")))?;
            out[from as usize..from as usize + n].copy_from_slice(src);
        }
        Ok(out)
    }

    /// A directory's entries: (name, inode, file type), `.` and `..` excluded.
    fn dir_entries(&self, ino: u32, i: &Inode<'_>) -> Result<Vec<(String, u32)>, ReadError> {
        let data = self.data(ino, i)?;
        let mut out = Vec::new();
        for block in data.chunks(self.block_size as usize) {
            let mut pos = 0;
            while pos + DIRENT_HEADER_SIZE <= block.len() {
                let child = get::<u32>(block, pos, DE_INODE)?;
                let rec_len = usize::from(get::<u16>(block, pos, DE_REC_LEN)?);
                let name_len = usize::from(get::<u8>(block, pos, DE_NAME_LEN)?);
                if rec_len < DIRENT_HEADER_SIZE || pos + rec_len > block.len() {
                    return Err(bad(format!("directory inode {ino}: bad rec_len {rec_len}")));
                }
                let name_at = pos + DIRENT_HEADER_SIZE;
                let name = block
                    .get(name_at..name_at + name_len)
                    .ok_or_else(|| bad(format!("directory inode {ino}: bad name_len")))?;
                if child != 0 && name != b"." && name != b".." {
                    let name = String::from_utf8(name.to_vec()).map_err(|_| {
                        ReadError::Unsupported(format!(
                            "directory inode {ino}: a name that is not UTF-8 ({:?})",
                            String::from_utf8_lossy(name)
                        ))
                    })?;
                    out.push((name, child));
                }
                pos += rec_len;
            }
        }
        Ok(out)
    }

    fn xattrs(&self, ino: u32, i: &Inode<'_>) -> Result<BTreeMap<String, Vec<u8>>, ReadError> {
        let mut out = BTreeMap::new();
        if H_MAGIC.get::<u32>(i.ibody) == Some(XATTR_MAGIC) {
            // Value offsets count from the first entry, just after the magic.
            read_xattr_entries(ino, &i.ibody[H_MAGIC.len..], 0, &mut out)?;
        }
        if i.file_acl != 0 {
            let b = self.block(i.file_acl)?;
            if get::<u32>(b, 0, H_MAGIC)? != XATTR_MAGIC {
                return Err(bad(format!("inode {ino}: xattr block without magic")));
            }
            read_xattr_entries(ino, b, BLOCK_HEADER, &mut out)?;
        }
        Ok(out)
    }

    /// Every path of the filesystem and its inode number, the root (`""`)
    /// included, in path order.
    pub fn paths(&self) -> Result<BTreeMap<String, u32>, ReadError> {
        let mut paths = BTreeMap::new();
        paths.insert(String::new(), ROOT_INO);
        let mut seen_dirs = HashSet::from([ROOT_INO]);
        let mut todo = vec![(String::new(), ROOT_INO)];
        while let Some((dir, ino)) = todo.pop() {
            let i = self.inode(ino)?;
            for (name, child) in self.dir_entries(ino, &i)? {
                let path = if dir.is_empty() {
                    name
                } else {
                    format!("{dir}/{name}")
                };
                if self.inode(child)?.mode & S_IFMT == S_IFDIR {
                    if !seen_dirs.insert(child) {
                        return Err(bad(format!("/{path}: directory linked twice")));
                    }
                    todo.push((path.clone(), child));
                }
                paths.insert(path, child);
            }
        }
        Ok(paths)
    }

    /// The whole filesystem as a tree. Names sharing an inode become hard
    /// links to the first of them in path order (all with that inode's
    /// metadata), as kiln's trees represent them.
    pub fn tree(&self) -> Result<Tree, ReadError> {
        let mut tree = Tree::default();
        let mut first: HashMap<u32, String> = HashMap::new();
        for (path, ino) in self.paths()? {
            let i = self.inode(ino)?;
            let shown = || format!("/{path}");
            let kind = if let Some(target) = first.get(&ino) {
                NodeKind::Hardlink(target.clone())
            } else {
                match i.mode & S_IFMT {
                    S_IFDIR => NodeKind::Dir,
                    S_IFREG => NodeKind::File(Arc::new(self.data(ino, &i)?)),
                    S_IFLNK => NodeKind::Symlink(self.symlink(ino, &i)?),
                    S_IFCHR | S_IFBLK => {
                        let (major, minor) = device(i.i_block)?;
                        if i.mode & S_IFMT == S_IFCHR {
                            NodeKind::CharDev { major, minor }
                        } else {
                            NodeKind::BlockDev { major, minor }
                        }
                    }
                    S_IFIFO => NodeKind::Fifo,
                    S_IFSOCK => {
                        tracing::warn!("{}: skipping a socket (kiln trees have none)", shown());
                        continue;
                    }
                    m => return Err(bad(format!("{}: unknown file type {m:#o}", shown()))),
                }
            };
            if i.flags & EA_INODE_FL != 0 {
                return Err(ReadError::Unsupported(format!("{}: ea_inode", shown())));
            }
            if matches!(kind, NodeKind::File(_)) {
                first.insert(ino, path.clone());
            }
            let meta = Meta {
                mode: u32::from(i.mode & 0o7777),
                uid: i.uid,
                gid: i.gid,
                mtime: i.mtime,
                xattrs: self.xattrs(ino, &i)?,
            };
            tree.insert(&path, Node { kind, meta })
                .map_err(|e| bad(format!("{}: {e}", shown())))?;
        }
        Ok(tree)
    }

    fn symlink(&self, ino: u32, i: &Inode<'_>) -> Result<String, ReadError> {
        let bytes = if i.flags & (EXTENTS_FL | INLINE_DATA_FL) == 0 && i.size < I_BLOCK_LEN as u64 {
            i.i_block[..i.size as usize].to_vec()
        } else {
            self.data(ino, i)?
        };
        String::from_utf8(bytes)
            .map_err(|_| ReadError::Unsupported(format!("inode {ino}: a non-UTF-8 symlink target")))
    }
}

/// Device numbers from `i_block`: the old 8:8 encoding in word 0, else the
/// new one in word 1 (`ext4_write_inode`'s `new_encode_dev`).
fn device(i_block: &[u8]) -> Result<(u32, u32), ReadError> {
    let w0 = get::<u32>(i_block, 0, I_BLOCK_OLD_DEV)?;
    if w0 != 0 {
        return Ok(((w0 >> 8) & 0xFF, w0 & 0xFF));
    }
    let w1 = get::<u32>(i_block, 0, I_BLOCK_NEW_DEV)?;
    Ok(((w1 & 0xF_FF00) >> 8, (w1 & 0xFF) | ((w1 >> 12) & 0xF_FF00)))
}

/// Entries from `start` in `area` (values at offsets relative to `area`),
/// up to the four zero bytes that end the table.
fn read_xattr_entries(
    ino: u32,
    area: &[u8],
    start: usize,
    out: &mut BTreeMap<String, Vec<u8>>,
) -> Result<(), ReadError> {
    let mut pos = start;
    // The table ends with four zero bytes (or the area's end).
    while area.get(pos..pos + 4).is_some_and(|end| end != [0; 4]) {
        let name_len = usize::from(get::<u8>(area, pos, E_NAME_LEN)?);
        let index = get::<u8>(area, pos, E_NAME_INDEX)?;
        let value_off = usize::from(get::<u16>(area, pos, E_VALUE_OFFS)?);
        if get::<u32>(area, pos, E_VALUE_INUM)? != 0 {
            return Err(ReadError::Unsupported(format!(
                "inode {ino}: xattr value in an inode (ea_inode)"
            )));
        }
        let value_len = get::<u32>(area, pos, E_VALUE_SIZE)? as usize;
        let name_at = pos + XATTR_ENTRY_HEADER_SIZE;
        let suffix = area
            .get(name_at..name_at + name_len)
            .ok_or_else(|| bad(format!("inode {ino}: xattr entry overruns its area")))?;
        let value = area
            .get(value_off..value_off + value_len)
            .ok_or_else(|| bad(format!("inode {ino}: xattr value overruns its area")))?;
        let (prefix, exact) = NAME_INDEX
            .iter()
            .find(|(_, i, _)| *i == index)
            .map(|&(p, _, exact)| (p, exact))
            .ok_or_else(|| {
                ReadError::Unsupported(format!("inode {ino}: xattr name index {index}"))
            })?;
        let name = if exact {
            prefix.to_string()
        } else {
            format!("{prefix}{}", String::from_utf8_lossy(suffix))
        };
        let value = if index == 2 || index == 3 {
            acl_from_disk(ino, value)?
        } else {
            value.to_vec()
        };
        out.insert(name, value);
        pos += (XATTR_ENTRY_HEADER_SIZE + name_len + 3) & !3;
    }
    Ok(())
}

/// The `posix_acl_xattr` form of an on-disk `ext4_acl` (the inverse of the
/// writer's conversion).
fn acl_from_disk(ino: u32, v: &[u8]) -> Result<Vec<u8>, ReadError> {
    let malformed = || bad(format!("inode {ino}: malformed POSIX ACL"));
    if v.len() < 4 || v[..4] != EXT4_ACL_VERSION.to_le_bytes() {
        return Err(malformed());
    }
    let mut out = ACL_XATTR_VERSION.to_le_bytes().to_vec();
    let mut pos = 4;
    while pos < v.len() {
        let e = v.get(pos..pos + 4).ok_or_else(malformed)?;
        let tag = u16::from_le_bytes([e[0], e[1]]);
        out.extend_from_slice(e);
        if tag == ACL_USER || tag == ACL_GROUP {
            out.extend_from_slice(v.get(pos + 4..pos + 8).ok_or_else(malformed)?);
            pos += 8;
        } else {
            out.extend_from_slice(&ACL_UNDEFINED_ID.to_le_bytes());
            pos += 4;
        }
    }
    Ok(out)
}

/// Read a whole ext4 image into a tree (see the module documentation).
pub fn read(img: &[u8]) -> Result<Tree, ReadError> {
    Fs::open(img)?.tree()
}
