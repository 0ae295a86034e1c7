//! kiln's own offline ext4 writer: turns a [`Tree`] into the bytes of a
//! read-only ext4 filesystem, entirely in memory (no mkfs, no mount, no loop
//! device, no root).
//!
//! The on-disk format follows the kernel's ext4 disk layout documentation,
//! `Documentation/filesystems/ext4/` (<https://docs.kernel.org/filesystems/ext4/>):
//! superblock (`super.rst`), block group descriptors (`group_descr.rst`),
//! bitmaps (`bitmaps.rst`), inode table and inodes (`inodes.rst`), extent
//! trees (`ifork.rst`), directories (`directory.rst`), extended attributes
//! (`attributes.rst`) and metadata checksums (`checksums.rst`). e2fsprogs'
//! `e2fsck` is the oracle the tests check against.
//!
//! What gets written:
//! - 4 KiB blocks, 32768 blocks per group, 256-byte inodes (`i_extra_isize`
//!   32); no journal, no `flex_bg`, no `64bit` (so at most 16 TiB), no
//!   reserved GDT blocks (the filesystem is never resized).
//! - Features: `ext_attr`; `filetype`, `extents`; `sparse_super`,
//!   `large_file`, `huge_file`, `dir_nlink`, `extra_isize`, `metadata_csum`
//!   (crc32c, seeded from the UUID), so the kernel verifies every piece of
//!   metadata it reads.
//! - Linear directories (any number of blocks, no htree), extent-mapped
//!   files (multi-level trees when needed) with all-zero blocks left as
//!   holes, fast and slow symlinks, devices, fifos, hard links, xattrs in
//!   the inode or spilled into one xattr block, and a `lost+found`.
//! - A hard link shares its target's inode, so the target's metadata wins;
//!   `i_links_count` counts every name.
//! - Inode numbers follow path order (root 2, then 11, 12, …) and blocks are
//!   allocated in one sequential pass (see `alloc`), so the image depends
//!   only on the tree and the [`Ext4Options`]: every time in it comes from
//!   the tree or from [`Ext4Options::timestamp`].

mod alloc;
mod dir;
pub mod format;
mod inode;
mod layout;
mod plan;
pub mod read;
#[cfg(test)]
mod read_tests;
#[cfg(test)]
mod tests;
mod xattr;

use crate::fs::tree::Tree;
use inode::{Extent, InodeRecord};
use layout::{crc32c_raw, Geometry, GroupStats, SuperInfo, BLOCK_SIZE};
use plan::{Body, PlannedInode};
pub use read::{read, ReadError};

/// Longest volume label (`s_volume_name`).
const LABEL_MAX: usize = 16;
/// Byte offset of the primary superblock.
pub const SUPERBLOCK_OFFSET: usize = 1024;

/// How to build the filesystem. Everything that varies between builds of the
/// same tree is here, so the caller controls (and can reproduce) all of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ext4Options {
    /// Filesystem UUID (the caller derives it from content).
    pub uuid: [u8; 16],
    /// `s_hash_seed`, the directory-hash seed (caller-provided, deterministic).
    pub hash_seed: [u8; 16],
    /// Volume label, at most 16 bytes.
    pub label: String,
    /// SOURCE_DATE_EPOCH: every filesystem-level time (mkfs, last write, last
    /// check) and the times of a `lost+found` kiln adds.
    pub timestamp: i64,
    /// Free space to leave, in percent of the blocks the content needs.
    pub margin_percent: u32,
    /// Further free space to leave, in bytes.
    pub extra_bytes: u64,
}

/// A built filesystem image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ext4Image {
    /// The whole filesystem, `blocks * block_size` bytes.
    pub bytes: Vec<u8>,
    /// Block size in bytes (always 4096).
    pub block_size: u32,
    /// Number of blocks.
    pub blocks: u64,
    /// Number of inodes.
    pub inodes: u32,
    /// Blocks in use (metadata and content).
    pub used_blocks: u64,
}

