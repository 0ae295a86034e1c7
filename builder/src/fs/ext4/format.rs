//! Where each field of ext4's on-disk structures is: one table per
//! structure, used by the writer (`layout`, `inode`, `dir`, `xattr`) and by
//! the reader ([`super::read`]) alike. Names and offsets are the kernel's
//! (`Documentation/filesystems/ext4/`: `super.rst`, `group_descr.rst`,
//! `inodes.rst`, `ifork.rst`, `directory.rst`, `attributes.rst`); only the
//! fields kiln writes or reads are listed.

use kiln_format::{Field, Span};

/// Size of the superblock.
pub const SUPERBLOCK_SIZE: usize = 1024;

/// `s_inodes_count`.
pub const S_INODES_COUNT: Field<4> = Field::new("s_inodes_count", 0x00);
/// `s_blocks_count_lo`.
pub const S_BLOCKS_COUNT_LO: Field<4> = Field::new("s_blocks_count_lo", 0x04);
/// `s_free_blocks_count_lo`.
pub const S_FREE_BLOCKS_COUNT_LO: Field<4> = Field::new("s_free_blocks_count_lo", 0x0C);
/// `s_free_inodes_count`.
pub const S_FREE_INODES_COUNT: Field<4> = Field::new("s_free_inodes_count", 0x10);
/// `s_first_data_block`: 0 for blocks larger than 1 KiB.
pub const S_FIRST_DATA_BLOCK: Field<4> = Field::new("s_first_data_block", 0x14);
/// `s_log_block_size`: the block size is `1024 << s_log_block_size`.
pub const S_LOG_BLOCK_SIZE: Field<4> = Field::new("s_log_block_size", 0x18);
/// `s_log_cluster_size`.
pub const S_LOG_CLUSTER_SIZE: Field<4> = Field::new("s_log_cluster_size", 0x1C);
/// `s_blocks_per_group`.
pub const S_BLOCKS_PER_GROUP: Field<4> = Field::new("s_blocks_per_group", 0x20);
/// `s_clusters_per_group`.
pub const S_CLUSTERS_PER_GROUP: Field<4> = Field::new("s_clusters_per_group", 0x24);
/// `s_inodes_per_group`.
pub const S_INODES_PER_GROUP: Field<4> = Field::new("s_inodes_per_group", 0x28);
/// `s_wtime`.
pub const S_WTIME: Field<4> = Field::new("s_wtime", 0x30);
/// `s_max_mnt_count`.
pub const S_MAX_MNT_COUNT: Field<2> = Field::new("s_max_mnt_count", 0x36);
/// `s_magic`.
pub const S_MAGIC: Field<2> = Field::new("s_magic", 0x38);
/// `s_state`.
pub const S_STATE: Field<2> = Field::new("s_state", 0x3A);
/// `s_errors`.
pub const S_ERRORS: Field<2> = Field::new("s_errors", 0x3C);
/// `s_lastcheck`.
pub const S_LASTCHECK: Field<4> = Field::new("s_lastcheck", 0x40);
/// `s_rev_level`.
pub const S_REV_LEVEL: Field<4> = Field::new("s_rev_level", 0x4C);
/// `s_first_ino`.
pub const S_FIRST_INO: Field<4> = Field::new("s_first_ino", 0x54);
/// `s_inode_size`.
pub const S_INODE_SIZE: Field<2> = Field::new("s_inode_size", 0x58);
/// `s_block_group_nr`: the group this copy of the superblock is in.
pub const S_BLOCK_GROUP_NR: Field<2> = Field::new("s_block_group_nr", 0x5A);
/// `s_feature_compat`.
pub const S_FEATURE_COMPAT: Field<4> = Field::new("s_feature_compat", 0x5C);
/// `s_feature_incompat`.
pub const S_FEATURE_INCOMPAT: Field<4> = Field::new("s_feature_incompat", 0x60);
/// `s_feature_ro_compat`.
pub const S_FEATURE_RO_COMPAT: Field<4> = Field::new("s_feature_ro_compat", 0x64);
/// `s_uuid`.
pub const S_UUID: Field<16> = Field::new("s_uuid", 0x68);
/// `s_volume_name`.
pub const S_VOLUME_NAME: Field<16> = Field::new("s_volume_name", 0x78);
/// `s_hash_seed`.
pub const S_HASH_SEED: Field<16> = Field::new("s_hash_seed", 0xEC);
/// `s_def_hash_version`.
pub const S_DEF_HASH_VERSION: Field<1> = Field::new("s_def_hash_version", 0xFC);
/// `s_desc_size`: group descriptor size with the `64bit` feature.
pub const S_DESC_SIZE: Field<2> = Field::new("s_desc_size", 0xFE);
/// `s_default_mount_opts`.
pub const S_DEFAULT_MOUNT_OPTS: Field<4> = Field::new("s_default_mount_opts", 0x100);
/// `s_mkfs_time`.
pub const S_MKFS_TIME: Field<4> = Field::new("s_mkfs_time", 0x108);
/// `s_blocks_count_hi`.
pub const S_BLOCKS_COUNT_HI: Field<4> = Field::new("s_blocks_count_hi", 0x150);
/// `s_free_blocks_count_hi`.
pub const S_FREE_BLOCKS_COUNT_HI: Field<4> = Field::new("s_free_blocks_count_hi", 0x158);
/// `s_min_extra_isize`.
pub const S_MIN_EXTRA_ISIZE: Field<2> = Field::new("s_min_extra_isize", 0x15C);
/// `s_want_extra_isize`.
pub const S_WANT_EXTRA_ISIZE: Field<2> = Field::new("s_want_extra_isize", 0x15E);
/// `s_flags`.
pub const S_FLAGS: Field<4> = Field::new("s_flags", 0x160);
/// `s_checksum_type`.
pub const S_CHECKSUM_TYPE: Field<1> = Field::new("s_checksum_type", 0x175);
/// `s_checksum_seed`: the metadata_csum seed when `csum_seed` is set.
pub const S_CHECKSUM_SEED: Field<4> = Field::new("s_checksum_seed", 0x270);
/// `s_wtime_hi`.
pub const S_WTIME_HI: Field<1> = Field::new("s_wtime_hi", 0x274);
/// `s_mkfs_time_hi`.
pub const S_MKFS_TIME_HI: Field<1> = Field::new("s_mkfs_time_hi", 0x276);
/// `s_lastcheck_hi`.
pub const S_LASTCHECK_HI: Field<1> = Field::new("s_lastcheck_hi", 0x277);
/// `s_checksum`: crc32c of the superblock up to this field.
pub const S_CHECKSUM: Field<4> = Field::new("s_checksum", 0x3FC);

