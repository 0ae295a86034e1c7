//! The fuzz targets: every reader of bytes kiln does not trust, called the
//! way `kiln inspect`, `kiln diff` and `kiln pull` call it, with the fields
//! worth aiming at in each seed and the checksums to redo after damage.

use std::io::Cursor;
use std::path::PathBuf;

use kiln::fs::ext4::{self, format as e4};
use kiln::fs::{fat, kmod, layer, uki};
use kiln::model::{deb, manifest::Manifest};
use kiln::publish::oci;
use kiln::read::{disk, firstdiff};
use kiln_format::field::Span;
use kiln_format::gpt::{self, header, Header};

use super::engine::Target;
use super::seeds;

/// Every target, in the order the tests list them.
pub const ALL: &[Target] = &[
    DISK, FIRSTDIFF, EXT4, FAT, UKI, VERITY, TAR, LAYER, MANIFEST, OCI, DPKG, KMOD, MODINFO,
];

/// A GPT disk image read as `kiln inspect` reads it, and its root
/// partition as `kiln diff` does.
pub const DISK: Target = Target {
    name: "disk",
    seeds: || {
        vec![
            seeds::full_disk(),
            seeds::tiny_disk(128),
            seeds::tiny_disk(256),
        ]
    },
    aims: disk_aims,
    fixup: Some(fix_gpt),
    run: run_disk,
};

fn run_disk(b: &[u8]) {
    let Ok(d) = disk::read_gpt_disk(Cursor::new(b), b.len() as u64) else {
        return;
    };
    let _ = disk::report(&d);
    for (p, data) in &d.partitions {
        if p.type_guid == kiln::fs::gpt::ROOT_X86_64_TYPE {
            let _ = ext4::read(data);
        }
    }
}

/// Two disk images compared by `first_difference`: the seed and a damaged
/// copy, both read from files as the command does.
pub const FIRSTDIFF: Target = Target {
    name: "firstdiff",
    seeds: || vec![seeds::full_disk()],
    aims: disk_aims,
    fixup: Some(fix_gpt),
    run: run_firstdiff,
};

fn run_firstdiff(b: &[u8]) {
    thread_local! {
        static FILES: (tempfile::TempDir, PathBuf) = {
            let dir = tempfile::tempdir().expect("temporary directory");
            let a = dir.path().join("a.raw");
            std::fs::write(&a, seeds::full_disk()).expect("write seed");
            (dir, a)
        };
    }
    FILES.with(|(dir, a)| {
        let b_path = dir.path().join("b.raw");
        std::fs::write(&b_path, b).expect("write case");
        let _ = firstdiff::first_difference(a, &b_path);
    });
}

/// An ext4 root filesystem read into a tree.
pub const EXT4: Target = Target {
    name: "ext4",
    seeds: || vec![seeds::ext4_image(), seeds::ext4_without_checksums()],
    aims: ext4_aims,
    fixup: Some(fix_ext4_superblock),
    run: |b| {
        let _ = ext4::read(b);
        if let Ok(fs) = ext4::read::Fs::open(b) {
            let _ = fs.paths();
            let _ = fs.inode_at(b.len() / 2);
        }
    },
};

/// An ESP's FAT volume read file by file.
pub const FAT: Target = Target {
    name: "fat",
    seeds: || {
        vec![
            seeds::fat(256 << 10, fatfs::FatType::Fat12, 1024),
            seeds::fat(2200 << 10, fatfs::FatType::Fat16, 512),
        ]
    },
    aims: fat_aims,
    fixup: None,
    run: |b| {
        let _ = fat::read::files(b);
    },
};

/// A UKI's PE headers and text sections.
pub const UKI: Target = Target {
    name: "uki",
    seeds: || vec![seeds::uki(), seeds::pe_stub()],
    aims: pe_aims,
    fixup: None,
    run: |b| {
        let _ = disk::uki_facts(b);
        if let Ok(sections) = uki::sections(b) {
            for s in &sections {
                let _ = uki::section_bytes(b, s);
            }
        }
        let _ = uki::read_section(b, ".cmdline");
    },
};

