//! Just enough GPT reading to find partitions by their unique GUID.
//!
//! The kernel does not expose a partition's GPT GUID in sysfs (its uevent
//! has `PARTN` and `PARTNAME` only), so kiln-init reads the partition table
//! from the whole-disk device itself: the header at LBA 1 (or, if that is
//! damaged, the backup header in the disk's last LBA), then the entry array.
//! Layout and CRC rules: UEFI Specification 2.10, section 5.3 "GUID Partition
//! Table (GPT) Disk Layout". Nothing here is trusted for integrity (dm-verity
//! does that); the checks only keep a damaged table from being misread.
//!
//! GUIDs are stored mixed-endian: the first three fields little-endian, the
//! last 8 bytes as they are. [`guid_from_disk`] turns them into the byte
//! order of the textual form, the order systemd uses for the root hash halves.

/// "EFI PART", the header signature.
const SIGNATURE: &[u8; 8] = b"EFI PART";
/// Smallest header size the spec allows (the fields up to the entry array CRC).
const MIN_HEADER_SIZE: usize = 92;
/// Smallest entry size the spec allows.
const MIN_ENTRY_SIZE: u32 = 128;
/// A cap on the entry array we are willing to read (1 MiB); real tables use 16 KiB.
pub const MAX_ENTRY_ARRAY_BYTES: u64 = 1 << 20;

/// The fields of a GPT header kiln-init uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// LBA of this header.
    pub my_lba: u64,
    /// LBA of the other copy of the header.
    pub alternate_lba: u64,
    /// First LBA of the partition entry array.
    pub entries_lba: u64,
    /// Number of entries in the array.
    pub num_entries: u32,
    /// Size of one entry in bytes.
    pub entry_size: u32,
    /// CRC32 of the entry array.
    pub entries_crc: u32,
}

impl Header {
    /// Bytes of the entry array.
    pub fn entry_array_len(&self) -> u64 {
        u64::from(self.num_entries) * u64::from(self.entry_size)
    }
}

/// One used partition entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Partition number as the kernel counts it: index in the array plus one.
    pub number: u32,
    /// Partition type GUID, in textual byte order.
    pub type_guid: [u8; 16],
    /// Unique partition GUID, in textual byte order.
    pub unique_guid: [u8; 16],
    /// First LBA.
    pub first_lba: u64,
    /// Last LBA, inclusive.
    pub last_lba: u64,
}

/// Why a header or entry array was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GptError {
    /// Not a GPT header, or a damaged one.
    BadHeader(&'static str),
    /// The entry array does not match the header's CRC or size.
    BadEntries(&'static str),
}

impl std::fmt::Display for GptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GptError::BadHeader(why) => write!(f, "GPT header: {why}"),
            GptError::BadEntries(why) => write!(f, "GPT partition entries: {why}"),
        }
    }
}

/// CRC-32 as the GPT uses it (IEEE 802.3, reflected, polynomial 0xEDB88320).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Convert a GUID from its on-disk (mixed-endian) bytes to textual byte order.
/// The conversion is its own inverse.
pub fn guid_from_disk(d: &[u8]) -> [u8; 16] {
    let mut g = [0u8; 16];
    g.copy_from_slice(&d[..16]);
    g[0..4].reverse();
    g[4..6].reverse();
    g[6..8].reverse();
    g
}

/// Format textual-order GUID bytes as `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub fn format_guid(g: &[u8; 16]) -> String {
    let h: String = g.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Parse and check a GPT header from the first bytes of its sector.
pub fn parse_header(sector: &[u8]) -> Result<Header, GptError> {
    if sector.len() < MIN_HEADER_SIZE || &sector[0..8] != SIGNATURE {
        return Err(GptError::BadHeader("no \"EFI PART\" signature"));
    }
    let size = le32(sector, 12) as usize;
    if size < MIN_HEADER_SIZE || size > sector.len() {
        return Err(GptError::BadHeader("header size out of range"));
    }
    let mut copy = sector[..size].to_vec();
    copy[16..20].fill(0);
    if crc32(&copy) != le32(sector, 16) {
        return Err(GptError::BadHeader("header CRC32 mismatch"));
    }
    let h = Header {
        my_lba: le64(sector, 24),
        alternate_lba: le64(sector, 32),
        entries_lba: le64(sector, 72),
        num_entries: le32(sector, 80),
        entry_size: le32(sector, 84),
        entries_crc: le32(sector, 88),
    };
    if h.entry_size < MIN_ENTRY_SIZE || !h.entry_size.is_power_of_two() {
        return Err(GptError::BadHeader("partition entry size is not 128 * 2^n"));
    }
    if h.entry_array_len() > MAX_ENTRY_ARRAY_BYTES {
        return Err(GptError::BadHeader(
            "partition entry array larger than 1 MiB",
        ));
    }
    Ok(h)
}

