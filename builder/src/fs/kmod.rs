//! Kernel modules: reading a `.ko`'s `.modinfo` section, finding the modules of
//! a tree's kernel, and resolving a set of modules with everything they depend
//! on, in load order.
//!
//! A module is an ELF64 relocatable object (System V gABI, "Sections"); its
//! `.modinfo` section is a sequence of NUL-terminated `key=value` strings, of
//! which `name=` and `depends=` (comma-separated module names) matter here.
//! Module names treat `-` and `_` alike (the kernel's `modname` rules), so
//! names are normalised to `_`. `modules.dep` is written in the text format
//! that `modprobe` (kmod and busybox) read: `path: dep-path dep-path…`.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use crate::fs::tree::{NodeKind, Tree};

/// Errors reading modules.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KmodError {
    /// Not an ELF64 little-endian object, or a truncated one.
    #[error("{path}: not a valid ELF64 kernel module ({why})")]
    BadElf {
        /// The module file.
        path: String,
        /// What was wrong.
        why: &'static str,
    },
    /// A compressed module that does not decompress (or decompresses to
    /// more than [`MAX_MODULE_SIZE`]).
    #[error("{path}: cannot decompress the kernel module: {why}")]
    BadCompression {
        /// The module file.
        path: String,
        /// What was wrong.
        why: String,
    },
    /// A module that was asked for (or depended on) is not in the tree.
    #[error("kernel module {name:?} not found under /{base}/ (needed by {needed_by}): no {name}.ko[.xz|.zst] there, and modules.builtin does not list it as built into the kernel")]
    Missing {
        /// Module name.
        name: String,
        /// The kernel's module directory searched.
        base: String,
        /// Who asked for it.
        needed_by: String,
    },
    /// No kernel in the tree.
    #[error("no kernel: looked for a module directory in /{} and found none", MODULE_DIRS.join("/ and /"))]
    NoKernel,
    /// More than one kernel in the tree.
    #[error("more than one kernel: {}; an image boots one", .0.iter().map(|p| format!("/{p}")).collect::<Vec<_>>().join(", "))]
    KernelCount(Vec<String>),
}

/// Where kernels keep their modules: merged /usr first, then the old place.
pub const MODULE_DIRS: [&str; 2] = ["usr/lib/modules", "lib/modules"];

/// The largest kernel module kiln decompresses (the biggest in Debian's
/// 6.12 kernels is under 10 MiB uncompressed); more is a corrupt or hostile file.
pub const MAX_MODULE_SIZE: u64 = 64 << 20;

/// Normalise a module name: `dm-verity` and `dm_verity` are the same module.
pub fn normalize_name(name: &str) -> String {
    name.replace('-', "_")
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(off..off.checked_add(2)?)?.try_into().ok()?,
    ))
}
fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(off..off.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// The bytes of an ELF64 section by name.
pub fn elf_section<'a>(elf: &'a [u8], want: &str) -> Result<Option<&'a [u8]>, &'static str> {
    if elf.get(..4) != Some(b"\x7fELF") {
        return Err("no ELF magic");
    }
    // e_ident[EI_CLASS] = 2 (64-bit), e_ident[EI_DATA] = 1 (little endian).
    if elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return Err("not ELF64 little-endian");
    }
    let shoff = u64_at(elf, 0x28).ok_or("truncated header")? as usize;
    let shentsize = u16_at(elf, 0x3a).ok_or("truncated header")? as usize;
    let shnum = u16_at(elf, 0x3c).ok_or("truncated header")? as usize;
    let shstrndx = u16_at(elf, 0x3e).ok_or("truncated header")? as usize;
    if shentsize < 0x40 {
        return Err("bad section header size");
    }
    let section = |i: usize| -> Option<(u32, usize, usize)> {
        let h = shoff.checked_add(i.checked_mul(shentsize)?)?;
        let name = u32_at(elf, h)?;
        let off = u64_at(elf, h.checked_add(0x18)?)? as usize;
        let size = u64_at(elf, h.checked_add(0x20)?)? as usize;
        Some((name, off, size))
    };
    let (_, stroff, strsize) = section(shstrndx).ok_or("bad section string table")?;
    let strtab = elf
        .get(stroff..stroff.checked_add(strsize).ok_or("overflow")?)
        .ok_or("truncated string table")?;
    for i in 0..shnum {
        let (name, off, size) = section(i).ok_or("truncated section headers")?;
        let name = strtab.get(name as usize..).ok_or("bad section name")?;
        let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
        if &name[..end] == want.as_bytes() {
            return elf
                .get(off..off.checked_add(size).ok_or("overflow")?)
                .map(Some)
                .ok_or("truncated section");
        }
    }
    Ok(None)
}