/// The dm-verity superblock, as kiln-init reads it at boot.
pub const VERITY: Target = Target {
    name: "verity",
    seeds: || vec![seeds::verity_superblock()],
    aims: |_| {
        kiln_format::verity::FIELDS
            .iter()
            .map(|f| (f.offset, f.len))
            .collect()
    },
    fixup: None,
    run: |b| {
        if let Ok(sb) = kiln_format::verity::Superblock::decode(b) {
            let _ = (sb.data_sectors(), sb.hash_start_block(), sb.encode());
        }
    },
};

/// A layer or image tar read into a tree.
pub const TAR: Target = Target {
    name: "tar",
    seeds: || vec![seeds::tar()],
    aims: tar_aims,
    fixup: Some(fix_tar),
    run: |b| {
        let _ = layer::read_tar(b, i64::MAX);
    },
};

/// A layer blob: zstd, then tar.
pub const LAYER: Target = Target {
    name: "layer",
    seeds: || vec![seeds::layer_blob()],
    aims: |_| (0..18).map(|i| (i, 1)).collect(),
    fixup: None,
    run: |b| {
        let _ = layer::unpack(b);
    },
};

/// An image manifest (sidecar or store), parsed and checked.
pub const MANIFEST: Target = Target {
    name: "manifest",
    seeds: Vec::new,
    aims: text_aims,
    fixup: None,
    run: |b| {
        let _ = Manifest::from_json(b);
        if let Ok(m) = serde_json::from_slice::<Manifest>(b) {
            let _ = m.check();
        }
    },
};

/// A registry's answers: OCI JSON (kiln's and the layer cache's key
/// entries), `WWW-Authenticate`, references.
pub const OCI: Target = Target {
    name: "oci",
    seeds: seeds::oci_json,
    aims: text_aims,
    fixup: None,
    run: |b| {
        let _ = oci::parse_registry_json(b);
        let _ = kiln::registry::cache::parse_untrusted(b);
        let s = String::from_utf8_lossy(b);
        let _ = oci::parse_challenge(&s);
        let _ = oci::Reference::parse(&s);
    },
};

/// dpkg's status file in an image's root, as `kiln diff` lists packages.
pub const DPKG: Target = Target {
    name: "dpkg_status",
    seeds: || vec![seeds::dpkg_status().into_bytes()],
    aims: text_aims,
    fixup: None,
    run: |b| {
        let _ = deb::parse_dpkg_status(&String::from_utf8_lossy(b));
    },
};

/// A kernel module as the module index reads it from a layer: plain, or
/// compressed (`.ko.xz`, `.ko.zst`; decompression is bounded).
pub const KMOD: Target = Target {
    name: "kmod",
    seeds: seeds::kernel_modules,
    aims: |b| vec![(0, b.len())],
    fixup: None,
    run: |b| {
        for name in ["m.ko", "m.ko.xz", "m.ko.zst", "m.ko.gz"] {
            let _ = kmod::modinfo(name, b);
        }
    },
};

/// A kernel module's ELF object, read for its `.modinfo` section as the
/// module index reads it from a layer. Besides [`kmod::fake_ko`], the
/// corpus holds `seed-gcc-module.ko`: a real relocatable object of 14
/// sections (`.text`, `.rela.text`, `.gnu.linkonce.this_module`,
/// `__versions`, `.modinfo`, `.symtab`, …) that `gcc -O2 -c
/// -fno-asynchronous-unwind-tables` made of C shaped like a module (its
/// `.modinfo` strings are `name=kiln_seed`, `depends=dm-mod,dm-bufio`,
/// `vermagic=`, `license=`…).
pub const MODINFO: Target = Target {
    name: "modinfo",
    seeds: || {
        vec![kmod::fake_ko(
            "license=GPL\0depends=dm-mod,dm-bufio\0name=dm_verity\0",
        )]
    },
    aims: elf_aims,
    fixup: None,
    run: |b| {
        let _ = kmod::elf_section(b, "__versions");
        let _ = kmod::modinfo("m.ko", b);
    },
};

