//! Round trips through kiln's writers: inputs generated from a seeded
//! [`Rng`], written by kiln (ext4, FAT, GPT, cpio, layer tar and blob,
//! dm-verity), read back by kiln's own reader and compared with what went
//! in; every [`JUDGED`]th case is also handed to a tool nobody here wrote
//! (`e2fsck -fn`, `fsck.vfat -n`, `sfdisk --verify` and `sgdisk -v`,
//! `veritysetup verify`, `cpio -i`, `tar -t`), which must accept it. A
//! missing tool fails the test naming its Debian package: never a skip.
//!
//! Where kiln has no reader (cpio: only the kernel reads an initramfs) the
//! outside tool is the reader, on every case.

use std::collections::BTreeMap;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use kiln::fs::tree::{Meta, Node, NodeKind, Tree};
use kiln::fs::{cpio, ext4, fat, gpt, layer, verity};
use sha2::{Digest, Sha256};

use super::engine::Rng;

/// Every this many cases, an outside tool judges the written bytes too.
pub const JUDGED: u64 = 4;

/// Times in generated trees start here.
const T0: i64 = 1_700_000_000;

/// An outside tool, or a panic naming the Debian package that has it.
pub fn tool(name: &str, package: &str) -> PathBuf {
    kiln::util::exec::find_program(name).unwrap_or_else(|| {
        panic!("`{name}` not found: install the Debian package `{package}` (scripts/setup-host.sh)")
    })
}

/// Runs `cmd` with `input` (if any) on stdin; panics with its output
/// unless it exits 0. Returns stdout.
fn judge(what: &str, cmd: &mut Command, input: Option<&[u8]>) -> String {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{what}: {e}"));
    let writer = input.map(|b| {
        let mut stdin = child.stdin.take().expect("piped stdin");
        let b = b.to_vec();
        std::thread::spawn(move || stdin.write_all(&b))
    });
    let out = child.wait_with_output().expect("tool output");
    if let Some(w) = writer {
        w.join().expect("stdin writer").expect("write stdin");
    }
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} refused kiln's output ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A file name of 1 to `max` characters from a portable set, made unique
/// by `n`.
fn name(rng: &mut Rng, n: usize, max: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.+";
    let len = 1 + rng.below(max);
    let mut s: String = (0..len)
        .map(|_| CHARS[rng.below(CHARS.len())] as char)
        .collect();
    if s.starts_with('.') {
        s.replace_range(0..1, "x");
    }
    // The number after the last `-` keeps every name apart, in any case.
    format!("{s}-{n}")
}

/// File contents: empty, short, several blocks, or sparse (runs of zeros).
fn data(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.below(4) {
        0 => 0,
        1 => rng.below(100),
        _ => rng.below(20_000),
    };
    let mut v: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
    if rng.below(3) == 0 && len > 8192 {
        v[..8192].fill(0);
    }
    v
}

fn meta(rng: &mut Rng, mode: u32, xattrs: bool) -> Meta {
    let id = |rng: &mut Rng| match rng.below(4) {
        0 => 0,
        1 => rng.below(1 << 20) as u32,
        _ => rng.below(70_000) as u32,
    };
    let mut m = Meta {
        mode,
        uid: id(rng),
        gid: id(rng),
        mtime: T0 + rng.below(1 << 31) as i64 - (1 << 30),
        xattrs: BTreeMap::new(),
    };
    if xattrs {
        for k in 0..rng.below(3) {
            let v: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
            m.xattrs.insert(format!("user.k{k}"), v);
        }
    }
    m
}

/// What a generated tree may hold.
#[derive(Clone, Copy)]
pub struct Kinds {
    /// Extended attributes (not in cpio).
    pub xattrs: bool,
    /// Devices and FIFOs.
    pub special: bool,
    /// Permission bits may deny the owner (an extracting tool, not root,
    /// could not write into such a directory).
    pub any_mode: bool,
}

impl Kinds {
    /// Every kind of node, any metadata.
    pub const ALL: Kinds = Kinds {
        xattrs: true,
        special: true,
        any_mode: true,
    };
}

