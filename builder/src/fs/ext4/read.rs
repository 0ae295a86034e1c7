//! Reading an ext4 filesystem back into a [`Tree`]: what `kiln diff` and the
//! reproducibility check see of a root partition.
//!
//! Follows the same kernel documentation as the writer
//! (`Documentation/filesystems/ext4/`: `super.rst`, `group_descr.rst`,
//! `inodes.rst`, `ifork.rst`, `directory.rst`, `attributes.rst`,
//! `checksums.rst`), but reads more than kiln writes, so images made by
//! `mkfs.ext4 -d` can be compared too: any block size, 128-byte or larger
//! inodes, `64bit` group descriptors, `flex_bg` (inode tables anywhere),
//! extent trees of any depth with uninitialised extents, htree directories
//! (their index blocks look like empty entries to a linear scan, as the
//! format intends), and xattrs in the inode and in an external block. Not
//! read: `inline_data`, block-mapped (pre-extent) files, `meta_bg`, xattr
//! values in their own inodes (`ea_inode`), and sockets (a [`Tree`] has no
//! node for them; they are skipped with a warning).
//!
//! The image may be hostile. The superblock and group descriptors are
//! checked before any arithmetic on them: the filesystem must fit the
//! image, every group's inode table too. With `metadata_csum`, the crc32c
//! of the superblock, each group descriptor, each inode read, each extent
//! tree block, each directory leaf block with a checksum tail and each
//! xattr block is verified (the older `gdt_csum` crc16 is not). Extent
//! trees are walked at most [`MAX_EXTENT_DEPTH`] deep, visiting no block
//! twice, and no more tree blocks in all than the filesystem has; the file
//! contents read (holes included) may add up to at most
//! [`EXPANSION`] times the image plus [`EXPANSION_BASE`]. Every read is
//! bounds-checked: a corrupt image gives a [`ReadError`] naming the
//! structure and field, never a panic or an allocation the image cannot
//! justify.

mod data;
mod xattrs;

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Display;
use std::sync::Arc;

use kiln_format::field::{Field, Holds, Span};

use super::format::*;
use super::layout::{crc32c_raw, EXT4_MAGIC, ROOT_INO};
use super::SUPERBLOCK_OFFSET;
use crate::fs::tree::{Meta, Node, NodeKind, Tree};

/// `s_feature_incompat` bits that change how the image must be read.
const INCOMPAT_META_BG: u32 = 0x0010;
const INCOMPAT_64BIT: u32 = 0x0080;
const INCOMPAT_CSUM_SEED: u32 = 0x2000;
/// `s_feature_ro_compat`: metadata checksums.
const RO_COMPAT_METADATA_CSUM: u32 = 0x0400;
/// `s_checksum_type`: crc32c, the only one defined.
const CHECKSUM_TYPE_CRC32C: u8 = 1;
/// Largest `s_log_block_size` (64 KiB blocks).
const MAX_LOG_BLOCK_SIZE: u32 = 6;
/// Group descriptor sizes with `64bit` (`EXT4_MIN_DESC_SIZE_64BIT`,
/// `EXT4_MAX_DESC_SIZE`).
const DESC_SIZES_64BIT: std::ops::RangeInclusive<usize> = 64..=1024;
/// `i_flags`: an xattr value inode (`ea_inode`).
const EA_INODE_FL: u32 = 0x0020_0000;
/// Deepest extent tree the kernel accepts (`EXT4_MAX_EXTENT_DEPTH`).
pub const MAX_EXTENT_DEPTH: u16 = 5;
/// File contents read from an image may add up to this many times its
/// size (holes read as zeros, so a sparse file is larger than its blocks)…
pub const EXPANSION: u64 = 64;
/// …plus this many bytes.
pub const EXPANSION_BASE: u64 = 64 << 20;

/// Longest path read (Linux's `PATH_MAX`, less the leading `/`).
const PATH_MAX: usize = 4095;

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
    /// A structure that points outside the image, does not parse or does
    /// not match its checksum.
    #[error("ext4: {0}")]
    Malformed(String),
}

