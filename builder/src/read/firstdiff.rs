//! The first difference between two builds that should be bit-identical,
//! named the way a person debugging reproducibility wants it (a small
//! diffoscope): the partition, the file in it, the field.
//!
//! Partitions are examined in the order the disk's contents derive from
//! each other, so the cause is named rather than a consequence: the root
//! filesystem first (the verity hash tree, the root hash on the command
//! line, the UKI, the ESP and the partition GUIDs all follow from it), then
//! the verity partition, the ESP, the GPT tables. Within the ext4 root,
//! files in path order ([`crate::read::diff::node_changes`] decides the field);
//! when the trees agree, the ext4 metadata (superblock fields, group
//! descriptors, inode fields with checksums last, else a block number).
//! In the ESP, files by path; a UKI by PE header field, then by section.
//! JSON sidecars (manifest, SBOM) by the first differing JSON path.

use std::fmt;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;

use crate::fs::ext4::read::Fs;
use crate::fs::layer::sha256_digest;
use crate::fs::tree::Tree;
use crate::fs::{gpt, uki};
use crate::model::disk::PartitionInfo;
use crate::read::diff::{node_changes, short, shown_path};
use crate::read::disk;
use crate::read::imagefs::{self, FileKind};
use crate::util::printable::PrintableExt as _;

mod fields;
use fields::*;

/// One named difference; renders as
/// `root-x86-64: /srv/hello/index.html: content (sha256:… vs sha256:…)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// The partition (GPT label), `protective MBR`, `GPT header`, `GPT
    /// partition table`, `backup GPT …`, `tar`, `image`, or a sidecar's file name.
    pub part: String,
    /// The file inside it (absolute path), when there is one.
    pub file: Option<String>,
    /// What differs: a file field (`content`, `mode`, `mtime`, `xattr NAME`,
    /// `present only in B`, …), a metadata field (`s_uuid`, `inode 12
    /// i_ctime`, `PE header TimeDateStamp`, `section .cmdline`), a JSON
    /// path (`layers[1].digest`), or `byte N` / `block N` as a last resort.
    pub field: String,
    /// Value in A, when short enough to show.
    pub a: Option<String>,
    /// Value in B.
    pub b: Option<String>,
    /// The other parts that differ too, in the same order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<String>,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names and values come from the images: quoted for a terminal.
        write!(f, "{}: ", self.part.printable())?;
        if let Some(file) = &self.file {
            write!(f, "{}: ", file.printable())?;
        }
        write!(f, "{}", self.field.printable())?;
        if self.a.is_some() || self.b.is_some() {
            write!(
                f,
                " ({} vs {})",
                short(&self.a).printable(),
                short(&self.b).printable()
            )?;
        }
        if !self.also.is_empty() {
            write!(f, "; also differ: {}", self.also.join(", ").printable())?;
        }
        Ok(())
    }
}

fn diff_at(
    part: &str,
    field: impl Into<String>,
    a: Option<String>,
    b: Option<String>,
) -> Difference {
    Difference {
        part: part.to_string(),
        file: None,
        field: field.into(),
        a,
        b,
        also: Vec::new(),
    }
}

/// First offset at which two byte strings differ (a length difference counts
/// at the shorter one's end).
fn first_byte(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or((a.len() != b.len()).then(|| a.len().min(b.len())))
}

