//! `[strip] purge`: removing whole Debian packages from an unpacked root the
//! way `dpkg --purge --force-depends` does, in the tree: the files the
//! package's `info/PKG.list` names (unless another installed package lists
//! them too), its `info/PKG.*` control files, its trigger interests and its
//! stanza in `status`. The dpkg database stays true: `dpkg -l` in the image
//! does not list what is not there, and a packages layer above installs a
//! purged package again when something it installs needs it (apt sees the
//! missing dependency).
//!
//! Paths in `.list` files are compared in merged-/usr form
//! ([`crate::fs::usrmerge::canonical`]): a package that lists `/bin/bash`
//! owns `usr/bin/bash`.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::fs::tree::{NodeKind, Tree};
use crate::fs::usrmerge::canonical;
use crate::model::deb::{field, parse_dpkg_status};

/// dpkg's database directory.
const ADMIN_DIR: &str = "var/lib/dpkg";

/// Why a purge failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PurgeError {
    /// The package is not installed in the tree.
    #[error("package {0:?} is not installed in the unpacked packages (dpkg's status does not list it as installed)")]
    NotInstalled(String),
}

/// What a purge removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PurgeStats {
    /// Packages removed from the database.
    pub packages: usize,
    /// Files and links removed.
    pub files: usize,
    /// Bytes of regular files removed.
    pub bytes: u64,
    /// Bytes of regular files removed, per package, in the order given.
    pub per_package: Vec<u64>,
}

fn text(tree: &Tree, path: &str) -> Option<String> {
    match &tree.get(path)?.kind {
        NodeKind::File(d) => Some(String::from_utf8_lossy(d).into_owned()),
        _ => None,
    }
}

fn put(tree: &mut Tree, path: &str, data: String) {
    if let Some(n) = tree.get_mut(path) {
        n.kind = NodeKind::File(Arc::new(data.into_bytes()));
    }
}

/// The `info/` base name of an installed package: `PKG` or, for
/// multi-arch packages, `PKG:ARCH` (whichever has a `.list`).
fn info_name(tree: &Tree, package: &str, arch: &str) -> String {
    let qualified = format!("{package}:{arch}");
    if tree
        .get(&format!("{ADMIN_DIR}/info/{qualified}.list"))
        .is_some()
    {
        qualified
    } else {
        package.to_string()
    }
}