/// Parse the used entries of a partition entry array (type GUID not zero).
pub fn parse_entries(h: &Header, array: &[u8]) -> Result<Vec<Entry>, GptError> {
    let len = usize::try_from(h.entry_array_len())
        .map_err(|_| GptError::BadEntries("array too large"))?;
    if array.len() < len {
        return Err(GptError::BadEntries("array shorter than the header says"));
    }
    let array = &array[..len];
    if crc32(array) != h.entries_crc {
        return Err(GptError::BadEntries("entry array CRC32 mismatch"));
    }
    Ok(array
        .chunks_exact(h.entry_size as usize)
        .zip(1u32..)
        .filter(|(e, _)| e[0..16].iter().any(|&b| b != 0))
        .map(|(e, number)| Entry {
            number,
            type_guid: guid_from_disk(&e[0..16]),
            unique_guid: guid_from_disk(&e[16..32]),
            first_lba: le64(e, 32),
            last_lba: le64(e, 40),
        })
        .collect())
}

/// The partition GUIDs that belong to a root hash, as systemd-repart writes
/// and systemd-veritysetup-generator looks for them: the first 128 bits for
/// the root data partition, the last 128 bits for the verity hash partition,
/// both taken verbatim in textual byte order.
pub fn verity_partition_guids(roothash: &[u8; 32]) -> ([u8; 16], [u8; 16]) {
    let mut data = [0u8; 16];
    let mut hash = [0u8; 16];
    data.copy_from_slice(&roothash[..16]);
    hash.copy_from_slice(&roothash[16..]);
    (data, hash)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The ESP type GUID C12A7328-F81F-11D2-BA4B-00A0C93EC93B as stored on disk.
    const ESP_ON_DISK: [u8; 16] = [
        0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9,
        0x3B,
    ];

    fn put32(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn put64(b: &mut [u8], at: usize, v: u64) {
        b[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }

    /// A 512-byte-sector disk image with a primary GPT holding `parts`
    /// (unique GUID in textual order, first LBA, last LBA).
    pub(crate) fn disk(parts: &[([u8; 16], u64, u64)]) -> Vec<u8> {
        let mut img = vec![0u8; 512 * 40];
        let mut array = vec![0u8; 128 * 128];
        for (i, (guid, first, last)) in parts.iter().enumerate() {
            let e = &mut array[i * 128..(i + 1) * 128];
            e[0..16].copy_from_slice(&ESP_ON_DISK);
            e[16..32].copy_from_slice(&guid_from_disk(guid));
            put64(e, 32, *first);
            put64(e, 40, *last);
        }
        let mut h = vec![0u8; 92];
        h[0..8].copy_from_slice(SIGNATURE);
        put32(&mut h, 8, 0x0001_0000);
        put32(&mut h, 12, 92);
        put64(&mut h, 24, 1);
        put64(&mut h, 32, 39);
        put64(&mut h, 72, 2);
        put32(&mut h, 80, 128);
        put32(&mut h, 84, 128);
        put32(&mut h, 88, crc32(&array));
        let crc = crc32(&h);
        put32(&mut h, 16, crc);
        img[512..512 + 92].copy_from_slice(&h);
        img[1024..1024 + array.len()].copy_from_slice(&array);
        img
    }

    #[test]
    fn crc32_check_value() {
        // The standard CRC-32 check value.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn guid_byte_order() {
        let g = guid_from_disk(&ESP_ON_DISK);
        assert_eq!(format_guid(&g), "c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
        assert_eq!(guid_from_disk(&g), ESP_ON_DISK);
    }

    #[test]
    fn root_hash_halves() {
        let mut h = [0u8; 32];
        for (i, b) in h.iter_mut().enumerate() {
            *b = i as u8;
        }
        let (d, v) = verity_partition_guids(&h);
        assert_eq!(format_guid(&d), "00010203-0405-0607-0809-0a0b0c0d0e0f");
        assert_eq!(format_guid(&v), "10111213-1415-1617-1819-1a1b1c1d1e1f");
    }

    #[test]
    fn parse_table_round_trip() {
        let a = [0xAA; 16];
        let mut b = [0xBB; 16];
        b[0] = 1;
        let img = disk(&[(a, 34, 35), (b, 36, 38)]);
        let h = parse_header(&img[512..1024]).unwrap();
        assert_eq!((h.my_lba, h.alternate_lba, h.entries_lba), (1, 39, 2));
        let entries = parse_entries(&h, &img[1024..]).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].number, 2);
        assert_eq!(entries[1].unique_guid, b);
        assert_eq!((entries[1].first_lba, entries[1].last_lba), (36, 38));
        assert_eq!(entries[0].type_guid, guid_from_disk(&ESP_ON_DISK));
    }

    #[test]
    fn damage_is_rejected() {
        let img = disk(&[([0xAA; 16], 34, 35)]);
        let cases: Vec<(usize, GptError)> = vec![
            (512, GptError::BadHeader("no \"EFI PART\" signature")),
            (512 + 30, GptError::BadHeader("header CRC32 mismatch")),
            (
                1024 + 17,
                GptError::BadEntries("entry array CRC32 mismatch"),
            ),
        ];
        for (at, want) in cases {
            let mut bad = img.clone();
            bad[at] ^= 0x40;
            let got = parse_header(&bad[512..1024]).and_then(|h| parse_entries(&h, &bad[1024..]));
            assert_eq!(got, Err(want), "flip at {at}");
        }
        assert!(parse_header(&[0u8; 10]).is_err());
    }
}
