//! Filesystem geometry (block groups and where each group's metadata lives),
//! the superblock and group descriptor encoders, bitmaps, and the crc32c
//! helper every metadata checksum is built on.
//!
//! Field offsets are declared in [`super::format`]. References: `super.rst`,
//! `group_descr.rst`, `bitmaps.rst`, `checksums.rst` and `overview.rst`
//! ("Layout", "Flexible/sparse superblock") in the kernel's
//! `Documentation/filesystems/ext4/`.

use super::format::*;

/// Block size in bytes. kiln always writes 4 KiB blocks (`s_log_block_size` = 2).
pub(super) const BLOCK_SIZE: u64 = 4096;
/// `s_log_block_size`: block size is `1024 << 2`.
const LOG_BLOCK_SIZE: u32 = 2;
/// Blocks per group: one bitmap block holds 4096 * 8 bits.
pub(super) const BLOCKS_PER_GROUP: u64 = BLOCK_SIZE * 8;
/// On-disk inode size (`s_inode_size`).
pub(super) const INODE_SIZE: u64 = 256;
/// Inodes in one inode-table block.
pub(super) const INODES_PER_BLOCK: u32 = (BLOCK_SIZE / INODE_SIZE) as u32;
/// First inode number ordinary files may use (`s_first_ino`); 1..=10 are reserved.
pub(super) const FIRST_INO: u32 = 11;
/// The root directory's inode number.
pub(super) const ROOT_INO: u32 = 2;
/// `i_extra_isize` and `s_{min,want}_extra_isize`: the fields of the large inode
/// up to and including `i_projid`.
pub(super) const EXTRA_ISIZE: u16 = 32;
/// Most groups a filesystem without `64bit` can have (2^32 blocks).
pub(super) const MAX_GROUPS: u64 = (1 << 32) / BLOCKS_PER_GROUP;

/// `s_magic`.
pub(super) const EXT4_MAGIC: u16 = 0xEF53;
// Feature flags (super.rst, "s_feature_compat" ff.).
const COMPAT_EXT_ATTR: u32 = 0x0008;
const INCOMPAT_FILETYPE: u32 = 0x0002;
const INCOMPAT_EXTENTS: u32 = 0x0040;
const RO_COMPAT_SPARSE_SUPER: u32 = 0x0001;
const RO_COMPAT_LARGE_FILE: u32 = 0x0002;
const RO_COMPAT_HUGE_FILE: u32 = 0x0008;
const RO_COMPAT_DIR_NLINK: u32 = 0x0020;
const RO_COMPAT_EXTRA_ISIZE: u32 = 0x0040;
const RO_COMPAT_METADATA_CSUM: u32 = 0x0400;
/// `s_default_mount_opts`: `user_xattr` and `acl`, as mke2fs sets them.
const DEFM_XATTR_USER_ACL: u32 = 0x0004 | 0x0008;
/// `s_flags`: signed directory hash (what mke2fs writes on x86).
const FLAGS_SIGNED_HASH: u32 = 0x0001;
/// `s_def_hash_version`: half_md4, mke2fs's default (only used by htree directories).
const HASH_HALF_MD4: u8 = 1;
/// `s_checksum_type`: crc32c.
const CHECKSUM_TYPE_CRC32C: u8 = 1;
/// `bg_flags`: the inode table is zeroed.
const BG_INODE_ZEROED: u16 = 0x0004;

/// The kernel's `crc32c_le(seed, data)` (no pre- or post-inversion), which is
/// what `ext4_chksum` computes; the `crc32c` crate's standard CRC inverts both.
pub(super) fn crc32c_raw(seed: u32, data: &[u8]) -> u32 {
    !crc32c::crc32c_append(!seed, data)
}

/// Where everything is: block count, group count, inodes per group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Geometry {
    /// `s_blocks_count`.
    pub blocks: u64,
    /// Number of block groups.
    pub groups: u32,
    /// `s_inodes_per_group`, a multiple of [`INODES_PER_BLOCK`].
    pub inodes_per_group: u32,
}

impl Geometry {
    /// Blocks of the group descriptor table (one copy).
    pub fn gdt_blocks(&self) -> u64 {
        (u64::from(self.groups) * GROUP_DESC_SIZE as u64).div_ceil(BLOCK_SIZE)
    }

    /// Blocks of one group's inode table.
    pub fn itable_blocks(&self) -> u64 {
        u64::from(self.inodes_per_group) * INODE_SIZE / BLOCK_SIZE
    }

    /// Total inodes (`s_inodes_count`).
    pub fn inodes(&self) -> u32 {
        self.inodes_per_group * self.groups
    }

    /// Whether group `g` holds a superblock and GDT backup (`sparse_super`:
    /// groups 0, 1 and powers of 3, 5 and 7).
    pub fn has_super(g: u32) -> bool {
        if g <= 1 {
            return true;
        }
        [3u32, 5, 7].iter().any(|&base| {
            let mut n = g;
            while n.is_multiple_of(base) {
                n /= base;
            }
            n == 1
        })
    }

    /// First block of group `g`.
    pub fn group_start(&self, g: u32) -> u64 {
        u64::from(g) * BLOCKS_PER_GROUP
    }