/// The ELF header's class, data and section header fields, every section
/// header's name, offset and size, and the separators of `.modinfo`.
fn elf_aims(b: &[u8]) -> Vec<(usize, usize)> {
    let mut out = vec![(4, 1), (5, 1), (0x28, 8), (0x3a, 2), (0x3c, 2), (0x3e, 2)];
    let le = |at: usize, n: usize| -> usize {
        let mut v = [0u8; 8];
        if let Some(s) = b.get(at..at + n) {
            v[..n].copy_from_slice(s);
        }
        u64::from_le_bytes(v) as usize
    };
    let (shoff, shentsize, shnum) = (le(0x28, 8), le(0x3a, 2), le(0x3c, 2));
    for i in 0..shnum.min(64) {
        let h = shoff.saturating_add(i.saturating_mul(shentsize));
        out.extend([
            (h, 4),
            (h.saturating_add(0x18), 8),
            (h.saturating_add(0x20), 8),
        ]);
    }
    if let Ok(Some(sec)) = kmod::elf_section(b, ".modinfo") {
        let at = sec.as_ptr() as usize - b.as_ptr() as usize;
        out.extend(
            sec.iter()
                .enumerate()
                .filter(|(_, c)| b"\0=,".contains(c))
                .map(|(i, _)| (at + i, 1)),
        );
    }
    out
}

/// Whether a seed is a valid input of the target `name`: what the target
/// runs, with the result checked. Every seed a target makes, and every
/// corpus file named `seed-*`, must pass; the other corpus files are past
/// failures and need not.
pub fn parses(name: &str, b: &[u8]) -> Result<(), String> {
    let e = |e: &dyn std::fmt::Display| format!("{e:#}");
    match name {
        "disk" | "firstdiff" => {
            let d = disk::read_gpt_disk(Cursor::new(b), b.len() as u64).map_err(|x| e(&x))?;
            disk::report(&d).map_err(|x| e(&x))?;
        }
        "ext4" => {
            ext4::read(b).map_err(|x| e(&x))?;
        }
        "fat" => {
            if fat::read::files(b).map_err(|x| e(&x))?.is_empty() {
                return Err("no files".into());
            }
        }
        "uki" => {
            uki::sections(b).map_err(|x| e(&x))?;
        }
        "verity" => {
            kiln_format::verity::Superblock::decode(b).map_err(|x| e(&x))?;
        }
        "tar" => {
            layer::read_tar(b, i64::MAX).map_err(|x| e(&x))?;
        }
        "layer" => {
            layer::unpack(b).map_err(|x| e(&x))?;
        }
        "manifest" => {
            Manifest::from_json(b).map_err(|x| e(&x))?;
        }
        "oci" => {
            let s = String::from_utf8_lossy(b);
            let (manifest, index) = oci::parse_registry_json(b);
            let ok = manifest.is_ok()
                || index.is_ok()
                || kiln::registry::cache::parse_untrusted(b).is_ok()
                || oci::parse_challenge(&s).is_some()
                || oci::Reference::parse(&s).is_ok();
            if !ok {
                return Err("no registry reader accepts it".into());
            }
        }
        "dpkg_status" => {
            if deb::parse_dpkg_status(&String::from_utf8_lossy(b)).is_empty() {
                return Err("no packages".into());
            }
        }
        "kmod" => {
            let names = ["m.ko", "m.ko.xz", "m.ko.zst"];
            if !names.iter().any(|n| kmod::modinfo(n, b).is_ok()) {
                return Err("no module reader accepts it".into());
            }
        }
        "modinfo" => {
            let m = kmod::modinfo("m.ko", b).map_err(|x| e(&x))?;
            if kmod::elf_section(b, ".modinfo") == Ok(None) || m.depends.is_empty() {
                return Err(format!("no .modinfo with depends=: {m:?}"));
            }
        }
        other => return Err(format!("no check for target {other}")),
    }
    Ok(())
}

fn fields_at(base: usize, fields: &[Span]) -> impl Iterator<Item = (usize, usize)> + '_ {
    fields.iter().map(move |f| (base + f.offset, f.len))
}

