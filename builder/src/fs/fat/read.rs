//! Reading a FAT volume (an ESP) back: every file by path, for `kiln
//! inspect` and `kiln diff`. The bytes come from an image file that may be
//! hostile, so this reader, unlike the `fatfs` crate the writer drives,
//! bounds everything by the volume it is given.
//!
//! Layout: Microsoft's "FAT: General Overview of On-Disk Format" (boot
//! sector and BPB, §3; FAT type by cluster count, §3.5; FAT entries and end
//! of chain marks, §4; directory entries, §6; long names, §7). The BPB is
//! checked before any arithmetic: sector and cluster sizes, a volume that
//! fits the image, FATs large enough for every cluster. Each cluster may
//! belong to one chain only, so a loop or a cross-link is an error and the
//! files read add up to no more than the volume; directories nest at most
//! [`MAX_DEPTH`] deep. Names are the long name when one precedes the short
//! entry with the right checksum, else the short name (lower-cased as its
//! `NTRes` bits say), the way `fatfs` and Linux's vfat show them.

use std::collections::BTreeMap;
use std::ops::Range;

use kiln_format::{Field, Span};

/// Deepest directory nesting read (an ESP needs 3).
pub const MAX_DEPTH: usize = 32;

/// Size of a directory entry.
const ENTRY: usize = 32;
/// `DIR_Attr` bits, and the bits that mark a long-name entry.
const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_LONG_NAME_MASK: u8 = 0x3f;
const ATTR_DIRECTORY: u8 = 0x10;
const ATTR_LONG_NAME: u8 = 0x0f;
/// `DIR_Name[0]` of a free entry, and of the end of the directory.
const FREE: u8 = 0xe5;
const END: u8 = 0x00;
/// `DIR_Name[0]` standing for a real 0xE5.
const KANJI_E5: u8 = 0x05;
/// `DIR_NTRes` bits (Windows NT): base name, extension in lower case.
const NTRES_LOWER_BASE: u8 = 0x08;
const NTRES_LOWER_EXT: u8 = 0x10;
/// `LDIR_Ord` bit of the last (first stored) long-name entry.
const LAST_LONG_ENTRY: u8 = 0x40;
/// UTF-16 units in one long-name entry, and where they are.
const LFN_UNITS: usize = 13;
const LFN_UNIT_AT: [usize; LFN_UNITS] = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];
/// Fewest clusters of FAT16 and of FAT32 (§3.5).
const MIN_FAT16_CLUSTERS: u64 = 4085;
const MIN_FAT32_CLUSTERS: u64 = 65525;

/// Boot sector and BPB fields (§3.1–3.3).
const BYTS_PER_SEC: Field<2> = Field::new("BPB_BytsPerSec", 11);
const SEC_PER_CLUS: Field<1> = Field::new("BPB_SecPerClus", 13);
const RSVD_SEC_CNT: Field<2> = Field::new("BPB_RsvdSecCnt", 14);
const NUM_FATS: Field<1> = Field::new("BPB_NumFATs", 16);
const ROOT_ENT_CNT: Field<2> = Field::new("BPB_RootEntCnt", 17);
const TOT_SEC_16: Field<2> = Field::new("BPB_TotSec16", 19);
const FAT_SZ_16: Field<2> = Field::new("BPB_FATSz16", 22);
const TOT_SEC_32: Field<4> = Field::new("BPB_TotSec32", 32);
const FAT_SZ_32: Field<4> = Field::new("BPB_FATSz32", 36);
const ROOT_CLUS: Field<4> = Field::new("BPB_RootClus", 44);
const SIGNATURE_WORD: Field<2> = Field::new("Signature_word", 510);

