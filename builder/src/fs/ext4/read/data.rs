//! What an inode holds: the extents of its extent tree (`ifork.rst`), its
//! contents, a directory's entries (`directory.rst`), a symlink's target
//! and a device's number, each read within the bounds the parent module
//! describes.

use std::collections::HashSet;

use super::super::format::*;
use super::super::inode::{EXTENTS_FL, EXTENT_MAGIC, I_BLOCK_LEN};
use super::{bad, field_error, get, Fs, Inode, ReadError, MAX_EXTENT_DEPTH};
use crate::fs::ext4::layout::crc32c_raw;

/// `i_flags`: data lives in the inode (`inline_data`).
const INLINE_DATA_FL: u32 = 0x1000_0000;
/// `ee_len` above this marks an uninitialised extent (reads as zeros).
const INIT_MAX_LEN: u16 = 32768;
/// Size of the `ext4_extent_tail` (its checksum) after a tree block's entries.
const EXTENT_TAIL_SIZE: usize = 4;

/// One extent: logical block, physical block, length in blocks, and
/// whether it is initialised (an uninitialised one reads as zeros).
#[derive(Debug, Clone, Copy)]
struct Extent {
    logical: u64,
    physical: u64,
    len: u64,
    init: bool,
}

impl<'a> Fs<'a> {
    /// The extents of an extent-mapped inode, in the order the tree lists them.
    fn extents(&self, i: &Inode<'_>) -> Result<Vec<Extent>, ReadError> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        self.walk_extents(i, i.i_block, None, &mut seen, &mut out)?;
        Ok(out)
    }

    /// The extents under `node`: `i_block` (`parent_depth` `None`) or a
    /// tree block one level below a node of depth `parent_depth`.
    fn walk_extents(
        &self,
        i: &Inode<'_>,
        node: &[u8],
        parent_depth: Option<u16>,
        seen: &mut HashSet<u64>,
        out: &mut Vec<Extent>,
    ) -> Result<(), ReadError> {
        let ino = i.ino;
        let header = || format!("inode {ino}: extent tree node");
        let magic = get::<u16>(node, 0, EH_MAGIC)?;
        if magic != EXTENT_MAGIC {
            return Err(field_error(
                header(),
                EH_MAGIC,
                format!("{magic:#06x} is not 0xf30a"),
            ));
        }
        let entries = usize::from(get::<u16>(node, 0, EH_ENTRIES)?);
        let max = usize::from(get::<u16>(node, 0, EH_MAX)?);
        let room = node.len().saturating_sub(EXTENT_ENTRY_SIZE) / EXTENT_ENTRY_SIZE;
        if max > room || entries > max {
            return Err(field_error(
                header(),
                EH_ENTRIES,
                format!("{entries} entries (eh_max {max}) do not fit a node of room for {room}"),
            ));
        }
        let depth = get::<u16>(node, 0, EH_DEPTH)?;
        let depth_ok = match parent_depth {
            None => depth <= MAX_EXTENT_DEPTH,
            Some(p) => p.checked_sub(1) == Some(depth),
        };
        if !depth_ok {
            return Err(field_error(
                header(),
                EH_DEPTH,
                format!("{depth} under a node of depth {parent_depth:?}"),
            ));
        }
        for k in 0..entries {
            let e = EXTENT_ENTRY_SIZE * (k + 1);
            if depth == 0 {
                let logical = u64::from(get::<u32>(node, e, EE_BLOCK)?);
                let raw_len = get::<u16>(node, e, EE_LEN)?;
                let (len, init) = if raw_len > INIT_MAX_LEN {
                    (raw_len - INIT_MAX_LEN, false)
                } else {
                    (raw_len, true)
                };
                let physical = (u64::from(get::<u16>(node, e, EE_START_HI)?) << 32)
                    | u64::from(get::<u32>(node, e, EE_START_LO)?);
                out.push(Extent {
                    logical,
                    physical,
                    len: u64::from(len),
                    init,
                });
            } else {
                let child = u64::from(get::<u32>(node, e, EI_LEAF_LO)?)
                    | (u64::from(get::<u16>(node, e, EI_LEAF_HI)?) << 32);
                if !seen.insert(child) {
                    return Err(field_error(
                        header(),
                        EI_LEAF_LO,
                        format!("block {child} appears twice in the tree"),
                    ));
                }
                let left = self.tree_blocks.get();
                if left == 0 {
                    return Err(bad(format!(
                        "inode {ino}: the extent trees have more blocks than the filesystem"
                    )));
                }
                self.tree_blocks.set(left - 1);
                let block = self.block(child)?;
                self.check_tree_block(i, block, child)?;
                self.walk_extents(i, block, Some(depth), seen, out)?;
            }
        }
        Ok(())
    }

