//! Where each field of ext4's on-disk structures is: one table per
//! structure, used by the writer (`layout`, `inode`, `dir`, `xattr`) and by
//! the reader ([`super::read`]) alike. Names and offsets are the kernel's
//! (`Documentation/filesystems/ext4/`: `super.rst`, `group_descr.rst`,
//! `inodes.rst`, `ifork.rst`, `directory.rst`, `attributes.rst`); only the
//! fields kiln writes or reads are listed.

use kiln_format::Field;

/// Size of the superblock.
pub const SUPERBLOCK_SIZE: usize = 1024;

/// `s_inodes_count`.
pub const S_INODES_COUNT: Field = Field::new("s_inodes_count", 0x00, 4);
/// `s_blocks_count_lo`.
pub const S_BLOCKS_COUNT_LO: Field = Field::new("s_blocks_count_lo", 0x04, 4);
/// `s_free_blocks_count_lo`.
pub const S_FREE_BLOCKS_COUNT_LO: Field = Field::new("s_free_blocks_count_lo", 0x0C, 4);
/// `s_free_inodes_count`.
pub const S_FREE_INODES_COUNT: Field = Field::new("s_free_inodes_count", 0x10, 4);
/// `s_first_data_block`: 0 for blocks larger than 1 KiB.
pub const S_FIRST_DATA_BLOCK: Field = Field::new("s_first_data_block", 0x14, 4);
/// `s_log_block_size`: the block size is `1024 << s_log_block_size`.
pub const S_LOG_BLOCK_SIZE: Field = Field::new("s_log_block_size", 0x18, 4);
/// `s_log_cluster_size`.
pub const S_LOG_CLUSTER_SIZE: Field = Field::new("s_log_cluster_size", 0x1C, 4);
/// `s_blocks_per_group`.
pub const S_BLOCKS_PER_GROUP: Field = Field::new("s_blocks_per_group", 0x20, 4);
/// `s_clusters_per_group`.
pub const S_CLUSTERS_PER_GROUP: Field = Field::new("s_clusters_per_group", 0x24, 4);
/// `s_inodes_per_group`.
pub const S_INODES_PER_GROUP: Field = Field::new("s_inodes_per_group", 0x28, 4);
/// `s_wtime`.
pub const S_WTIME: Field = Field::new("s_wtime", 0x30, 4);
/// `s_max_mnt_count`.
pub const S_MAX_MNT_COUNT: Field = Field::new("s_max_mnt_count", 0x36, 2);
/// `s_magic`.
pub const S_MAGIC: Field = Field::new("s_magic", 0x38, 2);
/// `s_state`.
pub const S_STATE: Field = Field::new("s_state", 0x3A, 2);
/// `s_errors`.
pub const S_ERRORS: Field = Field::new("s_errors", 0x3C, 2);
/// `s_lastcheck`.
pub const S_LASTCHECK: Field = Field::new("s_lastcheck", 0x40, 4);
/// `s_rev_level`.
pub const S_REV_LEVEL: Field = Field::new("s_rev_level", 0x4C, 4);
/// `s_first_ino`.
pub const S_FIRST_INO: Field = Field::new("s_first_ino", 0x54, 4);
/// `s_inode_size`.
pub const S_INODE_SIZE: Field = Field::new("s_inode_size", 0x58, 2);
/// `s_block_group_nr`: the group this copy of the superblock is in.
pub const S_BLOCK_GROUP_NR: Field = Field::new("s_block_group_nr", 0x5A, 2);
/// `s_feature_compat`.
pub const S_FEATURE_COMPAT: Field = Field::new("s_feature_compat", 0x5C, 4);
/// `s_feature_incompat`.
pub const S_FEATURE_INCOMPAT: Field = Field::new("s_feature_incompat", 0x60, 4);
/// `s_feature_ro_compat`.
pub const S_FEATURE_RO_COMPAT: Field = Field::new("s_feature_ro_compat", 0x64, 4);
/// `s_uuid`.
pub const S_UUID: Field = Field::new("s_uuid", 0x68, 16);
/// `s_volume_name`.
pub const S_VOLUME_NAME: Field = Field::new("s_volume_name", 0x78, 16);
/// `s_hash_seed`.
pub const S_HASH_SEED: Field = Field::new("s_hash_seed", 0xEC, 16);
/// `s_def_hash_version`.
pub const S_DEF_HASH_VERSION: Field = Field::new("s_def_hash_version", 0xFC, 1);
/// `s_desc_size`: group descriptor size with the `64bit` feature.
pub const S_DESC_SIZE: Field = Field::new("s_desc_size", 0xFE, 2);
/// `s_default_mount_opts`.
pub const S_DEFAULT_MOUNT_OPTS: Field = Field::new("s_default_mount_opts", 0x100, 4);
/// `s_mkfs_time`.
pub const S_MKFS_TIME: Field = Field::new("s_mkfs_time", 0x108, 4);
/// `s_blocks_count_hi`.
pub const S_BLOCKS_COUNT_HI: Field = Field::new("s_blocks_count_hi", 0x150, 4);
/// `s_free_blocks_count_hi`.
pub const S_FREE_BLOCKS_COUNT_HI: Field = Field::new("s_free_blocks_count_hi", 0x158, 4);
/// `s_min_extra_isize`.
pub const S_MIN_EXTRA_ISIZE: Field = Field::new("s_min_extra_isize", 0x15C, 2);
/// `s_want_extra_isize`.
pub const S_WANT_EXTRA_ISIZE: Field = Field::new("s_want_extra_isize", 0x15E, 2);
/// `s_flags`.
pub const S_FLAGS: Field = Field::new("s_flags", 0x160, 4);
/// `s_checksum_type`.
pub const S_CHECKSUM_TYPE: Field = Field::new("s_checksum_type", 0x175, 1);
/// `s_checksum_seed`: the metadata_csum seed when `csum_seed` is set.
pub const S_CHECKSUM_SEED: Field = Field::new("s_checksum_seed", 0x270, 4);
/// `s_wtime_hi`.
pub const S_WTIME_HI: Field = Field::new("s_wtime_hi", 0x274, 1);
/// `s_mkfs_time_hi`.
pub const S_MKFS_TIME_HI: Field = Field::new("s_mkfs_time_hi", 0x276, 1);
/// `s_lastcheck_hi`.
pub const S_LASTCHECK_HI: Field = Field::new("s_lastcheck_hi", 0x277, 1);
/// `s_checksum`: crc32c of the superblock up to this field.
pub const S_CHECKSUM: Field = Field::new("s_checksum", 0x3FC, 4);