/// Directory entry fields (§6).
const DIR_ATTR: Field<1> = Field::new("DIR_Attr", 11);
const DIR_NTRES: Field<1> = Field::new("DIR_NTRes", 12);
const DIR_FST_CLUS_HI: Field<2> = Field::new("DIR_FstClusHI", 20);
const DIR_FST_CLUS_LO: Field<2> = Field::new("DIR_FstClusLO", 26);
const DIR_FILE_SIZE: Field<4> = Field::new("DIR_FileSize", 28);
/// Long-name entry fields (§7).
const LDIR_CHKSUM: Field<1> = Field::new("LDIR_Chksum", 13);

/// Why a FAT volume could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReadError {
    /// The boot sector's BPB is damaged or does not fit the image.
    #[error("FAT boot sector: field `{field}`: {problem}")]
    BootSector {
        /// The BPB field at fault.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// A directory entry or the cluster chain it starts is damaged.
    #[error("FAT directory entry {path:?}: field `{field}`: {problem}")]
    Entry {
        /// The entry's path (`EFI/BOOT/BOOTX64.EFI`; `/` for the root).
        path: String,
        /// The entry field at fault.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

fn boot(field: impl Into<Span>, problem: impl Into<String>) -> ReadError {
    ReadError::BootSector {
        field: field.into().name,
        problem: problem.into(),
    }
}

/// FAT12, FAT16 or FAT32: the width of a FAT entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fat12,
    Fat16,
    Fat32,
}

/// A volume's layout, checked against the image.
#[derive(Debug)]
struct Volume<'a> {
    img: &'a [u8],
    kind: Kind,
    /// Byte offset of the first FAT.
    fat: usize,
    cluster_size: usize,
    /// The fixed root directory (FAT12/16).
    root_region: Range<usize>,
    /// The root directory's first cluster (FAT32).
    root_cluster: u32,
    /// Byte offset of cluster 2.
    data: usize,
    /// Number of data clusters (numbered 2..clusters + 2).
    clusters: u32,
    /// Clusters already in a chain.
    used: Vec<bool>,
}

