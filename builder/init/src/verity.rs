//! The dm-verity superblock and the `verity` target's table line.
//!
//! Superblock: cryptsetup's on-disk "format 1" (`lib/verity/verity.c`,
//! `struct verity_sb`, 512 bytes, little-endian) at the start of the hash
//! partition, as `veritysetup format` and kiln write it. Reading the salt and
//! sizes from it keeps them off the kernel command line. None of it needs to
//! be trusted: a changed salt, size or block size changes the hash tree the
//! kernel computes, which then no longer matches the root hash.
//!
//! Table line: the kernel's `Documentation/admin-guide/device-mapper/verity.rst`:
//! `<version> <data_dev> <hash_dev> <data_block_size> <hash_block_size>
//! <num_data_blocks> <hash_start_block> <algorithm> <digest> <salt>`.

use crate::cmdline::to_hex;

/// The superblock magic.
const MAGIC: &[u8; 8] = b"verity\0\0";
/// Size of the superblock on disk.
pub const SUPERBLOCK_SIZE: usize = 512;
/// The only superblock version cryptsetup defines.
const VERSION: u32 = 1;
/// The hash algorithm kiln-init accepts: the DPS root hash is sha256.
const ALGORITHM: &str = "sha256";
/// Sector size in which device-mapper tables count.
const SECTOR: u64 = 512;

/// The superblock fields kiln-init uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    /// Hash format: 1 is the normal one, 0 the Chrome OS one.
    pub hash_type: u32,
    /// Hash algorithm name.
    pub algorithm: String,
    /// Data block size in bytes.
    pub data_block_size: u32,
    /// Hash block size in bytes.
    pub hash_block_size: u32,
    /// Number of data blocks covered.
    pub data_blocks: u64,
    /// The salt.
    pub salt: Vec<u8>,
}

/// Why a superblock was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuperblockError(pub &'static str);

impl std::fmt::Display for SuperblockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "verity superblock: {}", self.0)
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn block_size_ok(n: u32) -> bool {
    n.is_power_of_two() && (512..=65536).contains(&n)
}

/// Parse and check a superblock from the first 512 bytes of a hash device.
pub fn parse_superblock(b: &[u8]) -> Result<Superblock, SuperblockError> {
    if b.len() < SUPERBLOCK_SIZE || &b[0..8] != MAGIC {
        return Err(SuperblockError(
            "no \"verity\" magic at the start of the hash partition",
        ));
    }
    if le32(b, 8) != VERSION {
        return Err(SuperblockError("unknown superblock version"));
    }
    let hash_type = le32(b, 12);
    if hash_type > 1 {
        return Err(SuperblockError("unknown hash type"));
    }
    let alg = &b[32..64];
    let alg_len = alg.iter().position(|&c| c == 0).unwrap_or(alg.len());
    let algorithm = std::str::from_utf8(&alg[..alg_len])
        .map_err(|_| SuperblockError("algorithm name is not text"))?
        .to_ascii_lowercase();
    if algorithm != ALGORITHM {
        return Err(SuperblockError("hash algorithm is not sha256"));
    }
    let data_block_size = le32(b, 64);
    let hash_block_size = le32(b, 68);
    if !block_size_ok(data_block_size) || !block_size_ok(hash_block_size) {
        return Err(SuperblockError(
            "block size is not a power of two in 512..=65536",
        ));
    }
    let mut db = [0u8; 8];
    db.copy_from_slice(&b[72..80]);
    let data_blocks = u64::from_le_bytes(db);
    if data_blocks == 0
        || data_blocks
            .checked_mul(u64::from(data_block_size))
            .is_none()
    {
        return Err(SuperblockError("data block count out of range"));
    }
    let salt_size = usize::from(u16::from_le_bytes([b[80], b[81]]));
    if salt_size > 256 {
        return Err(SuperblockError("salt longer than 256 bytes"));
    }
    Ok(Superblock {
        hash_type,
        algorithm,
        data_block_size,
        hash_block_size,
        data_blocks,
        salt: b[88..88 + salt_size].to_vec(),
    })
}

