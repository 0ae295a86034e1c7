//! One layer built from its sources: Debian packages (unpacked by
//! mmdebstrap, or installed by apt over the layers below), the layer's
//! files and its services, as a tree with every time clamped to the
//! layer's epoch.

use anyhow::{Context, Result};

use crate::fs::tree::{self, file_name, Meta, Tree, WHITEOUT_PREFIX};
use crate::fs::usrmerge;
use crate::input::epoch::{self, EpochRule};
use crate::input::layerdef::LayerKind;
use crate::input::plan::PlannedLayer;
use crate::layers::apt;
use crate::layers::source;
use crate::model::deb;
use crate::store::Store;
use crate::util::progress::Progress;

/// Held while apt runs.
static APT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// One layer, built: its tree, the Debian packages in it and its epoch.
pub(super) struct BuiltLayer {
    pub(super) tree: Tree,
    pub(super) packages: Vec<deb::DebPackage>,
    pub(super) epoch: i64,
}

/// Build one layer's tree from its sources.
///
/// A base or app layer is its unpacked (and stripped) Debian packages, its
/// files and its services. A packages layer with `[debian]` is what apt
/// changes when it installs the packages over `lower_root` in a chroot
/// ([`apt::install`]), stripped, with its files and services on top; without
/// `[debian]` it is the difference its files make. Every time in it is
/// clamped to the layer's epoch ([`crate::input::epoch`]).
pub(super) fn build_layer(
    pl: &PlannedLayer,
    lower_root: &Tree,
    rule: EpochRule,
    lower_epoch: Option<i64>,
    store: &Store,
    progress: &mut Progress,
) -> Result<BuiltLayer> {
    let packages_layer = pl.def.kind == LayerKind::Packages;
    let (mut tree, packages, epoch) = match &pl.def.debian {
        Some(deb) if packages_layer => {
            progress.step(format!(
                "layer {}: installing {} Debian packages with apt",
                pl.def.name,
                deb.packages.len()
            ));
            // apt locks the download cache it shares with other builds of
            // this process ([`many`]): one apt run at a time.
            let _apt = APT.lock().unwrap_or_else(|e| e.into_inner());
            let built = apt::install(
                lower_root,
                &pl.def.file,
                deb,
                pl.locked.as_deref(),
                rule,
                lower_epoch,
                store,
                &progress.transfer(),
            )?;
            let debs: Vec<deb::DebPackage> = built
                .installed
                .iter()
                .map(|p| deb::DebPackage {
                    name: p.package.clone(),
                    version: p.version.clone(),
                    architecture: p.architecture.clone(),
                    sha256: p.sha256.clone().unwrap_or_else(|| "NOASSERTION".into()),
                    download: None,
                })
                .collect();
            if let Some(locked) = &pl.locked {
                crate::input::lock::check_installed(&pl.def.name, locked, &debs)?;
            }
            let mut t = built.tree;
            usrmerge::merge(&mut t, false)
                .with_context(|| format!("layer {}: what apt installed", pl.def.name))?;
            let st = source::strip_layer(&mut t, &pl.def)?;
            tracing::info!(layer = %pl.def.name, installed = built.installed.len(), deleted = st.deleted, timings = ?built.timings, epoch = built.epoch, "packages installed");
            (t, debs, built.epoch)
        }
        Some(deb) => {
            progress.step(format!(
                "layer {}: unpacking {} Debian packages with mmdebstrap",
                pl.def.name,
                deb.packages.len()
            ));
            let (mut t, mut debs) = source::debian_tree(
                deb,
                pl.locked.as_deref(),
                rule.fixed,
                store,
                &progress.transfer(),
            )?;
            // Purged packages (`[strip] purge`) are not in the image: not
            // in its package list (manifest, SBOM) and not in its lock.
            debs.retain(|d| !pl.def.strip.purge.contains(&d.name));
            if let Some(locked) = &pl.locked {
                crate::input::lock::check_installed(&pl.def.name, locked, &debs)?;
            }
            let newest = match rule.fixed {
                Some(_) => None,
                None => epoch::newest_deb_date(
                    &store.deb_cache(),
                    debs.iter()
                        .map(|d| deb::deb_file_name(&d.name, &d.version, &d.architecture)),
                )?,
            };
            let epoch = rule.layer_epoch(lower_epoch, newest);
            t.clamp_mtimes(epoch);
            usrmerge::merge(&mut t, pl.def.kind == LayerKind::Base).with_context(|| {
                format!(
                    "layer {}: merging /usr in the unpacked packages",
                    pl.def.name
                )
            })?;
            let st = source::strip_layer(&mut t, &pl.def)?;
            tracing::info!(layer = %pl.def.name, deleted = st.deleted, modules_kept = st.modules_kept, modules_removed = st.modules_removed, epoch, "stripped");
            for (rule, bytes) in &st.rule_bytes {
                tracing::info!(layer = %pl.def.name, rule = %rule, bytes, "strip rule saved");
            }
            (t, debs, epoch)
        }
        None => {
            let epoch = rule.layer_epoch(lower_epoch, None);
            (Tree::new(epoch), Vec::new(), epoch)
        }
    };
    if let Some(files) = &pl.files {
        let mut files = files.clone();
        files.set_mtimes(epoch);
        tree.apply_layer(&files)?;
        // Whiteouts in the files (`.wh.NAME`) are meant for the layers
        // below: applying them here consumed them, so they go into the
        // layer itself too.
        for (path, node) in files.iter() {
            if file_name(path).starts_with(WHITEOUT_PREFIX) {
                tree.insert_with_parents(path, node.clone(), &Meta::root(0o755, epoch))?;
            }
        }
    }
    source::add_services(&pl.def, &mut tree, epoch)?;
    if pl.def.kind == LayerKind::Base {
        // A base layer is a whole root: it carries the merged-/usr links.
        usrmerge::merge(&mut tree, true)
            .with_context(|| format!("layer {}: merging /usr", pl.def.name))?;
    }
    if packages_layer && pl.def.debian.is_none() {
        let mut full = lower_root.clone();
        full.apply_layer(&tree)?;
        tree = tree::diff(lower_root, &full);
    }
    Ok(BuiltLayer {
        tree,
        packages,
        epoch,
    })
}
