//! Reading a disk image file back: its GPT partitions with their bytes, the
//! files on the ESP, and the UKI's text sections (`.cmdline`, `.uname`,
//! `.osrel`). Every byte comes from a file that may be hostile.
//!
//! The GPT is read with [`kiln_format::gpt`], the decoder kiln-init uses at
//! boot: the primary header (LBA 1) and its entry array with both CRC32s,
//! else the backup header in the last LBA. Every LBA the table names must
//! lie on the file, every partition inside the usable range and none
//! overlapping another, so the partitions' bytes, read whole into memory,
//! add up to no more than the file's size.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{bail, Context, Result};
use kiln_format::gpt::{self as format, Entry, Header, NAME_LEN};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::fs::layer::finish_digest;
use crate::fs::{fat, gpt, uki};
use crate::image::disk::UKI_ESP_PATH;
use crate::model::disk::PartitionInfo;

/// LBA of the primary GPT header.
const PRIMARY_LBA: u64 = 1;
/// Bytes hashed at a time outside the partitions.
const CHUNK: usize = 1 << 20;

/// What `kiln inspect` reads from a disk image file, with no store.
#[derive(Debug, Clone, Serialize)]
pub struct DiskReport {
    /// Partitions from the GPT.
    pub partitions: Vec<PartitionInfo>,
    /// Kernel command line from the UKI.
    pub cmdline: Option<String>,
    /// Root hash from the command line.
    pub root_hash: Option<String>,
    /// Kernel release from the UKI's `.uname`.
    pub kernel_version: Option<String>,
    /// os-release from the UKI's `.osrel`.
    pub os_release: Option<String>,
}

/// A GPT disk image, read and checked.
#[derive(Debug, Clone)]
pub struct Disk {
    /// The header's `DiskGUID`.
    pub disk_guid: uuid::Uuid,
    /// The used partitions in table order, each with its bytes.
    pub partitions: Vec<(PartitionInfo, Vec<u8>)>,
    /// `sha256:` of every byte outside the partitions, in file order: the
    /// protective MBR, both GPTs, alignment gaps.
    pub outside_sha256: String,
}

/// The partitions of a GPT disk image file, each with its bytes (errors
/// name the file).
pub fn read_partitions(path: &Path) -> Result<Vec<(PartitionInfo, Vec<u8>)>> {
    Ok(read_disk_file(path)
        .with_context(|| path.display().to_string())?
        .partitions)
}

/// A GPT disk image file: its table and partitions. Errors do not repeat
/// the path, which callers name.
pub fn read_disk_file(path: &Path) -> Result<Disk> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = file
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    read_gpt_disk(std::io::BufReader::new(file), len).context("not a readable GPT disk image")
}

/// A GPT disk image of `len` bytes from `r`: its table and partitions.
pub fn read_gpt_disk<R: Read + Seek>(mut r: R, len: u64) -> Result<Disk> {
    let sector = gpt::SECTOR_SIZE;
    if len < 2 * sector {
        bail!(crate::check_err!(
            "the file is {len} bytes, too short for a protective MBR and a GPT header"
        ));
    }
    let last_lba = len / sector - 1;
    let (header, entries) = match read_table(&mut r, len, PRIMARY_LBA) {
        Ok(t) => t,
        Err(primary) => match read_table(&mut r, len, last_lba) {
            Ok(t) => {
                tracing::warn!("primary GPT refused ({primary:#}); using the backup GPT");
                t
            }
            Err(backup) => bail!(crate::check_err!("{primary:#}, and the {backup:#}")),
        },
    };
    let mut partitions = Vec::with_capacity(entries.len());
    for (number, e) in &entries {
        // decode_entries and check_disk keep every partition inside the
        // usable range, itself inside the file: no overflow, no read past
        // the end, and the sizes add up to at most `len`.
        let offset = e.first_lba * sector;
        let size = (e.last_lba - e.first_lba + 1) * sector;
        let mut data = vec![0u8; usize::try_from(size)?];
        r.seek(SeekFrom::Start(offset))?;
        r.read_exact(&mut data)
            .with_context(|| format!("reading partition {number}"))?;
        let info = PartitionInfo {
            index: *number,
            name: partition_name(&e.name),
            type_guid: uuid::Uuid::from_bytes(e.type_guid),
            uuid: uuid::Uuid::from_bytes(e.unique_guid),
            offset,
            size,
            sha256: crate::util::digest::Digest::of(&data),
        };
        partitions.push((info, data));
    }
    let outside_sha256 = hash_outside(&mut r, len, &partitions)?;
    Ok(Disk {
        disk_guid: uuid::Uuid::from_bytes(header.disk_guid),
        partitions,
        outside_sha256,
    })
}

