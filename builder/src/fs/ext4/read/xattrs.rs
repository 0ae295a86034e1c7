//! An inode's extended attributes (`attributes.rst`): the in-inode area
//! after `i_extra_isize` and the external block `i_file_acl` names (its
//! checksum verified with `metadata_csum`), POSIX ACLs turned back from the
//! kernel's `ext4_acl` form into the `posix_acl_xattr` form user space sees.

use std::collections::BTreeMap;

use super::super::format::*;
use super::super::xattr::{
    ACL_GROUP, ACL_USER, ACL_XATTR_VERSION, BLOCK_HEADER, EXT4_ACL_VERSION, NAME_INDEX, XATTR_MAGIC,
};
use super::{bad, field_error, get, zeroed, Fs, Inode, ReadError};
use crate::fs::ext4::layout::crc32c_raw;

/// ACL id of entries that carry none (`ACL_UNDEFINED_ID`).
const ACL_UNDEFINED_ID: u32 = u32::MAX;
/// The `e_name_index` values of the two POSIX ACLs.
const INDEX_ACL_ACCESS: u8 = 2;
const INDEX_ACL_DEFAULT: u8 = 3;

impl<'a> Fs<'a> {
    pub(super) fn xattrs(&self, i: &Inode<'_>) -> Result<BTreeMap<String, Vec<u8>>, ReadError> {
        let ino = i.ino;
        let mut out = BTreeMap::new();
        if H_MAGIC.get::<u32>(i.ibody) == Some(XATTR_MAGIC) {
            // Value offsets count from the first entry, just after the magic.
            read_xattr_entries(ino, &i.ibody[H_MAGIC.width()..], 0, &mut out)?;
        }
        if i.file_acl != 0 {
            let b = self.block(i.file_acl)?;
            let structure = || format!("inode {ino}: xattr block {}", i.file_acl);
            let magic = get::<u32>(b, 0, H_MAGIC)?;
            if magic != XATTR_MAGIC {
                return Err(field_error(
                    structure(),
                    H_MAGIC,
                    format!("{magic:#010x} is not {XATTR_MAGIC:#010x}"),
                ));
            }
            if let Some(seed) = self.csum_seed {
                let seed = crc32c_raw(seed, &i.file_acl.to_le_bytes());
                let want = crc32c_raw(seed, &zeroed(b, H_CHECKSUM.offset, H_CHECKSUM.width()));
                let got = get::<u32>(b, 0, H_CHECKSUM)?;
                if got != want {
                    return Err(field_error(
                        structure(),
                        H_CHECKSUM,
                        format!("{got:#010x} does not match the block ({want:#010x})"),
                    ));
                }
            }
            read_xattr_entries(ino, b, BLOCK_HEADER, &mut out)?;
        }
        let bytes = out.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
        self.charge(bytes, || format!("inode {ino}: xattrs"))?;
        Ok(out)
    }
}

/// Entries from `start` in `area` (values at offsets relative to `area`),
/// up to the four zero bytes that end the table.
fn read_xattr_entries(
    ino: u32,
    area: &[u8],
    start: usize,
    out: &mut BTreeMap<String, Vec<u8>>,
) -> Result<(), ReadError> {
    let mut pos = start;
    // The table ends with four zero bytes (or the area's end).
    while area.get(pos..pos + 4).is_some_and(|end| end != [0; 4]) {
        let entry = || format!("inode {ino}: xattr entry at byte {pos}");
        let name_len = usize::from(get::<u8>(area, pos, E_NAME_LEN)?);
        let index = get::<u8>(area, pos, E_NAME_INDEX)?;
        let value_off = usize::from(get::<u16>(area, pos, E_VALUE_OFFS)?);
        if get::<u32>(area, pos, E_VALUE_INUM)? != 0 {
            return Err(ReadError::Unsupported(format!(
                "inode {ino}: xattr value in an inode (ea_inode)"
            )));
        }
        let value_len = get::<u32>(area, pos, E_VALUE_SIZE)? as usize;
        let name_at = pos + XATTR_ENTRY_HEADER_SIZE;
        let suffix = area.get(name_at..name_at + name_len).ok_or_else(|| {
            field_error(
                entry(),
                E_NAME_LEN,
                format!("{name_len} runs past the area"),
            )
        })?;
        let value = value_off
            .checked_add(value_len)
            .and_then(|end| area.get(value_off..end))
            .ok_or_else(|| {
                field_error(
                    entry(),
                    E_VALUE_SIZE,
                    format!("{value_len} bytes at offset {value_off} run past the area"),
                )
            })?;
        let (prefix, exact) = NAME_INDEX
            .iter()
            .find(|(_, i, _)| *i == index)
            .map(|&(p, _, exact)| (p, exact))
            .ok_or_else(|| {
                ReadError::Unsupported(format!("inode {ino}: xattr name index {index}"))
            })?;
        let name = if exact {
            prefix.to_string()
        } else {
            format!("{prefix}{}", String::from_utf8_lossy(suffix))
        };
        let value = if index == INDEX_ACL_ACCESS || index == INDEX_ACL_DEFAULT {
            acl_from_disk(ino, value)?
        } else {
            value.to_vec()
        };
        out.insert(name, value);
        pos += (XATTR_ENTRY_HEADER_SIZE + name_len + 3) & !3;
    }
    Ok(())
}

/// The `posix_acl_xattr` form of an on-disk `ext4_acl` (the inverse of the
/// writer's conversion).
fn acl_from_disk(ino: u32, v: &[u8]) -> Result<Vec<u8>, ReadError> {
    let malformed = || bad(format!("inode {ino}: malformed POSIX ACL"));
    if v.len() < 4 || v[..4] != EXT4_ACL_VERSION.to_le_bytes() {
        return Err(malformed());
    }
    let mut out = ACL_XATTR_VERSION.to_le_bytes().to_vec();
    let mut pos = 4;
    while pos < v.len() {
        let e = v.get(pos..pos + 4).ok_or_else(malformed)?;
        let tag = u16::from_le_bytes([e[0], e[1]]);
        out.extend_from_slice(e);
        if tag == ACL_USER || tag == ACL_GROUP {
            out.extend_from_slice(v.get(pos + 4..pos + 8).ok_or_else(malformed)?);
            pos += 8;
        } else {
            out.extend_from_slice(&ACL_UNDEFINED_ID.to_le_bytes());
            pos += 4;
        }
    }
    Ok(out)
}