/// The superblock fields above, in offset order.
pub const SUPERBLOCK: &[Field] = &[
    S_INODES_COUNT,
    S_BLOCKS_COUNT_LO,
    S_FREE_BLOCKS_COUNT_LO,
    S_FREE_INODES_COUNT,
    S_FIRST_DATA_BLOCK,
    S_LOG_BLOCK_SIZE,
    S_LOG_CLUSTER_SIZE,
    S_BLOCKS_PER_GROUP,
    S_CLUSTERS_PER_GROUP,
    S_INODES_PER_GROUP,
    S_WTIME,
    S_MAX_MNT_COUNT,
    S_MAGIC,
    S_STATE,
    S_ERRORS,
    S_LASTCHECK,
    S_REV_LEVEL,
    S_FIRST_INO,
    S_INODE_SIZE,
    S_BLOCK_GROUP_NR,
    S_FEATURE_COMPAT,
    S_FEATURE_INCOMPAT,
    S_FEATURE_RO_COMPAT,
    S_UUID,
    S_VOLUME_NAME,
    S_HASH_SEED,
    S_DEF_HASH_VERSION,
    S_DESC_SIZE,
    S_DEFAULT_MOUNT_OPTS,
    S_MKFS_TIME,
    S_BLOCKS_COUNT_HI,
    S_FREE_BLOCKS_COUNT_HI,
    S_MIN_EXTRA_ISIZE,
    S_WANT_EXTRA_ISIZE,
    S_FLAGS,
    S_CHECKSUM_TYPE,
    S_CHECKSUM_SEED,
    S_WTIME_HI,
    S_MKFS_TIME_HI,
    S_LASTCHECK_HI,
    S_CHECKSUM,
];

/// Size of a group descriptor without the `64bit` feature.
pub const GROUP_DESC_SIZE: usize = 32;

