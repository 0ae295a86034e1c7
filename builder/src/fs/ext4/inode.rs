//! Inode records and extent trees.
//!
//! Field offsets are declared in [`super::format`]. References: `inodes.rst`
//! (`i_blocks` units, extra timestamp bits, device numbers in `i_block`) and
//! `ifork.rst` (extent header, index and leaf entries, the checksum tail of
//! tree blocks) in the kernel's `Documentation/filesystems/ext4/`.

use super::format::*;
use super::layout::{crc32c_raw, BLOCK_SIZE, EXTRA_ISIZE, INODE_SIZE};

/// `i_flags`: the inode maps its blocks with an extent tree.
pub(super) const EXTENTS_FL: u32 = 0x0008_0000;
/// Size of `i_block`.
pub(super) const I_BLOCK_LEN: usize = I_BLOCK.width();
/// Bytes after `i_extra_isize` where in-inode xattrs live.
pub(super) const IBODY_XATTR_LEN: usize =
    INODE_SIZE as usize - GOOD_OLD_INODE_SIZE - EXTRA_ISIZE as usize;
/// Longest run one initialised extent can map.
pub(super) const MAX_EXTENT_LEN: u64 = 32768;

/// `eh_magic`.
pub(super) const EXTENT_MAGIC: u16 = 0xF30A;
/// Header and entries are 12 bytes each.
const ENTRY: usize = EXTENT_ENTRY_SIZE;
/// Entries in the root node inside `i_block`.
const ROOT_ENTRIES: usize = (I_BLOCK_LEN - ENTRY) / ENTRY;
/// Entries in a tree block, leaving room for the 4-byte checksum tail.
const BLOCK_ENTRIES: usize = (BLOCK_SIZE as usize - ENTRY) / ENTRY;

/// One extent: `len` blocks at logical block `lblk` live at physical block `pblk`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Extent {
    pub lblk: u32,
    pub pblk: u64,
    pub len: u16,
}

/// The crc32c seed of one inode's checksums: fs seed, inode number, generation (0).
pub(super) fn inode_seed(fs_seed: u32, ino: u32) -> u32 {
    crc32c_raw(crc32c_raw(fs_seed, &ino.to_le_bytes()), &0u32.to_le_bytes())
}

/// Seconds as ext4 stores them: the low 32 bits (signed) plus two epoch bits
/// in the `_extra` field (nanoseconds are always 0). Clamped to the range ext4
/// can represent (1901..2446).
pub(super) fn encode_time(secs: i64) -> (u32, u32) {
    let secs = secs.clamp(-(1 << 31), (1 << 34) - (1 << 31) - 1);
    let lo = secs as i32;
    let extra = ((secs - i64::from(lo)) >> 32) as u32 & 3;
    (lo as u32, extra)
}

/// `i_block` of a device inode, encoded as the kernel does (`ext4_write_inode`):
/// old 16-bit encoding in word 0 when major and minor fit in 8 bits, else the
/// new 32-bit encoding in word 1.
pub(super) fn device_i_block(major: u32, minor: u32) -> [u8; I_BLOCK_LEN] {
    let mut b = [0u8; I_BLOCK_LEN];
    if major < 256 && minor < 256 {
        I_BLOCK_OLD_DEV.put(&mut b, (major << 8) | minor);
    } else {
        I_BLOCK_NEW_DEV.put(
            &mut b,
            (minor & 0xFF) | (major << 8) | ((minor & !0xFF) << 12),
        );
    }
    b
}

/// Everything that goes into one inode record.
pub(super) struct InodeRecord<'a> {
    /// `st_mode` (type and permission bits).
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub links: u16,
    /// atime, ctime, mtime and crtime.
    pub time: i64,
    /// Blocks used, data + extent tree + xattr block, in 4 KiB units.
    pub fs_blocks: u64,
    pub flags: u32,
    pub i_block: [u8; I_BLOCK_LEN],
    /// xattr block, 0 for none.
    pub file_acl: u64,
    /// In-inode xattr area (magic, entries, values), if any.
    pub ibody_xattrs: Option<&'a [u8; IBODY_XATTR_LEN]>,
}

