//! The dm-verity superblock: cryptsetup's on-disk "format 1"
//! (`lib/verity/verity.c`, `struct verity_sb`; 512 bytes, little-endian) at
//! the start of a hash device, as `veritysetup format` writes it, kiln
//! writes it and kiln-init reads it to set up the `verity` target.
//!
//! None of it needs to be trusted at boot: a changed salt, size or block
//! size changes the hash tree the kernel computes, which then no longer
//! matches the root hash.

use crate::field::{Field, Span};

/// `signature`: cryptsetup's `VERITY_SIGNATURE`.
pub const SIGNATURE: &[u8; 8] = b"verity\0\0";
/// Size of the superblock on disk.
pub const SIZE: usize = 512;
/// The only superblock version cryptsetup defines.
pub const VERSION: u32 = 1;
/// Hash format 1, the normal one (0 is the Chrome OS variant, salt last).
pub const HASH_TYPE_NORMAL: u32 = 1;
/// Longest salt the superblock holds.
pub const MAX_SALT: usize = 256;
/// Smallest and largest block size a decoder accepts (powers of two only).
pub const BLOCK_SIZES: std::ops::RangeInclusive<u32> = 512..=65536;
/// Sector size in which device-mapper tables count.
const SECTOR: u64 = 512;

/// `signature`.
pub const F_SIGNATURE: Field<8> = Field::new("signature", 0);
/// `version`.
pub const F_VERSION: Field<4> = Field::new("version", 8);
/// `hash_type`.
pub const F_HASH_TYPE: Field<4> = Field::new("hash_type", 12);
/// `uuid`, the hash device's UUID (textual byte order).
pub const F_UUID: Field<16> = Field::new("uuid", 16);
/// `algorithm`: the hash's name, zero padded.
pub const F_ALGORITHM: Field<32> = Field::new("algorithm", 32);
/// `data_block_size`.
pub const F_DATA_BLOCK_SIZE: Field<4> = Field::new("data_block_size", 64);
/// `hash_block_size`.
pub const F_HASH_BLOCK_SIZE: Field<4> = Field::new("hash_block_size", 68);
/// `data_blocks`.
pub const F_DATA_BLOCKS: Field<8> = Field::new("data_blocks", 72);
/// `salt_size`.
pub const F_SALT_SIZE: Field<2> = Field::new("salt_size", 80);
/// `salt`, followed by padding to 512 bytes.
pub const F_SALT: Field<{ MAX_SALT }> = Field::new("salt", 88);

/// Every field, in order.
pub const FIELDS: &[Span] = &[
    F_SIGNATURE.span(),
    F_VERSION.span(),
    F_HASH_TYPE.span(),
    F_UUID.span(),
    F_ALGORITHM.span(),
    F_DATA_BLOCK_SIZE.span(),
    F_HASH_BLOCK_SIZE.span(),
    F_DATA_BLOCKS.span(),
    F_SALT_SIZE.span(),
    F_SALT.span(),
];

/// Why a superblock was refused, or could not be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuperblockError(pub &'static str);

impl std::fmt::Display for SuperblockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "verity superblock: {}", self.0)
    }
}

impl std::error::Error for SuperblockError {}

/// The fields of a version 1 superblock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    /// Hash format: [`HASH_TYPE_NORMAL`], or 0 for Chrome OS's.
    pub hash_type: u32,
    /// The hash device's UUID.
    pub uuid: [u8; 16],
    /// Hash algorithm name as stored (`sha256`).
    pub algorithm: String,
    /// Data block size in bytes.
    pub data_block_size: u32,
    /// Hash block size in bytes.
    pub hash_block_size: u32,
    /// Number of data blocks covered.
    pub data_blocks: u64,
    /// The salt, at most [`MAX_SALT`] bytes.
    pub salt: Vec<u8>,
}

fn block_size_ok(n: u32) -> bool {
    n.is_power_of_two() && BLOCK_SIZES.contains(&n)
}