/// Whether two files have the same bytes (streamed).
pub fn same_bytes(a: &Path, b: &Path) -> Result<bool> {
    let open =
        |p: &Path| std::fs::File::open(p).with_context(|| format!("opening {}", p.display()));
    let (fa, fb) = (open(a)?, open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ra, mut rb) = (std::io::BufReader::new(fa), std::io::BufReader::new(fb));
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = ra.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        rb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// The first difference between two image files (disk or tar) that should
/// be bit-identical; `None` when their bytes are equal.
pub fn first_difference(a: &Path, b: &Path) -> Result<Option<Difference>> {
    if same_bytes(a, b)? {
        return Ok(None);
    }
    let (ka, kb) = (imagefs::file_kind(a)?, imagefs::file_kind(b)?);
    if ka != kb {
        let name = |k| format!("{k:?}").to_lowercase();
        return Ok(Some(diff_at(
            "image",
            "format",
            Some(name(ka)),
            Some(name(kb)),
        )));
    }
    if ka == FileKind::Tar {
        let (ta, tb) = (imagefs::read_tar_file(a)?, imagefs::read_tar_file(b)?);
        if let Some(d) = tree_difference("tar", &ta, &tb) {
            return Ok(Some(d));
        }
        let (ba, bb) = (std::fs::read(a)?, std::fs::read(b)?);
        let at = first_byte(&ba, &bb).unwrap_or(0);
        return Ok(Some(diff_at(
            "tar",
            format!("byte {at} (tar headers or padding)"),
            None,
            None,
        )));
    }
    disk_difference(a, b).map(Some)
}

/// Causal order of the partitions: root, verity, ESP, anything else.
fn rank(p: &PartitionInfo) -> (u8, u32) {
    let t = &p.type_guid;
    let r = if *t == gpt::ROOT_X86_64_TYPE {
        0
    } else if *t == gpt::ROOT_X86_64_VERITY_TYPE {
        1
    } else if *t == gpt::ESP_TYPE {
        2
    } else {
        3
    };
    (r, p.index)
}

fn disk_difference(a: &Path, b: &Path) -> Result<Difference> {
    let mut pa = disk::read_partitions(a)?;
    let pb = disk::read_partitions(b)?;
    pa.sort_by_key(|(p, _)| rank(p));
    let mut found: Vec<Difference> = Vec::new();
    for (info, da) in &pa {
        let part = info.name.as_str();
        match pb.iter().find(|(p, _)| p.name == info.name) {
            None => found.push(diff_at(part, "present only in A", None, None)),
            Some((_, db)) if da != db => {
                let t = &info.type_guid;
                let d = if *t == gpt::ROOT_X86_64_TYPE {
                    ext4_difference(part, da, db)
                } else if *t == gpt::ROOT_X86_64_VERITY_TYPE {
                    verity_difference(part, da, db)
                } else if *t == gpt::ESP_TYPE {
                    esp_difference(part, da, db)?
                } else {
                    bytes_difference(part, da, db)
                };
                found.push(d);
            }
            Some(_) => {}
        }
    }
    for (info, _) in &pb {
        if !pa.iter().any(|(p, _)| p.name == info.name) {
            found.push(diff_at(&info.name, "present only in B", None, None));
        }
    }
    found.extend(table_differences(a, b)?);
    let mut first = found.first().cloned().unwrap_or_else(|| {
        diff_at(
            "disk",
            "bytes outside the partitions and tables",
            None,
            None,
        )
    });
    first.also = found.iter().skip(1).map(|d| d.part.clone()).collect();
    Ok(first)
}

/// The protective MBR and both GPTs (headers and partition arrays).
fn table_differences(a: &Path, b: &Path) -> Result<Vec<Difference>> {
    let read = |p: &Path| -> Result<(Vec<u8>, Vec<u8>)> {
        let mut f = std::fs::File::open(p)?;
        let len = f.metadata()?.len();
        let area = (34 * gpt::SECTOR_SIZE) as usize;
        let mut head = vec![0u8; area.min(len as usize)];
        f.read_exact(&mut head)?;
        let tail_len = (33 * gpt::SECTOR_SIZE).min(len);
        let mut tail = vec![0u8; tail_len as usize];
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(len - tail_len))?;
        f.read_exact(&mut tail)?;
        Ok((head, tail))
    };
    let ((ha, ta), (hb, tb)) = (read(a)?, read(b)?);
    let sector = gpt::SECTOR_SIZE as usize;
    let slice =
        |v: &[u8], r: std::ops::Range<usize>| v.get(r).map(<[u8]>::to_vec).unwrap_or_default();
    let mut out = Vec::new();
    let mbr = (slice(&ha, 0..sector), slice(&hb, 0..sector));
    if let Some(at) = first_byte(&mbr.0, &mbr.1) {
        out.push(diff_at("protective MBR", format!("byte {at}"), None, None));
    }
    out.extend(header_difference(
        "GPT header",
        &slice(&ha, sector..2 * sector),
        &slice(&hb, sector..2 * sector),
    ));
    out.extend(entries_difference(
        "GPT partition table",
        &slice(&ha, 2 * sector..34 * sector),
        &slice(&hb, 2 * sector..34 * sector),
    ));
    out.extend(entries_difference(
        "backup GPT partition table",
        &slice(&ta, 0..32 * sector),
        &slice(&tb, 0..32 * sector),
    ));
    out.extend(header_difference(
        "backup GPT header",
        &slice(&ta, 32 * sector..33 * sector),
        &slice(&tb, 32 * sector..33 * sector),
    ));
    Ok(out)
}

