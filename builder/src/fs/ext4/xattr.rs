//! Extended attributes: in the inode body after `i_extra_isize` when they fit,
//! the rest in one external xattr block (`i_file_acl`).
//!
//! Reference: `attributes.rst` in the kernel's
//! `Documentation/filesystems/ext4/` (header, entries, name indices, the entry
//! and block hashes); POSIX ACLs are stored in the kernel's compact
//! `ext4_acl` form (`fs/ext4/acl.h`), not the `posix_acl_xattr` form user
//! space sees.

use super::format::{
    E_HASH, E_NAME_INDEX, E_NAME_LEN, E_VALUE_INUM, E_VALUE_OFFS, E_VALUE_SIZE, H_BLOCKS,
    H_CHECKSUM, H_HASH, H_MAGIC, H_REFCOUNT, XATTR_BLOCK_HEADER_SIZE, XATTR_ENTRY_HEADER_SIZE,
};
use super::inode::IBODY_XATTR_LEN;
use super::layout::{crc32c_raw, BLOCK_SIZE};
use super::Ext4Error;
use std::collections::BTreeMap;

/// `h_magic` of an xattr block and of the in-inode area.
pub(super) const XATTR_MAGIC: u32 = 0xEA02_0000;
/// Size of the xattr block header (`ext4_xattr_header`).
pub(super) const BLOCK_HEADER: usize = XATTR_BLOCK_HEADER_SIZE;
const BLOCK: usize = BLOCK_SIZE as usize;
/// The four zero bytes that end an entry table.
const END: usize = 4;

/// Name prefixes and their `e_name_index`, longest first (the full names
/// of the ACL attributes are matched exactly).
pub(super) const NAME_INDEX: &[(&str, u8, bool)] = &[
    ("system.posix_acl_access", 2, true),
    ("system.posix_acl_default", 3, true),
    ("system.richacl", 8, true),
    ("security.", 6, false),
    ("trusted.", 4, false),
    ("system.", 7, false),
    ("user.", 1, false),
];

/// `posix_acl_xattr` header version (user space's form).
pub(super) const ACL_XATTR_VERSION: u32 = 2;
/// `ext4_acl` header version (the on-disk form).
pub(super) const EXT4_ACL_VERSION: u32 = 1;
/// ACL tags whose entries carry an id.
pub(super) const ACL_USER: u16 = 0x02;
/// See [`ACL_USER`].
pub(super) const ACL_GROUP: u16 = 0x08;

/// Where a node's xattrs went.
#[derive(Debug, Default)]
pub(super) struct Xattrs {
    /// The in-inode area (magic, entries, values), if any attribute is there.
    pub ibody: Option<Box<[u8; IBODY_XATTR_LEN]>>,
    /// The external block without its checksum (needs the block number), if any.
    pub block: Option<Vec<u8>>,
}

struct Attr<'a> {
    index: u8,
    name: &'a [u8],
    value: Vec<u8>,
}

impl Attr<'_> {
    fn entry_len(&self) -> usize {
        (XATTR_ENTRY_HEADER_SIZE + self.name.len() + 3) & !3
    }
    fn value_len(&self) -> usize {
        (self.value.len() + 3) & !3
    }
    /// `ext4_xattr_hash_entry`: over the name bytes, then the value as
    /// zero-padded little-endian words.
    fn hash(&self) -> u32 {
        let mut h = 0u32;
        for &c in self.name {
            h = (h << 5) ^ (h >> 27) ^ u32::from(c);
        }
        for w in self.value.chunks(4) {
            let mut word = [0u8; 4];
            word[..w.len()].copy_from_slice(w);
            h = (h << 16) ^ (h >> 16) ^ u32::from_le_bytes(word);
        }
        h
    }
}