/// The GPT header fields of both copies, the first entries, and the
/// superblock and BPB of the partitions behind them.
fn disk_aims(b: &[u8]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = fields_at(512, header::FIELDS).collect();
    out.extend(fields_at(b.len().saturating_sub(512), header::FIELDS));
    let entry_size = Header::decode(&b[512..1024]).map_or(128, |h| h.entry_size as usize);
    for k in 0..4 {
        out.extend(fields_at(1024 + k * entry_size, gpt::entry::FIELDS));
    }
    if let Ok(d) = disk::read_gpt_disk(Cursor::new(b), b.len() as u64) {
        for (p, _) in &d.partitions {
            let at = p.offset as usize;
            out.extend(fields_at(at + ext4::SUPERBLOCK_OFFSET, e4::SUPERBLOCK));
            out.extend((at..at + 64).map(|i| (i, 1)));
        }
    }
    out
}

/// Superblock, first group descriptors, the first inodes and their extent
/// headers.
fn ext4_aims(b: &[u8]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = fields_at(ext4::SUPERBLOCK_OFFSET, e4::SUPERBLOCK).collect();
    let Ok(fs) = ext4::read::Fs::open(b) else {
        return out;
    };
    for g in 0..fs.groups().min(2) {
        out.extend(fields_at(fs.gdt_offset + g * fs.desc_size, e4::GROUP_DESC));
    }
    for ino in [2, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20] {
        if let Ok(r) = fs.inode_range(ino) {
            out.extend(fields_at(r.start, e4::INODE));
            let root = r.start + e4::I_BLOCK.offset;
            out.extend(fields_at(
                root,
                &[
                    e4::EH_MAGIC.span(),
                    e4::EH_ENTRIES.span(),
                    e4::EH_MAX.span(),
                    e4::EH_DEPTH.span(),
                ],
            ));
            out.extend(fields_at(
                root + e4::EXTENT_ENTRY_SIZE,
                &[
                    e4::EE_BLOCK.span(),
                    e4::EE_LEN.span(),
                    e4::EE_START_HI.span(),
                    e4::EE_START_LO.span(),
                ],
            ));
        }
    }
    out
}

/// The BPB and the root directory's first entries.
fn fat_aims(b: &[u8]) -> Vec<(usize, usize)> {
    let mut out = vec![
        (11, 2),
        (13, 1),
        (14, 2),
        (16, 1),
        (17, 2),
        (19, 2),
        (22, 2),
        (32, 4),
        (36, 4),
        (44, 4),
        (510, 2),
    ];
    let le16 = |at: usize| usize::from(u16::from_le_bytes([b[at], b[at + 1]]));
    if b.len() >= 512 {
        let root = (le16(14) + usize::from(b[16]) * le16(22)) * le16(11);
        for k in 0..8 {
            let e = root + 32 * k;
            out.extend([
                (e, 1),
                (e + 11, 1),
                (e + 12, 1),
                (e + 20, 2),
                (e + 26, 2),
                (e + 28, 4),
            ]);
        }
    }
    out
}

/// MZ and PE headers and the section table.
fn pe_aims(b: &[u8]) -> Vec<(usize, usize)> {
    let mut out = vec![(0x3c, 4)];
    let Some(sig) = b
        .get(0x3c..0x40)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
    else {
        return out;
    };
    let coff = sig + 4;
    out.extend([(sig, 4), (coff + 2, 2), (coff + 16, 2), (coff + 20, 2)]);
    out.extend([
        (coff + 20 + 108, 4),
        (coff + 20 + 32, 4),
        (coff + 20 + 36, 4),
        (coff + 20 + 60, 4),
    ]);
    let opt_size = b
        .get(coff + 16..coff + 18)
        .map_or(0, |s| usize::from(u16::from_le_bytes([s[0], s[1]])));
    let table = coff + 20 + opt_size;
    for k in 0..8 {
        let s = table + 40 * k;
        out.extend([
            (s, 8),
            (s + 8, 4),
            (s + 12, 4),
            (s + 16, 4),
            (s + 20, 4),
            (s + 36, 4),
        ]);
    }
    out
}

