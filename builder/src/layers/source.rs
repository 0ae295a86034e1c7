//! Where a layer's content comes from: Debian packages unpacked by mmdebstrap
//! (then stripped), a directory of files in the repository, and the service
//! definitions a layer declares.
//!
//! Nothing of the host leaks into a layer: file owners are root unless an
//! override says otherwise, modes are normalised (0755 for directories and
//! executables, 0644 otherwise) before overrides, and every time is
//! SOURCE_DATE_EPOCH. mmdebstrap's tarball keeps the packages' own owners,
//! modes and xattrs; its times are clamped to SOURCE_DATE_EPOCH.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use crate::fs::kmod::{is_module_path, ModuleIndex};
use crate::fs::tree::{Meta, Node, NodeKind, Tree};
use crate::input::layerdef::{glob, DebianSource, LayerDef, Restart, StripRules};
use crate::util::error::{EnvError, InputError};
use crate::util::exec::Cmd;

/// Where declared services live in the image: one directory per service with
/// an executable `run` and a `restart` policy file (`always` or `no`).
pub const SERVICES_DIR: &str = "etc/kiln/services";

/// Files of this name in a `[files]` directory are not copied: they only keep
/// an otherwise empty directory in git.
pub const KEEP_PLACEHOLDER: &str = ".keep";

/// Read a layer's `[files]` directory into a tree with normalised metadata and
/// the layer's overrides applied. Symlinks are stored, never followed; one
/// whose target climbs out of the directory is an error naming it.
pub fn files_tree(def: &LayerDef, dir: &Path, sde: i64) -> Result<Tree, InputError> {
    let mut tree = read_dir_tree(dir, sde)?;
    // Overrides, in file order; each must match something.
    for o in &def.overrides {
        let m = glob(&o.path)
            .map_err(|e| InputError::file(def.file.display().to_string(), e.to_string()))?;
        let mut hit = false;
        let paths: Vec<String> = tree
            .iter()
            .filter(|(p, _)| m.is_match(p))
            .map(|(p, _)| p.to_string())
            .collect();
        for p in paths {
            if let Some(n) = tree.get_mut(&p) {
                hit = true;
                if let Some(mode) = o.mode {
                    n.meta.mode = mode;
                }
                if let Some(uid) = o.uid {
                    n.meta.uid = uid;
                }
                if let Some(gid) = o.gid {
                    n.meta.gid = gid;
                }
            }
        }
        if !hit {
            return Err(InputError {
                file: def.file.display().to_string(),
                line: Some(o.line),
                field: Some("override.path".into()),
                message: format!("{:?} matches no file under {}", o.path, dir.display()),
            });
        }
    }
    Ok(tree)
}

/// Read a directory into a tree: root-owned, modes normalised, times `sde`,
/// symlinks stored and checked not to escape `dir`, `.keep` files skipped.
pub fn read_dir_tree(dir: &Path, sde: i64) -> Result<Tree, InputError> {
    let mut tree = Tree::new(sde);
    walk(dir, dir, "", &mut tree, sde)?;
    Ok(tree)
}