fn header_difference(part: &str, x: &[u8], y: &[u8]) -> Option<Difference> {
    let at = first_byte(x, y)?;
    let (field, va, vb) = first_field(
        x,
        y,
        0,
        GPT_HEADER,
        &["HeaderCRC32", "PartitionEntryArrayCRC32"],
    )
    .unwrap_or_else(|| (format!("byte {at}"), "-".into(), "-".into()));
    Some(diff_at(part, field, Some(va), Some(vb)))
}

fn entries_difference(part: &str, x: &[u8], y: &[u8]) -> Option<Difference> {
    let at = first_byte(x, y)?;
    let i = at / GPT_ENTRY_SIZE;
    let (field, va, vb) = first_field(x, y, i * GPT_ENTRY_SIZE, GPT_ENTRY, &[])
        .unwrap_or_else(|| ("bytes".into(), "-".into(), "-".into()));
    Some(diff_at(
        part,
        format!("entry {} {field}", i + 1),
        Some(va),
        Some(vb),
    ))
}

fn bytes_difference(part: &str, a: &[u8], b: &[u8]) -> Difference {
    let at = first_byte(a, b).unwrap_or(0);
    diff_at(part, format!("byte {at}"), None, None)
}

/// The first path (in path order) at which two trees differ, and its first field.
pub fn tree_difference(part: &str, a: &Tree, b: &Tree) -> Option<Difference> {
    let mut ia = a.iter().peekable();
    let mut ib = b.iter().peekable();
    let at = |path: &str, field: &str, va: Option<String>, vb: Option<String>| {
        let mut d = diff_at(part, field, va, vb);
        d.file = Some(shown_path(path));
        Some(d)
    };
    loop {
        match (ia.peek(), ib.peek()) {
            (None, None) => return None,
            (Some(&(pa, na)), Some(&(pb, nb))) if pa == pb => {
                let changes = node_changes(a, na, b, nb);
                // A content change implies its size change: name the content.
                if let Some(c) = changes
                    .iter()
                    .find(|c| c.field != "size")
                    .or(changes.first())
                {
                    return at(pa, &c.field, c.old.clone(), c.new.clone());
                }
                ia.next();
                ib.next();
            }
            (Some(&(pa, _)), Some(&(pb, _))) if pa < pb => {
                return at(pa, "present only in A", None, None)
            }
            (Some(&(pa, _)), None) => return at(pa, "present only in A", None, None),
            (_, Some(&(pb, _))) => return at(pb, "present only in B", None, None),
        }
    }
}