/// `bg_block_bitmap_lo`.
pub const BG_BLOCK_BITMAP_LO: Field = Field::new("bg_block_bitmap_lo", 0x00, 4);
/// `bg_inode_bitmap_lo`.
pub const BG_INODE_BITMAP_LO: Field = Field::new("bg_inode_bitmap_lo", 0x04, 4);
/// `bg_inode_table_lo`.
pub const BG_INODE_TABLE_LO: Field = Field::new("bg_inode_table_lo", 0x08, 4);
/// `bg_free_blocks_count_lo`.
pub const BG_FREE_BLOCKS_COUNT_LO: Field = Field::new("bg_free_blocks_count_lo", 0x0C, 2);
/// `bg_free_inodes_count_lo`.
pub const BG_FREE_INODES_COUNT_LO: Field = Field::new("bg_free_inodes_count_lo", 0x0E, 2);
/// `bg_used_dirs_count_lo`.
pub const BG_USED_DIRS_COUNT_LO: Field = Field::new("bg_used_dirs_count_lo", 0x10, 2);
/// `bg_flags`.
pub const BG_FLAGS: Field = Field::new("bg_flags", 0x12, 2);
/// `bg_block_bitmap_csum_lo`.
pub const BG_BLOCK_BITMAP_CSUM_LO: Field = Field::new("bg_block_bitmap_csum_lo", 0x18, 2);
/// `bg_inode_bitmap_csum_lo`.
pub const BG_INODE_BITMAP_CSUM_LO: Field = Field::new("bg_inode_bitmap_csum_lo", 0x1A, 2);
/// `bg_itable_unused_lo`.
pub const BG_ITABLE_UNUSED_LO: Field = Field::new("bg_itable_unused_lo", 0x1C, 2);
/// `bg_checksum`.
pub const BG_CHECKSUM: Field = Field::new("bg_checksum", 0x1E, 2);
/// `bg_inode_table_hi`: only in 64-byte (`64bit`) descriptors.
pub const BG_INODE_TABLE_HI: Field = Field::new("bg_inode_table_hi", 0x28, 4);

/// The 32-byte group descriptor's fields above, in offset order.
pub const GROUP_DESC: &[Field] = &[
    BG_BLOCK_BITMAP_LO,
    BG_INODE_BITMAP_LO,
    BG_INODE_TABLE_LO,
    BG_FREE_BLOCKS_COUNT_LO,
    BG_FREE_INODES_COUNT_LO,
    BG_USED_DIRS_COUNT_LO,
    BG_FLAGS,
    BG_BLOCK_BITMAP_CSUM_LO,
    BG_INODE_BITMAP_CSUM_LO,
    BG_ITABLE_UNUSED_LO,
    BG_CHECKSUM,
];

/// Size of the original (revision 0) inode: the fields before `i_extra_isize`.
pub const GOOD_OLD_INODE_SIZE: usize = 128;

/// `i_mode`.
pub const I_MODE: Field = Field::new("i_mode", 0x00, 2);
/// `i_uid`: the low 16 bits.
pub const I_UID: Field = Field::new("i_uid", 0x02, 2);
/// `i_size_lo`.
pub const I_SIZE_LO: Field = Field::new("i_size_lo", 0x04, 4);
/// `i_atime`.
pub const I_ATIME: Field = Field::new("i_atime", 0x08, 4);
/// `i_ctime`.
pub const I_CTIME: Field = Field::new("i_ctime", 0x0C, 4);
/// `i_mtime`.
pub const I_MTIME: Field = Field::new("i_mtime", 0x10, 4);
/// `i_gid`: the low 16 bits.
pub const I_GID: Field = Field::new("i_gid", 0x18, 2);
/// `i_links_count`.
pub const I_LINKS_COUNT: Field = Field::new("i_links_count", 0x1A, 2);
/// `i_blocks_lo`.
pub const I_BLOCKS_LO: Field = Field::new("i_blocks_lo", 0x1C, 4);
/// `i_flags`.
pub const I_FLAGS: Field = Field::new("i_flags", 0x20, 4);
/// `i_block`: the extent tree's root, a symlink's target or a device number.
pub const I_BLOCK: Field = Field::new("i_block", 0x28, 60);
/// `i_generation`: part of the inode's checksum seed.
pub const I_GENERATION: Field = Field::new("i_generation", 0x64, 4);
/// `i_file_acl_lo`: the xattr block.
pub const I_FILE_ACL_LO: Field = Field::new("i_file_acl_lo", 0x68, 4);
/// `i_size_high`.
pub const I_SIZE_HIGH: Field = Field::new("i_size_high", 0x6C, 4);
/// `l_i_blocks_high`.
pub const I_BLOCKS_HIGH: Field = Field::new("i_blocks_high", 0x74, 2);
/// `l_i_file_acl_high`.
pub const I_FILE_ACL_HIGH: Field = Field::new("i_file_acl_high", 0x76, 2);
/// `l_i_uid_high`.
pub const I_UID_HIGH: Field = Field::new("i_uid_high", 0x78, 2);
/// `l_i_gid_high`.
pub const I_GID_HIGH: Field = Field::new("i_gid_high", 0x7A, 2);
/// `l_i_checksum_lo`.
pub const I_CHECKSUM_LO: Field = Field::new("i_checksum_lo", 0x7C, 2);
/// `i_extra_isize`: bytes of the large inode's fields after the first 128.
pub const I_EXTRA_ISIZE: Field = Field::new("i_extra_isize", 0x80, 2);
/// `i_checksum_hi`.
pub const I_CHECKSUM_HI: Field = Field::new("i_checksum_hi", 0x82, 2);
/// `i_ctime_extra`.
pub const I_CTIME_EXTRA: Field = Field::new("i_ctime_extra", 0x84, 4);
/// `i_mtime_extra`.
pub const I_MTIME_EXTRA: Field = Field::new("i_mtime_extra", 0x88, 4);
/// `i_atime_extra`.
pub const I_ATIME_EXTRA: Field = Field::new("i_atime_extra", 0x8C, 4);
/// `i_crtime`.
pub const I_CRTIME: Field = Field::new("i_crtime", 0x90, 4);
/// `i_crtime_extra`.
pub const I_CRTIME_EXTRA: Field = Field::new("i_crtime_extra", 0x94, 4);

