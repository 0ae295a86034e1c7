//! Small valid inputs for the fuzz targets, made with kiln's own encoders
//! (ext4, layer tar and blob, UKI, verity superblock) or, where kiln writes
//! at sizes too large to mutate quickly (its disks align partitions to
//! 1 MiB, its ESPs are at least 8 MiB), assembled here from the same format
//! tables: a GPT disk laid out in 512-byte sectors, FAT12/16 volumes
//! formatted by `fatfs`.

use std::io::{Cursor, Write};
use std::sync::Arc;

use kiln::fs::ext4::{self, Ext4Options};
use kiln::fs::tree::{Meta, Node, NodeKind, Tree};
use kiln::fs::{layer, uki, verity};
use kiln_format::gpt::{self, Entry, Header, ENTRY_SIZE};

/// Every time in the seeds.
pub const T0: i64 = 1_700_000_000;
/// GPT sector size.
pub const SECTOR: usize = 512;
/// The GPT entries every seed disk has room for.
const ENTRIES: u32 = 128;

fn meta(mode: u32) -> Meta {
    Meta::root(mode, T0)
}

fn put(t: &mut Tree, path: &str, kind: NodeKind, m: Meta) {
    t.insert_with_parents(path, Node { kind, meta: m }, &meta(0o755))
        .unwrap_or_else(|e| panic!("{path}: {e}"));
}

fn file(data: &[u8]) -> NodeKind {
    NodeKind::File(Arc::new(data.to_vec()))
}

/// A POSIX ACL in the `posix_acl_xattr` form user space sees: owner rw,
/// user 1000 r, group r, mask r, other r.
fn acl() -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (0x01u16, 6u16, u32::MAX),
        (0x02, 4, 1000),
        (0x04, 4, u32::MAX),
        (0x10, 4, u32::MAX),
        (0x20, 4, u32::MAX),
    ] {
        v.extend(tag.to_le_bytes());
        v.extend(perm.to_le_bytes());
        v.extend(id.to_le_bytes());
    }
    v
}

/// A small tree with one of every kind of node, xattrs and an ACL, a
/// file of several blocks and one with a hole.
pub fn tree() -> Tree {
    let mut t = Tree::new(T0);
    put(&mut t, "etc/hostname", file(b"kiln\n"), meta(0o644));
    let mut m = meta(0o755);
    m.xattrs.insert("user.kiln".into(), b"fuzz".to_vec());
    m.xattrs.insert("system.posix_acl_access".into(), acl());
    let tool: Vec<u8> = (0..9000u32).map(|i| (i * 7 + i / 300) as u8).collect();
    put(&mut t, "usr/bin/tool", file(&tool), m);
    let mut sparse = vec![0u8; 3 * 4096 + 10];
    sparse[2 * 4096] = 1;
    put(&mut t, "var/sparse", file(&sparse), meta(0o600));
    put(
        &mut t,
        "usr/bin/fast",
        NodeKind::Symlink("tool".into()),
        meta(0o777),
    );
    put(
        &mut t,
        "usr/bin/slow",
        NodeKind::Symlink("../".repeat(30) + "usr/bin/tool"),
        meta(0o777),
    );
    put(
        &mut t,
        "usr/bin/again",
        NodeKind::Hardlink("usr/bin/tool".into()),
        meta(0o755),
    );
    put(
        &mut t,
        "dev/null",
        NodeKind::CharDev { major: 1, minor: 3 },
        meta(0o666),
    );
    put(&mut t, "run/fifo", NodeKind::Fifo, meta(0o600));
    put(
        &mut t,
        "var/lib/dpkg/status",
        file(dpkg_status().as_bytes()),
        meta(0o644),
    );
    t
}

/// A dpkg status file of two packages.
pub fn dpkg_status() -> String {
    "Package: busybox\nStatus: install ok installed\nVersion: 1:1.35.0-4\n\
     Architecture: amd64\n\nPackage: gone\nStatus: deinstall ok config-files\n\
     Version: 1.0\nArchitecture: all\n"
        .into()
}