fn bad(what: impl Into<String>) -> ReadError {
    ReadError::Malformed(what.into())
}

/// Field `f` of `structure` (`superblock`, `inode 12`, …) is wrong.
fn field_error(structure: impl Display, f: impl Into<Span>, problem: impl Display) -> ReadError {
    bad(format!("{structure}: field `{}`: {problem}", f.into().name))
}

/// Field `f` of the structure at byte `at` of `b`.
fn get<T>(b: &[u8], at: usize, f: impl Holds<T>) -> Result<T, ReadError> {
    f.get_at(b, at).ok_or_else(|| {
        let f = f.span();
        bad(format!(
            "truncated structure ({} at byte {})",
            f.name,
            at.saturating_add(f.offset)
        ))
    })
}

/// `data` with the `len` bytes at `at` zeroed: what a checksum covers
/// where the checksum itself is stored.
fn zeroed(data: &[u8], at: usize, len: usize) -> Vec<u8> {
    let mut copy = data.to_vec();
    if let Some(s) = copy.get_mut(at..at.saturating_add(len)) {
        s.fill(0);
    }
    copy
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
    /// The metadata_csum seed, when checksums are verified.
    csum_seed: Option<u32>,
    /// Bytes of file contents that may still be read.
    budget: Cell<u64>,
    /// Extent tree blocks that may still be visited.
    tree_blocks: Cell<u64>,
}

/// One inode's fields as the reader uses them.
#[derive(Debug, Clone)]
struct Inode<'a> {
    ino: u32,
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
    /// Seed of the checksums of the blocks this inode owns.
    csum_seed: Option<u32>,
}

