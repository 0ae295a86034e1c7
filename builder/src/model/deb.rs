//! The Debian package model: the packages that went into a layer, apt's
//! `.deb` file names, and dpkg's status database (deb822 stanzas, as
//! `dpkg-query` reads them; Debian Policy §5).

use crate::fs::tree::{Node, NodeKind, Tree};
use crate::util::digest::Digest;

/// Where dpkg keeps its status database, relative to a root.
pub const DPKG_STATUS: &str = "var/lib/dpkg/status";

/// A Debian package that went into a layer: what the SBOM and `kiln inspect` list.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct DebPackage {
    /// Package name.
    pub name: String,
    /// Version, epoch included (`1:2.3-4`).
    pub version: String,
    /// Debian architecture (`amd64`, `all`).
    pub architecture: String,
    /// `sha256:` of the .deb file; `None`, written `NOASSERTION` (SPDX's
    /// word for it), when the download cache no longer held the .deb.
    #[serde(with = "noassertion")]
    pub sha256: Option<Digest>,
    /// Where apt fetched it from (mirror + the index's `Filename:`).
    #[serde(default)]
    pub download: Option<String>,
}

/// A .deb's `sha256:` digest or `NOASSERTION` where it is not known: the
/// textual form of [`DebPackage::sha256`] and of a lock file's pins; any
/// other string is refused where the record is read.
pub mod noassertion {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::util::digest::Digest;

    /// What stands for an unknown digest.
    pub const NOASSERTION: &str = "NOASSERTION";

    /// The digest, or [`NOASSERTION`].
    pub fn show(d: &Option<Digest>) -> String {
        d.map_or_else(|| NOASSERTION.to_string(), |d| d.to_string())
    }

    /// Write the digest or [`NOASSERTION`].
    pub fn serialize<S: Serializer>(d: &Option<Digest>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&show(d))
    }

    /// Read what [`serialize`] writes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Digest>, D::Error> {
        let s = String::deserialize(d)?;
        if s == NOASSERTION {
            return Ok(None);
        }
        Digest::parse_prefixed(&s)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
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

/// One stanza of dpkg's status file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEntry {
    /// `Package:`.
    pub package: String,
    /// `Version:`.
    pub version: String,
    /// `Architecture:`.
    pub architecture: String,
    /// `Status:` (`install ok installed`).
    pub status: String,
}

impl StatusEntry {
    /// Whether dpkg has the package fully installed.
    pub fn is_installed(&self) -> bool {
        self.status.split_whitespace().last() == Some("installed")
    }
}

/// Parse dpkg's status file (deb822 stanzas, as in `dpkg-query`'s database;
/// continuation lines start with a space and are skipped).
pub fn parse_dpkg_status(text: &str) -> Vec<StatusEntry> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut e = StatusEntry {
            package: String::new(),
            version: String::new(),
            architecture: String::new(),
            status: String::new(),
        };
        for line in stanza.lines() {
            if line.starts_with([' ', '\t']) {
                continue;
            }
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let v = v.trim().to_string();
            match k {
                "Package" => e.package = v,
                "Version" => e.version = v,
                "Architecture" => e.architecture = v,
                "Status" => e.status = v,
                _ => {}
            }
        }
        if !e.package.is_empty() {
            out.push(e);
        }
    }
    out
}

/// The text of dpkg's status file in a tree (empty when there is none).
pub fn dpkg_status(tree: &Tree) -> String {
    match tree.resolve(DPKG_STATUS) {
        Some((
            _,
            Node {
                kind: NodeKind::File(data),
                ..
            },
        )) => String::from_utf8_lossy(data).into_owned(),
        _ => String::new(),
    }
}

/// The packages installed according to the status file `after` that the
/// status file `before` does not have installed at the same version and
/// architecture, sorted by name.
pub fn installed_between(before: &str, after: &str) -> Vec<StatusEntry> {
    let before: std::collections::BTreeSet<(String, String, String)> = parse_dpkg_status(before)
        .into_iter()
        .filter(StatusEntry::is_installed)
        .map(|e| (e.package, e.version, e.architecture))
        .collect();
    let mut out: Vec<StatusEntry> = parse_dpkg_status(after)
        .into_iter()
        .filter(|e| {
            e.is_installed()
                && !before.contains(&(e.package.clone(), e.version.clone(), e.architecture.clone()))
        })
        .collect();
    out.sort_by(|a, b| a.package.cmp(&b.package));
    out
}

/// The value of field `name` in one deb822 stanza (first line only; the
/// relationship fields dpkg writes are one line).
pub fn field<'a>(stanza: &'a str, name: &str) -> Option<&'a str> {
    stanza.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (!l.starts_with([' ', '\t']) && k.eq_ignore_ascii_case(name)).then(|| v.trim())
    })
}

/// The package names of a relationship field (`a (>= 1) | b:any, c`), as
/// groups of alternatives, without versions and architecture qualifiers.
fn relationship_groups(value: &str) -> Vec<Vec<&str>> {
    value
        .split(',')
        .map(|group| {
            group
                .split('|')
                .filter_map(|alt| {
                    let name = alt.trim().split([' ', '(', '[', '<']).next()?;
                    let name = name.split(':').next()?;
                    (!name.is_empty()).then_some(name)
                })
                .collect::<Vec<_>>()
        })
        .filter(|g| !g.is_empty())
        .collect()
}

