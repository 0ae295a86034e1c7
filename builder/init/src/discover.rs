//! Finding the root data and verity hash partitions by GPT unique GUID.
//!
//! The kernel lists block devices in `/sys/class/block`; a whole disk's
//! directory holds one subdirectory per partition, each with a `partition`
//! file (its number), `dev` (`major:minor`) and `uevent` (`DEVNAME=`, the
//! node devtmpfs made in `/dev`). The GPT GUIDs are not in sysfs (a
//! partition's uevent has `PARTN` and `PARTNAME` only), so each disk's table
//! is read from its `/dev` node: the header at LBA 1 or, if that is damaged,
//! the backup header in the disk's last LBA, then the entry array, decoded
//! by [`kiln_format::gpt`] (the layout kiln writes). Nothing here is trusted
//! for integrity (dm-verity does that); the checks only keep a damaged table
//! from being misread. Disks are scanned in name order and the first disk
//! holding both partitions wins, following the Discoverable Partitions
//! Specification's rule that they live on one disk.

use kiln_format::gpt;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A block device as sysfs describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDev {
    /// Its node's name below `/dev` (`vda2`, `nvme0n1p2`).
    pub name: String,
    /// Device major number.
    pub major: u32,
    /// Device minor number.
    pub minor: u32,
}

/// The outcome of one scan.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scan {
    /// The data and hash partitions, when one disk has both.
    pub found: Option<(BlockDev, BlockDev)>,
    /// What was seen short of that (one partition without the other, disks
    /// whose tables could not be read), for the timeout message.
    pub notes: Vec<String>,
}