impl<'a> Volume<'a> {
    fn open(img: &'a [u8]) -> Result<Self, ReadError> {
        let get16 = |f: Field<2>| u64::from(f.get::<u16>(img).unwrap_or_default());
        let get32 = |f: Field<4>| u64::from(f.get::<u32>(img).unwrap_or_default());
        if SIGNATURE_WORD.get::<u16>(img) != Some(0xaa55) {
            return Err(boot(
                SIGNATURE_WORD,
                "not 0xAA55 (or no 512-byte boot sector)",
            ));
        }
        // The signature's presence proves 512 bytes: every BPB field is there.
        let bps = get16(BYTS_PER_SEC);
        if !matches!(bps, 512 | 1024 | 2048 | 4096) {
            return Err(boot(
                BYTS_PER_SEC,
                format!("{bps} is not 512, 1024, 2048 or 4096"),
            ));
        }
        let spc = u64::from(SEC_PER_CLUS.get::<u8>(img).unwrap_or_default());
        if !spc.is_power_of_two() {
            return Err(boot(SEC_PER_CLUS, format!("{spc} is not a power of two")));
        }
        let reserved = get16(RSVD_SEC_CNT);
        if reserved == 0 {
            return Err(boot(RSVD_SEC_CNT, "0 (the boot sector is reserved)"));
        }
        let fats = u64::from(NUM_FATS.get::<u8>(img).unwrap_or_default());
        if fats == 0 {
            return Err(boot(NUM_FATS, "0"));
        }
        let (total, total_field) = match get16(TOT_SEC_16) {
            0 => (get32(TOT_SEC_32), TOT_SEC_32.span()),
            n => (n, TOT_SEC_16.span()),
        };
        let (fat_sectors, fat_field) = match get16(FAT_SZ_16) {
            0 => (get32(FAT_SZ_32), FAT_SZ_32.span()),
            n => (n, FAT_SZ_16.span()),
        };
        if fat_sectors == 0 {
            return Err(boot(fat_field, "0"));
        }
        // Sector counts are at most 32 bits and sizes at most 4096 and 128
        // times that: the products below fit 64 bits.
        let volume = total * bps;
        if volume > img.len() as u64 {
            return Err(boot(
                total_field,
                format!(
                    "{total} sectors of {bps} bytes exceed the {}-byte partition",
                    img.len()
                ),
            ));
        }
        let fat = reserved * bps;
        let root_start = fat + fats * fat_sectors * bps;
        let root_len = get16(ROOT_ENT_CNT) * ENTRY as u64;
        let data = root_start + root_len.div_ceil(bps) * bps;
        if data > volume {
            return Err(boot(
                fat_field,
                format!(
                    "the FATs and root directory end at byte {data}, past the volume's {volume}"
                ),
            ));
        }
        let cluster_size = spc * bps;
        let clusters = (volume - data) / cluster_size;
        let kind = match clusters {
            c if c < MIN_FAT16_CLUSTERS => Kind::Fat12,
            c if c < MIN_FAT32_CLUSTERS => Kind::Fat16,
            _ => Kind::Fat32,
        };
        let entry_bits = match kind {
            Kind::Fat12 => 12,
            Kind::Fat16 => 16,
            Kind::Fat32 => 32,
        };
        if fat_sectors * bps * 8 < (clusters + 2) * entry_bits {
            return Err(boot(
                fat_field,
                format!("{fat_sectors} sectors cannot map {clusters} clusters"),
            ));
        }
        if kind != Kind::Fat32 && root_len == 0 {
            return Err(boot(ROOT_ENT_CNT, "0 on a FAT12/16 volume"));
        }
        let root_cluster = get32(ROOT_CLUS);
        if kind == Kind::Fat32 && !(2..clusters + 2).contains(&root_cluster) {
            return Err(boot(
                ROOT_CLUS,
                format!("{root_cluster} is not a data cluster (2..{})", clusters + 2),
            ));
        }
        // Everything is now below the image's length, a usize.
        let us = |n: u64| n as usize;
        Ok(Volume {
            img,
            kind,
            fat: us(fat),
            cluster_size: us(cluster_size),
            root_region: us(root_start)..us(root_start + root_len),
            root_cluster: root_cluster as u32,
            data: us(data),
            clusters: clusters as u32,
            used: vec![false; us(clusters) + 2],
        })
    }

    /// The FAT entry of cluster `c` (a data cluster, so inside the FAT).
    fn fat_entry(&self, c: u32) -> u32 {
        let c = c as usize;
        let u16_at = |at: usize| {
            self.img
                .get(at..at + 2)
                .map_or(0, |b| u32::from(u16::from_le_bytes([b[0], b[1]])))
        };
        match self.kind {
            Kind::Fat12 => {
                let v = u16_at(self.fat + c + c / 2);
                if c % 2 == 1 {
                    v >> 4
                } else {
                    v & 0xfff
                }
            }
            Kind::Fat16 => u16_at(self.fat + c * 2),
            Kind::Fat32 => {
                let at = self.fat + c * 4;
                self.img.get(at..at + 4).map_or(0, |b| {
                    u32::from_le_bytes([b[0], b[1], b[2], b[3]]) & 0x0fff_ffff
                })
            }
        }
    }

    /// Whether FAT entry value `v` ends a chain.
    fn is_end(&self, v: u32) -> bool {
        v >= match self.kind {
            Kind::Fat12 => 0xff8,
            Kind::Fat16 => 0xfff8,
            Kind::Fat32 => 0x0fff_fff8,
        }
    }

