//! Whether a layer fetched from the cache may stand for the layer the plan
//! asks for: only when it is exactly what kiln would build and store here.
//!
//! The entry's digests only prove that the blob is the one the entry names;
//! whoever pushed the entry chose both. So the blob is unpacked within the
//! tar size its entry declares ([`layer::unpack_within`]: a zstd bomb stops
//! there), its tree passes every check a layer kiln stores passes
//! ([`Tree::check_layer`]) and composes over the layers below
//! ([`Tree::apply_layer`]); it is in canonical form (packing the unpacked
//! tree with kiln's own writer, [`layer::pack`], gives the very same blob,
//! tar size and diff_id, so a recompressed or reordered tar is refused);
//! and the entry's metadata is what kiln derives from that content and the
//! plan: its SOURCE_DATE_EPOCH ([`expected_epoch`]) and its Debian
//! packages as far as the layer shows them ([`check_packages`]), the lock's
//! checksums when the plan has a lock. A layer taken from a registry then
//! gives the image a local build gives.

use std::io::{Seek, SeekFrom};

use anyhow::{bail, Result};

use super::Hit;
use crate::fs::layer;
use crate::fs::tree::Tree;
use crate::input::epoch::EpochRule;
use crate::input::layerdef::LayerKind;
use crate::input::plan::PlannedLayer;
use crate::model::deb;
use crate::store::KeyEntry;
use crate::util::error::check_failed;

/// What the layer is composed over.
pub struct Below<'a> {
    /// The root the layers below compose to.
    pub root: &'a Tree,
    /// The entry of the layer right below, if any.
    pub entry: Option<&'a KeyEntry>,
    /// The plan's SOURCE_DATE_EPOCH rule.
    pub rule: EpochRule,
}

/// A cache hit that may stand for a layer built here.
pub struct Accepted {
    /// The entry, every field checked.
    pub entry: KeyEntry,
    /// The blob, in the store's scratch, to be moved into the store.
    pub blob: tempfile::NamedTempFile,
    /// The layer's tree.
    pub tree: Tree,
    /// `below.root` with the layer applied.
    pub root: Tree,
}

/// Check `hit` against the planned layer `pl` composed over `below`; the
/// error says what does not match (the caller warns and builds the layer).
pub fn accept(hit: Hit, pl: &PlannedLayer, below: &Below) -> Result<Accepted> {
    let Hit { entry, mut blob } = hit;
    if entry.name != pl.def.name || entry.kind != pl.def.kind.as_str() {
        bail!(check_failed(format!(
            "the entry is for {} layer {}",
            entry.kind, entry.name
        )));
    }
    blob.as_file_mut().seek(SeekFrom::Start(0))?;
    let tree = layer::unpack_within(blob.as_file(), entry.tar_size)?;
    tree.check_layer()
        .map_err(|e| check_failed(format!("the layer holds an entry no layer may hold: {e}")))?;
    let packed = layer::pack(&tree)?;
    let canonical = (
        packed.digest.as_str(),
        packed.blob.len() as u64,
        packed.tar_size,
        packed.diff_id.as_str(),
    );
    if canonical
        != (
            entry.digest.to_string().as_str(),
            entry.size,
            entry.tar_size,
            entry.diff_id.to_string().as_str(),
        )
    {
        bail!(check_failed(format!(
            "the blob is not in kiln's canonical form: packing its files again gives {} ({} bytes, a {}-byte tar with diff_id {}), not {} ({} bytes, a {}-byte tar with diff_id {})",
            canonical.0, canonical.1, canonical.2, canonical.3,
            entry.digest, entry.size, entry.tar_size, entry.diff_id
        )));
    }
    drop(packed);
    let mut root = below.root.clone();
    root.apply_layer(&tree)
        .map_err(|e| check_failed(format!("the layer does not apply to the layers below: {e}")))?;
    let epoch = expected_epoch(pl, below, &tree);
    if entry.source_date_epoch != Some(epoch) {
        bail!(check_failed(format!(
            "the entry's source_date_epoch is {:?}, but its content and the plan give {epoch}",
            entry.source_date_epoch
        )));
    }
    check_packages(&entry, pl, below.root, &root, &tree)?;
    Ok(Accepted {
        entry,
        blob,
        tree,
        root,
    })
}