fn read_trimmed(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Parse a sysfs `dev` file: `major:minor`.
pub fn parse_dev(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.trim().split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The `DEVNAME=` of a sysfs `uevent` file.
pub fn uevent_devname(uevent: &str) -> Option<&str> {
    uevent.lines().find_map(|l| l.strip_prefix("DEVNAME="))
}

fn block_dev(dir: &Path) -> Option<BlockDev> {
    let (major, minor) = parse_dev(&read_trimmed(&dir.join("dev"))?)?;
    let uevent = std::fs::read_to_string(dir.join("uevent")).ok()?;
    let name = uevent_devname(&uevent)?.to_string();
    Some(BlockDev { name, major, minor })
}

/// Read the used GPT entries of the disk at `node`, each with its partition
/// number, from the primary header or, if that is damaged, the backup header
/// in the last LBA.
pub fn read_gpt(
    node: &Path,
    sector: u64,
    disk_bytes: u64,
) -> Result<Vec<(u32, gpt::Entry)>, String> {
    let f = File::open(node).map_err(|e| format!("{}: {e}", node.display()))?;
    let read = |lba: u64, len: u64| -> Result<Vec<u8>, String> {
        let mut buf = vec![0u8; len as usize];
        f.read_exact_at(&mut buf, lba * sector)
            .map_err(|e| format!("{}: reading LBA {lba}: {e}", node.display()))?;
        Ok(buf)
    };
    let mut why = String::new();
    let last = (disk_bytes / sector).saturating_sub(1);
    for lba in [1, last] {
        let header = match read(lba, sector)
            .and_then(|s| gpt::Header::decode(&s).map_err(|e| e.to_string()))
        {
            Ok(h) => h,
            Err(e) => {
                why = e;
                continue;
            }
        };
        match read(header.entries_lba, header.entry_array_len())
            .and_then(|a| gpt::decode_entries(&header, &a).map_err(|e| e.to_string()))
        {
            Ok(entries) => return Ok(entries),
            Err(e) => why = e,
        }
    }
    Err(format!("{}: no valid GPT ({why})", node.display()))
}

/// Look through the block devices in `sysfs_block` (normally
/// `/sys/class/block`), reading disks from `dev_dir` (normally `/dev`), for
/// the partitions with unique GUIDs `data` and `hash` (textual byte order).
pub fn scan(sysfs_block: &Path, dev_dir: &Path, data: &[u8; 16], hash: &[u8; 16]) -> Scan {
    let mut out = Scan::default();
    let Ok(rd) = std::fs::read_dir(sysfs_block) else {
        out.notes
            .push(format!("cannot list {}", sysfs_block.display()));
        return out;
    };
    let mut disks: Vec<_> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    disks.sort();
    for disk_dir in disks {
        if disk_dir.join("partition").exists() {
            continue; // a partition, seen through its disk
        }
        let Some(disk) = block_dev(&disk_dir) else {
            continue;
        };
        let size_sectors: u64 = read_trimmed(&disk_dir.join("size"))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let sector: u64 = read_trimmed(&disk_dir.join("queue/logical_block_size"))
            .and_then(|s| s.parse().ok())
            .unwrap_or(512);
        // sysfs counts `size` in 512-byte units whatever the logical block size.
        if size_sectors == 0 || !(512..=65536).contains(&sector) {
            continue;
        }
        let mut parts: Vec<_> = match std::fs::read_dir(&disk_dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join("partition").exists())
                .collect(),
            Err(_) => continue,
        };
        if parts.is_empty() {
            continue;
        }
        parts.sort();
        let entries = match read_gpt(&dev_dir.join(&disk.name), sector, size_sectors * 512) {
            Ok(e) => e,
            Err(e) => {
                out.notes.push(e);
                continue;
            }
        };
        let find = |guid: &[u8; 16]| -> Option<BlockDev> {
            let (number, _) = entries.iter().find(|(_, e)| &e.unique_guid == guid)?;
            parts.iter().find_map(|p| {
                let n: u32 = read_trimmed(&p.join("partition"))?.parse().ok()?;
                if n == *number {
                    block_dev(p)
                } else {
                    None
                }
            })
        };
        match (find(data), find(hash)) {
            (Some(d), Some(h)) => {
                out.found = Some((d, h));
                return out;
            }
            (Some(d), None) => out.notes.push(format!(
                "{} has the data partition ({}) but not the hash partition",
                disk.name, d.name
            )),
            (None, Some(h)) => out.notes.push(format!(
                "{} has the hash partition ({}) but not the data partition",
                disk.name, h.name
            )),
            (None, None) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_format::gpt::{crc32, Entry, Header, ENTRY_SIZE, ESP_TYPE};

    /// A 512-byte-sector disk image with a primary GPT holding `parts`
    /// (unique GUID, first LBA, last LBA).
    fn disk(parts: &[([u8; 16], u64, u64)]) -> Vec<u8> {
        let mut img = vec![0u8; 512 * 40];
        let mut array = vec![0u8; 128 * ENTRY_SIZE];
        for (i, &(guid, first, last)) in parts.iter().enumerate() {
            array[i * ENTRY_SIZE..(i + 1) * ENTRY_SIZE]
                .copy_from_slice(&Entry::new(ESP_TYPE, guid, first, last).encode());
        }
        let header = Header {
            my_lba: 1,
            alternate_lba: 39,
            first_usable_lba: 34,
            last_usable_lba: 38,
            disk_guid: [0x42; 16],
            entries_lba: 2,
            num_entries: 128,
            entry_size: ENTRY_SIZE as u32,
            entries_crc: crc32(&array),
        }
        .encode();
        img[512..512 + header.len()].copy_from_slice(&header);
        img[1024..1024 + array.len()].copy_from_slice(&array);
        img
    }

    fn write(p: &Path, s: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    }

    /// A fake sysfs with disk `name` of `parts` partitions, and its image in dev/.
    fn fake_disk(root: &Path, name: &str, major: u32, image: &[u8], parts: u32) {
        let d = root.join("sys").join(name);
        write(&d.join("dev"), &format!("{major}:0\n"));
        write(&d.join("size"), &format!("{}\n", image.len() / 512));
        write(
            &d.join("uevent"),
            &format!("MAJOR={major}\nMINOR=0\nDEVNAME={name}\nDEVTYPE=disk\n"),
        );
        write(&d.join("queue/logical_block_size"), "512\n");
        for n in 1..=parts {
            let p = d.join(format!("{name}{n}"));
            write(&p.join("partition"), &format!("{n}\n"));
            write(&p.join("dev"), &format!("{major}:{n}\n"));
            write(
                &p.join("uevent"),
                &format!(
                    "MAJOR={major}\nMINOR={n}\nDEVNAME={name}{n}\nDEVTYPE=partition\nPARTN={n}\n"
                ),
            );
            // sysfs also lists partitions at the top level.
            write(
                &root
                    .join("sys")
                    .join(format!("{name}{n}"))
                    .join("partition"),
                &format!("{n}\n"),
            );
        }
        write(&root.join("dev").join(name), "");
        std::fs::write(root.join("dev").join(name), image).unwrap();
    }

    #[test]
    fn finds_partitions_on_one_disk() {
        let t = tempfile::tempdir().unwrap();
        let (data, hash, other) = ([1u8; 16], [2u8; 16], [3u8; 16]);
        // vda has only the data partition; vdb has both, as partitions 2 and 3.
        fake_disk(t.path(), "vda", 253, &disk(&[(data, 34, 35)]), 1);
        fake_disk(
            t.path(),
            "vdb",
            254,
            &disk(&[(other, 34, 34), (data, 35, 36), (hash, 37, 38)]),
            3,
        );
        let s = scan(&t.path().join("sys"), &t.path().join("dev"), &data, &hash);
        let (d, h) = s.found.unwrap();
        assert_eq!(
            d,
            BlockDev {
                name: "vdb2".into(),
                major: 254,
                minor: 2
            }
        );
        assert_eq!(
            h,
            BlockDev {
                name: "vdb3".into(),
                major: 254,
                minor: 3
            }
        );
        assert_eq!(
            s.notes,
            ["vda has the data partition (vda1) but not the hash partition"]
        );
    }

    #[test]
    fn backup_header_and_missing() {
        let t = tempfile::tempdir().unwrap();
        let (data, hash) = ([1u8; 16], [2u8; 16]);
        let mut img = disk(&[(data, 34, 35), (hash, 36, 37)]);
        // Move the header to the last LBA as a backup and wreck the primary.
        let last = img.len() - 512;
        let hdr = img[512..1024].to_vec();
        img[last..].copy_from_slice(&hdr);
        img[512] = 0;
        fake_disk(t.path(), "sda", 8, &img, 2);
        let s = scan(&t.path().join("sys"), &t.path().join("dev"), &data, &hash);
        assert_eq!(s.found.unwrap().1.name, "sda2");
        let s = scan(
            &t.path().join("sys"),
            &t.path().join("dev"),
            &data,
            &[9; 16],
        );
        assert!(s.found.is_none());
        assert_eq!(s.notes.len(), 1);
    }

    #[test]
    fn sysfs_parsers() {
        assert_eq!(parse_dev("259:12\n"), Some((259, 12)));
        assert_eq!(parse_dev("x"), None);
        assert_eq!(
            uevent_devname("MAJOR=8\nDEVNAME=sda1\nPARTN=1\n"),
            Some("sda1")
        );
    }

    /// A table written by sfdisk (util-linux) is read with the right GUIDs.
    #[test]
    fn reads_sfdisk_tables() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let t = tempfile::tempdir().unwrap();
        let img = t.path().join("disk");
        std::fs::write(&img, vec![0u8; 4 << 20]).unwrap();
        let script = "label: gpt\n\
            start=2048, size=2048, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, uuid=00112233-4455-6677-8899-AABBCCDDEEFF\n\
            start=4096, size=2048, type=2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5, uuid=0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0\n";
        let child = Command::new("sfdisk")
            .arg("--quiet")
            .arg(&img)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn();
        let mut child = child.expect("sfdisk is missing: install the Debian package fdisk");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
        let entries = read_gpt(&img, 512, 4 << 20).unwrap();
        let guids: Vec<String> = entries
            .iter()
            .map(|(_, e)| gpt::format_guid(&e.unique_guid))
            .collect();
        assert_eq!(
            guids,
            [
                "00112233-4455-6677-8899-aabbccddeeff",
                "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
            ]
        );
        let (number, hash) = &entries[1];
        assert_eq!(hash.type_guid, gpt::ROOT_X86_64_VERITY_TYPE);
        assert_eq!(entries[0].1.type_guid, gpt::ROOT_X86_64_TYPE);
        assert_eq!((*number, hash.first_lba, hash.last_lba), (2, 4096, 6143));
    }
}
