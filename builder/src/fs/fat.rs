//! The EFI System Partition: a FAT file system built in memory.
//!
//! The volume is formatted and filled by the `fatfs` crate; its layout is
//! Microsoft's "FAT: General Overview of On-Disk Format" (FAT12/16/32, boot
//! sector, FATs, 32-byte directory entries, VFAT long names), which UEFI
//! 2.10 §13.3 adopts for the ESP. The size is computed from the contents and
//! is at least [`MIN_SIZE`], so `fatfs` picks FAT16 (UEFI firmware, OVMF
//! included, reads FAT12/16/32 alike).
//!
//! `fatfs` 0.3.6 writes directories that `fsck.fat` rejects (upstream
//! rafalh/rust-fatfs#117): it gives the `.` and `..` entries of every new
//! directory long-name entries of their own, so they are not the first two
//! slots; on FAT32 the `..` of a top-level directory names cluster 2 rather
//! than 0; and it never writes the root directory's volume label entry, which
//! `fsck.fat` wants to match the boot sector's label. It also stamps entries
//! from a clock. So once `fatfs` is done, [`normalize`] walks every directory
//! itself and rewrites it: volume label first in the root; `.` and `..`
//! first in every other directory, pointing at the right clusters, with no
//! long-name entries; the other entries in `fatfs`'s order; and every date
//! set to the caller's timestamp. The FAT chains and file data are left as
//! `fatfs` wrote them.
//!
//! Files are given in pieces and are not copied into the volume
//! ([`build_esp_pieces`], [`Esp`]): `fatfs` writes each file's length in
//! zeros, which the volume's memory leaves out, and the file's pieces go
//! where they went.
//!
//! Reading a volume back from an image that may be hostile is [`read`]'s
//! job, with no help from `fatfs`.

use std::io::{Cursor, Write};

pub mod read;

/// Smallest volume made: big enough that `fatfs` formats FAT16 (≥ 4085
/// clusters of 1 KiB) rather than FAT12. Free space costs nothing in a
/// sparse disk image.
pub const MIN_SIZE: u64 = 8 << 20;
/// Volume sizes are rounded up to this.
const SIZE_STEP: u64 = 1 << 20;
/// Size of one directory entry.
const ENTRY: usize = 32;
/// Attribute bits of directory entries.
const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_DIRECTORY: u8 = 0x10;
const ATTR_LONG_NAME: u8 = 0x0f;
/// First byte of a deleted entry, and of the end-of-directory marker.
const DELETED: u8 = 0xe5;
const END: u8 = 0x00;
/// Short names of the special entries.
const DOT: &[u8; 11] = b".          ";
const DOTDOT: &[u8; 11] = b"..         ";
/// 1980-01-01T00:00:00Z, the FAT epoch, and the last time FAT can store.
const FAT_EPOCH: i64 = 315_532_800;
const FAT_END_YEAR: i64 = 2107;

/// Errors building an ESP image.
#[derive(Debug, thiserror::Error)]
pub enum FatError {
    /// A path is empty, absolute after trimming, or has an empty, `.` or `..` component.
    #[error("ESP path {path:?} is not a relative path of named components")]
    BadPath {
        /// The path as given.
        path: String,
    },
    /// Two paths name the same file (FAT names are case-insensitive), or a
    /// file is also used as a directory.
    #[error("ESP path {path:?} collides with another file or directory")]
    Collision {
        /// The path as given.
        path: String,
    },
    /// The volume label is longer than 11 bytes or has characters FAT forbids.
    #[error("ESP volume label {label:?} is not 1-11 characters of A-Z, 0-9, space, _ or -")]
    BadLabel {
        /// The label as given.
        label: String,
    },
    /// The contents need more than FAT32 can address.
    #[error("ESP contents of {bytes} bytes are too large for a FAT volume")]
    TooLarge {
        /// Total size of the files.
        bytes: u64,
    },
    /// `fatfs` failed while formatting or writing.
    #[error("writing {path:?} into the ESP")]
    Fatfs {
        /// The file or step involved.
        path: String,
        /// What `fatfs` reported.
        #[source]
        source: std::io::Error,
    },
    /// The volume `fatfs` wrote did not parse (a bug here or in `fatfs`).
    #[error("ESP image written by fatfs is malformed: {what}")]
    Malformed {
        /// What was wrong.
        what: String,
    },
}