    /// The byte ranges of the chain starting at `first`, each cluster
    /// claimed for this chain only.
    fn chain(&mut self, path: &str, first: u32) -> Result<Vec<Range<usize>>, ReadError> {
        let mut out = Vec::new();
        let mut c = first;
        loop {
            if !(2..self.clusters + 2).contains(&c) {
                return Err(entry_error(
                    path,
                    DIR_FST_CLUS_LO,
                    format!(
                        "the chain from cluster {first} reaches {c}, not a data cluster (2..{})",
                        self.clusters + 2
                    ),
                ));
            }
            let slot = &mut self.used[c as usize];
            if *slot {
                return Err(entry_error(
                    path,
                    DIR_FST_CLUS_LO,
                    format!("the chain from cluster {first} loops or shares cluster {c}"),
                ));
            }
            *slot = true;
            let start = self.data + (c as usize - 2) * self.cluster_size;
            out.push(start..start + self.cluster_size);
            let next = self.fat_entry(c);
            if self.is_end(next) {
                return Ok(out);
            }
            c = next;
        }
    }

    /// The first `len` bytes of the clusters in `ranges`, in order.
    fn gather(&self, ranges: &[Range<usize>], len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len.min(ranges.iter().map(Range::len).sum()));
        for r in ranges {
            // Chains hold data clusters only, all inside the volume.
            out.extend_from_slice(self.img.get(r.clone()).unwrap_or_default());
        }
        out.truncate(len);
        out
    }
}

fn entry_error(path: &str, field: impl Into<Span>, problem: String) -> ReadError {
    ReadError::Entry {
        path: if path.is_empty() {
            "/".into()
        } else {
            path.into()
        },
        field: field.into().name,
        problem,
    }
}

/// The short name of an entry as shown: `BASE.EXT`, trailing spaces
/// dropped, lower-cased as `DIR_NTRes` says, bytes above ASCII replaced.
fn short_name(e: &[u8]) -> String {
    let ntres = DIR_NTRES.get::<u8>(e).unwrap_or_default();
    let part = |raw: &[u8], lower: bool| -> String {
        let mut s: String = raw
            .iter()
            .map(|&b| match b {
                b if b.is_ascii() && lower => char::from(b.to_ascii_lowercase()),
                b if b.is_ascii() => char::from(b),
                _ => char::REPLACEMENT_CHARACTER,
            })
            .collect();
        s.truncate(s.trim_end_matches(' ').len());
        s
    };
    let mut name = e[..11].to_vec();
    if name[0] == KANJI_E5 {
        name[0] = FREE;
    }
    let base = part(&name[..8], ntres & NTRES_LOWER_BASE != 0);
    let ext = part(&name[8..11], ntres & NTRES_LOWER_EXT != 0);
    if ext.is_empty() {
        base
    } else {
        format!("{base}.{ext}")
    }
}

/// The checksum of a short name that its long-name entries carry (§7.2).
fn short_name_checksum(name: &[u8]) -> u8 {
    name.iter()
        .fold(0u8, |sum, &b| sum.rotate_right(1).wrapping_add(b))
}

/// Long-name entries seen since the last short entry: (ordinal, checksum,
/// UTF-16 units) in stored order (last part first).
#[derive(Default)]
struct LongName(Vec<(u8, u8, [u16; LFN_UNITS])>);

impl LongName {
    fn push(&mut self, e: &[u8]) {
        let mut units = [0u16; LFN_UNITS];
        for (u, &at) in units.iter_mut().zip(&LFN_UNIT_AT) {
            *u = u16::from_le_bytes([e[at], e[at + 1]]);
        }
        let chk = LDIR_CHKSUM.get::<u8>(e).unwrap_or_default();
        self.0.push((e[0], chk, units));
    }

    /// The long name for the short entry `e`, if the parts before it are
    /// complete, in order and carry its checksum.
    fn take(&mut self, e: &[u8]) -> Option<String> {
        let parts = std::mem::take(&mut self.0);
        let n = parts.len();
        let sum = short_name_checksum(&e[..11]);
        let ok = n > 0
            && parts.iter().enumerate().all(|(i, &(ord, chk, _))| {
                let want = (n - i) as u8 | if i == 0 { LAST_LONG_ENTRY } else { 0 };
                ord == want && chk == sum
            });
        if !ok {
            return None;
        }
        let units: Vec<u16> = parts
            .iter()
            .rev()
            .flat_map(|(_, _, u)| u.iter().copied())
            .take_while(|&u| u != 0)
            .collect();
        Some(String::from_utf16_lossy(&units))
    }
}

