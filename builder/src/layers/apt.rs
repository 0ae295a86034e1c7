//! Package layers: Debian packages installed with apt over the composed lower
//! layers, kept as the difference.
//!
//! 1. The lower root is written out as a real directory in the store's tmp
//!    directory ([`rootdir::materialize`]), owners, devices and file
//!    capabilities included.
//! 2. A thread of kiln enters a new mount namespace (`unshare(CLONE_NEWNS)`,
//!    `/` made private, so that no mount reaches the host), mounts a minimal
//!    `/dev` (a tmpfs with the host's null, zero, full, random, urandom and
//!    tty bound in), `/proc`, a read-only `/sys`, tmpfs on `/tmp`, `/run`,
//!    `/var/lib/apt/lists` and `/var/cache/apt`, the store's download cache
//!    (`STORE/debs/`) on `/var/cache/apt/archives` and the host's
//!    `/etc/resolv.conf`, then runs `chroot ROOT apt-get update` and
//!    `apt-get install` with a `policy-rc.d` that forbids starting services
//!    (invoke-rc.d's policy interface: exit 101, "action forbidden").
//!    Maintainer scripts run. When the thread ends, its namespace and every
//!    mount in it are gone; the host never saw them.
//! 3. The directory is read back ([`rootdir::read_root`]), what changes on
//!    every run is reset to the lower layer's state ([`is_volatile`]), and the
//!    layer is [`crate::fs::tree::diff`] of the two: new and changed files, and
//!    `.wh.` whiteouts for removed ones. The dpkg database
//!    (`var/lib/dpkg/status`, `info/`) is kept, so `dpkg -l` in the image is
//!    true.
//!
//! The packages installed come back as [`InstalledPackage`]s (name, version,
//! architecture, .deb file and its sha256), for lock files and SBOMs.

mod chroot;
pub mod rootdir;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use chroot::{kill_leftovers, AptFrom, Chroot};

use crate::fs::tree::{Meta, Node, NodeKind, Tree};
use crate::input::epoch::EpochRule;
use crate::input::layerdef::DebianSource;
use crate::model::deb::{deb_file_name, dpkg_status, installed_between};
use crate::store::Store;
use crate::util::error::{EnvError, InputError};
use crate::util::progress::Transfer;

/// invoke-rc.d's policy hook (Debian Policy 9.3.3, `/usr/sbin/policy-rc.d`):
/// exit status 101 means "action forbidden", so no maintainer script starts a
/// service in the chroot.
const POLICY_RC_D: &str = "usr/sbin/policy-rc.d";
const POLICY_RC_D_SCRIPT: &str =
    "#!/bin/sh\n# kiln: services are not started while packages are installed.\nexit 101\n";

/// One package that a layer installed or changed, with the `.deb` it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstalledPackage {
    /// Package name.
    pub package: String,
    /// Version, exactly as dpkg records it (with an epoch when it has one).
    pub version: String,
    /// Debian architecture (`amd64`, `all`).
    pub architecture: String,
    /// File name of the `.deb` in the download cache ([`Store::deb_cache`]).
    pub deb: String,
    /// `sha256:` of that `.deb`; `None` when the cache no longer holds it.
    pub sha256: Option<crate::util::digest::Digest>,
}

/// Wall-clock time of each step of a package layer build.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Timings {
    /// Writing the lower root out as a directory.
    pub materialize: Duration,
    /// `apt-get update` and `apt-get install` in the chroot.
    pub apt: Duration,
    /// Reading the directory back into a tree.
    pub read_back: Duration,
    /// Resetting volatile files, the diff against the lower root, and hashing the .debs.
    pub diff: Duration,
}

/// What [`install`] produced.
#[derive(Debug, Clone)]
pub struct PackagesLayer {
    /// The layer: what apt changed in the lower root.
    pub tree: Tree,
    /// The packages it installed or changed, by name.
    pub installed: Vec<InstalledPackage>,
    /// Where the time went.
    pub timings: Timings,
    /// The layer's SOURCE_DATE_EPOCH: every time in `tree` is clamped to it.
    pub epoch: i64,
}