/// A random tree of up to 40 nodes: directories, files, symlinks, hard
/// links, and (with `kinds.special`) devices and FIFOs.
pub fn tree(rng: &mut Rng, kinds: Kinds) -> Tree {
    let mut t = Tree::new(T0);
    let mut dirs = vec![String::new()];
    let mut files: Vec<String> = Vec::new();
    for n in 0..1 + rng.below(40) {
        let parent = dirs[rng.below(dirs.len())].clone();
        let path = if parent.is_empty() {
            name(rng, n, 30)
        } else {
            format!("{parent}/{}", name(rng, n, 30))
        };
        let mode = |rng: &mut Rng, base: u32| {
            if kinds.any_mode {
                rng.below(0o10000) as u32
            } else {
                base | (rng.below(0o10000) as u32 & 0o7077)
            }
        };
        let (kind, m) = match rng.below(if kinds.special { 7 } else { 5 }) {
            0 => {
                dirs.push(path.clone());
                (NodeKind::Dir, mode(rng, 0o700))
            }
            1 | 2 => {
                files.push(path.clone());
                (NodeKind::File(Arc::new(data(rng))), mode(rng, 0o600))
            }
            3 => {
                let target = match rng.below(2) {
                    0 => name(rng, n, 200),
                    _ => "../".repeat(rng.below(4)) + &name(rng, n, 20),
                };
                (NodeKind::Symlink(target), 0o777)
            }
            4 if !files.is_empty() => {
                let target = files[rng.below(files.len())].clone();
                (NodeKind::Hardlink(target), 0o644)
            }
            4 => (NodeKind::File(Arc::new(Vec::new())), 0o644),
            5 => (NodeKind::Fifo, mode(rng, 0o600)),
            _ => (
                NodeKind::CharDev {
                    major: rng.below(256) as u32,
                    minor: rng.below(256) as u32,
                },
                mode(rng, 0o600),
            ),
        };
        let xattrs = kinds.xattrs && !matches!(kind, NodeKind::Symlink(_));
        let node = Node {
            kind,
            meta: meta(rng, m, xattrs),
        };
        t.insert_with_parents(&path, node, &Meta::root(0o755, T0))
            .unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    t
}

/// Each path's node as a line to compare: a hard link shows its target's
/// contents and metadata (they share an inode, and which name holds the
/// data is the writer's choice), file data by digest.
pub fn view(t: &Tree) -> BTreeMap<String, String> {
    t.iter()
        .map(|(path, node)| {
            let node = match &node.kind {
                NodeKind::Hardlink(target) => t
                    .get(target)
                    .unwrap_or_else(|| panic!("{path}: link to missing {target}")),
                _ => node,
            };
            let kind = match &node.kind {
                NodeKind::File(d) => {
                    format!("file {} {}", d.len(), hex::encode(Sha256::digest(&d[..])))
                }
                k => format!("{k:?}"),
            };
            let m = &node.meta;
            let line = format!(
                "{kind} mode {:o} uid {} gid {} mtime {} xattrs {:?}",
                m.mode, m.uid, m.gid, m.mtime, m.xattrs
            );
            (path.to_string(), line)
        })
        .collect()
}

/// Fails naming the first path whose line differs.
pub fn assert_same(
    what: &str,
    case: u64,
    got: &BTreeMap<String, String>,
    want: &BTreeMap<String, String>,
) {
    for (path, w) in want {
        let g = got.get(path).map_or("(missing)", String::as_str);
        assert_eq!(g, w, "{what} case {case}: /{path} read back differs");
    }
    for path in got.keys() {
        assert!(
            want.contains_key(path),
            "{what} case {case}: /{path} was not written"
        );
    }
}

/// ext4: the image read back is the tree as built; `e2fsck -fn` judges.
pub fn ext4_case(rng: &mut Rng, case: u64) {
    let t = tree(rng, Kinds::ALL);
    let mut uuid = [0u8; 16];
    uuid.iter_mut().for_each(|b| *b = rng.next() as u8);
    let opts = ext4::Ext4Options {
        uuid,
        hash_seed: [rng.next() as u8; 16],
        label: "root".into(),
        timestamp: T0,
        margin_percent: rng.below(20) as u32,
        extra_bytes: rng.below(1 << 20) as u64,
    };
    let img = ext4::build(&t, &opts).unwrap_or_else(|e| panic!("ext4 case {case}: {e}"));
    let back = ext4::read(&img.bytes).unwrap_or_else(|e| panic!("ext4 case {case}: read: {e}"));
    assert_same("ext4", case, &view(&back), &view(&ext4::as_built(&t, T0)));
    if case.is_multiple_of(JUDGED) {
        judge_image("ext4", case, ("e2fsck", "e2fsprogs", "-fn"), &img.bytes);
    }
}

/// Layer tar and blob: both read back as the tree; `tar -t` lists every path.
pub fn tar_case(rng: &mut Rng, case: u64) {
    let t = tree(rng, Kinds::ALL);
    let want = view(&t);
    let tar = layer::write_tar(&t).unwrap_or_else(|e| panic!("tar case {case}: {e:#}"));
    let back = layer::read_tar(&tar[..], i64::MAX)
        .unwrap_or_else(|e| panic!("tar case {case}: read: {e:#}"));
    assert_same("tar", case, &view(&back), &want);
    let packed = layer::pack(&t).unwrap_or_else(|e| panic!("layer case {case}: {e:#}"));
    let back =
        layer::unpack(&packed.blob).unwrap_or_else(|e| panic!("layer case {case}: unpack: {e:#}"));
    assert_same("layer", case, &view(&back), &want);
    if case.is_multiple_of(JUDGED) {
        let listed = judge(
            &format!("tar -t (tar case {case})"),
            Command::new(tool("tar", "tar")).args(["-tf", "-"]),
            Some(&tar),
        );
        let listed: std::collections::BTreeSet<&str> = listed
            .lines()
            .map(|l| l.trim_start_matches("./").trim_end_matches('/'))
            .filter(|l| !l.is_empty() && *l != ".")
            .collect();
        let paths: std::collections::BTreeSet<&str> =
            t.iter().map(|(p, _)| p).filter(|p| !p.is_empty()).collect();
        assert_eq!(listed, paths, "tar case {case}: `tar -t` lists other paths");
    }
}

/// FAT: the ESP's files read back as written; `fsck.vfat -n` judges.
pub fn fat_case(rng: &mut Rng, case: u64) {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    // Directory names and file names never meet (`d…`, `f…`), and the
    // number in every name keeps them apart without regard to case.
    for n in 0..1 + rng.below(12) {
        let mut path = String::new();
        for _ in 0..rng.below(4) {
            path += &format!("d{}/", rng.below(3));
        }
        path += &format!("f{}", name(rng, n, 40));
        files.insert(path, data(rng));
    }
    let list: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, d)| (p.as_str(), d.as_slice()))
        .collect();
    let img = fat::build_esp(&list, rng.next() as u32, "ESP", T0)
        .unwrap_or_else(|e| panic!("fat case {case}: {e}"));
    let back = fat::read::files(&img).unwrap_or_else(|e| panic!("fat case {case}: read: {e}"));
    assert_eq!(
        back.keys().collect::<Vec<_>>(),
        files.keys().collect::<Vec<_>>(),
        "fat case {case}: names"
    );
    for (p, d) in &files {
        assert!(back[p] == *d, "fat case {case}: {p} read back differs");
    }
    if case.is_multiple_of(JUDGED) {
        judge_image("fat", case, ("fsck.vfat", "dosfstools", "-n"), &img);
    }
}

