//! The disk image: protective MBR, GPT, and the partitions' contents.
//!
//! Lays the partitions out back to back, each starting and ending on a 1 MiB
//! boundary, and writes a protective MBR, the primary GPT header and
//! 128-entry partition array at LBA 1–33, and the backup array and header at
//! the end of the disk (UEFI specification 2.10, chapter 5, "GUID Partition
//! Table (GPT) Disk Layout"). Partition types come from the UAPI Discoverable Partitions
//! Specification, so systemd and kiln's initramfs find root and its verity
//! hash by type alone.
//!
//! The type GUIDs and the verity partition GUIDs come from
//! [`kiln_format::gpt`], which kiln-init reads the table with. The headers
//! and entries are serialised by the `gpt` crate, which takes
//! care of GPT's mixed-endian GUID encoding (first three fields little
//! endian) and both CRC32s. It is driven so that nothing random goes in: the
//! disk GUID is passed explicitly and the entries are built here with the
//! caller's GUIDs (its `add_partition` would draw random ones). It runs
//! against [`TableAreas`], an in-memory device that holds only the first and
//! last sectors of the disk, so the crate never touches the output file and
//! the file need not be opened for reading.
//!
//! GUIDs are derived from content the way systemd-repart does
//! (`src/repart/repart.c`): `HMAC-SHA256(key = seed, message = type UUID
//! [|| LE64 instance])`, the first 16 bytes stamped as a version 4 UUID; the
//! disk GUID from the message `"disk-uuid"`. The verity data and hash
//! partitions take the first and last 128 bits of the root hash unchanged, as
//! the Discoverable Partitions Specification asks.
//!
//! The image file is sparse: 4 KiB blocks of partition data that are all zero
//! are skipped, not written.

use hmac::{Hmac, KeyInit, Mac};
use kiln_format::gpt as format;
use sha2::{Digest, Sha256};

use crate::fs::layer::{finish_digest, hash_zeros};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Seek, SeekFrom, Write};
use uuid::Uuid;

/// EFI System Partition (UEFI spec; DPS "EFI System Partition").
pub const ESP_TYPE: Uuid = Uuid::from_bytes(format::ESP_TYPE);
/// Root partition for x86-64 (DPS `SD_GPT_ROOT_X86_64`).
pub const ROOT_X86_64_TYPE: Uuid = Uuid::from_bytes(format::ROOT_X86_64_TYPE);
/// dm-verity hash partition of the x86-64 root (DPS `SD_GPT_ROOT_X86_64_VERITY`).
pub const ROOT_X86_64_VERITY_TYPE: Uuid = Uuid::from_bytes(format::ROOT_X86_64_VERITY_TYPE);

/// Partition attribute bit 0: required by the platform (UEFI spec).
pub const ATTR_REQUIRED: u64 = 1 << 0;
/// Partition attribute bit 60: mount read-only (DPS).
pub const ATTR_READ_ONLY: u64 = 1 << 60;
/// Partition attribute bit 63: do not auto-mount (DPS).
pub const ATTR_NO_AUTO: u64 = 1 << 63;

/// Logical sector size of the image.
pub const SECTOR_SIZE: u64 = 512;
/// Partition alignment, and the space kept before the first partition and
/// after the last one (as sfdisk, parted and systemd-repart do).
pub const ALIGNMENT: u64 = 1 << 20;
/// Granularity of holes in the sparse file.
const BLOCK: u64 = 4096;
/// Entries in each partition array (the UEFI minimum, 16 KiB).
const MAX_PARTITIONS: usize = 128;
/// Sectors at the start: protective MBR, primary header, 32 sectors of entries.
const HEAD_SECTORS: u64 = 2 + 32;
/// Sectors at the end: 32 sectors of entries, backup header.
const TAIL_SECTORS: u64 = 32 + 1;
/// Longest GPT partition name, in UTF-16 code units (72 bytes).
const MAX_NAME_UNITS: usize = 36;