/// The GPT header at `lba` and its used entries, checked against the file.
fn read_table<R: Read + Seek>(
    r: &mut R,
    len: u64,
    lba: u64,
) -> Result<(Header, Vec<(u32, Entry)>)> {
    let sector = gpt::SECTOR_SIZE;
    let which = if lba == PRIMARY_LBA {
        "primary"
    } else {
        "backup"
    };
    let mut raw = vec![0u8; sector as usize];
    r.seek(SeekFrom::Start(lba * sector))?;
    r.read_exact(&mut raw)
        .with_context(|| format!("reading the {which} GPT header at LBA {lba}"))?;
    let h = Header::decode(&raw).with_context(|| format!("{which} GPT at LBA {lba}"))?;
    h.check_disk(sector, len)
        .with_context(|| format!("{which} GPT at LBA {lba}"))?;
    if h.my_lba != lba {
        return Err(format::GptError::header(
            format::header::MY_LBA.name,
            format!("{} but the header is at LBA {lba}", h.my_lba),
        ))
        .with_context(|| format!("{which} GPT at LBA {lba}"));
    }
    // check_disk bounds the array by MAX_ENTRY_ARRAY_BYTES and the file.
    let mut array = vec![0u8; usize::try_from(h.entry_array_len())?];
    r.seek(SeekFrom::Start(h.entries_lba * sector))?;
    r.read_exact(&mut array)
        .with_context(|| format!("reading the {which} GPT partition entry array"))?;
    let entries =
        format::decode_entries(&h, &array).with_context(|| format!("{which} GPT at LBA {lba}"))?;
    Ok((h, entries))
}

/// A partition name: UTF-16LE up to the first NUL.
fn partition_name(raw: &[u8; NAME_LEN]) -> String {
    let units: Vec<u16> = raw
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

/// `sha256:` of the bytes of the file not in any partition, in file order.
fn hash_outside<R: Read + Seek>(
    r: &mut R,
    len: u64,
    parts: &[(PartitionInfo, Vec<u8>)],
) -> Result<String> {
    let mut extents: Vec<(u64, u64)> = parts.iter().map(|(p, _)| (p.offset, p.size)).collect();
    extents.sort_unstable();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut at = 0;
    for (start, size) in extents.into_iter().chain([(len, 0)]) {
        r.seek(SeekFrom::Start(at))?;
        let mut left = start - at;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            r.read_exact(&mut buf[..n])?;
            h.update(&buf[..n]);
            left -= n as u64;
        }
        at = start + size;
    }
    Ok(finish_digest(h))
}

/// Every file on a FAT image (an ESP) by its path (`EFI/BOOT/BOOTX64.EFI`,
/// names as stored).
pub fn read_esp_files(esp: &[u8]) -> Result<BTreeMap<String, Vec<u8>>> {
    Ok(fat::read::files(esp)?)
}

/// The UKI on an ESP image (`EFI/BOOT/BOOTX64.EFI`, FAT names
/// matched without regard to case), `None` when it has none.
pub fn read_uki(esp: &[u8]) -> Result<Option<Vec<u8>>> {
    Ok(read_esp_files(esp)?
        .into_iter()
        .find(|(p, _)| p.eq_ignore_ascii_case(UKI_ESP_PATH))
        .map(|(_, d)| d))
}