/// GPT: the partitions read back where the layout says, with their
/// GUIDs, names and contents; `sfdisk --verify` and `sgdisk -v` judge.
pub fn gpt_case(rng: &mut Rng, case: u64) {
    let types = [
        gpt::ESP_TYPE,
        gpt::ROOT_X86_64_TYPE,
        gpt::ROOT_X86_64_VERITY_TYPE,
    ];
    let n = 1 + rng.below(4);
    let guid = |rng: &mut Rng| uuid::Uuid::from_u64_pair(rng.next(), rng.next());
    let contents: Vec<Vec<u8>> = (0..n)
        .map(|_| {
            (0..1 + rng.below(300_000))
                .map(|_| rng.next() as u8)
                .collect()
        })
        .collect();
    let pieces: Vec<[&[u8]; 1]> = contents.iter().map(|c| [c.as_slice()]).collect();
    let names: Vec<String> = (0..n).map(|k| name(rng, k, 30)).collect();
    let specs: Vec<gpt::PartitionSpec> = (0..n)
        .map(|k| gpt::PartitionSpec {
            type_guid: types[rng.below(types.len())],
            part_guid: guid(rng),
            name: &names[k],
            data: &pieces[k],
            attributes: if rng.below(2) == 0 {
                gpt::ATTR_READ_ONLY
            } else {
                0
            },
        })
        .collect();
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("disk.raw");
    let mut out = std::fs::File::create(&path).expect("disk file");
    let layout = gpt::write_disk(&mut out, guid(rng), &specs)
        .unwrap_or_else(|e| panic!("gpt case {case}: {e}"));
    let len = out.seek(std::io::SeekFrom::End(0)).expect("disk length");
    let disk = kiln::read::disk::read_gpt_disk(std::fs::File::open(&path).expect("disk"), len)
        .unwrap_or_else(|e| panic!("gpt case {case}: read: {e:#}"));
    assert_eq!(disk.partitions.len(), n, "gpt case {case}: partitions");
    for (k, ((info, bytes), want)) in disk.partitions.iter().zip(&layout.partitions).enumerate() {
        let same = |a: &dyn std::fmt::Display, b: &dyn std::fmt::Display| {
            a.to_string().to_lowercase() == b.to_string().to_lowercase()
        };
        assert!(
            same(&info.type_guid, &want.type_guid),
            "gpt case {case}: partition {k} type"
        );
        assert!(
            same(&info.uuid, &want.part_guid),
            "gpt case {case}: partition {k} GUID"
        );
        assert_eq!(info.name, names[k], "gpt case {case}: partition {k} name");
        assert_eq!(
            (info.offset, info.size),
            (want.offset, want.size),
            "gpt case {case}: partition {k} place"
        );
        let c = &contents[k];
        assert!(
            bytes[..c.len()] == c[..],
            "gpt case {case}: partition {k} contents"
        );
        assert!(
            bytes[c.len()..].iter().all(|&b| b == 0),
            "gpt case {case}: partition {k} padding"
        );
    }
    if case.is_multiple_of(JUDGED) {
        judge(
            &format!("sfdisk --verify (gpt case {case})"),
            Command::new(tool("sfdisk", "fdisk"))
                .arg("--verify")
                .arg(&path),
            None,
        );
        let out = judge(
            &format!("sgdisk -v (gpt case {case})"),
            Command::new(tool("sgdisk", "gdisk")).arg("-v").arg(&path),
            None,
        );
        assert!(
            out.contains("No problems found"),
            "gpt case {case}: sgdisk -v:\n{out}"
        );
    }
}

