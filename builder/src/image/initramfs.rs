//! The initramfs kiln generates for every image: kiln-init as `/init`, the
//! kernel modules needed to reach a dm-verity root on a virtio disk (with
//! their dependencies, in load order read from each module's `.modinfo`),
//! and `/etc/kiln/modules` listing them in that order. Packed as a newc cpio
//! ([`crate::fs::cpio`]) and compressed with zstd.
//!
//! kiln-init is a small static Rust program (`builder/init`, built by
//! `builder/build.rs` and carried inside the kiln binary): it needs no libc
//! or shell in the initramfs, so the same initramfs works over a busybox or
//! a systemd root.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use crate::fs::cpio::{self, Compression};
use crate::fs::kmod::{module_bytes, ModuleIndex};
use crate::fs::layer::sha256_digest;
use crate::fs::tree::{Meta, Node, NodeKind, Tree};
use crate::util::error::EnvError;
use crate::util::memo::Memo;

/// Where the module list lives in the initramfs (read by kiln-init).
pub const MODULE_LIST: &str = "etc/kiln/modules";

/// A built initramfs.
#[derive(Debug, Clone)]
pub struct Initramfs {
    /// The compressed cpio archive.
    pub bytes: Vec<u8>,
    /// Modules it loads, in order.
    pub modules: Vec<String>,
    /// Kernel version the modules are for.
    pub kver: String,
}

/// kiln-init as built with kiln (by `builder/build.rs`: static, stripped,
/// the same bytes wherever it is built).
const EMBEDDED_INIT: &[u8] = include_bytes!(env!("KILN_INIT_BINARY"));

/// kiln-init: its bytes and their `sha256:` (the image key, the initramfs
/// memo and the manifest all name it; it is hashed once).
#[derive(Debug, Clone)]
pub struct Init {
    /// The static executable.
    pub bytes: Cow<'static, [u8]>,
    /// `sha256:` of `bytes`.
    pub digest: crate::util::digest::Digest,
}

impl Init {
    /// kiln-init from its bytes.
    pub fn new(bytes: impl Into<Cow<'static, [u8]>>) -> Init {
        let bytes = bytes.into();
        let digest = crate::util::digest::Digest::of(&bytes);
        Init { bytes, digest }
    }
}

/// The kiln-init binary: the file named by `$KILN_INIT` when set (to try a
/// modified init without rebuilding kiln), else the one kiln carries. It
/// must be statically linked.
pub fn find_init() -> Result<Init> {
    let Some(path) = std::env::var_os("KILN_INIT").map(PathBuf::from) else {
        check_static(Path::new("the kiln-init built into kiln"), EMBEDDED_INIT)?;
        return Ok(Init::new(EMBEDDED_INIT));
    };
    let bytes = std::fs::read(&path).map_err(|e| {
        EnvError::new(format!(
            "KILN_INIT={}: cannot read the kiln-init binary: {e} (unset KILN_INIT to use the one built into kiln)",
            path.display()
        ))
    })?;
    check_static(&path, &bytes)?;
    tracing::debug!("kiln-init from KILN_INIT={}", path.display());
    Ok(Init::new(bytes))
}

/// An init for an initramfs must not need a dynamic loader: ELF without PT_INTERP.
fn check_static(path: &Path, elf: &[u8]) -> Result<()> {
    let bad = |why: &str| {
        EnvError::new(format!(
            "{} is not a usable init ({why}): the initramfs's /init must be a static x86-64 executable",
            path.display()
        ))
    };
    if elf.get(..4) != Some(b"\x7fELF") || elf.get(4) != Some(&2) {
        bail!(bad("not an ELF64 executable"));
    }
    let rd = |off: usize, n: usize| -> Option<u64> {
        let b = elf.get(off..off + n)?;
        let mut v = [0u8; 8];
        v[..n].copy_from_slice(b);
        Some(u64::from_le_bytes(v))
    };
    let (phoff, phentsize, phnum) = (rd(0x20, 8), rd(0x36, 2), rd(0x38, 2));
    let (Some(phoff), Some(phentsize), Some(phnum)) = (phoff, phentsize, phnum) else {
        bail!(bad("truncated"))
    };
    for i in 0..phnum {
        // PT_INTERP = 3.
        if rd((phoff + i * phentsize) as usize, 4) == Some(3) {
            bail!(bad("dynamically linked"));
        }
    }
    Ok(())
}