/// Builds an ESP image holding `files` (paths like `EFI/BOOT/BOOTX64.EFI`,
/// directories created as needed), with the given volume serial number,
/// label (upper-cased) and every timestamp set to `timestamp` (Unix seconds,
/// clamped to FAT's 1980–2107 range).
///
/// The result depends only on the arguments (not on the order of `files`).
pub fn build_esp(
    files: &[(&str, &[u8])],
    volume_id: u32,
    label: &str,
    timestamp: i64,
) -> Result<Vec<u8>, FatError> {
    let pieces: Vec<(&str, [&[u8]; 1])> = files.iter().map(|(p, d)| (*p, [*d])).collect();
    let files: Vec<(&str, &[&[u8]])> = pieces.iter().map(|(p, d)| (*p, &d[..])).collect();
    Ok(build_esp_pieces(&files, volume_id, label, timestamp)?.to_vec())
}

/// An ESP as [`build_esp_pieces`] makes it: the volume with the files'
/// data left out where each file sits in one run of clusters, and those
/// files' pieces to put there. Its bytes are [`Esp::pieces`] in order.
#[derive(Debug)]
pub struct Esp<'a> {
    /// The volume; zeros where `files` go.
    volume: Vec<u8>,
    /// (offset in the volume, the file's pieces), by offset.
    files: Vec<(usize, &'a [&'a [u8]])>,
}

impl<'a> Esp<'a> {
    /// The volume's size in bytes.
    pub fn len(&self) -> usize {
        self.volume.len()
    }

    /// Whether the volume is empty (it never is).
    pub fn is_empty(&self) -> bool {
        self.volume.is_empty()
    }

    /// The volume's bytes as slices, in order.
    pub fn pieces(&self) -> Vec<&[u8]> {
        let mut out = Vec::new();
        let mut at = 0;
        for (offset, pieces) in &self.files {
            out.push(&self.volume[at..*offset]);
            out.extend(pieces.iter().copied());
            at = offset + file_len(pieces) as usize;
        }
        out.push(&self.volume[at..]);
        out
    }

    /// The volume in one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = self.volume.clone();
        for (offset, pieces) in &self.files {
            let mut at = *offset;
            for p in *pieces {
                v[at..at + p.len()].copy_from_slice(p);
                at += p.len();
            }
        }
        v
    }
}

/// [`build_esp`] of files given in pieces, each file's bytes being its
/// pieces in order (a UKI whose kernel is not copied into one buffer first,
/// [`crate::fs::uki::Built`]). Nor is it copied into the volume: `fatfs`
/// writes each file as zeros into memory nothing has touched, which stays
/// untouched ([`Untouched`]); where those writes went is where the file's
/// pieces go. A file `fatfs` did not put in one run of clusters (none, in
/// a fresh volume) is written into the volume after all.
pub fn build_esp_pieces<'a>(
    files: &[(&str, &'a [&'a [u8]])],
    volume_id: u32,
    label: &str,
    timestamp: i64,
) -> Result<Esp<'a>, FatError> {
    let label = volume_label(label)?;
    let files = checked_files(files)?;
    let stamp = DosTime::from_unix(timestamp);

    let content: u64 = files.iter().map(|(_, d)| file_len(d)).sum();
    let mut size = (content + content / 32 + SIZE_STEP).next_multiple_of(SIZE_STEP);
    size = size.max(MIN_SIZE);
    loop {
        if size > u64::from(u32::MAX) * 512 {
            return Err(FatError::TooLarge { bytes: content });
        }
        let built = match try_build(&files, size, volume_id, label, Data::Left)? {
            Built::Scattered => try_build(&files, size, volume_id, label, Data::Written)?,
            b => b,
        };
        if let Built::Done(mut esp) = built {
            normalize(&mut esp.volume, &label, stamp)?;
            return Ok(esp);
        }
        size += (size / 8).next_multiple_of(SIZE_STEP);
    }
}