/// dm-verity: the superblock reads back with the parameters given, the
/// root hash is the one this file computes from the data (the kernel's
/// format, done here independently), and `veritysetup verify` accepts it.
pub fn verity_case(rng: &mut Rng, case: u64) {
    // One or two levels of hash blocks; case 5 three (more than 128 * 128
    // data blocks: 64 MiB, slow to hash in a debug build, so only once).
    let blocks = if case == 5 {
        128 * 128 + 1 + rng.below(200)
    } else {
        1 + rng.below(600)
    };
    let mut data = vec![0u8; blocks * 4096];
    for b in data.iter_mut().step_by(1 + rng.below(4096)) {
        *b = rng.next() as u8;
    }
    let mut salt = [0u8; 32];
    salt.iter_mut().for_each(|b| *b = rng.next() as u8);
    let uuid = [rng.next() as u8; 16];
    let h = verity::build(&data, &salt, uuid).unwrap_or_else(|e| panic!("verity case {case}: {e}"));
    let sb = kiln_format::verity::Superblock::decode(&h.hash_image)
        .unwrap_or_else(|e| panic!("verity case {case}: superblock: {e}"));
    assert_eq!(
        (
            sb.hash_type,
            sb.uuid,
            sb.algorithm.as_str(),
            sb.data_block_size,
            sb.hash_block_size,
            sb.data_blocks,
            &sb.salt[..]
        ),
        (1, uuid, "sha256", 4096, 4096, blocks as u64, &salt[..]),
        "verity case {case}: superblock read back"
    );
    assert_eq!(
        h.root_hash,
        root_hash(&data, &salt),
        "verity case {case}: root hash"
    );
    if case.is_multiple_of(JUDGED) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (d, hf) = (dir.path().join("data"), dir.path().join("hash"));
        std::fs::write(&d, &data).expect("data file");
        std::fs::write(&hf, &h.hash_image).expect("hash file");
        judge(
            &format!("veritysetup verify (verity case {case})"),
            Command::new(tool("veritysetup", "cryptsetup-bin"))
                .arg("verify")
                .args([&d, &hf])
                .arg(hex::encode(h.root_hash)),
            None,
        );
    }
}