impl Superblock {
    /// Parses and checks a superblock from the first [`SIZE`] bytes of a
    /// hash device: signature, version, hash type, block sizes (powers of
    /// two in [`BLOCK_SIZES`]), a data size that is not zero and fits 64
    /// bits, and the salt's length.
    pub fn decode(b: &[u8]) -> Result<Superblock, SuperblockError> {
        let b = b
            .get(..SIZE)
            .filter(|b| F_SIGNATURE.bytes(b) == Some(&SIGNATURE[..]))
            .ok_or(SuperblockError(
                "no \"verity\" magic at the start of the hash partition",
            ))?;
        // `b` is SIZE bytes long from here on and holds every field.
        if F_VERSION.get::<u32>(b) != Some(VERSION) {
            return Err(SuperblockError("field `version` is not 1"));
        }
        let hash_type = F_HASH_TYPE.get::<u32>(b).unwrap_or(u32::MAX);
        if hash_type > HASH_TYPE_NORMAL {
            return Err(SuperblockError("field `hash_type` is neither 0 nor 1"));
        }
        let alg = F_ALGORITHM.bytes(b).unwrap_or_default();
        let alg_len = alg.iter().position(|&c| c == 0).unwrap_or(alg.len());
        let algorithm = std::str::from_utf8(&alg[..alg_len])
            .map_err(|_| SuperblockError("field `algorithm` is not UTF-8"))?
            .to_string();
        let data_block_size = F_DATA_BLOCK_SIZE.get::<u32>(b).unwrap_or_default();
        let hash_block_size = F_HASH_BLOCK_SIZE.get::<u32>(b).unwrap_or_default();
        if !block_size_ok(data_block_size) {
            return Err(SuperblockError(
                "field `data_block_size` is not a power of two in 512..=65536",
            ));
        }
        if !block_size_ok(hash_block_size) {
            return Err(SuperblockError(
                "field `hash_block_size` is not a power of two in 512..=65536",
            ));
        }
        let data_blocks = F_DATA_BLOCKS.get::<u64>(b).unwrap_or_default();
        if data_blocks == 0
            || data_blocks
                .checked_mul(u64::from(data_block_size))
                .is_none()
        {
            return Err(SuperblockError(
                "field `data_blocks` is 0 or too large for 64-bit byte offsets",
            ));
        }
        let salt_size = usize::from(F_SALT_SIZE.get::<u16>(b).unwrap_or(u16::MAX));
        let salt = F_SALT
            .bytes(b)
            .and_then(|s| s.get(..salt_size))
            .ok_or(SuperblockError("field `salt_size` is over 256"))?;
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(F_UUID.bytes(b).unwrap_or(&[0; 16]));
        Ok(Superblock {
            hash_type,
            uuid,
            algorithm,
            data_block_size,
            hash_block_size,
            data_blocks,
            salt: salt.to_vec(),
        })
    }

    /// The superblock's [`SIZE`] bytes. Refuses an algorithm name longer
    /// than its 32-byte field or a salt longer than [`MAX_SALT`].
    pub fn encode(&self) -> Result<[u8; SIZE], SuperblockError> {
        if self.algorithm.len() > F_ALGORITHM.width() {
            return Err(SuperblockError("algorithm name longer than 32 bytes"));
        }
        let salt_size = u16::try_from(self.salt.len())
            .ok()
            .filter(|&n| usize::from(n) <= MAX_SALT)
            .ok_or(SuperblockError("salt longer than 256 bytes"))?;
        let mut b = [0u8; SIZE];
        F_SIGNATURE.put_bytes(&mut b, SIGNATURE);
        F_VERSION.put(&mut b, VERSION);
        F_HASH_TYPE.put(&mut b, self.hash_type);
        F_UUID.put_bytes(&mut b, &self.uuid);
        F_ALGORITHM.put_bytes(&mut b, self.algorithm.as_bytes());
        F_DATA_BLOCK_SIZE.put(&mut b, self.data_block_size);
        F_HASH_BLOCK_SIZE.put(&mut b, self.hash_block_size);
        F_DATA_BLOCKS.put(&mut b, self.data_blocks);
        F_SALT_SIZE.put(&mut b, salt_size);
        F_SALT.put_bytes(&mut b, &self.salt);
        Ok(b)
    }