fn split_name<'a>(path: &str, name: &'a str) -> Result<(u8, &'a [u8]), Ext4Error> {
    for &(prefix, index, exact) in NAME_INDEX {
        let suffix = if exact {
            (name == prefix).then_some("")
        } else {
            name.strip_prefix(prefix).filter(|s| !s.is_empty())
        };
        if let Some(s) = suffix {
            if s.len() > 255 {
                break;
            }
            return Ok((index, s.as_bytes()));
        }
    }
    Err(Ext4Error::XattrName {
        path: path.to_string(),
        name: name.to_string(),
    })
}

/// Convert a `posix_acl_xattr` value (version 2, 8-byte entries) into the
/// on-disk `ext4_acl` form (version 1, 4-byte entries except for named
/// users and groups).
fn acl_to_disk(path: &str, name: &str, v: &[u8]) -> Result<Vec<u8>, Ext4Error> {
    let bad = || Ext4Error::BadAcl {
        path: path.to_string(),
        name: name.to_string(),
    };
    if v.len() < 4 || !(v.len() - 4).is_multiple_of(8) || v[..4] != ACL_XATTR_VERSION.to_le_bytes()
    {
        return Err(bad());
    }
    let mut out = EXT4_ACL_VERSION.to_le_bytes().to_vec();
    for e in v[4..].chunks(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        out.extend_from_slice(&e[..4]);
        if tag == ACL_USER || tag == ACL_GROUP {
            out.extend_from_slice(&e[4..8]);
        }
    }
    Ok(out)
}

/// Place a node's xattrs: sorted as the kernel keeps a block's entries
/// (index, name length, name), each into the inode body while room is left,
/// then into the block.
pub(super) fn layout(path: &str, xattrs: &BTreeMap<String, Vec<u8>>) -> Result<Xattrs, Ext4Error> {
    if xattrs.is_empty() {
        return Ok(Xattrs::default());
    }
    let mut attrs = Vec::with_capacity(xattrs.len());
    for (name, value) in xattrs {
        let (index, suffix) = split_name(path, name)?;
        let value = if index == 2 || index == 3 {
            acl_to_disk(path, name, value)?
        } else {
            value.clone()
        };
        attrs.push(Attr {
            index,
            name: suffix,
            value,
        });
    }
    attrs.sort_by(|a, b| (a.index, a.name.len(), a.name).cmp(&(b.index, b.name.len(), b.name)));

    let (mut in_inode, mut in_block) = (Vec::new(), Vec::new());
    let mut ibody_used = END + END; // magic + end marker
    let mut block_used = BLOCK_HEADER + END;
    for a in attrs {
        let need = a.entry_len() + a.value_len();
        if ibody_used + need <= IBODY_XATTR_LEN {
            ibody_used += need;
            in_inode.push(a);
        } else if block_used + need <= BLOCK {
            block_used += need;
            in_block.push(a);
        } else {
            return Err(Ext4Error::XattrsTooLarge {
                path: path.to_string(),
            });
        }
    }

    let ibody = (!in_inode.is_empty()).then(|| {
        let mut area = Box::new([0u8; IBODY_XATTR_LEN]);
        H_MAGIC.put(&mut area[..], XATTR_MAGIC);
        // Value offsets count from the first entry, just after the magic.
        write_entries(&mut area[END..], &in_inode);
        area
    });
    let block = (!in_block.is_empty()).then(|| {
        let mut b = vec![0u8; BLOCK];
        H_MAGIC.put(&mut b, XATTR_MAGIC);
        H_REFCOUNT.put(&mut b, 1u32);
        H_BLOCKS.put(&mut b, 1u32);
        let hashes = write_entries_at(&mut b, BLOCK_HEADER, &in_block);
        // ext4_xattr_rehash: fold the entry hashes.
        let h = hashes.iter().fold(0u32, |h, &e| (h << 16) ^ (h >> 16) ^ e);
        H_HASH.put(&mut b, h);
        b
    });
    Ok(Xattrs { ibody, block })
}