/// Errors writing a disk image.
#[derive(Debug, thiserror::Error)]
pub enum GptError {
    /// More partitions than one GPT array holds.
    #[error("{count} partitions requested, a GPT holds at most {MAX_PARTITIONS}")]
    TooManyPartitions {
        /// Number of partitions requested.
        count: usize,
    },
    /// A partition has no content.
    #[error("partition {name:?} is empty")]
    EmptyPartition {
        /// Partition name.
        name: String,
    },
    /// A partition name does not fit the 36 UTF-16 units of a GPT entry.
    #[error("partition name {name:?} is longer than {MAX_NAME_UNITS} UTF-16 code units")]
    NameTooLong {
        /// Partition name.
        name: String,
    },
    /// Two partitions, or a partition and the disk, share a GUID.
    #[error("GUID {guid} of partition {name:?} is already used on this disk")]
    DuplicateGuid {
        /// Partition name.
        name: String,
        /// The repeated GUID.
        guid: Uuid,
    },
    /// The `gpt` crate rejected the table.
    #[error("writing the GPT for disk {disk_guid}")]
    Table {
        /// Disk GUID.
        disk_guid: Uuid,
        /// What the crate reported.
        #[source]
        source: gpt::GptError,
    },
    /// The `gpt` crate could not write the protective MBR.
    #[error("writing the protective MBR for disk {disk_guid}")]
    Mbr {
        /// Disk GUID.
        disk_guid: Uuid,
        /// What the crate reported.
        #[source]
        source: gpt::mbr::MBRError,
    },
    /// Writing the image file failed.
    #[error("writing {what} of the disk image")]
    Io {
        /// The part of the image being written.
        what: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// One partition to put on the disk.
#[derive(Debug, Clone)]
pub struct PartitionSpec<'a> {
    /// Partition type GUID, e.g. [`ROOT_X86_64_TYPE`].
    pub type_guid: Uuid,
    /// Unique partition GUID (see [`derive_uuid`], [`verity_partition_uuids`]).
    pub part_guid: Uuid,
    /// Partition label (at most 36 UTF-16 code units).
    pub name: &'a str,
    /// Contents, as pieces in order (an ESP whose UKI is not copied into
    /// it, [`crate::fs::fat::Esp::pieces`]); the partition is this long
    /// rounded up to 1 MiB, zero padded.
    pub data: &'a [&'a [u8]],
    /// Attribute bits, e.g. [`ATTR_READ_ONLY`].
    pub attributes: u64,
}

impl PartitionSpec<'_> {
    /// The length of the contents.
    fn len(&self) -> u64 {
        self.data.iter().map(|p| p.len() as u64).sum()
    }
}

/// Where one partition ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLayout {
    /// 1-based partition number (`/dev/vdaN`).
    pub index: u32,
    /// Partition type GUID.
    pub type_guid: Uuid,
    /// Unique partition GUID.
    pub part_guid: Uuid,
    /// Partition label.
    pub name: String,
    /// Byte offset of the partition on the disk.
    pub offset: u64,
    /// Partition size in bytes.
    pub size: u64,
    /// `sha256:` of the partition's bytes (its data, zero padded).
    pub sha256: String,
}

/// The layout of a written disk image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskLayout {
    /// Total size of the image in bytes (a multiple of 1 MiB).
    pub size: u64,
    /// Disk GUID.
    pub disk_guid: Uuid,
    /// The partitions, in table order.
    pub partitions: Vec<PartitionLayout>,
    /// `sha256:` of the whole image file ([`write_disk`] fills it in).
    pub digest: String,
}

