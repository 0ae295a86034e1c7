//! Sizing and block allocation.
//!
//! Allocation is one sequential pass over the inodes in number order, taking
//! blocks from the data area of group 0, then group 1, and so on: each inode
//! gets its xattr block, its data runs (split only where a group's data area
//! ends or a hole begins) and then its extent tree blocks. So every group's
//! used blocks are a prefix of it, the free space is all at the end, and
//! files are as contiguous as the group layout allows.
//!
//! Sizing searches the smallest group count for which the content fits and
//! the requested free space is left over.

use super::inode::{self, Extent, MAX_EXTENT_LEN};
use super::layout::{Geometry, BLOCKS_PER_GROUP, BLOCK_SIZE, INODES_PER_BLOCK, MAX_GROUPS};
use super::plan::{Body, PlannedInode};
use super::{Ext4Error, Ext4Options};

/// Fewest data blocks a last group may have (mke2fs drops a smaller last group).
const MIN_LAST_GROUP_DATA: u64 = 50;
/// Bytes of free space per spare inode (mke2fs's default inode ratio).
const BYTES_PER_SPARE_INODE: u64 = 16384;
/// Fewest spare inodes.
const MIN_SPARE_INODES: u64 = 16;

/// Where one inode's blocks are.
#[derive(Debug, Default, Clone)]
pub(super) struct Placement {
    pub extents: Vec<Extent>,
    pub tree_blocks: Vec<u64>,
    pub xattr_block: Option<u64>,
}

impl Placement {
    /// All blocks the inode owns, for `i_blocks`.
    pub fn fs_blocks(&self) -> u64 {
        self.extents.iter().map(|e| u64::from(e.len)).sum::<u64>()
            + self.tree_blocks.len() as u64
            + u64::from(self.xattr_block.is_some())
    }
}

/// The result of allocation.
pub(super) struct Allocation {
    /// Indexed like the inode list.
    pub placements: Vec<Placement>,
    /// First block after the last allocated one.
    pub end: u64,
    /// Blocks allocated to inodes.
    pub content: u64,
}

struct Cursor<'g> {
    geo: &'g Geometry,
    group: u32,
    next: u64,
}

impl Cursor<'_> {
    /// Up to `want` contiguous blocks, from the next free block on.
    fn take(&mut self, want: u64) -> Option<(u64, u64)> {
        while self.next >= self.geo.group_end(self.group) {
            self.group += 1;
            if self.group >= self.geo.groups {
                return None;
            }
            self.next = self.geo.data_start(self.group);
        }
        let len = want.min(self.geo.group_end(self.group) - self.next);
        let start = self.next;
        self.next += len;
        Some((start, len))
    }
}

/// Allocate every inode's blocks in `geo`; `None` if they do not fit.
pub(super) fn allocate(geo: &Geometry, inodes: &[PlannedInode<'_>]) -> Option<Allocation> {
    let mut cur = Cursor {
        geo,
        group: 0,
        next: geo.data_start(0),
    };
    let mut content = 0;
    let mut placements = Vec::with_capacity(inodes.len());
    for pi in inodes {
        let mut p = Placement::default();
        if pi.xattrs.block.is_some() {
            p.xattr_block = Some(cur.take(1)?.0);
        }
        if let Body::Blocks { runs, .. } = &pi.body {
            for run in runs {
                let mut lblk = u64::from(run.lblk);
                let mut left = u64::from(run.len);
                while left > 0 {
                    let (start, len) = cur.take(left.min(MAX_EXTENT_LEN))?;
                    p.extents.push(Extent {
                        lblk: lblk as u32,
                        pblk: start,
                        len: len as u16,
                    });
                    lblk += len;
                    left -= len;
                }
            }
            for _ in 0..inode::tree_blocks(p.extents.len()) {
                p.tree_blocks.push(cur.take(1)?.0);
            }
        }
        content += p.fs_blocks();
        placements.push(p);
    }
    Some(Allocation {
        placements,
        end: cur.next,
        content,
    })
}

/// Choose the geometry and allocate: the fewest groups that hold the
/// content, then the fewest blocks that leave the requested free space.
pub(super) fn size(
    inodes: &[PlannedInode<'_>],
    opts: &Ext4Options,
) -> Result<(Geometry, Allocation), Ext4Error> {
    let margin = u64::from(opts.margin_percent);
    let used_inodes = u64::from(inodes.last().map_or(0, |i| i.ino));
    let spare_inodes = (used_inodes * margin / 100 + opts.extra_bytes / BYTES_PER_SPARE_INODE)
        .max(MIN_SPARE_INODES);
    let want_inodes = used_inodes + spare_inodes;
    let extra_blocks = opts.extra_bytes.div_ceil(BLOCK_SIZE);
    let lower_bound: u64 = inodes
        .iter()
        .map(|i| i.data_blocks() + u64::from(i.xattrs.block.is_some()))
        .sum();
    let mut groups = lower_bound.div_ceil(BLOCKS_PER_GROUP).max(1);
    loop {
        if groups >= MAX_GROUPS {
            return Err(Ext4Error::TooLarge);
        }
        let ipg = want_inodes
            .div_ceil(groups)
            .next_multiple_of(u64::from(INODES_PER_BLOCK))
            .max(u64::from(INODES_PER_BLOCK));
        if ipg > BLOCKS_PER_GROUP {
            groups += 1;
            continue;
        }
        let mut geo = Geometry {
            blocks: groups * BLOCKS_PER_GROUP,
            groups: groups as u32,
            inodes_per_group: ipg as u32,
        };
        let Some(alloc) = allocate(&geo, inodes) else {
            groups += 1;
            continue;
        };
        let want_free = (alloc.content * margin).div_ceil(100) + extra_blocks;
        let last = geo.groups - 1;
        let blocks = (geo.total_overhead() + alloc.content + want_free)
            .max(alloc.end)
            .max(geo.data_start(last) + MIN_LAST_GROUP_DATA);
        if blocks > geo.blocks {
            groups += 1;
            continue;
        }
        geo.blocks = blocks;
        return Ok((geo, alloc));
    }
}