fn walk(root: &Path, dir: &Path, rel: &str, tree: &mut Tree, sde: i64) -> Result<(), InputError> {
    let err = |p: &Path, m: String| InputError::file(p.display().to_string(), m);
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| err(dir, format!("cannot read directory: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(dir, format!("cannot read directory: {e}")))?;
    // Directory read order is the filesystem's whim: sort.
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let name = e
            .file_name()
            .into_string()
            .map_err(|n| err(&path, format!("file name {n:?} is not UTF-8")))?;
        if name == KEEP_PLACEHOLDER {
            continue;
        }
        let relp = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let md = std::fs::symlink_metadata(&path).map_err(|e| err(&path, e.to_string()))?;
        let ft = md.file_type();
        let exec = std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o100 != 0;
        let kind = if ft.is_symlink() {
            let target = std::fs::read_link(&path).map_err(|e| err(&path, e.to_string()))?;
            let target = target
                .to_str()
                .ok_or_else(|| err(&path, "symlink target is not UTF-8".into()))?
                .to_string();
            if escapes(&relp, &target) {
                return Err(err(
                    &path,
                    format!("symlink to {target:?} points outside the layer's source directory {}; it is not followed", root.display()),
                ));
            }
            NodeKind::Symlink(target)
        } else if ft.is_dir() {
            NodeKind::Dir
        } else if ft.is_file() {
            let data = std::fs::read(&path).map_err(|e| err(&path, e.to_string()))?;
            NodeKind::File(Arc::new(data))
        } else {
            return Err(err(
                &path,
                "only regular files, directories and symlinks can be layer sources".into(),
            ));
        };
        let mode = match kind {
            NodeKind::Dir => 0o755,
            NodeKind::Symlink(_) => 0o777,
            _ if exec => 0o755,
            _ => 0o644,
        };
        let is_dir = kind == NodeKind::Dir;
        tree.insert(
            &relp,
            Node {
                kind,
                meta: Meta::root(mode, sde),
            },
        )
        .map_err(|e| err(&path, e.to_string()))?;
        if is_dir {
            walk(root, &path, &relp, tree, sde)?;
        }
    }
    Ok(())
}

/// Whether a symlink at `link` (relative to the source root) with `target`
/// resolves, lexically, outside the source root. Absolute targets are paths
/// in the image, i.e. relative to the layer's root, and cannot escape.
pub fn escapes(link: &str, target: &str) -> bool {
    if target.starts_with('/') {
        return target.split('/').try_fold(0usize, step).is_none();
    }
    let base_depth = link.split('/').count() - 1;
    target.split('/').try_fold(base_depth, step).is_none()
}

fn step(depth: usize, comp: &str) -> Option<usize> {
    match comp {
        "" | "." => Some(depth),
        ".." => depth.checked_sub(1),
        _ => Some(depth + 1),
    }
}

/// Render a layer's `[[service]]` declarations into the tree.
pub fn add_services(def: &LayerDef, tree: &mut Tree, sde: i64) -> Result<()> {
    let dmeta = Meta::root(0o755, sde);
    for s in &def.services {
        let quoted: Vec<String> = s
            .command
            .iter()
            .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
            .collect();
        let run = format!(
            "#!/bin/sh\n# Service {:?}, declared in {} (generated by kiln).\nexec {}\n",
            s.name,
            def.name,
            quoted.join(" ")
        );
        let restart = match s.restart {
            Restart::Always => "always\n",
            Restart::No => "no\n",
        };
        for (file, data, mode) in [
            ("run", run.into_bytes(), 0o755),
            ("restart", restart.as_bytes().to_vec(), 0o644),
        ] {
            tree.insert_with_parents(
                &format!("{SERVICES_DIR}/{}/{file}", s.name),
                Node {
                    kind: NodeKind::File(Arc::new(data)),
                    meta: Meta::root(mode, sde),
                },
                &dmeta,
            )?;
        }
    }
    Ok(())
}

/// The host's apt sources for a suite (and its -updates/-security suites), as
/// one-line `deb` entries, for mmdebstrap's "use the host's sources" default.
pub fn host_sources(suite: &str, components: &[String]) -> Option<String> {
    let mut files: Vec<std::path::PathBuf> = vec!["/etc/apt/sources.list".into()];
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    let mut lines = BTreeSet::new();
    let comps = components.join(" ");
    let family = |s: &str| s == suite || s.strip_prefix(suite).is_some_and(|r| r.starts_with('-'));
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        if f.extension().is_some_and(|e| e == "sources") {
            for stanza in text.split("\n\n") {
                let field = |name: &str| {
                    stanza.lines().find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.trim()
                            .eq_ignore_ascii_case(name)
                            .then(|| v.trim().to_string())
                    })
                };
                if !field("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb")) {
                    continue;
                }
                let signed = field("Signed-By")
                    .map(|s| format!("[signed-by={s}] "))
                    .unwrap_or_default();
                for uri in field("URIs").unwrap_or_default().split_whitespace() {
                    for s in field("Suites")
                        .unwrap_or_default()
                        .split_whitespace()
                        .filter(|s| family(s))
                    {
                        lines.insert(format!("deb {signed}{uri} {s} {comps}"));
                    }
                }
            }
        } else if f.extension().is_some_and(|e| e == "list") {
            for l in text
                .lines()
                .map(str::trim)
                .filter(|l| l.starts_with("deb "))
            {
                let mut words: Vec<&str> = l.split_whitespace().skip(1).collect();
                let opts = if words.first().is_some_and(|w| w.starts_with('[')) {
                    let end = words.iter().position(|w| w.ends_with(']')).unwrap_or(0);
                    let o = words[..=end].join(" ");
                    words.drain(..=end);
                    format!("{o} ")
                } else {
                    String::new()
                };
                if let [uri, s, ..] = words.as_slice() {
                    if family(s) {
                        lines.insert(format!("deb {opts}{uri} {s} {comps}"));
                    }
                }
            }
        }
    }
    (!lines.is_empty()).then(|| lines.into_iter().collect::<Vec<_>>().join("\n") + "\n")
}