/// Files to write: path components and contents (in pieces).
type EspFiles<'a> = Vec<(Vec<String>, &'a [&'a [u8]])>;

/// The length of a file given in pieces.
fn file_len(pieces: &[&[u8]]) -> u64 {
    pieces.iter().map(|p| p.len() as u64).sum()
}

/// Files sorted by path, with path components split out; checks for bad
/// paths and case-insensitive collisions.
fn checked_files<'a>(files: &[(&str, &'a [&'a [u8]])]) -> Result<EspFiles<'a>, FatError> {
    let mut out = Vec::with_capacity(files.len());
    for (path, data) in files {
        let parts: Vec<String> = path
            .trim_start_matches('/')
            .split('/')
            .map(str::to_owned)
            .collect();
        if parts.iter().any(|p| p.is_empty() || p == "." || p == "..") {
            return Err(FatError::BadPath {
                path: (*path).to_owned(),
            });
        }
        out.push((parts, *data));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    let upper = |p: &[String]| p.iter().map(|s| s.to_uppercase()).collect::<Vec<_>>();
    let mut seen_files = std::collections::BTreeSet::new();
    let mut seen_dirs = std::collections::BTreeSet::new();
    for (parts, _) in &out {
        let key = upper(parts);
        for n in 1..key.len() {
            seen_dirs.insert(key[..n].to_vec());
        }
        if !seen_files.insert(key) {
            return Err(FatError::Collision {
                path: parts.join("/"),
            });
        }
    }
    if let Some(both) = seen_files.intersection(&seen_dirs).next() {
        return Err(FatError::Collision {
            path: both.join("/"),
        });
    }
    Ok(out)
}

/// The 11-byte, space-padded, upper-case boot sector / root label.
fn volume_label(label: &str) -> Result<[u8; 11], FatError> {
    let upper = label.to_ascii_uppercase();
    let ok = !upper.is_empty()
        && upper.len() <= 11
        && upper
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b" _-".contains(&b));
    if !ok {
        return Err(FatError::BadLabel {
            label: label.to_owned(),
        });
    }
    let mut out = [b' '; 11];
    out[..upper.len()].copy_from_slice(upper.as_bytes());
    Ok(out)
}

/// What [`try_build`] does with the files' bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Data {
    /// Leaves them out of the volume (zeros in their place).
    Left,
    /// Writes them into the volume.
    Written,
}

/// What [`try_build`] made.
enum Built<'a> {
    /// The volume.
    Done(Esp<'a>),
    /// The files do not fit.
    TooSmall,
    /// With [`Data::Left`]: a file is not in one run of clusters.
    Scattered,
}

/// Formats a volume of `size` bytes and writes the files.
fn try_build<'a>(
    files: &[(Vec<String>, &'a [&'a [u8]])],
    size: u64,
    volume_id: u32,
    label: [u8; 11],
    data_mode: Data,
) -> Result<Built<'a>, FatError> {
    let fatfs_err = |path: &str| {
        let path = path.to_owned();
        move |source| FatError::Fatfs { path, source }
    };
    let len = usize::try_from(size).map_err(|_| FatError::TooLarge { bytes: size })?;
    let mut disk = Untouched::new(crate::util::hugepages::zeroed(len));
    fatfs::format_volume(
        &mut disk,
        fatfs::FormatVolumeOptions::new()
            .volume_id(volume_id)
            .volume_label(label),
    )
    .map_err(fatfs_err("(format)"))?;
    disk.inner.set_position(0);
    let zeros_went = std::rc::Rc::clone(&disk.zeros);
    // Per file: the runs its zeros went to.
    let mut runs: Vec<Vec<std::ops::Range<usize>>> = Vec::new();
    {
        let options = fatfs::FsOptions::new()
            .time_provider(&FIXED_TIME)
            .update_accessed_date(false);
        let fs = fatfs::FileSystem::new(&mut disk, options).map_err(fatfs_err("(mount)"))?;
        if !fits(&fs, files).map_err(fatfs_err("(stats)"))? {
            return Ok(Built::TooSmall);
        }
        {
            let root = fs.root_dir();
            for (parts, data) in files {
                let path = parts.join("/");
                let (name, dirs) = parts
                    .split_last()
                    .ok_or_else(|| FatError::BadPath { path: path.clone() })?;
                let mut dir = root.clone();
                for d in dirs {
                    dir = dir.create_dir(d).map_err(fatfs_err(&path))?;
                }
                let mut file = dir.create_file(name).map_err(fatfs_err(&path))?;
                file.truncate().map_err(fatfs_err(&path))?;
                if data_mode == Data::Written {
                    for piece in *data {
                        file.write_all(piece).map_err(fatfs_err(&path))?;
                    }
                } else {
                    // The file's length in zeros: what fatfs leaves out
                    // meanwhile is where it put the file's bytes.
                    let zeros = [0u8; 64 << 10];
                    let mut left = file_len(data) as usize;
                    *zeros_went.borrow_mut() = Some(Vec::new());
                    while left > 0 {
                        let n = left.min(zeros.len());
                        let written = file.write_all(&zeros[..n]);
                        if let Err(e) = written {
                            *zeros_went.borrow_mut() = None;
                            return Err(fatfs_err(&path)(e));
                        }
                        left -= n;
                    }
                    runs.push(zeros_went.borrow_mut().take().unwrap_or_default());
                }
                file.flush().map_err(fatfs_err(&path))?;
            }
        }
        fs.unmount().map_err(fatfs_err("(unmount)"))?;
    }
    let mut placed = Vec::new();
    for ((_, data), runs) in files.iter().zip(runs) {
        match one_run(&runs, file_len(data) as usize) {
            Some(offset) => placed.push((offset, *data)),
            None => return Ok(Built::Scattered),
        }
    }
    placed.sort_by_key(|(offset, _)| *offset);
    Ok(Built::Done(Esp {
        volume: disk.inner.into_inner(),
        files: placed,
    }))
}