/// Positions of the header blocks of a tar, following each entry's size.
fn tar_headers(b: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 512 <= b.len() && &b[at + 257..at + 262] == b"ustar" {
        out.push(at);
        let size = std::str::from_utf8(&b[at + 124..at + 135])
            .ok()
            .and_then(|s| u64::from_str_radix(s.trim_matches(|c| c == ' ' || c == '\0'), 8).ok());
        let Some(size) = size else { break };
        at += 512 + (size as usize).div_ceil(512) * 512;
    }
    out
}

/// The fields of every tar header.
fn tar_aims(b: &[u8]) -> Vec<(usize, usize)> {
    let fields = [
        (0, 100),
        (100, 8),
        (108, 8),
        (116, 8),
        (124, 12),
        (136, 12),
        (148, 8),
        (156, 1),
        (157, 100),
        (257, 6),
        (329, 8),
        (337, 8),
        (345, 155),
    ];
    tar_headers(b)
        .into_iter()
        .flat_map(|h| fields.iter().map(move |&(o, l)| (h + o, l)))
        .collect()
}

/// Digits, quotes, colons and brackets of a text.
fn text_aims(b: &[u8]) -> Vec<(usize, usize)> {
    b.iter()
        .enumerate()
        .filter(|(_, c)| c.is_ascii_digit() || b"\":[]{},=".contains(c))
        .map(|(i, _)| (i, 1))
        .collect()
}

/// Redoes the CRC32s of both GPTs, wherever their (damaged) headers say
/// the arrays are.
pub fn fix_gpt(b: &mut [u8]) {
    let len = b.len();
    for at in [512, len.saturating_sub(512)] {
        if at < 512 || at + 512 > len {
            continue;
        }
        let get = |b: &[u8], f: Span| {
            let mut v = [0u8; 8];
            v[..f.len].copy_from_slice(&b[at + f.offset..at + f.offset + f.len]);
            u64::from_le_bytes(v)
        };
        let lba = get(b, header::PARTITION_ENTRY_LBA.span()) as usize;
        let n = get(b, header::NUMBER_OF_PARTITION_ENTRIES.span()) as usize;
        let size = get(b, header::SIZE_OF_PARTITION_ENTRY.span()) as usize;
        let array = lba
            .checked_mul(512)
            .and_then(|s| Some(s..s.checked_add(n.checked_mul(size)?)?))
            .and_then(|r| b.get(r));
        if let Some(array) = array {
            let crc = gpt::crc32(array);
            header::PARTITION_ENTRY_ARRAY_CRC32.put(&mut b[at..], crc);
        }
        let hsize = (get(b, header::HEADER_SIZE.span()) as usize).clamp(gpt::HEADER_SIZE, 512);
        header::HEADER_CRC32.put(&mut b[at..], 0u32);
        let crc = gpt::crc32(&b[at..at + hsize]);
        header::HEADER_CRC32.put(&mut b[at..], crc);
    }
}

/// Redoes the ext4 superblock's crc32c.
fn fix_ext4_superblock(b: &mut [u8]) {
    let sb = ext4::SUPERBLOCK_OFFSET;
    if b.len() < sb + e4::SUPERBLOCK_SIZE {
        return;
    }
    // The kernel's crc32c_le(~0, …) without the final inversion.
    let crc = !crc32c::crc32c_append(0, &b[sb..sb + e4::S_CHECKSUM.offset]);
    e4::S_CHECKSUM.put(&mut b[sb..], crc);
}

/// Redoes the header checksum of every tar header block.
fn fix_tar(b: &mut [u8]) {
    for h in tar_headers(b) {
        b[h + 148..h + 156].fill(b' ');
        let sum: u32 = b[h..h + 512].iter().map(|&c| u32::from(c)).sum();
        let field = format!("{sum:06o}\0 ");
        b[h + 148..h + 156].copy_from_slice(field.as_bytes());
    }
}