/// Install `src.packages` with apt over `lower` (the composed layers below)
/// and return the difference as a layer. Needs root (owners, device nodes,
/// mount namespaces); without it, an [`EnvError`] says so. `layer_file` (the
/// layer's `layer.toml`) is named when the lower layers cannot take packages.
#[allow(clippy::too_many_arguments)]
pub fn install(
    lower: &Tree,
    layer_file: &Path,
    src: &DebianSource,
    locked: Option<&[crate::input::lock::LockedPackage]>,
    rule: EpochRule,
    lower_epoch: Option<i64>,
    store: &Store,
    transfer: &Transfer,
) -> Result<PackagesLayer> {
    // Bad input is reported before the environment is looked at.
    if lower.resolve("usr/bin/dpkg").is_none() {
        return Err(InputError::file(
            layer_file.display().to_string(),
            "the layers below have no /usr/bin/dpkg: a package layer needs a Debian base whose \
             packages dpkg manages (a Debian minbase such as layers/base/debian)",
        )
        .into());
    }
    // A base that purged apt (`[strip] purge`) is installed into with the
    // host's apt, which runs dpkg in the chroot.
    let apt = match lower.resolve("usr/bin/apt-get") {
        Some(_) => AptFrom::Chroot,
        None => AptFrom::Host(crate::util::exec::find_program("apt-get").ok_or_else(|| {
            EnvError::new(format!(
                "the layers below {} have no apt (their base purged it), so kiln installs with \
                 the host's apt-get, which is not installed: install the Debian package `apt`",
                layer_file.display()
            ))
        })?),
    };
    if !nix::unistd::geteuid().is_root() {
        return Err(EnvError::new(
            "package layers install with apt in a chroot, which needs root: the lower root's \
             owners and device nodes are written out and mounts are made in a private mount \
             namespace; run kiln build as root (CI does)",
        )
        .into());
    }
    let debs = store.deb_cache();
    std::fs::create_dir_all(debs.join("partial"))
        .map_err(|e| EnvError::new(format!("cannot create {}: {e}", debs.display())))?;
    let tmp = store.tmp_dir()?;
    std::fs::create_dir_all(&tmp)
        .map_err(|e| EnvError::new(format!("cannot create {}: {e}", tmp.display())))?;
    // Removed when dropped, on every path out of here. The mounts never
    // existed outside the apt thread's namespace, so removal only ever sees
    // the materialised files.
    let work = tempfile::Builder::new()
        .prefix("kiln-apt-")
        .tempdir_in(&tmp)
        .with_context(|| format!("creating a directory in {}", tmp.display()))?;
    let root = work.path().join("root");
    let mut timings = Timings::default();

    let t = Instant::now();
    rootdir::materialize(lower, &root)
        .with_context(|| format!("writing the lower root out to {}", root.display()))?;
    let mut touched = prepare_mountpoints(&root)?;
    if let Some(locked) = locked {
        // Pin the locked versions while apt runs; reset with the rest.
        let prefs = root.join(crate::input::lock::APT_PREFERENCES);
        // A base that purged apt has no /etc/apt/preferences.d: what is
        // made here for the pins is removed with them.
        if let Some(dir) = crate::fs::tree::parent(crate::input::lock::APT_PREFERENCES) {
            make_dirs(&root, dir, &mut touched)?;
        }
        std::fs::write(&prefs, crate::input::lock::apt_preferences(locked))
            .with_context(|| format!("writing {}", prefs.display()))?;
        touched.push(crate::input::lock::APT_PREFERENCES.into());
    }
    timings.materialize = t.elapsed();

    let t = Instant::now();
    let chroot = Chroot {
        apt,
        root: root.clone(),
        debs: debs.clone(),
        lists_kept: store.apt_lists(),
        transfer: transfer.clone(),
        tmp: tmp.clone(),
        src: src.clone(),
        sde: rule.script_epoch(lower_epoch),
    };
    let result = std::thread::Builder::new()
        .name("kiln-apt".into())
        .spawn(move || chroot.run())
        .context("starting the apt thread")?
        .join()
        .map_err(|_| crate::internal_err!("the apt thread panicked"))?;
    kill_leftovers(&root);
    result?;
    timings.apt = t.elapsed();

    let t = Instant::now();
    let mut upper = rootdir::read_root(&root, rule.read_clamp())
        .with_context(|| format!("reading back {}", root.display()))?;
    timings.read_back = t.elapsed();
    let installed = installed_packages(lower, &upper, &debs)?;
    let epoch = match rule.fixed {
        Some(e) => e,
        None => rule.layer_epoch(
            lower_epoch,
            crate::input::epoch::newest_deb_date(&debs, installed.iter().map(|p| p.deb.as_str()))?,
        ),
    };
    upper.clamp_mtimes(epoch);

    let t = Instant::now();
    for p in &touched {
        reset_path(&mut upper, lower, p);
    }
    let reset: Vec<&str> = upper
        .iter()
        .filter(|(p, n)| is_volatile(p, n) && lower.get(p) != Some(*n))
        .map(|(p, _)| p)
        .collect();
    tracing::debug!(paths = ?reset, "reset to the lower layer's state (volatile)");
    reset_volatile(&mut upper, lower);
    // A directory that only held kiln's own files for a while (the lock's
    // apt preferences, a mount point) keeps the lower layer's time: with a
    // derived SOURCE_DATE_EPOCH newer than the lower one, the visit would
    // otherwise show (a locked build would differ from an unlocked one).
    for p in &touched {
        if let Some(dir) = crate::fs::tree::parent(p) {
            restore_unchanged_dir_time(&mut upper, lower, dir);
        }
    }
    keep_symlink_modes(&mut upper, lower);
    let tree = crate::fs::tree::diff(lower, &upper);
    timings.diff = t.elapsed();
    drop(work);
    tracing::info!(
        materialize = ?timings.materialize,
        apt = ?timings.apt,
        read_back = ?timings.read_back,
        diff = ?timings.diff,
        packages = installed.len(),
        entries = tree.len(),
        "package layer built"
    );
    Ok(PackagesLayer {
        tree,
        installed,
        epoch,
        timings,
    })
}

