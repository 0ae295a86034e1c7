//! The GUID Partition Table: header and partition entry layouts and their
//! CRC32s.
//!
//! Layouts and CRC rules: UEFI Specification 2.10, section 5.3 "GUID
//! Partition Table (GPT) Disk Layout" (table 5.5, the header; table 5.6, a
//! partition entry). Type GUIDs and the root hash rule: the UAPI Group's
//! Discoverable Partitions Specification (DPS).
//!
//! GUIDs, their on-disk byte order and the type GUIDs are in [`crate::guid`]
//! (re-exported here).

use crate::field::Field;
pub use crate::gpt_entry::{entry, Entry, GptError, ENTRY_SIZE, NAME_LEN};
pub use crate::guid::{
    format_guid, guid_from_disk, guid_to_disk, verity_partition_uuids, Guid, ESP_TYPE,
    ROOT_X86_64_TYPE, ROOT_X86_64_VERITY_TYPE,
};

/// "EFI PART", the header signature.
pub const SIGNATURE: &[u8; 8] = b"EFI PART";
/// The header revision UEFI 2.x defines (1.0).
pub const REVISION: u32 = 0x0001_0000;
/// Size of the header's fields (the `HeaderSize` kiln writes, and the
/// smallest one the specification allows).
pub const HEADER_SIZE: usize = 92;
/// The largest entry array a decoder accepts (1 MiB); real tables use 16 KiB.
pub const MAX_ENTRY_ARRAY_BYTES: u64 = 1 << 20;

/// The header's fields (UEFI 2.10, table 5.5).
pub mod header {
    use crate::field::{Field, Span};

    /// `Signature`: [`super::SIGNATURE`].
    pub const SIGNATURE: Field<8> = Field::new("Signature", 0);
    /// `Revision`.
    pub const REVISION: Field<4> = Field::new("Revision", 8);
    /// `HeaderSize`.
    pub const HEADER_SIZE: Field<4> = Field::new("HeaderSize", 12);
    /// `HeaderCRC32`, over `HeaderSize` bytes with this field zero.
    pub const HEADER_CRC32: Field<4> = Field::new("HeaderCRC32", 16);
    /// `MyLBA`: where this copy of the header is.
    pub const MY_LBA: Field<8> = Field::new("MyLBA", 24);
    /// `AlternateLBA`: where the other copy is.
    pub const ALTERNATE_LBA: Field<8> = Field::new("AlternateLBA", 32);
    /// `FirstUsableLBA`.
    pub const FIRST_USABLE_LBA: Field<8> = Field::new("FirstUsableLBA", 40);
    /// `LastUsableLBA`.
    pub const LAST_USABLE_LBA: Field<8> = Field::new("LastUsableLBA", 48);
    /// `DiskGUID`, mixed-endian.
    pub const DISK_GUID: Field<16> = Field::new("DiskGUID", 56);
    /// `PartitionEntryLBA`: the first block of the entry array.
    pub const PARTITION_ENTRY_LBA: Field<8> = Field::new("PartitionEntryLBA", 72);
    /// `NumberOfPartitionEntries`.
    pub const NUMBER_OF_PARTITION_ENTRIES: Field<4> = Field::new("NumberOfPartitionEntries", 80);
    /// `SizeOfPartitionEntry`.
    pub const SIZE_OF_PARTITION_ENTRY: Field<4> = Field::new("SizeOfPartitionEntry", 84);
    /// `PartitionEntryArrayCRC32`.
    pub const PARTITION_ENTRY_ARRAY_CRC32: Field<4> = Field::new("PartitionEntryArrayCRC32", 88);

    /// Every field, in the order of the table (the CRC, a checksum over the
    /// others, last).
    pub const FIELDS: &[Span] = &[
        SIGNATURE.span(),
        REVISION.span(),
        HEADER_SIZE.span(),
        MY_LBA.span(),
        ALTERNATE_LBA.span(),
        FIRST_USABLE_LBA.span(),
        LAST_USABLE_LBA.span(),
        DISK_GUID.span(),
        PARTITION_ENTRY_LBA.span(),
        NUMBER_OF_PARTITION_ENTRIES.span(),
        SIZE_OF_PARTITION_ENTRY.span(),
        PARTITION_ENTRY_ARRAY_CRC32.span(),
        HEADER_CRC32.span(),
    ];
}