    /// One past the last block of group `g` (the last group may be short).
    pub fn group_end(&self, g: u32) -> u64 {
        (self.group_start(g) + BLOCKS_PER_GROUP).min(self.blocks)
    }

    /// Block of group `g`'s block bitmap (after the superblock and GDT copies, if any).
    pub fn block_bitmap(&self, g: u32) -> u64 {
        let sb = if Self::has_super(g) {
            1 + self.gdt_blocks()
        } else {
            0
        };
        self.group_start(g) + sb
    }

    /// Block of group `g`'s inode bitmap.
    pub fn inode_bitmap(&self, g: u32) -> u64 {
        self.block_bitmap(g) + 1
    }

    /// First block of group `g`'s inode table.
    pub fn inode_table(&self, g: u32) -> u64 {
        self.block_bitmap(g) + 2
    }

    /// First block of group `g` free for data.
    pub fn data_start(&self, g: u32) -> u64 {
        self.inode_table(g) + self.itable_blocks()
    }

    /// Metadata blocks at the start of group `g`.
    pub fn overhead(&self, g: u32) -> u64 {
        self.data_start(g) - self.group_start(g)
    }

    /// Metadata blocks of all groups.
    pub fn total_overhead(&self) -> u64 {
        (0..self.groups).map(|g| self.overhead(g)).sum()
    }

    /// Byte offset of inode `ino` in the image.
    pub fn inode_offset(&self, ino: u32) -> usize {
        let g = (ino - 1) / self.inodes_per_group;
        let i = u64::from((ino - 1) % self.inodes_per_group);
        (self.inode_table(g) * BLOCK_SIZE + i * INODE_SIZE) as usize
    }
}

/// A bitmap block whose first `used` bits are set, and whose bits from
/// `valid` to the end of the block are set too (padding past the group end
/// must read as in use).
pub(super) fn prefix_bitmap(used: usize, valid: usize) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK_SIZE as usize];
    set_bits(&mut b, 0, used);
    set_bits(&mut b, valid, BLOCK_SIZE as usize * 8);
    b
}

fn set_bits(b: &mut [u8], from: usize, to: usize) {
    let mut i = from;
    while i < to && !i.is_multiple_of(8) {
        b[i / 8] |= 1 << (i % 8);
        i += 1;
    }
    let whole_end = to / 8 * 8;
    if i < whole_end {
        b[i / 8..whole_end / 8].fill(0xFF);
        i = whole_end;
    }
    while i < to {
        b[i / 8] |= 1 << (i % 8);
        i += 1;
    }
}

/// Per-group counts and bitmap checksums for the group descriptors.
#[derive(Debug, Clone, Default)]
pub(super) struct GroupStats {
    pub free_blocks: u32,
    pub free_inodes: u32,
    pub used_dirs: u32,
    pub itable_unused: u32,
    pub block_bitmap_csum: u32,
    pub inode_bitmap_csum: u32,
}

/// The group descriptor table, padded to whole blocks, each descriptor with
/// its metadata_csum checksum (crc32c of seed, group number and descriptor, low 16 bits).
pub(super) fn group_descriptors(geo: &Geometry, stats: &[GroupStats], fs_seed: u32) -> Vec<u8> {
    let mut out = vec![0u8; (geo.gdt_blocks() * BLOCK_SIZE) as usize];
    for (g, st) in (0u32..).zip(stats) {
        let d = &mut out[g as usize * GROUP_DESC_SIZE..(g as usize + 1) * GROUP_DESC_SIZE];
        BG_BLOCK_BITMAP_LO.put(d, geo.block_bitmap(g) as u32);
        BG_INODE_BITMAP_LO.put(d, geo.inode_bitmap(g) as u32);
        BG_INODE_TABLE_LO.put(d, geo.inode_table(g) as u32);
        BG_FREE_BLOCKS_COUNT_LO.put(d, st.free_blocks as u16);
        BG_FREE_INODES_COUNT_LO.put(d, st.free_inodes as u16);
        BG_USED_DIRS_COUNT_LO.put(d, st.used_dirs as u16);
        BG_FLAGS.put(d, BG_INODE_ZEROED);
        BG_BLOCK_BITMAP_CSUM_LO.put(d, st.block_bitmap_csum as u16);
        BG_INODE_BITMAP_CSUM_LO.put(d, st.inode_bitmap_csum as u16);
        BG_ITABLE_UNUSED_LO.put(d, st.itable_unused as u16);
        // bg_checksum is still zero here, which is what the crc covers.
        let crc = crc32c_raw(crc32c_raw(fs_seed, &g.to_le_bytes()), d);
        BG_CHECKSUM.put(d, crc as u16);
    }
    out
}

/// Everything the superblock says beyond the geometry.
pub(super) struct SuperInfo<'a> {
    pub geo: &'a Geometry,
    pub free_blocks: u64,
    pub free_inodes: u32,
    pub uuid: [u8; 16],
    pub hash_seed: [u8; 16],
    pub label: &'a [u8],
    pub timestamp: i64,
}