/// Make sure every mount point and kiln's own files exist in the
/// materialised root, and return the paths created or replaced there, which
/// are reset to the lower root's state after the install.
fn prepare_mountpoints(root: &Path) -> Result<Vec<String>> {
    let mut touched = Vec::new();
    for d in [
        "dev",
        "proc",
        "sys",
        "tmp",
        "run",
        "var/lib/apt/lists",
        "var/cache/apt",
        "usr/sbin",
    ] {
        make_dirs(root, d, &mut touched)?;
    }
    // resolv.conf: a regular file to bind the host's onto (a symlink, as
    // systemd-resolved leaves, would point into the chroot's /run).
    let resolv = root.join("etc/resolv.conf");
    if !std::fs::symlink_metadata(&resolv).is_ok_and(|m| m.is_file()) {
        if std::fs::symlink_metadata(&resolv).is_ok() {
            std::fs::remove_file(&resolv)
                .with_context(|| format!("replacing {}", resolv.display()))?;
        }
        std::fs::write(&resolv, b"").with_context(|| format!("creating {}", resolv.display()))?;
        touched.push("etc/resolv.conf".into());
    }
    let policy = root.join(POLICY_RC_D);
    if std::fs::symlink_metadata(&policy).is_ok() {
        std::fs::remove_file(&policy).with_context(|| format!("replacing {}", policy.display()))?;
    }
    std::fs::write(&policy, POLICY_RC_D_SCRIPT)
        .and_then(|()| {
            std::fs::set_permissions(&policy, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        })
        .with_context(|| format!("writing {}", policy.display()))?;
    touched.push(POLICY_RC_D.into());
    Ok(touched)
}

/// Make directory `rel` (and its missing parents) in the materialised root,
/// adding each one made to `touched`, which are reset to the lower root's
/// state (removed) after the install.
fn make_dirs(root: &Path, rel: &str, touched: &mut Vec<String>) -> Result<()> {
    let mut cur = String::new();
    for comp in rel.split('/') {
        cur = if cur.is_empty() {
            comp.to_string()
        } else {
            format!("{cur}/{comp}")
        };
        let p = root.join(&cur);
        match std::fs::symlink_metadata(&p) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => {
                anyhow::bail!(crate::input_err!(
                    format!("/{cur}"),
                    "not a directory in the lower layers; apt cannot run there"
                ))
            }
            Err(_) => {
                std::fs::create_dir(&p).with_context(|| format!("creating {}", p.display()))?;
                touched.push(cur.clone());
            }
        }
    }
    Ok(())
}