    /// Length of the data device in 512-byte sectors (a dm table's length).
    pub fn data_sectors(&self) -> u64 {
        self.data_blocks
            .saturating_mul(u64::from(self.data_block_size))
            / SECTOR
    }

    /// The hash tree's first block on the hash device: right after the
    /// superblock, which takes up the first hash block.
    pub fn hash_start_block(&self) -> u64 {
        (SIZE as u64).div_ceil(u64::from(self.hash_block_size.max(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::check_layout;

    fn sample(salt: &[u8], data_blocks: u64) -> Superblock {
        Superblock {
            hash_type: HASH_TYPE_NORMAL,
            uuid: [0x5a; 16],
            algorithm: "sha256".into(),
            data_block_size: 4096,
            hash_block_size: 4096,
            data_blocks,
            salt: salt.to_vec(),
        }
    }

    #[test]
    fn layout_is_consistent() {
        check_layout(FIELDS, SIZE).unwrap();
    }

    /// Bytes as cryptsetup lays them out, field by field.
    #[test]
    fn encodes_cryptsetup_layout() {
        let b = sample(&[0xab, 0xcd], 256).encode().unwrap();
        assert_eq!(&b[0..8], b"verity\0\0");
        assert_eq!(&b[8..16], &[1, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(&b[16..32], &[0x5a; 16]);
        assert_eq!(&b[32..39], b"sha256\0");
        assert_eq!(&b[64..72], &[0, 0x10, 0, 0, 0, 0x10, 0, 0]);
        assert_eq!(&b[72..82], &[0, 1, 0, 0, 0, 0, 0, 0, 2, 0]);
        assert_eq!(&b[88..91], &[0xab, 0xcd, 0]);
        assert!(b[91..].iter().all(|&x| x == 0));
    }

    #[test]
    fn round_trip() {
        for salt in [&[][..], &[1; 32], &[7; MAX_SALT]] {
            let sb = sample(salt, 10);
            assert_eq!(Superblock::decode(&sb.encode().unwrap()), Ok(sb));
        }
        let sb = sample(&[], 256);
        assert_eq!(sb.data_sectors(), 2048);
        assert_eq!(sb.hash_start_block(), 1);
    }

    #[test]
    fn refuses_to_encode_oversized_fields() {
        assert!(sample(&[0; MAX_SALT + 1], 1).encode().is_err());
        let mut sb = sample(&[], 1);
        sb.algorithm = "x".repeat(33);
        assert!(sb.encode().is_err());
    }

    #[test]
    fn rejects_damage() {
        let good = sample(&[1; 32], 10).encode().unwrap();
        let cases: Vec<(usize, u8, &str)> = vec![
            (
                0,
                b'V',
                "no \"verity\" magic at the start of the hash partition",
            ),
            (8, 2, "field `version` is not 1"),
            (12, 7, "field `hash_type` is neither 0 nor 1"),
            (32, 0xff, "field `algorithm` is not UTF-8"),
            (
                65,
                0x11,
                "field `data_block_size` is not a power of two in 512..=65536",
            ),
            (
                69,
                0x00,
                "field `hash_block_size` is not a power of two in 512..=65536",
            ),
            (81, 0x01, "field `salt_size` is over 256"),
        ];
        for (at, value, why) in cases {
            let mut b = good;
            b[at] = value;
            assert_eq!(
                Superblock::decode(&b),
                Err(SuperblockError(why)),
                "byte {at}"
            );
        }
        let empty = sample(&[], 0).encode().unwrap();
        assert_eq!(
            Superblock::decode(&empty),
            Err(SuperblockError(
                "field `data_blocks` is 0 or too large for 64-bit byte offsets"
            ))
        );
        for len in 0..SIZE {
            assert!(Superblock::decode(&good[..len]).is_err());
        }
    }
}