    /// An extent tree block's `ext4_extent_tail` checksum, right after its
    /// `eh_max` entries.
    fn check_tree_block(&self, i: &Inode<'_>, block: &[u8], blk: u64) -> Result<(), ReadError> {
        let Some(seed) = i.csum_seed else {
            return Ok(());
        };
        let max = usize::from(get::<u16>(block, 0, EH_MAX)?);
        let tail = EXTENT_ENTRY_SIZE * (max + 1);
        let covered = block
            .get(..tail)
            .filter(|_| tail + EXTENT_TAIL_SIZE <= block.len());
        let Some(covered) = covered else {
            return Err(field_error(
                format!("inode {}: extent tree block {blk}", i.ino),
                EH_MAX,
                format!("{max} leaves no room for the checksum tail"),
            ));
        };
        let want = crc32c_raw(seed, covered);
        let got = get::<u32>(block, tail, EB_CHECKSUM)?;
        if got != want {
            return Err(field_error(
                format!("inode {}: extent tree block {blk}", i.ino),
                EB_CHECKSUM,
                format!("{got:#010x} does not match the block ({want:#010x})"),
            ));
        }
        Ok(())
    }

    /// The first `i_size` bytes of an inode's data (holes and uninitialised
    /// extents read as zeros), charged to the read's budget.
    pub(super) fn data(&self, i: &Inode<'_>) -> Result<Vec<u8>, ReadError> {
        let ino = i.ino;
        if i.flags & INLINE_DATA_FL != 0 {
            return Err(ReadError::Unsupported(format!("inode {ino}: inline data")));
        }
        if i.size == 0 {
            return Ok(Vec::new());
        }
        if i.flags & EXTENTS_FL == 0 {
            return Err(ReadError::Unsupported(format!(
                "inode {ino}: block-mapped (non-extent) data"
            )));
        }
        self.charge(i.size, || format!("inode {ino}: field `i_size_lo`"))?;
        let size = i.size as usize;
        let extents = self.extents(i)?;
        let mut out = vec![0u8; size];
        let bs = self.block_size;
        for x in extents.into_iter().filter(|x| x.init) {
            // Logical blocks are 32-bit and blocks at most 64 KiB.
            let from = x.logical * bs;
            if from >= i.size {
                continue;
            }
            let n = (x.len * bs).min(i.size - from) as usize;
            let src = x
                .physical
                .checked_mul(bs)
                .and_then(|at| usize::try_from(at).ok())
                .and_then(|at| self.img.get(at..at.checked_add(n)?))
                .ok_or_else(|| {
                    bad(format!(
                        "inode {ino}: the extent at block {} lies past the end of the image",
                        x.physical
                    ))
                })?;
            let from = from as usize;
            out[from..from + n].copy_from_slice(src);
        }
        Ok(out)
    }