/// The superblock fields above, in offset order.
pub const SUPERBLOCK: &[Span] = &[
    S_INODES_COUNT.span(),
    S_BLOCKS_COUNT_LO.span(),
    S_FREE_BLOCKS_COUNT_LO.span(),
    S_FREE_INODES_COUNT.span(),
    S_FIRST_DATA_BLOCK.span(),
    S_LOG_BLOCK_SIZE.span(),
    S_LOG_CLUSTER_SIZE.span(),
    S_BLOCKS_PER_GROUP.span(),
    S_CLUSTERS_PER_GROUP.span(),
    S_INODES_PER_GROUP.span(),
    S_WTIME.span(),
    S_MAX_MNT_COUNT.span(),
    S_MAGIC.span(),
    S_STATE.span(),
    S_ERRORS.span(),
    S_LASTCHECK.span(),
    S_REV_LEVEL.span(),
    S_FIRST_INO.span(),
    S_INODE_SIZE.span(),
    S_BLOCK_GROUP_NR.span(),
    S_FEATURE_COMPAT.span(),
    S_FEATURE_INCOMPAT.span(),
    S_FEATURE_RO_COMPAT.span(),
    S_UUID.span(),
    S_VOLUME_NAME.span(),
    S_HASH_SEED.span(),
    S_DEF_HASH_VERSION.span(),
    S_DESC_SIZE.span(),
    S_DEFAULT_MOUNT_OPTS.span(),
    S_MKFS_TIME.span(),
    S_BLOCKS_COUNT_HI.span(),
    S_FREE_BLOCKS_COUNT_HI.span(),
    S_MIN_EXTRA_ISIZE.span(),
    S_WANT_EXTRA_ISIZE.span(),
    S_FLAGS.span(),
    S_CHECKSUM_TYPE.span(),
    S_CHECKSUM_SEED.span(),
    S_WTIME_HI.span(),
    S_MKFS_TIME_HI.span(),
    S_LASTCHECK_HI.span(),
    S_CHECKSUM.span(),
];