/// The inode fields above, in offset order.
pub const INODE: &[Field] = &[
    I_MODE,
    I_UID,
    I_SIZE_LO,
    I_ATIME,
    I_CTIME,
    I_MTIME,
    I_GID,
    I_LINKS_COUNT,
    I_BLOCKS_LO,
    I_FLAGS,
    I_BLOCK,
    I_GENERATION,
    I_FILE_ACL_LO,
    I_SIZE_HIGH,
    I_BLOCKS_HIGH,
    I_FILE_ACL_HIGH,
    I_UID_HIGH,
    I_GID_HIGH,
    I_CHECKSUM_LO,
    I_EXTRA_ISIZE,
    I_CHECKSUM_HI,
    I_CTIME_EXTRA,
    I_MTIME_EXTRA,
    I_ATIME_EXTRA,
    I_CRTIME,
    I_CRTIME_EXTRA,
];

/// A device inode's number in `i_block`, old 8:8 encoding (offset within `i_block`).
pub const I_BLOCK_OLD_DEV: Field = Field::new("i_block[0]", 0, 4);
/// A device inode's number in `i_block`, new 12:20 encoding (offset within `i_block`).
pub const I_BLOCK_NEW_DEV: Field = Field::new("i_block[1]", 4, 4);

/// Size of an extent tree node header and of each entry after it.
pub const EXTENT_ENTRY_SIZE: usize = 12;

/// `eh_magic` of an extent tree node header.
pub const EH_MAGIC: Field = Field::new("eh_magic", 0, 2);
/// `eh_entries`: entries in use.
pub const EH_ENTRIES: Field = Field::new("eh_entries", 2, 2);
/// `eh_max`: room for entries.
pub const EH_MAX: Field = Field::new("eh_max", 4, 2);
/// `eh_depth`: 0 for a leaf.
pub const EH_DEPTH: Field = Field::new("eh_depth", 6, 2);
/// `ee_block`: a leaf entry's first logical block.
pub const EE_BLOCK: Field = Field::new("ee_block", 0, 4);
/// `ee_len`: blocks mapped; above 32768, an uninitialised extent.
pub const EE_LEN: Field = Field::new("ee_len", 4, 2);
/// `ee_start_hi`.
pub const EE_START_HI: Field = Field::new("ee_start_hi", 6, 2);
/// `ee_start_lo`.
pub const EE_START_LO: Field = Field::new("ee_start_lo", 8, 4);
/// `ei_block`: an index entry's first logical block.
pub const EI_BLOCK: Field = Field::new("ei_block", 0, 4);
/// `ei_leaf_lo`: the child node's block.
pub const EI_LEAF_LO: Field = Field::new("ei_leaf_lo", 4, 4);
/// `ei_leaf_hi`.
pub const EI_LEAF_HI: Field = Field::new("ei_leaf_hi", 8, 2);

/// `eb_checksum` of the `ext4_extent_tail` after a tree block's last
/// possible entry (offset within the tail).
pub const EB_CHECKSUM: Field = Field::new("eb_checksum", 0, 4);