/// Name of the host-sources file kiln hands mmdebstrap; it lands in the
/// root as `/etc/apt/sources.list.d/0000debian.list`, where package layers'
/// apt finds it.
pub const SOURCES_FILE_NAME: &str = "debian.list";

/// Where apt keeps downloaded packages, in the tree mmdebstrap produces.
const APT_ARCHIVES: &str = "var/cache/apt/archives";

/// A Debian package that went into a layer: what the SBOM and `kiln inspect` list.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct DebPackage {
    /// Package name.
    pub name: String,
    /// Version, epoch included (`1:2.3-4`).
    pub version: String,
    /// Debian architecture (`amd64`, `all`).
    pub architecture: String,
    /// `sha256:` of the .deb file.
    pub sha256: String,
    /// Where apt fetched it from (mirror + the index's `Filename:`).
    #[serde(default)]
    pub download: Option<String>,
}

/// `busybox-static_1%3a1.35.0-4+b3_amd64.deb` → (name, version, architecture);
/// apt writes the epoch's colon as `%3a` in file names.
pub fn parse_deb_filename(file: &str) -> Option<(String, String, String)> {
    let stem = file.strip_suffix(".deb")?;
    let mut parts = stem.splitn(3, '_');
    let (name, version, arch) = (parts.next()?, parts.next()?, parts.next()?);
    if name.is_empty() || version.is_empty() || arch.is_empty() {
        return None;
    }
    Some((
        name.to_string(),
        version.replace("%3a", ":").replace("%3A", ":"),
        arch.to_string(),
    ))
}

/// Where apt keeps its package indexes, in the tree mmdebstrap produces.
const APT_LISTS: &str = "var/lib/apt/lists";

/// Fill in each package's download location from apt's `Packages` indexes
/// (deb822 stanzas: `Package`, `Version`, `Architecture`, `Filename`,
/// `SHA256`), check its .deb against the index's SHA256, and take the
/// indexes out of the tree (mmdebstrap would have removed them).
fn locate_debs(tree: &mut Tree, debs: &mut [DebPackage]) -> Result<()> {
    let lists: Vec<(String, String)> = tree
        .children(APT_LISTS)
        .filter(|(name, _, n)| matches!(n.kind, NodeKind::File(_)) && *name != "lock")
        .map(|(name, path, _)| (name.to_string(), path.to_string()))
        .collect();
    for (name, path) in lists {
        if let (Some(NodeKind::File(data)), Some((base, _))) =
            (tree.get(&path).map(|n| &n.kind), name.split_once("_dists_"))
        {
            if name.ends_with("_Packages") {
                let mirror = format!("http://{}/", base.replace('_', "/"));
                let text = String::from_utf8_lossy(data);
                for stanza in text.split("\n\n") {
                    let field = |k: &str| {
                        stanza.lines().find_map(|l| {
                            l.strip_prefix(k)
                                .and_then(|v| v.strip_prefix(':'))
                                .map(|v| v.trim().to_string())
                        })
                    };
                    let (Some(pkg), Some(ver), Some(arch), Some(file)) = (
                        field("Package"),
                        field("Version"),
                        field("Architecture"),
                        field("Filename"),
                    ) else {
                        continue;
                    };
                    for d in debs
                        .iter_mut()
                        .filter(|d| d.name == pkg && d.version == ver && d.architecture == arch)
                    {
                        if let Some(want) = field("SHA256") {
                            if d.sha256 != format!("sha256:{want}") {
                                bail!(crate::util::error::CheckFailed {
                                    message: format!("{pkg} {ver}: the downloaded .deb hashes to {}, the archive index says sha256:{want}", d.sha256)
                                });
                            }
                        }
                        d.download = Some(format!("{mirror}{file}"));
                    }
                }
            }
        }
        tree.remove(&path);
    }
    let dirs: Vec<String> = tree
        .children(APT_LISTS)
        .filter(|(n, _, node)| node.kind == NodeKind::Dir && *n != "partial")
        .map(|(_, p, _)| p.to_string())
        .collect();
    for d in dirs {
        tree.remove(&d);
    }
    Ok(())
}