/// Size of a group descriptor without the `64bit` feature.
pub const GROUP_DESC_SIZE: usize = 32;

/// `bg_block_bitmap_lo`.
pub const BG_BLOCK_BITMAP_LO: Field<4> = Field::new("bg_block_bitmap_lo", 0x00);
/// `bg_inode_bitmap_lo`.
pub const BG_INODE_BITMAP_LO: Field<4> = Field::new("bg_inode_bitmap_lo", 0x04);
/// `bg_inode_table_lo`.
pub const BG_INODE_TABLE_LO: Field<4> = Field::new("bg_inode_table_lo", 0x08);
/// `bg_free_blocks_count_lo`.
pub const BG_FREE_BLOCKS_COUNT_LO: Field<2> = Field::new("bg_free_blocks_count_lo", 0x0C);
/// `bg_free_inodes_count_lo`.
pub const BG_FREE_INODES_COUNT_LO: Field<2> = Field::new("bg_free_inodes_count_lo", 0x0E);
/// `bg_used_dirs_count_lo`.
pub const BG_USED_DIRS_COUNT_LO: Field<2> = Field::new("bg_used_dirs_count_lo", 0x10);
/// `bg_flags`.
pub const BG_FLAGS: Field<2> = Field::new("bg_flags", 0x12);
/// `bg_block_bitmap_csum_lo`.
pub const BG_BLOCK_BITMAP_CSUM_LO: Field<2> = Field::new("bg_block_bitmap_csum_lo", 0x18);
/// `bg_inode_bitmap_csum_lo`.
pub const BG_INODE_BITMAP_CSUM_LO: Field<2> = Field::new("bg_inode_bitmap_csum_lo", 0x1A);
/// `bg_itable_unused_lo`.
pub const BG_ITABLE_UNUSED_LO: Field<2> = Field::new("bg_itable_unused_lo", 0x1C);
/// `bg_checksum`.
pub const BG_CHECKSUM: Field<2> = Field::new("bg_checksum", 0x1E);
/// `bg_inode_table_hi`: only in 64-byte (`64bit`) descriptors.
pub const BG_INODE_TABLE_HI: Field<4> = Field::new("bg_inode_table_hi", 0x28);

/// The 32-byte group descriptor's fields above, in offset order.
pub const GROUP_DESC: &[Span] = &[
    BG_BLOCK_BITMAP_LO.span(),
    BG_INODE_BITMAP_LO.span(),
    BG_INODE_TABLE_LO.span(),
    BG_FREE_BLOCKS_COUNT_LO.span(),
    BG_FREE_INODES_COUNT_LO.span(),
    BG_USED_DIRS_COUNT_LO.span(),
    BG_FLAGS.span(),
    BG_BLOCK_BITMAP_CSUM_LO.span(),
    BG_INODE_BITMAP_CSUM_LO.span(),
    BG_ITABLE_UNUSED_LO.span(),
    BG_CHECKSUM.span(),
];