/// The start of `runs` when they are one contiguous run of `len` bytes.
fn one_run(runs: &[std::ops::Range<usize>], len: usize) -> Option<usize> {
    let start = runs.first().map_or(0, |r| r.start);
    let mut end = start;
    for r in runs {
        if r.start != end {
            return None;
        }
        end = r.end;
    }
    (end - start == len).then_some(start)
}

/// A volume in memory that starts as zeros nothing has touched (fresh,
/// untouched pages of a large allocation) and leaves a write of zeros
/// out wherever no byte was written before: those bytes are zero already,
/// so what reads see is the same, and the pages stay untouched.
/// While `zeros` holds a list, every write of zeros (left out or not) is
/// added to it.
struct Untouched {
    inner: Cursor<Vec<u8>>,
    /// Per 4 KiB page: whether anything was written to it.
    written: Vec<bool>,
    zeros: std::rc::Rc<std::cell::RefCell<Option<Vec<std::ops::Range<usize>>>>>,
}

const TOUCH_PAGE: usize = 4096;

impl Untouched {
    fn new(volume: Vec<u8>) -> Self {
        let pages = volume.len().div_ceil(TOUCH_PAGE);
        Untouched {
            inner: Cursor::new(volume),
            written: vec![false; pages],
            zeros: Default::default(),
        }
    }
}

impl std::io::Read for Untouched {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf)
    }
}