/// `HMAC-SHA256(key = seed, message)`, first 16 bytes shaped as a v4 UUID:
/// systemd's `derive_uuid()`.
fn hmac_uuid(seed: &[u8], message: &[&[u8]]) -> Uuid {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(seed)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    for part in message {
        mac.update(part);
    }
    let digest = mac.finalize().into_bytes();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// Partition GUID derived from `seed` as systemd-repart does: the HMAC of the
/// type UUID (in its textual byte order), followed by the LE64 `instance`
/// for the second (`instance` 1) and later partitions of the same type.
pub fn derive_uuid(seed: &[u8], type_uuid: Uuid, instance: u64) -> Uuid {
    if instance == 0 {
        hmac_uuid(seed, &[type_uuid.as_bytes()])
    } else {
        hmac_uuid(seed, &[type_uuid.as_bytes(), &instance.to_le_bytes()])
    }
}

/// Disk GUID derived from `seed` as systemd-repart does (message `"disk-uuid"`).
pub fn derive_disk_uuid(seed: &[u8]) -> Uuid {
    hmac_uuid(seed, &[b"disk-uuid"])
}

/// The partition GUIDs of a verity-protected partition and its hash
/// partition: the first and last 128 bits of the root hash (DPS), used as is
/// ([`format::verity_partition_uuids`], which kiln-init looks for).
pub fn verity_partition_uuids(root_hash: &[u8; 32]) -> (Uuid, Uuid) {
    let (data, hash) = format::verity_partition_uuids(root_hash);
    (Uuid::from_bytes(data), Uuid::from_bytes(hash))
}

fn align_up(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

/// Computes where each partition goes and the disk size.
fn plan(disk_guid: Uuid, parts: &[PartitionSpec]) -> Result<DiskLayout, GptError> {
    if parts.len() > MAX_PARTITIONS {
        return Err(GptError::TooManyPartitions { count: parts.len() });
    }
    let mut seen = BTreeSet::from([disk_guid]);
    let mut offset = ALIGNMENT;
    let mut partitions = Vec::with_capacity(parts.len());
    for (i, p) in parts.iter().enumerate() {
        if p.len() == 0 {
            return Err(GptError::EmptyPartition {
                name: p.name.to_owned(),
            });
        }
        if p.name.encode_utf16().count() > MAX_NAME_UNITS {
            return Err(GptError::NameTooLong {
                name: p.name.to_owned(),
            });
        }
        if !seen.insert(p.part_guid) {
            return Err(GptError::DuplicateGuid {
                name: p.name.to_owned(),
                guid: p.part_guid,
            });
        }
        // Whole MiBs, so every partition also ends on an alignment boundary
        // (sgdisk cautions otherwise); the padding costs nothing in a sparse file.
        let size = align_up(p.len(), ALIGNMENT);
        partitions.push(PartitionLayout {
            // At most 128 partitions, checked above.
            index: i as u32 + 1,
            type_guid: p.type_guid,
            part_guid: p.part_guid,
            name: p.name.to_owned(),
            offset,
            size,
            sha256: String::new(),
        });
        offset += size;
    }
    Ok(DiskLayout {
        size: offset + ALIGNMENT,
        disk_guid,
        partitions,
        digest: String::new(),
    })
}

/// Serialises the protective MBR and both GPTs for `layout` with the `gpt`
/// crate; returns the head (LBA 0–33) and tail (last 33 sectors) bytes.
fn table_bytes(layout: &DiskLayout, parts: &[PartitionSpec]) -> Result<TableAreas, GptError> {
    let disk_guid = layout.disk_guid;
    let mut dev = TableAreas::new(layout.size);
    let total_sectors = layout.size / SECTOR_SIZE;
    // The protective partition covers the disk after LBA 0, capped at 2^32-1.
    let mbr_sectors = u32::try_from(total_sectors - 1).unwrap_or(u32::MAX);
    gpt::mbr::ProtectiveMBR::with_lb_size(mbr_sectors)
        .overwrite_lba0(&mut dev)
        .map_err(|source| GptError::Mbr { disk_guid, source })?;

    let table = |source| GptError::Table { disk_guid, source };
    let mut disk = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(gpt::disk::LogicalBlockSize::Lb512)
        .create_from_device(&mut dev, Some(disk_guid))
        .map_err(table)?;
    let entries: BTreeMap<u32, gpt::partition::Partition> = layout
        .partitions
        .iter()
        .zip(parts)
        .map(|(l, p)| {
            let entry = gpt::partition::Partition {
                part_type_guid: gpt::partition_types::Type {
                    guid: l.type_guid,
                    os: gpt::partition_types::OperatingSystem::None,
                },
                part_guid: l.part_guid,
                first_lba: l.offset / SECTOR_SIZE,
                last_lba: (l.offset + l.size) / SECTOR_SIZE - 1,
                flags: p.attributes,
                name: l.name.clone(),
            };
            (l.index, entry)
        })
        .collect();
    disk.update_partitions(entries).map_err(table)?;
    disk.write().map_err(table)?;
    Ok(dev)
}

/// Writes the whole disk image to `out` (truncating it first) and returns
/// its layout. Partitions go in the order given, numbered from 1.
///
/// `out` only needs to be writable; blocks of zeros are left as holes.
pub fn write_disk(
    out: &mut std::fs::File,
    disk_guid: Uuid,
    parts: &[PartitionSpec],
) -> Result<DiskLayout, GptError> {
    let mut layout = plan(disk_guid, parts)?;
    let areas = table_bytes(&layout, parts)?;
    let io = |what: &str| {
        let what = what.to_owned();
        move |source| GptError::Io { what, source }
    };

    // Hashing (the image; each partition) runs beside the writing.
    let (written, image_digest, part_digests) = std::thread::scope(|s| {
        let image = s.spawn(|| image_digest(&layout, &areas, parts));
        let each = s.spawn(|| {
            layout
                .partitions
                .iter()
                .zip(parts)
                .map(|(l, p)| {
                    let mut h = Sha256::new();
                    p.data.iter().for_each(|d| h.update(d));
                    hash_zeros(&mut h, l.size - p.len());
                    finish_digest(h)
                })
                .collect::<Vec<_>>()
        });
        let written = (|| {
            // Only a file with bytes is truncated: ext4 flushes a file
            // truncated to zero as soon as it is closed (its auto_da_alloc
            // heuristic, ext4(5)), which for a new image costs more than
            // writing it.
            let len = out.metadata().map_err(io("the file's length"))?.len();
            if len != 0 {
                out.set_len(0).map_err(io("the truncated file"))?;
            }
            write_sparse(out, 0, &areas.head).map_err(io("the primary GPT"))?;
            for (l, p) in layout.partitions.iter().zip(parts) {
                let mut at = l.offset;
                for d in p.data {
                    write_sparse(out, at, d)
                        .map_err(io(&format!("partition {} ({:?})", l.index, l.name)))?;
                    at += d.len() as u64;
                }
            }
            write_sparse(out, areas.tail_start, &areas.tail).map_err(io("the backup GPT"))?;
            out.set_len(layout.size).map_err(io("the file length"))
        })();
        (written, image.join(), each.join())
    });
    written?;
    let panicked = || GptError::Io {
        what: "hashing".into(),
        source: io::Error::other("a hashing thread panicked"),
    };
    layout.digest = image_digest.map_err(|_| panicked())?;
    for (l, d) in layout
        .partitions
        .iter_mut()
        .zip(part_digests.map_err(|_| panicked())?)
    {
        l.sha256 = d;
    }
    Ok(layout)
}

/// sha256 of the image [`write_disk`] writes, from the same pieces.
fn image_digest(layout: &DiskLayout, areas: &TableAreas, parts: &[PartitionSpec]) -> String {
    let mut h = Sha256::new();
    h.update(&areas.head);
    let mut pos = areas.head.len() as u64;
    for (l, p) in layout.partitions.iter().zip(parts) {
        hash_zeros(&mut h, l.offset - pos);
        p.data.iter().for_each(|d| h.update(d));
        hash_zeros(&mut h, l.size - p.len());
        pos = l.offset + l.size;
    }
    hash_zeros(&mut h, areas.tail_start - pos);
    h.update(&areas.tail);
    hash_zeros(
        &mut h,
        layout.size - areas.tail_start - areas.tail.len() as u64,
    );
    finish_digest(h)
}

/// Writes `data` at `offset`, skipping 4 KiB blocks that are all zero and
/// joining the others into as few writes as possible.
fn write_sparse(out: &mut std::fs::File, offset: u64, data: &[u8]) -> io::Result<()> {
    let block = BLOCK as usize;
    let mut flush = |start: usize, end: usize| -> io::Result<()> {
        out.seek(SeekFrom::Start(offset + start as u64))?;
        out.write_all(&data[start..end])
    };
    let mut run: Option<usize> = None;
    for (i, chunk) in data.chunks(block).enumerate() {
        let start = i * block;
        let zero = super::is_zero(chunk);
        match (zero, run) {
            (false, None) => run = Some(start),
            (true, Some(s)) => {
                flush(s, start)?;
                run = None;
            }
            _ => {}
        }
    }
    if let Some(s) = run {
        flush(s, data.len())?;
    }
    Ok(())
}

/// A disk-sized device that stores only the head (protective MBR and primary
/// GPT) and tail (backup GPT) of the disk: the parts the `gpt` crate reads
/// and writes. Reads elsewhere see zeros; writes elsewhere are refused.
#[derive(Debug)]
struct TableAreas {
    size: u64,
    pos: u64,
    head: Vec<u8>,
    tail_start: u64,
    tail: Vec<u8>,
}

impl TableAreas {
    fn new(size: u64) -> Self {
        let tail_start = size - TAIL_SECTORS * SECTOR_SIZE;
        TableAreas {
            size,
            pos: 0,
            head: vec![0; (HEAD_SECTORS * SECTOR_SIZE) as usize],
            tail_start,
            tail: vec![0; (TAIL_SECTORS * SECTOR_SIZE) as usize],
        }
    }

    /// The stored area holding `pos`, as (buffer, offset within it), or the
    /// number of unstored bytes from `pos` to the next stored area.
    fn locate(&mut self) -> Result<(&mut Vec<u8>, usize), u64> {
        let head_len = self.head.len() as u64;
        if self.pos < head_len {
            Ok((&mut self.head, self.pos as usize))
        } else if self.pos >= self.tail_start && self.pos < self.size {
            Ok((&mut self.tail, (self.pos - self.tail_start) as usize))
        } else if self.pos < self.tail_start {
            Err(self.tail_start - self.pos)
        } else {
            Err(0)
        }
    }
}

impl Read for TableAreas {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.locate() {
            Ok((area, at)) => {
                let n = buf.len().min(area.len() - at);
                buf[..n].copy_from_slice(&area[at..at + n]);
                n
            }
            Err(gap) => {
                let n = buf.len().min(usize::try_from(gap).unwrap_or(usize::MAX));
                buf[..n].fill(0);
                n
            }
        };
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for TableAreas {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let pos = self.pos;
        match self.locate() {
            Ok((area, at)) => {
                let n = buf.len().min(area.len() - at);
                area[at..at + n].copy_from_slice(&buf[..n]);
                self.pos += n as u64;
                Ok(n)
            }
            Err(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("GPT write at byte {pos}, outside the table areas"),
            )),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for TableAreas {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = new.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the disk",
            )
        })?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;
    use std::process::Command;

    use crate::testutil::tool;

    const SEED: [u8; 16] = *b"kiln-test-seed!!";

    /// Content with zero blocks in the middle, so holes are exercised.
    fn content(len: usize, fill: u8) -> Vec<u8> {
        let mut v = vec![0u8; len];
        v[..4096].fill(fill);
        let tail = len - 100;
        v[tail..].fill(fill);
        v
    }

    /// Each partition's contents as one piece.
    struct Fixture {
        esp: [&'static [u8]; 1],
        root: [&'static [u8]; 1],
        hash: [&'static [u8]; 1],
    }

    fn fixture() -> Fixture {
        // Leaked: a test's few MB, for slices that outlive the fixture.
        let piece = |v: Vec<u8>| -> [&'static [u8]; 1] { [Vec::leak(v)] };
        Fixture {
            esp: piece(content(3 << 20, 0xe5)),
            root: piece(content(5 << 20, 0x53)),
            hash: piece(content(40960, 0x77)),
        }
    }

    fn specs(f: &Fixture) -> Vec<PartitionSpec<'_>> {
        let root_hash: [u8; 32] = std::array::from_fn(|i| i as u8 * 7);
        let (root_uuid, hash_uuid) = verity_partition_uuids(&root_hash);
        vec![
            PartitionSpec {
                type_guid: ESP_TYPE,
                part_guid: derive_uuid(&SEED, ESP_TYPE, 0),
                name: "esp",
                data: &f.esp,
                attributes: 0,
            },
            PartitionSpec {
                type_guid: ROOT_X86_64_TYPE,
                part_guid: root_uuid,
                name: "root-x86-64",
                data: &f.root,
                attributes: ATTR_READ_ONLY,
            },
            PartitionSpec {
                type_guid: ROOT_X86_64_VERITY_TYPE,
                part_guid: hash_uuid,
                name: "root-x86-64-verity",
                data: &f.hash,
                attributes: ATTR_READ_ONLY,
            },
        ]
    }

    fn write(path: &Path, parts: &[PartitionSpec]) -> DiskLayout {
        let mut f = std::fs::File::create(path).unwrap();
        write_disk(&mut f, derive_disk_uuid(&SEED), parts).unwrap()
    }

    /// The derivation agrees with Python's hmac module, an implementation
    /// nobody here wrote, and with a pinned value.
    #[test]
    fn derive_uuid_known_vectors() {
        let python = tool("python3", "python3");
        let script = r#"
import hmac, hashlib, uuid, sys
seed = bytes.fromhex(sys.argv[1])
def derive(msg):
    b = bytearray(hmac.new(seed, msg, hashlib.sha256).digest()[:16])
    b[6] = (b[6] & 0x0f) | 0x40
    b[8] = (b[8] & 0x3f) | 0x80
    return str(uuid.UUID(bytes=bytes(b)))
t = uuid.UUID(sys.argv[2]).bytes
print(derive(t))
print(derive(t + (1).to_bytes(8, 'little')))
print(derive(b"disk-uuid"))
"#;
        let out = Command::new(python)
            .args([
                "-c",
                script,
                &hex::encode(SEED),
                &ROOT_X86_64_TYPE.to_string(),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "python3: {out:?}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        let want: Vec<&str> = stdout.lines().collect();
        let got = [
            derive_uuid(&SEED, ROOT_X86_64_TYPE, 0).to_string(),
            derive_uuid(&SEED, ROOT_X86_64_TYPE, 1).to_string(),
            derive_disk_uuid(&SEED).to_string(),
        ];
        assert_eq!(got.as_slice(), want.as_slice());
        assert_eq!(got[0], PINNED_ROOT_UUID);
        assert_eq!(derive_uuid(&SEED, ROOT_X86_64_TYPE, 0).get_version_num(), 4);
    }
    const PINNED_ROOT_UUID: &str = "c37aba5d-fddb-4cc3-820e-38863f168015";

    /// kiln-init's reader ([`kiln_format::gpt`]) finds what was written:
    /// types, the root hash's GUID halves and the partitions' extents.
    #[test]
    fn shared_decoder_reads_table() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.img");
        let f = fixture();
        let parts = specs(&f);
        let layout = write(&img, &parts);
        let bytes = std::fs::read(&img).unwrap();
        let h = format::Header::decode(&bytes[512..1024]).unwrap();
        assert_eq!(h.disk_guid, *derive_disk_uuid(&SEED).as_bytes());
        let at = (h.entries_lba * SECTOR_SIZE) as usize;
        let entries = format::decode_entries(&h, &bytes[at..]).unwrap();
        for ((n, e), (p, l)) in entries.iter().zip(parts.iter().zip(&layout.partitions)) {
            assert_eq!((*n, e.type_guid), (l.index, *p.type_guid.as_bytes()));
            assert_eq!(e.unique_guid, *p.part_guid.as_bytes());
            assert_eq!(e.first_lba * SECTOR_SIZE, l.offset);
            assert_eq!((e.last_lba + 1) * SECTOR_SIZE, l.offset + l.size);
        }
        assert_eq!(entries.len(), parts.len());
    }

    /// sfdisk reads back the types, GUIDs, names and 1 MiB-aligned starts;
    /// the raw entry shows GPT's mixed-endian GUID encoding.
    #[test]
    fn sfdisk_reads_table() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.img");
        let f = fixture();
        let parts = specs(&f);
        let layout = write(&img, &parts);

        let out = Command::new(tool("sfdisk", "fdisk"))
            .arg("--json")
            .arg(&img)
            .output()
            .unwrap();
        assert!(out.status.success(), "sfdisk: {out:?}");
        assert!(out.stderr.is_empty(), "sfdisk warns: {out:?}");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let table = &json["partitiontable"];
        assert_eq!(table["label"], "gpt");
        assert_eq!(table["sectorsize"], 512);
        assert_eq!(
            table["id"].as_str().unwrap().to_lowercase(),
            derive_disk_uuid(&SEED).to_string()
        );
        let got = table["partitions"].as_array().unwrap();
        assert_eq!(got.len(), parts.len());
        for ((g, p), l) in got.iter().zip(&parts).zip(&layout.partitions) {
            let start = g["start"].as_u64().unwrap();
            assert_eq!(start % 2048, 0, "{} not aligned", p.name);
            assert_eq!(start * 512, l.offset);
            assert_eq!(g["size"].as_u64().unwrap() * 512, l.size);
            assert!(l.size >= p.len());
            assert_eq!(
                g["type"].as_str().unwrap().to_lowercase(),
                p.type_guid.to_string()
            );
            assert_eq!(
                g["uuid"].as_str().unwrap().to_lowercase(),
                p.part_guid.to_string()
            );
            assert_eq!(g["name"], p.name);
            if p.attributes == ATTR_READ_ONLY {
                assert_eq!(g["attrs"], "GUID:60");
            }
        }

        // Entry 1 at LBA 2: type GUID C12A7328-F81F-11D2-... is stored
        // with its first three fields little endian.
        let bytes = std::fs::read(&img).unwrap();
        assert_eq!(
            &bytes[1024..1040],
            &[
                0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e,
                0xc9, 0x3b
            ]
        );
        // Contents are where the layout says.
        for (l, p) in layout.partitions.iter().zip(&parts) {
            let at = l.offset as usize;
            assert!(
                bytes[at..at + p.len() as usize] == p.data.concat(),
                "{}",
                p.name
            );
        }
        assert_eq!(bytes.len() as u64, layout.size);
    }

    #[test]
    fn sgdisk_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.img");
        let f = fixture();
        write(&img, &specs(&f));
        let out = Command::new(tool("sgdisk", "gdisk"))
            .arg("-v")
            .arg(&img)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "sgdisk -v: {out:?}");
        assert!(
            stdout.contains("No problems found")
                && !stdout.contains("Caution")
                && !stdout.contains("Warning"),
            "sgdisk -v complains:\n{stdout}"
        );
    }

    #[test]
    fn file_is_sparse() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.img");
        let f = fixture();
        let layout = write(&img, &specs(&f));
        let meta = std::fs::metadata(&img).unwrap();
        assert_eq!(meta.len(), layout.size);
        let allocated = meta.blocks() * 512;
        // Head and tail tables, and 2 non-zero blocks per partition.
        assert!(
            allocated <= 64 * 1024,
            "{allocated} bytes allocated for a {} byte disk",
            layout.size
        );
        // `du` agrees that most of it is holes.
        let out = Command::new(tool("du", "coreutils"))
            .args(["--block-size=1"])
            .arg(&img)
            .output()
            .unwrap();
        let du: u64 = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(du < layout.size / 10, "du says {du} of {}", layout.size);
    }

    #[test]
    fn deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let f = fixture();
        let a = dir.path().join("a.img");
        let b = dir.path().join("b.img");
        // Leftover bytes in a reused file must not survive.
        std::fs::write(&b, vec![0xffu8; 12 << 20]).unwrap();
        let la = write(&a, &specs(&f));
        let mut fb = std::fs::OpenOptions::new().write(true).open(&b).unwrap();
        let lb = write_disk(&mut fb, derive_disk_uuid(&SEED), &specs(&f)).unwrap();
        assert_eq!(la, lb);
        assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap());
    }

    #[test]
    fn contents_in_pieces_are_contents_in_one() {
        let dir = tempfile::tempdir().unwrap();
        let f = fixture();
        let whole = write(&dir.path().join("whole.img"), &specs(&f));
        // The ESP cut unevenly, with an empty piece and a cut inside a run
        // of zeros (which stays a hole).
        let esp = f.esp[0];
        let cut = [&esp[..100], &[][..], &esp[100..5000], &esp[5000..]];
        let mut parts = specs(&f);
        parts[0].data = &cut;
        let split = dir.path().join("split.img");
        assert_eq!(write(&split, &parts), whole);
        assert!(
            std::fs::read(&split).unwrap() == std::fs::read(dir.path().join("whole.img")).unwrap()
        );
    }

    #[test]
    fn rejects_bad_specs() {
        let f = fixture();
        let mut parts = specs(&f);
        parts[2].part_guid = parts[1].part_guid;
        assert!(matches!(
            plan(Uuid::nil(), &parts),
            Err(GptError::DuplicateGuid { .. })
        ));
        let mut parts = specs(&f);
        parts[0].name = "a-name-that-is-longer-than-thirty-six-units";
        assert!(matches!(
            plan(Uuid::nil(), &parts),
            Err(GptError::NameTooLong { .. })
        ));
        let mut parts = specs(&f);
        parts[0].data = &[];
        assert!(matches!(
            plan(Uuid::nil(), &parts),
            Err(GptError::EmptyPartition { .. })
        ));
    }
}