    /// A directory's entries: (name, inode), `.` and `..` excluded. Leaf
    /// blocks that end in a checksum tail have it verified.
    pub(super) fn dir_entries(&self, i: &Inode<'_>) -> Result<Vec<(String, u32)>, ReadError> {
        let ino = i.ino;
        let data = self.data(i)?;
        let mut out = Vec::new();
        for (n, block) in data.chunks(self.block_size as usize).enumerate() {
            let structure = || format!("directory inode {ino}, block {n}");
            self.check_dir_block(i, block, &structure)?;
            let mut pos = 0;
            while pos + DIRENT_HEADER_SIZE <= block.len() {
                let child = get::<u32>(block, pos, DE_INODE)?;
                let rec_len = usize::from(get::<u16>(block, pos, DE_REC_LEN)?);
                let name_len = usize::from(get::<u8>(block, pos, DE_NAME_LEN)?);
                if rec_len < DIRENT_HEADER_SIZE || pos + rec_len > block.len() {
                    return Err(field_error(
                        format!("{} entry at byte {pos}", structure()),
                        DE_REC_LEN,
                        format!("{rec_len} does not fit the block"),
                    ));
                }
                let name_at = pos + DIRENT_HEADER_SIZE;
                let name = block
                    .get(name_at..name_at + name_len)
                    .filter(|_| DIRENT_HEADER_SIZE + name_len <= rec_len)
                    .ok_or_else(|| {
                        field_error(
                            format!("{} entry at byte {pos}", structure()),
                            DE_NAME_LEN,
                            format!("{name_len} runs past rec_len {rec_len}"),
                        )
                    })?;
                if child != 0 && name != b"." && name != b".." {
                    if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
                        return Err(bad(format!(
                            "{} entry at byte {pos}: {:?} is not a file name",
                            structure(),
                            String::from_utf8_lossy(name)
                        )));
                    }
                    let name = String::from_utf8(name.to_vec()).map_err(|_| {
                        ReadError::Unsupported(format!(
                            "directory inode {ino}: a name that is not UTF-8 ({:?})",
                            String::from_utf8_lossy(name)
                        ))
                    })?;
                    out.push((name, child));
                }
                pos += rec_len;
            }
        }
        Ok(out)
    }

    /// The `ext4_dir_entry_tail` checksum of a leaf block that has one
    /// (htree index blocks have another tail, not checked).
    fn check_dir_block(
        &self,
        i: &Inode<'_>,
        block: &[u8],
        structure: &dyn Fn() -> String,
    ) -> Result<(), ReadError> {
        let Some(seed) = i.csum_seed else {
            return Ok(());
        };
        let Some(at) = block.len().checked_sub(DIR_TAIL_SIZE) else {
            return Ok(());
        };
        let is_tail = get::<u32>(block, at, DE_INODE)? == 0
            && usize::from(get::<u16>(block, at, DE_REC_LEN)?) == DIR_TAIL_SIZE
            && get::<u8>(block, at, DE_NAME_LEN)? == 0
            && get::<u8>(block, at, DE_FILE_TYPE)? == DET_RESERVED_FT;
        if !is_tail {
            return Ok(());
        }
        let want = crc32c_raw(seed, &block[..at]);
        let got = get::<u32>(block, at, DET_CHECKSUM)?;
        if got != want {
            return Err(field_error(
                structure(),
                DET_CHECKSUM,
                format!("{got:#010x} does not match the block ({want:#010x})"),
            ));
        }
        Ok(())
    }

    /// A symlink's target: in `i_block` when short (a "fast" symlink),
    /// else in its data.
    pub(super) fn symlink(&self, i: &Inode<'_>) -> Result<String, ReadError> {
        let fast = i.flags & (EXTENTS_FL | INLINE_DATA_FL) == 0 && i.size < I_BLOCK_LEN as u64;
        let bytes = if fast {
            i.i_block
                .get(..i.size as usize)
                .unwrap_or_default()
                .to_vec()
        } else {
            self.data(i)?
        };
        String::from_utf8(bytes).map_err(|_| {
            ReadError::Unsupported(format!("inode {}: a non-UTF-8 symlink target", i.ino))
        })
    }
}

/// Device numbers from `i_block`: the old 8:8 encoding in word 0, else the
/// new one in word 1 (`ext4_write_inode`'s `new_encode_dev`).
pub(super) fn device(i_block: &[u8]) -> Result<(u32, u32), ReadError> {
    let w0 = get::<u32>(i_block, 0, I_BLOCK_OLD_DEV)?;
    if w0 != 0 {
        return Ok(((w0 >> 8) & 0xFF, w0 & 0xFF));
    }
    let w1 = get::<u32>(i_block, 0, I_BLOCK_NEW_DEV)?;
    Ok(((w1 & 0xF_FF00) >> 8, (w1 & 0xFF) | ((w1 >> 12) & 0xF_FF00)))
}