fn ext4_difference(part: &str, a: &[u8], b: &[u8]) -> Difference {
    let (Ok(fa), Ok(fb)) = (Fs::open(a), Fs::open(b)) else {
        return bytes_difference(part, a, b);
    };
    if let (Ok(ta), Ok(tb)) = (fa.tree(), fb.tree()) {
        if let Some(d) = tree_difference(part, &ta, &tb) {
            return d;
        }
    }
    // Same files: name the metadata.
    let sb = crate::fs::ext4::SUPERBLOCK_OFFSET;
    if let Some((f, va, vb)) = first_field(a, b, sb, EXT4_SUPER, EXT4_CHECKSUMS) {
        return diff_at(part, format!("superblock {f}"), Some(va), Some(vb));
    }
    let Some(at) = a
        .get(sb + 1024..)
        .zip(b.get(sb + 1024..))
        .and_then(|(x, y)| first_byte(x, y))
        .map(|o| o + sb + 1024)
    else {
        return bytes_difference(part, a, b);
    };
    let gdt_len = fa.groups() * fa.desc_size;
    if (fa.gdt_offset..fa.gdt_offset + gdt_len).contains(&at) {
        let g = (at - fa.gdt_offset) / fa.desc_size;
        if let Some((f, va, vb)) = first_field(
            a,
            b,
            fa.gdt_offset + g * fa.desc_size,
            EXT4_GROUP,
            EXT4_CHECKSUMS,
        ) {
            return diff_at(
                part,
                format!("group descriptor {g} {f}"),
                Some(va),
                Some(vb),
            );
        }
    }
    if let Some(ino) = fa.inode_at(at) {
        if let Ok(r) = fa.inode_range(ino) {
            let path = fa.paths().ok().and_then(|p| {
                p.into_iter()
                    .find(|(_, i)| *i == ino)
                    .map(|(p, _)| shown_path(&p))
            });
            if let Some((f, va, vb)) = first_field(a, b, r.start, EXT4_INODE, EXT4_CHECKSUMS)
                .or_else(|| first_field(a, b, r.start, EXT4_INODE_XATTRS, &[]))
            {
                let mut d = diff_at(part, format!("inode {ino} {f}"), Some(va), Some(vb));
                d.file = path;
                return d;
            }
        }
    }
    diff_at(
        part,
        format!("block {}", at as u64 / fa.block_size),
        None,
        None,
    )
}

fn verity_difference(part: &str, a: &[u8], b: &[u8]) -> Difference {
    if let Some((f, va, vb)) = first_field(a, b, 0, VERITY_SUPER, &[]) {
        return diff_at(part, format!("superblock {f}"), Some(va), Some(vb));
    }
    diff_at(
        part,
        "hash tree (follows from the root partition's bytes)",
        None,
        None,
    )
}

fn esp_difference(part: &str, a: &[u8], b: &[u8]) -> Result<Difference> {
    let (fa, fb) = match (disk::read_esp_files(a), disk::read_esp_files(b)) {
        (Ok(x), Ok(y)) => (x, y),
        _ => return Ok(bytes_difference(part, a, b)),
    };
    let paths: std::collections::BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
    for p in paths {
        let file = Some(format!("/{p}"));
        let d = match (fa.get(p), fb.get(p)) {
            (Some(x), Some(y)) if x == y => continue,
            (Some(x), Some(y)) if x.starts_with(b"MZ") => pe_difference(part, x, y),
            (Some(x), Some(y)) => diff_at(
                part,
                "content",
                Some(sha256_digest(x)),
                Some(sha256_digest(y)),
            ),
            (Some(_), None) => diff_at(part, "present only in A", None, None),
            _ => diff_at(part, "present only in B", None, None),
        };
        return Ok(Difference { file, ..d });
    }
    // Same files: FAT metadata.
    let table = if a.get(22..24) == Some(&[0, 0]) {
        FAT32_BOOT
    } else {
        FAT_BOOT
    };
    if let Some((f, va, vb)) = first_field(a, b, 0, table, &[]) {
        return Ok(diff_at(
            part,
            format!("boot sector {f}"),
            Some(va),
            Some(vb),
        ));
    }
    let at = first_byte(a, b).unwrap_or(0);
    Ok(diff_at(
        part,
        format!("byte {at} (FAT tables, directory entries or their dates)"),
        None,
        None,
    ))
}

