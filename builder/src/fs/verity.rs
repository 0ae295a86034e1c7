//! dm-verity hash tree and superblock for the root partition.
//!
//! Builds the hash device that the kernel's dm-verity target checks the root
//! filesystem against, entirely in memory. Format per the kernel's
//! `Documentation/admin-guide/device-mapper/verity.rst` (hash format version 1:
//! every digest is `sha256(salt || block)`, digests packed 128 to a 4096-byte
//! hash block and zero padded, the levels stored top level first) and
//! cryptsetup's on-disk superblock (`lib/verity/verity.c`, `struct verity_sb`,
//! superblock version 1; its layout is shared with kiln-init through
//! [`kiln_format::verity`]). The superblock occupies hash block 0, so the tree
//! starts at hash block 1 — the layout `veritysetup format` writes with its
//! defaults, which the tests check byte for byte.
//!
//! Level sizes follow the kernel's `verity_ctr`: with `b = log2(128)`, there are
//! `levels` = the smallest `n` with `(data_blocks - 1) >> (b * n) == 0`, and
//! level `i` holds `ceil(data_blocks / 128^(i+1))` blocks. A single data block
//! therefore has no tree at all: its own digest is the root hash.

use kiln_format::verity::{Superblock, SuperblockError, HASH_TYPE_NORMAL};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

/// Data and hash block size in bytes (veritysetup's default, and the page
/// size the kernel prefers).
pub const BLOCK_SIZE: usize = 4096;
/// Digest length of sha256, the only algorithm kiln uses.
const DIGEST_SIZE: usize = 32;
/// Digests per hash block: 4096 / 32 (already a power of two, so no padding
/// of the individual digests is needed).
const HASHES_PER_BLOCK: usize = BLOCK_SIZE / DIGEST_SIZE;
/// The kernel's `DM_VERITY_MAX_LEVELS`.
const MAX_LEVELS: usize = 63;
/// Hash format 1 ("normal"; 0 is the Chrome OS variant with salt last).
const HASH_TYPE: u32 = HASH_TYPE_NORMAL;
/// Algorithm name as stored in the superblock and passed in the dm table.
pub const ALGORITHM: &str = "sha256";
/// Hash block holding the first tree block (block 0 is the superblock).
pub const HASH_START_BLOCK: u64 = 1;

/// Errors building a verity hash device.
#[derive(Debug, thiserror::Error)]
pub enum VerityError {
    /// The data image is not a whole number of 4096-byte blocks.
    #[error("verity data image of {len} bytes is not a multiple of {BLOCK_SIZE}-byte blocks")]
    Unaligned {
        /// Length of the data image in bytes.
        len: usize,
    },
    /// The data image is empty.
    #[error("verity data image is empty")]
    Empty,
    /// The data image needs more tree levels than the kernel accepts.
    #[error("verity data image of {blocks} blocks needs more than {MAX_LEVELS} tree levels")]
    TooLarge {
        /// Number of data blocks.
        blocks: u64,
    },
    /// The superblock could not be encoded.
    #[error(transparent)]
    Superblock(#[from] SuperblockError),
}

/// The hash device built for one data image, with the parameters needed to
/// open it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerityHash {
    /// Superblock followed by the hash tree, a whole number of 4096-byte blocks.
    pub hash_image: Vec<u8>,
    /// Root hash: the value to put on the kernel command line.
    pub root_hash: [u8; 32],
    /// Number of 4096-byte data blocks covered.
    pub data_blocks: u64,
    /// First hash block of the tree on the hash device (1: after the superblock).
    pub hash_start_block: u64,
    /// Salt mixed into every digest.
    pub salt: [u8; 32],
    /// UUID recorded in the superblock.
    pub uuid: [u8; 16],
}