/// Packages that the installed packages of a dpkg status file need and that
/// are not installed: for each `Depends`/`Pre-Depends` group none of whose
/// alternatives is installed (by name, or provided by an installed package),
/// the group's first alternative. Versions are not compared: this finds
/// what a stripped root lacks (`[strip] purge`), not upgrades.
pub fn unmet_dependencies(status: &str) -> Vec<String> {
    let installed: Vec<&str> = status
        .split("\n\n")
        .filter(|st| field(st, "Status").is_some_and(|v| v.ends_with(" installed")))
        .collect();
    let mut have: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
    for st in &installed {
        have.extend(field(st, "Package"));
        for g in relationship_groups(field(st, "Provides").unwrap_or("")) {
            have.extend(g);
        }
    }
    let mut missing = std::collections::BTreeSet::new();
    for st in &installed {
        for f in ["Pre-Depends", "Depends"] {
            for g in relationship_groups(field(st, f).unwrap_or("")) {
                if !g.iter().any(|n| have.contains(n)) {
                    missing.insert(g[0].to_string());
                }
            }
        }
    }
    missing.into_iter().collect()
}

/// The packages an apt `Packages` index marks `Essential: yes`: every
/// maintainer script may use them without declaring it (Debian Policy 3.8).
pub fn essential_packages(index: &str) -> std::collections::BTreeSet<String> {
    index
        .split("\n\n")
        .filter(|st| field(st, "Essential").is_some_and(|v| v.eq_ignore_ascii_case("yes")))
        .filter_map(|st| field(st, "Package").map(str::to_string))
        .collect()
}

/// The name apt gives a downloaded `.deb` in `/var/cache/apt/archives`:
/// `NAME_VERSION_ARCH.deb` with the epoch colon escaped as `%3a`.
pub fn deb_file_name(package: &str, version: &str, architecture: &str) -> String {
    format!(
        "{package}_{}_{architecture}.deb",
        version.replace(':', "%3a")
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn unmet_dependencies_of_a_purged_root() {
        let status = "Package: tzdata\nStatus: install ok installed\nDepends: debconf (>= 0.5) | debconf-2.0\n\n\
                      Package: login\nStatus: install ok installed\nPre-Depends: libc6 (>= 2.38), libpam0g:any\n\n\
                      Package: libc6\nStatus: install ok installed\n\n\
                      Package: pam\nStatus: install ok installed\nProvides: libpam0g (= 1)\n\n\
                      Package: gone\nStatus: deinstall ok config-files\nDepends: nothing\n";
        assert_eq!(super::unmet_dependencies(status), ["debconf"]);
        let index = "Package: perl-base\nEssential: yes\n\nPackage: perl\nPriority: standard\n\nPackage: dash\nEssential: yes\n";
        assert_eq!(
            super::essential_packages(index)
                .into_iter()
                .collect::<Vec<_>>(),
            ["dash", "perl-base"]
        );
    }

    use super::*;

    const STATUS: &str = "\
Package: nginx
Status: install ok installed
Priority: optional
Installed-Size: 1234
Architecture: amd64
Version: 1.22.1-9+deb12u1
Description: small, powerful, scalable web/proxy server
 Nginx (\"engine X\") is a high-performance web and reverse proxy server.
 Version: 9.9 (a continuation line, not a field)

Package: libc6
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Version: 2.36-9+deb12u10

Package: oldpkg
Status: deinstall ok config-files
Architecture: all
Version: 1:2.0-1
";

    #[test]
    fn dpkg_status_parser() {
        let e = parse_dpkg_status(STATUS);
        assert_eq!(e.len(), 3);
        assert_eq!(
            e[0],
            StatusEntry {
                package: "nginx".into(),
                version: "1.22.1-9+deb12u1".into(),
                architecture: "amd64".into(),
                status: "install ok installed".into(),
            }
        );
        assert!(e[1].is_installed());
        assert!(!e[2].is_installed());
        assert_eq!(e[2].version, "1:2.0-1");
    }

    #[test]
    fn installed_between_is_the_status_difference() {
        let before =
            "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.36-9\n";
        let got: Vec<(String, String)> = installed_between(before, STATUS)
            .into_iter()
            .map(|e| (e.package, e.version))
            .collect();
        // libc6 changed version; nginx is new; oldpkg is not installed.
        assert_eq!(
            got,
            [
                ("libc6".to_string(), "2.36-9+deb12u10".to_string()),
                ("nginx".to_string(), "1.22.1-9+deb12u1".to_string())
            ]
        );
    }

    #[test]
    fn deb_names_escape_the_epoch() {
        assert_eq!(
            deb_file_name("nginx", "1.22.1-9+deb12u1", "amd64"),
            "nginx_1.22.1-9+deb12u1_amd64.deb"
        );
        assert_eq!(
            deb_file_name("libfoo", "1:2.0-1", "all"),
            "libfoo_1%3a2.0-1_all.deb"
        );
    }
}