/// Take the downloaded .deb files out of a tree (they never ship) and list them.
fn take_debs(tree: &mut Tree, cache: &Path, tmp: &Path) -> Result<Vec<DebPackage>> {
    let mut out = Vec::new();
    let debs: Vec<(String, String)> = tree
        .children(APT_ARCHIVES)
        .filter(|(name, _, _)| name.ends_with(".deb"))
        .map(|(name, path, _)| (name.to_string(), path.to_string()))
        .collect();
    for (name, path) in debs {
        if let (Some((pkg, version, architecture)), Some(NodeKind::File(data))) =
            (parse_deb_filename(&name), tree.get(&path).map(|n| &n.kind))
        {
            let sha256 = crate::fs::layer::sha256_digest(data);
            cache_deb(cache, tmp, &name, data)?;
            out.push(DebPackage {
                name: pkg,
                version,
                architecture,
                sha256,
                download: None,
            });
        }
        tree.remove(&path);
    }
    out.sort();
    Ok(out)
}

/// A file removed when dropped.
struct TempPath(std::path::PathBuf);

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The download cache (`STORE/debs/`): each .deb under apt's own file name
/// (`name_version_arch.deb`), the layout of `/var/cache/apt/archives`, so the
/// same directory serves mmdebstrap (seeded into its archive) and package
/// layers (bind-mounted as the chroot's archive). apt checks every cached
/// file against the archive index's SHA256 before using it; the sha256 of
/// each one a layer used is recorded in the layer, the lock and the SBOM.
fn cache_deb(cache: &Path, tmp: &Path, file_name: &str, data: &[u8]) -> Result<()> {
    std::fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let dest = cache.join(file_name);
    if !dest.exists() {
        crate::store::write_atomic(tmp, &dest, data)?;
    }
    Ok(())
}

/// Unpack Debian packages with mmdebstrap into a tree (times clamped to
/// `sde` when it is given; else the caller clamps them), with the list of packages it downloaded (all of them, the
/// dependencies and the Essential set included).
pub fn debian_tree(
    src: &DebianSource,
    locked: Option<&[crate::input::lock::LockedPackage]>,
    sde: Option<i64>,
    tmp: &Path,
    deb_cache: &Path,
) -> Result<(Tree, Vec<DebPackage>)> {
    let mut cmd = Cmd::new("mmdebstrap")
        .arg(format!("--variant={}", src.variant))
        .arg("--mode=auto")
        .arg("--format=tar")
        .arg("--quiet")
        .arg(format!("--architectures={}", src.architecture))
        .arg(format!("--components={}", src.components.join(",")))
        .arg(format!("--include={}", src.packages.join(",")))
        // Keep the .debs and indexes in the tarball: kiln lists the packages
        // with their checksums and locations (SBOM), then drops both.
        .arg("--skip=cleanup/apt")
        .arg(&src.suite)
        .arg("-");
    // mmdebstrap clamps its tarball's times to SOURCE_DATE_EPOCH; without
    // one it uses the clock, and kiln clamps to the derived epoch later.
    cmd = match sde {
        Some(e) => cmd.env("SOURCE_DATE_EPOCH", e.to_string()),
        None => cmd.env_remove("SOURCE_DATE_EPOCH"),
    };
    let mut _prefs_file = None;
    // With a lock, seed apt's archive cache with the locked packages that
    // kiln's download cache holds: apt checks them against the index and
    // does not fetch them again. (Only those: whatever is in the archive
    // cache afterwards is what the layer is made of.)
    if let Some(locked) = locked {
        let seeded: Vec<String> = locked
            .iter()
            .map(|p| crate::layers::apt::deb_file_name(&p.name, &p.version, &p.architecture))
            .filter(|f| deb_cache.join(f).is_file())
            .map(|f| {
                format!(
                    "'{}'",
                    deb_cache
                        .join(f)
                        .display()
                        .to_string()
                        .replace('\'', r"'\''")
                )
            })
            .collect();
        // Pin every locked version (apt_preferences), only while installing.
        let prefs = tmp.join(format!("kiln-lock-{}.pref", std::process::id()));
        std::fs::write(&prefs, crate::input::lock::apt_preferences(locked))?;
        _prefs_file = Some(TempPath(prefs.clone()));
        cmd = cmd
            .arg(format!(
                "--setup-hook=mkdir -p \"$1/etc/apt/preferences.d\" && cp '{}' \"$1/{}\"",
                prefs.display(),
                crate::input::lock::APT_PREFERENCES
            ))
            .arg(format!(
                "--customize-hook=rm -f \"$1/{}\"",
                crate::input::lock::APT_PREFERENCES
            ));
        if !seeded.is_empty() {
            cmd = cmd.arg(format!(
                "--setup-hook=mkdir -p \"$1/var/cache/apt/archives\" && cp {} \"$1/var/cache/apt/archives/\"",
                seeded.join(" ")
            ));
        }
    }
    // Keep the sources file alive until mmdebstrap is done.
    let _sources;
    match &src.mirror {
        Some(m) => cmd = cmd.arg(m),
        None => {
            if let Some(text) = host_sources(&src.suite, &src.components) {
                // mmdebstrap copies a sources file given by path into the
                // root as /etc/apt/sources.list.d/0000NAME: a fixed name (in
                // a fresh directory), so that the root does not change from
                // one build to the next.
                let d = tempfile::Builder::new()
                    .prefix("kiln-sources-")
                    .tempdir_in(tmp)?;
                let f = d.path().join(SOURCES_FILE_NAME);
                std::fs::write(&f, text)?;
                cmd = cmd.arg(&f);
                _sources = d;
            }
        }
    }
    let out = cmd.run().map_err(|e| {
        let text = format!("{e:#}");
        if locked.is_some() && text.contains("was not found") {
            let what = text
                .lines()
                .find(|l| l.contains("was not found"))
                .unwrap_or("")
                .trim()
                .to_string();
            anyhow::Error::new(EnvError::new(format!(
                "a locked package version cannot be had from the mirror: {what}"
            )))
        } else if crate::util::error::exit_code(&e) == crate::util::error::EXIT_ENVIRONMENT {
            e
        } else {
            anyhow::Error::new(EnvError::new(format!("{e:#}"))).context(format!(
                "unpacking Debian packages {} from {} failed",
                src.packages.join(", "),
                src.suite
            ))
        }
    })?;
    let mut tree = crate::fs::layer::read_tar(out.stdout.as_slice(), sde.unwrap_or(i64::MAX))
        .context("reading mmdebstrap's tarball")?;
    let mut debs = take_debs(&mut tree, deb_cache, tmp)?;
    locate_debs(&mut tree, &mut debs)?;
    Ok((tree, debs))
}