/// Why a tree could not be written as ext4. Messages name the path involved.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Ext4Error {
    /// The volume label is longer than 16 bytes.
    #[error("ext4 volume label {0:?} is longer than 16 bytes")]
    LabelTooLong(String),
    /// The tree's root is missing or not a directory.
    #[error("ext4: the tree's root is not a directory")]
    RootNotDir,
    /// The tree has a `lost+found` that is not a directory.
    #[error("ext4: /lost+found exists but is not a directory (e2fsck needs one)")]
    LostFoundNotDir,
    /// An entry whose parent is missing or not a directory.
    #[error("ext4: {path}: parent is not a directory")]
    ParentNotDir {
        /// The entry.
        path: String,
    },
    /// A file name longer than 255 bytes or containing NUL.
    #[error("ext4: {path}: name is longer than 255 bytes or contains NUL")]
    BadName {
        /// The entry.
        path: String,
    },
    /// A hard link whose target is not a regular file of the tree.
    #[error("ext4: {path}: hard link target {target:?} is not a regular file in the tree")]
    BadHardlink {
        /// The link.
        path: String,
        /// What it points at.
        target: String,
    },
    /// More than 65000 names for one file.
    #[error("ext4: {path}: more than 65000 hard links")]
    TooManyLinks {
        /// The file.
        path: String,
    },
    /// A symlink target that is empty, longer than 4095 bytes, or contains NUL.
    #[error("ext4: {path}: symlink target is empty, longer than 4095 bytes, or contains NUL")]
    BadSymlink {
        /// The symlink.
        path: String,
    },
    /// A file beyond ext4's 2^32-block logical size.
    #[error("ext4: {path}: file is larger than 16 TiB")]
    FileTooLarge {
        /// The file.
        path: String,
    },
    /// An xattr name without a prefix ext4 can store.
    #[error("ext4: {path}: xattr {name:?} has no prefix ext4 supports (user., security., trusted., system.)")]
    XattrName {
        /// The node.
        path: String,
        /// The attribute.
        name: String,
    },
    /// A POSIX ACL xattr value that is not in `posix_acl_xattr` form.
    #[error("ext4: {path}: xattr {name:?} is not a valid POSIX ACL")]
    BadAcl {
        /// The node.
        path: String,
        /// The attribute.
        name: String,
    },
    /// xattrs that fit neither in the inode nor in one 4 KiB block.
    #[error("ext4: {path}: xattrs do not fit in the inode and one 4 KiB block")]
    XattrsTooLarge {
        /// The node.
        path: String,
    },
    /// More inodes than ext4 can number.
    #[error("ext4: the tree has too many entries")]
    TooManyInodes,
    /// More than 2^32 blocks would be needed.
    #[error("ext4: the content needs more than 16 TiB")]
    TooLarge,
}

/// `tree` as the image [`build`] makes of it holds it: with the
/// `lost+found` the writer adds when the tree has none (root-owned, 0700,
/// at `timestamp`). Hard links aside (they share their target's inode and
/// so its metadata), [`read`] of the image gives exactly this.
pub fn as_built(tree: &Tree, timestamp: i64) -> Tree {
    let mut out = tree.clone();
    if out.get(plan::LOST_FOUND).is_none() {
        // Cannot fail: the root is a directory (or `build` refuses the tree).
        let _ = out.insert(
            plan::LOST_FOUND,
            crate::fs::tree::Node {
                kind: crate::fs::tree::NodeKind::Dir,
                meta: crate::fs::tree::Meta::root(plan::LOST_FOUND_MODE, timestamp),
            },
        );
    }
    out
}

/// Build an ext4 image of `tree`. See the module documentation.
pub fn build(tree: &Tree, opts: &Ext4Options) -> Result<Ext4Image, Ext4Error> {
    if opts.label.len() > LABEL_MAX {
        return Err(Ext4Error::LabelTooLong(opts.label.clone()));
    }
    let fs_seed = crc32c_raw(!0, &opts.uuid);
    let inodes = plan::plan(tree, fs_seed, opts.timestamp)?;
    let (geo, alloc) = alloc::size(&inodes, opts)?;
    tracing::debug!(
        blocks = geo.blocks,
        groups = geo.groups,
        inodes_per_group = geo.inodes_per_group,
        content = alloc.content,
        "ext4 layout"
    );

    let mut img = vec![0u8; (geo.blocks * BLOCK_SIZE) as usize];
    for (pi, place) in inodes.iter().zip(&alloc.placements) {
        write_inode(&mut img, &geo, pi, place, fs_seed);
    }
    let (stats, free_blocks, free_inodes) =
        write_bitmaps(&mut img, &geo, &inodes, alloc.end, fs_seed);
    let gdt = layout::group_descriptors(&geo, &stats, fs_seed);
    let info = SuperInfo {
        geo: &geo,
        free_blocks,
        free_inodes,
        uuid: opts.uuid,
        hash_seed: opts.hash_seed,
        label: opts.label.as_bytes(),
        timestamp: opts.timestamp,
    };
    for g in (0..geo.groups).filter(|&g| Geometry::has_super(g)) {
        let start = (geo.group_start(g) * BLOCK_SIZE) as usize;
        // Group 0's superblock sits 1024 bytes in (after the boot sector
        // area); backups start their group. The GDT follows in the next block.
        let sb_at = if g == 0 { SUPERBLOCK_OFFSET } else { start };
        img[sb_at..sb_at + format::SUPERBLOCK_SIZE].copy_from_slice(&layout::superblock(&info, g));
        let gdt_at = start + BLOCK_SIZE as usize;
        img[gdt_at..gdt_at + gdt.len()].copy_from_slice(&gdt);
    }
    Ok(Ext4Image {
        bytes: img,
        block_size: BLOCK_SIZE as u32,
        blocks: geo.blocks,
        inodes: geo.inodes(),
        used_blocks: geo.blocks - free_blocks,
    })
}