/// What `.modinfo` says about a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModInfo {
    /// `name=` (normalised).
    pub name: String,
    /// `depends=` (normalised).
    pub depends: Vec<String>,
}

/// Parse a module's `.modinfo`; `ko` is the module as stored (compressed
/// ones are decompressed first, see [`module_bytes`]).
pub fn modinfo(path: &str, ko: &[u8]) -> Result<ModInfo, KmodError> {
    let bad = |why| KmodError::BadElf {
        path: path.to_string(),
        why,
    };
    let elf = module_bytes(path, ko)?;
    let sec = elf_section(&elf, ".modinfo")
        .map_err(bad)?
        .ok_or_else(|| bad("no .modinfo section"))?;
    let mut name = None;
    let mut depends = Vec::new();
    for field in sec.split(|b| *b == 0) {
        let field = String::from_utf8_lossy(field);
        if let Some(v) = field.strip_prefix("name=") {
            name = Some(normalize_name(v));
        } else if let Some(v) = field.strip_prefix("depends=") {
            depends.extend(v.split(',').filter(|s| !s.is_empty()).map(normalize_name));
        }
    }
    // Old modules may lack name=; the file name is the module name then.
    let name = name.unwrap_or_else(|| normalize_name(module_stem(path)));
    Ok(ModInfo { name, depends })
}

/// How a module file is compressed, from its name (as kmod's `depmod` and
/// the kernel's `CONFIG_MODULE_COMPRESS_*` name them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// `.ko`
    None,
    /// `.ko.xz`
    Xz,
    /// `.ko.zst`
    Zstd,
    /// `.ko.gz`
    Gzip,
}

/// The compression of a module path; `None` for a path that is no module.
pub fn compression(path: &str) -> Option<Compression> {
    [
        (".ko", Compression::None),
        (".ko.xz", Compression::Xz),
        (".ko.zst", Compression::Zstd),
        (".ko.gz", Compression::Gzip),
    ]
    .into_iter()
    .find(|(ext, _)| path.ends_with(ext))
    .map(|(_, c)| c)
}

/// The uncompressed ELF object of a module stored as `path` (`.ko`, `.ko.xz`
/// or `.ko.zst`), at most [`MAX_MODULE_SIZE`] bytes.
pub fn module_bytes<'a>(path: &str, data: &'a [u8]) -> Result<Cow<'a, [u8]>, KmodError> {
    use std::io::Read;
    let bad = |why: String| KmodError::BadCompression {
        path: path.to_string(),
        why,
    };
    let mut out = Vec::new();
    let read = match compression(path) {
        None | Some(Compression::None) => return Ok(Cow::Borrowed(data)),
        Some(Compression::Gzip) => {
            return Err(bad(
                "gzip-compressed modules are not supported (Debian's kernels use xz)".into(),
            ))
        }
        Some(Compression::Xz) => {
            // liblzma with a memory limit: a forged dictionary size fails
            // instead of allocating.
            let stream = xz2::stream::Stream::new_stream_decoder(MAX_MODULE_SIZE, 0)
                .map_err(|e| bad(e.to_string()))?;
            xz2::read::XzDecoder::new_stream(data, stream)
                .take(MAX_MODULE_SIZE + 1)
                .read_to_end(&mut out)
        }
        Some(Compression::Zstd) => {
            let mut dec = zstd::stream::read::Decoder::new(data).map_err(|e| bad(e.to_string()))?;
            // 2^27: zstd's default maximum window for decoders (128 MiB).
            dec.window_log_max(27).map_err(|e| bad(e.to_string()))?;
            dec.take(MAX_MODULE_SIZE + 1).read_to_end(&mut out)
        }
    };
    read.map_err(|e| bad(e.to_string()))?;
    if out.len() as u64 > MAX_MODULE_SIZE {
        return Err(bad(format!(
            "more than {MAX_MODULE_SIZE} bytes uncompressed"
        )));
    }
    Ok(Cow::Owned(out))
}