/// A UKI or other PE image: header fields, then sections in table order.
fn pe_difference(part: &str, a: &[u8], b: &[u8]) -> Difference {
    let coff = |pe: &[u8]| {
        pe.get(0x3C..0x40)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize + 4)
    };
    if let (Some(ca), Some(cb)) = (coff(a), coff(b)) {
        if ca == cb {
            if let Some((f, va, vb)) = first_field(a, b, ca, PE_COFF, &["CheckSum"]) {
                return diff_at(part, format!("PE header {f}"), Some(va), Some(vb));
            }
        }
    }
    if let (Ok(sa), Ok(sb)) = (uki::sections(a), uki::sections(b)) {
        for s in &sa {
            let (x, y) = (uki::read_section(a, &s.name), uki::read_section(b, &s.name));
            if x != y {
                let text = matches!(s.name.as_str(), ".cmdline" | ".uname" | ".osrel");
                let val = |v: Option<&[u8]>| {
                    v.map(|v| {
                        if text {
                            String::from_utf8_lossy(v)
                                .trim_end_matches('\0')
                                .to_string()
                        } else {
                            sha256_digest(v)
                        }
                    })
                };
                return diff_at(part, format!("section {}", s.name), val(x), val(y));
            }
        }
        if let Some(s) = sb.iter().find(|s| !sa.iter().any(|x| x.name == s.name)) {
            return diff_at(
                part,
                format!("section {} present only in B", s.name),
                None,
                None,
            );
        }
    }
    let at = first_byte(a, b).unwrap_or(0);
    diff_at(part, format!("PE byte {at}"), None, None)
}

/// The first JSON path at which two documents differ (object keys in
/// sorted order, arrays by index), with both values (compact JSON).
pub fn first_json_difference(part: &str, a: &Value, b: &Value) -> Option<Difference> {
    type Hit = (String, Option<String>, Option<String>);
    fn walk(path: &str, a: Option<&Value>, b: Option<&Value>) -> Option<Hit> {
        let render = |v: Option<&Value>| v.map(|v| v.to_string());
        match (a, b) {
            (Some(Value::Object(x)), Some(Value::Object(y))) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                keys.into_iter().find_map(|k| {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(&p, x.get(k), y.get(k))
                })
            }
            (Some(Value::Array(x)), Some(Value::Array(y))) => (0..x.len().max(y.len()))
                .find_map(|i| walk(&format!("{path}[{i}]"), x.get(i), y.get(i))),
            (x, y) if x == y => None,
            (x, y) => Some((path.to_string(), render(x), render(y))),
        }
    }
    let (path, va, vb) = walk("", Some(a), Some(b))?;
    Some(diff_at(
        part,
        if path.is_empty() {
            "(document)".into()
        } else {
            path
        },
        va,
        vb,
    ))
}