/// Size of the original (revision 0) inode: the fields before `i_extra_isize`.
pub const GOOD_OLD_INODE_SIZE: usize = 128;

/// `i_mode`.
pub const I_MODE: Field<2> = Field::new("i_mode", 0x00);
/// `i_uid`: the low 16 bits.
pub const I_UID: Field<2> = Field::new("i_uid", 0x02);
/// `i_size_lo`.
pub const I_SIZE_LO: Field<4> = Field::new("i_size_lo", 0x04);
/// `i_atime`.
pub const I_ATIME: Field<4> = Field::new("i_atime", 0x08);
/// `i_ctime`.
pub const I_CTIME: Field<4> = Field::new("i_ctime", 0x0C);
/// `i_mtime`.
pub const I_MTIME: Field<4> = Field::new("i_mtime", 0x10);
/// `i_gid`: the low 16 bits.
pub const I_GID: Field<2> = Field::new("i_gid", 0x18);
/// `i_links_count`.
pub const I_LINKS_COUNT: Field<2> = Field::new("i_links_count", 0x1A);
/// `i_blocks_lo`.
pub const I_BLOCKS_LO: Field<4> = Field::new("i_blocks_lo", 0x1C);
/// `i_flags`.
pub const I_FLAGS: Field<4> = Field::new("i_flags", 0x20);
/// `i_block`: the extent tree's root, a symlink's target or a device number.
pub const I_BLOCK: Field<60> = Field::new("i_block", 0x28);
/// `i_generation`: part of the inode's checksum seed.
pub const I_GENERATION: Field<4> = Field::new("i_generation", 0x64);
/// `i_file_acl_lo`: the xattr block.
pub const I_FILE_ACL_LO: Field<4> = Field::new("i_file_acl_lo", 0x68);
/// `i_size_high`.
pub const I_SIZE_HIGH: Field<4> = Field::new("i_size_high", 0x6C);
/// `l_i_blocks_high`.
pub const I_BLOCKS_HIGH: Field<2> = Field::new("i_blocks_high", 0x74);
/// `l_i_file_acl_high`.
pub const I_FILE_ACL_HIGH: Field<2> = Field::new("i_file_acl_high", 0x76);
/// `l_i_uid_high`.
pub const I_UID_HIGH: Field<2> = Field::new("i_uid_high", 0x78);
/// `l_i_gid_high`.
pub const I_GID_HIGH: Field<2> = Field::new("i_gid_high", 0x7A);
/// `l_i_checksum_lo`.
pub const I_CHECKSUM_LO: Field<2> = Field::new("i_checksum_lo", 0x7C);
/// `i_extra_isize`: bytes of the large inode's fields after the first 128.
pub const I_EXTRA_ISIZE: Field<2> = Field::new("i_extra_isize", 0x80);
/// `i_checksum_hi`.
pub const I_CHECKSUM_HI: Field<2> = Field::new("i_checksum_hi", 0x82);
/// `i_ctime_extra`.
pub const I_CTIME_EXTRA: Field<4> = Field::new("i_ctime_extra", 0x84);
/// `i_mtime_extra`.
pub const I_MTIME_EXTRA: Field<4> = Field::new("i_mtime_extra", 0x88);
/// `i_atime_extra`.
pub const I_ATIME_EXTRA: Field<4> = Field::new("i_atime_extra", 0x8C);
/// `i_crtime`.
pub const I_CRTIME: Field<4> = Field::new("i_crtime", 0x90);
/// `i_crtime_extra`.
pub const I_CRTIME_EXTRA: Field<4> = Field::new("i_crtime_extra", 0x94);