/// `kernel/drivers/block/virtio_blk.ko` → `virtio_blk` (also for `.ko.xz` etc.).
pub fn module_stem(path: &str) -> &str {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split(".ko").next().unwrap_or(file)
}

/// Whether a path is a kernel module file.
pub fn is_module_path(path: &str) -> bool {
    MODULE_DIRS
        .iter()
        .any(|d| path.strip_prefix(d).is_some_and(|r| r.starts_with('/')))
        && compression(path).is_some()
}

/// The kernel versions present under the module directories ([`MODULE_DIRS`]),
/// as (version, module directory path).
pub fn kernel_versions(tree: &Tree) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for base in MODULE_DIRS {
        if matches!(tree.get(base), Some(n) if n.kind == NodeKind::Dir) {
            for (name, path, node) in tree.children(base) {
                if node.kind == NodeKind::Dir {
                    out.push((name.to_string(), path.to_string()));
                }
            }
        }
    }
    out
}

/// Where the kernel image of version `kver` is in a tree: Debian's
/// `/boot/vmlinuz-<kver>`, or the module directory's `vmlinuz` (the layout
/// of systemd's kernel-install and of Fedora-style packages).
pub fn kernel_image_path(tree: &Tree, kver: &str) -> Option<String> {
    std::iter::once(format!("boot/vmlinuz-{kver}"))
        .chain(MODULE_DIRS.iter().map(|d| format!("{d}/{kver}/vmlinuz")))
        .find(|p| matches!(tree.resolve(p), Some((_, n)) if matches!(n.kind, NodeKind::File(_))))
}

/// The modules of the one kernel in a tree. Each module's `.modinfo` is read
/// (and the module decompressed) only when a closure needs it: a Debian
/// kernel ships thousands of modules, of which an image keeps a handful.
#[derive(Debug)]
pub struct ModuleIndex<'t> {
    tree: &'t Tree,
    /// Kernel version (the directory under the module directory).
    pub kver: String,
    /// Directory holding the modules, relative to the tree root (`usr/lib/modules/<kver>`).
    pub base: String,
    /// By normalised name (the file name's stem, which kbuild makes the
    /// module name): the path relative to the tree root.
    pub files: BTreeMap<String, String>,
    /// Modules built into the kernel (`modules.builtin`), by normalised name.
    pub builtin: BTreeSet<String>,
    infos: RefCell<BTreeMap<String, ModInfo>>,
}

impl<'t> ModuleIndex<'t> {
    /// Index the modules of the single kernel in `tree`.
    pub fn new(tree: &'t Tree) -> Result<ModuleIndex<'t>, KmodError> {
        let kernels = kernel_versions(tree);
        let (kver, base) = match kernels.as_slice() {
            [] => return Err(KmodError::NoKernel),
            [(kver, base)] => (kver.clone(), base.clone()),
            _ => {
                return Err(KmodError::KernelCount(
                    kernels.into_iter().map(|k| k.1).collect(),
                ))
            }
        };
        let prefix = format!("{base}/");
        let mut files = BTreeMap::new();
        for (path, node) in tree.iter() {
            if path.starts_with(&prefix)
                && compression(path).is_some()
                && matches!(node.kind, NodeKind::File(_))
            {
                files.insert(normalize_name(module_stem(path)), path.to_string());
            }
        }
        let builtin = match tree
            .get(&format!("{base}/modules.builtin"))
            .map(|n| &n.kind)
        {
            Some(NodeKind::File(list)) => String::from_utf8_lossy(list)
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| normalize_name(module_stem(l.trim())))
                .collect(),
            _ => BTreeSet::new(),
        };
        Ok(ModuleIndex {
            tree,
            kver,
            base,
            files,
            builtin,
            infos: RefCell::new(BTreeMap::new()),
        })
    }

