//! Linear (unindexed) directories: `ext4_dir_entry_2` records packed into
//! blocks, each block ending in the 12-byte `ext4_dir_entry_tail` that holds
//! its metadata_csum checksum.
//!
//! Reference: `directory.rst` ("Linear (Classic) Directories", "Checksums")
//! in the kernel's `Documentation/filesystems/ext4/`.

use super::format::{
    DET_CHECKSUM, DE_FILE_TYPE, DE_INODE, DE_NAME_LEN, DE_REC_LEN, DIRENT_HEADER_SIZE,
    DIR_TAIL_SIZE,
};
use super::layout::{crc32c_raw, BLOCK_SIZE};

/// `file_type` values of a directory entry.
pub(super) const FT_REG_FILE: u8 = 1;
/// See [`FT_REG_FILE`].
pub(super) const FT_DIR: u8 = 2;
/// See [`FT_REG_FILE`].
pub(super) const FT_CHRDEV: u8 = 3;
/// See [`FT_REG_FILE`].
pub(super) const FT_BLKDEV: u8 = 4;
/// See [`FT_REG_FILE`].
pub(super) const FT_FIFO: u8 = 5;
/// See [`FT_REG_FILE`].
pub(super) const FT_SYMLINK: u8 = 7;
/// Longest file name (every layer's names are checked against it: [`crate::fs::tree::NAME_MAX`]).
pub(super) const NAME_MAX: usize = crate::fs::tree::NAME_MAX;

const BLOCK: usize = BLOCK_SIZE as usize;
/// Size of the checksum tail that ends every directory block.
const TAIL: usize = DIR_TAIL_SIZE;
/// `det_reserved_ft` of the tail: marks the fake entry.
const TAIL_FT: u8 = 0xDE;
/// Where real entries must end.
const LIMIT: usize = BLOCK - TAIL;

/// One name in a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DirEntry<'a> {
    pub name: &'a [u8],
    pub ino: u32,
    pub file_type: u8,
}

fn rec_len(name_len: usize) -> usize {
    (DIRENT_HEADER_SIZE + name_len + 3) & !3
}

/// The directory's blocks: `.`, `..`, then `entries` in order. The last
/// entry of each block stretches to the checksum tail.
pub(super) fn encode(ino: u32, parent: u32, entries: &[DirEntry<'_>], seed: u32) -> Vec<u8> {
    let dots = [
        DirEntry {
            name: b".",
            ino,
            file_type: FT_DIR,
        },
        DirEntry {
            name: b"..",
            ino: parent,
            file_type: FT_DIR,
        },
    ];
    let mut out = vec![0u8; BLOCK];
    let mut block = 0;
    let mut pos = 0;
    let mut last = 0;
    for e in dots.iter().chain(entries) {
        let len = rec_len(e.name.len());
        if pos + len > LIMIT {
            seal(&mut out[block..block + BLOCK], last, seed);
            block += BLOCK;
            out.resize(block + BLOCK, 0);
            pos = 0;
        }
        let b = &mut out[block + pos..block + pos + len];
        DE_INODE.put(b, e.ino);
        DE_REC_LEN.put(b, len as u16);
        DE_NAME_LEN.put(b, e.name.len() as u8);
        DE_FILE_TYPE.put(b, e.file_type);
        b[DIRENT_HEADER_SIZE..DIRENT_HEADER_SIZE + e.name.len()].copy_from_slice(e.name);
        last = pos;
        pos += len;
    }
    seal(&mut out[block..block + BLOCK], last, seed);
    out
}

/// Stretch the last entry to the tail and write the tail with the block's checksum.
fn seal(b: &mut [u8], last: usize, seed: u32) {
    DE_REC_LEN.put(&mut b[last..], (LIMIT - last) as u16);
    // The tail is shaped as an unused entry: inode 0, name_len 0.
    let tail = &mut b[LIMIT..];
    DE_INODE.put(tail, 0u32);
    DE_REC_LEN.put(tail, TAIL as u16);
    DE_NAME_LEN.put(tail, 0u8);
    DE_FILE_TYPE.put(tail, TAIL_FT);
    let crc = crc32c_raw(seed, &b[..LIMIT]);
    DET_CHECKSUM.put(&mut b[LIMIT..], crc);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(block: &[u8]) -> Vec<(u32, usize, Vec<u8>)> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < BLOCK {
            let ino = u32::from_le_bytes(block[pos..pos + 4].try_into().unwrap());
            let rl = u16::from_le_bytes(block[pos + 4..pos + 6].try_into().unwrap()) as usize;
            let nl = block[pos + 6] as usize;
            out.push((ino, rl, block[pos + 8..pos + 8 + nl].to_vec()));
            pos += rl;
        }
        out
    }

    #[test]
    fn small_directory_is_one_block_with_tail() {
        let e = [DirEntry {
            name: b"hello",
            ino: 12,
            file_type: FT_REG_FILE,
        }];
        let d = encode(11, 2, &e, 0);
        assert_eq!(d.len(), BLOCK);
        let w = walk(&d);
        assert_eq!(w[0], (11, 12, b".".to_vec()));
        assert_eq!(w[1], (2, 12, b"..".to_vec()));
        assert_eq!(w[2], (12, LIMIT - 24, b"hello".to_vec()));
        assert_eq!(w[3], (0, 12, Vec::new()));
        assert_eq!(d[LIMIT + 7], TAIL_FT);
    }

    #[test]
    fn entries_spill_into_more_blocks() {
        let names: Vec<String> = (0..1000).map(|i| format!("file-{i:05}")).collect();
        let e: Vec<DirEntry> = names
            .iter()
            .map(|n| DirEntry {
                name: n.as_bytes(),
                ino: 20,
                file_type: FT_REG_FILE,
            })
            .collect();
        let d = encode(11, 2, &e, 7);
        // 20-byte records, 204 per block (4084 / 20), 1002 in all.
        assert_eq!(d.len(), 5 * BLOCK);
        let total: usize = d.chunks(BLOCK).map(|b| walk(b).len() - 1).sum();
        assert_eq!(total, 1002);
    }
}