/// What stripping did, for the progress report.
#[derive(Debug, Default, Clone, Copy)]
pub struct StripStats {
    /// Entries removed by globs.
    pub deleted: usize,
    /// Kernel modules removed.
    pub modules_removed: usize,
    /// Kernel modules kept.
    pub modules_kept: usize,
}

/// Apply a layer's strip rules to an unpacked tree.
pub fn strip(tree: &mut Tree, rules: &StripRules) -> Result<StripStats> {
    let mut stats = StripStats::default();
    let (delete, keep) = rules.matchers();
    let before = tree.len();
    // A kept path keeps its ancestors: `delete = ["**"]` with `keep = ["bin/busybox"]`
    // leaves `bin/` and `bin/busybox`.
    let mut kept: BTreeSet<String> = BTreeSet::new();
    for (p, _) in tree.iter() {
        if keep.iter().any(|g| g.is_match(p)) {
            let mut cur = Some(p);
            while let Some(c) = cur {
                if !kept.insert(c.to_string()) {
                    break;
                }
                cur = crate::fs::tree::parent(c);
            }
        }
    }
    tree.retain(|p, _| kept.contains(p) || !delete.iter().any(|g| g.is_match(p)));
    stats.deleted = before - tree.len();

    if let Some(wanted) = &rules.keep_modules {
        let idx = ModuleIndex::new(tree)?;
        let keep: BTreeSet<String> = idx
            .closure(wanted)?
            .iter()
            .filter_map(|m| idx.path_of(&m.name).map(str::to_string))
            .collect();
        let doomed: Vec<String> = tree
            .iter()
            .filter(|(p, n)| {
                is_module_path(p) && matches!(n.kind, NodeKind::File(_)) && !keep.contains(*p)
            })
            .map(|(p, _)| p.to_string())
            .collect();
        stats.modules_removed = doomed.len();
        stats.modules_kept = keep.len();
        for p in doomed {
            tree.remove(&p);
        }
        prune_empty_dirs(tree, &format!("{}/kernel", idx.base));
        if tree.get(&format!("{}/modules.dep.bin", idx.base)).is_some() {
            // depmod ran in the packages' maintainer scripts: its indexes
            // (which libkmod, hence udev and systemd, require in binary form)
            // stay. They cover a superset of the kept modules; lookups of
            // removed ones fail as "not found", kept ones resolve unchanged
            // since their dependencies were kept with them.
        } else {
            // Unpacked only (variant extract): no indexes at all. Write the
            // text modules.dep that busybox modprobe reads.
            let kept_idx = ModuleIndex::new(tree)?;
            let all: Vec<String> = kept_idx.modules.keys().cloned().collect();
            let dep = kept_idx.modules_dep(&kept_idx.closure(&all)?)?;
            let mtime = tree.get(&idx.base).map_or(0, |n| n.meta.mtime);
            tree.insert(
                &format!("{}/modules.dep", idx.base),
                Node {
                    kind: NodeKind::File(Arc::new(dep.into_bytes())),
                    meta: Meta::root(0o644, mtime),
                },
            )?;
        }
    }
    Ok(stats)
}