/// The memo kind of a whole initramfs ([`build`]). (Until kiln 0.x the
/// memo held only the zstd step, keyed by the cpio bytes, under
/// `initramfs-zstd`; those entries are never looked up again and `kiln gc`
/// keeps them only while their blob is there.)
const MEMO_KIND: &str = "initramfs";

/// Bumped whenever [`build`] makes other bytes from the same inputs.
const MEMO_FORMAT: u32 = 1;

/// Everything [`build`] reads, which the memo is keyed by: the archive is a
/// pure function of these. From the root it reads only the kernel's module
/// index (the module files by name, with the sha256 of each one's bytes,
/// and `modules.builtin`); hashing the kept modules (a stripped base keeps a
/// few hundred KiB) costs far less than decompressing them and reading their
/// `.modinfo`, which is what the memo saves, with the cpio and zstd steps.
#[derive(serde::Serialize)]
struct MemoInput<'a> {
    format: u32,
    /// kiln's version too, in case a change to the cpio or zstd writing
    /// forgets [`MEMO_FORMAT`].
    kiln: &'a str,
    init: &'a crate::util::digest::Digest,
    wanted: &'a [String],
    source_date_epoch: i64,
    kver: &'a str,
    base: &'a str,
    builtin: &'a std::collections::BTreeSet<String>,
    /// Name → (path, sha256 of its bytes as stored).
    modules: std::collections::BTreeMap<&'a str, (&'a str, String)>,
}

fn memo_input(
    idx: &ModuleIndex,
    root: &Tree,
    wanted: &[String],
    init: &Init,
    sde: i64,
) -> Result<Vec<u8>> {
    let mut modules = std::collections::BTreeMap::new();
    for (name, path) in &idx.files {
        let Some(NodeKind::File(data)) = root.get(path).map(|n| &n.kind) else {
            bail!(crate::input_err!(
                path,
                "not a regular file in the image, but a kernel module the initramfs needs"
            ))
        };
        modules.insert(name.as_str(), (path.as_str(), sha256_digest(data)));
    }
    let input = MemoInput {
        format: MEMO_FORMAT,
        kiln: env!("CARGO_PKG_VERSION"),
        init: &init.digest,
        wanted,
        source_date_epoch: sde,
        kver: &idx.kver,
        base: &idx.base,
        builtin: &idx.builtin,
        modules,
    };
    Ok(serde_json::to_vec(&input)?)
}

/// Build the initramfs for a composed root, or take it from `memo` when
/// one was built from the same inputs ([`MemoInput`]).
pub fn build(
    root: &Tree,
    wanted: &[String],
    init: &Init,
    sde: i64,
    memo: &dyn Memo,
) -> Result<Initramfs> {
    let idx = ModuleIndex::new(root).context("finding the kernel modules in the composed root")?;
    let input = memo_input(&idx, root, wanted, init, sde)?;
    let packed = memo.memo(MEMO_KIND, &input, &|| {
        let (bytes, modules) = make(&idx, root, wanted, &init.bytes, sde)?;
        Ok(pack(&modules, &bytes))
    })?;
    let (modules, bytes) = unpack(packed).context("reading the memoised initramfs")?;
    Ok(Initramfs {
        bytes,
        modules,
        kver: idx.kver,
    })
}

/// The memo's form of an initramfs: the module names as a JSON array (which
/// holds no raw newline), a newline, then the compressed archive.
fn pack(modules: &[String], bytes: &[u8]) -> Vec<u8> {
    let mut out = serde_json::to_vec(modules).expect("a list of strings serialises");
    out.push(b'\n');
    out.extend_from_slice(bytes);
    out
}

/// [`pack`]'s inverse: (module names, compressed archive).
fn unpack(mut packed: Vec<u8>) -> Result<(Vec<String>, Vec<u8>)> {
    let end = packed
        .iter()
        .position(|&b| b == b'\n')
        .context("no module list")?;
    let modules = serde_json::from_slice(&packed[..end]).context("the module list")?;
    packed.drain(..=end);
    Ok((modules, packed))
}