/// The inode fields above, in offset order.
pub const INODE: &[Span] = &[
    I_MODE.span(),
    I_UID.span(),
    I_SIZE_LO.span(),
    I_ATIME.span(),
    I_CTIME.span(),
    I_MTIME.span(),
    I_GID.span(),
    I_LINKS_COUNT.span(),
    I_BLOCKS_LO.span(),
    I_FLAGS.span(),
    I_BLOCK.span(),
    I_GENERATION.span(),
    I_FILE_ACL_LO.span(),
    I_SIZE_HIGH.span(),
    I_BLOCKS_HIGH.span(),
    I_FILE_ACL_HIGH.span(),
    I_UID_HIGH.span(),
    I_GID_HIGH.span(),
    I_CHECKSUM_LO.span(),
    I_EXTRA_ISIZE.span(),
    I_CHECKSUM_HI.span(),
    I_CTIME_EXTRA.span(),
    I_MTIME_EXTRA.span(),
    I_ATIME_EXTRA.span(),
    I_CRTIME.span(),
    I_CRTIME_EXTRA.span(),
];

/// A device inode's number in `i_block`, old 8:8 encoding (offset within `i_block`).
pub const I_BLOCK_OLD_DEV: Field<4> = Field::new("i_block[0]", 0);
/// A device inode's number in `i_block`, new 12:20 encoding (offset within `i_block`).
pub const I_BLOCK_NEW_DEV: Field<4> = Field::new("i_block[1]", 4);

/// Size of an extent tree node header and of each entry after it.
pub const EXTENT_ENTRY_SIZE: usize = 12;

/// `eh_magic` of an extent tree node header.
pub const EH_MAGIC: Field<2> = Field::new("eh_magic", 0);
/// `eh_entries`: entries in use.
pub const EH_ENTRIES: Field<2> = Field::new("eh_entries", 2);
/// `eh_max`: room for entries.
pub const EH_MAX: Field<2> = Field::new("eh_max", 4);
/// `eh_depth`: 0 for a leaf.
pub const EH_DEPTH: Field<2> = Field::new("eh_depth", 6);
/// `ee_block`: a leaf entry's first logical block.
pub const EE_BLOCK: Field<4> = Field::new("ee_block", 0);
/// `ee_len`: blocks mapped; above 32768, an uninitialised extent.
pub const EE_LEN: Field<2> = Field::new("ee_len", 4);
/// `ee_start_hi`.
pub const EE_START_HI: Field<2> = Field::new("ee_start_hi", 6);
/// `ee_start_lo`.
pub const EE_START_LO: Field<4> = Field::new("ee_start_lo", 8);
/// `ei_block`: an index entry's first logical block.
pub const EI_BLOCK: Field<4> = Field::new("ei_block", 0);
/// `ei_leaf_lo`: the child node's block.
pub const EI_LEAF_LO: Field<4> = Field::new("ei_leaf_lo", 4);
/// `ei_leaf_hi`.
pub const EI_LEAF_HI: Field<2> = Field::new("ei_leaf_hi", 8);

/// `eb_checksum` of the `ext4_extent_tail` after a tree block's last
/// possible entry (offset within the tail).
pub const EB_CHECKSUM: Field<4> = Field::new("eb_checksum", 0);

/// A directory entry's header size; the name follows.
pub const DIRENT_HEADER_SIZE: usize = 8;

/// `inode` of an `ext4_dir_entry_2`; 0 for an unused entry.
pub const DE_INODE: Field<4> = Field::new("inode", 0);
/// `rec_len`: the distance to the next entry.
pub const DE_REC_LEN: Field<2> = Field::new("rec_len", 4);
/// `name_len`.
pub const DE_NAME_LEN: Field<1> = Field::new("name_len", 6);
/// `file_type`.
pub const DE_FILE_TYPE: Field<1> = Field::new("file_type", 7);

/// Size of an xattr block's header (`ext4_xattr_header`); the entries follow.
pub const XATTR_BLOCK_HEADER_SIZE: usize = 32;