/// Give `dir` the lower layer's time when its entries are the same names as
/// there.
fn restore_unchanged_dir_time(upper: &mut Tree, lower: &Tree, dir: &str) {
    let names =
        |t: &Tree| -> Vec<String> { t.children(dir).map(|(n, _, _)| n.to_string()).collect() };
    let Some(l) = lower.get(dir).filter(|n| n.kind == NodeKind::Dir) else {
        return;
    };
    if names(upper) != names(lower) {
        return;
    }
    if let Some(u) = upper.get_mut(dir).filter(|n| n.kind == NodeKind::Dir) {
        u.meta.mtime = l.meta.mtime;
    }
}

/// Put `path` back the way `lower` has it (or remove it when `lower` has none).
fn reset_path(upper: &mut Tree, lower: &Tree, path: &str) {
    match lower.get(path) {
        Some(n) => {
            if let Some(u) = upper.get_mut(path) {
                if u.kind == NodeKind::Dir && n.kind == NodeKind::Dir {
                    u.meta = n.meta.clone();
                    return;
                }
            }
            upper.remove(path);
            let _ = upper.insert(path, n.clone());
        }
        None => {
            upper.remove(path);
        }
    }
}

/// Paths whose content changes on every run (logs, apt's lists and caches,
/// dpkg's and debconf's backup copies, ldconfig's inode cache), or that
/// belong to the build host rather than the image. Directories under
/// `var/log` stay (packages ship them and their daemons need them).
pub fn is_volatile(path: &str, node: &Node) -> bool {
    let under = |dir: &str| {
        path.strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
    };
    let name = crate::fs::tree::file_name(path);
    let dir = crate::fs::tree::parent(path).unwrap_or("");
    (under("var/log") && node.kind != NodeKind::Dir)
        || under("var/cache/apt")
        || under("var/lib/apt/lists")
        || (dir == "var/lib/dpkg" && name.ends_with("-old"))
        || (dir == "var/cache/debconf" && name.ends_with("-old"))
        || path == "var/cache/ldconfig/aux-cache"
        || path == "var/lib/dpkg/lock"
        || path == "var/lib/dpkg/lock-frontend"
        || path == "var/cache/apt"
        || under("tmp")
        || under("run")
}

/// Reset every volatile path ([`is_volatile`]) of `upper` to what `lower`
/// has there: removed when new, restored when changed or deleted.
pub fn reset_volatile(upper: &mut Tree, lower: &Tree) {
    upper.retain(|p, n| !is_volatile(p, n));
    for (p, n) in lower.iter() {
        if !p.is_empty() && is_volatile(p, n) {
            // A parent that apt removed stays removed with its contents.
            let _ = upper.insert(p, n.clone());
        }
    }
}

/// A symlink's permission bits are not stored by Linux (always 0777): keep
/// the lower layer's bits for a symlink apt did not change.
fn keep_symlink_modes(upper: &mut Tree, lower: &Tree) {
    let paths: Vec<(String, Meta)> = upper
        .iter()
        .filter_map(|(p, n)| match (&n.kind, lower.get(p)) {
            (NodeKind::Symlink(t), Some(l)) if l.kind == NodeKind::Symlink(t.clone()) => {
                let mut m = n.meta.clone();
                m.mode = l.meta.mode;
                Some((p.to_string(), m))
            }
            _ => None,
        })
        .collect();
    for (p, m) in paths {
        if let Some(n) = upper.get_mut(&p) {
            n.meta = m;
        }
    }
}

/// The packages a layer installed, from dpkg's status file before
/// (`lower`) and after (`upper`, the lower root with the layer applied),
/// each with its `.deb` in the download cache `debs` and that file's sha256.
/// Works for cached layers too, as long as the cache holds the files.
pub fn installed_packages(
    lower: &Tree,
    upper: &Tree,
    debs: &Path,
) -> Result<Vec<InstalledPackage>> {
    installed_from_status(&dpkg_status(lower), &dpkg_status(upper), debs)
}