/// What a UKI says about what it boots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UkiFacts {
    /// `.cmdline`.
    pub cmdline: Option<String>,
    /// `.uname`.
    pub kernel_version: Option<String>,
    /// `.osrel`.
    pub os_release: Option<String>,
}

/// The text sections of a UKI; a UKI whose PE headers do not parse is an
/// error naming the field.
pub fn uki_facts(uki: &[u8]) -> Result<UkiFacts> {
    let sections = uki::sections(uki).context(UKI_ESP_PATH)?;
    let text = |name: &str| {
        sections.iter().find(|s| s.name == name).map(|s| {
            String::from_utf8_lossy(uki::section_bytes(uki, s))
                .trim_end_matches('\0')
                .to_string()
        })
    };
    Ok(UkiFacts {
        cmdline: text(".cmdline"),
        kernel_version: text(".uname"),
        os_release: text(".osrel"),
    })
}

/// The `roothash=` value of a kernel command line.
pub fn cmdline_root_hash(cmdline: &str) -> Option<String> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("roothash="))
        .map(str::to_string)
}

/// Read a disk image: GPT, then the UKI on the ESP. Errors do not repeat
/// the path, which callers name.
pub fn read_disk(path: &Path) -> Result<DiskReport> {
    report(&read_disk_file(path)?)
}

/// What [`read_disk`] reports of a disk already read.
pub fn report(disk: &Disk) -> Result<DiskReport> {
    let parts = &disk.partitions;
    let esp = parts
        .iter()
        .find(|(p, _)| p.type_guid == gpt::ESP_TYPE)
        .map(|(_, d)| d);
    let mut report = DiskReport {
        partitions: parts.iter().map(|(p, _)| p.clone()).collect(),
        cmdline: None,
        root_hash: None,
        kernel_version: None,
        os_release: None,
    };
    let Some(esp) = esp else { return Ok(report) };
    let Some(uki) = read_uki(esp).context("ESP")? else {
        bail!(crate::check_err!("the ESP has no {UKI_ESP_PATH}"))
    };
    let facts = uki_facts(&uki).context("ESP")?;
    report.root_hash = facts.cmdline.as_deref().and_then(cmdline_root_hash);
    report.cmdline = facts.cmdline;
    report.kernel_version = facts.kernel_version;
    report.os_release = facts.os_release;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{fake_disk, fake_root};

    /// What the table reader finds is what the disk writer recorded; a
    /// damaged primary GPT falls back to the backup; with both damaged the
    /// error names both.
    #[test]
    fn reads_what_the_writer_recorded_and_falls_back_to_the_backup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.raw");
        let info = fake_disk(&fake_root(&[("etc/motd", "hi\n")], 0), 0, &path);
        let disk = read_disk_file(&path).unwrap();
        let got: Vec<PartitionInfo> = disk.partitions.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(got, info.partitions);
        assert_eq!(disk.disk_guid, info.disk_guid);
        let report = report(&disk).unwrap();
        assert_eq!(report.cmdline.as_deref(), Some(info.cmdline.as_str()));
        assert_eq!(report.root_hash, Some(info.root_hash.to_string()));

        let mut bytes = std::fs::read(&path).unwrap();
        bytes[512 + 40] ^= 1; // FirstUsableLBA, under the header's CRC
        std::fs::write(&path, &bytes).unwrap();
        let backup = read_disk_file(&path).unwrap();
        assert_eq!(backup.partitions.len(), disk.partitions.len());
        assert_ne!(backup.outside_sha256, disk.outside_sha256);

        let len = bytes.len();
        bytes[len - 512] ^= 1; // the backup header's signature
        std::fs::write(&path, &bytes).unwrap();
        let e = format!("{:#}", read_disk_file(&path).unwrap_err());
        assert!(
            e.contains("primary GPT at LBA 1: GPT header: field `HeaderCRC32`")
                && e.contains("and the backup GPT at LBA")
                && e.contains("field `Signature`"),
            "{e}"
        );
    }
}