/// The fields of a GPT header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// LBA of this header.
    pub my_lba: u64,
    /// LBA of the other copy of the header.
    pub alternate_lba: u64,
    /// First LBA a partition may use.
    pub first_usable_lba: u64,
    /// Last LBA a partition may use.
    pub last_usable_lba: u64,
    /// Disk GUID.
    pub disk_guid: Guid,
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

    /// Parses and checks a header from the first bytes of its sector:
    /// signature, size, CRC32, an entry size of `128 * 2^n`, an entry
    /// array of at most [`MAX_ENTRY_ARRAY_BYTES`] and a usable range whose
    /// first LBA is not after its last.
    pub fn decode(sector: &[u8]) -> Result<Header, GptError> {
        if header::SIGNATURE.bytes(sector) != Some(&SIGNATURE[..]) {
            return Err(GptError::header(header::SIGNATURE.name, "not \"EFI PART\""));
        }
        let size = header::HEADER_SIZE.get::<u32>(sector).unwrap_or_default();
        let size = usize::try_from(size)
            .ok()
            .filter(|s| (HEADER_SIZE..=sector.len()).contains(s))
            .ok_or_else(|| {
                GptError::header(
                    header::HEADER_SIZE.name,
                    format!("{size} is not in {HEADER_SIZE}..={}", sector.len()),
                )
            })?;
        let mut copy = sector[..size].to_vec();
        copy[header::HEADER_CRC32.range()].fill(0);
        let crc = header::HEADER_CRC32.get::<u32>(sector).unwrap_or_default();
        if crc != crc32(&copy) {
            return Err(GptError::header(
                header::HEADER_CRC32.name,
                format!(
                    "{crc:#010x} does not match the header ({:#010x})",
                    crc32(&copy)
                ),
            ));
        }
        // The header is at least HEADER_SIZE bytes from here on.
        let u64_at = |f: Field<8>| f.get::<u64>(sector).unwrap_or_default();
        let u32_at = |f: Field<4>| f.get::<u32>(sector).unwrap_or_default();
        let mut disk_guid = [0u8; 16];
        if let Some(g) = header::DISK_GUID.bytes(sector) {
            disk_guid.copy_from_slice(g);
        }
        let h = Header {
            my_lba: u64_at(header::MY_LBA),
            alternate_lba: u64_at(header::ALTERNATE_LBA),
            first_usable_lba: u64_at(header::FIRST_USABLE_LBA),
            last_usable_lba: u64_at(header::LAST_USABLE_LBA),
            disk_guid: guid_from_disk(&disk_guid),
            entries_lba: u64_at(header::PARTITION_ENTRY_LBA),
            num_entries: u32_at(header::NUMBER_OF_PARTITION_ENTRIES),
            entry_size: u32_at(header::SIZE_OF_PARTITION_ENTRY),
            entries_crc: u32_at(header::PARTITION_ENTRY_ARRAY_CRC32),
        };
        if (h.entry_size as usize) < ENTRY_SIZE || !h.entry_size.is_power_of_two() {
            return Err(GptError::header(
                header::SIZE_OF_PARTITION_ENTRY.name,
                format!("{} is not 128 * 2^n", h.entry_size),
            ));
        }
        if h.entry_array_len() > MAX_ENTRY_ARRAY_BYTES {
            return Err(GptError::header(
                header::NUMBER_OF_PARTITION_ENTRIES.name,
                format!(
                    "{} entries of {} bytes are more than {MAX_ENTRY_ARRAY_BYTES} bytes",
                    h.num_entries, h.entry_size
                ),
            ));
        }
        if h.first_usable_lba > h.last_usable_lba {
            return Err(GptError::header(
                header::LAST_USABLE_LBA.name,
                format!(
                    "{} is before FirstUsableLBA {}",
                    h.last_usable_lba, h.first_usable_lba
                ),
            ));
        }
        Ok(h)
    }

    /// Checks the header against the disk it was read from, `disk_bytes`
    /// long in sectors of `sector` bytes: every LBA it names lies on the
    /// disk, and the entry array lies outside the usable range.
    pub fn check_disk(&self, sector: u64, disk_bytes: u64) -> Result<(), GptError> {
        let sectors = disk_bytes / sector.max(1);
        let last = sectors.checked_sub(1).ok_or_else(|| {
            GptError::header(header::MY_LBA.name, "the disk holds no whole sector")
        })?;
        let past = |f: Field<8>, lba: u64| {
            GptError::header(
                f.name,
                format!("{lba} is past the disk's last LBA {last} ({disk_bytes} bytes)"),
            )
        };
        for (f, lba) in [
            (header::MY_LBA, self.my_lba),
            (header::ALTERNATE_LBA, self.alternate_lba),
            (header::LAST_USABLE_LBA, self.last_usable_lba),
        ] {
            if lba > last {
                return Err(past(f, lba));
            }
        }
        // At most MAX_ENTRY_ARRAY_BYTES / 512 sectors: no overflow below.
        let array_sectors = self.entry_array_len().div_ceil(sector.max(1));
        let array_end = self.entries_lba.saturating_add(array_sectors);
        let array = || {
            format!(
                "the entry array ({} entries of {} bytes) at LBAs {}..{array_end}",
                self.num_entries, self.entry_size, self.entries_lba
            )
        };
        if array_end > sectors {
            return Err(GptError::header(
                header::PARTITION_ENTRY_LBA.name,
                format!("{} runs past the disk's last LBA {last}", array()),
            ));
        }
        let overlaps_usable = self.entries_lba <= self.last_usable_lba
            && array_end > self.first_usable_lba
            && array_sectors > 0;
        if overlaps_usable {
            return Err(GptError::header(
                header::PARTITION_ENTRY_LBA.name,
                format!(
                    "{} overlaps the usable LBAs {}..={}",
                    array(),
                    self.first_usable_lba,
                    self.last_usable_lba
                ),
            ));
        }
        Ok(())
    }

    /// The header's [`HEADER_SIZE`] bytes, CRC32 included (on disk, the
    /// rest of its sector is zero).
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        header::SIGNATURE.put_bytes(&mut b, SIGNATURE);
        header::REVISION.put(&mut b, REVISION);
        header::HEADER_SIZE.put(&mut b, HEADER_SIZE as u32);
        header::MY_LBA.put(&mut b, self.my_lba);
        header::ALTERNATE_LBA.put(&mut b, self.alternate_lba);
        header::FIRST_USABLE_LBA.put(&mut b, self.first_usable_lba);
        header::LAST_USABLE_LBA.put(&mut b, self.last_usable_lba);
        header::DISK_GUID.put_bytes(&mut b, &guid_to_disk(&self.disk_guid));
        header::PARTITION_ENTRY_LBA.put(&mut b, self.entries_lba);
        header::NUMBER_OF_PARTITION_ENTRIES.put(&mut b, self.num_entries);
        header::SIZE_OF_PARTITION_ENTRY.put(&mut b, self.entry_size);
        header::PARTITION_ENTRY_ARRAY_CRC32.put(&mut b, self.entries_crc);
        let crc = crc32(&b);
        header::HEADER_CRC32.put(&mut b, crc);
        b
    }
}