fn write_entries(area: &mut [u8], attrs: &[Attr<'_>]) {
    write_entries_at(area, 0, attrs);
}

/// Entries from `start` upwards, values from the end of `area` downwards,
/// offsets relative to the start of `area`. Returns the entry hashes.
fn write_entries_at(area: &mut [u8], start: usize, attrs: &[Attr<'_>]) -> Vec<u32> {
    let mut pos = start;
    let mut value_end = area.len();
    let mut hashes = Vec::with_capacity(attrs.len());
    for a in attrs {
        let value_off = if a.value.is_empty() {
            0
        } else {
            value_end -= a.value_len();
            area[value_end..value_end + a.value.len()].copy_from_slice(&a.value);
            value_end
        };
        let h = a.hash();
        hashes.push(h);
        let e = &mut area[pos..pos + a.entry_len()];
        E_NAME_LEN.put(e, a.name.len() as u8);
        E_NAME_INDEX.put(e, a.index);
        E_VALUE_OFFS.put(e, value_off as u16);
        E_VALUE_INUM.put(e, 0u32);
        E_VALUE_SIZE.put(e, a.value.len() as u32);
        E_HASH.put(e, h);
        e[XATTR_ENTRY_HEADER_SIZE..XATTR_ENTRY_HEADER_SIZE + a.name.len()].copy_from_slice(a.name);
        pos += a.entry_len();
    }
    hashes
}

/// Set the block's checksum now that its block number is known.
pub(super) fn seal_block(b: &mut [u8], blocknr: u64, fs_seed: u32) {
    H_CHECKSUM.put(b, 0u32);
    let crc = crc32c_raw(crc32c_raw(fs_seed, &blocknr.to_le_bytes()), b);
    H_CHECKSUM.put(b, crc);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(items: &[(&str, &[u8])]) -> BTreeMap<String, Vec<u8>> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect()
    }

    #[test]
    fn name_index_table() {
        for (name, want) in [
            ("user.foo", Some((1, &b"foo"[..]))),
            ("security.capability", Some((6, &b"capability"[..]))),
            ("trusted.overlay.opaque", Some((4, &b"overlay.opaque"[..]))),
            ("system.posix_acl_access", Some((2, &b""[..]))),
            ("system.posix_acl_default", Some((3, &b""[..]))),
            ("system.data", Some((7, &b"data"[..]))),
            ("user.", None),
            ("os2.foo", None),
        ] {
            assert_eq!(split_name("p", name).ok(), want, "{name}");
        }
    }

    #[test]
    fn capability_fits_in_inode() {
        let x = layout("bin/ping", &map(&[("security.capability", &[1u8; 20])])).unwrap();
        assert!(x.ibody.is_some());
        assert!(x.block.is_none());
    }

    #[test]
    fn big_values_spill_to_block_and_too_big_fails() {
        let x = layout(
            "f",
            &map(&[("user.a", &[1u8; 8]), ("user.big", &[2u8; 200])]),
        )
        .unwrap();
        assert!(x.ibody.is_some() && x.block.is_some());
        assert!(layout("f", &map(&[("user.huge", &[0u8; 5000])])).is_err());
    }

    #[test]
    fn acl_is_converted_to_disk_form() {
        let mut v = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (1u16, 6u16, u32::MAX),
            (2, 4, 1000),
            (4, 4, u32::MAX),
            (0x10, 4, u32::MAX),
            (0x20, 0, u32::MAX),
        ] {
            v.extend_from_slice(&tag.to_le_bytes());
            v.extend_from_slice(&perm.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
        }
        let d = acl_to_disk("f", "system.posix_acl_access", &v).unwrap();
        assert_eq!(d.len(), 4 + 4 + 8 + 4 + 4 + 4);
        assert_eq!(&d[..4], &1u32.to_le_bytes());
        assert_eq!(&d[8..16], &[2, 0, 4, 0, 0xE8, 0x03, 0, 0]);
    }
}