impl std::io::Seek for Untouched {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

impl Write for Untouched {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let at = usize::try_from(self.inner.position()).unwrap_or(usize::MAX);
        let end = at.saturating_add(buf.len());
        if end <= self.inner.get_ref().len() {
            let pages = at / TOUCH_PAGE..end.div_ceil(TOUCH_PAGE);
            let zeros = super::is_zero(buf);
            if zeros {
                if let Some(s) = self.zeros.borrow_mut().as_mut() {
                    s.push(at..end);
                }
                if !self.written[pages.clone()].contains(&true) {
                    self.inner.set_position(end as u64);
                    return Ok(buf.len());
                }
            }
            self.written[pages].iter_mut().for_each(|w| *w = true);
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether the files, their directories and the entries naming them fit in
/// the free clusters (and, on FAT12/16, the fixed root directory).
fn fits<T: fatfs::ReadWriteSeek>(
    fs: &fatfs::FileSystem<T>,
    files: &[(Vec<String>, &[&[u8]])],
) -> std::io::Result<bool> {
    let stats = fs.stats()?;
    let cluster = u64::from(stats.cluster_size());
    // Entries per directory: a short entry plus one long-name entry per 13
    // UTF-16 units for every child; `.` and `..` (with their long names) too.
    let mut dir_entries: std::collections::BTreeMap<Vec<String>, u64> = Default::default();
    let mut clusters = 0u64;
    for (parts, data) in files {
        clusters += file_len(data).div_ceil(cluster);
        for n in 1..=parts.len() {
            let parent = parts[..n - 1].to_vec();
            let child = &parts[n - 1];
            let is_new_dir = n < parts.len() && !dir_entries.contains_key(&parts[..n]);
            if n == parts.len() || is_new_dir {
                let e = dir_entries.entry(parent).or_insert(0);
                *e += 1 + (child.encode_utf16().count() as u64).div_ceil(13);
            }
            if is_new_dir {
                dir_entries.insert(parts[..n].to_vec(), 4);
            }
        }
    }
    let root_entries = dir_entries.get(&Vec::new()).copied().unwrap_or(0) + 1; // + label
    if fs.fat_type() != fatfs::FatType::Fat32 && root_entries > 512 {
        return Ok(false);
    }
    for (dir, entries) in &dir_entries {
        if !dir.is_empty() || fs.fat_type() == fatfs::FatType::Fat32 {
            clusters += (entries * ENTRY as u64).div_ceil(cluster).max(1);
        }
    }
    Ok(clusters <= u64::from(stats.free_clusters()))
}

/// The time `fatfs` stamps entries with; [`normalize`] overwrites every stamp
/// with the caller's, so this only keeps the wall clock out.
#[derive(Debug)]
struct FixedTime;

static FIXED_TIME: FixedTime = FixedTime;

impl fatfs::TimeProvider for FixedTime {
    fn get_current_date(&self) -> fatfs::Date {
        fatfs::Date {
            year: 1980,
            month: 1,
            day: 1,
        }
    }

    fn get_current_date_time(&self) -> fatfs::DateTime {
        fatfs::DateTime {
            date: self.get_current_date(),
            time: fatfs::Time {
                hour: 0,
                min: 0,
                sec: 0,
                millis: 0,
            },
        }
    }
}

/// A timestamp in FAT's encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DosTime {
    date: u16,
    time: u16,
    /// Creation time's 10 ms units (0-199), carrying the odd second.
    tenths: u8,
}

impl DosTime {
    /// Unix seconds (UTC) to FAT date/time, clamped to 1980-01-01 00:00:00 ..
    /// 2107-12-31 23:59:59.
    fn from_unix(t: i64) -> Self {
        let t = t.max(FAT_EPOCH);
        let days = t.div_euclid(86_400);
        let secs = t.rem_euclid(86_400);
        let (mut y, mut m, mut d) = crate::util::time::civil_from_days(days);
        let (mut hh, mut mm, mut ss) = (secs / 3600, secs / 60 % 60, secs % 60);
        if y > FAT_END_YEAR {
            (y, m, d, hh, mm, ss) = (FAT_END_YEAR, 12, 31, 23, 59, 59);
        }
        // All fields are within range after the clamps above.
        let date = (((y - 1980) << 9) | (m << 5) | d) as u16;
        let time = ((hh << 11) | (mm << 5) | (ss / 2)) as u16;
        DosTime {
            date,
            time,
            tenths: ((ss % 2) * 100) as u8,
        }
    }

