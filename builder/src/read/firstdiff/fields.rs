//! Field tables of the on-disk structures `first_difference` names fields
//! of, and the comparison that walks them: ext4 (`super.rst`, `inodes.rst`,
//! `group_descr.rst` in the kernel's `Documentation/filesystems/ext4/`),
//! dm-verity (cryptsetup's `struct verity_sb`), GPT (UEFI 2.10 §5.3), PE/COFF
//! (Microsoft PE format) and FAT (Microsoft FAT specification §3).

use crate::fs::layer::sha256_digest;

/// The layouts kiln declares once elsewhere, compared field by field here:
/// ext4 (`fs::ext4::format`, the fields kiln writes), the GPT header and
/// entry and the dm-verity superblock (`kiln-format`).
pub(super) use crate::fs::ext4::format::{
    GROUP_DESC as EXT4_GROUP, INODE as EXT4_INODE, SUPERBLOCK as EXT4_SUPER,
};
pub(super) use kiln_format::gpt::ENTRY_SIZE as GPT_ENTRY_SIZE;
pub(super) use kiln_format::gpt::{entry::FIELDS as GPT_ENTRY, header::FIELDS as GPT_HEADER};
pub(super) use kiln_format::verity::FIELDS as VERITY_SUPER;
use kiln_format::Span;

/// The inode's in-inode extended attribute area (after `i_crtime_extra` up
/// to the 256-byte inode's end), which kiln fills with inline xattrs.
pub(super) const EXT4_INODE_XATTRS: Fields = &[Span::new("in-inode xattrs", 0xA0, 96)];

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

/// A field table; fields named in `last` (checksums over the others) are
/// reported only when nothing else differs.
pub(super) type Fields = &'static [Span];

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
    for &Span {
        name,
        offset: off,
        len,
    } in table
    {
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

pub(super) const EXT4_CHECKSUMS: &[&str] = &[
    "s_checksum",
    "i_checksum_lo",
    "i_checksum_hi",
    "bg_checksum",
    "bg_block_bitmap_csum_lo",
    "bg_inode_bitmap_csum_lo",
];

/// COFF file header fields, from the `PE\0\0` signature's end.
pub(super) const PE_COFF: Fields = &[
    Span::new("Machine", 0, 2),
    Span::new("NumberOfSections", 2, 2),
    Span::new("TimeDateStamp", 4, 4),
    Span::new("PointerToSymbolTable", 8, 4),
    Span::new("NumberOfSymbols", 12, 4),
    Span::new("SizeOfOptionalHeader", 16, 2),
    Span::new("Characteristics", 18, 2),
    // Optional header (after the 20-byte COFF header).
    Span::new("SizeOfCode", 20 + 4, 4),
    Span::new("SizeOfInitializedData", 20 + 8, 4),
    Span::new("AddressOfEntryPoint", 20 + 16, 4),
    Span::new("SizeOfImage", 20 + 56, 4),
    Span::new("SizeOfHeaders", 20 + 60, 4),
    Span::new("CheckSum", 20 + 64, 4),
];

/// FAT boot sector fields (FAT16 layout; Microsoft FAT specification §3).
pub(super) const FAT_BOOT: Fields = &[
    Span::new("BS_OEMName", 3, 8),
    Span::new("BPB_BytsPerSec", 11, 2),
    Span::new("BPB_SecPerClus", 13, 1),
    Span::new("BPB_TotSec16", 19, 2),
    Span::new("BPB_FATSz16", 22, 2),
    Span::new("BPB_TotSec32", 32, 4),
    Span::new("BS_VolID", 39, 4),
    Span::new("BS_VolLab", 43, 11),
];
/// The same for FAT32, whose BPB is longer (`BPB_FATSz16` is 0).
pub(super) const FAT32_BOOT: Fields = &[
    Span::new("BS_OEMName", 3, 8),
    Span::new("BPB_BytsPerSec", 11, 2),
    Span::new("BPB_SecPerClus", 13, 1),
    Span::new("BPB_TotSec32", 32, 4),
    Span::new("BPB_FATSz32", 36, 4),
    Span::new("BS_VolID", 67, 4),
    Span::new("BS_VolLab", 71, 11),
];
