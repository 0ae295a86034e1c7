//! The dm-verity superblock as kiln-init accepts it, and the `verity`
//! target's table line built from it.
//!
//! Superblock: cryptsetup's on-disk "format 1" at the start of the hash
//! partition, as `veritysetup format` and kiln write it; its layout and
//! checks are [`kiln_format::verity`], shared with the builder. Reading the
//! salt and sizes from it keeps them off the kernel command line. None of it
//! needs to be trusted: a changed salt, size or block size changes the hash
//! tree the kernel computes, which then no longer matches the root hash.
//! kiln-init adds one rule: the hash is sha256, the algorithm of the DPS
//! root hash.
//!
//! Table line: the kernel's `Documentation/admin-guide/device-mapper/verity.rst`:
//! `<version> <data_dev> <hash_dev> <data_block_size> <hash_block_size>
//! <num_data_blocks> <hash_start_block> <algorithm> <digest> <salt>`.

use crate::cmdline::to_hex;
pub use kiln_format::verity::{Superblock, SuperblockError, SIZE as SUPERBLOCK_SIZE};

/// The hash algorithm kiln-init accepts: the DPS root hash is sha256.
const ALGORITHM: &str = "sha256";

/// Parse and check a superblock from the first 512 bytes of a hash device;
/// the algorithm name comes back lowercase.
pub fn parse_superblock(b: &[u8]) -> Result<Superblock, SuperblockError> {
    let mut sb = Superblock::decode(b)?;
    sb.algorithm.make_ascii_lowercase();
    if sb.algorithm != ALGORITHM {
        return Err(SuperblockError("hash algorithm is not sha256"));
    }
    Ok(sb)
}

/// The `verity` target's parameters for data and hash devices given as
/// `major:minor`.
pub fn table_params(
    sb: &Superblock,
    data_dev: (u32, u32),
    hash_dev: (u32, u32),
    roothash: &[u8; 32],
) -> String {
    let salt = if sb.salt.is_empty() {
        "-".to_string()
    } else {
        to_hex(&sb.salt)
    };
    format!(
        "{} {}:{} {}:{} {} {} {} {} {} {} {}",
        sb.hash_type,
        data_dev.0,
        data_dev.1,
        hash_dev.0,
        hash_dev.1,
        sb.data_block_size,
        sb.hash_block_size,
        sb.data_blocks,
        sb.hash_start_block(),
        sb.algorithm,
        to_hex(roothash),
        salt
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn superblock(salt: &[u8], data_blocks: u64, algorithm: &str) -> [u8; SUPERBLOCK_SIZE] {
        Superblock {
            hash_type: 1,
            uuid: [0x5a; 16],
            algorithm: algorithm.into(),
            data_block_size: 4096,
            hash_block_size: 4096,
            data_blocks,
            salt: salt.to_vec(),
        }
        .encode()
        .unwrap()
    }

    #[test]
    fn parses_and_builds_the_table() {
        let sb = parse_superblock(&superblock(&[0xab, 0xcd], 256, "sha256")).unwrap();
        assert_eq!(sb.data_sectors(), 2048);
        assert_eq!(sb.hash_start_block(), 1);
        assert_eq!(
            table_params(&sb, (254, 1), (254, 2), &[0x11; 32]),
            format!(
                "1 254:1 254:2 4096 4096 256 1 sha256 {} abcd",
                "11".repeat(32)
            )
        );
        let unsalted = parse_superblock(&superblock(&[], 1, "SHA256")).unwrap();
        assert_eq!(unsalted.algorithm, "sha256");
        assert!(table_params(&unsalted, (8, 2), (8, 3), &[0; 32]).ends_with(" -"));
    }

    #[test]
    fn refuses_other_hashes_and_damage() {
        assert_eq!(
            parse_superblock(&superblock(&[1; 32], 10, "sha1")),
            Err(SuperblockError("hash algorithm is not sha256"))
        );
        let mut b = superblock(&[1; 32], 10, "sha256");
        b[0] = b'V';
        assert_eq!(
            parse_superblock(&b),
            Err(SuperblockError(
                "no \"verity\" magic at the start of the hash partition"
            ))
        );
        assert!(parse_superblock(&b[..100]).is_err());
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