impl<'a> Fs<'a> {
    /// Parse and check the superblock and group descriptors of `img`.
    pub fn open(img: &'a [u8]) -> Result<Self, ReadError> {
        let sb = img
            .get(SUPERBLOCK_OFFSET..SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE)
            .ok_or(ReadError::NotExt4)?;
        if get::<u16>(sb, 0, S_MAGIC)? != EXT4_MAGIC {
            return Err(ReadError::NotExt4);
        }
        // `sb` is SUPERBLOCK_SIZE bytes: every superblock field is there.
        let u32_of = |f: Field<4>| get::<u32>(sb, 0, f).unwrap_or_default();
        let ro_compat = u32_of(S_FEATURE_RO_COMPAT);
        let incompat = u32_of(S_FEATURE_INCOMPAT);
        let csum_seed = if ro_compat & RO_COMPAT_METADATA_CSUM != 0 {
            let kind = get::<u8>(sb, 0, S_CHECKSUM_TYPE)?;
            if kind != CHECKSUM_TYPE_CRC32C {
                return Err(field_error(
                    "superblock",
                    S_CHECKSUM_TYPE,
                    format!("{kind} is not crc32c (1)"),
                ));
            }
            let want = crc32c_raw(!0, &sb[..S_CHECKSUM.offset]);
            let got = u32_of(S_CHECKSUM);
            if got != want {
                return Err(field_error(
                    "superblock",
                    S_CHECKSUM,
                    format!("{got:#010x} does not match the superblock ({want:#010x})"),
                ));
            }
            Some(if incompat & INCOMPAT_CSUM_SEED != 0 {
                u32_of(S_CHECKSUM_SEED)
            } else {
                crc32c_raw(!0, S_UUID.bytes(sb).unwrap_or_default())
            })
        } else {
            None
        };
        let log = u32_of(S_LOG_BLOCK_SIZE);
        if log > MAX_LOG_BLOCK_SIZE {
            return Err(field_error(
                "superblock",
                S_LOG_BLOCK_SIZE,
                format!("{log} is over {MAX_LOG_BLOCK_SIZE}"),
            ));
        }
        let block_size = 1024u64 << log;
        let inode_size = if u32_of(S_REV_LEVEL) == 0 {
            GOOD_OLD_INODE_SIZE
        } else {
            usize::from(get::<u16>(sb, 0, S_INODE_SIZE)?)
        };
        if inode_size < GOOD_OLD_INODE_SIZE
            || !inode_size.is_power_of_two()
            || inode_size as u64 > block_size
        {
            return Err(field_error(
                "superblock",
                S_INODE_SIZE,
                format!("{inode_size} is not a power of two in 128..={block_size}"),
            ));
        }
        if incompat & INCOMPAT_META_BG != 0 {
            return Err(ReadError::Unsupported("meta_bg".into()));
        }
        let is_64bit = incompat & INCOMPAT_64BIT != 0;
        let desc_size = if is_64bit {
            usize::from(get::<u16>(sb, 0, S_DESC_SIZE)?)
        } else {
            GROUP_DESC_SIZE
        };
        if is_64bit && !(DESC_SIZES_64BIT.contains(&desc_size) && desc_size.is_power_of_two()) {
            return Err(field_error(
                "superblock",
                S_DESC_SIZE,
                format!("{desc_size} is not a power of two in {DESC_SIZES_64BIT:?}"),
            ));
        }
        let blocks = u64::from(u32_of(S_BLOCKS_COUNT_LO))
            | if is_64bit {
                u64::from(u32_of(S_BLOCKS_COUNT_HI)) << 32
            } else {
                0
            };
        let fs_bytes = blocks.checked_mul(block_size);
        if fs_bytes.is_none_or(|n| n > img.len() as u64) {
            return Err(field_error(
                "superblock",
                S_BLOCKS_COUNT_LO,
                format!(
                    "{blocks} blocks of {block_size} bytes do not fit the {}-byte image",
                    img.len()
                ),
            ));
        }
        let first_data_block = u64::from(u32_of(S_FIRST_DATA_BLOCK));
        if first_data_block >= blocks {
            return Err(field_error(
                "superblock",
                S_FIRST_DATA_BLOCK,
                format!("{first_data_block} is not below s_blocks_count {blocks}"),
            ));
        }
        // A group's block and inode bitmaps are one block each.
        let per_group_max = block_size * 8;
        let blocks_per_group = u64::from(u32_of(S_BLOCKS_PER_GROUP));
        if !(1..=per_group_max).contains(&blocks_per_group) {
            return Err(field_error(
                "superblock",
                S_BLOCKS_PER_GROUP,
                format!("{blocks_per_group} is not in 1..={per_group_max}"),
            ));
        }
        let inodes_per_group = u32_of(S_INODES_PER_GROUP);
        if !(1..=per_group_max).contains(&u64::from(inodes_per_group)) {
            return Err(field_error(
                "superblock",
                S_INODES_PER_GROUP,
                format!("{inodes_per_group} is not in 1..={per_group_max}"),
            ));
        }
        // At most the image's length in blocks, so at most that many groups.
        let groups = (blocks - first_data_block).div_ceil(blocks_per_group);
        let inodes_count = u32_of(S_INODES_COUNT);
        if u64::from(inodes_count) > groups * u64::from(inodes_per_group) {
            return Err(field_error(
                "superblock",
                S_INODES_COUNT,
                format!("{inodes_count} is more than {groups} groups of {inodes_per_group}"),
            ));
        }
        // The descriptors follow the superblock's block.
        let gdt = (first_data_block + 1) * block_size;
        let gdt_end = groups
            .checked_mul(desc_size as u64)
            .and_then(|n| n.checked_add(gdt))
            .filter(|&end| end <= img.len() as u64)
            .ok_or_else(|| {
                field_error(
                    "superblock",
                    S_BLOCKS_COUNT_LO,
                    format!("the descriptors of its {groups} groups lie past the end of the image"),
                )
            })?;
        let (gdt, gdt_end) = (gdt as usize, gdt_end as usize);
        let table_bytes = u64::from(inodes_per_group) * inode_size as u64;
        let mut inode_tables = Vec::with_capacity(groups as usize);
        for (g, d) in (0u32..).zip(img[gdt..gdt_end].chunks_exact(desc_size)) {
            let gd = || format!("group descriptor {g}");
            if let Some(seed) = csum_seed {
                let crc = crc32c_raw(
                    crc32c_raw(seed, &g.to_le_bytes()),
                    &zeroed(d, BG_CHECKSUM.offset, BG_CHECKSUM.width()),
                ) as u16;
                let got = get::<u16>(d, 0, BG_CHECKSUM)?;
                if got != crc {
                    return Err(field_error(
                        gd(),
                        BG_CHECKSUM,
                        format!("{got:#06x} does not match the descriptor ({crc:#06x})"),
                    ));
                }
            }
            let mut table = u64::from(get::<u32>(d, 0, BG_INODE_TABLE_LO)?);
            if desc_size >= 64 {
                table |= u64::from(get::<u32>(d, 0, BG_INODE_TABLE_HI)?) << 32;
            }
            let end = table
                .checked_mul(block_size)
                .and_then(|at| at.checked_add(table_bytes));
            if end.is_none_or(|end| end > img.len() as u64) {
                return Err(field_error(
                    gd(),
                    BG_INODE_TABLE_LO,
                    format!("the inode table at block {table} lies past the end of the image"),
                ));
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
            csum_seed,
            budget: Cell::new(
                (img.len() as u64)
                    .saturating_mul(EXPANSION)
                    .saturating_add(EXPANSION_BASE),
            ),
            tree_blocks: Cell::new(blocks),
        })
    }