/// [`installed_packages`] from the two status files' text.
pub fn installed_from_status(
    before: &str,
    after: &str,
    debs: &Path,
) -> Result<Vec<InstalledPackage>> {
    let mut out = Vec::new();
    for e in installed_between(before, after) {
        let deb = deb_file_name(&e.package, &e.version, &e.architecture);
        let path = debs.join(&deb);
        let sha256 = if path.is_file() {
            Some(crate::util::digest::Digest::of_file(&path)?)
        } else {
            tracing::warn!(package = %e.package, file = %path.display(), "the .deb is not in the download cache");
            None
        };
        out.push(InstalledPackage {
            package: e.package,
            version: e.version,
            architecture: e.architecture,
            deb,
            sha256,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{dir, file};

    #[test]
    fn lower_root_without_dpkg_is_bad_input_in_the_layer_file() {
        let store = tempfile::tempdir().unwrap();
        let src = DebianSource {
            suite: "bookworm".into(),
            variant: "apt".into(),
            packages: vec!["nginx".into()],
            mirror: None,
            components: vec!["main".into()],
            architecture: "amd64".into(),
        };
        let rule = EpochRule::choose(Some(0), None).unwrap();
        let err = install(
            &Tree::new(0),
            Path::new("layers/web/layer.toml"),
            &src,
            None,
            rule,
            None,
            &Store::new(store.path()),
            &Transfer::hidden(),
        )
        .unwrap_err();
        assert_eq!(
            crate::util::error::exit_code(&err),
            crate::util::error::EXIT_BAD_INPUT
        );
        let msg = err.to_string();
        assert!(
            msg.starts_with("layers/web/layer.toml: ") && msg.contains("/usr/bin/dpkg"),
            "{msg}"
        );
    }

    #[test]
    fn volatile_table() {
        for (path, is_dir, want) in [
            ("var/log/dpkg.log", false, true),
            ("var/log/apt/history.log", false, true),
            ("var/log/nginx", true, false),
            ("var/log", true, false),
            ("var/cache/apt/pkgcache.bin", false, true),
            ("var/cache/apt/archives/x.deb", false, true),
            (
                "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease",
                false,
                true,
            ),
            ("var/lib/apt/lists", true, false),
            ("var/lib/apt/extended_states", false, false),
            ("var/lib/dpkg/status", false, false),
            ("var/lib/dpkg/status-old", false, true),
            ("var/lib/dpkg/diversions-old", false, true),
            ("var/lib/dpkg/info/nginx.list", false, false),
            ("var/lib/dpkg/info/x-old", false, false),
            ("var/cache/debconf/config.dat", false, false),
            ("var/cache/debconf/config.dat-old", false, true),
            ("var/cache/ldconfig/aux-cache", false, true),
            ("etc/ld.so.cache", false, false),
            ("tmp/x", false, true),
            ("tmp", true, false),
            ("usr/sbin/nginx", false, false),
            ("varlog/x", false, false),
        ] {
            let node = if is_dir { dir() } else { file("") };
            assert_eq!(is_volatile(path, &node), want, "{path}");
        }
    }

    #[test]
    fn reset_volatile_restores_lower_state() {
        let d = Meta::root(0o755, 0);
        let mut lower = Tree::new(0);
        lower
            .insert_with_parents("var/log/old.log", file("old"), &d)
            .unwrap();
        lower
            .insert_with_parents("var/lib/dpkg/status", file("a"), &d)
            .unwrap();
        let mut upper = lower.clone();
        upper.remove("var/log/old.log");
        upper
            .insert_with_parents("var/log/dpkg.log", file("new"), &d)
            .unwrap();
        upper
            .insert_with_parents("var/log/nginx", dir(), &d)
            .unwrap();
        upper.insert("var/lib/dpkg/status", file("b")).unwrap();
        upper.insert("var/lib/dpkg/status-old", file("a")).unwrap();
        reset_volatile(&mut upper, &lower);
        let layer = crate::fs::tree::diff(&lower, &upper);
        let paths: Vec<&str> = layer.iter().map(|(p, _)| p).collect();
        assert_eq!(
            paths,
            [
                "",
                "var",
                "var/lib",
                "var/lib/dpkg",
                "var/lib/dpkg/status",
                "var/log",
                "var/log/nginx"
            ]
        );
    }
}