/// The first difference between two JSON sidecar files (manifest, SBOM),
/// named by the file's name and the JSON path; `None` when the bytes are equal.
pub fn first_sidecar_difference(a: &Path, b: &Path) -> Result<Option<Difference>> {
    let (ba, bb) = (
        std::fs::read(a).with_context(|| format!("reading {}", a.display()))?,
        std::fs::read(b).with_context(|| format!("reading {}", b.display()))?,
    );
    if ba == bb {
        return Ok(None);
    }
    let part = a.file_name().map_or_else(
        || a.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    match (
        serde_json::from_slice::<Value>(&ba),
        serde_json::from_slice::<Value>(&bb),
    ) {
        (Ok(x), Ok(y)) => Ok(Some(
            first_json_difference(&part, &x, &y)
                .unwrap_or_else(|| bytes_difference(&part, &ba, &bb)),
        )),
        _ => Ok(Some(bytes_difference(&part, &ba, &bb))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::ext4::{self, Ext4Options};
    use crate::testutil::{fake_disk, fake_root};

    const SDE: i64 = 1_700_000_000;

    fn disk_with(dir: &Path, name: &str, root: &Tree) -> std::path::PathBuf {
        let p = dir.join(name);
        fake_disk(root, SDE, &p);
        p
    }

    #[test]
    fn disks_name_the_root_file_and_field_first() {
        let dir = tempfile::tempdir().unwrap();
        let base = fake_root(&[("srv/hello/index.html", "hello\n")], SDE);
        let a = disk_with(dir.path(), "a.raw", &base);
        let a2 = disk_with(dir.path(), "a2.raw", &base);
        assert_eq!(first_difference(&a, &a2).unwrap(), None);

        let changed = fake_root(&[("srv/hello/index.html", "hello, changed\n")], SDE);
        let b = disk_with(dir.path(), "b.raw", &changed);
        let d = first_difference(&a, &b).unwrap().unwrap();
        assert_eq!(
            (d.part.as_str(), d.file.as_deref(), d.field.as_str()),
            ("root-x86-64", Some("/srv/hello/index.html"), "content")
        );
        assert_eq!(
            d.also,
            [
                "root-x86-64-verity",
                "esp",
                "GPT header",
                "GPT partition table",
                "backup GPT partition table",
                "backup GPT header"
            ]
        );
        let line = d.to_string();
        eprintln!("{line}");
        assert!(
            line.starts_with("root-x86-64: /srv/hello/index.html: content (sha256:"),
            "{line}"
        );
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["field"], "content");

        let mut touched = base.clone();
        touched.get_mut("srv/hello/index.html").unwrap().meta.mtime = SDE - 1;
        let c = disk_with(dir.path(), "c.raw", &touched);
        let d = first_difference(&a, &c).unwrap().unwrap();
        assert_eq!(
            d.to_string().split("; also").next().unwrap(),
            format!(
                "root-x86-64: /srv/hello/index.html: mtime ({SDE} vs {})",
                SDE - 1
            )
        );
    }

    fn opts() -> Ext4Options {
        Ext4Options {
            uuid: [1; 16],
            hash_seed: [2; 16],
            label: "root".into(),
            timestamp: SDE,
            margin_percent: 10,
            extra_bytes: 0,
        }
    }

    #[test]
    fn ext4_metadata_is_named_when_the_files_agree() {
        let t = fake_root(&[("etc/motd", "hi\n")], SDE);
        let a = ext4::build(&t, &opts()).unwrap().bytes;
        let mut o = opts();
        o.uuid = [3; 16];
        let b = ext4::build(&t, &o).unwrap().bytes;
        assert_eq!(
            ext4_difference("root", &a, &b).to_string(),
            format!(
                "root: superblock s_uuid ({} vs {})",
                hex::encode([1u8; 16]),
                hex::encode([3u8; 16])
            )
        );
        // A changed i_ctime (not part of a tree): the inode and its field,
        // not the checksum that covers it.
        let fs = Fs::open(&a).unwrap();
        let (path, ino) = fs
            .paths()
            .unwrap()
            .into_iter()
            .find(|(p, _)| p == "etc/motd")
            .unwrap();
        let at = fs.inode_range(ino).unwrap().start + 0x0C;
        let mut c = a.clone();
        c[at] ^= 1;
        let d = ext4_difference("root", &a, &c);
        assert_eq!(d.field, format!("inode {ino} i_ctime"));
        assert_eq!(d.file, Some(format!("/{path}")));
    }

    #[test]
    fn verity_superblock_fields() {
        let data = vec![7u8; 8 * 4096];
        let a = crate::fs::verity::build(&data, &[1; 32], [9; 16]).unwrap();
        let b = crate::fs::verity::build(&data, &[2; 32], [9; 16]).unwrap();
        let d = verity_difference("v", &a.hash_image, &b.hash_image);
        assert_eq!(d.field, "superblock salt");
    }

    #[test]
    fn uki_sections_and_pe_headers() {
        let stub = std::fs::read("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
            .expect("install the Debian package `systemd-boot-efi`");
        let uki = |cmdline: &str| {
            crate::fs::uki::build(
                &stub,
                &crate::fs::uki::UkiParts {
                    osrel: b"ID=kiln\n",
                    cmdline,
                    uname: Some("6.1"),
                    linux: b"kernel",
                    initrd: b"initrd",
                },
            )
            .unwrap()
        };
        let (a, b) = (uki("console=ttyS0 a"), uki("console=ttyS0 b"));
        let esp = |u: &[u8]| {
            crate::fs::fat::build_esp(&[(crate::image::disk::UKI_ESP_PATH, u)], 1, "ESP", SDE)
                .unwrap()
        };
        let d = esp_difference("esp", &esp(&a), &esp(&b)).unwrap();
        assert_eq!(
            d.to_string(),
            "esp: /EFI/BOOT/BOOTX64.EFI: section .cmdline (console=ttyS0 a vs console=ttyS0 b)"
        );
        let mut stamped = a.clone();
        let coff = u32::from_le_bytes(a[0x3C..0x40].try_into().unwrap()) as usize + 4;
        stamped[coff + 4] = 0x5A;
        let d = pe_difference("esp", &a, &stamped);
        assert_eq!(d.to_string(), "esp: PE header TimeDateStamp (0 vs 90)");
        let d = esp_difference(
            "esp",
            &esp(&a),
            &crate::fs::fat::build_esp(&[(crate::image::disk::UKI_ESP_PATH, &a)], 2, "ESP", SDE)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(d.to_string(), "esp: boot sector BS_VolID (1 vs 2)");
    }

    #[test]
    fn tar_images_by_tree_then_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Tree::new(SDE);
        t.insert("etc", crate::testutil::dir()).unwrap();
        t.insert("etc/motd", crate::testutil::file("hi\n")).unwrap();
        let (pa, pb) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
        std::fs::write(&pa, crate::fs::layer::write_tar(&t).unwrap()).unwrap();
        t.get_mut("etc/motd").unwrap().meta.mode = 0o600;
        std::fs::write(&pb, crate::fs::layer::write_tar(&t).unwrap()).unwrap();
        let d = first_difference(&pa, &pb).unwrap().unwrap();
        assert_eq!(d.to_string(), "tar: /etc/motd: mode (0644 vs 0600)");
    }

    #[test]
    fn json_sidecars_by_path() {
        let a = serde_json::json!({"name": "hello", "layers": [{"digest": "sha256:1"}, {"digest": "sha256:2"}]});
        let b = serde_json::json!({"name": "hello", "layers": [{"digest": "sha256:1"}, {"digest": "sha256:3"}]});
        let d = first_json_difference("hello-1.0.manifest.json", &a, &b).unwrap();
        assert_eq!(
            d.to_string(),
            r#"hello-1.0.manifest.json: layers[1].digest ("sha256:2" vs "sha256:3")"#
        );
        assert_eq!(first_json_difference("x", &a, &a), None);
        let c = serde_json::json!({"name": "hello", "layers": [{"digest": "sha256:1"}]});
        assert_eq!(
            first_json_difference("m", &a, &c).unwrap().field,
            "layers[1]"
        );
        let dir = tempfile::tempdir().unwrap();
        let (pa, pb) = (dir.path().join("m.json"), dir.path().join("n.json"));
        std::fs::write(&pa, a.to_string()).unwrap();
        std::fs::write(&pb, serde_json::to_string_pretty(&a).unwrap()).unwrap();
        assert_eq!(
            first_sidecar_difference(&pa, &pb).unwrap().unwrap().field,
            "byte 1"
        );
        std::fs::write(&pb, a.to_string()).unwrap();
        assert_eq!(first_sidecar_difference(&pa, &pb).unwrap(), None);
    }
}