    /// Takes `n` bytes from what the read may still hold in memory (file
    /// contents, names, xattr values); too many is an error about what
    /// `what` names.
    fn charge(&self, n: u64, what: impl FnOnce() -> String) -> Result<(), ReadError> {
        let left = self.budget.get();
        if n > left {
            return Err(bad(format!(
                "{}: {n} bytes are more than the {left} left of what a {}-byte image \
                 may expand to ({EXPANSION} times its size plus {EXPANSION_BASE})",
                what(),
                self.img.len()
            )));
        }
        self.budget.set(left - n);
        Ok(())
    }

    /// The image bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.img
    }

    /// Byte range of inode `ino`'s on-disk record.
    pub fn inode_range(&self, ino: u32) -> Result<std::ops::Range<usize>, ReadError> {
        if ino == 0 || ino > self.inodes_count {
            return Err(bad(format!(
                "inode number {ino} is not in 1..={} (s_inodes_count)",
                self.inodes_count
            )));
        }
        let g = ((ino - 1) / self.inodes_per_group) as usize;
        let i = u64::from((ino - 1) % self.inodes_per_group);
        let table = *self
            .inode_tables
            .get(g)
            .ok_or_else(|| bad(format!("inode {ino}: no group {g}")))?;
        // `open` checked that every group's whole table lies in the image.
        let at = (table * self.block_size + i * self.inode_size as u64) as usize;
        Ok(at..at + self.inode_size)
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
        let r = self.inode_range(ino)?;
        let b = self.img.get(r).unwrap_or_default();
        let structure = || format!("inode {ino}");
        // `b` is inode_size >= GOOD_OLD_INODE_SIZE bytes: the old fields are there.
        let u16_at = |f: Field<2>| get::<u16>(b, 0, f).unwrap_or_default();
        let u32_at = |f: Field<4>| get::<u32>(b, 0, f).unwrap_or_default();
        let extra = if self.inode_size > GOOD_OLD_INODE_SIZE {
            usize::from(u16_at(I_EXTRA_ISIZE))
        } else {
            0
        };
        if GOOD_OLD_INODE_SIZE + extra > self.inode_size {
            return Err(field_error(
                structure(),
                I_EXTRA_ISIZE,
                format!("{extra} runs past the {}-byte inode", self.inode_size),
            ));
        }
        let fits = |f: Span| GOOD_OLD_INODE_SIZE + extra >= f.offset + f.len;
        let csum_seed = self.csum_seed.map(|seed| {
            let seed = crc32c_raw(seed, &ino.to_le_bytes());
            crc32c_raw(seed, &u32_at(I_GENERATION).to_le_bytes())
        });
        if let Some(seed) = csum_seed {
            let has_hi = fits(I_CHECKSUM_HI.span());
            let mut covered = zeroed(b, I_CHECKSUM_LO.offset, I_CHECKSUM_LO.width());
            if has_hi {
                covered = zeroed(&covered, I_CHECKSUM_HI.offset, I_CHECKSUM_HI.width());
            }
            let crc = crc32c_raw(seed, &covered);
            let mut got = u32::from(u16_at(I_CHECKSUM_LO));
            let want = if has_hi {
                got |= u32::from(u16_at(I_CHECKSUM_HI)) << 16;
                crc
            } else {
                crc & 0xffff
            };
            if got != want {
                return Err(field_error(
                    structure(),
                    I_CHECKSUM_LO,
                    format!("{got:#010x} does not match the inode ({want:#010x})"),
                ));
            }
        }
        // i_mtime_extra is there when i_extra_isize covers it.
        let mtime_extra = if fits(I_MTIME_EXTRA.span()) {
            u32_at(I_MTIME_EXTRA)
        } else {
            0
        };
        Ok(Inode {
            ino,
            mode: u16_at(I_MODE),
            uid: u32::from(u16_at(I_UID)) | (u32::from(u16_at(I_UID_HIGH)) << 16),
            gid: u32::from(u16_at(I_GID)) | (u32::from(u16_at(I_GID_HIGH)) << 16),
            size: u64::from(u32_at(I_SIZE_LO)) | (u64::from(u32_at(I_SIZE_HIGH)) << 32),
            mtime: decode_time(u32_at(I_MTIME), mtime_extra),
            flags: u32_at(I_FLAGS),
            i_block: I_BLOCK.bytes(b).unwrap_or_default(),
            file_acl: u64::from(u32_at(I_FILE_ACL_LO)) | (u64::from(u16_at(I_FILE_ACL_HIGH)) << 32),
            ibody: b.get(GOOD_OLD_INODE_SIZE + extra..).unwrap_or_default(),
            csum_seed,
        })
    }

    /// Block `blk` of the image.
    fn block(&self, blk: u64) -> Result<&'a [u8], ReadError> {
        let bs = self.block_size;
        blk.checked_mul(bs)
            .and_then(|at| usize::try_from(at).ok())
            .and_then(|at| self.img.get(at..at.checked_add(bs as usize)?))
            .ok_or_else(|| bad(format!("block {blk} lies past the end of the image")))
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
            if i.mode & S_IFMT != S_IFDIR {
                return Err(field_error(
                    format!("inode {ino} (/{dir})"),
                    I_MODE,
                    format!("{:#o} is not a directory", i.mode),
                ));
            }
            for (name, child) in self.dir_entries(&i)? {
                let path = if dir.is_empty() {
                    name
                } else {
                    format!("{dir}/{name}")
                };
                if path.len() > PATH_MAX {
                    return Err(bad(format!(
                        "/{}…: a path longer than {PATH_MAX} bytes",
                        dir.chars().take(64).collect::<String>()
                    )));
                }
                self.charge(path.len() as u64, || format!("/{path}"))?;
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
                    S_IFREG => NodeKind::File(Arc::new(self.data(&i)?)),
                    S_IFLNK => NodeKind::Symlink(self.symlink(&i)?),
                    S_IFCHR | S_IFBLK => {
                        let (major, minor) = data::device(i.i_block)?;
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
                xattrs: self.xattrs(&i)?,
            };
            tree.insert(&path, Node { kind, meta })
                .map_err(|e| bad(format!("{}: {e}", shown())))?;
        }
        Ok(tree)
    }
}

/// Read a whole ext4 image into a tree (see the module documentation).
pub fn read(img: &[u8]) -> Result<Tree, ReadError> {
    Fs::open(img)?.tree()
}
