//! Filesystem geometry (block groups and where each group's metadata lives),
//! the superblock and group descriptor encoders, bitmaps, and the crc32c
//! helper every metadata checksum is built on.
//!
//! References: `super.rst`, `group_descr.rst`, `bitmaps.rst`, `checksums.rst`
//! and `overview.rst` ("Layout", "Flexible/sparse superblock") in the kernel's
//! `Documentation/filesystems/ext4/`.

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
/// Size of a group descriptor without the `64bit` feature.
const DESC_SIZE: usize = 32;
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
const EXT4_MAGIC: u16 = 0xEF53;
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

/// Little-endian stores into a byte buffer at an offset.
pub(super) fn put16(buf: &mut [u8], off: usize, v: u16) {
    buf[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
/// See [`put16`].
pub(super) fn put32(buf: &mut [u8], off: usize, v: u32) {
    buf[off..off + 4].copy_from_slice(&v.to_le_bytes());
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
        (u64::from(self.groups) * DESC_SIZE as u64).div_ceil(BLOCK_SIZE)
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
        let d = &mut out[g as usize * DESC_SIZE..(g as usize + 1) * DESC_SIZE];
        put32(d, 0x00, geo.block_bitmap(g) as u32);
        put32(d, 0x04, geo.inode_bitmap(g) as u32);
        put32(d, 0x08, geo.inode_table(g) as u32);
        put16(d, 0x0C, st.free_blocks as u16);
        put16(d, 0x0E, st.free_inodes as u16);
        put16(d, 0x10, st.used_dirs as u16);
        put16(d, 0x12, BG_INODE_ZEROED);
        put16(d, 0x18, st.block_bitmap_csum as u16);
        put16(d, 0x1A, st.inode_bitmap_csum as u16);
        put16(d, 0x1C, st.itable_unused as u16);
        // bg_checksum at 0x1E is still zero here, which is what the crc covers.
        let crc = crc32c_raw(crc32c_raw(fs_seed, &g.to_le_bytes()), d);
        put16(d, 0x1E, crc as u16);
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
pub(super) fn superblock(s: &SuperInfo<'_>, group: u32) -> [u8; 1024] {
    let geo = s.geo;
    let mut b = [0u8; 1024];
    // Times are 32 bits plus an 8-bit high part; clamp to what fits.
    let t = s.timestamp.clamp(0, (1 << 40) - 1);
    let (t_lo, t_hi) = (t as u32, (t >> 32) as u8);
    put32(&mut b, 0x00, geo.inodes());
    put32(&mut b, 0x04, geo.blocks as u32);
    put32(&mut b, 0x0C, s.free_blocks as u32);
    put32(&mut b, 0x10, s.free_inodes);
    put32(&mut b, 0x14, 0); // s_first_data_block: 0 for blocks > 1 KiB
    put32(&mut b, 0x18, LOG_BLOCK_SIZE);
    put32(&mut b, 0x1C, LOG_BLOCK_SIZE); // s_log_cluster_size
    put32(&mut b, 0x20, BLOCKS_PER_GROUP as u32);
    put32(&mut b, 0x24, BLOCKS_PER_GROUP as u32); // s_clusters_per_group
    put32(&mut b, 0x28, geo.inodes_per_group);
    put32(&mut b, 0x30, t_lo); // s_wtime
    put16(&mut b, 0x36, 0xFFFF); // s_max_mnt_count: -1, no forced checks
    put16(&mut b, 0x38, EXT4_MAGIC);
    put16(&mut b, 0x3A, 1); // s_state: cleanly unmounted
    put16(&mut b, 0x3C, 1); // s_errors: continue
    put32(&mut b, 0x40, t_lo); // s_lastcheck
    put32(&mut b, 0x4C, 1); // s_rev_level: dynamic
    put32(&mut b, 0x54, FIRST_INO);
    put16(&mut b, 0x58, INODE_SIZE as u16);
    put16(&mut b, 0x5A, group as u16); // s_block_group_nr
    put32(&mut b, 0x5C, COMPAT_EXT_ATTR);
    put32(&mut b, 0x60, INCOMPAT_FILETYPE | INCOMPAT_EXTENTS);
    put32(
        &mut b,
        0x64,
        RO_COMPAT_SPARSE_SUPER
            | RO_COMPAT_LARGE_FILE
            | RO_COMPAT_HUGE_FILE
            | RO_COMPAT_DIR_NLINK
            | RO_COMPAT_EXTRA_ISIZE
            | RO_COMPAT_METADATA_CSUM,
    );
    b[0x68..0x78].copy_from_slice(&s.uuid);
    b[0x78..0x78 + s.label.len()].copy_from_slice(s.label);
    b[0xEC..0xFC].copy_from_slice(&s.hash_seed);
    b[0xFC] = HASH_HALF_MD4;
    put32(&mut b, 0x100, DEFM_XATTR_USER_ACL);
    put32(&mut b, 0x108, t_lo); // s_mkfs_time
    put32(&mut b, 0x150, (geo.blocks >> 32) as u32);
    put32(&mut b, 0x158, (s.free_blocks >> 32) as u32);
    put16(&mut b, 0x15C, EXTRA_ISIZE); // s_min_extra_isize
    put16(&mut b, 0x15E, EXTRA_ISIZE); // s_want_extra_isize
    put32(&mut b, 0x160, FLAGS_SIGNED_HASH);
    b[0x175] = CHECKSUM_TYPE_CRC32C;
    b[0x274] = t_hi; // s_wtime_hi
    b[0x276] = t_hi; // s_mkfs_time_hi
    b[0x277] = t_hi; // s_lastcheck_hi
    let crc = crc32c_raw(!0, &b[..0x3FC]);
    put32(&mut b, 0x3FC, crc);
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