impl Superblock {
    /// Length of the mapped device in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.data_blocks * u64::from(self.data_block_size) / SECTOR
    }

    /// The hash tree's first block on the hash device: right after the
    /// superblock, which takes up the first hash block.
    pub fn hash_start_block(&self) -> u64 {
        (SUPERBLOCK_SIZE as u64).div_ceil(u64::from(self.hash_block_size))
    }

    /// The `verity` target's parameters for data and hash devices given as
    /// `major:minor`.
    pub fn table_params(
        &self,
        data_dev: (u32, u32),
        hash_dev: (u32, u32),
        roothash: &[u8; 32],
    ) -> String {
        let salt = if self.salt.is_empty() {
            "-".to_string()
        } else {
            to_hex(&self.salt)
        };
        format!(
            "{} {}:{} {}:{} {} {} {} {} {} {} {}",
            self.hash_type,
            data_dev.0,
            data_dev.1,
            hash_dev.0,
            hash_dev.1,
            self.data_block_size,
            self.hash_block_size,
            self.data_blocks,
            self.hash_start_block(),
            self.algorithm,
            to_hex(roothash),
            salt
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn superblock(salt: &[u8], data_blocks: u64) -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[0..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&1u32.to_le_bytes());
        b[12..16].copy_from_slice(&1u32.to_le_bytes());
        b[16..32].copy_from_slice(&[0x5a; 16]);
        b[32..38].copy_from_slice(b"sha256");
        b[64..68].copy_from_slice(&4096u32.to_le_bytes());
        b[68..72].copy_from_slice(&4096u32.to_le_bytes());
        b[72..80].copy_from_slice(&data_blocks.to_le_bytes());
        b[80..82].copy_from_slice(&(salt.len() as u16).to_le_bytes());
        b[88..88 + salt.len()].copy_from_slice(salt);
        b
    }

    #[test]
    fn parses_and_builds_the_table() {
        let sb = parse_superblock(&superblock(&[0xab, 0xcd], 256)).unwrap();
        assert_eq!(sb.sectors(), 2048);
        assert_eq!(sb.hash_start_block(), 1);
        assert_eq!(
            sb.table_params((254, 1), (254, 2), &[0x11; 32]),
            format!(
                "1 254:1 254:2 4096 4096 256 1 sha256 {} abcd",
                "11".repeat(32)
            )
        );
        let unsalted = parse_superblock(&superblock(&[], 1)).unwrap();
        assert!(unsalted
            .table_params((8, 2), (8, 3), &[0; 32])
            .ends_with(" -"));
    }

    #[test]
    fn rejects_table() {
        let good = superblock(&[1; 32], 10);
        let cases: Vec<(usize, u8, &str)> = vec![
            (
                0,
                b'V',
                "no \"verity\" magic at the start of the hash partition",
            ),
            (8, 2, "unknown superblock version"),
            (12, 7, "unknown hash type"),
            (32, b'm', "hash algorithm is not sha256"),
            (65, 0x11, "block size is not a power of two in 512..=65536"),
            (69, 0x00, "block size is not a power of two in 512..=65536"),
            (81, 0x01, "salt longer than 256 bytes"),
        ];
        for (at, value, why) in cases {
            let mut b = good.clone();
            b[at] = value;
            assert_eq!(parse_superblock(&b), Err(SuperblockError(why)), "byte {at}");
        }
        assert_eq!(
            parse_superblock(&superblock(&[], 0)),
            Err(SuperblockError("data block count out of range"))
        );
        assert!(parse_superblock(&good[..100]).is_err());
    }

    /// The superblock `veritysetup format` writes parses to what it reports.
    #[test]
    fn reads_veritysetup_output() {
        use std::process::Command;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let hash = dir.path().join("hash");
        std::fs::write(&data, vec![7u8; 4096 * 8]).unwrap();
        let out = match Command::new("veritysetup")
            .args(["format", "--salt", "00112233"])
            .arg(&data)
            .arg(&hash)
            .output()
        {
            Ok(o) => o,
            Err(_) => panic!("veritysetup is missing: install the Debian package cryptsetup-bin"),
        };
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let sb = parse_superblock(&std::fs::read(&hash).unwrap()).unwrap();
        assert_eq!(sb.data_blocks, 8);
        assert_eq!(sb.salt, [0x00, 0x11, 0x22, 0x33]);
        assert_eq!(
            (sb.data_block_size, sb.hash_block_size, sb.hash_type),
            (4096, 4096, 1)
        );
    }
}