/// Builds the verity hash device (superblock + tree) for `data`.
///
/// `data` must be a non-empty multiple of [`BLOCK_SIZE`]. `salt` and `uuid`
/// come from the caller so the output is a pure function of the inputs.
pub fn build(data: &[u8], salt: &[u8; 32], uuid: [u8; 16]) -> Result<VerityHash, VerityError> {
    if data.is_empty() {
        return Err(VerityError::Empty);
    }
    if !data.len().is_multiple_of(BLOCK_SIZE) {
        return Err(VerityError::Unaligned { len: data.len() });
    }
    let data_blocks = (data.len() / BLOCK_SIZE) as u64;
    let level_sizes = level_sizes(data_blocks)?;

    // Level 0 hashes the data; each further level hashes the level below.
    let mut levels: Vec<Vec<u8>> = Vec::with_capacity(level_sizes.len());
    for &size in &level_sizes {
        let below = levels.last().map_or(data, Vec::as_slice);
        let mut level = hash_blocks_parallel(below, salt);
        // Each level is a whole number of hash blocks, zero padded.
        level.resize(size * BLOCK_SIZE, 0);
        levels.push(level);
    }
    // The root hash is the digest of the single top block, or of the single
    // data block when there is no tree.
    let root_hash = digest_block(salt, levels.last().map_or(data, Vec::as_slice));

    let tree_blocks: usize = level_sizes.iter().sum();
    let mut hash_image = Vec::with_capacity((1 + tree_blocks) * BLOCK_SIZE);
    hash_image.extend_from_slice(&superblock(data_blocks, salt, uuid).encode()?);
    hash_image.resize(BLOCK_SIZE, 0);
    // On disk the top level comes first.
    for level in levels.iter().rev() {
        hash_image.extend_from_slice(level);
    }

    Ok(VerityHash {
        hash_image,
        root_hash,
        data_blocks,
        hash_start_block: HASH_START_BLOCK,
        salt: *salt,
        uuid,
    })
}

/// Number of hash blocks in each level, level 0 (the leaves) first.
fn level_sizes(data_blocks: u64) -> Result<Vec<usize>, VerityError> {
    let bits = HASHES_PER_BLOCK.trailing_zeros();
    let mut sizes = Vec::new();
    let mut n = 0u32;
    while bits * n < 64 && (data_blocks - 1) >> (bits * n) != 0 {
        n += 1;
        let shift = bits * n;
        let size = if shift >= 64 {
            1
        } else {
            data_blocks.div_ceil(1u64 << shift)
        };
        sizes.push(size as usize);
    }
    if sizes.len() > MAX_LEVELS {
        return Err(VerityError::TooLarge {
            blocks: data_blocks,
        });
    }
    Ok(sizes)
}

/// `sha256(salt || block)`, hash format 1.
fn digest_block(salt: &[u8; 32], block: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(block);
    h.finalize().into()
}

/// Digests of every 4096-byte block of `blocks`, concatenated.
fn hash_blocks(blocks: &[u8], salt: &[u8; 32], out: &mut [u8]) {
    for (block, slot) in blocks
        .chunks_exact(BLOCK_SIZE)
        .zip(out.chunks_exact_mut(DIGEST_SIZE))
    {
        slot.copy_from_slice(&digest_block(salt, block));
    }
}

/// [`hash_blocks`] split over the available cores; the result does not depend
/// on how the work is split.
fn hash_blocks_parallel(blocks: &[u8], salt: &[u8; 32]) -> Vec<u8> {
    let n = blocks.len() / BLOCK_SIZE;
    let mut out = vec![0u8; n * DIGEST_SIZE];
    let threads = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1);
    // Below a few MiB, threads cost more than they save.
    if threads < 2 || n < 1024 {
        hash_blocks(blocks, salt, &mut out);
        return out;
    }
    let per_thread = n.div_ceil(threads);
    std::thread::scope(|s| {
        for (input, output) in blocks
            .chunks(per_thread * BLOCK_SIZE)
            .zip(out.chunks_mut(per_thread * DIGEST_SIZE))
        {
            s.spawn(move || hash_blocks(input, salt, output));
        }
    });
    out
}

/// The superblock of a hash device kiln builds (cryptsetup's `struct
/// verity_sb`, whose layout [`kiln_format::verity`] declares).
fn superblock(data_blocks: u64, salt: &[u8; 32], uuid: [u8; 16]) -> Superblock {
    Superblock {
        hash_type: HASH_TYPE,
        uuid,
        algorithm: ALGORITHM.to_owned(),
        data_block_size: BLOCK_SIZE as u32,
        hash_block_size: BLOCK_SIZE as u32,
        data_blocks,
        salt: salt.to_vec(),
    }
}

