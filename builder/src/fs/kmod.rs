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
    /// A module that was asked for (or depended on) is not in the tree.
    #[error("kernel module {name:?} not found under lib/modules/{kver}/ (needed by {needed_by})")]
    Missing {
        /// Module name.
        name: String,
        /// Kernel version directory searched.
        kver: String,
        /// Who asked for it.
        needed_by: String,
    },
    /// No kernel, or more than one, under lib/modules.
    #[error("expected exactly one kernel under lib/modules/, found {0:?}")]
    KernelCount(Vec<String>),
}

/// Normalise a module name: `dm-verity` and `dm_verity` are the same module.
pub fn normalize_name(name: &str) -> String {
    name.replace('-', "_")
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
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
        let off = u64_at(elf, h + 0x18)? as usize;
        let size = u64_at(elf, h + 0x20)? as usize;
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

/// Parse a module's `.modinfo`.
pub fn modinfo(path: &str, ko: &[u8]) -> Result<ModInfo, KmodError> {
    let bad = |why| KmodError::BadElf {
        path: path.to_string(),
        why,
    };
    let sec = elf_section(ko, ".modinfo")
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

/// `kernel/drivers/block/virtio_blk.ko` → `virtio_blk` (also for `.ko.xz` etc.).
fn module_stem(path: &str) -> &str {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split(".ko").next().unwrap_or(file)
}

/// Whether a path is a kernel module file.
pub fn is_module_path(path: &str) -> bool {
    (path.starts_with("lib/modules/") || path.starts_with("usr/lib/modules/"))
        && [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
            .iter()
            .any(|s| path.ends_with(s))
}

/// The modules of the one kernel in a tree.
#[derive(Debug, Clone)]
pub struct ModuleIndex {
    /// Kernel version (the directory under lib/modules).
    pub kver: String,
    /// Directory holding the modules, relative to the tree root (`lib/modules/<kver>`).
    pub base: String,
    /// By normalised name: path relative to the tree root, and modinfo.
    pub modules: BTreeMap<String, (String, ModInfo)>,
}

/// The kernel versions present under `lib/modules/` (or `usr/lib/modules/`).
pub fn kernel_versions(tree: &Tree) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for base in ["lib/modules", "usr/lib/modules"] {
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

impl ModuleIndex {
    /// Index the modules of the single kernel in `tree`.
    pub fn new(tree: &Tree) -> Result<ModuleIndex, KmodError> {
        let kernels = kernel_versions(tree);
        let [(kver, base)] = kernels.as_slice() else {
            return Err(KmodError::KernelCount(
                kernels.into_iter().map(|k| k.0).collect(),
            ));
        };
        let prefix = format!("{base}/");
        let mut modules = BTreeMap::new();
        for (path, node) in tree.iter() {
            if !path.starts_with(&prefix) || !path.ends_with(".ko") {
                continue;
            }
            if let NodeKind::File(data) = &node.kind {
                let info = modinfo(path, data)?;
                modules.insert(info.name.clone(), (path.to_string(), info));
            }
        }
        Ok(ModuleIndex {
            kver: kver.clone(),
            base: base.clone(),
            modules,
        })
    }

    /// The named modules and everything they depend on, dependencies first
    /// (a valid load order). Names not found are an error naming who needed them.
    pub fn closure(&self, wanted: &[String]) -> Result<Vec<&ModInfo>, KmodError> {
        let mut order = Vec::new();
        let mut done = BTreeSet::new();
        for w in wanted {
            self.visit(&normalize_name(w), "the recipe", &mut done, &mut order)?;
        }
        Ok(order)
    }

    fn visit<'a>(
        &'a self,
        name: &str,
        needed_by: &str,
        done: &mut BTreeSet<String>,
        order: &mut Vec<&'a ModInfo>,
    ) -> Result<(), KmodError> {
        if !done.insert(name.to_string()) {
            return Ok(());
        }
        let (_, info) = self.modules.get(name).ok_or_else(|| KmodError::Missing {
            name: name.to_string(),
            kver: self.kver.clone(),
            needed_by: needed_by.to_string(),
        })?;
        for dep in &info.depends {
            self.visit(dep, name, done, order)?;
        }
        order.push(info);
        Ok(())
    }

    /// The path (relative to the tree root) of a module.
    pub fn path_of(&self, name: &str) -> Option<&str> {
        self.modules.get(name).map(|(p, _)| p.as_str())
    }

    /// `modules.dep` text for the given modules (paths relative to the kernel's
    /// module directory, each module's full dependency closure in load-reverse
    /// order, as depmod writes it).
    pub fn modules_dep(&self, mods: &[&ModInfo]) -> Result<String, KmodError> {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::fs::tree::{Meta, Node};
    use std::sync::Arc;

    /// A minimal ELF64 relocatable object with a `.modinfo` section, laid out
    /// as the gABI says: header, section data, string table, section headers.
    pub(crate) fn fake_ko(modinfo: &str) -> Vec<u8> {
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
                kver: "6.1.0-test".into(),
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
