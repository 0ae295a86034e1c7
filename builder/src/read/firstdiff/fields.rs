//! Field tables of the on-disk structures `first_difference` names fields
//! of, and the comparison that walks them: ext4 (`super.rst`, `inodes.rst`,
//! `group_descr.rst` in the kernel's `Documentation/filesystems/ext4/`),
//! dm-verity (cryptsetup's `struct verity_sb`), GPT (UEFI 2.10 §5.3), PE/COFF
//! (Microsoft PE format) and FAT (Microsoft FAT specification §3).

use crate::fs::layer::sha256_digest;

/// A field's bytes for display: little-endian integers up to 8 bytes, else hex.
pub(super) fn show(bytes: &[u8]) -> String {
    if bytes.len() <= 8 && bytes.len().is_power_of_two() {
        let mut v = [0u8; 8];
        v[..bytes.len()].copy_from_slice(bytes);
        u64::from_le_bytes(v).to_string()
    } else if bytes.len() <= 32 {
        hex::encode(bytes)
    } else {
        sha256_digest(bytes)
    }
}

/// A field table: (offset, length, name); fields named in `last` (checksums
/// over the others) are reported only when nothing else differs.
pub(super) type Fields = &'static [(usize, usize, &'static str)];

/// The first field of `table` (at `base`) in which `a` and `b` differ:
/// (name, value in A, value in B).
pub(super) fn first_field(
    a: &[u8],
    b: &[u8],
    base: usize,
    table: Fields,
    last: &[&str],
) -> Option<(String, String, String)> {
    let mut deferred = None;
    for &(off, len, name) in table {
        let (x, y) = (
            a.get(base + off..base + off + len),
            b.get(base + off..base + off + len),
        );
        if x != y {
            let hit = (
                name.to_string(),
                x.map_or_else(|| "-".into(), show),
                y.map_or_else(|| "-".into(), show),
            );
            if last.contains(&name) {
                deferred = deferred.or(Some(hit));
            } else {
                return Some(hit);
            }
        }
    }
    deferred
}

/// ext4 superblock fields (`super.rst`).
pub(super) const EXT4_SUPER: Fields = &[
    (0x00, 4, "s_inodes_count"),
    (0x04, 4, "s_blocks_count_lo"),
    (0x0C, 4, "s_free_blocks_count_lo"),
    (0x10, 4, "s_free_inodes_count"),
    (0x18, 4, "s_log_block_size"),
    (0x20, 4, "s_blocks_per_group"),
    (0x28, 4, "s_inodes_per_group"),
    (0x2C, 4, "s_mtime"),
    (0x30, 4, "s_wtime"),
    (0x34, 2, "s_mnt_count"),
    (0x3A, 2, "s_state"),
    (0x40, 4, "s_lastcheck"),
    (0x5C, 4, "s_feature_compat"),
    (0x60, 4, "s_feature_incompat"),
    (0x64, 4, "s_feature_ro_compat"),
    (0x68, 16, "s_uuid"),
    (0x78, 16, "s_volume_name"),
    (0x88, 64, "s_last_mounted"),
    (0xEC, 16, "s_hash_seed"),
    (0xFC, 1, "s_def_hash_version"),
    (0x100, 4, "s_default_mount_opts"),
    (0x108, 4, "s_mkfs_time"),
    (0x150, 4, "s_blocks_count_hi"),
    (0x178, 8, "s_kbytes_written"),
    (0x270, 4, "s_checksum_seed"),
    (0x274, 1, "s_wtime_hi"),
    (0x275, 1, "s_mtime_hi"),
    (0x276, 1, "s_mkfs_time_hi"),
    (0x277, 1, "s_lastcheck_hi"),
    (0x3FC, 4, "s_checksum"),
];

/// ext4 inode fields (`inodes.rst`).
pub(super) const EXT4_INODE: Fields = &[
    (0x00, 2, "i_mode"),
    (0x02, 2, "i_uid"),
    (0x04, 4, "i_size_lo"),
    (0x08, 4, "i_atime"),
    (0x0C, 4, "i_ctime"),
    (0x10, 4, "i_mtime"),
    (0x14, 4, "i_dtime"),
    (0x18, 2, "i_gid"),
    (0x1A, 2, "i_links_count"),
    (0x1C, 4, "i_blocks_lo"),
    (0x20, 4, "i_flags"),
    (0x24, 4, "i_version"),
    (0x28, 60, "i_block"),
    (0x64, 4, "i_generation"),
    (0x68, 4, "i_file_acl_lo"),
    (0x6C, 4, "i_size_high"),
    (0x74, 2, "i_blocks_high"),
    (0x76, 2, "i_file_acl_high"),
    (0x78, 2, "i_uid_high"),
    (0x7A, 2, "i_gid_high"),
    (0x7C, 2, "i_checksum_lo"),
    (0x80, 2, "i_extra_isize"),
    (0x82, 2, "i_checksum_hi"),
    (0x84, 4, "i_ctime_extra"),
    (0x88, 4, "i_mtime_extra"),
    (0x8C, 4, "i_atime_extra"),
    (0x90, 4, "i_crtime"),
    (0x94, 4, "i_crtime_extra"),
    (0x98, 4, "i_version_hi"),
    (0x9C, 4, "i_projid"),
    (0xA0, 96, "in-inode xattrs"),
];