/// Write one inode's data, extent tree, xattr block and inode record.
fn write_inode(
    img: &mut [u8],
    geo: &Geometry,
    pi: &PlannedInode<'_>,
    place: &alloc::Placement,
    fs_seed: u32,
) {
    let seed = inode::inode_seed(fs_seed, pi.ino);
    let i_block = match &pi.body {
        Body::Blocks { data, .. } => {
            for e in &place.extents {
                copy_extent(img, data, e);
            }
            inode::write_extent_tree(img, &place.extents, &place.tree_blocks, seed)
        }
        Body::Inline(b) => *b,
    };
    if let (Some(blk), Some(block)) = (place.xattr_block, &pi.xattrs.block) {
        let at = (blk * BLOCK_SIZE) as usize;
        let dst = &mut img[at..at + block.len()];
        dst.copy_from_slice(block);
        xattr::seal_block(dst, blk, fs_seed);
    }
    let rec = InodeRecord {
        mode: pi.mode,
        uid: pi.uid,
        gid: pi.gid,
        size: pi.size,
        links: pi.links,
        time: pi.time,
        fs_blocks: place.fs_blocks(),
        flags: pi.flags(),
        i_block,
        file_acl: place.xattr_block.unwrap_or(0),
        ibody_xattrs: pi.xattrs.ibody.as_deref(),
    };
    let at = geo.inode_offset(pi.ino);
    img[at..at + layout::INODE_SIZE as usize].copy_from_slice(&inode::encode(&rec, seed));
}

fn copy_extent(img: &mut [u8], data: &[u8], e: &Extent) {
    let from = (u64::from(e.lblk) * BLOCK_SIZE) as usize;
    let to = (from + usize::from(e.len) * BLOCK_SIZE as usize).min(data.len());
    let at = (e.pblk * BLOCK_SIZE) as usize;
    img[at..at + (to - from)].copy_from_slice(&data[from..to]);
}

/// Write every group's block and inode bitmaps; returns the per-group
/// statistics and the free block and inode totals.
fn write_bitmaps(
    img: &mut [u8],
    geo: &Geometry,
    inodes: &[PlannedInode<'_>],
    end: u64,
    fs_seed: u32,
) -> (Vec<GroupStats>, u64, u32) {
    let ipg = geo.inodes_per_group;
    let last_ino = inodes.last().map_or(0, |i| i.ino);
    let mut stats = vec![GroupStats::default(); geo.groups as usize];
    for pi in inodes.iter().filter(|i| i.is_dir) {
        stats[((pi.ino - 1) / ipg) as usize].used_dirs += 1;
    }
    let (mut free_blocks, mut free_inodes) = (0u64, 0u32);
    for (g, st) in (0u32..).zip(stats.iter_mut()) {
        let (gstart, gend) = (geo.group_start(g), geo.group_end(g));
        // Allocation is sequential, so used blocks and inodes are prefixes.
        let used = end.clamp(geo.data_start(g), gend) - gstart;
        let len = gend - gstart;
        let bb = layout::prefix_bitmap(used as usize, len as usize);
        st.block_bitmap_csum = crc32c_raw(fs_seed, &bb);
        st.free_blocks = (len - used) as u32;
        let used_inodes = last_ino.saturating_sub(g * ipg).min(ipg);
        let ib = layout::prefix_bitmap(used_inodes as usize, ipg as usize);
        st.inode_bitmap_csum = crc32c_raw(fs_seed, &ib[..ipg as usize / 8]);
        st.free_inodes = ipg - used_inodes;
        st.itable_unused = ipg - used_inodes;
        for (blk, bitmap) in [(geo.block_bitmap(g), bb), (geo.inode_bitmap(g), ib)] {
            let at = (blk * BLOCK_SIZE) as usize;
            img[at..at + BLOCK_SIZE as usize].copy_from_slice(&bitmap);
        }
        free_blocks += u64::from(st.free_blocks);
        free_inodes += st.free_inodes;
    }
    (stats, free_blocks, free_inodes)
}