impl VerityHash {
    /// Root hash as lowercase hex, as `roothash=` and `veritysetup` take it.
    pub fn root_hash_hex(&self) -> String {
        hex::encode(self.root_hash)
    }

    /// Salt as lowercase hex.
    pub fn salt_hex(&self) -> String {
        hex::encode(self.salt)
    }

    /// Size of the data image in 512-byte sectors (the dm table's length).
    pub fn data_sectors(&self) -> u64 {
        self.data_blocks * (BLOCK_SIZE as u64 / 512)
    }

    /// The device-mapper table line (`dmsetup create NAME --table LINE`) for
    /// the data and hash devices named, e.g. `/dev/vda2` and `/dev/vda3`.
    pub fn dm_table(&self, data_dev: &str, hash_dev: &str) -> String {
        let mut s = String::new();
        // Writing to a String cannot fail.
        let _ = write!(
            s,
            "0 {} verity {} {} {} {} {} {} {} {} {} {}",
            self.data_sectors(),
            HASH_TYPE,
            data_dev,
            hash_dev,
            BLOCK_SIZE,
            BLOCK_SIZE,
            self.data_blocks,
            self.hash_start_block,
            ALGORITHM,
            self.root_hash_hex(),
            self.salt_hex(),
        );
        s
    }

    /// argv for `veritysetup open DATA NAME HASH ROOTHASH`; the other
    /// parameters are read from the superblock.
    pub fn veritysetup_open_args(&self, data_dev: &str, name: &str, hash_dev: &str) -> Vec<String> {
        vec![
            "veritysetup".to_owned(),
            "open".to_owned(),
            data_dev.to_owned(),
            name.to_owned(),
            hash_dev.to_owned(),
            self.root_hash_hex(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    use crate::testutil::tool;

    const SALT: [u8; 32] = [
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9,
        0, 1,
    ];
    const UUID: [u8; 16] = [
        0x12, 0x34, 0x56, 0x78, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x12, 0x34, 0x56,
        0x78,
    ];
    const UUID_STR: &str = "12345678-1234-5678-9abc-def012345678";

    /// Deterministic, non-trivial data: block `i` is filled from a counter.
    fn data(blocks: usize) -> Vec<u8> {
        (0..blocks * BLOCK_SIZE)
            .map(|i| ((i / 7) as u8) ^ ((i / BLOCK_SIZE) as u8).wrapping_mul(31))
            .collect()
    }

    fn veritysetup(args: &[&std::ffi::OsStr]) -> std::process::Output {
        Command::new(tool("veritysetup", "cryptsetup-bin"))
            .args(args)
            .output()
            .expect("run veritysetup")
    }

    #[test]
    fn rejects_bad_sizes() {
        assert!(matches!(build(&[], &SALT, UUID), Err(VerityError::Empty)));
        assert!(matches!(
            build(&[0; 4097], &SALT, UUID),
            Err(VerityError::Unaligned { len: 4097 })
        ));
    }

    #[test]
    fn level_sizes_match_kernel() {
        // (data blocks, expected level sizes leaf first)
        let table: &[(u64, &[usize])] = &[
            (1, &[]),
            (2, &[1]),
            (128, &[1]),
            (129, &[2, 1]),
            (128 * 128, &[128, 1]),
            (128 * 128 + 1, &[129, 2, 1]),
        ];
        for (blocks, want) in table {
            assert_eq!(level_sizes(*blocks).unwrap(), *want, "{blocks} blocks");
        }
    }

    /// Known answer: pinned from `veritysetup format` with the same salt and
    /// uuid on the same data (3 blocks → one tree level).
    #[test]
    fn known_answer() {
        let v = build(&data(3), &SALT, UUID).unwrap();
        assert_eq!(v.data_blocks, 3);
        assert_eq!(v.hash_image.len(), 2 * BLOCK_SIZE);
        assert_eq!(v.root_hash_hex(), KAT_ROOT_3);
        assert_eq!(
            v.dm_table("/dev/vda2", "/dev/vda3"),
            format!(
                "0 24 verity 1 /dev/vda2 /dev/vda3 4096 4096 3 1 sha256 {KAT_ROOT_3} {}",
                hex::encode(SALT)
            )
        );
    }
    const KAT_ROOT_3: &str = "6b34a0805e89a31b7ffff9aaf2a131d9300bfc03397460f3a670bafa8b977f1f";

    /// The hash device is byte-identical to what `veritysetup format` writes,
    /// `veritysetup verify` accepts it, and rejects one flipped data byte.
    #[test]
    fn agrees_with_veritysetup() {
        let dir = tempfile::tempdir().unwrap();
        // 1 block: no tree; 3: one level; 300: two levels, partial blocks;
        // 2100: enough to take the threaded path.
        for blocks in [1usize, 3, 300, 2100] {
            let d = data(blocks);
            let v = build(&d, &SALT, UUID).unwrap();
            let data_path = dir.path().join(format!("data{blocks}"));
            let hash_path = dir.path().join(format!("hash{blocks}"));
            let ref_path = dir.path().join(format!("ref{blocks}"));
            std::fs::write(&data_path, &d).unwrap();
            std::fs::write(&hash_path, &v.hash_image).unwrap();
            std::fs::write(&ref_path, b"").unwrap();

            let out = veritysetup(&[
                "format".as_ref(),
                data_path.as_os_str(),
                ref_path.as_os_str(),
                "--salt".as_ref(),
                hex::encode(SALT).as_ref(),
                "--uuid".as_ref(),
                UUID_STR.as_ref(),
            ]);
            assert!(out.status.success(), "veritysetup format: {out:?}");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                stdout.contains(&v.root_hash_hex()),
                "{blocks} blocks: root hash {} not in\n{stdout}",
                v.root_hash_hex()
            );
            assert!(
                std::fs::read(&ref_path).unwrap() == v.hash_image,
                "{blocks} blocks: hash image differs from veritysetup's"
            );

            let verify = |data: &std::path::Path| {
                veritysetup(&[
                    "verify".as_ref(),
                    data.as_os_str(),
                    hash_path.as_os_str(),
                    v.root_hash_hex().as_ref(),
                ])
            };
            let out = verify(&data_path);
            assert!(out.status.success(), "veritysetup verify: {out:?}");

            let mut bad = d.clone();
            bad[d.len() / 2 + 1] ^= 0x01;
            let bad_path = dir.path().join(format!("bad{blocks}"));
            std::fs::write(&bad_path, &bad).unwrap();
            let out = verify(&bad_path);
            assert!(!out.status.success(), "flipped byte accepted: {out:?}");
        }
    }

    #[test]
    fn dump_shows_superblock() {
        let dir = tempfile::tempdir().unwrap();
        let v = build(&data(5), &SALT, UUID).unwrap();
        let hash_path = dir.path().join("hash");
        std::fs::write(&hash_path, &v.hash_image).unwrap();
        let out = veritysetup(&["dump".as_ref(), hash_path.as_os_str()]);
        assert!(out.status.success(), "veritysetup dump: {out:?}");
        let dump = String::from_utf8_lossy(&out.stdout);
        let field = |name: &str| {
            dump.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
                .unwrap_or_else(|| panic!("no {name} in\n{dump}"))
        };
        assert_eq!(field("UUID:"), UUID_STR);
        assert_eq!(field("Hash type:"), "1");
        assert_eq!(field("Data blocks:"), "5");
        assert_eq!(field("Data block size:"), "4096");
        assert_eq!(field("Hash block size:"), "4096");
        assert_eq!(field("Hash algorithm:"), "sha256");
        assert_eq!(field("Salt:"), hex::encode(SALT));
    }

    #[test]
    fn deterministic() {
        let d = data(2100);
        assert_eq!(
            build(&d, &SALT, UUID).unwrap(),
            build(&d, &SALT, UUID).unwrap()
        );
    }

    #[test]
    fn open_args() {
        let v = build(&data(1), &SALT, UUID).unwrap();
        let args = v.veritysetup_open_args("/dev/vda2", "root", "/dev/vda3");
        assert_eq!(
            &args[..5],
            ["veritysetup", "open", "/dev/vda2", "root", "/dev/vda3"]
        );
        assert_eq!(args[5], v.root_hash_hex());
    }
}