    /// Stamps a short directory entry: created, accessed and written.
    fn stamp(&self, entry: &mut [u8]) {
        entry[13] = self.tenths;
        entry[14..16].copy_from_slice(&self.time.to_le_bytes());
        entry[16..18].copy_from_slice(&self.date.to_le_bytes());
        entry[18..20].copy_from_slice(&self.date.to_le_bytes());
        entry[22..24].copy_from_slice(&self.time.to_le_bytes());
        entry[24..26].copy_from_slice(&self.date.to_le_bytes());
    }
}

/// Geometry of a FAT volume, read from its boot sector.
#[derive(Debug)]
struct Geometry {
    kind: Kind,
    fat_offset: usize,
    cluster_size: usize,
    /// Byte range of the fixed root directory (FAT12/16).
    root_region: std::ops::Range<usize>,
    /// First cluster of the root directory (FAT32).
    root_cluster: u32,
    data_offset: usize,
    clusters: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fat12,
    Fat16,
    Fat32,
}

fn malformed(what: impl Into<String>) -> FatError {
    FatError::Malformed { what: what.into() }
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Geometry {
    fn read(img: &[u8]) -> Result<Self, FatError> {
        if img.len() < 512 || img[510..512] != [0x55, 0xaa] {
            return Err(malformed("no boot sector signature"));
        }
        let bps = usize::from(le16(img, 11));
        let spc = usize::from(img[13]);
        let reserved = usize::from(le16(img, 14));
        let fats = usize::from(img[16]);
        let root_entries = usize::from(le16(img, 17));
        let total = match le16(img, 19) {
            0 => le32(img, 32) as usize,
            n => usize::from(n),
        };
        let fat_size = match le16(img, 22) {
            0 => le32(img, 36) as usize,
            n => usize::from(n),
        };
        if bps == 0 || spc == 0 || total * bps > img.len() {
            return Err(malformed("boot sector geometry"));
        }
        let root_start = (reserved + fats * fat_size) * bps;
        let root_len = root_entries * ENTRY;
        let data_offset = root_start + root_len.next_multiple_of(bps);
        let clusters = ((total * bps).saturating_sub(data_offset) / (spc * bps)) as u32;
        // The FAT type is decided by the cluster count alone (FAT spec §3.5).
        let kind = match clusters {
            0..4085 => Kind::Fat12,
            4085..65525 => Kind::Fat16,
            _ => Kind::Fat32,
        };
        Ok(Geometry {
            kind,
            fat_offset: reserved * bps,
            cluster_size: spc * bps,
            root_region: root_start..root_start + root_len,
            root_cluster: if kind == Kind::Fat32 {
                le32(img, 44)
            } else {
                0
            },
            data_offset,
            clusters,
        })
    }

    /// The FAT entry of cluster `c`, or `None` at the end of the chain.
    fn next(&self, img: &[u8], c: u32) -> Option<u32> {
        let n = match self.kind {
            Kind::Fat12 => {
                let at = self.fat_offset + c as usize * 3 / 2;
                let v = u32::from(le16(img, at));
                if c % 2 == 1 {
                    v >> 4
                } else {
                    v & 0xfff
                }
            }
            Kind::Fat16 => u32::from(le16(img, self.fat_offset + c as usize * 2)),
            Kind::Fat32 => le32(img, self.fat_offset + c as usize * 4) & 0x0fff_ffff,
        };
        (2..self.clusters + 2).contains(&n).then_some(n)
    }

    /// Byte ranges of the clusters in the chain starting at `first`.
    fn chain(&self, img: &[u8], first: u32) -> Result<Vec<std::ops::Range<usize>>, FatError> {
        let mut out = Vec::new();
        let mut c = Some(first);
        while let Some(cl) = c {
            if !(2..self.clusters + 2).contains(&cl) || out.len() > self.clusters as usize {
                return Err(malformed(format!("bad cluster chain from {first}")));
            }
            let start = self.data_offset + (cl as usize - 2) * self.cluster_size;
            out.push(start..start + self.cluster_size);
            c = self.next(img, cl);
        }
        Ok(out)
    }
}

/// First cluster named by a short directory entry.
fn first_cluster(entry: &[u8]) -> u32 {
    (u32::from(le16(entry, 20)) << 16) | u32::from(le16(entry, 26))
}

fn set_first_cluster(entry: &mut [u8], c: u32) {
    entry[20..22].copy_from_slice(&((c >> 16) as u16).to_le_bytes());
    entry[26..28].copy_from_slice(&(c as u16).to_le_bytes());
}

/// A fresh short entry with no cluster and no size.
fn short_entry(name: &[u8; 11], attr: u8, stamp: DosTime) -> [u8; ENTRY] {
    let mut e = [0u8; ENTRY];
    e[..11].copy_from_slice(name);
    e[11] = attr;
    stamp.stamp(&mut e);
    e
}

/// Rewrites every directory as the module doc describes.
fn normalize(img: &mut [u8], label: &[u8; 11], stamp: DosTime) -> Result<(), FatError> {
    let geo = Geometry::read(img)?;
    let root = if geo.kind == Kind::Fat32 {
        geo.chain(img, geo.root_cluster)?
    } else {
        vec![geo.root_region.clone()]
    };
    // (regions of the directory, its own cluster, its parent's; 0 = root)
    let mut todo = vec![(root, None::<(u32, u32)>)];
    while let Some((regions, clusters)) = todo.pop() {
        let mut raw = Vec::new();
        for r in &regions {
            raw.extend_from_slice(&img[r.clone()]);
        }
        let mut out: Vec<[u8; ENTRY]> = Vec::new();
        match clusters {
            None => out.push(short_entry(label, ATTR_VOLUME_ID, stamp)),
            Some((own, parent)) => {
                let mut dot = short_entry(DOT, ATTR_DIRECTORY, stamp);
                set_first_cluster(&mut dot, own);
                let mut dotdot = short_entry(DOTDOT, ATTR_DIRECTORY, stamp);
                set_first_cluster(&mut dotdot, parent);
                out.extend([dot, dotdot]);
            }
        }
        let own = clusters.map_or(0, |(own, _)| own);
        let mut pending_lfn: Vec<[u8; ENTRY]> = Vec::new();
        for chunk in raw.chunks_exact(ENTRY) {
            let mut e = [0u8; ENTRY];
            e.copy_from_slice(chunk);
            match (e[0], e[11]) {
                (END, _) => break,
                (DELETED, _) => pending_lfn.clear(),
                (_, ATTR_LONG_NAME) => pending_lfn.push(e),
                (_, attr) if attr & ATTR_VOLUME_ID != 0 => pending_lfn.clear(),
                _ if &e[..11] == DOT || &e[..11] == DOTDOT => pending_lfn.clear(),
                (_, attr) => {
                    stamp.stamp(&mut e);
                    out.append(&mut pending_lfn);
                    out.push(e);
                    if attr & ATTR_DIRECTORY != 0 {
                        let child = first_cluster(&e);
                        todo.push((geo.chain(img, child)?, Some((child, own))));
                    }
                }
            }
        }
        let capacity: usize = regions.iter().map(|r| r.len()).sum();
        if out.len() * ENTRY > capacity {
            return Err(malformed(format!(
                "directory at cluster {own} has no room for its label or dot entries"
            )));
        }
        let mut flat: Vec<u8> = out.concat();
        flat.resize(capacity, 0);
        let mut at = 0;
        for r in regions {
            let n = r.len();
            img[r].copy_from_slice(&flat[at..at + n]);
            at += n;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    use crate::testutil::tool;

    /// 2023-11-14T22:13:21Z (an odd second).
    const TS: i64 = 1_700_000_001;

    fn payload(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(seed) ^ (i >> 9) as u8)
            .collect()
    }

    fn sample() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        (
            payload(3 * 1024 * 1024 + 123, 7),
            b"title kiln\n".to_vec(),
            payload(5000, 3),
        )
    }

    fn build_sample() -> Vec<u8> {
        let (efi, entry, other) = sample();
        build_esp(
            &[
                ("EFI/BOOT/BOOTX64.EFI", &efi),
                ("loader/entries/kiln.conf", &entry),
                ("EFI/Linux/a-long-file-name.efi", &other),
                ("empty", &[]),
            ],
            0x1234_abcd,
            "kiln-esp",
            TS,
        )
        .unwrap()
    }

    fn mtools(name: &str) -> Command {
        let mut c = Command::new(tool(name, "mtools"));
        c.env("MTOOLS_SKIP_CHECK", "1");
        c
    }

    #[test]
    fn fsck_is_clean() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("esp.img");
        std::fs::write(&img, build_sample()).unwrap();
        let out = Command::new(tool("fsck.vfat", "dosfstools"))
            .arg("-n")
            .arg("-V")
            .arg(&img)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "fsck.vfat -n: {out:?}");
        // Only the banner, the pass names and the summary line: no complaints.
        let complaints: Vec<&str> = stdout
            .lines()
            .filter(|l| {
                !(l.starts_with("fsck.fat ")
                    || l.starts_with("Starting ")
                    || l.starts_with("Checking we can access")
                    || l.contains(" files, ")
                    || l.is_empty())
            })
            .collect();
        assert!(complaints.is_empty(), "fsck.vfat complains:\n{stdout}");
        assert!(out.stderr.is_empty(), "fsck.vfat stderr: {out:?}");
    }