/// ext4 group descriptor fields (`group_descr.rst`, the 32-byte part).
pub(super) const EXT4_GROUP: Fields = &[
    (0x00, 4, "bg_block_bitmap_lo"),
    (0x04, 4, "bg_inode_bitmap_lo"),
    (0x08, 4, "bg_inode_table_lo"),
    (0x0C, 2, "bg_free_blocks_count_lo"),
    (0x0E, 2, "bg_free_inodes_count_lo"),
    (0x10, 2, "bg_used_dirs_count_lo"),
    (0x12, 2, "bg_flags"),
    (0x18, 2, "bg_block_bitmap_csum_lo"),
    (0x1A, 2, "bg_inode_bitmap_csum_lo"),
    (0x1C, 2, "bg_itable_unused_lo"),
    (0x1E, 2, "bg_checksum"),
];
pub(super) const EXT4_CHECKSUMS: &[&str] = &[
    "s_checksum",
    "i_checksum_lo",
    "i_checksum_hi",
    "bg_checksum",
    "bg_block_bitmap_csum_lo",
    "bg_inode_bitmap_csum_lo",
];

/// cryptsetup's `struct verity_sb`.
pub(super) const VERITY_SUPER: Fields = &[
    (0, 8, "signature"),
    (8, 4, "version"),
    (12, 4, "hash_type"),
    (16, 16, "uuid"),
    (32, 32, "algorithm"),
    (64, 4, "data_block_size"),
    (68, 4, "hash_block_size"),
    (72, 8, "data_blocks"),
    (80, 2, "salt_size"),
    (88, 256, "salt"),
];

/// GPT header fields (UEFI 2.10, table 5.5).
pub(super) const GPT_HEADER: Fields = &[
    (0, 8, "Signature"),
    (8, 4, "Revision"),
    (12, 4, "HeaderSize"),
    (24, 8, "MyLBA"),
    (32, 8, "AlternateLBA"),
    (40, 8, "FirstUsableLBA"),
    (48, 8, "LastUsableLBA"),
    (56, 16, "DiskGUID"),
    (72, 8, "PartitionEntryLBA"),
    (80, 4, "NumberOfPartitionEntries"),
    (84, 4, "SizeOfPartitionEntry"),
    (88, 4, "PartitionEntryArrayCRC32"),
    (16, 4, "HeaderCRC32"),
];

/// GPT partition entry fields (UEFI 2.10, table 5.6).
pub(super) const GPT_ENTRY: Fields = &[
    (0, 16, "PartitionTypeGUID"),
    (16, 16, "UniquePartitionGUID"),
    (32, 8, "StartingLBA"),
    (40, 8, "EndingLBA"),
    (48, 8, "Attributes"),
    (56, 72, "PartitionName"),
];
/// Size of one GPT partition entry.
pub(super) const GPT_ENTRY_SIZE: usize = 128;

/// COFF file header fields, from the `PE\0\0` signature's end.
pub(super) const PE_COFF: Fields = &[
    (0, 2, "Machine"),
    (2, 2, "NumberOfSections"),
    (4, 4, "TimeDateStamp"),
    (8, 4, "PointerToSymbolTable"),
    (12, 4, "NumberOfSymbols"),
    (16, 2, "SizeOfOptionalHeader"),
    (18, 2, "Characteristics"),
    // Optional header (after the 20-byte COFF header).
    (20 + 4, 4, "SizeOfCode"),
    (20 + 8, 4, "SizeOfInitializedData"),
    (20 + 16, 4, "AddressOfEntryPoint"),
    (20 + 56, 4, "SizeOfImage"),
    (20 + 60, 4, "SizeOfHeaders"),
    (20 + 64, 4, "CheckSum"),
];

/// FAT boot sector fields (FAT16 layout; Microsoft FAT specification §3).
pub(super) const FAT_BOOT: Fields = &[
    (3, 8, "BS_OEMName"),
    (11, 2, "BPB_BytsPerSec"),
    (13, 1, "BPB_SecPerClus"),
    (19, 2, "BPB_TotSec16"),
    (22, 2, "BPB_FATSz16"),
    (32, 4, "BPB_TotSec32"),
    (39, 4, "BS_VolID"),
    (43, 11, "BS_VolLab"),
];
/// The same for FAT32, whose BPB is longer (`BPB_FATSz16` is 0).
pub(super) const FAT32_BOOT: Fields = &[
    (3, 8, "BS_OEMName"),
    (11, 2, "BPB_BytsPerSec"),
    (13, 1, "BPB_SecPerClus"),
    (32, 4, "BPB_TotSec32"),
    (36, 4, "BPB_FATSz32"),
    (67, 4, "BS_VolID"),
    (71, 11, "BS_VolLab"),
];