/// A directory entry's header size; the name follows.
pub const DIRENT_HEADER_SIZE: usize = 8;

/// `inode` of an `ext4_dir_entry_2`; 0 for an unused entry.
pub const DE_INODE: Field = Field::new("inode", 0, 4);
/// `rec_len`: the distance to the next entry.
pub const DE_REC_LEN: Field = Field::new("rec_len", 4, 2);
/// `name_len`.
pub const DE_NAME_LEN: Field = Field::new("name_len", 6, 1);
/// `file_type`.
pub const DE_FILE_TYPE: Field = Field::new("file_type", 7, 1);

/// Size of an xattr block's header (`ext4_xattr_header`); the entries follow.
pub const XATTR_BLOCK_HEADER_SIZE: usize = 32;

/// `h_magic` of an xattr block (the in-inode area starts with the same magic).
pub const H_MAGIC: Field = Field::new("h_magic", 0, 4);
/// `h_refcount`.
pub const H_REFCOUNT: Field = Field::new("h_refcount", 4, 4);
/// `h_blocks`.
pub const H_BLOCKS: Field = Field::new("h_blocks", 8, 4);
/// `h_hash`.
pub const H_HASH: Field = Field::new("h_hash", 12, 4);
/// `h_checksum`.
pub const H_CHECKSUM: Field = Field::new("h_checksum", 16, 4);

/// Size of the `ext4_dir_entry_tail` that ends each directory block: shaped
/// as an unused entry (inode 0, `rec_len` 12, `name_len` 0, `file_type`
/// 0xDE), then the block's checksum.
pub const DIR_TAIL_SIZE: usize = 12;
/// `det_reserved_ft` of the tail: the file type that marks it.
pub const DET_RESERVED_FT: u8 = 0xDE;
/// `det_checksum` (offset within the tail).
pub const DET_CHECKSUM: Field = Field::new("det_checksum", 8, 4);

/// An xattr entry's header size; the name follows.
pub const XATTR_ENTRY_HEADER_SIZE: usize = 16;

/// `e_name_len`.
pub const E_NAME_LEN: Field = Field::new("e_name_len", 0, 1);
/// `e_name_index`: the name's prefix.
pub const E_NAME_INDEX: Field = Field::new("e_name_index", 1, 1);
/// `e_value_offs`.
pub const E_VALUE_OFFS: Field = Field::new("e_value_offs", 2, 2);
/// `e_value_inum`: the inode holding the value (`ea_inode`), else 0.
pub const E_VALUE_INUM: Field = Field::new("e_value_inum", 4, 4);
/// `e_value_size`.
pub const E_VALUE_SIZE: Field = Field::new("e_value_size", 8, 4);
/// `e_hash`.
pub const E_HASH: Field = Field::new("e_hash", 12, 4);

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_format::field::check_layout;

    #[test]
    fn tables_do_not_overlap() {
        check_layout(SUPERBLOCK, SUPERBLOCK_SIZE).unwrap();
        check_layout(GROUP_DESC, GROUP_DESC_SIZE).unwrap();
        check_layout(INODE, super::super::layout::INODE_SIZE as usize).unwrap();
        check_layout(&[EH_MAGIC, EH_ENTRIES, EH_MAX, EH_DEPTH], EXTENT_ENTRY_SIZE).unwrap();
        check_layout(
            &[EE_BLOCK, EE_LEN, EE_START_HI, EE_START_LO],
            EXTENT_ENTRY_SIZE,
        )
        .unwrap();
        check_layout(&[EI_BLOCK, EI_LEAF_LO, EI_LEAF_HI], EXTENT_ENTRY_SIZE).unwrap();
        check_layout(
            &[DE_INODE, DE_REC_LEN, DE_NAME_LEN, DE_FILE_TYPE],
            DIRENT_HEADER_SIZE,
        )
        .unwrap();
        check_layout(
            &[H_MAGIC, H_REFCOUNT, H_BLOCKS, H_HASH, H_CHECKSUM],
            XATTR_BLOCK_HEADER_SIZE,
        )
        .unwrap();
        check_layout(
            &[
                E_NAME_LEN,
                E_NAME_INDEX,
                E_VALUE_OFFS,
                E_VALUE_INUM,
                E_VALUE_SIZE,
                E_HASH,
            ],
            XATTR_ENTRY_HEADER_SIZE,
        )
        .unwrap();
    }
}