/// `h_magic` of an xattr block (the in-inode area starts with the same magic).
pub const H_MAGIC: Field<4> = Field::new("h_magic", 0);
/// `h_refcount`.
pub const H_REFCOUNT: Field<4> = Field::new("h_refcount", 4);
/// `h_blocks`.
pub const H_BLOCKS: Field<4> = Field::new("h_blocks", 8);
/// `h_hash`.
pub const H_HASH: Field<4> = Field::new("h_hash", 12);
/// `h_checksum`.
pub const H_CHECKSUM: Field<4> = Field::new("h_checksum", 16);

/// Size of the `ext4_dir_entry_tail` that ends each directory block: shaped
/// as an unused entry (inode 0, `rec_len` 12, `name_len` 0, `file_type`
/// 0xDE), then the block's checksum.
pub const DIR_TAIL_SIZE: usize = 12;
/// `det_reserved_ft` of the tail: the file type that marks it.
pub const DET_RESERVED_FT: u8 = 0xDE;
/// `det_checksum` (offset within the tail).
pub const DET_CHECKSUM: Field<4> = Field::new("det_checksum", 8);

/// An xattr entry's header size; the name follows.
pub const XATTR_ENTRY_HEADER_SIZE: usize = 16;

/// `e_name_len`.
pub const E_NAME_LEN: Field<1> = Field::new("e_name_len", 0);
/// `e_name_index`: the name's prefix.
pub const E_NAME_INDEX: Field<1> = Field::new("e_name_index", 1);
/// `e_value_offs`.
pub const E_VALUE_OFFS: Field<2> = Field::new("e_value_offs", 2);
/// `e_value_inum`: the inode holding the value (`ea_inode`), else 0.
pub const E_VALUE_INUM: Field<4> = Field::new("e_value_inum", 4);
/// `e_value_size`.
pub const E_VALUE_SIZE: Field<4> = Field::new("e_value_size", 8);
/// `e_hash`.
pub const E_HASH: Field<4> = Field::new("e_hash", 12);

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_format::field::check_layout;

    #[test]
    fn tables_do_not_overlap() {
        check_layout(SUPERBLOCK, SUPERBLOCK_SIZE).unwrap();
        check_layout(GROUP_DESC, GROUP_DESC_SIZE).unwrap();
        check_layout(INODE, super::super::layout::INODE_SIZE as usize).unwrap();
        check_layout(
            &[
                EH_MAGIC.span(),
                EH_ENTRIES.span(),
                EH_MAX.span(),
                EH_DEPTH.span(),
            ],
            EXTENT_ENTRY_SIZE,
        )
        .unwrap();
        check_layout(
            &[
                EE_BLOCK.span(),
                EE_LEN.span(),
                EE_START_HI.span(),
                EE_START_LO.span(),
            ],
            EXTENT_ENTRY_SIZE,
        )
        .unwrap();
        check_layout(
            &[EI_BLOCK.span(), EI_LEAF_LO.span(), EI_LEAF_HI.span()],
            EXTENT_ENTRY_SIZE,
        )
        .unwrap();
        check_layout(
            &[
                DE_INODE.span(),
                DE_REC_LEN.span(),
                DE_NAME_LEN.span(),
                DE_FILE_TYPE.span(),
            ],
            DIRENT_HEADER_SIZE,
        )
        .unwrap();
        check_layout(
            &[
                H_MAGIC.span(),
                H_REFCOUNT.span(),
                H_BLOCKS.span(),
                H_HASH.span(),
                H_CHECKSUM.span(),
            ],
            XATTR_BLOCK_HEADER_SIZE,
        )
        .unwrap();
        check_layout(
            &[
                E_NAME_LEN.span(),
                E_NAME_INDEX.span(),
                E_VALUE_OFFS.span(),
                E_VALUE_INUM.span(),
                E_VALUE_SIZE.span(),
                E_HASH.span(),
            ],
            XATTR_ENTRY_HEADER_SIZE,
        )
        .unwrap();
    }
}