/// The 256-byte on-disk inode with its metadata_csum checksum.
pub(super) fn encode(r: &InodeRecord<'_>, seed: u32) -> [u8; INODE_SIZE as usize] {
    let mut b = [0u8; INODE_SIZE as usize];
    let (t, t_extra) = encode_time(r.time);
    // i_blocks counts 512-byte sectors (huge_file without HUGE_FILE_FL: 48 bits).
    let sectors = r.fs_blocks * (BLOCK_SIZE / 512);
    I_MODE.put(&mut b, r.mode);
    I_UID.put(&mut b, r.uid as u16);
    I_SIZE_LO.put(&mut b, r.size as u32);
    I_ATIME.put(&mut b, t);
    I_CTIME.put(&mut b, t);
    I_MTIME.put(&mut b, t);
    I_GID.put(&mut b, r.gid as u16);
    I_LINKS_COUNT.put(&mut b, r.links);
    I_BLOCKS_LO.put(&mut b, sectors as u32);
    I_FLAGS.put(&mut b, r.flags);
    I_BLOCK.put_bytes(&mut b, &r.i_block);
    I_FILE_ACL_LO.put(&mut b, r.file_acl as u32);
    I_SIZE_HIGH.put(&mut b, (r.size >> 32) as u32);
    I_BLOCKS_HIGH.put(&mut b, (sectors >> 32) as u16);
    I_FILE_ACL_HIGH.put(&mut b, (r.file_acl >> 32) as u16);
    I_UID_HIGH.put(&mut b, (r.uid >> 16) as u16);
    I_GID_HIGH.put(&mut b, (r.gid >> 16) as u16);
    I_EXTRA_ISIZE.put(&mut b, EXTRA_ISIZE);
    I_CTIME_EXTRA.put(&mut b, t_extra);
    I_MTIME_EXTRA.put(&mut b, t_extra);
    I_ATIME_EXTRA.put(&mut b, t_extra);
    I_CRTIME.put(&mut b, t);
    I_CRTIME_EXTRA.put(&mut b, t_extra);
    if let Some(x) = r.ibody_xattrs {
        b[GOOD_OLD_INODE_SIZE + EXTRA_ISIZE as usize..].copy_from_slice(x);
    }
    // Checksum over the whole inode with both checksum fields still zero.
    let crc = crc32c_raw(seed, &b);
    I_CHECKSUM_LO.put(&mut b, crc as u16);
    I_CHECKSUM_HI.put(&mut b, (crc >> 16) as u16);
    b
}

/// Tree blocks (leaves and index blocks) an extent tree of `n` extents needs
/// beyond the root in `i_block`.
pub(super) fn tree_blocks(n: usize) -> usize {
    let mut total = 0;
    let mut entries = n;
    while entries > ROOT_ENTRIES {
        entries = entries.div_ceil(BLOCK_ENTRIES);
        total += entries;
    }
    total
}

fn put_header(b: &mut [u8], entries: usize, max: usize, depth: u16) {
    EH_MAGIC.put(b, EXTENT_MAGIC);
    EH_ENTRIES.put(b, entries as u16);
    EH_MAX.put(b, max as u16);
    EH_DEPTH.put(b, depth);
}

fn put_leaf_entry(b: &mut [u8], e: &Extent) {
    EE_BLOCK.put(b, e.lblk);
    EE_LEN.put(b, e.len);
    EE_START_HI.put(b, (e.pblk >> 32) as u16);
    EE_START_LO.put(b, e.pblk as u32);
}

fn put_index_entry(b: &mut [u8], lblk: u32, child: u64) {
    EI_BLOCK.put(b, lblk);
    EI_LEAF_LO.put(b, child as u32);
    EI_LEAF_HI.put(b, (child >> 32) as u16);
}