/// Make the initramfs: the compressed archive and the modules it loads, in order.
fn make(
    idx: &ModuleIndex,
    root: &Tree,
    wanted: &[String],
    init: &[u8],
    sde: i64,
) -> Result<(Vec<u8>, Vec<String>)> {
    let mods = idx
        .closure(wanted)
        .context("resolving the initramfs modules (boot.initrd_modules)")?;
    let mut t = Tree::new(sde);
    let d = Meta::root(0o755, sde);
    for dir in ["dev", "proc", "sys", "sysroot", "run", "etc/kiln"] {
        t.insert_with_parents(
            dir,
            Node {
                kind: NodeKind::Dir,
                meta: d.clone(),
            },
            &d,
        )?;
    }
    t.insert(
        "dev/console",
        Node {
            kind: NodeKind::CharDev { major: 5, minor: 1 },
            meta: Meta::root(0o600, sde),
        },
    )?;
    t.insert(
        "init",
        Node {
            kind: NodeKind::File(Arc::new(init.to_vec())),
            meta: Meta::root(0o755, sde),
        },
    )?;
    let mut list =
        String::from("# Kernel modules kiln-init loads, in order (generated by kiln).\n");
    let mut names = Vec::new();
    for m in &mods {
        let path = idx
            .path_of(&m.name)
            .ok_or_else(|| crate::internal_err!("no path for module {}", m.name))?;
        let Some(NodeKind::File(data)) = root.get(path).map(|n| &n.kind) else {
            bail!(crate::input_err!(
                path,
                "not a regular file in the image, but a kernel module the initramfs needs"
            ))
        };
        // kiln-init reads /lib/modules/<kver>/: the root may keep its modules
        // in usr/lib/modules (merged /usr), the initramfs always in lib/modules.
        // Compressed modules (`.ko.xz`, `.ko.zst`) are decompressed here, so
        // that kiln-init's plain finit_module works whatever the kernel's
        // CONFIG_MODULE_DECOMPRESS; the initramfs is compressed as a whole.
        let stored = path.strip_prefix(&format!("{}/", idx.base)).unwrap_or(path);
        let rel = format!("{}.ko", stored.split(".ko").next().unwrap_or(stored));
        let elf = match module_bytes(path, data)? {
            Cow::Borrowed(_) => data.clone(),
            Cow::Owned(v) => Arc::new(v),
        };
        t.insert_with_parents(
            &format!("lib/modules/{}/{rel}", idx.kver),
            Node {
                kind: NodeKind::File(elf),
                meta: Meta::root(0o644, sde),
            },
            &d,
        )?;
        list.push_str(&rel);
        list.push('\n');
        names.push(m.name.clone());
    }
    t.insert(
        MODULE_LIST,
        Node {
            kind: NodeKind::File(Arc::new(list.into_bytes())),
            meta: Meta::root(0o644, sde),
        },
    )?;
    let archive = cpio::write_newc(&t)?;
    Ok((cpio::compress(&archive, Compression::Zstd), names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_init_and_modules_in_order() {
        let root = crate::fs::kmod::tests::module_tree(&[
            ("virtio/virtio_blk.ko", "virtio_blk", "virtio,virtio_ring"),
            ("virtio/virtio.ko", "virtio", "virtio_ring"),
            ("virtio/virtio_ring.ko", "virtio_ring", ""),
            ("sound/snd.ko", "snd", ""),
        ]);
        let i = build(
            &root,
            &["virtio_blk".into()],
            &Init::new(&b"\x7fELF-init"[..]),
            1_700_000_000,
            &crate::util::memo::NoMemo,
        )
        .unwrap();
        assert_eq!(i.modules, ["virtio_ring", "virtio", "virtio_blk"]);
        assert_eq!(i.kver, "6.1.0-test");
        // Decompress and list with GNU cpio, an outside reader.
        let raw = zstd::stream::decode_all(i.bytes.as_slice()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("i.cpio");
        std::fs::write(&f, &raw).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("cpio -it < {}", f.display()))
            .output()
            .expect("cpio must be installed (Debian package cpio)");
        assert!(
            out.status.success(),
            "cpio: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let list = String::from_utf8_lossy(&out.stdout);
        for want in [
            "init",
            "dev/console",
            "etc/kiln/modules",
            "lib/modules/6.1.0-test/kernel/virtio/virtio_blk.ko",
        ] {
            assert!(
                list.lines().any(|l| l == want),
                "{want} missing from {list}"
            );
        }
        assert!(!list.contains("snd.ko"));
    }

    /// (kind, input) → output.
    type Kept = std::collections::HashMap<(String, Vec<u8>), Vec<u8>>;

    /// A memo in memory that counts the computations it runs.
    #[derive(Default)]
    struct CountingMemo {
        kept: std::sync::Mutex<Kept>,
        runs: std::sync::atomic::AtomicUsize,
    }

    impl Memo for CountingMemo {
        fn memo(
            &self,
            kind: &str,
            input: &[u8],
            f: &dyn Fn() -> Result<Vec<u8>>,
        ) -> Result<Vec<u8>> {
            let key = (kind.to_string(), input.to_vec());
            if let Some(out) = self.kept.lock().unwrap().get(&key) {
                return Ok(out.clone());
            }
            self.runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let out = f()?;
            self.kept.lock().unwrap().insert(key, out.clone());
            Ok(out)
        }
    }

    #[test]
    fn memo_gives_the_same_initramfs_and_follows_module_changes() {
        let mods = [
            ("virtio/virtio_blk.ko", "virtio_blk", "virtio"),
            ("virtio/virtio.ko", "virtio", ""),
            ("virtio/virtio_ring.ko", "virtio_ring", ""),
        ];
        let root = crate::fs::kmod::tests::module_tree(&mods);
        let wanted = ["virtio_blk".to_string()];
        let init = &Init::new(&b"\x7fELF-init"[..]);
        let memo = CountingMemo::default();
        let runs = || memo.runs.load(std::sync::atomic::Ordering::SeqCst);
        let fresh = build(&root, &wanted, init, 1, &crate::util::memo::NoMemo).unwrap();
        let first = build(&root, &wanted, init, 1, &memo).unwrap();
        let again = build(&root, &wanted, init, 1, &memo).unwrap();
        assert_eq!(runs(), 1);
        for i in [&first, &again] {
            assert_eq!(i.bytes, fresh.bytes);
            assert_eq!(i.modules, ["virtio", "virtio_blk"]);
            assert_eq!(i.kver, "6.1.0-test");
        }

        // A module's content (here its dependencies) is part of the key.
        let mut changed = mods;
        changed[1].2 = "virtio_ring";
        let root2 = crate::fs::kmod::tests::module_tree(&changed);
        let other = build(&root2, &wanted, init, 1, &memo).unwrap();
        assert_eq!(runs(), 2);
        assert_eq!(other.modules, ["virtio_ring", "virtio", "virtio_blk"]);
        assert_ne!(other.bytes, first.bytes);

        // So are kiln-init, the wanted modules and the epoch.
        build(&root, &wanted, &Init::new(&b"\x7fELF-other"[..]), 1, &memo).unwrap();
        build(&root, &["virtio".to_string()], init, 1, &memo).unwrap();
        build(&root, &wanted, init, 2, &memo).unwrap();
        assert_eq!(runs(), 5);
    }

    #[test]
    fn memo_form_round_trips() {
        let modules = vec!["a\nb".to_string(), "c".to_string()];
        let packed = pack(&modules, b"\n\0bytes\n");
        assert_eq!(unpack(packed).unwrap(), (modules, b"\n\0bytes\n".to_vec()));
        assert!(unpack(b"no list".to_vec()).is_err());
    }

    #[test]
    fn dynamic_init_is_refused() {
        let mut elf = vec![0u8; 0x100];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[0x20] = 0x40; // phoff
        elf[0x36] = 0x38; // phentsize
        elf[0x38] = 1; // phnum
        elf[0x40] = 3; // PT_INTERP
        assert!(check_static(Path::new("x"), &elf).is_err());
        elf[0x40] = 1; // PT_LOAD
        assert!(check_static(Path::new("x"), &elf).is_ok());
    }

    /// The kiln-init kiln carries is a static x86-64 executable.
    #[test]
    fn embedded_init_is_static() {
        check_static(Path::new("embedded"), EMBEDDED_INIT).unwrap();
        // e_machine: EM_X86_64.
        assert_eq!(EMBEDDED_INIT.get(0x12..0x14), Some(&[0x3e, 0][..]));
    }
}