/// Every file of the FAT volume `img` by path (`EFI/BOOT/BOOTX64.EFI`,
/// names as stored), in path order.
pub fn files(img: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, ReadError> {
    let mut v = Volume::open(img)?;
    let root = if v.kind == Kind::Fat32 {
        v.chain("", v.root_cluster)?
    } else {
        vec![v.root_region.clone()]
    };
    let mut out = BTreeMap::new();
    let mut todo = vec![(String::new(), root, 0)];
    while let Some((dir, regions, depth)) = todo.pop() {
        let mut long = LongName::default();
        let raw = v.gather(&regions, usize::MAX);
        for e in raw.chunks_exact(ENTRY) {
            let attr = DIR_ATTR.get::<u8>(e).unwrap_or_default();
            match e[0] {
                END => break,
                FREE => {
                    long.0.clear();
                    continue;
                }
                _ if attr & ATTR_LONG_NAME_MASK == ATTR_LONG_NAME => {
                    long.push(e);
                    continue;
                }
                _ if attr & ATTR_VOLUME_ID != 0 || e[0] == b'.' => {
                    long.0.clear();
                    continue;
                }
                _ => {}
            }
            let name = long.take(e).unwrap_or_else(|| short_name(e));
            let path = if dir.is_empty() {
                name.clone()
            } else {
                format!("{dir}/{name}")
            };
            let bad_char = |c: char| c == '/' || c.is_control();
            if name.is_empty() || name == "." || name == ".." || name.contains(bad_char) {
                return Err(entry_error(
                    &path,
                    Span::new("DIR_Name", 0, 11),
                    format!("{name:?} is not a file name"),
                ));
            }
            let first = (u32::from(DIR_FST_CLUS_HI.get::<u16>(e).unwrap_or_default()) << 16)
                | u32::from(DIR_FST_CLUS_LO.get::<u16>(e).unwrap_or_default());
            let first = if v.kind == Kind::Fat32 {
                first
            } else {
                first & 0xffff
            };
            if attr & ATTR_DIRECTORY != 0 {
                if depth + 1 > MAX_DEPTH {
                    return Err(entry_error(
                        &path,
                        DIR_ATTR,
                        format!("directories nest deeper than {MAX_DEPTH}"),
                    ));
                }
                let regions = v.chain(&path, first)?;
                todo.push((path, regions, depth + 1));
                continue;
            }
            let size = DIR_FILE_SIZE.get::<u32>(e).unwrap_or_default() as usize;
            let data = if first == 0 && size == 0 {
                Vec::new()
            } else {
                let regions = v.chain(&path, first)?;
                if regions.len().saturating_mul(v.cluster_size) < size {
                    return Err(entry_error(
                        &path,
                        DIR_FILE_SIZE,
                        format!(
                            "{size} bytes do not fit its {} clusters of {} bytes",
                            regions.len(),
                            v.cluster_size
                        ),
                    ));
                }
                v.gather(&regions, size)
            };
            if out.insert(path.clone(), data).is_some() {
                return Err(entry_error(
                    &path,
                    Span::new("DIR_Name", 0, 11),
                    "two entries have this name".into(),
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample() -> Vec<u8> {
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
        super::super::build_esp(
            &[
                ("EFI/BOOT/BOOTX64.EFI", &big),
                ("loader/entries/kiln.conf", b"title kiln\n"),
                ("EFI/Linux/a-long-file-name.efi", b"x"),
                ("empty", b""),
                ("Mixed.Case", b"m"),
            ],
            7,
            "ESP",
            1_700_000_000,
        )
        .unwrap()
    }

    /// What the `fatfs` crate reads: an independent oracle for well-formed
    /// volumes.
    fn fatfs_files(img: &[u8]) -> BTreeMap<String, Vec<u8>> {
        let fs =
            fatfs::FileSystem::new(std::io::Cursor::new(img.to_vec()), fatfs::FsOptions::new())
                .unwrap();
        let mut out = BTreeMap::new();
        let mut todo = vec![(String::new(), fs.root_dir())];
        while let Some((prefix, dir)) = todo.pop() {
            for e in dir.iter() {
                let e = e.unwrap();
                let name = e.file_name();
                if name == "." || name == ".." {
                    continue;
                }
                let path = format!("{prefix}{name}");
                if e.is_dir() {
                    todo.push((format!("{path}/"), e.to_dir()));
                } else {
                    let mut data = Vec::new();
                    e.to_file().read_to_end(&mut data).unwrap();
                    out.insert(path, data);
                }
            }
        }
        out
    }

    #[test]
    fn reads_what_fatfs_reads() {
        let img = sample();
        let got = files(&img).unwrap();
        assert_eq!(got, fatfs_files(&img));
        assert_eq!(got["loader/entries/kiln.conf"], b"title kiln\n");
        assert!(got.contains_key("Mixed.Case") && got.contains_key("empty"));
    }

    #[test]
    fn short_names_follow_ntres() {
        let mut e = [0u8; ENTRY];
        e[..11].copy_from_slice(b"FOO     RS ");
        for (ntres, want) in [
            (0x18, "foo.rs"),
            (0x08, "foo.RS"),
            (0x10, "FOO.rs"),
            (0, "FOO.RS"),
        ] {
            e[12] = ntres;
            assert_eq!(short_name(&e), want);
        }
        e[..11].copy_from_slice(b"\x05BC        ");
        e[12] = 0;
        assert_eq!(short_name(&e), "\u{fffd}BC");
    }

    #[test]
    fn damage_names_the_field() {
        let good = sample();
        let geometry = |at: usize, v: &[u8]| {
            let mut b = good.clone();
            b[at..at + v.len()].copy_from_slice(v);
            match files(&b) {
                Err(ReadError::BootSector { field, .. }) => field,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(geometry(510, &[0, 0]), "Signature_word");
        assert_eq!(geometry(11, &[0, 3]), "BPB_BytsPerSec");
        assert_eq!(geometry(13, &[3]), "BPB_SecPerClus");
        assert_eq!(geometry(14, &[0, 0]), "BPB_RsvdSecCnt");
        assert_eq!(geometry(16, &[0]), "BPB_NumFATs");
        assert_eq!(geometry(19, &[0xff, 0xff]), "BPB_TotSec16");
        assert_eq!(geometry(22, &[1, 0]), "BPB_FATSz16");
        assert_eq!(geometry(17, &[0, 0]), "BPB_RootEntCnt");
        assert!(files(&good[..100]).is_err());
        assert!(files(&good[..good.len() / 2]).is_err());
    }

    /// A FAT chain that loops back on itself, or two files sharing
    /// clusters, is refused instead of read forever or twice.
    #[test]
    fn loops_and_cross_links_are_refused() {
        let img = sample();
        let v = Volume::open(&img).unwrap();
        assert_eq!(v.kind, Kind::Fat16);
        let mut looped = img.clone();
        // Every cluster's FAT entry points at cluster 2.
        for c in 2..v.clusters as usize + 2 {
            let at = v.fat + c * 2;
            looped[at..at + 2].copy_from_slice(&2u16.to_le_bytes());
        }
        let mut v2 = Volume::open(&looped).unwrap();
        let err = v2.chain("x", 2).unwrap_err();
        assert!(err.to_string().contains("loops or shares"), "{err}");
        let err = files(&looped).unwrap_err();
        assert!(err.to_string().contains("loops or shares"), "{err}");
    }
}