/// The dm-verity root hash of `data` (format 1, SHA-256, 4 KiB blocks,
/// salt first): each level hashes the one below, 128 digests a block,
/// zero padded, until one block is left.
fn root_hash(data: &[u8], salt: &[u8]) -> [u8; 32] {
    let digest = |b: &[u8]| -> [u8; 32] {
        Sha256::new()
            .chain_update(salt)
            .chain_update(b)
            .finalize()
            .into()
    };
    let mut level: Vec<u8> = data.chunks(4096).flat_map(digest).collect();
    loop {
        level.resize(level.len().next_multiple_of(4096), 0);
        if level.len() == 4096 {
            return digest(&level);
        }
        level = level.chunks(4096).flat_map(digest).collect();
    }
}

/// cpio (newc): GNU cpio extracts every path with its contents, link
/// target and permissions. Every case: kiln has no cpio reader.
pub fn cpio_case(rng: &mut Rng, case: u64) {
    let t = tree(
        rng,
        Kinds {
            xattrs: false,
            special: false,
            any_mode: false,
        },
    );
    let archive = cpio::write_newc(&t).unwrap_or_else(|e| panic!("cpio case {case}: {e}"));
    let dir = tempfile::tempdir().expect("temporary directory");
    judge(
        &format!("cpio -i (cpio case {case})"),
        Command::new(tool("cpio", "cpio"))
            .args(["-i", "-d", "--no-preserve-owner", "--quiet"])
            .current_dir(dir.path()),
        Some(&archive),
    );
    let mut want = BTreeMap::new();
    for (path, _) in t.iter().filter(|(p, _)| !p.is_empty()) {
        let node = match &t.get(path).expect("listed").kind {
            NodeKind::Hardlink(target) => t.get(target).expect("link target"),
            _ => t.get(path).expect("listed"),
        };
        want.insert(path.to_string(), extracted_line(&node.kind, node.meta.mode));
    }
    let mut got = BTreeMap::new();
    walk(dir.path(), dir.path(), &mut got);
    assert_eq!(
        got, want,
        "cpio case {case}: `cpio -i` extracted other files"
    );
}

fn extracted_line(kind: &NodeKind, mode: u32) -> String {
    match kind {
        NodeKind::File(d) => format!("file {:o} {}", mode, hex::encode(Sha256::digest(&d[..]))),
        NodeKind::Dir => format!("dir {mode:o}"),
        NodeKind::Symlink(t) => format!("symlink {t}"),
        k => format!("{k:?}"),
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    use std::os::unix::fs::PermissionsExt;
    for e in std::fs::read_dir(dir).expect("extracted directory") {
        let p = e.expect("entry").path();
        let rel = p
            .strip_prefix(root)
            .expect("under root")
            .to_string_lossy()
            .into_owned();
        let md = std::fs::symlink_metadata(&p).expect("metadata");
        let mode = md.permissions().mode() & 0o7777;
        let kind = if md.is_dir() {
            walk(root, &p, out);
            NodeKind::Dir
        } else if md.file_type().is_symlink() {
            NodeKind::Symlink(
                std::fs::read_link(&p)
                    .expect("link")
                    .to_string_lossy()
                    .into_owned(),
            )
        } else {
            NodeKind::File(Arc::new(std::fs::read(&p).expect("file")))
        };
        out.insert(rel, extracted_line(&kind, mode));
    }
}

/// Has `PROGRAM FLAG FILE` (from the Debian package) judge the image
/// `bytes`, written to a temporary file.
fn judge_image(what: &str, case: u64, (program, package, flag): (&str, &str, &str), bytes: &[u8]) {
    let f = temp_file(bytes);
    judge(
        &format!("{program} {flag} ({what} case {case})"),
        Command::new(tool(program, package)).arg(flag).arg(f.path()),
        None,
    );
}

fn temp_file(b: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temporary file");
    f.write_all(b).expect("write temporary file");
    f
}
