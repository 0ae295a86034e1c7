//! Reading a disk image file back: its GPT partitions with their bytes, the
//! files on the ESP, and the UKI's text sections (`.cmdline`, `.uname`,
//! `.osrel`). Every byte comes from a file that may be hostile.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::fs::layer::sha256_digest;
use crate::fs::{gpt, uki};
use crate::image::disk::UKI_ESP_PATH;
use crate::model::disk::PartitionInfo;

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

/// The partitions of a GPT disk image file, each with its bytes.
pub fn read_partitions(path: &Path) -> Result<Vec<(PartitionInfo, Vec<u8>)>> {
    let disk = ::gpt::GptConfig::new()
        .writable(false)
        .open(path)
        .with_context(|| format!("{}: not a GPT disk image", path.display()))?;
    let bs = gpt::SECTOR_SIZE;
    let mut out = Vec::new();
    let mut file = std::fs::File::open(path)?;
    for (i, p) in disk.partitions() {
        let offset = p.first_lba * bs;
        let size = (p.last_lba + 1 - p.first_lba) * bs;
        let mut data = vec![0u8; size as usize];
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(offset))?;
        file.read_exact(&mut data)
            .with_context(|| format!("reading partition {i}"))?;
        let info = PartitionInfo {
            index: *i,
            name: p.name.clone(),
            type_guid: p.part_type_guid.guid.to_string().to_lowercase(),
            uuid: p.part_guid.to_string(),
            offset,
            size,
            sha256: sha256_digest(&data),
        };
        out.push((info, data));
    }
    Ok(out)
}

/// Every file on a FAT image (an ESP) by its path (`EFI/BOOT/BOOTX64.EFI`,
/// names as stored), read-only.
pub fn read_esp_files(esp: &[u8]) -> Result<std::collections::BTreeMap<String, Vec<u8>>> {
    // fatfs wants a writable device; it gets a copy and writes nothing.
    let fs = fatfs::FileSystem::new(std::io::Cursor::new(esp.to_vec()), fatfs::FsOptions::new())
        .context("reading the ESP")?;
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![(String::new(), fs.root_dir())];
    while let Some((prefix, dir)) = todo.pop() {
        for e in dir.iter() {
            let e = e.context("reading an ESP directory")?;
            let name = e.file_name();
            if name == "." || name == ".." {
                continue;
            }
            let path = format!("{prefix}{name}");
            if e.is_dir() {
                todo.push((format!("{path}/"), e.to_dir()));
            } else {
                let mut data = Vec::new();
                e.to_file()
                    .read_to_end(&mut data)
                    .with_context(|| format!("reading {path} on the ESP"))?;
                out.insert(path, data);
            }
        }
    }
    Ok(out)
}

/// The UKI on an ESP image (`EFI/BOOT/BOOTX64.EFI`, FAT names
/// matched without regard to case), `None` when it has none.
pub fn read_uki(esp: &[u8]) -> Result<Option<Vec<u8>>> {
    Ok(read_esp_files(esp)?
        .into_iter()
        .find(|(p, _)| p.eq_ignore_ascii_case(UKI_ESP_PATH))
        .map(|(_, d)| d))
}

/// A UKI text section (`.cmdline`, `.uname`, `.osrel`) without trailing NULs.
pub fn uki_text(uki: &[u8], section: &str) -> Option<String> {
    uki::read_section(uki, section).map(|b| {
        String::from_utf8_lossy(b)
            .trim_end_matches('\0')
            .to_string()
    })
}

/// The `roothash=` value of a kernel command line.
pub fn cmdline_root_hash(cmdline: &str) -> Option<String> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("roothash="))
        .map(str::to_string)
}

/// Read a disk image: GPT, then the UKI on the ESP.
pub fn read_disk(path: &Path) -> Result<DiskReport> {
    let parts = read_partitions(path)?;
    let esp = parts
        .iter()
        .find(|(p, _)| p.type_guid == gpt::ESP_TYPE.to_string())
        .map(|(_, d)| d);
    let mut report = DiskReport {
        partitions: parts.iter().map(|(p, _)| p.clone()).collect(),
        cmdline: None,
        root_hash: None,
        kernel_version: None,
        os_release: None,
    };
    let Some(esp) = esp else { return Ok(report) };
    let Some(uki) = read_uki(esp)? else {
        bail!("{}: the ESP has no {UKI_ESP_PATH}", path.display())
    };
    report.cmdline = uki_text(&uki, ".cmdline");
    report.kernel_version = uki_text(&uki, ".uname");
    report.os_release = uki_text(&uki, ".osrel");
    report.root_hash = report.cmdline.as_deref().and_then(cmdline_root_hash);
    Ok(report)
}