/// The tree as ext4, with `metadata_csum` as kiln writes it.
pub fn ext4_image() -> Vec<u8> {
    let opts = Ext4Options {
        uuid: *b"kiln-fuzz-uuid-0",
        hash_seed: *b"kiln-fuzz-hash-0",
        label: "root".into(),
        timestamp: T0,
        margin_percent: 0,
        extra_bytes: 0,
    };
    ext4::build(&tree(), &opts).expect("ext4 seed").bytes
}

/// The same image without `metadata_csum`, so that damage reaches the code
/// behind the checksums.
pub fn ext4_without_checksums() -> Vec<u8> {
    let mut img = ext4_image();
    let f = ext4::format::S_FEATURE_RO_COMPAT;
    let at = ext4::SUPERBLOCK_OFFSET + f.offset;
    let v = u32::from_le_bytes(img[at..at + 4].try_into().expect("4 bytes"));
    img[at..at + 4].copy_from_slice(&(v & !0x400).to_le_bytes());
    img
}

/// Just an ext4 superblock (1 KiB blocks, no features) in a 2 KiB image,
/// with `blocks` blocks from `first_data_block` on.
pub fn ext4_superblock_only(blocks: u32, first_data_block: u32) -> Vec<u8> {
    use ext4::format::*;
    let mut b = vec![0u8; 2048];
    let sb = &mut b[ext4::SUPERBLOCK_OFFSET..];
    S_MAGIC.put(sb, 0xEF53u16);
    S_REV_LEVEL.put(sb, 1u32);
    S_INODE_SIZE.put(sb, 256u16);
    S_BLOCKS_COUNT_LO.put(sb, blocks);
    S_FIRST_DATA_BLOCK.put(sb, first_data_block);
    S_BLOCKS_PER_GROUP.put(sb, 8192u32);
    S_INODES_PER_GROUP.put(sb, 16u32);
    S_INODES_COUNT.put(sb, 16u32);
    b
}