    #[test]
    fn mtools_reads_files_back() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("esp.img");
        std::fs::write(&img, build_sample()).unwrap();
        let (efi, entry, other) = sample();

        let out = mtools("mdir")
            .arg("-i")
            .arg(&img)
            .arg("::/EFI/BOOT")
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "mdir: {out:?}");
        assert!(listing.contains("BOOTX64  EFI"), "mdir:\n{listing}");
        assert!(
            listing.contains("2023-11-14"),
            "timestamp not shown:\n{listing}"
        );
        assert!(listing.contains("KILN-ESP"), "label not shown:\n{listing}");

        for (path, want) in [
            ("::/EFI/BOOT/BOOTX64.EFI", &efi),
            ("::/loader/entries/kiln.conf", &entry),
            ("::/EFI/Linux/a-long-file-name.efi", &other),
        ] {
            let dest = dir.path().join("out");
            let _ = std::fs::remove_file(&dest);
            let out = mtools("mcopy")
                .arg("-i")
                .arg(&img)
                .arg(path)
                .arg(&dest)
                .output()
                .unwrap();
            assert!(out.status.success(), "mcopy {path}: {out:?}");
            assert!(std::fs::read(&dest).unwrap() == *want, "{path} differs");
        }
    }

    #[test]
    fn deterministic_and_order_independent() {
        let a = build_sample();
        let (efi, entry, other) = sample();
        let b = build_esp(
            &[
                ("empty", &[]),
                ("EFI/Linux/a-long-file-name.efi", &other),
                ("/loader/entries/kiln.conf", &entry),
                ("EFI/BOOT/BOOTX64.EFI", &efi),
            ],
            0x1234_abcd,
            "KILN-ESP",
            TS,
        )
        .unwrap();
        assert!(a == b);
        assert_eq!(a.len() as u64, MIN_SIZE);
        assert_eq!(le32(&a, 39), 0x1234_abcd, "volume id");
        assert_eq!(&a[43..54], b"KILN-ESP   ");
    }

    #[test]
    fn files_left_out_are_the_files_written() {
        let (efi, entry, other) = sample();
        let files: Vec<(&str, Vec<&[u8]>)> = vec![
            // A file in uneven pieces, with zeros inside and at its end.
            (
                "EFI/BOOT/BOOTX64.EFI",
                vec![&efi[..10], &[0u8; 9000][..], &efi[10..]],
            ),
            ("loader/entries/kiln.conf", vec![&entry[..]]),
            (
                "EFI/Linux/a-long-file-name.efi",
                vec![&other[..], &[0u8; 3][..]],
            ),
            ("empty", vec![]),
        ];
        let files: Vec<(&str, &[&[u8]])> = files.iter().map(|(p, d)| (*p, &d[..])).collect();
        let esp = build_esp_pieces(&files, 0x1234_abcd, "kiln-esp", TS).unwrap();
        // Every file with bytes was left out, none written in after all.
        assert_eq!(esp.files.iter().filter(|(_, d)| file_len(d) > 0).count(), 3);
        let pieces = esp.pieces();
        assert_eq!(pieces.iter().map(|p| p.len()).sum::<usize>(), esp.len());
        assert!(pieces.concat() == esp.to_vec());

        // The same volume as fatfs writing the bytes itself.
        let label = volume_label("kiln-esp").unwrap();
        let checked = checked_files(&files).unwrap();
        let Built::Done(mut written) = try_build(
            &checked,
            esp.len() as u64,
            0x1234_abcd,
            label,
            Data::Written,
        )
        .unwrap() else {
            panic!("the files fit the first time");
        };
        normalize(&mut written.volume, &label, DosTime::from_unix(TS)).unwrap();
        assert!(written.files.is_empty());
        assert!(written.volume == esp.to_vec());
    }

    #[test]
    fn grows_with_contents() {
        let big = payload(20 << 20, 5);
        let img = build_esp(&[("EFI/BOOT/BOOTX64.EFI", &big)], 1, "ESP", TS).unwrap();
        assert!(img.len() as u64 > 20 << 20);
        assert!((img.len() as u64) < 24 << 20, "{} bytes", img.len());
        let geo = Geometry::read(&img).unwrap();
        assert_eq!(geo.kind, Kind::Fat16);
    }

    #[test]
    fn dos_time_conversion() {
        // (unix seconds, date, time, tenths)
        let table = [
            (0, 0x0021, 0x0000, 0),           // clamped to 1980-01-01 00:00:00
            (FAT_EPOCH, 0x0021, 0x0000, 0),   // 1980-01-01 00:00:00
            (TS, 0x576e, 0xb1aa, 100),        // 2023-11-14 22:13:21
            (951_782_400, 0x285d, 0x0000, 0), // 2000-02-29 (leap day)
            (i64::MAX, 0xff9f, 0xbf7d, 100),  // clamped to 2107-12-31 23:59:59
        ];
        for (t, date, time, tenths) in table {
            assert_eq!(DosTime::from_unix(t), DosTime { date, time, tenths }, "{t}");
        }
    }

    #[test]
    fn rejects_bad_input() {
        let d: &[u8] = b"x";
        assert!(matches!(
            build_esp(&[("EFI/../x", d)], 1, "ESP", TS),
            Err(FatError::BadPath { .. })
        ));
        assert!(matches!(
            build_esp(&[("EFI/x", d), ("efi/X", d)], 1, "ESP", TS),
            Err(FatError::Collision { .. })
        ));
        assert!(matches!(
            build_esp(&[("EFI", d), ("EFI/x", d)], 1, "ESP", TS),
            Err(FatError::Collision { .. })
        ));
        assert!(matches!(
            build_esp(&[("x", d)], 1, "label too long", TS),
            Err(FatError::BadLabel { .. })
        ));
    }
}