/// The 1024-byte superblock as stored in group `group` (primary: 0).
pub(super) fn superblock(s: &SuperInfo<'_>, group: u32) -> [u8; SUPERBLOCK_SIZE] {
    let geo = s.geo;
    let mut b = [0u8; SUPERBLOCK_SIZE];
    // Times are 32 bits plus an 8-bit high part; clamp to what fits.
    let t = s.timestamp.clamp(0, (1 << 40) - 1);
    let (t_lo, t_hi) = (t as u32, (t >> 32) as u8);
    S_INODES_COUNT.put(&mut b, geo.inodes());
    S_BLOCKS_COUNT_LO.put(&mut b, geo.blocks as u32);
    S_FREE_BLOCKS_COUNT_LO.put(&mut b, s.free_blocks as u32);
    S_FREE_INODES_COUNT.put(&mut b, s.free_inodes);
    S_FIRST_DATA_BLOCK.put(&mut b, 0u32); // 0 for blocks > 1 KiB
    S_LOG_BLOCK_SIZE.put(&mut b, LOG_BLOCK_SIZE);
    S_LOG_CLUSTER_SIZE.put(&mut b, LOG_BLOCK_SIZE);
    S_BLOCKS_PER_GROUP.put(&mut b, BLOCKS_PER_GROUP as u32);
    S_CLUSTERS_PER_GROUP.put(&mut b, BLOCKS_PER_GROUP as u32);
    S_INODES_PER_GROUP.put(&mut b, geo.inodes_per_group);
    S_WTIME.put(&mut b, t_lo);
    S_MAX_MNT_COUNT.put(&mut b, 0xFFFFu16); // -1, no forced checks
    S_MAGIC.put(&mut b, EXT4_MAGIC);
    S_STATE.put(&mut b, 1u16); // cleanly unmounted
    S_ERRORS.put(&mut b, 1u16); // continue
    S_LASTCHECK.put(&mut b, t_lo);
    S_REV_LEVEL.put(&mut b, 1u32); // dynamic
    S_FIRST_INO.put(&mut b, FIRST_INO);
    S_INODE_SIZE.put(&mut b, INODE_SIZE as u16);
    S_BLOCK_GROUP_NR.put(&mut b, group as u16);
    S_FEATURE_COMPAT.put(&mut b, COMPAT_EXT_ATTR);
    S_FEATURE_INCOMPAT.put(&mut b, INCOMPAT_FILETYPE | INCOMPAT_EXTENTS);
    S_FEATURE_RO_COMPAT.put(
        &mut b,
        RO_COMPAT_SPARSE_SUPER
            | RO_COMPAT_LARGE_FILE
            | RO_COMPAT_HUGE_FILE
            | RO_COMPAT_DIR_NLINK
            | RO_COMPAT_EXTRA_ISIZE
            | RO_COMPAT_METADATA_CSUM,
    );
    S_UUID.put_bytes(&mut b, &s.uuid);
    S_VOLUME_NAME.put_bytes(&mut b, s.label);
    S_HASH_SEED.put_bytes(&mut b, &s.hash_seed);
    S_DEF_HASH_VERSION.put(&mut b, HASH_HALF_MD4);
    S_DEFAULT_MOUNT_OPTS.put(&mut b, DEFM_XATTR_USER_ACL);
    S_MKFS_TIME.put(&mut b, t_lo);
    S_BLOCKS_COUNT_HI.put(&mut b, (geo.blocks >> 32) as u32);
    S_FREE_BLOCKS_COUNT_HI.put(&mut b, (s.free_blocks >> 32) as u32);
    S_MIN_EXTRA_ISIZE.put(&mut b, EXTRA_ISIZE);
    S_WANT_EXTRA_ISIZE.put(&mut b, EXTRA_ISIZE);
    S_FLAGS.put(&mut b, FLAGS_SIGNED_HASH);
    S_CHECKSUM_TYPE.put(&mut b, CHECKSUM_TYPE_CRC32C);
    S_WTIME_HI.put(&mut b, t_hi);
    S_MKFS_TIME_HI.put(&mut b, t_hi);
    S_LASTCHECK_HI.put(&mut b, t_hi);
    let crc = crc32c_raw(!0, &b[..S_CHECKSUM.offset]);
    S_CHECKSUM.put(&mut b, crc);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_super_groups() {
        let with: Vec<u32> = (0..100).filter(|&g| Geometry::has_super(g)).collect();
        assert_eq!(with, [0, 1, 3, 5, 7, 9, 25, 27, 49, 81]);
    }

    #[test]
    fn bitmap_prefix_and_padding() {
        let b = prefix_bitmap(11, 20);
        assert_eq!(&b[..4], &[0xFF, 0x07, 0xF0, 0xFF]);
        assert!(b[4..].iter().all(|&x| x == 0xFF));
        let full = prefix_bitmap(0, 32768);
        assert!(full.iter().all(|&x| x == 0));
    }

    #[test]
    fn crc_matches_kernel_convention() {
        // crc32c_le(~0, "123456789") without final inversion is !0xE3069283.
        assert_eq!(crc32c_raw(!0, b"123456789"), !0xE306_9283);
    }
}