/// A minimal PE32+ image with one section and room in its headers for
/// more: the smallest input `uki::build` accepts as a stub.
pub fn pe_stub() -> Vec<u8> {
    let mut b = vec![0u8; 0x600];
    b[..2].copy_from_slice(b"MZ");
    b[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
    b[0x40..0x44].copy_from_slice(b"PE\0\0");
    let coff = 0x44;
    let opt_size = 112 + 16 * 8;
    b[coff..coff + 2].copy_from_slice(&0x8664u16.to_le_bytes());
    b[coff + 2..coff + 4].copy_from_slice(&1u16.to_le_bytes());
    b[coff + 16..coff + 18].copy_from_slice(&(opt_size as u16).to_le_bytes());
    b[coff + 18..coff + 20].copy_from_slice(&0x22u16.to_le_bytes());
    let opt = coff + 20;
    let le32 = |b: &mut [u8], at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    b[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
    le32(&mut b, opt + 32, 0x1000); // SectionAlignment
    le32(&mut b, opt + 36, 0x200); // FileAlignment
    le32(&mut b, opt + 56, 0x2000); // SizeOfImage
    le32(&mut b, opt + 60, 0x400); // SizeOfHeaders
    le32(&mut b, opt + 108, 16); // NumberOfRvaAndSizes
    let s = opt + opt_size;
    b[s..s + 5].copy_from_slice(b".text");
    le32(&mut b, s + 8, 0x10);
    le32(&mut b, s + 12, 0x1000);
    le32(&mut b, s + 16, 0x200);
    le32(&mut b, s + 20, 0x400);
    le32(&mut b, s + 36, 0x6000_0020);
    b[0x400..0x410].fill(0xc3);
    b
}

/// A UKI built from [`pe_stub`] with small payloads.
pub fn uki() -> Vec<u8> {
    let linux: Vec<u8> = (0..3000u32).map(|i| (i * 13) as u8).collect();
    let cmdline = format!("console=ttyS0 roothash={} ro", "ab".repeat(32));
    uki::build(
        &pe_stub(),
        &uki::UkiParts {
            osrel: b"ID=kiln\nPRETTY_NAME=\"kiln fuzz\"\n",
            cmdline: &cmdline,
            uname: Some("6.1.0-fuzz"),
            linux: &linux,
            initrd: &[7u8; 700],
        },
    )
    .expect("UKI seed")
}

/// A verity superblock with a salt.
pub fn verity_superblock() -> Vec<u8> {
    kiln_format::verity::Superblock {
        hash_type: 1,
        uuid: [0x5a; 16],
        algorithm: "sha256".into(),
        data_block_size: 4096,
        hash_block_size: 4096,
        data_blocks: 40,
        salt: vec![0x11; 32],
    }
    .encode()
    .expect("verity seed")
    .to_vec()
}

/// A FAT volume of `bytes` formatted by `fatfs` as `kind`, holding a UKI
/// where firmware looks for it, a loader entry (a long name), nested
/// directories and an empty file.
pub fn fat(bytes: usize, kind: fatfs::FatType, cluster: u32) -> Vec<u8> {
    let mut disk = Cursor::new(vec![0u8; bytes]);
    fatfs::format_volume(
        &mut disk,
        fatfs::FormatVolumeOptions::new()
            .fat_type(kind)
            .bytes_per_cluster(cluster)
            .volume_label(*b"FUZZ       "),
    )
    .expect("format FAT seed");
    {
        let fs = fatfs::FileSystem::new(&mut disk, fatfs::FsOptions::new()).expect("mount");
        let root = fs.root_dir();
        let files: [(&str, Vec<u8>); 4] = [
            ("EFI/BOOT/BOOTX64.EFI", uki()),
            ("loader/entries/kiln-fuzz.conf", b"title kiln\n".to_vec()),
            ("a/b/c/d/deep", b"deep".to_vec()),
            ("empty", Vec::new()),
        ];
        for (path, data) in files {
            let (dirs, name) = path.rsplit_once('/').unwrap_or(("", path));
            let mut dir = root.clone();
            for d in dirs.split('/').filter(|d| !d.is_empty()) {
                dir = dir.create_dir(d).expect("mkdir");
            }
            let mut f = dir.create_file(name).expect("create");
            f.write_all(&data).expect("write");
        }
    }
    disk.into_inner()
}

/// A GPT disk of the given partitions, laid out in 512-byte sectors (no
/// alignment), with `entry_size`-byte entries, both tables and a protective
/// MBR: the layout of kiln's disks at the smallest size.
pub fn disk(parts: &[(gpt::Guid, &str, &[u8])], entry_size: u32) -> Vec<u8> {
    let array_sectors = (ENTRIES as usize * entry_size as usize).div_ceil(SECTOR);
    let first_usable = 2 + array_sectors;
    let data_sectors: usize = parts.iter().map(|(_, _, d)| d.len().div_ceil(SECTOR)).sum();
    let last_usable = first_usable + data_sectors.max(1) - 1;
    let total = last_usable + 1 + array_sectors + 1;
    let mut b = vec![0u8; total * SECTOR];
    // Protective MBR: one partition of type 0xEE over the disk.
    b[446 + 4] = 0xee;
    b[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
    let mbr_len = u32::try_from(total - 1).unwrap_or(u32::MAX);
    b[446 + 12..446 + 16].copy_from_slice(&mbr_len.to_le_bytes());
    b[510..512].copy_from_slice(&[0x55, 0xaa]);
    let mut array = vec![0u8; ENTRIES as usize * entry_size as usize];
    let mut lba = first_usable;
    for (i, (type_guid, name, data)) in parts.iter().enumerate() {
        let sectors = data.len().div_ceil(SECTOR);
        let mut e = Entry::new(
            *type_guid,
            [i as u8 + 1; 16],
            lba as u64,
            (lba + sectors - 1) as u64,
        );
        for (k, u) in name.encode_utf16().enumerate().take(36) {
            e.name[2 * k..2 * k + 2].copy_from_slice(&u.to_le_bytes());
        }
        let at = i * entry_size as usize;
        array[at..at + ENTRY_SIZE].copy_from_slice(&e.encode());
        b[lba * SECTOR..lba * SECTOR + data.len()].copy_from_slice(data);
        lba += sectors;
    }
    let backup_array = last_usable + 1;
    let mut h = Header {
        my_lba: 1,
        alternate_lba: (total - 1) as u64,
        first_usable_lba: first_usable as u64,
        last_usable_lba: last_usable as u64,
        disk_guid: [0x42; 16],
        entries_lba: 2,
        num_entries: ENTRIES,
        entry_size,
        entries_crc: gpt::crc32(&array),
    };
    b[2 * SECTOR..2 * SECTOR + array.len()].copy_from_slice(&array);
    b[SECTOR..SECTOR + gpt::HEADER_SIZE].copy_from_slice(&h.encode());
    let at = backup_array * SECTOR;
    b[at..at + array.len()].copy_from_slice(&array);
    h.my_lba = (total - 1) as u64;
    h.alternate_lba = 1;
    h.entries_lba = backup_array as u64;
    let at = (total - 1) * SECTOR;
    b[at..at + gpt::HEADER_SIZE].copy_from_slice(&h.encode());
    b
}

/// A tiny disk of one 8 KiB partition of a type kiln does not read.
pub fn tiny_disk(entry_size: u32) -> Vec<u8> {
    let data: Vec<u8> = (0..8192u32).map(|i| i as u8).collect();
    disk(&[([0x33; 16], "data", &data)], entry_size)
}

/// A disk shaped like kiln's: an ESP with a UKI, an ext4 root and its
/// verity hash partition.
pub fn full_disk() -> Vec<u8> {
    let root = ext4_image();
    let hash = verity::build(&root, &[3; 32], [4; 16])
        .expect("verity")
        .hash_image;
    let esp = fat(64 << 10, fatfs::FatType::Fat12, 512);
    disk(
        &[
            (gpt::ESP_TYPE, "esp", &esp),
            (gpt::ROOT_X86_64_TYPE, "root-x86-64", &root),
            (gpt::ROOT_X86_64_VERITY_TYPE, "root-x86-64-verity", &hash),
        ],
        ENTRY_SIZE as u32,
    )
}

/// The tree as a layer tar.
pub fn tar() -> Vec<u8> {
    layer::write_tar(&tree()).expect("tar seed")
}

/// The tree as a layer blob (zstd).
pub fn layer_blob() -> Vec<u8> {
    layer::pack(&tree()).expect("layer seed").blob
}

/// An OCI image manifest and index as a registry would send them.
pub fn oci_json() -> Vec<Vec<u8>> {
    let d = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
        "artifactType":"application/vnd.kiln.image.v1",
        "config":{{"mediaType":"application/vnd.kiln.manifest.v1+json","digest":"{d}","size":2}},
        "layers":[{{"mediaType":"application/vnd.kiln.disk.raw.v1+zstd","digest":"{d}","size":9,
        "annotations":{{"org.opencontainers.image.title":"hello-1.0.raw"}}}}],
        "subject":{{"mediaType":"m","digest":"{d}","size":7}}}}"#
    );
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
        "manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json",
        "digest":"{d}","size":300,"artifactType":"application/vnd.kiln.minisign.v1"}}]}}"#
    );
    let challenge = r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:kiln/hello:pull""#;
    // A layer cache key entry: its manifest, and the entry itself.
    let key = format!("sha256:{}", "0".repeat(64));
    let key_manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
        "artifactType":"application/vnd.kiln.layer-key.v1",
        "config":{{"mediaType":"application/vnd.kiln.layer-key.v1+json","digest":"{d}","size":2,
        "annotations":{{"dev.kiln.cache.signature":"untrusted comment: x"}}}},
        "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"{d}","size":9}}]}}"#
    );
    let key_entry = format!(
        r#"{{"key":"{key}","digest":"{d}","diff_id":"{d}","name":"base/busybox","kind":"base",
        "size":9,"tar_size":10240,"packages":[],"source_date_epoch":1700000000}}"#
    );
    vec![
        key_manifest.into_bytes(),
        key_entry.into_bytes(),
        manifest.into_bytes(),
        index.into_bytes(),
        challenge.as_bytes().to_vec(),
        b"registry.example:5000/kiln/hello:1.0".to_vec(),
    ]
}

/// A module object, and the same compressed with xz and with zstd.
pub fn kernel_modules() -> Vec<Vec<u8>> {
    use std::io::Write;
    let ko = kiln::fs::kmod::fake_ko("license=GPL\0depends=dm-mod,dm-bufio\0name=dm_verity\0");
    let mut xz = xz2::write::XzEncoder::new(Vec::new(), 6);
    xz.write_all(&ko).expect("xz in memory");
    let xz = xz.finish().expect("xz in memory");
    let zst = zstd::encode_all(ko.as_slice(), 3).expect("zstd in memory");
    vec![ko, xz, zst]
}