    /// What `.modinfo` says about a module in the index.
    fn info(&self, name: &str, needed_by: &str) -> Result<Option<ModInfo>, KmodError> {
        if let Some(i) = self.infos.borrow().get(name) {
            return Ok(Some(i.clone()));
        }
        let Some(path) = self.files.get(name) else {
            if self.builtin.contains(name) {
                return Ok(None);
            }
            return Err(KmodError::Missing {
                name: name.to_string(),
                base: self.base.clone(),
                needed_by: needed_by.to_string(),
            });
        };
        let Some(NodeKind::File(data)) = self.tree.get(path).map(|n| &n.kind) else {
            return Err(KmodError::BadElf {
                path: path.clone(),
                why: "not a regular file",
            });
        };
        let mut info = modinfo(path, data)?;
        // kbuild names a module after its file; the index does too.
        info.name = name.to_string();
        self.infos
            .borrow_mut()
            .insert(name.to_string(), info.clone());
        Ok(Some(info))
    }

    /// The named modules and everything they depend on, dependencies first
    /// (a valid load order). Modules built into the kernel need no loading
    /// and are left out; names neither there nor built in are an error
    /// naming who needed them.
    pub fn closure(&self, wanted: &[String]) -> Result<Vec<ModInfo>, KmodError> {
        let mut order = Vec::new();
        let mut done = BTreeSet::new();
        for w in wanted {
            self.visit(&normalize_name(w), "the recipe", &mut done, &mut order)?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        needed_by: &str,
        done: &mut BTreeSet<String>,
        order: &mut Vec<ModInfo>,
    ) -> Result<(), KmodError> {
        if !done.insert(name.to_string()) {
            return Ok(());
        }
        let Some(info) = self.info(name, needed_by)? else {
            return Ok(());
        };
        for dep in &info.depends {
            self.visit(dep, name, done, order)?;
        }
        order.push(info);
        Ok(())
    }

    /// The path (relative to the tree root) of a module.
    pub fn path_of(&self, name: &str) -> Option<&str> {
        self.files.get(name).map(String::as_str)
    }

    /// `modules.dep` text for the given modules (paths relative to the kernel's
    /// module directory, each module's full dependency closure in load-reverse
    /// order, as depmod writes it).
    pub fn modules_dep(&self, mods: &[ModInfo]) -> Result<String, KmodError> {
        let rel = |name: &str| -> String {
            self.path_of(name)
                .map(|p| {
                    p.strip_prefix(&format!("{}/", self.base))
                        .unwrap_or(p)
                        .to_string()
                })
                .unwrap_or_default()
        };
        let mut lines = Vec::new();
        for m in mods {
            let deps = self.closure(std::slice::from_ref(&m.name))?;
            let dep_paths: Vec<String> = deps
                .iter()
                .rev()
                .filter(|d| d.name != m.name)
                .map(|d| rel(&d.name))
                .collect();
            lines.push(
                format!("{}: {}", rel(&m.name), dep_paths.join(" "))
                    .trim_end()
                    .to_string(),
            );
        }
        lines.sort();
        Ok(lines.join("\n") + "\n")
    }
}

/// A minimal ELF64 relocatable object with a `.modinfo` section, laid out
/// as the gABI says: header, section data, string table, section headers.
/// For tests and fuzz seeds: it is what [`modinfo`] reads, and nothing more.
pub fn fake_ko(modinfo: &str) -> Vec<u8> {
    let shstrtab = b"\0.modinfo\0.shstrtab\0";
    let mut elf = vec![0u8; 0x40];
    elf[..4].copy_from_slice(b"\x7fELF");
    elf[4] = 2;
    elf[5] = 1;
    elf[6] = 1;
    let info_off = elf.len();
    elf.extend_from_slice(modinfo.as_bytes());
    let str_off = elf.len();
    elf.extend_from_slice(shstrtab);
    while !elf.len().is_multiple_of(8) {
        elf.push(0);
    }
    let shoff = elf.len();
    let sh = |name: u32, off: usize, size: usize| {
        let mut h = vec![0u8; 0x40];
        h[0..4].copy_from_slice(&name.to_le_bytes());
        h[4..8].copy_from_slice(&1u32.to_le_bytes());
        h[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
        h[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
        h
    };
    let headers = [
        vec![0u8; 0x40],
        sh(1, info_off, modinfo.len()),
        sh(10, str_off, shstrtab.len()),
    ]
    .concat();
    elf.extend_from_slice(&headers);
    elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
    elf[0x3a..0x3c].copy_from_slice(&0x40u16.to_le_bytes());
    elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
    elf[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
    elf
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::fs::tree::{Meta, Node};
    use std::sync::Arc;

    pub(crate) use super::fake_ko;

    pub(crate) fn module_tree(mods: &[(&str, &str, &str)]) -> Tree {
        let mut t = Tree::new(0);
        let dm = Meta::root(0o755, 0);
        for (path, name, deps) in mods {
            let info = format!("license=GPL\0depends={deps}\0name={name}\0vermagic=6.1.0\0");
            t.insert_with_parents(
                &format!("lib/modules/6.1.0-test/kernel/{path}"),
                Node {
                    kind: NodeKind::File(Arc::new(fake_ko(&info))),
                    meta: Meta::root(0o644, 0),
                },
                &dm,
            )
            .unwrap();
        }
        t
    }

    #[test]
    fn closure_orders_dependencies_first() {
        let t = module_tree(&[
            ("virtio/virtio.ko", "virtio", "virtio_ring"),
            ("virtio/virtio_ring.ko", "virtio_ring", ""),
            (
                "virtio/virtio_pci.ko",
                "virtio_pci",
                "virtio_ring,virtio_pci_modern_dev,virtio_pci_legacy_dev,virtio",
            ),
            (
                "virtio/virtio_pci_modern_dev.ko",
                "virtio_pci_modern_dev",
                "",
            ),
            (
                "virtio/virtio_pci_legacy_dev.ko",
                "virtio_pci_legacy_dev",
                "",
            ),
            ("md/dm-verity.ko", "dm_verity", "dm-bufio,dm-mod"),
            ("md/dm-bufio.ko", "dm_bufio", ""),
            ("md/dm-mod.ko", "dm_mod", ""),
        ]);
        let idx = ModuleIndex::new(&t).unwrap();
        assert_eq!(idx.kver, "6.1.0-test");
        let order: Vec<_> = idx
            .closure(&["virtio_pci".into(), "dm-verity".into()])
            .unwrap()
            .iter()
            .map(|m| m.name.clone())
            .collect();
        assert_eq!(
            order,
            [
                "virtio_ring",
                "virtio_pci_modern_dev",
                "virtio_pci_legacy_dev",
                "virtio",
                "virtio_pci",
                "dm_bufio",
                "dm_mod",
                "dm_verity"
            ]
        );
        let mods = idx.closure(&["dm_verity".into()]).unwrap();
        let dep = idx.modules_dep(&mods).unwrap();
        assert!(
            dep.contains("kernel/md/dm-verity.ko: kernel/md/dm-mod.ko kernel/md/dm-bufio.ko\n"),
            "{dep}"
        );
        assert!(dep.contains("kernel/md/dm-mod.ko:\n"), "{dep}");
    }

    #[test]
    fn missing_dependency_is_named() {
        let t = module_tree(&[("a.ko", "a", "b")]);
        let idx = ModuleIndex::new(&t).unwrap();
        assert_eq!(
            idx.closure(&["a".into()]).unwrap_err(),
            KmodError::Missing {
                name: "b".into(),
                base: "lib/modules/6.1.0-test".into(),
                needed_by: "a".into()
            }
        );
    }

    #[test]
    fn rejects_non_elf() {
        assert!(matches!(
            modinfo("x.ko", b"not an elf"),
            Err(KmodError::BadElf { .. })
        ));
    }

    /// The real thing, when the host has the Debian cloud kernel's modules
    /// unpacked somewhere: not required (the fake objects above are laid out
    /// by the gABI), but checked against `modinfo` output when present.
    #[test]
    fn host_module_matches_modinfo_tool() {
        let Ok(entries) = std::fs::read_dir("/lib/modules") else {
            return;
        };
        for kdir in entries.flatten() {
            let p = kdir.path().join("kernel/drivers/md/dm-verity.ko");
            if let Ok(bytes) = std::fs::read(&p) {
                let info = modinfo(&p.display().to_string(), &bytes).unwrap();
                assert_eq!(info.name, "dm_verity");
                assert!(info.depends.contains(&"dm_bufio".to_string()), "{info:?}");
            }
        }
    }
}