/// Writes the extent tree of `extents` into `img`, bottom-up with full nodes
/// (so all leaves are at the same depth and the tree is as shallow and narrow
/// as possible), using `blocks` (exactly [`tree_blocks`] of them) for the tree
/// blocks. Returns the root node for `i_block`.
pub(super) fn write_extent_tree(
    img: &mut [u8],
    extents: &[Extent],
    blocks: &[u64],
    seed: u32,
) -> [u8; I_BLOCK_LEN] {
    debug_assert_eq!(blocks.len(), tree_blocks(extents.len()));
    let mut root = [0u8; I_BLOCK_LEN];
    if extents.len() <= ROOT_ENTRIES {
        put_header(&mut root, extents.len(), ROOT_ENTRIES, 0);
        for (i, e) in extents.iter().enumerate() {
            put_leaf_entry(&mut root[ENTRY * (i + 1)..], e);
        }
        return root;
    }
    let mut free = blocks.iter().copied();
    // (first logical block, block number) of the nodes of the level just written.
    let mut level: Vec<(u32, u64)> = Vec::new();
    for chunk in extents.chunks(BLOCK_ENTRIES) {
        // Cannot fail: `blocks` holds one block per node (debug-asserted above).
        let blk = free.next().unwrap_or_default();
        let node = tree_node(img, blk);
        put_header(node, chunk.len(), BLOCK_ENTRIES, 0);
        for (i, e) in chunk.iter().enumerate() {
            put_leaf_entry(&mut node[ENTRY * (i + 1)..], e);
        }
        seal_tree_block(node, seed);
        level.push((chunk[0].lblk, blk));
    }
    let mut depth = 1u16;
    while level.len() > ROOT_ENTRIES {
        let mut up = Vec::with_capacity(level.len().div_ceil(BLOCK_ENTRIES));
        for chunk in level.chunks(BLOCK_ENTRIES) {
            let blk = free.next().unwrap_or_default();
            let node = tree_node(img, blk);
            put_header(node, chunk.len(), BLOCK_ENTRIES, depth);
            for (i, &(lblk, child)) in chunk.iter().enumerate() {
                put_index_entry(&mut node[ENTRY * (i + 1)..], lblk, child);
            }
            seal_tree_block(node, seed);
            up.push((chunk[0].0, blk));
        }
        level = up;
        depth += 1;
    }
    put_header(&mut root, level.len(), ROOT_ENTRIES, depth);
    for (i, &(lblk, child)) in level.iter().enumerate() {
        put_index_entry(&mut root[ENTRY * (i + 1)..], lblk, child);
    }
    root
}

fn tree_node(img: &mut [u8], blk: u64) -> &mut [u8] {
    let start = (blk * BLOCK_SIZE) as usize;
    &mut img[start..start + BLOCK_SIZE as usize]
}

/// The `ext4_extent_tail` right after the last possible entry.
fn seal_tree_block(node: &mut [u8], seed: u32) {
    let tail = ENTRY + BLOCK_ENTRIES * ENTRY;
    let crc = crc32c_raw(seed, &node[..tail]);
    EB_CHECKSUM.put(&mut node[tail..], crc);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_encoding_table() {
        for (secs, want) in [
            (0, (0, 0)),
            (1_700_000_000, (1_700_000_000, 0)),
            (-1, (u32::MAX, 0)),
            ((1 << 31) + 5, ((1u32 << 31) + 5, 1)),
            (1 << 32, (0, 1)),
            (i64::MAX, (i32::MAX as u32, 3)),
        ] {
            assert_eq!(encode_time(secs), want, "{secs}");
        }
    }

    #[test]
    fn device_encoding_table() {
        let word = |b: &[u8; I_BLOCK_LEN], i: usize| {
            u32::from_le_bytes(b[i * 4..i * 4 + 4].try_into().unwrap())
        };
        let null = device_i_block(1, 3);
        assert_eq!((word(&null, 0), word(&null, 1)), (0x0103, 0));
        let big = device_i_block(259, 70000);
        assert_eq!(word(&big, 0), 0);
        assert_eq!(
            word(&big, 1),
            (70000 & 0xFF) | (259 << 8) | ((70000 & !0xFF) << 12)
        );
    }

    #[test]
    fn tree_block_counts() {
        assert_eq!(tree_blocks(0), 0);
        assert_eq!(tree_blocks(4), 0);
        assert_eq!(tree_blocks(5), 1);
        assert_eq!(tree_blocks(340 * 4), 4);
        assert_eq!(tree_blocks(340 * 4 + 1), 5 + 1);
    }
}