/// The SOURCE_DATE_EPOCH a build here gives the layer
/// ([`crate::input::epoch`]): the fixed one; else, for a layer with no
/// Debian packages, the layer below's; else the newest of the layer below's
/// and its packages' build dates. That last one is not in the layer, but
/// it is the newest time in it: the layer's tree is clamped to it, and dpkg
/// writes its database (in every layer that installs packages) while the
/// layer is built, after any package was built.
pub fn expected_epoch(pl: &PlannedLayer, below: &Below, tree: &Tree) -> i64 {
    let lower = below.entry.and_then(|e| e.source_date_epoch);
    let newest = pl
        .def
        .debian
        .as_ref()
        .and_then(|_| tree.iter().map(|(_, n)| n.meta.mtime).max());
    below.rule.layer_epoch(lower, newest)
}

/// The entry's packages, as far as the layer shows them: none without
/// `[debian]`; for a packages layer, the ones its dpkg status file has
/// installed beyond the layers below (what a build here records, from the
/// same two files). A base layer lists the packages whose .debs mmdebstrap
/// kept, which is not all that dpkg installed (minbase deletes the Essential
/// ones first), and a variant such as `extract` installs none: its list must
/// be sorted, hold every package the layer asks for, and, where the layer
/// has a dpkg status file, name only packages installed there at the listed
/// version and architecture. Sorted as a build here sorts them; with a lock,
/// each as the lock pins it.
fn check_packages(
    entry: &KeyEntry,
    pl: &PlannedLayer,
    lower_root: &Tree,
    root: &Tree,
    tree: &Tree,
) -> Result<()> {
    let got: Vec<(&str, &str, &str)> = entry
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str(), p.architecture.as_str()))
        .collect();
    let installed = match (&pl.def.debian, pl.def.kind) {
        (None, _) => Vec::new(),
        (Some(_), LayerKind::Packages) => {
            deb::installed_between(&deb::dpkg_status(lower_root), &deb::dpkg_status(root))
        }
        (Some(_), _) => deb::installed_between("", &deb::dpkg_status(tree)),
    };
    let mut want: Vec<(&str, &str, &str)> = installed
        .iter()
        .map(|e| {
            (
                e.package.as_str(),
                e.version.as_str(),
                e.architecture.as_str(),
            )
        })
        .collect();
    want.sort_unstable();
    match &pl.def.debian {
        Some(src) if pl.def.kind != LayerKind::Packages => {
            let mut sorted = got.clone();
            sorted.sort_unstable();
            let missing = src
                .packages
                .iter()
                .filter(|n| !pl.def.strip.purge.contains(n))
                .find(|n| !got.iter().any(|g| g.0 == n.as_str()));
            if sorted != got || missing.is_some() {
                bail!(check_failed(format!(
                    "the entry's package list is not sorted or lacks a package the layer asks for{}",
                    missing.map(|m| format!(" ({m})")).unwrap_or_default()
                )));
            }
            if let Some(g) = got.iter().find(|g| !want.is_empty() && !want.contains(g)) {
                bail!(check_failed(format!(
                    "the entry lists {} {} {}, which the layer's dpkg status file does not have installed",
                    g.0, g.1, g.2
                )));
            }
        }
        _ if got != want => {
            let first = got
                .iter()
                .zip(&want)
                .find(|(g, w)| g != w)
                .map(|(g, w)| {
                    format!(
                        ": it lists {} {} {} where dpkg has {} {} {}",
                        g.0, g.1, g.2, w.0, w.1, w.2
                    )
                })
                .unwrap_or_default();
            bail!(check_failed(format!(
                "the entry lists {} packages, but the layer's dpkg status file has {} installed{first}",
                got.len(),
                want.len()
            )));
        }
        _ => {}
    }
    if let Some(locked) = &pl.locked {
        crate::input::lock::check_installed(&pl.def.name, locked, &entry.packages)
            .map_err(|e| check_failed(format!("its packages are not the locked ones: {e:#}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::layerdef::{DebianSource, LayerDef, StripRules};
    use crate::model::deb::DebPackage;
    use crate::testutil::{dir, file};

    fn planned(kind: LayerKind) -> PlannedLayer {
        PlannedLayer {
            def: LayerDef {
                dir: "l".into(),
                file: "l/layer.toml".into(),
                name: "l".into(),
                kind,
                description: None,
                debian: Some(DebianSource {
                    suite: "bookworm".into(),
                    variant: "extract".into(),
                    packages: vec!["busybox".into()],
                    mirror: None,
                    components: vec!["main".into()],
                    architecture: "amd64".into(),
                }),
                strip: StripRules {
                    delete: Vec::new(),
                    keep: Vec::new(),
                    keep_modules: None,
                    purge: Vec::new(),
                },
                files: None,
                overrides: Vec::new(),
                services: Vec::new(),
            },
            files: None,
            files_digest: None,
            locked: None,
        }
    }

    fn entry(packages: &[(&str, &str)]) -> KeyEntry {
        KeyEntry {
            key: crate::util::digest::Digest::of(b""),
            digest: crate::util::digest::Digest::of(b""),
            diff_id: crate::util::digest::Digest::of(b""),
            name: "l".into(),
            kind: "base".into(),
            size: 0,
            tar_size: 0,
            packages: packages
                .iter()
                .map(|(n, v)| DebPackage {
                    name: (*n).into(),
                    version: (*v).into(),
                    architecture: "amd64".into(),
                    sha256: None,
                    download: None,
                })
                .collect(),
            source_date_epoch: None,
        }
    }

    fn with_status(status: &str) -> Tree {
        let mut t = Tree::new(0);
        for d in ["var", "var/lib", "var/lib/dpkg"] {
            t.insert(d, dir()).unwrap();
        }
        t.insert(deb::DPKG_STATUS, file(status)).unwrap();
        t
    }

    #[test]
    fn packages_are_checked_as_far_as_the_layer_shows_them() {
        let stanza = |n: &str, v: &str| {
            format!(
                "Package: {n}\nStatus: install ok installed\nVersion: {v}\nArchitecture: amd64\n\n"
            )
        };
        let empty = Tree::new(0);
        let base = planned(LayerKind::Base);
        // Unpacked without dpkg: at least what the layer asks for, sorted.
        let ok = |e: &KeyEntry, pl: &PlannedLayer, lower: &Tree, root: &Tree, t: &Tree| {
            check_packages(e, pl, lower, root, t).map_err(|e| e.to_string())
        };
        let extract = [("busybox", "1"), ("libc6", "2")];
        ok(&entry(&extract), &base, &empty, &empty, &empty).unwrap();
        let e = ok(&entry(&[("libc6", "2")]), &base, &empty, &empty, &empty).unwrap_err();
        assert!(e.contains("(busybox)"), "{e}");
        let e = ok(
            &entry(&[("libc6", "2"), ("busybox", "1")]),
            &base,
            &empty,
            &empty,
            &empty,
        );
        assert!(e.unwrap_err().contains("not sorted"));
        // Installed by dpkg: only packages its status file has, at their
        // versions; the ones whose .debs mmdebstrap deleted may be missing.
        let t = with_status(
            &(stanza("base-files", "13") + &stanza("busybox", "1") + &stanza("libc6", "2")),
        );
        ok(&entry(&extract), &base, &empty, &t, &t).unwrap();
        let e = ok(
            &entry(&[("busybox", "1"), ("libc6", "3")]),
            &base,
            &empty,
            &t,
            &t,
        );
        assert!(e.unwrap_err().contains("libc6 3 amd64, which"));
        let e = ok(
            &entry(&[("busybox", "1"), ("libc6", "2"), ("zzz", "1")]),
            &base,
            &empty,
            &t,
            &t,
        );
        assert!(e.unwrap_err().contains("zzz 1 amd64, which"));
        // A packages layer: what its status adds to the one below.
        let pkgs = planned(LayerKind::Packages);
        let lower = with_status(&stanza("busybox", "1"));
        let t = with_status(&(stanza("busybox", "1") + &stanza("libc6", "2")));
        ok(&entry(&[("libc6", "2")]), &pkgs, &lower, &t, &t).unwrap();
        assert!(ok(&entry(&extract), &pkgs, &lower, &t, &t).is_err());
        // Without [debian]: none.
        let mut files_only = planned(LayerKind::App);
        files_only.def.debian = None;
        ok(&entry(&[]), &files_only, &empty, &empty, &empty).unwrap();
        assert!(ok(
            &entry(&[("busybox", "1")]),
            &files_only,
            &empty,
            &empty,
            &empty
        )
        .is_err());
    }
}