/// Remove directories under `top` that hold nothing but (empty) directories.
fn prune_empty_dirs(tree: &mut Tree, top: &str) {
    loop {
        let empty: Vec<String> = tree
            .iter()
            .filter(|(p, n)| {
                p.starts_with(top) && n.kind == NodeKind::Dir && tree.children(p).next().is_none()
            })
            .map(|(p, _)| p.to_string())
            .collect();
        if empty.is_empty() {
            break;
        }
        for p in empty {
            tree.remove(&p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb_file_names() {
        assert_eq!(
            parse_deb_filename("busybox-static_1%3a1.35.0-4+b3_amd64.deb"),
            Some((
                "busybox-static".into(),
                "1:1.35.0-4+b3".into(),
                "amd64".into()
            ))
        );
        assert_eq!(
            parse_deb_filename("tzdata_2024a-0+deb12u1_all.deb").map(|p| p.2),
            Some("all".into())
        );
        assert_eq!(parse_deb_filename("lock"), None);
        assert_eq!(parse_deb_filename("x_1.deb"), None);
    }

    #[test]
    fn symlink_escape_table() {
        for (link, target, bad) in [
            ("a", "b", false),
            ("a", "../b", true),
            ("d/a", "../b", false),
            ("d/a", "../../b", true),
            ("d/a", "/usr/bin/x", false),
            ("d/a", "/../etc", true),
            ("d/e/a", "./../x/../../y", false),
            ("d/e/a", "../x/../../../y", true),
        ] {
            assert_eq!(escapes(link, target), bad, "{link} -> {target}");
        }
    }

    #[test]
    fn strip_keeps_modules_with_dependencies() {
        let mut t = crate::fs::kmod::tests::module_tree(&[
            ("net/virtio_net.ko", "virtio_net", "net_failover"),
            ("net/net_failover.ko", "net_failover", "failover"),
            ("core/failover.ko", "failover", ""),
            ("sound/snd.ko", "snd", ""),
        ]);
        let d = Meta::root(0o755, 0);
        t.insert_with_parents(
            "usr/share/doc/x/copyright",
            Node {
                kind: NodeKind::File(Arc::new(vec![])),
                meta: d.clone(),
            },
            &d,
        )
        .unwrap();
        t.insert_with_parents(
            "usr/share/doc/keep/README",
            Node {
                kind: NodeKind::File(Arc::new(vec![])),
                meta: d.clone(),
            },
            &d,
        )
        .unwrap();
        let rules = StripRules {
            delete: vec!["usr/share/doc/**".into()],
            keep: vec!["usr/share/doc/keep/README".into()],
            keep_modules: Some(vec!["virtio_net".into()]),
        };
        let st = strip(&mut t, &rules).unwrap();
        assert!(t.get("usr/share/doc/x").is_none());
        assert!(t.get("usr/share/doc/keep/README").is_some());
        assert!(
            t.get("lib/modules/6.1.0-test/kernel/sound").is_none(),
            "empty dir pruned"
        );
        assert_eq!((st.modules_kept, st.modules_removed), (3, 1));
        let NodeKind::File(dep) = &t.get("lib/modules/6.1.0-test/modules.dep").unwrap().kind else {
            panic!()
        };
        let dep = String::from_utf8_lossy(dep);
        assert!(
            dep.contains(
                "kernel/net/virtio_net.ko: kernel/net/net_failover.ko kernel/core/failover.ko"
            ),
            "{dep}"
        );
    }
}