/// The used entries of the entry array `h` describes, each with its
/// partition number (its index in the array plus one, as the kernel counts),
/// after checking the array's length and CRC32, and that each partition
/// lies in the header's usable range, ends after it starts and overlaps no
/// other.
pub fn decode_entries(h: &Header, array: &[u8]) -> Result<Vec<(u32, Entry)>, GptError> {
    let len = usize::try_from(h.entry_array_len()).map_err(|_| {
        GptError::entries(header::NUMBER_OF_PARTITION_ENTRIES.name, "array too large")
    })?;
    let array = array.get(..len).ok_or_else(|| {
        GptError::entries(
            header::NUMBER_OF_PARTITION_ENTRIES.name,
            format!(
                "array of {} bytes, shorter than the {len} the header says",
                array.len()
            ),
        )
    })?;
    if crc32(array) != h.entries_crc {
        return Err(GptError::entries(
            header::PARTITION_ENTRY_ARRAY_CRC32.name,
            format!(
                "{:#010x} does not match the entry array ({:#010x})",
                h.entries_crc,
                crc32(array)
            ),
        ));
    }
    let mut used = Vec::new();
    for (b, number) in array.chunks_exact(h.entry_size as usize).zip(1u32..) {
        let e = Entry::decode(b)?;
        if !e.is_used() {
            continue;
        }
        if e.last_lba < e.first_lba {
            return Err(GptError::entry(
                number,
                entry::ENDING_LBA.name,
                format!("{} is before StartingLBA {}", e.last_lba, e.first_lba),
            ));
        }
        if e.first_lba < h.first_usable_lba || e.last_lba > h.last_usable_lba {
            let (field, lba) = if e.first_lba < h.first_usable_lba {
                (entry::STARTING_LBA.name, e.first_lba)
            } else {
                (entry::ENDING_LBA.name, e.last_lba)
            };
            return Err(GptError::entry(
                number,
                field,
                format!(
                    "{lba} is outside the usable LBAs {}..={}",
                    h.first_usable_lba, h.last_usable_lba
                ),
            ));
        }
        used.push((number, e));
    }
    let mut by_start: Vec<&(u32, Entry)> = used.iter().collect();
    by_start.sort_by_key(|(_, e)| e.first_lba);
    for pair in by_start.windows(2) {
        let ((n, a), (m, b)) = (pair[0], pair[1]);
        if b.first_lba <= a.last_lba {
            return Err(GptError::entry(
                *m,
                entry::STARTING_LBA.name,
                format!(
                    "{} is inside partition {n} ({}..={})",
                    b.first_lba, a.first_lba, a.last_lba
                ),
            ));
        }
    }
    Ok(used)
}