/// Remove `packages` from `tree` (see the module documentation).
pub fn purge(tree: &mut Tree, packages: &[String]) -> Result<PurgeStats, PurgeError> {
    let mut stats = PurgeStats::default();
    if packages.is_empty() {
        return Ok(stats);
    }
    let status_path = format!("{ADMIN_DIR}/status");
    let status = text(tree, &status_path).unwrap_or_default();
    let entries = parse_dpkg_status(&status);
    let doomed: BTreeSet<&str> = packages.iter().map(String::as_str).collect();
    for p in packages {
        if !entries.iter().any(|e| &e.package == p && e.is_installed()) {
            return Err(PurgeError::NotInstalled(p.clone()));
        }
    }
    // What the packages that stay own, in merged-/usr form.
    let mut owned_by_others: BTreeSet<String> = BTreeSet::new();
    let mut purged_lists: Vec<(usize, String)> = Vec::new();
    for e in &entries {
        let name = info_name(tree, &e.package, &e.architecture);
        let list = text(tree, &format!("{ADMIN_DIR}/info/{name}.list")).unwrap_or_default();
        if let Some(i) = packages.iter().position(|p| p == &e.package) {
            purged_lists.push((i, list));
        } else {
            owned_by_others.extend(
                list.lines()
                    .map(|l| canonical(l.trim_start_matches('/')).into_owned()),
            );
        }
    }
    // Files and links first, then directories left empty, deepest first.
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    stats.per_package = vec![0; packages.len()];
    for (i, list) in &purged_lists {
        for line in list.lines() {
            let path = canonical(line.trim_start_matches('/')).into_owned();
            if path.is_empty() || owned_by_others.contains(&path) {
                continue;
            }
            match tree.get(&path).map(|n| &n.kind) {
                Some(NodeKind::Dir) => {
                    dirs.insert(path);
                }
                Some(kind) => {
                    if let NodeKind::File(d) = kind {
                        stats.bytes += d.len() as u64;
                        stats.per_package[*i] += d.len() as u64;
                    }
                    tree.remove(&path);
                    stats.files += 1;
                }
                None => {}
            }
        }
    }
    for d in dirs.iter().rev() {
        if tree.children(d).next().is_none() {
            tree.remove(d);
        }
    }
    // The database: control files, status stanzas, trigger interests.
    let info_prefixes: Vec<String> = entries
        .iter()
        .filter(|e| doomed.contains(e.package.as_str()))
        .map(|e| {
            format!(
                "{ADMIN_DIR}/info/{}.",
                info_name(tree, &e.package, &e.architecture)
            )
        })
        .collect();
    let info_files: Vec<String> = tree
        .iter()
        .filter(|(p, _)| info_prefixes.iter().any(|pre| p.starts_with(pre.as_str())))
        .map(|(p, _)| p.to_string())
        .collect();
    for p in info_files {
        tree.remove(&p);
    }
    let kept: Vec<&str> = status
        .split("\n\n")
        .filter(|stanza| !field(stanza, "Package").is_some_and(|p| doomed.contains(p)))
        .filter(|s| !s.trim().is_empty())
        .collect();
    put(tree, &status_path, kept.join("\n\n") + "\n");
    let interested = |pkg: &str| doomed.contains(pkg.split(':').next().unwrap_or(pkg));
    let triggers: Vec<String> = tree
        .children(&format!("{ADMIN_DIR}/triggers"))
        .map(|(_, p, _)| p.to_string())
        .collect();
    for t in triggers {
        let Some(body) = text(tree, &t) else { continue };
        let name = crate::fs::tree::file_name(&t);
        let lines: Vec<&str> = body
            .lines()
            .filter(|l| {
                // `File`: "PATH PACKAGE"; a trigger's file: "PACKAGE[/noawait]".
                let pkg = if name == "File" {
                    l.split_whitespace().nth(1).unwrap_or("")
                } else {
                    l.split('/').next().unwrap_or("")
                };
                !interested(pkg.trim())
            })
            .collect();
        if lines.len() != body.lines().count() {
            put(tree, &t, lines.iter().map(|l| format!("{l}\n")).collect());
        }
    }
    stats.packages = packages.len();
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::tree::{Meta, Node};

    fn file(tree: &mut Tree, path: &str, body: &str) {
        tree.insert_with_parents(
            path,
            Node {
                kind: NodeKind::File(Arc::new(body.as_bytes().to_vec())),
                meta: Meta::root(0o644, 0),
            },
            &Meta::root(0o755, 0),
        )
        .unwrap();
    }

    fn root() -> Tree {
        let mut t = Tree::new(0);
        file(
            &mut t,
            "var/lib/dpkg/status",
            "Package: apt\nStatus: install ok installed\nVersion: 3.0\nArchitecture: amd64\nDescription: x\n continued\n\n\
             Package: libapt-pkg7.0\nStatus: install ok installed\nVersion: 3.0\nArchitecture: amd64\n\n\
             Package: bash\nStatus: install ok installed\nVersion: 5.2\nArchitecture: amd64\n",
        );
        file(&mut t, "var/lib/dpkg/info/apt.list", "/.\n/usr\n/usr/bin\n/usr/bin/apt-get\n/usr/lib/apt\n/usr/lib/apt/methods\n/usr/lib/apt/methods/http\n/bin/shared\n");
        file(&mut t, "var/lib/dpkg/info/apt.md5sums", "x");
        file(
            &mut t,
            "var/lib/dpkg/info/apt-utils.list",
            "/usr/bin/apt-ftparchive\n",
        );
        file(
            &mut t,
            "var/lib/dpkg/info/libapt-pkg7.0:amd64.list",
            "/usr/lib/libapt-pkg.so\n",
        );
        file(
            &mut t,
            "var/lib/dpkg/info/bash.list",
            "/.\n/usr\n/usr/bin\n/usr/bin/bash\n/usr/bin/shared\n",
        );
        file(
            &mut t,
            "var/lib/dpkg/triggers/File",
            "/usr/lib/apt apt\n/usr/share/man bash/noawait\n",
        );
        file(
            &mut t,
            "var/lib/dpkg/triggers/ldconfig",
            "apt\nbash/noawait\n",
        );
        file(&mut t, "usr/bin/apt-get", "apt-get");
        file(&mut t, "usr/bin/bash", "bash");
        file(&mut t, "usr/bin/shared", "both");
        file(&mut t, "usr/lib/apt/methods/http", "http");
        file(&mut t, "usr/lib/libapt-pkg.so", "lib");
        t
    }

    #[test]
    fn purge_removes_files_database_entries_and_triggers() {
        let mut t = root();
        let st = purge(&mut t, &["apt".into(), "libapt-pkg7.0".into()]).unwrap();
        assert_eq!(st.packages, 2);
        for gone in [
            "usr/bin/apt-get",
            "usr/lib/apt",
            "usr/lib/libapt-pkg.so",
            "var/lib/dpkg/info/apt.list",
            "var/lib/dpkg/info/apt.md5sums",
            "var/lib/dpkg/info/libapt-pkg7.0:amd64.list",
        ] {
            assert!(t.get(gone).is_none(), "{gone}");
        }
        // Another package's files, shared paths (merged-/usr form) and a
        // package whose name only starts the same stay.
        for kept in [
            "usr/bin/bash",
            "usr/bin/shared",
            "usr/bin",
            "var/lib/dpkg/info/apt-utils.list",
        ] {
            assert!(t.get(kept).is_some(), "{kept}");
        }
        let status = text(&t, "var/lib/dpkg/status").unwrap();
        let names: Vec<String> = parse_dpkg_status(&status)
            .into_iter()
            .map(|e| e.package)
            .collect();
        assert_eq!(names, ["bash"]);
        assert_eq!(
            text(&t, "var/lib/dpkg/triggers/File").unwrap(),
            "/usr/share/man bash/noawait\n"
        );
        assert_eq!(
            text(&t, "var/lib/dpkg/triggers/ldconfig").unwrap(),
            "bash/noawait\n"
        );
    }

    #[test]
    fn purging_what_is_not_installed_is_named() {
        let mut t = root();
        assert_eq!(
            purge(&mut t, &["perl-base".into()]),
            Err(PurgeError::NotInstalled("perl-base".into()))
        );
    }
}