/// CRC-32 as GPT uses it (IEEE 802.3, reflected, polynomial 0xEDB88320).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::check_layout;

    /// The ESP type GUID as sfdisk and the UEFI specification store it.
    const ESP_ON_DISK: [u8; 16] = [
        0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9,
        0x3B,
    ];

    #[test]
    fn layouts_are_consistent() {
        check_layout(header::FIELDS, HEADER_SIZE).unwrap();
        check_layout(entry::FIELDS, ENTRY_SIZE).unwrap();
        let covered: usize = entry::FIELDS.iter().map(|f| f.len).sum();
        assert_eq!(covered, ENTRY_SIZE);
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
        assert_eq!(g, ESP_TYPE);
        assert_eq!(format_guid(&g), "c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
        assert_eq!(guid_to_disk(&g), ESP_ON_DISK);
        assert_eq!(
            format_guid(&ROOT_X86_64_TYPE),
            "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"
        );
        assert_eq!(
            format_guid(&ROOT_X86_64_VERITY_TYPE),
            "2c7357ed-ebd2-46d9-aec1-23d437ec2bf5"
        );
    }

    #[test]
    fn root_hash_halves() {
        let h: [u8; 32] = std::array::from_fn(|i| i as u8);
        let (d, v) = verity_partition_uuids(&h);
        assert_eq!(format_guid(&d), "00010203-0405-0607-0809-0a0b0c0d0e0f");
        assert_eq!(format_guid(&v), "10111213-1415-1617-1819-1a1b1c1d1e1f");
    }

    fn header(array: &[u8]) -> Header {
        Header {
            my_lba: 1,
            alternate_lba: 39,
            first_usable_lba: 34,
            last_usable_lba: 38,
            disk_guid: [0x42; 16],
            entries_lba: 2,
            num_entries: 128,
            entry_size: ENTRY_SIZE as u32,
            entries_crc: crc32(array),
        }
    }

    #[test]
    fn round_trip() {
        let mut array = vec![0u8; 128 * ENTRY_SIZE];
        let mut second = Entry::new(ROOT_X86_64_TYPE, [0xBB; 16], 36, 38);
        second.attributes = 1 << 60;
        second.name[..4].copy_from_slice(&[b'r', 0, b't', 0]);
        array[ENTRY_SIZE..2 * ENTRY_SIZE].copy_from_slice(&second.encode());
        let h = header(&array);
        let bytes = h.encode();
        assert_eq!(&bytes[..8], SIGNATURE);
        assert_eq!(Header::decode(&bytes), Ok(h.clone()));
        assert_eq!(decode_entries(&h, &array), Ok(vec![(2, second)]));
    }

    /// The field an error names.
    fn field(e: GptError) -> &'static str {
        match e {
            GptError::Header { field, .. }
            | GptError::Entries { field, .. }
            | GptError::Entry { field, .. } => field,
        }
    }

    #[test]
    fn damage_is_rejected() {
        let array = vec![0u8; 128 * ENTRY_SIZE];
        let mut sector = [0u8; 512];
        sector[..HEADER_SIZE].copy_from_slice(&header(&array).encode());
        for (at, want) in [(0, "Signature"), (13, "HeaderSize"), (30, "HeaderCRC32")] {
            let mut bad = sector;
            bad[at] ^= 0x40;
            assert_eq!(
                Header::decode(&bad).map_err(field),
                Err(want),
                "flip at {at}"
            );
        }
        let mut bad_array = array.clone();
        bad_array[17] ^= 0x40;
        let h = Header::decode(&sector).unwrap();
        assert_eq!(
            decode_entries(&h, &bad_array).map_err(field),
            Err("PartitionEntryArrayCRC32")
        );
        assert_eq!(
            decode_entries(&h, &array[..100]).map_err(field),
            Err("NumberOfPartitionEntries")
        );
        for size in [64u32, 129, 1 << 20] {
            let mut h = header(&array);
            h.entry_size = size;
            assert!(Header::decode(&h.encode()).is_err(), "entry size {size}");
        }
        let mut h = header(&array);
        h.first_usable_lba = 40;
        assert_eq!(
            Header::decode(&h.encode()).map_err(field),
            Err("LastUsableLBA")
        );
        assert!(Entry::decode(&[0u8; 127]).is_err());
        assert_eq!(
            GptError::entry(2, "EndingLBA", "5 is before StartingLBA 40").to_string(),
            "GPT partition entry 2: field `EndingLBA`: 5 is before StartingLBA 40"
        );
    }

    /// An entry size of 256 (128 * 2) is valid: each entry's first 128
    /// bytes are read, the rest skipped.
    #[test]
    fn larger_entries_are_read() {
        let e = Entry::new(ROOT_X86_64_TYPE, [0xBB; 16], 36, 38);
        let mut array = vec![0u8; 4 * 256];
        array[256..384].copy_from_slice(&e.encode());
        array[384..512].fill(0x77);
        let mut h = header(&array);
        h.num_entries = 4;
        h.entry_size = 256;
        let h = Header::decode(&h.encode()).unwrap();
        assert_eq!(decode_entries(&h, &array), Ok(vec![(2, e)]));
    }

    /// Entries that end before they start, leave the usable range or
    /// overlap are refused, naming the entry and field.
    #[test]
    fn entries_are_checked_against_each_other() {
        // (StartingLBA, EndingLBA) of each entry, the entry and field at fault.
        type Case = (Vec<(u64, u64)>, u32, &'static str);
        let cases: Vec<Case> = vec![
            (vec![(36, 35)], 1, "EndingLBA"),
            (vec![(20, 36)], 1, "StartingLBA"),
            (vec![(36, 1 << 40)], 1, "EndingLBA"),
            (vec![(34, 36), (36, 38)], 2, "StartingLBA"),
            (vec![(37, 38), (34, 37)], 1, "StartingLBA"),
        ];
        for (extents, number, want) in cases {
            let mut array = vec![0u8; 128 * ENTRY_SIZE];
            for (i, &(first, last)) in extents.iter().enumerate() {
                let e = Entry::new(ROOT_X86_64_TYPE, [i as u8 + 1; 16], first, last);
                array[i * ENTRY_SIZE..(i + 1) * ENTRY_SIZE].copy_from_slice(&e.encode());
            }
            let h = header(&array);
            match decode_entries(&h, &array) {
                Err(GptError::Entry {
                    number: n, field, ..
                }) => {
                    assert_eq!((n, field), (number, want), "{extents:?}")
                }
                other => panic!("{extents:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn header_is_checked_against_the_disk() {
        let h = header(&[0u8; 128 * ENTRY_SIZE]);
        assert_eq!(h.check_disk(512, 40 * 512), Ok(()));
        let cases: Vec<(u64, &str)> = vec![(39 * 512, "AlternateLBA"), (511, "MyLBA")];
        for (bytes, want) in cases {
            assert_eq!(
                h.check_disk(512, bytes).map_err(field),
                Err(want),
                "{bytes}"
            );
        }
        let mut far = h.clone();
        far.entries_lba = 39;
        assert_eq!(
            far.check_disk(512, 40 * 512).map_err(field),
            Err("PartitionEntryLBA")
        );
        let mut inside = h.clone();
        inside.entries_lba = 30;
        assert_eq!(
            inside.check_disk(512, 1 << 20).map_err(field),
            Err("PartitionEntryLBA")
        );
    }

    /// Any bytes decode to a header or an error, never a panic.
    #[test]
    fn arbitrary_bytes_do_not_panic() {
        let good = header(&[0u8; ENTRY_SIZE]).encode();
        for len in 0..=good.len() {
            let _ = Header::decode(&good[..len]);
        }
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..2000 {
            let mut b = good;
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                b[(state % HEADER_SIZE as u64) as usize] = (state >> 32) as u8;
            }
            if let Ok(h) = Header::decode(&b) {
                let _ = decode_entries(&h, &[0u8; 4096]);
            }
        }
    }
}
